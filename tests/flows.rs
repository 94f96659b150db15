//! Whole call flows through the pure cores: one `Switchboard` and several `CallAgentCore`s wired
//! together in memory, with simulated time. No sockets, no threads: a 30-second ring timeout
//! takes microseconds. The real-process tests (tests/calls.rs) cover the same flows with media.

use std::collections::BTreeMap;
use std::time::Duration;

use dialtone::core::{
    CallEndReason, CallState, Command, CommandError, CommandOk, ConnectionState, DisconnectReason,
    Event, Input, MediaControl, RejectReason,
};
use dialtone::protocol::{ErrorCode, ServerMessage};
use dialtone::server::switchboard as sb;
use dialtone::server::token::Claims;

mod net;

use net::{Net, RING};

#[test]
fn basic_call_connects_and_hangs_up() {
    let mut n = Net::new();
    let (a, b, id) = n.connect();
    assert_eq!(
        n.states(a, &id),
        vec![
            CallState::Connecting,
            CallState::Ringing,
            CallState::Connected
        ]
    );
    assert_eq!(
        n.states(b, &id),
        vec![
            CallState::Incoming,
            CallState::Connecting,
            CallState::Connected
        ]
    );
    let (ca, cb) = (n.peers[a].conn, n.peers[b].conn);
    assert_eq!(n.routes, BTreeMap::from([(ca, vec![cb]), (cb, vec![ca])]));
    assert_eq!(
        n.peers[a].media,
        vec![MediaControl::Capture(true), MediaControl::Playout(true)]
    );
    let remote = &n.peers[a].core.calls()[0].remote;
    assert_eq!(remote[0].identity.display_name, "bob");
    assert_eq!(remote[0].identity.raw_id, "8:acs:res_bob");
    n.cmd(
        a,
        Command::HangUp {
            call_id: id.clone(),
            for_everyone: false,
        },
    )
    .unwrap();
    assert_eq!(n.ended(a, &id), Some(CallEndReason::NORMAL));
    assert_eq!(n.ended(b, &id), Some(CallEndReason::NORMAL));
    assert!(n.routes.is_empty());
    assert!(n.peers[b].media.contains(&MediaControl::FinalizeRecording));
    assert_eq!(n.sb.live_calls(), 0);
}

#[test]
fn reject_reasons_map_to_codes() {
    for (reason, code) in [
        (RejectReason::None, 603),
        (RejectReason::Busy, 486),
        (RejectReason::Forbidden, 403),
    ] {
        let mut n = Net::new();
        let a = n.join("alice", "desk");
        let b = n.join("bob", "laptop");
        let id = n.call(a, "bob");
        n.cmd(
            b,
            Command::Reject {
                call_id: id.clone(),
                reason,
            },
        )
        .unwrap();
        assert_eq!(n.ended(a, &id).unwrap().code, code);
        assert_eq!(n.ended(b, &id).unwrap().code, code);
    }
}

#[test]
fn offline_unknown_and_cancelled() {
    let mut n = Net::new();
    let a = n.join("alice", "desk");
    let b = n.join("bob", "laptop");
    n.vanish(b);
    let id = n.call(a, "bob");
    assert_eq!(n.ended(a, &id), Some(CallEndReason::OFFLINE));
    let id = n.call(a, "nobody");
    assert_eq!(n.ended(a, &id), Some(CallEndReason::UNKNOWN_USER));
    let c = n.join("carol", "phone");
    let id = n.call(a, "carol");
    assert_eq!(n.state(c, &id), Some(CallState::Incoming));
    n.cmd(
        a,
        Command::HangUp {
            call_id: id.clone(),
            for_everyone: false,
        },
    )
    .unwrap();
    assert_eq!(n.ended(a, &id), Some(CallEndReason::CANCELLED));
    assert_eq!(n.ended(c, &id), Some(CallEndReason::CANCELLED));
}

#[test]
fn ring_timeout_ends_with_408_on_both_sides() {
    let mut n = Net::new();
    let a = n.join("alice", "desk");
    let b = n.join("bob", "laptop");
    let id = n.call(a, "bob");
    n.advance(RING - Duration::from_millis(1));
    assert_eq!(n.state(a, &id), Some(CallState::Ringing));
    n.advance(Duration::from_millis(1));
    assert_eq!(n.ended(a, &id), Some(CallEndReason::NO_ANSWER));
    assert_eq!(n.ended(b, &id), Some(CallEndReason::NO_ANSWER));
}

#[test]
fn hold_stops_media_both_ways_and_shows_on_both_sides() {
    let mut n = Net::new();
    let (a, b, id) = n.connect();
    n.cmd(
        a,
        Command::Hold {
            call_id: id.clone(),
        },
    )
    .unwrap();
    assert_eq!(n.state(a, &id), Some(CallState::LocalHold));
    assert_eq!(n.state(b, &id), Some(CallState::RemoteHold));
    assert!(
        n.routes.is_empty(),
        "no audio is forwarded while held: {:?}",
        n.routes
    );
    assert_eq!(n.peers[b].media.last(), Some(&MediaControl::Playout(false)));
    // The held side cannot resume what it did not hold.
    let e = n
        .cmd(
            b,
            Command::Resume {
                call_id: id.clone(),
            },
        )
        .unwrap_err();
    assert!(matches!(
        e,
        CommandError::InvalidState {
            state: CallState::RemoteHold,
            ..
        }
    ));
    n.cmd(
        a,
        Command::Resume {
            call_id: id.clone(),
        },
    )
    .unwrap();
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
    assert_eq!(n.state(b, &id), Some(CallState::Connected));
    assert_eq!(n.routes.len(), 2);
}

#[test]
fn mute_is_seen_by_the_far_side_and_stops_capture() {
    let mut n = Net::new();
    let (a, b, id) = n.connect();
    n.cmd(
        a,
        Command::Mute {
            call_id: id.clone(),
        },
    )
    .unwrap();
    assert_eq!(n.peers[a].media.last(), Some(&MediaControl::Capture(false)));
    let muted = n.peers[b].events.iter().any(|e| {
        matches!(e, Event::ParticipantStateChanged { participant, .. } if participant.is_muted && participant.identity.display_name == "alice")
    });
    assert!(muted);
    assert!(n.peers[b].core.calls()[0].remote[0].is_muted);
    n.cmd(
        a,
        Command::Unmute {
            call_id: id.clone(),
        },
    )
    .unwrap();
    assert!(!n.peers[b].core.calls()[0].remote[0].is_muted);
    assert_eq!(n.peers[a].media.last(), Some(&MediaControl::Capture(true)));
    // Speaking reaches the far side, and not while muted.
    n.peers[a]
        .core
        .handle_input(Input::LocalSpeaking(true), n.now);
    n.pump();
    assert!(n.peers[b].core.calls()[0].remote[0].is_speaking);
}

