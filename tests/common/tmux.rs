//! tmux for the TUI tests: a private tmux server (`tmux -L <name>`, removed when dropped), its
//! panes' screens, keys, and bounded waits for what a screen shows; the `dialtone` binary and
//! a free port. Shared by tests/tui_e2e.rs and tests/tui_no_sound_device.rs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(20);

pub struct Tmux {
    pub socket: String,
}

impl Tmux {
    pub fn new(name: &str) -> Tmux {
        Tmux {
            socket: format!("dt-tui-{}-{name}", std::process::id()),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    pub fn start(&self, session: &str, command: &str) {
        let out = self.cmd(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "100",
            "-y",
            "30",
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Keep the pane after the program exits, so a crash can be read.
        self.cmd(&["set-option", "-t", session, "remain-on-exit", "on"]);
    }

    pub fn screen(&self, session: &str) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", session]).stdout)
            .into_owned()
    }

    pub fn keys(&self, session: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", session];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status.success());
    }

    pub fn text(&self, session: &str, text: &str) {
        assert!(
            self.cmd(&["send-keys", "-t", session, "-l", text])
                .status
                .success()
        );
    }

    /// Waits until the screen satisfies `ok`; on timeout fails with the screen and the log.
    pub fn wait_for(
        &self,
        session: &str,
        what: &str,
        log: &Path,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen(session);
            if ok(&screen) {
                return screen;
            }
            if start.elapsed() > WAIT {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                panic!("{session}: no {what} after {WAIT:?}; screen:\n{screen}\nlog:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_dead(&self, session: &str) -> bool {
        let out = self.cmd(&["display-message", "-p", "-t", session, "#{pane_dead}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Only this test's private server, and its socket file (tmux leaves it behind).
        let out = self.cmd(&["display-message", "-p", "#{socket_path}"]);
        self.cmd(&["kill-server"]);
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if path.contains(&self.socket) {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub fn wait_dead(tmux: &Tmux, session: &str) {
    let start = Instant::now();
    while !tmux.is_dead(session) {
        assert!(
            start.elapsed() < WAIT,
            "{session} did not quit:\n{}",
            tmux.screen(session)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn has_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn bin() -> PathBuf {
    std::env::var_os("DIALTONE_TUI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dialtone")))
}

/// The binary must be the TUI build (`dialtone` with no subcommand runs it, with `--mic`).
pub fn check_bin() {
    let out = Command::new(bin())
        .arg("--help")
        .output()
        .expect("the dialtone binary runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--mic"),
        "{} has no TUI flags (is src/main.rs wired to tui::run?):\n{help}",
        bin().display()
    );
}

/// The call row of the calls panel, e.g. "│▶1  → bob   Connected   0:03".
pub fn row_has(screen: &str, peer: &str, state: &str) -> bool {
    screen.lines().any(|l| {
        l.contains(&format!(" {peer} "))
            && l.contains(state)
            && (l.contains('→') || l.contains('←'))
    })
}
