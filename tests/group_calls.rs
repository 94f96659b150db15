//! Group calls between real processes: a `dialtone serve --dev` switchboard and four agents with
//! real WebRTC and Opus. Speech (espeak-ng) or tones tell whose audio reached whom.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const GROUP: &str = "5b0e8a52-3f7c-4d0e-9a55-2a4f6c1e7d90";

const LINES: [(&str, &str, &str); 4] = [
    ("alice", "en", "Alice speaking. The quick brown fox."),
    ("bob", "en-us", "Bob here. Seven eight nine ten."),
    ("carol", "en-gb", "Carol on the line. Blue green red."),
    ("dave", "en-sc", "Dave says hello. Monday Tuesday."),
];

/// `speech` preceded by `pad` seconds of silence.
fn padded(dir: &Path, name: &str, speech: &Path, pad: f64) -> PathBuf {
    let out = dir.join(format!("{name}-padded.wav"));
    let st = Command::new("sox")
        .arg(speech)
        .arg(&out)
        .args(["pad", &format!("{pad:.3}")])
        .status()
        .expect("sox is installed (scripts/setup.sh installs it)");
    assert!(st.success());
    out
}

fn secs(samples: &[f32]) -> f64 {
    samples.len() as f64 / 48_000.0
}

/// Who joined, who left and state changes (Ringing -> Connected...) as device `a` saw them for
/// `call`, in order. Mute and speaking changes (tones speak all the time) are left out.
fn participant_events(a: &Agent, call: &str) -> Vec<String> {
    let mut state: std::collections::HashMap<String, String> = Default::default();
    let mut out = Vec::new();
    for e in a.events.iter().filter(|e| e["callId"] == call) {
        match e["event"].as_str().unwrap_or("") {
            "remoteParticipantsUpdated" => {
                let mut names = |k: &str| -> Vec<String> {
                    e[k].as_array()
                        .unwrap()
                        .iter()
                        .map(|p| {
                            let n = p["displayName"].as_str().unwrap().to_string();
                            state.insert(n.clone(), p["state"].as_str().unwrap().to_string());
                            n
                        })
                        .collect()
                };
                let added = names("added");
                let removed = names("removed");
                out.push(format!("+{added:?} -{removed:?}"));
            }
            "participantStateChanged" => {
                let n = e["displayName"].as_str().unwrap().to_string();
                let s = e["state"].as_str().unwrap().to_string();
                if state.insert(n.clone(), s.clone()).as_deref() != Some(s.as_str()) {
                    out.push(format!("{n} {s}"));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn four_way_group_call_everyone_hears_the_other_three_and_not_themselves() {
    let dir = tempdir();
    let server = Server::dev(dir.path());
    // One speaker at a time: each file starts with silence long enough for the previous
    // speakers to finish, counted from its own capture start (its join).
    let speech: Vec<PathBuf> = LINES
        .iter()
        .map(|(n, v, t)| speech_wav(dir.path(), n, t, v))
        .collect();
    let lens: Vec<f64> = speech.iter().map(|p| secs(&read_wav(p))).collect();
    let mut agents: Vec<Agent> = Vec::new();
    let mut recs = Vec::new();
    let mut at = 1.5;
    let mut pads = Vec::new();
    for (k, (name, _, _)) in LINES.iter().enumerate() {
        // Dave joins a second later than the others, while the call is running.
        let pad = if k == 3 { at - 1.0 } else { at };
        pads.push(pad);
        at += lens[k] + 0.8;
        let mic = padded(dir.path(), name, &speech[k], pad);
        let rec = dir.path().join(format!("{name}-rec.wav"));
        agents.push(
            Agent::start(
                &server,
                name,
                &[
                    "--mic",
                    &format!("file:{}", mic.display()),
                    "--speaker",
                    &format!("record:{}", rec.display()),
                ],
            )
            .connected(),
        );
        recs.push(rec);
    }
    for a in agents.iter_mut().take(3) {
        let r = a.ok(json!({"cmd": "join", "groupId": GROUP.to_uppercase()}));
        assert_eq!(r["callId"], GROUP);
    }
    for a in agents.iter_mut().take(3) {
        a.wait_state(GROUP, "Connected");
    }
    std::thread::sleep(Duration::from_secs(1));
    agents[3].ok(json!({"cmd": "join", "groupId": GROUP}));
    agents[3].wait_state(GROUP, "Connected");
    for a in agents.iter_mut() {
        a.wait_event(
            "remoteParticipantsUpdated",
            |e| {
                e["callId"] == GROUP
                    && e["added"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["displayName"] == "dave" || p["displayName"] == "alice")
            },
            5,
        );
    }
    let calls = agents[0].ok(json!({"cmd": "calls"}));
    let names: Vec<&str> = calls["calls"][0]["remoteParticipants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob", "carol", "dave"]);
    std::thread::sleep(Duration::from_secs_f64(at + 0.5));
    // Hang up for everyone: the call ends on all four with the documented reason.
    agents[2].ok(json!({"cmd": "hangUp", "callId": GROUP, "forEveryone": true}));
    for a in agents.iter_mut() {
        assert_eq!(a.wait_ended(GROUP), (0, 7500));
    }
    // Events in order on alice: bob, then carol (or both at once), then dave joined.
    let seen = participant_events(&agents[0], GROUP);
    let joined: Vec<String> = seen
        .iter()
        .filter(|s| s.starts_with('+'))
        .cloned()
        .collect();
    assert_eq!(
        joined.last().unwrap(),
        r#"+["dave"] -[]"#,
        "dave came last: {seen:?}"
    );
    for a in agents {
        a.quit();
    }
    let sources: Vec<Vec<f32>> = speech.iter().map(|p| read_wav(p)).collect();
    for (k, rec) in recs.iter().enumerate() {
        let rec = read_wav(rec);
        for (j, src) in sources.iter().enumerate() {
            let (c, _) = speech_correlation(src, &rec);
            eprintln!("{} hears {}: {c:.3}", LINES[k].0, LINES[j].0);
            if j == k {
                assert!(c < 0.3, "{} hears itself ({c:.3})", LINES[k].0);
            } else {
                assert!(
                    c >= 0.6,
                    "{} hears {} only at {c:.3}",
                    LINES[k].0,
                    LINES[j].0
                );
            }
        }
    }
}

fn tone_agent(server: &Server, dir: &Path, name: &str, hz: u32, extra: &[&str]) -> Agent {
    let rec = dir.join(format!("{name}-rec.wav"));
    let mut args = vec![
        "--mic".to_string(),
        format!("tone:{hz}"),
        "--speaker".to_string(),
        format!("record:{}", rec.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Agent::start(server, name, &args).connected()
}

fn rec(dir: &Path, name: &str) -> Vec<f32> {
    read_wav(&dir.join(format!("{name}-rec.wav")))
}

#[test]
fn add_a_third_party_to_a_call_then_remove_them() {
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let mut alice = tone_agent(&server, dir.path(), "alice", 440, &[]);
    let mut bob = tone_agent(&server, dir.path(), "bob", 660, &["--auto-answer"]);
    let mut carol = tone_agent(&server, dir.path(), "carol", 880, &[]);
    let id = alice.call("bob");
    alice.wait_state(&id, "Connected");
    let a0 = alice.device_started("speaker");
    let c0 = carol.device_started("speaker");
    alice.ok(json!({"cmd": "addParticipant", "callId": id, "target": "carol"}));
    let inc = carol.wait_event("incomingCall", |e| e["callId"] == id.as_str(), 5);
    assert_eq!(inc["callerInfo"]["displayName"], "alice");
    assert_eq!(inc["isGroupCall"], true);
    carol.ok(json!({"cmd": "accept", "callId": id}));
    carol.wait_state(&id, "Connected");
    let t_in = unix_micros();
    // Adding someone already in the call, or removing someone who is not, changes nothing.
    let r = bob.cmd(json!({"cmd": "addParticipant", "callId": id, "target": "carol"}));
    assert_eq!(r["error"]["code"], "invalidArgument", "{r}");
    let r = bob.cmd(json!({"cmd": "removeParticipant", "callId": id, "target": "dave"}));
    assert_eq!(r["error"]["code"], "invalidArgument", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("not in"));
    std::thread::sleep(Duration::from_millis(1500));
    let t_both = unix_micros();
    alice.ok(json!({"cmd": "removeParticipant", "callId": id, "target": "carol"}));
    assert_eq!(carol.wait_ended(&id), (0, 5300));
    alice.wait_event(
        "remoteParticipantsUpdated",
        |e| e["removed"].as_array().is_some_and(|r| !r.is_empty()),
        5,
    );
    let t_out = unix_micros();
    std::thread::sleep(Duration::from_millis(1200));
    let t_end = unix_micros();
    // The 1:1 part goes on.
    let calls = alice.ok(json!({"cmd": "calls"}));
    assert_eq!(calls["calls"][0]["state"], "Connected");
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    assert_eq!(alice.wait_ended(&id), (0, 0));
    assert_eq!(
        participant_events(&alice, &id),
        vec![
            r#"+["bob"] -[]"#,
            r#"+["carol"] -[]"#,
            "carol Connected",
            r#"+[] -["carol"]"#
        ]
    );
    bob.wait_event(
        "remoteParticipantsUpdated",
        |e| e["removed"].as_array().is_some_and(|r| !r.is_empty()),
        5,
    );
    let bob_seen = participant_events(&bob, &id);
    assert!(
        bob_seen.ends_with(&[
            r#"+["carol"] -[]"#.to_string(),
            "carol Connected".to_string(),
            r#"+[] -["carol"]"#.to_string()
        ]),
        "{bob_seen:?}"
    );
    alice.quit();
    bob.quit();
    carol.quit();
    let ra = rec(dir.path(), "alice");
    let rc = rec(dir.path(), "carol");
    let three = between(&ra, a0, t_in + 300_000, t_both);
    assert!(
        tone_power(three, 660.0) > 1e-3 && tone_power(three, 880.0) > 1e-3,
        "alice hears bob and carol"
    );
    assert!(
        tone_power(three, 440.0) < 1e-5,
        "alice does not hear herself"
    );
    let carol_heard = between(&rc, c0, t_in + 300_000, t_both);
    assert!(tone_power(carol_heard, 440.0) > 1e-3 && tone_power(carol_heard, 660.0) > 1e-3);
    let after = between(&ra, a0, t_out + 300_000, t_end);
    assert!(tone_power(after, 660.0) > 1e-3, "bob still there");
    assert!(tone_power(after, 880.0) < 1e-5, "carol gone");
}

#[test]
fn a_call_to_several_callees_and_bad_callee_lists() {
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let mut alice = tone_agent(&server, dir.path(), "alice", 440, &[]);
    let mut bob = tone_agent(&server, dir.path(), "bob", 660, &[]);
    let mut carol = tone_agent(&server, dir.path(), "carol", 880, &[]);
    // Bad lists: a clear error, nobody rings.
    for to in [
        json!(["bob", "bob"]),
        json!(["bob", "alice"]),
        json!(["bob", "no such!"]),
    ] {
        let r = alice.ok(json!({"cmd": "call", "to": to}));
        let id = r["callId"].as_str().unwrap().to_string();
        assert_eq!(alice.wait_ended(&id), (400, 0), "{to}");
    }
    let r = alice.cmd(json!({"cmd": "join", "groupId": "not-a-guid"}));
    assert_eq!(r["error"]["code"], "invalidArgument");
    bob.drain(Duration::from_millis(300));
    assert!(
        !bob.events.iter().any(|e| e["event"] == "incomingCall"),
        "nothing rang bob"
    );
    let r = alice.ok(json!({"cmd": "call", "to": ["bob", "carol"]}));
    let id = r["callId"].as_str().unwrap().to_string();
    assert_eq!(bob.wait_incoming(), id);
    assert_eq!(carol.wait_incoming(), id);
    alice.wait_state(&id, "Ringing");
    bob.ok(json!({"cmd": "accept", "callId": id}));
    alice.wait_state(&id, "Connected");
    carol.ok(json!({"cmd": "accept", "callId": id}));
    carol.wait_state(&id, "Connected");
    let b0 = bob.device_started("speaker");
    let t0 = unix_micros();
    std::thread::sleep(Duration::from_millis(1500));
    let t1 = unix_micros();
    // The caller leaves; bob and carol go on.
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    assert_eq!(alice.wait_ended(&id), (0, 0));
    std::thread::sleep(Duration::from_millis(300));
    let calls = bob.ok(json!({"cmd": "calls"}));
    assert_eq!(calls["calls"][0]["state"], "Connected");
    carol.ok(json!({"cmd": "hangUp", "callId": id}));
    bob.wait_event(
        "remoteParticipantsUpdated",
        |e| {
            e["removed"]
                .as_array()
                .is_some_and(|r| r.iter().any(|p| p["displayName"] == "carol"))
        },
        5,
    );
    bob.ok(json!({"cmd": "hangUp", "callId": id}));
    assert_eq!(bob.wait_ended(&id), (0, 0));
    alice.quit();
    bob.quit();
    carol.quit();
    let rb = rec(dir.path(), "bob");
    let heard = between(&rb, b0, t0 + 300_000, t1);
    assert!(tone_power(heard, 440.0) > 1e-3 && tone_power(heard, 880.0) > 1e-3);
    assert!(tone_power(heard, 660.0) < 1e-5);
}

fn assign(server_dir: &Path, number: &str, user: &str) {
    let out = Command::new(BIN)
        .args(["number", "assign", number, user, "--data-dir"])
        .arg(server_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn calls_to_numbers_need_a_caller_id_and_show_it() {
    let dir = tempdir();
    let sdir = dir.path().join("switchboard");
    assign(&sdir, "+15550100", "alice");
    let server = Server::dev(dir.path());
    let mut alice = tone_agent(&server, dir.path(), "alice", 440, &[]);
    let mut bob = tone_agent(&server, dir.path(), "bob", 660, &[]);
    // A number assigned while the switchboard runs rings its owner within a few seconds.
    assign(&sdir, "+15550101", "bob");
    let bad = Command::new(BIN)
        .args(["number", "assign", "555-0101", "bob", "--data-dir"])
        .arg(&sdir)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("E.164"));
    std::thread::sleep(Duration::from_millis(2500));
    let end = |a: &mut Agent, v: Value| -> (u64, u64) {
        let id = a.ok(v)["callId"].as_str().unwrap().to_string();
        a.wait_ended(&id)
    };
    assert_eq!(
        end(&mut alice, json!({"cmd": "call", "to": ["+15550101"]})),
        (400, 7601)
    );
    let e = alice.wait_event(
        "error",
        |e| e["message"].as_str().unwrap().contains("alternateCallerId"),
        5,
    );
    assert!(e["message"].as_str().unwrap().contains("+15550100"), "{e}");
    assert_eq!(
        end(
            &mut alice,
            json!({"cmd": "call", "to": ["+15550101"], "alternateCallerId": "+15550101"})
        ),
        (403, 7602)
    );
    assert_eq!(
        end(
            &mut alice,
            json!({"cmd": "call", "to": ["+15559999"], "alternateCallerId": "+15550100"})
        ),
        (404, 7600)
    );
    bob.drain(Duration::from_millis(200));
    assert!(!bob.events.iter().any(|e| e["event"] == "incomingCall"));
    let id = alice.ok(json!({"cmd": "call", "to": ["+15550101"],
                             "alternateCallerId": {"phoneNumber": "+15550100"}}))["callId"]
        .as_str()
        .unwrap()
        .to_string();
    let inc = bob.wait_event("incomingCall", |e| e["callId"] == id.as_str(), 5);
    assert_eq!(inc["callerInfo"]["identifier"], "4:+15550100");
    assert_eq!(inc["callerInfo"]["phoneNumber"], "+15550100");
    assert_eq!(inc["caller"]["displayName"], "alice");
    bob.ok(json!({"cmd": "accept", "callId": id}));
    alice.wait_state(&id, "Connected");
    let calls = alice.ok(json!({"cmd": "calls"}));
    assert_eq!(
        calls["calls"][0]["remoteParticipants"][0]["identifier"],
        "4:+15550101"
    );
    let a0 = alice.device_started("speaker");
    let t0 = unix_micros();
    std::thread::sleep(Duration::from_millis(1000));
    let t1 = unix_micros();
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    assert_eq!(bob.wait_ended(&id), (0, 0));
    alice.quit();
    bob.quit();
    let ra = rec(dir.path(), "alice");
    let heard = between(&ra, a0, t0 + 300_000, t1);
    assert!(
        tone_power(heard, 660.0) > 1e-3,
        "audio flows on a call by number"
    );
}
