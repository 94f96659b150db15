//! Two `LinkCore`s wired together in memory with simulated time: the whole ICE-lite + DTLS-SRTP
//! handshake and audio both ways, with no socket and no sleep.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

struct Pair {
    client: LinkCore,
    server: LinkCore,
    /// Where the client's packets appear to come from at the server (a NAT rewrites it).
    client_seen_as: SocketAddr,
    client_addr: SocketAddr,
    server_addr: SocketAddr,
    now: Instant,
    /// Datagrams from the client that reach the server (false: a network that drops them).
    client_to_server: bool,
    /// Which of each side's DTLS datagrams (counted from 0) the network loses.
    lose_client_dtls: Vec<usize>,
    lose_server_dtls: Vec<usize>,
    client_dtls_sent: usize,
    server_dtls_sent: usize,
    client_events: Vec<LinkEvent>,
    server_events: Vec<LinkEvent>,
}

fn server_role() -> Role {
    let (ufrag, pwd) = random_credentials();
    Role::Server {
        ufrag,
        pwd,
        certificate: None,
    }
}

impl Pair {
    fn new(client_seen_as: SocketAddr) -> Pair {
        let now = Instant::now();
        let client_addr: SocketAddr = "192.168.1.20:40000".parse().unwrap();
        let server_addr: SocketAddr = "10.0.0.1:7451".parse().unwrap();
        let (client, offer) = LinkCore::offer(
            3,
            &[LocalCandidate::Host {
                addr: client_addr,
                preference: 65535,
            }],
            now,
        )
        .unwrap();
        let (server, answer) = LinkCore::answer(
            &server_role(),
            &offer,
            &[LocalCandidate::Host {
                addr: server_addr,
                preference: 65535,
            }],
            now,
        )
        .unwrap();
        assert!(answer.contains("a=ice-lite"), "{answer}");
        let mut p = Pair {
            client,
            server,
            client_seen_as,
            client_addr,
            server_addr,
            now,
            client_to_server: true,
            lose_client_dtls: vec![],
            lose_server_dtls: vec![],
            client_dtls_sent: 0,
            server_dtls_sent: 0,
            client_events: vec![],
            server_events: vec![],
        };
        p.client.apply_answer(&answer, now).unwrap();
        p
    }

    /// Moves every pending datagram (1 ms of flight), then fires due timers; repeats for `d`.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.shuttle();
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end)
                .max(self.now + Duration::from_millis(1))
                .min(end);
            self.now = next;
            // The server's due timers first, and what they send delivered before the client's
            // fire: a client's timer is armed a little after the server's, by the time it took
            // to answer, so at equal timeouts the server's repeat arrives first.
            self.server.handle_timeout(self.now);
            self.shuttle();
            self.client.handle_timeout(self.now);
        }
        self.shuttle();
    }

    fn shuttle(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit() {
                moved = true;
                assert_eq!(t.path.local, self.client_addr);
                if is_dtls(&t.payload) {
                    self.client_dtls_sent += 1;
                    if self.lose_client_dtls.contains(&(self.client_dtls_sent - 1)) {
                        continue;
                    }
                }
                if t.path.peer == self.server_addr && self.client_to_server {
                    let path = Path {
                        local: self.server_addr,
                        peer: self.client_seen_as,
                        proto: Proto::Udp,
                    };
                    self.server.handle_datagram(self.now, path, t.payload);
                }
            }
            while let Some(t) = self.server.poll_transmit() {
                moved = true;
                assert_eq!(t.path.local, self.server_addr);
                if is_dtls(&t.payload) {
                    self.server_dtls_sent += 1;
                    if self.lose_server_dtls.contains(&(self.server_dtls_sent - 1)) {
                        continue;
                    }
                }
                // The NAT only lets replies through to the mapped address.
                if t.path.peer == self.client_seen_as {
                    let path = Path {
                        local: self.client_addr,
                        peer: self.server_addr,
                        proto: Proto::Udp,
                    };
                    self.client.handle_datagram(self.now, path, t.payload);
                }
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    fn connected(&self) -> bool {
        self.client_events.contains(&LinkEvent::Connected)
            && self.server_events.contains(&LinkEvent::Connected)
    }
}

/// RFC 7983: a first byte of 20 to 63 is DTLS.
fn is_dtls(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| (20..=63).contains(b))
}

/// How long after the answer the link is up on both sides, in 10 ms steps up to `limit`.
fn time_to_connect(p: &mut Pair, limit: Duration) -> Option<Duration> {
    let start = p.now;
    while p.now - start < limit {
        p.run(Duration::from_millis(10));
        if p.connected() {
            return Some(p.now - start);
        }
    }
    None
}

