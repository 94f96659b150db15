//! User-facing network diagnostics (ACS `UserFacingDiagnostics`, network part): derived state,
//! computed from what the media adapter reports (the link up or down, packets received, TURN
//! relays reachable) and the calls, and reported on change. A call is never shown healthy while
//! no sound can flow: a link that does not come up, or audio that stops arriving, is reported
//! within [`GRACE`] plus one report interval.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long media may be missing before it is reported: long enough for a link's first ICE
/// round on a slow network, short enough that a user is told before they start to wonder.
pub const GRACE: Duration = Duration::from_secs(3);

/// The network diagnostics, named as in ACS and shared/agent-contract.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Diagnostic {
    /// The media path to the switchboard is lost or never came up (Good/Poor/Bad).
    NetworkReconnect,
    /// This device has no network at all (bool).
    NoNetwork,
    /// Audio that should arrive does not, or arrives damaged (Good/Poor/Bad).
    NetworkReceiveQuality,
    /// What we send does not get through (Good/Poor/Bad).
    NetworkSendQuality,
    /// TURN relays were offered but none could be reached (bool).
    NetworkRelaysNotReachable,
}

impl Diagnostic {
    /// The ACS name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Diagnostic::NetworkReconnect => "networkReconnect",
            Diagnostic::NoNetwork => "noNetwork",
            Diagnostic::NetworkReceiveQuality => "networkReceiveQuality",
            Diagnostic::NetworkSendQuality => "networkSendQuality",
            Diagnostic::NetworkRelaysNotReachable => "networkRelaysNotReachable",
        }
    }
}

/// ACS's `DiagnosticQuality`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    Good,
    Poor,
    Bad,
}

/// A diagnostic's value: a flag or a quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagnosticValue {
    Flag(bool),
    Quality(Quality),
}

/// One change to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnosticChange {
    /// The call it is about; `None` for the device as a whole.
    pub call_id: Option<String>,
    pub diagnostic: Diagnostic,
    pub value: DiagnosticValue,
    /// Why, in words, when something is wrong.
    pub message: Option<String>,
}

/// What the diagnostics need to know of one call.
#[derive(Debug, Clone)]
pub struct CallView<'a> {
    pub call_id: &'a str,
    /// Connected (not held), with someone who should be sending us audio now.
    pub expects_audio: bool,
    /// Connected or on hold: a call that needs the media path.
    pub live: bool,
}

/// The state behind the diagnostics.
#[derive(Debug, Default)]
pub struct Diagnostics {
    /// The media link is up.
    link_up: bool,
    /// Since when the link has been down (or connecting), if it is.
    down_since: Option<Instant>,
    /// Audio packets received so far on the current link, and when that count last grew.
    received: u64,
    received_at: Option<Instant>,
    /// The signaling connection is lost and being re-established (the calls are kept).
    signaling_lost: bool,
    /// The network figures of the last interval (`quality.rs`), while the link is up.
    quality: Option<super::quality::LinkQuality>,
    /// No interface has an address the switchboard could be reached from.
    no_network: bool,
    /// The switchboard offered TURN relays.
    relays_offered: bool,
    /// Every relay failed: why.
    relays_failed: Option<String>,
    /// Since when each call has expected audio (or been live), per call.
    expecting_since: BTreeMap<String, Instant>,
    live_since: BTreeMap<String, Instant>,
    /// The last value reported for each (call, diagnostic).
    reported: BTreeMap<(Option<String>, Diagnostic), DiagnosticValue>,
}

impl Diagnostics {
    /// A new media link is being built (after sign-in, or after the old one failed).
    pub fn link_started(&mut self, relays_offered: bool, now: Instant) {
        self.link_up = false;
        self.down_since = Some(now);
        self.received = 0;
        self.received_at = None;
        self.relays_offered = relays_offered;
        self.relays_failed = None;
        self.quality = None;
    }

    pub fn link(&mut self, up: bool, now: Instant) {
        if up == self.link_up {
            return;
        }
        self.link_up = up;
        self.down_since = (!up).then_some(now);
    }

