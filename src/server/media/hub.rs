//! The media hub: media threads ([`super::shard`]), one per core by default, each reading its
//! own socket of the media port's `SO_REUSEPORT` group and owning the devices' links that
//! arrive there (a link moves to the thread its media arrives on) and their part of the relay.
//! The control ([`super::control`]) places new links and passes the switchboard's commands on.
//!
//! The switchboard's loop talks to it with [`HubCmd`]s and hears back through a callback of
//! [`HubEvent`]s. It decides nothing about calls: which candidates a device is offered and who
//! hears whom come from the switchboard core.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use std::sync::atomic::AtomicUsize;

use super::control::{Control, Hub};
use super::shard::{Port, Shard, ShardSocket, Shared};
use super::sockets::MediaSocket;
use crate::media::link::RtpAudio;
use crate::server::relay::RelayStats;
use crate::server::switchboard::ConnId;

/// What the switchboard loop asks of the hub.
pub enum HubCmd {
    /// Answer a device's offer, announcing these media addresses, best first.
    Answer {
        conn: ConnId,
        offer_sdp: String,
        announce: Vec<SocketAddr>,
    },
    /// The device is gone: close its link.
    Drop {
        conn: ConnId,
    },
    /// Who hears whom (source → receivers).
    Routes(BTreeMap<ConnId, Vec<ConnId>>),
    /// Also hand what `from` sends to a server-side listener (a voicemail recording).
    Tap {
        from: ConnId,
        tx: mpsc::Sender<RtpAudio>,
    },
    Untap {
        from: ConnId,
    },
    /// Audio the switchboard itself plays to `to` (a greeting).
    Inject {
        to: ConnId,
        rtp: RtpAudio,
    },
}

/// What the hub reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    Answered {
        conn: ConnId,
        sdp: String,
    },
    Failed {
        conn: ConnId,
        error: String,
    },
    /// The device's link came up or went down.
    Connected {
        conn: ConnId,
        up: bool,
    },
}

/// Starts the hub over bound sockets with `shards` media threads (at least one) and returns
/// where to send it commands. The shards run on threads of their own, named `media-N`. The DTLS certificate is made once
/// and shared by every link.
///
/// # Errors
///
/// If a socket cannot be cloned or joined for the shards or a thread cannot be started.
pub fn start(
    sockets: Vec<MediaSocket>,
    stats: Arc<RelayStats>,
    events: Box<dyn Fn(HubEvent) + Send + Sync>,
    shards: usize,
) -> anyhow::Result<Hub> {
    start_spreading_at(sockets, stats, events, shards, super::control::SPREAD_AT)
}

/// As [`start`], spreading devices over the threads from `spread_at` links (0: always).
///
/// # Errors
///
/// As [`start`].
pub fn start_spreading_at(
    sockets: Vec<MediaSocket>,
    stats: Arc<RelayStats>,
    events: Box<dyn Fn(HubEvent) + Send + Sync>,
    shards: usize,
    spread_at: usize,
) -> anyhow::Result<Hub> {
    let shards = shards.max(1);
    // Every shard's sockets are bound before any reads: joining a `SO_REUSEPORT` group later
    // would move devices' addresses between shards.
    let mut per_shard: Vec<Vec<(std::net::UdpSocket, SocketAddr)>> = Vec::with_capacity(shards);
    for id in 0..shards {
        let mut mine = Vec::with_capacity(sockets.len());
        for s in &sockets {
            let socket = if id == 0 {
                s.socket.try_clone()?
            } else {
                s.sibling()?
            };
            mine.push((socket, s.ice_local()));
        }
        per_shard.push(mine);
    }
    let groups = sockets
        .iter()
        .map(|s| s.socket.try_clone())
        .collect::<std::io::Result<Vec<_>>>()?;
    let port = Arc::new(Port {
        socket_of: sockets
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.announce.iter().map(move |a| (*a, i)))
            .collect(),
        sockets: sockets.into_iter().map(|s| s.socket).collect(),
    });
    let certificate = crate::media::link::server_certificate()
        .map_err(|e| tracing::warn!("{e}; each link will make its own"))
        .ok();
    let events: Arc<dyn Fn(HubEvent) + Send + Sync> = Arc::from(events);
    let load: Arc<[AtomicUsize]> = (0..shards).map(|_| AtomicUsize::new(0)).collect();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::unbounded_channel()).unzip();
    for ((id, rx), mine) in rxs.into_iter().enumerate().zip(per_shard) {
        let shared = Shared {
            port: Arc::clone(&port),
            stats: Arc::clone(&stats),
            peers: txs.clone(),
            load: Arc::clone(&load),
            certificate: certificate.clone(),
            events: Arc::clone(&events),
        };
        std::thread::Builder::new()
            .name(format!("media-{id}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("media shard {id}: no runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let sockets = match mine
                        .into_iter()
                        .map(|(s, local)| ShardSocket::new(s, local))
                        .collect::<std::io::Result<Vec<_>>>()
                    {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!("media shard {id}: its sockets: {e}");
                            return;
                        }
                    };
                    Shard::new(id, sockets, shared).run(rx).await;
                });
            })?;
    }
    Ok(Hub::new(Control::new(txs, load, groups, spread_at)))
}

/// How many media shards to run by default: one per core.
#[must_use]
pub fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}
