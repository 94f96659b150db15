//! State tests for every panel: keys and updates in, actions and state out. No terminal, no
//! engine, simulated time.

use super::*;
use crate::core::ParticipantState;
use crate::devices::list::DeviceBackend;
use crate::protocol::ActiveCallDetails;

pub(crate) fn t0() -> Now {
    Now {
        mono: Instant::now(),
        unix_ms: 1_763_750_000_000,
    }
}

pub(crate) fn app() -> App {
    App::new(
        AppOptions {
            user: "alice".into(),
            device_name: "desk".into(),
            server: "ws://127.0.0.1:7450".into(),
            embedded: true,
            devices: SelectedDevices::default(),
            contacts: vec!["bob".into(), "carol".into()],
            history: History::default(),
            keymap: Keymap::default(),
            theme: Theme::default(),
            auto_accept_transfers: false,
            caller_id: None,
        },
        t0(),
    )
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn press(app: &mut App, keys: &[KeyEvent]) -> Vec<Action> {
    let now = app.now;
    keys.iter().flat_map(|k| app.handle_key(*k, now)).collect()
}

fn typed(app: &mut App, text: &str) -> Vec<Action> {
    let keys: Vec<KeyEvent> = text.chars().map(key).collect();
    press(app, &keys)
}

fn core(app: &mut App, e: CoreEvent) -> Vec<Action> {
    let now = app.now;
    app.handle_update(Update::Core(e), now)
}

fn ident(name: &str) -> Identity {
    Identity {
        raw_id: format!("8:acs:r_{name}"),
        display_name: name.into(),
    }
}

fn participant(name: &str, state: ParticipantState) -> Participant {
    Participant {
        identity: ident(name),
        state,
        is_muted: false,
        is_speaking: false,
        device: None,
        service: false,
        reconnecting: false,
    }
}

fn connected(app: &mut App) {
    core(
        app,
        CoreEvent::ConnectionStateChanged {
            old: ConnectionState::Disconnected,
            new: ConnectionState::Connected,
            reason: None,
            message: None,
        },
    );
}

/// An outgoing call to `name`, dialled and answered.
fn outgoing(app: &mut App, id: &str, name: &str) {
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
    core(
        app,
        CoreEvent::CallStateChanged {
            call_id: id.into(),
            state: CallState::Ringing,
        },
    );
    core(
        app,
        CoreEvent::RemoteParticipantsUpdated {
            call_id: id.into(),
            added: vec![participant(name, ParticipantState::Connected)],
            removed: vec![],
        },
    );
    core(
        app,
        CoreEvent::CallStateChanged {
            call_id: id.into(),
            state: CallState::Connected,
        },
    );
}

fn incoming(app: &mut App, id: &str, name: &str) -> Vec<Action> {
    let mut out = core(
        app,
        CoreEvent::IncomingCall {
            call_id: id.into(),
            caller: ident(name),
            transferred_by: None,
            forwarded_from: None,
            caller_number: None,
            group: false,
        },
    );
    out.extend(core(
        app,
        CoreEvent::CallStateChanged {
            call_id: id.into(),
            state: CallState::Incoming,
        },
    ));
    out
}

fn advance(app: &mut App, d: Duration) -> Vec<Action> {
    let now = app.now.plus(d);
    app.tick(now)
}

fn engine(cmds: &[Command]) -> Vec<Action> {
    cmds.iter().cloned().map(Action::Engine).collect()
}

// ---- status line ----------------------------------------------------------------------------

#[test]
fn connection_state_and_reason() {
    let mut a = app();
    assert_eq!(a.connection, Connection::Starting);
    a.handle_update(Update::EngineStarted, t0());
    assert_eq!(a.connection, Connection::Connecting);
    connected(&mut a);
    assert_eq!(a.connection, Connection::Connected);
    core(
        &mut a,
        CoreEvent::ConnectionStateChanged {
            old: ConnectionState::Connected,
            new: ConnectionState::Disconnected,
            reason: Some(DisconnectReason::InvalidToken),
            message: None,
        },
    );
    assert_eq!(
        a.connection,
        Connection::Disconnected(Some(DisconnectReason::InvalidToken))
    );
    assert!(
        a.notice
            .as_ref()
            .unwrap()
            .text
            .contains("refused the token")
    );
    connected(&mut a);
    assert_eq!(a.notice.as_ref().unwrap().text, s::RECONNECTED);
    a.handle_update(Update::EngineFailed("no microphone".into()), t0());
    assert_eq!(a.connection, Connection::Failed("no microphone".into()));
    assert_eq!(a.notice.as_ref().unwrap().level, Level::Error);
}

#[test]
fn mic_level_redraws_only_when_the_meter_changes() {
    let mut a = app();
    a.take_dirty();
    a.handle_update(Update::MicLevel(0.50), t0());
    assert!(a.take_dirty());
    a.handle_update(Update::MicLevel(0.51), t0());
    assert!(!a.take_dirty(), "same meter step");
    a.handle_update(Update::MicLevel(2.0), t0());
    assert!(a.take_dirty());
    assert_eq!(a.mic_level, Some(1.0));
    a.handle_update(Update::MicLevel(f32::NAN), t0());
    assert_eq!(a.mic_level, Some(0.0));
}

// ---- dialer ---------------------------------------------------------------------------------

#[test]
fn dialer_completes_from_contacts_and_history_then_dials() {
    let mut a = app();
    a.history.push(HistoryEntry {
        call_id: None,
        started_unix_ms: 1,
        direction: Direction::Incoming,
        peer: "bobby".into(),
        label: "bobby".into(),
        connected_ms: None,
        end_reason: CallEndReason::NORMAL,
    });
    assert!(press(&mut a, &[key('c')]).is_empty());
    assert_eq!(a.layers()[0], Layer::Dialer);
    assert_eq!(
        a.dialer_suggestions(),
        vec!["bob", "carol", "bobby", "echo"]
    );
    typed(&mut a, "bo");
    assert_eq!(a.dialer_suggestions(), vec!["bob", "bobby"]);
    press(&mut a, &[code(KeyCode::Tab), code(KeyCode::Tab)]);
    assert_eq!(a.dialer.as_ref().unwrap().selected, Some(1));
    let out = press(&mut a, &[code(KeyCode::Enter)]);
    assert_eq!(
        out,
        engine(&[Command::Call {
            to: vec!["bobby".into()],
            alternate_caller_id: None,
        }])
    );
    assert!(a.dialer.is_none());
}

#[test]
fn dialer_dials_what_was_typed_and_refuses_nonsense() {
    let mut a = app();
    press(&mut a, &[key('c')]);
    typed(&mut a, "dave");
    // Typing 'a' or 'h' in the dialer types; it does not accept or hang up.
    assert_eq!(a.dialer.as_ref().unwrap().field.text(), "dave");
    let out = press(&mut a, &[code(KeyCode::Enter)]);
    assert_eq!(
        out,
        engine(&[Command::Call {
            to: vec!["dave".into()],
            alternate_caller_id: None,
        }])
    );

    press(&mut a, &[key('c')]);
    assert!(press(&mut a, &[code(KeyCode::Enter)]).is_empty());
    assert_eq!(a.notice.as_ref().unwrap().text, s::DIAL_EMPTY);
    assert!(a.dialer.is_some(), "an empty Enter keeps the dialer open");
    typed(&mut a, "bob!");
    assert!(press(&mut a, &[code(KeyCode::Enter)]).is_empty());
    assert!(a.notice.as_ref().unwrap().text.contains("bob!"));
    press(&mut a, &[key('c'), key('x'), code(KeyCode::Esc)]);
    assert!(a.dialer.is_none());
}

#[test]
fn a_placed_call_is_listed_focused_and_timed() {
    let mut a = app();
    connected(&mut a);
    // The state event can come before the command's reply: the row is created either way.
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "c1".into(),
            state: CallState::Connecting,
        },
    );
    assert_eq!(a.calls[0].label(), s::UNKNOWN_PEER);
    outgoing(&mut a, "c1", "bob");
    let c = a.focused_call().unwrap();
    assert_eq!(
        (c.state, c.direction, c.label(), c.peer()),
        (
            CallState::Connected,
            Direction::Outgoing,
            "bob".into(),
            "bob".into()
        )
    );
    assert_eq!(c.connected_unix_ms, Some(t0().unix_ms));
    assert_eq!(c.duration_ms(t0().unix_ms + 65_000), 65_000);
    assert_eq!(a.calls.len(), 1);
}

#[test]
fn dialling_holds_the_connected_call_first() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    let out = typed(&mut a, "e");
    assert_eq!(
        out,
        engine(&[
            Command::Hold {
                call_id: "c1".into()
            },
            Command::Call {
                to: vec!["echo".into()],
                alternate_caller_id: None,
            }
        ])
    );
}

// ---- calls panel ----------------------------------------------------------------------------

#[test]
fn hang_up_mute_hold_act_on_the_focused_call() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    assert_eq!(
        typed(&mut a, "h"),
        engine(&[Command::HangUp {
            call_id: "c1".into(),
            for_everyone: false
        }])
    );
    assert_eq!(
        typed(&mut a, "m"),
        engine(&[Command::Mute {
            call_id: "c1".into()
        }])
    );
    a.handle_update(
        Update::CommandDone {
            cmd: Command::Mute {
                call_id: "c1".into(),
            },
            result: Ok(CommandOk::Done),
        },
        t0(),
    );
    assert!(a.calls[0].muted);
    assert_eq!(
        typed(&mut a, "m"),
        engine(&[Command::Unmute {
            call_id: "c1".into()
        }])
    );
    assert_eq!(
        typed(&mut a, "p"),
        engine(&[Command::Hold {
            call_id: "c1".into()
        }])
    );
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "c1".into(),
            state: CallState::LocalHold,
        },
    );
    assert_eq!(
        typed(&mut a, "p"),
        engine(&[Command::Resume {
            call_id: "c1".into()
        }])
    );
}

#[test]
fn resuming_holds_the_other_connected_call() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "c1".into(),
            state: CallState::LocalHold,
        },
    );
    outgoing(&mut a, "c2", "carol");
    assert_eq!(a.focused_call().unwrap().call_id, "c2");
    press(&mut a, &[key('[')]);
    assert_eq!(a.focused_call().unwrap().call_id, "c1");
    assert_eq!(
        typed(&mut a, "p"),
        engine(&[
            Command::Hold {
                call_id: "c2".into()
            },
            Command::Resume {
                call_id: "c1".into()
            }
        ])
    );
    press(&mut a, &[key(']'), key(']')]);
    assert_eq!(a.focused_call().unwrap().call_id, "c1", "focus wraps");
    press(&mut a, &[code(KeyCode::Down)]);
    assert_eq!(a.focused_call().unwrap().call_id, "c2");
}

#[test]
fn keys_without_a_call_say_so() {
    let mut a = app();
    for k in ['h', 'm', 'p', 'a', 'r'] {
        assert!(typed(&mut a, &k.to_string()).is_empty());
        assert!(a.notice.is_some(), "{k}");
        a.notice = None;
    }
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "c1".into(),
            state: CallState::Ringing,
        },
    );
    assert!(typed(&mut a, "p").is_empty());
    assert_eq!(
        a.notice.as_ref().unwrap().text,
        "Cannot hold a call that is Ringing"
    );
}

