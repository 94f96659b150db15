//! Which sources a device hears when more are routed to it than its link has slots: the
//! loudest few, by the RFC 6464 levels the senders attach, with hysteresis so slots do not
//! flap.
//!
//! Two pieces, both pure (time is passed in, nothing here reads a clock):
//!
//! - [`Levels`], one entry per *source*: a smoothed energy from the levels of its packets, when
//!   it was last heard, and since when it has been quiet. Updated once per packet, however many
//!   devices that packet goes to.
//! - [`Slots`], one per *receiving device*: which source holds each outbound slot. Asked once
//!   per packet and receiver, it answers where the packet goes, or that it is not forwarded.
//!
//! The rules:
//!
//! - A source keeps the slot it holds. A source without one takes the lowest free slot. So
//!   while a device has at least as many slots as sources routed to it, nothing is ever
//!   displaced and every source keeps a stable slot (a 1:1 call stays on slot 0).
//! - With every slot held, a source displaces a holder only if
//!   - the holder is **absent**: nothing from it for [`ABSENT_AFTER`]; or
//!   - the holder has been **quiet** (every packet at or below [`QUIET_DBOV`]) for
//!     [`QUIET_HOLD`] and the newcomer is **talking** (smoothed level above [`TALK_DBOV`]); or
//!   - the newcomer is **clearly louder**: its smoothed energy is [`SWITCH_DB`] above the
//!     holder's.
//!
//!   And in the last two cases only while the newcomer makes a sound: its latest packet and
//!   its average are above [`QUIET_DBOV`]. Background noise never pushes out anyone who is
//!   present, and a talker who just stopped (whose average is still high) does not take back
//!   the slot of whoever replaced them.
//!
//!   Of the holders it may displace, it takes the weakest one's slot (absent ones first).
//! - Packets without a level (a peer that did not negotiate the extension) count as
//!   [`UNKNOWN_DBOV`], moderately loud speech: such a source is never quiet, so it keeps a slot
//!   until it stops sending or someone is clearly louder than normal speech, and it can take the
//!   slot of an absent or long-quiet holder.
//!
//! Smoothing is an exponential average of the linear energy per 20 ms packet, fast to rise
//! ([`ATTACK`]) and slower to fall ([`RELEASE`]); a source back from absence starts from
//! silence. With these numbers a new talker takes over a slot from one who stopped talking
//! about 0.4–0.5 s after they stopped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::server::switchboard::ConnId;

/// The audio one packet carries; the smoothing constants are per packet of this length.
pub const FRAME: Duration = Duration::from_millis(20);
/// Time constant of the smoothed level while it rises.
pub const ATTACK: Duration = Duration::from_millis(100);
/// Time constant of the smoothed level while it falls.
pub const RELEASE: Duration = Duration::from_millis(300);
/// A holder with no packet for this long has left its slot to anyone who sends.
pub const ABSENT_AFTER: Duration = Duration::from_millis(300);
/// A holder quiet for this long has left its slot to anyone talking. Longer than most pauses
/// between words.
pub const QUIET_HOLD: Duration = Duration::from_millis(500);
/// A packet at or below this level (in -dBov: this many dB below full scale, or quieter)
/// is quiet: background noise, not speech.
pub const QUIET_DBOV: u8 = 50;
/// A smoothed level above this (-40 dBov) is someone talking.
pub const TALK_DBOV: u8 = 40;
/// How much louder (smoothed) a newcomer must be to displace a present, non-quiet holder.
pub const SWITCH_DB: u8 = 6;
/// The level assumed for a packet that carries none.
pub const UNKNOWN_DBOV: u8 = 30;

/// Weight of one packet in the average: `FRAME / (tau + FRAME)`.
const ATTACK_WEIGHT: f32 = 20.0 / (100.0 + 20.0);
const RELEASE_WEIGHT: f32 = 20.0 / (300.0 + 20.0);
/// [`SWITCH_DB`] as an energy ratio.
const SWITCH_RATIO: f32 = 3.981_072;
/// [`QUIET_DBOV`] and [`TALK_DBOV`] as energies.
const QUIET_ENERGY: f32 = 1e-5;
const TALK_ENERGY: f32 = 1e-4;

