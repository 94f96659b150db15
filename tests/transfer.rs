//! Call transfer with real processes and real media: alice (transferor), bob (transferee),
//! carol (target), sometimes dave.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const LONG_SPEECH: &str = "This is Bob speaking on a long line. I will keep talking while I am moved \
                           from one call to another, so that you can hear where my voice goes. One, two, \
                           three, four, five, six, seven, eight, nine, ten.";

fn quiet() -> Vec<&'static str> {
    vec!["--mic", "silence", "--speaker", "silence"]
}

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    [base, more].concat()
}

fn transfer_state(a: &mut Agent, call: &str, state: &str) -> Value {
    a.wait_event(
        "transferStateChanged",
        |e| e["callId"] == call && e["state"] == state,
        15,
    )
}

/// alice calls bob (who auto-answers) and both see Connected.
fn connect(alice: &mut Agent, bob: &mut Agent) -> String {
    let id = alice.call("bob");
    alice.wait_state(&id, "Connected");
    bob.wait_state(&id, "Connected");
    id
}

#[test]
fn blind_transfer_moves_bobs_voice_from_alice_to_carol() {
    let dir = tempdir();
    let speech = speech_wav(dir.path(), "bob", LONG_SPEECH, "en-us");
    let (ra, rc) = (dir.path().join("alice.wav"), dir.path().join("carol.wav"));
    let server = Server::dev(dir.path());
    let mut alice = Agent::start(
        &server,
        "alice",
        &[
            "--mic",
            "silence",
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
            &format!("file:{}", speech.display()),
            "--speaker",
            "silence",
            "--auto-answer",
            "--auto-accept-transfers",
        ],
    )
    .connected();
    let mut carol = Agent::start(
        &server,
        "carol",
        &[
            "--mic",
            "silence",
            "--speaker",
            &format!("record:{}", rc.display()),
            "--auto-answer",
        ],
    )
    .connected();
    let rec_a0 = alice.device_started("speaker");
    let id = connect(&mut alice, &mut bob);
    let mic0 = bob.device_started("microphone");
    std::thread::sleep(Duration::from_millis(1200));

    let t = alice.ok(json!({"cmd": "transfer", "callId": id, "targetParticipant": "carol"}));
    let transfer_id = t["transferId"].as_str().unwrap().to_string();
    let done = transfer_state(&mut alice, &id, "Transferred");
    assert_eq!(done["transferId"], transfer_id);
    let t_done = unix_micros();
    assert_eq!(alice.wait_ended(&id), (0, 7000));
    let req = bob.wait_event("transferRequested", |e| e["callId"] == id, 5);
    assert_eq!(req["transferor"]["displayName"], "alice");
    assert_eq!(req["target"]["displayName"], "carol");
    let accepted = bob.wait_event("transferAccepted", |e| e["callId"] == id, 5);
    let new_call = accepted["targetCallId"].as_str().unwrap().to_string();
    bob.wait_state(&new_call, "Connected");
    assert_eq!(bob.wait_ended(&id), (0, 7000));
    let inc = carol.wait_event("incomingCall", |e| e["callId"] == new_call, 5);
    assert_eq!(inc["callerInfo"]["displayName"], "bob");
    assert_eq!(inc["transferredBy"]["displayName"], "alice");
    carol.wait_state(&new_call, "Connected");
    // Event order for each party.
    let names = |a: &Agent| {
        a.events
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let bob_seq: Vec<String> = names(&bob)
        .into_iter()
        .filter(|n| ["transferRequested", "transferAccepted", "callEnded"].contains(&n.as_str()))
        .collect();
    assert_eq!(
        bob_seq,
        ["transferRequested", "transferAccepted", "callEnded"]
    );
    let alice_states: Vec<String> = alice
        .events
        .iter()
        .filter(|e| e["event"] == "transferStateChanged")
        .map(|e| e["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(alice_states, ["Transferring", "Transferred"]);

    let src = read_wav(&speech);
    let spoken_until = mic0 + (src.len() as u64 * 1_000_000 / 48_000);
    std::thread::sleep(Duration::from_micros(
        spoken_until.saturating_sub(unix_micros()) + 800_000,
    ));
    carol.ok(json!({"cmd": "hangUp", "callId": new_call}));
    bob.wait_ended(&new_call);
    for a in [alice, bob, carol] {
        a.quit();
    }
    // What bob said after the transfer is in carol's recording ...
    let from = ((t_done + 300_000 - mic0) as f64 * 48e-3) as usize;
    let tail = &src[from.min(src.len() - 48_000)..];
    let (c, _) = speech_correlation(tail, &read_wav(&rc));
    eprintln!("bob -> carol after the transfer: correlation {c:.3}");
    assert!(
        c >= 0.8,
        "bob's voice reaches carol after the transfer: {c:.3}"
    );
    // ... and no longer in alice's.
    let ra_pcm = read_wav(&ra);
    let before = rms_between(&ra_pcm, rec_a0, mic0, t_done - 200_000);
    let after = rms_between(&ra_pcm, rec_a0, t_done + 200_000, spoken_until);
    eprintln!("alice hears bob: before {before:.4}, after {after:.4}");
    assert!(
        before > 0.01 && after < 0.001,
        "before {before}, after {after}"
    );
}

#[test]
fn every_transfer_failure_reports_its_error_and_keeps_the_call_audible() {
    let dir = tempdir();
    let ra = dir.path().join("alice.wav");
    let server = Server::start(dir.path(), &["--dev", "--ring-timeout", "1"]);
    // dave exists but is offline.
    Agent::start(&server, "dave", &quiet()).connected().quit();
    let mut alice = Agent::start(
        &server,
        "alice",
        &[
            "--mic",
            "silence",
            "--speaker",
            &format!("record:{}", ra.display()),
        ],
    )
    .connected();
    let mut bob = Agent::start(
        &server,
        "bob",
        &["--mic", "tone:440", "--speaker", "silence", "--auto-answer"],
    )
    .connected();
    let mut carol = Agent::start(&server, "carol", &quiet()).connected();
    let rec0 = alice.device_started("speaker");
    let id = connect(&mut alice, &mut bob);
    let mut checks = Vec::new();
    let mut attempt = |alice: &mut Agent,
                       target: &str,
                       code: u64,
                       sub: u64,
                       act: &mut dyn FnMut(&mut Agent, &mut Agent)| {
        let before = alice.events.len();
        let r = alice.ok(json!({"cmd": "transfer", "callId": id, "targetParticipant": target, "disableForwardingAndUnanswered": true}));
        let tid = r["transferId"].clone();
        bob.wait_event("transferRequested", |e| e["transferId"] == tid, 5);
        act(&mut bob, &mut carol);
        let f = alice.wait_event(
            "transferStateChanged",
            |e| e["transferId"] == tid && e["state"] == "Failed",
            10,
        );
        assert_eq!(
            (f["error"]["code"].as_u64(), f["error"]["subCode"].as_u64()),
            (Some(code), Some(sub)),
            "{f}"
        );
        assert!(
            alice.events[before..]
                .iter()
                .all(|e| e["event"] != "callEnded")
        );
        checks.push(unix_micros());
    };
    let accept = |id: &str| json!({"cmd": "acceptTransfer", "callId": id});
    // The transferee says no.
    attempt(&mut alice, "carol", 603, 7101, &mut |bob, _| {
        bob.ok(json!({"cmd": "rejectTransfer", "callId": id}));
    });
    // The target declines, or is busy.
    for (reason, code) in [("none", 603), ("busy", 486)] {
        attempt(&mut alice, "carol", code, 7100, &mut |bob, carol| {
            bob.ok(accept(&id));
            let leg = carol.wait_incoming();
            carol.ok(json!({"cmd": "reject", "callId": leg, "reason": reason}));
            carol.wait_ended(&leg);
        });
    }
    // Nobody answers (ring timeout 1 s), or the target is offline.
    attempt(&mut alice, "carol", 408, 7100, &mut |bob, carol| {
        bob.ok(accept(&id));
        let leg = carol.wait_incoming();
        assert_eq!(carol.wait_ended(&leg).0, 408);
    });
    attempt(&mut alice, "dave", 480, 7100, &mut |bob, _| {
        bob.ok(accept(&id));
    });
    // Each time the original call still carries bob's tone to alice.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        alice.ok(json!({"cmd": "calls"}))["calls"][0]["state"],
        "Connected"
    );

    // The transferor hangs up while the target rings.
    let r = alice.ok(json!({"cmd": "transfer", "callId": id, "targetParticipant": "carol"}));
    let tid = r["transferId"].clone();
    bob.wait_event("transferRequested", |e| e["transferId"] == tid, 5);
    bob.ok(accept(&id));
    let leg = carol.wait_incoming();
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    let f = alice.wait_event(
        "transferStateChanged",
        |e| e["transferId"] == tid && e["state"] == "Failed",
        10,
    );
    assert_eq!(
        (f["error"]["code"].as_u64(), f["error"]["subCode"].as_u64()),
        (Some(487), Some(7102))
    );
    assert_eq!(bob.wait_ended(&id), (0, 0));
    assert_eq!(
        carol.wait_ended(&leg).0,
        487,
        "carol's ringing leg is cancelled"
    );
    alice.quit();
    let rec = read_wav(&ra);
    for t in checks {
        let level = rms_between(&rec, rec0, t + 50_000, t + 450_000);
        assert!(
            level > 0.05,
            "after a failed transfer alice still hears bob: rms {level}"
        );
    }
}

#[test]
fn consultative_transfer_puts_bob_into_carols_existing_call() {
    let dir = tempdir();
    let rc = dir.path().join("carol.wav");
    let server = Server::dev(dir.path());
    let mut alice = Agent::start(&server, "alice", &quiet()).connected();
    let mut bob = Agent::start(
        &server,
        "bob",
        &[
            "--mic",
            "tone:440",
            "--speaker",
            "silence",
            "--auto-answer",
            "--auto-accept-transfers",
        ],
    )
    .connected();
    let mut carol = Agent::start(
        &server,
        "carol",
        &[
            "--mic",
            "silence",
            "--speaker",
            &format!("record:{}", rc.display()),
            "--auto-answer",
        ],
    )
    .connected();
    let rec0 = carol.device_started("speaker");
    let id1 = connect(&mut alice, &mut bob);
    alice.ok(json!({"cmd": "hold", "callId": id1}));
    let id2 = alice.call("carol");
    alice.wait_state(&id2, "Connected");
    carol.wait_state(&id2, "Connected");
    std::thread::sleep(Duration::from_millis(500));
    let t0 = unix_micros();
    alice.ok(json!({"cmd": "transfer", "callId": id1, "targetCallId": id2}));
    transfer_state(&mut alice, &id1, "Transferred");
    let t1 = unix_micros();
    assert_eq!(alice.wait_ended(&id1), (0, 7000));
    assert_eq!(alice.wait_ended(&id2), (0, 7000));
    let acc = bob.wait_event("transferAccepted", |e| e["callId"] == id1, 5);
    assert_eq!(acc["targetCallId"], id2.as_str());
    bob.wait_state(&id2, "Connected");
    let upd = carol.wait_event(
        "remoteParticipantsUpdated",
        |e| e["callId"] == id2 && !e["removed"].as_array().unwrap().is_empty(),
        5,
    );
    assert_eq!(upd["added"][0]["displayName"], "bob");
    assert_eq!(upd["removed"][0]["displayName"], "alice");
    assert_eq!(
        carol
            .events
            .iter()
            .filter(|e| e["event"] == "incomingCall")
            .count(),
        1,
        "carol did not ring again"
    );
    std::thread::sleep(Duration::from_millis(1000));
    carol.ok(json!({"cmd": "hangUp", "callId": id2}));
    bob.wait_ended(&id2);
    for a in [alice, bob, carol] {
        a.quit();
    }
    let rec = read_wav(&rc);
    let before = rms_between(&rec, rec0, t0 - 400_000, t0);
    let after = rms_between(&rec, rec0, t1 + 200_000, t1 + 900_000);
    eprintln!("carol hears: before {before:.4} (alice, silent), after {after:.4} (bob's tone)");
    assert!(
        before < 0.001 && after > 0.05,
        "before {before}, after {after}"
    );
}

/// Bob leaves a message in carol's mailbox; what is returned correlates with what he said.
fn check_message(carol: &mut Agent, dir: &std::path::Path, speech: &std::path::Path) {
    let mwi = carol.wait_event("messageWaiting", |e| e["newCount"] == 1, 15);
    assert_eq!(mwi["totalCount"], 1);
    let list = carol.ok(json!({"cmd": "voicemails"}));
    let msg = &list["messages"][0];
    assert_eq!(msg["caller"]["displayName"], "bob");
    assert_eq!(msg["isNew"], true);
    let path = dir.join("fetched.opus");
    let r = carol.ok(json!({"cmd": "fetchVoicemail", "messageId": msg["messageId"], "path": path}));
    assert!(r["bytes"].as_u64().unwrap() > 1000);
    let pcm = dialtone::server::voicemail::decode_to_pcm(&path).expect("the message decodes");
    let src = read_wav(speech);
    assert!(
        pcm.len() > 48_000,
        "at least a second recorded, got {} samples",
        pcm.len()
    );
    // The recording is a stretch of bob's speech: find it inside the source.
    let needle = &pcm[..pcm.len().min(src.len() / 2)];
    let (c, _) = speech_correlation(needle, &src);
    eprintln!(
        "voicemail vs bob's speech: correlation {c:.3}, {} s",
        pcm.len() as f64 / 48e3
    );
    assert!(c >= 0.8, "voicemail correlates with bob's speech: {c:.3}");
    let r = carol.cmd(json!({"cmd": "fetchVoicemail", "messageId": "nope", "path": path}));
    assert_eq!(r["ok"], false);
    carol.ok(json!({"cmd": "markVoicemail", "messageId": msg["messageId"], "isNew": false}));
    carol.wait_event("messageWaiting", |e| e["newCount"] == 0, 5);
}

#[test]
fn transfer_to_voicemail_records_bob_and_tells_carols_devices() {
    let dir = tempdir();
    let speech = speech_wav(dir.path(), "bob", LONG_SPEECH, "en-us");
    let server = Server::dev(dir.path());
    let mut alice = Agent::start(&server, "alice", &quiet()).connected();
    let mut bob = Agent::start(
        &server,
        "bob",
        &[
            "--mic",
            &format!("file:{}", speech.display()),
            "--speaker",
            "silence",
            "--auto-answer",
            "--auto-accept-transfers",
        ],
    )
    .connected();
    let mut carol_desk = Agent::start(
        &server,
        "carol",
        &with(&quiet(), &["--device-name", "desk"]),
    )
    .connected();
    let mut carol_phone = Agent::start(
        &server,
        "carol",
        &with(&quiet(), &["--device-name", "phone"]),
    )
    .connected();
    let id = connect(&mut alice, &mut bob);
    let mic0 = bob.device_started("microphone");
    std::thread::sleep(Duration::from_millis(500));
    alice.ok(json!({"cmd": "transfer", "callId": id, "targetParticipantVoicemail": "carol"}));
    transfer_state(&mut alice, &id, "Transferred");
    let acc = bob.wait_event("transferAccepted", |e| e["callId"] == id, 5);
    let vm = acc["targetCallId"].as_str().unwrap().to_string();
    bob.wait_state(&vm, "Connected");
    let src_len_us = read_wav(&speech).len() as u64 * 1_000_000 / 48_000;
    std::thread::sleep(Duration::from_micros(
        (mic0 + src_len_us).saturating_sub(unix_micros()) + 300_000,
    ));
    bob.ok(json!({"cmd": "hangUp", "callId": vm}));
    bob.wait_ended(&vm);
    carol_phone.wait_event("messageWaiting", |e| e["newCount"] == 1, 15);
    check_message(&mut carol_desk, dir.path(), &speech);
    for a in [alice, bob, carol_desk, carol_phone] {
        a.quit();
    }
}

#[test]
fn unanswered_transfer_follows_forwarding_to_voicemail_unless_disabled() {
    let dir = tempdir();
    let speech = speech_wav(dir.path(), "bob", LONG_SPEECH, "en-us");
    let server = Server::start(dir.path(), &["--dev", "--ring-timeout", "2"]);
    let mut alice = Agent::start(&server, "alice", &quiet()).connected();
    let mut bob = Agent::start(
        &server,
        "bob",
        &[
            "--mic",
            &format!("file:{}", speech.display()),
            "--speaker",
            "silence",
            "--auto-answer",
            "--auto-accept-transfers",
        ],
    )
    .connected();
    let mut carol = Agent::start(&server, "carol", &quiet()).connected();
    carol.ok(json!({"cmd": "setForwarding", "mode": "unanswered", "target": "voicemail", "unansweredAfterSecs": 1}));
    carol.wait_event(
        "forwardingChanged",
        |e| e["forwarding"]["mode"] == "unanswered",
        5,
    );
    let id = connect(&mut alice, &mut bob);

    // Disabled: the attempt ends when the ring timeout (2 s) passes, ignoring the 1 s forward.
    let r = alice.ok(json!({"cmd": "transfer", "callId": id, "targetParticipant": "carol", "disableForwardingAndUnanswered": true}));
    let tid = r["transferId"].clone();
    carol.wait_incoming();
    let f = alice.wait_event(
        "transferStateChanged",
        |e| e["transferId"] == tid && e["state"] == "Failed",
        10,
    );
    assert_eq!(
        (f["error"]["code"].as_u64(), f["error"]["subCode"].as_u64()),
        (Some(408), Some(7100))
    );

    // Allowed: after 1 s unanswered, carol's mailbox takes bob.
    alice.ok(json!({"cmd": "transfer", "callId": id, "targetParticipant": "carol"}));
    transfer_state(&mut alice, &id, "Transferred");
    let leg = carol.wait_incoming();
    assert_eq!(carol.wait_ended(&leg), (0, 7300));
    let acc = bob.wait_event("transferAccepted", |e| e["callId"] == id, 5);
    let vm = acc["targetCallId"].as_str().unwrap().to_string();
    let mic0 = bob.device_started("microphone");
    let src_len_us = read_wav(&speech).len() as u64 * 1_000_000 / 48_000;
    std::thread::sleep(Duration::from_micros(
        (mic0 + src_len_us).saturating_sub(unix_micros()) + 300_000,
    ));
    bob.ok(json!({"cmd": "hangUp", "callId": vm}));
    check_message(&mut carol, dir.path(), &speech);
    for a in [alice, bob, carol] {
        a.quit();
    }
}

#[test]
fn bad_transfers_get_clear_errors() {
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let mut alice = Agent::start(&server, "alice", &quiet()).connected();
    let mut bob = Agent::start(&server, "bob", &with(&quiet(), &["--auto-answer"])).connected();
    let _carol = Agent::start(&server, "carol", &quiet()).connected();
    let id = connect(&mut alice, &mut bob);
    let r =
        alice.cmd(json!({"cmd": "transfer", "callId": "not-a-call", "targetParticipant": "carol"}));
    assert_eq!(r["error"]["code"], "unknownCall");
    let r = alice.cmd(json!({"cmd": "transfer", "callId": id}));
    assert_eq!(r["error"]["code"], "badArgument");
    let r = alice.cmd(
        json!({"cmd": "transfer", "callId": id, "targetParticipant": "carol", "targetCallId": "x"}),
    );
    assert_eq!(r["error"]["code"], "badArgument");
    for (target, text) in [("alice", "yourself"), ("nobody-here", "no user")] {
        let r = alice.ok(json!({"cmd": "transfer", "callId": id, "targetParticipant": target}));
        let tid = r["transferId"].clone();
        let e = alice.wait_event(
            "error",
            |e| e["callId"] == id.as_str() && e["message"].as_str().unwrap().contains(text),
            5,
        );
        assert_eq!(e["code"], "invalidArgument");
        let f = alice.wait_event(
            "transferStateChanged",
            |e| e["transferId"] == tid && e["state"] == "Failed",
            5,
        );
        assert_eq!(f["error"]["subCode"], 7105);
    }
    alice.ok(json!({"cmd": "transfer", "callId": id, "targetParticipant": "carol"}));
    let r = alice.cmd(json!({"cmd": "transfer", "callId": id, "targetParticipant": "carol"}));
    assert_eq!(r["error"]["code"], "invalidArgument");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("under way")
    );
    let r = bob.cmd(json!({"cmd": "acceptTransfer", "callId": "nope"}));
    assert_eq!(r["error"]["code"], "unknownCall");
    let calls = bob.ok(json!({"cmd": "calls"}));
    assert_eq!(calls["calls"][0]["state"], "Connected");
}

#[test]
fn own_greeting_is_recorded_and_played_to_callers() {
    let dir = tempdir();
    let words = speech_wav(dir.path(), "greet", "Carol here. Leave your message.", "en");
    let rb = dir.path().join("bob.wav");
    let server = Server::dev(dir.path());
    let mut carol = Agent::start(
        &server,
        "carol",
        &[
            "--mic",
            &format!("file:{}", words.display()),
            "--speaker",
            "silence",
        ],
    )
    .connected();
    let id = carol.call("greeting");
    carol.wait_state(&id, "Connected");
    let len_us = read_wav(&words).len() as u64 * 1_000_000 / 48_000;
    std::thread::sleep(Duration::from_micros(len_us + 700_000));
    carol.ok(json!({"cmd": "hangUp", "callId": id}));
    carol.wait_ended(&id);
    carol.ok(json!({"cmd": "setForwarding", "mode": "always", "target": "voicemail"}));
    carol.wait_event(
        "forwardingChanged",
        |e| e["forwarding"]["mode"] == "always",
        5,
    );
    let mut bob = Agent::start(
        &server,
        "bob",
        &[
            "--mic",
            "silence",
            "--speaker",
            &format!("record:{}", rb.display()),
        ],
    )
    .connected();
    let vm = bob.call("carol");
    bob.wait_state(&vm, "Connected");
    std::thread::sleep(Duration::from_micros(len_us + 800_000));
    bob.ok(json!({"cmd": "hangUp", "callId": vm}));
    bob.wait_ended(&vm);
    bob.quit();
    carol.quit();
    // The beep (0.3 s) played while carol started speaking; what followed is her greeting.
    let src = read_wav(&words);
    let (c, _) = speech_correlation(&src[24_000..], &read_wav(&rb));
    eprintln!("bob hears carol's own greeting: correlation {c:.3}");
    assert!(c >= 0.8, "carol's greeting reaches bob: {c:.3}");
}