#[test]
fn failed_commands_are_shown() {
    let mut a = app();
    a.handle_update(
        Update::CommandDone {
            cmd: Command::Call {
                to: vec!["bob".into()],
                alternate_caller_id: None,
            },
            result: Err("not connected to the switchboard".into()),
        },
        t0(),
    );
    assert_eq!(
        a.notice.as_ref().unwrap().text,
        "Could not call bob: not connected to the switchboard"
    );
    assert!(a.calls.is_empty());
}

#[test]
fn an_ended_call_shows_its_reason_goes_to_history_and_lingers() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    a.now = a.now.plus(Duration::from_secs(42));
    let out = core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "c1".into(),
            state: CallState::Disconnected,
        },
    );
    assert!(out.is_empty());
    let out = core(
        &mut a,
        CoreEvent::CallEnded {
            call_id: "c1".into(),
            reason: CallEndReason::NORMAL,
        },
    );
    assert_eq!(out, vec![Action::SaveHistory]);
    let c = &a.calls[0];
    assert_eq!(c.ended.unwrap().reason, CallEndReason::NORMAL);
    assert_eq!(
        c.duration_ms(t0().unix_ms + 100_000),
        42_000,
        "frozen at the end"
    );
    assert_eq!(
        a.notice.as_ref().unwrap().text,
        "Call with bob ended: a party hung up (0/0)"
    );
    let h = a.history.get(0).unwrap();
    assert_eq!(
        (h.peer.as_str(), h.connected_ms, h.end_reason),
        ("bob", Some(42_000), CallEndReason::NORMAL)
    );
    // A late state event does not resurrect it.
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "c1".into(),
            state: CallState::Connected,
        },
    );
    assert!(!a.calls[0].is_live());
    assert!(a.next_deadline().is_some());
    advance(&mut a, ENDED_LINGER - Duration::from_millis(1));
    assert_eq!(a.calls.len(), 1);
    advance(&mut a, ENDED_LINGER);
    assert!(a.calls.is_empty());
    assert_eq!(a.next_deadline(), None, "idle: no timers");
}

#[test]
fn dismiss_clears_ended_calls_and_the_notice() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    outgoing(&mut a, "c2", "carol");
    core(
        &mut a,
        CoreEvent::CallEnded {
            call_id: "c1".into(),
            reason: CallEndReason::DECLINED,
        },
    );
    assert_eq!(a.focused_call().unwrap().call_id, "c2");
    typed(&mut a, "x");
    assert_eq!(a.calls.len(), 1);
    assert_eq!(a.focused_call().unwrap().call_id, "c2");
    assert!(a.notice.is_none());
}

// ---- participants -----------------------------------------------------------------------------

#[test]
fn participants_follow_updates() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    let mut bob = participant("bob", ParticipantState::Hold);
    bob.is_muted = true;
    core(
        &mut a,
        CoreEvent::ParticipantStateChanged {
            call_id: "c1".into(),
            participant: bob.clone(),
        },
    );
    assert_eq!(a.calls[0].remote, vec![bob.clone()]);
    core(
        &mut a,
        CoreEvent::RemoteParticipantsUpdated {
            call_id: "c1".into(),
            added: vec![participant("carol", ParticipantState::Ringing)],
            removed: vec![bob],
        },
    );
    assert_eq!(a.calls[0].remote.len(), 1);
    assert_eq!(a.calls[0].label(), "carol");
    // Events for unknown calls are ignored.
    core(
        &mut a,
        CoreEvent::ParticipantStateChanged {
            call_id: "zz".into(),
            participant: participant("x", ParticipantState::Idle),
        },
    );
    assert_eq!(a.calls.len(), 1);
}

// ---- incoming prompt --------------------------------------------------------------------------

#[test]
fn incoming_prompt_accepts_rejects_and_busies() {
    for (k, want) in [
        (
            key('a'),
            Command::Accept {
                call_id: "in1".into(),
            },
        ),
        (
            code(KeyCode::Enter),
            Command::Accept {
                call_id: "in1".into(),
            },
        ),
        (
            key('r'),
            Command::Reject {
                call_id: "in1".into(),
                reason: RejectReason::None,
            },
        ),
        (
            key('b'),
            Command::Reject {
                call_id: "in1".into(),
                reason: RejectReason::Busy,
            },
        ),
    ] {
        let mut a = app();
        let out = incoming(&mut a, "in1", "bob");
        assert_eq!(out, vec![Action::Bell]);
        assert_eq!(a.layers()[0], Layer::Incoming("in1".into()));
        assert_eq!(a.notice.as_ref().unwrap().text, "Incoming call from bob");
        assert_eq!(press(&mut a, &[k]), engine(&[want]), "{k:?}");
    }
}

#[test]
fn accepting_holds_the_current_call_and_focuses_the_new_one() {
    let mut a = app();
    outgoing(&mut a, "c1", "carol");
    incoming(&mut a, "in1", "bob");
    assert_eq!(
        a.focused_call().unwrap().call_id,
        "c1",
        "a ringing call does not steal focus"
    );
    assert_eq!(
        typed(&mut a, "a"),
        engine(&[
            Command::Hold {
                call_id: "c1".into()
            },
            Command::Accept {
                call_id: "in1".into()
            }
        ])
    );
    assert_eq!(a.focused_call().unwrap().call_id, "in1");
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "in1".into(),
            state: CallState::Connecting,
        },
    );
    assert!(
        !a.layers().iter().any(|l| matches!(l, Layer::Incoming(_))),
        "prompt gone once answered"
    );
}

#[test]
fn esc_puts_the_prompt_away_and_main_keys_still_answer() {
    let mut a = app();
    incoming(&mut a, "in1", "bob");
    typed(&mut a, "j"); // not a prompt key: passes to the main screen
    assert_eq!(a.layers()[0], Layer::Incoming("in1".into()));
    press(&mut a, &[code(KeyCode::Esc)]);
    assert_eq!(a.layers()[0], Layer::Main);
    assert_eq!(a.calls[0].state, CallState::Incoming);
    // Enter on the focused ringing call brings the prompt back; h declines it.
    press(&mut a, &[code(KeyCode::Enter)]);
    assert_eq!(a.layers()[0], Layer::Incoming("in1".into()));
    press(&mut a, &[code(KeyCode::Esc)]);
    assert_eq!(
        typed(&mut a, "h"),
        engine(&[Command::Reject {
            call_id: "in1".into(),
            reason: RejectReason::None
        }])
    );
    assert_eq!(
        typed(&mut a, "a"),
        engine(&[Command::Accept {
            call_id: "in1".into()
        }])
    );
}

#[test]
fn a_call_ringing_while_typing_does_not_take_the_keys() {
    let mut a = app();
    press(&mut a, &[key(':')]);
    typed(&mut a, "call ");
    incoming(&mut a, "in1", "carol");
    assert_eq!(
        a.layers()[..2],
        [Layer::CommandLine, Layer::Incoming("in1".into())]
    );
    assert!(typed(&mut a, "bob").is_empty());
    assert_eq!(a.cmdline.as_ref().unwrap().field.text(), "call bob");
    press(&mut a, &[code(KeyCode::Esc)]);
    assert_eq!(
        typed(&mut a, "b"),
        engine(&[Command::Reject {
            call_id: "in1".into(),
            reason: RejectReason::Busy
        }])
    );
}

#[test]
fn an_incoming_call_that_ends_records_the_caller() {
    let mut a = app();
    incoming(&mut a, "in1", "bob");
    core(
        &mut a,
        CoreEvent::CallEnded {
            call_id: "in1".into(),
            reason: CallEndReason::CANCELLED,
        },
    );
    assert_eq!(a.layers()[0], Layer::Main);
    let h = a.history.get(0).unwrap();
    assert_eq!(
        (h.peer.as_str(), h.direction, h.connected_ms),
        ("bob", Direction::Incoming, None)
    );
    assert_eq!(a.notice.as_ref().unwrap().level, Level::Warn);
    // The caller is now a completion candidate.
    assert!(a.names().contains(&"bob".to_string()));
}

#[test]
fn dialable_names() {
    assert_eq!(dialable(&ident("bob")), "bob");
    assert_eq!(dialable(&crate::core::echo_identity()), "echo");
    assert_eq!(
        dialable(&Identity {
            raw_id: "8:acs:r_x".into(),
            display_name: "Mr X".into()
        }),
        "8:acs:r_x"
    );
}

// ---- command line -----------------------------------------------------------------------------

#[test]
fn command_line_runs_commands() {
    let mut a = app();
    press(&mut a, &[key(':')]);
    typed(&mut a, "call bob, carol");
    let out = press(&mut a, &[code(KeyCode::Enter)]);
    assert_eq!(
        out,
        engine(&[Command::Call {
            to: vec!["bob".into(), "carol".into()],
            alternate_caller_id: None,
        }])
    );
    outgoing(&mut a, "c1", "bob");
    for (line, want) in [
        (
            "mute",
            engine(&[Command::Mute {
                call_id: "c1".into(),
            }]),
        ),
        ("unmute", vec![]),
        (
            "hold",
            engine(&[Command::Hold {
                call_id: "c1".into(),
            }]),
        ),
        ("resume", vec![]),
        (
            "hangup",
            engine(&[Command::HangUp {
                call_id: "c1".into(),
                for_everyone: false,
            }]),
        ),
        (
            "mic tone:440",
            vec![Action::SetDevice {
                slot: Slot::Microphone,
                spec: "tone:440".into(),
            }],
        ),
        (
            "speaker silence",
            vec![Action::SetDevice {
                slot: Slot::Speaker,
                spec: "silence".into(),
            }],
        ),
        (
            "camera /dev/video0",
            vec![Action::SetDevice {
                slot: Slot::Camera,
                spec: "/dev/video0".into(),
            }],
        ),
        ("quit!", vec![Action::Quit]),
    ] {
        press(&mut a, &[key(':')]);
        typed(&mut a, line);
        assert_eq!(press(&mut a, &[code(KeyCode::Enter)]), want, "{line}");
        assert!(a.cmdline.is_none());
    }
}

#[test]
fn command_line_errors_and_device_specs_are_checked() {
    let mut a = app();
    for (line, err) in [
        ("frob", "unknown command"),
        ("mic record:/tmp/x.wav", "cannot be used as a microphone"),
        ("speaker tone:440", "cannot be used as a speaker"),
        ("mic tone:abc", "tone frequency"),
        ("focus 3", "There is no call 3"),
    ] {
        press(&mut a, &[key(':')]);
        typed(&mut a, line);
        assert!(press(&mut a, &[code(KeyCode::Enter)]).is_empty(), "{line}");
        let n = a.notice.take().unwrap();
        assert!(n.text.contains(err), "{line}: {}", n.text);
    }
}