/// Linear energy (relative to full scale) of a level in -dBov.
fn energy(dbov: u8) -> f32 {
    10f32.powf(-f32::from(dbov) / 10.0)
}

/// What the selector knows about one source.
#[derive(Debug, Clone, Copy)]
struct Talker {
    /// Smoothed linear energy, 1.0 = full scale.
    energy: f32,
    /// When its last packet arrived.
    last: Instant,
    /// Start of the current run of quiet packets, if its last packet was quiet.
    quiet_since: Option<Instant>,
}

impl Talker {
    fn absent(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= ABSENT_AFTER
    }

    fn quiet_for_long(&self, now: Instant) -> bool {
        self.quiet_since
            .is_some_and(|q| now.saturating_duration_since(q) >= QUIET_HOLD)
    }
}

/// Smoothed levels, one entry per source that has sent anything.
#[derive(Debug, Default)]
pub struct Levels {
    talkers: HashMap<ConnId, Talker>,
}

impl Levels {
    /// Records a packet from `from` with its level in -dBov (None: it carried none) at `now`.
    /// Allocates only the first time a source is heard.
    pub fn heard(&mut self, from: ConnId, dbov: Option<u8>, now: Instant) {
        let dbov = dbov.unwrap_or(UNKNOWN_DBOV).min(127);
        let t = self.talkers.entry(from).or_insert(Talker {
            energy: 0.0,
            last: now,
            quiet_since: None,
        });
        if t.absent(now) {
            // Back after a break: what it said before says nothing about now.
            t.energy = 0.0;
            t.quiet_since = None;
        }
        let e = energy(dbov);
        let weight = if e > t.energy {
            ATTACK_WEIGHT
        } else {
            RELEASE_WEIGHT
        };
        t.energy += weight * (e - t.energy);
        t.last = t.last.max(now);
        if dbov >= QUIET_DBOV {
            t.quiet_since.get_or_insert(now);
        } else {
            t.quiet_since = None;
        }
    }

    /// Drops a source that is gone (its device's link closed).
    pub fn forget(&mut self, conn: ConnId) {
        self.talkers.remove(&conn);
    }

    /// The smoothed level of `conn` in dBov (0 loudest, negative below), if it was heard.
    #[must_use]
    pub fn smoothed_dbov(&self, conn: ConnId) -> Option<f32> {
        self.talkers
            .get(&conn)
            .map(|t| 10.0 * t.energy.max(1e-13).log10())
    }
}

/// Where one packet goes at one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The source already holds this slot.
    Held(usize),
    /// The source took this free slot.
    Took(usize),
    /// The source displaced `displaced` from this slot.
    Switched { slot: usize, displaced: ConnId },
    /// Every slot is held by a source this one may not displace: not forwarded.
    NotSelected,
}

impl Pick {
    /// The slot the packet goes out on, if any.
    #[must_use]
    pub fn slot(self) -> Option<usize> {
        match self {
            Pick::Held(i) | Pick::Took(i) | Pick::Switched { slot: i, .. } => Some(i),
            Pick::NotSelected => None,
        }
    }
}

/// One receiving device's slots and who holds each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slots {
    holders: Vec<Option<ConnId>>,
}

impl Slots {
    #[must_use]
    pub fn new(n: usize) -> Self {
        Slots {
            holders: vec![None; n],
        }
    }

    /// Who holds slot `i`.
    #[must_use]
    pub fn holder(&self, i: usize) -> Option<ConnId> {
        self.holders.get(i).copied().flatten()
    }

    /// Frees every slot whose holder `keep` rejects (it is no longer routed here). The slots
    /// stay where they are, so the next holder continues the same outbound stream.
    pub fn release_unless(&mut self, mut keep: impl FnMut(ConnId) -> bool) {
        for h in &mut self.holders {
            if h.is_some_and(|src| !keep(src)) {
                *h = None;
            }
        }
    }

