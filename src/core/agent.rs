//! CallAgentCore: one signed-in endpoint's view of its calls, as a pure state machine.
//!
//! Inputs are commands from a front end (agent, TUI), frames from the switchboard and changes in
//! the connection. Outputs are frames to send, events for the front end and media controls. The
//! driver (engine/) feeds `handle_*` and then drains `poll_output()`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::diagnostics::{CallView, DiagnosticChange, Diagnostics};
use super::quality::{LinkQuality, QualityMeter};
use super::session::{Session, SessionAction};
use super::{
    CallEndReason, CallState, ConnectionState, Direction, DisconnectReason, Now, RejectReason,
};
use crate::protocol::{
    ActiveCallDetails, ClientMessage, ErrorCode, Forwarding, Identity, PROTOCOL_VERSION,
    Participant, ServerMessage, TransferState, TransferTarget, TransferTargetInfo, VoicemailInfo,
};

/// What a front end asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Call {
        to: Vec<String>,
        /// One of this user's numbers; needed when `to` holds a number.
        alternate_caller_id: Option<String>,
    },
    /// Start or join the group call with this GUID; its call id is the GUID in lower case.
    Join {
        group_id: String,
    },
    AddParticipant {
        call_id: String,
        target: String,
        alternate_caller_id: Option<String>,
    },
    RemoveParticipant {
        call_id: String,
        target: String,
    },
    Accept {
        call_id: String,
    },
    Reject {
        call_id: String,
        reason: RejectReason,
    },
    HangUp {
        call_id: String,
        for_everyone: bool,
    },
    Mute {
        call_id: String,
    },
    Unmute {
        call_id: String,
    },
    Hold {
        call_id: String,
    },
    Resume {
        call_id: String,
    },
    Transfer {
        call_id: String,
        target: TransferTarget,
        disable_forwarding: bool,
    },
    AcceptTransfer {
        call_id: String,
    },
    RejectTransfer {
        call_id: String,
    },
    SetForwarding(Forwarding),
    /// The answer comes as `Event::Voicemails`.
    ListVoicemail,
    /// The answer comes as `Event::VoicemailData` chunks.
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
    /// Bring a call of this user's on another device here (`details`: the latest reported if
    /// None): move it (`is_transfer`) or join it as a companion.
    ActiveCallTransfer {
        details: Option<ActiveCallDetails>,
        is_transfer: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum CommandOk {
    CallId(String),
    TransferId(String),
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    #[error("not connected to the switchboard")]
    NotConnected,
    #[error("no call with id {0:?}")]
    UnknownCall(String),
    #[error("cannot {action} call {call_id:?} while it is {state:?}")]
    InvalidState {
        call_id: String,
        action: &'static str,
        state: CallState,
    },
    #[error("{0}")]
    InvalidArgument(String),
}

impl CommandError {
    /// Stable machine-readable code for the agent's JSON replies.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::NotConnected => "notConnected",
            CommandError::UnknownCall(_) => "unknownCall",
            CommandError::InvalidState { .. } => "invalidState",
            CommandError::InvalidArgument(_) => "invalidArgument",
        }
    }
}

/// Everything that can happen to the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// The signaling transport is open; the core says hello.
    TransportUp,
    /// The transport closed. `rejected` carries the switchboard's refusal when it gave one.
    TransportDown,
    /// The transport could not be opened for a reason the user has to act on, in words (the
    /// switchboard's TLS certificate is not trusted, its name does not match, ...). The adapter
    /// keeps retrying; each retry reports again, and only a new message is passed on.
    TransportFailed(String),
    Server(ServerMessage),
    /// The endpoint's media connection was offered by the media adapter.
    MediaOfferReady {
        sdp: String,
    },
    MediaConnected(bool),
    /// The media link's running count of audio packets received; the driver reports it a few
    /// times a second, which is also what moves the diagnostics' clock.
    MediaStats {
        received: u64,
    },
    /// The switchboard offered TURN relays and none could be reached: why.
    RelaysUnreachable(String),
    /// Voice activity of the local microphone changed (after its own hold time).
    LocalSpeaking(bool),
    /// The media link's running counters, read about once a second (`quality.rs`).
    MediaQuality(super::quality::LinkCounters),
    /// The switchboard showed it is there without a message (a WebSocket ping or pong).
    TransportAlive,
    /// Time passed: keepalive, the reconnect window, a stuck media link. The driver ticks at
    /// least every 100 ms.
    Tick,
    /// The addresses this device could reach the switchboard from (its usable interface
    /// addresses), at start and whenever they change: Wi-Fi to cable, a new DHCP lease, a
    /// network gone.
    LocalAddresses(Vec<std::net::IpAddr>),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send(ClientMessage),
    Event(Event),
    /// Build the media connection (with these TURN relays) and come back with
    /// `Input::MediaOfferReady`.
    CreateMediaOffer {
        ice_servers: Vec<crate::protocol::IceServer>,
    },
    ApplyMediaAnswer {
        sdp: String,
    },
    /// Close the media connection: the session it served is over.
    DropMedia,
    /// Drop the connection to the switchboard and connect again now (the core resumes its
    /// place on `TransportUp`).
    Reconnect(ReconnectWhy),
    Media(MediaControl),
}

/// Why the core asks for a new connection to the switchboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectWhy {
    /// Nothing heard for `session::SILENT_AFTER`.
    Silent,
    /// A local address went away: the connection may be leaving from it.
    AddressGone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaControl {
    /// Encode and send the microphone (a call is live, unmuted, not held).
    Capture(bool),
    /// Play what arrives (a call is live and not held).
    Playout(bool),
    /// The last call ended: make recordings valid on disk now.
    FinalizeRecording,
    /// Size the encoder's in-band FEC for this much packet loss (%), as measured.
    ExpectedLoss(u8),
}

