//! The jitter buffer: puts inbound packets back in order and decides, one frame at a time, what
//! the decoder should play.
//!
//! It never reads a clock: every call takes `now`, so tests drive minutes of traffic in
//! microseconds.
//!
//! Delay policy. Each packet's *transit* (arrival time minus its RTP timestamp as time) is
//! recorded; the spread of recent transits above their minimum is the jitter. The target delay
//! is the 95th percentile of that jitter, floored at `min_delay` so a clean link stays fast, plus
//! one frame while packets are being lost (so the next packet, which carries the lost one's FEC,
//! is already here when the gap is played). The buffer grows by playing a concealed frame
//! instead of consuming one, and shrinks by dropping a frame once it has been deeper than
//! needed for a while.

use std::time::{Duration, Instant};

use bytes::Bytes;

/// How many recent transits the jitter estimate looks at (about 2.5 s of 20 ms packets).
const TRANSIT_WINDOW: usize = 128;
/// Played packets over which the delay must stay too high before a frame is dropped.
const SHRINK_WINDOW: u32 = 25;
/// Extra slack before dropping a frame, so grow and shrink do not chase each other.
const SHRINK_MARGIN_US: i64 = 4_000;
/// Headroom on top of the measured jitter.
const JITTER_MARGIN_US: i64 = 2_000;
/// After a loss, the target keeps one extra frame (for FEC) for this many frames (5 s): a
/// lossy link loses again soon, and dropping the frame only to stretch again at the next loss
/// would cost a skip and a concealment each time.
const LOSS_MEMORY_FRAMES: u32 = 250;
/// A sequence number this far from the expected one is a new stream, not loss or reordering.
const RESET_SPAN: i64 = 1_000;
/// A transit this far from the recent ones means the sender's clock jumped (a restarted
/// stream, timestamps that did not advance across a pause): forget the old transits.
const TIMELINE_JUMP_US: i64 = 1_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream.
    pub clock_rate: u32,
    /// Samples in one packet; what one `pop` plays.
    pub frame_samples: u32,
    /// The least delay kept, even on a perfect link: covers the scheduling jitter of the
    /// sender's and the receiver's threads.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Packets held at most (a power of two). Bounds memory and how far ahead a packet may be.
    pub capacity: usize,
    /// Concealed frames in a row (when nothing newer has arrived) before the stream is taken
    /// as paused and silence is played.
    pub max_conceal: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            clock_rate: 48_000,
            frame_samples: 960,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(300),
            capacity: 64,
            max_conceal: 5,
        }
    }
}

/// What to play for the next frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Playout {
    /// Decode this packet.
    Packet(Bytes),
    /// The wanted packet is missing; this is the one after it: decode its FEC data.
    Recover(Bytes),
    /// Missing with nothing to recover from: decoder concealment (PLC).
    Conceal,
    /// The buffer is deeper than needed: decode this packet but do not play it (keeps the
    /// decoder's history continuous), then pop again.
    Discard(Bytes),
    /// Nothing is playing (not started yet, or the sender paused): play silence for a short
    /// while and ask again. The decoder is not involved.
    Silence,
}

/// Counters since creation, and the current delay figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    pub received: u64,
    /// Arrived after their turn had passed (played as lost).
    pub late: u64,
    pub duplicate: u64,
    /// Turns whose packet was missing.
    pub lost: u64,
    /// Lost packets rebuilt from the next packet's FEC.
    pub recovered: u64,
    /// Frames filled by concealment (lost or late packets, and growing the buffer).
    pub concealed: u64,
    /// Frames dropped to shrink the buffer.
    pub discarded: u64,
    /// Times the stream was taken as a new one and the buffer started over.
    pub resets: u64,
    pub target_delay_ms: f32,
    /// How long the last played packet waited, counted from the earliest it could have arrived.
    pub delay_ms: f32,
    pub jitter_ms: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing received since creation or the last reset.
    Empty,
    /// Waiting until the first packet has been held for the target delay.
    Buffering,
    Playing,
}

