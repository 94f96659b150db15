//! Lost connections through the pure cores, with simulated time: a device whose connection
//! drops or freezes keeps its calls for the reconnect window, the others see it reconnecting,
//! it resumes its place with what it missed, and a device that does not come back is given up
//! with a documented end reason. The real-process versions, across network namespaces, are in
//! tests/survive_outages.rs.

use std::time::Duration;

use dialtone::core::diagnostics::{Diagnostic, DiagnosticValue, Quality};
use dialtone::core::{CallEndReason, CallState, Command, ConnectionState, Event, Input};
use dialtone::protocol::Participant;
use dialtone::server::switchboard as sb;

mod net;

use net::Net;

const WINDOW: Duration = Duration::from_secs(30);
const KEEPALIVE: Duration = Duration::from_secs(5);

fn net() -> Net {
    Net::with_reconnect(WINDOW, KEEPALIVE)
}

/// What device `i` was told about its remote participants in `call`, in order.
fn seen(n: &Net, i: usize, call: &str) -> Vec<Participant> {
    n.peers[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ParticipantStateChanged {
                call_id,
                participant,
            } if call_id == call => Some(participant.clone()),
            _ => None,
        })
        .collect()
}

fn reconnect_diag(n: &Net, i: usize) -> Vec<DiagnosticValue> {
    n.peers[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::NetworkDiagnosticChanged(d) if d.diagnostic == Diagnostic::NetworkReconnect => {
                Some(d.value)
            }
            _ => None,
        })
        .collect()
}

