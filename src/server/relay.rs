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

use super::switchboard::ConnId;
use crate::media::link::RtpAudio;

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
    /// Datagrams read by another media thread than their link's, and passed on (kept by the
    /// hub: a device's first ICE checks, and its media while its link moves).
    pub datagram_hops: AtomicU64,
    /// Packets passed to the media thread of their receiver (kept by the hub).
    pub relay_hops: AtomicU64,
    /// Links moved to the media thread their media arrives on (kept by the hub).
    pub moves: AtomicU64,
    /// Datagrams on the media port from an address and username no link knows (kept by the
    /// hub).
    pub unrouted: AtomicU64,
    /// Datagrams the kernel would not take at once, dropped as real-time media is (kept by the
    /// hub).
    pub send_blocked: AtomicU64,
}

/// One packet the relay decided to send: to which device, on which of its outbound slots, with
/// the rewritten counters of that slot's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub to: ConnId,
    pub slot: usize,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
}

/// A receiving device: its outbound streams' rewriters, and which source each carries now.
struct Out {
    slots: Slots,
    rewriters: Vec<Rewriter>,
}

/// A receiver on its way from one relay to another.
pub struct Held(Out);

/// Who hears whom, and how each outbound stream stays continuous. Pure: the media hub feeds it
/// packets with the time and sends what it returns; nothing here does I/O or reads a clock.
///
/// Per packet it updates the source's level once and asks each receiver's slots where the
/// packet goes: no allocation once every source has been heard.
#[derive(Default)]
pub struct Relay {
    outs: HashMap<ConnId, Out>,
    routes: BTreeMap<ConnId, Vec<ConnId>>,
    levels: Levels,
    stats: Arc<RelayStats>,
}

impl Relay {
    #[must_use]
    pub fn new(stats: Arc<RelayStats>) -> Relay {
        Relay {
            stats,
            ..Relay::default()
        }
    }

    /// A device's link is up with `slots` outbound streams.
    pub fn add(&mut self, conn: ConnId, slots: usize) {
        self.outs.insert(
            conn,
            Out {
                slots: Slots::new(slots),
                rewriters: vec![Rewriter::default(); slots],
            },
        );
    }

    pub fn remove(&mut self, conn: ConnId) {
        self.outs.remove(&conn);
        self.levels.forget(conn);
    }

    /// Hands receiver `conn` over to another relay (its link moves to another media thread):
    /// its streams continue there with the same numbering.
    pub fn take(&mut self, conn: ConnId) -> Option<Held> {
        self.outs.remove(&conn).map(Held)
    }

    /// Takes over a receiver handed over by [`take`](Self::take).
    pub fn put(&mut self, conn: ConnId, held: Held) {
        let routes = &self.routes;
        let mut out = held.0;
        // Routes may have changed while it was on its way.
        out.slots
            .release_unless(|src| routes.get(&src).is_some_and(|t| t.contains(&conn)));
        self.outs.insert(conn, out);
    }

    /// The switchboard core's routing table: source → the devices that hear it.
    pub fn set_routes(&mut self, routes: BTreeMap<ConnId, Vec<ConnId>>) {
        self.routes = routes;
        // Free the slots whose source no longer feeds that device; their rewriters keep their
        // place, so the next source continues the same stream.
        let routes = &self.routes;
        for (to, out) in self.outs.iter_mut() {
            out.slots
                .release_unless(|src| routes.get(&src).is_some_and(|t| t.contains(to)));
        }
    }

    /// A packet from device `from`: calls `send` once for every receiver that hears it now.
    /// (One relay for every device: [`heard`](Self::heard), then [`deliver`](Self::deliver) to
    /// each of [`targets`](Self::targets).)
    pub fn packet(
        &mut self,
        from: ConnId,
        rtp: &RtpAudio,
        now: Instant,
        mut send: impl FnMut(Forward),
    ) {
        self.arrived();
        self.heard(from, rtp, now);
        let Some(targets) = self.routes.get(&from) else {
            return;
        };
        for to in targets {
            if let Some(f) = Self::deliver_in(
                &mut self.outs,
                &self.levels,
                &self.stats,
                *to,
                from,
                rtp,
                now,
            ) {
                send(f);
            }
        }
    }

    /// Counts a packet from a device that arrived here.
    pub fn arrived(&self) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the level of a packet from `from`; once per packet on each relay that delivers
    /// it, before [`deliver`](Self::deliver).
    pub fn heard(&mut self, from: ConnId, rtp: &RtpAudio, now: Instant) {
        self.levels.heard(from, rtp.level.map(|l| l.dbov), now);
    }

    /// Who hears `from` now.
    #[must_use]
    pub fn targets(&self, from: ConnId) -> &[ConnId] {
        self.routes.get(&from).map_or(&[], Vec::as_slice)
    }

    /// Where a packet from `from` goes at receiver `to`, if this relay holds `to` and its slots
    /// take it now.
    pub fn deliver(
        &mut self,
        to: ConnId,
        from: ConnId,
        rtp: &RtpAudio,
        now: Instant,
    ) -> Option<Forward> {
        Self::deliver_in(
            &mut self.outs,
            &self.levels,
            &self.stats,
            to,
            from,
            rtp,
            now,
        )
    }

    /// [`deliver`](Self::deliver) on the relay's parts, so that [`packet`](Self::packet) can
    /// walk the routes while it delivers.
    fn deliver_in(
        outs: &mut HashMap<ConnId, Out>,
        levels: &Levels,
        stats: &RelayStats,
        to: ConnId,
        from: ConnId,
        rtp: &RtpAudio,
        now: Instant,
    ) -> Option<Forward> {
        let out = outs.get_mut(&to)?;
        let f = Self::pick(out, to, from, rtp, levels, now, stats)?;
        stats.forwarded.fetch_add(1, Ordering::Relaxed);
        Some(f)
    }

    /// Whether this relay holds receiver `to`.
    #[must_use]
    pub fn holds(&self, to: ConnId) -> bool {
        self.outs.contains_key(&to)
    }

    /// Audio the switchboard itself plays to `to` (a greeting); `None` if `to` has no link.
    pub fn inject(&mut self, to: ConnId, rtp: &RtpAudio, now: Instant) -> Option<Forward> {
        self.levels
            .heard(SERVER_SOURCE, rtp.level.map(|l| l.dbov), now);
        let out = self.outs.get_mut(&to)?;
        Self::pick(out, to, SERVER_SOURCE, rtp, &self.levels, now, &self.stats)
    }

    /// The slot the selector picks for `from` at `to`, with the slot's continued counters.
    fn pick(
        out: &mut Out,
        to: ConnId,
        from: ConnId,
        rtp: &RtpAudio,
        levels: &Levels,
        now: Instant,
        stats: &RelayStats,
    ) -> Option<Forward> {
        let pick = out.slots.pick(from, levels, now);
        let Some((slot, rw)) = pick
            .slot()
            .and_then(|i| out.rewriters.get_mut(i).map(|rw| (i, rw)))
        else {
            stats.no_slot.fetch_add(1, Ordering::Relaxed);
            return None;
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
        let (seq, timestamp, marker) = rw.map(from, rtp.seq, rtp.timestamp, rtp.marker);
        Some(Forward {
            to,
            slot,
            seq,
            timestamp,
            marker,
        })
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