#[derive(Debug, Clone)]
struct Slot {
    seq: i64,
    ts: i64,
    arrival_us: i64,
    payload: Bytes,
}

pub struct JitterBuffer {
    cfg: JitterConfig,
    slots: Vec<Option<Slot>>,
    state: State,
    /// Whether anything has been played since the last reset: before that, a packet older
    /// than the first one is reordering, not lateness.
    started: bool,
    epoch: Option<Instant>,
    /// Extended (never wrapping) sequence number to play next.
    next_seq: i64,
    highest_seq: i64,
    highest_ts: i64,
    conceal_run: u32,
    transits: [i64; TRANSIT_WINDOW],
    transit_len: usize,
    transit_pos: usize,
    scratch: [i64; TRANSIT_WINDOW],
    min_transit: i64,
    target_us: i64,
    /// Frames played since the last lost one.
    since_loss: u32,
    window_min_delay: i64,
    window_count: u32,
    shrink_pending: bool,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Self {
        let capacity = cfg.capacity.max(4).next_power_of_two();
        let target_us = cfg.min_delay.as_micros() as i64;
        JitterBuffer {
            cfg: JitterConfig { capacity, ..cfg },
            slots: vec![None; capacity],
            state: State::Empty,
            started: false,
            epoch: None,
            next_seq: 0,
            highest_seq: 0,
            highest_ts: 0,
            conceal_run: 0,
            transits: [0; TRANSIT_WINDOW],
            transit_len: 0,
            transit_pos: 0,
            scratch: [0; TRANSIT_WINDOW],
            min_transit: 0,
            target_us,
            since_loss: LOSS_MEMORY_FRAMES,
            window_min_delay: i64::MAX,
            window_count: 0,
            shrink_pending: false,
            stats: JitterStats {
                target_delay_ms: target_us as f32 / 1000.0,
                ..JitterStats::default()
            },
        }
    }

    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Packets waiting to be played.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The delay the buffer currently aims for.
    pub fn target_delay(&self) -> Duration {
        Duration::from_micros(self.target_us.max(0) as u64)
    }

    /// Forgets every packet and measurement (counters are kept); the next packet starts afresh.
    pub fn reset(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
        self.state = State::Empty;
        self.started = false;
        self.conceal_run = 0;
        self.transit_len = 0;
        self.transit_pos = 0;
        self.since_loss = LOSS_MEMORY_FRAMES;
        self.shrink_pending = false;
        self.restart_window();
        self.update_target();
    }

    /// Stores an arriving packet. `now` is when it arrived.
    pub fn push(&mut self, seq: u16, ts: u32, payload: Bytes, now: Instant) {
        if payload.is_empty() {
            return;
        }
        let epoch = *self.epoch.get_or_insert(now);
        let arrival_us = signed_micros(epoch, now);
        self.stats.received += 1;
        if self.state == State::Empty {
            self.begin(seq, ts);
        }
        let mut ext = extend(self.highest_seq, seq as i64, 16);
        let mut offset = ext - self.next_seq;
        if !(-RESET_SPAN..RESET_SPAN).contains(&offset) {
            self.reset();
            self.stats.resets += 1;
            self.begin(seq, ts);
            ext = self.next_seq;
            offset = 0;
        }
        let ts = extend(self.highest_ts, ts as i64, 32);
        self.record_transit(arrival_us - self.ts_us(ts));
        let capacity = self.cfg.capacity as i64;
        if offset < 0 {
            if self.started || offset <= -capacity / 2 {
                self.stats.late += 1;
                return;
            }
            // Reordered before playback began: start from this earlier packet.
            self.next_seq = ext;
        } else if offset >= capacity {
            // Too far ahead to hold alongside the oldest ones: those would be played too late
            // to matter anyway, so let them go.
            let new_next = ext - capacity + 1;
            for seq in self.next_seq..new_next.min(self.next_seq + capacity) {
                let index = self.index(seq);
                self.slots[index] = None;
            }
            self.next_seq = new_next;
        }
        let index = self.index(ext);
        if self.slots[index].as_ref().is_some_and(|s| s.seq == ext) {
            self.stats.duplicate += 1;
            return;
        }
        self.slots[index] = Some(Slot {
            seq: ext,
            ts,
            arrival_us,
            payload,
        });
        if ext > self.highest_seq {
            self.highest_seq = ext;
            self.highest_ts = ts;
        }
    }

