//! TURN over TCP or TLS for a device on a network that drops UDP.
//!
//! webrtc-rs's own TURN gathering speaks only UDP to the TURN server. Its TURN *client* is
//! sans-IO, though, so we own the transport: the allocation is made over a TCP (or TLS) stream
//! to the TURN server (RFC 8656 §12.5: STUN and ChannelData messages back to back), and the
//! relayed address, which is UDP on the server's side, becomes a relay candidate of the link.
//! The link's ICE agent then checks the switchboard's UDP port through it like any other path.
//!
//! Three parts: [`TurnUrl`] (which server, how), [`TurnRelay`] (the protocol state, pure: bytes
//! and time in, bytes and events out), and [`TurnPipe`] (a task that owns the stream: connect,
//! TLS, read, write).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::sansio::Protocol as _;
use rtc::shared::turn_framing::TurnStreamDecoder;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::turn::client::{Client, ClientConfig, Event};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

/// Packets queued for one peer while its permission is being created.
const MAX_PENDING_PER_PEER: usize = 32;
/// How long connecting to a TURN server (TCP and TLS handshakes) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an allocation may take once connected.
const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a device reaches a TURN server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnTransport {
    /// `turn:` with `transport=udp` (or none): not used by dialtone's devices, whose direct UDP
    /// path to the switchboard works wherever UDP to a TURN server would.
    Udp,
    /// `turn:…?transport=tcp`.
    Tcp,
    /// `turns:` (TLS over TCP).
    Tls,
}

/// One TURN server URL (RFC 7065), with the credentials the switchboard handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnUrl {
    pub host: String,
    pub port: u16,
    pub transport: TurnTransport,
    pub username: String,
    pub credential: String,
}

impl TurnUrl {
    /// Parses `turn:HOST[:PORT][?transport=udp|tcp]` or `turns:HOST[:PORT][?transport=tcp]`.
    ///
    /// # Errors
    ///
    /// A message quoting the URL when it is not one of those.
    pub fn parse(url: &str, username: &str, credential: &str) -> Result<TurnUrl, String> {
        let bad = |why: &str| format!("TURN URL {url:?}: {why}");
        let (scheme, rest) = url.split_once(':').ok_or_else(|| bad("no scheme"))?;
        let secure = match scheme {
            "turn" => false,
            "turns" => true,
            _ => return Err(bad("the scheme must be turn: or turns:")),
        };
        let (hostport, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let transport = match query {
            None => None,
            Some(q) => match q.strip_prefix("transport=") {
                Some("udp") => Some(TurnTransport::Udp),
                Some("tcp") => Some(TurnTransport::Tcp),
                _ => return Err(bad("the only query is transport=udp or transport=tcp")),
            },
        };
        let transport = match (secure, transport) {
            (true, None | Some(TurnTransport::Tcp)) => TurnTransport::Tls,
            (true, Some(_)) => return Err(bad("turns: runs over TCP only")),
            (false, None) => TurnTransport::Udp,
            (false, Some(t)) => t,
        };
        let default_port = if secure { 5349 } else { 3478 };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("junk after the address")),
            };
            (h.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad("bad port"))?),
                None => (hostport.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(TurnUrl {
            host,
            port,
            transport,
            username: username.to_owned(),
            credential: credential.to_owned(),
        })
    }
}

/// What a [`TurnRelay`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    /// The allocation is made: `relayed` is a new local candidate.
    Allocated { relayed: SocketAddr },
    /// The allocation failed or the server went away; the reason in words.
    Failed(String),
    /// A datagram from `peer` through the relay.
    Data { peer: SocketAddr, data: BytesMut },
}

/// The TURN protocol for one allocation over a stream, sans I/O.
pub struct TurnRelay {
    client: Client,
    /// Our end of the stream to the server, and the server's.
    local: SocketAddr,
    server: SocketAddr,
    relayed: Option<SocketAddr>,
    allocate_deadline: Option<Instant>,
    /// Packets waiting for their peer's permission.
    pending: HashMap<SocketAddr, VecDeque<Vec<u8>>>,
    permitted: HashMap<SocketAddr, bool>,
    events: VecDeque<TurnEvent>,
    decoder: TurnStreamDecoder,
    failed: bool,
}

impl TurnRelay {
    /// Starts allocating over a stream from `local` to `server`.
    ///
    /// # Errors
    ///
    /// If the TURN client cannot be built (a crypto provider problem).
    pub fn start(
        url: &TurnUrl,
        local: SocketAddr,
        server: SocketAddr,
        now: Instant,
    ) -> Result<TurnRelay, String> {
        let provider =
            rtc::crypto::default_provider().map_err(|e| format!("crypto provider: {e}"))?;
        let mut client = Client::new(
            ClientConfig {
                stun_serv_addr: String::new(),
                turn_serv_addr: server.to_string(),
                local_addr: local,
                transport_protocol: TransportProtocol::TCP,
                username: url.username.clone(),
                password: url.credential.clone(),
                realm: String::new(),
                software: format!("dialtone/{}", env!("CARGO_PKG_VERSION")),
                rto_in_ms: 0,
                allocation_refresh_interval_cap: None,
            },
            provider,
        )
        .map_err(|e| format!("TURN client: {e}"))?;
        client
            .allocate(now)
            .map_err(|e| format!("TURN allocate: {e}"))?;
        Ok(TurnRelay {
            client,
            local,
            server,
            relayed: None,
            allocate_deadline: Some(now + ALLOCATE_TIMEOUT),
            pending: HashMap::new(),
            permitted: HashMap::new(),
            events: VecDeque::new(),
            decoder: TurnStreamDecoder::new(),
            failed: false,
        })
    }

