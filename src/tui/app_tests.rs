//! State tests for every panel: keys and updates in, actions and state out. No terminal, no
//! engine, simulated time.

use super::*;
use crate::core::ParticipantState;
use crate::devices::list::DeviceBackend;

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
    }
}

fn connected(app: &mut App) {
    core(
        app,
        CoreEvent::ConnectionStateChanged {
            old: ConnectionState::Disconnected,
            new: ConnectionState::Connected,
            reason: None,
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
            to: vec!["bobby".into()]
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
            to: vec!["dave".into()]
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
                to: vec!["echo".into()]
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
            to: vec!["bob".into(), "carol".into()]
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
            to: vec!["carol".into()]
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
            to: vec!["echo".into()]
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
fn placeholders_for_transfer_take_keys() {
    let mut a = app();
    a.transfer_request = Some(TransferRequest {
        call_id: "c1".into(),
        from: "bob".into(),
        target: "carol".into(),
    });
    assert_eq!(a.layers()[0], Layer::TransferRequest);
    typed(&mut a, "a");
    assert!(a.transfer_request.is_none());
    assert_eq!(a.notice.as_ref().unwrap().text, s::TRANSFER_LATER);
    a.transfer = Some(Prompt::default());
    typed(&mut a, "bob");
    assert_eq!(a.transfer.as_ref().unwrap().field.text(), "bob");
    press(&mut a, &[code(KeyCode::Esc)]);
    assert!(a.transfer.is_none());
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
            },
            result: Err("not connected to the switchboard".into()),
        },
        now,
    );
    assert_eq!(a.pending_dials_len(), 0);
}
