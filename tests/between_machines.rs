//! Calls between machines: a switchboard and agents on separate hosts of a network lab (network
//! namespaces joined by a router, NATs and firewalls in nftables, a real coturn), real processes,
//! audio measured by spectrum. Each test makes its own lab and removes it, also when it fails.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::netlab::{Coturn, Host, Lab};
use common::pki::Pki;
use common::{Agent, BIN, Server, read_wav, tempdir, tone_power};
use serde_json::json;

/// How long a call carries audio before it is measured.
const TALK: Duration = Duration::from_secs(4);

/// A CA and a switchboard certificate for the address devices use.
fn pki(dir: &Path, ip: impl Into<IpAddr>) -> Pki {
    Pki::new(dir, "lab", &[&ip.into().to_string()])
}

/// A switchboard with TLS on `host`, listening on its own address; `extra` flags added.
fn switchboard(lab: &Lab, host: &Host, dir: &Path, pki: &Pki, extra: &[&str]) -> Server {
    let tls = pki.serve_args();
    let mut args: Vec<&str> = tls.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    Server::start_with(lab.cmd(host, BIN), dir, &format!("{}:0", host.ip), &args)
}

fn wss(server: &Server, ip: impl Into<IpAddr>) -> String {
    format!("wss://{}:{}", ip.into(), server.addr.port())
}

/// An agent on `host` signed in as `user`, its microphone a tone, its speaker recorded.
#[allow(clippy::too_many_arguments)]
fn agent(
    lab: &Lab,
    host: &Host,
    server: &Server,
    url: &str,
    pki: &Pki,
    user: &str,
    hz: u32,
    rec: &Path,
    extra: &[&str],
) -> Agent {
    Agent::on_host(lab, host, server, url, &pki.ca, user, hz, rec, extra)
}

/// `caller` calls `callee` (which auto-answers), they talk for [`TALK`], `caller` hangs up.
/// Returns the call id.
fn talk(caller: &mut Agent, callee: &mut Agent, callee_name: &str) -> String {
    let id = caller.call(callee_name);
    caller.wait_state(&id, "Connected");
    callee.wait_state(&id, "Connected");
    std::thread::sleep(TALK);
    caller.ok(json!({"cmd": "hangUp", "callId": id}));
    assert_eq!(caller.wait_ended(&id), (0, 0));
    assert_eq!(callee.wait_ended(&id), (0, 0));
    id
}

/// The last seconds of a recording (the call's audio; the recording is final once the last
/// call hung up) hold the far side's tone and not our own.
fn hears(rec: &Path, far_hz: f32, own_hz: f32, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    // The recording is rewritten as final on hang-up; wait for its header to say so.
    let mut samples = read_wav(rec);
    while samples.len() < 48_000 * 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        samples = read_wav(rec);
    }
    let n = samples.len();
    assert!(n >= 48_000 * 3, "{who}: recording too short ({n} samples)");
    let window = &samples[n - 48_000 * 5 / 2..n - 48_000 / 2];
    let far = tone_power(window, far_hz);
    let own = tone_power(window, own_hz);
    eprintln!("{who}: {far_hz} Hz power {far:.2e}, {own_hz} Hz power {own:.2e}");
    assert!(
        far > 1e-3,
        "{who} does not hear the far side ({far_hz} Hz: {far:.2e})"
    );
    assert!(
        own < far / 100.0,
        "{who} hears itself ({own:.2e} vs {far:.2e})"
    );
}

/// alice on `a` calls bob on `b` (who auto-answers) through `server` at `url`; both hear the
/// other's tone and not their own. Returns the agents for further checks.
fn call_across(
    lab: &Lab,
    dir: &Path,
    server: &Server,
    url: &str,
    pki: &Pki,
    (a, b): (&Host, &Host),
    before: impl FnOnce(&mut Agent, &mut Agent),
) -> (Agent, Agent) {
    let (ra, rb) = (dir.join("alice.wav"), dir.join("bob.wav"));
    let mut alice = agent(lab, a, server, url, pki, "alice", 440, &ra, &[]);
    let mut bob = agent(
        lab,
        b,
        server,
        url,
        pki,
        "bob",
        660,
        &rb,
        &["--auto-answer"],
    );
    before(&mut alice, &mut bob);
    talk(&mut alice, &mut bob, "bob");
    hears(&ra, 660.0, 440.0, &format!("alice on {}", a.name));
    hears(&rb, 440.0, 660.0, &format!("bob on {}", b.name));
    (alice, bob)
}