/// Events for front ends; names follow the ACS SDK and shared/agent-contract.md.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    ConnectionStateChanged {
        old: ConnectionState,
        new: ConnectionState,
        reason: Option<DisconnectReason>,
        /// Why the connection cannot be made, in words, when the user can do something about it
        /// (a TLS failure); None for an ordinary loss of the network or the switchboard.
        message: Option<String>,
    },
    IncomingCall {
        call_id: String,
        caller: Identity,
        transferred_by: Option<Identity>,
        forwarded_from: Option<Identity>,
        /// The caller's number, when the call came to one of this user's numbers.
        caller_number: Option<String>,
        /// A group call (several callees, or this user is being added to a call).
        group: bool,
    },
    CallStateChanged {
        call_id: String,
        state: CallState,
    },
    CallEnded {
        call_id: String,
        reason: CallEndReason,
    },
    RemoteParticipantsUpdated {
        call_id: String,
        added: Vec<Participant>,
        removed: Vec<Participant>,
    },
    ParticipantStateChanged {
        call_id: String,
        participant: Participant,
    },
    TransferRequested {
        call_id: String,
        transfer_id: String,
        transferor: Identity,
        target: TransferTargetInfo,
    },
    TransferStateChanged {
        call_id: String,
        transfer_id: String,
        state: TransferState,
        error: Option<CallEndReason>,
    },
    TransferAccepted {
        call_id: String,
        target_call_id: String,
    },
    ForwardingChanged(Forwarding),
    ActiveCallsUpdated(ActiveCallDetails),
    NoActiveCalls,
    MessageWaiting {
        new_count: u32,
        total_count: u32,
    },
    Voicemails(Vec<VoicemailInfo>),
    VoicemailData {
        message_id: String,
        seq: u32,
        data: String,
        last: bool,
    },
    /// A network diagnostic changed (ACS User Facing Diagnostics).
    NetworkDiagnosticChanged(DiagnosticChange),
    /// The switchboard reported a problem that is not tied to a command reply.
    Error {
        code: ErrorCode,
        message: String,
        call_id: Option<String>,
    },
}

/// A snapshot of one call, for `calls` and for screens.
#[derive(Debug, Clone, PartialEq)]
pub struct CallInfo {
    pub call_id: String,
    pub state: CallState,
    pub direction: Direction,
    pub remote: Vec<Participant>,
    pub muted: bool,
    pub started_unix_ms: u64,
    pub connected_unix_ms: Option<u64>,
    pub end_reason: Option<CallEndReason>,
}

impl CallInfo {
    fn new(
        call_id: String,
        state: CallState,
        direction: Direction,
        remote: Vec<Participant>,
        now: Now,
    ) -> CallInfo {
        CallInfo {
            call_id,
            state,
            direction,
            remote,
            muted: false,
            started_unix_ms: now.unix_ms,
            connected_unix_ms: None,
            end_reason: None,
        }
    }
}

#[derive(Debug)]
struct Call {
    info: CallInfo,
    local_hold: bool,
    /// Our own transfer of this call: its id and state.
    transfer: Option<(String, TransferState)>,
    /// A transfer the other party asked of us, not yet answered.
    transfer_request: Option<String>,
}

impl Call {
    fn new(info: CallInfo) -> Call {
        Call {
            info,
            local_hold: false,
            transfer: None,
            transfer_request: None,
        }
    }

    /// A remote participant named by raw id, display name or number (`+E164` or `4:+E164`).
    fn find_remote(&self, who: &str) -> Option<&Participant> {
        let who = who.trim();
        let phone = format!("4:{who}");
        self.info.remote.iter().find(|p| {
            p.identity.raw_id == who
                || p.identity.raw_id == phone
                || p.identity.display_name.eq_ignore_ascii_case(who)
        })
    }
}

/// Whether someone in a connected call should be sending us audio now: a person who is
/// connected and not muted (a service such as voicemail only speaks its greeting), or the echo
/// test while we are not muted (it returns what we send).
fn expects_audio(c: &Call) -> bool {
    c.info.remote.iter().any(|p| {
        if p.state != crate::core::ParticipantState::Connected {
            return false;
        }
        if p.identity.raw_id == super::ECHO_RAW_ID {
            return !c.info.muted;
        }
        !p.service && !p.is_muted && p.identity.raw_id != super::GREETING_RAW_ID
    })
}

/// States in which a call is live enough to change who is in it.
const LIVE: &[CallState] = &[
    CallState::Connected,
    CallState::LocalHold,
    CallState::RemoteHold,
];

/// The longest an answer waits for our media link to come up (`Command::Accept`).
const ACCEPT_WAITS_FOR_LINK: Duration = Duration::from_secs(2);
/// A media link that has not been up for this long while signed in is rebuilt: long enough
/// for a first connection over a lossy link (ICE retries every 200 ms), short enough to be
/// back well within a reconnect window.
const REBUILD_AFTER: Duration = Duration::from_secs(4);

/// Audio this recent shows that a media link still works after a reconnect.
const AUDIO_FRESH: Duration = Duration::from_millis(500);

pub struct CallAgentCore {
    user: Option<String>,
    token: Option<String>,
    device_name: String,
    connection: ConnectionState,
    /// Set when the switchboard refused our token, so the close that follows is reported with it.
    refused_token: bool,
    /// The last `TransportFailed` message reported, so retries do not repeat it; cleared at
    /// sign-in.
    failure: Option<String>,
    identity: Option<Identity>,
    calls: BTreeMap<String, Call>,
    outputs: VecDeque<Output>,
    new_call_id: Box<dyn FnMut() -> String + Send>,
    media: (bool, bool),
    auto_answer: bool,
    auto_accept_transfers: bool,
    forwarding: Forwarding,
    active_elsewhere: Option<ActiveCallDetails>,
    diagnostics: Diagnostics,
    /// Keepalive and the place kept while reconnecting (`session.rs`).
    session: Session,
    /// The TURN relays of the last `welcome`, for rebuilding the media link.
    ice_servers: Vec<crate::protocol::IceServer>,
    /// Frames for the switchboard decided while reconnecting (hang-ups), sent on resume.
    pending: Vec<ClientMessage>,
    /// The media link: up, or since when it has been down or connecting, and the last offer.
    link_up: bool,
    link_down_since: Option<Instant>,
    last_offer: Option<Instant>,
    /// The network figures of the current link.
    meter: QualityMeter,
    /// The usable local addresses last reported, and whether one went away since the last
    /// `welcome` (the media link is then rebuilt on resume whatever it looks like).
    addresses: Option<Vec<std::net::IpAddr>>,
    path_changed: bool,
    /// The loss the encoder's FEC is sized for (`quality::fec_loss_percent`).
    fec_loss: u8,
    /// Answers waiting for the media link, with when they go anyway.
    accept_when_linked: Vec<(String, Instant)>,
}

