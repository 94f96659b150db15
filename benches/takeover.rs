//! Take-over figures, on real processes over loopback:
//!
//!   cargo bench --bench takeover
//!
//! alice talks continuously (a 440 Hz tone on both her devices) to bob (880 Hz, auto-answers).
//! The laptop takes the call over from the desk. Measured on the recordings against one clock:
//! - the gap bob hears: the longest silence in bob's speaker around the move (goal <= 100 ms);
//! - command to media: from the laptop's activeCallTransfer to the first of bob's audio in the
//!   laptop's speaker (goal <= 50 ms).

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
    let (rb, rl) = (dir.path().join("bob.wav"), dir.path().join("laptop.wav"));
    let mut desk = Agent::start(
        &server,
        "alice",
        &[
            "--device-name",
            "desk",
            "--mic",
            "tone:440",
            "--speaker",
            "silence",
        ],
    )
    .connected();
    let mut laptop = Agent::start(
        &server,
        "alice",
        &[
            "--device-name",
            "laptop",
            "--mic",
            "tone:440",
            "--speaker",
            &format!("record:{}", rl.display()),
        ],
    )
    .connected();
    let mut bob = Agent::start(
        &server,
        "bob",
        &[
            "--mic",
            "tone:880",
            "--speaker",
            &format!("record:{}", rb.display()),
            "--auto-answer",
        ],
    )
    .connected();
    std::thread::sleep(Duration::from_millis(500));
    let (b0, l0) = (
        bob.device_started("speaker"),
        laptop.device_started("speaker"),
    );
    let mut marks = Vec::new();
    for _ in 0..rounds {
        let id = desk.call("bob");
        desk.wait_state(&id, "Connected");
        laptop.wait_event(
            "activeCallsUpdated",
            |e| e["activeCallDetails"]["callId"] == id.as_str(),
            10,
        );
        std::thread::sleep(Duration::from_millis(600));
        let t_cmd = unix_micros();
        laptop.ok(json!({"cmd": "activeCallTransfer", "isTransfer": true}));
        laptop.wait_state(&id, "Connected");
        std::thread::sleep(Duration::from_millis(600));
        bob.ok(json!({"cmd": "hangUp", "callId": id}));
        laptop.wait_ended(&id);
        desk.wait_ended(&id);
        marks.push(t_cmd);
        std::thread::sleep(Duration::from_millis(300));
    }
    for a in [desk, laptop, bob] {
        a.quit();
    }
    let (bob_rec, laptop_rec) = (read_wav(&rb), read_wav(&rl));
    let (mut to_media, mut gaps) = (Vec::new(), Vec::new());
    for t in marks {
        to_media.push(ms_to_sound(&laptop_rec, l0, t));
        gaps.push(longest_gap_ms(
            &bob_rec,
            b0,
            t.saturating_sub(100_000),
            t + 500_000,
        ));
    }
    let max = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max);
    println!(
        "dialtone take-over figures ({} mode, {rounds} moves)",
        if quick { "quick smoke" } else { "full" }
    );
    println!(
        "  longest gap the remote party hears: median {:.0} ms, max {:.0} ms (goal <= 100 ms)",
        median(&gaps),
        max(&gaps)
    );
    println!(
        "  command to the remote party's audio on the new device: median {:.0} ms, max {:.0} ms (goal <= 50 ms)",
        median(&to_media),
        max(&to_media)
    );
}
