//! The switchboard's brain as a pure state machine: sign-in, presence per device, call routing,
//! transfer, forwarding, voicemail bookkeeping and the media routing table. The runtime
//! (server/runtime.rs) owns sockets, WebRTC, files and SQLite and only translates between them
//! and this core.
//!
//! Architecture invariant: no I/O here. Token checks are pure HMAC over a key handed in at
//! construction; persistence leaves as `Output::Store`; media leaves as `Output::Routes` and the
//! voicemail outputs; what the store knew at start-up comes in through `Startup`.

mod calls;
mod devices;
mod group;
mod liveness;
mod mailbox;
pub mod network;
mod transfer;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::token::{TokenError, TokenKey};
use crate::core::{CallEndReason, Now, ParticipantState, validate_user_name};
use crate::protocol::{
    ClientMessage, ErrorCode, Forwarding, Identity, PROTOCOL_VERSION, Participant, ServerMessage,
    VoicemailInfo, decode_client,
};

pub use mailbox::StoredMessage;

/// A WebSocket connection, numbered by the runtime.
pub type ConnId = u64;

#[derive(Debug, Clone)]
pub struct SwitchboardConfig {
    /// `--dev`: any name may sign in without a token, from loopback only.
    pub dev: bool,
    /// The ACS resource part of raw ids: `8:acs:<resource>_<name>`.
    pub resource: String,
    pub ring_timeout: Duration,
    /// A connection that sends this many bad frames in a row is closed: it is not a client.
    pub max_bad_frames: u32,
    /// Where voicemail recordings go (the runtime writes them; the core names them).
    pub voicemail_dir: PathBuf,
    pub voicemail_max: Duration,
    /// The media port's addresses, announced to devices as candidates (see
    /// [`network::announce_for`]).
    pub media: Vec<network::MediaAddr>,
    /// TURN relays handed to devices in `welcome`.
    pub turn: Option<network::TurnConfig>,
    /// How long a signed-in device whose connection is lost keeps its place (endpoint, calls)
    /// for a `hello.resume`. Zero: a lost connection ends its calls at once.
    pub reconnect_window: Duration,
    /// A connection that sends nothing (no frame, no WebSocket pong) for this long is taken as
    /// lost.
    pub keepalive_timeout: Duration,
}

