//! Group calls, participants and numbers through the two pure cores with simulated time: who
//! rings, who hears whom, which events each side sees and in which order, and that bad requests
//! change nothing.

mod net;

use std::collections::BTreeMap;

use dialtone::core::{
    CallEndReason, CallState, Command, CommandError, CommandOk, Event, ParticipantState,
};
use dialtone::protocol::{ErrorCode, Participant};
use dialtone::server::switchboard::{ConnId, Startup};
use net::{Net, RING};

const GROUP: &str = "29228d3e-040e-4656-a70e-890ab4e173e5";

fn place(n: &mut Net, i: usize, to: &[&str], alt: Option<&str>) -> String {
    match n
        .cmd(
            i,
            Command::Call {
                to: to.iter().map(|s| s.to_string()).collect(),
                alternate_caller_id: alt.map(str::to_string),
            },
        )
        .unwrap()
    {
        CommandOk::CallId(id) => id,
        other => panic!("{other:?}"),
    }
}

fn accept(n: &mut Net, i: usize, call: &str) {
    n.cmd(
        i,
        Command::Accept {
            call_id: call.into(),
        },
    )
    .unwrap();
}

fn join(n: &mut Net, i: usize, group: &str) -> String {
    match n
        .cmd(
            i,
            Command::Join {
                group_id: group.into(),
            },
        )
        .unwrap()
    {
        CommandOk::CallId(id) => id,
        other => panic!("{other:?}"),
    }
}

/// The remote participants device `i` sees: name -> state.
fn roster(n: &Net, i: usize, call: &str) -> BTreeMap<String, ParticipantState> {
    n.peers[i]
        .core
        .calls()
        .into_iter()
        .find(|c| c.call_id == call)
        .map(|c| {
            c.remote
                .into_iter()
                .map(|p| (p.identity.display_name, p.state))
                .collect()
        })
        .unwrap_or_default()
}

fn names(ps: &[Participant]) -> Vec<String> {
    ps.iter().map(|p| p.identity.display_name.clone()).collect()
}

/// The participant events device `i` saw for `call`, in order, in short form.
fn participant_events(n: &Net, i: usize, call: &str) -> Vec<String> {
    n.peers[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::RemoteParticipantsUpdated {
                call_id,
                added,
                removed,
            } if call_id == call => {
                Some(format!("updated +{:?} -{:?}", names(added), names(removed)))
            }
            Event::ParticipantStateChanged {
                call_id,
                participant,
            } if call_id == call => Some(format!(
                "{} {:?}{}{}",
                participant.identity.display_name,
                participant.state,
                if participant.is_muted { " muted" } else { "" },
                if participant.is_speaking {
                    " speaking"
                } else {
                    ""
                }
            )),
            _ => None,
        })
        .collect()
}

/// Who hears whom, as (from, to) pairs of peer indexes.
fn hears(n: &Net) -> Vec<(usize, usize)> {
    let idx = |c: ConnId| n.peers.iter().position(|p| p.conn == c).unwrap();
    let mut v: Vec<(usize, usize)> = n
        .routes
        .iter()
        .flat_map(|(from, tos)| tos.iter().map(move |to| (idx(*from), idx(*to))))
        .collect();
    v.sort();
    v
}

fn mesh(peers: &[usize]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for a in peers {
        for b in peers {
            if a != b {
                v.push((*a, *b));
            }
        }
    }
    v.sort();
    v
}

