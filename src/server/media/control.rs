//! The hub's control: takes the switchboard loop's commands and hands them to the media
//! threads ([`super::shard`]). It places each new link on the least loaded thread and tells
//! every thread the link's ICE username, so whichever thread the kernel hands the device's
//! datagrams to can route them. It touches no packet.
//!
//! While few devices are connected, the port steers every datagram to the first thread
//! ([`Steer::First`]): a packet relayed between two threads costs a wake-up of each, more than
//! the work saved. From [`SPREAD_AT`] links on, the kernel spreads devices over the threads by
//! address, and each link moves to the thread its media arrives on; below [`GATHER_AT`] they
//! gather again. The choice is [`steering`], pure.
//!
//! It runs in the caller, not as a task: a command is on the shards' queues when
//! [`Hub::send`] returns, so routes set before a call's audio is sent are in place when that
//! audio is read (each shard takes its messages before its socket).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::hub::HubCmd;
use super::shard::ShardMsg;
use super::sockets::{Steer, steer};
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

/// Links at which the media port starts spreading devices over the media threads (64 calls).
pub const SPREAD_AT: usize = 128;

/// How the port should steer with `links` links, steering `now` over `shards` threads,
/// spreading from `spread_at` links. It gathers again below three quarters of that, so a device
/// coming and going at the edge does not move every link back and forth.
#[must_use]
pub fn steering(links: usize, shards: usize, spread_at: usize, now: Steer) -> Steer {
    if shards <= 1 {
        return Steer::First;
    }
    match now {
        Steer::First if links >= spread_at => Steer::Spread,
        Steer::Spread if links < spread_at - spread_at / 4 => Steer::First,
        other => other,
    }
}

pub(super) struct Control {
    shards: Vec<mpsc::UnboundedSender<ShardMsg>>,
    /// One socket of each of the port's `SO_REUSEPORT` groups, to steer them.
    groups: Vec<std::net::UdpSocket>,
    steer: Steer,
    spread_at: usize,
    /// Links held by each shard, kept by the shards (links move between them).
    load: Arc<[AtomicUsize]>,
    /// Links answered and not dropped (a device that offers again replaces its link).
    known: std::collections::HashSet<ConnId>,
}

impl Control {
    pub fn new(
        shards: Vec<mpsc::UnboundedSender<ShardMsg>>,
        load: Arc<[AtomicUsize]>,
        groups: Vec<std::net::UdpSocket>,
        spread_at: usize,
    ) -> Control {
        let mut control = Control {
            shards,
            groups,
            spread_at,
            steer: Steer::Spread,
            load,
            known: std::collections::HashSet::new(),
        };
        control.set_steer(Steer::First);
        control.resteer();
        control
    }

    fn set_steer(&mut self, to: Steer) {
        if self.shards.len() <= 1 || to == self.steer {
            return;
        }
        for g in &self.groups {
            if let Err(e) = steer(g, to) {
                // The kernel's hash stands in: every thread still serves its own devices.
                tracing::warn!("steering the media port ({to:?}): {e}");
            }
        }
        tracing::info!(links = self.known.len(), "media port steering: {to:?}");
        self.steer = to;
    }

    fn resteer(&mut self) {
        let to = steering(
            self.known.len(),
            self.shards.len(),
            self.spread_at,
            self.steer,
        );
        self.set_steer(to);
    }

    fn command(&mut self, cmd: HubCmd) {
        match cmd {
            HubCmd::Answer {
                conn,
                offer_sdp,
                announce,
            } => {
                self.known.insert(conn);
                self.resteer();
                // Where its datagrams will arrive while gathered; while spread, the kernel
                // decides and the link moves there, so start where it costs least.
                let shard = match self.steer {
                    Steer::First => 0,
                    Steer::Spread => (0..self.load.len())
                        .min_by_key(|&s| self.load[s].load(Ordering::Relaxed))
                        .unwrap_or(0),
                };
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
                if self.known.remove(&conn) {
                    self.broadcast(|| ShardMsg::Drop { conn });
                    self.resteer();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_spreads_under_load_and_gathers_with_a_margin() {
        let mut now = Steer::First;
        let mut seen = Vec::new();
        for links in (0..=SPREAD_AT).chain((0..SPREAD_AT).rev()) {
            let next = steering(links, 2, SPREAD_AT, now);
            if next != now {
                seen.push((links, next));
            }
            now = next;
        }
        assert_eq!(seen, vec![(128, Steer::Spread), (95, Steer::First)]);
        // Bouncing at the edge moves nothing.
        assert_eq!(steering(127, 2, SPREAD_AT, Steer::Spread), Steer::Spread);
        assert_eq!(steering(96, 2, SPREAD_AT, Steer::Spread), Steer::Spread);
        // One thread has nowhere to spread to; spreading from 0 links never gathers.
        assert_eq!(steering(10_000, 1, SPREAD_AT, Steer::First), Steer::First);
        assert_eq!(steering(0, 2, 0, Steer::First), Steer::Spread);
        assert_eq!(steering(0, 2, 0, Steer::Spread), Steer::Spread);
    }
}
