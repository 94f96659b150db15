//! Keys → commands. One table of defaults per context (the main screen, the participants panel,
//! the incoming-call prompt, the transfer prompts, the voicemail panel, the device manager, the help overlay, the
//! yes/no questions), overridable from the `[tui.keys]` config section. Pure: no terminal, no I/O; tested table by table.
//!
//! Text fields (the dialer and the `:` command line) are not in the table: there every printable
//! key is text, and Enter, Esc, Tab, the arrows and the usual editing keys (Ctrl-U, Ctrl-W, ...)
//! keep their usual meaning.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::{Deserialize, Serialize};

/// Where a key is pressed. The topmost layer on screen picks the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    Main,
    Incoming,
    /// Someone asks to move one of our calls elsewhere.
    TransferRequest,
    /// Choosing where to transfer the focused call.
    Transfer,
    Voicemail,
    Devices,
    /// The participants panel has focus (Tab from the calls): pick someone, add, remove.
    Participants,
    Help,
    Confirm,
}

impl Context {
    pub const ALL: [Context; 9] = [
        Context::Main,
        Context::Participants,
        Context::Incoming,
        Context::TransferRequest,
        Context::Transfer,
        Context::Voicemail,
        Context::Devices,
        Context::Help,
        Context::Confirm,
    ];
}

/// Everything a bound key can ask for. Names (`Cmd::name`) are what the config uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cmd {
    Help,
    Quit,
    CommandLine,
    Dial,
    Accept,
    Reject,
    RejectBusy,
    HangUp,
    Mute,
    Hold,
    NextCall,
    PrevCall,
    NextPanel,
    Up,
    Down,
    Select,
    Devices,
    EchoTest,
    Dismiss,
    Back,
    NextColumn,
    PrevColumn,
    TestTone,
    Refresh,
    Confirm,
    Transfer,
    Voicemail,
    TakeOver,
    JoinCall,
    ToParticipant,
    ToCall,
    ToVoicemail,
    NoForwarding,
    Play,
    Stop,
    Delete,
    ToggleNew,
    Forwarding,
    AddParticipant,
    RemoveParticipant,
    HangUpAll,
}

impl Cmd {
    pub const ALL: [Cmd; 41] = [
        Cmd::Help,
        Cmd::Quit,
        Cmd::CommandLine,
        Cmd::Dial,
        Cmd::Accept,
        Cmd::Reject,
        Cmd::RejectBusy,
        Cmd::HangUp,
        Cmd::Mute,
        Cmd::Hold,
        Cmd::NextCall,
        Cmd::PrevCall,
        Cmd::NextPanel,
        Cmd::Up,
        Cmd::Down,
        Cmd::Select,
        Cmd::Devices,
        Cmd::EchoTest,
        Cmd::Dismiss,
        Cmd::Back,
        Cmd::NextColumn,
        Cmd::PrevColumn,
        Cmd::TestTone,
        Cmd::Refresh,
        Cmd::Confirm,
        Cmd::Transfer,
        Cmd::Voicemail,
        Cmd::TakeOver,
        Cmd::JoinCall,
        Cmd::ToParticipant,
        Cmd::ToCall,
        Cmd::ToVoicemail,
        Cmd::NoForwarding,
        Cmd::Play,
        Cmd::Stop,
        Cmd::Delete,
        Cmd::ToggleNew,
        Cmd::Forwarding,
        Cmd::AddParticipant,
        Cmd::RemoveParticipant,
        Cmd::HangUpAll,
    ];

