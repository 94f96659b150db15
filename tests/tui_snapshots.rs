//! insta snapshots of the TUI's screens on ratatui's TestBackend, at 80x24 and 120x40: the main
//! screen, the device manager, an incoming call, the help overlay, the transfer prompt, a
//! transfer request, the voicemail panel and the "active on another device" banner (plus a few
//! more states).
//! The App is built with fixed wall-clock times, so the screens are deterministic.
//!
//! To accept changed screens: `INSTA_UPDATE=always cargo test --test tui_snapshots`, then review
//! the diff of tests/snapshots/.

use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use dialtone::core::{
    CallEndReason, CallState, Command, CommandOk, ConnectionState, Direction, Event, Now,
    ParticipantState,
};
use dialtone::devices::list::DeviceBackend;
use dialtone::devices::{DeviceInfo, DeviceList};
use dialtone::protocol::{
    ActiveCallDetails, ErrorCode, ForwardMode, Forwarding, Identity, Participant, TransferKind,
    TransferState, TransferTargetInfo, VoicemailInfo,
};
use dialtone::tui::app::{Level, SelectedDevices};
use dialtone::tui::history::{History, HistoryEntry};
use dialtone::tui::theme::Theme;
use dialtone::tui::{App, AppOptions, Keymap, Update, view};

const T0: u64 = 1_763_750_000_000;

fn now_at(app_mono: Instant, ms: u64) -> Now {
    Now {
        mono: app_mono,
        unix_ms: T0 + ms,
    }
}

fn ident(name: &str) -> Identity {
    Identity {
        raw_id: format!("8:acs:3f2a9c_{name}"),
        display_name: name.into(),
    }
}

fn participant(name: &str, state: ParticipantState, muted: bool, speaking: bool) -> Participant {
    Participant {
        identity: ident(name),
        state,
        is_muted: muted,
        is_speaking: speaking,
        device: None,
        service: false,
        reconnecting: false,
    }
}

fn history() -> History {
    let e = |ago_s: u64, dir, peer: &str, connected: Option<u64>, reason| HistoryEntry {
        call_id: None,
        started_unix_ms: T0 - ago_s * 1000,
        direction: dir,
        peer: peer.into(),
        label: peer.into(),
        connected_ms: connected,
        end_reason: reason,
    };
    History::from_entries(vec![
        e(
            300,
            Direction::Outgoing,
            "bob",
            Some(133_000),
            CallEndReason::NORMAL,
        ),
        e(
            4000,
            Direction::Incoming,
            "carol",
            None,
            CallEndReason::CANCELLED,
        ),
        e(
            9000,
            Direction::Outgoing,
            "dave",
            None,
            CallEndReason::DECLINED,
        ),
        e(
            90_000,
            Direction::Outgoing,
            "echo",
            Some(12_000),
            CallEndReason::NORMAL,
        ),
        e(
            200_000,
            Direction::Incoming,
            "bob",
            Some(3_725_000),
            CallEndReason::NORMAL,
        ),
    ])
}

fn new_app() -> App {
    let mono = Instant::now();
    App::new(
        AppOptions {
            user: "alice".into(),
            device_name: "desk".into(),
            server: "ws://127.0.0.1:7450".into(),
            embedded: true,
            devices: SelectedDevices {
                microphone: "default".into(),
                speaker: "default".into(),
                camera: None,
            },
            contacts: vec!["bob".into(), "carol".into(), "dave".into()],
            history: history(),
            keymap: Keymap::default(),
            theme: Theme { color: false },
            auto_accept_transfers: false,
            caller_id: None,
        },
        now_at(mono, 0),
    )
}

fn ev(app: &mut App, e: Event) {
    let now = app.now;
    app.handle_update(Update::Core(e), now);
}

fn connected(app: &mut App) {
    ev(
        app,
        Event::ConnectionStateChanged {
            old: ConnectionState::Disconnected,
            new: ConnectionState::Connected,
            reason: None,
            message: None,
        },
    );
}

