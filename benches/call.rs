//! Figures for the 1:1 call targets, measured on real processes over loopback:
//!
//!   cargo bench --bench call
//!
//! - dial to Connected (callee auto-answers): median over repeated calls, as seen by a script
//!   driving the agent (command line in, event line out);
//! - mouth-to-ear: chirps (the pattern of shared/tools/gen_signal.py) on alice's `file:` mic,
//!   found in bob's `record:` speaker; both devices report the unix time of their sample 0, so
//!   the delay is measured against one clock;
//! - CPU of each agent and of the switchboard during a call, from /proc (utime+stime);
//! - agent peak RSS (VmHWM).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const ANCHOR: &str = "baresip 1.0 anchors: dial 7-9 ms, 1.5-2.1 % CPU/endpoint, RSS 10.6-10.9 MB, mouth-to-ear 126 ms";

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run a short smoke.
    let quick = !std::env::args().any(|a| a == "--bench");
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let quiet = ["--mic", "silence", "--speaker", "silence"];

    // 1. Dial to Connected.
    let mut alice = Agent::start(&server, "alice", &quiet).connected();
    let mut bob =
        Agent::start(&server, "bob", &[&quiet[..], &["--auto-answer"]].concat()).connected();
    std::thread::sleep(Duration::from_millis(500)); // media legs warm
    let rounds = if quick { 3 } else { 30 };
    let dial = dial_times(&mut alice, &mut bob, "bob", rounds);
    alice.quit();
    bob.quit();

    // 2. Mouth-to-ear and CPU in a call.
    let call_secs = if quick { 3.0 } else { 12.0 };
    let src = dir.path().join("chirps.wav");
    chirp_wav(&src, call_secs);
    let rec = dir.path().join("rec.wav");
    let mut alice = Agent::start(
        &server,
        "alice",
        &[
            "--mic",
            &format!("file:{}", src.display()),
            "--speaker",
            "silence",
        ],
    )
    .connected();
    let mut bob = Agent::start(
        &server,
        "bob",
        &[
            "--mic",
            "tone:300",
            "--speaker",
            &format!("record:{}", rec.display()),
            "--auto-answer",
        ],
    )
    .connected();
    let rec_start = bob.device_started("speaker");
    let id = alice.call("bob");
    alice.wait_state(&id, "Connected");
    let mic_start = alice.device_started("microphone");
    let (a0, b0, s0) = (
        cpu_ticks(alice.pid()),
        cpu_ticks(bob.pid()),
        cpu_ticks(server.pid()),
    );
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(call_secs + 0.5));
    let wall = t0.elapsed().as_secs_f64();
    let pct = |d: u64| d as f64 / ticks_per_sec() / wall * 100.0;
    let (a_cpu, b_cpu, s_cpu) = (
        pct(cpu_ticks(alice.pid()) - a0),
        pct(cpu_ticks(bob.pid()) - b0),
        pct(cpu_ticks(server.pid()) - s0),
    );
    let (a_rss, b_rss) = (vm_hwm_mb(alice.pid()), vm_hwm_mb(bob.pid()));
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    bob.wait_ended(&id);
    alice.quit();
    bob.quit();
    let source = read_wav(&src);
    let recorded = read_wav(&rec);
    let (corr, lag) = best_alignment(&source, &recorded);
    let arrival_us = rec_start as f64 + lag as f64 / 48_000.0 * 1e6;
    let m2e_ms = (arrival_us - mic_start as f64) / 1000.0;

    println!(
        "dialtone 1:1 call figures ({} mode)",
        if quick { "quick smoke" } else { "full" }
    );
    println!("  {ANCHOR}");
    println!(
        "  dial to Connected, median of {rounds}: {:.1} ms (goal <= 10 ms)",
        median(&dial)
    );
    println!("  mouth-to-ear: {m2e_ms:.1} ms (goal <= 60 ms; alignment correlation {corr:.3})");
    println!("  CPU in a call: alice {a_cpu:.2} %, bob {b_cpu:.2} % of one core (goal <= 2 %)");
    println!(
        "  switchboard CPU for one forwarded call (2 legs, both directions): {s_cpu:.2} % of one core"
    );
    println!("  agent peak RSS: alice {a_rss:.1} MB, bob {b_rss:.1} MB (goal <= 30 MB)");
}
