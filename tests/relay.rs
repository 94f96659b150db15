//! The relay's forwarding table, pure: routes, slots, rewritten counters, injection. Over real
//! links it is exercised by tests/media_link.rs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dialtone::media::link::{AudioLevel, RtpAudio};
use dialtone::server::relay::{Forward, Relay, RelayStats, SERVER_SOURCE};

const RECEIVER: u64 = 10;

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
        payload: Bytes::from(vec![source as u8, (i >> 8) as u8, i as u8]),
    }
}

fn run(relay: &mut Relay, from: u64, rtp: &RtpAudio, now: Instant) -> Vec<Forward> {
    let mut out = Vec::new();
    relay.packet(from, rtp, now, |f| out.push(f));
    out
}

#[test]
fn three_slots_hear_the_three_talkers_not_the_noise() {
    let stats = Arc::new(RelayStats::default());
    let mut relay = Relay::new(Arc::clone(&stats));
    relay.add(RECEIVER, 3);
    relay.set_routes((1..=4).map(|k| (k, vec![RECEIVER])).collect());
    let t0 = Instant::now();
    let rounds = 50u16;
    let mut per_slot: BTreeMap<usize, Vec<(u64, Forward)>> = BTreeMap::new();
    for i in 0..rounds {
        let now = t0 + Duration::from_millis(20 * u64::from(i));
        // The noise is first in: it gets slot 0 and loses it to the third talker at once.
        let order: [u64; 4] = if i == 0 { [4, 1, 2, 3] } else { [1, 2, 3, 4] };
        for k in order {
            for f in run(&mut relay, k, &packet(k, i), now) {
                assert_eq!(f.to, RECEIVER);
                per_slot.entry(f.slot).or_default().push((k, f));
            }
        }
    }
    assert_eq!(per_slot.len(), 3);
    let slot0 = &per_slot[&0];
    assert_eq!(slot0[0].0, 4, "the noise took the free slot first");
    assert!(
        slot0[1..].iter().all(|(k, _)| *k == 3),
        "then the third talker has it"
    );
    // The slot's stream continues across the switch, with the marker where the talker changed.
    assert_eq!(slot0[1].1.seq, slot0[0].1.seq.wrapping_add(1));
    assert_eq!(slot0[1].1.timestamp, slot0[0].1.timestamp.wrapping_add(960));
    assert!(slot0[1].1.marker);
    assert!(!slot0[2].1.marker);
    for (slot, k) in [(1, 1), (2, 2)] {
        assert!(per_slot[&slot].iter().all(|(s, _)| *s == k));
        assert_eq!(per_slot[&slot].len(), usize::from(rounds));
    }
    assert_eq!(
        stats.received.load(Ordering::Relaxed),
        4 * u64::from(rounds)
    );
    assert_eq!(
        stats.forwarded.load(Ordering::Relaxed),
        3 * u64::from(rounds) + 1
    );
    assert_eq!(stats.no_slot.load(Ordering::Relaxed), u64::from(rounds) - 1);
    assert_eq!(stats.slot_switches.load(Ordering::Relaxed), 1);
}

#[test]
fn routes_decide_who_hears_whom_and_a_new_source_continues_the_stream() {
    let mut relay = Relay::new(Arc::default());
    relay.add(1, 3);
    relay.add(2, 3);
    let now = Instant::now();
    assert!(
        run(&mut relay, 1, &packet(1, 0), now).is_empty(),
        "no routes yet"
    );
    relay.set_routes(BTreeMap::from([(1, vec![2])]));
    let a = run(&mut relay, 1, &packet(1, 1), now);
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].to, a[0].slot), (2, 0));
    assert!(
        run(&mut relay, 2, &packet(2, 0), now).is_empty(),
        "one way only"
    );
    // A transfer: device 3 replaces device 1 as what 2 hears; same slot, continuous stream.
    relay.add(3, 3);
    relay.set_routes(BTreeMap::from([(3, vec![2])]));
    assert!(run(&mut relay, 1, &packet(1, 2), now).is_empty());
    let b = run(
        &mut relay,
        3,
        &RtpAudio {
            seq: 9000,
            timestamp: 7,
            ..packet(3, 0)
        },
        now,
    );
    assert_eq!((b[0].to, b[0].slot), (2, 0));
    assert_eq!(b[0].seq, a[0].seq.wrapping_add(1));
    assert_eq!(b[0].timestamp, a[0].timestamp.wrapping_add(960));
    // A receiver that left is skipped.
    relay.remove(2);
    assert!(run(&mut relay, 3, &packet(3, 1), now).is_empty());
}

#[test]
fn injected_audio_plays_to_one_device_only() {
    let mut relay = Relay::new(Arc::default());
    relay.add(1, 3);
    let now = Instant::now();
    let f = relay
        .inject(1, &packet(SERVER_SOURCE, 0), now)
        .expect("slot");
    assert_eq!((f.to, f.slot), (1, 0));
    assert!(
        relay.inject(2, &packet(SERVER_SOURCE, 0), now).is_none(),
        "no such device"
    );
}