/// The UDP ports the switchboard (`pid`) holds on its host.
fn udp_ports(lab: &Lab, host: &Host, pid: u32) -> Vec<u16> {
    let out = lab
        .cmd(host, "ss")
        .args(["-uapnH"])
        .output()
        .expect("ss runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ports: Vec<u16> = text
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .filter_map(|l| {
            let local = l.split_whitespace().nth(3)?;
            local.rsplit(':').next()?.parse().ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[test]
fn agents_on_a_lan_host_and_on_the_server_host_hear_each_other_over_wss() {
    let dir = tempdir();
    let mut lab = Lab::new();
    let (sb, lan) = (lab.host("sb"), lab.host("lan"));
    let pki = pki(dir.path(), sb.ip);
    let server = switchboard(&lab, &sb, dir.path(), &pki, &[]);
    let url = wss(&server, sb.ip);
    call_across(
        &lab,
        dir.path(),
        &server,
        &url,
        &pki,
        (&lan, &sb),
        |_, _| {},
    );
    // All media on one UDP port (here a free one: the signaling port was too).
    let ports = udp_ports(&lab, &sb, server.pid());
    assert_eq!(ports.len(), 1, "the switchboard holds UDP ports {ports:?}");
}

#[test]
fn an_agent_behind_a_nat_calls_a_lan_agent_with_no_stun_server() {
    let dir = tempdir();
    let mut lab = Lab::new();
    let (sb, lan, home) = (lab.host("sb"), lab.host("lan"), lab.natted_host("home"));
    let pki = pki(dir.path(), sb.ip);
    let server = switchboard(&lab, &sb, dir.path(), &pki, &[]);
    let url = wss(&server, sb.ip);
    call_across(
        &lab,
        dir.path(),
        &server,
        &url,
        &pki,
        (&home, &lan),
        |_, _| {},
    );
}

#[test]
fn an_agent_on_a_network_without_udp_gets_audio_through_coturn_over_tcp() {
    let dir = tempdir();
    let mut lab = Lab::new();
    let (sb, lan, corp, relay) = (
        lab.host("sb"),
        lab.host("lan"),
        lab.natted_host("corp"),
        lab.host("relay"),
    );
    lab.block_udp(&corp);
    let coturn = Coturn::start(&lab, &relay, "lab-turn-secret");
    let pki = pki(dir.path(), sb.ip);
    let turn = coturn.serve_args(dir.path());
    assert!(turn[1].ends_with("transport=tcp"));
    let turn: Vec<&str> = turn.iter().map(String::as_str).collect();
    let server = switchboard(&lab, &sb, dir.path(), &pki, &turn);
    let url = wss(&server, sb.ip);
    let via = |a: &mut Agent| -> String {
        a.wait_event("mediaStateChanged", |e| e["state"] == "Connected", 10)["via"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (alice, _bob) = call_across(
        &lab,
        dir.path(),
        &server,
        &url,
        &pki,
        (&corp, &lan),
        |alice, bob| {
            assert_eq!(via(alice), "relay-tcp");
            assert_eq!(via(bob), "direct");
        },
    );
    let log = coturn.log();
    assert!(
        log.contains("TCP") && log.to_lowercase().contains("allocat"),
        "coturn relayed over TCP:\n{log}"
    );
    // Nothing was said to be broken. (A `Poor` grade for a moment is allowed: audio over TCP
    // on a loaded 2-core machine can show 30 ms of jitter.)
    assert!(
        !alice
            .events
            .iter()
            .any(|e| e["event"] == "networkDiagnosticChanged"
                && (e["value"] == "Bad" || e["value"] == true)),
        "{:?}",
        alice.events
    );
}

#[test]
fn a_switchboard_behind_a_one_to_one_nat_is_reached_at_its_public_ip() {
    let dir = tempdir();
    let mut lab = Lab::new();
    let (cloud, lan, home) = (
        lab.one_to_one_nat_host("cloud"),
        lab.host("lan"),
        lab.natted_host("home"),
    );
    let pki = pki(dir.path(), cloud.public_ip);
    let public = cloud.public_ip.to_string();
    let server = switchboard(&lab, &cloud, dir.path(), &pki, &["--public-ip", &public]);
    let url = wss(&server, cloud.public_ip);
    call_across(
        &lab,
        dir.path(),
        &server,
        &url,
        &pki,
        (&home, &lan),
        |_, _| {},
    );
}

#[test]
fn a_call_whose_media_cannot_flow_is_reported_within_5_s_on_both_sides() {
    let dir = tempdir();
    let mut lab = Lab::new();
    let (sb, lan, corp) = (lab.host("sb"), lab.host("lan"), lab.natted_host("corp"));
    lab.block_udp(&corp);
    let pki = pki(dir.path(), sb.ip);
    // No TURN: nothing can carry corp's media.
    let server = switchboard(&lab, &sb, dir.path(), &pki, &[]);
    let url = wss(&server, sb.ip);
    let (ra, rb) = (dir.path().join("alice.wav"), dir.path().join("bob.wav"));
    let mut alice = agent(&lab, &corp, &server, &url, &pki, "alice", 440, &ra, &[]);
    let mut bob = agent(
        &lab,
        &lan,
        &server,
        &url,
        &pki,
        "bob",
        660,
        &rb,
        &["--auto-answer"],
    );
    let id = alice.call("bob");
    alice.wait_state(&id, "Connected");
    let connected = Instant::now();
    let e = alice.wait_event(
        "networkDiagnosticChanged",
        |e| e["callId"] == id.as_str() && e["diagnostic"] == "networkReconnect",
        10,
    );
    let after = connected.elapsed();
    eprintln!("alice told after {after:?}: {e}");
    assert!(after <= Duration::from_secs(5), "{after:?}");
    assert_eq!(e["value"], "Bad");
    let why = e["message"].as_str().unwrap();
    assert!(why.contains("UDP") && why.contains("TURN"), "{why}");
    let e = bob.wait_event(
        "networkDiagnosticChanged",
        |e| e["callId"] == id.as_str() && e["diagnostic"] == "networkReceiveQuality",
        10,
    );
    assert_eq!(e["value"], "Bad", "{e}");
    assert!(connected.elapsed() <= Duration::from_secs(6));
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    alice.wait_ended(&id);
}