#[test]
fn second_device_sees_answered_elsewhere_or_declined_elsewhere() {
    let mut n = Net::new();
    let a = n.join("alice", "desk");
    let b1 = n.join("bob", "laptop");
    let b2 = n.join("bob", "phone");
    let id = n.call(a, "bob");
    assert_eq!(n.incoming(b1), Some(id.clone()));
    assert_eq!(n.incoming(b2), Some(id.clone()));
    n.cmd(
        b2,
        Command::Accept {
            call_id: id.clone(),
        },
    )
    .unwrap();
    assert_eq!(n.ended(b1, &id), Some(CallEndReason::ANSWERED_ELSEWHERE));
    assert_eq!(n.state(b2, &id), Some(CallState::Connected));
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
    // The loser cannot accept afterwards.
    assert!(matches!(
        n.cmd(
            b1,
            Command::Accept {
                call_id: id.clone()
            }
        ),
        Err(CommandError::UnknownCall(_))
    ));
    n.cmd(
        a,
        Command::HangUp {
            call_id: id,
            for_everyone: false,
        },
    )
    .unwrap();

    let id = n.call(a, "bob");
    n.cmd(
        b1,
        Command::Reject {
            call_id: id.clone(),
            reason: RejectReason::None,
        },
    )
    .unwrap();
    assert_eq!(n.ended(b2, &id), Some(CallEndReason::DECLINED_ELSEWHERE));
    assert_eq!(n.ended(a, &id), Some(CallEndReason::DECLINED));
}

#[test]
fn a_ringing_device_that_vanishes_does_not_end_the_call_while_another_rings() {
    let mut n = Net::new();
    let a = n.join("alice", "desk");
    let b1 = n.join("bob", "laptop");
    let b2 = n.join("bob", "phone");
    let id = n.call(a, "bob");
    n.vanish(b1);
    assert_eq!(n.state(a, &id), Some(CallState::Ringing));
    n.vanish(b2);
    assert_eq!(n.ended(a, &id), Some(CallEndReason::OFFLINE));
}

#[test]
fn peer_that_vanishes_ends_the_call_with_410_and_leaves_other_calls_alone() {
    let mut n = Net::new();
    let (a, b, id) = n.connect();
    let c = n.join("carol", "x");
    let d = n.join("dave", "y");
    let id2 = n.call(c, "dave");
    n.cmd(
        d,
        Command::Accept {
            call_id: id2.clone(),
        },
    )
    .unwrap();
    n.vanish(b);
    assert_eq!(n.ended(a, &id), Some(CallEndReason::PEER_LOST));
    assert_eq!(n.ended(b, &id), Some(CallEndReason::CONNECTION_LOST));
    assert_eq!(n.state(c, &id2), Some(CallState::Connected));
    assert_eq!(n.state(d, &id2), Some(CallState::Connected));
    assert!(n.peers[b].events.iter().any(|e| matches!(
        e,
        Event::ConnectionStateChanged {
            new: ConnectionState::Disconnected,
            reason: Some(DisconnectReason::ConnectionIssue),
            ..
        }
    )));
}

#[test]
fn echo_routes_a_device_to_itself() {
    let mut n = Net::new();
    let a = n.join("alice", "desk");
    let id = n.call(a, "echo");
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
    let conn = n.peers[a].conn;
    assert_eq!(n.routes, BTreeMap::from([(conn, vec![conn])]));
}

#[test]
fn tokens_are_required_without_dev_and_checked() {
    let mut n = Net::new();
    let now_s = n.now.unix_ms / 1000;
    let good = n.key.issue(&Claims {
        sub: "bob".into(),
        iat: now_s,
        exp: now_s + 60,
        jti: "j1".into(),
    });
    let expired = n.key.issue(&Claims {
        sub: "bob".into(),
        iat: 0,
        exp: now_s - 1,
        jti: "j2".into(),
    });
    let b = n.join_with(None, Some(good), "laptop");
    assert_eq!(n.peers[b].core.connection(), ConnectionState::Connected);
    assert_eq!(n.peers[b].core.identity().unwrap().display_name, "bob");
    let x = n.join_with(None, Some(expired), "laptop");
    assert_eq!(n.peers[x].core.connection(), ConnectionState::Disconnected);
    let refused = n.peers[x].events.iter().any(|e| {
        matches!(
            e,
            Event::ConnectionStateChanged {
                new: ConnectionState::Disconnected,
                reason: Some(DisconnectReason::InvalidToken),
                ..
            }
        )
    });
    assert!(refused, "{:?}", n.peers[x].events);
    let msg = n.peers[x].events.iter().find_map(|e| match e {
        Event::Error {
            code: ErrorCode::InvalidToken,
            message,
            ..
        } => Some(message.clone()),
        _ => None,
    });
    assert!(msg.unwrap().contains("expired"));
    let y = n.join_with(None, Some("dt1.bogus.sig".into()), "z");
    assert_eq!(n.peers[y].core.connection(), ConnectionState::Disconnected);
    n.sb.revoke("j1".into());
    let now_s = n.now.unix_ms / 1000;
    let revoked = n.key.issue(&Claims {
        sub: "bob".into(),
        iat: now_s,
        exp: now_s + 60,
        jti: "j1".into(),
    });
    let z = n.join_with(None, Some(revoked), "w");
    assert_eq!(n.peers[z].core.connection(), ConnectionState::Disconnected);
}

