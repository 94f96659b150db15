//! Message types. Field names are camelCase on the wire.

use serde::{Deserialize, Serialize};

use crate::core::{CallEndReason, ParticipantState, RejectReason};

/// Client to switchboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ClientMessage {
    /// First frame on a connection. `user` is only honoured by a `--dev` switchboard for loopback
    /// peers; otherwise `token` is required.
    Hello {
        protocol: u32,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        token: Option<String>,
        device_name: String,
        #[serde(default)]
        client: Option<String>,
    },
    /// WebRTC offer for the endpoint's one media connection (kept warm for all its calls).
    MediaOffer { sdp: String },
    /// Place a call. The client picks the call id (a UUID) so that it can track the call before
    /// the switchboard answers; a duplicate id is refused.
    PlaceCall { call_id: String, to: Vec<String> },
    Accept { call_id: String },
    Reject {
        call_id: String,
        #[serde(default)]
        reason: RejectReason,
    },
    HangUp {
        call_id: String,
        #[serde(default)]
        for_everyone: bool,
    },
    SetMuted { call_id: String, muted: bool },
    Hold { call_id: String },
    Resume { call_id: String },
    Speaking { call_id: String, speaking: bool },
    Ping {
        #[serde(default)]
        nonce: u64,
    },
}

/// Switchboard to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ServerMessage {
    Welcome {
        protocol: u32,
        identity: Identity,
        endpoint_id: String,
        server: String,
    },
    MediaAnswer { sdp: String },
    /// The callee side: a call rings this endpoint.
    IncomingCall { call_id: String, caller: Identity },
    /// The caller side: at least one device of the callee rings.
    CallRinging { call_id: String },
    /// The call is answered. `participants` are the remote parties as this endpoint sees them.
    CallConnected {
        call_id: String,
        participants: Vec<Participant>,
    },
    /// A remote participant changed (state, mute, speaking).
    ParticipantUpdated {
        call_id: String,
        participant: Participant,
    },
    /// This endpoint's leg of the call is over.
    CallEnded {
        call_id: String,
        reason: CallEndReason,
    },
    Pong { nonce: u64 },
    /// A request failed or a frame was bad. `callId` is set when it concerns one call; the call
    /// itself is left as it was.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub raw_id: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub identity: Identity,
    pub state: ParticipantState,
    pub is_muted: bool,
    pub is_speaking: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorCode {
    BadMessage,
    UnknownMessage,
    FrameTooLarge,
    UnsupportedVersion,
    InvalidToken,
    NotSignedIn,
    AlreadySignedIn,
    UnknownCall,
    InvalidState,
    InvalidArgument,
    MediaFailed,
    Internal,
}
