//! `MediaLink` over real UDP sockets on 127.0.0.1: client offers, server answers, audio both ways.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dialtone::media::peer::{AudioLevel, MediaConfig, MediaEvent, MediaLink, RtpAudio};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::timeout;

/// Generous: loopback connects in well under a second, but CI machines are noisy.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
const PACKETS: u16 = 50;

struct Pair {
    client: MediaLink,
    client_rx: UnboundedReceiver<MediaEvent>,
    server: MediaLink,
    server_rx: UnboundedReceiver<MediaEvent>,
}

/// Offer, answer, apply; returns once both sides reported `Connected`, with the time it took
/// from the start of `offer`.
async fn connected_pair() -> (Pair, Duration) {
    let cfg = MediaConfig::default();
    let started = Instant::now();
    let (client_tx, mut client_rx) = unbounded_channel();
    let (server_tx, mut server_rx) = unbounded_channel();
    let (client, offer) = MediaLink::offer(&cfg, client_tx).await.expect("offer");
    let (server, answer) = MediaLink::answer(&cfg, &offer, server_tx)
        .await
        .expect("answer");
    client.apply_answer(&answer).await.expect("apply_answer");
    let (c, s) = tokio::join!(
        wait_for(&mut client_rx, CONNECT_LIMIT, |e| *e
            == MediaEvent::Connected),
        wait_for(&mut server_rx, CONNECT_LIMIT, |e| *e
            == MediaEvent::Connected),
    );
    c.expect("client never reported Connected");
    s.expect("server never reported Connected");
    let elapsed = started.elapsed();
    (
        Pair {
            client,
            client_rx,
            server,
            server_rx,
        },
        elapsed,
    )
}