impl CallAgentCore {
    pub fn new(
        user: Option<String>,
        token: Option<String>,
        device_name: String,
        new_call_id: Box<dyn FnMut() -> String + Send>,
    ) -> Self {
        CallAgentCore {
            user,
            token,
            device_name,
            connection: ConnectionState::Disconnected,
            refused_token: false,
            failure: None,
            identity: None,
            calls: BTreeMap::new(),
            outputs: VecDeque::new(),
            new_call_id,
            media: (false, false),
            auto_answer: false,
            auto_accept_transfers: false,
            forwarding: Forwarding::default(),
            active_elsewhere: None,
            diagnostics: Diagnostics::default(),
            session: Session::default(),
            ice_servers: Vec::new(),
            pending: Vec::new(),
            link_up: false,
            link_down_since: None,
            last_offer: None,
            meter: QualityMeter::default(),
            addresses: None,
            path_changed: false,
            fec_loss: super::quality::FEC_LOSS_START,
            accept_when_linked: Vec::new(),
        }
    }

    /// The network figures of the last interval on the current media link.
    pub fn link_quality(&self) -> Option<LinkQuality> {
        self.meter.latest()
    }

    /// Reconnecting to the switchboard with the calls kept (the TUI's "reconnecting…").
    pub fn reconnecting(&self) -> bool {
        self.session.resuming()
    }

    /// Accept every transfer asked of us at once (config `auto_accept_transfers`).
    pub fn set_auto_accept_transfers(&mut self, on: bool) {
        self.auto_accept_transfers = on;
    }

    /// This user's call on another device, as the switchboard last reported it.
    pub fn active_call_details(&self) -> Option<&ActiveCallDetails> {
        self.active_elsewhere.as_ref()
    }

    /// This user's forwarding settings, as the switchboard last reported them.
    pub fn forwarding(&self) -> &Forwarding {
        &self.forwarding
    }

    /// Answer every incoming call at once (`--auto-answer`: bots, tests, the benchmark).
    pub fn set_auto_answer(&mut self, on: bool) {
        self.auto_answer = on;
    }