/// What the store knew at start-up.
#[derive(Debug, Clone, Default)]
pub struct Startup {
    /// raw id -> name of every user ever seen; decides 404 vs 480.
    pub known: HashMap<String, String>,
    pub revoked: BTreeSet<String>,
    pub forwarding: HashMap<String, Forwarding>,
    pub messages: Vec<StoredMessage>,
    /// raw id -> the user's own greeting (Ogg Opus).
    pub greetings: HashMap<String, PathBuf>,
    /// E.164 number -> the user name that owns it.
    pub numbers: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub enum Input {
    Opened {
        conn: ConnId,
        loopback: bool,
        /// The address of ours the device's connection arrived on.
        local: Option<std::net::SocketAddr>,
        /// Random bits from the runtime: the secret half of this connection's resume token.
        secret: u128,
    },
    Frame {
        conn: ConnId,
        text: String,
    },
    /// The connection is gone. `clean`: the device closed it on purpose (a WebSocket close
    /// frame), so it is not coming back; otherwise its place is kept for the reconnect window.
    Closed {
        conn: ConnId,
        clean: bool,
    },
    /// The connection showed it is alive without a frame (a WebSocket pong or ping).
    Alive {
        conn: ConnId,
    },
    MediaAnswered {
        conn: ConnId,
        sdp: String,
    },
    MediaFailed {
        conn: ConnId,
        error: String,
    },
    MediaConnected {
        conn: ConnId,
        up: bool,
    },
    /// A voicemail session finished (caller left, max length, or stopped).
    VoicemailEnded {
        call_id: String,
        duration_ms: u64,
        full: bool,
    },
    /// A timer the core asked for (see `poll_timeout`) fired.
    Tick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send {
        conn: ConnId,
        msg: ServerMessage,
    },
    Close {
        conn: ConnId,
        reason: String,
    },
    /// The connection `socket` resumed `device`'s place: from now on its frames are `device`'s
    /// and what is sent to `device` goes to it. `socket` is not used as an id again.
    Attach {
        socket: ConnId,
        device: ConnId,
    },
    /// Answer this endpoint's media offer, then report back with MediaAnswered/MediaFailed.
    CreateMedia {
        conn: ConnId,
        offer_sdp: String,
        /// The media addresses to announce to this device, best first.
        announce: Vec<std::net::SocketAddr>,
    },
    DropMedia {
        conn: ConnId,
    },
    /// The full forwarding table: audio arriving from the key goes to each listed connection.
    /// Sent whenever it changes; the relay swaps it in atomically.
    Routes(BTreeMap<ConnId, Vec<ConnId>>),
    /// Play the owner's greeting (`greeting`, or the default one) to `conn`, then record its
    /// audio to `path`.
    StartVoicemail {
        call_id: String,
        conn: ConnId,
        owner: String,
        greeting: Option<PathBuf>,
        path: PathBuf,
    },
    /// Beep, then record `conn`'s new greeting to `path`.
    RecordGreeting {
        call_id: String,
        conn: ConnId,
        path: PathBuf,
    },
    StopVoicemail {
        call_id: String,
    },
    /// Send a recording to `conn` as `voicemailData` chunks.
    SendVoicemail {
        conn: ConnId,
        message_id: String,
        path: PathBuf,
    },
    DeleteFile {
        path: PathBuf,
    },
    Store(StoreOp),
}

#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    UpsertIdentity {
        raw_id: String,
        name: String,
    },
    CallStarted {
        call_id: String,
        caller: String,
        callees: Vec<String>,
        at_ms: u64,
    },
    CallConnected {
        call_id: String,
        at_ms: u64,
    },
    CallEnded {
        call_id: String,
        at_ms: u64,
        reason: CallEndReason,
    },
    SetForwarding {
        raw_id: String,
        forwarding: Forwarding,
    },
    SaveMessage(StoredMessage),
    MarkMessage {
        message_id: String,
        is_new: bool,
    },
    DeleteMessage {
        message_id: String,
    },
    SetGreeting {
        raw_id: String,
        path: PathBuf,
    },
}

#[derive(Debug)]
struct Conn {
    loopback: bool,
    local: Option<std::net::SocketAddr>,
    endpoint: Option<Endpoint>,
    bad_frames: u32,
    /// The last time anything arrived on the connection.
    last_heard: Instant,
    /// The secret half of the resume token.
    secret: u128,
    /// The connection is lost and the device's place is kept (see `liveness.rs`).
    parked: Option<liveness::Parked>,
}

#[derive(Debug, Clone)]
struct Endpoint {
    identity: Identity,
    endpoint_id: String,
    device_name: String,
    media_up: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Connected,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PartyKind {
    Device,
    /// The echo service: the caller's own device hears itself.
    Echo,
    /// A mailbox recording the other party.
    Voicemail,
    /// Records the caller's own greeting.
    GreetingRecorder,
}

#[derive(Debug)]
struct Party {
    identity: Identity,
    kind: PartyKind,
    /// The device carrying this party's leg once it is answered (or the caller's device).
    conn: Option<ConnId>,
    /// Devices of this party that are ringing.
    ringing: BTreeSet<ConnId>,
    /// The transferee's device in a transfer's target leg: told about the call only once it
    /// connects, so a failed attempt leaves the transferee's screen untouched.
    pending_conn: Option<ConnId>,
    /// Other devices of the same user in the call as companions: they hear and are heard like
    /// `conn`, and may leave without ending the call.
    companions: BTreeSet<ConnId>,
    muted: bool,
    held: bool,
    speaking: bool,
    /// The device carrying this party's leg lost its connection and may come back.
    reconnecting: bool,
    /// When this party, ringing in a group call, gives up (1:1 calls use `Call::ring_deadline`).
    ring_deadline: Option<Instant>,
    /// How the others see this party when it was reached by one of its numbers: `4:+E164`.
    shown: Option<Identity>,
    /// (raw id, number): the user who called this party by number, and the caller id it used.
    /// This party sees that user as the number, as a phone would.
    caller_as: Option<(String, String)>,
}

impl Party {
    fn new(identity: Identity, kind: PartyKind) -> Party {
        Party {
            identity,
            kind,
            conn: None,
            ringing: BTreeSet::new(),
            pending_conn: None,
            companions: BTreeSet::new(),
            muted: false,
            held: false,
            speaking: false,
            reconnecting: false,
            ring_deadline: None,
            shown: None,
            caller_as: None,
        }
    }

