//! The hub's control: takes the switchboard loop's commands and hands them to the media
//! threads ([`super::shard`]). It places each new link on the least loaded thread and tells
//! every thread the link's ICE username, so whichever thread the kernel hands the device's
//! datagrams to can route them. It touches no packet.
//!
//! It runs in the caller, not as a task: a command is on the shards' queues when
//! [`Hub::send`] returns, so routes set before a call's audio is sent are in place when that
//! audio is read (each shard takes its messages before its socket).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::hub::HubCmd;
use super::shard::ShardMsg;
use crate::media::link::random_credentials;
use crate::server::switchboard::ConnId;

/// Where the switchboard sends the hub its commands. Cheap to clone; the media threads stop
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Hub {
    control: Arc<Mutex<Control>>,
}

/// The hub is gone (never in practice: it lives as long as its last handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubGone;

impl std::fmt::Display for HubGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the media hub has stopped")
    }
}

impl std::error::Error for HubGone {}

impl Hub {
    pub(super) fn new(control: Control) -> Hub {
        Hub {
            control: Arc::new(Mutex::new(control)),
        }
    }

    /// Hands a command to the media threads.
    ///
    /// # Errors
    ///
    /// [`HubGone`] if every media thread has stopped.
    pub fn send(&self, cmd: HubCmd) -> Result<(), HubGone> {
        // The control never panics while holding the lock; a poisoned lock still holds a
        // consistent control.
        let mut control = self
            .control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if control.shards.iter().all(mpsc::UnboundedSender::is_closed) {
            return Err(HubGone);
        }
        control.command(cmd);
        Ok(())
    }
}

pub(super) struct Control {
    shards: Vec<mpsc::UnboundedSender<ShardMsg>>,
    /// Links held by each shard, kept by the shards (links move between them).
    load: Arc<[AtomicUsize]>,
    /// Links answered and not dropped (a device that offers again replaces its link).
    known: HashMap<ConnId, usize>,
}

impl Control {
    pub fn new(shards: Vec<mpsc::UnboundedSender<ShardMsg>>, load: Arc<[AtomicUsize]>) -> Control {
        Control {
            shards,
            load,
            known: HashMap::new(),
        }
    }

    fn command(&mut self, cmd: HubCmd) {
        match cmd {
            HubCmd::Answer {
                conn,
                offer_sdp,
                announce,
            } => {
                let shard = (0..self.load.len())
                    .min_by_key(|&s| self.load[s].load(Ordering::Relaxed))
                    .unwrap_or(0);
                self.known.insert(conn, shard);
                let (ufrag, pwd) = random_credentials();
                // Every shard learns the username (and drops an older link of this device)
                // before the owner answers, so the device's first check, which can only
                // follow the answer, is routed wherever it lands.
                let name: Arc<str> = Arc::from(ufrag.as_str());
                self.broadcast(|| ShardMsg::Expect {
                    conn,
                    ufrag: Arc::clone(&name),
                    shard,
                });
                self.to(
                    shard,
                    ShardMsg::Answer {
                        conn,
                        offer_sdp,
                        announce,
                        ufrag,
                        pwd,
                    },
                );
            }
            HubCmd::Drop { conn } => {
                if self.known.remove(&conn).is_some() {
                    self.broadcast(|| ShardMsg::Drop { conn });
                }
            }
            HubCmd::Routes(routes) => {
                let routes = Arc::new(routes);
                self.broadcast(|| ShardMsg::Routes(Arc::clone(&routes)));
            }
            // The link may have moved since it was placed: every shard hears these, and the one
            // holding the link acts.
            HubCmd::Tap { from, tx } => self.broadcast(|| ShardMsg::Tap {
                from,
                tx: tx.clone(),
            }),
            HubCmd::Untap { from } => self.broadcast(|| ShardMsg::Untap { from }),
            HubCmd::Inject { to, rtp } => self.broadcast(|| ShardMsg::Inject {
                to,
                rtp: rtp.clone(),
            }),
        }
    }

    fn to(&self, shard: usize, msg: ShardMsg) {
        if let Some(s) = self.shards.get(shard) {
            let _ = s.send(msg);
        }
    }

    fn broadcast(&self, msg: impl Fn() -> ShardMsg) {
        for s in &self.shards {
            let _ = s.send(msg());
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.broadcast(|| ShardMsg::Stop);
    }
}
