//! A TUI on a machine with no usable sound device (PulseAudio unreachable, ALSA with an empty
//! configuration) in tmux: it starts, signs in, warns on the status line that there is no
//! microphone and no speaker, and both places and takes calls. Two such TUIs call each other
//! (the first hosts the embedded switchboard). Without tmux the test says so and passes.

#[path = "common/tmux.rs"]
mod tmux;

use std::path::{Path, PathBuf};

use tmux::{Tmux, bin, check_bin, free_port, has_tmux, row_has, wait_dead};

/// The TUI with its devices left at `default`, on a machine where none works.
fn no_sound_command(dir: &Path, user: &str) -> String {
    let xdg = dir.join("xdg");
    format!(
        "env PULSE_SERVER=unix:{nopulse} ALSA_CONFIG_PATH={alsa} XDG_RUNTIME_DIR={x}/run \
         XDG_CONFIG_HOME={x}/config XDG_DATA_HOME={x}/data XDG_STATE_HOME={x}/state NO_COLOR=1 {bin} \
         --config {cfg} --user {user} --device-name {user}-e2e --mic default --speaker default \
         --data-dir {data} --log-file {log}",
        nopulse = dir.join("no-pulse/native").display(),
        alsa = dir.join("alsa-empty.conf").display(),
        x = xdg.display(),
        bin = bin().display(),
        cfg = dir.join("config.toml").display(),
        data = dir.join("data").display(),
        log = dir.join(format!("{user}.log")).display(),
    )
}

/// Signed in, and the status line says there is no microphone and no speaker.
fn start_without_sound(tmux: &Tmux, dir: &Path, user: &str) -> PathBuf {
    let log = dir.join(format!("{user}.log"));
    tmux.start(user, &no_sound_command(dir, user));
    tmux.wait_for(user, "sign-in with device warnings", &log, |s| {
        let status = s.lines().next().unwrap_or("");
        status.contains("● connected")
            && status.contains("⚠ no microphone")
            && status.contains("⚠ no speaker")
    });
    log
}

#[test]
fn a_tui_with_no_sound_device_places_and_takes_calls() {
    if !has_tmux() {
        eprintln!("skipping: tmux is not installed (scripts/setup.sh installs it)");
        return;
    }
    check_bin();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(dir.path().join("alsa-empty.conf"), "").unwrap();
    std::fs::create_dir_all(dir.path().join("xdg/run")).unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[switchboard]\nlisten = \"127.0.0.1:{port}\"\nring_timeout_secs = 30\n"),
    )
    .unwrap();
    let tmux = Tmux::new("call");
    let alice_log = start_without_sound(&tmux, dir.path(), "alice");
    let bob_log = start_without_sound(&tmux, dir.path(), "bob");
    let s = tmux.screen("alice");
    assert!(
        !s.contains("could not start") && !s.contains("not running"),
        "the engine runs:\n{s}"
    );

    // alice places a call, bob takes it.
    tmux.keys("alice", &["c"]);
    tmux.text("alice", "bob");
    tmux.wait_for("alice", "dialer", &alice_log, |s| s.contains("Call: bob"));
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("bob", "incoming prompt", &bob_log, |s| {
        s.contains("alice is calling you")
    });
    tmux.keys("bob", &["a"]);
    tmux.wait_for("bob", "connected call", &bob_log, |s| {
        row_has(s, "alice", "Connected")
    });
    tmux.wait_for("alice", "connected call", &alice_log, |s| {
        row_has(s, "bob", "Connected")
    });
    tmux.keys("alice", &["h"]);
    tmux.wait_for("bob", "end", &bob_log, |s| row_has(s, "alice", "hung up"));

    // bob places one, alice takes it.
    tmux.keys("bob", &["c"]);
    tmux.text("bob", "alice");
    tmux.wait_for("bob", "dialer", &bob_log, |s| s.contains("Call: alice"));
    tmux.keys("bob", &["Enter"]);
    tmux.wait_for("alice", "incoming prompt", &alice_log, |s| {
        s.contains("bob is calling you")
    });
    tmux.keys("alice", &["a"]);
    tmux.wait_for("alice", "connected call", &alice_log, |s| {
        row_has(s, "bob", "Connected")
    });
    tmux.wait_for("bob", "connected call", &bob_log, |s| {
        row_has(s, "alice", "Connected")
    });
    tmux.keys("bob", &["h"]);
    tmux.wait_for("alice", "end", &alice_log, |s| row_has(s, "bob", "hung up"));

    for (who, log) in [("alice", &alice_log), ("bob", &bob_log)] {
        tmux.keys(who, &["x", "q"]);
        wait_dead(&tmux, who);
        let text = std::fs::read_to_string(log).unwrap();
        assert!(!text.contains("panic"), "{text}");
        assert!(text.contains("noSpeakerDevicesEnumerated"), "{text}");
    }
}