    /// Decides where a packet from `from`, already recorded in `levels`, goes at this receiver.
    /// No allocation; O(slots).
    pub fn pick(&mut self, from: ConnId, levels: &Levels, now: Instant) -> Pick {
        if let Some(i) = self.holders.iter().position(|h| *h == Some(from)) {
            return Pick::Held(i);
        }
        // Lowest free first: keeps a 1:1 call on slot 0 through transfers and take-overs.
        if let Some(i) = self.holders.iter().position(Option::is_none) {
            self.holders[i] = Some(from);
            return Pick::Took(i);
        }
        let Some(cand) = levels.talkers.get(&from) else {
            return Pick::NotSelected;
        };
        // The weakest holder this candidate may displace; -1 ranks absent ones first.
        let mut weakest: Option<(usize, ConnId, f32)> = None;
        for (i, h) in self.holders.iter().enumerate() {
            let Some(h) = *h else { continue };
            let rank = match levels.talkers.get(&h) {
                // Never heard, or gone: nothing to protect.
                None => -1.0,
                Some(t) if t.absent(now) => -1.0,
                Some(t) if may_displace(cand, t, now) => t.energy,
                Some(_) => continue,
            };
            if weakest.is_none_or(|(_, _, r)| rank < r) {
                weakest = Some((i, h, rank));
            }
        }
        match weakest {
            Some((slot, displaced, _)) => {
                self.holders[slot] = Some(from);
                Pick::Switched { slot, displaced }
            }
            None => Pick::NotSelected,
        }
    }
}

