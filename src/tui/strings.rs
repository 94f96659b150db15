//! Every user-facing string of the TUI, in one place (as gitui's `strings.rs`), so wording stays
//! consistent and a translation has one file to touch.

use crate::core::{
    CallEndReason, CallState, Command, Direction, DisconnectReason, ParticipantState,
};
use crate::devices::DeviceKind;
use crate::protocol::{ErrorCode, ForwardMode, Forwarding, TransferKind};

use super::app::{Slot, TransferStep, Via};
use super::keymap::{Cmd, Context};

pub const APP_NAME: &str = "dialtone";
pub const UNKNOWN_PEER: &str = "…";

// Panel titles.
pub const TITLE_CALLS: &str = "Calls";
pub const TITLE_PARTICIPANTS: &str = "Participants";
pub const TITLE_HISTORY: &str = "History";
pub const TITLE_DEVICES: &str = "Devices";
pub const TITLE_HELP: &str = "Keys";
pub const TITLE_INCOMING: &str = "Incoming call";
pub const TITLE_INCOMING_GROUP: &str = "Incoming group call";
pub const TITLE_REMOVE: &str = "Remove?";
pub const TITLE_CONFIRM: &str = "Quit?";
pub const TITLE_TRANSFER_REQUEST: &str = "Transfer requested";
pub const TITLE_VOICEMAIL: &str = "Voicemail";
pub const TITLE_DELETE: &str = "Delete?";

// Empty panels.
pub const NO_CALLS: &str = "No calls. Press c to dial, e for an echo test.";
pub const NO_PARTICIPANTS: &str = "Nobody yet.";
pub const NO_HISTORY: &str = "No calls yet.";
pub const LOADING_DEVICES: &str = "Listing devices…";
pub const NO_DEVICES: &str = "(none)";

// Notices.
pub const NO_CALL: &str = "No call to act on";
pub const NO_INCOMING: &str = "No incoming call";
pub const DIAL_EMPTY: &str = "Type a name or a number to call";
pub const RECONNECTED: &str = "Connected to the switchboard again";
pub const DEVICES_CHANGED: &str = "Devices changed";
pub const NO_TRANSFERABLE_CALL: &str = "Only a connected or held call can be transferred";
pub const TRANSFER_UNDER_WAY: &str = "A transfer of this call is already under way";
pub const NO_OTHER_CALL: &str = "You have no other connected call to transfer to";
pub const TRANSFER_EMPTY: &str = "Type who to transfer the call to";
pub const NO_MESSAGE: &str = "No message selected";
pub const NO_CALL_ELSEWHERE: &str = "None of your other devices is in a call";
pub const PLAYBACK_STOPPED: &str = "Playback stopped";
pub const FORWARDING_UNKNOWN: &str = "Forwarding: not known yet (not signed in)";
pub const ENGINE_STOPPED: &str = "the call engine stopped (see the log)";
pub const ENGINE_NOT_RUNNING: &str = "the call engine is not running";
pub const TEST_TONE_PLAYING: &str = "Playing a test tone (440 Hz, 1 s) on the speaker";
pub const NOT_CONNECTED_YET: &str = "The engine is still starting; try again in a moment";
pub const CANNOT_CHANGE_PEOPLE: &str =
    "People can be added or removed only in a connected or held call";
pub const ADD_EMPTY: &str = "Type a name or a number to add";
pub const NO_PARTICIPANT: &str = "Nobody selected (Tab to the participants, then Up/Down)";
pub const OWN_DEVICE: &str = "That is another device of yours: hang up there to leave";
pub const ALREADY_IN_GROUP: &str = "You are already in that group call";
pub const CALLER_ID_NEEDED: &str =
    "Calling a number shows one of your numbers: type it (or set caller_id in the config)";

// Prompts.
pub const DIAL_PROMPT: &str = "Call: ";
pub const CMD_PROMPT: &str = ":";
pub const CONFIRM_QUIT: &str = "A call is live. Hang up and quit?";
pub const INCOMING_CALLING: &str = "is calling you";
pub const INCOMING_ADDING: &str = "is adding you to a call";
pub const INCOMING_TO_NUMBER: &str = "calling your number";
pub const CALLER_ID_PROMPT: &str = "From your number: ";
pub const SPEAKING_MARK: &str = "●";
pub const SELECTED_PARTICIPANT: &str = "▶";
pub const INCOMING_WHILE_TYPING: &str = "Esc closes the field to answer";
pub const NO_MESSAGES: &str = "No messages.";
pub const LOADING_MESSAGES: &str = "Asking the switchboard…";
pub const NEW_MARK: &str = "●";
pub const PLAYING_MARK: &str = "▶";
pub const TRANSFER_ASKED: &str = "transfer asked";
pub const TRANSFER_TO: &str = "To: ";
pub const HELP_COMMANDS: &str = "Command line (:)";
pub const HELP_FIELDS: &str =
    "Dialer and command line: Tab/Up/Down complete, Enter runs, Esc cancels";