    /// The relayed address, once allocated.
    #[must_use]
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// Our end of the stream (the relay candidate's base).
    #[must_use]
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Bytes read from the stream.
    pub fn handle_stream(&mut self, now: Instant, bytes: &[u8]) {
        self.decoder.extend_from_slice(bytes);
        loop {
            match self.decoder.next_message() {
                Ok(Some(msg)) => {
                    let tagged = TaggedBytesMut {
                        now,
                        transport: TransportContext {
                            local_addr: self.local,
                            peer_addr: self.server,
                            transport_protocol: TransportProtocol::TCP,
                            ecn: None,
                        },
                        message: BytesMut::from(&msg[..]),
                    };
                    if let Err(e) = self.client.handle_read(tagged) {
                        tracing::debug!("TURN message not taken: {e}");
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.fail(format!(
                        "the TURN server sent something that is not TURN: {e}"
                    ));
                    break;
                }
            }
        }
        self.pump(now);
    }

    /// The stream ended.
    pub fn handle_closed(&mut self, why: &str) {
        self.fail(format!("the connection to the TURN server ended: {why}"));
    }

    /// Sends `data` to `peer` through the relay (queued until the peer is permitted).
    pub fn send(&mut self, now: Instant, peer: SocketAddr, data: &[u8]) {
        let Some(relayed) = self.relayed else {
            return;
        };
        if self.permitted.get(&peer).copied().unwrap_or(false) {
            match self.client.relay(relayed) {
                Ok(mut r) => {
                    if let Err(e) = r.send_to(now, data, peer) {
                        tracing::debug!(%peer, "TURN send: {e}");
                    }
                }
                Err(e) => tracing::debug!("TURN relay gone: {e}"),
            }
            return;
        }
        let q = self.pending.entry(peer).or_default();
        if q.len() < MAX_PENDING_PER_PEER {
            q.push_back(data.to_vec());
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.permitted.entry(peer) {
            e.insert(false);
            match self.client.relay(relayed) {
                Ok(mut r) => {
                    if let Err(e) = r.create_permission(now, peer) {
                        tracing::debug!(%peer, "TURN permission: {e}");
                    }
                }
                Err(e) => tracing::debug!("TURN relay gone: {e}"),
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.allocate_deadline.is_some_and(|d| now >= d) {
            self.fail("the TURN server did not answer the allocation in time".into());
            return;
        }
        if let Err(e) = self.client.handle_timeout(now) {
            tracing::debug!("TURN timer: {e}");
        }
        self.pump(now);
    }

    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        [self.client.poll_timeout(), self.allocate_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Bytes to write to the stream.
    pub fn poll_stream(&mut self) -> Option<BytesMut> {
        if self.failed {
            return None;
        }
        self.client.poll_write().map(|m| m.message)
    }

    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }

    /// Releases the allocation (a refresh with lifetime 0); write what `poll_stream` then gives.
    pub fn close(&mut self, now: Instant) {
        if let Some(relayed) = self.relayed.take()
            && let Ok(mut r) = self.client.relay(relayed)
        {
            let _ = r.close(now);
        }
    }

    fn fail(&mut self, why: String) {
        if !self.failed {
            self.failed = true;
            self.relayed = None;
            self.events.push_back(TurnEvent::Failed(why));
        }
    }

    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.client.poll_event() {
            match ev {
                Event::AllocateResponse(_, relayed) => {
                    self.allocate_deadline = None;
                    self.relayed = Some(relayed);
                    self.events.push_back(TurnEvent::Allocated { relayed });
                }
                Event::AllocateError(_, e) => {
                    self.fail(format!("the TURN server refused the allocation: {e}"));
                }
                Event::TransactionTimeout(_) if self.relayed.is_none() => {
                    self.fail("the TURN server did not answer".into());
                }
                Event::CreatePermissionResponse(_, peer) => {
                    self.permitted.insert(peer, true);
                    if let (Some(queued), Some(relayed)) =
                        (self.pending.remove(&peer), self.relayed)
                        && let Ok(mut r) = self.client.relay(relayed)
                    {
                        for data in queued {
                            let _ = r.send_to(now, &data, peer);
                        }
                    }
                }
                Event::CreatePermissionError(_, e) => {
                    tracing::debug!("TURN permission refused: {e}");
                }
                Event::DataIndicationOrChannelData(_, peer, data) => {
                    self.events.push_back(TurnEvent::Data { peer, data });
                }
                _ => {}
            }
        }
    }
}

/// What a [`TurnPipe`] task reports.
#[derive(Debug)]
pub enum PipeEvent {
    /// Connected (and TLS done): our end and the server's.
    Up {
        local: SocketAddr,
        server: SocketAddr,
    },
    Bytes(Vec<u8>),
    /// Could not connect, or the stream ended; the reason in words.
    Down(String),
}

/// A task owning one TCP or TLS stream to a TURN server.
pub struct TurnPipe {
    tx: mpsc::UnboundedSender<BytesMut>,
    pub rx: mpsc::Receiver<PipeEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl TurnPipe {
    /// Starts connecting to `url` (TLS verified with `tls` for `turns:`).
    #[must_use]
    pub fn connect(url: &TurnUrl, tls: Option<Arc<rustls::ClientConfig>>) -> TurnPipe {
        let (tx, out_rx) = mpsc::unbounded_channel();
        let (ev_tx, rx) = mpsc::channel(256);
        let url = url.clone();
        let task = tokio::spawn(async move {
            let why = match run_pipe(&url, tls, out_rx, &ev_tx).await {
                Ok(()) => "closed".to_owned(),
                Err(e) => e,
            };
            let _ = ev_tx.send(PipeEvent::Down(why)).await;
        });
        TurnPipe { tx, rx, task }
    }

    pub fn write(&self, bytes: BytesMut) {
        let _ = self.tx.send(bytes);
    }
}

impl Drop for TurnPipe {
    fn drop(&mut self) {
        // Give queued writes (a final refresh with lifetime 0) a moment, then stop.
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let tx = self.tx.clone();
        tokio::spawn(async move {
            drop(tx);
            if tokio::time::timeout(Duration::from_millis(500), task)
                .await
                .is_err()
            {
                tracing::debug!("TURN pipe did not close in time");
            }
        });
    }
}

async fn run_pipe(
    url: &TurnUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
    mut out: mpsc::UnboundedReceiver<BytesMut>,
    ev: &mpsc::Sender<PipeEvent>,
) -> Result<(), String> {
    let target = format!("{}:{}", url.host, url.port);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&target))
        .await
        .map_err(|_| format!("connecting to the TURN server {target} timed out"))?
        .map_err(|e| format!("cannot connect to the TURN server {target}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().map_err(|e| e.to_string())?;
    let server = tcp.peer_addr().map_err(|e| e.to_string())?;
    match url.transport {
        TurnTransport::Tls => {
            let cfg = tls.ok_or_else(|| {
                format!("{target}: turns: needs TLS, and no TLS configuration was given")
            })?;
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| format!("TURN server name {:?}: {e}", url.host))?;
            let stream = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
            )
            .await
            .map_err(|_| format!("TLS with the TURN server {target} timed out"))?
            .map_err(|e| format!("TLS with the TURN server {target} failed: {e}"))?;
            pump(stream, local, server, &mut out, ev).await
        }
        TurnTransport::Tcp | TurnTransport::Udp => pump(tcp, local, server, &mut out, ev).await,
    }
}

async fn pump<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: S,
    local: SocketAddr,
    server: SocketAddr,
    out: &mut mpsc::UnboundedReceiver<BytesMut>,
    ev: &mpsc::Sender<PipeEvent>,
) -> Result<(), String> {
    ev.send(PipeEvent::Up { local, server })
        .await
        .map_err(|_| "nobody listens".to_owned())?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) => return Err("the TURN server closed the connection".into()),
                Ok(n) => {
                    if ev.send(PipeEvent::Bytes(buf[..n].to_vec())).await.is_err() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(format!("reading from the TURN server: {e}")),
            },
            msg = out.recv() => match msg {
                Some(bytes) => wr
                    .write_all(&bytes)
                    .await
                    .map_err(|e| format!("writing to the TURN server: {e}"))?,
                None => {
                    let _ = wr.shutdown().await;
                    return Ok(());
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_turn_urls() {
        let u = TurnUrl::parse("turn:192.0.2.1:3478?transport=tcp", "u", "p").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.transport),
            ("192.0.2.1", 3478, TurnTransport::Tcp)
        );
        let u = TurnUrl::parse("turns:turn.example.com", "u", "p").unwrap();
        assert_eq!((u.port, u.transport), (5349, TurnTransport::Tls));
        let u = TurnUrl::parse("turn:[2001:db8::1]:3479", "u", "p").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.transport),
            ("2001:db8::1", 3479, TurnTransport::Udp)
        );
        for bad in [
            "stun:x",
            "turn:",
            "turn:x:notaport",
            "turns:x?transport=udp",
            "turn:x?foo=bar",
            "nothing",
            "turn:[::1",
        ] {
            let e = TurnUrl::parse(bad, "u", "p").unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