#[test]
fn command_line_tab_cycles_completions() {
    let mut a = app();
    press(&mut a, &[key(':')]);
    typed(&mut a, "ca");
    press(&mut a, &[code(KeyCode::Tab)]);
    assert_eq!(a.cmdline.as_ref().unwrap().field.text(), "call ");
    press(&mut a, &[code(KeyCode::Tab)]);
    assert_eq!(a.cmdline.as_ref().unwrap().field.text(), "camera ");
    press(&mut a, &[code(KeyCode::BackTab)]);
    assert_eq!(a.cmdline.as_ref().unwrap().field.text(), "call ");
    typed(&mut a, "c");
    press(&mut a, &[code(KeyCode::Tab)]);
    assert_eq!(a.cmdline.as_ref().unwrap().field.text(), "call carol");
    press(&mut a, &[code(KeyCode::Esc)]);
    assert!(a.cmdline.is_none());
}

// ---- quit and help ----------------------------------------------------------------------------

#[test]
fn quit_asks_only_when_a_call_is_live() {
    let mut a = app();
    assert_eq!(typed(&mut a, "q"), vec![Action::Quit]);
    outgoing(&mut a, "c1", "bob");
    assert!(typed(&mut a, "q").is_empty());
    assert_eq!(a.layers()[0], Layer::Confirm);
    // Other keys do nothing while asking.
    assert!(typed(&mut a, "hm").is_empty());
    typed(&mut a, "n");
    assert_eq!(a.layers()[0], Layer::Main);
    typed(&mut a, "q");
    assert_eq!(typed(&mut a, "y"), vec![Action::Quit]);
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    assert!(press(&mut a, &[ctrl('c')]).is_empty());
    assert_eq!(
        press(&mut a, &[ctrl('c')]),
        vec![Action::Quit],
        "a second Ctrl-C does not ask"
    );
}

#[test]
fn ctrl_c_closes_a_field_first() {
    let mut a = app();
    press(&mut a, &[key('c'), ctrl('c')]);
    assert!(a.dialer.is_none());
    assert_eq!(press(&mut a, &[ctrl('c')]), vec![Action::Quit]);
}

#[test]
fn help_overlay_takes_every_key_until_closed() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    typed(&mut a, "?");
    assert_eq!(a.layers()[0], Layer::Help);
    assert!(typed(&mut a, "hjjk").is_empty());
    assert_eq!(a.help, Some(1));
    typed(&mut a, "q");
    assert_eq!(a.help, None);
    assert!(!a.confirm_quit, "q closed help, it did not quit");
    press(&mut a, &[code(KeyCode::F(1)), code(KeyCode::Esc)]);
    assert_eq!(a.help, None);
}

// ---- history pane -----------------------------------------------------------------------------

#[test]
fn history_pane_calls_back() {
    let mut a = app();
    for (t, peer) in [(1, "carol"), (2, "bob")] {
        a.history.push(HistoryEntry {
            call_id: None,
            started_unix_ms: t,
            direction: Direction::Outgoing,
            peer: peer.into(),
            label: peer.into(),
            connected_ms: None,
            end_reason: CallEndReason::NO_ANSWER,
        });
    }
    press(&mut a, &[code(KeyCode::Tab)]);
    assert_eq!(a.pane, Pane::History);
    press(&mut a, &[key('j'), key('j'), key('j')]);
    assert_eq!(a.history_cursor, 1);
    assert_eq!(
        press(&mut a, &[code(KeyCode::Enter)]),
        engine(&[Command::Call {
            to: vec!["carol".into()],
            alternate_caller_id: None,
        }])
    );
    press(&mut a, &[key('k'), code(KeyCode::Tab)]);
    assert_eq!((a.pane, a.history_cursor), (Pane::Calls, 0));
}

// ---- device manager ---------------------------------------------------------------------------

fn dev(spec: &str, name: &str, default: bool, kind: DeviceBackend) -> DeviceInfo {
    DeviceInfo {
        name: name.into(),
        spec: spec.into(),
        is_default: default,
        kind,
        host: None,
    }
}

pub(crate) fn device_list() -> DeviceList {
    DeviceList {
        microphones: vec![
            dev(
                "alsa_input.usb",
                "USB Headset Microphone",
                false,
                DeviceBackend::Cpal,
            ),
            dev(
                "alsa_input.pci",
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
                "alsa_output.pci",
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
fn device_manager_lists_selects_applies_and_saves() {
    let mut a = app();
    a.devices.speaker = "silence".into();
    assert_eq!(typed(&mut a, "d"), vec![Action::ListDevices]);
    assert_eq!(a.layers()[0], Layer::Devices);
    assert!(a.devman.entries(Slot::Microphone).is_empty(), "loading");
    a.handle_update(Update::Devices(device_list()), t0());
    let mics = a.devman.entries(Slot::Microphone);
    assert_eq!(mics[0].spec, "default");
    assert_eq!(
        mics[0].name,
        "System default (Built-in Audio Analog Stereo)"
    );
    assert_eq!(
        a.devman.cursor,
        [0, 3, 0],
        "cursors start on the current choice"
    );
    assert_eq!(
        typed(&mut a, "jj "),
        vec![Action::SetDevice {
            slot: Slot::Microphone,
            spec: "alsa_input.pci".into()
        }]
    );
    let out = a.handle_update(
        Update::DeviceSet {
            slot: Slot::Microphone,
            spec: "alsa_input.pci".into(),
            result: Ok(()),
        },
        t0(),
    );
    assert_eq!(a.devices.microphone, "alsa_input.pci");
    assert_eq!(out, vec![Action::SaveDevices(a.devices.clone())]);
    a.handle_update(
        Update::DeviceSet {
            slot: Slot::Speaker,
            spec: "x".into(),
            result: Err("no such device".into()),
        },
        t0(),
    );
    assert_eq!(a.devices.speaker, "silence");
    assert!(a.notice.as_ref().unwrap().text.contains("no such device"));
    // Columns wrap; the camera column has no "default".
    press(&mut a, &[code(KeyCode::Left)]);
    assert_eq!(a.devman.column_slot(), Slot::Camera);
    assert_eq!(
        press(&mut a, &[code(KeyCode::Enter)]),
        vec![Action::SetDevice {
            slot: Slot::Camera,
            spec: "/dev/video0".into()
        }]
    );
    press(&mut a, &[code(KeyCode::Tab), code(KeyCode::Tab)]);
    assert_eq!(a.devman.column_slot(), Slot::Speaker);
    press(&mut a, &[key('j'), key('j'), key('j'), key('j')]);
    assert_eq!(a.devman.cursor[1], 3, "stops at the last entry");
    assert_eq!(typed(&mut a, "t"), vec![Action::TestTone]);
    assert_eq!(
        typed(&mut a, "e"),
        engine(&[Command::Call {
            to: vec!["echo".into()],
            alternate_caller_id: None,
        }])
    );
    assert_eq!(typed(&mut a, "r"), vec![Action::ListDevices]);
    typed(&mut a, "d");
    assert_eq!(a.layers()[0], Layer::Main);
}

#[test]
fn device_templates_ask_for_a_path() {
    let mut a = app();
    typed(&mut a, "d");
    a.handle_update(Update::Devices(device_list()), t0());
    assert!(typed(&mut a, "jjj").is_empty());
    assert!(press(&mut a, &[code(KeyCode::Enter)]).is_empty());
    assert_eq!(a.cmdline.as_ref().unwrap().field.text(), "mic file:");
    typed(&mut a, "/tmp/hello.wav");
    assert_eq!(
        press(&mut a, &[code(KeyCode::Enter)]),
        vec![Action::SetDevice {
            slot: Slot::Microphone,
            spec: "file:/tmp/hello.wav".into()
        }]
    );
}

#[test]
fn device_manager_passes_call_keys_through_and_polls() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    typed(&mut a, "d");
    assert_eq!(
        typed(&mut a, "h"),
        engine(&[Command::HangUp {
            call_id: "c1".into(),
            for_everyone: false
        }])
    );
    assert_eq!(
        typed(&mut a, "m"),
        engine(&[Command::Mute {
            call_id: "c1".into()
        }])
    );
    assert!(a.devman.open);
    assert!(advance(&mut a, Duration::from_secs(1)).is_empty());
    assert_eq!(advance(&mut a, DEVICE_POLL), vec![Action::ListDevices]);
    a.handle_update(Update::Devices(device_list()), a.now);
    let mut fewer = device_list();
    fewer.microphones.remove(0);
    a.handle_update(Update::Devices(fewer), a.now);
    assert_eq!(a.notice.as_ref().unwrap().text, s::DEVICES_CHANGED);
    assert!(
        a.devman
            .cursor
            .iter()
            .zip([5usize, 3, 0])
            .all(|(c, len)| *c <= len)
    );
    typed(&mut a, "d");
    a.calls.clear();
    a.notice = None;
    assert_eq!(a.next_deadline(), None, "closed manager stops polling");
}

// ---- time -------------------------------------------------------------------------------------

#[test]
fn deadlines_follow_the_wall_clock_second_while_a_call_is_live() {
    let mut a = app();
    assert_eq!(a.next_deadline(), None);
    outgoing(&mut a, "c1", "bob");
    a.notice = None;
    a.now = Now {
        mono: a.now.mono,
        unix_ms: 1_763_750_000_250,
    };
    assert_eq!(
        a.next_deadline(),
        Some(a.now.mono + Duration::from_millis(750))
    );
    a.take_dirty();
    advance(&mut a, Duration::from_millis(750));
    assert!(a.take_dirty(), "durations redraw");
    a.notify(Level::Info, "hi".into());
    let n = a.notice.as_ref().unwrap().until;
    advance(&mut a, Duration::from_secs(7));
    assert!(a.notice.is_none() && n <= a.now.mono);
}

#[test]
fn key_releases_are_ignored() {
    let mut a = app();
    let mut k = key('q');
    k.kind = KeyEventKind::Release;
    assert!(a.handle_key(k, t0()).is_empty());
}

#[test]
fn the_incoming_notice_goes_once_answered() {
    let mut a = app();
    incoming(&mut a, "in1", "bob");
    assert_eq!(a.notice.as_ref().unwrap().text, "Incoming call from bob");
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "in1".into(),
            state: CallState::Connecting,
        },
    );
    assert!(a.notice.is_none());
}

#[test]
fn levels_are_wanted_only_while_a_meter_shows() {
    let mut a = app();
    assert!(!a.wants_levels());
    outgoing(&mut a, "c1", "bob");
    assert!(a.wants_levels());
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "c1".into(),
            state: CallState::LocalHold,
        },
    );
    assert!(!a.wants_levels());
    typed(&mut a, "d");
    assert!(a.wants_levels());
}

#[test]
fn events_that_overtake_the_call_reply_get_the_dialled_name() {
    let mut a = app();
    connected(&mut a);
    typed(&mut a, ":call carol");
    press(&mut a, &[code(KeyCode::Enter)]);
    // The engine's events arrive before the reply to `call` reaches the app.
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "c1".into(),
            state: CallState::Connecting,
        },
    );
    assert_eq!(a.calls[0].label(), "carol");
    core(
        &mut a,
        CoreEvent::CallEnded {
            call_id: "c1".into(),
            reason: CallEndReason::UNKNOWN_USER,
        },
    );
    assert_eq!(a.history.get(0).unwrap().peer, "carol");
    assert_eq!(
        a.notice.as_ref().unwrap().text,
        "Call with carol ended: no such user or number (404/0)"
    );
    let now = a.now;
    let out = a.handle_update(
        Update::CommandDone {
            cmd: Command::Call {
                to: vec!["carol".into()],
                alternate_caller_id: None,
            },
            result: Ok(CommandOk::CallId("c1".into())),
        },
        now,
    );
    assert!(out.is_empty());
    assert!(a.pending_dials_len() == 0);
}