pub const DEVICES_LEVEL: &str = "Mic level";
pub const DEVICES_LEVEL_UNKNOWN: &str = "(no level from the engine yet)";
pub const SELECTED_MARK: &str = "●";
pub const DEFAULT_MARK: &str = "(system default)";
pub const DEVICE_SPEC: &str = "spec";

pub fn system_default(name: Option<&str>) -> String {
    match name {
        Some(n) => format!("System default ({n})"),
        None => "System default".to_string(),
    }
}

pub fn started_switchboard(url: &str) -> String {
    format!("Started a switchboard on {url} (dev mode, this machine only)")
}

pub fn no_such_call(n: usize) -> String {
    format!("There is no call {n}")
}

pub fn cannot_hold(state: CallState) -> String {
    format!("Cannot hold a call that is {}", state_name(state))
}

pub fn type_path(spec: &str) -> String {
    format!("Type the path for {spec} and press Enter")
}

pub fn wrong_end(spec: &str, kind: DeviceKind) -> String {
    format!("{spec:?} cannot be used as a {kind}")
}

pub fn engine_failed(why: &str) -> String {
    format!("The call engine could not start: {why}")
}

pub fn slot_name(slot: Slot) -> &'static str {
    match slot {
        Slot::Microphone => "Microphone",
        Slot::Speaker => "Speaker",
        Slot::Camera => "Camera",
    }
}

pub fn slot_short(slot: Slot) -> &'static str {
    match slot {
        Slot::Microphone => "mic",
        Slot::Speaker => "spk",
        Slot::Camera => "cam",
    }
}

pub fn device_set(slot: Slot, spec: &str) -> String {
    format!("{}: {spec} (saved as the default)", slot_name(slot))
}

pub fn device_failed(slot: Slot, spec: &str, e: &str) -> String {
    format!("{} {spec:?} failed: {e}", slot_name(slot))
}

pub fn device_error(kind: DeviceKind, message: &str) -> String {
    format!("The {kind} stopped: {message}")
}

pub fn disconnected(reason: Option<DisconnectReason>) -> String {
    match reason {
        Some(DisconnectReason::InvalidToken) => {
            "Disconnected: the switchboard refused the token".to_string()
        }
        Some(DisconnectReason::ConnectionIssue) | None => {
            "Disconnected from the switchboard; reconnecting…".to_string()
        }
    }
}

/// The connection cannot be made for a reason the user can fix (TLS): the engine's words.
pub fn cannot_connect(message: &str) -> String {
    format!("Cannot connect: {message}")
}

/// On the status line when the switchboard is reached over plain ws:// from another host.
pub const UNENCRYPTED: &str = "⚠ unencrypted";

/// The status line's note that media goes through a TURN relay.
pub fn via_relay(t: crate::media::net::turn::TurnTransport) -> &'static str {
    use crate::media::net::turn::TurnTransport as T;
    match t {
        T::Tcp => "media via relay (TCP)",
        T::Tls => "media via relay (TLS)",
        T::Udp => "media via relay",
    }
}

pub fn connection_reason(reason: Option<DisconnectReason>) -> &'static str {
    match reason {
        Some(DisconnectReason::InvalidToken) => "invalid token",
        Some(DisconnectReason::ConnectionIssue) => "connection issue",
        None => "",
    }
}

/// The add prompt: "Add to call 2: ".
pub fn add_prompt(n: usize) -> String {
    format!("Add to call {n}: ")
}

/// A participant reached by number: "+15550100 (alice)".
pub fn number_with_name(number: &str, name: &str) -> String {
    format!("{number} ({name})")
}

/// A group call nobody else is in yet: "group 29228d3e…".
pub fn group_label(id: &str) -> String {
    format!("group {}…", id.split('-').next().unwrap_or(id))
}

