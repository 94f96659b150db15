//! Calls between machines: a switchboard and agents on separate hosts of a network lab (network
//! namespaces joined by a router, NATs and firewalls in nftables, a real coturn), real processes,
//! audio measured by spectrum. Each test makes its own lab and removes it, also when it fails.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::netlab::{Coturn, Host, Lab};
use common::{Agent, BIN, Server, read_wav, tempdir, tone_power};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;

/// How long a call carries audio before it is measured.
const TALK: Duration = Duration::from_secs(4);

/// A private CA and a switchboard certificate for `ips`, as PEM files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path, ips: &[IpAddr]) -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "dialtone lab CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &*ca)
        .unwrap();
    let p = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&p.ca, ca.pem()).unwrap();
    std::fs::write(&p.cert, cert.pem()).unwrap();
    std::fs::write(&p.key, key.serialize_pem()).unwrap();
    p
}

/// A switchboard with TLS on `host`, listening on its own address; `extra` flags added.
fn switchboard(lab: &Lab, host: &Host, dir: &Path, pki: &Pki, extra: &[&str]) -> Server {
    let mut args = vec![
        "--tls-cert",
        pki.cert.to_str().unwrap(),
        "--tls-key",
        pki.key.to_str().unwrap(),
    ];
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
    let token = server.token(user);
    let mut args = vec![
        "--token".to_string(),
        token,
        "--ca".into(),
        pki.ca.display().to_string(),
        "--mic".into(),
        format!("tone:{hz}"),
        "--speaker".into(),
        format!("record:{}", rec.display()),
        "--device-name".into(),
        host.name.clone(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut a = Agent::start_with(lab.cmd(host, BIN), url, None, &args);
    a.name = user.into();
    a.connected()
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
    let pki = pki(dir.path(), &[sb.ip.into()]);
    let server = switchboard(&lab, &sb, dir.path(), &pki, &[]);
    let url = wss(&server, sb.ip);
    let (ra, rb) = (dir.path().join("alice.wav"), dir.path().join("bob.wav"));
    let mut alice = agent(&lab, &lan, &server, &url, &pki, "alice", 440, &ra, &[]);
    let mut bob = agent(
        &lab,
        &sb,
        &server,
        &url,
        &pki,
        "bob",
        660,
        &rb,
        &["--auto-answer"],
    );
    talk(&mut alice, &mut bob, "bob");
    hears(&ra, 660.0, 440.0, "alice on the LAN");
    hears(&rb, 440.0, 660.0, "bob on the server host");
    // All media on one UDP port (here a free one: the signaling port was too).
    let ports = udp_ports(&lab, &sb, server.pid());
    assert_eq!(ports.len(), 1, "the switchboard holds UDP ports {ports:?}");
}

#[test]
fn an_agent_behind_a_nat_calls_a_lan_agent_with_no_stun_server() {
    let dir = tempdir();
    let mut lab = Lab::new();
    let (sb, lan, home) = (lab.host("sb"), lab.host("lan"), lab.natted_host("home"));
    let pki = pki(dir.path(), &[sb.ip.into()]);
    let server = switchboard(&lab, &sb, dir.path(), &pki, &[]);
    let url = wss(&server, sb.ip);
    let (ra, rb) = (dir.path().join("alice.wav"), dir.path().join("bob.wav"));
    let mut alice = agent(&lab, &home, &server, &url, &pki, "alice", 440, &ra, &[]);
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
    talk(&mut alice, &mut bob, "bob");
    hears(&ra, 660.0, 440.0, "alice behind the NAT");
    hears(&rb, 440.0, 660.0, "bob on the LAN");
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
    let secret = "lab-turn-secret";
    let coturn = Coturn::start(&lab, &relay, secret);
    let secret_file = dir.path().join("turn-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let pki = pki(dir.path(), &[sb.ip.into()]);
    let turn_url = &coturn.urls()[1];
    assert!(turn_url.ends_with("transport=tcp"));
    let server = switchboard(
        &lab,
        &sb,
        dir.path(),
        &pki,
        &[
            "--turn-url",
            turn_url,
            "--turn-secret-file",
            secret_file.to_str().unwrap(),
        ],
    );
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
    let via = |a: &mut Agent| -> String {
        a.wait_event("mediaStateChanged", |e| e["state"] == "Connected", 10)["via"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(via(&mut alice), "relay-tcp");
    assert_eq!(via(&mut bob), "direct");
    talk(&mut alice, &mut bob, "bob");
    hears(&ra, 660.0, 440.0, "alice without UDP");
    hears(&rb, 440.0, 660.0, "bob on the LAN");
    let log = coturn.log();
    assert!(
        log.contains("TCP") && log.to_lowercase().contains("allocat"),
        "coturn relayed over TCP:\n{log}"
    );
    // Nothing was said to be wrong.
    assert!(
        !alice
            .events
            .iter()
            .any(|e| e["event"] == "networkDiagnosticChanged"),
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
    let pki = pki(dir.path(), &[cloud.public_ip.into()]);
    let public = cloud.public_ip.to_string();
    let server = switchboard(&lab, &cloud, dir.path(), &pki, &["--public-ip", &public]);
    let url = wss(&server, cloud.public_ip);
    let (ra, rb) = (dir.path().join("alice.wav"), dir.path().join("bob.wav"));
    let mut alice = agent(&lab, &home, &server, &url, &pki, "alice", 440, &ra, &[]);
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
    talk(&mut alice, &mut bob, "bob");
    hears(&ra, 660.0, 440.0, "alice behind her NAT");
    hears(&rb, 440.0, 660.0, "bob on the LAN");
}

#[test]
fn a_call_whose_media_cannot_flow_is_reported_within_5_s_on_both_sides() {
    let dir = tempdir();
    let mut lab = Lab::new();
    let (sb, lan, corp) = (lab.host("sb"), lab.host("lan"), lab.natted_host("corp"));
    lab.block_udp(&corp);
    let pki = pki(dir.path(), &[sb.ip.into()]);
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
