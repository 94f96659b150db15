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
    DisconnectReason, ECHO_NAME, Event as CoreEvent, Now, RejectReason,
};
use crate::devices::{DeviceInfo, DeviceKind, DeviceList, DeviceSpec};
use crate::protocol::{Identity, Participant};

use super::cmdline::{self, LineCmd};
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
    /// Ring the terminal bell (an incoming call).
    Bell,
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
    /// Something the driver wants shown on the notifications line.
    Notice(Level, String),
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
        }
    }

    /// Who the call is with, for people.
    pub fn label(&self) -> String {
        if !self.remote.is_empty() {
            self.remote
                .iter()
                .map(|p| p.identity.display_name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        } else if let Some(t) = &self.target {
            t.clone()
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
    History,
}

/// The layers that can take keys, top first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    Confirm,
    Help,
    CommandLine,
    Dialer,
    /// Typing a transfer target (filled in by the call-transfer issue).
    Transfer,
    Incoming(String),
    /// Someone asks us to move this call elsewhere (filled in by the call-transfer issue).
    TransferRequest,
    Devices,
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

/// Banners above the panels. Only the placeholder exists for now.
#[derive(Debug, Clone, PartialEq)]
pub enum Banner {
    /// A call of this user is live on another of their devices (filled in by a later issue).
    ActiveOnAnotherDevice { device: String, label: String },
}

/// A request to transfer a call (filled in by the call-transfer issue).
#[derive(Debug, Clone, PartialEq)]
pub struct TransferRequest {
    pub call_id: String,
    pub from: String,
    pub target: String,
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
    pub calls: Vec<CallRow>,
    /// Index of the focused call in `calls`.
    pub focus: usize,
    pub pane: Pane,
    pub history: History,
    pub history_cursor: usize,
    pub contacts: Vec<String>,
    pub dialer: Option<Dialer>,
    pub cmdline: Option<Prompt>,
    /// The transfer-target prompt (the call-transfer issue opens it).
    pub transfer: Option<Prompt>,
    pub transfer_request: Option<TransferRequest>,
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
            calls: Vec::new(),
            focus: 0,
            pane: Pane::Calls,
            history: opts.history,
            history_cursor: 0,
            contacts: opts.contacts,
            dialer: None,
            cmdline: None,
            transfer: None,
            transfer_request: None,
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

    /// Layers that take keys, top first; the first is what the screen shows on top.
    pub fn layers(&self) -> Vec<Layer> {
        let mut v = Vec::new();
        if self.confirm_quit {
            v.push(Layer::Confirm);
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
        if self.transfer.is_some() {
            v.push(Layer::Transfer);
        }
        if let Some(c) = self.incoming_prompt() {
            v.push(Layer::Incoming(c.call_id.clone()));
        }
        if self.transfer_request.is_some() {
            v.push(Layer::TransferRequest);
        }
        if self.devman.open {
            v.push(Layer::Devices);
        }
        v.push(Layer::Main);
        v
    }

    /// Names the dialer and `:call` complete: contacts, then history, then the echo service.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in self
            .contacts
            .iter()
            .cloned()
            .chain(self.history.peers())
            .chain([ECHO_NAME.to_string()])
        {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }

    pub fn dialer_suggestions(&self) -> Vec<String> {
        match &self.dialer {
            Some(d) if !d.field.is_empty() => matching_names(&self.names(), &d.field.text()),
            Some(_) => self.names().into_iter().take(MAX_SUGGESTIONS).collect(),
            None => Vec::new(),
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
            || self.transfer.take().is_some()
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
            Layer::Transfer => {
                if key.code == KeyCode::Esc {
                    self.transfer = None;
                } else if key.code == KeyCode::Enter {
                    self.transfer = None;
                    self.notify(Level::Warn, s::TRANSFER_LATER.to_string());
                } else if let Some(t) = &mut self.transfer {
                    t.field.edit(key);
                }
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
            Layer::TransferRequest => match self.keymap.lookup(Context::Incoming, key) {
                Some(Cmd::Accept | Cmd::Reject | Cmd::RejectBusy) => {
                    self.transfer_request = None;
                    self.notify(Level::Warn, s::TRANSFER_LATER.to_string());
                    EventState::Consumed
                }
                Some(Cmd::Back) => {
                    self.transfer_request = None;
                    EventState::Consumed
                }
                _ => EventState::NotConsumed,
            },
            Layer::Devices => self.devices_key(key, out),
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
            Cmd::HangUp => self.hang_up(out),
            Cmd::Mute => self.toggle_mute(out),
            Cmd::Hold => self.toggle_hold(out),
            Cmd::NextCall => self.move_focus(1),
            Cmd::PrevCall => self.move_focus(-1),
            Cmd::NextPanel => {
                self.pane = match self.pane {
                    Pane::Calls => Pane::History,
                    Pane::History => Pane::Calls,
                }
            }
            Cmd::Up | Cmd::Down => {
                let delta = if cmd == Cmd::Up { -1 } else { 1 };
                match self.pane {
                    Pane::Calls => self.move_focus(delta),
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
                Pane::History => {
                    if let Some(e) = self.history.get(self.history_cursor) {
                        let peer = e.peer.clone();
                        self.dial(vec![peer], out);
                    }
                }
                Pane::Calls => {
                    if let Some(c) = self
                        .focused_call()
                        .filter(|c| c.is_live() && c.state == CallState::Incoming)
                    {
                        let id = c.call_id.clone();
                        self.hidden_incoming.remove(&id);
                    }
                }
            },
            Cmd::Devices => self.open_devices(out),
            Cmd::EchoTest => self.dial(vec![ECHO_NAME.to_string()], out),
            Cmd::Dismiss => self.dismiss(),
            Cmd::Back => self.notice = None,
            Cmd::NextColumn | Cmd::PrevColumn | Cmd::TestTone | Cmd::Refresh | Cmd::Confirm => {}
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
                        let names = self.names();
                        let Some(p) = &mut self.cmdline else { return };
                        (cmdline::complete(&p.field.text(), &names), 0)
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
                let chosen = d
                    .selected
                    .and_then(|i| suggestions.get(i).cloned())
                    .unwrap_or(typed);
                let to: Vec<String> = chosen
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect();
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
            LineCmd::HangUp => self.hang_up(out),
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
                } else {
                    self.notify(Level::Warn, s::no_such_call(n));
                }
            }
            LineCmd::Dismiss => self.dismiss(),
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

    fn dial(&mut self, to: Vec<String>, out: &mut Vec<Action>) {
        for t in &to {
            if let Callee::Invalid(why) = Callee::parse(t) {
                self.notify(Level::Error, why);
                return;
            }
        }
        self.hold_others(None, out);
        self.pending_dials.push_back(to.join(", "));
        out.push(Action::Engine(Command::Call { to }));
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

    fn hang_up(&mut self, out: &mut Vec<Action>) {
        let Some(c) = self.live_focus() else {
            self.notify(Level::Warn, s::NO_CALL.into());
            return;
        };
        let call_id = c.call_id.clone();
        if c.state == CallState::Incoming {
            self.reject(&call_id, RejectReason::None, out);
        } else {
            out.push(Action::Engine(Command::HangUp {
                call_id,
                for_everyone: false,
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
        self.pane = Pane::Calls;
    }

    fn dismiss(&mut self) {
        self.notice = None;
        self.remove_calls(|c| !c.is_live());
    }

    fn remove_calls(&mut self, gone: impl Fn(&CallRow) -> bool) {
        let focused = self.focused_call().map(|c| c.call_id.clone());
        self.calls.retain(|c| !gone(c));
        self.focus = focused
            .and_then(|id| self.calls.iter().position(|c| c.call_id == id))
            .unwrap_or_else(|| self.focus.min(self.calls.len().saturating_sub(1)));
    }

    fn open_devices(&mut self, out: &mut Vec<Action>) {
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
            CoreEvent::ConnectionStateChanged { new, reason, .. } => match new {
                ConnectionState::Connected => {
                    if matches!(self.connection, Connection::Disconnected(_)) {
                        self.notify(Level::Info, s::RECONNECTED.into());
                    }
                    self.connection = Connection::Connected;
                }
                ConnectionState::Disconnected => {
                    self.notify(Level::Error, s::disconnected(reason));
                    self.connection = Connection::Disconnected(reason);
                }
            },
            CoreEvent::IncomingCall {
                call_id, caller, ..
            } => {
                let row = self.row_mut(&call_id, Direction::Incoming);
                if row.remote.is_empty() {
                    row.remote.push(Participant {
                        identity: caller.clone(),
                        state: crate::core::ParticipantState::Connected,
                        is_muted: false,
                        is_speaking: false,
                        device: None,
                    });
                }
                self.notify(Level::Info, s::incoming_from(&caller.display_name));
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
                let label = row.label();
                if state != CallState::Incoming {
                    self.hidden_incoming.remove(&call_id);
                    // "Incoming call from bob" is stale once the call is answered.
                    if was_incoming
                        && self
                            .notice
                            .as_ref()
                            .is_some_and(|n| n.text == s::incoming_from(&label))
                    {
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
                let Some(row) = self.calls.iter_mut().find(|c| c.call_id == call_id) else {
                    return;
                };
                row.remote.retain(|p| {
                    !removed
                        .iter()
                        .any(|r| r.identity.raw_id == p.identity.raw_id)
                });
                for p in added {
                    match row
                        .remote
                        .iter_mut()
                        .find(|r| r.identity.raw_id == p.identity.raw_id)
                    {
                        Some(r) => *r = p,
                        None => row.remote.push(p),
                    }
                }
            }
            CoreEvent::ParticipantStateChanged {
                call_id,
                participant,
            } => {
                let Some(row) = self.calls.iter_mut().find(|c| c.call_id == call_id) else {
                    return;
                };
                match row
                    .remote
                    .iter_mut()
                    .find(|r| r.identity.raw_id == participant.identity.raw_id)
                {
                    Some(r) => *r = participant,
                    None => row.remote.push(participant),
                }
            }
            CoreEvent::Error { code, message, .. } => {
                self.notify(Level::Error, s::server_error(code, &message))
            }
            // Events of capabilities the TUI does not show yet (transfer, other devices) land
            // here until their panels exist; see the placeholders `transfer_request`, `banner`.
            #[allow(unreachable_patterns)]
            other => tracing::debug!("not shown yet: {other:?}"),
        }
    }

    fn command_done(
        &mut self,
        cmd: Command,
        result: Result<CommandOk, String>,
        out: &mut Vec<Action>,
    ) {
        if let Command::Call { to } = &cmd {
            let target = to.join(", ");
            if let Some(i) = self.pending_dials.iter().position(|t| *t == target) {
                self.pending_dials.remove(i);
            }
        }
        match (cmd, result) {
            (Command::Call { to }, Ok(CommandOk::CallId(id))) => {
                let target = to.join(", ");
                let known = self.calls.iter().any(|c| c.call_id == id);
                let row = self.row_mut(&id, Direction::Outgoing);
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
            (Command::Mute { call_id }, Ok(_)) => self.set_muted(&call_id, true),
            (Command::Unmute { call_id }, Ok(_)) => self.set_muted(&call_id, false),
            (_, Ok(_)) => {}
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