fn errors(n: &Net, i: usize) -> Vec<(ErrorCode, String)> {
    n.peers[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Error { code, message, .. } => Some((*code, message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_call_to_several_rings_all_and_connects_each_who_answers() {
    let mut n = Net::new();
    let a = n.join("alice", "desk");
    let b = n.join("bob", "laptop");
    let c = n.join("carol", "phone");
    let d = n.join("dave", "phone");
    let id = place(&mut n, a, &["bob", "carol", "dave"], None);
    for p in [b, c, d] {
        assert_eq!(n.incoming(p).as_deref(), Some(id.as_str()));
        assert!(
            n.peers[p]
                .events
                .iter()
                .any(|e| matches!(e, Event::IncomingCall { group: true, .. }))
        );
    }
    assert_eq!(n.state(a, &id), Some(CallState::Ringing));
    assert_eq!(
        roster(&n, a, &id),
        BTreeMap::from([
            ("bob".into(), ParticipantState::Ringing),
            ("carol".into(), ParticipantState::Ringing),
            ("dave".into(), ParticipantState::Ringing),
        ])
    );
    accept(&mut n, b, &id);
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
    assert_eq!(n.state(b, &id), Some(CallState::Connected));
    assert_eq!(roster(&n, a, &id)["bob"], ParticipantState::Connected);
    assert_eq!(roster(&n, b, &id)["carol"], ParticipantState::Ringing);
    assert_eq!(hears(&n), mesh(&[a, b]));
    accept(&mut n, c, &id);
    assert_eq!(hears(&n), mesh(&[a, b, c]));
    // Dave declines: he leaves the list; the call goes on.
    n.cmd(
        d,
        Command::Reject {
            call_id: id.clone(),
            reason: dialtone::core::RejectReason::None,
        },
    )
    .unwrap();
    assert_eq!(n.ended(d, &id), Some(CallEndReason::DECLINED));
    for (p, others) in [
        (a, ["bob", "carol"]),
        (b, ["alice", "carol"]),
        (c, ["alice", "bob"]),
    ] {
        assert_eq!(
            roster(&n, p, &id).into_keys().collect::<Vec<_>>(),
            others.to_vec(),
            "peer {p}"
        );
        assert_eq!(n.state(p, &id), Some(CallState::Connected));
    }
    // Alice's view in order: the three invitees, bob and carol connecting, dave leaving.
    assert_eq!(
        participant_events(&n, a, &id),
        vec![
            r#"updated +["bob", "carol", "dave"] -[]"#,
            "bob Connected",
            "carol Connected",
            r#"updated +[] -["dave"]"#,
        ]
    );
    // The caller leaving does not end it for the others; the last one leaving does.
    n.hang_up(a, &id, false);
    assert_eq!(n.ended(a, &id), Some(CallEndReason::NORMAL));
    assert_eq!(hears(&n), mesh(&[b, c]));
    assert_eq!(
        roster(&n, b, &id).into_keys().collect::<Vec<_>>(),
        vec!["carol"]
    );
    n.hang_up(b, &id, false);
    assert_eq!(n.state(c, &id), Some(CallState::Connected), "carol stays");
    n.hang_up(c, &id, false);
    assert_eq!(n.ended(c, &id), Some(CallEndReason::NORMAL));
    assert_eq!(n.sb.live_calls(), 0);
    assert!(n.routes.is_empty());
}

#[test]
fn a_group_call_fails_as_its_last_invitee_did_and_invitees_time_out_alone() {
    let mut n = Net::new();
    let a = n.join("alice", "desk");
    let b = n.join("bob", "laptop");
    let c = n.join("carol", "phone");
    let id = place(&mut n, a, &["bob", "carol"], None);
    n.cmd(
        b,
        Command::Reject {
            call_id: id.clone(),
            reason: dialtone::core::RejectReason::Busy,
        },
    )
    .unwrap();
    assert_eq!(
        n.state(a, &id),
        Some(CallState::Ringing),
        "carol still rings"
    );
    n.advance(RING);
    assert_eq!(n.ended(c, &id), Some(CallEndReason::NO_ANSWER));
    assert_eq!(n.ended(a, &id), Some(CallEndReason::NO_ANSWER));
    // An invitee that does not answer drops out of a connected group call alone.
    let d = n.join("dave", "phone");
    let id = place(&mut n, a, &["bob", "dave"], None);
    accept(&mut n, b, &id);
    n.advance(RING);
    assert_eq!(n.ended(d, &id), Some(CallEndReason::NO_ANSWER));
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
    assert_eq!(
        roster(&n, a, &id).into_keys().collect::<Vec<_>>(),
        vec!["bob"]
    );
    // Everyone invited offline: 480 at once.
    let id = place(&mut n, a, &["zed", "yan"], None);
    assert_eq!(n.ended(a, &id), Some(CallEndReason::UNKNOWN_USER));
    n.vanish(c);
    let e = n.join("erin", "x");
    n.vanish(e);
    let id = place(&mut n, a, &["carol", "erin"], None);
    assert_eq!(n.ended(a, &id), Some(CallEndReason::OFFLINE));
}

#[test]
fn join_by_group_id_starts_or_joins_and_the_last_one_out_ends_it() {
    let mut n = Net::new();
    let a = n.join("alice", "desk");
    let b = n.join("bob", "laptop");
    let c = n.join("carol", "phone");
    let upper = GROUP.to_uppercase();
    let id = join(&mut n, a, &format!("{{{upper}}}"));
    assert_eq!(id, GROUP, "the call id is the GUID, lower case");
    assert_eq!(
        n.state(a, &id),
        Some(CallState::Connected),
        "alone, connected"
    );
    assert!(roster(&n, a, &id).is_empty());
    assert_eq!(join(&mut n, b, GROUP), GROUP);
    assert_eq!(hears(&n), mesh(&[a, b]));
    assert_eq!(join(&mut n, c, GROUP), GROUP);
    assert_eq!(hears(&n), mesh(&[a, b, c]));
    assert_eq!(
        participant_events(&n, a, &id),
        vec![r#"updated +["bob"] -[]"#, r#"updated +["carol"] -[]"#]
    );
    assert_eq!(
        participant_events(&n, c, &id),
        vec![r#"updated +["alice", "bob"] -[]"#]
    );
    // Joining twice, or with a bad GUID, is refused and changes nothing.
    assert!(matches!(
        n.cmd(
            a,
            Command::Join {
                group_id: GROUP.into()
            }
        ),
        Err(CommandError::InvalidArgument(_))
    ));
    assert!(matches!(
        n.cmd(
            a,
            Command::Join {
                group_id: "not-a-guid".into()
            }
        ),
        Err(CommandError::InvalidArgument(m)) if m.contains("not a GUID")
    ));
    n.frame(a, r#"{"type":"joinGroup","groupId":"1234"}"#);
    assert_eq!(errors(&n, a).last().unwrap().0, ErrorCode::InvalidArgument);
    n.frame(a, &format!(r#"{{"type":"joinGroup","groupId":"{GROUP}"}}"#));
    assert!(errors(&n, a).last().unwrap().1.contains("already in"));
    // A placed call's id cannot be joined even when it looks like a GUID.
    let d = n.join("dave", "x");
    let placed = place(&mut n, d, &["bob"], None);
    let _ = placed;
    n.frame(
        c,
        r#"{"type":"joinGroup","groupId":"00000000-0000-4000-8000-000000000000"}"#,
    );
    assert_eq!(hears(&n), mesh(&[a, b, c]));
    // Leaving one by one; the last one out ends it, and the GUID can start a new call.
    for p in [a, b] {
        n.hang_up(p, &id, false);
    }
    assert_eq!(n.state(c, &id), Some(CallState::Connected));
    n.vanish(c);
    assert!(n.routes.is_empty());
    let c2 = n.join("carol", "tablet");
    assert_eq!(join(&mut n, c2, GROUP), GROUP);
    assert!(roster(&n, c2, GROUP).is_empty(), "a fresh call");
}

#[test]
fn add_a_third_party_to_a_one_to_one_call_and_remove_them_again() {
    let mut n = Net::new();
    let (a, b, id) = n.connect();
    let c = n.join("carol", "phone");
    n.cmd(
        a,
        Command::AddParticipant {
            call_id: id.clone(),
            target: "carol".into(),
            alternate_caller_id: None,
        },
    )
    .unwrap();
    assert_eq!(n.incoming(c).as_deref(), Some(id.as_str()));
    assert_eq!(roster(&n, b, &id)["carol"], ParticipantState::Ringing);
    assert_eq!(hears(&n), mesh(&[a, b]), "nobody dropped while carol rings");
    accept(&mut n, c, &id);
    assert_eq!(hears(&n), mesh(&[a, b, c]));
    assert_eq!(
        roster(&n, c, &id).into_keys().collect::<Vec<_>>(),
        vec!["alice", "bob"]
    );
    // Adding someone already there, or removing someone who is not, is refused at once.
    let already = n.cmd(
        b,
        Command::AddParticipant {
            call_id: id.clone(),
            target: "carol".into(),
            alternate_caller_id: None,
        },
    );
    assert!(matches!(already, Err(CommandError::InvalidArgument(m)) if m.contains("already")));
    let absent = n.cmd(
        b,
        Command::RemoveParticipant {
            call_id: id.clone(),
            target: "dave".into(),
        },
    );
    assert!(matches!(absent, Err(CommandError::InvalidArgument(m)) if m.contains("not in")));
    // The switchboard refuses them too when a client skips its own checks.
    n.frame(
        b,
        &format!(r#"{{"type":"addParticipant","callId":"{id}","target":"alice"}}"#),
    );
    assert!(
        errors(&n, b)
            .last()
            .unwrap()
            .1
            .contains("already in this call")
    );
    n.frame(
        b,
        &format!(r#"{{"type":"removeParticipant","callId":"{id}","target":"dave"}}"#),
    );
    assert!(errors(&n, b).last().unwrap().1.contains("not in this call"));
    n.frame(
        b,
        &format!(r#"{{"type":"removeParticipant","callId":"{id}","target":"bob"}}"#),
    );
    assert!(errors(&n, b).last().unwrap().1.contains("hang up"));
    assert_eq!(hears(&n), mesh(&[a, b, c]));
    n.cmd(
        a,
        Command::RemoveParticipant {
            call_id: id.clone(),
            target: "carol".into(),
        },
    )
    .unwrap();
    assert_eq!(n.ended(c, &id), Some(CallEndReason::REMOVED));
    assert_eq!(hears(&n), mesh(&[a, b]));
    for p in [a, b] {
        assert_eq!(n.state(p, &id), Some(CallState::Connected));
    }
    assert_eq!(
        participant_events(&n, b, &id),
        vec![
            r#"updated +["alice"] -[]"#,
            r#"updated +["carol"] -[]"#,
            "carol Connected",
            r#"updated +[] -["carol"]"#,
        ]
    );
}

#[test]
fn hang_up_for_everyone_ends_the_group_call_for_all() {
    let mut n = Net::new();
    let peers: Vec<usize> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|u| n.join(u, "d"))
        .collect();
    for p in &peers {
        join(&mut n, *p, GROUP);
    }
    assert_eq!(hears(&n), mesh(&peers));
    n.hang_up(peers[2], GROUP, true);
    for p in &peers {
        assert_eq!(
            n.ended(*p, GROUP),
            Some(CallEndReason::ENDED_FOR_EVERYONE),
            "peer {p}"
        );
    }
    assert_eq!(n.sb.live_calls(), 0);
}

#[test]
fn hold_and_mute_in_a_group_call_touch_only_the_one_who_does_it() {
    let mut n = Net::new();
    let peers: Vec<usize> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| n.join(u, "d"))
        .collect();
    let [a, b, c] = peers[..] else { unreachable!() };
    for p in &peers {
        join(&mut n, *p, GROUP);
    }
    n.cmd(
        c,
        Command::Hold {
            call_id: GROUP.into(),
        },
    )
    .unwrap();
    assert_eq!(hears(&n), mesh(&[a, b]), "carol on hold drops out alone");
    assert_eq!(n.state(a, GROUP), Some(CallState::Connected));
    assert_eq!(roster(&n, a, GROUP)["carol"], ParticipantState::Hold);
    n.cmd(
        c,
        Command::Resume {
            call_id: GROUP.into(),
        },
    )
    .unwrap();
    n.cmd(
        b,
        Command::Mute {
            call_id: GROUP.into(),
        },
    )
    .unwrap();
    assert_eq!(hears(&n), mesh(&[a, b, c]));
    assert!(participant_events(&n, a, GROUP).contains(&"bob Connected muted".to_string()));
}

/// The raw ids device `i` sees in its first call, sorted.
fn ids(n: &Net, i: usize) -> Vec<String> {
    let mut v: Vec<String> = n.peers[i].core.calls()[0]
        .remote
        .iter()
        .map(|p| p.identity.raw_id.clone())
        .collect();
    v.sort();
    v
}

fn numbers() -> Startup {
    Startup {
        numbers: BTreeMap::from([
            ("+15550100".into(), "alice".into()),
            ("+15550101".into(), "bob".into()),
            ("+15550102".into(), "nobody-yet".into()),
            ("+15550103".into(), "carol".into()),
        ]),
        ..Startup::default()
    }
}

#[test]
fn calling_a_number_needs_one_of_your_numbers_and_rings_its_owner() {
    let mut n = Net::with_startup(numbers());
    let a = n.join("alice", "desk");
    let b = n.join("bob", "laptop");
    let c = n.join("carol", "phone");
    let id = place(&mut n, a, &["+15550101"], None);
    assert_eq!(n.ended(a, &id), Some(CallEndReason::CALLER_ID_REQUIRED));
    let (_, why) = errors(&n, a).pop().unwrap();
    assert!(
        why.contains("alternateCallerId") && why.contains("+15550100"),
        "{why}"
    );
    let id = place(&mut n, a, &["+15550101"], Some("+15550101"));
    assert_eq!(n.ended(a, &id), Some(CallEndReason::CALLER_ID_NOT_OWNED));
    let id = place(&mut n, c, &["+15550101"], Some("+15550100"));
    assert_eq!(
        n.ended(c, &id),
        Some(CallEndReason::CALLER_ID_NOT_OWNED),
        "carol has no number"
    );
    let id = place(&mut n, a, &["+15550999"], Some("+15550100"));
    assert_eq!(n.ended(a, &id), Some(CallEndReason::NUMBER_UNOWNED));
    let id = place(&mut n, a, &["+15550102"], Some("+15550100"));
    assert_eq!(
        n.ended(a, &id),
        Some(CallEndReason::OFFLINE),
        "owner never signed in"
    );
    let id = place(&mut n, a, &["4:+15550100"], Some("+15550100"));
    assert_eq!(
        n.ended(a, &id),
        Some(CallEndReason::INVALID_CALLEE),
        "own number"
    );
    assert!(n.incoming(b).is_none(), "nothing rang bob so far");
    // With a caller id: bob rings and sees alice's number.
    let id = place(&mut n, a, &["+15550101"], Some("4:+15550100"));
    let seen = n.peers[b].events.iter().find_map(|e| match e {
        Event::IncomingCall {
            call_id,
            caller_number,
            ..
        } if *call_id == id => Some(caller_number.clone()),
        _ => None,
    });
    assert_eq!(seen, Some(Some("+15550100".to_string())));
    accept(&mut n, b, &id);
    let remote = |i: usize| n.peers[i].core.calls()[0].remote[0].identity.clone();
    assert_eq!(remote(a).raw_id, "4:+15550101");
    assert_eq!(remote(b).raw_id, "4:+15550100");
    assert_eq!(remote(b).display_name, "alice");
    assert_eq!(hears(&n), mesh(&[a, b]));
    // Bob adds carol by her number: she sees bob as his number, alice as alice.
    let add = |alt: Option<&str>| Command::AddParticipant {
        call_id: id.clone(),
        target: "+15550103".into(),
        alternate_caller_id: alt.map(str::to_string),
    };
    n.cmd(b, add(None)).unwrap();
    let (_, why) = errors(&n, b).pop().unwrap();
    assert!(why.contains("7601"), "{why}");
    n.cmd(b, add(Some("+15550101"))).unwrap();
    accept(&mut n, c, &id);
    assert_eq!(ids(&n, c), vec!["4:+15550101", "8:acs:res_alice"]);
    assert_eq!(ids(&n, a), vec!["4:+15550101", "4:+15550103"]);
    assert_eq!(ids(&n, b), vec!["4:+15550100", "4:+15550103"]);
    // Alice, who placed the call, leaves: nobody is shown as her number any more, and the
    // others keep their views.
    n.hang_up(a, &id, false);
    assert_eq!(ids(&n, c), vec!["4:+15550101"]);
    assert_eq!(ids(&n, b), vec!["4:+15550103"]);
}

#[test]
fn bad_callee_lists_are_refused_and_ring_nobody() {
    let mut n = Net::new();
    let a = n.join("alice", "desk");
    let b = n.join("bob", "laptop");
    let c = n.join("carol", "phone");
    for to in [
        &["bob", "Bob"][..],
        &["bob", "8:acs:res_bob"],
        &["bob", "alice"],
        &["bob", "echo"],
        &["bob", "no such!"],
    ] {
        let id = place(&mut n, a, to, None);
        assert_eq!(
            n.ended(a, &id),
            Some(CallEndReason::INVALID_CALLEE),
            "{to:?}"
        );
    }
    assert!(n.incoming(b).is_none() && n.incoming(c).is_none());
    assert_eq!(n.sb.live_calls(), 0);
    assert!(
        errors(&n, a)
            .iter()
            .any(|(_, m)| m.contains("more than once"))
    );
    assert!(errors(&n, a).iter().any(|(_, m)| m.contains("yourself")));
}
