//! The sans-IO core: pure state machines driven by inputs and an injected clock.
//!
//! Architecture invariant: nothing in this module touches tokio, sockets, cpal, files or the
//! system clock. Every input carries `now`; outputs are drained with `poll_output()`. That is
//! what lets tests run minutes of calls between simulated peers in milliseconds.

mod agent;
pub mod diagnostics;
mod end_reason;
mod ids;
pub mod media_diagnostics;
pub mod quality;
pub mod session;
mod states;

pub use agent::{
    CallAgentCore, CallInfo, Command, CommandError, CommandOk, Event, Input, MediaControl, Output,
    ReconnectWhy,
};
pub use end_reason::CallEndReason;
pub use ids::{
    Callee, ECHO_NAME, ECHO_RAW_ID, GREETING_NAME, GREETING_RAW_ID, echo_identity,
    greeting_identity, parse_group_id, phone_raw_id, validate_user_name,
};
pub use states::{
    CallState, ConnectionState, Direction, DisconnectReason, ParticipantState, RejectReason,
};

/// Time as the core sees it: a monotonic instant for timers and durations, and wall-clock
/// milliseconds for what is shown to people or stored (token expiry, call records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: std::time::Instant,
    pub unix_ms: u64,
}

impl Now {
    /// Advances both clocks together; handy in tests that simulate time.
    pub fn plus(self, d: std::time::Duration) -> Now {
        Now {
            mono: self.mono + d,
            unix_ms: self.unix_ms + d.as_millis() as u64,
        }
    }
}