    /// The link's count of audio packets received.
    pub fn received(&mut self, total: u64, now: Instant) {
        if total != self.received {
            self.received = total;
            self.received_at = Some(now);
        }
    }

    /// The connection to the switchboard is up (false: lost, reconnecting).
    pub fn signaling(&mut self, up: bool) {
        self.signaling_lost = !up;
    }

    /// The latest network figures (None: none yet on this link).
    pub fn quality(&mut self, q: Option<super::quality::LinkQuality>) {
        self.quality = q;
    }

    /// When audio last arrived on the current link.
    pub fn last_audio(&self) -> Option<Instant> {
        self.received_at
    }

    /// Whether any interface has a usable address.
    pub fn network(&mut self, available: bool) {
        self.no_network = !available;
    }

    pub fn relays_unreachable(&mut self, why: String) {
        self.relays_failed = Some(why);
    }

    /// What changed, given the calls now.
    pub fn evaluate(&mut self, calls: &[CallView<'_>], now: Instant) -> Vec<DiagnosticChange> {
        let mut out = Vec::new();
        self.expecting_since
            .retain(|id, _| calls.iter().any(|c| c.expects_audio && c.call_id == id));
        self.live_since
            .retain(|id, _| calls.iter().any(|c| c.live && c.call_id == id));
        self.reported.retain(|(call, _), _| {
            call.as_ref()
                .is_none_or(|id| calls.iter().any(|c| c.call_id == id))
        });

        let no_network = self.no_network;
        self.report(
            &mut out,
            None,
            Diagnostic::NoNetwork,
            DiagnosticValue::Flag(no_network),
            no_network.then(|| {
                "no network interface has an address the switchboard can be reached from".to_owned()
            }),
        );

        let relays_bad = self.relays_offered && self.relays_failed.is_some();
        let why = self.relays_failed.clone();
        self.report(
            &mut out,
            None,
            Diagnostic::NetworkRelaysNotReachable,
            DiagnosticValue::Flag(relays_bad),
            why.map(|w| format!("no TURN relay could be reached: {w}")),
        );

        for c in calls {
            let key = c.call_id.to_owned();
            if c.live {
                self.live_since.entry(key.clone()).or_insert(now);
            }
            if c.expects_audio {
                self.expecting_since.entry(key.clone()).or_insert(now);
            }
            // The path: down for the grace period while the call needs it.
            let reconnect = match (c.live, self.down_since) {
                // Reported at once: the device only takes its connection as lost after a few
                // silent seconds already.
                (true, _) if self.signaling_lost => Some(
                    "the connection to the switchboard is lost; reconnecting (the call is kept)"
                        .to_owned(),
                ),
                (true, Some(down)) => {
                    let since = down.max(self.live_since.get(&key).copied().unwrap_or(now));
                    (now.saturating_duration_since(since) >= GRACE).then(|| self.no_path_reason())
                }
                _ => None,
            };
            let (value, message) = match reconnect {
                Some(why) => (Quality::Bad, Some(why)),
                None => (Quality::Good, None),
            };
            self.report(
                &mut out,
                Some(key.clone()),
                Diagnostic::NetworkReconnect,
                DiagnosticValue::Quality(value),
                message,
            );
            // The sound: the path is up, audio is due, and none has come for the grace period.
            let silent = c.expects_audio
                && self.link_up
                && self.expecting_since.get(&key).is_some_and(|since| {
                    let last = self.received_at.map_or(*since, |r| r.max(*since));
                    now.saturating_duration_since(last) >= GRACE
                });
            let measured = self.quality.filter(|_| c.live && self.link_up);
            let (value, message) = if silent {
                (
                    Quality::Bad,
                    Some(format!(
                        "no audio has arrived for {} s although the other side is connected and not muted",
                        GRACE.as_secs()
                    )),
                )
            } else if let Some(q) = measured.filter(|q| q.receive != Quality::Good) {
                (
                    q.receive,
                    Some(format!(
                        "{:.0} % of the incoming audio is lost, jitter {:.0} ms",
                        q.receive_loss_pct, q.jitter_ms
                    )),
                )
            } else {
                (Quality::Good, None)
            };
            self.report(
                &mut out,
                Some(key.clone()),
                Diagnostic::NetworkReceiveQuality,
                DiagnosticValue::Quality(value),
                message,
            );
            // What we send: the switchboard's receiver reports and the round trip.
            let (value, message) = match measured.filter(|q| q.send != Quality::Good) {
                Some(q) => (
                    q.send,
                    Some(format!(
                        "the switchboard reports {:.0} % of our audio lost; round trip {}",
                        q.send_loss_pct.unwrap_or(0.0),
                        q.rtt_ms
                            .map_or("not measured".to_owned(), |r| format!("{r:.0} ms"))
                    )),
                ),
                None => (Quality::Good, None),
            };
            self.report(
                &mut out,
                Some(key),
                Diagnostic::NetworkSendQuality,
                DiagnosticValue::Quality(value),
                message,
            );
        }
        out
    }

    fn no_path_reason(&self) -> String {
        let relay = match (&self.relays_failed, self.relays_offered) {
            (Some(why), _) => format!("; no TURN relay could be reached either ({why})"),
            (None, false) => "; the switchboard offers no TURN relay to fall back on".to_owned(),
            (None, true) => "; the TURN relay did not get through either".to_owned(),
        };
        format!(
            "no media path to the switchboard: its media port cannot be reached (is UDP blocked?){relay}"
        )
    }

    /// Reports `value` if it differs from the last one; a first report only if it is bad, so a
    /// healthy call says nothing.
    fn report(
        &mut self,
        out: &mut Vec<DiagnosticChange>,
        call_id: Option<String>,
        diagnostic: Diagnostic,
        value: DiagnosticValue,
        message: Option<String>,
    ) {
        let key = (call_id.clone(), diagnostic);
        let healthy = matches!(
            value,
            DiagnosticValue::Flag(false) | DiagnosticValue::Quality(Quality::Good)
        );
        match self.reported.get(&key) {
            Some(v) if *v == value => return,
            None if healthy => return,
            _ => {}
        }
        self.reported.insert(key, value);
        out.push(DiagnosticChange {
            call_id,
            diagnostic,
            value,
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, expects: bool) -> CallView<'_> {
        CallView {
            call_id: id,
            expects_audio: expects,
            live: true,
        }
    }

    #[test]
    fn a_link_that_never_comes_up_is_reported_bad_after_the_grace_and_good_when_it_does() {
        let t0 = Instant::now();
        let mut d = Diagnostics::default();
        d.link_started(false, t0);
        let calls = [call("c1", true)];
        assert!(d.evaluate(&calls, t0).is_empty());
        assert!(d.evaluate(&calls, t0 + Duration::from_secs(1)).is_empty());
        let bad = d.evaluate(&calls, t0 + GRACE);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].diagnostic, Diagnostic::NetworkReconnect);
        assert_eq!(bad[0].value, DiagnosticValue::Quality(Quality::Bad));
        let why = bad[0].message.as_deref().unwrap();
        assert!(
            why.contains("UDP") && why.contains("no TURN relay"),
            "{why}"
        );
        assert!(d.evaluate(&calls, t0 + GRACE * 2).is_empty(), "said once");
        d.link(true, t0 + GRACE * 2);
        let good = d.evaluate(&calls, t0 + GRACE * 2);
        assert_eq!(good[0].value, DiagnosticValue::Quality(Quality::Good));
        assert_eq!(good[0].message, None);
    }

