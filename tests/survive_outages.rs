//! Calls that survive a bad network, with real processes on separate hosts of a network lab
//! (namespaces, a router, nftables cutting a host off): a short outage is survived on both
//! sides with audio back at once, a longer one ends the call for the other party with 410, and
//! a frozen agent is noticed and given up. Each test makes its own lab and removes it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::netlab::{Host, Lab};
use common::pki::Pki;
use common::{Agent, BIN, Server, read_wav, tempdir, tone_power, unix_micros};
use serde_json::{Value, json};

const ALICE_HZ: f32 = 440.0;
const BOB_HZ: f32 = 660.0;

struct Setup {
    lab: Lab,
    a: Host,
    server: Server,
    alice: Agent,
    bob: Agent,
    call: String,
    /// When each agent's speaker (a recording) started, unix µs.
    rec_start: (u64, u64),
    dir: tempfile::TempDir,
}

/// A switchboard (TLS, `extra` flags) on its own host; alice on host A calls bob on host B, who
/// answers; both wait for Connected.
fn setup(extra: &[&str]) -> Setup {
    setup_on(false, extra)
}

/// Like [`setup`], with alice's host on a LAN behind a NAT router when `a_on_lan`.
fn setup_on(a_on_lan: bool, extra: &[&str]) -> Setup {
    let mut lab = Lab::new();
    let s = lab.host("sb");
    let a = if a_on_lan {
        lab.natted_host("a")
    } else {
        lab.host("a")
    };
    let b = lab.host("b");
    let dir = tempdir();
    let pki = Pki::new(dir.path(), "lab", &[&s.ip.to_string()]);
    let tls = pki.serve_args();
    let mut args: Vec<&str> = tls.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    let server = Server::start_with(lab.cmd(&s, BIN), dir.path(), &format!("{}:0", s.ip), &args);
    let url = format!("wss://{}:{}", s.ip, server.addr.port());
    let start = |host: &Host, user: &str, hz: f32, rec: &Path, more: &[&str]| {
        Agent::on_host(
            &lab, host, &server, &url, &pki.ca, user, hz as u32, rec, more,
        )
    };
    let mut alice = start(&a, "alice", ALICE_HZ, &dir.path().join("alice.wav"), &[]);
    let mut bob = start(
        &b,
        "bob",
        BOB_HZ,
        &dir.path().join("bob.wav"),
        &["--auto-answer"],
    );
    let call = alice.call("bob");
    alice.wait_state(&call, "Connected");
    bob.wait_state(&call, "Connected");
    let rec_start = (
        alice.device_started("speaker"),
        bob.device_started("speaker"),
    );
    Setup {
        lab,
        a,
        server,
        alice,
        bob,
        call,
        rec_start,
        dir,
    }
}

/// The tone at `hz` is clearly there in `rec` between `from_us` and `to_us` (unix µs).
fn tone_between(rec: &[f32], start_us: u64, from_us: u64, to_us: u64, hz: f32) -> f32 {
    let window = common::between(rec, start_us, from_us, to_us);
    assert!(
        window.len() > 4_800,
        "the recording does not cover the window ({} samples)",
        window.len()
    );
    tone_power(window, hz)
}

/// Waits for the recording to reach `until_us` and reads it.
fn recording(path: &Path, start_us: u64, until_us: u64) -> Vec<f32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = read_wav(path);
        let end_us = start_us + r.len() as u64 * 1_000_000 / 48_000;
        if end_us >= until_us || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The call is still up on both sides: neither ever showed it ending.
fn never_ended(s: &Setup, call: &str) {
    for agent in [&s.alice, &s.bob] {
        assert!(
            !agent
                .states(call)
                .iter()
                .any(|st| st == "Disconnected" || st == "Disconnecting"),
            "{}: {:?}",
            agent.name,
            agent.states(call)
        );
    }
}

fn reconnect_diag(value: &'static str) -> impl Fn(&Value) -> bool {
    move |e: &Value| e["diagnostic"] == "networkReconnect" && e["value"] == value
}

