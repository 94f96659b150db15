//! Message types. Field names are camelCase on the wire.

use serde::{Deserialize, Serialize};

use crate::core::{CallEndReason, ParticipantState, RejectReason};

/// Client to switchboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
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
        /// The `resumeToken` of an earlier `welcome`: take that device's place (same endpoint,
        /// same calls) if it is still within its reconnect window. Refused or expired: the
        /// connection signs in as a new device and `welcome.resumed` is false.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
    },
    /// WebRTC offer for the endpoint's one media connection (kept warm for all its calls).
    MediaOffer {
        sdp: String,
    },
    /// Place a call. The client picks the call id (a UUID) so that it can track the call before
    /// the switchboard answers; a duplicate id is refused.
    PlaceCall {
        call_id: String,
        to: Vec<String>,
        /// One of the caller's own E.164 numbers, shown to callees reached by number. Required
        /// when `to` holds a number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alternate_caller_id: Option<String>,
    },
    /// Start or join the group call with this GUID. The call id is the GUID in lower case.
    JoinGroup {
        group_id: String,
    },
    /// Ring `target` (a name, raw id or number) into this call; a 1:1 call becomes a group call.
    AddParticipant {
        call_id: String,
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alternate_caller_id: Option<String>,
    },
    /// Take `target` out of this call (it sees the call end as removed).
    RemoveParticipant {
        call_id: String,
        target: String,
    },
    Accept {
        call_id: String,
    },
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
    SetMuted {
        call_id: String,
        muted: bool,
    },
    Hold {
        call_id: String,
    },
    Resume {
        call_id: String,
    },
    Speaking {
        call_id: String,
        speaking: bool,
    },
    /// Ask the switchboard to move the other party of `callId` (the transferee) elsewhere.
    Transfer {
        call_id: String,
        transfer_id: String,
        target: TransferTarget,
        #[serde(default)]
        disable_forwarding_and_unanswered: bool,
    },
    /// The transferee's answer to `transferRequested`.
    AcceptTransfer {
        call_id: String,
    },
    RejectTransfer {
        call_id: String,
    },
    /// Replace this user's call forwarding settings.
    SetForwarding {
        forwarding: Forwarding,
    },
    ListVoicemail,
    /// Sent back as `voicemailData` chunks.
    FetchVoicemail {
        message_id: String,
    },
    DeleteVoicemail {
        message_id: String,
    },
    MarkVoicemail {
        message_id: String,
        is_new: bool,
    },
    /// Bring a call this user has on another device here: `isTransfer` moves it (take over),
    /// otherwise this device joins as a companion. `fromEndpoint` is the device the details
    /// named, so that of two devices racing for a call exactly one wins.
    ActiveCallTransfer {
        call_id: String,
        from_endpoint: String,
        is_transfer: bool,
    },
    Ping {
        #[serde(default)]
        nonce: u64,
    },
}

