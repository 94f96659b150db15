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
    pub fn start() -> Pulse {
        let tmp = tempfile::Builder::new()
            .prefix("dialtone-pulse-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("home")).unwrap();
        let mut pulse = Pulse {
            dir,
            _tmp: tmp,
            pid: None,
        };
        let started = pulse
            .command("pulseaudio")
            .args(["-D", "--exit-idle-time=-1", "--disallow-exit"])
            .arg(format!(
                "--log-target=file:{}",
                pulse.dir.join("pulse.log").display()
            ))
            .status()
            .expect("run pulseaudio");
        assert!(started.success(), "pulseaudio -D failed: {}", pulse.log());
        pulse.pid = std::fs::read_to_string(pulse.dir.join("pulse/pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pulse.pactl(&["info"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "pulse did not start: {}",
                pulse.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        if pulse.pid.is_none() {
            pulse.pid = std::fs::read_to_string(pulse.dir.join("pulse/pid"))
                .ok()
                .and_then(|p| p.trim().parse().ok());
        }
        for args in [
            &[
                "load-module",
                "module-null-sink",
                "sink_name=test",
                "rate=48000",
                "channels=2",
            ][..],
            &["set-default-sink", "test"],
            &["set-default-source", "test.monitor"],
        ] {
            let out = pulse.pactl(args);
            assert!(
                out.status.success(),
                "pactl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        pulse
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
