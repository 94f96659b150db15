//! Configuration: TOML at the XDG config path (or `--config`), every field with a default, passed
//! explicitly (no global). config.example.toml documents every key and is parsed by a test.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Who you are. Default: the OS user name.
    pub user: Option<String>,
    /// Signed token for a switchboard that is not in dev mode.
    pub token: Option<String>,
    /// Shown to your other devices. Default: the host name.
    pub device_name: Option<String>,
    /// ws://host:port or wss://host:port of the switchboard. Default: the embedded one on the
    /// default port.
    pub server: Option<String>,
    /// A PEM file of CA certificates trusted for wss:// besides the system's (a private CA, or a
    /// self-signed switchboard certificate).
    pub ca_file: Option<PathBuf>,
    /// Accept transfer requests without asking.
    pub auto_accept_transfers: bool,
    /// One of your numbers (E.164), shown when you call or add a number (alternateCallerId).
    pub caller_id: Option<String>,
    pub devices: DevicesConfig,
    pub switchboard: SwitchboardConfig,
    pub log: LogConfig,
    /// The terminal softphone: contacts, auto-accept, redraw cap, key bindings.
    pub tui: crate::tui::TuiConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DevicesConfig {
    pub microphone: String,
    pub speaker: String,
    pub camera: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SwitchboardConfig {
    pub listen: String,
    /// How long a call rings before it ends with 408.
    pub ring_timeout_secs: u64,
    /// How long a device whose connection is lost keeps its place and its calls, waiting for
    /// it to reconnect; 0 ends its calls at once.
    pub reconnect_window_secs: u64,
    /// A device that sends nothing (not even a keepalive) for this long is taken as lost.
    pub keepalive_timeout_secs: u64,
    /// Longest voicemail message.
    pub voicemail_max_secs: u64,
    pub data_dir: Option<PathBuf>,
    /// Phone numbers (E.164) the switchboard gives its users: `"+15550100" = "alice"`.
    pub numbers: std::collections::BTreeMap<String, String>,
    /// UDP port for every device's media. Default: the listen port + 1.
    pub media_port: Option<u16>,
    /// Address the media port binds. Default: the listen address's IP.
    pub media_ip: Option<std::net::IpAddr>,
    /// Threads for media (each holds some devices' links). Default: one per core.
    pub media_threads: Option<usize>,
    /// The public address of a host behind a 1:1 NAT (a cloud VM), announced to devices.
    pub public_ip: Option<std::net::IpAddr>,
    /// TURN relays for devices on networks that drop UDP.
    pub turn: TurnSettings,
    /// PEM certificate chain and key: with both, the switchboard serves wss:// (TLS).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Browser origins (scheme://host[:port]) allowed to open a WebSocket.
    pub allowed_origins: Vec<String>,
    /// Serve plain ws:// on an address that is not loopback anyway.
    pub insecure_plain_ws: bool,
}

/// `[switchboard.turn]`: the TURN servers devices are told about, and the secret shared with
/// them (coturn's `static-auth-secret`) to mint short-lived credentials.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TurnSettings {
    pub urls: Vec<String>,
    pub secret: Option<String>,
    /// A file holding the secret (first line), instead of `secret`.
    pub secret_file: Option<PathBuf>,
    /// How long a credential handed out stays valid.
    pub ttl_secs: u64,
}

impl Default for TurnSettings {
    fn default() -> Self {
        TurnSettings {
            urls: Vec::new(),
            secret: None,
            secret_file: None,
            ttl_secs: 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "dialtone=debug,webrtc=warn".
    pub level: String,
    /// Log file. Default: dialtone.log in the XDG state (or data) dir.
    pub file: Option<PathBuf>,
}

pub const DEFAULT_PORT: u16 = 7450;

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig {
            microphone: "default".into(),
            speaker: "default".into(),
            camera: None,
        }
    }
}