/// Switchboard to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    Welcome {
        protocol: u32,
        identity: Identity,
        endpoint_id: String,
        server: String,
        /// TURN relays this device may use, with credentials that expire (coturn's
        /// `use-auth-secret` scheme). Empty when the switchboard has none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
        /// Hand this back in `hello.resume` after a lost connection to keep this endpoint and
        /// its calls. Secret: it is a capability for this device's place.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
        /// This connection took the place of an earlier one (`hello.resume`): the calls go on,
        /// and what the device missed follows, in order.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
        /// How long the switchboard keeps a device's place after its connection is lost.
        #[serde(default)]
        reconnect_window_ms: u64,
        /// A connection that sends nothing for this long is taken as lost: clients send `ping`
        /// well within it (dialtone: every second).
        #[serde(default)]
        keepalive_timeout_ms: u64,
    },
    MediaAnswer {
        sdp: String,
    },
    /// The callee side: a call rings this endpoint. `transferredBy` is set when the caller was
    /// transferred here; `forwardedFrom` when the call was forwarded from another user.
    IncomingCall {
        call_id: String,
        caller: Identity,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transferred_by: Option<Identity>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forwarded_from: Option<Identity>,
        /// The caller's number when the call came to one of this user's numbers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller_number: Option<String>,
        /// Set when this is a group call (several callees, or a participant being added).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        group: bool,
    },
    /// The caller side: at least one device of the callee rings.
    CallRinging {
        call_id: String,
    },
    /// The call is answered. `participants` are the remote parties as this endpoint sees them.
    CallConnected {
        call_id: String,
        participants: Vec<Participant>,
    },
    /// The whole list of remote participants as this endpoint sees them, sent whenever someone
    /// joins, leaves, starts or stops ringing in a group call. Clients diff it.
    ParticipantsUpdated {
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
    /// To the transferee: the transferor asks to move this call to `target`.
    TransferRequested {
        call_id: String,
        transfer_id: String,
        transferor: Identity,
        target: TransferTargetInfo,
    },
    /// To the transferor: progress of its transfer.
    TransferStateChanged {
        call_id: String,
        transfer_id: String,
        state: TransferState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<CallEndReason>,
    },
    /// To the transferee: the transfer succeeded; `targetCallId` is its new call.
    TransferAccepted {
        call_id: String,
        target_call_id: String,
    },
    /// This user's forwarding settings (on sign-in and whenever they change).
    ForwardingChanged {
        forwarding: Forwarding,
    },
    /// This user is in a call on another device (sent on sign-in and whenever it changes).
    ActiveCallsUpdated {
        details: ActiveCallDetails,
    },
    /// This user is in no call on any other device.
    NoActiveCalls,
    /// Message-waiting indication for this user's mailbox.
    MessageWaiting {
        new_count: u32,
        total_count: u32,
    },
    Voicemails {
        messages: Vec<VoicemailInfo>,
    },
    /// A piece of a message's Ogg Opus file, base64; `last` closes it.
    VoicemailData {
        message_id: String,
        seq: u32,
        data: String,
        last: bool,
    },
    Pong {
        nonce: u64,
    },
    /// A request failed or a frame was bad. `callId` is set when it concerns one call; the call
    /// itself is left as it was.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
}

/// A TURN server as WebRTC's `RTCIceServer` describes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    /// `turn:HOST:PORT?transport=udp|tcp` or `turns:HOST:PORT?transport=tcp`.
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
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
    /// Set for another device of your own user in the call (a companion, or the device you
    /// joined as one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// A service of the switchboard (a voicemail box), not a person: it is not expected to send
    /// audio all the time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub service: bool,
    /// The participant's connection is lost and the switchboard holds its place while it
    /// reconnects (at most the reconnect window); its state stays what it was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reconnecting: bool,
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

/// Where a transfer goes: externally tagged, e.g. `{"participant": "carol"}`,
/// `{"callId": "…"}`, `{"voicemail": "carol"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TransferTarget {
    Participant(String),
    CallId(String),
    Voicemail(String),
}

/// The transfer target as shown to the transferee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferTargetInfo {
    pub kind: TransferKind,
    pub identity: Identity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TransferKind {
    Participant,
    Call,
    Voicemail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferState {
    None,
    Transferring,
    Transferred,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ForwardMode {
    #[default]
    Off,
    Always,
    Unanswered,
}

/// Call forwarding of one user. `target` is a user name or `voicemail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Forwarding {
    #[serde(default)]
    pub mode: ForwardMode,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default = "default_unanswered_secs")]
    pub unanswered_after_secs: u32,
}

fn default_unanswered_secs() -> u32 {
    20
}

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding {
            mode: ForwardMode::Off,
            target: None,
            unanswered_after_secs: default_unanswered_secs(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoicemailInfo {
    pub message_id: String,
    pub caller: Identity,
    pub received_unix_ms: u64,
    pub duration_ms: u64,
    pub is_new: bool,
}

/// A call of this user on another of its devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveCallDetails {
    pub call_id: String,
    pub remote_participants: Vec<Identity>,
    pub started_unix_ms: u64,
    /// The device the call is on.
    pub endpoint_id: String,
    pub device_name: String,
}
