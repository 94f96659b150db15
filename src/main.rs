//! Wiring only: parse the command line, load config, set up tracing, start the right thing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use dialtone::config::{self, Config};
use dialtone::devices::DeviceSpec;
use dialtone::engine::{self, EngineOptions};
use dialtone::media::net::ClientConfig;
use dialtone::server::listener::TransportOptions;
use dialtone::server::{self, ServeOptions};

#[derive(Parser)]
#[command(
    name = "dialtone",
    version,
    about = "A softphone in the terminal, and the switchboard it talks to"
)]
struct Cli {
    /// Config file (default: config.toml in the XDG config dir).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    tui: TuiArgs,
    #[command(subcommand)]
    command: Option<Cmd>,
}

/// Who this device is and what it uses: shared by the softphone and the agent.
#[derive(Args)]
struct EndpointArgs {
    /// Switchboard URL, e.g. wss://host:7450 (or ws:// on this machine). Default: `server` from
    /// the config, else a switchboard on this machine (the softphone starts one in-process when
    /// none is running).
    #[arg(long)]
    server: Option<String>,
    /// Extra CA certificates (PEM) to trust for wss://, besides the system's: a private CA or a
    /// self-signed switchboard certificate. Default: `ca_file` from the config.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Who you are. Default: `user` from the config, else the OS user.
    #[arg(long)]
    user: Option<String>,
    #[arg(long, env = "DIALTONE_TOKEN")]
    token: Option<String>,
    /// The name your other devices see. Default: the host name.
    #[arg(long)]
    device_name: Option<String>,
    /// default | NAME | file:PATH.wav | tone:HZ | silence
    #[arg(long)]
    mic: Option<String>,
    /// default | NAME | record:PATH.wav | silence
    #[arg(long)]
    speaker: Option<String>,
    #[arg(long)]
    camera: Option<String>,
    /// Accept every incoming call at once.
    #[arg(long)]
    auto_answer: bool,
}

