//! The switchboard's brain as a pure state machine: sign-in, presence per device, call routing
//! and the media routing table. The runtime (server/runtime.rs) owns sockets, WebRTC and SQLite
//! and only translates between them and this core.
//!
//! Architecture invariant: no I/O here. Token checks are pure HMAC over a key handed in at
//! construction; persistence leaves as `Output::Store`; media leaves as `Output::Routes`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::token::{TokenError, TokenKey};
use crate::core::{echo_identity, validate_user_name, CallEndReason, Callee, Now, ParticipantState, RejectReason};
use crate::protocol::{
    decode_client, ClientMessage, ErrorCode, Identity, Participant, ServerMessage, PROTOCOL_VERSION,
};

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
}

#[derive(Debug, Clone)]
pub enum Input {
    Opened { conn: ConnId, loopback: bool },
    Frame { conn: ConnId, text: String },
    Closed { conn: ConnId },
    MediaAnswered { conn: ConnId, sdp: String },
    MediaFailed { conn: ConnId, error: String },
    MediaConnected { conn: ConnId, up: bool },
    /// A timer the core asked for (see `poll_timeout`) fired.
    Tick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send { conn: ConnId, msg: ServerMessage },
    Close { conn: ConnId, reason: String },
    /// Answer this endpoint's media offer, then report back with MediaAnswered/MediaFailed.
    CreateMedia { conn: ConnId, offer_sdp: String },
    DropMedia { conn: ConnId },
    /// The full forwarding table: audio arriving from the key goes to each listed connection.
    /// Sent whenever it changes; the relay swaps it in atomically.
    Routes(BTreeMap<ConnId, Vec<ConnId>>),
    Store(StoreOp),
}

#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    UpsertIdentity { raw_id: String, name: String },
    CallStarted { call_id: String, caller: String, callees: Vec<String>, at_ms: u64 },
    CallConnected { call_id: String, at_ms: u64 },
    CallEnded { call_id: String, at_ms: u64, reason: CallEndReason },
}

#[derive(Debug)]
struct Conn {
    loopback: bool,
    endpoint: Option<Endpoint>,
    bad_frames: u32,
}

#[derive(Debug, Clone)]
struct Endpoint {
    identity: Identity,
    device_name: String,
    media_up: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Connected,
}

#[derive(Debug)]
struct Party {
    identity: Identity,
    /// The device carrying this party's leg once it is answered (or the caller's device).
    conn: Option<ConnId>,
    /// Devices of this party that are ringing.
    ringing: BTreeSet<ConnId>,
    muted: bool,
    held: bool,
    speaking: bool,
}

impl Party {
    fn participant(&self, phase: Phase) -> Participant {
        let state = match (phase, self.held) {
            (Phase::Ringing, _) => ParticipantState::Ringing,
            (Phase::Connected, true) => ParticipantState::Hold,
            (Phase::Connected, false) => ParticipantState::Connected,
        };
        Participant {
            identity: self.identity.clone(),
            state,
            is_muted: self.muted,
            is_speaking: self.speaking && !self.muted,
        }
    }
}

#[derive(Debug)]
struct Call {
    phase: Phase,
    /// parties[0] is the caller.
    parties: Vec<Party>,
    ring_deadline: Option<Instant>,
    echo: bool,
}

pub struct Switchboard {
    cfg: SwitchboardConfig,
    key: TokenKey,
    conns: HashMap<ConnId, Conn>,
    /// Raw ids of every user ever seen (from the store at start-up); decides 404 vs 480.
    known: HashMap<String, String>,
    revoked: BTreeSet<String>,
    calls: BTreeMap<String, Call>,
    routes: BTreeMap<ConnId, Vec<ConnId>>,
    outputs: VecDeque<Output>,
}

impl Switchboard {
    /// `known` maps raw id to name for the users the store remembers; `revoked` holds token ids.
    pub fn new(
        cfg: SwitchboardConfig,
        key: TokenKey,
        known: HashMap<String, String>,
        revoked: BTreeSet<String>,
    ) -> Self {
        Switchboard {
            cfg,
            key,
            conns: HashMap::new(),
            known,
            revoked,
            calls: BTreeMap::new(),
            routes: BTreeMap::new(),
            outputs: VecDeque::new(),
        }
    }