#[test]
fn garbage_and_out_of_order_frames_get_errors_and_disturb_nothing() {
    let mut n = Net::new();
    let (a, b, id) = n.connect();
    let m = n.join("mallory", "x");
    for bad in [
        "garbage",
        "{}",
        r#"{"type":"launch"}"#,
        r#"{"type":"accept"}"#,
        &format!(r#"{{"type":"accept","callId":"{id}"}}"#),
        &format!(r#"{{"type":"hangUp","callId":"{id}"}}"#),
        &format!(r#"{{"type":"hold","callId":"{id}"}}"#),
        r#"{"type":"hello","protocol":1,"user":"mallory","deviceName":"x"}"#,
    ] {
        n.frame(m, bad);
    }
    let errors: Vec<ErrorCode> = n.peers[m]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            ErrorCode::BadMessage,
            ErrorCode::BadMessage,
            ErrorCode::UnknownMessage,
            ErrorCode::BadMessage,
            ErrorCode::UnknownCall,
            ErrorCode::UnknownCall,
            ErrorCode::UnknownCall,
            ErrorCode::AlreadySignedIn,
        ]
    );
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
    assert_eq!(n.state(b, &id), Some(CallState::Connected));
    assert_eq!(n.routes.len(), 2);

    // Before hello, only hello and ping are allowed.
    let conn = 999;
    n.sb.handle(
        sb::Input::Opened {
            conn,
            loopback: true,
            local: None,
            secret: 1,
        },
        n.now,
    );
    n.sb.handle(
        sb::Input::Frame {
            conn,
            text: format!(r#"{{"type":"accept","callId":"{id}"}}"#),
        },
        n.now,
    );
    let mut saw = false;
    while let Some(o) = n.sb.poll_output() {
        if let sb::Output::Send {
            conn: 999,
            msg:
                ServerMessage::Error {
                    code: ErrorCode::NotSignedIn,
                    ..
                },
        } = o
        {
            saw = true;
        }
    }
    assert!(saw);
}

#[test]
fn a_stream_of_bad_frames_closes_only_that_connection() {
    let mut n = Net::new();
    let (a, _b, id) = n.connect();
    let m = n.join("mallory", "x");
    for _ in 0..5 {
        n.frame(m, "\u{0}\u{1}not json");
    }
    assert!(!n.peers[m].open, "closed after max_bad_frames");
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
}

#[test]
fn bad_commands_are_refused_locally() {
    let mut n = Net::new();
    let (a, b, id) = n.connect();
    assert!(matches!(
        n.cmd(
            a,
            Command::Accept {
                call_id: id.clone()
            }
        ),
        Err(CommandError::InvalidState { .. })
    ));
    assert!(matches!(
        n.cmd(
            a,
            Command::Mute {
                call_id: "nope".into()
            }
        ),
        Err(CommandError::UnknownCall(_))
    ));
    assert!(matches!(
        n.cmd(
            a,
            Command::Call {
                to: vec![],
                alternate_caller_id: None
            }
        ),
        Err(CommandError::InvalidArgument(_))
    ));
    assert!(matches!(
        n.cmd(
            b,
            Command::Resume {
                call_id: id.clone()
            }
        ),
        Err(CommandError::InvalidState { .. })
    ));
    // Calling yourself or a malformed callee ends that call with 400, nothing else changes.
    let me = n.call(a, "alice");
    assert_eq!(n.ended(a, &me).map(|r| r.code), Some(400));
    let bad = n.call(a, "bob smith");
    assert_eq!(n.ended(a, &bad).map(|r| r.code), Some(400));
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
}

// ---- transfer -------------------------------------------------------------------------------

use dialtone::protocol::{ForwardMode, Forwarding, TransferState, TransferTarget};

fn transfer_states(n: &Net, i: usize, call: &str) -> Vec<(TransferState, Option<CallEndReason>)> {
    n.peers[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::TransferStateChanged {
                call_id,
                state,
                error,
                ..
            } if call_id == call => Some((*state, *error)),
            _ => None,
        })
        .collect()
}

fn transfer(n: &mut Net, i: usize, call: &str, target: TransferTarget, disable: bool) -> String {
    match n
        .cmd(
            i,
            Command::Transfer {
                call_id: call.into(),
                target,
                disable_forwarding: disable,
            },
        )
        .unwrap()
    {
        CommandOk::TransferId(t) => t,
        other => panic!("{other:?}"),
    }
}

/// alice (transferor) calls bob (transferee); carol is the target.
fn three() -> (Net, usize, usize, usize, String) {
    let mut n = Net::new();
    let (a, b, id) = n.connect();
    let c = n.join("carol", "phone");
    (n, a, b, c, id)
}

#[test]
fn blind_transfer_moves_the_transferee_to_the_target() {
    let (mut n, a, b, c, id) = three();
    transfer(
        &mut n,
        a,
        &id,
        TransferTarget::Participant("carol".into()),
        false,
    );
    let req = n.peers[b].events.iter().find_map(|e| match e {
        Event::TransferRequested {
            call_id,
            transferor,
            target,
            ..
        } if *call_id == id => Some((transferor.clone(), target.clone())),
        _ => None,
    });
    let (transferor, target) = req.expect("bob is asked");
    assert_eq!(
        (
            transferor.display_name.as_str(),
            target.identity.display_name.as_str()
        ),
        ("alice", "carol")
    );
    assert!(
        n.incoming(c).is_none(),
        "carol does not ring before bob accepts"
    );
    n.cmd(
        b,
        Command::AcceptTransfer {
            call_id: id.clone(),
        },
    )
    .unwrap();
    let leg = n.incoming(c).expect("carol rings");
    let inc = n.peers[c].events.iter().find_map(|e| match e {
        Event::IncomingCall {
            caller,
            transferred_by,
            ..
        } => Some((caller.display_name.clone(), transferred_by.clone())),
        _ => None,
    });
    assert_eq!(
        inc.unwrap(),
        (
            "bob".to_string(),
            Some(n.peers[a].core.identity().unwrap().clone())
        )
    );
    // While carol rings, alice and bob still talk.
    assert_eq!(n.state(b, &id), Some(CallState::Connected));
    assert_eq!(n.routes.len(), 2);
    n.cmd(
        c,
        Command::Accept {
            call_id: leg.clone(),
        },
    )
    .unwrap();
    assert_eq!(
        transfer_states(&n, a, &id),
        vec![
            (TransferState::Transferring, None),
            (TransferState::Transferred, None)
        ]
    );
    assert_eq!(n.ended(a, &id), Some(CallEndReason::TRANSFERRED));
    assert_eq!(n.ended(b, &id), Some(CallEndReason::TRANSFERRED));
    assert!(n.peers[b].events.iter().any(|e| matches!(e, Event::TransferAccepted { call_id, target_call_id } if *call_id == id && *target_call_id == leg)));
    assert_eq!(n.state(b, &leg), Some(CallState::Connected));
    assert_eq!(
        n.peers[b].core.calls()[0].remote[0].identity.display_name,
        "carol"
    );
    assert_eq!(n.state(c, &leg), Some(CallState::Connected));
    let (cb, cc) = (n.peers[b].conn, n.peers[c].conn);
    assert_eq!(n.routes, BTreeMap::from([(cb, vec![cc]), (cc, vec![cb])]));
    // Bob's events come in a sensible order: accepted, new call connected, old call ended.
    let pos = |pred: &dyn Fn(&Event) -> bool| n.peers[b].events.iter().position(pred).unwrap();
    let accepted = pos(&|e| matches!(e, Event::TransferAccepted { .. }));
    let connected = pos(
        &|e| matches!(e, Event::CallStateChanged { call_id, state: CallState::Connected } if *call_id == leg),
    );
    let ended = pos(&|e| matches!(e, Event::CallEnded { call_id, .. } if *call_id == id));
    assert!(
        accepted < connected && connected < ended,
        "{accepted} {connected} {ended}"
    );
}

#[test]
fn transfer_failures_leave_the_original_call_up() {
    type Act = Box<dyn Fn(&mut Net, usize, String)>;
    let cases: Vec<(&str, Act, CallEndReason)> = vec![
        (
            "declined",
            Box::new(|n: &mut Net, c, leg| {
                n.cmd(
                    c,
                    Command::Reject {
                        call_id: leg,
                        reason: RejectReason::None,
                    },
                )
                .unwrap();
            }),
            CallEndReason::TRANSFER_TARGET_DECLINED,
        ),
        (
            "busy",
            Box::new(|n: &mut Net, c, leg| {
                n.cmd(
                    c,
                    Command::Reject {
                        call_id: leg,
                        reason: RejectReason::Busy,
                    },
                )
                .unwrap();
            }),
            CallEndReason::TRANSFER_TARGET_BUSY,
        ),
        (
            "no answer",
            Box::new(|n: &mut Net, _c, _leg| n.advance(RING)),
            CallEndReason::TRANSFER_NO_ANSWER,
        ),
        (
            "target vanishes",
            Box::new(|n: &mut Net, c, _leg| n.vanish(c)),
            CallEndReason::TRANSFER_TARGET_OFFLINE,
        ),
    ];
    for (what, act, expected) in cases {
        let (mut n, a, b, c, id) = three();
        transfer(
            &mut n,
            a,
            &id,
            TransferTarget::Participant("carol".into()),
            false,
        );
        n.cmd(
            b,
            Command::AcceptTransfer {
                call_id: id.clone(),
            },
        )
        .unwrap();
        let leg = n.incoming(c).unwrap();
        act(&mut n, c, leg);
        assert_eq!(
            transfer_states(&n, a, &id).last(),
            Some(&(TransferState::Failed, Some(expected))),
            "{what}"
        );
        assert_eq!(n.state(a, &id), Some(CallState::Connected), "{what}");
        assert_eq!(n.state(b, &id), Some(CallState::Connected), "{what}");
        assert_eq!(
            n.peers[b].core.calls().len(),
            1,
            "{what}: bob saw no new call"
        );
        assert_eq!(
            n.routes.len(),
            2,
            "{what}: alice and bob still hear each other"
        );
    }
}

#[test]
fn transferee_rejects_offline_target_and_transferor_hanging_up() {
    let (mut n, a, b, c, id) = three();
    transfer(
        &mut n,
        a,
        &id,
        TransferTarget::Participant("carol".into()),
        false,
    );
    n.cmd(
        b,
        Command::RejectTransfer {
            call_id: id.clone(),
        },
    )
    .unwrap();
    assert_eq!(
        transfer_states(&n, a, &id).last(),
        Some(&(
            TransferState::Failed,
            Some(CallEndReason::TRANSFER_REJECTED)
        ))
    );
    assert_eq!(n.state(b, &id), Some(CallState::Connected));

    n.vanish(c);
    transfer(
        &mut n,
        a,
        &id,
        TransferTarget::Participant("carol".into()),
        true,
    );
    n.cmd(
        b,
        Command::AcceptTransfer {
            call_id: id.clone(),
        },
    )
    .unwrap();
    assert_eq!(
        transfer_states(&n, a, &id).last(),
        Some(&(
            TransferState::Failed,
            Some(CallEndReason::TRANSFER_TARGET_OFFLINE)
        ))
    );

    let d = n.join("dave", "x");
    transfer(
        &mut n,
        a,
        &id,
        TransferTarget::Participant("dave".into()),
        false,
    );
    n.cmd(
        b,
        Command::AcceptTransfer {
            call_id: id.clone(),
        },
    )
    .unwrap();
    let leg = n.incoming(d).unwrap();
    n.cmd(
        a,
        Command::HangUp {
            call_id: id.clone(),
            for_everyone: false,
        },
    )
    .unwrap();
    assert_eq!(
        transfer_states(&n, a, &id).last(),
        Some(&(TransferState::Failed, Some(CallEndReason::TRANSFEROR_LEFT)))
    );
    assert_eq!(n.ended(d, &leg), Some(CallEndReason::CANCELLED));
    assert_eq!(n.ended(b, &id), Some(CallEndReason::NORMAL));
}

#[test]
fn bad_transfers_get_clear_errors_and_change_nothing() {
    let (mut n, a, b, _c, id) = three();
    let err = |n: &mut Net, i: usize, t: TransferTarget| {
        n.cmd(
            i,
            Command::Transfer {
                call_id: id.clone(),
                target: t,
                disable_forwarding: false,
            },
        )
    };
    assert!(matches!(
        n.cmd(
            a,
            Command::Transfer {
                call_id: "nope".into(),
                target: TransferTarget::Participant("carol".into()),
                disable_forwarding: false
            }
        ),
        Err(CommandError::UnknownCall(_))
    ));
    // Refused by the switchboard: it answers with an error and a Failed transfer.
    for (target, code, text) in [
        (
            TransferTarget::Participant("alice".into()),
            ErrorCode::InvalidArgument,
            "yourself",
        ),
        (
            TransferTarget::Participant("nobody".into()),
            ErrorCode::InvalidArgument,
            "no user",
        ),
        (
            TransferTarget::Participant("bob".into()),
            ErrorCode::InvalidArgument,
            "already",
        ),
    ] {
        let before = n.peers[a].events.len();
        err(&mut n, a, target).unwrap();
        let e = n.peers[a].events[before..].iter().find_map(|e| match e {
            Event::Error { code, message, .. } => Some((*code, message.clone())),
            _ => None,
        });
        let (c, m) = e.expect("an error");
        assert_eq!(c, code);
        assert!(m.contains(text), "{m}");
        assert_eq!(
            transfer_states(&n, a, &id).last(),
            Some(&(TransferState::Failed, Some(CallEndReason::TRANSFER_REFUSED)))
        );
    }
    assert!(matches!(
        err(&mut n, a, TransferTarget::CallId(id.clone())),
        Err(CommandError::InvalidArgument(_))
    ));
    // Twice at once.
    let first = err(&mut n, a, TransferTarget::Participant("carol".into()));
    assert!(first.is_ok());
    assert!(matches!(
        err(&mut n, a, TransferTarget::Participant("carol".into())),
        Err(CommandError::InvalidArgument(_))
    ));
    let raw = format!(
        r#"{{"type":"transfer","callId":"{id}","transferId":"x2","target":{{"participant":"carol"}}}}"#
    );
    n.frame(a, &raw);
    let last_two = &n.peers[a].events[n.peers[a].events.len() - 2..];
    assert!(
        matches!(
            last_two[0],
            Event::Error {
                code: ErrorCode::InvalidState,
                ..
            }
        ),
        "{last_two:?}"
    );
    // The refused second transfer does not disturb the first one's state.
    assert_eq!(
        transfer_states(&n, a, &id)
            .iter()
            .filter(|(s, _)| *s == TransferState::Transferring)
            .count(),
        4
    );
    // Someone not in the call.
    let m = n.join("mallory", "m");
    n.frame(m, &raw);
    assert!(n.peers[m].events.iter().any(|e| matches!(
        e,
        Event::Error {
            code: ErrorCode::UnknownCall,
            ..
        }
    )));
    // The transferee cannot accept a transfer that was never asked on another call.
    assert!(
        n.cmd(
            b,
            Command::AcceptTransfer {
                call_id: "nope".into()
            }
        )
        .is_err()
    );
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
    assert_eq!(n.state(b, &id), Some(CallState::Connected));
}

#[test]
fn consultative_transfer_joins_transferee_and_target_without_ringing() {
    let (mut n, a, b, c, id) = three();
    n.cmd(
        a,
        Command::Hold {
            call_id: id.clone(),
        },
    )
    .unwrap();
    let id2 = n.call(a, "carol");
    n.cmd(
        c,
        Command::Accept {
            call_id: id2.clone(),
        },
    )
    .unwrap();
    let rings_before = n.peers[c]
        .events
        .iter()
        .filter(|e| matches!(e, Event::IncomingCall { .. }))
        .count();
    transfer(&mut n, a, &id, TransferTarget::CallId(id2.clone()), false);
    n.cmd(
        b,
        Command::AcceptTransfer {
            call_id: id.clone(),
        },
    )
    .unwrap();
    assert_eq!(
        n.peers[c]
            .events
            .iter()
            .filter(|e| matches!(e, Event::IncomingCall { .. }))
            .count(),
        rings_before
    );
    assert_eq!(n.ended(a, &id), Some(CallEndReason::TRANSFERRED));
    assert_eq!(n.ended(a, &id2), Some(CallEndReason::TRANSFERRED));
    assert_eq!(n.ended(b, &id), Some(CallEndReason::TRANSFERRED));
    assert_eq!(n.state(b, &id2), Some(CallState::Connected));
    assert_eq!(n.state(c, &id2), Some(CallState::Connected));
    let swapped = n.peers[c].events.iter().any(|e| matches!(e, Event::RemoteParticipantsUpdated { added, removed, .. }
        if added.iter().any(|p| p.identity.display_name == "bob") && removed.iter().any(|p| p.identity.display_name == "alice")));
    assert!(swapped, "carol's call now has bob instead of alice");
    let (cb, cc) = (n.peers[b].conn, n.peers[c].conn);
    assert_eq!(n.routes, BTreeMap::from([(cb, vec![cc]), (cc, vec![cb])]));
}

#[test]
fn transfer_to_voicemail_records_and_signals_message_waiting() {
    let (mut n, a, b, c, id) = three();
    transfer(
        &mut n,
        a,
        &id,
        TransferTarget::Voicemail("carol".into()),
        false,
    );
    n.cmd(
        b,
        Command::AcceptTransfer {
            call_id: id.clone(),
        },
    )
    .unwrap();
    assert_eq!(
        transfer_states(&n, a, &id).last(),
        Some(&(TransferState::Transferred, None))
    );
    let (vm_call, conn) = n
        .recording
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), *v))
        .expect("a recording started");
    assert_eq!(conn, n.peers[b].conn);
    assert_eq!(n.state(b, &vm_call), Some(CallState::Connected));
    assert!(
        n.routes.is_empty(),
        "the mailbox is fed by its session, not by routes"
    );
    n.cmd(
        b,
        Command::HangUp {
            call_id: vm_call.clone(),
            for_everyone: false,
        },
    )
    .unwrap();
    assert!(n.recording.is_empty());
    let mwi = n.peers[c].events.iter().rev().find_map(|e| match e {
        Event::MessageWaiting {
            new_count,
            total_count,
        } => Some((*new_count, *total_count)),
        _ => None,
    });
    assert_eq!(mwi, Some((1, 1)));
}

