//! The media hub: the front ([`super::front`]) reads the one media port and routes datagrams
//! to shards ([`super::shard`]), one thread per core, which own the devices' [`LinkCore`]s and
//! their part of the relay. A packet takes one hop (front to its link's shard), and one more
//! only when its receiver's link lives on another shard.
//!
//! The switchboard's loop talks to it with [`HubCmd`]s and hears back through a callback of
//! [`HubEvent`]s. It decides nothing about calls: which candidates a device is offered and who
//! hears whom come from the switchboard core.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::front::Front;
use super::shard::{Port, Shard};
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

/// Counters beyond the relay's.
#[derive(Debug, Default, Clone, Copy)]
pub struct HubCounters {
    /// Datagrams from an address and username no link knows.
    pub unrouted: u64,
    /// Datagrams the kernel would not take right now (dropped: real-time).
    pub send_blocked: u64,
}

/// Starts the hub over bound sockets with `shards` media threads (at least one) and returns
/// where to send it commands. Must be called inside a tokio runtime (the front runs there); the
/// shards run on threads of their own, named `media-N`. The DTLS certificate is made once and
/// shared by every link.
///
/// # Errors
///
/// If a socket cannot be cloned for the shards or a thread cannot be started.
pub fn start(
    sockets: Vec<MediaSocket>,
    stats: Arc<RelayStats>,
    events: Box<dyn Fn(HubEvent) + Send + Sync>,
    shards: usize,
) -> anyhow::Result<mpsc::UnboundedSender<HubCmd>> {
    let shards = shards.max(1);
    let port = Arc::new(Port {
        sockets: sockets
            .iter()
            .map(|s| s.send.try_clone())
            .collect::<std::io::Result<_>>()?,
        socket_of: sockets
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.announce.iter().map(move |a| (*a, i)))
            .collect(),
    });
    let certificate = crate::media::link::server_certificate()
        .map_err(|e| tracing::warn!("{e}; each link will make its own"))
        .ok();
    let events: Arc<dyn Fn(HubEvent) + Send + Sync> = Arc::from(events);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::unbounded_channel()).unzip();
    for (id, rx) in rxs.into_iter().enumerate() {
        let shard = Shard::new(
            id,
            Arc::clone(&port),
            Arc::clone(&stats),
            txs.clone(),
            certificate.clone(),
            Arc::clone(&events),
        );
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
                rt.block_on(shard.run(rx));
            })?;
    }
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    tokio::spawn(Front::new(sockets, txs).run(cmd_rx));
    Ok(cmd_tx)
}

/// How many media shards to run by default: one per core.
#[must_use]
pub fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}