pub fn group_call_from(name: &str) -> String {
    format!("Group call from {name}")
}

pub fn not_a_number(text: &str) -> String {
    format!("{text:?} is not an E.164 number (like +15550100)")
}

pub fn remove_question(label: &str) -> String {
    format!("Remove {label} from the call?")
}

pub fn adding(target: &str) -> String {
    format!("Adding {target} to the call…")
}

pub fn removing(label: &str) -> String {
    format!("Removing {label} from the call")
}

pub fn remove_failed(label: &str, e: &str) -> String {
    format!("Could not remove {label}: {e}")
}

pub fn incoming_from(name: &str, via: Option<&Via>) -> String {
    match via {
        Some(v) => format!("Incoming call from {name}, {}", via_text(v)),
        None => format!("Incoming call from {name}"),
    }
}

/// "transferred by alice", "forwarded from carol".
pub fn via_text(via: &Via) -> String {
    match via {
        Via::TransferredBy(n) => format!("transferred by {n}"),
        Via::ForwardedFrom(n) => format!("forwarded from {n}"),
    }
}

// ---- transfer -----------------------------------------------------------------------------------

/// The consultative step: which of my calls the person being transferred joins.
pub fn transfer_pick_call(label: &str) -> String {
    format!("Which call should {label} join? (you leave both)")
}

pub fn transfer_title(label: &str) -> String {
    format!("Transfer the call with {label}")
}

/// The three ways of the transfer prompt.
pub fn transfer_choice(step: TransferStep) -> &'static str {
    match step {
        TransferStep::Participant => "to a participant",
        TransferStep::Call => "to another of my calls",
        TransferStep::Voicemail => "to the voicemail of",
        TransferStep::Choose => "",
    }
}

/// The forwarding option as the prompt shows it.
pub fn transfer_forwarding(disabled: bool) -> &'static str {
    if disabled {
        "Unanswered: give up (the target's forwarding is not followed)"
    } else {
        "Unanswered: follow the target's forwarding"
    }
}

/// Where a transfer goes, as people read it.
pub fn voicemail_of(name: &str) -> String {
    format!("{name}'s voicemail")
}

pub fn transferring(target: &str) -> String {
    format!("Transferring to {target}…")
}

pub fn transferred_flag(target: &str) -> String {
    format!("Transferred to {target}")
}

/// The call row's words for a failed transfer: "Failed: target busy (486/7100)".
pub fn transfer_failed_flag(reason: Option<CallEndReason>) -> String {
    match reason {
        Some(r) => format!(
            "Failed: {} ({}/{})",
            transfer_failure_short(r),
            r.code,
            r.sub_code
        ),
        None => "Failed".to_string(),
    }
}

/// A few words for a transfer error.
pub fn transfer_failure_short(r: CallEndReason) -> &'static str {
    match (r.code, r.sub_code) {
        (403, 7100) => "target forbids",
        (404, 7100) => "unknown target",
        (408, 7100) => "no answer",
        (410, 7100) => "target lost",
        (480, 7100) => "target offline",
        (486, 7100) => "target busy",
        (603, 7100) => "target declined",
        (603, 7101) => "rejected",
        (487, 7102) => "you hung up",
        (487, 7103) => "they hung up",
        (481, 7104) => "other call ended",
        (400, 7105) => "refused",
        _ => "error",
    }
}

pub fn transferred(label: &str, target: &str) -> String {
    format!("Transferred {label} to {target}")
}

/// The whole story of a failed transfer: the table's text (or the switchboard's words for a
/// refusal) with code/subCode.
pub fn transfer_failed(
    label: &str,
    target: &str,
    reason: Option<CallEndReason>,
    detail: Option<&str>,
) -> String {
    let Some(r) = reason else {
        return format!("Transfer of {label} to {target} failed");
    };
    let text = detail.unwrap_or_else(|| {
        let d = r.describe();
        d.strip_prefix("transfer failed: ")
            .or_else(|| d.strip_prefix("transfer refused: "))
            .unwrap_or(d)
    });
    format!(
        "Transfer of {label} to {target} failed: {text} ({}/{})",
        r.code, r.sub_code
    )
}

/// What the transferee is asked: "to carol", "to carol, in their call with you"...
pub fn transfer_request_target(kind: TransferKind, target: &str) -> String {
    match kind {
        TransferKind::Participant => format!("to {target} (a new call; {target} is rung)"),
        TransferKind::Call => format!("to {target}, who is in a call with them"),
        TransferKind::Voicemail => format!("to {}", voicemail_of(target)),
    }
}