    fn participant(&self, phase: Phase) -> Participant {
        // In a group call, a party being invited rings while the call itself is connected.
        let invited = self.kind == PartyKind::Device
            && self.conn.is_none()
            && self.pending_conn.is_none()
            && !self.ringing.is_empty();
        let state = match (phase, self.held) {
            (Phase::Ringing, _) => ParticipantState::Ringing,
            _ if invited => ParticipantState::Ringing,
            (Phase::Connected, true) => ParticipantState::Hold,
            (Phase::Connected, false) => ParticipantState::Connected,
        };
        Participant {
            identity: self.shown.clone().unwrap_or_else(|| self.identity.clone()),
            state,
            is_muted: self.muted,
            is_speaking: self.speaking && !self.muted,
            device: None,
            service: self.kind == PartyKind::Voicemail,
            reconnecting: self.reconnecting,
        }
    }

    /// Every device carrying this party: the main one and its companions.
    fn devices(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conn.into_iter().chain(self.companions.iter().copied())
    }

    fn has_device(&self, conn: ConnId) -> bool {
        self.conn == Some(conn) || self.companions.contains(&conn)
    }
}

#[derive(Debug)]
struct Call {
    phase: Phase,
    /// parties[0] is the caller.
    parties: Vec<Party>,
    ring_deadline: Option<Instant>,
    /// Set on a transfer's target leg: the call and transfer it completes.
    origin: Option<transfer::Origin>,
    /// A transfer under way on this call.
    transfer: Option<transfer::Pending>,
    /// Forwarding to apply when the ringing callee does not answer by `ring_deadline`.
    on_no_answer: Option<calls::ForwardTo>,
    connected_ms: Option<u64>,
    /// A group call: placed to several callees, joined by GUID, or grown by addParticipant.
    /// Parties come and go; it ends when the last one leaves (or on hangUp forEveryone).
    group: bool,
    /// Started by `joinGroup`: its id is the group's GUID and anyone may join it.
    joinable: bool,
    /// The caller's own number, shown to callees reached by number.
    caller_number: Option<String>,
}

pub struct Switchboard {
    cfg: SwitchboardConfig,
    key: TokenKey,
    conns: HashMap<ConnId, Conn>,
    known: HashMap<String, String>,
    revoked: BTreeSet<String>,
    forwarding: HashMap<String, Forwarding>,
    messages: BTreeMap<String, StoredMessage>,
    sessions: HashMap<String, mailbox::Session>,
    greetings: HashMap<String, PathBuf>,
    /// What each device was last told about its user's calls on other devices.
    presence: HashMap<ConnId, Option<crate::protocol::ActiveCallDetails>>,
    calls: BTreeMap<String, Call>,
    routes: BTreeMap<ConnId, Vec<ConnId>>,
    outputs: VecDeque<Output>,
    /// E.164 number -> the user name that owns it (config, and `dialtone number assign`).
    numbers: BTreeMap<String, String>,
}

impl Switchboard {
    pub fn new(cfg: SwitchboardConfig, key: TokenKey, startup: Startup) -> Self {
        Switchboard {
            cfg,
            key,
            conns: HashMap::new(),
            known: startup.known,
            revoked: startup.revoked,
            forwarding: startup.forwarding,
            messages: startup
                .messages
                .into_iter()
                .map(|m| (m.message_id.clone(), m))
                .collect(),
            sessions: HashMap::new(),
            greetings: startup.greetings,
            presence: HashMap::new(),
            calls: BTreeMap::new(),
            routes: BTreeMap::new(),
            outputs: VecDeque::new(),
            numbers: startup.numbers,
        }
    }

    /// Replaces the number plan (the runtime re-reads it while running).
    pub fn set_numbers(&mut self, numbers: BTreeMap<String, String>) {
        self.numbers = numbers;
    }

    pub fn raw_id_for(&self, name: &str) -> String {
        format!("8:acs:{}_{}", self.cfg.resource, name)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next instant at which `Input::Tick` must be delivered.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .flat_map(|c| {
                c.ring_deadline
                    .into_iter()
                    .chain(c.parties.iter().filter_map(|p| p.ring_deadline))
            })
            .chain(self.liveness_deadline())
            .min()
    }