#[test]
fn unanswered_transfer_follows_forwarding_unless_disabled() {
    for disable in [false, true] {
        let (mut n, a, b, c, id) = three();
        let fwd = Forwarding {
            mode: ForwardMode::Unanswered,
            target: Some("voicemail".into()),
            unanswered_after_secs: 5,
        };
        n.cmd(c, Command::SetForwarding(fwd.clone())).unwrap();
        assert_eq!(n.peers[c].core.forwarding(), &fwd);
        transfer(
            &mut n,
            a,
            &id,
            TransferTarget::Participant("carol".into()),
            disable,
        );
        n.cmd(
            b,
            Command::AcceptTransfer {
                call_id: id.clone(),
            },
        )
        .unwrap();
        let leg = n.incoming(c).unwrap();
        n.advance(Duration::from_secs(5));
        if disable {
            assert_eq!(
                n.state(c, &leg),
                Some(CallState::Incoming),
                "forwarding ignored: still ringing"
            );
            n.advance(RING);
            assert_eq!(
                transfer_states(&n, a, &id).last(),
                Some(&(
                    TransferState::Failed,
                    Some(CallEndReason::TRANSFER_NO_ANSWER)
                ))
            );
            assert!(n.recording.is_empty());
            assert_eq!(n.state(b, &id), Some(CallState::Connected));
        } else {
            assert_eq!(n.ended(c, &leg), Some(CallEndReason::FORWARDED));
            assert_eq!(
                transfer_states(&n, a, &id).last(),
                Some(&(TransferState::Transferred, None))
            );
            assert_eq!(n.recording.get(&leg), Some(&n.peers[b].conn));
        }
    }
}