pub fn transfer_request_asks(from: &str) -> String {
    format!("{from} asks to move this call")
}

pub fn transfer_asked(from: &str, kind: TransferKind, target: &str) -> String {
    format!(
        "{from} asks to transfer your call {}",
        transfer_request_target(kind, target)
    )
}

pub fn transfer_auto_accepted(from: &str, kind: TransferKind, target: &str) -> String {
    format!(
        "{from} is transferring your call {} (accepted automatically)",
        transfer_request_target(kind, target)
    )
}

pub fn transfer_accepted(target: &str) -> String {
    format!("Transfer accepted: you go on with {target} once they answer")
}

pub fn transfer_rejected(from: &str) -> String {
    format!("You rejected {from}'s transfer")
}

pub fn transferred_to(target: &str, by: &str) -> String {
    format!("{by} transferred you to {target}")
}

// ---- calls on other devices ------------------------------------------------------------------------

/// The banner's text before its keys: "In a call with bob on laptop".
pub fn active_elsewhere(label: &str, device: &str) -> String {
    format!("In a call with {label} on {device}")
}

/// Another device of mine in the participants panel: "(you, on laptop)".
pub fn on_device(device: &str) -> String {
    format!("(you, on {device})")
}

pub fn taking_over(label: &str, device: &str, is_transfer: bool) -> String {
    if is_transfer {
        format!("Moving the call with {label} here from {device}…")
    } else {
        format!("Joining the call with {label} on {device}…")
    }
}

// ---- voicemail and forwarding -----------------------------------------------------------------------

/// The status line's message-waiting mark.
pub fn message_waiting(new: u32, total: u32) -> String {
    if new > 0 {
        format!("✉ {new} new")
    } else {
        format!("✉ {total}")
    }
}

pub fn voicemail_title(new: u32, total: u32) -> String {
    format!("{TITLE_VOICEMAIL} · {new} new of {total}")
}

pub fn new_voicemail(new: u32, total: u32) -> String {
    let msgs = if total == 1 { "message" } else { "messages" };
    format!("Voicemail: {new} new of {total} {msgs} (v to listen)")
}

pub fn forwarding_text(f: &Forwarding) -> String {
    let target = |t: &Option<String>| match t.as_deref() {
        Some("voicemail") | None => "voicemail".to_string(),
        Some(t) => t.to_string(),
    };
    match f.mode {
        ForwardMode::Off => "Forwarding: off".to_string(),
        ForwardMode::Always => format!("Forwarding: every call goes to {}", target(&f.target)),
        ForwardMode::Unanswered => format!(
            "Forwarding: to {} when unanswered after {} s",
            target(&f.target),
            f.unanswered_after_secs
        ),
    }
}

pub fn delete_question(caller: &str, duration_ms: u64, ago_text: &str) -> String {
    format!(
        "Delete the message from {caller} ({}, {ago_text})?",
        duration(duration_ms)
    )
}

pub fn playing(caller: &str, duration_ms: u64) -> String {
    format!(
        "Playing the message from {caller} ({}) on the speaker",
        duration(duration_ms)
    )
}

pub fn play_failed(e: &str) -> String {
    format!("Could not play the message: {e}")
}

pub fn call_ended(label: &str, reason: CallEndReason) -> String {
    format!(
        "Call with {label} ended: {} ({}/{})",
        reason.describe(),
        reason.code,
        reason.sub_code
    )
}

/// A few words for the calls list: "declined 603".
pub fn end_short(reason: CallEndReason) -> String {
    let word = match (reason.code, reason.sub_code) {
        (0, 10003) => "answered elsewhere",
        (0, 10004) => "declined elsewhere",
        (0, 7000) => "transferred",
        (0, 7200) => "moved to another device",
        (0, 7300) => "forwarded",
        (0, 7400) => "voicemail full",
        (0, 5300) => "removed from the call",
        (0, 7500) => "ended for everyone",
        (0, 0) => "hung up",
        (400, 7601) => "caller id needed",
        (403, 7602) => "not your number",
        (404, 7600) => "number not in service",
        (_, 7100..7200) => "transfer failed",
        (400, _) => "invalid callee",
        (403, _) => "forbidden",
        (404, _) => "unknown user",
        (408, _) => "no answer",
        (410, _) => "peer lost",
        (480, _) => "unavailable",
        (481, _) => "no such call",
        (486, _) => "busy",
        (487, _) => "cancelled",
        (500, _) => "server error",
        (503, _) => "connection lost",
        (603, _) => "declined",
        // A reason this build has no short words for: the table's own text.
        _ => return format!("{} {}/{}", reason.describe(), reason.code, reason.sub_code),
    };
    match (reason.code, reason.sub_code) {
        (0, _) => word.to_string(),
        (code, 0) => format!("{word} {code}"),
        (code, sub) => format!("{word} {code}/{sub}"),
    }
}