/// alice: a connected call with bob (65 s, muted), a held call with carol, and a fresh echo call
/// that ended.
fn busy_app() -> App {
    let mut app = new_app();
    connected(&mut app);
    let mono = app.now.mono;
    let call = |app: &mut App, id: &str, name: &str, at: u64| {
        app.now = now_at(mono, at);
        let now = app.now;
        app.handle_update(
            Update::CommandDone {
                cmd: Command::Call {
                    to: vec![name.into()],
                    alternate_caller_id: None,
                },
                result: Ok(CommandOk::CallId(id.into())),
            },
            now,
        );
        ev(
            app,
            Event::CallStateChanged {
                call_id: id.into(),
                state: CallState::Ringing,
            },
        );
        ev(
            app,
            Event::RemoteParticipantsUpdated {
                call_id: id.into(),
                added: vec![participant(name, ParticipantState::Connected, false, false)],
                removed: vec![],
            },
        );
        ev(
            app,
            Event::CallStateChanged {
                call_id: id.into(),
                state: CallState::Connected,
            },
        );
    };
    call(&mut app, "c-carol", "carol", 0);
    ev(
        &mut app,
        Event::CallStateChanged {
            call_id: "c-carol".into(),
            state: CallState::LocalHold,
        },
    );
    call(&mut app, "c-bob", "bob", 10_000);
    ev(
        &mut app,
        Event::ParticipantStateChanged {
            call_id: "c-bob".into(),
            participant: participant("bob", ParticipantState::Connected, false, true),
        },
    );
    let now = app.now;
    app.handle_update(
        Update::CommandDone {
            cmd: Command::Mute {
                call_id: "c-bob".into(),
            },
            result: Ok(CommandOk::Done),
        },
        now,
    );
    app.now = now_at(mono, 75_000);
    let now = app.now;
    app.handle_update(Update::MicLevel(0.4), now);
    app
}

fn draw(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| view::render(f, app)).unwrap();
    term
}

fn key(app: &mut App, code: KeyCode) {
    let now = app.now;
    app.handle_key(KeyEvent::new(code, KeyModifiers::NONE), now);
}

fn snap(name: &str, app: &App) {
    for (w, h) in [(80, 24), (120, 40)] {
        let term = draw(app, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), term.backend());
    }
}

#[test]
fn main_screen() {
    let mut app = busy_app();
    let now = app.now;
    app.handle_update(
        Update::Notice(
            Level::Info,
            "Microphone: default (saved as the default)".into(),
        ),
        now,
    );
    snap("main", &app);
}

#[test]
fn main_screen_first_run() {
    let mut app = new_app();
    app.history = History::default();
    snap("first_run", &app);
}

fn device_list() -> DeviceList {
    let dev = |spec: &str, name: &str, default: bool, kind| DeviceInfo {
        name: name.into(),
        spec: spec.into(),
        is_default: default,
        kind,
        host: (kind == DeviceBackend::Cpal).then(|| "pulseaudio".into()),
    };
    DeviceList {
        microphones: vec![
            dev(
                "alsa_input.usb-Logitech_Headset-00.mono-fallback",
                "Logitech Headset Mono",
                false,
                DeviceBackend::Cpal,
            ),
            dev(
                "alsa_input.pci-0000_00_1f.3.analog-stereo",
                "Built-in Audio Analog Stereo",
                true,
                DeviceBackend::Cpal,
            ),
            dev(
                "file:PATH.wav",
                "Plays a WAV file once, in real time, then silence",
                false,
                DeviceBackend::Virtual,
            ),
            dev(
                "tone:440",
                "A steady sine tone (any frequency in Hz)",
                false,
                DeviceBackend::Virtual,
            ),
            dev("silence", "Captures nothing", false, DeviceBackend::Virtual),
        ],
        speakers: vec![
            dev(
                "alsa_output.pci-0000_00_1f.3.analog-stereo",
                "Built-in Audio Analog Stereo",
                true,
                DeviceBackend::Cpal,
            ),
            dev(
                "record:PATH.wav",
                "Writes what would be played to a 48 kHz mono WAV file",
                false,
                DeviceBackend::Virtual,
            ),
            dev("silence", "Plays nothing", false, DeviceBackend::Virtual),
        ],
        cameras: vec![dev(
            "/dev/video0",
            "Integrated Camera",
            true,
            DeviceBackend::V4l2,
        )],
        problems: vec![],
    }
}

