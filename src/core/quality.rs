//! How good the network is for a call, from the media link's running counters (the W3C stats
//! the link keeps: RTP sequence gaps, interarrival jitter, RTCP receiver reports, the ICE round
//! trip). The media adapter reads the counters about once a second; this turns each reading
//! into figures over the last interval and grades them as ACS's `networkReceiveQuality` and
//! `networkSendQuality` (Good / Poor / Bad).

use std::time::{Duration, Instant};

use super::diagnostics::Quality;

/// Cumulative counters of one media link, as the media adapter reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkCounters {
    /// Audio packets received and lost (sequence gaps), over all streams, since the link began.
    pub packets_received: u64,
    pub packets_lost: u64,
    /// The interarrival jitter of the incoming audio now (RFC 3550), worst stream, in ms.
    pub jitter_ms: f64,
    /// What the far end (the switchboard) last reported losing of what we send (RTCP RR
    /// fraction lost, 0..=1), if it has reported.
    pub remote_fraction_lost: Option<f64>,
    /// The round-trip time to the switchboard (RTCP, else ICE), in ms, once measured.
    pub rtt_ms: Option<f64>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

/// The network as one call sees it over the last interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkQuality {
    /// Of the audio packets due in the interval, the share that never came (smoothed), in %.
    pub receive_loss_pct: f64,
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
    /// Of what we send, the share the switchboard reports lost, in %.
    pub send_loss_pct: Option<f64>,
    pub receive_kbps: f64,
    pub send_kbps: f64,
    pub receive: Quality,
    pub send: Quality,
}

/// The packet loss (%) the Opus encoder sizes its in-band FEC for, from the worse of what the
/// switchboard reports losing of ours and what we lose of the incoming audio (the far side's
/// own downlink is not known here, and a bad Wi-Fi link loses both ways).
///
/// Four times the measured loss, in steps of 5 so a wobbling figure does not retune the
/// encoder every second, at most 25 %: Opus gives its in-band copy of each frame more bits the
/// more loss it is told to expect, and a fuller copy is what a lost frame is rebuilt from.
/// Measured through encoder, random loss and decoder on 11 s of speech (PESQ-WB, the bitrate
/// growing with the FEC as `codec::bitrate_for_loss` does): at 5 % loss, 3.17 sized for 5 %,
/// 3.37 for 10 %, 3.61 for 20 %, 3.63 for 25 %; at 15 % loss, 1.97 for 15 %, 2.07 for 25 %.
/// None on a link that loses under 1 %: the copy takes bits from the speech and a clean link
/// gains nothing for them.
#[must_use]
pub fn fec_loss_percent(q: &LinkQuality) -> u8 {
    let worst = q.send_loss_pct.unwrap_or(0.0).max(q.receive_loss_pct);
    if worst < 1.0 {
        return 0;
    }
    let step = (worst * FEC_OVERSIZE / 5.0).ceil() * 5.0;
    step.min(f64::from(FEC_LOSS_MAX)) as u8
}

/// How many times the measured loss the FEC is sized for (see [`fec_loss_percent`]).
const FEC_OVERSIZE: f64 = 4.0;

/// What a new link's encoder assumes until the first measurement (a second or two): a little
/// protection while nothing is known.
pub const FEC_LOSS_START: u8 = 5;
const FEC_LOSS_MAX: u8 = 25;

/// The codec every call uses, for call-info screens.
pub const CODEC: &str = "opus/48000 mono, 20 ms, in-band FEC";

/// Loss up to this is Good; Opus with FEC hides it (percent).
const LOSS_POOR: f64 = 3.0;
/// From this on speech is audibly damaged whatever the concealment (percent).
const LOSS_BAD: f64 = 10.0;
/// Jitter that makes the buffer grow noticeably, and that makes it add delay one hears (ms).
const JITTER_POOR: f64 = 30.0;
const JITTER_BAD: f64 = 60.0;
/// Round trips at which talking over each other starts, and at which conversation suffers (ms;
/// ITU-T G.114's one-way 150/400 ms budget, doubled and less the buffers).
const RTT_POOR: f64 = 300.0;
const RTT_BAD: f64 = 500.0;
/// Weight of the newest interval's loss in the smoothed figure: one bad second shows, a
/// lasting change takes a few.
const SMOOTHING: f64 = 0.5;
/// Intervals shorter than this are merged into the next (a reading right after another).
const MIN_INTERVAL: Duration = Duration::from_millis(500);