#[test]
fn forwarding_applies_to_ordinary_calls_and_is_validated() {
    let mut n = Net::new();
    let a = n.join("alice", "desk");
    let b = n.join("bob", "laptop");
    let c = n.join("carol", "phone");
    n.cmd(
        b,
        Command::SetForwarding(Forwarding {
            mode: ForwardMode::Always,
            target: Some("carol".into()),
            unanswered_after_secs: 20,
        }),
    )
    .unwrap();
    let id = n.call(a, "bob");
    assert!(
        n.incoming(b).is_none(),
        "always-forwarding does not ring bob"
    );
    let fwd = n.peers[c].events.iter().find_map(|e| match e {
        Event::IncomingCall { forwarded_from, .. } => forwarded_from.clone(),
        _ => None,
    });
    assert_eq!(fwd.unwrap().display_name, "bob");
    n.cmd(
        c,
        Command::Accept {
            call_id: id.clone(),
        },
    )
    .unwrap();
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
    assert_eq!(
        n.peers[a].core.calls()[0].remote[0].identity.display_name,
        "carol"
    );
    for bad in [
        Forwarding {
            mode: ForwardMode::Always,
            target: None,
            unanswered_after_secs: 20,
        },
        Forwarding {
            mode: ForwardMode::Always,
            target: Some("bob".into()),
            unanswered_after_secs: 20,
        },
        Forwarding {
            mode: ForwardMode::Always,
            target: Some("ghost".into()),
            unanswered_after_secs: 20,
        },
        Forwarding {
            mode: ForwardMode::Unanswered,
            target: Some("voicemail".into()),
            unanswered_after_secs: 0,
        },
    ] {
        let before = n.peers[b].events.len();
        n.cmd(b, Command::SetForwarding(bad)).unwrap();
        assert!(n.peers[b].events[before..].iter().any(|e| matches!(
            e,
            Event::Error {
                code: ErrorCode::InvalidArgument,
                ..
            }
        )));
    }
    // Offline with unanswered-to-voicemail goes straight to the mailbox.
    n.cmd(
        c,
        Command::SetForwarding(Forwarding {
            mode: ForwardMode::Unanswered,
            target: Some("voicemail".into()),
            unanswered_after_secs: 10,
        }),
    )
    .unwrap();
    n.vanish(c);
    let id = n.call(a, "carol");
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
    assert!(n.recording.contains_key(&id));
}

