//! Transport security with real processes: a switchboard serving wss:// with a certificate made
//! here (rcgen), agents that trust it (`--ca`) or not, the refusal of plain ws:// off loopback,
//! the Origin check, the `--dev` proxy rule, and a silent client that must not block others.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

fn tls_server(dir: &Path, p: &Pki, extra: &[&str]) -> Server {
    let mut args = vec![
        "--tls-cert",
        p.cert.to_str().unwrap(),
        "--tls-key",
        p.key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start(dir, &args)
}

fn port(server: &Server) -> u16 {
    server.url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Waits for the TLS refusal event and returns its message; checks it is a proper
/// connectionStateChanged and that the agent never signed in.
fn refusal(agent: &mut Agent) -> String {
    let e = agent.wait_event("connectionStateChanged", |e| e.get("message").is_some(), 15);
    assert_eq!(e["newState"], "Disconnected", "{e}");
    assert_eq!(e["reason"], "connectionIssue", "{e}");
    e["message"].as_str().unwrap().to_string()
}

/// Collects events for a while (the agent keeps retrying meanwhile) and checks it never signed in
/// and reported the same failure only once.
fn stays_refused(agent: &mut Agent) {
    agent.drain(Duration::from_secs(2));
    let states: Vec<&Value> = agent
        .events
        .iter()
        .filter(|e| e["event"] == "connectionStateChanged")
        .collect();
    assert!(
        states.iter().all(|e| e["newState"] == "Disconnected"),
        "{states:?}"
    );
    assert_eq!(
        states.len(),
        1,
        "one event per distinct failure: {states:?}"
    );
    let r = agent.cmd(json!({"cmd": "call", "to": ["echo"]}));
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["code"], "notConnected", "{r}");
}

#[test]
fn wss_sign_in_and_echo_call_with_ca() {
    let dir = tempdir();
    let p = Pki::new(dir.path(), "good", &["localhost"]);
    let server = tls_server(dir.path(), &p, &["--dev"]);
    let url = format!("wss://localhost:{}", port(&server));
    let rec = dir.path().join("rec.wav");
    let mut alice = Agent::start_url(
        &url,
        Some("alice"),
        &[
            "--ca",
            p.ca.to_str().unwrap(),
            "--mic",
            "tone:440",
            "--speaker",
            &format!("record:{}", rec.display()),
        ],
    )
    .connected();
    let id = alice.call("echo");
    alice.wait_state(&id, "Connected");
    // Let a second of the tone come back through the echo service.
    alice.drain(Duration::from_millis(1500));
    alice.ok(json!({"cmd": "hangUp", "callId": id}));
    assert_eq!(alice.wait_ended(&id), (0, 0));
    alice.quit();
    let heard = read_wav(&rec);
    assert!(
        tone_power(&heard, 440.0) > 1e-4,
        "the tone came back over the call set up through wss"
    );
}

#[test]
fn untrusted_certificate_is_refused_with_a_clear_event() {
    let dir = tempdir();
    let p = Pki::new(dir.path(), "good", &["localhost"]);
    let other = Pki::new(dir.path(), "other", &["localhost"]);
    let server = tls_server(dir.path(), &p, &["--dev"]);
    let url = format!("wss://localhost:{}", port(&server));
    let mut plain = Agent::start_url(
        &url,
        Some("alice"),
        &["--mic", "silence", "--speaker", "silence"],
    );
    let mut wrong_ca = Agent::start_url(
        &url,
        Some("bob"),
        &[
            "--mic",
            "silence",
            "--speaker",
            "silence",
            "--ca",
            other.ca.to_str().unwrap(),
        ],
    );
    for agent in [&mut plain, &mut wrong_ca] {
        let m = refusal(agent);
        assert!(m.contains("not trusted"), "{m}");
        assert!(m.contains("UnknownIssuer"), "{m}");
        assert!(m.contains("--ca FILE"), "{m}");
        stays_refused(agent);
    }
}

#[test]
fn hostname_mismatch_is_refused() {
    let dir = tempdir();
    let p = Pki::new(dir.path(), "good", &["localhost"]);
    let server = tls_server(dir.path(), &p, &["--dev"]);
    // The certificate names localhost only; the agent asks for 127.0.0.1.
    let url = format!("wss://127.0.0.1:{}", port(&server));
    let mut agent = Agent::start_url(
        &url,
        Some("alice"),
        &[
            "--mic",
            "silence",
            "--speaker",
            "silence",
            "--ca",
            p.ca.to_str().unwrap(),
        ],
    );
    let m = refusal(&mut agent);
    assert!(m.contains("not valid for 127.0.0.1"), "{m}");
    assert!(m.contains("NotValidForName"), "{m}");
    stays_refused(&mut agent);
}

/// Runs `dialtone serve ARGS` and waits (bounded) for it to exit; its status and stderr.
fn serve_exits(dir: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("switchboard"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dialtone serve {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

#[test]
fn plain_ws_off_loopback_needs_the_insecure_flag() {
    let dir = tempdir();
    let (status, err) = serve_exits(dir.path(), &["--listen", "0.0.0.0:0"]);
    assert!(!status.success());
    assert!(
        err.contains("refusing to serve plain ws:// on 0.0.0.0:0: it is not a loopback address"),
        "{err}"
    );
    assert!(
        err.contains("--tls-cert CERT.pem --tls-key KEY.pem")
            && err.contains("--insecure-plain-ws"),
        "{err}"
    );

    // With the flag it starts (and says so in a warning).
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--insecure-plain-ws",
            "--data-dir",
        ])
        .arg(dir.path().join("switchboard"))
        .env("DIALTONE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening on 0.0.0.0:"), "{line:?}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("unencrypted"), "{err}");
}

#[test]
fn bad_tls_files_are_named_at_start() {
    let dir = tempdir();
    let p = Pki::new(dir.path(), "good", &["localhost"]);
    let missing = dir.path().join("missing-cert.pem");
    let (status, err) = serve_exits(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            missing.to_str().unwrap(),
            "--tls-key",
            p.key.to_str().unwrap(),
        ],
    );
    assert!(!status.success());
    assert!(
        err.contains("TLS certificate") && err.contains("missing-cert.pem"),
        "{err}"
    );
    // A key file that holds a certificate instead.
    let (status, err) = serve_exits(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            p.cert.to_str().unwrap(),
            "--tls-key",
            p.cert.to_str().unwrap(),
        ],
    );
    assert!(!status.success());
    assert!(
        err.contains("TLS key") && err.contains("good-cert.pem"),
        "{err}"
    );
    let (status, err) = serve_exits(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            p.cert.to_str().unwrap(),
        ],
    );
    assert!(!status.success());
    assert!(err.contains("--tls-cert needs --tls-key"), "{err}");
    // The agent names a bad CA file too.
    let mut agent = Command::new(BIN)
        .args([
            "agent",
            "--server",
            "wss://localhost:1",
            "--mic",
            "silence",
            "--speaker",
            "silence",
            "--ca",
        ])
        .arg(&missing)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = agent.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the agent did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(
        err.contains("CA file") && err.contains("missing-cert.pem"),
        "{err}"
    );
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Opens a WebSocket with extra request headers; the HTTP status on refusal.
async fn open_ws(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        let name =
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    let attempt = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("an answer in time");
    match attempt {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("unexpected WebSocket error: {e}"),
    }
}

