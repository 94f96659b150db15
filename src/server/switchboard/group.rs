//! Group calls and phone numbers: calls placed to several callees, joined by GUID, grown by
//! addParticipant and shrunk by removeParticipant; resolving callees that are numbers.
//!
//! Invariants: a group call's parties come and go without ending it; it ends when no party is
//! left in it (ringing invitees are then cancelled), or when someone hangs up for everyone. A
//! refused request (bad GUID, someone already in the call, someone who is not, duplicates,
//! yourself) is an error to the requester and changes nothing.

use std::collections::BTreeSet;

use super::{Call, ConnId, Output, Party, PartyKind, Phase, StoreOp, Switchboard};
use crate::core::{CallEndReason, Callee, Now, parse_group_id, phone_raw_id};
use crate::protocol::{ErrorCode, Identity, Participant, ServerMessage};

/// A callee after the directory and the number plan were consulted.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Resolved {
    Echo,
    Greeting,
    /// A user; `number` is set when it was reached by one of its numbers.
    User {
        identity: Identity,
        number: Option<String>,
    },
}

type Refusal = (CallEndReason, String);

impl Switchboard {
    /// Resolves one callee string for `me`. Numbers need `alt`, one of `me`'s own numbers.
    pub(super) fn resolve_callee(
        &self,
        me: &Identity,
        callee: &str,
        alt: Option<&str>,
    ) -> Result<Resolved, Refusal> {
        let (identity, number) = match Callee::parse(callee) {
            Callee::Echo => return Ok(Resolved::Echo),
            Callee::Greeting => return Ok(Resolved::Greeting),
            Callee::Invalid(why) => return Err((CallEndReason::INVALID_CALLEE, why)),
            Callee::Name(n) => (self.known_user(&self.raw_id_for(&n), callee)?, None),
            Callee::RawUser(raw) => (self.known_user(&raw, callee)?, None),
            Callee::Phone(num) => {
                self.check_caller_id(me, alt)
                    .map_err(|(r, why)| (r, format!("cannot call {num}: {why}")))?;
                let Some(owner) = self.numbers.get(&num) else {
                    return Err((
                        CallEndReason::NUMBER_UNOWNED,
                        format!(
                            "no user owns {num} (calls to outside numbers need a SIP trunk, which this switchboard does not have)"
                        ),
                    ));
                };
                (
                    self.number_owner_identity(&self.raw_id_for(owner)),
                    Some(num),
                )
            }
        };
        if identity.raw_id == me.raw_id {
            return Err((
                CallEndReason::INVALID_CALLEE,
                match number {
                    Some(n) => format!("{n} is your own number; you cannot call yourself"),
                    None => "you cannot call yourself".into(),
                },
            ));
        }
        Ok(Resolved::User { identity, number })
    }

    fn known_user(&self, raw: &str, typed: &str) -> Result<Identity, Refusal> {
        self.identity_of(raw)
            .ok_or_else(|| (CallEndReason::UNKNOWN_USER, format!("no user {typed:?}")))
    }

    /// A number's owner may never have signed in; it is still a user (offline until it does).
    pub(super) fn number_owner_identity(&self, raw: &str) -> Identity {
        self.identity_of(raw).unwrap_or_else(|| Identity {
            raw_id: raw.to_string(),
            display_name: self
                .numbers
                .values()
                .find(|n| self.raw_id_for(n) == raw)
                .cloned()
                .unwrap_or_else(|| raw.to_string()),
        })
    }