pub fn server_error(code: ErrorCode, message: &str) -> String {
    format!("Switchboard: {message} ({code:?})")
}

pub fn verb(cmd: &Command) -> &'static str {
    match cmd {
        Command::Call { .. } => "call",
        Command::Join { .. } => "join the group call",
        Command::AddParticipant { .. } => "add them",
        Command::RemoveParticipant { .. } => "remove them",
        Command::Accept { .. } => "accept",
        Command::Reject { .. } => "reject",
        Command::HangUp {
            for_everyone: true, ..
        } => "end the call for everyone",
        Command::HangUp { .. } => "hang up",
        Command::Mute { .. } => "mute",
        Command::Unmute { .. } => "unmute",
        Command::Hold { .. } => "hold",
        Command::Resume { .. } => "resume",
        Command::Transfer { .. } => "transfer",
        Command::AcceptTransfer { .. } => "accept the transfer",
        Command::RejectTransfer { .. } => "reject the transfer",
        Command::SetForwarding(_) => "set forwarding",
        Command::ListVoicemail => "list voicemail",
        Command::FetchVoicemail { .. } => "fetch the message",
        Command::DeleteVoicemail { .. } => "delete the message",
        Command::MarkVoicemail { .. } => "mark the message",
        Command::ActiveCallTransfer {
            is_transfer: true, ..
        } => "take over the call",
        Command::ActiveCallTransfer { .. } => "join the call",
        #[allow(unreachable_patterns)]
        _ => "do that",
    }
}

pub fn command_failed(cmd: &Command, e: &str) -> String {
    match cmd {
        Command::Call { to, .. } => format!("Could not call {}: {e}", to.join(", ")),
        Command::AddParticipant { target, .. } => format!("Could not add {target}: {e}"),
        Command::RemoveParticipant { target, .. } => remove_failed(target, e),
        Command::Join { group_id } => format!("Could not join group call {group_id}: {e}"),
        other => format!("Could not {}: {e}", verb(other)),
    }
}

pub fn state_name(state: CallState) -> &'static str {
    match state {
        CallState::None => "None",
        CallState::Incoming => "Incoming",
        CallState::Connecting => "Connecting",
        CallState::Ringing => "Ringing",
        CallState::EarlyMedia => "Early media",
        CallState::Connected => "Connected",
        CallState::LocalHold => "On hold",
        CallState::RemoteHold => "Held by them",
        CallState::Disconnecting => "Hanging up",
        CallState::Disconnected => "Ended",
    }
}

pub fn participant_state(state: ParticipantState) -> &'static str {
    match state {
        ParticipantState::Idle => "Idle",
        ParticipantState::Connecting => "Connecting",
        ParticipantState::Ringing => "Ringing",
        ParticipantState::Connected => "Connected",
        ParticipantState::Hold => "On hold",
        ParticipantState::EarlyMedia => "Early media",
        ParticipantState::Disconnected => "Left",
    }
}

pub fn direction_arrow(d: Direction) -> &'static str {
    match d {
        Direction::Incoming => "←",
        Direction::Outgoing => "→",
    }
}

pub const MUTED: &str = "muted";

/// The short flag on a call's row while its network diagnostic is bad.
pub fn network_flag(d: crate::core::diagnostics::Diagnostic) -> &'static str {
    use crate::core::diagnostics::Diagnostic as D;
    match d {
        D::NetworkReconnect | D::NoNetwork => "⚠ no media path",
        D::NetworkReceiveQuality => "⚠ no sound in",
        D::NetworkSendQuality => "⚠ no sound out",
        D::NetworkRelaysNotReachable => "⚠ no relay",
    }
}