    pub fn connection(&self) -> ConnectionState {
        self.connection
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Live calls (ended ones drop out), oldest first.
    pub fn calls(&self) -> Vec<CallInfo> {
        let mut v: Vec<CallInfo> = self.calls.values().map(|c| c.info.clone()).collect();
        v.sort_by_key(|c| c.started_unix_ms);
        v
    }

    /// The connected call with its microphone muted (the earliest, if several), without
    /// copying the calls: asked ten times a second.
    #[must_use]
    pub fn muted_connected_call(&self) -> Option<&str> {
        self.calls
            .values()
            .filter(|c| c.info.muted && c.info.state == CallState::Connected)
            .min_by_key(|c| c.info.started_unix_ms)
            .map(|c| c.info.call_id.as_str())
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn handle_command(&mut self, cmd: Command, now: Now) -> Result<CommandOk, CommandError> {
        if self.connection != ConnectionState::Connected {
            // Hanging up works while reconnecting: the call ends here now and the switchboard
            // hears of it on resume.
            if let Command::HangUp {
                call_id,
                for_everyone,
            } = cmd
                && self.session.resuming()
            {
                self.call(&call_id)?;
                self.end_call(&call_id, CallEndReason::NORMAL);
                self.pending.push(ClientMessage::HangUp {
                    call_id,
                    for_everyone,
                });
                return Ok(CommandOk::Done);
            }
            return Err(CommandError::NotConnected);
        }
        match cmd {
            Command::Call {
                to,
                alternate_caller_id,
            } => {
                if to.is_empty() {
                    return Err(CommandError::InvalidArgument("\"to\" names nobody".into()));
                }
                if let Some(bad) = to.iter().find(|t| t.trim().is_empty()) {
                    return Err(CommandError::InvalidArgument(format!(
                        "callee {bad:?} is empty"
                    )));
                }
                let call_id = (self.new_call_id)();
                let info = CallInfo::new(
                    call_id.clone(),
                    CallState::Connecting,
                    Direction::Outgoing,
                    Vec::new(),
                    now,
                );
                self.calls.insert(call_id.clone(), Call::new(info));
                self.send(ClientMessage::PlaceCall {
                    call_id: call_id.clone(),
                    to,
                    alternate_caller_id,
                });
                self.event(Event::CallStateChanged {
                    call_id: call_id.clone(),
                    state: CallState::Connecting,
                });
                Ok(CommandOk::CallId(call_id))
            }
            Command::Join { group_id } => {
                let call_id =
                    super::parse_group_id(&group_id).map_err(CommandError::InvalidArgument)?;
                if self.calls.contains_key(&call_id) {
                    return Err(CommandError::InvalidArgument(format!(
                        "already in group call {call_id}"
                    )));
                }
                let info = CallInfo::new(
                    call_id.clone(),
                    CallState::Connecting,
                    Direction::Outgoing,
                    Vec::new(),
                    now,
                );
                self.calls.insert(call_id.clone(), Call::new(info));
                self.send(ClientMessage::JoinGroup {
                    group_id: call_id.clone(),
                });
                self.event(Event::CallStateChanged {
                    call_id: call_id.clone(),
                    state: CallState::Connecting,
                });
                Ok(CommandOk::CallId(call_id))
            }
            Command::AddParticipant {
                call_id,
                target,
                alternate_caller_id,
            } => {
                self.expect_state(&call_id, "add a participant to", LIVE)?;
                let target = target.trim().to_string();
                if target.is_empty() {
                    return Err(CommandError::InvalidArgument(
                        "the participant to add is empty".into(),
                    ));
                }
                if let Some(p) = self.calls[&call_id].find_remote(&target) {
                    return Err(CommandError::InvalidArgument(format!(
                        "{} is already in this call",
                        p.identity.display_name
                    )));
                }
                self.send(ClientMessage::AddParticipant {
                    call_id,
                    target,
                    alternate_caller_id,
                });
                Ok(CommandOk::Done)
            }
            Command::RemoveParticipant { call_id, target } => {
                self.expect_state(&call_id, "remove a participant from", LIVE)?;
                let target = target.trim().to_string();
                let Some(p) = self.calls[&call_id].find_remote(&target) else {
                    return Err(CommandError::InvalidArgument(format!(
                        "{target:?} is not in this call"
                    )));
                };
                if p.device.is_some() {
                    return Err(CommandError::InvalidArgument(
                        "that is another device of yours; hang up there to leave".into(),
                    ));
                }
                let target = p.identity.raw_id.clone();
                self.send(ClientMessage::RemoveParticipant { call_id, target });
                Ok(CommandOk::Done)
            }
            Command::Accept { call_id } => {
                self.expect_state(&call_id, "accept", &[CallState::Incoming])?;
                self.set_state(&call_id, CallState::Connecting);
                if self.link_up || self.identity.is_none() {
                    self.send(ClientMessage::Accept { call_id });
                } else {
                    // Our media link is still being built (a call right after sign-in, or
                    // after a change of network): the caller's first words would be lost into
                    // it, so the answer waits for it, a bounded while.
                    self.accept_when_linked
                        .push((call_id, now.mono + ACCEPT_WAITS_FOR_LINK));
                }
                Ok(CommandOk::Done)
            }
            Command::Reject { call_id, reason } => {
                self.expect_state(&call_id, "reject", &[CallState::Incoming])?;
                self.send(ClientMessage::Reject { call_id, reason });
                Ok(CommandOk::Done)
            }
            Command::HangUp {
                call_id,
                for_everyone,
            } => {
                let call = self.call(&call_id)?;
                if call.info.state == CallState::Disconnecting {
                    return Err(CommandError::InvalidState {
                        call_id,
                        action: "hang up",
                        state: CallState::Disconnecting,
                    });
                }
                self.set_state(&call_id, CallState::Disconnecting);
                self.send(ClientMessage::HangUp {
                    call_id,
                    for_everyone,
                });
                self.update_media();
                Ok(CommandOk::Done)
            }
            Command::Mute { call_id } | Command::Unmute { call_id }
                if self.call(&call_id).is_err() =>
            {
                Err(CommandError::UnknownCall(call_id))
            }
            Command::Mute { call_id } => self.set_muted(call_id, true),
            Command::Unmute { call_id } => self.set_muted(call_id, false),
            Command::Hold { call_id } => {
                self.expect_state(
                    &call_id,
                    "hold",
                    &[CallState::Connected, CallState::RemoteHold],
                )?;
                self.calls
                    .get_mut(&call_id)
                    .expect("checked above")
                    .local_hold = true;
                self.send(ClientMessage::Hold {
                    call_id: call_id.clone(),
                });
                self.recompute_state(&call_id);
                Ok(CommandOk::Done)
            }
            Command::Resume { call_id } => {
                self.expect_state(&call_id, "resume", &[CallState::LocalHold])?;
                self.calls
                    .get_mut(&call_id)
                    .expect("checked above")
                    .local_hold = false;
                self.send(ClientMessage::Resume {
                    call_id: call_id.clone(),
                });
                self.recompute_state(&call_id);
                Ok(CommandOk::Done)
            }
            Command::Transfer {
                call_id,
                target,
                disable_forwarding,
            } => self.transfer(call_id, target, disable_forwarding),
            Command::AcceptTransfer { call_id } | Command::RejectTransfer { call_id }
                if self.call(&call_id)?.transfer_request.is_none() =>
            {
                let state = self.call(&call_id)?.info.state;
                Err(CommandError::InvalidState {
                    call_id,
                    action: "answer a transfer request on",
                    state,
                })
            }
            Command::AcceptTransfer { call_id } => {
                self.calls
                    .get_mut(&call_id)
                    .expect("checked above")
                    .transfer_request = None;
                self.send(ClientMessage::AcceptTransfer { call_id });
                Ok(CommandOk::Done)
            }
            Command::RejectTransfer { call_id } => {
                self.calls
                    .get_mut(&call_id)
                    .expect("checked above")
                    .transfer_request = None;
                self.send(ClientMessage::RejectTransfer { call_id });
                Ok(CommandOk::Done)
            }
            Command::ActiveCallTransfer {
                details,
                is_transfer,
            } => {
                let Some(d) = details.or_else(|| self.active_elsewhere.clone()) else {
                    return Err(CommandError::InvalidArgument(
                        "no call of yours is active on another device".into(),
                    ));
                };
                if self.calls.contains_key(&d.call_id) {
                    return Err(CommandError::InvalidArgument(format!(
                        "call {:?} is already on this device",
                        d.call_id
                    )));
                }
                self.send(ClientMessage::ActiveCallTransfer {
                    call_id: d.call_id.clone(),
                    from_endpoint: d.endpoint_id,
                    is_transfer,
                });
                Ok(CommandOk::CallId(d.call_id))
            }
            Command::SetForwarding(forwarding) => {
                self.send(ClientMessage::SetForwarding { forwarding });
                Ok(CommandOk::Done)
            }
            Command::ListVoicemail => {
                self.send(ClientMessage::ListVoicemail);
                Ok(CommandOk::Done)
            }
            Command::FetchVoicemail { message_id } => {
                self.send(ClientMessage::FetchVoicemail { message_id });
                Ok(CommandOk::Done)
            }
            Command::DeleteVoicemail { message_id } => {
                self.send(ClientMessage::DeleteVoicemail { message_id });
                Ok(CommandOk::Done)
            }
            Command::MarkVoicemail { message_id, is_new } => {
                self.send(ClientMessage::MarkVoicemail { message_id, is_new });
                Ok(CommandOk::Done)
            }
        }
    }

    fn transfer(
        &mut self,
        call_id: String,
        target: TransferTarget,
        disable_forwarding: bool,
    ) -> Result<CommandOk, CommandError> {
        self.expect_state(
            &call_id,
            "transfer",
            &[
                CallState::Connected,
                CallState::LocalHold,
                CallState::RemoteHold,
            ],
        )?;
        if let Some((id, TransferState::Transferring)) = &self.calls[&call_id].transfer {
            return Err(CommandError::InvalidArgument(format!(
                "transfer {id:?} of this call is still under way"
            )));
        }
        match &target {
            TransferTarget::Participant(t) | TransferTarget::Voicemail(t)
                if t.trim().is_empty() =>
            {
                return Err(CommandError::InvalidArgument(
                    "the transfer target is empty".into(),
                ));
            }
            TransferTarget::CallId(other) if *other == call_id => {
                return Err(CommandError::InvalidArgument(
                    "a call cannot be transferred to itself".into(),
                ));
            }
            TransferTarget::CallId(other) if !self.calls.contains_key(other) => {
                return Err(CommandError::UnknownCall(other.clone()));
            }
            _ => {}
        }
        let transfer_id = (self.new_call_id)();
        self.calls
            .get_mut(&call_id)
            .expect("checked above")
            .transfer = Some((transfer_id.clone(), TransferState::Transferring));
        self.send(ClientMessage::Transfer {
            call_id: call_id.clone(),
            transfer_id: transfer_id.clone(),
            target,
            disable_forwarding_and_unanswered: disable_forwarding,
        });
        self.event(Event::TransferStateChanged {
            call_id,
            transfer_id: transfer_id.clone(),
            state: TransferState::Transferring,
            error: None,
        });
        Ok(CommandOk::TransferId(transfer_id))
    }

    pub fn handle_input(&mut self, input: Input, now: Now) {
        match input {
            Input::TransportUp => {
                self.send(ClientMessage::Hello {
                    protocol: PROTOCOL_VERSION,
                    user: self.user.clone(),
                    token: self.token.clone(),
                    device_name: self.device_name.clone(),
                    client: Some(format!("dialtone/{}", env!("CARGO_PKG_VERSION"))),
                    resume: self.session.resume_token(),
                });
            }
            Input::TransportDown => self.transport_down(now),
            Input::TransportAlive => self.session.heard(now.mono),
            Input::Tick => self.tick(now),
            Input::LocalAddresses(list) => self.local_addresses(list),
            Input::TransportFailed(message) => self.transport_failed(message),
            Input::Server(msg) => {
                self.session.heard(now.mono);
                self.handle_server(msg, now)
            }
            Input::MediaOfferReady { sdp } => self.send(ClientMessage::MediaOffer { sdp }),
            Input::MediaConnected(up) => {
                self.diagnostics.link(up, now.mono);
                if up != self.link_up {
                    self.link_up = up;
                    self.link_down_since = (!up).then_some(now.mono);
                }
                if up {
                    self.send_waiting_accepts(None);
                }
                self.update_media();
            }
            Input::MediaStats { received } => self.diagnostics.received(received, now.mono),
            Input::MediaQuality(counters) => {
                if let Some(q) = self.meter.sample(counters, now.mono) {
                    self.diagnostics.quality(Some(q));
                    let loss = super::quality::fec_loss_percent(&q);
                    if loss != self.fec_loss {
                        self.fec_loss = loss;
                        self.outputs
                            .push_back(Output::Media(MediaControl::ExpectedLoss(loss)));
                    }
                }
            }
            Input::RelaysUnreachable(why) => self.diagnostics.relays_unreachable(why),
            Input::LocalSpeaking(speaking) => {
                let ids: Vec<String> = self
                    .calls
                    .values()
                    .filter(|c| c.info.state == CallState::Connected && !c.info.muted)
                    .map(|c| c.info.call_id.clone())
                    .collect();
                for call_id in ids {
                    self.send(ClientMessage::Speaking { call_id, speaking });
                }
            }
        }
        self.evaluate_diagnostics(now);
    }

    fn handle_server(&mut self, msg: ServerMessage, now: Now) {
        match msg {
            ServerMessage::Welcome {
                identity,
                ice_servers,
                resume_token,
                resumed,
                reconnect_window_ms,
                ..
            } => self.welcome(
                identity,
                ice_servers,
                resume_token,
                resumed,
                reconnect_window_ms,
                now,
            ),
            ServerMessage::MediaAnswer { sdp } => {
                self.outputs.push_back(Output::ApplyMediaAnswer { sdp })
            }
            ServerMessage::IncomingCall {
                call_id,
                caller,
                transferred_by,
                forwarded_from,
                caller_number,
                group,
            } => {
                if self.calls.contains_key(&call_id) {
                    return;
                }
                // Reached by number: the caller shows as its number, as on a phone.
                let shown = match &caller_number {
                    Some(n) => Identity {
                        raw_id: super::phone_raw_id(n),
                        display_name: caller.display_name.clone(),
                    },
                    None => caller.clone(),
                };
                let participant = Participant {
                    identity: shown,
                    state: crate::core::ParticipantState::Connected,
                    is_muted: false,
                    is_speaking: false,
                    device: None,
                    service: false,
                    reconnecting: false,
                };
                let info = CallInfo::new(
                    call_id.clone(),
                    CallState::Incoming,
                    Direction::Incoming,
                    vec![participant.clone()],
                    now,
                );
                self.calls.insert(call_id.clone(), Call::new(info));
                self.event(Event::IncomingCall {
                    call_id: call_id.clone(),
                    caller,
                    transferred_by,
                    forwarded_from,
                    caller_number,
                    group,
                });
                self.event(Event::CallStateChanged {
                    call_id: call_id.clone(),
                    state: CallState::Incoming,
                });
                self.event(Event::RemoteParticipantsUpdated {
                    call_id: call_id.clone(),
                    added: vec![participant],
                    removed: vec![],
                });
                if self.auto_answer {
                    let accepted = self.handle_command(Command::Accept { call_id }, now);
                    debug_assert!(accepted.is_ok(), "a fresh incoming call can be accepted");
                }
            }
            ServerMessage::CallRinging { call_id } => {
                if self
                    .calls
                    .get(&call_id)
                    .is_some_and(|c| c.info.state == CallState::Connecting)
                {
                    self.set_state(&call_id, CallState::Ringing);
                }
            }
            ServerMessage::CallConnected {
                call_id,
                participants,
            } => {
                if !self.calls.contains_key(&call_id) {
                    // A call that starts connected: the transferee's new call after a transfer.
                    let info = CallInfo::new(
                        call_id.clone(),
                        CallState::None,
                        Direction::Outgoing,
                        Vec::new(),
                        now,
                    );
                    self.calls.insert(call_id.clone(), Call::new(info));
                }
                let Some(call) = self.calls.get_mut(&call_id) else {
                    return;
                };
                call.info.connected_unix_ms.get_or_insert(now.unix_ms);
                self.apply_roster(&call_id, participants);
                self.recompute_state(&call_id);
            }
            ServerMessage::ParticipantsUpdated {
                call_id,
                participants,
            } => {
                self.apply_roster(&call_id, participants);
                self.recompute_state(&call_id);
            }
            ServerMessage::ParticipantUpdated {
                call_id,
                participant,
            } => {
                let Some(call) = self.calls.get_mut(&call_id) else {
                    return;
                };
                match call
                    .info
                    .remote
                    .iter_mut()
                    .find(|p| p.identity.raw_id == participant.identity.raw_id)
                {
                    Some(p) if *p == participant => return,
                    Some(p) => *p = participant.clone(),
                    None => {
                        call.info.remote.push(participant.clone());
                        self.event(Event::RemoteParticipantsUpdated {
                            call_id: call_id.clone(),
                            added: vec![participant.clone()],
                            removed: vec![],
                        });
                    }
                }
                self.event(Event::ParticipantStateChanged {
                    call_id: call_id.clone(),
                    participant,
                });
                self.recompute_state(&call_id);
            }
            ServerMessage::CallEnded { call_id, reason } => self.end_call(&call_id, reason),
            ServerMessage::TransferRequested {
                call_id,
                transfer_id,
                transferor,
                target,
            } => {
                let Some(call) = self.calls.get_mut(&call_id) else {
                    return;
                };
                call.transfer_request = Some(transfer_id.clone());
                self.event(Event::TransferRequested {
                    call_id: call_id.clone(),
                    transfer_id,
                    transferor,
                    target,
                });
                if self.auto_accept_transfers {
                    let accepted = self.handle_command(Command::AcceptTransfer { call_id }, now);
                    debug_assert!(accepted.is_ok(), "a fresh transfer request can be accepted");
                }
            }
            ServerMessage::TransferStateChanged {
                call_id,
                transfer_id,
                state,
                error,
            } => {
                if let Some(call) = self.calls.get_mut(&call_id) {
                    match &call.transfer {
                        Some(current) if *current == (transfer_id.clone(), state) => return,
                        // Another transfer of ours is under way; this one was refused.
                        Some((id, TransferState::Transferring)) if *id != transfer_id => {}
                        _ => call.transfer = Some((transfer_id.clone(), state)),
                    }
                }
                self.event(Event::TransferStateChanged {
                    call_id,
                    transfer_id,
                    state,
                    error,
                });
            }
            ServerMessage::TransferAccepted {
                call_id,
                target_call_id,
            } => {
                self.event(Event::TransferAccepted {
                    call_id,
                    target_call_id,
                });
            }
            ServerMessage::ActiveCallsUpdated { details } => {
                self.active_elsewhere = Some(details.clone());
                self.event(Event::ActiveCallsUpdated(details));
            }
            ServerMessage::NoActiveCalls => {
                self.active_elsewhere = None;
                self.event(Event::NoActiveCalls);
            }
            ServerMessage::ForwardingChanged { forwarding } => {
                self.forwarding = forwarding.clone();
                self.event(Event::ForwardingChanged(forwarding));
            }
            ServerMessage::MessageWaiting {
                new_count,
                total_count,
            } => self.event(Event::MessageWaiting {
                new_count,
                total_count,
            }),
            ServerMessage::Voicemails { messages } => self.event(Event::Voicemails(messages)),
            ServerMessage::VoicemailData {
                message_id,
                seq,
                data,
                last,
            } => self.event(Event::VoicemailData {
                message_id,
                seq,
                data,
                last,
            }),
            ServerMessage::Pong { .. } => {}
            ServerMessage::Error {
                code,
                message,
                call_id,
            } => {
                if code == ErrorCode::InvalidToken {
                    self.refused_token = true;
                }
                self.event(Event::Error {
                    code,
                    message,
                    call_id,
                });
            }
        }
    }

    /// Takes the switchboard's full list of remote participants: who joined and who left come
    /// out as one remoteParticipantsUpdated, then each change of someone who stayed as a
    /// participantStateChanged. A participant is keyed by raw id and, for another device of
    /// this user, its device name.
    fn apply_roster(&mut self, call_id: &str, participants: Vec<Participant>) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let key = |p: &Participant| (p.identity.raw_id.clone(), p.device.clone());
        let old = std::mem::take(&mut call.info.remote);
        let added: Vec<Participant> = participants
            .iter()
            .filter(|p| !old.iter().any(|o| key(o) == key(p)))
            .cloned()
            .collect();
        let removed: Vec<Participant> = old
            .iter()
            .filter(|o| !participants.iter().any(|p| key(p) == key(o)))
            .cloned()
            .collect();
        let changed: Vec<Participant> = participants
            .iter()
            .filter(|p| old.iter().any(|o| key(o) == key(p) && o != *p))
            .cloned()
            .collect();
        call.info.remote = participants;
        if !added.is_empty() || !removed.is_empty() {
            self.event(Event::RemoteParticipantsUpdated {
                call_id: call_id.to_string(),
                added,
                removed,
            });
        }
        for participant in changed {
            self.event(Event::ParticipantStateChanged {
                call_id: call_id.to_string(),
                participant,
            });
        }
    }

    fn welcome(
        &mut self,
        identity: Identity,
        ice_servers: Vec<crate::protocol::IceServer>,
        resume_token: Option<String>,
        resumed: bool,
        reconnect_window_ms: u64,
        now: Now,
    ) {
        let was_resuming = self.session.resuming();
        let path_changed = std::mem::take(&mut self.path_changed);
        if !resumed && (was_resuming || !self.calls.is_empty()) {
            // The switchboard no longer holds our place (the window passed, or it restarted):
            // the calls are over.
            self.end_session();
        }
        let pending = std::mem::take(&mut self.pending);
        self.session.welcome(
            resume_token,
            Duration::from_millis(reconnect_window_ms),
            now.mono,
        );
        self.identity = Some(identity);
        self.refused_token = false;
        self.failure = None;
        self.diagnostics.signaling(true);
        self.set_connection(ConnectionState::Connected, None);
        self.ice_servers = ice_servers;
        if resumed {
            for msg in pending {
                self.send(msg);
            }
            // Keep the media link only if it demonstrably carries audio now; after a change of
            // network it may look up while its path is gone, and a new one costs a round trip.
            let flowing = !path_changed
                && self.link_up
                && self
                    .diagnostics
                    .last_audio()
                    .is_some_and(|t| now.mono.saturating_duration_since(t) < AUDIO_FRESH);
            if flowing {
                return;
            }
        }
        self.offer_media(now);
    }

    /// Builds a new media link (the old one, if any, is replaced when the offer is ready).
    fn offer_media(&mut self, now: Now) {
        self.diagnostics
            .link_started(!self.ice_servers.is_empty(), now.mono);
        self.meter.reset();
        self.link_up = false;
        self.link_down_since = Some(now.mono);
        self.last_offer = Some(now.mono);
        self.outputs.push_back(Output::CreateMediaOffer {
            ice_servers: self.ice_servers.clone(),
        });
    }

    fn drop_link(&mut self) {
        if self.last_offer.take().is_some() {
            self.outputs.push_back(Output::DropMedia);
        }
        self.link_up = false;
        self.link_down_since = None;
    }

    /// Sends the answers that waited for the media link: all of them (`None`: it is up), or
    /// those whose wait is over at `now`.
    fn send_waiting_accepts(&mut self, now: Option<Instant>) {
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.accept_when_linked)
            .into_iter()
            .partition(|(_, until)| now.is_none_or(|n| n >= *until));
        self.accept_when_linked = waiting;
        for (call_id, _) in due {
            // Still ours to answer: the caller may have given up meanwhile.
            if self
                .calls
                .get(&call_id)
                .is_some_and(|c| c.info.state == CallState::Connecting)
            {
                self.send(ClientMessage::Accept { call_id });
            }
        }
    }