    /// The name used in `[tui.keys]`.
    pub fn name(self) -> &'static str {
        match self {
            Cmd::Help => "help",
            Cmd::Quit => "quit",
            Cmd::CommandLine => "command_line",
            Cmd::Dial => "dial",
            Cmd::Accept => "accept",
            Cmd::Reject => "reject",
            Cmd::RejectBusy => "reject_busy",
            Cmd::HangUp => "hang_up",
            Cmd::Mute => "mute",
            Cmd::Hold => "hold",
            Cmd::NextCall => "next_call",
            Cmd::PrevCall => "prev_call",
            Cmd::NextPanel => "next_panel",
            Cmd::Up => "up",
            Cmd::Down => "down",
            Cmd::Select => "select",
            Cmd::Devices => "devices",
            Cmd::EchoTest => "echo_test",
            Cmd::Dismiss => "dismiss",
            Cmd::Back => "back",
            Cmd::NextColumn => "next_column",
            Cmd::PrevColumn => "prev_column",
            Cmd::TestTone => "test_tone",
            Cmd::Refresh => "refresh",
            Cmd::Confirm => "confirm",
            Cmd::Transfer => "transfer",
            Cmd::Voicemail => "voicemail",
            Cmd::TakeOver => "take_over",
            Cmd::JoinCall => "join_call",
            Cmd::ToParticipant => "to_participant",
            Cmd::ToCall => "to_call",
            Cmd::ToVoicemail => "to_voicemail",
            Cmd::NoForwarding => "no_forwarding",
            Cmd::Play => "play",
            Cmd::Stop => "stop",
            Cmd::Delete => "delete",
            Cmd::ToggleNew => "toggle_new",
            Cmd::Forwarding => "forwarding",
            Cmd::AddParticipant => "add_participant",
            Cmd::RemoveParticipant => "remove_participant",
            Cmd::HangUpAll => "hang_up_all",
        }
    }

    pub fn from_name(name: &str) -> Option<Cmd> {
        Cmd::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One key with its modifiers, normalised so that `?` typed with Shift equals `?` from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    code: KeyCodeOrd,
    mods: u8,
}

/// `KeyCode` is not `Ord`; this is the subset a binding can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum KeyCodeOrd {
    Char(char),
    F(u8),
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    Delete,
    Insert,
    Up,
    Down,
    Left,
    Right,
    Home,
    End,
    PageUp,
    PageDown,
}

const CTRL: u8 = 1;
const ALT: u8 = 2;

impl Key {
    /// The key a terminal event stands for, if a binding could name it.
    pub fn from_event(ev: &KeyEvent) -> Option<Key> {
        let code = match ev.code {
            KeyCode::Char(c) => KeyCodeOrd::Char(c),
            KeyCode::F(n) => KeyCodeOrd::F(n),
            KeyCode::Enter => KeyCodeOrd::Enter,
            KeyCode::Esc => KeyCodeOrd::Esc,
            KeyCode::Tab if ev.modifiers.contains(KeyModifiers::SHIFT) => KeyCodeOrd::BackTab,
            KeyCode::Tab => KeyCodeOrd::Tab,
            KeyCode::BackTab => KeyCodeOrd::BackTab,
            KeyCode::Backspace => KeyCodeOrd::Backspace,
            KeyCode::Delete => KeyCodeOrd::Delete,
            KeyCode::Insert => KeyCodeOrd::Insert,
            KeyCode::Up => KeyCodeOrd::Up,
            KeyCode::Down => KeyCodeOrd::Down,
            KeyCode::Left => KeyCodeOrd::Left,
            KeyCode::Right => KeyCodeOrd::Right,
            KeyCode::Home => KeyCodeOrd::Home,
            KeyCode::End => KeyCodeOrd::End,
            KeyCode::PageUp => KeyCodeOrd::PageUp,
            KeyCode::PageDown => KeyCodeOrd::PageDown,
            _ => return None,
        };
        let mut mods = 0;
        if ev.modifiers.contains(KeyModifiers::CONTROL) {
            mods |= CTRL;
        }
        if ev.modifiers.contains(KeyModifiers::ALT) {
            mods |= ALT;
        }
        // Shift is already in the character ('A', '?'); Ctrl-letters are case-insensitive.
        let code = match code {
            KeyCodeOrd::Char(c) if mods & CTRL != 0 => KeyCodeOrd::Char(c.to_ascii_lowercase()),
            other => other,
        };
        Some(Key { code, mods })
    }

    pub fn char(c: char) -> Key {
        Key {
            code: KeyCodeOrd::Char(c),
            mods: 0,
        }
    }
}

impl FromStr for Key {
    type Err = String;

