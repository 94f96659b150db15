//! The device's side of keepalive and resume, as a small state machine the agent core drives.
//!
//! While signed in, the device pings every [`PING_EVERY`] and takes the connection as dead when
//! nothing has come back for [`SILENT_AFTER`] (the switchboard answers each ping, and pings at
//! the WebSocket level too). When the connection is lost, the device's place is kept by the
//! switchboard for the reconnect window it announced in `welcome`, counted from the last time
//! it heard the device; the device keeps its calls that long and reconnects with its resume
//! token. After the window (plus a margin for the two clocks) it gives up: the switchboard has.

use std::time::{Duration, Instant};

/// How often a signed-in device sends `ping`.
pub const PING_EVERY: Duration = Duration::from_secs(1);

/// Silence from the switchboard after which the connection is taken as dead: two pings and a
/// half unanswered, so that a dead connection is noticed within 3 s of going silent even with
/// a 100 ms tick and a busy machine.
pub const SILENT_AFTER: Duration = Duration::from_millis(2_500);

/// Past the switchboard's window, before the device gives up on its own: the switchboard's
/// count starts from the last frame it got, which may be a little later than ours.
const GIVE_UP_MARGIN: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Session {
    /// From `welcome`: hand back in `hello.resume`.
    token: Option<String>,
    window: Duration,
    /// The last time anything came from the switchboard.
    last_heard: Option<Instant>,
    last_ping: Option<Instant>,
    nonce: u64,
    /// The connection is lost and the place kept, since this last sign of life.
    lost_since: Option<Instant>,
}

/// What the session asks of the core on a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionAction {
    Ping(u64),
    /// Nothing heard for [`SILENT_AFTER`]: drop the connection and reconnect.
    Reconnect,
    /// The reconnect window has passed: the calls are gone.
    GiveUp,
}

impl Session {
    /// Signed in (anew or resumed).
    pub fn welcome(&mut self, token: Option<String>, window: Duration, now: Instant) {
        self.token = token;
        self.window = window;
        self.lost_since = None;
        self.last_heard = Some(now);
        self.last_ping = None;
    }

    pub fn heard(&mut self, now: Instant) {
        if self.lost_since.is_none() {
            self.last_heard = Some(now);
        }
    }

    /// The connection went down: true if the place is kept and worth reconnecting to.
    pub fn lost(&mut self, now: Instant) -> bool {
        if self.lost_since.is_some() {
            return true;
        }
        if self.token.is_none() || self.window.is_zero() {
            return false;
        }
        let since = self.last_heard.unwrap_or(now);
        if now >= since + self.window {
            return false;
        }
        self.lost_since = Some(since);
        true
    }

    /// Reconnecting to a kept place.
    pub fn resuming(&self) -> bool {
        self.lost_since.is_some()
    }

    /// The token for `hello.resume`, while the place is kept.
    pub fn resume_token(&self) -> Option<String> {
        self.lost_since.and(self.token.clone())
    }

    /// Forget the place (signed out, refused, or given up).
    pub fn end(&mut self) {
        *self = Session::default();
    }

    /// `connected`: signed in on a live connection now.
    pub fn tick(&mut self, connected: bool, now: Instant) -> Option<SessionAction> {
        if let Some(since) = self.lost_since {
            if now >= since + self.window + GIVE_UP_MARGIN {
                self.end();
                return Some(SessionAction::GiveUp);
            }
            return None;
        }
        if !connected {
            return None;
        }
        let heard = self.last_heard.unwrap_or(now);
        if now.saturating_duration_since(heard) >= SILENT_AFTER {
            // Once: the adapter's `TransportDown` follows and moves us on.
            self.last_heard = Some(now);
            return Some(SessionAction::Reconnect);
        }
        if self
            .last_ping
            .is_none_or(|p| now.saturating_duration_since(p) >= PING_EVERY)
        {
            self.last_ping = Some(now);
            self.nonce += 1;
            return Some(SessionAction::Ping(self.nonce));
        }
        None
    }

    /// When the place is given up, while it is kept.
    pub fn gives_up_at(&self) -> Option<Instant> {
        self.lost_since.map(|s| s + self.window + GIVE_UP_MARGIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_every_second_and_reconnects_after_silence() {
        let t0 = Instant::now();
        let mut s = Session::default();
        s.welcome(Some("7.ab".into()), Duration::from_secs(30), t0);
        assert_eq!(s.tick(true, t0), Some(SessionAction::Ping(1)));
        assert_eq!(s.tick(true, t0 + Duration::from_millis(500)), None);
        assert_eq!(
            s.tick(true, t0 + Duration::from_millis(1000)),
            Some(SessionAction::Ping(2))
        );
        s.heard(t0 + Duration::from_millis(1100));
        assert_eq!(
            s.tick(true, t0 + Duration::from_millis(3500)),
            Some(SessionAction::Ping(3)),
            "2.4 s after the last pong: still alive"
        );
        assert_eq!(
            s.tick(true, t0 + Duration::from_millis(3600)),
            Some(SessionAction::Reconnect),
            "2.5 s after the last pong"
        );
        assert_ne!(
            s.tick(true, t0 + Duration::from_millis(3700)),
            Some(SessionAction::Reconnect),
            "asked once"
        );
    }

    #[test]
    fn a_lost_connection_keeps_the_place_until_the_window_passes() {
        let t0 = Instant::now();
        let mut s = Session::default();
        s.welcome(Some("7.ab".into()), Duration::from_secs(30), t0);
        s.heard(t0 + Duration::from_secs(10));
        assert!(s.lost(t0 + Duration::from_secs(12)));
        assert_eq!(s.resume_token().as_deref(), Some("7.ab"));
        assert_eq!(s.tick(false, t0 + Duration::from_secs(40)), None);
        assert_eq!(
            s.tick(false, t0 + Duration::from_secs(41)),
            Some(SessionAction::GiveUp),
            "30 s from the last sign of life, plus the margin"
        );
        assert!(s.resume_token().is_none());
        assert!(
            !s.lost(t0 + Duration::from_secs(42)),
            "nothing left to resume"
        );
    }

    #[test]
    fn without_a_token_or_window_nothing_is_kept() {
        let t0 = Instant::now();
        let mut s = Session::default();
        s.welcome(None, Duration::from_secs(30), t0);
        assert!(!s.lost(t0));
        let mut s = Session::default();
        s.welcome(Some("1.2".into()), Duration::ZERO, t0);
        assert!(!s.lost(t0));
    }
}
