//! The network lab itself (tests/common/netlab.rs): routing, the NAT kinds, the UDP block, coturn
//! and teardown. Needs root, iproute2, nftables, coturn and openssl (`scripts/setup.sh --test`).

mod common;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::netlab::{
    Attachment, Background, Coturn, Host, Lab, TurnCredentials, namespace_exists,
};
use common::{Agent, BIN, Server, tempdir};

/// How long we wait for a packet that should not arrive.
const SHORT: Duration = Duration::from_millis(500);
/// How long one that should arrive may take: generous, since a loaded 2-core machine running
/// several labs at once can stall a thread for a while.
const LONG: Duration = Duration::from_secs(5);

/// A TCP server in `host` that answers each connection with the address it came from, e.g.
/// "198.18.2.2:40000". Returns where it listens; it stops after `conns` connections.
fn tcp_whoami(lab: &Lab, host: &Host, conns: usize) -> SocketAddrV4 {
    let ip = host.ip;
    let l = lab
        .run_in(host, move || TcpListener::bind((ip, 0)))
        .expect("bind TCP");
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..conns {
            let Ok((mut s, from)) = l.accept() else {
                return;
            };
            let _ = s.write_all(from.to_string().as_bytes());
        }
    });
    SocketAddrV4::new(ip, port)
}

/// Connects from `host` to `to` and returns what the server said (its view of our address).
fn tcp_ask(lab: &Lab, host: &Host, to: SocketAddrV4) -> String {
    tcp_ask_within(lab, host, to, LONG).unwrap_or_else(|e| {
        panic!(
            "{} cannot ask {to} over TCP: {e}\n{}",
            host.name,
            lab.dump()
        )
    })
}

/// Whether a TCP connection from `host` to `to` fails (within SHORT).
fn tcp_fails(lab: &Lab, host: &Host, to: SocketAddrV4) -> bool {
    tcp_ask_within(lab, host, to, SHORT).is_err()
}

fn tcp_ask_within(
    lab: &Lab,
    host: &Host,
    to: SocketAddrV4,
    limit: Duration,
) -> std::io::Result<String> {
    lab.run_in(host, move || {
        let mut s = TcpStream::connect_timeout(&to.into(), limit)?;
        s.set_read_timeout(Some(limit))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
}

/// A UDP socket bound in `host` on `port` (0: any), with a short read timeout.
fn udp(lab: &Lab, host: &Host, port: u16) -> UdpSocket {
    let s = lab
        .run_in(host, move || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))
        .expect("bind UDP");
    s.set_read_timeout(Some(SHORT)).unwrap();
    s
}

/// A UDP server in `host` that answers every datagram with its payload, a space and the address
/// it came from, until no datagram arrived for 10 s.
fn udp_whoami(lab: &Lab, host: &Host) -> SocketAddrV4 {
    let s = udp(lab, host, 0);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let port = s.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        loop {
            match s.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let answer = format!("{} {from}", String::from_utf8_lossy(&buf[..n]));
                    // The asker retries: a lost answer does not matter.
                    let _ = s.send_to(answer.as_bytes(), from);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break;
                }
                // A blocking receive with a timeout is not restarted when the process is
                // interrupted, even by a signal it ignores or by being frozen and thawed: it
                // fails with EINTR, which happens here now and then. Just go on.
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("udp_whoami: {e}"),
            }
        }
    });
    SocketAddrV4::new(host.ip, port)
}

