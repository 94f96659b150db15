//! The media front: reads the media port, routes each datagram to its link's shard, and hands
//! the switchboard loop's commands to the shards. It holds no link and does no crypto, so one
//! task keeps up with the port while the shards, one thread per core, do the work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::sync::mpsc;

use super::demux::Demux;
use super::hub::HubCmd;
use super::shard::{ShardMsg, udp_path};
use super::sockets::MediaSocket;
use crate::media::link::random_credentials;
use crate::media::net::udp::{recv_any, try_recv_any};
use crate::server::switchboard::ConnId;

/// Largest datagram read; anything longer is truncated (and then fails its checks).
const RECV_BUF: usize = 2048;
/// Datagrams read in one wake-up before commands get a turn.
const BURST: usize = 64;

pub struct Front {
    sockets: Vec<MediaSocket>,
    demux: Demux,
    /// Which shard holds each link, and how many links each shard holds.
    owner: HashMap<ConnId, usize>,
    load: Vec<usize>,
    shards: Vec<mpsc::UnboundedSender<ShardMsg>>,
    /// Datagrams from senders no link knows.
    pub unrouted: u64,
}

impl Front {
    pub fn new(sockets: Vec<MediaSocket>, shards: Vec<mpsc::UnboundedSender<ShardMsg>>) -> Front {
        Front {
            sockets,
            demux: Demux::default(),
            owner: HashMap::new(),
            load: vec![0; shards.len()],
            shards,
            unrouted: 0,
        }
    }

    /// Runs until the command channel closes, then stops the shards.
    pub async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<HubCmd>) {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            tokio::select! {
                // Commands first: a new link's ufrag must be known before its first check.
                biased;
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                (i, r) = recv_any(&self.sockets, &mut buf) => {
                    self.received(i, r, &buf);
                    for _ in 0..BURST {
                        let Some((i, r)) = try_recv_any(&self.sockets, &mut buf) else { break };
                        self.received(i, r, &buf);
                    }
                }
            }
        }
        for s in &self.shards {
            let _ = s.send(ShardMsg::Stop);
        }
    }

    fn received(
        &mut self,
        i: usize,
        r: std::io::Result<(usize, std::net::SocketAddr)>,
        buf: &[u8],
    ) {
        let (n, peer) = match r {
            Ok(x) => x,
            // ICMP errors for earlier sends (a device that went away) surface on the next read
            // of an unconnected socket; they say nothing about this read.
            Err(e) => {
                tracing::trace!(socket = %self.sockets[i].bound, "media read: {e}");
                return;
            }
        };
        let data = &buf[..n];
        let local = self.sockets[i].ice_local();
        let Some(conn) = self.demux.route(local, peer, data) else {
            self.unrouted += 1;
            return;
        };
        let Some(shard) = self.owner.get(&conn).and_then(|s| self.shards.get(*s)) else {
            return;
        };
        let _ = shard.send(ShardMsg::Datagram {
            conn,
            path: udp_path(local, peer),
            data: BytesMut::from(data),
            at: Instant::now(),
        });
    }

    fn command(&mut self, cmd: HubCmd) {
        match cmd {
            HubCmd::Answer {
                conn,
                offer_sdp,
                announce,
            } => {
                // A device that offers again keeps its shard (the old link is replaced there).
                let shard = match self.owner.get(&conn) {
                    Some(&s) => s,
                    None => {
                        let s = (0..self.load.len())
                            .min_by_key(|&s| self.load[s])
                            .unwrap_or(0);
                        self.load[s] += 1;
                        self.owner.insert(conn, s);
                        self.broadcast(|| ShardMsg::Placed {
                            conn,
                            shard: Some(s),
                        });
                        s
                    }
                };
                let (ufrag, pwd) = random_credentials();
                self.demux.remove(conn);
                self.demux.add(conn, &ufrag);
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
                self.demux.remove(conn);
                if let Some(s) = self.owner.remove(&conn) {
                    self.load[s] = self.load[s].saturating_sub(1);
                    self.to(s, ShardMsg::Drop { conn });
                    self.broadcast(|| ShardMsg::Placed { conn, shard: None });
                }
            }
            HubCmd::Routes(routes) => {
                let routes = Arc::new(routes);
                self.broadcast(|| ShardMsg::Routes(Arc::clone(&routes)));
            }
            HubCmd::Tap { from, tx } => {
                if let Some(&s) = self.owner.get(&from) {
                    self.to(s, ShardMsg::Tap { from, tx });
                }
            }
            HubCmd::Untap { from } => {
                if let Some(&s) = self.owner.get(&from) {
                    self.to(s, ShardMsg::Untap { from });
                }
            }
            HubCmd::Inject { to, rtp } => {
                if let Some(&s) = self.owner.get(&to) {
                    self.to(s, ShardMsg::Inject { to, rtp });
                }
            }
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
