//! The switchboard's front door: its one TCP port. A connection goes
//! TCP accept → TLS handshake (when configured) → one HTTP/1.1 request head → [`route`], which
//! turns WebSocket upgrades into signaling connections and answers anything else with a short
//! HTTP error. The REST API will branch off in `route`: it gets the parsed request and the stream.
//!
//! Also here: the policies that decide who may come in and how, as pure functions with unit
//! tests: which listen addresses may serve plain `ws://` ([`listen_policy`]), which browser
//! origins may open a WebSocket ([`Origins`]), and which requests came through a proxy on this
//! host ([`forwarded_by_proxy`]: such a request is never "loopback" for `--dev`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, bail};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::http::{self, HeaderMap};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// How the switchboard's port is secured and who may use it (from flags and `[switchboard]`).
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// PEM certificate chain; with `tls_key`, the port speaks TLS (`wss://`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Browser origins (`scheme://host[:port]`) allowed to open a WebSocket.
    pub allowed_origins: Vec<String>,
    /// Serve plain `ws://` on an address that is not loopback anyway.
    pub insecure_plain_ws: bool,
}

/// A client has this long to finish the TLS handshake and send its request head.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request head (request line and headers) accepted.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// Everything the accept path needs, built once at start-up.
pub struct Front {
    tls: Option<TlsAcceptor>,
    origins: Origins,
    ws_config: WebSocketConfig,
    handshake_timeout: Duration,
}