#[test]
fn a_five_second_outage_mid_call_is_survived_with_audio_back_within_a_second() {
    let mut s = setup(&[]);
    std::thread::sleep(Duration::from_secs(2));
    let cut_at = Instant::now();
    let cut_us = unix_micros();
    s.lab.cut(&s.a);
    // Alice's agent notices within 3 s; bob is told alice is reconnecting.
    let noticed = s
        .alice
        .event_time("networkDiagnosticChanged", reconnect_diag("Bad"), 10);
    let noticed_after = noticed.saturating_duration_since(cut_at);
    eprintln!("alice raised networkReconnect {noticed_after:?} after the cut");
    assert!(
        noticed_after <= Duration::from_millis(3_500),
        "networkReconnect came {noticed_after:?} after the cut"
    );
    let call = s.call.clone();
    s.bob.wait_event(
        "participantStateChanged",
        |e| e["callId"] == call && e["isReconnecting"] == true,
        10,
    );
    std::thread::sleep(Duration::from_secs(5).saturating_sub(cut_at.elapsed()));
    s.lab.reconnect(&s.a);
    let back_us = unix_micros();
    eprintln!("link back {} ms after the cut", (back_us - cut_us) / 1000);
    s.alice
        .wait_event("networkDiagnosticChanged", reconnect_diag("Good"), 15);
    s.bob.wait_event(
        "participantStateChanged",
        |e| e["callId"] == call && e["isReconnecting"] == false,
        15,
    );
    // The same call on both sides, never ended.
    never_ended(&s, &call);
    // Audio both ways from 1 s after the link came back (measured once the call is over and
    // the recordings are final).
    let (from, to) = (back_us + 1_000_000, back_us + 3_000_000);
    std::thread::sleep(Duration::from_micros(
        (to + 500_000).saturating_sub(unix_micros()),
    ));
    s.alice.ok(json!({"cmd": "hangUp", "callId": call}));
    assert_eq!(s.alice.wait_ended(&call), (0, 0));
    assert_eq!(s.bob.wait_ended(&call), (0, 0));
    let ra = recording(&s.dir.path().join("alice.wav"), s.rec_start.0, to);
    let rb = recording(&s.dir.path().join("bob.wav"), s.rec_start.1, to);
    let alice_hears = tone_between(&ra, s.rec_start.0, from, to, BOB_HZ);
    let bob_hears = tone_between(&rb, s.rec_start.1, from, to, ALICE_HZ);
    eprintln!("after the outage: alice hears {alice_hears:.2e}, bob hears {bob_hears:.2e}");
    assert!(
        alice_hears > 1e-3,
        "alice hears bob again: {alice_hears:.2e}"
    );
    assert!(bob_hears > 1e-3, "bob hears alice again: {bob_hears:.2e}");
    let _ = &s.server;
}

/// When `hz` comes back in `rec` after `from_us`, as µs after it: the first 200 ms window with
/// the tone from which on at least 90 % of the windows up to `to_us` have it (a loaded machine
/// may starve the speaker for a moment; a link that is not back has none).
fn heard_from(rec: &[f32], start_us: u64, from_us: u64, to_us: u64, hz: f32) -> Option<u64> {
    const STEP: u64 = 200_000;
    let windows: Vec<bool> = (from_us..to_us)
        .step_by(STEP as usize)
        .take_while(|t| t + STEP <= to_us)
        .map(|t| tone_power(common::between(rec, start_us, t, t + STEP), hz) > 1e-3)
        .collect();
    (0..windows.len())
        .find(|&k| {
            let rest = &windows[k..];
            windows[k] && rest.iter().filter(|h| **h).count() * 10 >= rest.len() * 9
        })
        .map(|k| k as u64 * STEP)
}

