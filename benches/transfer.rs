//! Blind transfer figures, on real processes over loopback:
//!
//!   cargo bench --bench transfer
//!
//! alice (tone 440 Hz) talks to bob; alice transfers bob to carol (tone 880 Hz, auto-answers);
//! bob auto-accepts. Measured on the recordings, against one clock (each device reports the
//! unix time of its sample 0):
//! - command to audio: from alice's transfer command to the first of bob's audio in carol's
//!   speaker (goal: median <= 50 ms);
//! - the gap bob hears: the longest silence in bob's speaker around the switch from alice's tone
//!   to carol's (goal: <= 100 ms beyond carol's answer; carol answers at once here).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 2 } else { 12 };
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let (rb, rc) = (dir.path().join("bob.wav"), dir.path().join("carol.wav"));
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
            "tone:660",
            "--speaker",
            &format!("record:{}", rb.display()),
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
            "tone:880",
            "--speaker",
            &format!("record:{}", rc.display()),
            "--auto-answer",
        ],
    )
    .connected();
    std::thread::sleep(Duration::from_millis(500));
    let (b0, c0) = (
        bob.device_started("speaker"),
        carol.device_started("speaker"),
    );
    let mut marks = Vec::new();
    for _ in 0..rounds {
        let id = alice.call("bob");
        alice.wait_state(&id, "Connected");
        std::thread::sleep(Duration::from_millis(600));
        let t_cmd = unix_micros();
        alice.ok(json!({"cmd": "transfer", "callId": id, "targetParticipant": "carol"}));
        let acc = bob.wait_event("transferAccepted", |e| e["callId"] == id, 10);
        let leg = acc["targetCallId"].as_str().unwrap().to_string();
        std::thread::sleep(Duration::from_millis(600));
        carol.ok(json!({"cmd": "hangUp", "callId": leg}));
        bob.wait_ended(&leg);
        marks.push(t_cmd);
        std::thread::sleep(Duration::from_millis(300));
    }
    for a in [alice, bob, carol] {
        a.quit();
    }
    let (bob_rec, carol_rec) = (read_wav(&rb), read_wav(&rc));
    let (mut to_audio, mut gaps) = (Vec::new(), Vec::new());
    for t in marks {
        to_audio.push(ms_to_sound(&carol_rec, c0, t));
        // The longest quiet run at bob from 100 ms before the command to 500 ms after it.
        gaps.push(longest_gap_ms(
            &bob_rec,
            b0,
            t.saturating_sub(100_000),
            t + 500_000,
        ));
    }
    println!(
        "dialtone blind transfer figures ({} mode, {rounds} transfers)",
        if quick { "quick smoke" } else { "full" }
    );
    println!(
        "  transfer command to the transferee's audio at the target: median {:.0} ms, max {:.0} ms (goal: median <= 50 ms)",
        median(&to_audio),
        to_audio.iter().cloned().fold(f64::MIN, f64::max)
    );
    println!(
        "  longest gap the transferee hears around the switch: median {:.0} ms, max {:.0} ms (goal: <= 100 ms beyond the answer)",
        median(&gaps),
        gaps.iter().cloned().fold(f64::MIN, f64::max)
    );
}
