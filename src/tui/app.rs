//! The TUI's state, with no I/O: keys and engine happenings go in (each with `now`), [`Action`]s
//! for the driver come out, and the view renders whatever is here. Every panel's behaviour is
//! tested below without a terminal, an engine or a clock.
//!
//! Keys walk the layers from the top (quit confirmation, help, text fields, prompts, device
//! manager, main screen); each layer consumes a key or passes it down, as gitui's
//! `EventState::{Consumed, NotConsumed}`. A text field being typed into keeps every key, so a
//! call that rings while you type `:call bob` cannot be answered by the `b`; its prompt takes the
//! keys once the field is closed.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde::{Deserialize, Serialize};

use crate::core::{
    CallEndReason, CallState, Callee, Command, CommandOk, ConnectionState, Direction,
    DisconnectReason, ECHO_NAME, Event as CoreEvent, Now, RejectReason, parse_group_id,
    phone_raw_id,
};
use crate::devices::{DeviceInfo, DeviceKind, DeviceList, DeviceSpec};
use crate::protocol::{
    ActiveCallDetails, Forwarding, Identity, Participant, TransferKind, TransferState,
    TransferTarget, VoicemailInfo,
};

use super::cmdline::{self, LineCmd, LineTarget, LineTransfer};
use super::history::{History, HistoryEntry};
use super::input::{Edit, TextField};
use super::keymap::{Cmd, Context, Keymap};
use super::strings as s;
use super::theme::Theme;

/// How long an ended call stays in the list, showing its end reason.
pub const ENDED_LINGER: Duration = Duration::from_secs(10);
/// How often the device manager re-lists devices while it is open.
pub const DEVICE_POLL: Duration = Duration::from_secs(3);
/// How many completions the dialer shows.
pub const MAX_SUGGESTIONS: usize = 6;

/// What the driver must do for the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run an engine command; report the outcome with [`Update::CommandDone`].
    Engine(Command),
    /// Switch a device live; report with [`Update::DeviceSet`].
    SetDevice { slot: Slot, spec: String },
    /// List devices (off the UI thread); report with [`Update::Devices`].
    ListDevices,
    /// Play a short test tone on the speaker.
    TestTone,
    /// Remember these devices as the defaults for the next start.
    SaveDevices(SelectedDevices),
    /// The call history changed: write [`App::history`] to disk.
    SaveHistory,
    /// Ring the terminal bell (an incoming call, a transfer request).
    Bell,
    /// Fetch a voicemail message and play it on the speaker; report with
    /// [`Update::VoicemailPlaying`].
    PlayVoicemail { message_id: String },
    /// Stop playing a message.
    StopVoicemail,
    /// Hang up everything and leave.
    Quit,
}

/// Everything other than keys that the app hears about. The driver turns engine events,
/// command replies and device listings into these.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Core(CoreEvent),
    /// The engine is running (the switchboard connection is being opened).
    EngineStarted,
    /// The engine could not start; the app stays up to show why.
    EngineFailed(String),
    CommandDone {
        cmd: Command,
        result: Result<CommandOk, String>,
    },
    Devices(DeviceList),
    DeviceSet {
        slot: Slot,
        spec: String,
        result: Result<(), String>,
    },
    DeviceStarted {
        kind: DeviceKind,
        spec: String,
    },
    DeviceError {
        kind: DeviceKind,
        message: String,
    },
    /// Microphone input level, 0.0 (silence) to 1.0 (full scale).
    MicLevel(f32),
    /// How the media link travels now (None: down, or not up yet).
    MediaPath(Option<crate::media::net::Via>),
    /// The network figures of the last second on the media link.
    Quality(crate::core::quality::LinkQuality),
    /// A media diagnostic changed (no device, a device not working, speaking while muted).
    MediaDiagnostic(crate::core::media_diagnostics::MediaDiagnosticChange),
    /// A microphone or speaker was switched without being asked.
    DeviceSwitched(crate::core::media_diagnostics::DeviceSwitch),
    /// Something the driver wants shown on the notifications line.
    Notice(Level, String),
    /// A message started playing (for this long), or could not be played.
    VoicemailPlaying {
        message_id: String,
        result: Result<u64, String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    Microphone,
    Speaker,
    Camera,
}

impl Slot {
    pub const ALL: [Slot; 3] = [Slot::Microphone, Slot::Speaker, Slot::Camera];
    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectedDevices {
    pub microphone: String,
    pub speaker: String,
    pub camera: Option<String>,
}

impl Default for SelectedDevices {
    fn default() -> Self {
        SelectedDevices {
            microphone: "default".into(),
            speaker: "default".into(),
            camera: None,
        }
    }
}

impl SelectedDevices {
    pub fn get(&self, slot: Slot) -> Option<&str> {
        match slot {
            Slot::Microphone => Some(&self.microphone),
            Slot::Speaker => Some(&self.speaker),
            Slot::Camera => self.camera.as_deref(),
        }
    }
    fn set(&mut self, slot: Slot, spec: String) {
        match slot {
            Slot::Microphone => self.microphone = spec,
            Slot::Speaker => self.speaker = spec,
            Slot::Camera => self.camera = Some(spec),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    /// The engine has not been started yet (the first frame is drawn before it starts).
    Starting,
    Connecting,
    Connected,
    Disconnected(Option<DisconnectReason>),
    /// The engine could not start.
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub level: Level,
    pub text: String,
    pub until: Instant,
}

/// One call in the calls panel.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRow {
    pub call_id: String,
    pub state: CallState,
    pub direction: Direction,
    pub remote: Vec<Participant>,
    pub muted: bool,
    pub started_unix_ms: u64,
    pub connected_unix_ms: Option<u64>,
    /// What was dialled, for outgoing calls.
    pub target: Option<String>,
    pub ended: Option<Ended>,
    /// How the call reached us when it did not come straight from the caller.
    pub via: Option<Via>,
    /// Our own transfer of this call, while it runs and after it failed.
    pub transfer: Option<TransferStatus>,
    /// A group call: several callees, joined by its id, someone added, or we were added.
    /// `H` ends it for everyone.
    pub group: bool,
    /// Who rang us, as the incoming prompt shows them (a number when they called mine).
    pub caller: Option<Identity>,
    /// A network problem of this call (its diagnostic), shown on its row while it lasts.
    pub network: Option<crate::core::diagnostics::Diagnostic>,
}

/// How a call reached us, when it did not come straight from the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    TransferredBy(String),
    ForwardedFrom(String),
}

/// Our own transfer of a call, as its row shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferStatus {
    /// Known once the engine took the command.
    pub transfer_id: Option<String>,
    /// Where to, as people read it: "carol", "carol's voicemail".
    pub target: String,
    pub state: TransferState,
    pub error: Option<CallEndReason>,
    /// The switchboard's own words when it refused the transfer (its `error` event).
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ended {
    pub reason: CallEndReason,
    pub unix_ms: u64,
    pub at: Instant,
}

impl CallRow {
    fn new(call_id: &str, direction: Direction, now: Now) -> CallRow {
        CallRow {
            call_id: call_id.to_string(),
            state: match direction {
                Direction::Incoming => CallState::Incoming,
                Direction::Outgoing => CallState::Connecting,
            },
            direction,
            remote: Vec::new(),
            muted: false,
            started_unix_ms: now.unix_ms,
            connected_unix_ms: None,
            target: None,
            ended: None,
            via: None,
            transfer: None,
            group: false,
            caller: None,
            network: None,
        }
    }

    /// A live call that can be transferred, or be the target of a consultative transfer.
    pub fn is_transferable(&self) -> bool {
        self.is_live()
            && matches!(
                self.state,
                CallState::Connected | CallState::LocalHold | CallState::RemoteHold
            )
    }

    /// Who the call is with, for people.
    pub fn label(&self) -> String {
        // My own other devices in the call only name it when nobody else is in it.
        let others: Vec<&Participant> = self.remote.iter().filter(|p| p.device.is_none()).collect();
        let shown = if others.is_empty() {
            self.remote.iter().collect()
        } else {
            others
        };
        if !shown.is_empty() {
            let names: Vec<String> = shown
                .iter()
                .map(|p| participant_name(&p.identity))
                .collect();
            // A big group call names two and counts the rest, so the row keeps its columns;
            // the participants panel lists everyone.
            if names.len() > 3 {
                format!("{}, {} +{}", names[0], names[1], names.len() - 2)
            } else {
                names.join(", ")
            }
        } else if let Some(t) = &self.target {
            match parse_group_id(t) {
                Ok(id) => s::group_label(&id),
                Err(_) => t.clone(),
            }
        } else {
            s::UNKNOWN_PEER.to_string()
        }
    }

    /// What to dial to reach them again.
    pub fn peer(&self) -> String {
        match (&self.target, self.remote.first()) {
            (Some(t), _) => t.clone(),
            (None, Some(p)) => dialable(&p.identity),
            (None, None) => String::new(),
        }
    }

    pub fn is_live(&self) -> bool {
        self.ended.is_none()
    }

    /// Connected time when connected, else time since it started ringing; ended calls freeze.
    pub fn duration_ms(&self, now_unix_ms: u64) -> u64 {
        let end = self.ended.map(|e| e.unix_ms).unwrap_or(now_unix_ms);
        end.saturating_sub(self.connected_unix_ms.unwrap_or(self.started_unix_ms))
    }
}

/// How a participant is named on screen: a phone number (`4:+1555…` raw id) shows as the
/// number with the name behind it, as a phone would, `+15550100 (alice)`.
pub fn participant_name(id: &Identity) -> String {
    match id.raw_id.strip_prefix("4:") {
        Some(n) if id.display_name.is_empty() || id.display_name == n => n.to_string(),
        Some(n) => s::number_with_name(n, &id.display_name),
        None => id.display_name.clone(),
    }
}

/// What tells two participants apart: the raw id, and for my own other devices the device.
fn participant_key(p: &Participant) -> (&str, Option<&str>) {
    (p.identity.raw_id.as_str(), p.device.as_deref())
}

/// Whether `who` (a name, raw id or number, as typed) names this participant.
fn names_participant(p: &Participant, who: &str) -> bool {
    let who = who.trim();
    p.identity.raw_id == who
        || p.identity.raw_id == phone_raw_id(who)
        || p.identity.display_name.eq_ignore_ascii_case(who)
}

/// Callees as typed: separated by commas and/or spaces.
pub fn split_callees(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The dialer's text split at its last callee: what stays, and the word being completed.
pub fn last_word(text: &str) -> (&str, &str) {
    let at = text
        .rfind(|c: char| c == ',' || c.is_whitespace())
        .map_or(0, |i| i + 1);
    text.split_at(at)
}

/// The notice for an incoming call: "Incoming call from bob", "Group call from alice".
fn incoming_text(row: &CallRow) -> String {
    let name = row
        .caller
        .as_ref()
        .map_or_else(|| row.label(), participant_name);
    if row.group {
        s::group_call_from(&name)
    } else {
        s::incoming_from(&name, row.via.as_ref())
    }
}

/// A user name when the display name is one (what people type), else the raw id.
pub fn dialable(id: &Identity) -> String {
    match Callee::parse(&id.display_name) {
        Callee::Name(n) => n,
        _ => match Callee::parse(&id.raw_id) {
            Callee::Echo => ECHO_NAME.to_string(),
            _ => id.raw_id.clone(),
        },
    }
}

/// Names that complete `word`: prefix matches first, then substring matches, case-insensitive.
pub fn matching_names(names: &[String], word: &str) -> Vec<String> {
    let w = word.to_lowercase();
    let mut out: Vec<String> = names
        .iter()
        .filter(|n| n.to_lowercase().starts_with(&w))
        .cloned()
        .collect();
    out.extend(
        names
            .iter()
            .filter(|n| !n.to_lowercase().starts_with(&w) && n.to_lowercase().contains(&w))
            .cloned(),
    );
    out.truncate(MAX_SUGGESTIONS);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Calls,
    /// The focused call's participants, with a cursor (for removing someone).
    Participants,
    History,
}

/// The layers that can take keys, top first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    Confirm,
    Help,
    CommandLine,
    Dialer,
    /// Deleting a voicemail message: yes or no.
    ConfirmDelete,
    /// Removing someone from a call: yes or no.
    ConfirmRemove,
    /// Who to add to the focused call.
    AddParticipant,
    /// Which of my numbers to call a number from.
    CallerId,
    /// Choosing where to transfer a call.
    Transfer,
    Incoming(String),
    /// Someone asks us to move this call elsewhere.
    TransferRequest(String),
    Voicemail,
    Devices,
    /// The participants panel has focus.
    Participants,
    Main,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventState {
    Consumed,
    NotConsumed,
}

/// A text field with Tab completion that cycles through candidates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    pub field: TextField,
    /// Candidates and the one chosen, while cycling.
    pub completion: Option<(Vec<String>, usize)>,
}

impl Prompt {
    fn with_text(text: &str) -> Prompt {
        Prompt {
            field: TextField::with_text(text),
            completion: None,
        }
    }
}

/// The dialer: a field and suggestions from contacts and history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dialer {
    pub field: TextField,
    /// The highlighted suggestion, if the user moved to one.
    pub selected: Option<usize>,
}