    /// Number of calls in progress (ringing or connected), for status lines and tests.
    pub fn live_calls(&self) -> usize {
        self.calls.len()
    }

    pub fn revoke(&mut self, jti: String) {
        self.revoked.insert(jti);
    }

    pub fn handle(&mut self, input: Input, now: Now) {
        match input {
            Input::Opened {
                conn,
                loopback,
                local,
                secret,
            } => {
                self.conns.insert(
                    conn,
                    Conn {
                        loopback,
                        local,
                        endpoint: None,
                        bad_frames: 0,
                        last_heard: now.mono,
                        secret,
                        parked: None,
                    },
                );
            }
            Input::Frame { conn, text } => {
                self.heard(conn, now);
                self.frame(conn, &text, now)
            }
            Input::Alive { conn } => self.heard(conn, now),
            Input::Closed { conn, clean } => self.closed(conn, clean, now),
            Input::MediaAnswered { conn, sdp } => {
                if self.conns.contains_key(&conn) {
                    self.send(conn, ServerMessage::MediaAnswer { sdp });
                } else {
                    // The device left while its offer was being answered.
                    self.outputs.push_back(Output::DropMedia { conn });
                }
            }
            Input::MediaFailed { conn, error } => {
                self.error(
                    conn,
                    ErrorCode::MediaFailed,
                    format!("media connection failed: {error}"),
                    None,
                );
            }
            Input::MediaConnected { conn, up } => {
                if let Some(ep) = self.endpoint_mut(conn) {
                    ep.media_up = up;
                }
            }
            Input::VoicemailEnded {
                call_id,
                duration_ms,
                full,
            } => self.voicemail_ended(&call_id, duration_ms, full, now),
            Input::Tick => self.tick(now),
        }
        self.update_routes();
        self.update_presence(now);
    }

    fn frame(&mut self, conn: ConnId, text: &str, now: Now) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let msg = match decode_client(text) {
            Ok(m) => {
                c.bad_frames = 0;
                m
            }
            Err(e) => {
                c.bad_frames += 1;
                let close = c.bad_frames >= self.cfg.max_bad_frames;
                self.error(conn, e.code(), e.to_string(), None);
                if close {
                    self.outputs.push_back(Output::Close {
                        conn,
                        reason: format!("{} bad frames in a row", self.cfg.max_bad_frames),
                    });
                }
                return;
            }
        };
        let signed_in = c.endpoint.is_some();
        match msg {
            ClientMessage::Hello {
                protocol,
                user,
                token,
                device_name,
                resume,
                ..
            } => {
                if signed_in {
                    self.error(
                        conn,
                        ErrorCode::AlreadySignedIn,
                        "this connection is already signed in".into(),
                        None,
                    );
                } else {
                    self.hello(conn, protocol, user, token, device_name, resume, now);
                }
            }
            ClientMessage::Ping { nonce } => self.send(conn, ServerMessage::Pong { nonce }),
            _ if !signed_in => self.error(
                conn,
                ErrorCode::NotSignedIn,
                "send hello before anything else".into(),
                None,
            ),
            ClientMessage::MediaOffer { sdp } => {
                let (loopback, local) = self
                    .conns
                    .get(&conn)
                    .map(|c| (c.loopback, c.local.map(|a| a.ip())))
                    .unwrap_or((false, None));
                let announce = network::announce_for(&self.cfg.media, loopback, local);
                self.outputs.push_back(Output::CreateMedia {
                    conn,
                    offer_sdp: sdp,
                    announce,
                });
            }
            ClientMessage::PlaceCall {
                call_id,
                to,
                alternate_caller_id,
            } => self.place_call(conn, call_id, to, alternate_caller_id, now),
            ClientMessage::JoinGroup { group_id } => self.join_group(conn, &group_id, now),
            ClientMessage::AddParticipant {
                call_id,
                target,
                alternate_caller_id,
            } => self.add_participant(conn, &call_id, &target, alternate_caller_id, now),
            ClientMessage::RemoveParticipant { call_id, target } => {
                self.remove_participant(conn, &call_id, &target, now)
            }
            ClientMessage::Accept { call_id } => self.accept(conn, &call_id, now),
            ClientMessage::Reject { call_id, reason } => self.reject(conn, &call_id, reason, now),
            ClientMessage::HangUp {
                call_id,
                for_everyone,
            } => self.hang_up(conn, &call_id, for_everyone, now),
            ClientMessage::SetMuted { call_id, muted } => {
                self.update_party(conn, &call_id, |p| p.muted = muted)
            }
            ClientMessage::Hold { call_id } => self.update_party(conn, &call_id, |p| p.held = true),
            ClientMessage::Resume { call_id } => {
                self.update_party(conn, &call_id, |p| p.held = false)
            }
            ClientMessage::Speaking { call_id, speaking } => {
                self.update_party(conn, &call_id, |p| p.speaking = speaking)
            }
            ClientMessage::Transfer {
                call_id,
                transfer_id,
                target,
                disable_forwarding_and_unanswered,
            } => self.transfer(
                conn,
                &call_id,
                transfer_id,
                target,
                disable_forwarding_and_unanswered,
            ),
            ClientMessage::AcceptTransfer { call_id } => self.accept_transfer(conn, &call_id, now),
            ClientMessage::RejectTransfer { call_id } => self.reject_transfer(conn, &call_id),
            ClientMessage::SetForwarding { forwarding } => self.set_forwarding(conn, forwarding),
            ClientMessage::ListVoicemail => self.list_voicemail(conn),
            ClientMessage::FetchVoicemail { message_id } => self.fetch_voicemail(conn, &message_id),
            ClientMessage::DeleteVoicemail { message_id } => {
                self.delete_voicemail(conn, &message_id)
            }
            ClientMessage::MarkVoicemail { message_id, is_new } => {
                self.mark_voicemail(conn, &message_id, is_new)
            }
            ClientMessage::ActiveCallTransfer {
                call_id,
                from_endpoint,
                is_transfer,
            } => self.active_call_transfer(conn, &call_id, &from_endpoint, is_transfer, now),
        }
    }