    /// `alt` must be one of `me`'s numbers; returns it in plain E.164.
    pub(super) fn check_caller_id(
        &self,
        me: &Identity,
        alt: Option<&str>,
    ) -> Result<String, Refusal> {
        let mine: Vec<&String> = self
            .numbers
            .iter()
            .filter(|(_, owner)| self.raw_id_for(owner) == me.raw_id)
            .map(|(n, _)| n)
            .collect();
        let yours = if mine.is_empty() {
            "you have no number".to_string()
        } else {
            format!(
                "yours: {}",
                mine.iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let Some(alt) = alt else {
            return Err((
                CallEndReason::CALLER_ID_REQUIRED,
                format!("calling a number needs alternateCallerId, one of your numbers ({yours})"),
            ));
        };
        let n = alt.trim().strip_prefix("4:").unwrap_or(alt.trim());
        if mine.iter().any(|m| m.as_str() == n) {
            Ok(n.to_string())
        } else {
            Err((
                CallEndReason::CALLER_ID_NOT_OWNED,
                format!("alternateCallerId {alt:?} is not one of your numbers ({yours})"),
            ))
        }
    }

    /// A callee list for a group call: people only, each once.
    pub(super) fn check_group_callees(&self, resolved: &[Resolved]) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for r in resolved {
            match r {
                Resolved::Echo | Resolved::Greeting => {
                    return Err("the echo and greeting services cannot be in a group call".into());
                }
                Resolved::User { identity, .. } => {
                    if !seen.insert(identity.raw_id.clone()) {
                        return Err(format!(
                            "{} is in the callee list more than once",
                            identity.display_name
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Rings every callee at once; the call connects when the first answers, and each who
    /// answers joins it. Group calls are not forwarded: the caller invited these people.
    pub(super) fn place_group_call(
        &mut self,
        conn: ConnId,
        call_id: String,
        callees: Vec<Resolved>,
        caller_number: Option<String>,
        now: Now,
    ) {
        let me = self.me(conn);
        let users: Vec<(Identity, Option<String>)> = callees
            .into_iter()
            .filter_map(|r| match r {
                Resolved::User { identity, number } => Some((identity, number)),
                _ => None,
            })
            .collect();
        let raws: Vec<String> = users.iter().map(|(i, _)| i.raw_id.clone()).collect();
        self.store_started(&call_id, &me.raw_id, &raws, now);
        let mut caller = Party::new(me.clone(), PartyKind::Device);
        caller.conn = Some(conn);
        let mut call = Call::new(Phase::Ringing, vec![caller]);
        call.group = true;
        call.caller_number = caller_number.clone();
        self.calls.insert(call_id.clone(), call);
        let mut rung = 0;
        for (identity, number) in users {
            let shown_number = number.as_ref().and(caller_number.clone());
            if self.ring_party(&call_id, identity, number, me.clone(), shown_number, now) {
                rung += 1;
            }
        }
        if rung == 0 {
            return self.end_call(&call_id, CallEndReason::OFFLINE, None, now);
        }
        self.send(
            conn,
            ServerMessage::CallRinging {
                call_id: call_id.clone(),
            },
        );
        self.announce_roster(&call_id);
    }

    /// Adds `callee` to a group call as a ringing party. False when it has no device to ring.
    fn ring_party(
        &mut self,
        call_id: &str,
        callee: Identity,
        number: Option<String>,
        inviter: Identity,
        caller_number: Option<String>,
        now: Now,
    ) -> bool {
        let devices = self.devices_of(&callee.raw_id);
        if devices.is_empty() {
            return false;
        }
        let deadline = now.mono + self.cfg.ring_timeout;
        let Some(call) = self.calls.get_mut(call_id) else {
            return false;
        };
        let mut party = Party::new(callee.clone(), PartyKind::Device);
        party.ringing = devices.clone();
        party.ring_deadline = Some(deadline);
        party.shown = number.map(|n| Identity {
            raw_id: phone_raw_id(&n),
            display_name: callee.display_name.clone(),
        });
        party.caller_as = caller_number.clone().map(|n| (inviter.raw_id.clone(), n));
        call.parties.push(party);
        for d in devices {
            self.send(
                d,
                ServerMessage::IncomingCall {
                    call_id: call_id.into(),
                    caller: inviter.clone(),
                    transferred_by: None,
                    forwarded_from: None,
                    caller_number: caller_number.clone(),
                    group: true,
                },
            );
        }
        true
    }

    pub(super) fn join_group(&mut self, conn: ConnId, group_id: &str, now: Now) {
        let id = match parse_group_id(group_id) {
            Ok(id) => id,
            Err(why) => return self.error(conn, ErrorCode::InvalidArgument, why, None),
        };
        let me = self.me(conn);
        let Some(call) = self.calls.get_mut(&id) else {
            let mut party = Party::new(me.clone(), PartyKind::Device);
            party.conn = Some(conn);
            let mut call = Call::new(Phase::Connected, vec![party]);
            call.group = true;
            call.joinable = true;
            call.connected_ms = Some(now.unix_ms);
            self.calls.insert(id.clone(), call);
            self.store_started(&id, &me.raw_id, &[], now);
            self.outputs
                .push_back(Output::Store(StoreOp::CallConnected {
                    call_id: id.clone(),
                    at_ms: now.unix_ms,
                }));
            return self.announce_roster(&id);
        };
        if !call.joinable {
            return self.error(
                conn,
                ErrorCode::InvalidArgument,
                format!("{id} is not a group call that can be joined"),
                Some(id.clone()),
            );
        }
        if let Some(p) = call.parties.iter().find(|p| p.identity.raw_id == me.raw_id) {
            let why = if p.has_device(conn) {
                "you are already in this group call".to_string()
            } else {
                "you are in this group call on another device: take it over or join as a companion"
                    .to_string()
            };
            return self.error(conn, ErrorCode::InvalidState, why, Some(id.clone()));
        }
        let mut party = Party::new(me, PartyKind::Device);
        party.conn = Some(conn);
        call.parties.push(party);
        self.announce_roster(&id);
    }

    pub(super) fn add_participant(
        &mut self,
        conn: ConnId,
        call_id: &str,
        target: &str,
        alternate_caller_id: Option<String>,
        now: Now,
    ) {
        let bad = |this: &mut Self, code: ErrorCode, why: String| {
            this.error(conn, code, why, Some(call_id.into()))
        };
        let Some(call) = self.calls.get(call_id) else {
            return self.unknown_call(conn, call_id);
        };
        if !call.parties.iter().any(|p| p.has_device(conn)) {
            return self.unknown_call(conn, call_id);
        }
        if call.phase != Phase::Connected {
            return bad(
                self,
                ErrorCode::InvalidState,
                "participants can be added once the call is connected".into(),
            );
        }
        if call.parties.iter().any(|p| p.kind != PartyKind::Device) {
            return bad(
                self,
                ErrorCode::InvalidState,
                "a call with a service (echo, voicemail) cannot take more participants".into(),
            );
        }
        if call.origin.is_some() || call.transfer.is_some() {
            return bad(
                self,
                ErrorCode::InvalidState,
                "a transfer of this call is under way".into(),
            );
        }
        let me = self.me(conn);
        let (identity, number) =
            match self.resolve_callee(&me, target, alternate_caller_id.as_deref()) {
                Ok(Resolved::User { identity, number }) => (identity, number),
                Ok(_) => {
                    return bad(
                        self,
                        ErrorCode::InvalidArgument,
                        format!("{target:?} is a service and cannot be added to a call"),
                    );
                }
                Err((reason, why)) => {
                    return bad(
                        self,
                        ErrorCode::InvalidArgument,
                        format!(
                            "cannot add {target:?}: {why} ({}/{})",
                            reason.code, reason.sub_code
                        ),
                    );
                }
            };
        let call = &self.calls[call_id];
        if let Some(p) = call
            .parties
            .iter()
            .find(|p| p.identity.raw_id == identity.raw_id)
        {
            let how = if p.conn.is_some() {
                "in"
            } else {
                "being rung into"
            };
            return bad(
                self,
                ErrorCode::InvalidArgument,
                format!("{} is already {how} this call", identity.display_name),
            );
        }
        let caller_number = match (&number, &alternate_caller_id) {
            (Some(_), Some(alt)) => Some(alt.trim().trim_start_matches("4:").to_string()),
            _ => None,
        };
        let name = identity.display_name.clone();
        if !self.ring_party(call_id, identity, number, me, caller_number, now) {
            return bad(
                self,
                ErrorCode::InvalidArgument,
                format!("cannot add {name}: no device signed in (480)"),
            );
        }
        if let Some(call) = self.calls.get_mut(call_id) {
            call.group = true;
            call.ring_deadline = None;
            call.on_no_answer = None;
        }
        self.announce_roster(call_id);
    }

    pub(super) fn remove_participant(
        &mut self,
        conn: ConnId,
        call_id: &str,
        target: &str,
        now: Now,
    ) {
        let bad = |this: &mut Self, why: String| {
            this.error(conn, ErrorCode::InvalidArgument, why, Some(call_id.into()))
        };
        let Some(call) = self.calls.get(call_id) else {
            return self.unknown_call(conn, call_id);
        };
        let Some(me) = call.parties.iter().position(|p| p.has_device(conn)) else {
            return self.unknown_call(conn, call_id);
        };
        let wanted: Vec<String> = match Callee::parse(target) {
            Callee::Name(n) => vec![self.raw_id_for(&n)],
            Callee::RawUser(r) => vec![r],
            Callee::Phone(n) => {
                let mut v = vec![phone_raw_id(&n)];
                v.extend(self.numbers.get(&n).map(|o| self.raw_id_for(o)));
                v
            }
            Callee::Echo | Callee::Greeting => {
                return bad(self, format!("{target:?} is a service, not a participant"));
            }
            Callee::Invalid(why) => return bad(self, why),
        };
        let Some(pi) = call.parties.iter().position(|p| {
            wanted.contains(&p.identity.raw_id)
                || p.shown.as_ref().is_some_and(|s| wanted.contains(&s.raw_id))
        }) else {
            return bad(self, format!("{target:?} is not in this call"));
        };
        if pi == me {
            return bad(
                self,
                "you cannot remove yourself; hang up to leave the call".into(),
            );
        }
        if call.parties[pi].kind != PartyKind::Device {
            return bad(self, format!("{target:?} is a service, not a participant"));
        }
        if call.origin.is_some() || call.transfer.is_some() {
            return self.error(
                conn,
                ErrorCode::InvalidState,
                "a transfer of this call is under way".into(),
                Some(call_id.into()),
            );
        }
        // From now on the call lives by group rules: it goes on for whoever is left.
        if let Some(call) = self.calls.get_mut(call_id) {
            call.group = true;
        }
        self.leave_group(call_id, pi, CallEndReason::REMOVED, now);
    }

    /// Party `pi` is out of a group call (hung up, vanished, declined, did not answer, was
    /// removed): its devices learn `reason`, the others the new list, and the call ends when
    /// nobody is left in it.
    pub(super) fn leave_group(
        &mut self,
        call_id: &str,
        pi: usize,
        reason: CallEndReason,
        now: Now,
    ) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if pi >= call.parties.len() {
            return;
        }
        let party = call.parties.remove(pi);
        let connected = call.parties.iter().filter(|p| p.conn.is_some()).count();
        let ringing = call
            .parties
            .iter()
            .filter(|p| p.conn.is_none() && !p.ringing.is_empty())
            .count();
        let phase = call.phase;
        let told: BTreeSet<ConnId> = party
            .devices()
            .chain(party.ringing.iter().copied())
            .collect();
        for d in told {
            self.send(
                d,
                ServerMessage::CallEnded {
                    call_id: call_id.into(),
                    reason,
                },
            );
        }
        if connected == 0 {
            let why = if phase == Phase::Ringing {
                CallEndReason::CANCELLED
            } else {
                CallEndReason::NORMAL
            };
            return self.end_call(call_id, why, None, now);
        }
        if phase == Phase::Ringing && ringing == 0 {
            // Everyone invited declined or did not answer: the caller's call fails as the last
            // of them did.
            return self.end_call(call_id, reason, None, now);
        }
        self.announce_roster(call_id);
    }

    /// A device of a group call's party left the switchboard.
    pub(super) fn group_device_gone(&mut self, call_id: &str, conn: ConnId, now: Now) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if let Some(pi) = call.parties.iter().position(|p| p.conn == Some(conn)) {
            call.parties[pi].conn = None;
            return self.leave_group(call_id, pi, CallEndReason::PEER_LOST, now);
        }
        if let Some(pi) = call.parties.iter().position(|p| p.ringing.contains(&conn)) {
            call.parties[pi].ringing.remove(&conn);
            if call.parties[pi].ringing.is_empty() && call.parties[pi].conn.is_none() {
                self.leave_group(call_id, pi, CallEndReason::OFFLINE, now);
            }
        }
    }

    /// Invitees of group calls whose ring timed out.
    pub(super) fn group_ring_timeouts(&mut self, now: Now) {
        let due: Vec<(String, String)> = self
            .calls
            .iter()
            .flat_map(|(id, c)| {
                c.parties
                    .iter()
                    .filter(|p| p.ring_deadline.is_some_and(|d| d <= now.mono))
                    .map(move |p| (id.clone(), p.identity.raw_id.clone()))
            })
            .collect();
        for (id, raw) in due {
            let pi = self
                .calls
                .get(&id)
                .and_then(|c| c.parties.iter().position(|p| p.identity.raw_id == raw));
            if let Some(pi) = pi {
                self.leave_group(&id, pi, CallEndReason::NO_ANSWER, now);
            }
        }
    }

    /// Sends every device in the call its view of who is in it: `callConnected` once the call
    /// is connected (clients diff it), `participantsUpdated` to a caller whose group call still
    /// rings.
    pub(super) fn announce_roster(&mut self, call_id: &str) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        let mut msgs = Vec::new();
        for p in &call.parties {
            for d in p.devices() {
                let participants = self.view_for(call, d);
                msgs.push((
                    d,
                    if call.phase == Phase::Connected {
                        ServerMessage::CallConnected {
                            call_id: call_id.into(),
                            participants,
                        }
                    } else {
                        ServerMessage::ParticipantsUpdated {
                            call_id: call_id.into(),
                            participants,
                        }
                    },
                ));
            }
        }
        for (d, m) in msgs {
            self.send(d, m);
        }
    }

    /// One device's view of a call: the other parties, and the other devices of its own
    /// party (companions) marked with their device names.
    pub(super) fn view_for(&self, call: &Call, conn: ConnId) -> Vec<Participant> {
        let viewer = call.parties.iter().position(|p| p.has_device(conn));
        let mut participants = Vec::new();
        for (i, p) in call.parties.iter().enumerate() {
            if Some(i) == viewer {
                for other in p.devices().filter(|d| *d != conn) {
                    let mut me = p.participant(call.phase);
                    me.device = self.endpoint(other).map(|e| e.device_name.clone());
                    participants.push(me);
                }
            } else {
                participants.push(match viewer {
                    Some(v) => call.seen_by(i, v),
                    None => p.participant(call.phase),
                });
            }
        }
        participants
    }
}

impl Call {
    /// Party `i` as party `viewer` sees it: someone reached by number sees whoever called it
    /// as the caller id that call used (alternateCallerId), as a phone would.
    pub(super) fn seen_by(&self, i: usize, viewer: usize) -> Participant {
        let mut p = self.parties[i].participant(self.phase);
        if let Some((raw, n)) = self.parties.get(viewer).and_then(|v| v.caller_as.as_ref())
            && *raw == self.parties[i].identity.raw_id
        {
            p.identity.raw_id = phone_raw_id(n);
        }
        p
    }
}
