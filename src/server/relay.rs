//! Media forwarding. Each endpoint's audio arrives on its own peer connection; the relay sends it
//! on to the connections the routing table names, rewriting sequence numbers and timestamps so
//! that each outbound stream stays continuous when its source changes (a new call, a transfer,
//! a take-over): the receiver's jitter buffer then sees one steady stream, not a jump it would
//! mistake for loss.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::switchboard::ConnId;
use crate::media::peer::{AudioSender, RtpAudio};

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
    /// Packets not forwarded because the receiving device had no free slot.
    pub no_slot: AtomicU64,
}

/// One outbound stream of a device's link, and whose audio it carries now.
struct Slot {
    sender: AudioSender,
    rw: Rewriter,
    source: Option<ConnId>,
}

/// The slot carrying `from`'s audio to this device, assigning the lowest free one if `from` has
/// none. Lowest first keeps a 1:1 call on slot 0 through transfers and take-overs, so the
/// rewriter continues that one stream. None when every slot is taken.
fn slot_for(slots: &mut [Slot], from: ConnId) -> Option<&mut Slot> {
    let i = match slots.iter().position(|s| s.source == Some(from)) {
        Some(i) => i,
        None => {
            let i = slots.iter().position(|s| s.source.is_none())?;
            slots[i].source = Some(from);
            i
        }
    };
    Some(&mut slots[i])
}

/// Runs until the channel closes. One task owns all forwarding state, so the hot path takes no
/// locks.
pub async fn run(mut rx: mpsc::UnboundedReceiver<RelayMsg>, stats: Arc<RelayStats>) {
    let mut outs: HashMap<ConnId, Vec<Slot>> = HashMap::new();
    let mut routes: BTreeMap<ConnId, Vec<ConnId>> = BTreeMap::new();
    let mut taps: HashMap<ConnId, mpsc::Sender<RtpAudio>> = HashMap::new();
    while let Some(msg) = rx.recv().await {
        match msg {
            RelayMsg::Add { conn, senders } => {
                let slots = senders.into_iter().map(|sender| Slot {
                    sender,
                    rw: Rewriter::default(),
                    source: None,
                });
                outs.insert(conn, slots.collect());
            }
            RelayMsg::Remove { conn } => {
                outs.remove(&conn);
            }
            RelayMsg::Routes(r) => {
                routes = r;
                // Free the slots whose source no longer feeds that device; their rewriters
                // keep their place, so the next source continues the same stream.
                for (to, slots) in outs.iter_mut() {
                    for slot in slots.iter_mut() {
                        if let Some(src) = slot.source
                            && !routes.get(&src).is_some_and(|t| t.contains(to))
                        {
                            slot.source = None;
                        }
                    }
                }
            }
            RelayMsg::Tap { from, tx } => {
                taps.insert(from, tx);
            }
            RelayMsg::Untap { from } => {
                taps.remove(&from);
            }
            RelayMsg::Inject { to, rtp } => {
                let Some(slot) = outs.get_mut(&to).and_then(|s| slot_for(s, SERVER_SOURCE)) else {
                    continue;
                };
                let (seq, ts, marker) =
                    slot.rw
                        .map(SERVER_SOURCE, rtp.seq, rtp.timestamp, rtp.marker);
                if let Err(e) = slot.sender.send(seq, ts, marker, rtp.payload).await {
                    tracing::debug!(to, "injecting audio failed: {e:#}");
                }
            }
            RelayMsg::Packet { from, rtp } => {
                stats.received.fetch_add(1, Ordering::Relaxed);
                if let Some(tap) = taps.get(&from) {
                    // A recorder that falls behind loses packets rather than stalling the relay.
                    let _ = tap.try_send(rtp.clone());
                }
                let Some(targets) = routes.get(&from) else {
                    continue;
                };
                for to in targets {
                    let Some(slot) = outs.get_mut(to).and_then(|s| slot_for(s, from)) else {
                        stats.no_slot.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let (seq, ts, marker) = slot.rw.map(from, rtp.seq, rtp.timestamp, rtp.marker);
                    match slot.sender.send(seq, ts, marker, rtp.payload.clone()).await {
                        Ok(()) => {
                            stats.forwarded.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => tracing::debug!(to, "forwarding failed: {e:#}"),
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