/// Sends a token-less hello and returns the answer (welcome or error), skipping pushed state.
async fn hello(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    user: &str,
) -> Value {
    let hello = json!({"type": "hello", "protocol": 1, "user": user, "deviceName": "raw"});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer to hello in time");
        match m {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "welcome" || v["type"] == "error" {
                    return v;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended before an answer: {other:?}"),
        }
    }
}

#[test]
fn foreign_origin_gets_403_and_allowed_origin_signs_in() {
    let dir = tempdir();
    let server = Server::start(
        dir.path(),
        &["--dev", "--allow-origin", "https://app.example"],
    );
    let url = server.url.clone();
    rt().block_on(async move {
        assert_eq!(
            open_ws(&url, &[("Origin", "https://evil.example")])
                .await
                .err(),
            Some(403)
        );
        // A look-alike of the allowed one is refused too.
        assert_eq!(
            open_ws(&url, &[("Origin", "https://app.example.evil.example")])
                .await
                .err(),
            Some(403)
        );
        let mut ws = open_ws(&url, &[("Origin", "https://app.example")])
            .await
            .expect("the allowed origin gets a WebSocket");
        assert_eq!(hello(&mut ws, "web").await["type"], "welcome");
        // No Origin at all (our own clients): unaffected.
        let mut ws = open_ws(&url, &[]).await.expect("no Origin is fine");
        assert_eq!(hello(&mut ws, "script").await["type"], "welcome");
    });
}

#[test]
fn agent_sends_no_origin_header() {
    // A fake switchboard that only reads the agent's upgrade request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let _agent = Agent::start_url(
        &url,
        Some("alice"),
        &["--mic", "silence", "--speaker", "silence"],
    );
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the agent never connected");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(conn.read(&mut byte).unwrap(), 1, "request ends early");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(!head.contains("\r\norigin:"), "{head}");
}

#[test]
fn dev_mode_proxied_loopback_needs_a_token() {
    let dir = tempdir();
    let server = Server::dev(dir.path());
    let url = server.url.clone();
    rt().block_on(async move {
        for header in ["X-Forwarded-For", "Forwarded", "X-Real-IP"] {
            let value = if header == "Forwarded" {
                "for=203.0.113.9"
            } else {
                "203.0.113.9"
            };
            let mut ws = open_ws(&url, &[(header, value)])
                .await
                .expect("the upgrade itself is fine");
            let v = hello(&mut ws, "mallory").await;
            assert_eq!(v["type"], "error", "{header}: {v}");
            assert_eq!(v["code"], "invalidToken", "{header}: {v}");
        }
        // The same connection without proxy headers is loopback: dev sign-in works.
        let mut ws = open_ws(&url, &[]).await.unwrap();
        assert_eq!(hello(&mut ws, "alice").await["type"], "welcome");
    });
}

#[test]
fn silent_tls_client_does_not_block_others() {
    let dir = tempdir();
    let p = Pki::new(dir.path(), "good", &["localhost"]);
    let server = tls_server(dir.path(), &p, &["--dev"]);
    let port = port(&server);
    // Connects and says nothing: no ClientHello, no request.
    let silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Starts a ClientHello and stalls in the middle of it.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let url = format!("wss://localhost:{port}");
    let _alice = Agent::start_url(
        &url,
        Some("alice"),
        &[
            "--mic",
            "silence",
            "--speaker",
            "silence",
            "--ca",
            p.ca.to_str().unwrap(),
        ],
    )
    .connected();
    drop((silent, stalled));
}

#[test]
fn plain_request_to_the_tls_port_is_told_to_use_wss() {
    let dir = tempdir();
    let p = Pki::new(dir.path(), "good", &["localhost"]);
    let server = tls_server(dir.path(), &p, &["--dev"]);
    let url = format!("ws://localhost:{}", port(&server));
    let mut agent = Agent::start_url(
        &url,
        Some("alice"),
        &["--mic", "silence", "--speaker", "silence"],
    );
    let m = refusal(&mut agent);
    assert!(m.contains("HTTP 400") && m.contains("wss://"), "{m}");
}
