//! Figures for the group-call targets, measured on real processes over loopback:
//!
//!   cargo bench --bench group
//!
//! Ten agents (every one a real `dialtone agent` with WebRTC and Opus) join one group call by
//! GUID, all talking at once (a chirp train on the first, tones on the rest), the worst case for
//! the relay's loudest-few forwarding. Reported, against a 1:1 call measured the same way:
//! - the switchboard's CPU, in all and per participant (goal: under 10 % of one core for 10);
//! - each agent's CPU, and the ratio of the median to the 1:1 figure (goal: at most 1.5x);
//! - mouth-to-ear through the switchboard (chirps found in a listener's `record:` file, both
//!   ends timed on one clock).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const GROUP: &str = "7d3f2c1a-9b8e-4f6d-a5c4-3b2a1f0e9d8c";

fn pct(ticks: u64, wall: f64) -> f64 {
    ticks as f64 / ticks_per_sec() / wall * 100.0
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run a short smoke.
    let quick = !std::env::args().any(|a| a == "--bench");
    let parties = if quick { 4 } else { 10 };
    let call_secs = if quick { 3.0 } else { 12.0 };
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let src = dir.path().join("chirps.wav");
    chirp_wav(&src, call_secs);
    let chirps = format!("file:{}", src.display());

    // 1. The 1:1 baseline: the same devices, two parties.
    let mut alice = Agent::start(
        &server,
        "alice",
        &["--mic", &chirps, "--speaker", "silence"],
    )
    .connected();
    let mut bob = Agent::start(
        &server,
        "bob",
        &["--mic", "tone:300", "--speaker", "silence", "--auto-answer"],
    )
    .connected();
    let id = alice.call("bob");
    alice.wait_state(&id, "Connected");
    std::thread::sleep(Duration::from_millis(300));
    let (a0, b0, s0) = (
        cpu_ticks(alice.pid()),
        cpu_ticks(bob.pid()),
        cpu_ticks(server.pid()),
    );
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(call_secs));
    let wall = t0.elapsed().as_secs_f64();
    let one_to_one = [
        pct(cpu_ticks(alice.pid()) - a0, wall),
        pct(cpu_ticks(bob.pid()) - b0, wall),
    ];
    let server_1to1 = pct(cpu_ticks(server.pid()) - s0, wall);
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    bob.wait_ended(&id);
    alice.quit();
    bob.quit();

    // 2. The group call. The chirp talker's file starts with silence as long as the CPU window:
    // with nine tones going on, the relay rightly never picks a faint, bursty talker. After the
    // window the others mute, the chirps start, and they reach the listener.
    let group_src = dir.path().join("chirps-late.wav");
    {
        let chirp = read_wav(&src);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&group_src, spec).unwrap();
        let pad = ((call_secs + 3.0) * 48_000.0) as usize;
        for v in std::iter::repeat_n(0.0f32, pad).chain(chirp) {
            w.write_sample((v * 32767.0).clamp(-32768.0, 32767.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
    }
    let late_chirps = format!("file:{}", group_src.display());
    let rec = dir.path().join("listener.wav");
    let mut agents = Vec::new();
    for k in 0..parties {
        let name = format!("p{k}");
        let mic = if k == 0 {
            late_chirps.clone()
        } else {
            // Above the chirps' band, so the listener's recording still aligns with them.
            format!("tone:{}", 4000 + 150 * k)
        };
        let speaker = if k == 1 {
            format!("record:{}", rec.display())
        } else {
            "silence".to_string()
        };
        agents.push(
            Agent::start(&server, &name, &["--mic", &mic, "--speaker", &speaker]).connected(),
        );
    }
    let rec_start = agents[1].device_started("speaker");
    for a in agents.iter_mut() {
        a.ok(json!({"cmd": "join", "groupId": GROUP}));
    }
    for a in agents.iter_mut() {
        a.wait_state(GROUP, "Connected");
    }
    let mic_start = agents[0].device_started("microphone");
    let mic_started = Instant::now();
    // Everyone sees everyone before the measurement starts.
    for a in agents.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = a.ok(json!({"cmd": "calls"}));
            let n = r["calls"][0]["remoteParticipants"]
                .as_array()
                .map_or(0, |v| v.len());
            if n == parties - 1 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let before: Vec<u64> = agents.iter().map(|a| cpu_ticks(a.pid())).collect();
    let s0 = cpu_ticks(server.pid());
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(call_secs));
    let wall = t0.elapsed().as_secs_f64();
    let cpu: Vec<f64> = agents
        .iter()
        .zip(&before)
        .map(|(a, b)| pct(cpu_ticks(a.pid()) - b, wall))
        .collect();
    let server_group = pct(cpu_ticks(server.pid()) - s0, wall);
    // Mouth-to-ear: everyone but the chirp talker falls silent, then its chirps play.
    for a in agents.iter_mut().skip(2) {
        a.ok(json!({"cmd": "mute", "callId": GROUP}));
    }
    let left = (call_secs + 3.0 + call_secs + 0.5) - mic_started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64(left.max(0.0)));
    agents[0].ok(json!({"cmd": "hangUp", "callId": GROUP, "forEveryone": true}));
    for a in agents.iter_mut() {
        a.wait_ended(GROUP);
    }
    for a in agents {
        a.quit();
    }
    let source = read_wav(&group_src);
    let recorded = read_wav(&rec);
    let (corr, lag) = best_alignment(&source, &recorded);
    let arrival_us = rec_start as f64 + lag as f64 / 48_000.0 * 1e6;
    let m2e_ms = (arrival_us - mic_start as f64) / 1000.0;

    let mut sorted = cpu.clone();
    sorted.sort_by(f64::total_cmp);
    let base = median(&one_to_one);
    println!(
        "dialtone group call figures ({} mode, {parties} parties, all talking)",
        if quick { "quick smoke" } else { "full" }
    );
    println!(
        "  switchboard: {server_group:.2} % of one core in all, {:.2} % per participant (goal: < 10 % in all for 10); 1:1 call: {server_1to1:.2} %",
        server_group / parties as f64
    );
    println!(
        "  agent CPU: median {:.2} %, min {:.2} %, max {:.2} % of one core; 1:1 call: {:.2} % / {:.2} %",
        median(&cpu),
        sorted[0],
        sorted[sorted.len() - 1],
        one_to_one[0],
        one_to_one[1]
    );
    println!(
        "  agent CPU ratio group / 1:1 (medians): {:.2}x (goal <= 1.5x); worst agent {:.2}x",
        median(&cpu) / base,
        sorted[sorted.len() - 1] / base
    );
    println!(
        "  mouth-to-ear through the switchboard: {m2e_ms:.1} ms (alignment correlation {corr:.3})"
    );
    println!(
        "  per agent: {}",
        cpu.iter()
            .map(|c| format!("{c:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}
