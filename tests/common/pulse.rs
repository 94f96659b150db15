//! A private, headless PulseAudio with a null sink `test` (the default sink; its monitor is the
//! default source), in a temporary runtime directory so it cannot disturb another sound server
//! on the machine: the equivalent of shared/tools/start-pulse.sh for tests and benchmarks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A PulseAudio daemon of our own; killed (by its pid) when dropped, even if the test fails.
pub struct Pulse {
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    pid: Option<u32>,
}

impl Pulse {
    /// The daemon (its usual configuration, default.pa) with a null sink `test` as default.
    pub fn start() -> Pulse {
        let mut pulse = Pulse::prepare();
        pulse.launch(&[]);
        pulse.test_sink_as_default();
        pulse
    }

    /// Its directories, with no daemon yet: commands made now talk to a socket nobody listens
    /// on until [`Pulse::run_minimal`].
    pub fn prepare() -> Pulse {
        let tmp = tempfile::Builder::new()
            .prefix("dialtone-pulse-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("home")).unwrap();
        Pulse {
            dir,
            _tmp: tmp,
            pid: None,
        }
    }

    /// Starts a prepared daemon with only the native protocol and stream rescue (nothing that
    /// moves streams or restores devices on its own), and a null sink `test` as default.
    pub fn run_minimal(&mut self) {
        self.launch(&[
            "-n",
            "-L",
            "module-native-protocol-unix",
            "-L",
            "module-rescue-streams",
        ]);
        self.test_sink_as_default();
    }

    fn launch(&mut self, args: &[&str]) {
        let started = self
            .command("pulseaudio")
            .args(["-D", "--exit-idle-time=-1", "--disallow-exit"])
            .args(args)
            .arg(format!(
                "--log-target=file:{}",
                self.dir.join("pulse.log").display()
            ))
            .status()
            .expect("run pulseaudio");
        assert!(started.success(), "pulseaudio -D failed: {}", self.log());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pactl(&["info"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "pulse did not start: {}",
                self.log()
            );
            std::thread::park_timeout(Duration::from_millis(100));
        }
        self.pid = std::fs::read_to_string(self.dir.join("pulse/pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
    }

    fn test_sink_as_default(&self) {
        self.add_sink("test");
        self.ok(&["set-default-sink", "test"]);
        self.ok(&["set-default-source", "test.monitor"]);
    }

    /// `pactl ARGS...`, which must succeed; its output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.pactl(args);
        assert!(
            out.status.success(),
            "pactl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Loads a null sink; returns its module index (for unloading it).
    pub fn add_sink(&self, name: &str) -> String {
        self.ok(&[
            "load-module",
            "module-null-sink",
            &format!("sink_name={name}"),
            "rate=48000",
            "channels=2",
        ])
    }

    /// A command that talks to this daemon only: its own runtime dir, home (for the cookie) and
    /// socket.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        self.env(&mut c);
        c
    }

    /// Points `cmd` at this daemon (runtime dir, home for the cookie, socket).
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("XDG_RUNTIME_DIR", &self.dir)
            .env("HOME", self.dir.join("home"))
            .env("PULSE_SERVER", self.server())
    }

    /// The daemon's process id, for CPU figures.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// `pactl load-module MODULE ARGS...`, which must succeed.
    pub fn load_module(&self, module: &str, args: &[&str]) {
        let out = self.pactl(&[&["load-module", module][..], args].concat());
        assert!(
            out.status.success(),
            "pactl load-module {module} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn server(&self) -> String {
        format!("unix:{}", self.dir.join("pulse/native").display())
    }

    pub fn pactl(&self, args: &[&str]) -> Output {
        self.command("pactl")
            .args(args)
            .output()
            .expect("run pactl")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pulse.log")).unwrap_or_default()
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.command("pulseaudio").arg("--kill").status();
        let Some(pid) = self.pid else { return };
        let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
        let deadline = Instant::now() + Duration::from_secs(3);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(pid) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

pub fn pulse_installed() -> bool {
    Command::new("pulseaudio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
