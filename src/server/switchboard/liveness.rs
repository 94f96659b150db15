//! Lost connections and their return: a signed-in device whose connection drops (or goes
//! silent for `keepalive_timeout`) keeps its place, endpoint and calls for `reconnect_window`
//! from the last time it was heard. Meanwhile the other parties see it as `reconnecting` and
//! what it would have been sent is kept. A `hello` with its resume token takes the place back:
//! the runtime is told to `Attach` the new connection to the device's id, so calls, routes
//! and the media link (all keyed by that id) carry on untouched, and the missed messages follow
//! the `welcome` in order. When the window passes, the device is gone as if it had closed.

use std::collections::VecDeque;
use std::time::Instant;

use super::{ConnId, Output, Switchboard};
use crate::core::{CallEndReason, Now};
use crate::protocol::{IceServer, Identity, PROTOCOL_VERSION, ServerMessage};

/// The most messages kept for a lost device. A device that misses more (a flood of presence
/// or roster changes during a long outage) cannot be brought up to date by replay, so it
/// signs in anew instead.
const MAX_MISSED: usize = 1000;

#[derive(Debug)]
pub(super) struct Parked {
    /// When the place is given up.
    until: Instant,
    /// What the device would have been sent meanwhile, oldest first.
    missed: VecDeque<ServerMessage>,
    /// More than [`MAX_MISSED`] was missed: the place can no longer be resumed.
    overflowed: bool,
}

impl Parked {
    pub(super) fn missed(&mut self, msg: ServerMessage) {
        if self.missed.len() >= MAX_MISSED {
            self.overflowed = true;
            self.missed.clear();
        }
        if !self.overflowed {
            self.missed.push_back(msg);
        }
    }
}

impl Switchboard {
    pub(super) fn heard(&mut self, conn: ConnId, now: Now) {
        if let Some(c) = self.conns.get_mut(&conn)
            && c.parked.is_none()
        {
            c.last_heard = now.mono;
        }
    }