/// The notice when a network diagnostic turns bad, with its reason.
pub fn network_problem(d: crate::core::diagnostics::Diagnostic, why: Option<&str>) -> String {
    use crate::core::diagnostics::Diagnostic as D;
    let what = match d {
        D::NetworkReconnect => "No media path",
        D::NoNetwork => "No network",
        D::NetworkReceiveQuality => "No sound is arriving",
        D::NetworkSendQuality => "Your sound is not getting through",
        D::NetworkRelaysNotReachable => "No TURN relay reachable",
    };
    match why {
        Some(w) => format!("{what}: {w}"),
        None => what.to_string(),
    }
}

/// The notice when a network problem is over.
/// The status-line warning for a media diagnostic.
pub fn media_warning(d: crate::core::media_diagnostics::MediaDiagnostic) -> &'static str {
    use crate::core::media_diagnostics::MediaDiagnostic as D;
    match d {
        D::NoMicrophoneDevicesEnumerated | D::MicrophoneNotFunctioning => "⚠ no microphone",
        D::NoSpeakerDevicesEnumerated | D::SpeakerNotFunctioning => "⚠ no speaker",
        D::SpeakingWhileMicrophoneIsMuted => "⚠ you are muted",
        D::CameraStartFailed | D::CameraFreeze => "⚠ camera",
    }
}

pub fn media_problem(
    d: crate::core::media_diagnostics::MediaDiagnostic,
    why: Option<&str>,
) -> String {
    use crate::core::media_diagnostics::MediaDiagnostic as D;
    let what = match d {
        D::NoMicrophoneDevicesEnumerated => "No microphone found",
        D::NoSpeakerDevicesEnumerated => "No speaker found",
        D::MicrophoneNotFunctioning => "The microphone does not work: nothing is sent",
        D::SpeakerNotFunctioning => "The speaker does not work: nothing is played",
        D::SpeakingWhileMicrophoneIsMuted => "You are speaking while muted",
        D::CameraStartFailed => "The camera did not start",
        D::CameraFreeze => "The camera froze",
    };
    match why {
        Some(why) => format!("{what} ({why}); calls work, pick a device with the device manager"),
        None => what.to_string(),
    }
}

pub fn media_recovered(d: crate::core::media_diagnostics::MediaDiagnostic) -> String {
    use crate::core::media_diagnostics::MediaDiagnostic as D;
    match d {
        D::NoMicrophoneDevicesEnumerated => "A microphone is available".into(),
        D::NoSpeakerDevicesEnumerated => "A speaker is available".into(),
        D::MicrophoneNotFunctioning => "The microphone works".into(),
        D::SpeakerNotFunctioning => "The speaker works".into(),
        D::SpeakingWhileMicrophoneIsMuted => "".into(),
        D::CameraStartFailed | D::CameraFreeze => "The camera works".into(),
    }
}

/// A device switched by itself; the engine's words say what and why.
pub fn device_switched(message: &str) -> String {
    let mut m = message.to_string();
    if let Some(first) = m.get(..1) {
        let up = first.to_uppercase();
        m.replace_range(..1, &up);
    }
    m
}

pub fn network_recovered(d: crate::core::diagnostics::Diagnostic) -> String {
    use crate::core::diagnostics::Diagnostic as D;
    match d {
        D::NetworkReconnect | D::NoNetwork => "Media path restored".into(),
        D::NetworkReceiveQuality => "Sound is arriving again".into(),
        D::NetworkSendQuality => "Your sound is getting through again".into(),
        D::NetworkRelaysNotReachable => "A TURN relay is reachable again".into(),
    }
}
pub const SPEAKING: &str = "speaking";

// Status line.
pub const CONN_STARTING: &str = "starting";
pub const CONN_CONNECTING: &str = "connecting…";
pub const CONN_CONNECTED: &str = "connected";
pub const CONN_DISCONNECTED: &str = "disconnected";
/// The status while the connection is lost and the switchboard keeps the calls.
pub const CONN_RECONNECTING: &str = "reconnecting… (calls kept)";
/// A call's network mark: bars and a word, from the worse of receive and send quality.
pub fn quality_mark(q: crate::core::diagnostics::Quality) -> &'static str {
    use crate::core::diagnostics::Quality as Q;
    match q {
        Q::Good => "▂▄▆ good",
        Q::Poor => "▂▄  poor",
        Q::Bad => "▂   bad",
    }
}

