//! Real-time pacing for the virtual devices. Work due is computed from the time elapsed since a
//! fixed anchor, never by sleeping fixed intervals, so a late wake-up catches up instead of
//! drifting, and sample `n` always maps to `anchor + n / rate`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct SampleClock {
    anchor: Instant,
    unix_micros: u64,
    rate: u32,
    done: u64,
}

impl SampleClock {
    /// A clock whose sample 0 is now.
    pub fn start(rate: u32) -> Self {
        let anchor = Instant::now();
        SampleClock {
            anchor,
            unix_micros: unix_micros_now(),
            rate: rate.max(1),
            done: 0,
        }
    }

    /// Unix time, in microseconds, of sample 0.
    pub fn unix_micros(&self) -> u64 {
        self.unix_micros
    }

    /// Samples produced so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// When sample `n` is due.
    pub fn time_of(&self, n: u64) -> Instant {
        self.anchor + Duration::from_nanos((n as u128 * 1_000_000_000 / self.rate as u128) as u64)
    }

    /// Whole blocks of `block` samples whose last sample is due by `now` and not yet produced.
    pub fn blocks_due(&self, now: Instant, block: u64) -> u64 {
        let elapsed = now.saturating_duration_since(self.anchor).as_nanos();
        let due_samples = (elapsed * self.rate as u128 / 1_000_000_000) as u64;
        (due_samples / block.max(1)).saturating_sub(self.done / block.max(1))
    }

    pub fn advance(&mut self, samples: u64) {
        self.done += samples;
    }

    /// When the next block of `block` samples will be due in full.
    pub fn next_deadline(&self, block: u64) -> Instant {
        let block = block.max(1);
        self.time_of((self.done / block + 1) * block)
    }
}

pub fn unix_micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_due_from_elapsed_time_without_drift() {
        let mut c = SampleClock::start(48_000);
        let t0 = c.time_of(0);
        assert_eq!(c.blocks_due(t0 + Duration::from_millis(19), 960), 0);
        assert_eq!(c.blocks_due(t0 + Duration::from_millis(20), 960), 1);
        // A wake-up 75 ms late owes three frames and the next deadline stays on the grid.
        assert_eq!(c.blocks_due(t0 + Duration::from_millis(75), 960), 3);
        c.advance(3 * 960);
        assert_eq!(c.blocks_due(t0 + Duration::from_millis(75), 960), 0);
        assert_eq!(c.next_deadline(960), t0 + Duration::from_millis(80));
        assert_eq!(c.time_of(48_000 * 3600), t0 + Duration::from_secs(3600));
        assert!(c.unix_micros() > 1_600_000_000_000_000);
    }
}