// ---- a call on another device -----------------------------------------------------------------

use dialtone::protocol::ActiveCallDetails;

fn active(n: &Net, i: usize) -> Option<ActiveCallDetails> {
    n.peers[i].core.active_call_details().cloned()
}

/// alice on desk and laptop, bob: desk calls bob, bob answers.
fn two_devices() -> (Net, usize, usize, usize, String) {
    let mut n = Net::new();
    let desk = n.join("alice", "desk");
    let laptop = n.join("alice", "laptop");
    let b = n.join("bob", "phone");
    let id = n.call(desk, "bob");
    n.cmd(
        b,
        Command::Accept {
            call_id: id.clone(),
        },
    )
    .unwrap();
    (n, desk, laptop, b, id)
}

#[test]
fn other_devices_see_the_call_and_no_active_calls_after_it() {
    let (mut n, desk, laptop, b, id) = two_devices();
    let d = active(&n, laptop).expect("the laptop knows");
    assert_eq!(d.call_id, id);
    assert_eq!(d.device_name, "desk");
    assert_eq!(d.remote_participants[0].display_name, "bob");
    assert!(active(&n, desk).is_none(), "the desk is in the call itself");
    assert!(
        active(&n, b).is_none(),
        "bob's devices never see alice's call"
    );
    assert!(
        !n.peers[b]
            .events
            .iter()
            .any(|e| matches!(e, Event::ActiveCallsUpdated(_)))
    );
    // A device that signs in while the call is live learns of it at once.
    let phone = n.join("alice", "phone");
    assert_eq!(active(&n, phone).map(|d| d.call_id), Some(id.clone()));
    n.cmd(
        b,
        Command::HangUp {
            call_id: id,
            for_everyone: false,
        },
    )
    .unwrap();
    assert!(active(&n, laptop).is_none());
    assert!(matches!(
        n.peers[laptop].events.last(),
        Some(Event::NoActiveCalls)
    ));
    assert!(matches!(
        n.peers[phone].events.last(),
        Some(Event::NoActiveCalls)
    ));
}

#[test]
fn take_over_moves_the_call_without_bob_noticing() {
    let (mut n, desk, laptop, b, id) = two_devices();
    let bob_events = n.peers[b].events.len();
    let r = n
        .cmd(
            laptop,
            Command::ActiveCallTransfer {
                details: None,
                is_transfer: true,
            },
        )
        .unwrap();
    assert_eq!(r, CommandOk::CallId(id.clone()));
    assert_eq!(n.state(laptop, &id), Some(CallState::Connected));
    assert_eq!(n.ended(desk, &id), Some(CallEndReason::MOVED));
    assert_eq!(
        n.peers[b].events.len(),
        bob_events,
        "bob saw nothing: {:?}",
        &n.peers[b].events[bob_events..]
    );
    assert_eq!(n.state(b, &id), Some(CallState::Connected));
    let (cl, cb) = (n.peers[laptop].conn, n.peers[b].conn);
    assert_eq!(n.routes, BTreeMap::from([(cl, vec![cb]), (cb, vec![cl])]));
    // Now the desk sees the call on the laptop.
    assert_eq!(
        active(&n, desk).map(|d| d.device_name),
        Some("laptop".into())
    );
    assert!(active(&n, laptop).is_none());
}

