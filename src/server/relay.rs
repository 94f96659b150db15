//! Media forwarding. Each endpoint's audio arrives on its own peer connection; the relay sends it
//! on to the connections the routing table names, rewriting sequence numbers and timestamps so
//! that each outbound stream stays continuous when its source changes (a new call, a transfer,
//! a take-over): the receiver's jitter buffer then sees one steady stream, not a jump it would
//! mistake for loss.
//!
//! A device's link has a few outbound slots. When more sources are routed to it than that (a
//! group call), [`select`] decides which it hears: the loudest few by the RFC 6464 levels their
//! packets carry, with hysteresis. Levels are passed on to the receivers unchanged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;

use super::switchboard::ConnId;
use crate::media::peer::{AudioSender, RtpAudio};

pub mod select;

pub use select::{Levels, Pick, Slots};

/// 20 ms of Opus at 48 kHz: the step assumed across a source switch.
const FRAME_TICKS: u32 = 960;

/// Keeps one outbound stream continuous across source switches.
#[derive(Debug, Default, Clone)]
pub struct Rewriter {
    source: Option<ConnId>,
    seq_off: u16,
    ts_off: u32,
    last: Option<(u16, u32)>,
}

impl Rewriter {
    /// Maps an inbound packet's (seq, timestamp, marker) to the outbound stream's.
    pub fn map(&mut self, from: ConnId, seq: u16, ts: u32, marker: bool) -> (u16, u32, bool) {
        let mut marker = marker;
        if self.source != Some(from) {
            let (next_seq, next_ts) = match self.last {
                Some((s, t)) => (s.wrapping_add(1), t.wrapping_add(FRAME_TICKS)),
                None => (seq, ts),
            };
            self.seq_off = next_seq.wrapping_sub(seq);
            self.ts_off = next_ts.wrapping_sub(ts);
            self.source = Some(from);
            // A new talker starts here: tell the receiver so it can resync playout.
            marker = true;
        }
        let out = (seq.wrapping_add(self.seq_off), ts.wrapping_add(self.ts_off));
        // Only move forward: a late, reordered packet must not rewind the anchor.
        match self.last {
            Some((s, _)) if (out.0.wrapping_sub(s) as i16) <= 0 => {}
            _ => self.last = Some(out),
        }
        (out.0, out.1, marker)
    }
}

pub enum RelayMsg {
    /// A device's media link is up; `senders` are its outbound streams (slots).
    Add {
        conn: ConnId,
        senders: Vec<AudioSender>,
    },
    Remove {
        conn: ConnId,
    },
    Routes(BTreeMap<ConnId, Vec<ConnId>>),
    Packet {
        from: ConnId,
        rtp: RtpAudio,
    },
    /// Also hand what `from` sends to a server-side listener (a voicemail recording).
    Tap {
        from: ConnId,
        tx: mpsc::Sender<RtpAudio>,
    },
    Untap {
        from: ConnId,
    },
    /// Audio the switchboard itself plays to `to` (a greeting).
    Inject {
        to: ConnId,
        rtp: RtpAudio,
    },
}

/// The source id of audio the switchboard makes itself; connections are numbered from 1.
pub const SERVER_SOURCE: ConnId = 0;

/// Counters the benchmark and the status line read.
#[derive(Default)]
pub struct RelayStats {
    pub received: AtomicU64,
    pub forwarded: AtomicU64,
    /// Packets not forwarded to a receiver because their source is not among those it hears
    /// now: every slot is held by a source this one may not displace (see [`select`]).
    pub no_slot: AtomicU64,
    /// Times a source displaced another from a receiver's slot (a louder talker took over).
    pub slot_switches: AtomicU64,
}

/// One outbound stream of a device's link.
struct Stream {
    sender: AudioSender,
    rw: Rewriter,
}

/// A receiving device: its outbound streams, and which source each carries now.
struct Out {
    slots: Slots,
    streams: Vec<Stream>,
}

impl Out {
    fn new(senders: Vec<AudioSender>) -> Self {
        Out {
            slots: Slots::new(senders.len()),
            streams: senders
                .into_iter()
                .map(|sender| Stream {
                    sender,
                    rw: Rewriter::default(),
                })
                .collect(),
        }
    }