fn welcomed(n: &Net, i: usize) -> usize {
    n.peers[i]
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::ConnectionStateChanged {
                    new: ConnectionState::Connected,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn a_dropped_device_keeps_its_call_and_resumes_it_with_what_it_missed() {
    let mut n = net();
    let (a, b, id) = n.connect();
    let b_conn = n.peers[b].conn;
    let routes = n.routes.clone();
    assert_eq!(routes.len(), 2, "{routes:?}");

    n.vanish(b);
    // Bob's device keeps the call and says it is reconnecting; alice sees bob reconnecting.
    assert_eq!(n.state(b, &id), Some(CallState::Connected));
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
    assert!(n.peers[b].core.reconnecting());
    assert_eq!(
        reconnect_diag(&n, b),
        vec![DiagnosticValue::Quality(Quality::Bad)],
        "networkReconnect is raised at once"
    );
    let last = seen(&n, a, &id).last().cloned().expect("alice is told");
    assert!(last.reconnecting, "{last:?}");
    assert_eq!(n.peers[b].media_drops, 0, "the media link is kept");
    assert_eq!(
        n.routes, routes,
        "media keeps flowing while signaling is away"
    );

    // While bob is away alice mutes: bob hears of it when he is back.
    n.cmd(
        a,
        Command::Mute {
            call_id: id.clone(),
        },
    )
    .unwrap();
    n.tick_for(Duration::from_secs(10));
    n.reconnect(b);
    assert_eq!(n.peers[b].conn, b_conn, "the same device, the same id");
    assert!(!n.peers[b].core.reconnecting());
    assert_eq!(welcomed(&n, b), 2);
    assert_eq!(n.state(b, &id), Some(CallState::Connected));
    assert_eq!(n.ended(b, &id), None);
    assert_eq!(n.ended(a, &id), None);
    let bob_saw = seen(&n, b, &id).last().cloned().expect("bob is told");
    assert!(
        bob_saw.is_muted,
        "the missed update is replayed: {bob_saw:?}"
    );
    let alice_saw = seen(&n, a, &id).last().cloned().unwrap();
    assert!(!alice_saw.reconnecting, "{alice_saw:?}");
    assert_eq!(
        reconnect_diag(&n, b).last(),
        Some(&DiagnosticValue::Quality(Quality::Good))
    );
    // And the call still works: bob hangs up, alice sees a normal end.
    n.hang_up(b, &id, false);
    assert_eq!(n.ended(a, &id), Some(CallEndReason::NORMAL));
}

#[test]
fn a_device_that_does_not_come_back_in_time_is_given_up_with_410() {
    let mut n = net();
    let (a, b, id) = n.connect();
    n.vanish(b);
    n.tick_for(WINDOW - Duration::from_secs(1));
    assert_eq!(n.ended(a, &id), None, "still within the window");
    n.tick_for(Duration::from_secs(2));
    assert_eq!(n.ended(a, &id), Some(CallEndReason::PEER_LOST));
    assert!(n.routes.is_empty());
    // Bob's device gives up on its own too, a little after the switchboard.
    n.tick_for(Duration::from_secs(1));
    assert_eq!(n.ended(b, &id), Some(CallEndReason::CONNECTION_LOST));
    assert!(n.peers[b].media_drops >= 1);
    // Back later: a new sign-in, not a resume.
    n.reconnect(b);
    assert_eq!(welcomed(&n, b), 2);
    assert!(n.peers[b].core.calls().is_empty());
}

#[test]
fn a_device_back_after_the_switchboard_gave_up_ends_its_calls_on_welcome() {
    let mut n = net();
    let (a, b, id) = n.connect();
    n.vanish(b);
    // The switchboard gives up at 30 s; bob's device would at 31 s, but comes back at 30.5.
    n.tick_for(WINDOW + Duration::from_millis(500));
    assert_eq!(n.ended(a, &id), Some(CallEndReason::PEER_LOST));
    assert_eq!(n.ended(b, &id), None);
    n.reconnect(b);
    assert_eq!(n.ended(b, &id), Some(CallEndReason::CONNECTION_LOST));
    assert_eq!(n.peers[b].core.connection(), ConnectionState::Connected);
}

#[test]
fn a_frozen_device_is_noticed_by_both_sides_and_given_up_after_the_window() {
    let mut n = net();
    let (a, b, id) = n.connect();
    // Pings flow: a minute of ticks changes nothing.
    n.tick_for(Duration::from_secs(60));
    assert_eq!(n.peers[b].reconnects, 0);
    assert!(seen(&n, a, &id).iter().all(|p| !p.reconnecting));

    n.freeze(b);
    n.tick_for(Duration::from_secs(3));
    assert_eq!(
        n.peers[b].reconnects, 1,
        "the device notices its own silence within 3 s"
    );
    n.tick_for(Duration::from_secs(2));
    assert!(
        seen(&n, a, &id).last().is_some_and(|p| p.reconnecting),
        "the switchboard notices within 5 s"
    );
    assert!(
        n.outs.iter().any(
            |o| matches!(o, sb::Output::Close { reason, .. } if reason.contains("nothing heard"))
        ),
        "and closes the silent connection"
    );
    // Given up 30 s after it was last heard (within window + 5 s of the freeze).
    n.tick_for(Duration::from_secs(24));
    assert_eq!(n.ended(a, &id), None);
    n.tick_for(Duration::from_secs(2));
    assert_eq!(n.ended(a, &id), Some(CallEndReason::PEER_LOST));
}

#[test]
fn hanging_up_while_reconnecting_ends_the_call_here_and_there_on_resume() {
    let mut n = net();
    let (a, b, id) = n.connect();
    n.vanish(b);
    n.hang_up(b, &id, false);
    assert_eq!(n.ended(b, &id), Some(CallEndReason::NORMAL));
    assert_eq!(n.ended(a, &id), None, "the switchboard has not heard yet");
    n.reconnect(b);
    assert_eq!(n.ended(a, &id), Some(CallEndReason::NORMAL));
}

#[test]
fn a_clean_close_is_not_kept() {
    let mut n = net();
    let (a, b, id) = n.connect();
    let conn = n.peers[b].conn;
    n.peers[b].open = false;
    n.sb.handle(sb::Input::Closed { conn, clean: true }, n.now);
    n.pump();
    assert_eq!(n.ended(a, &id), Some(CallEndReason::PEER_LOST));
}

#[test]
fn a_resume_token_is_only_good_for_its_own_user_and_place() {
    let mut n = net();
    let (_a, b, id) = n.connect();
    n.vanish(b);
    // Bob's place is device 2 with secret 5eed0002 (see `Net::open_conn`). Mallory tries it,
    // and forgeries: each gets a place of her own, nothing is resumed.
    for (k, forged) in ["2.5eed0002", "2.0", "x", "2.zz", "99.1", ""]
        .iter()
        .enumerate()
    {
        let conn = 900 + k as u64;
        n.sb.handle(
            sb::Input::Opened {
                conn,
                loopback: true,
                local: None,
                secret: 9,
            },
            n.now,
        );
        n.sb.handle(
            sb::Input::Frame {
                conn,
                text: format!(
                    r#"{{"type":"hello","protocol":1,"user":"mallory","deviceName":"m","resume":"{forged}"}}"#
                ),
            },
            n.now,
        );
        let mut welcomes = Vec::new();
        while let Some(out) = n.sb.poll_output() {
            assert!(
                !matches!(out, sb::Output::Attach { .. }),
                "{forged}: {out:?}"
            );
            if let sb::Output::Send {
                conn: c,
                msg: dialtone::protocol::ServerMessage::Welcome { resumed, .. },
            } = out
            {
                welcomes.push((c, resumed));
            }
        }
        assert_eq!(welcomes, vec![(conn, false)], "{forged}: a new sign-in");
    }
    // Bob himself still can.
    n.reconnect(b);
    assert_eq!(n.state(b, &id), Some(CallState::Connected));
    assert_eq!(welcomed(&n, b), 2);
}

fn no_network(n: &Net, i: usize) -> Vec<DiagnosticValue> {
    n.peers[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::NetworkDiagnosticChanged(d) if d.diagnostic == Diagnostic::NoNetwork => {
                assert_eq!(d.call_id, None, "noNetwork is about the device");
                Some(d.value)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_local_address_going_away_reconnects_at_once_and_rebuilds_the_media_link() {
    let mut n = net();
    let (a, b, id) = n.connect();
    let wifi: std::net::IpAddr = "192.168.1.20".parse().unwrap();
    let cable: std::net::IpAddr = "10.0.0.7".parse().unwrap();
    let now = n.now;
    n.peers[b]
        .core
        .handle_input(Input::LocalAddresses(vec![wifi]), now);
    n.pump();
    // Audio is flowing, so a resume alone would keep the link.
    let count = std::cell::Cell::new(0);
    n.run_media(Duration::from_millis(300), |_| {
        count.set(count.get() + 5);
        count.get()
    });
    assert_eq!(
        n.peers[b].reconnects, 0,
        "the first reading changes nothing"
    );
    let offers = n.peers[b].media_offers;

    // Cable plugged in: an address added changes nothing.
    let now = n.now;
    n.peers[b]
        .core
        .handle_input(Input::LocalAddresses(vec![cable, wifi]), now);
    n.pump();
    assert_eq!(n.peers[b].reconnects, 0);

    // Wi-Fi off: its address goes, the connection is replaced at once, no silence waited for.
    let now = n.now;
    n.peers[b]
        .core
        .handle_input(Input::LocalAddresses(vec![cable]), now);
    n.pump();
    assert_eq!(n.peers[b].reconnects, 1, "reconnects at once");
    assert!(n.peers[b].core.reconnecting());
    n.reconnect(b);
    assert!(!n.peers[b].core.reconnecting());
    assert_eq!(
        n.peers[b].media_offers,
        offers + 1,
        "a new media link on the new address, though the old one looked fresh"
    );
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
    assert_eq!(n.state(b, &id), Some(CallState::Connected));
    assert_eq!(n.ended(a, &id), None);

    // A later plain resume (a signaling hiccup) keeps a fresh link again.
    n.run_media(Duration::from_millis(300), |_| {
        count.set(count.get() + 5);
        count.get()
    });
    n.vanish(b);
    n.reconnect(b);
    assert_eq!(n.peers[b].media_offers, offers + 1);
}

#[test]
fn no_usable_address_is_no_network_until_one_comes() {
    let mut n = net();
    let (_a, b, _id) = n.connect();
    let wifi: std::net::IpAddr = "192.168.1.20".parse().unwrap();
    let now = n.now;
    n.peers[b]
        .core
        .handle_input(Input::LocalAddresses(vec![wifi]), now);
    n.pump();
    assert_eq!(no_network(&n, b), vec![], "a healthy network says nothing");
    let now = n.now;
    n.peers[b]
        .core
        .handle_input(Input::LocalAddresses(vec![]), now);
    n.pump();
    assert_eq!(no_network(&n, b), vec![DiagnosticValue::Flag(true)]);
    n.tick_for(Duration::from_secs(2));
    let now = n.now;
    n.peers[b]
        .core
        .handle_input(Input::LocalAddresses(vec![wifi]), now);
    n.pump();
    assert_eq!(
        no_network(&n, b),
        vec![DiagnosticValue::Flag(true), DiagnosticValue::Flag(false)]
    );
}

#[test]
fn measured_loss_grades_the_call_and_sizes_the_fec() {
    use dialtone::core::MediaControl;
    use dialtone::core::quality::LinkCounters;
    let mut n = net();
    let (_a, b, id) = n.connect();
    // One second per reading: 50 packets due, 8 of them lost (16 %), the switchboard reporting
    // 12 % of ours lost.
    for k in 0..4u64 {
        n.advance(Duration::from_secs(1));
        let c = LinkCounters {
            packets_received: 42 * k,
            packets_lost: 8 * k,
            jitter_ms: 12.0,
            remote_fraction_lost: Some(0.12),
            rtt_ms: Some(40.0),
            bytes_received: 4_000 * k,
            bytes_sent: 4_000 * k,
        };
        let now = n.now;
        n.peers[b].core.handle_input(Input::MediaQuality(c), now);
        n.pump();
    }
    let fec: Vec<u8> = n.peers[b]
        .media
        .iter()
        .filter_map(|m| match m {
            MediaControl::ExpectedLoss(p) => Some(*p),
            _ => None,
        })
        .collect();
    assert_eq!(
        fec,
        vec![25],
        "sized once, for four times the worse direction's 16 %, capped"
    );
    let grades: Vec<(Diagnostic, DiagnosticValue)> = n.peers[b]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::NetworkDiagnosticChanged(d) if d.call_id.as_deref() == Some(id.as_str()) => {
                Some((d.diagnostic, d.value))
            }
            _ => None,
        })
        .collect();
    assert!(
        grades.contains(&(
            Diagnostic::NetworkReceiveQuality,
            DiagnosticValue::Quality(Quality::Bad)
        )),
        "{grades:?}"
    );
    assert!(
        grades.contains(&(
            Diagnostic::NetworkSendQuality,
            DiagnosticValue::Quality(Quality::Bad)
        )),
        "{grades:?}"
    );
}

#[test]
fn an_answer_waits_for_the_media_link_a_bounded_while() {
    let mut n = net();
    let a = n.join("alice", "desk");
    let b = n.join("bob", "laptop");
    // Bob's link is still being built (he has just signed in, or his network changed).
    n.peers[b].media_path = false;
    let now = n.now;
    n.peers[b]
        .core
        .handle_input(Input::MediaConnected(false), now);
    let id = n.call(a, "bob");
    assert_eq!(n.incoming(b).as_deref(), Some(id.as_str()));
    n.cmd(
        b,
        Command::Accept {
            call_id: id.clone(),
        },
    )
    .unwrap();
    assert_eq!(n.state(b, &id), Some(CallState::Connecting));
    assert_ne!(
        n.state(a, &id),
        Some(CallState::Connected),
        "alice would speak into a link that is not there"
    );
    n.tick_for(Duration::from_millis(500));
    let now = n.now;
    n.peers[b]
        .core
        .handle_input(Input::MediaConnected(true), now);
    n.pump();
    assert_eq!(
        n.state(a, &id),
        Some(CallState::Connected),
        "answered once linked"
    );
    assert_eq!(n.state(b, &id), Some(CallState::Connected));
    n.hang_up(a, &id, false);

    // A link that does not come: the answer goes anyway after 2 s (and the diagnostics say
    // there is no media path).
    let now = n.now;
    n.peers[b]
        .core
        .handle_input(Input::MediaConnected(false), now);
    let id = n.call(a, "bob");
    n.cmd(
        b,
        Command::Accept {
            call_id: id.clone(),
        },
    )
    .unwrap();
    n.tick_for(Duration::from_millis(1_900));
    assert_ne!(n.state(a, &id), Some(CallState::Connected));
    n.tick_for(Duration::from_millis(200));
    assert_eq!(n.state(a, &id), Some(CallState::Connected));
    assert_eq!(n.state(b, &id), Some(CallState::Connected));
}