    // Each argument is a field of `hello`; a struct for them would only be unpacked again here.
    #[allow(clippy::too_many_arguments)]
    fn hello(
        &mut self,
        conn: ConnId,
        protocol: u32,
        user: Option<String>,
        token: Option<String>,
        device_name: String,
        resume: Option<String>,
        now: Now,
    ) {
        if protocol != PROTOCOL_VERSION {
            self.refuse(
                conn,
                ErrorCode::UnsupportedVersion,
                format!("protocol {protocol} is not supported; this switchboard speaks {PROTOCOL_VERSION}"),
            );
            return;
        }
        let loopback = self.conns.get(&conn).is_some_and(|c| c.loopback);
        let name = match (token, user) {
            (Some(token), _) => match self.key.verify(&token, now.unix_ms / 1000) {
                Ok(claims) if self.revoked.contains(&claims.jti) => {
                    self.refuse(
                        conn,
                        ErrorCode::InvalidToken,
                        format!("token {} was revoked", claims.jti),
                    );
                    return;
                }
                Ok(claims) => claims.sub,
                Err(e) => {
                    self.refuse(conn, ErrorCode::InvalidToken, e.to_string());
                    return;
                }
            },
            (None, Some(user)) if self.cfg.dev && loopback => user,
            (None, Some(_)) if self.cfg.dev => {
                self.refuse(
                    conn,
                    ErrorCode::InvalidToken,
                    "dev sign-in without a token is for loopback only".into(),
                );
                return;
            }
            (None, _) => {
                self.refuse(
                    conn,
                    ErrorCode::InvalidToken,
                    TokenError::Missing.to_string(),
                );
                return;
            }
        };
        if let Err(e) = validate_user_name(&name) {
            self.refuse(conn, ErrorCode::InvalidArgument, e);
            return;
        }
        let device_name = if device_name.trim().is_empty() {
            "device".to_string()
        } else {
            device_name
        };
        let raw_id = self.raw_id_for(&name);
        if !self.known.contains_key(&raw_id) {
            self.known.insert(raw_id.clone(), name.clone());
            self.outputs
                .push_back(Output::Store(StoreOp::UpsertIdentity {
                    raw_id: raw_id.clone(),
                    name: name.clone(),
                }));
        }
        let identity = Identity {
            raw_id: raw_id.clone(),
            display_name: name,
        };
        if let Some(token) = resume {
            match self.resume(conn, &token, &raw_id, now) {
                Ok(()) => return,
                // The client learns it from `welcome.resumed` being false and starts over.
                Err(why) => {
                    tracing::info!(user = %identity.display_name, "not resumed, signing in anew: {why}")
                }
            }
        }
        let endpoint_id = format!("{conn}:{device_name}");
        if let Some(c) = self.conns.get_mut(&conn) {
            c.endpoint = Some(Endpoint {
                identity: identity.clone(),
                endpoint_id: endpoint_id.clone(),
                device_name,
                media_up: false,
            });
        }
        // The user's name, not the raw id: coturn reads the expiry up to the first ':'.
        let ice_servers = network::ice_servers(
            self.cfg.turn.as_ref(),
            &identity.display_name,
            now.unix_ms / 1000,
        );
        let welcome = self.welcome(conn, identity, endpoint_id, ice_servers, false);
        self.send(conn, welcome);
        let forwarding = self.forwarding.get(&raw_id).cloned().unwrap_or_default();
        self.send(conn, ServerMessage::ForwardingChanged { forwarding });
        let (new_count, total_count) = self.mailbox_counts(&raw_id);
        self.send(
            conn,
            ServerMessage::MessageWaiting {
                new_count,
                total_count,
            },
        );
    }