    pub fn raw_id_for(&self, name: &str) -> String {
        format!("8:acs:{}_{}", self.cfg.resource, name)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next instant at which `Input::Tick` must be delivered.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls.values().filter_map(|c| c.ring_deadline).min()
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
            Input::Opened { conn, loopback } => {
                self.conns.insert(conn, Conn { loopback, endpoint: None, bad_frames: 0 });
            }
            Input::Frame { conn, text } => self.frame(conn, &text, now),
            Input::Closed { conn } => self.closed(conn, now),
            Input::MediaAnswered { conn, sdp } => {
                if self.conns.contains_key(&conn) {
                    self.send(conn, ServerMessage::MediaAnswer { sdp });
                }
            }
            Input::MediaFailed { conn, error } => {
                self.error(conn, ErrorCode::MediaFailed, format!("media connection failed: {error}"), None);
            }
            Input::MediaConnected { conn, up } => {
                if let Some(ep) = self.endpoint_mut(conn) {
                    ep.media_up = up;
                    self.update_routes();
                }
            }
            Input::Tick => self.tick(now),
        }
        self.update_routes();
    }

    fn frame(&mut self, conn: ConnId, text: &str, now: Now) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
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
            ClientMessage::Hello { protocol, user, token, device_name, .. } => {
                if signed_in {
                    self.error(conn, ErrorCode::AlreadySignedIn, "this connection is already signed in".into(), None);
                } else {
                    self.hello(conn, protocol, user, token, device_name, now);
                }
            }
            ClientMessage::Ping { nonce } => self.send(conn, ServerMessage::Pong { nonce }),
            _ if !signed_in => {
                self.error(conn, ErrorCode::NotSignedIn, "send hello before anything else".into(), None)
            }
            ClientMessage::MediaOffer { sdp } => self.outputs.push_back(Output::CreateMedia { conn, offer_sdp: sdp }),
            ClientMessage::PlaceCall { call_id, to } => self.place_call(conn, call_id, to, now),
            ClientMessage::Accept { call_id } => self.accept(conn, &call_id, now),
            ClientMessage::Reject { call_id, reason } => self.reject(conn, &call_id, reason, now),
            ClientMessage::HangUp { call_id, .. } => self.hang_up(conn, &call_id, now),
            ClientMessage::SetMuted { call_id, muted } => self.update_party(conn, &call_id, |p| p.muted = muted),
            ClientMessage::Hold { call_id } => self.update_party(conn, &call_id, |p| p.held = true),
            ClientMessage::Resume { call_id } => self.update_party(conn, &call_id, |p| p.held = false),
            ClientMessage::Speaking { call_id, speaking } => {
                self.update_party(conn, &call_id, |p| p.speaking = speaking)
            }
        }
    }

    fn hello(
        &mut self,
        conn: ConnId,
        protocol: u32,
        user: Option<String>,
        token: Option<String>,
        device_name: String,
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
                    self.refuse(conn, ErrorCode::InvalidToken, format!("token {} was revoked", claims.jti));
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
                self.refuse(conn, ErrorCode::InvalidToken, "dev sign-in without a token is for loopback only".into());
                return;
            }
            (None, _) => {
                self.refuse(conn, ErrorCode::InvalidToken, TokenError::Missing.to_string());
                return;
            }
        };
        if let Err(e) = validate_user_name(&name) {
            self.refuse(conn, ErrorCode::InvalidArgument, e);
            return;
        }
        let device_name = if device_name.trim().is_empty() { "device".to_string() } else { device_name };
        let raw_id = self.raw_id_for(&name);
        if !self.known.contains_key(&raw_id) {
            self.known.insert(raw_id.clone(), name.clone());
            self.outputs.push_back(Output::Store(StoreOp::UpsertIdentity { raw_id: raw_id.clone(), name: name.clone() }));
        }
        let identity = Identity { raw_id, display_name: name };
        let endpoint_id = format!("{conn}:{device_name}");
        if let Some(c) = self.conns.get_mut(&conn) {
            c.endpoint = Some(Endpoint { identity: identity.clone(), device_name, media_up: false });
        }
        self.send(
            conn,
            ServerMessage::Welcome {
                protocol: PROTOCOL_VERSION,
                identity,
                endpoint_id,
                server: format!("dialtone/{}", env!("CARGO_PKG_VERSION")),
            },
        );
    }

    fn place_call(&mut self, conn: ConnId, call_id: String, to: Vec<String>, now: Now) {
        let me = self.endpoint(conn).expect("signed in").identity.clone();
        if call_id.is_empty() || call_id.len() > 64 {
            self.error(conn, ErrorCode::InvalidArgument, format!("call id {call_id:?} must be 1 to 64 characters"), None);
            return;
        }
        if self.calls.contains_key(&call_id) {
            self.error(conn, ErrorCode::InvalidArgument, format!("call id {call_id:?} is already in use"), None);
            return;
        }
        let fail = |this: &mut Self, reason: CallEndReason, why: String| {
            this.error(conn, ErrorCode::InvalidArgument, why, Some(call_id.clone()));
            this.send(conn, ServerMessage::CallEnded { call_id: call_id.clone(), reason });
        };
        if to.len() != 1 {
            let why = format!("a call goes to exactly one callee for now, not {}", to.len());
            return fail(self, CallEndReason::INVALID_CALLEE, why);
        }
        let callee = match Callee::parse(&to[0]) {
            Callee::Echo => None,
            Callee::Name(name) => Some(self.raw_id_for(&name)),
            Callee::RawUser(raw) => Some(raw),
            Callee::Phone(num) => {
                return self.send_end(conn, &call_id, CallEndReason::UNKNOWN_USER, Some(format!("no user owns {num}")));
            }
            Callee::Invalid(why) => return fail(self, CallEndReason::INVALID_CALLEE, why),
        };
        let caller = Party {
            identity: me.clone(),
            conn: Some(conn),
            ringing: BTreeSet::new(),
            muted: false,
            held: false,
            speaking: false,
        };
        let Some(callee_raw) = callee else {
            // The echo service answers at once; its "party" is the caller's own device.
            let echo = Party { identity: echo_identity(), conn: None, ringing: BTreeSet::new(), muted: false, held: false, speaking: false };
            self.store_started(&call_id, &me.raw_id, &echo.identity.raw_id, now);
            self.calls.insert(call_id.clone(), Call { phase: Phase::Connected, parties: vec![caller, echo], ring_deadline: None, echo: true });
            self.outputs.push_back(Output::Store(StoreOp::CallConnected { call_id: call_id.clone(), at_ms: now.unix_ms }));
            self.send(conn, ServerMessage::CallConnected { call_id, participants: vec![Participant { identity: echo_identity(), state: ParticipantState::Connected, is_muted: false, is_speaking: false }] });
            return;
        };
        if callee_raw == me.raw_id {
            return fail(self, CallEndReason::INVALID_CALLEE, "you cannot call yourself".into());
        }
        let Some(callee_name) = self.known.get(&callee_raw).cloned() else {
            return self.send_end(conn, &call_id, CallEndReason::UNKNOWN_USER, Some(format!("no user {:?}", to[0])));
        };
        let devices: BTreeSet<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.endpoint.as_ref().is_some_and(|e| e.identity.raw_id == callee_raw))
            .map(|(id, _)| *id)
            .collect();
        self.store_started(&call_id, &me.raw_id, &callee_raw, now);
        if devices.is_empty() {
            self.send(conn, ServerMessage::CallEnded { call_id: call_id.clone(), reason: CallEndReason::OFFLINE });
            self.store_ended(&call_id, CallEndReason::OFFLINE, now);
            return;
        }
        for d in &devices {
            self.send(*d, ServerMessage::IncomingCall { call_id: call_id.clone(), caller: me.clone() });
        }
        self.send(conn, ServerMessage::CallRinging { call_id: call_id.clone() });
        let callee = Party {
            identity: Identity { raw_id: callee_raw, display_name: callee_name },
            conn: None,
            ringing: devices,
            muted: false,
            held: false,
            speaking: false,
        };
        self.calls.insert(
            call_id,
            Call { phase: Phase::Ringing, parties: vec![caller, callee], ring_deadline: Some(now.mono + self.cfg.ring_timeout), echo: false },
        );
    }

    fn accept(&mut self, conn: ConnId, call_id: &str, now: Now) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return self.unknown_call(conn, call_id);
        };
        let Some(pi) = call.parties.iter().position(|p| p.ringing.contains(&conn)) else {
            if call.parties.iter().any(|p| p.conn == Some(conn)) {
                return self.error(conn, ErrorCode::InvalidState, "this call is not ringing on this device".into(), Some(call_id.into()));
            }
            return self.unknown_call(conn, call_id);
        };
        let others: Vec<ConnId> = call.parties[pi].ringing.iter().copied().filter(|c| *c != conn).collect();
        call.parties[pi].ringing.clear();
        call.parties[pi].conn = Some(conn);
        call.phase = Phase::Connected;
        call.ring_deadline = None;
        for other in others {
            self.send(other, ServerMessage::CallEnded { call_id: call_id.into(), reason: CallEndReason::ANSWERED_ELSEWHERE });
        }
        self.outputs.push_back(Output::Store(StoreOp::CallConnected { call_id: call_id.into(), at_ms: now.unix_ms }));
        self.announce_connected(call_id);
    }

    fn announce_connected(&mut self, call_id: &str) {
        let call = &self.calls[call_id];
        let mut msgs = Vec::new();
        for (i, p) in call.parties.iter().enumerate() {
            let Some(c) = p.conn else { continue };
            let participants = call
                .parties
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, q)| q.participant(call.phase))
                .collect();
            msgs.push((c, ServerMessage::CallConnected { call_id: call_id.into(), participants }));
        }
        for (c, m) in msgs {
            self.send(c, m);
        }
    }

    fn reject(&mut self, conn: ConnId, call_id: &str, reason: RejectReason, now: Now) {
        let Some(call) = self.calls.get(call_id) else { return self.unknown_call(conn, call_id) };
        let Some(pi) = call.parties.iter().position(|p| p.ringing.contains(&conn)) else {
            if call.parties.iter().any(|p| p.conn == Some(conn)) {
                return self.error(conn, ErrorCode::InvalidState, "only a ringing call can be rejected".into(), Some(call_id.into()));
            }
            return self.unknown_call(conn, call_id);
        };
        let end = match reason {
            RejectReason::None => CallEndReason::DECLINED,
            RejectReason::Busy => CallEndReason::BUSY,
            RejectReason::Forbidden => CallEndReason::FORBIDDEN,
        };
        let mut ends: Vec<(ConnId, CallEndReason)> = Vec::new();
        for (i, p) in call.parties.iter().enumerate() {
            if i == pi {
                for d in &p.ringing {
                    ends.push((*d, if *d == conn { end } else { CallEndReason::DECLINED_ELSEWHERE }));
                }
            } else {
                ends.extend(p.conn.map(|c| (c, end)));
                ends.extend(p.ringing.iter().map(|d| (*d, end)));
            }
        }
        self.finish(call_id, ends, end, now);
    }

    fn hang_up(&mut self, conn: ConnId, call_id: &str, now: Now) {
        let Some(call) = self.calls.get(call_id) else { return self.unknown_call(conn, call_id) };
        if !call.parties.iter().any(|p| p.conn == Some(conn)) {
            // A ringing device hanging up is a reject; anyone else is not in the call.
            if call.parties.iter().any(|p| p.ringing.contains(&conn)) {
                return self.reject(conn, call_id, RejectReason::None, now);
            }
            return self.unknown_call(conn, call_id);
        }
        let reason = if call.phase == Phase::Ringing { CallEndReason::CANCELLED } else { CallEndReason::NORMAL };
        let ends = Self::everyone(call, reason);
        self.finish(call_id, ends, reason, now);
    }

    fn everyone(call: &Call, reason: CallEndReason) -> Vec<(ConnId, CallEndReason)> {
        let mut ends = Vec::new();
        for p in &call.parties {
            ends.extend(p.conn.map(|c| (c, reason)));
            ends.extend(p.ringing.iter().map(|d| (*d, reason)));
        }
        ends.dedup();
        ends
    }

    fn finish(&mut self, call_id: &str, ends: Vec<(ConnId, CallEndReason)>, reason: CallEndReason, now: Now) {
        self.calls.remove(call_id);
        for (c, r) in ends {
            self.send(c, ServerMessage::CallEnded { call_id: call_id.into(), reason: r });
        }
        self.store_ended(call_id, reason, now);
    }

    fn update_party(&mut self, conn: ConnId, call_id: &str, f: impl FnOnce(&mut Party)) {
        let Some(call) = self.calls.get_mut(call_id) else { return self.unknown_call(conn, call_id) };
        let Some(pi) = call.parties.iter().position(|p| p.conn == Some(conn)) else {
            if call.parties.iter().any(|p| p.ringing.contains(&conn)) {
                return self.error(conn, ErrorCode::InvalidState, "answer the call first".into(), Some(call_id.into()));
            }
            return self.unknown_call(conn, call_id);
        };
        let before = call.parties[pi].participant(call.phase);
        f(&mut call.parties[pi]);
        let after = call.parties[pi].participant(call.phase);
        if before == after {
            return;
        }
        let targets: Vec<ConnId> = call.parties.iter().enumerate().filter(|(j, _)| *j != pi).filter_map(|(_, p)| p.conn).collect();
        for t in targets {
            self.send(t, ServerMessage::ParticipantUpdated { call_id: call_id.into(), participant: after.clone() });
        }
    }

    fn closed(&mut self, conn: ConnId, now: Now) {
        let Some(c) = self.conns.remove(&conn) else { return };
        let Some(ep) = c.endpoint else { return };
        tracing::debug!(user = %ep.identity.display_name, device = %ep.device_name, "device left");
        self.outputs.push_back(Output::DropMedia { conn });
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            let call = self.calls.get_mut(&id).expect("listed above");
            if let Some(pi) = call.parties.iter().position(|p| p.conn == Some(conn)) {
                // A party with a live leg vanished: the call is over for everyone else.
                let reason = if call.phase == Phase::Ringing { CallEndReason::CANCELLED } else { CallEndReason::PEER_LOST };
                call.parties[pi].conn = None;
                let ends = Self::everyone(call, reason);
                self.finish(&id, ends, CallEndReason::PEER_LOST, now);
            } else if let Some(pi) = call.parties.iter().position(|p| p.ringing.contains(&conn)) {
                call.parties[pi].ringing.remove(&conn);
                if call.parties[pi].ringing.is_empty() && call.parties[pi].conn.is_none() {
                    let ends = Self::everyone(call, CallEndReason::OFFLINE);
                    self.finish(&id, ends, CallEndReason::OFFLINE, now);
                }
            }
        }
    }

    fn tick(&mut self, now: Now) {
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.ring_deadline.is_some_and(|d| d <= now.mono))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let ends = Self::everyone(&self.calls[&id], CallEndReason::NO_ANSWER);
            self.finish(&id, ends, CallEndReason::NO_ANSWER, now);
        }
    }

    /// Recomputes who hears whom: in a connected call that nobody holds, each party's device
    /// feeds every other party's device; the echo service feeds a device back to itself.
    fn update_routes(&mut self) {
        let mut routes: BTreeMap<ConnId, Vec<ConnId>> = BTreeMap::new();
        for call in self.calls.values() {
            if call.phase != Phase::Connected || call.parties.iter().any(|p| p.held) {
                continue;
            }
            let legs: Vec<ConnId> = call
                .parties
                .iter()
                .filter_map(|p| p.conn)
                .filter(|c| self.endpoint(*c).is_some_and(|e| e.media_up))
                .collect();
            if call.echo {
                for l in &legs {
                    routes.entry(*l).or_default().push(*l);
                }
                continue;
            }
            for from in &legs {
                for to in &legs {
                    if from != to {
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

    fn store_started(&mut self, call_id: &str, caller: &str, callee: &str, now: Now) {
        self.outputs.push_back(Output::Store(StoreOp::CallStarted {
            call_id: call_id.into(),
            caller: caller.into(),
            callees: vec![callee.into()],
            at_ms: now.unix_ms,
        }));
    }

    fn store_ended(&mut self, call_id: &str, reason: CallEndReason, now: Now) {
        self.outputs.push_back(Output::Store(StoreOp::CallEnded { call_id: call_id.into(), at_ms: now.unix_ms, reason }));
    }

    fn send_end(&mut self, conn: ConnId, call_id: &str, reason: CallEndReason, why: Option<String>) {
        if let Some(why) = why {
            self.error(conn, ErrorCode::InvalidArgument, why, Some(call_id.into()));
        }
        self.send(conn, ServerMessage::CallEnded { call_id: call_id.into(), reason });
    }

    fn unknown_call(&mut self, conn: ConnId, call_id: &str) {
        self.error(conn, ErrorCode::UnknownCall, format!("no call {call_id:?} on this device"), Some(call_id.into()));
    }

    fn refuse(&mut self, conn: ConnId, code: ErrorCode, message: String) {
        self.error(conn, code, message.clone(), None);
        self.outputs.push_back(Output::Close { conn, reason: message });
    }

    fn error(&mut self, conn: ConnId, code: ErrorCode, message: String, call_id: Option<String>) {
        self.send(conn, ServerMessage::Error { code, message, call_id });
    }

    fn send(&mut self, conn: ConnId, msg: ServerMessage) {
        self.outputs.push_back(Output::Send { conn, msg });
    }

    fn endpoint(&self, conn: ConnId) -> Option<&Endpoint> {
        self.conns.get(&conn).and_then(|c| c.endpoint.as_ref())
    }

    fn endpoint_mut(&mut self, conn: ConnId) -> Option<&mut Endpoint> {
        self.conns.get_mut(&conn).and_then(|c| c.endpoint.as_mut())
    }
}
