//! Placing, ringing, answering and ending calls, and where forwarding sends an unanswered one.

use std::collections::BTreeSet;

use super::group::Resolved;
use super::{Call, ConnId, Output, Party, PartyKind, Phase, StoreOp, Switchboard};
use crate::core::{CallEndReason, Now, RejectReason, echo_identity};
use crate::protocol::{ErrorCode, ForwardMode, Forwarding, Identity, ServerMessage};

/// Where forwarding sends a call.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ForwardTo {
    User(Identity),
    /// The mailbox of this user.
    Voicemail(Identity),
}

impl Switchboard {
    pub(super) fn place_call(
        &mut self,
        conn: ConnId,
        call_id: String,
        to: Vec<String>,
        alternate_caller_id: Option<String>,
        now: Now,
    ) {
        let me = self.me(conn);
        if call_id.is_empty() || call_id.len() > 64 {
            self.error(
                conn,
                ErrorCode::InvalidArgument,
                format!("call id {call_id:?} must be 1 to 64 characters"),
                None,
            );
            return;
        }
        if self.calls.contains_key(&call_id) {
            self.error(
                conn,
                ErrorCode::InvalidArgument,
                format!("call id {call_id:?} is already in use"),
                None,
            );
            return;
        }
        let refuse = |this: &mut Self, reason: CallEndReason, why: String| {
            this.error(conn, ErrorCode::InvalidArgument, why, Some(call_id.clone()));
            this.send(
                conn,
                ServerMessage::CallEnded {
                    call_id: call_id.clone(),
                    reason,
                },
            );
        };
        if to.is_empty() {
            return refuse(
                self,
                CallEndReason::INVALID_CALLEE,
                "the callee list is empty".into(),
            );
        }
        // The caller id is checked even when no number is called: a wrong one is a mistake
        // worth hearing about before anyone rings.
        let caller_number = match &alternate_caller_id {
            Some(alt) => match self.check_caller_id(&me, Some(alt)) {
                Ok(n) => Some(n),
                Err((reason, why)) => return refuse(self, reason, why),
            },
            None => None,
        };
        let mut resolved = Vec::with_capacity(to.len());
        for t in &to {
            match self.resolve_callee(&me, t, alternate_caller_id.as_deref()) {
                Ok(r) => resolved.push(r),
                Err((reason, why)) => return refuse(self, reason, why),
            }
        }
        if resolved.len() > 1 {
            return match self.check_group_callees(&resolved) {
                Ok(()) => self.place_group_call(conn, call_id, resolved, caller_number, now),
                Err(why) => refuse(self, CallEndReason::INVALID_CALLEE, why),
            };
        }
        let (callee_raw, number) = match resolved.pop().expect("one callee") {
            Resolved::Greeting => return self.record_greeting(conn, call_id, now),
            Resolved::Echo => (None, None),
            Resolved::User { identity, number } => (Some(identity.raw_id), number),
        };
        let mut caller = Party::new(me.clone(), PartyKind::Device);
        caller.conn = Some(conn);
        let Some(callee_raw) = callee_raw else {
            // The echo service answers at once; the routes feed the caller's device to itself.
            let echo = Party::new(echo_identity(), PartyKind::Echo);
            self.store_started(
                &call_id,
                &me.raw_id,
                std::slice::from_ref(&echo.identity.raw_id),
                now,
            );
            self.calls.insert(
                call_id.clone(),
                Call::new(Phase::Connected, vec![caller, echo]),
            );
            self.outputs
                .push_back(Output::Store(StoreOp::CallConnected {
                    call_id: call_id.clone(),
                    at_ms: now.unix_ms,
                }));
            self.announce_connected(&call_id);
            return;
        };
        let callee = self
            .identity_of(&callee_raw)
            .unwrap_or_else(|| self.number_owner_identity(&callee_raw));
        self.store_started(
            &call_id,
            &me.raw_id,
            std::slice::from_ref(&callee.raw_id),
            now,
        );
        let mut call = Call::new(Phase::Ringing, vec![caller]);
        if number.is_some() {
            call.caller_number = caller_number.clone();
        }
        self.calls.insert(call_id.clone(), call);
        self.route_to(&call_id, callee.clone(), true, None, now);
        // Reached by number: the others see the callee as that number.
        if let (Some(n), Some(call)) = (number, self.calls.get_mut(&call_id))
            && let Some(p) = call
                .parties
                .iter_mut()
                .find(|p| p.identity.raw_id == callee.raw_id)
        {
            p.shown = Some(Identity {
                raw_id: crate::core::phone_raw_id(&n),
                display_name: callee.display_name.clone(),
            });
            p.caller_as = caller_number.map(|c| (me.raw_id.clone(), c));
        }
    }