#[test]
fn a_wrong_guess_is_corrected_by_the_reply() {
    let mut a = app();
    connected(&mut a);
    for name in ["bob", "carol"] {
        press(&mut a, &[key(':')]);
        typed(&mut a, &format!("call {name}"));
        press(&mut a, &[code(KeyCode::Enter)]);
    }
    // carol's call shows up first and ends at once (the replies were reordered).
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "c-carol".into(),
            state: CallState::Connecting,
        },
    );
    core(
        &mut a,
        CoreEvent::CallEnded {
            call_id: "c-carol".into(),
            reason: CallEndReason::UNKNOWN_USER,
        },
    );
    assert_eq!(
        a.history.get(0).unwrap().peer,
        "bob",
        "a wrong guess, for now"
    );
    let now = a.now;
    let out = a.handle_update(
        Update::CommandDone {
            cmd: Command::Call {
                to: vec!["carol".into()],
                alternate_caller_id: None,
            },
            result: Ok(CommandOk::CallId("c-carol".into())),
        },
        now,
    );
    assert_eq!(out, vec![Action::SaveHistory]);
    let h = a.history.get(0).unwrap();
    assert_eq!((h.peer.as_str(), h.label.as_str()), ("carol", "carol"));
    assert_eq!(
        a.notice.as_ref().unwrap().text,
        "Call with carol ended: no such user or number (404/0)"
    );
    // bob's call then gets bob.
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "c-bob".into(),
            state: CallState::Connecting,
        },
    );
    assert_eq!(
        a.calls
            .iter()
            .find(|c| c.call_id == "c-bob")
            .unwrap()
            .label(),
        "bob"
    );
    a.handle_update(
        Update::CommandDone {
            cmd: Command::Call {
                to: vec!["bob".into()],
                alternate_caller_id: None,
            },
            result: Ok(CommandOk::CallId("c-bob".into())),
        },
        now,
    );
    assert_eq!(a.pending_dials_len(), 0);
}

#[test]
fn a_failed_dial_is_forgotten() {
    let mut a = app();
    typed(&mut a, "e");
    let now = a.now;
    a.handle_update(
        Update::CommandDone {
            cmd: Command::Call {
                to: vec!["echo".into()],
                alternate_caller_id: None,
            },
            result: Err("not connected to the switchboard".into()),
        },
        now,
    );
    assert_eq!(a.pending_dials_len(), 0);
}

// ---- transfer: the transferor -------------------------------------------------------------------

fn transfer_state(
    app: &mut App,
    call_id: &str,
    state: TransferState,
    error: Option<CallEndReason>,
) -> Vec<Action> {
    core(
        app,
        CoreEvent::TransferStateChanged {
            call_id: call_id.into(),
            transfer_id: "x1".into(),
            state,
            error,
        },
    )
}

fn row<'a>(app: &'a App, id: &str) -> &'a CallRow {
    app.calls.iter().find(|c| c.call_id == id).unwrap()
}

fn notice(app: &App) -> String {
    app.notice
        .as_ref()
        .map(|n| n.text.clone())
        .unwrap_or_default()
}

#[test]
fn transfer_prompt_to_a_participant_with_completion() {
    let mut a = app();
    connected(&mut a);
    outgoing(&mut a, "c1", "bob");
    typed(&mut a, "t");
    assert_eq!(a.layers()[0], Layer::Transfer);
    let p = a.transfer.as_ref().unwrap();
    assert_eq!(
        (p.call_id.as_str(), p.label.as_str(), p.step),
        ("c1", "bob", TransferStep::Choose)
    );
    typed(&mut a, "p");
    assert_eq!(a.transfer.as_ref().unwrap().step, TransferStep::Participant);
    // bob is the one being moved, alice is us, echo is a service: only carol is offered.
    assert_eq!(a.transfer_suggestions(), vec!["carol"]);
    // Letters are text now, even the prompt's own keys.
    typed(&mut a, "cpv");
    assert_eq!(a.transfer.as_ref().unwrap().field.text(), "cpv");
    press(&mut a, &[ctrl('u')]);
    typed(&mut a, "ca");
    press(&mut a, &[code(KeyCode::Tab)]);
    let out = press(&mut a, &[code(KeyCode::Enter)]);
    assert_eq!(
        out,
        engine(&[Command::Transfer {
            call_id: "c1".into(),
            target: TransferTarget::Participant("carol".into()),
            disable_forwarding: false,
        }])
    );
    assert!(a.transfer.is_none());
    let t = row(&a, "c1").transfer.clone().unwrap();
    assert_eq!(
        (t.target.as_str(), t.state, t.transfer_id),
        ("carol", TransferState::Transferring, None)
    );
    // The core's event, then the reply, then the result.
    transfer_state(&mut a, "c1", TransferState::Transferring, None);
    let now = a.now;
    a.handle_update(
        Update::CommandDone {
            cmd: Command::Transfer {
                call_id: "c1".into(),
                target: TransferTarget::Participant("carol".into()),
                disable_forwarding: false,
            },
            result: Ok(CommandOk::TransferId("x1".into())),
        },
        now,
    );
    assert_eq!(
        row(&a, "c1")
            .transfer
            .as_ref()
            .unwrap()
            .transfer_id
            .as_deref(),
        Some("x1")
    );
    transfer_state(&mut a, "c1", TransferState::Transferred, None);
    assert_eq!(
        row(&a, "c1").transfer.as_ref().unwrap().state,
        TransferState::Transferred
    );
    assert_eq!(notice(&a), "Transferred bob to carol");
    core(
        &mut a,
        CoreEvent::CallEnded {
            call_id: "c1".into(),
            reason: CallEndReason::TRANSFERRED,
        },
    );
    assert!(!row(&a, "c1").is_live());
    assert_eq!(
        a.history.get(0).unwrap().end_reason,
        CallEndReason::TRANSFERRED
    );
}

#[test]
fn transfer_prompt_choices_forwarding_and_esc() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    typed(&mut a, "t");
    // Up/Down and Enter choose too.
    press(&mut a, &[code(KeyCode::Down), code(KeyCode::Down)]);
    assert_eq!(a.transfer.as_ref().unwrap().choice, 2);
    typed(&mut a, "f");
    assert!(a.transfer.as_ref().unwrap().disable_forwarding);
    press(&mut a, &[code(KeyCode::Enter)]);
    assert_eq!(a.transfer.as_ref().unwrap().step, TransferStep::Voicemail);
    // For a voicemail we may pick our own mailbox, last.
    assert_eq!(a.transfer_suggestions(), vec!["bob", "carol", "alice"]);
    // In the field f is text; Ctrl-F toggles.
    typed(&mut a, "f");
    assert_eq!(a.transfer.as_ref().unwrap().field.text(), "f");
    press(&mut a, &[ctrl('f')]);
    assert!(!a.transfer.as_ref().unwrap().disable_forwarding);
    press(&mut a, &[ctrl('f')]);
    // Esc goes back a step, then closes.
    press(&mut a, &[code(KeyCode::Esc)]);
    let p = a.transfer.as_ref().unwrap();
    assert_eq!(
        (p.step, p.field.text().as_str()),
        (TransferStep::Choose, "")
    );
    assert!(p.disable_forwarding, "the option survives going back");
    typed(&mut a, "v");
    typed(&mut a, "carol");
    let out = press(&mut a, &[code(KeyCode::Enter)]);
    assert_eq!(
        out,
        engine(&[Command::Transfer {
            call_id: "c1".into(),
            target: TransferTarget::Voicemail("carol".into()),
            disable_forwarding: true,
        }])
    );
    assert_eq!(
        row(&a, "c1").transfer.as_ref().unwrap().target,
        "carol's voicemail"
    );
    // A second transfer while one runs is refused here already.
    typed(&mut a, "t");
    assert!(a.transfer.is_none());
    assert_eq!(notice(&a), s::TRANSFER_UNDER_WAY);
    // Esc from the first step closes; Ctrl-C too.
    transfer_state(&mut a, "c1", TransferState::None, None);
    assert!(row(&a, "c1").transfer.is_none());
    typed(&mut a, "t");
    press(&mut a, &[code(KeyCode::Esc)]);
    assert!(a.transfer.is_none());
    typed(&mut a, "tp");
    press(&mut a, &[ctrl('c')]);
    assert!(a.transfer.is_none());
    assert!(!a.confirm_quit, "Ctrl-C closed the prompt, it did not quit");
    // An empty name or nonsense is refused in place.
    typed(&mut a, "tp");
    let out = press(&mut a, &[code(KeyCode::Enter)]);
    assert!(out.is_empty());
    assert_eq!(notice(&a), s::TRANSFER_EMPTY);
    assert!(a.transfer.is_some());
}

#[test]
fn transfer_to_another_of_my_calls() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    typed(&mut a, "tc");
    assert_eq!(a.notice.as_ref().unwrap().text, s::NO_OTHER_CALL);
    assert_eq!(a.transfer.as_ref().unwrap().step, TransferStep::Choose);
    press(&mut a, &[code(KeyCode::Esc)]);
    outgoing(&mut a, "c2", "carol");
    outgoing(&mut a, "c3", "dave");
    // A ringing call is not a target.
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "c3".into(),
            state: CallState::Ringing,
        },
    );
    a.focus = 0;
    typed(&mut a, "tc");
    assert_eq!(a.transfer.as_ref().unwrap().step, TransferStep::Call);
    let targets: Vec<&str> = a
        .transfer_call_targets("c1")
        .iter()
        .map(|c| c.call_id.as_str())
        .collect();
    assert_eq!(targets, vec!["c2"]);
    press(&mut a, &[code(KeyCode::Down)]);
    assert_eq!(
        a.transfer.as_ref().unwrap().call_cursor,
        0,
        "one target wraps"
    );
    let out = press(&mut a, &[code(KeyCode::Enter)]);
    assert_eq!(
        out,
        engine(&[Command::Transfer {
            call_id: "c1".into(),
            target: TransferTarget::CallId("c2".into()),
            disable_forwarding: false,
        }])
    );
    assert_eq!(row(&a, "c1").transfer.as_ref().unwrap().target, "carol");
}