#[test]
fn device_manager() {
    let mut app = busy_app();
    key(&mut app, KeyCode::Char('d'));
    let now = app.now;
    app.handle_update(Update::Devices(device_list()), now);
    key(&mut app, KeyCode::Down);
    snap("devices", &app);
}

#[test]
fn incoming_call() {
    let mut app = new_app();
    connected(&mut app);
    ev(
        &mut app,
        Event::IncomingCall {
            call_id: "in-1".into(),
            caller: ident("bob"),
            transferred_by: None,
            forwarded_from: None,
            caller_number: None,
            group: false,
        },
    );
    ev(
        &mut app,
        Event::CallStateChanged {
            call_id: "in-1".into(),
            state: CallState::Incoming,
        },
    );
    snap("incoming", &app);
}

#[test]
fn help_overlay() {
    let mut app = busy_app();
    key(&mut app, KeyCode::Char('?'));
    snap("help", &app);
}

#[test]
fn dialer_with_suggestions() {
    let mut app = new_app();
    connected(&mut app);
    key(&mut app, KeyCode::Char('c'));
    key(&mut app, KeyCode::Char('b'));
    key(&mut app, KeyCode::Tab);
    let term = draw(&app, 80, 24);
    insta::assert_snapshot!("dialer_80x24", term.backend());
}

#[test]
fn ended_call_and_quit_confirmation() {
    let mut app = busy_app();
    ev(
        &mut app,
        Event::CallEnded {
            call_id: "c-carol".into(),
            reason: CallEndReason::DECLINED,
        },
    );
    key(&mut app, KeyCode::Char('q'));
    let term = draw(&app, 80, 24);
    insta::assert_snapshot!("confirm_quit_80x24", term.backend());
}

#[test]
fn every_size_renders_without_panicking() {
    let mut app = busy_app();
    for (w, h) in [
        (1, 1),
        (10, 3),
        (40, 10),
        (79, 23),
        (80, 24),
        (200, 60),
        (300, 100),
    ] {
        draw(&app, w, h);
    }
    key(&mut app, KeyCode::Char('?'));
    for _ in 0..200 {
        key(&mut app, KeyCode::Down);
    }
    for (w, h) in [(1, 1), (20, 5), (80, 24)] {
        draw(&app, w, h);
    }
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('d'));
    for (w, h) in [(1, 1), (20, 5), (80, 24)] {
        draw(&app, w, h);
    }
    key(&mut app, KeyCode::Esc);
    for keys in ["t", "p", "\x1b", "c"] {
        for c in keys.chars() {
            let code = if c == '\x1b' {
                KeyCode::Esc
            } else {
                KeyCode::Char(c)
            };
            key(&mut app, code);
        }
        for (w, h) in [(1, 1), (20, 5), (40, 10), (80, 24)] {
            draw(&app, w, h);
        }
    }
    let mut app = voicemail_app();
    key(&mut app, KeyCode::Char('x'));
    for (w, h) in [(1, 1), (20, 5), (40, 10), (80, 24)] {
        draw(&app, w, h);
    }
}

fn keys(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

#[test]
fn transfer_prompt() {
    let mut app = busy_app();
    key(&mut app, KeyCode::Char('t'));
    snap("transfer_prompt", &app);
    // To a participant: the name with its completions.
    key(&mut app, KeyCode::Char('p'));
    keys(&mut app, "ca");
    key(&mut app, KeyCode::Tab);
    snap("transfer_prompt_name", &app);
    // To another of my calls, forwarding off.
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('f'));
    key(&mut app, KeyCode::Char('c'));
    let term = draw(&app, 80, 24);
    insta::assert_snapshot!("transfer_prompt_call_80x24", term.backend());
}

