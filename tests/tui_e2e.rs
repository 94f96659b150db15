//! End to end: two real `dialtone` TUIs inside tmux against one switchboard (the embedded one,
//! started by alice's process; bob's finds it on the port). Virtual devices via flags. alice
//! dials bob by typing, bob's screen shows the incoming prompt, bob accepts with a key, both
//! screens show Connected, alice hangs up, both show the call ended with its reason; then bob
//! turns a second call down as busy and alice sees 486. Screens are read with
//! `tmux capture-pane`.
//!
//! Uses a private tmux server (`tmux -L <name>`), its own port, XDG dirs and data dir, so it
//! touches nothing of the user's. Needs tmux (scripts/setup.sh installs it); without tmux the
//! test says so and passes. `DIALTONE_TUI_BIN` overrides the binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Tmux {
        Tmux {
            socket: format!("dt-e2e-{}-{name}", std::process::id()),
        }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn start(&self, session: &str, command: &str) {
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

    fn screen(&self, session: &str) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", session]).stdout)
            .into_owned()
    }

    fn keys(&self, session: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", session];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status.success());
    }

    fn text(&self, session: &str, text: &str) {
        assert!(
            self.cmd(&["send-keys", "-t", session, "-l", text])
                .status
                .success()
        );
    }

    /// Waits until the screen satisfies `ok`; on timeout fails with the screen and the log.
    fn wait_for(&self, session: &str, what: &str, log: &Path, ok: impl Fn(&str) -> bool) -> String {
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

    fn is_dead(&self, session: &str) -> bool {
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

fn wait_dead(tmux: &Tmux, session: &str) {
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

fn has_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn bin() -> PathBuf {
    std::env::var_os("DIALTONE_TUI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dialtone")))
}

/// The binary must be the TUI build (`dialtone` with no subcommand runs it, with `--mic`).
fn check_bin() {
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

fn tui_command(dir: &Path, user: &str) -> String {
    let xdg = dir.join("xdg");
    format!(
        "env XDG_CONFIG_HOME={x}/config XDG_DATA_HOME={x}/data XDG_STATE_HOME={x}/state NO_COLOR=1 {bin} \
         --config {cfg} --user {user} --device-name {user}-e2e --mic silence --speaker silence \
         --data-dir {data} --log-file {log}",
        x = xdg.display(),
        bin = bin().display(),
        cfg = dir.join("config.toml").display(),
        data = dir.join("data").display(),
        log = dir.join(format!("{user}.log")).display(),
    )
}

/// The call row of the calls panel, e.g. "│▶1  → bob   Connected   0:03".
fn row_has(screen: &str, peer: &str, state: &str) -> bool {
    screen.lines().any(|l| {
        l.contains(&format!(" {peer} "))
            && l.contains(state)
            && (l.contains('→') || l.contains('←'))
    })
}

#[test]
fn two_tuis_call_each_other() {
    if !has_tmux() {
        eprintln!("skipping: tmux is not installed (scripts/setup.sh installs it)");
        return;
    }
    check_bin();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[switchboard]\nlisten = \"127.0.0.1:{port}\"\nring_timeout_secs = 30\n"),
    )
    .unwrap();
    let alice_log = dir.path().join("alice.log");
    let bob_log = dir.path().join("bob.log");
    let tmux = Tmux::new("call");

    tmux.start("alice", &tui_command(dir.path(), "alice"));
    let s = tmux.wait_for("alice", "sign-in", &alice_log, |s| {
        s.contains("● connected")
    });
    assert!(
        s.contains(&format!("Started a switchboard on ws://127.0.0.1:{port}")),
        "alice hosts the switchboard:\n{s}"
    );
    tmux.start("bob", &tui_command(dir.path(), "bob"));
    let s = tmux.wait_for("bob", "sign-in", &bob_log, |s| s.contains("● connected"));
    assert!(
        !s.contains("Started a switchboard"),
        "bob uses alice's switchboard:\n{s}"
    );

    // alice dials bob by typing.
    tmux.keys("alice", &["c"]);
    tmux.text("alice", "bob");
    tmux.wait_for("alice", "dialer", &alice_log, |s| s.contains("Call: bob"));
    tmux.keys("alice", &["Enter"]);
    let s = tmux.wait_for("bob", "incoming prompt", &bob_log, |s| {
        s.contains("Incoming call") && s.contains("alice is calling you")
    });
    assert!(s.contains("a accept"), "{s}");
    tmux.wait_for("alice", "ringing", &alice_log, |s| {
        row_has(s, "bob", "Ringing")
    });

    // bob accepts with a key; both show Connected.
    tmux.keys("bob", &["a"]);
    tmux.wait_for("bob", "connected call", &bob_log, |s| {
        row_has(s, "alice", "Connected") && !s.contains("is calling you")
    });
    tmux.wait_for("alice", "connected call", &alice_log, |s| {
        row_has(s, "bob", "Connected")
    });

    // alice hangs up; both show the call ended with its reason.
    tmux.keys("alice", &["h"]);
    tmux.wait_for("alice", "end reason", &alice_log, |s| {
        s.contains("Call with bob ended: a party hung up (0/0)") && row_has(s, "bob", "hung up")
    });
    tmux.wait_for("bob", "end reason", &bob_log, |s| {
        s.contains("Call with alice ended: a party hung up (0/0)") && row_has(s, "alice", "hung up")
    });

    // A second call, which bob turns down as busy: alice sees 486.
    tmux.keys("alice", &["c"]);
    tmux.text("alice", "bob");
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("bob", "second incoming prompt", &bob_log, |s| {
        s.contains("alice is calling you")
    });
    tmux.keys("bob", &["b"]);
    tmux.wait_for("alice", "busy", &alice_log, |s| {
        s.contains("Call with bob ended: the callee rejected the call as busy (486/0)")
            && row_has(s, "bob", "busy 486")
    });
    // Both calls are in alice's history.
    let s = tmux.screen("alice");
    assert!(
        s.lines().filter(|l| l.contains("→ bob")).count() >= 3,
        "two calls in history plus the ended row:\n{s}"
    );

    // q quits at once when no call is live; the terminal is given back.
    tmux.keys("alice", &["x", "q"]);
    wait_dead(&tmux, "alice");
    // alice's process hosted the switchboard: bob takes over hosting and signs in again.
    tmux.wait_for("bob", "take-over", &bob_log, |s| {
        s.contains("Connected to the switchboard again") && s.contains("● connected")
    });
    let log = std::fs::read_to_string(&bob_log).unwrap();
    let hosted = format!("started the embedded switchboard on 127.0.0.1:{port}");
    assert!(log.contains(&hosted), "{log}");
    tmux.keys("bob", &["x", "q"]);
    wait_dead(&tmux, "bob");
    for log in [&alice_log, &bob_log] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("key press to frame"), "{text}");
        assert!(!text.contains("panic"), "{text}");
    }
    let history = std::fs::read_to_string(dir.path().join("data/tui/alice/history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 2, "{history}");
}

#[test]
fn quitting_with_a_live_call_asks_first() {
    if !has_tmux() {
        eprintln!("skipping: tmux is not installed (scripts/setup.sh installs it)");
        return;
    }
    check_bin();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[switchboard]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let log = dir.path().join("alice.log");
    let tmux = Tmux::new("quit");
    tmux.start("alice", &tui_command(dir.path(), "alice"));
    tmux.wait_for("alice", "sign-in", &log, |s| s.contains("● connected"));
    // The echo service answers at once.
    tmux.keys("alice", &["e"]);
    tmux.wait_for("alice", "echo call", &log, |s| {
        row_has(s, "Echo test", "Connected")
    });
    tmux.keys("alice", &["q"]);
    tmux.wait_for("alice", "quit question", &log, |s| {
        s.contains("A call is live. Hang up and quit?")
    });
    tmux.keys("alice", &["n"]);
    tmux.wait_for("alice", "question gone", &log, |s| {
        !s.contains("Hang up and quit?")
    });
    assert!(!tmux.is_dead("alice"));
    tmux.keys("alice", &["q", "y"]);
    wait_dead(&tmux, "alice");
}