#[test]
fn transfer_failures_show_the_reason_and_keep_the_call() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    typed(&mut a, "tp");
    typed(&mut a, "carol");
    press(&mut a, &[code(KeyCode::Enter)]);
    transfer_state(&mut a, "c1", TransferState::Transferring, None);
    transfer_state(
        &mut a,
        "c1",
        TransferState::Failed,
        Some(CallEndReason::TRANSFER_TARGET_BUSY),
    );
    let c = row(&a, "c1");
    assert!(c.is_live() && c.state == CallState::Connected);
    let t = c.transfer.as_ref().unwrap();
    assert_eq!(
        (t.state, t.error),
        (
            TransferState::Failed,
            Some(CallEndReason::TRANSFER_TARGET_BUSY)
        )
    );
    assert_eq!(
        notice(&a),
        "Transfer of bob to carol failed: the target is busy (486/7100)"
    );
    assert_eq!(a.notice.as_ref().unwrap().level, Level::Warn);
    // A failed transfer may be tried again; x clears the old result.
    typed(&mut a, "x");
    assert!(row(&a, "c1").transfer.is_none());
    // A refusal carries the switchboard's own words.
    typed(&mut a, "tp");
    typed(&mut a, "alice");
    press(&mut a, &[code(KeyCode::Enter)]);
    core(
        &mut a,
        CoreEvent::Error {
            code: crate::protocol::ErrorCode::InvalidArgument,
            message: "you cannot transfer a call to yourself".into(),
            call_id: Some("c1".into()),
        },
    );
    transfer_state(
        &mut a,
        "c1",
        TransferState::Failed,
        Some(CallEndReason::TRANSFER_REFUSED),
    );
    assert_eq!(
        notice(&a),
        "Transfer of bob to alice failed: you cannot transfer a call to yourself (400/7105)"
    );
    // A command the engine refused leaves no status behind.
    typed(&mut a, "x");
    typed(&mut a, "tp");
    typed(&mut a, "carol");
    let out = press(&mut a, &[code(KeyCode::Enter)]);
    let Action::Engine(cmd) = out[0].clone() else {
        panic!("{out:?}")
    };
    let now = a.now;
    a.handle_update(
        Update::CommandDone {
            cmd,
            result: Err("not connected to the switchboard".into()),
        },
        now,
    );
    assert!(row(&a, "c1").transfer.is_none());
    assert_eq!(
        notice(&a),
        "Could not transfer: not connected to the switchboard"
    );
}

#[test]
fn only_a_connected_or_held_call_is_transferred() {
    let mut a = app();
    typed(&mut a, "t");
    assert_eq!(notice(&a), s::NO_CALL);
    incoming(&mut a, "in1", "bob");
    press(&mut a, &[code(KeyCode::Esc)]);
    typed(&mut a, "t");
    assert!(a.transfer.is_none());
    assert_eq!(notice(&a), s::NO_TRANSFERABLE_CALL);
    // The prompt closes when its call ends.
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    typed(&mut a, "tp");
    core(
        &mut a,
        CoreEvent::CallEnded {
            call_id: "c1".into(),
            reason: CallEndReason::NORMAL,
        },
    );
    assert!(a.transfer.is_none());
}

#[test]
fn transfer_from_the_command_line() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    outgoing(&mut a, "c2", "carol");
    let run = |a: &mut App, line: &str| {
        press(a, &[key(':')]);
        typed(a, line);
        press(a, &[code(KeyCode::Enter)])
    };
    a.focus = 0;
    let out = run(&mut a, "transfer dave noforward");
    assert_eq!(
        out,
        engine(&[Command::Transfer {
            call_id: "c1".into(),
            target: TransferTarget::Participant("dave".into()),
            disable_forwarding: true,
        }])
    );
    transfer_state(&mut a, "c1", TransferState::None, None);
    let out = run(&mut a, "transfer call 2");
    assert_eq!(
        out,
        engine(&[Command::Transfer {
            call_id: "c1".into(),
            target: TransferTarget::CallId("c2".into()),
            disable_forwarding: false,
        }])
    );
    transfer_state(&mut a, "c1", TransferState::None, None);
    assert!(run(&mut a, "transfer call 1").is_empty());
    assert_eq!(notice(&a), s::NO_OTHER_CALL);
    assert!(run(&mut a, "transfer call 9").is_empty());
    assert_eq!(notice(&a), "There is no call 9");
    let out = run(&mut a, "transfer vm carol");
    assert_eq!(
        out,
        engine(&[Command::Transfer {
            call_id: "c1".into(),
            target: TransferTarget::Voicemail("carol".into()),
            disable_forwarding: false,
        }])
    );
    transfer_state(&mut a, "c1", TransferState::None, None);
    assert!(run(&mut a, "transfer").is_empty());
    assert_eq!(a.layers()[0], Layer::Transfer);
}

// ---- transfer: the transferee and the target -------------------------------------------------------

fn asked(app: &mut App, call_id: &str, kind: TransferKind, target: &str) -> Vec<Action> {
    core(
        app,
        CoreEvent::TransferRequested {
            call_id: call_id.into(),
            transfer_id: "x1".into(),
            transferor: ident("alice"),
            target: crate::protocol::TransferTargetInfo {
                kind,
                identity: ident(target),
            },
        },
    )
}

#[test]
fn transfer_request_prompt_accepts_and_the_new_call_follows() {
    let mut a = app();
    outgoing(&mut a, "c1", "alice");
    let out = asked(&mut a, "c1", TransferKind::Participant, "carol");
    assert_eq!(out, vec![Action::Bell]);
    assert_eq!(a.layers()[0], Layer::TransferRequest("c1".into()));
    assert_eq!(
        notice(&a),
        "alice asks to transfer your call to carol (a new call; carol is rung)"
    );
    let out = typed(&mut a, "a");
    assert_eq!(
        out,
        engine(&[Command::AcceptTransfer {
            call_id: "c1".into()
        }])
    );
    assert_eq!(a.layers()[0], Layer::Main);
    assert_eq!(
        notice(&a),
        "Transfer accepted: you go on with carol once they answer"
    );
    // The new call comes connected, before the old one ends.
    core(
        &mut a,
        CoreEvent::TransferAccepted {
            call_id: "c1".into(),
            target_call_id: "xfer-x1".into(),
        },
    );
    assert_eq!(notice(&a), "alice transferred you to carol");
    assert_eq!(a.focused_call().unwrap().call_id, "xfer-x1");
    core(
        &mut a,
        CoreEvent::RemoteParticipantsUpdated {
            call_id: "xfer-x1".into(),
            added: vec![participant("carol", ParticipantState::Connected)],
            removed: vec![],
        },
    );
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "xfer-x1".into(),
            state: CallState::Connected,
        },
    );
    core(
        &mut a,
        CoreEvent::CallEnded {
            call_id: "c1".into(),
            reason: CallEndReason::TRANSFERRED,
        },
    );
    let new = row(&a, "xfer-x1");
    assert_eq!(
        (new.label().as_str(), new.state, new.via.clone()),
        (
            "carol",
            CallState::Connected,
            Some(Via::TransferredBy("alice".into()))
        )
    );
    assert!(a.transfer_requests.is_empty());
    assert_eq!(a.pending_dials_len(), 0);
}

#[test]
fn transfer_request_rejects_hides_and_passes_call_keys() {
    let mut a = app();
    outgoing(&mut a, "c1", "alice");
    asked(&mut a, "c1", TransferKind::Voicemail, "carol");
    // Esc puts it away; the row says a transfer is asked; Enter on the call shows it again.
    press(&mut a, &[code(KeyCode::Esc)]);
    assert_eq!(a.layers()[0], Layer::Main);
    assert!(a.transfer_request_on("c1").is_some());
    press(&mut a, &[code(KeyCode::Enter)]);
    assert_eq!(a.layers()[0], Layer::TransferRequest("c1".into()));
    // Call keys pass through the prompt.
    let out = typed(&mut a, "m");
    assert_eq!(
        out,
        engine(&[Command::Mute {
            call_id: "c1".into()
        }])
    );
    let out = typed(&mut a, "r");
    assert_eq!(
        out,
        engine(&[Command::RejectTransfer {
            call_id: "c1".into()
        }])
    );
    assert!(a.transfer_requests.is_empty());
    assert_eq!(notice(&a), "You rejected alice's transfer");
    // A request on a call that ends goes with it.
    asked(&mut a, "c1", TransferKind::Call, "carol");
    core(
        &mut a,
        CoreEvent::CallEnded {
            call_id: "c1".into(),
            reason: CallEndReason::NORMAL,
        },
    );
    assert!(a.transfer_requests.is_empty());
    // An answer the engine refused drops the request with the reason.
    outgoing(&mut a, "c2", "alice");
    asked(&mut a, "c2", TransferKind::Participant, "carol");
    let out = typed(&mut a, "a");
    let Action::Engine(cmd) = out[0].clone() else {
        panic!()
    };
    let now = a.now;
    a.handle_update(
        Update::CommandDone {
            cmd,
            result: Err("no call with id \"c2\"".into()),
        },
        now,
    );
    assert!(a.transfer_requests.is_empty());
    assert!(notice(&a).starts_with("Could not accept the transfer"));
}

#[test]
fn auto_accepted_transfers_only_tell() {
    let mut a = app();
    a.auto_accept_transfers = true;
    outgoing(&mut a, "c1", "alice");
    let out = asked(&mut a, "c1", TransferKind::Participant, "carol");
    assert!(out.is_empty(), "no bell, no command: the engine accepted");
    assert_eq!(a.layers()[0], Layer::Main);
    assert_eq!(
        notice(&a),
        "alice is transferring your call to carol (a new call; carol is rung) (accepted automatically)"
    );
    core(
        &mut a,
        CoreEvent::TransferAccepted {
            call_id: "c1".into(),
            target_call_id: "xfer-x1".into(),
        },
    );
    assert_eq!(
        row(&a, "xfer-x1").via,
        Some(Via::TransferredBy("alice".into()))
    );
}

#[test]
fn incoming_calls_say_how_they_came() {
    let mut a = app();
    core(
        &mut a,
        CoreEvent::IncomingCall {
            call_id: "in1".into(),
            caller: ident("bob"),
            transferred_by: Some(ident("alice")),
            forwarded_from: None,
            caller_number: None,
            group: false,
        },
    );
    assert_eq!(notice(&a), "Incoming call from bob, transferred by alice");
    assert_eq!(row(&a, "in1").via, Some(Via::TransferredBy("alice".into())));
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "in1".into(),
            state: CallState::Connecting,
        },
    );
    assert!(a.notice.is_none(), "the notice goes once answered");
    core(
        &mut a,
        CoreEvent::IncomingCall {
            call_id: "in2".into(),
            caller: ident("dave"),
            transferred_by: None,
            forwarded_from: Some(ident("carol")),
            caller_number: None,
            group: false,
        },
    );
    assert_eq!(notice(&a), "Incoming call from dave, forwarded from carol");
}

// ---- voicemail and forwarding ------------------------------------------------------------------------

fn message(id: &str, name: &str, ago_s: u64, secs: u64, is_new: bool) -> VoicemailInfo {
    VoicemailInfo {
        message_id: id.into(),
        caller: ident(name),
        received_unix_ms: t0().unix_ms - ago_s * 1000,
        duration_ms: secs * 1000,
        is_new,
    }
}

fn mailbox() -> Vec<VoicemailInfo> {
    vec![
        message("m3", "bob", 300, 12, true),
        message("m2", "carol", 4000, 62, false),
        message("m1", "dave", 200_000, 5, false),
    ]
}