impl Front {
    /// Loads the certificate and key and checks the origins; errors name the bad file or value.
    pub fn new(opts: &TransportOptions, ws_config: WebSocketConfig) -> anyhow::Result<Front> {
        let tls = match (&opts.tls_cert, &opts.tls_key) {
            (Some(cert), Some(key)) => Some(TlsAcceptor::from(load_server_tls(cert, key)?)),
            (None, None) => None,
            (Some(_), None) => bail!("--tls-cert needs --tls-key (tls_key under [switchboard])"),
            (None, Some(_)) => bail!("--tls-key needs --tls-cert (tls_cert under [switchboard])"),
        };
        Ok(Front {
            tls,
            origins: Origins::new(&opts.allowed_origins).map_err(anyhow::Error::msg)?,
            ws_config,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// Where a listen address stands without TLS. `Err` is the refusal to start, `Ok(Some)` the
/// warning to log when `--insecure-plain-ws` overrides it.
pub fn listen_policy(
    addr: SocketAddr,
    tls: bool,
    insecure_plain_ws: bool,
) -> Result<Option<String>, String> {
    if tls || addr.ip().to_canonical().is_loopback() {
        return Ok(None);
    }
    if insecure_plain_ws {
        return Ok(Some(format!(
            "serving plain ws:// on {addr} (insecure_plain_ws): tokens and calls cross the network unencrypted"
        )));
    }
    Err(format!(
        "refusing to serve plain ws:// on {addr}: it is not a loopback address, so tokens and calls \
         would cross the network unencrypted; pass --tls-cert CERT.pem --tls-key KEY.pem (or tls_cert \
         and tls_key under [switchboard]) to serve wss://, or --insecure-plain-ws (or \
         insecure_plain_ws = true under [switchboard]) to serve plain ws:// anyway"
    ))
}

/// Reads a PEM certificate chain and key into a rustls server config (ring provider, TLS 1.3).
pub fn load_server_tls(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("cannot read TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        bail!(
            "TLS certificate {} holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)",
            cert.display()
        );
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => anyhow::anyhow!(
            "TLS key {} holds no private key (expected a PEM \"PRIVATE KEY\" block)",
            key.display()
        ),
        e => anyhow::anyhow!("cannot read TLS key {}: {e}", key.display()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .with_context(|| {
            format!(
                "TLS certificate {} and key {} do not make a usable pair",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

// ---- origins -----------------------------------------------------------------------------------

/// The browser origins allowed to open a WebSocket. Requests without `Origin` (our own clients,
/// scripts) are not affected; a request with one must match an entry exactly, compared as
/// `scheme://host[:port]` with scheme and host lowercased and the scheme's default port dropped
/// (browsers send `https://example.com`, never `https://example.com:443`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origins(Vec<String>);

impl Origins {
    pub fn new(allowed: &[String]) -> Result<Origins, String> {
        allowed
            .iter()
            .map(|o| {
                // A trailing slash in the config is forgiven; a path is not.
                let trimmed = o.strip_suffix('/').unwrap_or(o);
                normalize_origin(trimmed).ok_or_else(|| {
                    format!("allowed origin {o:?} is not scheme://host[:port], like \"https://app.example.com\"")
                })
            })
            .collect::<Result<_, _>>()
            .map(Origins)
    }

    /// Whether a request's `Origin` header value is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        normalize_origin(origin.trim()).is_some_and(|o| self.0.contains(&o))
    }
}

/// `scheme://host[:port]`, lowercased, the default port dropped; None if it is not that shape
/// (`null`, a path, credentials, an empty host, a bad port).
fn normalize_origin(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return None;
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let rest = rest.to_ascii_lowercase();
    // Split off a port, minding IPv6 literals in brackets.
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        let (inner, tail) = after.split_once(']')?;
        if inner.is_empty() {
            return None;
        }
        let host = format!("[{inner}]");
        match tail {
            "" => (host, None),
            t => (host, Some(t.strip_prefix(':')?)),
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.clone(), None),
        }
    };
    if host.is_empty() || host.contains(':') && !host.starts_with('[') {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    let default = match scheme.as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    };
    Some(match port {
        Some(p) if Some(p) != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

// ---- proxies -----------------------------------------------------------------------------------

/// Headers a reverse proxy adds. A request that carries one came through a proxy, so its TCP
/// peer (the proxy, often on this host) says nothing about where the client is.
const PROXY_HEADERS: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

pub fn forwarded_by_proxy(headers: &HeaderMap) -> bool {
    PROXY_HEADERS.iter().any(|h| headers.contains_key(*h))
}

/// Whether `--dev` may treat the client as being on this machine.
pub fn is_loopback(peer: SocketAddr, headers: &HeaderMap) -> bool {
    // A dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1.
    peer.ip().to_canonical().is_loopback() && !forwarded_by_proxy(headers)
}

// ---- the accept path ---------------------------------------------------------------------------

/// Any byte stream a connection can run on: plain TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Stream = Box<dyn Io>;

/// A WebSocket that passed the front door.
pub struct Upgraded {
    pub ws: WebSocketStream<Stream>,
    /// The client is on this machine and no proxy stands between (what `--dev` admits).
    pub loopback: bool,
}

/// Runs one connection's front door: TLS, the request head, the routing. `None` when it was
/// answered here (an error, a refused origin) or gave up (a timeout, a bad handshake).
/// Runs in the connection's own task, so a slow or silent client holds up nobody else.
pub async fn accept(front: Arc<Front>, tcp: TcpStream, peer: SocketAddr) -> Option<Upgraded> {
    let deadline = Instant::now() + front.handshake_timeout;
    let (stream, head, rest) = match tokio::time::timeout_at(deadline, open(&front, tcp)).await {
        Ok(Ok(Some(opened))) => opened,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "connection dropped before its request: {e:#}");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "no TLS handshake and request within {:?}", front.handshake_timeout);
            return None;
        }
    };
    let stream: Stream = if rest.is_empty() {
        stream
    } else {
        Box::new(Rewind::new(rest, stream))
    };
    route(&front, head, stream, peer).await
}

/// TLS (if configured) and the request head. `Ok(None)` when the client was answered already.
async fn open(
    front: &Front,
    tcp: TcpStream,
) -> anyhow::Result<Option<(Stream, http::Request<()>, Vec<u8>)>> {
    let mut stream: Stream = match &front.tls {
        None => Box::new(tcp),
        Some(acceptor) => {
            // A TLS connection starts with a handshake record (0x16). Anything else is most
            // likely plain HTTP: tell it which scheme to use rather than dropping it silently.
            let mut first = [0u8; 1];
            let n = tcp.peek(&mut first).await?;
            if n == 0 {
                return Ok(None);
            }
            if first[0] != 0x16 {
                let mut tcp = tcp;
                respond(
                    &mut tcp,
                    400,
                    "this switchboard speaks TLS: connect with wss:// (or https://)",
                )
                .await;
                return Ok(None);
            }
            Box::new(acceptor.accept(tcp).await.context("TLS handshake")?)
        }
    };
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf) {
            Ok(Some((req, len))) => {
                let rest = buf.split_off(len);
                return Ok(Some((stream, req, rest)));
            }
            Ok(None) if buf.len() > MAX_HEAD_BYTES => {
                respond(&mut stream, 431, "request head too large").await;
                return Ok(None);
            }
            Ok(None) => {}
            Err(why) => {
                respond(&mut stream, 400, &why).await;
                return Ok(None);
            }
        }
    }
}

/// Parses a request head; `Ok(None)` until it is complete; the length of the head with it.
fn parse_head(buf: &[u8]) -> Result<Option<(http::Request<()>, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad HTTP request: {e}")),
    };
    let mut b = http::Request::builder()
        .method(req.method.unwrap_or("GET"))
        .uri(req.path.unwrap_or("/"));
    for h in req.headers.iter() {
        b = b.header(h.name, h.value);
    }
    b.body(())
        .map(|r| Some((r, len)))
        .map_err(|e| format!("bad HTTP request: {e}"))
}

/// What a request is for. Today: WebSocket upgrades (signaling) on any path; everything else
/// gets 404. The REST API branches here, with the same request and stream.
async fn route(
    front: &Front,
    req: http::Request<()>,
    mut stream: Stream,
    peer: SocketAddr,
) -> Option<Upgraded> {
    if !wants_websocket(req.headers()) {
        respond(
            &mut stream,
            404,
            "nothing here: the switchboard speaks WebSocket",
        )
        .await;
        return None;
    }
    if let Some(origin) = req.headers().get(http::header::ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|o| front.origins.allows(o));
        if !allowed {
            tracing::info!(%peer, ?origin, "WebSocket from an origin that is not allowed: 403");
            respond(
                &mut stream,
                403,
                "origin not allowed (see --allow-origin / allowed_origins)",
            )
            .await;
            return None;
        }
    }
    let key = match check_upgrade(&req) {
        Ok(key) => key,
        Err((status, why)) => {
            respond(&mut stream, status, why).await;
            return None;
        }
    };
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    if stream.write_all(answer.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        return None;
    }
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(front.ws_config)).await;
    Some(Upgraded {
        ws,
        loopback: is_loopback(peer, req.headers()),
    })
}

fn header_has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn wants_websocket(headers: &HeaderMap) -> bool {
    header_has_token(headers, http::header::UPGRADE, "websocket")
}

/// RFC 6455 §4.2.1: the request's method, version and key. The key on success.
fn check_upgrade(req: &http::Request<()>) -> Result<String, (u16, &'static str)> {
    let h = req.headers();
    if req.method() != http::Method::GET {
        return Err((400, "a WebSocket upgrade must be a GET"));
    }
    if !header_has_token(h, http::header::CONNECTION, "upgrade") {
        return Err((400, "a WebSocket upgrade needs Connection: Upgrade"));
    }
    if h.get(http::header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err((426, "WebSocket version 13 only"));
    }
    h.get(http::header::SEC_WEBSOCKET_KEY)
        .and_then(|k| k.to_str().ok())
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .ok_or((400, "a WebSocket upgrade needs Sec-WebSocket-Key"))
}

/// A short plain-text answer, then the connection closes.
async fn respond<S: AsyncWrite + Unpin + ?Sized>(stream: &mut S, status: u16, body: &str) {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let extra = if status == 426 {
        "Sec-WebSocket-Version: 13\r\n"
    } else {
        ""
    };
    let text = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}\n",
        body.len() + 1
    );
    let write = async {
        stream.write_all(text.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
}

/// A stream that first gives back bytes already read past the request head.
struct Rewind {
    prefix: Vec<u8>,
    pos: usize,
    inner: Stream,
}

impl Rewind {
    fn new(prefix: Vec<u8>, inner: Stream) -> Rewind {
        Rewind {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Origins {
        Origins::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn origins_match_exactly_on_scheme_host_and_port() {
        let o = origins(&["https://app.example.com", "http://localhost:8080"]);
        for yes in [
            "https://app.example.com",
            "HTTPS://App.Example.com",
            "https://app.example.com:443",
            "http://localhost:8080",
        ] {
            assert!(o.allows(yes), "{yes} should be allowed");
        }
        for no in [
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://evil.example",
            "https://app.example.com.evil.example",
            "https://evil.example/https://app.example.com",
            "http://localhost",
            "http://localhost:8081",
            "null",
            "",
            "https://app.example.com/",
            "https://user@app.example.com",
        ] {
            assert!(!o.allows(no), "{no:?} should be refused");
        }
        assert!(!Origins::default().allows("https://app.example.com"));
    }

    #[test]
    fn configured_origins_are_checked() {
        assert!(Origins::new(&["https://app.example.com/".into()]).is_ok());
        assert!(origins(&["https://[::1]:8443"]).allows("https://[::1]:8443"));
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "https://",
            "https://host:99999",
            "*",
        ] {
            let e = Origins::new(&[bad.into()]).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn proxy_headers_mean_not_loopback() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        assert!(is_loopback(peer, &h));
        assert!(!is_loopback("192.0.2.7:5000".parse().unwrap(), &h));
        assert!(is_loopback("[::ffff:127.0.0.1]:5000".parse().unwrap(), &h));
        for name in [
            "Forwarded",
            "X-Forwarded-For",
            "x-real-ip",
            "X-Forwarded-Proto",
        ] {
            h.clear();
            h.insert(
                http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "203.0.113.9".parse().unwrap(),
            );
            assert!(forwarded_by_proxy(&h), "{name}");
            assert!(!is_loopback(peer, &h), "{name}");
        }
        h.clear();
        h.insert("x-forwarded", "1".parse().unwrap());
        assert!(!forwarded_by_proxy(&h));
    }

    #[test]
    fn plain_ws_off_loopback_needs_the_insecure_flag() {
        let local: SocketAddr = "127.0.0.1:7450".parse().unwrap();
        let v6local: SocketAddr = "[::1]:7450".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:7450".parse().unwrap();
        let lan: SocketAddr = "192.0.2.1:0".parse().unwrap();
        assert_eq!(listen_policy(local, false, false), Ok(None));
        assert_eq!(listen_policy(v6local, false, false), Ok(None));
        assert_eq!(listen_policy(any, true, false), Ok(None));
        assert_eq!(listen_policy(lan, true, true), Ok(None));
        for addr in [any, lan] {
            let e = listen_policy(addr, false, false).unwrap_err();
            assert!(e.contains(&addr.to_string()), "{e}");
            assert!(
                e.contains("--tls-cert") && e.contains("--insecure-plain-ws"),
                "{e}"
            );
            assert!(listen_policy(addr, false, true).unwrap().is_some());
        }
    }

    #[test]
    fn request_heads_parse_in_pieces() {
        let text = b"GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\nleft";
        assert_eq!(parse_head(&text[..20]).unwrap().map(|(_, n)| n), None);
        let (req, len) = parse_head(text).unwrap().unwrap();
        assert_eq!(&text[len..], b"left");
        assert_eq!(req.uri().path(), "/x");
        assert!(wants_websocket(req.headers()));
        assert!(parse_head(b"\x16\x03\x01garbage\r\n\r\n").is_err());
    }

    #[test]
    fn upgrades_are_checked() {
        let req = |method: &str, conn: &str, version: &str, key: Option<&str>| {
            let mut b = http::Request::builder()
                .method(method)
                .uri("/")
                .header("Upgrade", "websocket")
                .header("Connection", conn)
                .header("Sec-WebSocket-Version", version);
            if let Some(k) = key {
                b = b.header("Sec-WebSocket-Key", k);
            }
            b.body(()).unwrap()
        };
        const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
        let key = Some(KEY);
        assert_eq!(
            check_upgrade(&req("GET", "keep-alive, Upgrade", "13", key)).unwrap(),
            KEY
        );
        assert_eq!(
            check_upgrade(&req("POST", "Upgrade", "13", key))
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(
            check_upgrade(&req("GET", "close", "13", key))
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(
            check_upgrade(&req("GET", "Upgrade", "8", key))
                .unwrap_err()
                .0,
            426
        );
        assert_eq!(
            check_upgrade(&req("GET", "Upgrade", "13", None))
                .unwrap_err()
                .0,
            400
        );
    }
}