#[test]
fn companion_joins_and_either_device_can_leave() {
    let (mut n, desk, laptop, b, id) = two_devices();
    n.cmd(
        laptop,
        Command::ActiveCallTransfer {
            details: None,
            is_transfer: false,
        },
    )
    .unwrap();
    assert_eq!(n.state(laptop, &id), Some(CallState::Connected));
    assert_eq!(n.state(desk, &id), Some(CallState::Connected));
    let (cd, cl, cb) = (n.peers[desk].conn, n.peers[laptop].conn, n.peers[b].conn);
    // Bob hears both alice devices; both hear bob; they do not hear each other.
    assert_eq!(
        n.routes,
        BTreeMap::from([(cd, vec![cb]), (cl, vec![cb]), (cb, vec![cd, cl])])
    );
    // The participants show the companion, on both alice devices.
    let desk_view = &n.peers[desk].core.calls()[0].remote;
    assert!(
        desk_view
            .iter()
            .any(|p| p.device.as_deref() == Some("laptop")),
        "{desk_view:?}"
    );
    let laptop_view = &n.peers[laptop].core.calls()[0].remote;
    assert!(
        laptop_view
            .iter()
            .any(|p| p.device.as_deref() == Some("desk")),
        "{laptop_view:?}"
    );
    assert_eq!(
        n.peers[b].core.calls()[0].remote.len(),
        1,
        "bob still sees one alice"
    );
    // The desk leaves: the call goes on with the laptop.
    n.cmd(
        desk,
        Command::HangUp {
            call_id: id.clone(),
            for_everyone: false,
        },
    )
    .unwrap();
    assert_eq!(n.ended(desk, &id), Some(CallEndReason::NORMAL));
    assert_eq!(n.state(laptop, &id), Some(CallState::Connected));
    assert_eq!(n.state(b, &id), Some(CallState::Connected));
    assert_eq!(n.routes, BTreeMap::from([(cl, vec![cb]), (cb, vec![cl])]));
    // The last alice device leaving ends it for bob.
    n.cmd(
        laptop,
        Command::HangUp {
            call_id: id.clone(),
            for_everyone: false,
        },
    )
    .unwrap();
    assert_eq!(n.ended(b, &id), Some(CallEndReason::NORMAL));
}

#[test]
fn racing_take_overs_have_one_winner_and_ended_calls_give_errors() {
    let (mut n, _desk, laptop, b, id) = two_devices();
    let phone = n.join("alice", "phone");
    let details = active(&n, laptop).unwrap();
    n.cmd(
        laptop,
        Command::ActiveCallTransfer {
            details: Some(details.clone()),
            is_transfer: true,
        },
    )
    .unwrap();
    // The phone acts on the same (now stale) details.
    n.cmd(
        phone,
        Command::ActiveCallTransfer {
            details: Some(details.clone()),
            is_transfer: true,
        },
    )
    .unwrap();
    let err = n.peers[phone].events.iter().find_map(|e| match e {
        Event::Error { code, message, .. } => Some((*code, message.clone())),
        _ => None,
    });
    let (code, msg) = err.expect("the loser gets an error");
    assert_eq!(code, ErrorCode::InvalidState);
    assert!(msg.contains("no longer on device"), "{msg}");
    assert_eq!(n.state(laptop, &id), Some(CallState::Connected));
    assert!(n.state(phone, &id).is_none());
    // Another user cannot take alice's call, even knowing its id and device.
    let m = n.join("mallory", "m");
    let raw = format!(
        r#"{{"type":"activeCallTransfer","callId":"{id}","fromEndpoint":"{}","isTransfer":true}}"#,
        details.endpoint_id
    );
    n.frame(m, &raw);
    assert!(matches!(
        n.peers[m].events.last(),
        Some(Event::Error {
            code: ErrorCode::UnknownCall,
            ..
        })
    ));
    // Bob, in the call already, cannot join it again.
    n.frame(b, &raw);
    assert!(matches!(
        n.peers[b].events.last(),
        Some(Event::Error {
            code: ErrorCode::InvalidState,
            ..
        })
    ));
    // Taking over a call that just ended.
    let stale = active(&n, phone).unwrap();
    n.cmd(
        b,
        Command::HangUp {
            call_id: id.clone(),
            for_everyone: false,
        },
    )
    .unwrap();
    n.cmd(
        phone,
        Command::ActiveCallTransfer {
            details: Some(stale),
            is_transfer: true,
        },
    )
    .unwrap();
    let last = n.peers[phone].events.iter().rev().find_map(|e| match e {
        Event::Error { code, message, .. } => Some((*code, message.clone())),
        _ => None,
    });
    let (code, msg) = last.unwrap();
    assert_eq!(code, ErrorCode::UnknownCall);
    assert!(msg.contains("may have ended"), "{msg}");
    // With nothing reported, the command is refused locally.
    assert!(matches!(
        n.cmd(
            phone,
            Command::ActiveCallTransfer {
                details: None,
                is_transfer: true
            }
        ),
        Err(CommandError::InvalidArgument(_))
    ));
}

#[test]
fn a_transport_failure_is_reported_in_words_once_per_message() {
    let mut n = Net::new();
    let a = n.join("alice", "desk");
    let failures = |n: &mut Net| -> Vec<(ConnectionState, Option<String>)> {
        while let Some(o) = n.peers[a].core.poll_output() {
            if let dialtone::core::Output::Event(e) = o {
                n.peers[a].events.push(e);
            }
        }
        n.peers[a]
            .events
            .drain(..)
            .filter_map(|e| match e {
                Event::ConnectionStateChanged {
                    old,
                    new: ConnectionState::Disconnected,
                    reason: Some(DisconnectReason::ConnectionIssue),
                    message,
                } => Some((old, message)),
                _ => None,
            })
            .collect()
    };
    failures(&mut n);
    let now = n.now;
    let core = &mut n.peers[a].core;
    core.handle_input(Input::TransportDown, now);
    let untrusted = "the switchboard's certificate is not trusted: UnknownIssuer".to_string();
    core.handle_input(Input::TransportFailed(untrusted.clone()), now);
    // Retries that fail the same way say nothing more; a new reason is reported.
    core.handle_input(Input::TransportFailed(untrusted.clone()), now);
    core.handle_input(Input::TransportDown, now);
    core.handle_input(Input::TransportFailed(untrusted.clone()), now);
    core.handle_input(Input::TransportFailed("expired".into()), now);
    assert_eq!(
        failures(&mut n),
        vec![
            (ConnectionState::Connected, None),
            (ConnectionState::Disconnected, Some(untrusted)),
            (ConnectionState::Disconnected, Some("expired".into())),
        ]
    );
    assert_eq!(n.peers[a].core.connection(), ConnectionState::Disconnected);
}