    /// What to play for the frame starting at `now`. Call it again right away after a
    /// `Discard`; after a `Silence`, call it again a few milliseconds later.
    pub fn pop(&mut self, now: Instant) -> Playout {
        let Some(epoch) = self.epoch else {
            return Playout::Silence;
        };
        let now_us = signed_micros(epoch, now);
        match self.state {
            State::Empty => Playout::Silence,
            State::Buffering => {
                let Some(first) = self.earliest_waiting() else {
                    return Playout::Silence;
                };
                let arrival = self.slots[self.index(first)]
                    .as_ref()
                    .map_or(now_us, |s| s.arrival_us);
                if now_us < arrival + self.target_us {
                    return Playout::Silence;
                }
                // Anything before `first` went missing while nothing was playing (a pause):
                // there is no gap to fill, the stream simply resumes.
                self.next_seq = first;
                self.state = State::Playing;
                self.started = true;
                self.conceal_run = 0;
                self.restart_window();
                self.play_next(now_us)
            }
            State::Playing => self.play_next(now_us),
        }
    }

    fn play_next(&mut self, now_us: i64) -> Playout {
        let index = self.index(self.next_seq);
        let head = self.slots[index]
            .as_ref()
            .filter(|s| s.seq == self.next_seq)
            .map(|s| s.ts);
        if let Some(ts) = head {
            let delay = now_us - (self.ts_us(ts) + self.min_transit);
            self.stats.delay_ms = delay as f32 / 1000.0;
            let frame_us = self.frame_us();
            if delay + frame_us / 2 < self.target_us
                && self.conceal_run == 0
                && self.started_long_enough()
            {
                // Playing this now would leave too little cushion for what the jitter shows:
                // stretch by one concealed frame and play it next time.
                self.conceal_run += 1;
                self.stats.concealed += 1;
                self.restart_window();
                return Playout::Conceal;
            }
            let slot = self.slots[index].take().expect("slot checked above");
            self.next_seq += 1;
            self.conceal_run = 0;
            self.note_loss(false);
            self.track_delay(delay);
            if self.shrink_pending && self.present(self.next_seq) {
                self.shrink_pending = false;
                self.stats.discarded += 1;
                self.restart_window();
                return Playout::Discard(slot.payload);
            }
            return Playout::Packet(slot.payload);
        }
        if self.highest_seq > self.next_seq {
            // Something newer is here, so this one is lost (or so late it no longer matters).
            self.stats.lost += 1;
            self.note_loss(true);
            self.next_seq += 1;
            self.conceal_run = 0;
            if let Some(next) = self.slots[self.index(self.next_seq)]
                .as_ref()
                .filter(|s| s.seq == self.next_seq)
            {
                self.stats.recovered += 1;
                return Playout::Recover(next.payload.clone());
            }
            self.stats.concealed += 1;
            return Playout::Conceal;
        }
        // Nothing newer: the packet is late, lost at the tail of a burst, or the sender paused.
        // Hold the turn (the buffer grows by a frame) and see what arrives.
        self.conceal_run += 1;
        if self.conceal_run > self.cfg.max_conceal {
            self.state = State::Buffering;
            return Playout::Silence;
        }
        self.stats.concealed += 1;
        Playout::Conceal
    }

    /// The first frames after a start measure against few transits; stretching on them would
    /// add delay for no reason.
    fn started_long_enough(&self) -> bool {
        self.transit_len >= 8
    }

    fn begin(&mut self, seq: u16, ts: u32) {
        self.state = State::Buffering;
        self.started = false;
        self.next_seq = seq as i64;
        self.highest_seq = seq as i64;
        self.highest_ts = ts as i64;
    }