    #[test]
    fn a_call_placed_after_the_link_failed_gets_its_own_grace() {
        let t0 = Instant::now();
        let mut d = Diagnostics::default();
        d.link_started(true, t0);
        d.relays_unreachable("connection refused".into());
        let relays = d.evaluate(&[], t0);
        assert_eq!(relays.len(), 1);
        assert_eq!(relays[0].diagnostic, Diagnostic::NetworkRelaysNotReachable);
        assert_eq!(relays[0].call_id, None);
        assert!(
            relays[0]
                .message
                .as_deref()
                .unwrap()
                .contains("connection refused")
        );
        let late = t0 + Duration::from_secs(60);
        let c = [call("c2", true)];
        assert!(d.evaluate(&c, late).is_empty());
        let bad = d.evaluate(&c, late + GRACE);
        assert!(
            bad[0]
                .message
                .as_deref()
                .unwrap()
                .contains("connection refused")
        );
    }

    #[test]
    fn silence_is_reported_only_when_audio_is_due() {
        let t0 = Instant::now();
        let mut d = Diagnostics::default();
        d.link_started(false, t0);
        d.link(true, t0);
        // Muted far end or held call: nothing is due, nothing is said.
        assert!(d.evaluate(&[call("c", false)], t0 + GRACE * 3).is_empty());
        // Now the far end talks: audio is due from here.
        let t1 = t0 + GRACE * 3;
        d.received(10, t1);
        assert!(d.evaluate(&[call("c", true)], t1).is_empty());
        assert!(
            d.evaluate(&[call("c", true)], t1 + Duration::from_secs(2))
                .is_empty()
        );
        let bad = d.evaluate(&[call("c", true)], t1 + GRACE);
        assert_eq!(bad[0].diagnostic, Diagnostic::NetworkReceiveQuality);
        assert_eq!(bad[0].value, DiagnosticValue::Quality(Quality::Bad));
        d.received(11, t1 + GRACE * 2);
        let good = d.evaluate(&[call("c", true)], t1 + GRACE * 2);
        assert_eq!(good[0].value, DiagnosticValue::Quality(Quality::Good));
        // The call ends: its state goes with it.
        assert!(d.evaluate(&[], t1 + GRACE * 3).is_empty());
        assert!(d.reported.is_empty());
    }