/// The focused call's network figures, for the participants panel's bottom line.
pub fn network_line(q: &crate::core::quality::LinkQuality) -> String {
    let rtt = q.rtt_ms.map_or("–".to_owned(), |r| format!("{r:.0} ms"));
    let out = q
        .send_loss_pct
        .map_or("–".to_owned(), |l| format!("{l:.1} %"));
    format!(
        " rtt {rtt} · loss in {:.1} % out {out} · jitter {:.0} ms · opus {:.0}/{:.0} kb/s ",
        q.receive_loss_pct, q.jitter_ms, q.receive_kbps, q.send_kbps
    )
}

/// The notice when the connection is lost with calls live.
pub const RECONNECTING_CALLS_KEPT: &str =
    "Connection to the switchboard lost; reconnecting… your calls are kept for now";
/// A call's flag while this device reconnects.
pub const CALL_RECONNECTING: &str = "⟳ reconnecting…";
/// A participant whose connection is lost while the switchboard keeps its place.
pub const PARTICIPANT_RECONNECTING: &str = "Reconnecting…";
pub const CONN_FAILED: &str = "engine failed";
pub const EMBEDDED: &str = "embedded";

/// m:ss, or h:mm:ss from an hour.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// "just now", "5m ago", "3h ago", "2d ago".
pub fn ago(then_ms: u64, now_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..60 => "just now".to_string(),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// What a key does, for the help overlay and docs/keys.md.
pub fn describe(ctx: Context, cmd: Cmd) -> &'static str {
    match (ctx, cmd) {
        (_, Cmd::Help) => "show this help",
        (_, Cmd::Quit) => "quit (asks when a call is live)",
        (_, Cmd::CommandLine) => "command line (:call bob, :mute, ...)",
        (_, Cmd::Dial) => "dial (completes contacts and history)",
        (Context::Incoming, Cmd::Accept) => "accept the call",
        (Context::TransferRequest, Cmd::Accept) => "accept (go on with the target)",
        (_, Cmd::Accept) => "accept the ringing call",
        (Context::Incoming, Cmd::Reject) => "decline (603)",
        (Context::TransferRequest, Cmd::Reject) => "reject (stay in this call)",
        (_, Cmd::Reject) => "decline the ringing call",
        (_, Cmd::RejectBusy) => "reject as busy (486)",
        (_, Cmd::HangUp) => "hang up the focused call",
        (_, Cmd::HangUpAll) => "end a group call for everyone",
        (_, Cmd::AddParticipant) => "add someone (a name or a number)",
        (_, Cmd::RemoveParticipant) => "remove the selected person (asks)",
        (_, Cmd::Mute) => "mute / unmute the focused call",
        (_, Cmd::Hold) => "hold / resume the focused call",
        (_, Cmd::NextCall) => "focus the next call",
        (_, Cmd::PrevCall) => "focus the previous call",
        (_, Cmd::NextPanel) => "next panel: calls, people, history",
        (Context::Transfer, Cmd::Up) => "previous choice / call",
        (Context::Transfer, Cmd::Down) => "next choice / call",
        (Context::Voicemail, Cmd::Up) => "previous message",
        (Context::Voicemail, Cmd::Down) => "next message",
        (Context::Participants, Cmd::Up) => "previous participant",
        (Context::Participants, Cmd::Down) => "next participant",
        (Context::Help, Cmd::Up) => "scroll up",
        (Context::Help, Cmd::Down) => "scroll down",
        (_, Cmd::Up) => "move up",
        (_, Cmd::Down) => "move down",
        (Context::Devices, Cmd::Select) => "use this device (live, saved)",
        (Context::Transfer, Cmd::Select) => "choose / transfer",
        (_, Cmd::Select) => "call back (history) / show prompt",
        (_, Cmd::Devices) => "device manager",
        (_, Cmd::EchoTest) => "call the echo test",
        (_, Cmd::Dismiss) => "clear ended calls and the notice",
        (Context::Main, Cmd::Back) => "clear the notice",
        (Context::Incoming, Cmd::Back) => "put the prompt away (keeps ringing)",
        (Context::TransferRequest, Cmd::Back) => "put it away (Enter on the call)",
        (Context::Transfer, Cmd::Back) => "back / cancel",
        (Context::Confirm, Cmd::Back) => "no (stay / keep)",
        (Context::Participants, Cmd::Back) => "back to the calls",
        (_, Cmd::Back) => "close",
        (_, Cmd::NextColumn) => "next column",
        (_, Cmd::PrevColumn) => "previous column",
        (_, Cmd::TestTone) => "play a test tone on the speaker",
        (Context::Voicemail, Cmd::Refresh) => "list messages again",
        (_, Cmd::Refresh) => "list devices again",
        (_, Cmd::Confirm) => "yes: hang up and quit / delete / remove",
        (_, Cmd::Transfer) => "transfer the focused call",
        (_, Cmd::Voicemail) => "voicemail and forwarding",
        (_, Cmd::TakeOver) => "take over a call from another device",
        (_, Cmd::JoinCall) => "join a call on another device",
        (_, Cmd::ToParticipant) => "to a participant (Tab completes)",
        (_, Cmd::ToCall) => "to another of my calls",
        (_, Cmd::ToVoicemail) => "to someone's voicemail",
        (_, Cmd::NoForwarding) => "follow / ignore target's forwarding",
        (_, Cmd::Play) => "play the message on the speaker",
        (_, Cmd::Stop) => "stop playing",
        (_, Cmd::Delete) => "delete the message (asks first)",
        (_, Cmd::ToggleNew) => "mark new / heard",
        (_, Cmd::Forwarding) => "set call forwarding (:forward)",
    }
}

