//! Calls over a lossy link, with real processes in a network lab: bob's host loses 15 % of its
//! packets both ways (media and signaling alike), and each call is placed right after bob signs
//! in, when the media link is still being built. Every call must carry audio both ways for its
//! whole length, measured in one-second windows: none may stay silent while shown Connected.

mod common;

use std::time::Duration;

use common::netlab::Lab;
use common::pki::Pki;
use common::{Agent, BIN, Server, between, read_wav, tempdir, tone_power, unix_micros};
use serde_json::json;

const ALICE_HZ: u32 = 440;
const BOB_HZ: u32 = 660;
const CALLS: usize = 10;
const TALK: Duration = Duration::from_secs(4);

/// The tone's power in each whole second of `rec` from `from_us` to `to_us`.
fn per_second(rec: &[f32], start_us: u64, from_us: u64, to_us: u64, hz: u32) -> Vec<f32> {
    (from_us..to_us)
        .step_by(1_000_000)
        .take_while(|t| t + 1_000_000 <= to_us)
        .map(|t| tone_power(between(rec, start_us, t, t + 1_000_000), hz as f32))
        .collect()
}

#[test]
fn ten_calls_placed_right_after_sign_in_over_a_15_percent_loss_link_all_carry_audio() {
    let mut lab = Lab::new();
    let s = lab.host("sb");
    let a = lab.host("a");
    let b = lab.host("b");
    let dir = tempdir();
    let pki = Pki::new(dir.path(), "lab", &[&s.ip.to_string()]);
    let tls = pki.serve_args();
    let args: Vec<&str> = tls.iter().map(String::as_str).collect();
    let server = Server::start_with(lab.cmd(&s, BIN), dir.path(), &format!("{}:0", s.ip), &args);
    let url = format!("wss://{}:{}", s.ip, server.addr.port());
    let alice_rec = dir.path().join("alice.wav");
    let mut alice = Agent::on_host(
        &lab,
        &a,
        &server,
        &url,
        &pki.ca,
        "alice",
        ALICE_HZ,
        &alice_rec,
        &[],
    );
    lab.lossy(&b, 15);
    let mut failures = Vec::new();
    for i in 0..CALLS {
        let bob_rec = dir.path().join(format!("bob{i}.wav"));
        let mut bob = Agent::on_host(
            &lab,
            &b,
            &server,
            &url,
            &pki.ca,
            "bob",
            BOB_HZ,
            &bob_rec,
            &["--auto-answer"],
        );
        let id = alice.call("bob");
        alice.wait_state(&id, "Connected");
        bob.wait_state(&id, "Connected");
        let connected_us = unix_micros();
        std::thread::sleep(TALK);
        let end_us = unix_micros();
        alice.ok(json!({"cmd": "hangUp", "callId": id}));
        assert_eq!(alice.wait_ended(&id), (0, 0), "call {i}");
        assert_eq!(bob.wait_ended(&id), (0, 0), "call {i}");
        let alice_start = alice.device_started("speaker");
        let bob_start = bob.device_started("speaker");
        bob.quit();
        // From half a second after Connected (the first packets' way through the jitter
        // buffer) to the hang-up.
        let from = connected_us + 500_000;
        let alice_hears = per_second(&read_wav(&alice_rec), alice_start, from, end_us, BOB_HZ);
        let bob_hears = per_second(&read_wav(&bob_rec), bob_start, from, end_us, ALICE_HZ);
        eprintln!("call {i}: alice hears {alice_hears:.4?}, bob hears {bob_hears:.4?}");
        let silent = |v: &[f32]| v.len() < 3 || v.iter().any(|p| *p < 1e-3);
        if silent(&alice_hears) || silent(&bob_hears) {
            failures.push(i);
        }
    }
    assert!(
        failures.is_empty(),
        "calls {failures:?} of {CALLS} had a silent second while Connected"
    );
}