#[test]
fn a_lost_handshake_flight_costs_a_short_retransmission_not_a_second() {
    // The client's first ClientHello and the server's first reply to the second one (its
    // Flight 4) are lost: each side resends after the 100 ms initial timeout (vendored rtc-dtls,
    // PATCHES.md 1), not after upstream's fixed second.
    let mut p = Pair::new("192.168.1.20:40000".parse().unwrap());
    p.lose_client_dtls = vec![0];
    p.lose_server_dtls = vec![1];
    let t = time_to_connect(&mut p, Duration::from_secs(3));
    assert!(
        t.is_some_and(|t| t < Duration::from_millis(600)),
        "connected after {t:?}; client {:?} server {:?}",
        p.client_events,
        p.server_events
    );
}

#[test]
fn a_lost_last_client_flight_is_resent_while_the_server_repeats_its_own() {
    // The client's Flight 5 (its third DTLS datagram on) is lost. The server repeats Flight 4;
    // upstream, each repeat cleared the client's timer, so Flight 5 was never resent and the
    // link hung until the server gave up (vendored rtc-dtls, PATCHES.md 2).
    let mut p = Pair::new("192.168.1.20:40000".parse().unwrap());
    p.lose_client_dtls = vec![2];
    let t = time_to_connect(&mut p, Duration::from_secs(3));
    assert!(
        t.is_some_and(|t| t < Duration::from_millis(500)),
        "connected after {t:?}; client sent {} DTLS datagrams, server {}; client {:?} server {:?}",
        p.client_dtls_sent,
        p.server_dtls_sent,
        p.client_events,
        p.server_events
    );
}

fn audio(events: &[LinkEvent]) -> Vec<&RtpAudio> {
    events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Audio(a) => Some(a),
            _ => None,
        })
        .collect()
}

#[test]
fn connects_and_carries_audio_both_ways() {
    let mut p = Pair::new("192.168.1.20:40000".parse().unwrap());
    p.run(Duration::from_millis(500));
    assert!(
        p.connected(),
        "client {:?} server {:?}",
        p.client_events,
        p.server_events
    );
    let level = AudioLevel {
        dbov: 20,
        voice: true,
    };
    for i in 0..5u16 {
        let now = p.now;
        assert!(
            p.client
                .send_audio(
                    0,
                    (100 + i, 960 * u32::from(i), i == 0),
                    Bytes::from(vec![1, 2, 3, i as u8]),
                    Some(level),
                    now
                )
                .unwrap()
        );
        assert!(
            p.server
                .send_audio(
                    1,
                    (7 + i, 0, false),
                    Bytes::from(vec![9, i as u8]),
                    None,
                    now
                )
                .unwrap()
        );
        p.run(Duration::from_millis(20));
    }
    let up = audio(&p.server_events);
    assert_eq!(up.len(), 5);
    assert_eq!(up[0].seq, 100);
    assert!(up[0].marker);
    assert_eq!(up[4].payload, Bytes::from(vec![1, 2, 3, 4]));
    assert_eq!(up[0].level, Some(level));
    let down = audio(&p.client_events);
    assert_eq!(down.len(), 5);
    assert_eq!(down[0].ssrc, p.server.ssrcs()[1]);
    assert_eq!(down[3].payload, Bytes::from(vec![9, 3]));
}

#[test]
fn a_client_behind_a_nat_connects_with_no_stun_server() {
    // The server sees the client's checks come from an address the client never announced:
    // ICE-lite learns it as peer-reflexive and answers there.
    let mut p = Pair::new("198.51.100.9:61000".parse().unwrap());
    p.run(Duration::from_millis(500));
    assert!(
        p.connected(),
        "client {:?} server {:?}",
        p.client_events,
        p.server_events
    );
}

#[test]
fn nothing_sent_before_connected_and_link_failure_is_reported() {
    let mut p = Pair::new("192.168.1.20:40000".parse().unwrap());
    p.client_to_server = false;
    let now = p.now;
    assert!(
        !p.client
            .send_audio(0, (1, 0, false), Bytes::from_static(b"x"), None, now)
            .unwrap()
    );
    p.run(Duration::from_secs(40));
    assert!(!p.connected());
    assert!(
        p.client_events.contains(&LinkEvent::Disconnected),
        "a link that never connects is reported down: {:?}",
        p.client_events
    );
}

