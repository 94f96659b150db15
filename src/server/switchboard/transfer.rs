//! Call transfer: to a participant (blind), to another call (consultative), to voicemail.
//!
//! Three parties: the transferor asks, the transferee is moved, the target receives. The
//! transferee accepts or rejects first. A blind transfer then rings the target on a new call
//! (the "leg") while the original call stays up and audible; only when the target answers does
//! the transferee's new call appear and the original end. The relay switches the transferee's
//! audio in the same routing update, so the switch is make-before-break.
//!
//! Invariants: at most one transfer per call; a failed transfer changes nothing the transferee
//! can see; every pending transfer ends in Transferred or Failed for its transferor.

use super::{Call, ConnId, Output, Party, PartyKind, Phase, StoreOp, Switchboard};
use crate::core::{CallEndReason, Callee, Now};
use crate::protocol::{
    ErrorCode, Identity, ServerMessage, TransferKind, TransferState, TransferTarget,
    TransferTargetInfo,
};

/// Set on a target leg: which call and transfer it completes.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub call_id: String,
    pub transferor: Identity,
}

#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub id: String,
    pub transferor: ConnId,
    pub transferee: ConnId,
    pub target: Target,
    pub disable_forwarding: bool,
    pub accepted: bool,
    /// The target leg's call id, while it rings.
    pub leg: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) enum Target {
    User(Identity),
    Call(String),
    Voicemail(Identity),
}

