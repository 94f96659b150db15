//! Real calls between separate processes over loopback: a `dialtone serve --dev` switchboard and
//! `dialtone agent`s with virtual devices (speech WAV in, recorded WAV out), real WebRTC
//! (ICE, DTLS-SRTP) and real Opus.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const SPEECH_A: &str = "The quick brown fox jumps over the lazy dog. One two three four five.";
const SPEECH_B: &str = "Bob here, answering the telephone. Six seven eight nine ten.";

#[test]
fn audio_flows_both_ways_and_hang_up_ends_both_with_0() {
    let dir = tempdir();
    let sa = speech_wav(dir.path(), "a", SPEECH_A, "en");
    let sb = speech_wav(dir.path(), "b", SPEECH_B, "en-us");
    let (ra, rb) = (
        dir.path().join("alice-rec.wav"),
        dir.path().join("bob-rec.wav"),
    );
    let server = Server::dev(dir.path());
    let mut alice = Agent::start(
        &server,
        "alice",
        &[
            "--mic",
            &format!("file:{}", sa.display()),
            "--speaker",
            &format!("record:{}", ra.display()),
        ],
    )
    .connected();
    let mut bob = Agent::start(
        &server,
        "bob",
        &[
            "--mic",
            &format!("file:{}", sb.display()),
            "--speaker",
            &format!("record:{}", rb.display()),
        ],
    )
    .connected();
    let id = alice.call("bob");
    let inc = bob.wait_incoming();
    assert_eq!(inc, id);
    let caller = bob
        .events
        .iter()
        .find(|e| e["event"] == "incomingCall")
        .unwrap()
        .clone();
    assert_eq!(caller["callerInfo"]["displayName"], "alice");
    assert!(
        caller["callerInfo"]["identifier"]
            .as_str()
            .unwrap()
            .starts_with("8:acs:")
    );
    bob.ok(json!({"cmd": "accept", "callId": id}));
    alice.wait_state(&id, "Connected");
    bob.wait_state(&id, "Connected");
    let calls = alice.ok(json!({"cmd": "calls"}));
    assert_eq!(calls["calls"][0]["state"], "Connected");
    assert_eq!(calls["calls"][0]["direction"], "Outgoing");
    assert_eq!(
        calls["calls"][0]["remoteParticipants"][0]["displayName"],
        "bob"
    );
    let len_a = read_wav(&sa).len() as f64 / 48_000.0;
    let len_b = read_wav(&sb).len() as f64 / 48_000.0;
    std::thread::sleep(Duration::from_secs_f64(len_a.max(len_b) + 1.0));
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    assert_eq!(alice.wait_ended(&id), (0, 0));
    assert_eq!(bob.wait_ended(&id), (0, 0));
    assert_eq!(
        alice.states(&id),
        [
            "Connecting",
            "Ringing",
            "Connected",
            "Disconnecting",
            "Disconnected"
        ]
    );
    assert_eq!(
        bob.states(&id),
        ["Incoming", "Connecting", "Connected", "Disconnected"]
    );
    alice.quit();
    bob.quit();
    let (c_ab, _) = speech_correlation(&read_wav(&sa), &read_wav(&rb));
    let (c_ba, _) = speech_correlation(&read_wav(&sb), &read_wav(&ra));
    eprintln!("correlation alice->bob {c_ab:.3}, bob->alice {c_ba:.3}");
    assert!(
        c_ab >= 0.8,
        "alice's speech reached bob with correlation {c_ab:.3}"
    );
    assert!(
        c_ba >= 0.8,
        "bob's speech reached alice with correlation {c_ba:.3}"
    );
}

#[test]
fn echo_service_plays_your_own_audio_back() {
    let dir = tempdir();
    let sa = speech_wav(dir.path(), "a", SPEECH_A, "en");
    let ra = dir.path().join("rec.wav");
    let server = Server::dev(dir.path());
    let mut alice = Agent::start(
        &server,
        "alice",
        &[
            "--mic",
            &format!("file:{}", sa.display()),
            "--speaker",
            &format!("record:{}", ra.display()),
        ],
    )
    .connected();
    let id = alice.call("echo");
    alice.wait_state(&id, "Connected");
    std::thread::sleep(Duration::from_secs_f64(
        read_wav(&sa).len() as f64 / 48_000.0 + 0.8,
    ));
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    assert_eq!(alice.wait_ended(&id), (0, 0));
    alice.quit();
    let (c, _) = speech_correlation(&read_wav(&sa), &read_wav(&ra));
    assert!(c >= 0.8, "echo correlation {c:.3}");
}

