//! Figures for calls between machines (issue "Calls between machines"), on real processes in a
//! network lab (tests/common/netlab.rs: namespaces, a router, NAT and a TCP-only firewall in
//! nftables, coturn), beside loopback and beside aiortc on this host:
//!
//!   cargo bench --bench network          (needs root, like the tests)
//!
//! - media link connect on loopback: sign-in (`welcome`) to the link up (offer, answer, ICE,
//!   DTLS), median; aiortc's offer-to-connected on this host is run side by side when
//!   `DIALTONE_AIORTC_PYTHON` names a Python with aiortc (else the figure from design.md);
//! - sign-in to media-ready over TLS on the lab LAN: agent start to its link up, and sign-in to
//!   link up;
//! - call set-up on the lab LAN: `call` to Connected, callee auto-answers, median;
//! - through TURN over TCP (a host whose network drops UDP): sign-in to the link up via the
//!   relay;
//! - agent CPU in a call, loopback against the lab LAN, from /proc.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::netlab::{Coturn, Host, Lab};
use common::pki::Pki;
use common::*;
use serde_json::{Value, json};

const ANCHORS: &str = "anchors on this host (design.md): aiortc connects in 34-37 ms, Chromium in 21-24 ms on loopback";

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run a short smoke.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 2 } else { 15 };
    let dir = tempdir();
    println!(
        "dialtone between machines ({} mode)",
        if quick { "quick smoke" } else { "full" }
    );
    println!("  {ANCHORS}");

    // 1. Loopback: sign-in to media up, like aiortc's offer to connected.
    let server = Server::dev(dir.path());
    let mut loop_connect = Vec::new();
    for i in 0..rounds {
        let mut a = Agent::start(
            &server,
            &format!("l{i}"),
            &["--mic", "silence", "--speaker", "silence"],
        );
        let (_, welcome_to_media) = media_ready(&mut a);
        loop_connect.push(welcome_to_media);
        a.quit();
    }
    println!(
        "  media link connect on loopback (sign-in to link up: offer, answer, ICE, DTLS), median of {rounds}: {:.1} ms",
        median(&loop_connect)
    );
    match aiortc(rounds) {
        Some(line) => println!(
            "  aiortc on this host, same run, offer to connected (median min max ms): {line}"
        ),
        None => println!("  aiortc: not run (set DIALTONE_AIORTC_PYTHON to a python with aiortc)"),
    }
    let loop_cpu = call_cpu(
        |user, extra| Agent::start(&server, user, extra),
        if quick { 2.0 } else { 10.0 },
    );
    drop(server);

    // 2. The lab: a switchboard host with TLS, a LAN host, a host without UDP, a TURN host.
    let mut lab = Lab::new();
    let (sb, lan, corp, relay) = (
        lab.host("sb"),
        lab.host("lan"),
        lab.natted_host("corp"),
        lab.host("relay"),
    );
    lab.block_udp(&corp);
    let coturn = Coturn::start(&lab, &relay, "bench-turn-secret");
    let pki = Pki::new(dir.path(), "bench", &[&sb.ip.to_string()]);
    let (ca, cert, key) = (
        pki.ca.display().to_string(),
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
    );
    let mut args = vec!["--tls-cert".to_string(), cert, "--tls-key".into(), key];
    args.extend(coturn.serve_args(dir.path()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_with(
        lab.cmd(&sb, BIN),
        dir.path(),
        &format!("{}:0", sb.ip),
        &args,
    );
    let url = format!("wss://{}:{}", sb.ip, server.addr.port());
    let start = |lab: &Lab, host: &Host, user: &str, extra: &[&str]| {
        let token = server.token(user);
        let mut args = vec!["--token", &token, "--ca", &ca];
        args.extend_from_slice(extra);
        Agent::start_with(lab.cmd(host, BIN), &url, None, &args)
    };
    let quiet = ["--mic", "silence", "--speaker", "silence"];

    let (mut spawn_ready, mut signin_ready) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let t0 = Instant::now();
        let mut a = start(&lab, &lan, &format!("s{i}"), &quiet);
        let (at, welcome_to_media) = media_ready(&mut a);
        spawn_ready.push((at - t0).as_secs_f64() * 1000.0);
        signin_ready.push(welcome_to_media);
        a.quit();
    }
    println!(
        "  lab LAN over TLS, agent start to media ready, median of {rounds}: {:.1} ms; sign-in to media ready: {:.1} ms (goal <= 300 ms)",
        median(&spawn_ready),
        median(&signin_ready)
    );

    let mut alice = start(&lab, &lan, "alice", &quiet);
    media_ready(&mut alice);
    let mut bob = start(&lab, &sb, "bob", &[&quiet[..], &["--auto-answer"]].concat());
    media_ready(&mut bob);
    let dials = if quick { 3 } else { 30 };
    let dial = dial_times(&mut alice, &mut bob, "bob", dials);
    alice.quit();
    bob.quit();
    println!(
        "  lab LAN call set-up (call to Connected, callee auto-answers), median of {dials}: {:.1} ms (goal <= 10 ms)",
        median(&dial)
    );

    let mut relay_ready = Vec::new();
    for i in 0..rounds {
        let mut a = start(&lab, &corp, &format!("t{i}"), &quiet);
        let (_, welcome_to_media) = media_ready(&mut a);
        let via = a
            .events
            .iter()
            .rev()
            .find(|e| e["event"] == "mediaStateChanged")
            .map(|e| e["via"].clone())
            .unwrap_or(Value::Null);
        assert_eq!(via, "relay-tcp", "the UDP-less host goes through the relay");
        relay_ready.push(welcome_to_media);
        a.quit();
    }
    println!(
        "  through TURN over TCP (no UDP), sign-in to media ready, median of {rounds}: {:.1} ms (goal <= 1500 ms)",
        median(&relay_ready)
    );

    let lan_cpu = call_cpu(
        |user, extra| start(&lab, &lan, user, extra),
        if quick { 2.0 } else { 10.0 },
    );
    println!(
        "  agent CPU in a call: loopback {loop_cpu:.2} %, lab LAN {lan_cpu:.2} % of one core (ratio {:.2}, goal <= 1.10)",
        lan_cpu / loop_cpu.max(1e-9)
    );
}