#[test]
fn close_is_reported_locally() {
    let mut p = Pair::new("192.168.1.20:40000".parse().unwrap());
    p.run(Duration::from_millis(500));
    assert!(p.connected());
    p.client.close();
    p.run(Duration::from_millis(50));
    assert_eq!(p.client_events.last(), Some(&LinkEvent::Disconnected));
    let now = p.now;
    assert!(
        !p.client
            .send_audio(0, (1, 0, false), Bytes::from_static(b"x"), None, now)
            .unwrap()
    );
    assert!(p.client.poll_timeout().is_none());
}

#[test]
fn bad_sdp_is_an_error_not_a_panic() {
    let now = Instant::now();
    for bad in [
        "",
        "garbage",
        "v=0\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio",
    ] {
        assert!(
            LinkCore::answer(&server_role(), bad, &[], now).is_err(),
            "{bad:?}"
        );
    }
    let (mut client, offer) = LinkCore::offer(1, &[], now).unwrap();
    let err = client.apply_answer(&offer, now).unwrap_err();
    assert!(matches!(err, LinkError::EchoedOffer(_)), "{err}");
    let pcmu_only = offer.replace("opus/48000/2", "PCMU/8000");
    assert!(LinkCore::answer(&server_role(), &pcmu_only, &[], now).is_err());
}

#[test]
fn close_reaches_the_peer_at_once() {
    let mut p = Pair::new("192.168.1.20:40000".parse().unwrap());
    p.run(Duration::from_millis(500));
    assert!(p.connected());
    p.client.close();
    p.run(Duration::from_millis(50));
    assert_eq!(
        p.server_events.last(),
        Some(&LinkEvent::Disconnected),
        "the DTLS close alert tells the switchboard: {:?}",
        p.server_events
    );
}

/// One check round, the nomination one pacing interval later, DTLS: the link is up within
/// about two pacing intervals of simulated time (1 ms per hop here).
#[test]
fn connects_within_two_pacing_intervals() {
    let mut p = Pair::new("192.168.1.20:40000".parse().unwrap());
    let t0 = p.now;
    while !p.connected() && p.now - t0 < Duration::from_secs(2) {
        p.run(Duration::from_millis(1));
    }
    assert!(p.connected());
    assert!(p.now - t0 <= Duration::from_millis(45), "{:?}", p.now - t0);
}

/// The counters behind the quality diagnostics: sequence gaps in what arrives count as lost,
/// bytes both ways are counted, and the switchboard's receiver reports come back as the
/// fraction of what we send that it lost.
#[test]
fn counters_see_sequence_gaps_and_receiver_reports() {
    let mut p = Pair::new("192.168.1.20:40000".parse().unwrap());
    p.run(Duration::from_millis(500));
    assert!(p.connected());
    // 10 s of packets each way; the server skips every tenth sequence number (10 % lost as the
    // client sees it), and stamps every other packet 10 ms late, which is 10 ms of jitter for
    // packets that arrive evenly.
    let mut reported: Vec<f64> = Vec::new();
    let mut rtt = None;
    for i in 0..500u16 {
        let now = p.now;
        let ts = 960 * u32::from(i);
        if i % 10 != 9 {
            let skew = if i % 2 == 1 { 480 } else { 0 };
            p.server
                .send_audio(
                    1,
                    (i, ts + skew, false),
                    Bytes::from(vec![9; 60]),
                    None,
                    now,
                )
                .unwrap();
        }
        if i % 5 != 4 {
            p.client
                .send_audio(0, (i, ts, false), Bytes::from(vec![1; 60]), None, now)
                .unwrap();
        }
        p.run(Duration::from_millis(20));
        if i % 50 == 49 {
            let now = p.now;
            let c = p.client.counters(now);
            reported.extend(c.remote_fraction_lost);
            rtt = rtt.or(c.rtt_ms);
        }
    }
    let now = p.now;
    let c = p.client.counters(now);
    assert_eq!(c.packets_received, 450, "{c:?}");
    assert!(
        (49..=50).contains(&c.packets_lost),
        "the gaps are counted as lost: {c:?}"
    );
    assert!(
        c.bytes_received >= 450 * 60 && c.bytes_sent >= 400 * 60,
        "{c:?}"
    );
    assert!(
        (5.0..=15.0).contains(&c.jitter_ms),
        "the jitter in ms, not in RTP clock ticks: {c:?}"
    );
    // Receiver reports about what we send arrive. (Their loss figure is checked across
    // namespaces, tests/lossy_link.rs: here the sender numbers its packets itself, so skipped
    // sequence numbers are no loss to the server.)
    assert!(!reported.is_empty(), "no receiver report arrived");
    // The simulated network delivers in zero time, so no round trip is measured here (a zero
    // RTT is no measurement); tests across namespaces see real ones.
    assert!(rtt.is_none_or(|r| r >= 0.0));
}