/// Drains events until one matches, or gives up after `limit`.
async fn wait_for(
    rx: &mut UnboundedReceiver<MediaEvent>,
    limit: Duration,
    mut pred: impl FnMut(&MediaEvent) -> bool,
) -> Option<MediaEvent> {
    timeout(limit, async {
        while let Some(event) = rx.recv().await {
            if pred(&event) {
                return Some(event);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

async fn next_audio(rx: &mut UnboundedReceiver<MediaEvent>, limit: Duration) -> Option<RtpAudio> {
    match wait_for(rx, limit, |e| matches!(e, MediaEvent::Audio(_))).await {
        Some(MediaEvent::Audio(a)) => Some(a),
        _ => None,
    }
}

/// Distinct per direction and per packet, so a mix-up between the two streams would show.
fn payload(tag: u8, i: u16) -> Bytes {
    let [hi, lo] = i.to_be_bytes();
    let mut p = vec![tag, hi, lo];
    p.extend(std::iter::repeat_n(tag ^ lo, 40 + usize::from(i % 7)));
    Bytes::from(p)
}

fn expected(tag: u8, i: u16) -> RtpAudio {
    RtpAudio {
        ssrc: 0,
        seq: 1000u16.wrapping_add(i),
        timestamp: 48_000 + u32::from(i) * 960,
        marker: i == 0,
        level: None,
        payload: payload(tag, i),
    }
}

async fn send_burst(link: &MediaLink, tag: u8) {
    let sender = link.sender();
    for i in 0..PACKETS {
        let e = expected(tag, i);
        sender
            .send(e.seq, e.timestamp, e.marker, e.payload)
            .await
            .expect("send while connected");
    }
}

async fn collect(rx: &mut UnboundedReceiver<MediaEvent>, n: usize) -> Vec<RtpAudio> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match next_audio(rx, Duration::from_secs(5)).await {
            Some(a) => got.push(a),
            None => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_flows_both_ways_intact_and_in_order() {
    let (mut p, _) = connected_pair().await;

    let sender = p.client.sender();
    assert!(sender.is_connected());
    assert!(sender.payload_type().is_some(), "payload type negotiated");
    assert_ne!(p.client.sender().ssrc(), p.server.sender().ssrc());

    tokio::join!(send_burst(&p.client, 0xC1), send_burst(&p.server, 0x5E));
    let (at_server, at_client) = tokio::join!(
        collect(&mut p.server_rx, PACKETS.into()),
        collect(&mut p.client_rx, PACKETS.into()),
    );

    for (mut got, tag, dir, ssrc) in [
        (at_server, 0xC1, "client→server", p.client.sender().ssrc()),
        (at_client, 0x5E, "server→client", p.server.sender().ssrc()),
    ] {
        assert_eq!(got.len(), usize::from(PACKETS), "{dir}: packets lost");
        for g in &mut got {
            assert_eq!(g.ssrc, ssrc, "{dir}: the sender's SSRC");
            g.ssrc = 0;
        }
        let want: Vec<RtpAudio> = (0..PACKETS).map(|i| expected(tag, i)).collect();
        // Loopback does not reorder; if this ever flakes, compare sorted by seq instead.
        assert_eq!(got, want, "{dir}: packets altered or reordered");
    }

    p.client.close().await;
    p.server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_time_and_latency() {
    let (mut p, connect) = connected_pair().await;
    eprintln!("offer → both Connected: {connect:?}");
    assert!(connect < CONNECT_LIMIT);

    let sender = p.client.sender();
    let mut samples = Vec::with_capacity(usize::from(PACKETS));
    for i in 0..PACKETS {
        let e = expected(0x1A, i);
        let sent = Instant::now();
        sender
            .send(e.seq, e.timestamp, e.marker, e.payload)
            .await
            .expect("send");
        let got = next_audio(&mut p.server_rx, Duration::from_secs(2))
            .await
            .expect("packet arrives");
        samples.push(sent.elapsed());
        assert_eq!(got.seq, e.seq);
        // Space them like 20 ms frames would be, shortened; back-to-back would measure queueing.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    eprintln!(
        "one-way latency client→server: median {median:?}, min {:?}, max {:?}",
        samples[0],
        samples[samples.len() - 1]
    );
    assert!(median < Duration::from_millis(500));

    p.client.close().await;
    p.server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sdp_is_an_error_not_a_panic() {
    let cfg = MediaConfig::default();

    for bad in ["", "garbage", "v=0\r\nthis is not sdp\r\n"] {
        let (tx, _rx) = unbounded_channel();
        let err = MediaLink::answer(&cfg, bad, tx)
            .await
            .expect_err("answer accepted bad SDP");
        let msg = err.to_string();
        eprintln!("answer({bad:?}) → {msg}");
        assert!(
            msg.contains(&format!("{bad:?}")),
            "error quotes the SDP: {msg}"
        );
        assert!(!msg.ends_with('.'));
    }

    // Parses as SDP, but has no audio section to answer.
    let no_audio = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let (tx, _rx) = unbounded_channel();
    let err = MediaLink::answer(&cfg, no_audio, tx)
        .await
        .expect_err("answer accepted an offer without audio");
    eprintln!("answer(no audio) → {err}");

    let (tx, _rx) = unbounded_channel();
    let (client, offer) = MediaLink::offer(&cfg, tx).await.expect("offer");
    for bad in ["", "garbage"] {
        let err = client
            .apply_answer(bad)
            .await
            .expect_err("apply_answer accepted bad SDP");
        let msg = err.to_string();
        eprintln!("apply_answer({bad:?}) → {msg}");
        assert!(
            msg.contains(&format!("{bad:?}")),
            "error quotes the SDP: {msg}"
        );
    }
    // Well-formed SDP, but our own offer echoed back by a confused signaling path.
    let err = client
        .apply_answer(&offer)
        .await
        .expect_err("apply_answer accepted our own offer");
    eprintln!("apply_answer(own offer) → {err}");

    // An offer whose only audio codec is not Opus: nothing we could send.
    let pcmu_only = offer
        .replace("opus/48000/2", "PCMU/8000")
        .replace("a=fmtp:111 minptime=10;useinbandfec=1\r\n", "");
    assert_ne!(pcmu_only, offer, "offer carries opus/48000/2");
    let (tx, _rx) = unbounded_channel();
    let err = MediaLink::answer(&cfg, &pcmu_only, tx)
        .await
        .expect_err("answer accepted an offer without Opus");
    eprintln!("answer(PCMU only) → {err}");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_before_connected_is_dropped_without_blocking() {
    let cfg = MediaConfig::default();
    let (tx, _rx) = unbounded_channel();
    let (client, _offer) = MediaLink::offer(&cfg, tx).await.expect("offer");
    let sender = client.sender();
    assert!(!sender.is_connected());
    let r = timeout(
        Duration::from_millis(200),
        sender.send(1, 960, true, Bytes::from_static(b"early")),
    )
    .await
    .expect("send must not block before connected");
    assert!(r.is_ok(), "documented: dropped quietly, Ok returned");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_seen_by_both_sides() {
    let (mut p, _) = connected_pair().await;
    let sender = p.client.sender();

    let closed_at = Instant::now();
    p.client.close().await;
    // Locally, at once: close() reports the edge itself.
    assert_eq!(
        wait_for(&mut p.client_rx, Duration::from_secs(1), |e| {
            *e == MediaEvent::Disconnected
        })
        .await,
        Some(MediaEvent::Disconnected)
    );
    // Sending on a closed link is a quiet no-op, like before connecting.
    assert!(!sender.is_connected());
    sender
        .send(7, 7, false, Bytes::from_static(b"late"))
        .await
        .expect("send after close is Ok");

    // Remotely, once ICE consent lapses (webrtc-rs sends no DTLS close_notify we can rely on).
    let seen = wait_for(&mut p.server_rx, Duration::from_secs(15), |e| {
        *e == MediaEvent::Disconnected
    })
    .await;
    eprintln!(
        "server saw Disconnected {:?} after client close",
        closed_at.elapsed()
    );
    assert_eq!(seen, Some(MediaEvent::Disconnected));

    p.server.close().await;
    // close() is idempotent.
    p.client.close().await;
}

/// The client offers several receive slots; the switchboard answers one outbound stream per
/// slot, and each arrives at the client as its own SSRC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_streams_reach_the_client_on_their_own_slots() {
    let (mut p, _) = connected_pair().await;
    let senders = p.server.senders();
    assert_eq!(senders.len(), dialtone::media::peer::DEFAULT_SLOTS);
    for (k, s) in senders.iter().enumerate() {
        for i in 0..20u16 {
            let e = expected(0x40 + k as u8, i);
            s.send(e.seq, e.timestamp, e.marker, e.payload)
                .await
                .expect("send");
        }
    }
    let got = collect(&mut p.client_rx, 20 * senders.len()).await;
    assert_eq!(got.len(), 20 * senders.len(), "every slot delivered");
    for (k, s) in senders.iter().enumerate() {
        let mine: Vec<&RtpAudio> = got.iter().filter(|g| g.ssrc == s.ssrc()).collect();
        assert_eq!(mine.len(), 20, "slot {k}");
        assert!(
            mine.iter().all(|g| g.payload[0] == 0x40 + k as u8),
            "slot {k} carries its own stream"
        );
    }
    p.client.close().await;
    p.server.close().await;
}

/// The RFC 6464 audio level goes on the wire both ways: negotiated in SDP by both ends, written
/// by the sender as a header extension, and read back by the receiver, packet by packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_levels_cross_the_link_both_ways() {
    let (mut p, _) = connected_pair().await;
    let client_id = p.client.sender().level_extension_id();
    let server_id = p.server.sender().level_extension_id();
    assert!(
        client_id.is_some(),
        "client negotiated the audio level extension"
    );
    assert_eq!(client_id, server_id, "one id for both directions");

    // Every level, loud to silent, with the voice flag alternating; one packet without a level.
    let level = |i: u16| {
        (i != 7).then(|| AudioLevel {
            dbov: (i * 5 % 128) as u8,
            voice: i.is_multiple_of(2),
        })
    };
    for (link, tag) in [(&p.client, 0xA1), (&p.server, 0xA2)] {
        let sender = link.sender();
        for i in 0..PACKETS {
            let e = expected(tag, i);
            sender
                .send_with_level(e.seq, e.timestamp, e.marker, e.payload, level(i))
                .await
                .expect("send");
        }
    }
    let (at_server, at_client) = tokio::join!(
        collect(&mut p.server_rx, PACKETS.into()),
        collect(&mut p.client_rx, PACKETS.into()),
    );
    for (got, tag, dir) in [
        (at_server, 0xA1, "client→server"),
        (at_client, 0xA2, "server→client"),
    ] {
        assert_eq!(got.len(), usize::from(PACKETS), "{dir}: packets lost");
        for g in &got {
            let i = g.seq.wrapping_sub(1000);
            assert_eq!(g.payload, payload(tag, i), "{dir}: payload intact");
            assert_eq!(g.level, level(i), "{dir}: level of packet {i}");
        }
    }

    // A plain send carries no level. (A fresh seq: SRTP replay protection drops a repeat.)
    let e = expected(0xA3, PACKETS);
    p.client
        .sender()
        .send(e.seq, e.timestamp, e.marker, e.payload)
        .await
        .expect("send");
    let got = next_audio(&mut p.server_rx, Duration::from_secs(2))
        .await
        .expect("packet arrives");
    assert_eq!(got.level, None);

    p.client.close().await;
    p.server.close().await;
}

/// A peer that does not know the extension (its offer has no `a=extmap` for it) still gets
/// audio both ways; levels are then simply absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_audio_levels_still_gets_audio() {
    let cfg = MediaConfig::default();
    let (client_tx, mut client_rx) = unbounded_channel();
    let (server_tx, mut server_rx) = unbounded_channel();
    let (client, offer) = MediaLink::offer(&cfg, client_tx).await.expect("offer");
    assert!(offer.contains(dialtone::media::peer::AUDIO_LEVEL_URI));
    let stripped: String = offer
        .split_inclusive("\r\n")
        .filter(|l| !l.contains(dialtone::media::peer::AUDIO_LEVEL_URI))
        .collect();
    let (server, answer) = MediaLink::answer(&cfg, &stripped, server_tx)
        .await
        .expect("answer");
    assert!(!answer.contains(dialtone::media::peer::AUDIO_LEVEL_URI));
    client.apply_answer(&answer).await.expect("apply_answer");
    for rx in [&mut client_rx, &mut server_rx] {
        wait_for(rx, CONNECT_LIMIT, |e| *e == MediaEvent::Connected)
            .await
            .expect("Connected");
    }
    assert_eq!(client.sender().level_extension_id(), None);
    assert_eq!(server.sender().level_extension_id(), None);
    let loud = Some(AudioLevel {
        dbov: 10,
        voice: true,
    });
    for (link, rx) in [(&client, &mut server_rx), (&server, &mut client_rx)] {
        let e = expected(0xB0, 0);
        link.sender()
            .send_with_level(e.seq, e.timestamp, e.marker, e.payload, loud)
            .await
            .expect("send");
        let got = next_audio(rx, Duration::from_secs(2))
            .await
            .expect("packet arrives");
        assert_eq!(got.level, None);
    }
    client.close().await;
    server.close().await;
}