#[test]
fn transfer_progress_on_the_rows() {
    let mut app = busy_app();
    // bob to carol failed (busy); carol (held) is being transferred to dave's voicemail.
    let transfer = |app: &mut App, call: &str, line: &str| {
        app.focus = app.calls.iter().position(|c| c.call_id == call).unwrap();
        key(app, KeyCode::Char(':'));
        keys(app, line);
        key(app, KeyCode::Enter);
    };
    transfer(&mut app, "c-carol", "transfer voicemail dave");
    transfer(&mut app, "c-bob", "transfer carol");
    let state = |app: &mut App, call: &str, state, error| {
        ev(
            app,
            Event::TransferStateChanged {
                call_id: call.into(),
                transfer_id: format!("x-{call}"),
                state,
                error,
            },
        )
    };
    state(&mut app, "c-carol", TransferState::Transferring, None);
    state(&mut app, "c-bob", TransferState::Transferring, None);
    state(
        &mut app,
        "c-bob",
        TransferState::Failed,
        Some(CallEndReason::TRANSFER_TARGET_BUSY),
    );
    snap("transfer_progress", &app);
}

#[test]
fn transfer_request_prompt() {
    let mut app = busy_app();
    ev(
        &mut app,
        Event::TransferRequested {
            call_id: "c-bob".into(),
            transfer_id: "x1".into(),
            transferor: ident("bob"),
            target: TransferTargetInfo {
                kind: TransferKind::Participant,
                identity: ident("dave"),
            },
        },
    );
    snap("transfer_request", &app);
}

#[test]
fn incoming_transferred_call() {
    let mut app = new_app();
    connected(&mut app);
    ev(
        &mut app,
        Event::IncomingCall {
            call_id: "in-1".into(),
            caller: ident("bob"),
            transferred_by: Some(ident("carol")),
            forwarded_from: None,
            caller_number: None,
            group: false,
        },
    );
    ev(
        &mut app,
        Event::CallStateChanged {
            call_id: "in-1".into(),
            state: CallState::Incoming,
        },
    );
    let term = draw(&app, 80, 24);
    insta::assert_snapshot!("incoming_transferred_80x24", term.backend());
}

fn voicemail_app() -> App {
    let mut app = new_app();
    connected(&mut app);
    ev(
        &mut app,
        Event::ForwardingChanged(Forwarding {
            mode: ForwardMode::Unanswered,
            target: Some("voicemail".into()),
            unanswered_after_secs: 20,
        }),
    );
    ev(
        &mut app,
        Event::MessageWaiting {
            new_count: 2,
            total_count: 3,
        },
    );
    key(&mut app, KeyCode::Char('v'));
    let m = |id: &str, name: &str, ago_s: u64, secs: u64, is_new| VoicemailInfo {
        message_id: id.into(),
        caller: ident(name),
        received_unix_ms: T0 - ago_s * 1000,
        duration_ms: secs * 1000,
        is_new,
    };
    ev(
        &mut app,
        Event::Voicemails(vec![
            m("m3", "bob", 300, 12, true),
            m("m2", "carol", 4000, 62, true),
            m("m1", "dave", 200_000, 5, false),
        ]),
    );
    app
}

#[test]
fn voicemail_panel() {
    let mut app = voicemail_app();
    key(&mut app, KeyCode::Down);
    snap("voicemail", &app);
    // Delete asks first.
    key(&mut app, KeyCode::Char('x'));
    let term = draw(&app, 80, 24);
    insta::assert_snapshot!("voicemail_delete_80x24", term.backend());
}

#[test]
fn active_on_another_device_banner() {
    let mut app = new_app();
    connected(&mut app);
    ev(
        &mut app,
        Event::ActiveCallsUpdated(ActiveCallDetails {
            call_id: "c-elsewhere".into(),
            remote_participants: vec![ident("bob")],
            started_unix_ms: T0 - 90_000,
            endpoint_id: "3:laptop".into(),
            device_name: "laptop".into(),
        }),
    );
    snap("banner", &app);
}

#[test]
fn a_refused_transfer_quotes_the_switchboard() {
    let mut app = busy_app();
    key(&mut app, KeyCode::Char(':'));
    keys(&mut app, "transfer alice");
    key(&mut app, KeyCode::Enter);
    ev(
        &mut app,
        Event::Error {
            code: ErrorCode::InvalidArgument,
            message: "you cannot transfer a call to yourself".into(),
            call_id: Some("c-bob".into()),
        },
    );
    ev(
        &mut app,
        Event::TransferStateChanged {
            call_id: "c-bob".into(),
            transfer_id: "x1".into(),
            state: TransferState::Failed,
            error: Some(CallEndReason::TRANSFER_REFUSED),
        },
    );
    let term = draw(&app, 120, 40);
    insta::assert_snapshot!("transfer_refused_120x40", term.backend());
}

