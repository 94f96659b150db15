//! The relay task over a real media link: four sources routed to a device with three slots.
//! The sources' packets are fed to the relay directly (as the switchboard's runtime does once
//! their links delivered them); the receiving device is a real client link on loopback.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use dialtone::media::peer::{
    AudioLevel, DEFAULT_SLOTS, MediaConfig, MediaEvent, MediaLink, RtpAudio,
};
use dialtone::server::relay::{self, RelayMsg, RelayStats};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::timeout;

const RECEIVER: u64 = 10;
const ROUNDS: u16 = 50;

async fn wait_connected(rx: &mut UnboundedReceiver<MediaEvent>) {
    timeout(Duration::from_secs(5), async {
        while let Some(e) = rx.recv().await {
            if e == MediaEvent::Connected {
                return;
            }
        }
        panic!("event channel closed before Connected");
    })
    .await
    .expect("connected within 5 s");
}

fn level(source: u64) -> AudioLevel {
    // Three talkers at normal speech levels, one sending only room noise.
    match source {
        4 => AudioLevel {
            dbov: 60,
            voice: false,
        },
        k => AudioLevel {
            dbov: 18 + k as u8,
            voice: true,
        },
    }
}

fn packet(source: u64, i: u16) -> RtpAudio {
    RtpAudio {
        ssrc: 0,
        seq: 100 + i,
        timestamp: u32::from(i) * 960,
        marker: i == 0,
        level: Some(level(source)),
        payload: Bytes::from(vec![source as u8, (i >> 8) as u8, i as u8, 0xf8]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_hears_the_three_talkers_not_the_noise() {
    let cfg = MediaConfig::default();
    let (client_tx, mut client_rx) = unbounded_channel();
    let (server_tx, mut server_rx) = unbounded_channel();
    let (client, offer) = MediaLink::offer(&cfg, client_tx).await.expect("offer");
    let (server, answer) = MediaLink::answer(&cfg, &offer, server_tx)
        .await
        .expect("answer");
    client.apply_answer(&answer).await.expect("apply_answer");
    wait_connected(&mut client_rx).await;
    wait_connected(&mut server_rx).await;
    assert_eq!(server.senders().len(), DEFAULT_SLOTS);

    let stats = Arc::new(RelayStats::default());
    let (relay_tx, relay_rx) = unbounded_channel();
    let task = tokio::spawn(relay::run(relay_rx, Arc::clone(&stats)));
    let send = |msg| relay_tx.send(msg).expect("relay running");
    send(RelayMsg::Add {
        conn: RECEIVER,
        senders: server.senders(),
    });
    send(RelayMsg::Routes(
        (1..=4)
            .map(|k| (k, vec![RECEIVER]))
            .collect::<BTreeMap<_, _>>(),
    ));

    // The noisy one is first in: it gets slot 0, and loses it to the third talker at once.
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..ROUNDS {
        tick.tick().await;
        let order: [u64; 4] = if i == 0 { [4, 1, 2, 3] } else { [1, 2, 3, 4] };
        for k in order {
            send(RelayMsg::Packet {
                from: k,
                rtp: packet(k, i),
            });
        }
    }

    let want = 3 * usize::from(ROUNDS) + 1;
    let mut got: Vec<RtpAudio> = Vec::with_capacity(want);
    let _ = timeout(Duration::from_secs(5), async {
        while got.len() < want {
            match client_rx.recv().await {
                Some(MediaEvent::Audio(a)) => got.push(a),
                Some(_) => {}
                None => return,
            }
        }
    })
    .await;
    // Anything more would be the noise getting through after all.
    let _ = timeout(Duration::from_millis(200), async {
        while let Some(e) = client_rx.recv().await {
            if let MediaEvent::Audio(a) = e {
                got.push(a);
            }
        }
    })
    .await;

    let mut per_source: HashMap<u8, Vec<&RtpAudio>> = HashMap::new();
    for g in &got {
        per_source.entry(g.payload[0]).or_default().push(g);
        let source = u64::from(g.payload[0]);
        assert_eq!(g.level, Some(level(source)), "the level is passed on");
    }
    for k in 1..=3u8 {
        assert_eq!(per_source[&k].len(), usize::from(ROUNDS), "talker {k}");
    }
    let noise = &per_source[&4];
    assert_eq!(
        noise.len(),
        1,
        "only the noise's first packet, before the talkers came"
    );

    // The slot the noise had continues as the third talker's stream.
    let slot0 = noise[0].ssrc;
    let mut on_slot0: Vec<&RtpAudio> = got.iter().filter(|g| g.ssrc == slot0).collect();
    on_slot0.sort_by_key(|g| g.seq.wrapping_sub(noise[0].seq));
    assert_eq!(on_slot0.len(), usize::from(ROUNDS) + 1);
    assert!(on_slot0[1..].iter().all(|g| g.payload[0] == 3));
    assert_eq!(on_slot0[1].seq, noise[0].seq.wrapping_add(1));
    assert_eq!(on_slot0[1].timestamp, noise[0].timestamp.wrapping_add(960));
    assert!(on_slot0[1].marker, "marker set where the talker changes");
    let ssrcs: std::collections::HashSet<u32> = got.iter().map(|g| g.ssrc).collect();
    assert_eq!(ssrcs.len(), 3);

    assert_eq!(
        stats.received.load(Ordering::Relaxed),
        4 * u64::from(ROUNDS)
    );
    assert_eq!(stats.forwarded.load(Ordering::Relaxed), want as u64);
    assert_eq!(stats.no_slot.load(Ordering::Relaxed), u64::from(ROUNDS) - 1);
    assert_eq!(stats.slot_switches.load(Ordering::Relaxed), 1);

    drop(relay_tx);
    task.await.expect("relay ends when its channel closes");
    client.close().await;
    server.close().await;
}