/// Sends a question from `s` to a `udp_whoami` at `to` (again every 100 ms) until it is answered
/// within `limit`; returns the answer (the address `to` saw), or why there is none. Answers to
/// earlier questions that arrive late are told apart by a number in each question.
fn udp_ask_within(s: &UdpSocket, to: SocketAddrV4, limit: Duration) -> Result<String, String> {
    static QUESTIONS: AtomicU64 = AtomicU64::new(0);
    let question = format!("q{}", QUESTIONS.fetch_add(1, Ordering::Relaxed));
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 1500];
    let mut next_send = Instant::now();
    let (mut sent, mut send_errors) = (0, Vec::new());
    let answer = loop {
        let now = Instant::now();
        if now > deadline {
            break Err(format!(
                "no answer to {sent} datagrams within {limit:?}; send errors: {send_errors:?}"
            ));
        }
        if now >= next_send {
            match s.send_to(question.as_bytes(), to) {
                Ok(_) => sent += 1,
                Err(e) => send_errors.push(e.to_string()),
            }
            next_send = now + Duration::from_millis(100);
        }
        let wait = next_send.min(deadline).saturating_duration_since(now);
        s.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            if let Some((q, seen)) = text.split_once(' ')
                && q == question
            {
                break Ok(seen.to_string());
            }
        }
    };
    s.set_read_timeout(Some(SHORT)).unwrap();
    answer
}

/// The answer to a question that must get through.
fn udp_ask(lab: &Lab, s: &UdpSocket, to: SocketAddrV4) -> String {
    udp_ask_within(s, to, LONG).unwrap_or_else(|why| {
        panic!(
            "UDP from {:?} to {to}: {why}\n{}",
            s.local_addr(),
            lab.dump()
        )
    })
}

/// Whether a datagram with this payload reaches `s` within SHORT.
fn udp_hears(s: &UdpSocket, payload: &[u8]) -> bool {
    let deadline = Instant::now() + SHORT;
    let mut buf = [0u8; 1500];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.recv_from(&mut buf) {
            Ok((n, _)) if &buf[..n] == payload => return true,
            Ok(_) => {}
            // EINTR: see udp_whoami.
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    false
}

fn ip_of(addr: &str) -> Ipv4Addr {
    match addr.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) => *a.ip(),
        other => panic!("not an IPv4 socket address: {addr:?} ({other:?})"),
    }
}

