//! The state enums of the calling model, spelled as the ACS calling SDK spells them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CallState {
    None,
    Incoming,
    Connecting,
    Ringing,
    EarlyMedia,
    Connected,
    LocalHold,
    RemoteHold,
    Disconnecting,
    Disconnected,
}

impl CallState {
    /// Answered and not over: media may flow (or is paused by hold).
    pub fn is_established(self) -> bool {
        matches!(
            self,
            CallState::Connected | CallState::LocalHold | CallState::RemoteHold
        )
    }
    pub fn is_ended(self) -> bool {
        matches!(self, CallState::Disconnected)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Incoming,
    Outgoing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParticipantState {
    Idle,
    Connecting,
    Ringing,
    Connected,
    Hold,
    EarlyMedia,
    Disconnected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionState {
    Connected,
    Disconnected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DisconnectReason {
    InvalidToken,
    ConnectionIssue,
}

/// Why a callee turns a call down; decides the caller's end code (603, 486, 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RejectReason {
    #[default]
    None,
    Busy,
    Forbidden,
}

impl std::str::FromStr for RejectReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(RejectReason::None),
            "busy" => Ok(RejectReason::Busy),
            "forbidden" => Ok(RejectReason::Forbidden),
            other => Err(format!(
                "unknown reject reason {other:?}, expected none, busy or forbidden"
            )),
        }
    }
}