pub fn context_title(ctx: Context) -> &'static str {
    match ctx {
        Context::Main => "Main screen",
        Context::Participants => "Participants panel (Tab from the calls)",
        Context::Incoming => "Incoming call",
        Context::TransferRequest => "Transfer request",
        Context::Transfer => "Transfer prompt",
        Context::Voicemail => "Voicemail",
        Context::Devices => "Device manager",
        Context::Help => "This help",
        Context::Confirm => "Questions (quit, delete, remove)",
    }
}

/// What each `:` command does, by its first name in `cmdline::COMMANDS`.
pub fn describe_line(name: &str) -> &'static str {
    match name {
        "call" => "call; several make a group call",
        "join" => "join the group call with this id",
        "add" => "add someone to the call",
        "remove" => "remove someone from the call",
        "accept" => "accept the ringing call",
        "reject" => "decline; REASON busy or forbidden",
        "hangup" => "hang up (all: for everyone)",
        "mute" => "mute the focused call",
        "unmute" => "unmute the focused call",
        "hold" => "put the focused call on hold",
        "resume" => "resume the focused call",
        "echo" => "call the echo test",
        "devices" => "open the device manager",
        "mic" => "use this microphone",
        "speaker" => "use this speaker",
        "camera" => "use this camera",
        "focus" => "focus call N of the list",
        "dismiss" => "clear ended calls and notice",
        "transfer" => "transfer the focused call",
        "voicemail" => "open the voicemail panel",
        "forward" => "show or set call forwarding",
        "help" => "show the keys",
        "quit" => "quit (asks if a call is live)",
        "quit!" => "hang up everything and quit",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ages() {
        assert_eq!(duration(0), "0:00");
        assert_eq!(duration(61_999), "1:01");
        assert_eq!(duration(3_600_000 + 62_000), "1:01:02");
        assert_eq!(ago(0, 59_000), "just now");
        assert_eq!(ago(0, 5 * 60_000), "5m ago");
        assert_eq!(ago(0, 3 * 3_600_000), "3h ago");
        assert_eq!(ago(0, 49 * 3_600_000), "2d ago");
        assert_eq!(ago(10, 0), "just now");
    }

    #[test]
    fn every_end_reason_has_short_words() {
        for (r, text) in CallEndReason::ALL {
            assert!(!end_short(*r).starts_with(text), "{r:?} has no short words");
        }
        let unknown = CallEndReason {
            code: 599,
            sub_code: 1,
        };
        assert_eq!(end_short(unknown), "undocumented reason 599/1");
        assert_eq!(end_short(CallEndReason::DECLINED), "declined 603");
        assert_eq!(
            end_short(CallEndReason::ANSWERED_ELSEWHERE),
            "answered elsewhere"
        );
        assert_eq!(
            end_short(CallEndReason::TRANSFER_TARGET_BUSY),
            "transfer failed 486/7100"
        );
        assert_eq!(
            call_ended("bob", CallEndReason::BUSY),
            "Call with bob ended: the callee rejected the call as busy (486/0)"
        );
    }

    #[test]
    fn every_line_command_is_described() {
        for (names, _) in super::super::cmdline::COMMANDS {
            assert!(!describe_line(names[0]).is_empty(), "{}", names[0]);
        }
    }
}