#[test]
fn a_new_address_mid_call_moves_the_call_to_it_with_audio_back() {
    let mut s = setup_on(true, &[]);
    std::thread::sleep(Duration::from_secs(2));
    let old_ip = s.a.ip;
    let moved_us = unix_micros();
    let moved_at = Instant::now();
    s.a = s.lab.readdress(&s.a);
    eprintln!("alice's host moved from {old_ip} to {}", s.a.ip);
    // Alice's agent sees the address go and reconnects from the new one, resuming its place.
    s.alice
        .wait_event("networkDiagnosticChanged", reconnect_diag("Good"), 15);
    eprintln!("alice resumed {:?} after the move", moved_at.elapsed());
    let call = s.call.clone();
    let to = moved_us + 5_000_000;
    std::thread::sleep(Duration::from_micros(
        (to + 500_000).saturating_sub(unix_micros()),
    ));
    never_ended(&s, &call);
    s.alice.ok(json!({"cmd": "hangUp", "callId": call}));
    assert_eq!(
        s.alice.wait_ended(&call),
        (0, 0),
        "the same call, ended by us"
    );
    assert_eq!(s.bob.wait_ended(&call), (0, 0));
    let ra = recording(&s.dir.path().join("alice.wav"), s.rec_start.0, to);
    let rb = recording(&s.dir.path().join("bob.wav"), s.rec_start.1, to);
    let alice_back = heard_from(&ra, s.rec_start.0, moved_us, to, BOB_HZ);
    let bob_back = heard_from(&rb, s.rec_start.1, moved_us, to, ALICE_HZ);
    eprintln!(
        "audio back after the move: alice hears bob from {:?} ms, bob hears alice from {:?} ms",
        alice_back.map(|u| u / 1000),
        bob_back.map(|u| u / 1000)
    );
    // The address is polled every 500 ms; reconnecting, resuming and a new media link follow.
    for (who, back) in [("alice", alice_back), ("bob", bob_back)] {
        assert!(
            back.is_some_and(|u| u <= 3_000_000),
            "{who} hears the other steadily only from {back:?} µs after the move"
        );
    }
    let _ = &s.server;
}

#[test]
fn an_outage_longer_than_the_window_ends_the_call_for_the_other_party_with_410() {
    let mut s = setup(&["--reconnect-window", "6"]);
    let cut_at = Instant::now();
    s.lab.cut(&s.a);
    assert_eq!(s.bob.wait_ended(&s.call.clone()), (410, 0));
    let took = cut_at.elapsed();
    eprintln!("bob's call ended {took:?} after alice was cut off (window 6 s)");
    assert!(
        took >= Duration::from_secs(5) && took <= Duration::from_secs(6 + 5),
        "ended after {took:?}"
    );
    // Alice's side gives up too, and signs in anew once the network is back.
    assert_eq!(s.alice.wait_ended(&s.call.clone()), (503, 0));
    s.lab.reconnect(&s.a);
    s.alice.wait_event(
        "connectionStateChanged",
        |e| e["newState"] == "Connected",
        20,
    );
}

#[test]
fn a_frozen_agent_is_given_up_within_the_window_plus_5_s() {
    let mut s = setup(&[]);
    let pid = s.alice.pid();
    let stop = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    let stopped_at = Instant::now();
    stop("-STOP");
    let call = s.call.clone();
    s.bob.wait_event(
        "participantStateChanged",
        |e| e["callId"] == call && e["isReconnecting"] == true,
        10,
    );
    let noticed = stopped_at.elapsed();
    let ended = s.bob.wait_event("callEnded", |e| e["callId"] == call, 40);
    let ended = (
        ended["callEndReason"]["code"].as_u64().unwrap_or(0),
        ended["callEndReason"]["subCode"].as_u64().unwrap_or(0),
    );
    let took = stopped_at.elapsed();
    eprintln!("bob saw alice reconnecting after {noticed:?}, the call ended after {took:?}");
    // Continue alice whatever happens next, so that the test's cleanup can stop her.
    std::thread::sleep(Duration::from_secs(40).saturating_sub(stopped_at.elapsed()));
    stop("-CONT");
    assert_eq!(ended, (410, 0));
    assert!(
        noticed <= Duration::from_secs(6),
        "noticed after {noticed:?}"
    );
    assert!(took <= Duration::from_secs(35), "ended after {took:?}");
    // Alice, thawed, finds her place gone and ends the call on her side too.
    assert_eq!(s.alice.wait_ended(&call), (503, 0));
}