    /// `a`, `A`, `?`, `space`, `enter`, `esc`, `tab`, `shift-tab`, `backspace`, `delete`,
    /// `insert`, `up`, `down`, `left`, `right`, `home`, `end`, `pageup`, `pagedown`, `f1`..`f12`,
    /// with `ctrl-` and/or `alt-` in front.
    fn from_str(s: &str) -> Result<Key, String> {
        let bad = || {
            format!(
                "key {s:?} is not a key: write e.g. \"h\", \"H\", \"?\", \"enter\", \"ctrl-d\", \"f2\""
            )
        };
        let mut rest = s;
        let mut mods = 0;
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.chars().count() > 1
                && (lower.starts_with("ctrl-") || lower.starts_with("ctrl+"))
            {
                mods |= CTRL;
                rest = &rest[5..];
            } else if rest.chars().count() > 1
                && (lower.starts_with("alt-") || lower.starts_with("alt+"))
            {
                mods |= ALT;
                rest = &rest[4..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) if !c.is_control() && c != ' ' => KeyCodeOrd::Char(c),
            (None, _) => return Err(bad()),
            _ => match rest.to_ascii_lowercase().as_str() {
                "space" => KeyCodeOrd::Char(' '),
                "enter" | "return" => KeyCodeOrd::Enter,
                "esc" | "escape" => KeyCodeOrd::Esc,
                "tab" => KeyCodeOrd::Tab,
                "shift-tab" | "backtab" => KeyCodeOrd::BackTab,
                "backspace" => KeyCodeOrd::Backspace,
                "delete" | "del" => KeyCodeOrd::Delete,
                "insert" | "ins" => KeyCodeOrd::Insert,
                "up" => KeyCodeOrd::Up,
                "down" => KeyCodeOrd::Down,
                "left" => KeyCodeOrd::Left,
                "right" => KeyCodeOrd::Right,
                "home" => KeyCodeOrd::Home,
                "end" => KeyCodeOrd::End,
                "pageup" | "pgup" => KeyCodeOrd::PageUp,
                "pagedown" | "pgdn" => KeyCodeOrd::PageDown,
                f if f.starts_with('f') => match f[1..].parse::<u8>() {
                    Ok(n @ 1..=12) => KeyCodeOrd::F(n),
                    _ => return Err(bad()),
                },
                _ => return Err(bad()),
            },
        };
        let code = match code {
            KeyCodeOrd::Char(c) if mods & CTRL != 0 => KeyCodeOrd::Char(c.to_ascii_lowercase()),
            other => other,
        };
        Ok(Key { code, mods })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mods & CTRL != 0 {
            f.write_str("Ctrl-")?;
        }
        if self.mods & ALT != 0 {
            f.write_str("Alt-")?;
        }
        match self.code {
            KeyCodeOrd::Char(' ') => f.write_str("Space"),
            KeyCodeOrd::Char(c) => write!(f, "{c}"),
            KeyCodeOrd::F(n) => write!(f, "F{n}"),
            KeyCodeOrd::Enter => f.write_str("Enter"),
            KeyCodeOrd::Esc => f.write_str("Esc"),
            KeyCodeOrd::Tab => f.write_str("Tab"),
            KeyCodeOrd::BackTab => f.write_str("S-Tab"),
            KeyCodeOrd::Backspace => f.write_str("Backspace"),
            KeyCodeOrd::Delete => f.write_str("Del"),
            KeyCodeOrd::Insert => f.write_str("Ins"),
            KeyCodeOrd::Up => f.write_str("Up"),
            KeyCodeOrd::Down => f.write_str("Down"),
            KeyCodeOrd::Left => f.write_str("Left"),
            KeyCodeOrd::Right => f.write_str("Right"),
            KeyCodeOrd::Home => f.write_str("Home"),
            KeyCodeOrd::End => f.write_str("End"),
            KeyCodeOrd::PageUp => f.write_str("PgUp"),
            KeyCodeOrd::PageDown => f.write_str("PgDn"),
        }
    }
}