#[test]
fn voicemail_panel_lists_plays_and_marks() {
    let mut a = app();
    connected(&mut a);
    let out = typed(&mut a, "v");
    assert_eq!(out, engine(&[Command::ListVoicemail]));
    assert_eq!(a.layers()[0], Layer::Voicemail);
    assert!(a.voicemail.messages.is_none());
    core(&mut a, CoreEvent::Voicemails(mailbox()));
    assert_eq!(a.voicemail.selected().unwrap().message_id, "m3");
    let out = press(&mut a, &[code(KeyCode::Enter)]);
    assert_eq!(
        out,
        vec![Action::PlayVoicemail {
            message_id: "m3".into()
        }]
    );
    assert_eq!(a.voicemail.loading.as_deref(), Some("m3"));
    let now = a.now;
    let out = a.handle_update(
        Update::VoicemailPlaying {
            message_id: "m3".into(),
            result: Ok(12_000),
        },
        now,
    );
    // A new message that was played is heard: marked old.
    assert_eq!(
        out,
        engine(&[Command::MarkVoicemail {
            message_id: "m3".into(),
            is_new: false
        }])
    );
    assert!(!a.voicemail.selected().unwrap().is_new);
    assert_eq!(
        notice(&a),
        "Playing the message from bob (0:12) on the speaker"
    );
    let until = a.voicemail.playing.as_ref().unwrap().until;
    assert!(a.next_deadline().unwrap() <= until);
    advance(&mut a, Duration::from_secs(13));
    assert!(a.voicemail.playing.is_none());
    // n toggles new/old, here back to new.
    let out = typed(&mut a, "n");
    assert_eq!(
        out,
        engine(&[Command::MarkVoicemail {
            message_id: "m3".into(),
            is_new: true
        }])
    );
    // s stops what plays.
    press(&mut a, &[code(KeyCode::Down), code(KeyCode::Enter)]);
    assert_eq!(a.voicemail.loading.as_deref(), Some("m2"));
    let out = typed(&mut a, "s");
    assert_eq!(out, vec![Action::StopVoicemail]);
    // A play that reports after being stopped is stopped again.
    let now = a.now;
    let out = a.handle_update(
        Update::VoicemailPlaying {
            message_id: "m2".into(),
            result: Ok(62_000),
        },
        now,
    );
    assert_eq!(out, vec![Action::StopVoicemail]);
    assert!(a.voicemail.playing.is_none());
    // Two asked for at once: the first to report is replaced by the second.
    press(
        &mut a,
        &[
            code(KeyCode::Enter),
            code(KeyCode::Up),
            code(KeyCode::Enter),
        ],
    );
    let now = a.now;
    let out = a.handle_update(
        Update::VoicemailPlaying {
            message_id: "m2".into(),
            result: Ok(62_000),
        },
        now,
    );
    assert!(out.is_empty(), "m3 is still coming: {out:?}");
    a.handle_update(
        Update::VoicemailPlaying {
            message_id: "m3".into(),
            result: Ok(12_000),
        },
        now,
    );
    assert_eq!(a.voicemail.playing.as_ref().unwrap().message_id, "m3");
    press(&mut a, &[code(KeyCode::Down)]);
    // A failure says why.
    press(&mut a, &[code(KeyCode::Enter)]);
    let now = a.now;
    a.handle_update(
        Update::VoicemailPlaying {
            message_id: "m2".into(),
            result: Err("the speaker is gone".into()),
        },
        now,
    );
    assert_eq!(a.notice.as_ref().unwrap().level, Level::Error);
    assert!(notice(&a).contains("the speaker is gone"));
    // Esc closes; v too.
    press(&mut a, &[code(KeyCode::Esc)]);
    assert!(!a.voicemail.open);
    typed(&mut a, "v");
    typed(&mut a, "v");
    assert!(!a.voicemail.open);
}

#[test]
fn voicemail_delete_asks_first() {
    let mut a = app();
    typed(&mut a, "v");
    core(&mut a, CoreEvent::Voicemails(mailbox()));
    press(&mut a, &[code(KeyCode::Down)]);
    typed(&mut a, "x");
    assert_eq!(a.layers()[0], Layer::ConfirmDelete);
    assert_eq!(a.voicemail.confirm_delete.as_deref(), Some("m2"));
    // n keeps it.
    assert!(typed(&mut a, "n").is_empty());
    assert_eq!(a.voicemail.messages.as_ref().unwrap().len(), 3);
    // Delete asks again; y deletes.
    press(&mut a, &[code(KeyCode::Delete)]);
    let out = typed(&mut a, "y");
    assert_eq!(
        out,
        engine(&[Command::DeleteVoicemail {
            message_id: "m2".into()
        }])
    );
    let ids: Vec<&str> = a
        .voicemail
        .messages
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.message_id.as_str())
        .collect();
    assert_eq!(ids, vec!["m3", "m1"]);
    assert_eq!(a.voicemail.selected().unwrap().message_id, "m1");
    // A failed delete lists again.
    let now = a.now;
    let out = a.handle_update(
        Update::CommandDone {
            cmd: Command::DeleteVoicemail {
                message_id: "m2".into(),
            },
            result: Err("not connected to the switchboard".into()),
        },
        now,
    );
    assert_eq!(out, engine(&[Command::ListVoicemail]));
    // The cursor stays on its message when the list changes.
    core(&mut a, CoreEvent::Voicemails(mailbox()));
    assert_eq!(a.voicemail.selected().unwrap().message_id, "m1");
    // Keys the panel does not use reach the main screen (call keys, dial).
    typed(&mut a, "c");
    assert!(a.dialer.is_some());
}

#[test]
fn message_waiting_counts_and_notices() {
    let mut a = app();
    let mw = |a: &mut App, new, total| {
        core(
            a,
            CoreEvent::MessageWaiting {
                new_count: new,
                total_count: total,
            },
        )
    };
    assert!(mw(&mut a, 0, 2).is_empty());
    assert_eq!(a.message_waiting, Some((0, 2)));
    assert!(a.notice.is_none(), "nothing new at sign-in");
    mw(&mut a, 1, 3);
    assert_eq!(notice(&a), "Voicemail: 1 new of 3 messages (v to listen)");
    typed(&mut a, "v");
    // While the panel is open a change lists again.
    assert_eq!(mw(&mut a, 0, 3), engine(&[Command::ListVoicemail]));
}

#[test]
fn forwarding_from_the_command_line_and_the_panel() {
    let mut a = app();
    let fwd = |mode, target: Option<&str>, secs| Forwarding {
        mode,
        target: target.map(str::to_string),
        unanswered_after_secs: secs,
    };
    press(&mut a, &[key(':')]);
    typed(&mut a, "forward");
    press(&mut a, &[code(KeyCode::Enter)]);
    assert_eq!(notice(&a), s::FORWARDING_UNKNOWN);
    // The setting at sign-in is shown without a notice.
    core(
        &mut a,
        CoreEvent::ForwardingChanged(fwd(crate::protocol::ForwardMode::Off, None, 20)),
    );
    assert!(a.notice.is_none() || notice(&a) == s::FORWARDING_UNKNOWN);
    a.notice = None;
    core(
        &mut a,
        CoreEvent::ForwardingChanged(fwd(crate::protocol::ForwardMode::Off, None, 20)),
    );
    assert!(a.notice.is_none());
    press(&mut a, &[key(':')]);
    typed(&mut a, "forward unanswered voicemail 30");
    let out = press(&mut a, &[code(KeyCode::Enter)]);
    let want = fwd(
        crate::protocol::ForwardMode::Unanswered,
        Some("voicemail"),
        30,
    );
    assert_eq!(out, engine(&[Command::SetForwarding(want.clone())]));
    core(&mut a, CoreEvent::ForwardingChanged(want.clone()));
    assert_eq!(
        notice(&a),
        "Forwarding: to voicemail when unanswered after 30 s"
    );
    assert_eq!(a.forwarding, Some(want));
    // Another device changed it: shown too.
    core(
        &mut a,
        CoreEvent::ForwardingChanged(fwd(crate::protocol::ForwardMode::Always, Some("bob"), 30)),
    );
    assert_eq!(notice(&a), "Forwarding: every call goes to bob");
    // f in the voicemail panel starts the command.
    typed(&mut a, "v");
    typed(&mut a, "f");
    assert_eq!(a.cmdline.as_ref().unwrap().field.text(), "forward ");
}

// ---- a call on another device ------------------------------------------------------------------------

fn elsewhere(call_id: &str, with: &str, device: &str) -> ActiveCallDetails {
    ActiveCallDetails {
        call_id: call_id.into(),
        remote_participants: vec![ident(with)],
        started_unix_ms: t0().unix_ms - 60_000,
        endpoint_id: format!("7:{device}"),
        device_name: device.into(),
    }
}

#[test]
fn banner_shows_a_call_elsewhere_and_takes_it_over() {
    let mut a = app();
    connected(&mut a);
    typed(&mut a, "T");
    assert_eq!(notice(&a), s::NO_CALL_ELSEWHERE);
    let d = elsewhere("c9", "bob", "laptop");
    core(&mut a, CoreEvent::ActiveCallsUpdated(d.clone()));
    let b = a.shown_banner().unwrap();
    assert_eq!(b.label(), "bob");
    // A call of ours here is held first, so only one call has the microphone.
    outgoing(&mut a, "c1", "carol");
    let out = typed(&mut a, "T");
    assert_eq!(
        out,
        engine(&[
            Command::Hold {
                call_id: "c1".into()
            },
            Command::ActiveCallTransfer {
                details: Some(d.clone()),
                is_transfer: true
            }
        ])
    );
    assert_eq!(notice(&a), "Moving the call with bob here from laptop…");
    // The call arrives connected: participants first, then its state.
    core(
        &mut a,
        CoreEvent::RemoteParticipantsUpdated {
            call_id: "c9".into(),
            added: vec![participant("bob", ParticipantState::Connected)],
            removed: vec![],
        },
    );
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "c9".into(),
            state: CallState::Connected,
        },
    );
    let now = a.now;
    a.handle_update(
        Update::CommandDone {
            cmd: Command::ActiveCallTransfer {
                details: Some(d.clone()),
                is_transfer: true,
            },
            result: Ok(CommandOk::CallId("c9".into())),
        },
        now,
    );
    assert_eq!(a.focused_call().unwrap().label(), "bob");
    // The call is here now: no banner, even before the switchboard says so.
    assert!(a.shown_banner().is_none());
    core(&mut a, CoreEvent::NoActiveCalls);
    assert!(a.banner.is_none());
}

#[test]
fn banner_join_and_errors() {
    let mut a = app();
    let d = elsewhere("c9", "bob", "laptop");
    core(&mut a, CoreEvent::ActiveCallsUpdated(d.clone()));
    let out = typed(&mut a, "J");
    assert_eq!(
        out,
        engine(&[Command::ActiveCallTransfer {
            details: Some(d.clone()),
            is_transfer: false
        }])
    );
    assert_eq!(notice(&a), "Joining the call with bob on laptop…");
    let now = a.now;
    a.handle_update(
        Update::CommandDone {
            cmd: Command::ActiveCallTransfer {
                details: Some(d),
                is_transfer: false,
            },
            result: Err("call \"c9\" is already on this device".into()),
        },
        now,
    );
    assert_eq!(
        notice(&a),
        "Could not join the call: call \"c9\" is already on this device"
    );
    core(&mut a, CoreEvent::NoActiveCalls);
    assert!(a.shown_banner().is_none());
}

// ---- group calls and participants ---------------------------------------------------------

const GUID: &str = "29228d3e-040e-4656-a70e-890ab4e173e5";

fn done(app: &mut App, cmd: Command, result: Result<CommandOk, String>) -> Vec<Action> {
    let now = app.now;
    app.handle_update(Update::CommandDone { cmd, result }, now)
}