    fn earliest_waiting(&self) -> Option<i64> {
        (self.next_seq
            ..=self
                .highest_seq
                .min(self.next_seq + self.cfg.capacity as i64 - 1))
            .find(|seq| self.present(*seq))
    }

    fn present(&self, seq: i64) -> bool {
        self.slots[self.index(seq)]
            .as_ref()
            .is_some_and(|s| s.seq == seq)
    }

    fn index(&self, seq: i64) -> usize {
        (seq & (self.cfg.capacity as i64 - 1)) as usize
    }

    fn frame_us(&self) -> i64 {
        self.cfg.frame_samples as i64 * 1_000_000 / self.cfg.clock_rate.max(1) as i64
    }

    fn ts_us(&self, ts: i64) -> i64 {
        ts * 1_000_000 / self.cfg.clock_rate.max(1) as i64
    }

    fn record_transit(&mut self, transit: i64) {
        if self.transit_len > 0 && (transit - self.min_transit).abs() > TIMELINE_JUMP_US {
            self.transit_len = 0;
            self.transit_pos = 0;
        }
        self.transits[self.transit_pos] = transit;
        self.transit_pos = (self.transit_pos + 1) % TRANSIT_WINDOW;
        self.transit_len = (self.transit_len + 1).min(TRANSIT_WINDOW);
        self.update_target();
    }

    fn update_target(&mut self) {
        let min_delay = self.cfg.min_delay.as_micros() as i64;
        let max_delay = (self.cfg.max_delay.as_micros() as i64).max(min_delay);
        let mut jitter = 0;
        if self.transit_len > 0 {
            let recent = &mut self.scratch[..self.transit_len];
            recent.copy_from_slice(&self.transits[..self.transit_len]);
            let min = *recent.iter().min().expect("non-empty");
            let rank = (recent.len() * 95 / 100).min(recent.len() - 1);
            let (_, p95, _) = recent.select_nth_unstable(rank);
            self.min_transit = min;
            jitter = *p95 - min;
        }
        let mut target = (jitter + JITTER_MARGIN_US).max(min_delay);
        if self.since_loss < LOSS_MEMORY_FRAMES {
            target += self.frame_us();
        }
        self.target_us = target.min(max_delay);
        self.stats.target_delay_ms = self.target_us as f32 / 1000.0;
        self.stats.jitter_ms = jitter as f32 / 1000.0;
    }

    fn note_loss(&mut self, lost: bool) {
        let before = self.since_loss < LOSS_MEMORY_FRAMES;
        self.since_loss = if lost {
            0
        } else {
            self.since_loss.saturating_add(1)
        };
        if before != (self.since_loss < LOSS_MEMORY_FRAMES) {
            self.update_target();
        }
    }

    fn track_delay(&mut self, delay: i64) {
        self.window_min_delay = self.window_min_delay.min(delay);
        self.window_count += 1;
        if self.window_count >= SHRINK_WINDOW {
            if self.window_min_delay >= self.target_us + self.frame_us() + SHRINK_MARGIN_US {
                self.shrink_pending = true;
            }
            self.restart_window();
        }
    }

    fn restart_window(&mut self) {
        self.window_min_delay = i64::MAX;
        self.window_count = 0;
    }
}

/// Unwraps a `bits`-wide counter to the value nearest `reference`.
fn extend(reference: i64, value: i64, bits: u32) -> i64 {
    let modulus = 1i64 << bits;
    let diff = (value - reference).rem_euclid(modulus);
    if diff >= modulus / 2 {
        reference + diff - modulus
    } else {
        reference + diff
    }
}