#[must_use]
pub fn grade_receive(loss_pct: f64, jitter_ms: f64) -> Quality {
    if loss_pct >= LOSS_BAD || jitter_ms >= JITTER_BAD {
        Quality::Bad
    } else if loss_pct >= LOSS_POOR || jitter_ms >= JITTER_POOR {
        Quality::Poor
    } else {
        Quality::Good
    }
}

#[must_use]
pub fn grade_send(loss_pct: Option<f64>, rtt_ms: Option<f64>) -> Quality {
    let loss = loss_pct.unwrap_or(0.0);
    let rtt = rtt_ms.unwrap_or(0.0);
    if loss >= LOSS_BAD || rtt >= RTT_BAD {
        Quality::Bad
    } else if loss >= LOSS_POOR || rtt >= RTT_POOR {
        Quality::Poor
    } else {
        Quality::Good
    }
}

/// Turns readings of [`LinkCounters`] into [`LinkQuality`].
#[derive(Debug, Default)]
pub struct QualityMeter {
    last: Option<(Instant, LinkCounters)>,
    loss_pct: f64,
    latest: Option<LinkQuality>,
}

impl QualityMeter {
    /// A new link: its counters start from zero.
    pub fn reset(&mut self) {
        *self = QualityMeter::default();
    }

    /// The figures of the last full interval, once there is one.
    pub fn latest(&self) -> Option<LinkQuality> {
        self.latest
    }