    /// Sends `rtp` from `from` on the slot the selector picks, if it picks one. The slot's
    /// rewriter continues its stream when the source changed.
    async fn forward(
        &mut self,
        to: ConnId,
        from: ConnId,
        rtp: &RtpAudio,
        levels: &Levels,
        now: Instant,
        stats: &RelayStats,
    ) -> bool {
        let pick = self.slots.pick(from, levels, now);
        let Some(stream) = pick.slot().and_then(|i| self.streams.get_mut(i)) else {
            stats.no_slot.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        if let Pick::Switched { slot, displaced } = pick {
            stats.slot_switches.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                to,
                slot,
                from,
                displaced,
                "a louder source took over a slot"
            );
        }
        let (seq, ts, marker) = stream.rw.map(from, rtp.seq, rtp.timestamp, rtp.marker);
        let sent = stream
            .sender
            .send_with_level(seq, ts, marker, rtp.payload.clone(), rtp.level);
        match sent.await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(to, "forwarding failed: {e:#}");
                false
            }
        }
    }
}

/// Runs until the channel closes. One task owns all forwarding state, so the hot path takes no
/// locks; per packet it reads the clock once, updates the source's level once, and asks each
/// receiver's slots where the packet goes (no allocation once every source has been heard).
pub async fn run(mut rx: mpsc::UnboundedReceiver<RelayMsg>, stats: Arc<RelayStats>) {
    let mut outs: HashMap<ConnId, Out> = HashMap::new();
    let mut routes: BTreeMap<ConnId, Vec<ConnId>> = BTreeMap::new();
    let mut taps: HashMap<ConnId, mpsc::Sender<RtpAudio>> = HashMap::new();
    let mut levels = Levels::default();
    while let Some(msg) = rx.recv().await {
        match msg {
            RelayMsg::Add { conn, senders } => {
                outs.insert(conn, Out::new(senders));
            }
            RelayMsg::Remove { conn } => {
                outs.remove(&conn);
                levels.forget(conn);
            }
            RelayMsg::Routes(r) => {
                routes = r;
                // Free the slots whose source no longer feeds that device; their rewriters
                // keep their place, so the next source continues the same stream.
                for (to, out) in outs.iter_mut() {
                    out.slots
                        .release_unless(|src| routes.get(&src).is_some_and(|t| t.contains(to)));
                }
            }
            RelayMsg::Tap { from, tx } => {
                taps.insert(from, tx);
            }
            RelayMsg::Untap { from } => {
                taps.remove(&from);
            }
            RelayMsg::Inject { to, rtp } => {
                let now = Instant::now();
                levels.heard(SERVER_SOURCE, rtp.level.map(|l| l.dbov), now);
                if let Some(out) = outs.get_mut(&to) {
                    out.forward(to, SERVER_SOURCE, &rtp, &levels, now, &stats)
                        .await;
                }
            }
            RelayMsg::Packet { from, rtp } => {
                stats.received.fetch_add(1, Ordering::Relaxed);
                if let Some(tap) = taps.get(&from) {
                    // A recorder that falls behind loses packets rather than stalling the relay.
                    let _ = tap.try_send(rtp.clone());
                }
                let now = Instant::now();
                levels.heard(from, rtp.level.map(|l| l.dbov), now);
                let Some(targets) = routes.get(&from) else {
                    continue;
                };
                for to in targets {
                    let Some(out) = outs.get_mut(to) else {
                        continue;
                    };
                    if out.forward(*to, from, &rtp, &levels, now, &stats).await {
                        stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_first_source_through() {
        let mut rw = Rewriter::default();
        assert_eq!(rw.map(1, 100, 5000, false), (100, 5000, true));
        assert_eq!(rw.map(1, 101, 5960, false), (101, 5960, false));
        // A timestamp jump (the sender was muted) is preserved.
        assert_eq!(rw.map(1, 102, 50_000, false), (102, 50_000, false));
    }

    #[test]
    fn switch_of_source_continues_the_stream() {
        let mut rw = Rewriter::default();
        rw.map(1, 65_535, 4_294_966_000, false);
        let (s, t, m) = rw.map(2, 7, 123, false);
        assert_eq!((s, t, m), (0, 4_294_966_000u32.wrapping_add(960), true));
        assert_eq!(
            rw.map(2, 8, 123 + 960, false),
            (1, 4_294_966_000u32.wrapping_add(1920), false)
        );
    }

    #[test]
    fn reordered_packet_does_not_rewind() {
        let mut rw = Rewriter::default();
        rw.map(1, 10, 0, false);
        rw.map(1, 12, 1920, false);
        assert_eq!(rw.map(1, 11, 960, false), (11, 960, false));
        let (s, _, _) = rw.map(2, 500, 0, false);
        assert_eq!(s, 13);
    }
}