/// The add-participant prompt on a call: a name or a number, with suggestions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddPrompt {
    pub call_id: String,
    pub field: TextField,
    /// The highlighted suggestion, if the user moved to one.
    pub selected: Option<usize>,
}

/// What waits for a caller id (one of my numbers) before it can go out.
#[derive(Debug, Clone, PartialEq)]
pub enum NumberAction {
    Dial(Vec<String>),
    Add { call_id: String, target: String },
}

/// Asks which of my numbers to show when calling a number (no `caller_id` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct CallerIdPrompt {
    pub field: TextField,
    pub then: NumberAction,
}

/// Removing someone from a call waits for a yes.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoveConfirm {
    pub call_id: String,
    /// The participant's raw id (what the core is given).
    pub raw_id: String,
    /// How the question names them.
    pub label: String,
}

/// Banners above the panels.
#[derive(Debug, Clone, PartialEq)]
pub enum Banner {
    /// A call of this user is live on another of their devices: take it over or join it.
    ActiveOnAnotherDevice(ActiveCallDetails),
}

impl Banner {
    /// Who the call elsewhere is with.
    pub fn label(&self) -> String {
        match self {
            Banner::ActiveOnAnotherDevice(d) if d.remote_participants.is_empty() => {
                s::UNKNOWN_PEER.to_string()
            }
            Banner::ActiveOnAnotherDevice(d) => d
                .remote_participants
                .iter()
                .map(|p| p.display_name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Where the transfer prompt is: choosing the way, then a name or a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferStep {
    Choose,
    Participant,
    Call,
    Voicemail,
}

impl TransferStep {
    /// The ways, in the order the prompt lists them.
    pub const CHOICES: [TransferStep; 3] = [
        TransferStep::Participant,
        TransferStep::Call,
        TransferStep::Voicemail,
    ];
}

/// The transfer prompt on one call.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferPrompt {
    pub call_id: String,
    /// Who is being transferred, for the title.
    pub label: String,
    pub step: TransferStep,
    /// The highlighted way while choosing.
    pub choice: usize,
    /// The name, for a participant or a voicemail.
    pub field: TextField,
    /// The highlighted suggestion, if the user moved to one.
    pub selected: Option<usize>,
    /// The highlighted call, when transferring to another call.
    pub call_cursor: usize,
    /// `disableForwardingAndUnanswered`: end the attempt rather than follow the target's
    /// forwarding.
    pub disable_forwarding: bool,
}

impl TransferPrompt {
    fn new(call_id: &str, label: String) -> TransferPrompt {
        TransferPrompt {
            call_id: call_id.to_string(),
            label,
            step: TransferStep::Choose,
            choice: 0,
            field: TextField::default(),
            selected: None,
            call_cursor: 0,
            disable_forwarding: false,
        }
    }
}

/// Someone asks us (the transferee) to move a call elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferRequest {
    pub call_id: String,
    pub transfer_id: String,
    /// Who asks (the transferor).
    pub from: String,
    pub kind: TransferKind,
    /// The target's name (for a call: the person in it).
    pub target: String,
    pub target_raw: String,
    /// Put away with Esc; Enter on the call shows it again.
    pub hidden: bool,
    /// Accepted, waiting for the target to answer (kept to name the new call).
    pub accepted: bool,
}

/// The voicemail panel: this user's messages, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VoicemailPanel {
    pub open: bool,
    /// None until the switchboard's list arrives.
    pub messages: Option<Vec<VoicemailInfo>>,
    pub cursor: usize,
    /// The message whose deletion waits for a yes.
    pub confirm_delete: Option<String>,
    /// The message asked to play, until it starts or fails.
    pub loading: Option<String>,
    pub playing: Option<Playing>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Playing {
    pub message_id: String,
    pub until: Instant,
}

impl VoicemailPanel {
    pub fn selected(&self) -> Option<&VoicemailInfo> {
        self.messages.as_ref()?.get(self.cursor)
    }

    fn message(&self, id: &str) -> Option<&VoicemailInfo> {
        self.messages.as_ref()?.iter().find(|m| m.message_id == id)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEntry {
    pub spec: String,
    pub name: String,
    pub is_default: bool,
    /// A virtual template whose placeholder must be filled in (`file:PATH.wav`).
    pub template: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceManager {
    pub open: bool,
    /// None until the first listing arrives.
    pub list: Option<DeviceList>,
    pub column: usize,
    pub cursor: [usize; 3],
    pub refreshed_at: Option<Instant>,
    /// Cursors are placed on the current choice once per opening.
    placed: bool,
}

impl DeviceManager {
    pub fn column_slot(&self) -> Slot {
        Slot::ALL[self.column]
    }

    /// The entries of one column: "default" first for microphones and speakers.
    pub fn entries(&self, slot: Slot) -> Vec<DeviceEntry> {
        let Some(list) = &self.list else {
            return Vec::new();
        };
        let from = |d: &DeviceInfo| DeviceEntry {
            spec: d.spec.clone(),
            name: d.name.clone(),
            is_default: d.is_default,
            template: d.spec.contains("PATH"),
        };
        let items: &[DeviceInfo] = match slot {
            Slot::Microphone => &list.microphones,
            Slot::Speaker => &list.speakers,
            Slot::Camera => &list.cameras,
        };
        let mut out = Vec::new();
        if slot != Slot::Camera {
            let default_name = items.iter().find(|d| d.is_default).map(|d| d.name.clone());
            out.push(DeviceEntry {
                spec: "default".into(),
                name: s::system_default(default_name.as_deref()),
                is_default: false,
                template: false,
            });
        }
        out.extend(items.iter().map(from));
        out
    }
}

/// How the app starts.
#[derive(Debug, Clone)]
pub struct AppOptions {
    pub user: String,
    pub device_name: String,
    pub server: String,
    /// The switchboard runs inside this process.
    pub embedded: bool,
    pub devices: SelectedDevices,
    pub contacts: Vec<String>,
    pub history: History,
    pub keymap: Keymap,
    pub theme: Theme,
    /// The engine accepts transfer requests by itself (config `auto_accept_transfers`): show a
    /// notice instead of the prompt.
    pub auto_accept_transfers: bool,
    /// One of my numbers, shown when I call or add a number (config `caller_id`). Without it
    /// the TUI asks.
    pub caller_id: Option<String>,
}

pub struct App {
    pub user: String,
    pub device_name: String,
    pub server: String,
    pub embedded: bool,
    pub connection: Connection,
    pub devices: SelectedDevices,
    /// None until the engine reports a level.
    pub mic_level: Option<f32>,
    /// How media travels to the switchboard, once the link is up: a relay is shown.
    pub media_path: Option<crate::media::net::Via>,
    /// The media link's network figures of the last second (None: none yet, or the link is
    /// down).
    pub quality: Option<crate::core::quality::LinkQuality>,
    /// The media diagnostics raised now: the status line warns of each.
    pub media_warnings: BTreeSet<crate::core::media_diagnostics::MediaDiagnostic>,
    pub calls: Vec<CallRow>,
    /// Index of the focused call in `calls`.
    pub focus: usize,
    pub pane: Pane,
    /// Index of the selected participant of the focused call (the participants panel).
    pub participant_cursor: usize,
    /// The add-participant prompt.
    pub add: Option<AddPrompt>,
    /// Asking for a caller id before calling or adding a number.
    pub caller_id_prompt: Option<CallerIdPrompt>,
    /// Removing someone waits for a yes.
    pub confirm_remove: Option<RemoveConfirm>,
    /// One of my numbers for calls to numbers (config `caller_id`).
    pub caller_id: Option<String>,
    /// The last caller id typed at the prompt, offered again next time.
    last_caller_id: Option<String>,
    pub history: History,
    pub history_cursor: usize,
    pub contacts: Vec<String>,
    pub dialer: Option<Dialer>,
    pub cmdline: Option<Prompt>,
    /// The transfer prompt on the focused call.
    pub transfer: Option<TransferPrompt>,
    /// Transfer requests not answered yet (and accepted ones until the new call comes).
    pub transfer_requests: Vec<TransferRequest>,
    pub auto_accept_transfers: bool,
    pub voicemail: VoicemailPanel,
    /// (new, total) voicemail messages; None until the switchboard says.
    pub message_waiting: Option<(u32, u32)>,
    /// This user's call forwarding; None until the switchboard says.
    pub forwarding: Option<Forwarding>,
    /// We asked to change forwarding: show the answer.
    forwarding_asked: bool,
    /// The switchboard's last `error` about a call, to explain a refused transfer.
    last_error: Option<(String, String)>,
    pub banner: Option<Banner>,
    pub help: Option<u16>,
    pub confirm_quit: bool,
    /// Incoming calls whose prompt was put away with Esc (they keep ringing).
    pub hidden_incoming: BTreeSet<String>,
    pub notice: Option<Notice>,
    /// Targets of `call` commands sent and not yet answered, oldest first.
    pending_dials: VecDeque<String>,
    pub devman: DeviceManager,
    pub keymap: Keymap,
    pub theme: Theme,
    pub now: Now,
    dirty: bool,
}

impl App {
    pub fn new(opts: AppOptions, now: Now) -> App {
        App {
            user: opts.user,
            device_name: opts.device_name,
            server: opts.server,
            embedded: opts.embedded,
            connection: Connection::Starting,
            devices: opts.devices,
            mic_level: None,
            media_path: None,
            quality: None,
            media_warnings: BTreeSet::new(),
            calls: Vec::new(),
            focus: 0,
            pane: Pane::Calls,
            participant_cursor: 0,
            add: None,
            caller_id_prompt: None,
            confirm_remove: None,
            caller_id: opts.caller_id,
            last_caller_id: None,
            history: opts.history,
            history_cursor: 0,
            contacts: opts.contacts,
            dialer: None,
            cmdline: None,
            transfer: None,
            transfer_requests: Vec::new(),
            auto_accept_transfers: opts.auto_accept_transfers,
            voicemail: VoicemailPanel::default(),
            message_waiting: None,
            forwarding: None,
            forwarding_asked: false,
            last_error: None,
            banner: None,
            help: None,
            confirm_quit: false,
            hidden_incoming: BTreeSet::new(),
            notice: None,
            pending_dials: VecDeque::new(),
            devman: DeviceManager::default(),
            keymap: opts.keymap,
            theme: opts.theme,
            now,
            dirty: true,
        }
    }

    #[cfg(test)]
    pub(crate) fn pending_dials_len(&self) -> usize {
        self.pending_dials.len()
    }

    /// True once after anything visible changed.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The connection is lost and calls are live: the switchboard keeps them while the engine
    /// reconnects.
    pub fn reconnecting(&self) -> bool {
        matches!(
            self.connection,
            Connection::Disconnected(Some(DisconnectReason::ConnectionIssue) | None)
        ) && self.calls.iter().any(CallRow::is_live)
    }

    pub fn focused_call(&self) -> Option<&CallRow> {
        self.calls.get(self.focus)
    }

    pub fn live_calls(&self) -> impl Iterator<Item = &CallRow> {
        self.calls.iter().filter(|c| c.is_live())
    }

    /// Whether a mic level meter is on screen (the device manager is open or a call is
    /// connected). The driver asks the engine for levels only then, so an idle TUI costs nothing.
    pub fn wants_levels(&self) -> bool {
        self.devman.open || self.live_calls().any(|c| c.state == CallState::Connected)
    }

    /// The incoming call whose prompt is showing, if any: the oldest one not put away.
    pub fn incoming_prompt(&self) -> Option<&CallRow> {
        self.calls.iter().find(|c| {
            c.is_live()
                && c.state == CallState::Incoming
                && !self.hidden_incoming.contains(&c.call_id)
        })
    }

    /// The banner to show: a call elsewhere that is not (also) here.
    pub fn shown_banner(&self) -> Option<&Banner> {
        self.banner.as_ref().filter(|b| match b {
            Banner::ActiveOnAnotherDevice(d) => !self.live_calls().any(|c| c.call_id == d.call_id),
        })
    }

    /// The transfer request whose prompt is showing, if any: the oldest one not put away.
    pub fn transfer_request_prompt(&self) -> Option<&TransferRequest> {
        self.transfer_requests.iter().find(|r| {
            !r.hidden
                && !r.accepted
                && self
                    .calls
                    .iter()
                    .any(|c| c.call_id == r.call_id && c.is_live())
        })
    }

    /// The unanswered transfer request on a call.
    pub fn transfer_request_on(&self, call_id: &str) -> Option<&TransferRequest> {
        self.transfer_requests
            .iter()
            .find(|r| r.call_id == call_id && !r.accepted)
    }

    /// The calls a call can be transferred to (consultative): my other connected or held calls.
    pub fn transfer_call_targets(&self, call_id: &str) -> Vec<&CallRow> {
        self.calls
            .iter()
            .filter(|c| c.call_id != call_id && c.is_transferable())
            .collect()
    }

    /// Names the transfer prompt offers: people (not the echo service); for a participant not
    /// ourselves nor the person being transferred, for a voicemail anyone, ourselves last.
    pub fn transfer_names(&self) -> Vec<String> {
        let Some(p) = &self.transfer else {
            return Vec::new();
        };
        let moved: Vec<String> = self
            .calls
            .iter()
            .find(|c| c.call_id == p.call_id)
            .map(|c| c.remote.iter().map(|r| dialable(&r.identity)).collect())
            .unwrap_or_default();
        let mut names: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| n != ECHO_NAME && *n != self.user)
            .collect();
        if p.step == TransferStep::Voicemail {
            names.push(self.user.clone());
        } else {
            names.retain(|n| !moved.contains(n));
        }
        names
    }

    /// What the transfer prompt's field completes to.
    pub fn transfer_suggestions(&self) -> Vec<String> {
        match &self.transfer {
            Some(p) if !p.field.is_empty() => {
                matching_names(&self.transfer_names(), &p.field.text())
            }
            Some(_) => self
                .transfer_names()
                .into_iter()
                .take(MAX_SUGGESTIONS)
                .collect(),
            None => Vec::new(),
        }
    }

    /// Layers that take keys, top first; the first is what the screen shows on top.
    pub fn layers(&self) -> Vec<Layer> {
        let mut v = Vec::new();
        if self.confirm_quit {
            v.push(Layer::Confirm);
        }
        if self.voicemail.confirm_delete.is_some() {
            v.push(Layer::ConfirmDelete);
        }
        if self.confirm_remove.is_some() {
            v.push(Layer::ConfirmRemove);
        }
        if self.help.is_some() {
            v.push(Layer::Help);
        }
        if self.cmdline.is_some() {
            v.push(Layer::CommandLine);
        }
        if self.dialer.is_some() {
            v.push(Layer::Dialer);
        }
        if self.add.is_some() {
            v.push(Layer::AddParticipant);
        }
        if self.caller_id_prompt.is_some() {
            v.push(Layer::CallerId);
        }
        if self.transfer.is_some() {
            v.push(Layer::Transfer);
        }
        if let Some(c) = self.incoming_prompt() {
            v.push(Layer::Incoming(c.call_id.clone()));
        }
        if let Some(r) = self.transfer_request_prompt() {
            v.push(Layer::TransferRequest(r.call_id.clone()));
        }
        if self.voicemail.open {
            v.push(Layer::Voicemail);
        }
        if self.devman.open {
            v.push(Layer::Devices);
        }
        if self.pane == Pane::Participants && !self.voicemail.open && !self.devman.open {
            v.push(Layer::Participants);
        }
        v.push(Layer::Main);
        v
    }

    /// The selected participant of the focused live call, when it has any.
    pub fn selected_participant(&self) -> Option<&Participant> {
        let c = self.live_focus()?;
        c.remote.get(
            self.participant_cursor
                .min(c.remote.len().saturating_sub(1)),
        )
    }

    /// Names the add prompt offers: people not in the call, not ourselves, not the echo service.
    pub fn add_names(&self) -> Vec<String> {
        let Some(p) = &self.add else {
            return Vec::new();
        };
        let call = self.calls.iter().find(|c| c.call_id == p.call_id);
        self.names()
            .into_iter()
            .filter(|n| n != ECHO_NAME && *n != self.user)
            .filter(|n| call.is_none_or(|c| !c.remote.iter().any(|r| names_participant(r, n))))
            .collect()
    }

    /// What the add prompt's field completes to.
    pub fn add_suggestions(&self) -> Vec<String> {
        match &self.add {
            Some(p) if !p.field.is_empty() => matching_names(&self.add_names(), &p.field.text()),
            Some(_) => self.add_names().into_iter().take(MAX_SUGGESTIONS).collect(),
            None => Vec::new(),
        }
    }

    /// Names the dialer and `:call` complete: contacts, then history, then the echo service.
    /// A group call's history entry gives each of its callees.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in self
            .contacts
            .iter()
            .cloned()
            .chain(self.history.peers().iter().flat_map(|p| split_callees(p)))
            .chain([ECHO_NAME.to_string()])
        {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }

    /// Completions of the dialer's last callee (`bob, ca` completes `ca`), leaving out the
    /// callees already typed.
    pub fn dialer_suggestions(&self) -> Vec<String> {
        let Some(d) = &self.dialer else {
            return Vec::new();
        };
        let text = d.field.text();
        let (before, word) = last_word(&text);
        let typed: Vec<&str> = before
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .collect();
        let names: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| !typed.contains(&n.as_str()))
            .collect();
        if word.is_empty() {
            names.into_iter().take(MAX_SUGGESTIONS).collect()
        } else {
            matching_names(&names, word)
        }
    }

    // ---- keys -------------------------------------------------------------------------------

    pub fn handle_key(&mut self, key: KeyEvent, now: Now) -> Vec<Action> {
        self.now = now;
        let mut out = Vec::new();
        if key.kind == KeyEventKind::Release {
            return out;
        }
        self.dirty = true;
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.ctrl_c(&mut out);
            return out;
        }
        for layer in self.layers() {
            if self.key_in(&layer, &key, &mut out) == EventState::Consumed {
                break;
            }
        }
        out
    }

    /// Ctrl-C closes a text field; elsewhere it quits (asking first when a call is live, and not
    /// asking on the second press).
    fn ctrl_c(&mut self, out: &mut Vec<Action>) {
        if self.cmdline.take().is_some()
            || self.dialer.take().is_some()
            || self.add.take().is_some()
            || self.caller_id_prompt.take().is_some()
            || self.transfer.take().is_some()
            || self.voicemail.confirm_delete.take().is_some()
            || self.confirm_remove.take().is_some()
        {
            return;
        }
        if self.confirm_quit {
            out.push(Action::Quit);
        } else {
            self.quit(false, out);
        }
    }

    fn key_in(&mut self, layer: &Layer, key: &KeyEvent, out: &mut Vec<Action>) -> EventState {
        match layer {
            Layer::Confirm => {
                match self.keymap.lookup(Context::Confirm, key) {
                    Some(Cmd::Confirm) => out.push(Action::Quit),
                    Some(Cmd::Back) => self.confirm_quit = false,
                    _ => {}
                }
                EventState::Consumed
            }
            Layer::Help => {
                match self.keymap.lookup(Context::Help, key) {
                    Some(Cmd::Up) => self.help = self.help.map(|s| s.saturating_sub(1)),
                    Some(Cmd::Down) => {
                        let max = super::view::help_lines(self).len() as u16;
                        self.help = self.help.map(|s| s.saturating_add(1).min(max));
                    }
                    Some(Cmd::Back) => self.help = None,
                    _ => {}
                }
                EventState::Consumed
            }
            Layer::CommandLine => {
                self.cmdline_key(key, out);
                EventState::Consumed
            }
            Layer::Dialer => {
                self.dialer_key(key, out);
                EventState::Consumed
            }
            Layer::ConfirmDelete => {
                match self.keymap.lookup(Context::Confirm, key) {
                    Some(Cmd::Confirm) => self.delete_confirmed(out),
                    Some(Cmd::Back) => self.voicemail.confirm_delete = None,
                    _ => {}
                }
                EventState::Consumed
            }
            Layer::ConfirmRemove => {
                match self.keymap.lookup(Context::Confirm, key) {
                    Some(Cmd::Confirm) => self.remove_confirmed(out),
                    Some(Cmd::Back) => self.confirm_remove = None,
                    _ => {}
                }
                EventState::Consumed
            }
            Layer::AddParticipant => {
                self.add_key(key, out);
                EventState::Consumed
            }
            Layer::CallerId => {
                self.caller_id_key(key, out);
                EventState::Consumed
            }
            Layer::Transfer => {
                self.transfer_key(key, out);
                EventState::Consumed
            }
            Layer::Incoming(call_id) => {
                let call_id = call_id.clone();
                match self.keymap.lookup(Context::Incoming, key) {
                    Some(Cmd::Accept) => self.accept(&call_id, out),
                    Some(Cmd::Reject) => self.reject(&call_id, RejectReason::None, out),
                    Some(Cmd::RejectBusy) => self.reject(&call_id, RejectReason::Busy, out),
                    Some(Cmd::Back) => {
                        self.hidden_incoming.insert(call_id);
                    }
                    _ => return EventState::NotConsumed,
                }
                EventState::Consumed
            }
            Layer::TransferRequest(call_id) => {
                let call_id = call_id.clone();
                match self.keymap.lookup(Context::TransferRequest, key) {
                    Some(Cmd::Accept) => self.answer_transfer(&call_id, true, out),
                    Some(Cmd::Reject) => self.answer_transfer(&call_id, false, out),
                    Some(Cmd::Back) => {
                        for r in &mut self.transfer_requests {
                            if r.call_id == call_id {
                                r.hidden = true;
                            }
                        }
                    }
                    _ => return EventState::NotConsumed,
                }
                EventState::Consumed
            }
            Layer::Voicemail => self.voicemail_key(key, out),
            Layer::Devices => self.devices_key(key, out),
            Layer::Participants => self.participants_key(key),
            Layer::Main => {
                self.main_key(key, out);
                EventState::Consumed
            }
        }
    }

    fn main_key(&mut self, key: &KeyEvent, out: &mut Vec<Action>) {
        let Some(cmd) = self.keymap.lookup(Context::Main, key) else {
            return;
        };
        match cmd {
            Cmd::Help => self.help = Some(0),
            Cmd::Quit => self.quit(false, out),
            Cmd::CommandLine => self.cmdline = Some(Prompt::default()),
            Cmd::Dial => self.dialer = Some(Dialer::default()),
            Cmd::Accept => match self.target_incoming() {
                Some(id) => self.accept(&id, out),
                None => self.notify(Level::Warn, s::NO_INCOMING.into()),
            },
            Cmd::Reject => self.reject_focused(RejectReason::None, out),
            Cmd::RejectBusy => self.reject_focused(RejectReason::Busy, out),
            Cmd::HangUp => self.hang_up(false, out),
            Cmd::HangUpAll => self.hang_up(true, out),
            Cmd::Mute => self.toggle_mute(out),
            Cmd::Hold => self.toggle_hold(out),
            Cmd::NextCall => self.move_focus(1),
            Cmd::PrevCall => self.move_focus(-1),
            Cmd::NextPanel => {
                // The participants panel takes focus only when there is someone to pick.
                let people = self.live_focus().is_some_and(|c| !c.remote.is_empty());
                self.pane = match self.pane {
                    Pane::Calls if people => Pane::Participants,
                    Pane::Calls | Pane::Participants => Pane::History,
                    Pane::History => Pane::Calls,
                }
            }
            Cmd::AddParticipant => self.open_add(),
            Cmd::RemoveParticipant => self.ask_remove(),
            Cmd::Up | Cmd::Down => {
                let delta = if cmd == Cmd::Up { -1 } else { 1 };
                match self.pane {
                    Pane::Calls => self.move_focus(delta),
                    Pane::Participants => self.move_participant(delta),
                    Pane::History => {
                        let len = self.history.len();
                        if len > 0 {
                            self.history_cursor = (self.history_cursor as isize + delta)
                                .clamp(0, len as isize - 1)
                                as usize;
                        }
                    }
                }
            }
            Cmd::Select => match self.pane {
                Pane::Participants => {}
                Pane::History => {
                    if let Some(e) = self.history.get(self.history_cursor) {
                        // A group call's entry holds every callee: "bob, carol".
                        let to = split_callees(&e.peer);
                        self.dial(to, out);
                    }
                }
                Pane::Calls => {
                    if let Some(c) = self
                        .focused_call()
                        .filter(|c| c.is_live() && c.state == CallState::Incoming)
                    {
                        let id = c.call_id.clone();
                        self.hidden_incoming.remove(&id);
                    } else if let Some(c) = self.live_focus() {
                        let id = c.call_id.clone();
                        for r in &mut self.transfer_requests {
                            if r.call_id == id {
                                r.hidden = false;
                            }
                        }
                    }
                }
            },
            Cmd::Transfer => self.open_transfer(),
            Cmd::Voicemail => self.open_voicemail(out),
            Cmd::TakeOver | Cmd::JoinCall => self.take_over(cmd == Cmd::TakeOver, out),
            Cmd::Devices => self.open_devices(out),
            Cmd::EchoTest => self.dial(vec![ECHO_NAME.to_string()], out),
            Cmd::Dismiss => self.dismiss(),
            Cmd::Back => self.notice = None,
            Cmd::NextColumn
            | Cmd::PrevColumn
            | Cmd::TestTone
            | Cmd::Refresh
            | Cmd::Confirm
            | Cmd::ToParticipant
            | Cmd::ToCall
            | Cmd::ToVoicemail
            | Cmd::NoForwarding
            | Cmd::Play
            | Cmd::Stop
            | Cmd::Delete
            | Cmd::ToggleNew
            | Cmd::Forwarding => {}
        }
    }

    fn devices_key(&mut self, key: &KeyEvent, out: &mut Vec<Action>) -> EventState {
        let Some(cmd) = self.keymap.lookup(Context::Devices, key) else {
            return EventState::NotConsumed;
        };
        let col = self.devman.column;
        match cmd {
            Cmd::Up => self.devman.cursor[col] = self.devman.cursor[col].saturating_sub(1),
            Cmd::Down => {
                let len = self.devman.entries(self.devman.column_slot()).len();
                self.devman.cursor[col] = (self.devman.cursor[col] + 1).min(len.saturating_sub(1));
            }
            Cmd::NextColumn => self.devman.column = (col + 1) % 3,
            Cmd::PrevColumn => self.devman.column = (col + 2) % 3,
            Cmd::Select => self.choose_device(out),
            Cmd::TestTone => out.push(Action::TestTone),
            Cmd::EchoTest => self.dial(vec![ECHO_NAME.to_string()], out),
            Cmd::Refresh => self.refresh_devices(out),
            Cmd::Mute => self.toggle_mute(out),
            Cmd::Back => self.devman.open = false,
            Cmd::Help => self.help = Some(0),
            _ => return EventState::NotConsumed,
        }
        EventState::Consumed
    }

    fn cmdline_key(&mut self, key: &KeyEvent, out: &mut Vec<Action>) {
        let Some(p) = &mut self.cmdline else { return };
        match key.code {
            KeyCode::Esc => self.cmdline = None,
            KeyCode::Enter => {
                let line = p.field.text();
                self.cmdline = None;
                match cmdline::parse(&line) {
                    Ok(cmd) => self.run_line(cmd, out),
                    Err(e) => self.notify(Level::Error, e),
                }
            }
            KeyCode::Tab | KeyCode::BackTab => {
                let back = key.code == KeyCode::BackTab;
                let (cands, i) = match p.completion.take() {
                    Some((cands, i)) if !cands.is_empty() => {
                        let n = cands.len();
                        let i = if back { (i + n - 1) % n } else { (i + 1) % n };
                        (cands, i)
                    }
                    _ => {
                        let text = p.field.text();
                        // `:remove` completes the focused call's participants.
                        let names = match text.split_whitespace().next() {
                            Some("remove" | "kick") => self
                                .live_focus()
                                .map(|c| {
                                    c.remote
                                        .iter()
                                        .filter(|p| p.device.is_none())
                                        .map(|p| dialable(&p.identity))
                                        .collect()
                                })
                                .unwrap_or_default(),
                            _ => self.names(),
                        };
                        (cmdline::complete(&text, &names), 0)
                    }
                };
                let Some(p) = &mut self.cmdline else { return };
                if let Some(c) = cands.get(i) {
                    p.field.set(c);
                    p.completion = Some((cands, i));
                }
            }
            _ => {
                if p.field.edit(key) == Edit::Changed {
                    p.completion = None;
                }
            }
        }
    }

    fn dialer_key(&mut self, key: &KeyEvent, out: &mut Vec<Action>) {
        let suggestions = self.dialer_suggestions();
        let Some(d) = &mut self.dialer else { return };
        let n = suggestions.len();
        match key.code {
            KeyCode::Esc => self.dialer = None,
            KeyCode::Enter => {
                let typed = d.field.text();
                let chosen = match d.selected.and_then(|i| suggestions.get(i)) {
                    Some(name) => format!("{}{name}", last_word(&typed).0),
                    None => typed,
                };
                let to = split_callees(&chosen);
                if to.is_empty() {
                    self.notify(Level::Warn, s::DIAL_EMPTY.into());
                    return;
                }
                self.dialer = None;
                self.dial(to, out);
            }
            KeyCode::Tab | KeyCode::Down if n > 0 => {
                d.selected = Some(d.selected.map(|i| (i + 1) % n).unwrap_or(0))
            }
            KeyCode::BackTab | KeyCode::Up if n > 0 => {
                d.selected = Some(d.selected.map(|i| (i + n - 1) % n).unwrap_or(n - 1))
            }
            _ => {
                if d.field.edit(key) == Edit::Changed {
                    d.selected = None;
                }
            }
        }
    }

    fn run_line(&mut self, cmd: LineCmd, out: &mut Vec<Action>) {
        match cmd {
            LineCmd::Call(to) => self.dial(to, out),
            LineCmd::Accept => match self.target_incoming() {
                Some(id) => self.accept(&id, out),
                None => self.notify(Level::Warn, s::NO_INCOMING.into()),
            },
            LineCmd::Reject(reason) => self.reject_focused(reason, out),
            LineCmd::HangUp { everyone } => self.hang_up(everyone, out),
            LineCmd::Join(id) => self.join(&id, out),
            LineCmd::Add(who) => match self.live_focus() {
                Some(c) if c.is_transferable() => {
                    let call_id = c.call_id.clone();
                    self.add_participant(call_id, who, out);
                }
                Some(_) => self.notify(Level::Warn, s::CANNOT_CHANGE_PEOPLE.into()),
                None => self.notify(Level::Warn, s::NO_CALL.into()),
            },
            LineCmd::Remove(who) => self.remove_line(&who, out),
            LineCmd::Mute | LineCmd::Unmute => {
                let want = cmd == LineCmd::Mute;
                if let Some(c) = self.live_focus() {
                    if c.muted != want {
                        self.toggle_mute(out);
                    }
                } else {
                    self.notify(Level::Warn, s::NO_CALL.into());
                }
            }
            LineCmd::Hold | LineCmd::Resume => {
                let want_hold = cmd == LineCmd::Hold;
                if let Some(c) = self.live_focus() {
                    if (c.state == CallState::LocalHold) != want_hold {
                        self.toggle_hold(out);
                    }
                } else {
                    self.notify(Level::Warn, s::NO_CALL.into());
                }
            }
            LineCmd::Echo => self.dial(vec![ECHO_NAME.to_string()], out),
            LineCmd::Devices => self.open_devices(out),
            LineCmd::Microphone(spec) => self.set_device(Slot::Microphone, spec, out),
            LineCmd::Speaker(spec) => self.set_device(Slot::Speaker, spec, out),
            LineCmd::Camera(spec) => self.set_device(Slot::Camera, spec, out),
            LineCmd::Focus(n) => {
                if n <= self.calls.len() {
                    self.focus = n - 1;
                    self.pane = Pane::Calls;
                    self.participant_cursor = 0;
                } else {
                    self.notify(Level::Warn, s::no_such_call(n));
                }
            }
            LineCmd::Dismiss => self.dismiss(),
            LineCmd::Transfer(None) => self.open_transfer(),
            LineCmd::Transfer(Some(t)) => self.transfer_line(t, out),
            LineCmd::Voicemail => self.open_voicemail(out),
            LineCmd::Forward(None) => {
                let text = self
                    .forwarding
                    .as_ref()
                    .map_or_else(|| s::FORWARDING_UNKNOWN.to_string(), s::forwarding_text);
                self.notify(Level::Info, text);
            }
            LineCmd::Forward(Some(f)) => {
                self.forwarding_asked = true;
                out.push(Action::Engine(Command::SetForwarding(f)));
            }
            LineCmd::Help => self.help = Some(0),
            LineCmd::Quit { force } => self.quit(force, out),
        }
    }

    // ---- what keys and lines do ----------------------------------------------------------------

    fn quit(&mut self, force: bool, out: &mut Vec<Action>) {
        if force || self.live_calls().next().is_none() {
            out.push(Action::Quit);
        } else {
            self.confirm_quit = true;
        }
    }

    fn live_focus(&self) -> Option<&CallRow> {
        self.focused_call().filter(|c| c.is_live())
    }

    /// The focused call if it is ringing here, else the oldest incoming call.
    fn target_incoming(&self) -> Option<String> {
        self.live_focus()
            .filter(|c| c.state == CallState::Incoming)
            .or_else(|| self.live_calls().find(|c| c.state == CallState::Incoming))
            .map(|c| c.call_id.clone())
    }

    /// Puts every other connected call on hold first, so only one call has the microphone.
    fn hold_others(&self, except: Option<&str>, out: &mut Vec<Action>) {
        for c in self.live_calls() {
            if c.state == CallState::Connected && Some(c.call_id.as_str()) != except {
                out.push(Action::Engine(Command::Hold {
                    call_id: c.call_id.clone(),
                }));
            }
        }
    }

    /// Calls one or several people or numbers (several: a group call). A group call's id alone
    /// joins it. Numbers need a caller id: the configured one, else the TUI asks.
    fn dial(&mut self, to: Vec<String>, out: &mut Vec<Action>) {
        if let [one] = to.as_slice()
            && let Ok(id) = parse_group_id(one)
        {
            return self.join(&id, out);
        }
        let mut number = false;
        for t in &to {
            match Callee::parse(t) {
                Callee::Invalid(why) => return self.notify(Level::Error, why),
                Callee::Phone(_) => number = true,
                _ => {}
            }
        }
        match (number, self.caller_id.clone()) {
            (false, _) => self.place_call(to, None, out),
            (true, Some(id)) => self.place_call(to, Some(id), out),
            (true, None) => self.ask_caller_id(NumberAction::Dial(to)),
        }
    }

    fn place_call(
        &mut self,
        to: Vec<String>,
        alternate_caller_id: Option<String>,
        out: &mut Vec<Action>,
    ) {
        self.hold_others(None, out);
        self.pending_dials.push_back(to.join(", "));
        out.push(Action::Engine(Command::Call {
            to,
            alternate_caller_id,
        }));
    }

    /// Starts or joins the group call with this id.
    fn join(&mut self, group_id: &str, out: &mut Vec<Action>) {
        let id = match parse_group_id(group_id) {
            Ok(id) => id,
            Err(why) => return self.notify(Level::Error, why),
        };
        if let Some(i) = self
            .calls
            .iter()
            .position(|c| c.call_id == id && c.is_live())
        {
            self.focus = i;
            return self.notify(Level::Warn, s::ALREADY_IN_GROUP.into());
        }
        self.hold_others(None, out);
        self.pending_dials.push_back(id.clone());
        out.push(Action::Engine(Command::Join { group_id: id }));
    }

    fn ask_caller_id(&mut self, then: NumberAction) {
        self.caller_id_prompt = Some(CallerIdPrompt {
            field: TextField::with_text(self.last_caller_id.as_deref().unwrap_or_default()),
            then,
        });
        self.notify(Level::Info, s::CALLER_ID_NEEDED.into());
    }

    fn caller_id_key(&mut self, key: &KeyEvent, out: &mut Vec<Action>) {
        let Some(p) = &mut self.caller_id_prompt else {
            return;
        };
        match key.code {
            KeyCode::Esc => self.caller_id_prompt = None,
            KeyCode::Enter => {
                let typed = p.field.text().trim().to_string();
                let Callee::Phone(number) = Callee::parse(&typed) else {
                    return self.notify(Level::Error, s::not_a_number(&typed));
                };
                let Some(p) = self.caller_id_prompt.take() else {
                    return;
                };
                self.last_caller_id = Some(number.clone());
                match p.then {
                    NumberAction::Dial(to) => self.place_call(to, Some(number), out),
                    NumberAction::Add { call_id, target } => {
                        out.push(Action::Engine(Command::AddParticipant {
                            call_id,
                            target,
                            alternate_caller_id: Some(number),
                        }))
                    }
                }
            }
            _ => {
                p.field.edit(key);
            }
        }
    }

    // ---- participants --------------------------------------------------------------------------

    fn participants_key(&mut self, key: &KeyEvent) -> EventState {
        match self.keymap.lookup(Context::Participants, key) {
            Some(Cmd::Up) => self.move_participant(-1),
            Some(Cmd::Down) => self.move_participant(1),
            Some(Cmd::AddParticipant) => self.open_add(),
            Some(Cmd::RemoveParticipant) => self.ask_remove(),
            Some(Cmd::Back) => self.pane = Pane::Calls,
            _ => return EventState::NotConsumed,
        }
        EventState::Consumed
    }

    fn move_participant(&mut self, delta: isize) {
        let len = self.focused_call().map_or(0, |c| c.remote.len());
        if len > 0 {
            self.participant_cursor =
                (self.participant_cursor as isize + delta).clamp(0, len as isize - 1) as usize;
        }
    }

    /// Opens the add prompt on the focused call.
    fn open_add(&mut self) {
        let Some(c) = self.live_focus() else {
            return self.notify(Level::Warn, s::NO_CALL.into());
        };
        if !c.is_transferable() {
            return self.notify(Level::Warn, s::CANNOT_CHANGE_PEOPLE.into());
        }
        self.add = Some(AddPrompt {
            call_id: c.call_id.clone(),
            ..AddPrompt::default()
        });
    }

    fn add_key(&mut self, key: &KeyEvent, out: &mut Vec<Action>) {
        let suggestions = self.add_suggestions();
        let Some(p) = &mut self.add else { return };
        let n = suggestions.len();
        match key.code {
            KeyCode::Esc => self.add = None,
            KeyCode::Enter => {
                let typed = p.field.text().trim().to_string();
                let chosen = p
                    .selected
                    .and_then(|i| suggestions.get(i).cloned())
                    .unwrap_or(typed);
                if chosen.is_empty() {
                    return self.notify(Level::Warn, s::ADD_EMPTY.into());
                }
                if let Callee::Invalid(why) = Callee::parse(&chosen) {
                    return self.notify(Level::Error, why);
                }
                let call_id = p.call_id.clone();
                self.add = None;
                self.add_participant(call_id, chosen, out);
            }
            KeyCode::Tab | KeyCode::Down if n > 0 => {
                p.selected = Some(p.selected.map(|i| (i + 1) % n).unwrap_or(0))
            }
            KeyCode::BackTab | KeyCode::Up if n > 0 => {
                p.selected = Some(p.selected.map(|i| (i + n - 1) % n).unwrap_or(n - 1))
            }
            _ => {
                if p.field.edit(key) == Edit::Changed {
                    p.selected = None;
                }
            }
        }
    }

    /// Rings `target` into a call; a number goes out with my caller id (asked for if none).
    fn add_participant(&mut self, call_id: String, target: String, out: &mut Vec<Action>) {
        let alternate_caller_id = match Callee::parse(&target) {
            Callee::Invalid(why) => return self.notify(Level::Error, why),
            Callee::Phone(_) => match self.caller_id.clone() {
                Some(id) => Some(id),
                None => return self.ask_caller_id(NumberAction::Add { call_id, target }),
            },
            _ => None,
        };
        out.push(Action::Engine(Command::AddParticipant {
            call_id,
            target,
            alternate_caller_id,
        }));
    }

    /// Asks before removing the selected participant.
    fn ask_remove(&mut self) {
        let Some(c) = self.live_focus() else {
            return self.notify(Level::Warn, s::NO_CALL.into());
        };
        if !c.is_transferable() {
            return self.notify(Level::Warn, s::CANNOT_CHANGE_PEOPLE.into());
        }
        let call_id = c.call_id.clone();
        let Some(p) = self.selected_participant() else {
            return self.notify(Level::Warn, s::NO_PARTICIPANT.into());
        };
        if p.device.is_some() {
            return self.notify(Level::Warn, s::OWN_DEVICE.into());
        }
        self.confirm_remove = Some(RemoveConfirm {
            call_id,
            raw_id: p.identity.raw_id.clone(),
            label: participant_name(&p.identity),
        });
    }

    fn remove_confirmed(&mut self, out: &mut Vec<Action>) {
        let Some(r) = self.confirm_remove.take() else {
            return;
        };
        out.push(Action::Engine(Command::RemoveParticipant {
            call_id: r.call_id,
            target: r.raw_id,
        }));
    }

    /// `:remove carol`: from the focused call at once (the line is the confirmation).
    fn remove_line(&mut self, who: &str, out: &mut Vec<Action>) {
        let Some(c) = self.live_focus() else {
            return self.notify(Level::Warn, s::NO_CALL.into());
        };
        let call_id = c.call_id.clone();
        // The core refuses names that are not in the call; its words end up in the notice.
        let target = match c.remote.iter().find(|p| names_participant(p, who)) {
            Some(p) if p.device.is_some() => {
                return self.notify(Level::Warn, s::OWN_DEVICE.into());
            }
            Some(p) => p.identity.raw_id.clone(),
            None => who.to_string(),
        };
        out.push(Action::Engine(Command::RemoveParticipant {
            call_id,
            target,
        }));
    }

    /// The selected participant, to find it again after the list changes.
    fn selected_key(&self) -> Option<(String, String, Option<String>)> {
        let c = self.focused_call()?;
        let p = c.remote.get(self.participant_cursor)?;
        Some((
            c.call_id.clone(),
            p.identity.raw_id.clone(),
            p.device.clone(),
        ))
    }

    /// Keeps the cursor on the same participant when the list changes under it.
    fn reselect(&mut self, before: Option<(String, String, Option<String>)>) {
        let Some(c) = self.focused_call() else {
            return;
        };
        if let Some((id, raw, device)) = before
            && id == c.call_id
            && let Some(i) = c
                .remote
                .iter()
                .position(|p| participant_key(p) == (raw.as_str(), device.as_deref()))
        {
            self.participant_cursor = i;
            return;
        }
        self.participant_cursor = self
            .participant_cursor
            .min(c.remote.len().saturating_sub(1));
    }

    fn accept(&mut self, call_id: &str, out: &mut Vec<Action>) {
        self.hold_others(Some(call_id), out);
        out.push(Action::Engine(Command::Accept {
            call_id: call_id.to_string(),
        }));
        if let Some(i) = self.calls.iter().position(|c| c.call_id == call_id) {
            self.focus = i;
        }
    }

    fn reject(&mut self, call_id: &str, reason: RejectReason, out: &mut Vec<Action>) {
        out.push(Action::Engine(Command::Reject {
            call_id: call_id.to_string(),
            reason,
        }));
    }

    fn reject_focused(&mut self, reason: RejectReason, out: &mut Vec<Action>) {
        match self.target_incoming() {
            Some(id) => self.reject(&id, reason, out),
            None => self.notify(Level::Warn, s::NO_INCOMING.into()),
        }
    }

    /// `h` leaves the focused call (rejects it while it rings); `H` (`for_everyone`) ends a
    /// group call for everyone in it, where a 1:1 call simply ends.
    fn hang_up(&mut self, for_everyone: bool, out: &mut Vec<Action>) {
        let Some(c) = self.live_focus() else {
            return self.notify(Level::Warn, s::NO_CALL.into());
        };
        let call_id = c.call_id.clone();
        if c.state == CallState::Incoming {
            self.reject(&call_id, RejectReason::None, out);
        } else {
            out.push(Action::Engine(Command::HangUp {
                call_id,
                for_everyone,
            }));
        }
    }

    fn toggle_mute(&mut self, out: &mut Vec<Action>) {
        let Some(c) = self.live_focus() else {
            self.notify(Level::Warn, s::NO_CALL.into());
            return;
        };
        let call_id = c.call_id.clone();
        out.push(Action::Engine(if c.muted {
            Command::Unmute { call_id }
        } else {
            Command::Mute { call_id }
        }));
    }

    fn toggle_hold(&mut self, out: &mut Vec<Action>) {
        let Some(c) = self.live_focus() else {
            self.notify(Level::Warn, s::NO_CALL.into());
            return;
        };
        let call_id = c.call_id.clone();
        match c.state {
            CallState::LocalHold => {
                self.hold_others(Some(&call_id), out);
                out.push(Action::Engine(Command::Resume { call_id }));
            }
            CallState::Connected | CallState::RemoteHold => {
                out.push(Action::Engine(Command::Hold { call_id }))
            }
            state => self.notify(Level::Warn, s::cannot_hold(state)),
        }
    }

    fn move_focus(&mut self, delta: isize) {
        let n = self.calls.len();
        if n > 0 {
            self.focus = (self.focus as isize + delta).rem_euclid(n as isize) as usize;
        }
        self.participant_cursor = 0;
        if self.pane != Pane::Participants {
            self.pane = Pane::Calls;
        }
    }

    fn dismiss(&mut self) {
        self.notice = None;
        self.remove_calls(|c| !c.is_live());
        // Finished transfers stop showing on their calls.
        for c in &mut self.calls {
            if c.transfer
                .as_ref()
                .is_some_and(|t| t.state != TransferState::Transferring)
            {
                c.transfer = None;
            }
        }
    }

    fn remove_calls(&mut self, gone: impl Fn(&CallRow) -> bool) {
        let focused = self.focused_call().map(|c| c.call_id.clone());
        self.calls.retain(|c| !gone(c));
        self.focus = focused
            .and_then(|id| self.calls.iter().position(|c| c.call_id == id))
            .unwrap_or_else(|| self.focus.min(self.calls.len().saturating_sub(1)));
    }

    fn open_devices(&mut self, out: &mut Vec<Action>) {
        self.voicemail.open = false;
        self.devman.open = true;
        self.devman.placed = false;
        self.refresh_devices(out);
    }

    fn refresh_devices(&mut self, out: &mut Vec<Action>) {
        self.devman.refreshed_at = Some(self.now.mono);
        out.push(Action::ListDevices);
    }

    fn choose_device(&mut self, out: &mut Vec<Action>) {
        let slot = self.devman.column_slot();
        let entries = self.devman.entries(slot);
        let Some(e) = entries.get(self.devman.cursor[self.devman.column]) else {
            return;
        };
        if e.template {
            // file:PATH.wav → let the user type the path on the command line.
            let prefix = e.spec.split("PATH").next().unwrap_or_default();
            let word = match slot {
                Slot::Microphone => "mic",
                Slot::Speaker => "speaker",
                Slot::Camera => "camera",
            };
            self.cmdline = Some(Prompt::with_text(&format!("{word} {prefix}")));
            self.notify(Level::Info, s::type_path(&e.spec));
            return;
        }
        let spec = e.spec.clone();
        self.set_device(slot, spec, out);
    }

    fn set_device(&mut self, slot: Slot, spec: String, out: &mut Vec<Action>) {
        if slot != Slot::Camera {
            let kind = if slot == Slot::Microphone {
                DeviceKind::Microphone
            } else {
                DeviceKind::Speaker
            };
            match spec.parse::<DeviceSpec>() {
                Ok(d) if d.usable_as(kind) => {}
                Ok(_) => return self.notify(Level::Error, s::wrong_end(&spec, kind)),
                Err(e) => return self.notify(Level::Error, format!("{spec:?}: {e}")),
            }
        }
        out.push(Action::SetDevice { slot, spec });
    }

    // ---- transfer ------------------------------------------------------------------------------

    /// Opens the transfer prompt on the focused call.
    fn open_transfer(&mut self) {
        let Some(c) = self.live_focus() else {
            return self.notify(Level::Warn, s::NO_CALL.into());
        };
        if !c.is_transferable() {
            return self.notify(Level::Warn, s::NO_TRANSFERABLE_CALL.into());
        }
        if c.transfer
            .as_ref()
            .is_some_and(|t| t.state == TransferState::Transferring)
        {
            return self.notify(Level::Warn, s::TRANSFER_UNDER_WAY.into());
        }
        self.transfer = Some(TransferPrompt::new(&c.call_id, c.label()));
    }

    fn transfer_key(&mut self, key: &KeyEvent, out: &mut Vec<Action>) {
        let cmd = self.keymap.lookup(Context::Transfer, key);
        let Some(p) = &mut self.transfer else { return };
        if cmd == Some(Cmd::NoForwarding)
            && (p.step == TransferStep::Choose
                || p.step == TransferStep::Call
                || key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT))
        {
            p.disable_forwarding = !p.disable_forwarding;
            return;
        }
        match p.step {
            TransferStep::Choose => match cmd {
                Some(Cmd::ToParticipant) => self.transfer_step(TransferStep::Participant),
                Some(Cmd::ToCall) => self.transfer_step(TransferStep::Call),
                Some(Cmd::ToVoicemail) => self.transfer_step(TransferStep::Voicemail),
                Some(Cmd::Up) => p.choice = (p.choice + 2) % 3,
                Some(Cmd::Down) => p.choice = (p.choice + 1) % 3,
                Some(Cmd::Select) => {
                    let step = TransferStep::CHOICES[p.choice];
                    self.transfer_step(step);
                }
                Some(Cmd::Back) => self.transfer = None,
                _ => {}
            },
            TransferStep::Call => {
                let call_id = p.call_id.clone();
                let n = self.transfer_call_targets(&call_id).len();
                let Some(p) = &mut self.transfer else { return };
                match cmd {
                    Some(Cmd::Up) if n > 0 => p.call_cursor = (p.call_cursor + n - 1) % n,
                    Some(Cmd::Down) if n > 0 => p.call_cursor = (p.call_cursor + 1) % n,
                    Some(Cmd::Select) => {
                        let cursor = p.call_cursor;
                        let disable = p.disable_forwarding;
                        let target = self
                            .transfer_call_targets(&call_id)
                            .get(cursor)
                            .map(|c| (c.call_id.clone(), c.label()));
                        match target {
                            Some((id, label)) => self.start_transfer(
                                &call_id,
                                TransferTarget::CallId(id),
                                label,
                                disable,
                                out,
                            ),
                            None => self.notify(Level::Warn, s::NO_OTHER_CALL.into()),
                        }
                    }
                    Some(Cmd::Back) => p.step = TransferStep::Choose,
                    _ => {}
                }
            }
            TransferStep::Participant | TransferStep::Voicemail => {
                let suggestions = self.transfer_suggestions();
                let n = suggestions.len();
                let Some(p) = &mut self.transfer else { return };
                match key.code {
                    KeyCode::Esc => {
                        p.step = TransferStep::Choose;
                        p.field = TextField::default();
                        p.selected = None;
                    }
                    KeyCode::Enter => {
                        let typed = p.field.text().trim().to_string();
                        let chosen = p
                            .selected
                            .and_then(|i| suggestions.get(i).cloned())
                            .unwrap_or(typed);
                        let (call_id, step, disable) =
                            (p.call_id.clone(), p.step, p.disable_forwarding);
                        if chosen.is_empty() {
                            return self.notify(Level::Warn, s::TRANSFER_EMPTY.into());
                        }
                        if let Callee::Invalid(why) = Callee::parse(&chosen) {
                            return self.notify(Level::Error, why);
                        }
                        let (target, label) = if step == TransferStep::Voicemail {
                            (
                                TransferTarget::Voicemail(chosen.clone()),
                                s::voicemail_of(&chosen),
                            )
                        } else {
                            (TransferTarget::Participant(chosen.clone()), chosen)
                        };
                        self.start_transfer(&call_id, target, label, disable, out);
                    }
                    KeyCode::Tab | KeyCode::Down if n > 0 => {
                        p.selected = Some(p.selected.map(|i| (i + 1) % n).unwrap_or(0))
                    }
                    KeyCode::BackTab | KeyCode::Up if n > 0 => {
                        p.selected = Some(p.selected.map(|i| (i + n - 1) % n).unwrap_or(n - 1))
                    }
                    _ => {
                        if p.field.edit(key) == Edit::Changed {
                            p.selected = None;
                        }
                    }
                }
            }
        }
    }

    fn transfer_step(&mut self, step: TransferStep) {
        let Some(p) = &self.transfer else { return };
        if step == TransferStep::Call && self.transfer_call_targets(&p.call_id).is_empty() {
            return self.notify(Level::Warn, s::NO_OTHER_CALL.into());
        }
        let Some(p) = &mut self.transfer else { return };
        p.step = step;
        if let Some(i) = TransferStep::CHOICES.iter().position(|c| *c == step) {
            p.choice = i;
        }
        p.call_cursor = 0;
        p.selected = None;
    }

    /// `:transfer carol`, `:transfer voicemail carol`, `:transfer call 2`: the focused call.
    fn transfer_line(&mut self, t: LineTransfer, out: &mut Vec<Action>) {
        let Some(c) = self.live_focus() else {
            return self.notify(Level::Warn, s::NO_CALL.into());
        };
        if !c.is_transferable() {
            return self.notify(Level::Warn, s::NO_TRANSFERABLE_CALL.into());
        }
        let call_id = c.call_id.clone();
        let (target, label) = match t.to {
            LineTarget::Participant(who) => (TransferTarget::Participant(who.clone()), who),
            LineTarget::Voicemail(who) => {
                let label = s::voicemail_of(&who);
                (TransferTarget::Voicemail(who), label)
            }
            LineTarget::Call(n) => match self.calls.get(n - 1) {
                Some(other) if other.call_id != call_id && other.is_transferable() => {
                    (TransferTarget::CallId(other.call_id.clone()), other.label())
                }
                Some(_) => return self.notify(Level::Warn, s::NO_OTHER_CALL.into()),
                None => return self.notify(Level::Warn, s::no_such_call(n)),
            },
        };
        self.start_transfer(&call_id, target, label, t.disable_forwarding, out);
    }

    fn start_transfer(
        &mut self,
        call_id: &str,
        target: TransferTarget,
        label: String,
        disable_forwarding: bool,
        out: &mut Vec<Action>,
    ) {
        self.transfer = None;
        let Some(row) = self.calls.iter_mut().find(|c| c.call_id == call_id) else {
            return;
        };
        if !row.is_transferable() {
            return self.notify(Level::Warn, s::NO_TRANSFERABLE_CALL.into());
        }
        if row
            .transfer
            .as_ref()
            .is_some_and(|t| t.state == TransferState::Transferring)
        {
            return self.notify(Level::Warn, s::TRANSFER_UNDER_WAY.into());
        }
        row.transfer = Some(TransferStatus {
            transfer_id: None,
            target: label,
            state: TransferState::Transferring,
            error: None,
            detail: None,
        });
        out.push(Action::Engine(Command::Transfer {
            call_id: call_id.to_string(),
            target,
            disable_forwarding,
        }));
    }

    /// The transferee's answer to a transfer request.
    fn answer_transfer(&mut self, call_id: &str, accept: bool, out: &mut Vec<Action>) {
        let Some(i) = self
            .transfer_requests
            .iter()
            .position(|r| r.call_id == call_id && !r.accepted)
        else {
            return;
        };
        let call_id = call_id.to_string();
        if accept {
            let r = &mut self.transfer_requests[i];
            r.accepted = true;
            let text = s::transfer_accepted(&r.target);
            out.push(Action::Engine(Command::AcceptTransfer { call_id }));
            self.notify(Level::Info, text);
        } else {
            let r = self.transfer_requests.remove(i);
            out.push(Action::Engine(Command::RejectTransfer { call_id }));
            self.notify(Level::Info, s::transfer_rejected(&r.from));
        }
    }

    /// T / J on the "active on another device" banner: move the call here, or join it as a
    /// companion (both devices stay in).
    fn take_over(&mut self, is_transfer: bool, out: &mut Vec<Action>) {
        let Some(b) = self.shown_banner().cloned() else {
            return self.notify(Level::Warn, s::NO_CALL_ELSEWHERE.into());
        };
        let Banner::ActiveOnAnotherDevice(details) = b.clone();
        // Only one call has the microphone.
        self.hold_others(None, out);
        out.push(Action::Engine(Command::ActiveCallTransfer {
            details: Some(details.clone()),
            is_transfer,
        }));
        self.notify(
            Level::Info,
            s::taking_over(&b.label(), &details.device_name, is_transfer),
        );
    }

    // ---- voicemail -----------------------------------------------------------------------------

    fn open_voicemail(&mut self, out: &mut Vec<Action>) {
        self.devman.open = false;
        self.voicemail.open = true;
        out.push(Action::Engine(Command::ListVoicemail));
    }

    fn voicemail_key(&mut self, key: &KeyEvent, out: &mut Vec<Action>) -> EventState {
        let Some(cmd) = self.keymap.lookup(Context::Voicemail, key) else {
            return EventState::NotConsumed;
        };
        let len = self.voicemail.messages.as_ref().map_or(0, Vec::len);
        let vm = &mut self.voicemail;
        match cmd {
            Cmd::Up => vm.cursor = vm.cursor.saturating_sub(1),
            Cmd::Down => vm.cursor = (vm.cursor + 1).min(len.saturating_sub(1)),
            Cmd::Play => match vm.selected() {
                Some(m) => {
                    let message_id = m.message_id.clone();
                    vm.loading = Some(message_id.clone());
                    out.push(Action::PlayVoicemail { message_id });
                }
                None => self.notify(Level::Warn, s::NO_MESSAGE.into()),
            },
            Cmd::Stop => {
                if vm.playing.take().is_some() || vm.loading.take().is_some() {
                    out.push(Action::StopVoicemail);
                    self.notify(Level::Info, s::PLAYBACK_STOPPED.into());
                }
            }
            Cmd::ToggleNew => match vm.messages.as_mut().and_then(|l| l.get_mut(vm.cursor)) {
                Some(m) => {
                    m.is_new = !m.is_new;
                    out.push(Action::Engine(Command::MarkVoicemail {
                        message_id: m.message_id.clone(),
                        is_new: m.is_new,
                    }));
                }
                None => self.notify(Level::Warn, s::NO_MESSAGE.into()),
            },
            Cmd::Delete => match vm.selected() {
                Some(m) => vm.confirm_delete = Some(m.message_id.clone()),
                None => self.notify(Level::Warn, s::NO_MESSAGE.into()),
            },
            Cmd::Forwarding => self.cmdline = Some(Prompt::with_text("forward ")),
            Cmd::Refresh => out.push(Action::Engine(Command::ListVoicemail)),
            Cmd::Back => vm.open = false,
            Cmd::Help => self.help = Some(0),
            _ => return EventState::NotConsumed,
        }
        EventState::Consumed
    }

    fn delete_confirmed(&mut self, out: &mut Vec<Action>) {
        let vm = &mut self.voicemail;
        let Some(id) = vm.confirm_delete.take() else {
            return;
        };
        if vm.playing.as_ref().is_some_and(|p| p.message_id == id) {
            vm.playing = None;
            out.push(Action::StopVoicemail);
        }
        // Gone from the list at once; the switchboard's new list follows.
        if let Some(list) = &mut vm.messages {
            list.retain(|m| m.message_id != id);
            vm.cursor = vm.cursor.min(list.len().saturating_sub(1));
        }
        out.push(Action::Engine(Command::DeleteVoicemail { message_id: id }));
    }

    fn voicemails_listed(&mut self, list: Vec<VoicemailInfo>) {
        let vm = &mut self.voicemail;
        // Keep the cursor on the same message when the list changes under it.
        let current = vm.selected().map(|m| m.message_id.clone());
        vm.cursor = current
            .and_then(|id| list.iter().position(|m| m.message_id == id))
            .unwrap_or(vm.cursor)
            .min(list.len().saturating_sub(1));
        if vm
            .confirm_delete
            .as_ref()
            .is_some_and(|id| !list.iter().any(|m| m.message_id == *id))
        {
            vm.confirm_delete = None;
        }
        vm.messages = Some(list);
    }

    fn voicemail_playing(
        &mut self,
        message_id: String,
        result: Result<u64, String>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if self.voicemail.loading.as_deref() == Some(message_id.as_str()) {
            self.voicemail.loading = None;
        } else if result.is_ok() {
            // Stopped, or another message asked for, while this one was being fetched: it
            // started anyway and replaced what played. Stop it, unless the other one is still
            // coming (it replaces this one).
            if self.voicemail.loading.is_none() {
                self.voicemail.playing = None;
                out.push(Action::StopVoicemail);
            }
            return out;
        }
        match result {
            Ok(ms) => {
                let (caller, is_new) = self
                    .voicemail
                    .message(&message_id)
                    .map(|m| (m.caller.display_name.clone(), m.is_new))
                    .unwrap_or_default();
                self.voicemail.playing = Some(Playing {
                    message_id: message_id.clone(),
                    until: self.now.mono + Duration::from_millis(ms),
                });
                if is_new {
                    if let Some(m) = self
                        .voicemail
                        .messages
                        .as_mut()
                        .and_then(|l| l.iter_mut().find(|m| m.message_id == message_id))
                    {
                        m.is_new = false;
                    }
                    out.push(Action::Engine(Command::MarkVoicemail {
                        message_id,
                        is_new: false,
                    }));
                }
                self.notify(Level::Info, s::playing(&caller, ms));
            }
            Err(e) => self.notify(Level::Error, s::play_failed(&e)),
        }
        out
    }

    // ---- engine and driver updates -----------------------------------------------------------

    pub fn handle_update(&mut self, u: Update, now: Now) -> Vec<Action> {
        self.now = now;
        let mut out = Vec::new();
        match u {
            Update::Core(e) => self.core_event(e, &mut out),
            Update::EngineStarted => {
                self.connection = Connection::Connecting;
            }
            Update::EngineFailed(why) => {
                self.notify(Level::Error, s::engine_failed(&why));
                self.connection = Connection::Failed(why);
            }
            Update::CommandDone { cmd, result } => self.command_done(cmd, result, &mut out),
            Update::Devices(list) => self.devices_listed(list),
            Update::DeviceSet { slot, spec, result } => match result {
                Ok(()) => {
                    self.notify(Level::Info, s::device_set(slot, &spec));
                    self.devices.set(slot, spec);
                    out.push(Action::SaveDevices(self.devices.clone()));
                }
                Err(e) => self.notify(Level::Error, s::device_failed(slot, &spec, &e)),
            },
            Update::DeviceStarted { .. } => return out,
            Update::MediaPath(via) => {
                self.media_path = via;
                if via.is_none() {
                    self.quality = None;
                }
            }
            Update::Quality(q) => self.quality = Some(q),
            Update::MediaDiagnostic(d) => self.media_diagnostic(d),
            Update::DeviceSwitched(sw) => {
                let level = match sw.reason {
                    crate::core::media_diagnostics::SwitchReason::Failed => Level::Error,
                    crate::core::media_diagnostics::SwitchReason::Fallback => Level::Warn,
                    _ => Level::Info,
                };
                self.notify(level, s::device_switched(&sw.message));
            }
            Update::DeviceError { kind, message } => {
                self.notify(Level::Error, s::device_error(kind, &message))
            }
            Update::MicLevel(level) => {
                let level = if level.is_finite() {
                    level.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                // Redraw only when the meter would look different (16 steps).
                let step = |l: Option<f32>| l.map(|l| (l * 16.0) as u8);
                if step(self.mic_level) == step(Some(level)) {
                    self.mic_level = Some(level);
                    return out;
                }
                self.mic_level = Some(level);
            }
            Update::Notice(level, text) => self.notify(level, text),
            Update::VoicemailPlaying { message_id, result } => {
                out = self.voicemail_playing(message_id, result)
            }
        }
        self.dirty = true;
        out
    }

    fn row_mut(&mut self, call_id: &str, direction: Direction) -> &mut CallRow {
        let now = self.now;
        match self.calls.iter().position(|c| c.call_id == call_id) {
            Some(i) => &mut self.calls[i],
            None => {
                let mut row = CallRow::new(call_id, direction, now);
                // The engine's events can overtake the reply to `call`: a new outgoing call is
                // the oldest dial still waiting for its reply (the reply confirms or corrects).
                if direction == Direction::Outgoing {
                    row.target = self.pending_dials.pop_front();
                }
                self.calls.push(row);
                if self.live_calls().count() == 1 {
                    self.focus = self.calls.len() - 1;
                }
                self.calls.last_mut().expect("just pushed")
            }
        }
    }

    fn core_event(&mut self, e: CoreEvent, out: &mut Vec<Action>) {
        match e {
            CoreEvent::ConnectionStateChanged {
                new,
                reason,
                message,
                ..
            } => match new {
                ConnectionState::Connected => {
                    if matches!(self.connection, Connection::Disconnected(_)) {
                        self.notify(Level::Info, s::RECONNECTED.into());
                    }
                    self.connection = Connection::Connected;
                }
                ConnectionState::Disconnected => {
                    self.connection = Connection::Disconnected(reason);
                    // Calls kept while the engine reconnects: a warning, not a failure.
                    let (level, text) = match &message {
                        Some(m) => (Level::Error, s::cannot_connect(m)),
                        None if self.reconnecting() => {
                            (Level::Warn, s::RECONNECTING_CALLS_KEPT.into())
                        }
                        None => (Level::Error, s::disconnected(reason)),
                    };
                    self.notify(level, text);
                }
            },
            CoreEvent::IncomingCall {
                call_id,
                caller,
                transferred_by,
                forwarded_from,
                caller_number,
                group,
            } => {
                // Reached on one of my numbers: the caller shows as their number (the core
                // names its participant the same way).
                let shown = match &caller_number {
                    Some(n) => Identity {
                        raw_id: phone_raw_id(n),
                        display_name: caller.display_name.clone(),
                    },
                    None => caller,
                };
                let row = self.row_mut(&call_id, Direction::Incoming);
                if row.remote.is_empty() {
                    row.remote.push(Participant {
                        identity: shown.clone(),
                        state: crate::core::ParticipantState::Connected,
                        is_muted: false,
                        is_speaking: false,
                        service: false,
                        device: None,
                        reconnecting: false,
                    });
                }
                row.caller = Some(shown);
                row.group = group;
                row.via = match (transferred_by, forwarded_from) {
                    (Some(t), _) => Some(Via::TransferredBy(t.display_name)),
                    (None, Some(f)) => Some(Via::ForwardedFrom(f.display_name)),
                    (None, None) => None,
                };
                let text = incoming_text(row);
                self.notify(Level::Info, text);
                out.push(Action::Bell);
            }
            CoreEvent::CallStateChanged { call_id, state } => {
                if self
                    .calls
                    .iter()
                    .any(|c| c.call_id == call_id && !c.is_live())
                {
                    return;
                }
                let now = self.now.unix_ms;
                let row = self.row_mut(&call_id, Direction::Outgoing);
                if state.is_established() && row.connected_unix_ms.is_none() {
                    row.connected_unix_ms = Some(now);
                }
                let was_incoming = row.state == CallState::Incoming;
                row.state = state;
                let text = incoming_text(row);
                if state != CallState::Incoming {
                    self.hidden_incoming.remove(&call_id);
                    // "Incoming call from bob" is stale once the call is answered.
                    if was_incoming && self.notice.as_ref().is_some_and(|n| n.text == text) {
                        self.notice = None;
                    }
                }
            }
            CoreEvent::CallEnded { call_id, reason } => {
                let Some(row) = self.calls.iter_mut().find(|c| c.call_id == call_id) else {
                    return;
                };
                if row.ended.is_some() {
                    return;
                }
                row.state = CallState::Disconnected;
                row.ended = Some(Ended {
                    reason,
                    unix_ms: self.now.unix_ms,
                    at: self.now.mono,
                });
                let entry = HistoryEntry {
                    call_id: Some(call_id.clone()),
                    started_unix_ms: row.started_unix_ms,
                    direction: row.direction,
                    peer: row.peer(),
                    label: row.label(),
                    connected_ms: row
                        .connected_unix_ms
                        .map(|c| self.now.unix_ms.saturating_sub(c)),
                    end_reason: reason,
                };
                let text = s::call_ended(&row.label(), reason);
                self.hidden_incoming.remove(&call_id);
                self.transfer_requests.retain(|r| r.call_id != call_id);
                if self.transfer.as_ref().is_some_and(|p| p.call_id == call_id) {
                    self.transfer = None;
                }
                if self.add.as_ref().is_some_and(|p| p.call_id == call_id) {
                    self.add = None;
                }
                if self
                    .confirm_remove
                    .as_ref()
                    .is_some_and(|r| r.call_id == call_id)
                {
                    self.confirm_remove = None;
                }
                self.history.push(entry);
                self.history_cursor = 0;
                let level = if reason.code == 0 {
                    Level::Info
                } else {
                    Level::Warn
                };
                self.notify(level, text);
                out.push(Action::SaveHistory);
            }
            CoreEvent::RemoteParticipantsUpdated {
                call_id,
                added,
                removed,
            } => {
                if !self.calls.iter().any(|c| c.call_id == call_id) {
                    // A call that starts connected (taken over from another device, or ours
                    // after a transfer): its participants come before its state.
                    let row = CallRow::new(&call_id, Direction::Outgoing, self.now);
                    self.calls.push(row);
                    if self.live_calls().count() == 1 {
                        self.focus = self.calls.len() - 1;
                    }
                }
                let selected = self.selected_key();
                let Some(row) = self.calls.iter_mut().find(|c| c.call_id == call_id) else {
                    return;
                };
                row.remote.retain(|p| {
                    !removed
                        .iter()
                        .any(|r| participant_key(r) == participant_key(p))
                });
                for p in added {
                    match row
                        .remote
                        .iter_mut()
                        .find(|r| participant_key(r) == participant_key(&p))
                    {
                        Some(r) => *r = p,
                        None => row.remote.push(p),
                    }
                }
                // Two or more other people: a group call (hang up for everyone applies).
                if row.remote.iter().filter(|p| p.device.is_none()).count() > 1 {
                    row.group = true;
                }
                let gone = self.confirm_remove.as_ref().is_some_and(|r| {
                    r.call_id == call_id
                        && !row.remote.iter().any(|p| p.identity.raw_id == r.raw_id)
                });
                if gone {
                    self.confirm_remove = None;
                }
                self.reselect(selected);
            }
            CoreEvent::ParticipantStateChanged {
                call_id,
                participant,
            } => {
                let selected = self.selected_key();
                let Some(row) = self.calls.iter_mut().find(|c| c.call_id == call_id) else {
                    return;
                };
                match row
                    .remote
                    .iter_mut()
                    .find(|r| participant_key(r) == participant_key(&participant))
                {
                    Some(r) => *r = participant,
                    None => row.remote.push(participant),
                }
                self.reselect(selected);
            }
            CoreEvent::Error {
                code,
                message,
                call_id,
            } => {
                self.last_error = call_id.map(|id| (id, message.clone()));
                self.notify(Level::Error, s::server_error(code, &message))
            }
            CoreEvent::TransferStateChanged {
                call_id,
                transfer_id,
                state,
                error,
            } => self.transfer_state(call_id, transfer_id, state, error),
            CoreEvent::TransferRequested {
                call_id,
                transfer_id,
                transferor,
                target,
            } => {
                let req = TransferRequest {
                    call_id: call_id.clone(),
                    transfer_id,
                    from: transferor.display_name,
                    kind: target.kind,
                    target: target.identity.display_name,
                    target_raw: target.identity.raw_id,
                    hidden: false,
                    // The engine answers by itself: nothing to ask.
                    accepted: self.auto_accept_transfers,
                };
                let text = if self.auto_accept_transfers {
                    s::transfer_auto_accepted(&req.from, req.kind, &req.target)
                } else {
                    out.push(Action::Bell);
                    s::transfer_asked(&req.from, req.kind, &req.target)
                };
                self.transfer_requests.retain(|r| r.call_id != call_id);
                self.transfer_requests.push(req);
                self.notify(Level::Info, text);
            }
            CoreEvent::TransferAccepted {
                call_id,
                target_call_id,
            } => self.moved_by_transfer(&call_id, &target_call_id),
            CoreEvent::ForwardingChanged(f) => {
                let changed = self.forwarding.as_ref().is_some_and(|old| *old != f);
                if changed || std::mem::take(&mut self.forwarding_asked) {
                    self.notify(Level::Info, s::forwarding_text(&f));
                }
                self.forwarding = Some(f);
            }
            CoreEvent::MessageWaiting {
                new_count,
                total_count,
            } => {
                let before = self.message_waiting.map_or(0, |(n, _)| n);
                self.message_waiting = Some((new_count, total_count));
                if new_count > before {
                    self.notify(Level::Info, s::new_voicemail(new_count, total_count));
                }
                if self.voicemail.open {
                    out.push(Action::Engine(Command::ListVoicemail));
                }
            }
            CoreEvent::Voicemails(list) => self.voicemails_listed(list),
            CoreEvent::ActiveCallsUpdated(details) => {
                self.banner = Some(Banner::ActiveOnAnotherDevice(details))
            }
            CoreEvent::NoActiveCalls => self.banner = None,
            // Message downloads are the driver's business (`Action::PlayVoicemail`).
            CoreEvent::VoicemailData { .. } => {}
            CoreEvent::NetworkDiagnosticChanged(d) => self.network_diagnostic(d),
            // Events of capabilities the TUI does not show yet land here until their panels
            // exist.
            #[allow(unreachable_patterns)]
            other => tracing::debug!("not shown yet: {other:?}"),
        }
    }

    /// A media diagnostic changed: a problem shows on the status line until it clears, and a
    /// device problem also in a notice with the reason. Speaking while muted is only a hint.
    fn media_diagnostic(&mut self, d: crate::core::media_diagnostics::MediaDiagnosticChange) {
        use crate::core::media_diagnostics::MediaDiagnostic as D;
        if d.value {
            self.media_warnings.insert(d.diagnostic);
        } else {
            self.media_warnings.remove(&d.diagnostic);
        }
        match (d.diagnostic, d.value) {
            (D::SpeakingWhileMicrophoneIsMuted, _) => {}
            (_, true) => self.notify(
                Level::Warn,
                s::media_problem(d.diagnostic, d.message.as_deref()),
            ),
            (_, false) => self.notify(Level::Info, s::media_recovered(d.diagnostic)),
        }
    }

    /// A network diagnostic changed: a problem goes on its call's row and into a notice with
    /// the reason; its end clears the row and says so.
    fn network_diagnostic(&mut self, d: crate::core::diagnostics::DiagnosticChange) {
        use crate::core::diagnostics::{DiagnosticValue, Quality};
        let bad = matches!(
            d.value,
            DiagnosticValue::Flag(true) | DiagnosticValue::Quality(Quality::Poor | Quality::Bad)
        );
        if let Some(id) = &d.call_id
            && let Some(row) = self.calls.iter_mut().find(|c| c.call_id == *id)
        {
            if bad {
                row.network = Some(d.diagnostic);
            } else if row.network == Some(d.diagnostic) {
                row.network = None;
            }
        }
        if bad {
            self.notify(
                Level::Error,
                s::network_problem(d.diagnostic, d.message.as_deref()),
            );
        } else {
            self.notify(Level::Info, s::network_recovered(d.diagnostic));
        }
    }

    /// Our own transfer of a call moved on (we are the transferor).
    fn transfer_state(
        &mut self,
        call_id: String,
        transfer_id: String,
        state: TransferState,
        error: Option<CallEndReason>,
    ) {
        let detail = match (&self.last_error, error) {
            (Some((id, msg)), Some(e))
                if *id == call_id && e == CallEndReason::TRANSFER_REFUSED =>
            {
                Some(msg.clone())
            }
            _ => None,
        };
        let Some(row) = self.calls.iter_mut().find(|c| c.call_id == call_id) else {
            if state == TransferState::Failed {
                let text =
                    s::transfer_failed(s::UNKNOWN_PEER, s::UNKNOWN_PEER, error, detail.as_deref());
                self.notify(Level::Warn, text);
            }
            return;
        };
        let label = row.label();
        let status = row.transfer.get_or_insert_with(|| TransferStatus {
            transfer_id: None,
            target: s::UNKNOWN_PEER.to_string(),
            state,
            error: None,
            detail: None,
        });
        status.transfer_id = Some(transfer_id);
        status.state = state;
        status.error = error;
        status.detail = detail.clone();
        let target = status.target.clone();
        match state {
            TransferState::None => row.transfer = None,
            TransferState::Transferring => {}
            TransferState::Transferred => {
                self.notify(Level::Info, s::transferred(&label, &target));
            }
            TransferState::Failed => {
                let text = s::transfer_failed(&label, &target, error, detail.as_deref());
                self.notify(Level::Warn, text);
            }
        }
    }

    /// We (the transferee) go on in a new call: it starts connected, named after the target.
    fn moved_by_transfer(&mut self, call_id: &str, target_call_id: &str) {
        let req = self
            .transfer_requests
            .iter()
            .position(|r| r.call_id == call_id)
            .map(|i| self.transfer_requests.remove(i));
        if !self.calls.iter().any(|c| c.call_id == target_call_id) {
            let mut row = CallRow::new(target_call_id, Direction::Outgoing, self.now);
            if let Some(r) = &req {
                row.via = Some(Via::TransferredBy(r.from.clone()));
            }
            self.calls.push(row);
        }
        if self.focused_call().is_some_and(|c| c.call_id == call_id)
            && let Some(i) = self.calls.iter().position(|c| c.call_id == target_call_id)
        {
            self.focus = i;
        }
        if let Some(r) = req {
            let target = match r.kind {
                TransferKind::Voicemail => s::voicemail_of(&r.target),
                _ => r.target,
            };
            self.notify(Level::Info, s::transferred_to(&target, &r.from));
        }
    }

    fn command_done(
        &mut self,
        cmd: Command,
        result: Result<CommandOk, String>,
        out: &mut Vec<Action>,
    ) {
        // What was dialled (as `pending_dials` holds it), and whether it makes a group call.
        let (dialled, group) = match &cmd {
            Command::Call { to, .. } => (Some(to.join(", ")), to.len() > 1),
            Command::Join { group_id } => (Some(group_id.clone()), true),
            _ => (None, false),
        };
        if let Some(target) = &dialled
            && let Some(i) = self.pending_dials.iter().position(|t| t == target)
        {
            self.pending_dials.remove(i);
        }
        match (cmd, result) {
            (Command::Call { .. } | Command::Join { .. }, Ok(CommandOk::CallId(id))) => {
                let target = dialled.unwrap_or_default();
                let known = self.calls.iter().any(|c| c.call_id == id);
                let row = self.row_mut(&id, Direction::Outgoing);
                row.group |= group;
                match row.target.replace(target.clone()) {
                    Some(guess) if guess == target => {}
                    // A guess from the events was another dial's: give it back.
                    Some(guess) => {
                        self.pending_dials.push_front(guess);
                        if known {
                            self.relabel_history(&id, out);
                        }
                    }
                    None if known => self.relabel_history(&id, out),
                    None => {}
                }
                if let Some(i) = self.calls.iter().position(|c| c.call_id == id) {
                    self.focus = i;
                    self.pane = Pane::Calls;
                }
            }
            (
                Command::AddParticipant {
                    call_id, target, ..
                },
                Ok(_),
            ) => {
                if let Some(row) = self.calls.iter_mut().find(|c| c.call_id == call_id) {
                    row.group = true;
                }
                self.notify(Level::Info, s::adding(&target));
            }
            (Command::RemoveParticipant { call_id, target }, Ok(_)) => {
                let label = self.participant_label(&call_id, &target);
                self.notify(Level::Info, s::removing(&label));
            }
            (Command::RemoveParticipant { call_id, target }, Err(e)) => {
                let label = self.participant_label(&call_id, &target);
                self.notify(Level::Error, s::remove_failed(&label, &e));
            }
            (Command::Mute { call_id }, Ok(_)) => self.set_muted(&call_id, true),
            (Command::Unmute { call_id }, Ok(_)) => self.set_muted(&call_id, false),
            (Command::ActiveCallTransfer { .. }, Ok(CommandOk::CallId(id))) => {
                if let Some(i) = self.calls.iter().position(|c| c.call_id == id) {
                    self.focus = i;
                    self.pane = Pane::Calls;
                }
            }
            (Command::Transfer { call_id, .. }, Ok(CommandOk::TransferId(id))) => {
                if let Some(t) = self
                    .calls
                    .iter_mut()
                    .find(|c| c.call_id == call_id)
                    .and_then(|c| c.transfer.as_mut())
                {
                    t.transfer_id.get_or_insert(id);
                }
            }
            (_, Ok(_)) => {}
            (cmd @ Command::Transfer { .. }, Err(e)) => {
                if let Command::Transfer { call_id, .. } = &cmd
                    && let Some(row) = self.calls.iter_mut().find(|c| c.call_id == *call_id)
                {
                    row.transfer = None;
                }
                self.notify(Level::Error, s::command_failed(&cmd, &e));
            }
            (cmd @ (Command::AcceptTransfer { .. } | Command::RejectTransfer { .. }), Err(e)) => {
                if let Command::AcceptTransfer { call_id } | Command::RejectTransfer { call_id } =
                    &cmd
                {
                    self.transfer_requests.retain(|r| r.call_id != *call_id);
                }
                self.notify(Level::Error, s::command_failed(&cmd, &e));
            }
            (cmd @ (Command::DeleteVoicemail { .. } | Command::MarkVoicemail { .. }), Err(e)) => {
                self.notify(Level::Error, s::command_failed(&cmd, &e));
                out.push(Action::Engine(Command::ListVoicemail));
            }
            (cmd @ Command::SetForwarding(_), Err(e)) => {
                self.forwarding_asked = false;
                self.notify(Level::Error, s::command_failed(&cmd, &e));
            }
            (cmd, Err(e)) => self.notify(Level::Error, s::command_failed(&cmd, &e)),
        }
    }

    /// A call that ended before we knew whom it was with: fix its history entry and notice.
    fn relabel_history(&mut self, call_id: &str, out: &mut Vec<Action>) {
        let Some(row) = self.calls.iter().find(|c| c.call_id == call_id) else {
            return;
        };
        let (Some(ended), peer, label) = (row.ended, row.peer(), row.label()) else {
            return;
        };
        if let Some(e) = self.history.find_call_mut(call_id) {
            let old_label = std::mem::replace(&mut e.label, label.clone());
            e.peer = peer;
            if self
                .notice
                .as_ref()
                .is_some_and(|n| n.text == s::call_ended(&old_label, ended.reason))
            {
                let level = self.notice.as_ref().map_or(Level::Info, |n| n.level);
                self.notify(level, s::call_ended(&label, ended.reason));
            }
            out.push(Action::SaveHistory);
        }
    }

    /// A participant as people read it, found by raw id (else the text itself).
    fn participant_label(&self, call_id: &str, target: &str) -> String {
        self.calls
            .iter()
            .find(|c| c.call_id == call_id)
            .and_then(|c| c.remote.iter().find(|p| names_participant(p, target)))
            .map_or_else(|| target.to_string(), |p| participant_name(&p.identity))
    }

    fn set_muted(&mut self, call_id: &str, muted: bool) {
        if let Some(row) = self.calls.iter_mut().find(|c| c.call_id == call_id) {
            row.muted = muted;
        }
    }

    fn devices_listed(&mut self, list: DeviceList) {
        let changed = self.devman.list.as_ref().is_some_and(|old| old != &list);
        let first = self.devman.list.is_none();
        self.devman.list = Some(list);
        if changed {
            self.notify(Level::Info, s::DEVICES_CHANGED.into());
        }
        if !self.devman.placed || first {
            self.devman.placed = true;
            for slot in Slot::ALL {
                let entries = self.devman.entries(slot);
                let current = self.devices.get(slot);
                if let Some(i) = entries
                    .iter()
                    .position(|e| Some(e.spec.as_str()) == current)
                {
                    self.devman.cursor[slot.index()] = i;
                }
            }
        }
        for slot in Slot::ALL {
            let len = self.devman.entries(slot).len();
            let c = &mut self.devman.cursor[slot.index()];
            *c = (*c).min(len.saturating_sub(1));
        }
    }

    // ---- time -------------------------------------------------------------------------------

    /// Expires notices and ended calls, re-lists devices while the manager is open, and redraws
    /// call durations. Call it when [`App::next_deadline`] passes.
    pub fn tick(&mut self, now: Now) -> Vec<Action> {
        self.now = now;
        let mut out = Vec::new();
        if self.notice.as_ref().is_some_and(|n| n.until <= now.mono) {
            self.notice = None;
            self.dirty = true;
        }
        let before = self.calls.len();
        self.remove_calls(|c| c.ended.is_some_and(|e| e.at + ENDED_LINGER <= now.mono));
        if self.calls.len() != before {
            self.dirty = true;
        }
        if self.live_calls().next().is_some() {
            self.dirty = true;
        }
        if self
            .voicemail
            .playing
            .as_ref()
            .is_some_and(|p| p.until <= now.mono)
        {
            self.voicemail.playing = None;
            self.dirty = true;
        }
        if self.devman.open
            && self
                .devman
                .refreshed_at
                .is_none_or(|t| t + DEVICE_POLL <= now.mono)
        {
            self.refresh_devices(&mut out);
        }
        out
    }

    /// When [`App::tick`] has work next; None when idle (no timers at all).
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(n) = &self.notice {
            at(n.until);
        }
        for c in &self.calls {
            if let Some(e) = c.ended {
                at(e.at + ENDED_LINGER);
            }
        }
        if self.live_calls().next().is_some() {
            // The next whole second of the wall clock, when durations change.
            at(self.now.mono + Duration::from_millis(1000 - self.now.unix_ms % 1000));
        }
        if let Some(p) = &self.voicemail.playing {
            at(p.until);
        }
        if self.devman.open {
            at(self
                .devman
                .refreshed_at
                .map_or(self.now.mono, |t| t + DEVICE_POLL));
        }
        next
    }

    pub fn notify(&mut self, level: Level, text: String) {
        let secs = match level {
            Level::Info => 6,
            Level::Warn => 10,
            Level::Error => 20,
        };
        tracing::info!(?level, "{text}");
        self.notice = Some(Notice {
            level,
            text,
            until: self.now.mono + Duration::from_secs(secs),
        });
        self.dirty = true;
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