/// The IPv4 addresses a host's own `ip` sees on its `eth0`.
fn addresses(lab: &Lab, host: &Host) -> String {
    let out = lab
        .cmd(host, "ip")
        .args(["-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn plain_hosts_reach_each_other_and_see_their_real_addresses() {
    let mut lab = Lab::new();
    let a = lab.host("a");
    let b = lab.host("b");
    assert_eq!(a.ip, a.public_ip);
    assert_ne!(a.ip, b.ip);
    assert!(addresses(&lab, &a).contains(&format!("inet {}/24", a.ip)));

    let srv = tcp_whoami(&lab, &b, 1);
    assert_eq!(ip_of(&tcp_ask(&lab, &a, srv)), a.ip);
    let srv = udp_whoami(&lab, &a);
    let s = udp(&lab, &b, 0);
    assert_eq!(ip_of(&udp_ask(&lab, &s, srv)), b.ip);
}

#[test]
fn natted_host_reaches_out_from_its_router_and_cannot_be_reached_first() {
    let mut lab = Lab::new();
    let server = lab.host("server");
    let other = lab.host("other");
    let n = lab.natted_host("n");
    assert_eq!(n.attachment, Attachment::Nat);
    assert_ne!(n.ip, n.public_ip);
    assert!(n.ip.is_private(), "{}", n.ip);
    // The host knows only its private address.
    let own = addresses(&lab, &n);
    assert!(own.contains(&n.ip.to_string()) && !own.contains(&n.public_ip.to_string()));

    // Out: TCP and UDP appear from the router's public address.
    let srv = tcp_whoami(&lab, &server, 1);
    assert_eq!(ip_of(&tcp_ask(&lab, &n, srv)), n.public_ip);
    let srv = udp_whoami(&lab, &server);
    let s = udp(&lab, &n, 0);
    let mapped = udp_ask(&lab, &s, srv);
    assert_eq!(ip_of(&mapped), n.public_ip);
    // The mapping does not depend on the destination (a cone NAT: hole punching works).
    let srv2 = udp_whoami(&lab, &server);
    assert_eq!(udp_ask(&lab, &s, srv2), mapped);

    // In: nobody reaches the NATed host first, neither at its public address nor its private one.
    let listener = tcp_whoami(&lab, &n, 1);
    let port = listener.port();
    assert!(tcp_fails(
        &lab,
        &server,
        SocketAddrV4::new(n.public_ip, port)
    ));
    assert!(tcp_fails(&lab, &server, SocketAddrV4::new(n.ip, port)));
    let n_sock = udp(&lab, &n, 0);
    let from_server = udp(&lab, &server, 0);
    let n_port = n_sock.local_addr().unwrap().port();
    for to in [n.public_ip, n.ip] {
        let _ = from_server.send_to(b"hello?", SocketAddrV4::new(to, n_port));
    }
    assert!(
        !udp_hears(&n_sock, b"hello?"),
        "unsolicited UDP got through the NAT"
    );
    // A third host cannot use the mapping the NATed host opened towards `server`.
    let from_other = udp(&lab, &other, 0);
    from_other
        .send_to(b"sneaking in", mapped.parse::<SocketAddr>().unwrap())
        .unwrap();
    assert!(
        !udp_hears(&s, b"sneaking in"),
        "the NAT let a stranger use a mapping"
    );
}

#[test]
fn symmetric_nat_maps_each_destination_to_its_own_port() {
    let mut lab = Lab::new();
    let server = lab.host("server");
    let n = lab.symmetric_natted_host("n");
    let s = udp(&lab, &n, 0);
    let mut mappings: Vec<String> = (0..3)
        .map(|_| udp_ask(&lab, &s, udp_whoami(&lab, &server)))
        .collect();
    for m in &mappings {
        assert_eq!(ip_of(m), n.public_ip);
    }
    // Random ports: two of three could still collide by chance (1 in ~30000), all three cannot.
    mappings.dedup();
    assert!(
        mappings.len() > 1,
        "a symmetric NAT gives each destination its own mapping: {mappings:?}"
    );
}

#[test]
fn block_udp_drops_udp_both_ways_but_lets_tcp_through() {
    let mut lab = Lab::new();
    let corp = lab.host("corp");
    let server = lab.host("server");
    let srv = udp_whoami(&lab, &server);
    let s = udp(&lab, &corp, 0);
    udp_ask(&lab, &s, srv); // UDP works before the block

    lab.block_udp(&corp);
    assert_eq!(
        udp_ask_within(&s, srv, SHORT).ok(),
        None,
        "UDP out of the blocked host got through"
    );
    let fresh = udp(&lab, &corp, 0);
    assert_eq!(
        udp_ask_within(&fresh, srv, SHORT).ok(),
        None,
        "UDP from a new socket got through"
    );
    let inbound = udp(&lab, &server, 0);
    inbound
        .send_to(
            b"in",
            s.local_addr()
                .map(|a| SocketAddr::new(corp.ip.into(), a.port()))
                .unwrap(),
        )
        .unwrap();
    assert!(
        !udp_hears(&s, b"in"),
        "UDP into the blocked host got through"
    );
    // Silently: the sender sees no error, as behind a real firewall.
    assert!(s.send_to(b"x", srv).is_ok());

    let tcp = tcp_whoami(&lab, &server, 1);
    assert_eq!(ip_of(&tcp_ask(&lab, &corp, tcp)), corp.ip);
    // Other hosts are not affected.
    let other = lab.host("other");
    udp_ask(&lab, &udp(&lab, &other, 0), srv);
}

#[test]
fn one_to_one_nat_host_is_reached_and_seen_at_its_public_address() {
    let mut lab = Lab::new();
    let vm = lab.one_to_one_nat_host("vm");
    let client = lab.host("client");
    assert_ne!(vm.ip, vm.public_ip);
    let own = addresses(&lab, &vm);
    assert!(own.contains(&vm.ip.to_string()) && !own.contains(&vm.public_ip.to_string()));

    // In: reached at the public address, on any port, and sees the caller's real address.
    let srv = tcp_whoami(&lab, &vm, 1);
    let public = SocketAddrV4::new(vm.public_ip, srv.port());
    assert_eq!(ip_of(&tcp_ask(&lab, &client, public)), client.ip);
    let usrv = udp_whoami(&lab, &vm);
    let s = udp(&lab, &client, 0);
    let public = SocketAddrV4::new(vm.public_ip, usrv.port());
    assert_eq!(ip_of(&udp_ask(&lab, &s, public)), client.ip);

    // Out: its traffic leaves from the public address, with its own port kept.
    let srv = tcp_whoami(&lab, &client, 1);
    assert_eq!(ip_of(&tcp_ask(&lab, &vm, srv)), vm.public_ip);
    let usrv = udp_whoami(&lab, &client);
    let s = udp(&lab, &vm, 0);
    let seen: SocketAddr = udp_ask(&lab, &s, usrv).parse().unwrap();
    assert_eq!(
        seen,
        SocketAddr::new(vm.public_ip.into(), s.local_addr().unwrap().port())
    );
}

#[test]
fn cmd_runs_in_the_host_and_killing_the_child_kills_the_program() {
    let mut lab = Lab::new();
    let h = lab.host("h");
    // `ip netns exec` execs: the child's pid is the program's.
    let mut child = lab.cmd(&h, "sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "sleep" {
            break;
        }
        assert!(Instant::now() < deadline, "pid {pid} is still {comm:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_ne!(ns, std::fs::read_link("/proc/self/ns/net").unwrap());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

/// Runs each command to completion (all at once), killing any still running after `limit`.
fn outputs_within(cmds: Vec<Command>, limit: Duration) -> Vec<Output> {
    let children: Vec<Child> = cmds
        .into_iter()
        .map(|mut c| {
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let deadline = Instant::now() + limit;
    let waiters: Vec<_> = children
        .into_iter()
        .map(|child| std::thread::spawn(move || child.wait_with_output().unwrap()))
        .collect();
    // wait_with_output cannot time out; kill stragglers from here.
    while waiters.iter().any(|w| !w.is_finished()) {
        if Instant::now() > deadline {
            panic!("a command ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiters.into_iter().map(|w| w.join().unwrap()).collect()
}

/// turnutils_uclient from `client` through the TURN server to a UDP echo peer: allocate, send a
/// few messages to the peer through the relay, get them back.
fn uclient(
    lab: &Lab,
    client: &Host,
    turn: &Coturn,
    peer: SocketAddrV4,
    flags: &[&str],
    cred: &TurnCredentials,
) -> Command {
    let mut c = lab.cmd(client, "timeout");
    c.args(["20", "turnutils_uclient"])
        .args(flags)
        .args([
            "-n",
            "2",
            "-z",
            "5",
            "-u",
            &cred.username,
            "-w",
            &cred.password,
        ])
        .args(["-e", &peer.ip().to_string(), "-r", &peer.port().to_string()])
        .arg(turn.public_ip.to_string());
    c
}

/// Whether a uclient run relayed all its messages both ways.
fn relayed(out: &Output) -> bool {
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().rev().find_map(|l| {
        let (_, rest) = l.split_once("tot_send_msgs=")?;
        let (sent, rest) = rest.split_once(", tot_recv_msgs=")?;
        Some((
            sent.trim().parse::<u32>().ok()?,
            rest.trim().parse::<u32>().ok()?,
        ))
    });
    out.status.success() && matches!(last, Some((s, r)) if s > 0 && s == r)
}

/// A UDP echo peer (coturn's turnutils_peer) on `host`, once it answers.
fn echo_peer(lab: &Lab, host: &Host) -> (Background, SocketAddrV4) {
    let addr = SocketAddrV4::new(host.ip, 3480);
    let peer = Background(
        lab.cmd(host, "turnutils_peer")
            .args(["-L", &host.ip.to_string(), "-p", "3480"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer (coturn) is installed"),
    );
    let probe = udp(lab, host, 0);
    probe
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = probe.send_to(b"ping", addr);
        let mut buf = [0u8; 64];
        if probe.recv_from(&mut buf).is_ok() {
            return (peer, addr);
        }
        assert!(Instant::now() < deadline, "turnutils_peer does not echo");
    }
}

fn show(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn coturn_relays_for_a_udp_blocked_host_over_tcp_and_tls_with_time_limited_credentials() {
    let mut lab = Lab::new();
    let turn_host = lab.host("turn");
    let peer_host = lab.host("peer");
    let corp = lab.natted_host("corp");
    lab.block_udp(&corp);
    let home = lab.natted_host("home");

    let turn = Coturn::start(&lab, &turn_host, "s3cret");
    let (_peer, peer_addr) = echo_peer(&lab, &peer_host);
    let good = turn.credentials("alice", Duration::from_secs(600));
    let wrong = TurnCredentials {
        password: "bm90IHRoZSBwYXNzd29yZA==".into(),
        ..good.clone()
    };
    let other_secret = TurnCredentials::new("not-the-secret", Duration::from_secs(600), "alice");
    let expired = TurnCredentials::expiring_at("s3cret", 1_000_000_000, "alice");

    // The blocked host really has no UDP to the TURN server.
    let stun = SocketAddrV4::new(turn.public_ip, Coturn::PORT);
    assert!(
        lab.run_in(&corp, move || common::netlab::stun_binding(stun, SHORT))
            .is_none()
    );
    assert!(
        lab.run_in(&home, move || common::netlab::stun_binding(stun, SHORT))
            .is_some()
    );

    let outs = outputs_within(
        vec![
            uclient(&lab, &corp, &turn, peer_addr, &["-t"], &good),
            uclient(&lab, &corp, &turn, peer_addr, &["-t", "-S"], &good),
            uclient(&lab, &home, &turn, peer_addr, &[], &good),
            uclient(&lab, &corp, &turn, peer_addr, &["-t"], &wrong),
            uclient(&lab, &corp, &turn, peer_addr, &["-t", "-S"], &other_secret),
            uclient(&lab, &corp, &turn, peer_addr, &["-t"], &expired),
        ],
        Duration::from_secs(30),
    );
    let log = turn.log();
    assert!(
        relayed(&outs[0]),
        "TURN over TCP failed: {}\n{log}",
        show(&outs[0])
    );
    assert!(
        relayed(&outs[1]),
        "TURN over TLS failed: {}\n{log}",
        show(&outs[1])
    );
    assert!(
        relayed(&outs[2]),
        "TURN over UDP failed: {}\n{log}",
        show(&outs[2])
    );
    for (what, out) in [
        ("a wrong password", &outs[3]),
        ("another secret", &outs[4]),
        ("expired credentials", &outs[5]),
    ] {
        assert!(
            !out.status.success() && !relayed(out),
            "allocated with {what}: {}",
            show(out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Cannot complete Allocation"),
            "{what}: {}",
            show(out)
        );
    }
}

#[test]
fn coturn_on_a_one_to_one_nat_host_is_reached_at_its_public_address() {
    let mut lab = Lab::new();
    let turn_host = lab.one_to_one_nat_host("turn");
    let peer_host = lab.host("peer");
    let client = lab.natted_host("client");
    let turn = Coturn::start(&lab, &turn_host, "topsecret");
    assert_eq!(turn.public_ip, turn_host.public_ip);
    assert!(turn.urls()[1].starts_with(&format!("turn:{}:3478", turn_host.public_ip)));
    let (_peer, peer_addr) = echo_peer(&lab, &peer_host);
    let cred = turn.credentials("bob", Duration::from_secs(60));
    let outs = outputs_within(
        vec![
            uclient(&lab, &client, &turn, peer_addr, &["-t"], &cred),
            uclient(&lab, &client, &turn, peer_addr, &[], &cred),
        ],
        Duration::from_secs(30),
    );
    for out in &outs {
        assert!(relayed(out), "{}\n{}", show(out), turn.log());
    }
}

#[test]
fn time_limited_credentials_follow_the_turn_rest_api_scheme() {
    let c = TurnCredentials::expiring_at("Jefe", 1_700_000_000, "alice");
    assert_eq!(c.username, "1700000000:alice");
    assert_eq!(c.password.len(), 28, "base64 of a 20-byte SHA-1 HMAC");
    // The same HMAC computed by openssl.
    let openssl = Command::new("sh")
        .args([
            "-c",
            "printf %s 1700000000:alice | openssl dgst -sha1 -hmac Jefe -binary | base64",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&openssl.stdout).trim(), c.password);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fresh = TurnCredentials::new("Jefe", Duration::from_secs(300), "bob");
    let (expiry, name) = fresh.username.split_once(':').unwrap();
    assert_eq!(name, "bob");
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (now + 299..=now + 301).contains(&expiry),
        "{expiry} vs {now}"
    );
}

#[test]
fn dropping_a_lab_removes_its_namespaces_and_processes_even_after_a_panic() {
    let mut names = Vec::new();
    let mut pid = 0;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut lab = Lab::new();
        let a = lab.host("a");
        lab.natted_host("b");
        lab.one_to_one_nat_host("c");
        names = lab.namespaces();
        // A process the test forgot: the teardown must kill it.
        let child = lab.cmd(&a, "sleep").arg("60").spawn().unwrap();
        pid = child.id();
        std::mem::forget(child);
        assert!(names.iter().all(|n| namespace_exists(n)));
        panic!("the test body fails");
    }));
    assert!(result.is_err());
    assert_eq!(
        names.len(),
        1 + 1 + 2 + 2,
        "backbone, a, b + its router, c + its router"
    );
    for n in &names {
        assert!(!namespace_exists(n), "{n} survived the lab");
    }
    // Killed by the lab; reap it (it was our child).
    let mut status = 0;
    // SAFETY: waitpid on our own child's pid.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    assert_eq!(r, pid as i32);
    assert!(libc::WIFSIGNALED(status), "status {status}");
}

#[test]
fn a_new_lab_removes_namespaces_left_by_dead_test_processes() {
    // A pid no process can have: pids are below pid_max.
    let dead: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Our own pid in the lab-number field keeps concurrent test processes from making the same
    // name (cleanup only reads the pid field).
    let stale = format!("dtl-{dead}-{}-net", std::process::id());
    // Any Lab::new running meanwhile (other tests, other test processes) may remove it even
    // while `ip netns add` is still making it: that is the cleanup working, so just try again.
    let mut attempts = 0;
    loop {
        let out = Command::new("ip")
            .args(["netns", "add", &stale])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        attempts += 1;
        assert!(attempts < 20, "cannot make {stale}: {out:?}");
    }
    let _lab = Lab::new();
    assert!(!namespace_exists(&stale), "{stale} was left behind");
}

/// The inode of a network namespace, as `/proc/PID/ns/net` names it ("net:[INODE]").
fn netns_inode_of_pid(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn netns_inode_of(host: &Host) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let ino = std::fs::metadata(format!("/run/netns/{}", host.ns))
        .unwrap()
        .ino();
    format!("net:[{ino}]")
}

#[test]
fn a_switchboard_and_an_agent_run_on_lab_hosts_and_die_with_their_handles() {
    let mut lab = Lab::new();
    let sb = lab.host("sb");
    let home = lab.natted_host("home");
    let dir = tempdir();
    // Plain ws:// off loopback needs the insecure flag (tests/between_machines.rs uses TLS).
    let server = Server::start_with(
        lab.cmd(&sb, BIN),
        dir.path(),
        &format!("{}:0", sb.ip),
        &["--insecure-plain-ws"],
    );
    assert_eq!(server.addr.ip(), std::net::IpAddr::V4(sb.ip));
    assert_eq!(server.url, server.url_at(sb.public_ip));
    let token = server.token("alice");
    let agent = Agent::start_with(
        lab.cmd(&home, BIN),
        &server.url,
        None,
        &[
            "--token",
            &token,
            "--mic",
            "silence",
            "--speaker",
            "silence",
        ],
    )
    .connected();
    let (spid, apid) = (server.pid(), agent.pid());
    assert_eq!(netns_inode_of_pid(spid), netns_inode_of(&sb));
    assert_eq!(netns_inode_of_pid(apid), netns_inode_of(&home));
    drop(agent);
    drop(server);
    for pid in [spid, apid] {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} outlived its handle"
        );
    }
}