/// The call with bob gains carol and dave (carol still ringing) and another device of alice's.
fn group_of_four(app: &mut App) {
    outgoing(app, "c1", "bob");
    let mut laptop = participant("alice", ParticipantState::Connected);
    laptop.device = Some("laptop".into());
    core(
        app,
        CoreEvent::RemoteParticipantsUpdated {
            call_id: "c1".into(),
            added: vec![
                participant("carol", ParticipantState::Ringing),
                participant("dave", ParticipantState::Connected),
                laptop,
            ],
            removed: vec![],
        },
    );
}

#[test]
fn dialling_several_people_places_one_group_call() {
    let mut a = app();
    press(&mut a, &[key('c')]);
    typed(&mut a, "bob, ca");
    // The last callee completes; the ones typed are not offered again.
    assert_eq!(a.dialer_suggestions(), vec!["carol"]);
    press(&mut a, &[code(KeyCode::Tab)]);
    let out = press(&mut a, &[code(KeyCode::Enter)]);
    let call = Command::Call {
        to: vec!["bob".into(), "carol".into()],
        alternate_caller_id: None,
    };
    assert_eq!(out, engine(std::slice::from_ref(&call)));
    done(&mut a, call.clone(), Ok(CommandOk::CallId("g1".into())));
    let row = a.focused_call().unwrap();
    assert_eq!((row.label(), row.group), ("bob, carol".to_string(), true));
    // Its history entry calls both back.
    core(
        &mut a,
        CoreEvent::CallEnded {
            call_id: "g1".into(),
            reason: CallEndReason::NO_ANSWER,
        },
    );
    assert_eq!(a.history.get(0).unwrap().peer, "bob, carol");
    press(&mut a, &[code(KeyCode::Tab)]);
    assert_eq!(a.pane, Pane::History);
    assert_eq!(press(&mut a, &[code(KeyCode::Enter)]), engine(&[call]));
    press(&mut a, &[code(KeyCode::Tab)]);
    // Space works as a separator too; a 1:1 call is no group call.
    press(&mut a, &[key('c')]);
    typed(&mut a, "bob ");
    assert_eq!(a.dialer_suggestions(), vec!["carol", "echo"]);
    press(&mut a, &[code(KeyCode::Esc)]);
    outgoing(&mut a, "c2", "dave");
    assert!(!a.focused_call().unwrap().group);
}

#[test]
fn join_by_group_id() {
    let mut a = app();
    press(&mut a, &[key(':')]);
    typed(&mut a, &format!("join {{{}}}", GUID.to_uppercase()));
    let out = press(&mut a, &[code(KeyCode::Enter)]);
    let join = Command::Join {
        group_id: GUID.into(),
    };
    assert_eq!(out, engine(std::slice::from_ref(&join)));
    // The call's events may come before the reply: the row is named after the group at once.
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: GUID.into(),
            state: CallState::Connecting,
        },
    );
    done(&mut a, join, Ok(CommandOk::CallId(GUID.into())));
    assert_eq!(a.pending_dials_len(), 0);
    let row = a.focused_call().unwrap();
    assert_eq!(row.label(), "group 29228d3e…");
    assert!(row.group);
    // Again: already in it.
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: GUID.into(),
            state: CallState::Connected,
        },
    );
    press(&mut a, &[key('c')]);
    typed(&mut a, GUID);
    assert!(press(&mut a, &[code(KeyCode::Enter)]).is_empty());
    assert_eq!(notice(&a), s::ALREADY_IN_GROUP);
    // A bad id is refused on the line.
    press(&mut a, &[key(':')]);
    typed(&mut a, "join 1234");
    assert!(press(&mut a, &[code(KeyCode::Enter)]).is_empty());
    assert!(notice(&a).contains("not a GUID"), "{}", notice(&a));
}

#[test]
fn the_dialer_joins_a_group_id_and_holds_the_other_call() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    press(&mut a, &[key('c')]);
    typed(&mut a, GUID);
    assert_eq!(
        press(&mut a, &[code(KeyCode::Enter)]),
        engine(&[
            Command::Hold {
                call_id: "c1".into()
            },
            Command::Join {
                group_id: GUID.into()
            }
        ])
    );
}

#[test]
fn add_prompt_sends_add_participant_on_the_focused_call() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    outgoing(&mut a, "c2", "dave");
    press(&mut a, &[key('[')]);
    assert_eq!(a.focused_call().unwrap().call_id, "c1");
    press(&mut a, &[key('+')]);
    assert_eq!(a.layers()[0], Layer::AddParticipant);
    // bob is in the call already, alice is us, echo is a service.
    assert_eq!(a.add_suggestions(), vec!["carol"]);
    // Letters are text, not keys.
    typed(&mut a, "hmx");
    assert!(a.focused_call().unwrap().is_live());
    press(&mut a, &[ctrl('u')]);
    typed(&mut a, "car");
    press(&mut a, &[code(KeyCode::Tab)]);
    let add = Command::AddParticipant {
        call_id: "c1".into(),
        target: "carol".into(),
        alternate_caller_id: None,
    };
    assert_eq!(
        press(&mut a, &[code(KeyCode::Enter)]),
        engine(std::slice::from_ref(&add))
    );
    assert!(a.add.is_none());
    done(&mut a, add.clone(), Ok(CommandOk::Done));
    assert_eq!(notice(&a), "Adding carol to the call…");
    assert!(a.calls[0].group);
    // The core's refusal shows on the notice line.
    done(&mut a, add, Err("carol is already in this call".into()));
    assert_eq!(
        notice(&a),
        "Could not add carol: carol is already in this call"
    );
    // Esc backs out; an empty name is refused and the prompt stays.
    press(&mut a, &[key('+')]);
    press(&mut a, &[code(KeyCode::Enter)]);
    assert_eq!(notice(&a), s::ADD_EMPTY);
    assert!(a.add.is_some());
    assert!(press(&mut a, &[code(KeyCode::Esc)]).is_empty());
    assert!(a.add.is_none());
    // `:add` does the same from the command line.
    press(&mut a, &[key(':')]);
    typed(&mut a, "add carol");
    assert_eq!(
        press(&mut a, &[code(KeyCode::Enter)]),
        engine(&[Command::AddParticipant {
            call_id: "c1".into(),
            target: "carol".into(),
            alternate_caller_id: None,
        }])
    );
}

#[test]
fn nobody_can_be_added_to_a_call_that_is_not_connected() {
    let mut a = app();
    incoming(&mut a, "in1", "bob");
    press(&mut a, &[code(KeyCode::Esc)]);
    assert!(press(&mut a, &[key('+')]).is_empty());
    assert!(a.add.is_none());
    assert_eq!(notice(&a), s::CANNOT_CHANGE_PEOPLE);
}

#[test]
fn numbers_go_out_with_a_caller_id() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    // No caller id configured: the TUI asks, and Esc backs out.
    press(&mut a, &[key('+')]);
    typed(&mut a, "+15550101");
    assert!(press(&mut a, &[code(KeyCode::Enter)]).is_empty());
    assert_eq!(a.layers()[0], Layer::CallerId);
    assert_eq!(notice(&a), s::CALLER_ID_NEEDED);
    typed(&mut a, "bob");
    assert!(press(&mut a, &[code(KeyCode::Enter)]).is_empty());
    assert!(notice(&a).contains("not an E.164 number"), "{}", notice(&a));
    press(&mut a, &[ctrl('u')]);
    typed(&mut a, "+15550100");
    assert_eq!(
        press(&mut a, &[code(KeyCode::Enter)]),
        engine(&[Command::AddParticipant {
            call_id: "c1".into(),
            target: "+15550101".into(),
            alternate_caller_id: Some("+15550100".into()),
        }])
    );
    assert!(a.caller_id_prompt.is_none());
    // Next time the number typed is offered; Esc drops the call.
    press(&mut a, &[key(':')]);
    typed(&mut a, "call +15550102");
    assert!(press(&mut a, &[code(KeyCode::Enter)]).is_empty());
    assert_eq!(
        a.caller_id_prompt.as_ref().unwrap().field.text(),
        "+15550100"
    );
    assert!(press(&mut a, &[code(KeyCode::Esc)]).is_empty());
    assert!(a.caller_id_prompt.is_none());
    // A configured caller id is used without asking, and only for numbers.
    a.caller_id = Some("+15550100".into());
    press(&mut a, &[key('c')]);
    typed(&mut a, "carol, +15550102");
    assert_eq!(
        press(&mut a, &[code(KeyCode::Enter)]),
        engine(&[
            Command::Hold {
                call_id: "c1".into()
            },
            Command::Call {
                to: vec!["carol".into(), "+15550102".into()],
                alternate_caller_id: Some("+15550100".into()),
            }
        ])
    );
    press(&mut a, &[key(':')]);
    typed(&mut a, "call dave");
    assert_eq!(
        press(&mut a, &[code(KeyCode::Enter)]),
        engine(&[
            Command::Hold {
                call_id: "c1".into()
            },
            Command::Call {
                to: vec!["dave".into()],
                alternate_caller_id: None,
            }
        ])
    );
}

#[test]
fn tab_reaches_the_participants_only_when_there_are_some() {
    let mut a = app();
    press(&mut a, &[code(KeyCode::Tab)]);
    assert_eq!(a.pane, Pane::History);
    press(&mut a, &[code(KeyCode::Tab)]);
    assert_eq!(a.pane, Pane::Calls);
    outgoing(&mut a, "c1", "bob");
    press(&mut a, &[code(KeyCode::Tab)]);
    assert_eq!(a.pane, Pane::Participants);
    assert_eq!(a.layers(), vec![Layer::Participants, Layer::Main]);
    press(&mut a, &[code(KeyCode::Tab)]);
    assert_eq!(a.pane, Pane::History);
    press(&mut a, &[code(KeyCode::Tab), code(KeyCode::Tab)]);
    assert_eq!(a.pane, Pane::Participants);
    // Esc goes back to the calls; call keys still work from the panel.
    assert_eq!(
        press(&mut a, &[key('m')]),
        engine(&[Command::Mute {
            call_id: "c1".into()
        }])
    );
    press(&mut a, &[code(KeyCode::Esc)]);
    assert_eq!(a.pane, Pane::Calls);
}