/// With no subcommand, `dialtone` is the terminal softphone; these are its flags.
#[derive(Args)]
struct TuiArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Switchboard database, call history and saved devices (default: the XDG data dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log file (default: dialtone.log in the XDG state dir).
    #[arg(long)]
    log_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the switchboard: signaling, identities, routing, media relay, echo service.
    Serve(ServeArgs),
    /// The call engine with no screen, driven by JSON lines on stdin (docs/agent.md).
    Agent(AgentArgs),
    /// List microphones, speakers and cameras.
    Devices {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Issue or revoke sign-in tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Give phone numbers (E.164) to users; a running switchboard picks changes up within 2 s.
    #[command(subcommand)]
    Number(NumberCmd),
}

#[derive(Subcommand)]
enum NumberCmd {
    /// Give NUMBER to USER (taking it from whoever had it).
    Assign {
        number: String,
        user: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Take NUMBER away from its user.
    Unassign {
        number: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// List the numbers and who owns them.
    List {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Admit any user name without a token, from loopback only.
    #[arg(long)]
    dev: bool,
    /// Address to listen on; port 0 picks a free one (printed).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where the SQLite database and the token key live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seconds a call rings before it ends with 408.
    #[arg(long)]
    ring_timeout: Option<u64>,
    /// Seconds a device whose connection is lost keeps its place and calls (0: none).
    #[arg(long)]
    reconnect_window: Option<u64>,
    /// Longest voicemail message, in seconds.
    #[arg(long)]
    voicemail_max: Option<u64>,
    /// UDP port for all media (default: the listen port + 1; 0 picks a free one).
    #[arg(long)]
    media_port: Option<u16>,
    /// Threads for media (each holds some devices' links); default: one per core.
    #[arg(long)]
    media_threads: Option<usize>,
    /// Address the media port binds (default: the listen address's IP; 0.0.0.0 for every
    /// interface). A switchboard behind a reverse proxy listens on loopback for signaling but
    /// must serve media on an address devices reach.
    #[arg(long)]
    media_ip: Option<std::net::IpAddr>,
    /// The public address to announce when this host sits behind a 1:1 NAT (a cloud VM).
    #[arg(long)]
    public_ip: Option<std::net::IpAddr>,
    /// A TURN server devices may relay through (repeatable), e.g.
    /// turn:turn.example.com:3478?transport=tcp. Needs the shared secret.
    #[arg(long = "turn-url")]
    turn_urls: Vec<String>,
    /// File holding the secret shared with the TURN server (coturn's static-auth-secret).
    #[arg(long)]
    turn_secret_file: Option<PathBuf>,
    /// PEM certificate chain: with --tls-key, serve wss:// (TLS) on the one port.
    #[arg(long, value_name = "CERT.pem")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "KEY.pem")]
    tls_key: Option<PathBuf>,
    /// A browser origin (scheme://host[:port]) allowed to open a WebSocket; repeatable. Requests
    /// with any other Origin header get 403.
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Serve plain ws:// on an address that is not loopback anyway (unencrypted; logs a warning).
    #[arg(long)]
    insecure_plain_ws: bool,
}

#[derive(Args)]
struct AgentArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Accept every transfer request at once.
    #[arg(long)]
    auto_accept_transfers: bool,
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print a new token for a user.
    Issue {
        #[arg(long)]
        user: String,
        /// Lifetime, e.g. 24h, 30m, 7days.
        #[arg(long, default_value = "24h")]
        ttl: humantime::Duration,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Revoke a token (it stops working at the next sign-in).
    Revoke {
        token: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = Config::load(cli.config.as_deref())?;
    // The agent is one device: a single-threaded runtime keeps each packet's hand-offs on one
    // thread (measured: fewer context switches, less CPU per call). The switchboard serves many.
    let rt = match cli.command {
        Some(Cmd::Agent(_) | Cmd::Serve(_)) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        _ => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
    };
    match cli.command {
        Some(Cmd::Serve(a)) => {
            init_stderr_logging(&cfg, "info");
            rt.block_on(serve(cfg, a))
        }
        Some(Cmd::Agent(a)) => {
            init_stderr_logging(&cfg, "warn");
            rt.block_on(agent(cfg, a))
        }
        Some(Cmd::Devices { json }) => devices(json),
        Some(Cmd::Token(t)) => token(&cfg, t),
        Some(Cmd::Number(n)) => number(&cfg, n),
        // The TUI logs to a file (tui::run sets that up), never to the screen.
        None => {
            let t = cli.tui;
            let opts = dialtone::tui::TuiOptions {
                server: t.endpoint.server,
                ca_file: t.endpoint.ca,
                user: t.endpoint.user,
                token: t.endpoint.token,
                device_name: t.endpoint.device_name,
                mic: t.endpoint.mic,
                speaker: t.endpoint.speaker,
                camera: t.endpoint.camera,
                auto_accept: t.endpoint.auto_answer,
                data_dir: t.data_dir,
                log_file: t.log_file,
            };
            rt.block_on(dialtone::tui::run(&cfg, &cfg.tui, opts))
        }
    }
}

/// Logs go to stderr for the headless commands (stdout is the agent's protocol channel) and to
/// a file for the TUI. `DIALTONE_LOG` overrides the configured filter.
fn init_stderr_logging(cfg: &Config, default: &str) {
    let filter = std::env::var("DIALTONE_LOG").ok().unwrap_or_else(|| {
        if cfg.log.level == config::LogConfig::default().level {
            default.to_string()
        } else {
            cfg.log.level.clone()
        }
    });
    // webrtc-rs warns about benign things on every connection (no server_name for DTLS, ICE
    // checks before candidates arrive); keep them out unless asked for.
    let filter = if std::env::var("DIALTONE_LOG").is_ok() {
        filter
    } else {
        format!("{filter},rtc=error,rtc_ice=error,rtc_dtls=error,pulseaudio::client::reactor=off")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn data_dir(cfg: &Config, flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| cfg.switchboard.data_dir.clone())
        .unwrap_or_else(config::default_data_dir)
}

async fn serve(cfg: Config, a: ServeArgs) -> anyhow::Result<()> {
    let listen = match a.listen {
        Some(l) => l,
        None => cfg
            .switchboard
            .listen
            .parse()
            .context("switchboard.listen")?,
    };
    let turn = turn_config(&cfg, &a)?;
    let opts = ServeOptions {
        listen,
        dev: a.dev,
        data_dir: data_dir(&cfg, a.data_dir),
        ring_timeout: Duration::from_secs(
            a.ring_timeout
                .unwrap_or(cfg.switchboard.ring_timeout_secs)
                .max(1),
        ),
        reconnect_window: Duration::from_secs(
            a.reconnect_window
                .unwrap_or(cfg.switchboard.reconnect_window_secs),
        ),
        keepalive_timeout: Duration::from_secs(cfg.switchboard.keepalive_timeout_secs),
        media: {
            let public_ip = a.public_ip.or(cfg.switchboard.public_ip);
            let mut m = server::media::MediaListen::next_to(listen, public_ip);
            if let Some(p) = a.media_port.or(cfg.switchboard.media_port) {
                m.port = p;
            }
            if let Some(ip) = a.media_ip.or(cfg.switchboard.media_ip) {
                m.ip = ip;
            }
            m
        },
        turn,
        media_threads: a
            .media_threads
            .or(cfg.switchboard.media_threads)
            .unwrap_or_else(server::media::default_shards)
            .max(1),
        voicemail_max: Duration::from_secs(
            a.voicemail_max
                .unwrap_or(cfg.switchboard.voicemail_max_secs)
                .max(1),
        ),
        numbers: cfg.switchboard.numbers.clone(),
        transport: TransportOptions {
            tls_cert: a.tls_cert.or(cfg.switchboard.tls_cert.clone()),
            tls_key: a.tls_key.or(cfg.switchboard.tls_key.clone()),
            allowed_origins: cfg
                .switchboard
                .allowed_origins
                .iter()
                .chain(&a.allow_origin)
                .cloned()
                .collect(),
            insecure_plain_ws: a.insecure_plain_ws || cfg.switchboard.insecure_plain_ws,
        },
    };
    let handle = server::serve(opts.clone()).await?;
    // The contract: one line naming the address, once connections are accepted.
    println!(
        "dialtone switchboard listening on {} (media on udp {}; data in {}{}{})",
        handle.addr,
        media_summary(&handle.media_addrs),
        opts.data_dir.display(),
        if opts.transport.tls_cert.is_some() {
            ", wss"
        } else {
            ""
        },
        if opts.dev { ", dev mode" } else { "" }
    );
    tokio::select! {
        r = handle.wait() => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// The TURN relays to hand out: `--turn-url`s, or `[switchboard.turn]`, with the secret from
/// `--turn-secret-file`, `DIALTONE_TURN_SECRET`, or the config.
fn turn_config(
    cfg: &Config,
    a: &ServeArgs,
) -> anyhow::Result<Option<server::switchboard::network::TurnConfig>> {
    let t = &cfg.switchboard.turn;
    let urls = if a.turn_urls.is_empty() {
        t.urls.clone()
    } else {
        for u in &a.turn_urls {
            dialtone::media::net::turn::TurnUrl::parse(u, "", "")
                .map_err(|e| anyhow::anyhow!("--turn-url: {e}"))?;
        }
        a.turn_urls.clone()
    };
    if urls.is_empty() {
        return Ok(None);
    }
    let file = a.turn_secret_file.as_ref().or(t.secret_file.as_ref());
    let secret = match (file, std::env::var("DIALTONE_TURN_SECRET").ok(), &t.secret) {
        (Some(f), _, _) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the TURN secret from {}", f.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        (None, Some(s), _) => s,
        (None, None, Some(s)) => s.clone(),
        (None, None, None) => anyhow::bail!(
            "TURN servers are set ({}) but no secret: pass --turn-secret-file, set \
             DIALTONE_TURN_SECRET, or [switchboard.turn] secret",
            urls.join(", ")
        ),
    };
    anyhow::ensure!(!secret.is_empty(), "the TURN secret is empty");
    Ok(Some(server::switchboard::network::TurnConfig {
        urls,
        secret,
        ttl: Duration::from_secs(t.ttl_secs),
    }))
}

async fn agent(cfg: Config, args: AgentArgs) -> anyhow::Result<()> {
    let a = args.endpoint;
    let server = a
        .server
        .or(cfg.server.clone())
        .unwrap_or_else(|| format!("ws://127.0.0.1:{}", config::DEFAULT_PORT));
    let mic: DeviceSpec = a
        .mic
        .unwrap_or(cfg.devices.microphone.clone())
        .parse()
        .context("--mic")?;
    let speaker: DeviceSpec = a
        .speaker
        .unwrap_or(cfg.devices.speaker.clone())
        .parse()
        .context("--speaker")?;
    let user = a.user.or(cfg.user.clone()).or_else(os_user);
    let opts = EngineOptions {
        server,
        ca_file: a.ca.or(cfg.ca_file.clone()),
        user,
        token: a.token.or(cfg.token.clone()),
        device_name: a
            .device_name
            .or(cfg.device_name.clone())
            .unwrap_or_else(host_name),
        mic,
        speaker,
        camera: a.camera.or(cfg.devices.camera.clone()),
        auto_answer: a.auto_answer,
        auto_accept_transfers: args.auto_accept_transfers || cfg.auto_accept_transfers,
        media: ClientConfig::new(false),
    };
    let (handle, events) = engine::start(opts)?;
    dialtone::agent::run(handle, events).await
}

/// "7451 at 10.0.0.5, 127.0.0.1" for the start-up line.
fn media_summary(addrs: &[SocketAddr]) -> String {
    let port = addrs.first().map_or(0, SocketAddr::port);
    let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    format!("port {port} at {}", ips.join(", "))
}

fn devices(json: bool) -> anyhow::Result<()> {
    let list = dialtone::devices::list_devices();
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", list.to_table());
    }
    Ok(())
}

fn token(cfg: &Config, t: TokenCmd) -> anyhow::Result<()> {
    use dialtone::server::store::{Store, load_or_create_key};
    use dialtone::server::token::Claims;
    let now = server::runtime::now().unix_ms / 1000;
    match t {
        TokenCmd::Issue {
            user,
            ttl,
            data_dir: dd,
        } => {
            dialtone::core::validate_user_name(&user).map_err(anyhow::Error::msg)?;
            let dir = data_dir(cfg, dd);
            let key = load_or_create_key(&dir)?;
            let claims = Claims {
                sub: user,
                iat: now,
                exp: now + ttl.as_secs(),
                jti: uuid::Uuid::new_v4().to_string(),
            };
            println!("{}", key.issue(&claims));
            Ok(())
        }
        TokenCmd::Revoke {
            token,
            data_dir: dd,
        } => {
            let dir = data_dir(cfg, dd);
            let key = load_or_create_key(&dir)?;
            // An expired token can still be revoked: only its signature matters here.
            let claims = key.verify(&token, 0).context("cannot revoke that token")?;
            Store::open(&Store::path_in(&dir))?.revoke(&claims.jti, now * 1000)?;
            println!("revoked token {} of {}", claims.jti, claims.sub);
            Ok(())
        }
    }
}

fn number(cfg: &Config, n: NumberCmd) -> anyhow::Result<()> {
    use dialtone::server::store::Store;
    let open = |dd: Option<PathBuf>| -> anyhow::Result<Store> {
        let dir = data_dir(cfg, dd);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
        Store::open(&Store::path_in(&dir))
    };
    match n {
        NumberCmd::Assign {
            number,
            user,
            data_dir: dd,
        } => {
            open(dd)?.assign_number(&number, &user)?;
            println!("{number} now rings {user}");
        }
        NumberCmd::Unassign {
            number,
            data_dir: dd,
        } => {
            if !open(dd)?.unassign_number(&number)? {
                anyhow::bail!("nobody owns {number}");
            }
            println!("{number} is free");
        }
        NumberCmd::List { data_dir: dd } => {
            for (number, user) in open(dd)?.numbers()? {
                println!("{number}\t{user}");
            }
        }
    }
    Ok(())
}

fn os_user() -> Option<String> {
    std::env::var("USER")
        .ok()
        .map(|u| u.to_ascii_lowercase())
        .filter(|u| dialtone::core::validate_user_name(u).is_ok())
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "device".into())
}