    /// A reading; returns the new figures when an interval completed.
    pub fn sample(&mut self, c: LinkCounters, now: Instant) -> Option<LinkQuality> {
        let Some((then, prev)) = self.last else {
            self.last = Some((now, c));
            return None;
        };
        let dt = now.saturating_duration_since(then);
        if dt < MIN_INTERVAL {
            return None;
        }
        // Counters of a new link restart from zero: start over rather than see a huge drop.
        if c.packets_received < prev.packets_received || c.bytes_sent < prev.bytes_sent {
            self.reset();
            self.last = Some((now, c));
            return None;
        }
        self.last = Some((now, c));
        let got = c.packets_received - prev.packets_received;
        let lost = c.packets_lost.saturating_sub(prev.packets_lost);
        let due = got + lost;
        // An interval with nothing due (silence, hold, no call) says nothing about loss.
        if due > 0 {
            let interval = 100.0 * lost as f64 / due as f64;
            self.loss_pct = match self.latest {
                Some(_) => SMOOTHING * interval + (1.0 - SMOOTHING) * self.loss_pct,
                None => interval,
            };
        }
        let secs = dt.as_secs_f64();
        let send_loss_pct = c.remote_fraction_lost.map(|f| 100.0 * f);
        let q = LinkQuality {
            receive_loss_pct: self.loss_pct,
            jitter_ms: c.jitter_ms,
            rtt_ms: c.rtt_ms,
            send_loss_pct,
            receive_kbps: (c.bytes_received - prev.bytes_received) as f64 * 8.0 / 1000.0 / secs,
            send_kbps: (c.bytes_sent - prev.bytes_sent) as f64 * 8.0 / 1000.0 / secs,
            receive: grade_receive(self.loss_pct, c.jitter_ms),
            send: grade_send(send_loss_pct, c.rtt_ms),
        };
        self.latest = Some(q);
        Some(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(received: u64, lost: u64) -> LinkCounters {
        LinkCounters {
            packets_received: received,
            packets_lost: lost,
            bytes_received: received * 100,
            bytes_sent: received * 100,
            ..LinkCounters::default()
        }
    }

    #[test]
    fn grades_follow_the_thresholds() {
        assert_eq!(grade_receive(0.0, 5.0), Quality::Good);
        assert_eq!(grade_receive(5.0, 5.0), Quality::Poor);
        assert_eq!(grade_receive(1.0, 35.0), Quality::Poor);
        assert_eq!(grade_receive(15.0, 5.0), Quality::Bad);
        assert_eq!(grade_send(None, None), Quality::Good);
        assert_eq!(grade_send(Some(4.0), Some(50.0)), Quality::Poor);
        assert_eq!(grade_send(Some(0.0), Some(600.0)), Quality::Bad);
    }

    #[test]
    fn loss_is_measured_per_interval_and_smoothed() {
        let t0 = Instant::now();
        let s = |k: u64| t0 + Duration::from_secs(k);
        let mut m = QualityMeter::default();
        assert_eq!(m.sample(counters(0, 0), s(0)), None);
        let q = m.sample(counters(50, 0), s(1)).unwrap();
        assert_eq!((q.receive_loss_pct, q.receive), (0.0, Quality::Good));
        assert!((q.receive_kbps - 40.0).abs() < 1e-9, "{q:?}");
        // 15 % loss for a while: Bad within two intervals.
        let q = m.sample(counters(50 + 42, 8), s(2)).unwrap();
        assert_eq!(q.receive, Quality::Poor, "one bad second shows: {q:?}");
        let q = m.sample(counters(50 + 84, 16), s(3)).unwrap();
        assert_eq!(q.receive, Quality::Bad, "{q:?}");
        // Clean again: back to Good in a few seconds.
        let mut q = q;
        for k in 4..8 {
            q = m.sample(counters(134 + 50 * (k - 3), 16), s(k)).unwrap();
        }
        assert_eq!(q.receive, Quality::Good, "{q:?}");
        // Silence (nothing due) keeps the last loss figure rather than calling it perfect.
        let before = q.receive_loss_pct;
        let q = m.sample(counters(334, 16), s(9)).unwrap();
        assert_eq!(q.receive_loss_pct, before);
        // A reading right after another is merged into the next interval.
        assert_eq!(
            m.sample(counters(340, 16), s(9) + Duration::from_millis(100)),
            None
        );
    }

    #[test]
    fn fec_is_sized_for_the_worse_direction_in_steps_of_five() {
        let q = |recv: f64, send: Option<f64>| LinkQuality {
            receive_loss_pct: recv,
            jitter_ms: 0.0,
            rtt_ms: None,
            send_loss_pct: send,
            receive_kbps: 0.0,
            send_kbps: 0.0,
            receive: Quality::Good,
            send: Quality::Good,
        };
        assert_eq!(
            fec_loss_percent(&q(0.0, None)),
            0,
            "a clean link needs no FEC"
        );
        assert_eq!(fec_loss_percent(&q(0.9, Some(0.0))), 0);
        assert_eq!(fec_loss_percent(&q(1.0, Some(0.0))), 5);
        assert_eq!(
            fec_loss_percent(&q(2.2, None)),
            10,
            "four times the loss, in steps of 5"
        );
        assert_eq!(
            fec_loss_percent(&q(3.2, Some(4.9))),
            20,
            "the worse direction"
        );
        assert_eq!(
            fec_loss_percent(&q(1.0, Some(2.5))),
            10,
            "what the switchboard lost"
        );
        assert_eq!(fec_loss_percent(&q(5.0, None)), 20, "exactly on a step");
        assert_eq!(fec_loss_percent(&q(15.0, Some(80.0))), 25, "capped");
    }

    #[test]
    fn a_new_link_starts_over() {
        let t0 = Instant::now();
        let mut m = QualityMeter::default();
        m.sample(counters(0, 0), t0);
        m.sample(counters(500, 100), t0 + Duration::from_secs(1));
        assert_eq!(
            m.sample(counters(10, 0), t0 + Duration::from_secs(2)),
            None,
            "counters went back: a new link"
        );
        let q = m
            .sample(counters(60, 0), t0 + Duration::from_secs(3))
            .unwrap();
        assert_eq!(q.receive_loss_pct, 0.0);
    }
}