/// The default bindings: (context, command, keys). The order is the order of the help overlay
/// and of docs/keys.md.
pub const DEFAULTS: &[(Context, Cmd, &[&str])] = &[
    (Context::Main, Cmd::Dial, &["c"]),
    (Context::Main, Cmd::Accept, &["a"]),
    (Context::Main, Cmd::Reject, &["r"]),
    (Context::Main, Cmd::RejectBusy, &["b"]),
    (Context::Main, Cmd::HangUp, &["h"]),
    (Context::Main, Cmd::HangUpAll, &["H"]),
    (Context::Main, Cmd::Mute, &["m"]),
    (Context::Main, Cmd::Hold, &["p"]),
    (Context::Main, Cmd::Transfer, &["t"]),
    (Context::Main, Cmd::AddParticipant, &["+"]),
    (Context::Main, Cmd::NextCall, &["]"]),
    (Context::Main, Cmd::PrevCall, &["["]),
    (Context::Main, Cmd::NextPanel, &["tab"]),
    (Context::Main, Cmd::Up, &["k", "up"]),
    (Context::Main, Cmd::Down, &["j", "down"]),
    (Context::Main, Cmd::Select, &["enter"]),
    (Context::Main, Cmd::EchoTest, &["e"]),
    (Context::Main, Cmd::Devices, &["d"]),
    (Context::Main, Cmd::Voicemail, &["v"]),
    (Context::Main, Cmd::TakeOver, &["T"]),
    (Context::Main, Cmd::JoinCall, &["J"]),
    (Context::Main, Cmd::Dismiss, &["x"]),
    (Context::Main, Cmd::Back, &["esc"]),
    (Context::Main, Cmd::CommandLine, &[":"]),
    (Context::Main, Cmd::Help, &["?", "f1"]),
    (Context::Main, Cmd::Quit, &["q"]),
    (Context::Participants, Cmd::Up, &["k", "up"]),
    (Context::Participants, Cmd::Down, &["j", "down"]),
    (Context::Participants, Cmd::AddParticipant, &["a", "+"]),
    (
        Context::Participants,
        Cmd::RemoveParticipant,
        &["x", "-", "delete"],
    ),
    (Context::Participants, Cmd::Back, &["esc"]),
    (Context::Incoming, Cmd::Accept, &["a", "enter"]),
    (Context::Incoming, Cmd::Reject, &["r"]),
    (Context::Incoming, Cmd::RejectBusy, &["b"]),
    (Context::Incoming, Cmd::Back, &["esc"]),
    (Context::TransferRequest, Cmd::Accept, &["a", "enter"]),
    (Context::TransferRequest, Cmd::Reject, &["r"]),
    (Context::TransferRequest, Cmd::Back, &["esc"]),
    (Context::Transfer, Cmd::ToParticipant, &["p"]),
    (Context::Transfer, Cmd::ToCall, &["c"]),
    (Context::Transfer, Cmd::ToVoicemail, &["v"]),
    (Context::Transfer, Cmd::NoForwarding, &["f", "ctrl-f"]),
    (Context::Transfer, Cmd::Up, &["k", "up"]),
    (Context::Transfer, Cmd::Down, &["j", "down"]),
    (Context::Transfer, Cmd::Select, &["enter"]),
    (Context::Transfer, Cmd::Back, &["esc"]),
    (Context::Voicemail, Cmd::Up, &["k", "up"]),
    (Context::Voicemail, Cmd::Down, &["j", "down"]),
    (Context::Voicemail, Cmd::Play, &["enter"]),
    (Context::Voicemail, Cmd::Stop, &["s"]),
    (Context::Voicemail, Cmd::ToggleNew, &["n"]),
    (Context::Voicemail, Cmd::Delete, &["x", "delete"]),
    (Context::Voicemail, Cmd::Forwarding, &["f"]),
    (Context::Voicemail, Cmd::Refresh, &["r"]),
    (Context::Voicemail, Cmd::Back, &["esc", "v"]),
    (Context::Voicemail, Cmd::Help, &["?", "f1"]),
    (Context::Devices, Cmd::Up, &["k", "up"]),
    (Context::Devices, Cmd::Down, &["j", "down"]),
    (Context::Devices, Cmd::NextColumn, &["tab", "l", "right"]),
    (Context::Devices, Cmd::PrevColumn, &["shift-tab", "left"]),
    (Context::Devices, Cmd::Select, &["enter", "space"]),
    (Context::Devices, Cmd::TestTone, &["t"]),
    (Context::Devices, Cmd::EchoTest, &["e"]),
    (Context::Devices, Cmd::Refresh, &["r"]),
    (Context::Devices, Cmd::Mute, &["m"]),
    (Context::Devices, Cmd::Back, &["esc", "d"]),
    (Context::Devices, Cmd::Help, &["?", "f1"]),
    (Context::Help, Cmd::Up, &["k", "up"]),
    (Context::Help, Cmd::Down, &["j", "down"]),
    (Context::Help, Cmd::Back, &["esc", "?", "q", "f1"]),
    (Context::Confirm, Cmd::Confirm, &["y", "enter"]),
    (Context::Confirm, Cmd::Back, &["n", "esc"]),
];

/// Overrides from the config: command name → one key or a list of keys (an empty list unbinds).
/// A command's keys are replaced in every context where it has default keys.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct KeysConfig(pub BTreeMap<String, KeyList>);

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum KeyList {
    One(String),
    Many(Vec<String>),
}