impl Default for SwitchboardConfig {
    fn default() -> Self {
        SwitchboardConfig {
            listen: format!("127.0.0.1:{DEFAULT_PORT}"),
            ring_timeout_secs: 30,
            reconnect_window_secs: 30,
            keepalive_timeout_secs: 5,
            voicemail_max_secs: 120,
            data_dir: None,
            numbers: Default::default(),
            media_port: None,
            media_ip: None,
            media_threads: None,
            public_ip: None,
            turn: TurnSettings::default(),
            tls_cert: None,
            tls_key: None,
            allowed_origins: Vec::new(),
            insecure_plain_ws: false,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// Loads `path`, or the default path if it exists, or the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => match default_path() {
                Some(p) => (p, false),
                None => return Ok(Config::default()),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Parses TOML; the error names the file, the key and the bad value (toml's message quotes
    /// the offending line and column).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate().map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("devices.microphone", &self.devices.microphone),
            ("devices.speaker", &self.devices.speaker),
        ] {
            v.parse::<crate::devices::DeviceSpec>()
                .map_err(|e| format!("key {key} = {v:?}: {e}"))?;
        }
        self.switchboard
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| {
                format!(
                    "key switchboard.listen = {:?}: {e}",
                    self.switchboard.listen
                )
            })?;
        for url in &self.switchboard.turn.urls {
            crate::media::net::turn::TurnUrl::parse(url, "", "")
                .map_err(|e| format!("key switchboard.turn.urls: {e}"))?;
        }
        if !self.switchboard.turn.urls.is_empty()
            && self.switchboard.turn.secret.is_none()
            && self.switchboard.turn.secret_file.is_none()
        {
            return Err(
                "key switchboard.turn.urls is set but neither switchboard.turn.secret nor \
                 switchboard.turn.secret_file is: devices could not authenticate to the relay"
                    .into(),
            );
        }
        if self.switchboard.turn.ttl_secs < 60 {
            return Err(format!(
                "key switchboard.turn.ttl_secs = {}: must be at least 60",
                self.switchboard.turn.ttl_secs
            ));
        }
        if self.switchboard.ring_timeout_secs == 0 {
            return Err("key switchboard.ring_timeout_secs = 0: must be at least 1".into());
        }
        if self.switchboard.keepalive_timeout_secs < 2 {
            return Err(format!(
                "key switchboard.keepalive_timeout_secs = {}: must be at least 2 (devices send a keepalive every second)",
                self.switchboard.keepalive_timeout_secs
            ));
        }
        if let Some(c) = &self.caller_id
            && !matches!(crate::core::Callee::parse(c), crate::core::Callee::Phone(_))
        {
            return Err(format!(
                "key caller_id = {c:?}: must be an E.164 number, like \"+15550100\""
            ));
        }
        if let Some(s) = &self.server
            && !(s.starts_with("ws://") || s.starts_with("wss://"))
        {
            return Err(format!(
                "key server = {s:?}: must start with ws:// or wss://"
            ));
        }
        crate::server::listener::Origins::new(&self.switchboard.allowed_origins)
            .map_err(|e| format!("key switchboard.allowed_origins: {e}"))?;
        if self.switchboard.tls_cert.is_some() != self.switchboard.tls_key.is_some() {
            return Err(
                "keys switchboard.tls_cert and switchboard.tls_key go together: set both or neither"
                    .into(),
            );
        }
        self.tui.validate()?;
        Ok(())
    }
}

pub fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "dialtone")
}

pub fn default_path() -> Option<PathBuf> {
    project_dirs().map(|d| d.config_dir().join("config.toml"))
}

pub fn default_data_dir() -> PathBuf {
    project_dirs()
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".dialtone"))
}

pub fn default_log_file() -> PathBuf {
    project_dirs()
        .map(|d| d.state_dir().unwrap_or(d.data_dir()).join("dialtone.log"))
        .unwrap_or_else(|| PathBuf::from("dialtone.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_and_names_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        Config::parse(&text, &path).unwrap();
        // Every key the example mentions (even commented out) must exist, and vice versa.
        let uncommented: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| r.contains(" = ") || r.starts_with('['))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let full: Config =
            toml::from_str(&uncommented).expect("example with every key uncommented parses");
        assert_eq!(full.user.as_deref(), Some("alice"));
        assert!(
            full.devices.camera.is_some()
                && full.log.file.is_some()
                && full.switchboard.data_dir.is_some()
        );
        assert!(full.token.is_some() && full.device_name.is_some() && full.server.is_some());
        assert_eq!(full.caller_id.as_deref(), Some("+15550100"));
        assert!(!full.tui.keys.0.is_empty());
        assert!(
            full.switchboard.media_port.is_some()
                && full.switchboard.media_ip.is_some()
                && full.switchboard.media_threads.is_some()
                && full.switchboard.public_ip.is_some()
        );
        assert!(
            !full.switchboard.turn.urls.is_empty()
                && full.switchboard.turn.secret.is_some()
                && full.switchboard.turn.secret_file.is_some()
        );
        assert!(full.ca_file.is_some());
        assert!(full.switchboard.tls_cert.is_some() && full.switchboard.tls_key.is_some());
    }

    #[test]
    fn bad_values_are_named() {
        let p = Path::new("/x/config.toml");
        let e = Config::parse("[devices]\nmicrophone = \"file:\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/x/config.toml") && e.contains("devices.microphone"),
            "{e}"
        );
        let e = Config::parse("[switchboard]\nring_timeout_secs = \"soon\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ring_timeout_secs") && e.contains("soon"), "{e}");
        let e = Config::parse("colour = 1\n", p).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
        let e = Config::parse("[tui.keys]\nhang_up = \"ctrl-\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/x/config.toml") && e.contains("tui.keys.hang_up") && e.contains("ctrl-"),
            "{e}"
        );
        let e = Config::parse("caller_id = \"alice\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("caller_id") && e.contains("alice"), "{e}");
        let e = Config::parse("server = \"http://x\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("http://x"), "{e}");
        let e = Config::parse(
            "[switchboard.turn]\nurls = [\"stun:x\"]\nsecret = \"s\"\n",
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("switchboard.turn.urls") && e.contains("stun:x"),
            "{e}"
        );
        let e = Config::parse("[switchboard.turn]\nurls = [\"turn:x\"]\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("secret"), "{e}");
        let e = Config::parse("[switchboard]\npublic_ip = \"a.b\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("public_ip") && e.contains("a.b"), "{e}");
        let e = Config::parse("[switchboard]\nallowed_origins = [\"evil.example\"]\n", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("switchboard.allowed_origins") && e.contains("evil.example"),
            "{e}"
        );
        let e = Config::parse("[switchboard]\ntls_cert = \"c.pem\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls_key"), "{e}");
    }
}