    /// Rings `callee` on the call (its caller is parties[0]), applying the callee's forwarding
    /// when allowed: always, or when it is offline or does not answer in time.
    pub(super) fn route_to(
        &mut self,
        call_id: &str,
        callee: Identity,
        allow_forwarding: bool,
        forwarded_from: Option<Identity>,
        now: Now,
    ) {
        let fwd = if allow_forwarding {
            self.forwarding.get(&callee.raw_id).cloned()
        } else {
            None
        };
        let target = fwd.as_ref().and_then(|f| self.forward_target(f, &callee));
        let mode = fwd.as_ref().map(|f| f.mode).unwrap_or_default();
        if let (ForwardMode::Always, Some(t)) = (mode, &target) {
            return self.forward(call_id, t.clone(), callee, now);
        }
        let devices = self.devices_of(&callee.raw_id);
        if devices.is_empty() {
            return match (mode, target) {
                (ForwardMode::Unanswered, Some(t)) => self.forward(call_id, t, callee, now),
                _ => self.fail_call(call_id, CallEndReason::OFFLINE, now),
            };
        }
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let caller = call.parties[0].identity.clone();
        let caller_conn = call.parties[0].conn;
        let caller_number = call.caller_number.clone();
        let transferred_by = call.origin.as_ref().map(|o| o.transferor.clone());
        let mut party = Party::new(callee, PartyKind::Device);
        party.ringing = devices.clone();
        call.parties.push(party);
        call.ring_deadline = Some(
            now.mono
                + match (mode, &target) {
                    (ForwardMode::Unanswered, Some(_)) => std::time::Duration::from_secs(
                        fwd.as_ref().map_or(20, |f| f.unanswered_after_secs.into()),
                    ),
                    _ => self.cfg.ring_timeout,
                },
        );
        call.on_no_answer = if mode == ForwardMode::Unanswered {
            target
        } else {
            None
        };
        for d in devices {
            self.send(
                d,
                ServerMessage::IncomingCall {
                    call_id: call_id.into(),
                    caller: caller.clone(),
                    transferred_by: transferred_by.clone(),
                    forwarded_from: forwarded_from.clone(),
                    caller_number: caller_number.clone(),
                    group: false,
                },
            );
        }
        if let Some(c) = caller_conn {
            self.send(
                c,
                ServerMessage::CallRinging {
                    call_id: call_id.into(),
                },
            );
        }
    }

    fn forward_target(&self, f: &Forwarding, callee: &Identity) -> Option<ForwardTo> {
        match (f.mode, f.target.as_deref()) {
            (ForwardMode::Off, _) | (_, None) => None,
            (_, Some("voicemail")) => Some(ForwardTo::Voicemail(callee.clone())),
            (_, Some(name)) => self
                .identity_of(&self.raw_id_for(name))
                .map(ForwardTo::User),
        }
    }

    /// Sends the call on. One hop only: the forwarded-to user's own forwarding is not followed,
    /// which rules out loops.
    fn forward(&mut self, call_id: &str, to: ForwardTo, from: Identity, now: Now) {
        match to {
            ForwardTo::Voicemail(owner) => self.connect_voicemail(call_id, owner, now),
            ForwardTo::User(u)
                if u.raw_id
                    == self
                        .calls
                        .get(call_id)
                        .map(|c| c.parties[0].identity.raw_id.clone())
                        .unwrap_or_default() =>
            {
                // Forwarding back to the caller would ring the caller's own devices.
                self.fail_call(call_id, CallEndReason::OFFLINE, now)
            }
            ForwardTo::User(u) => self.route_to(call_id, u, false, Some(from), now),
        }
    }