#[test]
fn failure_codes_reject_offline_unknown_cancel_and_ring_timeout() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &["--dev", "--ring-timeout", "1"]);
    let mut alice = Agent::start(
        &server,
        "alice",
        &["--speaker", "silence", "--mic", "silence"],
    )
    .connected();
    let mut bob = Agent::start(
        &server,
        "bob",
        &["--speaker", "silence", "--mic", "silence"],
    )
    .connected();

    // Declined.
    let id = alice.call("bob");
    let inc = bob.wait_incoming();
    bob.ok(json!({"cmd": "reject", "callId": inc}));
    assert_eq!(alice.wait_ended(&id).0, 603);
    assert_eq!(bob.wait_ended(&inc).0, 603);

    // Busy.
    let id = alice.call("bob");
    bob.wait_event("incomingCall", |e| e["callId"] == id, 10);
    bob.ok(json!({"cmd": "reject", "callId": id, "reason": "busy"}));
    assert_eq!(alice.wait_ended(&id).0, 486);

    // Caller cancels while ringing.
    let id = alice.call("bob");
    alice.wait_state(&id, "Ringing");
    bob.wait_event("incomingCall", |e| e["callId"] == id, 10);
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    assert_eq!(alice.wait_ended(&id).0, 487);
    assert_eq!(bob.wait_ended(&id).0, 487);

    // Nobody answers within the ring timeout (1 s here).
    let id = alice.call("bob");
    assert_eq!(alice.wait_ended(&id).0, 408);
    assert_eq!(bob.wait_ended(&id).0, 408);

    // Unknown user.
    let id = alice.call("nobody-by-this-name");
    assert_eq!(alice.wait_ended(&id).0, 404);

    // Known but offline.
    bob.quit();
    let id = alice.call("bob");
    assert_eq!(alice.wait_ended(&id).0, 480);
    alice.quit();
}

#[test]
fn second_device_sees_answered_elsewhere() {
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let quiet = ["--speaker", "silence", "--mic", "silence"];
    let mut alice = Agent::start(&server, "alice", &quiet).connected();
    let mut laptop = Agent::start(
        &server,
        "bob",
        &[&quiet[..], &["--device-name", "laptop"]].concat(),
    )
    .connected();
    let mut phone = Agent::start(
        &server,
        "bob",
        &[&quiet[..], &["--device-name", "phone"]].concat(),
    )
    .connected();
    let id = alice.call("bob");
    assert_eq!(laptop.wait_incoming(), id);
    assert_eq!(phone.wait_incoming(), id);
    phone.ok(json!({"cmd": "accept", "callId": id}));
    assert_eq!(laptop.wait_ended(&id), (0, 10003));
    phone.wait_state(&id, "Connected");
    alice.wait_state(&id, "Connected");
    let r = laptop.cmd(json!({"cmd": "accept", "callId": id}));
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"]["code"], "unknownCall");
}

#[test]
fn hold_and_mute_stop_the_audio_the_other_side_hears() {
    let dir = tempdir();
    let rb = dir.path().join("bob-rec.wav");
    let server = Server::dev(dir.path());
    let mut alice = Agent::start(
        &server,
        "alice",
        &["--mic", "tone:440", "--speaker", "silence"],
    )
    .connected();
    let mut bob = Agent::start(
        &server,
        "bob",
        &[
            "--mic",
            "silence",
            "--speaker",
            &format!("record:{}", rb.display()),
            "--auto-answer",
        ],
    )
    .connected();
    let rec_start = bob.device_started("speaker");
    let id = alice.call("bob");
    alice.wait_state(&id, "Connected");
    bob.wait_state(&id, "Connected");
    std::thread::sleep(Duration::from_millis(800));
    let t_hold = unix_micros();
    alice.ok(json!({"cmd": "hold", "callId": id}));
    alice.wait_state(&id, "LocalHold");
    bob.wait_state(&id, "RemoteHold");
    std::thread::sleep(Duration::from_millis(1000));
    let t_resume = unix_micros();
    alice.ok(json!({"cmd": "resume", "callId": id}));
    bob.wait_event(
        "callStateChanged",
        |e| e["callId"] == id && e["state"] == "Connected",
        10,
    );
    std::thread::sleep(Duration::from_millis(800));
    let t_mute = unix_micros();
    alice.ok(json!({"cmd": "mute", "callId": id}));
    let m = bob.wait_event("participantStateChanged", |e| e["isMuted"] == true, 10);
    assert_eq!(m["displayName"], "alice");
    std::thread::sleep(Duration::from_millis(1000));
    let t_unmute = unix_micros();
    alice.ok(json!({"cmd": "unmute", "callId": id}));
    bob.wait_event("participantStateChanged", |e| e["isMuted"] == false, 10);
    std::thread::sleep(Duration::from_millis(800));
    let t_end = unix_micros();
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    bob.wait_ended(&id);
    bob.quit();
    let rec = read_wav(&rb);
    let ms = |x: u64| x * 1000;
    let before = rms_between(&rec, rec_start, t_hold - ms(500), t_hold);
    let held = rms_between(&rec, rec_start, t_hold + ms(250), t_resume);
    let resumed = rms_between(&rec, rec_start, t_resume + ms(250), t_mute);
    let muted = rms_between(&rec, rec_start, t_mute + ms(250), t_unmute);
    let unmuted = rms_between(&rec, rec_start, t_unmute + ms(250), t_end);
    eprintln!(
        "rms before {before:.4} held {held:.4} resumed {resumed:.4} muted {muted:.4} unmuted {unmuted:.4}"
    );
    assert!(before > 0.05, "tone reaches bob before hold");
    assert!(held < before / 20.0, "no audio while held");
    assert!(resumed > 0.05, "audio again after resume");
    assert!(muted < before / 20.0, "no audio while muted");
    assert!(unmuted > 0.05, "audio again after unmute");
}