    pub(super) fn closed(&mut self, conn: ConnId, clean: bool, now: Now) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        // Already parked: this is its lost socket finishing closing.
        if c.parked.is_some() {
            return;
        }
        if clean || c.endpoint.is_none() || self.cfg.reconnect_window.is_zero() {
            return self.gone(conn, now);
        }
        self.park(conn, now);
    }

    /// Keeps the place of a device whose connection is lost.
    fn park(&mut self, conn: ConnId, now: Now) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // The window runs from the last sign of life, so a device that froze is given up
        // `reconnect_window` after it stopped, however long noticing took.
        let until = c.last_heard + self.cfg.reconnect_window;
        if until <= now.mono {
            return self.gone(conn, now);
        }
        c.parked = Some(Parked {
            until,
            missed: VecDeque::new(),
            overflowed: false,
        });
        if let Some(ep) = &c.endpoint {
            tracing::info!(
                user = %ep.identity.display_name,
                device = %ep.device_name,
                window_s = self.cfg.reconnect_window.as_secs_f32(),
                "device lost its connection; keeping its place"
            );
        }
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            // A ringing device that cannot hear the ring stops ringing, as if it had left.
            if let Some(pi) = call.parties.iter().position(|p| p.ringing.contains(&conn)) {
                let p = &mut call.parties[pi];
                p.ringing.remove(&conn);
                if p.ringing.is_empty() && p.conn.is_none() && p.pending_conn.is_none() {
                    if call.group {
                        self.group_device_gone(&id, conn, now);
                    } else {
                        self.no_answer(&id, CallEndReason::OFFLINE, now);
                    }
                    continue;
                }
            }
            if let Some(pi) = call.parties.iter().position(|p| p.conn == Some(conn)) {
                self.change_party(&id, pi, |p| p.reconnecting = true);
            }
        }
    }

    /// `hello.resume` on connection `new`: takes back the place the token names.
    pub(super) fn resume(
        &mut self,
        new: ConnId,
        token: &str,
        raw_id: &str,
        now: Now,
    ) -> Result<(), String> {
        let (id, secret) = token
            .split_once('.')
            .and_then(|(id, secret)| {
                Some((
                    id.parse::<ConnId>().ok()?,
                    u128::from_str_radix(secret, 16).ok()?,
                ))
            })
            .ok_or("the resume token is malformed")?;
        let device = match self.conns.get(&id) {
            Some(c) if id != new && c.secret == secret => c,
            _ => return Err("no place is kept for that resume token".into()),
        };
        let Some(ep) = &device.endpoint else {
            return Err("no place is kept for that resume token".into());
        };
        if ep.identity.raw_id != raw_id {
            return Err("the resume token belongs to another user".into());
        }
        if device.parked.as_ref().is_some_and(|p| p.overflowed) {
            return Err("the device missed too much while away".into());
        }
        let was_parked = device.parked.is_some();
        let Some(fresh) = self.conns.remove(&new) else {
            return Err("the connection is gone".into());
        };
        if !was_parked {
            // Its old connection was never seen to drop (a half-open TCP connection after a
            // change of network): the new one replaces it.
            self.outputs.push_back(Output::Close {
                conn: id,
                reason: "replaced by a resumed connection".into(),
            });
        }
        self.outputs.push_back(Output::Attach {
            socket: new,
            device: id,
        });
        let Some(c) = self.conns.get_mut(&id) else {
            return Err("the device is gone".into());
        };
        c.loopback = fresh.loopback;
        c.local = fresh.local;
        c.last_heard = now.mono;
        c.bad_frames = 0;
        let missed = c.parked.take().map(|p| p.missed).unwrap_or_default();
        let Some(ep) = c.endpoint.clone() else {
            return Err("the device is gone".into());
        };
        tracing::info!(user = %ep.identity.display_name, device = %ep.device_name, missed = missed.len(), "device resumed");
        let ice_servers = super::network::ice_servers(
            self.cfg.turn.as_ref(),
            &ep.identity.display_name,
            now.unix_ms / 1000,
        );
        let welcome = self.welcome(id, ep.identity, ep.endpoint_id, ice_servers, true);
        self.send(id, welcome);
        for msg in missed {
            self.send(id, msg);
        }
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for call_id in ids {
            if let Some(pi) = self.calls[&call_id]
                .parties
                .iter()
                .position(|p| p.conn == Some(id))
            {
                self.change_party(&call_id, pi, |p| p.reconnecting = false);
            }
        }
        Ok(())
    }

    pub(super) fn welcome(
        &self,
        conn: ConnId,
        identity: Identity,
        endpoint_id: String,
        ice_servers: Vec<IceServer>,
        resumed: bool,
    ) -> ServerMessage {
        let secret = self.conns.get(&conn).map_or(0, |c| c.secret);
        ServerMessage::Welcome {
            protocol: PROTOCOL_VERSION,
            identity,
            endpoint_id,
            server: format!("dialtone/{}", env!("CARGO_PKG_VERSION")),
            ice_servers,
            resume_token: (!self.cfg.reconnect_window.is_zero())
                .then(|| format!("{conn}.{secret:032x}")),
            resumed,
            reconnect_window_ms: self.cfg.reconnect_window.as_millis() as u64,
            keepalive_timeout_ms: self.cfg.keepalive_timeout.as_millis() as u64,
        }
    }

    /// Silent connections are taken as lost; places kept too long are given up.
    pub(super) fn liveness_tick(&mut self, now: Now) {
        let keepalive = self.cfg.keepalive_timeout;
        let mut silent = Vec::new();
        let mut expired = Vec::new();
        for (id, c) in &self.conns {
            match &c.parked {
                Some(p) if p.until <= now.mono => expired.push(*id),
                Some(_) => {}
                None if !keepalive.is_zero() && c.last_heard + keepalive <= now.mono => {
                    silent.push(*id)
                }
                None => {}
            }
        }
        for id in silent {
            self.outputs.push_back(Output::Close {
                conn: id,
                reason: format!("nothing heard for {} s", keepalive.as_secs()),
            });
            self.closed(id, false, now);
        }
        for id in expired {
            if let Some(ep) = self.endpoint(id) {
                tracing::info!(user = %ep.identity.display_name, device = %ep.device_name, "device did not come back within the reconnect window");
            }
            self.gone(id, now);
        }
    }

    pub(super) fn liveness_deadline(&self) -> Option<Instant> {
        let keepalive = self.cfg.keepalive_timeout;
        self.conns
            .values()
            .filter_map(|c| match &c.parked {
                Some(p) => Some(p.until),
                None if keepalive.is_zero() => None,
                None => Some(c.last_heard + keepalive),
            })
            .min()
    }
}