/// Waits until the agent's media link is up; returns when that was seen, and the time from its
/// sign-in (`connectionStateChanged` Connected) to it, in ms.
fn media_ready(a: &mut Agent) -> (Instant, f64) {
    a.wait_event(
        "connectionStateChanged",
        |e| e["newState"] == "Connected",
        15,
    );
    let signed_in = Instant::now();
    a.wait_event("mediaStateChanged", |e| e["state"] == "Connected", 15);
    let at = Instant::now();
    (at, (at - signed_in).as_secs_f64() * 1000.0)
}

/// CPU of the calling agent (tone mic, silent speaker) over a call of `secs`, % of one core.
fn call_cpu(start: impl Fn(&str, &[&str]) -> Agent, secs: f64) -> f64 {
    let mut a = start("cpua", &["--mic", "tone:440", "--speaker", "silence"]);
    let mut b = start(
        "cpub",
        &["--mic", "tone:660", "--speaker", "silence", "--auto-answer"],
    );
    media_ready(&mut a);
    media_ready(&mut b);
    let id = a.call("cpub");
    a.wait_state(&id, "Connected");
    std::thread::sleep(Duration::from_millis(500));
    let c0 = cpu_ticks(a.pid());
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let pct =
        (cpu_ticks(a.pid()) - c0) as f64 / ticks_per_sec() / t0.elapsed().as_secs_f64() * 100.0;
    a.ok(json!({"cmd": "hangUp", "callId": id}));
    a.wait_ended(&id);
    a.quit();
    b.quit();
    pct
}

/// aiortc's connect time on this host, if a Python with aiortc is named.
fn aiortc(rounds: usize) -> Option<String> {
    let py = std::env::var("DIALTONE_AIORTC_PYTHON").ok()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/anchors/aiortc_connect.py");
    let out = Command::new(py)
        .arg(script)
        .arg(rounds.max(3).to_string())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