fn signed_micros(epoch: Instant, t: Instant) -> i64 {
    if t >= epoch {
        t.duration_since(epoch).as_micros() as i64
    } else {
        -(epoch.duration_since(t).as_micros() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u32 = 960;
    const MS: Duration = Duration::from_millis(1);

    /// One packet as sent: its number, its timestamp and when it reaches the receiver.
    #[derive(Clone, Copy)]
    struct Arrival {
        seq: u16,
        ts: u32,
        at: Duration,
    }

    /// A tiny deterministic generator, so patterns are random-looking yet repeatable.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Packets sent every 20 ms from `start_seq`/`start_ts`; `delay(i)` is the network delay of
    /// packet `i` (None = lost).
    fn stream(
        count: usize,
        start_seq: u16,
        start_ts: u32,
        mut delay: impl FnMut(usize) -> Option<Duration>,
    ) -> Vec<Arrival> {
        let mut out: Vec<Arrival> = (0..count)
            .filter_map(|i| {
                let d = delay(i)?;
                Some(Arrival {
                    seq: start_seq.wrapping_add(i as u16),
                    ts: start_ts.wrapping_add(i as u32 * FRAME),
                    at: Duration::from_millis(20 * i as u64) + d,
                })
            })
            .collect();
        out.sort_by_key(|a| a.at);
        out
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Played {
        Seq(u16),
        Fec(u16),
        Plc,
        Silence,
    }

    /// Plays the stream like the mixer does: a 20 ms frame per pop, or 5 ms of silence when there
    /// is nothing to play, until `until`. Returns what was played and when (ms).
    fn run(jb: &mut JitterBuffer, arrivals: &[Arrival], until: Duration) -> Vec<(u64, Played)> {
        let base = Instant::now();
        let seq_of = |p: &Bytes| u16::from_be_bytes([p[0], p[1]]);
        let mut out = Vec::new();
        let mut next = 0;
        let mut t = Duration::ZERO;
        while t < until {
            while next < arrivals.len() && arrivals[next].at <= t {
                let a = arrivals[next];
                jb.push(
                    a.seq,
                    a.ts,
                    Bytes::copy_from_slice(&a.seq.to_be_bytes()),
                    base + a.at,
                );
                next += 1;
            }
            let played = loop {
                match jb.pop(base + t) {
                    Playout::Discard(_) => continue,
                    Playout::Packet(p) => break Played::Seq(seq_of(&p)),
                    Playout::Recover(p) => break Played::Fec(seq_of(&p).wrapping_sub(1)),
                    Playout::Conceal => break Played::Plc,
                    Playout::Silence => break Played::Silence,
                }
            };
            let step = if played == Played::Silence {
                5 * MS
            } else {
                20 * MS
            };
            out.push((t.as_millis() as u64, played));
            t += step;
        }
        out
    }

    fn packets(played: &[(u64, Played)]) -> Vec<u16> {
        played
            .iter()
            .filter_map(|(_, p)| match p {
                Played::Seq(s) | Played::Fec(s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    /// How often `what` was played before the stream's last packet (the tail of a finished
    /// stream is concealed and then silent, as it should be).
    fn count(played: &[(u64, Played)], what: &Played) -> usize {
        let end = played
            .iter()
            .rposition(|(_, p)| matches!(p, Played::Seq(_)))
            .map_or(0, |i| i + 1);
        played[..end].iter().filter(|(_, p)| p == what).count()
    }

    #[test]
    fn clean_link_plays_everything_in_order_with_the_minimum_delay() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let arrivals = stream(100, 1000, 5000, |_| Some(Duration::from_micros(300)));
        let played = run(&mut jb, &arrivals, Duration::from_millis(2100));
        assert_eq!(packets(&played), (1000..1100).collect::<Vec<u16>>());
        assert_eq!(count(&played, &Played::Plc), 0);
        let first = played
            .iter()
            .find(|(_, p)| *p == Played::Seq(1000))
            .unwrap()
            .0;
        assert!(
            (10..=15).contains(&first),
            "first packet played at {first} ms"
        );
        let s = jb.stats();
        assert_eq!((s.lost, s.late, s.discarded), (0, 0, 0));
        assert!(s.target_delay_ms <= 10.0 + 0.01, "{s:?}");
        assert!(s.delay_ms <= 15.0, "{s:?}");
    }

    #[test]
    fn reordering_is_absorbed_once_the_jitter_is_known() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        // Every 10th packet takes 30 ms longer, arriving after the one behind it.
        let arrivals = stream(300, 0, 0, |i| Some(if i % 10 == 5 { 31 * MS } else { MS }));
        let played = run(&mut jb, &arrivals, Duration::from_millis(6200));
        let order = packets(&played);
        assert!(
            order.windows(2).all(|w| w[1] == w[0] + 1),
            "out of order: {order:?}"
        );
        let s = jb.stats();
        // Only the first reorder (before the jitter was measured) may cost a packet.
        assert!(s.late + s.lost <= 2, "{s:?}");
        assert!(order.contains(&295) && !order.contains(&300));
        assert!((30.0..=45.0).contains(&s.target_delay_ms), "{s:?}");
    }

    #[test]
    fn losses_are_recovered_from_fec_when_the_next_packet_is_there() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut rng = Lcg(7);
        let lost: Vec<bool> = (0..500).map(|i| i > 3 && rng.next() < 0.05).collect();
        let arrivals = stream(500, 60000, 1, |i| (!lost[i]).then_some(MS));
        let played = run(&mut jb, &arrivals, Duration::from_millis(10_200));
        let order = packets(&played);
        // Every turn is accounted for, in order: played, rebuilt from FEC, or concealed.
        let s = jb.stats();
        let expected_lost = lost.iter().filter(|l| **l).count() as u64;
        assert_eq!(s.lost, expected_lost, "{s:?}");
        assert!(
            order.windows(2).all(|w| w[1].wrapping_sub(w[0]) >= 1),
            "{order:?}"
        );
        // Once the loss is noticed the buffer keeps one packet of lookahead, so nearly every
        // loss is rebuilt from FEC rather than concealed.
        assert!(s.recovered as f64 >= 0.8 * expected_lost as f64, "{s:?}");
        assert!(
            s.target_delay_ms >= 29.0 && s.target_delay_ms <= 35.0,
            "{s:?}"
        );
        assert_eq!(s.late, 0);
    }

    #[test]
    fn random_jitter_sets_the_target_near_its_95th_percentile() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut rng = Lcg(42);
        let arrivals = stream(1000, 0, 0, |_| {
            Some(Duration::from_micros((rng.next() * 30_000.0) as u64))
        });
        let played = run(&mut jb, &arrivals, Duration::from_millis(20_300));
        let s = jb.stats();
        assert!((28.0..=36.0).contains(&s.target_delay_ms), "{s:?}");
        // After the first second, under 5 % of the packets miss their turn.
        let late_after_warmup = played
            .iter()
            .filter(|(t, p)| *t > 1000 && *p == Played::Plc)
            .count();
        assert!(
            late_after_warmup < 50,
            "{late_after_warmup} concealed, {s:?}"
        );
        let order = packets(&played);
        assert!(order.windows(2).all(|w| w[1] > w[0]), "{order:?}");
        assert!(order.len() >= 950, "only {} of 1000 played", order.len());
    }

    #[test]
    fn sequence_and_timestamp_wrap_around() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let arrivals = stream(50, 65520, u32::MAX - 5 * FRAME, |_| Some(MS));
        let played = run(&mut jb, &arrivals, Duration::from_millis(1100));
        let expected: Vec<u16> = (0..50).map(|i| 65520u16.wrapping_add(i)).collect();
        assert_eq!(packets(&played), expected);
        assert_eq!(jb.stats().lost + jb.stats().resets + jb.stats().late, 0);
    }

    #[test]
    fn a_pause_with_contiguous_sequence_numbers_resumes_without_loss() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        // 50 packets, then the sender is muted for 2 s: the timestamps jump, the numbers do not.
        let mut arrivals = stream(50, 0, 0, |_| Some(MS));
        let pause = 2_000;
        arrivals.extend(
            stream(50, 50, 50 * FRAME + 48 * pause, |_| Some(MS))
                .into_iter()
                .map(|mut a| {
                    a.at += Duration::from_millis(1000 + pause as u64);
                    a
                }),
        );
        let played = run(&mut jb, &arrivals, Duration::from_millis(4200));
        assert_eq!(packets(&played), (0..100).collect::<Vec<u16>>());
        let s = jb.stats();
        assert_eq!((s.lost, s.late, s.resets), (0, 0, 0), "{s:?}");
        // A few concealed frames fade the stream out, then silence until it resumes.
        let plc = count(&played, &Played::Plc);
        assert!(plc <= 5, "{plc} concealed frames");
        let resumed = played
            .iter()
            .find(|(_, p)| *p == Played::Seq(50))
            .unwrap()
            .0;
        assert!(
            (3001 + 10..=3001 + 15).contains(&resumed),
            "resumed at {resumed} ms"
        );
    }

    #[test]
    fn a_new_stream_far_away_resets_the_buffer() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut arrivals = stream(20, 100, 0, |_| Some(MS));
        arrivals.extend(
            stream(20, 40_000, 77_777, |_| Some(MS))
                .into_iter()
                .map(|mut a| {
                    a.at += Duration::from_millis(400);
                    a
                }),
        );
        let played = run(&mut jb, &arrivals, Duration::from_millis(1000));
        let order = packets(&played);
        assert_eq!(order[..20], (100..120).collect::<Vec<u16>>()[..]);
        assert_eq!(order[20..], (40_000..40_020).collect::<Vec<u16>>()[..]);
        assert_eq!(jb.stats().resets, 1);
    }

    #[test]
    fn a_late_packet_is_dropped_not_played_out_of_order() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let arrivals = stream(30, 0, 0, |i| Some(if i == 20 { 200 * MS } else { MS }));
        let played = run(&mut jb, &arrivals, Duration::from_millis(700));
        let order = packets(&played);
        assert!(order.windows(2).all(|w| w[1] > w[0]), "{order:?}");
        assert_eq!(jb.stats().late, 1);
        assert!(!order.contains(&20) || order.iter().filter(|s| **s == 20).count() == 1);
    }

    #[test]
    fn memory_stays_bounded_when_nobody_plays() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let base = Instant::now();
        for i in 0..10_000u32 {
            jb.push(
                i as u16,
                i * FRAME,
                Bytes::from_static(b"x"),
                base + Duration::from_millis(20 * i as u64),
            );
        }
        assert!(jb.len() <= 64);
        assert_eq!(jb.slots.len(), 64);
    }

    #[test]
    fn a_deep_buffer_shrinks_back_after_a_jitter_spike() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        // One 120 ms spike early on, then a clean link for 6 s: once the spike has left the
        // measurement window the extra delay is given back a frame at a time.
        let arrivals = stream(400, 0, 0, |i| {
            Some(if (10..16).contains(&i) {
                (120 - 20 * (i as u32 - 10)) * MS
            } else {
                MS
            })
        });
        let played = run(&mut jb, &arrivals, Duration::from_millis(8100));
        let s = jb.stats();
        assert!(s.discarded >= 3, "{s:?}");
        assert!(s.delay_ms <= 35.0, "{s:?}");
        let order = packets(&played);
        assert!(order.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn reset_forgets_packets_but_keeps_counters() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let now = Instant::now();
        jb.push(1, 960, Bytes::from_static(b"a"), now);
        jb.push(2, 1920, Bytes::from_static(b"b"), now);
        jb.reset();
        assert!(jb.is_empty());
        assert_eq!(jb.pop(now + Duration::from_secs(1)), Playout::Silence);
        assert_eq!(jb.stats().received, 2);
        jb.push(
            3,
            2880,
            Bytes::from_static(b"c"),
            now + Duration::from_secs(1),
        );
        assert_eq!(
            jb.pop(now + Duration::from_secs(2)),
            Playout::Packet(Bytes::from_static(b"c"))
        );
    }
}