/// A device on the network is offered the switchboard's media addresses it can reach (never
/// loopback, the address it reached us on first) and TURN credentials in `welcome`; a device on
/// this host gets loopback first.
#[test]
fn devices_are_offered_reachable_media_addresses_and_turn_credentials() {
    let mut n = Net::new();
    let now_s = n.now.unix_ms / 1000;
    let token = n.key.issue(&Claims {
        sub: "carol".into(),
        iat: now_s,
        exp: now_s + 60,
        jti: "j9".into(),
    });
    let conn = 700;
    n.sb.handle(
        sb::Input::Opened {
            conn,
            loopback: false,
            local: Some("10.0.0.5:7450".parse().unwrap()),
            secret: 2,
        },
        n.now,
    );
    let hello =
        format!(r#"{{"type":"hello","protocol":1,"token":"{token}","deviceName":"laptop"}}"#);
    n.sb.handle(sb::Input::Frame { conn, text: hello }, n.now);
    n.sb.handle(
        sb::Input::Frame {
            conn,
            text: r#"{"type":"mediaOffer","sdp":"v=0"}"#.into(),
        },
        n.now,
    );
    let mut welcome = None;
    let mut announce = None;
    while let Some(out) = n.sb.poll_output() {
        match out {
            sb::Output::Send {
                msg: ServerMessage::Welcome { ice_servers, .. },
                ..
            } => welcome = Some(ice_servers),
            sb::Output::CreateMedia { announce: a, .. } => announce = Some(a),
            _ => {}
        }
    }
    let servers = welcome.expect("welcome");
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].urls, vec!["turn:10.0.0.9:3478?transport=tcp"]);
    let expiry = now_s + 3600;
    assert_eq!(servers[0].username, format!("{expiry}:carol"));
    assert_eq!(
        servers[0].credential,
        sb::network::turn_password("shared", &servers[0].username)
    );
    assert_eq!(
        announce.expect("media answered"),
        vec!["10.0.0.5:7451".parse::<std::net::SocketAddr>().unwrap()],
        "no loopback for a device on the network"
    );

    // The harness's devices are on loopback: loopback first, then the rest.
    n.join("alice", "desk");
    let offered: Vec<_> = n
        .outs
        .iter()
        .filter_map(|o| match o {
            sb::Output::CreateMedia { announce, .. } => Some(announce.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        offered,
        vec![vec![
            "127.0.0.1:7451".parse::<std::net::SocketAddr>().unwrap(),
            "10.0.0.5:7451".parse().unwrap()
        ]]
    );
}

/// A device whose media cannot flow (its network drops UDP and there is no relay) is told so
/// within a few seconds of its call connecting, with the reason; the far side, which hears
/// nothing, is told too. Neither is left looking at a healthy call.
#[test]
fn a_call_whose_media_cannot_flow_is_reported_on_both_sides() {
    use dialtone::core::diagnostics::{Diagnostic, DiagnosticValue, Quality};
    let mut n = Net::new();
    let a = n.join("alice", "desk");
    // Her link's checks fail: it goes down (the harness brought it up on the answer).
    n.peers[a].media_path = false;
    n.peers[a]
        .core
        .handle_input(Input::MediaConnected(false), n.now);
    // alice signed in before the call: her link has been failing for a while already.
    n.run_media(Duration::from_secs(10), |_| 0);
    let b = n.join("bob", "laptop");
    let id = n.call(a, "bob");
    let inc = n.incoming(b).unwrap();
    n.cmd(b, Command::Accept { call_id: inc }).unwrap();
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
    let diag = |n: &Net, i: usize| -> Vec<dialtone::core::diagnostics::DiagnosticChange> {
        n.peers[i]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::NetworkDiagnosticChanged(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    };
    n.run_media(Duration::from_secs(2), |_| 0);
    assert!(
        diag(&n, a).is_empty(),
        "a call gets its grace: {:?}",
        diag(&n, a)
    );
    // bob's link is up and receives nothing from alice: both are told within 5 s.
    n.run_media(Duration::from_millis(1500), |_| 0);
    let at_a = diag(&n, a);
    assert_eq!(at_a.len(), 1, "{at_a:?}");
    assert_eq!(at_a[0].call_id.as_deref(), Some(id.as_str()));
    assert_eq!(at_a[0].diagnostic, Diagnostic::NetworkReconnect);
    assert_eq!(at_a[0].value, DiagnosticValue::Quality(Quality::Bad));
    let why = at_a[0].message.clone().unwrap();
    assert!(why.contains("UDP") && why.contains("TURN"), "{why}");
    let at_b = diag(&n, b);
    assert_eq!(at_b.len(), 1, "{at_b:?}");
    assert_eq!(at_b[0].diagnostic, Diagnostic::NetworkReceiveQuality);
    assert_eq!(at_b[0].value, DiagnosticValue::Quality(Quality::Bad));
    // Said once, not every tick.
    n.run_media(Duration::from_secs(5), |_| 0);
    assert_eq!(diag(&n, a).len(), 1);
    // alice's path comes back and sound flows: both hear it is over.
    n.peers[a].media_path = true;
    n.peers[a]
        .core
        .handle_input(Input::MediaConnected(true), n.now);
    let mut count = 0u64;
    for _ in 0..10 {
        count += 5;
        let c = count;
        n.run_media(Duration::from_millis(100), move |_| c);
    }
    let at_a = diag(&n, a);
    assert_eq!(
        at_a.last().unwrap().value,
        DiagnosticValue::Quality(Quality::Good)
    );
    let at_b = diag(&n, b);
    assert_eq!(
        at_b.last().unwrap().value,
        DiagnosticValue::Quality(Quality::Good)
    );
}

/// A muted far side, a held call or a healthy one: nothing to say.
#[test]
fn healthy_muted_and_held_calls_say_nothing() {
    let mut n = Net::new();
    let (a, b, id) = n.connect();
    // Running packet counts: each side's grows while the other sends.
    let mut counts = [0u64; 2];
    let mut run = |n: &mut Net, secs: u64, flowing: [bool; 2]| {
        for _ in 0..secs * 10 {
            for (c, on) in counts.iter_mut().zip(flowing) {
                if on {
                    *c += 5;
                }
            }
            let now_counts = counts;
            n.run_media(Duration::from_millis(100), move |i| now_counts[i.min(1)]);
        }
    };
    run(&mut n, 3, [true, true]);
    // alice mutes: bob hears nothing, and that is expected; alice still hears bob.
    n.cmd(
        a,
        Command::Mute {
            call_id: id.clone(),
        },
    )
    .unwrap();
    run(&mut n, 5, [true, false]);
    n.cmd(
        a,
        Command::Unmute {
            call_id: id.clone(),
        },
    )
    .unwrap();
    n.cmd(
        a,
        Command::Hold {
            call_id: id.clone(),
        },
    )
    .unwrap();
    run(&mut n, 5, [false, false]);
    for i in [a, b] {
        let said: Vec<_> = n.peers[i]
            .events
            .iter()
            .filter(|e| matches!(e, Event::NetworkDiagnosticChanged(_)))
            .collect();
        assert!(said.is_empty(), "device {i}: {said:?}");
    }
}