#[test]
fn tokens_sign_in_and_bad_tokens_are_refused() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    let out = std::process::Command::new(BIN)
        .args([
            "token",
            "issue",
            "--user",
            "carol",
            "--ttl",
            "1h",
            "--data-dir",
        ])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut carol = Agent::start_url(
        &server.url,
        None,
        &[
            "--token",
            &token,
            "--speaker",
            "silence",
            "--mic",
            "silence",
        ],
    );
    carol.wait_event(
        "connectionStateChanged",
        |e| e["newState"] == "Connected",
        10,
    );

    // No token on a switchboard that is not in dev mode.
    let mut anon = Agent::start_url(
        &server.url,
        Some("mallory"),
        &["--speaker", "silence", "--mic", "silence"],
    );
    let e = anon.wait_event(
        "connectionStateChanged",
        |e| e["newState"] == "Disconnected",
        10,
    );
    assert_eq!(e["reason"], "invalidToken");

    // A forged token.
    let forged = format!("{}x", &token[..token.len() - 1]);
    let mut bad = Agent::start_url(
        &server.url,
        None,
        &[
            "--token",
            &forged,
            "--speaker",
            "silence",
            "--mic",
            "silence",
        ],
    );
    let e = bad.wait_event(
        "connectionStateChanged",
        |e| e["newState"] == "Disconnected",
        10,
    );
    assert_eq!(e["reason"], "invalidToken");
    // The agent stays up and answers.
    let r = bad.cmd(json!({"cmd": "call", "to": ["carol"]}));
    assert_eq!(r["error"]["code"], "notConnected");
    bad.quit();

    // Revoked while the switchboard runs: the next sign-in with it is refused.
    let out = std::process::Command::new(BIN)
        .args(["token", "revoke", &token, "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let mut again = Agent::start_url(
        &server.url,
        None,
        &[
            "--token",
            &token,
            "--speaker",
            "silence",
            "--mic",
            "silence",
        ],
    );
    let e = again.wait_event(
        "connectionStateChanged",
        |e| e["newState"] == "Disconnected",
        10,
    );
    assert_eq!(e["reason"], "invalidToken");
    let msg = again.wait_event("error", |_| true, 5);
    assert!(
        msg["message"].as_str().unwrap().contains("revoked"),
        "{msg}"
    );
    carol.quit();
}

#[test]
fn agent_survives_bad_lines() {
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let mut a = Agent::start(
        &server,
        "alice",
        &["--speaker", "silence", "--mic", "silence"],
    )
    .connected();
    a.send_raw("this is not json");
    let r = a.wait_null_reply();
    assert_eq!(
        (r["ok"].clone(), r["error"]["code"].clone()),
        (json!(false), json!("badJson"))
    );
    a.send_raw(r#"{"id": 3}"#);
    assert_eq!(a.wait_null_reply()["error"]["code"], "missingCmd");
    let r = a.cmd(json!({"cmd": "teleport"}));
    assert_eq!(r["error"]["code"], "unknownCommand");
    let r = a.cmd(json!({"cmd": "hangUp", "callId": "no-such-call"}));
    assert_eq!(r["error"]["code"], "unknownCall");
    a.send_raw(&format!(
        "{{\"id\": 9, \"cmd\": \"calls\", \"pad\": \"{}\"}}",
        "x".repeat(2 << 20)
    ));
    assert_eq!(a.wait_null_reply()["error"]["code"], "lineTooLong");
    let r = a.ok(json!({"cmd": "calls"}));
    assert_eq!(r["calls"], json!([]));
    let d = a.ok(json!({"cmd": "devices"}));
    assert!(d["microphones"].is_array() && d["speakers"].is_array() && d["cameras"].is_array());
    a.quit();
}

#[test]
fn test_tone_plays_and_mic_levels_are_reported() {
    let dir = tempdir();
    let rec = dir.path().join("rec.wav");
    let server = Server::dev(dir.path());
    let mut a = Agent::start(
        &server,
        "alice",
        &[
            "--mic",
            "tone:440",
            "--speaker",
            &format!("record:{}", rec.display()),
        ],
    )
    .connected();
    let t0 = a.device_started("speaker");
    a.ok(json!({"cmd": "reportLevels", "on": true}));
    let lvl = a.wait_event("micLevel", |e| e["level"].as_f64().unwrap() > 0.1, 5);
    assert!(lvl["level"].as_f64().unwrap() < 1.0);
    a.ok(json!({"cmd": "reportLevels", "on": false}));
    let t_tone = unix_micros();
    a.ok(json!({"cmd": "playTestTone"}));
    std::thread::sleep(Duration::from_millis(1400));
    a.quit();
    let pcm = read_wav(&rec);
    let before = rms_between(&pcm, t0, t0, t_tone);
    let during = rms_between(&pcm, t0, t_tone + 200_000, t_tone + 900_000);
    assert!(
        before < 0.001 && during > 0.1,
        "before {before}, during {during}"
    );
}