/// alice in a group call: bob speaking, carol still ringing, dave muted, erin reached by number
/// and on hold, and alice's own laptop in the call too. The participants panel has focus.
fn group_app() -> App {
    let mut app = new_app();
    connected(&mut app);
    let now = app.now;
    app.handle_update(
        Update::CommandDone {
            cmd: Command::Call {
                to: vec!["bob".into(), "carol".into(), "dave".into()],
                alternate_caller_id: None,
            },
            result: Ok(CommandOk::CallId("g1".into())),
        },
        now,
    );
    ev(
        &mut app,
        Event::CallStateChanged {
            call_id: "g1".into(),
            state: CallState::Connected,
        },
    );
    let erin = Participant {
        identity: Identity {
            raw_id: "4:+15550123".into(),
            display_name: "erin".into(),
        },
        state: ParticipantState::Hold,
        is_muted: false,
        is_speaking: false,
        device: None,
        service: false,
        reconnecting: false,
    };
    let mut laptop = participant("alice", ParticipantState::Connected, false, false);
    laptop.device = Some("laptop".into());
    ev(
        &mut app,
        Event::RemoteParticipantsUpdated {
            call_id: "g1".into(),
            added: vec![
                participant("bob", ParticipantState::Connected, false, true),
                participant("carol", ParticipantState::Ringing, false, false),
                participant("dave", ParticipantState::Connected, true, false),
                erin,
                laptop,
            ],
            removed: vec![],
        },
    );
    app.now = now_at(app.now.mono, 42_000);
    app.contacts.push("frank".into());
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Down);
    app
}

#[test]
fn group_call_participants() {
    let mut app = group_app();
    snap("group_call", &app);
    // Remove asks first.
    key(&mut app, KeyCode::Char('x'));
    let term = draw(&app, 80, 24);
    insta::assert_snapshot!("remove_participant_80x24", term.backend());
    // Add: a name or a number, with completions.
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('a'));
    keys(&mut app, "f");
    let term = draw(&app, 80, 24);
    insta::assert_snapshot!("add_participant_80x24", term.backend());
}

#[test]
fn incoming_group_call_and_call_to_my_number() {
    let mut app = new_app();
    connected(&mut app);
    let incoming = |app: &mut App, id: &str, number: Option<&str>, group| {
        ev(
            app,
            Event::IncomingCall {
                call_id: id.into(),
                caller: ident("bob"),
                transferred_by: None,
                forwarded_from: None,
                caller_number: number.map(str::to_string),
                group,
            },
        );
        ev(
            app,
            Event::CallStateChanged {
                call_id: id.into(),
                state: CallState::Incoming,
            },
        );
    };
    incoming(&mut app, "g1", None, true);
    let term = draw(&app, 80, 24);
    insta::assert_snapshot!("incoming_group_80x24", term.backend());
    let mut app = new_app();
    connected(&mut app);
    incoming(&mut app, "n1", Some("+15550101"), false);
    let term = draw(&app, 80, 24);
    insta::assert_snapshot!("incoming_number_80x24", term.backend());
}

#[test]
fn unencrypted_connection_off_this_machine_is_flagged() {
    let text = |app: &App| {
        let term = draw(app, 80, 24);
        let buf = term.backend().buffer();
        (0..buf.area.width)
            .map(|x| buf[(x, 0)].symbol().to_string())
            .collect::<String>()
    };
    // Loopback plain ws:// (the embedded switchboard): nothing to flag.
    let mut app = new_app();
    connected(&mut app);
    assert!(!text(&app).contains("unencrypted"), "{}", text(&app));
    // Plain ws:// to another host: flagged next to the connection state, which always shows.
    app.server = "ws://192.0.2.10:7450".into();
    app.embedded = false;
    assert!(text(&app).contains("⚠ unencrypted"), "{}", text(&app));
    let term = draw(&app, 80, 24);
    insta::assert_snapshot!("unencrypted_80x24", term.backend());
    // wss:// is not.
    app.server = "wss://switchboard.example:7450".into();
    assert!(!text(&app).contains("unencrypted"), "{}", text(&app));
}