/// Whether `cand` may take the slot of `holder`, who is present.
fn may_displace(cand: &Talker, holder: &Talker, now: Instant) -> bool {
    // Only while it makes a sound: a talker who just stopped still has a high average, and
    // would otherwise take back the slot of whoever replaced it.
    if cand.quiet_since.is_some() || cand.energy <= QUIET_ENERGY {
        return false;
    }
    cand.energy >= holder.energy * SWITCH_RATIO
        || (holder.quiet_for_long(now) && cand.energy > TALK_ENERGY)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few sources into a few slots, driven packet by packet in 20 ms rounds.
    struct Sim {
        levels: Levels,
        slots: Slots,
        t0: Instant,
        now: Instant,
        switches: usize,
        /// Per source: packets forwarded and not.
        forwarded: HashMap<ConnId, usize>,
        dropped: HashMap<ConnId, usize>,
    }

    impl Sim {
        fn new(slots: usize) -> Self {
            let t0 = Instant::now();
            Sim {
                levels: Levels::default(),
                slots: Slots::new(slots),
                t0,
                now: t0,
                switches: 0,
                forwarded: HashMap::new(),
                dropped: HashMap::new(),
            }
        }

        fn packet(&mut self, from: ConnId, dbov: Option<u8>) -> Pick {
            self.levels.heard(from, dbov, self.now);
            let pick = self.slots.pick(from, &self.levels, self.now);
            match pick {
                Pick::NotSelected => *self.dropped.entry(from).or_default() += 1,
                Pick::Switched { .. } => {
                    self.switches += 1;
                    *self.forwarded.entry(from).or_default() += 1;
                }
                _ => *self.forwarded.entry(from).or_default() += 1,
            }
            pick
        }

        /// One 20 ms round: each (source, level) sends one packet, in order.
        fn round(&mut self, talkers: &[(ConnId, Option<u8>)]) {
            for &(from, dbov) in talkers {
                self.packet(from, dbov);
            }
            self.now += FRAME;
        }

        fn rounds(&mut self, n: usize, talkers: &[(ConnId, Option<u8>)]) {
            for _ in 0..n {
                self.round(talkers);
            }
        }

        fn ms(&self) -> u128 {
            (self.now - self.t0).as_millis()
        }

        fn holders(&self) -> Vec<Option<ConnId>> {
            self.slots.holders.clone()
        }

        fn selected(&self, conn: ConnId) -> bool {
            self.slots.holders.contains(&Some(conn))
        }
    }

    const LOUD: Option<u8> = Some(20);

    #[test]
    fn constants_match_their_decibels() {
        let close = |a: f32, b: f32| ((a - b) / b).abs() < 1e-4;
        assert!(close(QUIET_ENERGY, energy(QUIET_DBOV)));
        assert!(close(TALK_ENERGY, energy(TALK_DBOV)));
        assert!(close(1.0 / SWITCH_RATIO, energy(SWITCH_DB)));
        assert_eq!(FRAME, Duration::from_millis(20));
        assert!(close(
            ATTACK_WEIGHT,
            20.0 / (ATTACK.as_millis() as f32 + 20.0)
        ));
        assert!(close(
            RELEASE_WEIGHT,
            20.0 / (RELEASE.as_millis() as f32 + 20.0)
        ));
    }

    #[test]
    fn sources_that_fit_keep_stable_slots_whatever_their_levels() {
        let mut sim = Sim::new(3);
        // One source: slot 0, through silence, no level, and a long absence.
        sim.rounds(10, &[(1, Some(127))]);
        sim.rounds(10, &[(1, None)]);
        sim.now += Duration::from_secs(5);
        sim.rounds(10, &[(1, LOUD)]);
        assert_eq!(sim.holders(), [Some(1), None, None]);
        // Three sources in three slots, in order of arrival, whatever they do.
        for r in 0..200u32 {
            let wild = |k: u32| Some(((r * 37 + k * 53) % 128) as u8);
            if r % 50 < 30 {
                sim.round(&[(3, wild(3)), (2, wild(2)), (1, wild(1))]);
            } else {
                // Source 1 goes silent for a while; 3 and 2 carry on.
                sim.round(&[(3, wild(3)), (2, None)]);
            }
        }
        assert_eq!(sim.holders(), [Some(1), Some(3), Some(2)]);
        assert_eq!(sim.switches, 0);
        assert!(sim.dropped.is_empty());
    }

    #[test]
    fn the_quiet_one_of_four_is_not_forwarded() {
        let mut sim = Sim::new(3);
        let talkers = [(1, LOUD), (2, Some(24)), (3, Some(22)), (4, Some(45))];
        sim.rounds(100, &talkers);
        assert_eq!(sim.forwarded.get(&4), None);
        assert_eq!(sim.dropped[&4], 100);
        assert_eq!(sim.switches, 0);

        // Even if the quiet one came first and got a slot, the third talker takes it at once.
        let mut sim = Sim::new(3);
        sim.round(&[(4, Some(45)), (1, LOUD), (2, Some(24))]);
        assert_eq!(
            sim.packet(3, Some(22)),
            Pick::Switched {
                slot: 0,
                displaced: 4
            }
        );
        sim.rounds(100, &talkers);
        assert_eq!(sim.holders(), [Some(3), Some(1), Some(2)]);
        assert_eq!(sim.forwarded[&4], 1);
        assert_eq!(sim.switches, 1);
    }

    #[test]
    fn a_holder_gone_quiet_is_replaced_after_the_quiet_period_only() {
        let mut sim = Sim::new(3);
        sim.rounds(50, &[(1, LOUD), (2, LOUD), (3, LOUD)]);
        assert_eq!(sim.holders(), [Some(1), Some(2), Some(3)]);
        // 3 stops talking (its mic still sends room noise); 4 starts, softer than the others
        // were: not clearly louder than 3's fading average, so only the quiet rule lets it in.
        let quiet_from = sim.ms();
        let mut took = None;
        for _ in 0..100 {
            sim.round(&[(1, LOUD), (2, LOUD), (3, Some(70)), (4, Some(35))]);
            if took.is_none() && sim.selected(4) {
                took = Some(sim.ms() - quiet_from);
            }
        }
        let took = took.expect("4 gets a slot");
        let hold = QUIET_HOLD.as_millis();
        assert!(
            (hold..=hold + 40).contains(&took),
            "took over after {took} ms"
        );
        assert_eq!(sim.holders(), [Some(1), Some(2), Some(4)]);
        assert_eq!(sim.switches, 1);

        // A pause shorter than the quiet period keeps the slot.
        let mut sim = Sim::new(3);
        sim.rounds(50, &[(1, LOUD), (2, LOUD), (3, LOUD)]);
        for round in 0..200 {
            let three = if round % 30 < 20 { Some(70) } else { LOUD };
            sim.round(&[(1, LOUD), (2, LOUD), (3, three), (4, Some(35))]);
        }
        assert_eq!(sim.holders(), [Some(1), Some(2), Some(3)]);
        assert_eq!(sim.switches, 0);
    }

    #[test]
    fn a_quiet_newcomer_does_not_take_a_quiet_holders_slot() {
        let mut sim = Sim::new(3);
        sim.rounds(50, &[(1, LOUD), (2, LOUD), (3, LOUD)]);
        // 3 goes quiet; 4 only has room noise. Nobody worth a switch.
        sim.rounds(200, &[(1, LOUD), (2, LOUD), (3, Some(80)), (4, Some(55))]);
        assert_eq!(sim.holders(), [Some(1), Some(2), Some(3)]);
        assert_eq!(sim.switches, 0);
    }

    #[test]
    fn a_marginally_louder_newcomer_does_not_displace_but_a_clearly_louder_one_does() {
        let mut sim = Sim::new(3);
        sim.rounds(50, &[(1, Some(25)), (2, Some(25)), (3, Some(25))]);
        // 4 dB louder than all of them, for 5 s: not enough.
        sim.rounds(
            250,
            &[(1, Some(25)), (2, Some(25)), (3, Some(25)), (4, Some(21))],
        );
        assert_eq!(sim.holders(), [Some(1), Some(2), Some(3)]);
        assert_eq!(sim.forwarded.get(&4), None);
        // 10 dB louder: in within a few packets, in the quietest holder's slot.
        sim.rounds(50, &[(1, Some(25)), (2, Some(27)), (3, Some(25))]);
        let mut after = None;
        for r in 0..50 {
            sim.round(&[(1, Some(25)), (2, Some(27)), (3, Some(25)), (4, Some(15))]);
            if after.is_none() && sim.selected(4) {
                after = Some(r);
            }
        }
        assert!(after.is_some_and(|r| r < 10), "after {after:?} rounds");
        assert_eq!(sim.holders(), [Some(1), Some(4), Some(3)]);
        assert_eq!(sim.switches, 1);
    }

    #[test]
    fn a_source_that_stops_sending_is_replaced_after_the_absence_period() {
        let mut sim = Sim::new(3);
        sim.rounds(50, &[(1, LOUD), (2, LOUD), (3, LOUD)]);
        // 3 stops sending altogether (muted, hung up, lost); 4 talks more softly than 3 did.
        let stopped = sim.ms();
        let mut took = None;
        for _ in 0..50 {
            sim.round(&[(1, LOUD), (2, LOUD), (4, Some(30))]);
            if took.is_none() && sim.selected(4) {
                took = Some(sim.ms() - stopped);
            }
        }
        let took = took.expect("4 gets a slot");
        let absent = ABSENT_AFTER.as_millis();
        assert!(
            (absent..=absent + 40).contains(&took),
            "took over after {took} ms"
        );
        assert_eq!(sim.holders(), [Some(1), Some(2), Some(4)]);
        // 3 comes back: it starts from silence, so it does not throw 4 out at once, but being
        // clearly louder it gets back in soon.
        let back = sim.packet(3, LOUD);
        assert_eq!(back, Pick::NotSelected);
        sim.rounds(10, &[(1, LOUD), (2, LOUD), (4, Some(30)), (3, LOUD)]);
        assert_eq!(sim.holders(), [Some(1), Some(2), Some(3)]);
    }

    #[test]
    fn similar_talkers_do_not_flap() {
        // Five people talking at once at about the same level, each jittering ±3 dB per packet:
        // the first three keep their slots.
        let mut sim = Sim::new(3);
        let mut seed = 0x2545_f491_u32;
        let mut jitter = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed % 7) as u8
        };
        for _ in 0..1000 {
            let round: Vec<(ConnId, Option<u8>)> =
                (1..=5).map(|k| (k, Some(21 + jitter()))).collect();
            sim.round(&round);
        }
        assert_eq!(sim.holders(), [Some(1), Some(2), Some(3)]);
        assert_eq!(sim.switches, 0);
    }

    #[test]
    fn turn_taking_follows_the_talkers() {
        // Four people in three slots take turns, one talking at a time for 2 s while the
        // others send room noise: whoever talks takes the slot of someone long quiet at once.
        let mut sim = Sim::new(3);
        for turn in 0..12u64 {
            let talker = turn % 4 + 1;
            let mut heard_after = None;
            for r in 0..100 {
                let round: Vec<(ConnId, Option<u8>)> = (1..=4)
                    .map(|k| (k, Some(if k == talker { 22 } else { 60 })))
                    .collect();
                sim.round(&round);
                if heard_after.is_none() && sim.selected(talker) {
                    heard_after = Some(r * 20);
                }
            }
            let ms = heard_after.expect("the talker is heard");
            assert!(ms <= 40, "turn {turn}: talker {talker} heard after {ms} ms");
        }
        // The first three turns fill the free slots; every later turn displaces exactly one
        // holder (the one quiet the longest), and nobody flaps in between.
        assert_eq!(sim.switches, 9);
    }

    #[test]
    fn sources_without_levels_count_as_moderate_speech() {
        let mut sim = Sim::new(3);
        sim.rounds(50, &[(1, None), (2, None), (3, None)]);
        // Never quiet: a talker at normal speech level does not get in...
        sim.rounds(100, &[(1, None), (2, None), (3, None), (4, Some(27))]);
        assert_eq!(sim.holders(), [Some(1), Some(2), Some(3)]);
        // ...a clearly louder one does.
        sim.rounds(10, &[(1, None), (2, None), (3, None), (4, Some(18))]);
        assert!(sim.selected(4));
        assert_eq!(sim.switches, 1);
        // And one without levels takes the slot of a holder who went quiet.
        let mut sim = Sim::new(3);
        sim.rounds(50, &[(1, LOUD), (2, LOUD), (3, LOUD)]);
        sim.rounds(40, &[(1, LOUD), (2, LOUD), (3, Some(90)), (4, None)]);
        assert_eq!(sim.holders(), [Some(1), Some(2), Some(4)]);
    }

    #[test]
    fn released_slots_are_reused_lowest_first() {
        let mut sim = Sim::new(3);
        sim.round(&[(1, LOUD), (2, LOUD), (3, LOUD)]);
        sim.slots.release_unless(|s| s != 1);
        assert_eq!(sim.holders(), [None, Some(2), Some(3)]);
        assert_eq!(sim.packet(5, Some(60)), Pick::Took(0));
        assert_eq!(sim.packet(5, Some(60)), Pick::Held(0));
        assert_eq!(Pick::Took(0).slot(), Some(0));
        assert_eq!(Pick::NotSelected.slot(), None);
        // A forgotten source's slot goes to the next one who asks.
        sim.levels.forget(2);
        sim.levels.heard(6, Some(80), sim.now);
        assert_eq!(
            sim.slots.pick(6, &sim.levels, sim.now),
            Pick::Switched {
                slot: 1,
                displaced: 2
            }
        );
    }

    #[test]
    fn smoothing_rises_fast_and_falls_slowly() {
        let mut levels = Levels::default();
        let t0 = Instant::now();
        let mut t = t0;
        for _ in 0..5 {
            levels.heard(1, Some(20), t);
            t += FRAME;
        }
        // 100 ms in: within 3 dB of the level.
        let up = levels.smoothed_dbov(1).unwrap();
        assert!((-23.0..-20.0).contains(&up), "{up}");
        for _ in 0..5 {
            levels.heard(1, Some(127), t);
            t += FRAME;
        }
        // 100 ms of silence: still well above -30.
        let down = levels.smoothed_dbov(1).unwrap();
        assert!(down > -27.0, "{down}");
        assert_eq!(levels.smoothed_dbov(2), None);
    }
}