impl KeyList {
    fn items(&self) -> Vec<&str> {
        match self {
            KeyList::One(s) => vec![s.as_str()],
            KeyList::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Keymap {
    bindings: BTreeMap<(Context, Key), Cmd>,
    /// Keys per (context, command), in the order given, for the help overlay and the hints.
    keys: BTreeMap<(Context, Cmd), Vec<Key>>,
    /// (context, command) pairs in table order.
    order: Vec<(Context, Cmd)>,
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap::new(&KeysConfig::default()).expect("the default table has no conflicts")
    }
}

impl Keymap {
    /// Builds the map from the defaults and the overrides. Errors name the config key and the
    /// bad value: an unknown command, an unparsable key, or two overrides that claim the same key
    /// in the same context. An override that takes a key some default uses takes it away from
    /// that default.
    pub fn new(overrides: &KeysConfig) -> Result<Keymap, String> {
        let mut parsed: BTreeMap<Cmd, Vec<Key>> = BTreeMap::new();
        for (name, list) in &overrides.0 {
            let cmd = Cmd::from_name(name).ok_or_else(|| {
                let names: Vec<&str> = Cmd::ALL.iter().map(|c| c.name()).collect();
                format!(
                    "key tui.keys.{name}: unknown command {name:?}; known: {}",
                    names.join(", ")
                )
            })?;
            let keys = list
                .items()
                .into_iter()
                .map(|k| {
                    k.parse::<Key>()
                        .map_err(|e| format!("key tui.keys.{name} = {k:?}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            parsed.insert(cmd, keys);
        }
        let mut keys: BTreeMap<(Context, Cmd), Vec<Key>> = BTreeMap::new();
        let mut order = Vec::new();
        for (ctx, cmd, defaults) in DEFAULTS {
            let list = match parsed.get(cmd) {
                Some(custom) => custom.clone(),
                None => defaults
                    .iter()
                    .map(|k| k.parse().expect("default keys parse"))
                    .collect(),
            };
            keys.insert((*ctx, *cmd), list);
            order.push((*ctx, *cmd));
        }
        // Overrides win over defaults in the same context.
        for ((ctx, cmd), list) in keys.clone() {
            if !parsed.contains_key(&cmd) {
                continue;
            }
            for key in list {
                for ((c2, cmd2), other) in keys.iter_mut() {
                    if *c2 != ctx || *cmd2 == cmd {
                        continue;
                    }
                    if other.contains(&key) {
                        if parsed.contains_key(cmd2) {
                            return Err(format!(
                                "key tui.keys: \"{key}\" is bound to both {} and {}",
                                cmd.name(),
                                cmd2.name()
                            ));
                        }
                        other.retain(|k| *k != key);
                    }
                }
            }
        }
        let mut bindings = BTreeMap::new();
        for ((ctx, cmd), list) in &keys {
            for key in list {
                if let Some(prev) = bindings.insert((*ctx, *key), *cmd)
                    && prev != *cmd
                {
                    return Err(format!(
                        "key tui.keys: \"{key}\" is bound to both {} and {}",
                        prev.name(),
                        cmd.name()
                    ));
                }
            }
        }
        Ok(Keymap {
            bindings,
            keys,
            order,
        })
    }

    pub fn lookup(&self, ctx: Context, ev: &KeyEvent) -> Option<Cmd> {
        let key = Key::from_event(ev)?;
        self.bindings.get(&(ctx, key)).copied()
    }

    pub fn keys(&self, ctx: Context, cmd: Cmd) -> &[Key] {
        self.keys.get(&(ctx, cmd)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// "a, Enter": the keys of a command for display, or "" when unbound.
    pub fn label(&self, ctx: Context, cmd: Cmd) -> String {
        self.keys(ctx, cmd)
            .iter()
            .map(Key::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The first key of a command, for compact hints.
    pub fn first(&self, ctx: Context, cmd: Cmd) -> Option<Key> {
        self.keys(ctx, cmd).first().copied()
    }

    /// Every (command, keys) of a context, in table order, for the help overlay.
    pub fn entries(&self, ctx: Context) -> impl Iterator<Item = (Cmd, &[Key])> + '_ {
        self.order
            .iter()
            .filter(move |(c, _)| *c == ctx)
            .map(move |(c, cmd)| (*cmd, self.keys(*c, *cmd)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEventKind;

    fn ev(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new_with_kind(code, mods, KeyEventKind::Press)
    }

    #[test]
    fn default_table() {
        use Context::*;
        use KeyCode as K;
        let none = KeyModifiers::NONE;
        let shift = KeyModifiers::SHIFT;
        let cases: &[(Context, KeyCode, KeyModifiers, Option<Cmd>)] = &[
            (Main, K::Char('c'), none, Some(Cmd::Dial)),
            (Main, K::Char('a'), none, Some(Cmd::Accept)),
            (Main, K::Char('r'), none, Some(Cmd::Reject)),
            (Main, K::Char('b'), none, Some(Cmd::RejectBusy)),
            (Main, K::Char('h'), none, Some(Cmd::HangUp)),
            (Main, K::Char('m'), none, Some(Cmd::Mute)),
            (Main, K::Char('p'), none, Some(Cmd::Hold)),
            (Main, K::Char(']'), none, Some(Cmd::NextCall)),
            (Main, K::Char('['), none, Some(Cmd::PrevCall)),
            (Main, K::Tab, none, Some(Cmd::NextPanel)),
            (Main, K::Char('k'), none, Some(Cmd::Up)),
            (Main, K::Up, none, Some(Cmd::Up)),
            (Main, K::Char('j'), none, Some(Cmd::Down)),
            (Main, K::Down, none, Some(Cmd::Down)),
            (Main, K::Enter, none, Some(Cmd::Select)),
            (Main, K::Char('e'), none, Some(Cmd::EchoTest)),
            (Main, K::Char('d'), none, Some(Cmd::Devices)),
            (Main, K::Char('x'), none, Some(Cmd::Dismiss)),
            (Main, K::Esc, none, Some(Cmd::Back)),
            (Main, K::Char(':'), shift, Some(Cmd::CommandLine)),
            (Main, K::Char('?'), shift, Some(Cmd::Help)),
            (Main, K::Char('?'), none, Some(Cmd::Help)),
            (Main, K::F(1), none, Some(Cmd::Help)),
            (Main, K::Char('q'), none, Some(Cmd::Quit)),
            (Main, K::Char('Q'), shift, None),
            (Main, K::Char('t'), none, Some(Cmd::Transfer)),
            (Main, K::Char('v'), none, Some(Cmd::Voicemail)),
            (Main, K::Char('T'), shift, Some(Cmd::TakeOver)),
            (Main, K::Char('J'), shift, Some(Cmd::JoinCall)),
            (Main, K::Char('H'), shift, Some(Cmd::HangUpAll)),
            (Main, K::Char('+'), shift, Some(Cmd::AddParticipant)),
            (Main, K::Char('-'), none, None),
            (Participants, K::Char('a'), none, Some(Cmd::AddParticipant)),
            (Participants, K::Char('+'), none, Some(Cmd::AddParticipant)),
            (
                Participants,
                K::Char('x'),
                none,
                Some(Cmd::RemoveParticipant),
            ),
            (
                Participants,
                K::Char('-'),
                none,
                Some(Cmd::RemoveParticipant),
            ),
            (Participants, K::Delete, none, Some(Cmd::RemoveParticipant)),
            (Participants, K::Char('j'), none, Some(Cmd::Down)),
            (Participants, K::Up, none, Some(Cmd::Up)),
            (Participants, K::Esc, none, Some(Cmd::Back)),
            // Call keys pass down to the main screen.
            (Participants, K::Char('h'), none, None),
            (TransferRequest, K::Char('a'), none, Some(Cmd::Accept)),
            (TransferRequest, K::Enter, none, Some(Cmd::Accept)),
            (TransferRequest, K::Char('r'), none, Some(Cmd::Reject)),
            (TransferRequest, K::Esc, none, Some(Cmd::Back)),
            (TransferRequest, K::Char('b'), none, None),
            (Transfer, K::Char('p'), none, Some(Cmd::ToParticipant)),
            (Transfer, K::Char('c'), none, Some(Cmd::ToCall)),
            (Transfer, K::Char('v'), none, Some(Cmd::ToVoicemail)),
            (Transfer, K::Char('f'), none, Some(Cmd::NoForwarding)),
            (
                Transfer,
                K::Char('f'),
                KeyModifiers::CONTROL,
                Some(Cmd::NoForwarding),
            ),
            (Transfer, K::Enter, none, Some(Cmd::Select)),
            (Transfer, K::Esc, none, Some(Cmd::Back)),
            (Voicemail, K::Enter, none, Some(Cmd::Play)),
            (Voicemail, K::Char('s'), none, Some(Cmd::Stop)),
            (Voicemail, K::Char('n'), none, Some(Cmd::ToggleNew)),
            (Voicemail, K::Char('x'), none, Some(Cmd::Delete)),
            (Voicemail, K::Delete, none, Some(Cmd::Delete)),
            (Voicemail, K::Char('f'), none, Some(Cmd::Forwarding)),
            (Voicemail, K::Char('v'), none, Some(Cmd::Back)),
            (Voicemail, K::Char('h'), none, None),
            (Main, K::Char('z'), none, None),
            (Main, K::Char('h'), KeyModifiers::CONTROL, None),
            (Incoming, K::Char('a'), none, Some(Cmd::Accept)),
            (Incoming, K::Enter, none, Some(Cmd::Accept)),
            (Incoming, K::Char('r'), none, Some(Cmd::Reject)),
            (Incoming, K::Char('b'), none, Some(Cmd::RejectBusy)),
            (Incoming, K::Esc, none, Some(Cmd::Back)),
            (Incoming, K::Char('q'), none, None),
            (Devices, K::Tab, none, Some(Cmd::NextColumn)),
            (Devices, K::BackTab, shift, Some(Cmd::PrevColumn)),
            (Devices, K::Tab, shift, Some(Cmd::PrevColumn)),
            (Devices, K::Right, none, Some(Cmd::NextColumn)),
            (Devices, K::Left, none, Some(Cmd::PrevColumn)),
            (Devices, K::Enter, none, Some(Cmd::Select)),
            (Devices, K::Char(' '), none, Some(Cmd::Select)),
            (Devices, K::Char('t'), none, Some(Cmd::TestTone)),
            (Devices, K::Char('e'), none, Some(Cmd::EchoTest)),
            (Devices, K::Char('r'), none, Some(Cmd::Refresh)),
            (Devices, K::Char('m'), none, Some(Cmd::Mute)),
            (Devices, K::Char('d'), none, Some(Cmd::Back)),
            (Devices, K::Esc, none, Some(Cmd::Back)),
            (Help, K::Char('q'), none, Some(Cmd::Back)),
            (Help, K::Char('?'), none, Some(Cmd::Back)),
            (Help, K::Char('j'), none, Some(Cmd::Down)),
            (Confirm, K::Char('y'), none, Some(Cmd::Confirm)),
            (Confirm, K::Enter, none, Some(Cmd::Confirm)),
            (Confirm, K::Char('n'), none, Some(Cmd::Back)),
            (Confirm, K::Esc, none, Some(Cmd::Back)),
            (Confirm, K::Char('q'), none, None),
        ];
        let map = Keymap::default();
        for (ctx, code, mods, want) in cases {
            assert_eq!(
                map.lookup(*ctx, &ev(*code, *mods)),
                *want,
                "{ctx:?} {code:?} {mods:?}"
            );
        }
    }

    #[test]
    fn no_context_binds_a_key_twice() {
        // Keymap::new checks it; the default table must pass.
        Keymap::new(&KeysConfig::default()).unwrap();
    }

    #[test]
    fn key_strings_round_trip() {
        let cases = [
            ("a", "a"),
            ("A", "A"),
            ("?", "?"),
            ("space", "Space"),
            ("enter", "Enter"),
            ("Esc", "Esc"),
            ("tab", "Tab"),
            ("shift-tab", "S-Tab"),
            ("ctrl-d", "Ctrl-d"),
            ("Ctrl+D", "Ctrl-d"),
            ("alt-x", "Alt-x"),
            ("ctrl-alt-x", "Ctrl-Alt-x"),
            ("f1", "F1"),
            ("F12", "F12"),
            ("pgdn", "PgDn"),
            ("-", "-"),
        ];
        for (text, shown) in cases {
            let key: Key = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(key.to_string(), shown, "{text}");
            assert_eq!(
                shown.replace("S-Tab", "shift-tab").parse::<Key>().unwrap(),
                key,
                "{shown}"
            );
        }
        for bad in ["", "ctrl-", "f13", "f0", "hello", "ctrl-enterx"] {
            assert!(bad.parse::<Key>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn ctrl_letters_ignore_case() {
        let map = Keymap::new(&overrides(&[("hang_up", KeyList::One("ctrl-x".into()))])).unwrap();
        let upper = ev(
            KeyCode::Char('X'),
            KeyModifiers::CONTROL | KeyModifiers::SHIFT,
        );
        assert_eq!(map.lookup(Context::Main, &upper), Some(Cmd::HangUp));
    }

    fn overrides(items: &[(&str, KeyList)]) -> KeysConfig {
        KeysConfig(
            items
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn overrides_replace_keys_in_every_context() {
        let map = Keymap::new(&overrides(&[(
            "accept",
            KeyList::Many(vec!["y".into(), "ctrl-a".into()]),
        )]))
        .unwrap();
        let y = ev(KeyCode::Char('y'), KeyModifiers::NONE);
        assert_eq!(map.lookup(Context::Main, &y), Some(Cmd::Accept));
        assert_eq!(map.lookup(Context::Incoming, &y), Some(Cmd::Accept));
        assert_eq!(
            map.lookup(Context::Main, &ev(KeyCode::Char('a'), KeyModifiers::NONE)),
            None
        );
        assert_eq!(
            map.lookup(Context::Incoming, &ev(KeyCode::Enter, KeyModifiers::NONE)),
            None
        );
        assert_eq!(map.label(Context::Incoming, Cmd::Accept), "y, Ctrl-a");
    }

    #[test]
    fn an_override_takes_a_key_from_a_default() {
        let map = Keymap::new(&overrides(&[("hang_up", KeyList::One("m".into()))])).unwrap();
        let m = ev(KeyCode::Char('m'), KeyModifiers::NONE);
        assert_eq!(map.lookup(Context::Main, &m), Some(Cmd::HangUp));
        assert_eq!(map.label(Context::Main, Cmd::Mute), "");
        // Other contexts keep their own binding of m.
        assert_eq!(map.lookup(Context::Devices, &m), Some(Cmd::Mute));
        assert_eq!(
            map.lookup(Context::Main, &ev(KeyCode::Char('h'), KeyModifiers::NONE)),
            None
        );
    }

    #[test]
    fn an_empty_list_unbinds() {
        let map = Keymap::new(&overrides(&[("echo_test", KeyList::Many(vec![]))])).unwrap();
        assert_eq!(
            map.lookup(Context::Main, &ev(KeyCode::Char('e'), KeyModifiers::NONE)),
            None
        );
        assert_eq!(map.label(Context::Devices, Cmd::EchoTest), "");
    }

    #[test]
    fn bad_overrides_name_the_key_and_value() {
        let e = Keymap::new(&overrides(&[("hangup", KeyList::One("x".into()))])).unwrap_err();
        assert!(
            e.contains("tui.keys.hangup") && e.contains("hang_up"),
            "{e}"
        );
        let e = Keymap::new(&overrides(&[("mute", KeyList::One("ctrl-".into()))])).unwrap_err();
        assert!(
            e.contains("tui.keys.mute") && e.contains("\"ctrl-\""),
            "{e}"
        );
        let e = Keymap::new(&overrides(&[
            ("mute", KeyList::One("z".into())),
            ("hold", KeyList::One("z".into())),
        ]))
        .unwrap_err();
        assert!(
            e.contains("\"z\"") && e.contains("mute") && e.contains("hold"),
            "{e}"
        );
    }

    #[test]
    fn config_section_parses_from_toml() {
        #[derive(Deserialize)]
        struct Wrap {
            keys: KeysConfig,
        }
        let w: Wrap = toml::from_str("[keys]\nhang_up = \"x\"\naccept = [\"a\", \"y\"]\n").unwrap();
        let map = Keymap::new(&w.keys).unwrap();
        assert_eq!(map.label(Context::Main, Cmd::HangUp), "x");
        assert_eq!(map.label(Context::Main, Cmd::Dismiss), "");
        assert_eq!(map.label(Context::Incoming, Cmd::Accept), "a, y");
    }

    #[test]
    fn every_command_has_a_default_key_and_a_unique_name() {
        for cmd in Cmd::ALL {
            assert!(
                DEFAULTS
                    .iter()
                    .any(|(_, c, keys)| *c == cmd && !keys.is_empty()),
                "{cmd:?}"
            );
            assert_eq!(Cmd::from_name(cmd.name()), Some(cmd));
        }
    }
}