#[test]
fn a_tls_refusal_is_shown_in_words() {
    let mut app = new_app();
    app.server = "wss://switchboard.example:7450".into();
    app.embedded = false;
    ev(
        &mut app,
        Event::ConnectionStateChanged {
            old: ConnectionState::Disconnected,
            new: ConnectionState::Disconnected,
            reason: Some(dialtone::core::DisconnectReason::ConnectionIssue),
            message: Some(
                "the switchboard's certificate is not trusted: UnknownIssuer (pass --ca FILE \
                 to trust a private CA)"
                    .into(),
            ),
        },
    );
    insta::assert_snapshot!("tls_refused_120x40", draw(&app, 120, 40).backend());
}

/// No usable sound device: the status line warns of both ends, the notice says why; then,
/// in the busy screen, speaking into the muted call with bob shows the muted hint.
#[test]
fn no_sound_device_and_muted_hint() {
    use dialtone::core::media_diagnostics::{MediaDiagnostic as D, MediaDiagnosticChange};
    let change = |diagnostic, value, call: Option<&str>, message: Option<&str>| {
        Update::MediaDiagnostic(MediaDiagnosticChange {
            call_id: call.map(str::to_owned),
            diagnostic,
            value,
            message: message.map(str::to_owned),
        })
    };
    let mut app = new_app();
    connected(&mut app);
    let now = app.now;
    for (d, m) in [
        (
            D::NoMicrophoneDevicesEnumerated,
            "the sound system (ALSA) lists no microphone",
        ),
        (
            D::NoSpeakerDevicesEnumerated,
            "the sound system (ALSA) lists no speaker",
        ),
    ] {
        app.handle_update(change(d, true, None, Some(m)), now);
    }
    snap("no_sound_device", &app);

    let mut app = busy_app();
    let now = app.now;
    app.handle_update(
        change(
            D::SpeakingWhileMicrophoneIsMuted,
            true,
            Some("c1"),
            Some("you are speaking while your microphone is muted"),
        ),
        now,
    );
    snap("speaking_while_muted", &app);
}

/// This device lost its connection: the status line and each live call say it is reconnecting
/// and the calls are kept. Then the other view: bob's connection is lost, shown on his row.
#[test]
fn reconnecting_states() {
    let mut app = busy_app();
    ev(
        &mut app,
        Event::ConnectionStateChanged {
            old: ConnectionState::Connected,
            new: ConnectionState::Disconnected,
            reason: Some(dialtone::core::DisconnectReason::ConnectionIssue),
            message: None,
        },
    );
    assert!(app.reconnecting());
    snap("own_reconnecting", &app);

    let mut app = busy_app();
    ev(
        &mut app,
        Event::ParticipantStateChanged {
            call_id: "c-bob".into(),
            participant: Participant {
                reconnecting: true,
                ..participant("bob", ParticipantState::Connected, false, false)
            },
        },
    );
    assert!(!app.reconnecting());
    snap("peer_reconnecting", &app);
}

/// The network as the call sees it: a quality mark on the connected call's row (good, poor,
/// bad) and, on the participants panel, the figures behind it.
#[test]
fn quality_indicator_and_network_line() {
    use dialtone::core::diagnostics::Quality;
    use dialtone::core::quality::LinkQuality;
    for (name, receive, loss) in [
        ("quality_good", Quality::Good, 0.4),
        ("quality_poor", Quality::Poor, 6.2),
        ("quality_bad", Quality::Bad, 14.8),
    ] {
        let mut app = busy_app();
        let now = app.now;
        app.handle_update(
            Update::Quality(LinkQuality {
                receive_loss_pct: loss,
                jitter_ms: 18.0,
                rtt_ms: Some(84.0),
                send_loss_pct: Some(1.2),
                receive_kbps: 36.4,
                send_kbps: 35.9,
                receive,
                send: Quality::Good,
            }),
            now,
        );
        snap(name, &app);
    }
}