    fn tick(&mut self, now: Now) {
        if !self.accept_when_linked.is_empty() {
            self.send_waiting_accepts(Some(now.mono));
        }
        let connected = self.connection == ConnectionState::Connected;
        match self.session.tick(connected, now.mono) {
            Some(SessionAction::Ping(nonce)) => self.send(ClientMessage::Ping { nonce }),
            Some(SessionAction::Reconnect) => self
                .outputs
                .push_back(Output::Reconnect(ReconnectWhy::Silent)),
            Some(SessionAction::GiveUp) => {
                self.end_session();
                return;
            }
            None => {}
        }
        // A link that stays down while signed in is rebuilt: whatever state the old one is
        // stuck in, a new one starts from scratch (new sockets on today's addresses).
        if connected
            && !self.link_up
            && self
                .link_down_since
                .is_some_and(|d| now.mono.saturating_duration_since(d) >= REBUILD_AFTER)
            && self
                .last_offer
                .is_some_and(|o| now.mono.saturating_duration_since(o) >= REBUILD_AFTER)
        {
            self.offer_media(now);
        }
    }

    fn local_addresses(&mut self, list: Vec<std::net::IpAddr>) {
        self.diagnostics.network(!list.is_empty());
        let gone = self
            .addresses
            .as_ref()
            .is_some_and(|old| old.iter().any(|a| !list.contains(a)));
        self.addresses = Some(list);
        if gone && self.identity.is_some() {
            // The signaling connection and the media link may be leaving from the address that
            // went away: replace both now instead of waiting for the silence to show it.
            self.path_changed = true;
            if self.connection == ConnectionState::Connected {
                self.outputs
                    .push_back(Output::Reconnect(ReconnectWhy::AddressGone));
            }
        }
    }