    #[test]
    fn measured_loss_and_round_trip_grade_receive_and_send_quality() {
        use crate::core::quality::LinkQuality;
        let t0 = Instant::now();
        let mut d = Diagnostics::default();
        d.link_started(false, t0);
        d.link(true, t0);
        d.received(100, t0);
        let c = [call("c", true)];
        let q = |receive, send, loss| LinkQuality {
            receive_loss_pct: loss,
            jitter_ms: 12.0,
            rtt_ms: Some(640.0),
            send_loss_pct: Some(1.0),
            receive_kbps: 33.0,
            send_kbps: 33.0,
            receive,
            send,
        };
        d.quality(Some(q(Quality::Bad, Quality::Poor, 14.6)));
        let changes = d.evaluate(&c, t0);
        let find = |diag| {
            changes
                .iter()
                .find(|x| x.diagnostic == diag)
                .cloned()
                .unwrap()
        };
        let rx = find(Diagnostic::NetworkReceiveQuality);
        assert_eq!(rx.value, DiagnosticValue::Quality(Quality::Bad));
        assert!(rx.message.as_deref().unwrap().contains("15 %"), "{rx:?}");
        let tx = find(Diagnostic::NetworkSendQuality);
        assert_eq!(tx.value, DiagnosticValue::Quality(Quality::Poor));
        assert!(tx.message.as_deref().unwrap().contains("640 ms"), "{tx:?}");
        // Better again: both back to Good, once.
        d.quality(Some(q(Quality::Good, Quality::Good, 0.5)));
        let changes = d.evaluate(&c, t0);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(
            changes
                .iter()
                .all(|x| x.value == DiagnosticValue::Quality(Quality::Good))
        );
        assert!(d.evaluate(&c, t0).is_empty());
        // A new link forgets the old figures.
        d.quality(Some(q(Quality::Bad, Quality::Bad, 30.0)));
        d.link_started(false, t0);
        d.link(true, t0);
        assert!(d.evaluate(&c, t0).is_empty());
    }
}