#[test]
fn remove_the_selected_participant_after_a_yes() {
    let mut a = app();
    group_of_four(&mut a);
    assert!(a.focused_call().unwrap().group);
    press(&mut a, &[code(KeyCode::Tab)]);
    assert_eq!(a.pane, Pane::Participants);
    // bob, carol, dave, alice on laptop.
    press(&mut a, &[key('j'), key('j')]);
    assert_eq!(
        a.selected_participant().unwrap().identity.display_name,
        "dave"
    );
    assert!(press(&mut a, &[key('x')]).is_empty());
    assert_eq!(a.layers()[0], Layer::ConfirmRemove);
    assert_eq!(a.confirm_remove.as_ref().unwrap().label, "dave");
    // Esc keeps them.
    assert!(press(&mut a, &[code(KeyCode::Esc)]).is_empty());
    assert!(a.confirm_remove.is_none());
    assert_eq!(a.pane, Pane::Participants);
    press(&mut a, &[key('x')]);
    let remove = Command::RemoveParticipant {
        call_id: "c1".into(),
        target: "8:acs:r_dave".into(),
    };
    assert_eq!(
        press(&mut a, &[key('y')]),
        engine(std::slice::from_ref(&remove))
    );
    assert!(a.confirm_remove.is_none());
    done(&mut a, remove.clone(), Ok(CommandOk::Done));
    assert_eq!(notice(&a), "Removing dave from the call");
    done(
        &mut a,
        remove,
        Err("\"8:acs:r_dave\" is not in this call".into()),
    );
    assert_eq!(
        notice(&a),
        "Could not remove dave: \"8:acs:r_dave\" is not in this call"
    );
    // My own other device cannot be removed from here.
    press(&mut a, &[key('j'), key('j'), key('j')]);
    assert_eq!(
        a.selected_participant().unwrap().device.as_deref(),
        Some("laptop")
    );
    assert!(press(&mut a, &[key('x')]).is_empty());
    assert!(a.confirm_remove.is_none());
    assert_eq!(notice(&a), s::OWN_DEVICE);
}

#[test]
fn the_cursor_stays_on_its_participant_when_the_list_changes() {
    let mut a = app();
    group_of_four(&mut a);
    press(&mut a, &[code(KeyCode::Tab), key('j')]);
    assert_eq!(
        a.selected_participant().unwrap().identity.display_name,
        "carol"
    );
    press(&mut a, &[key('x')]);
    // bob leaves: carol is still the one selected, and the question still stands.
    core(
        &mut a,
        CoreEvent::RemoteParticipantsUpdated {
            call_id: "c1".into(),
            added: vec![],
            removed: vec![participant("bob", ParticipantState::Connected)],
        },
    );
    assert_eq!(a.participant_cursor, 0);
    assert_eq!(
        a.selected_participant().unwrap().identity.display_name,
        "carol"
    );
    assert!(a.confirm_remove.is_some());
    // carol answers: her state changes in place.
    core(
        &mut a,
        CoreEvent::ParticipantStateChanged {
            call_id: "c1".into(),
            participant: participant("carol", ParticipantState::Connected),
        },
    );
    assert_eq!(a.focused_call().unwrap().remote.len(), 3);
    assert_eq!(
        a.selected_participant().unwrap().state,
        ParticipantState::Connected
    );
    // carol leaves before the yes: nothing left to ask about.
    core(
        &mut a,
        CoreEvent::RemoteParticipantsUpdated {
            call_id: "c1".into(),
            added: vec![],
            removed: vec![participant("carol", ParticipantState::Connected)],
        },
    );
    assert!(a.confirm_remove.is_none());
    assert_eq!(
        a.selected_participant().unwrap().identity.display_name,
        "dave"
    );
}

#[test]
fn my_other_devices_are_told_apart() {
    let mut a = app();
    outgoing(&mut a, "c1", "bob");
    let device = |name: &str| {
        let mut p = participant("alice", ParticipantState::Connected);
        p.device = Some(name.into());
        p
    };
    core(
        &mut a,
        CoreEvent::RemoteParticipantsUpdated {
            call_id: "c1".into(),
            added: vec![device("laptop"), device("phone")],
            removed: vec![],
        },
    );
    let mut muted = device("phone");
    muted.is_muted = true;
    core(
        &mut a,
        CoreEvent::ParticipantStateChanged {
            call_id: "c1".into(),
            participant: muted,
        },
    );
    let row = a.focused_call().unwrap();
    assert_eq!(row.remote.len(), 3);
    assert!(row.remote[2].is_muted && !row.remote[1].is_muted);
    // Companions do not make a group call.
    assert!(!row.group);
}

#[test]
fn remove_from_the_command_line() {
    let mut a = app();
    group_of_four(&mut a);
    press(&mut a, &[key(':')]);
    typed(&mut a, "remove Dave");
    assert_eq!(
        press(&mut a, &[code(KeyCode::Enter)]),
        engine(&[Command::RemoveParticipant {
            call_id: "c1".into(),
            target: "8:acs:r_dave".into(),
        }])
    );
    // Someone not in the call: the core says so.
    press(&mut a, &[key(':')]);
    typed(&mut a, "remove erin");
    assert_eq!(
        press(&mut a, &[code(KeyCode::Enter)]),
        engine(&[Command::RemoveParticipant {
            call_id: "c1".into(),
            target: "erin".into(),
        }])
    );
    // Tab completes the people in the call.
    press(&mut a, &[key(':')]);
    typed(&mut a, "remove c");
    press(&mut a, &[code(KeyCode::Tab)]);
    assert_eq!(a.cmdline.as_ref().unwrap().field.text(), "remove carol");
}

#[test]
fn hang_up_for_everyone() {
    let mut a = app();
    group_of_four(&mut a);
    let all = engine(&[Command::HangUp {
        call_id: "c1".into(),
        for_everyone: true,
    }]);
    assert_eq!(press(&mut a, &[key('H')]), all);
    press(&mut a, &[key(':')]);
    typed(&mut a, "hangup all");
    assert_eq!(press(&mut a, &[code(KeyCode::Enter)]), all);
    // From the participants panel too; h only leaves.
    press(&mut a, &[code(KeyCode::Tab)]);
    assert_eq!(press(&mut a, &[key('H')]), all);
    assert_eq!(
        press(&mut a, &[key('h')]),
        engine(&[Command::HangUp {
            call_id: "c1".into(),
            for_everyone: false,
        }])
    );
    core(
        &mut a,
        CoreEvent::CallEnded {
            call_id: "c1".into(),
            reason: CallEndReason::ENDED_FOR_EVERYONE,
        },
    );
    assert!(
        notice(&a).contains("ended the group call for everyone"),
        "{}",
        notice(&a)
    );
    assert!(press(&mut a, &[key('H')]).is_empty());
    assert_eq!(notice(&a), s::NO_CALL);
}

#[test]
fn incoming_group_calls_and_calls_to_my_number_say_so() {
    let mut a = app();
    core(
        &mut a,
        CoreEvent::IncomingCall {
            call_id: "g1".into(),
            caller: ident("bob"),
            transferred_by: None,
            forwarded_from: None,
            caller_number: None,
            group: true,
        },
    );
    assert_eq!(notice(&a), "Group call from bob");
    assert!(a.calls[0].group);
    // Answered: the stale notice goes even though more people show up first.
    press(&mut a, &[key('a')]);
    core(
        &mut a,
        CoreEvent::RemoteParticipantsUpdated {
            call_id: "g1".into(),
            added: vec![participant("carol", ParticipantState::Connected)],
            removed: vec![],
        },
    );
    core(
        &mut a,
        CoreEvent::CallStateChanged {
            call_id: "g1".into(),
            state: CallState::Connected,
        },
    );
    assert!(a.notice.is_none());

    // To my number: the caller shows as their number, once.
    let mut a = app();
    core(
        &mut a,
        CoreEvent::IncomingCall {
            call_id: "n1".into(),
            caller: ident("bob"),
            transferred_by: None,
            forwarded_from: None,
            caller_number: Some("+15550101".into()),
            group: false,
        },
    );
    let shown = Participant {
        identity: Identity {
            raw_id: "4:+15550101".into(),
            display_name: "bob".into(),
        },
        state: ParticipantState::Connected,
        is_muted: false,
        is_speaking: false,
        device: None,
        service: false,
        reconnecting: false,
    };
    core(
        &mut a,
        CoreEvent::RemoteParticipantsUpdated {
            call_id: "n1".into(),
            added: vec![shown],
            removed: vec![],
        },
    );
    assert_eq!(notice(&a), "Incoming call from +15550101 (bob)");
    let row = &a.calls[0];
    assert_eq!(row.remote.len(), 1);
    assert_eq!(row.label(), "+15550101 (bob)");
    assert!(!row.group);
}

#[test]
fn a_call_without_a_media_path_is_flagged_with_the_reason_until_it_recovers() {
    use crate::core::diagnostics::{Diagnostic, DiagnosticChange, DiagnosticValue, Quality};
    let mut a = app();
    connected(&mut a);
    outgoing(&mut a, "c1", "bob");
    let change = |v: Quality, msg: Option<&str>| {
        CoreEvent::NetworkDiagnosticChanged(DiagnosticChange {
            call_id: Some("c1".into()),
            diagnostic: Diagnostic::NetworkReconnect,
            value: DiagnosticValue::Quality(v),
            message: msg.map(str::to_string),
        })
    };
    core(&mut a, change(Quality::Bad, Some("UDP is blocked")));
    assert_eq!(row(&a, "c1").network, Some(Diagnostic::NetworkReconnect));
    assert!(notice(&a).contains("UDP is blocked"), "{}", notice(&a));
    assert!(notice(&a).starts_with("No media path"), "{}", notice(&a));
    // Another diagnostic getting better does not clear this one.
    core(
        &mut a,
        CoreEvent::NetworkDiagnosticChanged(DiagnosticChange {
            call_id: Some("c1".into()),
            diagnostic: Diagnostic::NetworkReceiveQuality,
            value: DiagnosticValue::Quality(Quality::Good),
            message: None,
        }),
    );
    assert_eq!(row(&a, "c1").network, Some(Diagnostic::NetworkReconnect));
    core(&mut a, change(Quality::Good, None));
    assert_eq!(row(&a, "c1").network, None);
    assert_eq!(notice(&a), "Media path restored");
}

#[test]
fn media_diagnostics_warn_on_the_status_line_and_muted_speech_is_a_hint() {
    use crate::core::media_diagnostics::{
        DeviceSwitch, MediaDiagnostic as D, MediaDiagnosticChange, SwitchReason,
    };
    let change = |diagnostic, value, message: Option<&str>| {
        Update::MediaDiagnostic(MediaDiagnosticChange {
            call_id: None,
            diagnostic,
            value,
            message: message.map(str::to_owned),
        })
    };
    let mut a = app();
    a.handle_update(
        change(D::SpeakerNotFunctioning, true, Some("no stream format")),
        t0(),
    );
    assert!(a.media_warnings.contains(&D::SpeakerNotFunctioning));
    assert!(notice(&a).contains("no stream format"), "{}", notice(&a));
    a.handle_update(change(D::SpeakingWhileMicrophoneIsMuted, true, None), t0());
    assert!(
        a.media_warnings
            .contains(&D::SpeakingWhileMicrophoneIsMuted)
    );
    a.handle_update(change(D::SpeakingWhileMicrophoneIsMuted, false, None), t0());
    a.handle_update(change(D::SpeakerNotFunctioning, false, None), t0());
    assert!(a.media_warnings.is_empty());
    assert_eq!(notice(&a), "The speaker works");
    a.handle_update(
        Update::DeviceSwitched(DeviceSwitch {
            kind: DeviceKind::Speaker,
            wanted: "usb".parse().unwrap(),
            using: crate::devices::DeviceSpec::Default,
            name: Some("Null Output".into()),
            reason: SwitchReason::Fallback,
            message: "speaker `usb` is not available: using the default, `Null Output`".into(),
        }),
        t0(),
    );
    assert_eq!(
        notice(&a),
        "Speaker `usb` is not available: using the default, `Null Output`"
    );
}