    fn transport_down(&mut self, now: Now) {
        // Signed in and the switchboard keeps our place: keep the calls and reconnect.
        if !self.refused_token && self.identity.is_some() && self.session.lost(now.mono) {
            self.diagnostics.signaling(false);
            if self.connection == ConnectionState::Connected {
                self.set_connection(
                    ConnectionState::Disconnected,
                    Some(DisconnectReason::ConnectionIssue),
                );
            }
            return;
        }
        let reason = if self.refused_token {
            DisconnectReason::InvalidToken
        } else {
            DisconnectReason::ConnectionIssue
        };
        self.end_session();
        if self.connection == ConnectionState::Connected || self.refused_token {
            self.set_connection(ConnectionState::Disconnected, Some(reason));
        }
    }

    /// Calls end with the connection; the identity is the switchboard's to give again.
    fn end_session(&mut self) {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            self.end_call(&id, CallEndReason::CONNECTION_LOST);
        }
        self.identity = None;
        self.session.end();
        self.pending.clear();
        self.diagnostics.signaling(true);
        self.drop_link();
    }

    /// Like a close, and the user hears why, once per distinct message however often the
    /// adapter retries (`Disconnected` to `Disconnected` when it never got through).
    fn transport_failed(&mut self, message: String) {
        let repeat = self.connection == ConnectionState::Disconnected
            && self.failure.as_ref() == Some(&message);
        // Reconnecting to a kept place: the calls wait for the window whatever the attempts say.
        if !self.session.resuming() {
            self.end_session();
        }
        if !repeat {
            self.failure = Some(message.clone());
            let old = self.connection;
            self.connection = ConnectionState::Disconnected;
            self.event(Event::ConnectionStateChanged {
                old,
                new: ConnectionState::Disconnected,
                reason: Some(DisconnectReason::ConnectionIssue),
                message: Some(message),
            });
        }
    }

    fn set_connection(&mut self, new: ConnectionState, reason: Option<DisconnectReason>) {
        let old = self.connection;
        self.connection = new;
        self.event(Event::ConnectionStateChanged {
            old,
            new,
            reason,
            message: None,
        });
    }

    fn end_call(&mut self, call_id: &str, reason: CallEndReason) {
        let Some(mut call) = self.calls.remove(call_id) else {
            return;
        };
        call.info.end_reason = Some(reason);
        self.event(Event::CallStateChanged {
            call_id: call_id.to_string(),
            state: CallState::Disconnected,
        });
        self.event(Event::CallEnded {
            call_id: call_id.to_string(),
            reason,
        });
        self.update_media();
        if self.calls.is_empty() {
            self.outputs
                .push_back(Output::Media(MediaControl::FinalizeRecording));
        }
    }

    fn set_muted(&mut self, call_id: String, muted: bool) -> Result<CommandOk, CommandError> {
        let call = self
            .calls
            .get_mut(&call_id)
            .ok_or_else(|| CommandError::UnknownCall(call_id.clone()))?;
        if call.info.state.is_ended() {
            return Err(CommandError::InvalidState {
                call_id,
                action: "mute",
                state: call.info.state,
            });
        }
        if call.info.muted != muted {
            call.info.muted = muted;
            self.send(ClientMessage::SetMuted { call_id, muted });
            self.update_media();
        }
        Ok(CommandOk::Done)
    }

    /// The state shown follows from facts: our hold flag, the remote parties' hold, and whether
    /// the switchboard said the call is connected.
    fn recompute_state(&mut self, call_id: &str) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        if call.info.connected_unix_ms.is_none() || call.info.state == CallState::Disconnecting {
            return;
        }
        // Remote hold means nobody else is there to talk to: every other party (not this
        // user's own companion devices) holds. In a group call one holder does not silence
        // the rest.
        let mut others = call.info.remote.iter().filter(|p| p.device.is_none());
        let first = others.next();
        let remote_hold = first.is_some_and(|p| p.state == crate::core::ParticipantState::Hold)
            && others.all(|p| p.state == crate::core::ParticipantState::Hold);
        let state = if call.local_hold {
            CallState::LocalHold
        } else if remote_hold {
            CallState::RemoteHold
        } else {
            CallState::Connected
        };
        self.set_state(call_id, state);
    }

    fn set_state(&mut self, call_id: &str, state: CallState) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.info.state != state {
            call.info.state = state;
            self.event(Event::CallStateChanged {
                call_id: call_id.to_string(),
                state,
            });
            self.update_media();
        }
    }

    /// Reports the network diagnostics that changed (see `diagnostics.rs`).
    fn evaluate_diagnostics(&mut self, now: Now) {
        let views: Vec<CallView<'_>> = self
            .calls
            .values()
            .map(|c| CallView {
                call_id: &c.info.call_id,
                live: LIVE.contains(&c.info.state),
                expects_audio: c.info.state == CallState::Connected && expects_audio(c),
            })
            .collect();
        let changes = self.diagnostics.evaluate(&views, now.mono);
        for change in changes {
            self.event(Event::NetworkDiagnosticChanged(change));
        }
    }

    fn update_media(&mut self) {
        let live = |c: &&Call| c.info.state == CallState::Connected;
        let playout = self.calls.values().any(|c| live(&c));
        let capture = self.calls.values().filter(live).any(|c| !c.info.muted);
        if (capture, playout) != self.media {
            if capture != self.media.0 {
                self.outputs
                    .push_back(Output::Media(MediaControl::Capture(capture)));
            }
            if playout != self.media.1 {
                self.outputs
                    .push_back(Output::Media(MediaControl::Playout(playout)));
            }
            self.media = (capture, playout);
        }
    }

    fn call(&self, call_id: &str) -> Result<&Call, CommandError> {
        self.calls
            .get(call_id)
            .ok_or_else(|| CommandError::UnknownCall(call_id.to_string()))
    }

    fn expect_state(
        &self,
        call_id: &str,
        action: &'static str,
        allowed: &[CallState],
    ) -> Result<(), CommandError> {
        let call = self.call(call_id)?;
        if allowed.contains(&call.info.state) {
            Ok(())
        } else {
            Err(CommandError::InvalidState {
                call_id: call_id.to_string(),
                action,
                state: call.info.state,
            })
        }
    }

    fn send(&mut self, msg: ClientMessage) {
        self.outputs.push_back(Output::Send(msg));
    }

    fn event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }
}
