//! A user's calls across its devices: every other device learns of a call (activeCallsUpdated /
//! noActiveCalls), and may take it over or join it as a companion.
//!
//! Invariants: only devices of the same user see or take a call; of two devices racing for
//! one call exactly one wins (the request names the device it takes from); the remote party's
//! call goes on untouched (same call, no ringing, no new participant).

use super::{ConnId, Phase, Switchboard};
use crate::core::{CallEndReason, Now};
use crate::protocol::{ActiveCallDetails, ErrorCode, ServerMessage};

impl Switchboard {
    /// Tells each device what changed about its user's calls elsewhere.
    pub(super) fn update_presence(&mut self, _now: Now) {
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.endpoint.is_some())
            .map(|(id, _)| *id)
            .collect();
        for conn in conns {
            let now = self.active_elsewhere(conn);
            if self.presence.get(&conn) == Some(&now) {
                continue;
            }
            self.presence.insert(conn, now.clone());
            let msg = match now {
                Some(details) => ServerMessage::ActiveCallsUpdated { details },
                None => ServerMessage::NoActiveCalls,
            };
            self.send(conn, msg);
        }
    }

    /// The most recently connected call of `conn`'s user that is on another device and that
    /// `conn` is not part of.
    fn active_elsewhere(&self, conn: ConnId) -> Option<ActiveCallDetails> {
        let me = &self.endpoint(conn)?.identity.raw_id;
        self.calls
            .iter()
            .filter(|(_, c)| c.phase == Phase::Connected)
            .filter_map(|(id, c)| {
                let mine = c
                    .parties
                    .iter()
                    .find(|p| &p.identity.raw_id == me && p.conn.is_some())?;
                if mine.has_device(conn) {
                    return None;
                }
                let on = self.endpoint(mine.conn?)?;
                let remote = c
                    .parties
                    .iter()
                    .filter(|p| &p.identity.raw_id != me)
                    .map(|p| p.identity.clone())
                    .collect();
                Some(ActiveCallDetails {
                    call_id: id.clone(),
                    remote_participants: remote,
                    started_unix_ms: c.connected_ms.unwrap_or_default(),
                    endpoint_id: on.endpoint_id.clone(),
                    device_name: on.device_name.clone(),
                })
            })
            .max_by_key(|d| d.started_unix_ms)
    }

    pub(super) fn active_call_transfer(
        &mut self,
        conn: ConnId,
        call_id: &str,
        from_endpoint: &str,
        is_transfer: bool,
        _now: Now,
    ) {
        let me = self.me(conn).raw_id;
        let bad =
            |this: &mut Self, code, why: String| this.error(conn, code, why, Some(call_id.into()));
        // Someone else's call, or one that ended, looks the same: there is nothing of yours.
        let Some(call) = self.calls.get(call_id) else {
            return bad(
                self,
                ErrorCode::UnknownCall,
                format!("no active call {call_id:?} of yours (it may have ended)"),
            );
        };
        let Some(pi) = call
            .parties
            .iter()
            .position(|p| p.identity.raw_id == me && p.conn.is_some())
        else {
            return bad(
                self,
                ErrorCode::UnknownCall,
                format!("no active call {call_id:?} of yours (it may have ended)"),
            );
        };
        if call.phase != Phase::Connected {
            return bad(
                self,
                ErrorCode::InvalidState,
                format!("call {call_id:?} is not connected yet"),
            );
        }
        let party = &call.parties[pi];
        if party.has_device(conn) {
            return bad(
                self,
                ErrorCode::InvalidState,
                "this device is already in that call".into(),
            );
        }
        let primary = party.conn.expect("filtered above");
        let on = self
            .endpoint(primary)
            .map(|e| e.endpoint_id.clone())
            .unwrap_or_default();
        if on != from_endpoint {
            return bad(
                self,
                ErrorCode::InvalidState,
                format!(
                    "call {call_id:?} is no longer on device {from_endpoint:?} (another device took it)"
                ),
            );
        }
        let call = self.calls.get_mut(call_id).expect("looked up above");
        let party = &mut call.parties[pi];
        if is_transfer {
            // The new device takes the leg in the same routing update that drops the old one;
            // its media connection is already up, so audio flows at once.
            party.conn = Some(conn);
            party.companions.remove(&conn);
            self.send(
                primary,
                ServerMessage::CallEnded {
                    call_id: call_id.into(),
                    reason: CallEndReason::MOVED,
                },
            );
            self.announce_to(call_id, conn);
            self.announce_own_devices(call_id, pi, &[conn]);
        } else {
            party.companions.insert(conn);
            self.announce_own_devices(call_id, pi, &[]);
        }
    }

    /// Refreshes the participant lists of a party's devices (companions came or went).
    fn announce_own_devices(&mut self, call_id: &str, pi: usize, except: &[ConnId]) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        let devices: Vec<ConnId> = call.parties[pi]
            .devices()
            .filter(|d| !except.contains(d))
            .collect();
        for d in devices {
            self.announce_to(call_id, d);
        }
    }

    /// One device of a party with several leaves the call, which goes on for the rest. Returns
    /// false when `conn` is its party's only device (leaving then is an ordinary hang-up).
    pub(super) fn leave_device(&mut self, call_id: &str, conn: ConnId) -> bool {
        let Some(call) = self.calls.get_mut(call_id) else {
            return false;
        };
        let Some(pi) = call.parties.iter().position(|p| p.has_device(conn)) else {
            return false;
        };
        let party = &mut call.parties[pi];
        if party.companions.is_empty() {
            return false;
        }
        if party.conn == Some(conn) {
            let next = *party.companions.iter().next().expect("not empty");
            party.companions.remove(&next);
            party.conn = Some(next);
        } else {
            party.companions.remove(&conn);
        }
        self.announce_own_devices(call_id, pi, &[]);
        true
    }
}