    /// The ringing callee did not answer in time, or its last ringing device went away.
    pub(super) fn no_answer(&mut self, call_id: &str, reason: CallEndReason, now: Now) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.ring_deadline = None;
        if let Some(to) = call.on_no_answer.take() {
            // The callee is the party without a device of its own yet (ringing, or its last
            // ringing device just left).
            let callee = call.parties.iter().rposition(|p| {
                p.kind == PartyKind::Device && p.conn.is_none() && p.pending_conn.is_none()
            });
            let Some(pi) = callee.filter(|i| *i > 0) else {
                return self.fail_call(call_id, reason, now);
            };
            let callee = call.parties.remove(pi);
            for d in &callee.ringing {
                self.send(
                    *d,
                    ServerMessage::CallEnded {
                        call_id: call_id.into(),
                        reason: CallEndReason::FORWARDED,
                    },
                );
            }
            return self.forward(call_id, to, callee.identity, now);
        }
        self.fail_call(call_id, reason, now);
    }

    /// A call that never connected is over. A transfer's target leg reports to its transferor
    /// instead of ending anything the transferee can see.
    pub(super) fn fail_call(&mut self, call_id: &str, reason: CallEndReason, now: Now) {
        if self.calls.get(call_id).is_some_and(|c| c.origin.is_some()) {
            return self.transfer_leg_failed(call_id, reason, now);
        }
        self.end_call(call_id, reason, None, now);
    }

    pub(super) fn accept(&mut self, conn: ConnId, call_id: &str, now: Now) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return self.unknown_call(conn, call_id);
        };
        let Some(pi) = call.parties.iter().position(|p| p.ringing.contains(&conn)) else {
            if call.parties.iter().any(|p| p.conn == Some(conn)) {
                return self.error(
                    conn,
                    ErrorCode::InvalidState,
                    "this call is not ringing on this device".into(),
                    Some(call_id.into()),
                );
            }
            return self.unknown_call(conn, call_id);
        };
        let others: Vec<ConnId> = call.parties[pi]
            .ringing
            .iter()
            .copied()
            .filter(|c| *c != conn)
            .collect();
        call.parties[pi].ringing.clear();
        call.parties[pi].conn = Some(conn);
        call.parties[pi].ring_deadline = None;
        if call.group {
            let first = call.phase == Phase::Ringing;
            call.phase = Phase::Connected;
            call.connected_ms.get_or_insert(now.unix_ms);
            for other in others {
                self.send(
                    other,
                    ServerMessage::CallEnded {
                        call_id: call_id.into(),
                        reason: CallEndReason::ANSWERED_ELSEWHERE,
                    },
                );
            }
            if first {
                self.outputs
                    .push_back(Output::Store(StoreOp::CallConnected {
                        call_id: call_id.into(),
                        at_ms: now.unix_ms,
                    }));
            }
            return self.announce_roster(call_id);
        }
        call.phase = Phase::Connected;
        call.ring_deadline = None;
        call.on_no_answer = None;
        call.connected_ms = Some(now.unix_ms);
        for other in others {
            self.send(
                other,
                ServerMessage::CallEnded {
                    call_id: call_id.into(),
                    reason: CallEndReason::ANSWERED_ELSEWHERE,
                },
            );
        }
        self.outputs
            .push_back(Output::Store(StoreOp::CallConnected {
                call_id: call_id.into(),
                at_ms: now.unix_ms,
            }));
        self.call_connected(call_id, now);
    }

    /// A call just connected: an ordinary one is announced; a transfer's target leg completes
    /// its transfer.
    pub(super) fn call_connected(&mut self, call_id: &str, now: Now) {
        if self.calls.get(call_id).is_some_and(|c| c.origin.is_some()) {
            self.transfer_leg_connected(call_id, now);
        } else {
            self.announce_connected(call_id);
        }
    }

    /// Tells every device in the call who the others are (each device's own view).
    pub(super) fn announce_connected(&mut self, call_id: &str) {
        let devices: Vec<ConnId> = self
            .calls
            .get(call_id)
            .map(|c| c.parties.iter().flat_map(|p| p.devices()).collect())
            .unwrap_or_default();
        for d in devices {
            self.announce_to(call_id, d);
        }
    }

    /// One device's view of the call: the other parties, and the other devices of its own
    /// party (companions) marked with their device names.
    pub(super) fn announce_to(&mut self, call_id: &str, conn: ConnId) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        let participants = self.view_for(call, conn);
        self.send(
            conn,
            ServerMessage::CallConnected {
                call_id: call_id.into(),
                participants,
            },
        );
    }

    pub(super) fn reject(&mut self, conn: ConnId, call_id: &str, reason: RejectReason, now: Now) {
        let Some(call) = self.calls.get(call_id) else {
            return self.unknown_call(conn, call_id);
        };
        let Some(pi) = call.parties.iter().position(|p| p.ringing.contains(&conn)) else {
            if call.parties.iter().any(|p| p.conn == Some(conn)) {
                return self.error(
                    conn,
                    ErrorCode::InvalidState,
                    "only a ringing call can be rejected".into(),
                    Some(call_id.into()),
                );
            }
            return self.unknown_call(conn, call_id);
        };
        let end = match reason {
            RejectReason::None => CallEndReason::DECLINED,
            RejectReason::Busy => CallEndReason::BUSY,
            RejectReason::Forbidden => CallEndReason::FORBIDDEN,
        };
        // The rejecting user's other devices learn it was declined elsewhere; the rest of the
        // ending is that of any call that failed.
        let others: Vec<ConnId> = call.parties[pi]
            .ringing
            .iter()
            .copied()
            .filter(|d| *d != conn)
            .collect();
        for d in others {
            self.send(
                d,
                ServerMessage::CallEnded {
                    call_id: call_id.into(),
                    reason: CallEndReason::DECLINED_ELSEWHERE,
                },
            );
        }
        let call = self.calls.get_mut(call_id).expect("looked up above");
        call.parties[pi].ringing.retain(|d| *d == conn);
        if call.group {
            return self.leave_group(call_id, pi, end, now);
        }
        self.fail_call(call_id, end, now);
    }

    pub(super) fn hang_up(&mut self, conn: ConnId, call_id: &str, for_everyone: bool, now: Now) {
        // One of several devices of its party (take-over companions) leaves alone.
        if self.leave_device(call_id, conn) {
            let reason = CallEndReason::NORMAL;
            self.send(
                conn,
                ServerMessage::CallEnded {
                    call_id: call_id.into(),
                    reason,
                },
            );
            return;
        }
        let Some(call) = self.calls.get(call_id) else {
            return self.unknown_call(conn, call_id);
        };
        if !call.parties.iter().any(|p| p.conn == Some(conn)) {
            // A ringing device hanging up is a reject; anyone else is not in the call.
            if call.parties.iter().any(|p| p.ringing.contains(&conn)) {
                return self.reject(conn, call_id, RejectReason::None, now);
            }
            return self.unknown_call(conn, call_id);
        }
        if call.group {
            if for_everyone {
                return self.end_call(call_id, CallEndReason::ENDED_FOR_EVERYONE, Some(conn), now);
            }
            let pi = call
                .parties
                .iter()
                .position(|p| p.conn == Some(conn))
                .expect("checked above");
            return self.leave_group(call_id, pi, CallEndReason::NORMAL, now);
        }
        let reason = if call.phase == Phase::Ringing {
            CallEndReason::CANCELLED
        } else {
            CallEndReason::NORMAL
        };
        self.end_call(call_id, reason, Some(conn), now);
    }

    /// Ends a call for every device in it or ringing for it. `by` is the device whose action
    /// (hang-up, vanishing) ended it, if any; a pending transfer on the call fails accordingly.
    pub(super) fn end_call(
        &mut self,
        call_id: &str,
        reason: CallEndReason,
        by: Option<ConnId>,
        now: Now,
    ) {
        let Some(call) = self.calls.remove(call_id) else {
            return;
        };
        if let Some(pending) = &call.transfer {
            self.abandon_transfer(call_id, pending, by, now);
        }
        if call
            .parties
            .iter()
            .any(|p| matches!(p.kind, PartyKind::Voicemail | PartyKind::GreetingRecorder))
        {
            self.outputs.push_back(Output::StopVoicemail {
                call_id: call_id.into(),
            });
        }
        let mut told = BTreeSet::new();
        for p in &call.parties {
            for c in p
                .devices()
                .chain(p.ringing.iter().copied())
                .collect::<Vec<_>>()
                .iter()
            {
                if told.insert(*c) {
                    self.send(
                        *c,
                        ServerMessage::CallEnded {
                            call_id: call_id.into(),
                            reason,
                        },
                    );
                }
            }
        }
        self.store_ended(call_id, reason, now);
    }

    pub(super) fn store_started(
        &mut self,
        call_id: &str,
        caller: &str,
        callees: &[String],
        now: Now,
    ) {
        self.outputs.push_back(Output::Store(StoreOp::CallStarted {
            call_id: call_id.into(),
            caller: caller.into(),
            callees: callees.to_vec(),
            at_ms: now.unix_ms,
        }));
    }

    pub(super) fn store_ended(&mut self, call_id: &str, reason: CallEndReason, now: Now) {
        self.outputs.push_back(Output::Store(StoreOp::CallEnded {
            call_id: call_id.into(),
            at_ms: now.unix_ms,
            reason,
        }));
    }
}

impl Call {
    pub(super) fn new(phase: Phase, parties: Vec<Party>) -> Call {
        Call {
            phase,
            parties,
            ring_deadline: None,
            origin: None,
            transfer: None,
            on_no_answer: None,
            connected_ms: None,
            group: false,
            joinable: false,
            caller_number: None,
        }
    }
}