    /// The device is gone for good: its calls go on without it or end.
    fn gone(&mut self, conn: ConnId, now: Now) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let Some(ep) = c.endpoint else { return };
        tracing::debug!(user = %ep.identity.display_name, device = %ep.device_name, "device left");
        self.outputs.push_back(Output::DropMedia { conn });
        self.presence.remove(&conn);
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            // One of several devices of its party: the call goes on without it.
            if self.leave_device(&id, conn) {
                continue;
            }
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            if call.group {
                self.group_device_gone(&id, conn, now);
                continue;
            }
            if let Some(pi) = call
                .parties
                .iter()
                .position(|p| p.conn == Some(conn) || p.pending_conn == Some(conn))
            {
                // A party with a live leg vanished (and did not come back within the reconnect
                // window): the call is over for everyone else.
                call.parties[pi].conn = None;
                call.parties[pi].pending_conn = None;
                let reason = if call.phase == Phase::Ringing {
                    CallEndReason::CANCELLED
                } else {
                    CallEndReason::PEER_LOST
                };
                self.end_call(&id, reason, Some(conn), now);
            } else if let Some(pi) = call.parties.iter().position(|p| p.ringing.contains(&conn)) {
                call.parties[pi].ringing.remove(&conn);
                if call.parties[pi].ringing.is_empty() && call.parties[pi].conn.is_none() {
                    self.no_answer(&id, CallEndReason::OFFLINE, now);
                }
            }
        }
    }

    fn tick(&mut self, now: Now) {
        self.liveness_tick(now);
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.ring_deadline.is_some_and(|d| d <= now.mono))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.no_answer(&id, CallEndReason::NO_ANSWER, now);
        }
        self.group_ring_timeouts(now);
    }

    fn update_party(&mut self, conn: ConnId, call_id: &str, f: impl FnOnce(&mut Party)) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return self.unknown_call(conn, call_id);
        };
        let Some(pi) = call.parties.iter().position(|p| p.conn == Some(conn)) else {
            if call.parties.iter().any(|p| p.ringing.contains(&conn)) {
                return self.error(
                    conn,
                    ErrorCode::InvalidState,
                    "answer the call first".into(),
                    Some(call_id.into()),
                );
            }
            return self.unknown_call(conn, call_id);
        };
        self.change_party(call_id, pi, f);
    }

    /// Applies `f` to party `pi` and tells the other parties if it changed how they see it.
    fn change_party(&mut self, call_id: &str, pi: usize, f: impl FnOnce(&mut Party)) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let before = call.parties[pi].participant(call.phase);
        f(&mut call.parties[pi]);
        let after = call.parties[pi].participant(call.phase);
        if before == after {
            return;
        }
        let call = &self.calls[call_id];
        let updates: Vec<(ConnId, Participant)> = call
            .parties
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != pi)
            .filter_map(|(j, p)| Some((p.conn?, call.seen_by(pi, j))))
            .collect();
        for (t, participant) in updates {
            self.send(
                t,
                ServerMessage::ParticipantUpdated {
                    call_id: call_id.into(),
                    participant,
                },
            );
        }
    }

    /// Recomputes who hears whom: in a connected call that nobody holds, each party's device
    /// feeds every other party's device; the echo service feeds a device back to itself.
    /// Voicemail legs are fed by their session, not by routes.
    fn update_routes(&mut self) {
        let mut routes: BTreeMap<ConnId, Vec<ConnId>> = BTreeMap::new();
        for call in self.calls.values() {
            // A 1:1 call on hold is silent both ways; in a group call only the holder drops out.
            if call.phase != Phase::Connected
                || (!call.group && call.parties.iter().any(|p| p.held))
            {
                continue;
            }
            // (party index, device) for every device with media.
            let legs: Vec<(usize, ConnId)> = call
                .parties
                .iter()
                .enumerate()
                .filter(|(_, p)| !(call.group && p.held))
                .flat_map(|(i, p)| p.devices().map(move |c| (i, c)))
                .filter(|(_, c)| self.endpoint(*c).is_some_and(|e| e.media_up))
                .collect();
            if call.parties.iter().any(|p| p.kind == PartyKind::Echo) {
                for (_, l) in &legs {
                    routes.entry(*l).or_default().push(*l);
                }
                continue;
            }
            // Devices of the same party do not hear each other: companions are usually in
            // the same room, and would only hear an echo.
            for (pf, from) in &legs {
                for (pt, to) in &legs {
                    if pf != pt {
                        routes.entry(*from).or_default().push(*to);
                    }
                }
            }
        }
        for v in routes.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
        if routes != self.routes {
            self.routes = routes.clone();
            self.outputs.push_back(Output::Routes(routes));
        }
    }

    fn unknown_call(&mut self, conn: ConnId, call_id: &str) {
        self.error(
            conn,
            ErrorCode::UnknownCall,
            format!("no call {call_id:?} on this device"),
            Some(call_id.into()),
        );
    }

    fn refuse(&mut self, conn: ConnId, code: ErrorCode, message: String) {
        self.error(conn, code, message.clone(), None);
        self.outputs.push_back(Output::Close {
            conn,
            reason: message,
        });
    }

    fn error(&mut self, conn: ConnId, code: ErrorCode, message: String, call_id: Option<String>) {
        self.send(
            conn,
            ServerMessage::Error {
                code,
                message,
                call_id,
            },
        );
    }

    fn send(&mut self, conn: ConnId, msg: ServerMessage) {
        // A device whose connection is lost gets it when it resumes.
        if let Some(parked) = self.conns.get_mut(&conn).and_then(|c| c.parked.as_mut()) {
            parked.missed(msg);
            return;
        }
        self.outputs.push_back(Output::Send { conn, msg });
    }

    fn endpoint(&self, conn: ConnId) -> Option<&Endpoint> {
        self.conns.get(&conn).and_then(|c| c.endpoint.as_ref())
    }

    fn endpoint_mut(&mut self, conn: ConnId) -> Option<&mut Endpoint> {
        self.conns.get_mut(&conn).and_then(|c| c.endpoint.as_mut())
    }

    fn me(&self, conn: ConnId) -> Identity {
        self.endpoint(conn)
            .expect("only signed-in connections reach call handling")
            .identity
            .clone()
    }

    /// Signed-in devices of a user.
    fn devices_of(&self, raw_id: &str) -> BTreeSet<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| {
                c.endpoint
                    .as_ref()
                    .is_some_and(|e| e.identity.raw_id == raw_id)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    fn identity_of(&self, raw_id: &str) -> Option<Identity> {
        self.known.get(raw_id).map(|name| Identity {
            raw_id: raw_id.to_string(),
            display_name: name.clone(),
        })
    }

    fn voicemail_info(m: &StoredMessage) -> VoicemailInfo {
        VoicemailInfo {
            message_id: m.message_id.clone(),
            caller: m.caller.clone(),
            received_unix_ms: m.received_unix_ms,
            duration_ms: m.duration_ms,
            is_new: m.is_new,
        }
    }
}