impl Switchboard {
    pub(super) fn transfer(
        &mut self,
        conn: ConnId,
        call_id: &str,
        transfer_id: String,
        target: TransferTarget,
        disable_forwarding: bool,
    ) {
        // A refusal is an error for the device and a Failed transfer, so a client that already
        // shows "Transferring" learns how it ended.
        let tid = transfer_id.clone();
        let bad = |this: &mut Self, code: ErrorCode, why: String| {
            this.error(conn, code, why, Some(call_id.into()));
            this.transfer_state(
                conn,
                call_id,
                &tid,
                TransferState::Failed,
                Some(CallEndReason::TRANSFER_REFUSED),
            );
        };
        let Some(call) = self.calls.get(call_id) else {
            return bad(
                self,
                ErrorCode::UnknownCall,
                format!("no call {call_id:?} on this device"),
            );
        };
        let Some(me) = call.parties.iter().position(|p| p.conn == Some(conn)) else {
            return bad(
                self,
                ErrorCode::UnknownCall,
                format!("no call {call_id:?} on this device"),
            );
        };
        if transfer_id.is_empty() || transfer_id.len() > 64 {
            return bad(
                self,
                ErrorCode::InvalidArgument,
                format!("transfer id {transfer_id:?} must be 1 to 64 characters"),
            );
        }
        if call.group {
            return bad(
                self,
                ErrorCode::InvalidState,
                "a group call cannot be transferred; add or remove participants instead".into(),
            );
        }
        if call.phase != Phase::Connected {
            return bad(
                self,
                ErrorCode::InvalidState,
                "only a connected call can be transferred".into(),
            );
        }
        if call.transfer.is_some() {
            return bad(
                self,
                ErrorCode::InvalidState,
                "a transfer of this call is already under way".into(),
            );
        }
        let others: Vec<&Party> = call
            .parties
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != me)
            .map(|(_, p)| p)
            .collect();
        let (Some(transferee), true) = (others.first(), others.len() == 1) else {
            return bad(
                self,
                ErrorCode::InvalidState,
                "only a call with one other party can be transferred".into(),
            );
        };
        let (Some(transferee_conn), PartyKind::Device) = (transferee.conn, &transferee.kind) else {
            return bad(
                self,
                ErrorCode::InvalidState,
                "the other party of this call is a service, not a person".into(),
            );
        };
        let my_raw = call.parties[me].identity.raw_id.clone();
        let transferee_raw = transferee.identity.raw_id.clone();
        let target = match target {
            TransferTarget::Participant(who) => match self.resolve_user(&who) {
                Err(why) => return bad(self, ErrorCode::InvalidArgument, why),
                Ok(id) if id.raw_id == my_raw => {
                    return bad(
                        self,
                        ErrorCode::InvalidArgument,
                        "you cannot transfer a call to yourself".into(),
                    );
                }
                Ok(id) if id.raw_id == transferee_raw => {
                    return bad(
                        self,
                        ErrorCode::InvalidArgument,
                        format!("{who:?} is already the other party of this call"),
                    );
                }
                Ok(id) => Target::User(id),
            },
            TransferTarget::Voicemail(who) => match self.resolve_user(&who) {
                Err(why) => return bad(self, ErrorCode::InvalidArgument, why),
                Ok(id) => Target::Voicemail(id),
            },
            TransferTarget::CallId(other) => {
                if other == call_id {
                    return bad(
                        self,
                        ErrorCode::InvalidArgument,
                        "a call cannot be transferred to itself".into(),
                    );
                }
                match self.consult_target(conn, &other) {
                    Ok(()) => Target::Call(other),
                    Err((code, why)) => return bad(self, code, why),
                }
            }
        };
        let info = self.target_info(&target, conn);
        let transferor = self.me(conn);
        let call = self.calls.get_mut(call_id).expect("looked up above");
        call.transfer = Some(Pending {
            id: transfer_id.clone(),
            transferor: conn,
            transferee: transferee_conn,
            target,
            disable_forwarding,
            accepted: false,
            leg: None,
        });
        self.send(
            transferee_conn,
            ServerMessage::TransferRequested {
                call_id: call_id.into(),
                transfer_id: transfer_id.clone(),
                transferor,
                target: info,
            },
        );
        self.transfer_state(
            conn,
            call_id,
            &transfer_id,
            TransferState::Transferring,
            None,
        );
    }

    fn resolve_user(&self, who: &str) -> Result<Identity, String> {
        let raw = match Callee::parse(who) {
            Callee::Name(n) => self.raw_id_for(&n),
            Callee::RawUser(r) => r,
            Callee::Echo | Callee::Greeting => {
                return Err(format!("{who:?} is a service and cannot take transfers"));
            }
            Callee::Phone(n) => match self.numbers.get(&n) {
                Some(name) => return Ok(self.number_owner_identity(&self.raw_id_for(name))),
                None => return Err(format!("no user owns {n}")),
            },
            Callee::Invalid(why) => return Err(why),
        };
        self.identity_of(&raw)
            .ok_or_else(|| format!("no user {who:?}"))
    }

    /// A consultative target: another connected 1:1 call of the same device.
    fn consult_target(&self, conn: ConnId, other: &str) -> Result<(), (ErrorCode, String)> {
        let Some(c) = self.calls.get(other) else {
            return Err((
                ErrorCode::UnknownCall,
                format!("no call {other:?} on this device"),
            ));
        };
        if !c.parties.iter().any(|p| p.conn == Some(conn)) {
            return Err((
                ErrorCode::UnknownCall,
                format!("no call {other:?} on this device"),
            ));
        }
        if c.phase != Phase::Connected || c.parties.len() != 2 || c.transfer.is_some() {
            return Err((
                ErrorCode::InvalidState,
                format!("call {other:?} is not a connected call with one other person"),
            ));
        }
        if c.parties.iter().any(|p| p.kind != PartyKind::Device) {
            return Err((
                ErrorCode::InvalidState,
                format!("call {other:?} is with a service, not a person"),
            ));
        }
        Ok(())
    }

    fn target_info(&self, t: &Target, transferor: ConnId) -> TransferTargetInfo {
        match t {
            Target::User(id) => TransferTargetInfo {
                kind: TransferKind::Participant,
                identity: id.clone(),
            },
            Target::Voicemail(id) => TransferTargetInfo {
                kind: TransferKind::Voicemail,
                identity: id.clone(),
            },
            Target::Call(c) => {
                // The person the transferor is consulting in that call.
                let identity = self
                    .calls
                    .get(c)
                    .and_then(|call| call.parties.iter().find(|p| p.conn != Some(transferor)))
                    .map(|p| p.identity.clone())
                    .expect("consult_target checked the call has another party");
                TransferTargetInfo {
                    kind: TransferKind::Call,
                    identity,
                }
            }
        }
    }

    pub(super) fn accept_transfer(&mut self, conn: ConnId, call_id: &str, now: Now) {
        let Some(pending) = self.pending_for_transferee(conn, call_id) else {
            return;
        };
        let call = self
            .calls
            .get_mut(call_id)
            .expect("pending_for_transferee checked it");
        let p = call
            .transfer
            .as_mut()
            .expect("pending_for_transferee checked it");
        p.accepted = true;
        let transferee = call
            .parties
            .iter()
            .find(|p| p.conn == Some(conn))
            .map(|p| p.identity.clone())
            .expect("transferee is a party");
        let leg_id = format!("xfer-{}", pending.id);
        match pending.target.clone() {
            Target::User(target) => {
                if self.open_leg(call_id, &leg_id, &pending, &transferee, &target, conn, now) {
                    self.route_to(&leg_id, target, !pending.disable_forwarding, None, now);
                }
            }
            Target::Voicemail(owner) => {
                if self.open_leg(call_id, &leg_id, &pending, &transferee, &owner, conn, now) {
                    self.connect_voicemail(&leg_id, owner, now);
                }
            }
            Target::Call(other) => {
                if self.consult_target(pending.transferor, &other).is_err() {
                    return self.transfer_failed(call_id, CallEndReason::TRANSFER_CALL_GONE);
                }
                // The target call goes on: the transferee takes the transferor's place in it.
                let consult = self
                    .calls
                    .get_mut(&other)
                    .expect("consult_target checked it");
                let pi = consult
                    .parties
                    .iter()
                    .position(|p| p.conn == Some(pending.transferor))
                    .expect("transferor is in it");
                let mut party = Party::new(transferee, PartyKind::Device);
                party.conn = Some(conn);
                let gone = std::mem::replace(&mut consult.parties[pi], party);
                // Companions of the transferor leave with it.
                for c in gone.companions {
                    self.send(
                        c,
                        ServerMessage::CallEnded {
                            call_id: other.clone(),
                            reason: CallEndReason::TRANSFERRED,
                        },
                    );
                }
                self.complete_transfer(call_id, &other, now);
                // The transferor's side of the consultation call is over too.
                self.send(
                    pending.transferor,
                    ServerMessage::CallEnded {
                        call_id: other,
                        reason: CallEndReason::TRANSFERRED,
                    },
                );
            }
        }
    }

    /// Creates the target leg: a call from the transferee (told about it only once it connects)
    /// that completes transfer `pending` of `call_id`. False, with the transfer failed, if the
    /// leg's id is taken.
    #[allow(clippy::too_many_arguments)]
    fn open_leg(
        &mut self,
        call_id: &str,
        leg_id: &str,
        pending: &Pending,
        transferee: &Identity,
        target: &Identity,
        conn: ConnId,
        now: Now,
    ) -> bool {
        if self.calls.contains_key(leg_id) {
            self.transfer_failed(call_id, CallEndReason::SERVER_ERROR);
            return false;
        }
        let mut caller = Party::new(transferee.clone(), PartyKind::Device);
        caller.pending_conn = Some(conn);
        let mut leg = Call::new(Phase::Ringing, vec![caller]);
        leg.origin = Some(Origin {
            call_id: call_id.into(),
            transferor: self.me(pending.transferor),
        });
        self.calls.insert(leg_id.into(), leg);
        if let Some(p) = self
            .calls
            .get_mut(call_id)
            .and_then(|c| c.transfer.as_mut())
        {
            p.leg = Some(leg_id.into());
        }
        self.store_started(
            leg_id,
            &transferee.raw_id,
            std::slice::from_ref(&target.raw_id),
            now,
        );
        true
    }

    pub(super) fn reject_transfer(&mut self, conn: ConnId, call_id: &str) {
        if self.pending_for_transferee(conn, call_id).is_some() {
            self.transfer_failed(call_id, CallEndReason::TRANSFER_REJECTED);
        }
    }

    /// The pending, not yet accepted transfer in which `conn` is the transferee; answers the
    /// device with an error otherwise.
    fn pending_for_transferee(&mut self, conn: ConnId, call_id: &str) -> Option<Pending> {
        let Some(call) = self.calls.get(call_id) else {
            self.unknown_call(conn, call_id);
            return None;
        };
        if !call.parties.iter().any(|p| p.conn == Some(conn)) {
            self.unknown_call(conn, call_id);
            return None;
        }
        match &call.transfer {
            Some(p) if p.transferee == conn && !p.accepted => Some(p.clone()),
            Some(p) if p.transferee == conn => {
                self.error(
                    conn,
                    ErrorCode::InvalidState,
                    "this transfer was already accepted".into(),
                    Some(call_id.into()),
                );
                None
            }
            _ => {
                self.error(
                    conn,
                    ErrorCode::InvalidState,
                    "no transfer was requested on this call".into(),
                    Some(call_id.into()),
                );
                None
            }
        }
    }

    /// The target answered (or voicemail picked up) on the leg.
    pub(super) fn transfer_leg_connected(&mut self, leg_id: &str, now: Now) {
        let Some(leg) = self.calls.get_mut(leg_id) else {
            return;
        };
        let origin = leg.origin.take().expect("only legs get here");
        for p in &mut leg.parties {
            if let Some(c) = p.pending_conn.take() {
                p.conn = Some(c);
            }
        }
        self.complete_transfer(&origin.call_id, leg_id, now);
    }

    /// The transferee now lives in `new_call`: tell everyone, in this order, and end the
    /// original call. The routes change once, after all of it, in the caller's `handle`.
    fn complete_transfer(&mut self, call_id: &str, new_call: &str, now: Now) {
        let Some(pending) = self.calls.get_mut(call_id).and_then(|c| c.transfer.take()) else {
            return;
        };
        self.transfer_state(
            pending.transferor,
            call_id,
            &pending.id,
            TransferState::Transferred,
            None,
        );
        self.send(
            pending.transferee,
            ServerMessage::TransferAccepted {
                call_id: call_id.into(),
                target_call_id: new_call.into(),
            },
        );
        self.announce_connected(new_call);
        self.outputs
            .push_back(Output::Store(StoreOp::CallConnected {
                call_id: new_call.into(),
                at_ms: now.unix_ms,
            }));
        self.end_call(call_id, CallEndReason::TRANSFERRED, None, now);
    }

    /// The leg ended without connecting: its ringing devices learn why, the transferor gets
    /// Failed, the original call stays as it was.
    pub(super) fn transfer_leg_failed(&mut self, leg_id: &str, reason: CallEndReason, now: Now) {
        let Some(leg) = self.calls.remove(leg_id) else {
            return;
        };
        for p in &leg.parties {
            for d in &p.ringing {
                self.send(
                    *d,
                    ServerMessage::CallEnded {
                        call_id: leg_id.into(),
                        reason,
                    },
                );
            }
        }
        self.store_ended(leg_id, reason, now);
        if let Some(origin) = leg.origin {
            self.transfer_failed(&origin.call_id, reason.as_transfer_failure());
        }
    }

    fn transfer_failed(&mut self, call_id: &str, error: CallEndReason) {
        let Some(pending) = self.calls.get_mut(call_id).and_then(|c| c.transfer.take()) else {
            return;
        };
        self.transfer_state(
            pending.transferor,
            call_id,
            &pending.id,
            TransferState::Failed,
            Some(error),
        );
    }

    /// The original call ended while its transfer was pending: cancel the leg, tell the
    /// transferor who left first.
    pub(super) fn abandon_transfer(
        &mut self,
        call_id: &str,
        pending: &Pending,
        by: Option<ConnId>,
        now: Now,
    ) {
        if let Some(leg) = &pending.leg
            && let Some(l) = self.calls.remove(leg)
        {
            for p in &l.parties {
                for d in p.ringing.iter().chain(p.conn.iter()) {
                    self.send(
                        *d,
                        ServerMessage::CallEnded {
                            call_id: leg.clone(),
                            reason: CallEndReason::CANCELLED,
                        },
                    );
                }
            }
            if l.parties.iter().any(|p| p.kind == PartyKind::Voicemail) {
                self.outputs.push_back(Output::StopVoicemail {
                    call_id: leg.clone(),
                });
            }
            self.store_ended(leg, CallEndReason::CANCELLED, now);
        }
        let error = if by == Some(pending.transferor) {
            CallEndReason::TRANSFEROR_LEFT
        } else {
            CallEndReason::TRANSFEREE_LEFT
        };
        self.transfer_state(
            pending.transferor,
            call_id,
            &pending.id,
            TransferState::Failed,
            Some(error),
        );
    }

    fn transfer_state(
        &mut self,
        conn: ConnId,
        call_id: &str,
        transfer_id: &str,
        state: TransferState,
        error: Option<CallEndReason>,
    ) {
        self.send(
            conn,
            ServerMessage::TransferStateChanged {
                call_id: call_id.into(),
                transfer_id: transfer_id.into(),
                state,
                error,
            },
        );
    }
}
