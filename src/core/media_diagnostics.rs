//! Which microphone and speaker are in use, and the user-facing media diagnostics (ACS
//! `UserFacingDiagnostics`, media part): derived state, computed from what the engine reports
//! (the user's choice and how opening it went, device listings polled off the hot path, a
//! running device's failure, the microphone level while muted) and reported on change.
//!
//! The decisions live here, the engine only carries them out:
//! - a device that cannot be opened is replaced by silence (nothing captured, playout
//!   discarded), and opened again once the listing changes (a device appears, the sound server
//!   comes back);
//! - with `default` chosen, a new default device is followed;
//! - a chosen device that disappears, or fails while running, falls back to the default, and
//!   is taken up again when it comes back.
//!
//! Every automatic switch is reported ([`DeviceSwitch`]); the diagnostics are evaluated once the
//! switches an input set off have settled, so a device replaced at once is never reported as
//! failed.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::devices::{DeviceKind, DeviceSpec};

/// Microphone level (RMS) that counts as speech while muted: about -34 dBFS, above room noise
/// on a typical microphone.
pub const MUTED_SPEECH_RMS: f32 = 0.02;
/// Speech this long while muted raises `speakingWhileMicrophoneIsMuted`.
pub const MUTED_SPEECH_MIN: Duration = Duration::from_millis(300);
/// A pause longer than this starts a new utterance.
pub const MUTED_SPEECH_GAP: Duration = Duration::from_millis(500);
/// Quiet this long (or unmuting, or the call ending) clears it.
pub const MUTED_SPEECH_HOLD: Duration = Duration::from_secs(2);
/// A running device that fails again within this time is not reopened at once: silence stands
/// in until the device listing changes.
pub const REOPEN_EVERY: Duration = Duration::from_secs(5);

/// The media diagnostics, named as in ACS and shared/agent-contract.md. All are flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MediaDiagnostic {
    /// The sound system lists no microphone (or cannot be asked).
    NoMicrophoneDevicesEnumerated,
    /// The sound system lists no speaker (or cannot be asked).
    NoSpeakerDevicesEnumerated,
    /// The chosen microphone cannot be opened or stopped working; silence stands in.
    MicrophoneNotFunctioning,
    /// The chosen speaker cannot be opened or stopped working; playout is discarded.
    SpeakerNotFunctioning,
    /// The user is talking into a muted call.
    SpeakingWhileMicrophoneIsMuted,
    /// Named by the contract for video; not reported by this build.
    CameraStartFailed,
    /// Named by the contract for video; not reported by this build.
    CameraFreeze,
}

impl MediaDiagnostic {
    /// The ACS name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            MediaDiagnostic::NoMicrophoneDevicesEnumerated => "noMicrophoneDevicesEnumerated",
            MediaDiagnostic::NoSpeakerDevicesEnumerated => "noSpeakerDevicesEnumerated",
            MediaDiagnostic::MicrophoneNotFunctioning => "microphoneNotFunctioning",
            MediaDiagnostic::SpeakerNotFunctioning => "speakerNotFunctioning",
            MediaDiagnostic::SpeakingWhileMicrophoneIsMuted => "speakingWhileMicrophoneIsMuted",
            MediaDiagnostic::CameraStartFailed => "cameraStartFailed",
            MediaDiagnostic::CameraFreeze => "cameraFreeze",
        }
    }

    fn not_functioning(kind: DeviceKind) -> MediaDiagnostic {
        match kind {
            DeviceKind::Microphone => MediaDiagnostic::MicrophoneNotFunctioning,
            DeviceKind::Speaker => MediaDiagnostic::SpeakerNotFunctioning,
        }
    }

    fn none_enumerated(kind: DeviceKind) -> MediaDiagnostic {
        match kind {
            DeviceKind::Microphone => MediaDiagnostic::NoMicrophoneDevicesEnumerated,
            DeviceKind::Speaker => MediaDiagnostic::NoSpeakerDevicesEnumerated,
        }
    }
}

/// One change to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDiagnosticChange {
    /// The call it is about (only `speakingWhileMicrophoneIsMuted` names one); `None` for the
    /// device as a whole.
    pub call_id: Option<String>,
    pub diagnostic: MediaDiagnostic,
    pub value: bool,
    /// Why, in words, when something is wrong.
    pub message: Option<String>,
}

/// A device as the sound system lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    /// The host's id (a PulseAudio sink or source name, an ALSA PCM name).
    pub id: String,
    /// Its human name.
    pub name: String,
}

/// What the sound system offers now: one poll of the device listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSnapshot {
    /// The host asked (`PulseAudio`, `ALSA`).
    pub host: String,
    pub microphones: Vec<DeviceEntry>,
    pub speakers: Vec<DeviceEntry>,
    /// The ids of the default devices, if the host has them.
    pub default_microphone: Option<String>,
    pub default_speaker: Option<String>,
}

impl DeviceSnapshot {
    pub fn list(&self, kind: DeviceKind) -> &[DeviceEntry] {
        match kind {
            DeviceKind::Microphone => &self.microphones,
            DeviceKind::Speaker => &self.speakers,
        }
    }

    pub fn default_id(&self, kind: DeviceKind) -> Option<&str> {
        match kind {
            DeviceKind::Microphone => self.default_microphone.as_deref(),
            DeviceKind::Speaker => self.default_speaker.as_deref(),
        }
    }

    fn has_id(&self, kind: DeviceKind, id: &str) -> bool {
        self.list(kind).iter().any(|d| d.id == id)
    }

    /// The device a name means, matched as opening it would ([`crate::devices::best_match`]).
    pub fn find(&self, kind: DeviceKind, wanted: &str) -> Option<&DeviceEntry> {
        let list = self.list(kind);
        let names = list.iter().map(|d| (d.name.as_str(), d.id.as_str()));
        crate::devices::best_match(names, wanted).and_then(|i| list.get(i))
    }
}

/// A listing, or why the sound system could not be asked.
pub type Enumeration = Result<DeviceSnapshot, String>;

/// A device the engine opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Its human name (the spec for virtual devices).
    pub name: String,
    /// The host's id of a real device, for knowing when the default moved or it went away.
    pub id: Option<String>,
}

impl Opened {
    /// A virtual device (`silence`, `tone:`, `file:`, `record:`): named by its spec, no id.
    #[must_use]
    pub fn virtual_device(spec: &DeviceSpec) -> Opened {
        Opened {
            name: spec.to_string(),
            id: None,
        }
    }
}

/// Why a device was switched without being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchReason {
    /// `default` is chosen and the system's default device changed.
    DefaultChanged,
    /// The chosen device went away or failed: the default stands in.
    Fallback,
    /// The chosen device is back, and used again.
    Restored,
    /// A device works again after none did.
    Recovered,
    /// No device works: silence stands in.
    Failed,
}

impl SwitchReason {
    pub fn name(self) -> &'static str {
        match self {
            SwitchReason::DefaultChanged => "defaultChanged",
            SwitchReason::Fallback => "fallback",
            SwitchReason::Restored => "restored",
            SwitchReason::Recovered => "recovered",
            SwitchReason::Failed => "failed",
        }
    }
}

/// A device switched without being asked.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSwitch {
    pub kind: DeviceKind,
    /// What the user chose.
    pub wanted: DeviceSpec,
    /// What is in use now: the chosen spec, `default` standing in, or `silence`.
    pub using: DeviceSpec,
    /// The device's own name, for a real one.
    pub name: Option<String>,
    pub reason: SwitchReason,
    /// What happened, in words.
    pub message: String,
}

/// What the engine must do or tell.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceOutput {
    /// Open this device on that end, keeping the current one if it fails; answer with
    /// [`MediaDevices::opened`].
    Open {
        kind: DeviceKind,
        spec: DeviceSpec,
    },
    Diagnostic(MediaDiagnosticChange),
    Switched(DeviceSwitch),
}

/// One input to [`MediaDevices::handle`]: what the engine saw.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceInput {
    /// The user's choice (at start, or a live switch), and how opening it went.
    Chosen {
        kind: DeviceKind,
        spec: DeviceSpec,
        opened: Result<Opened, String>,
    },
    /// An [`DeviceOutput::Open`] finished.
    Opened {
        kind: DeviceKind,
        spec: DeviceSpec,
        result: Result<Opened, String>,
    },
    /// A running device failed.
    StreamFailed { kind: DeviceKind, message: String },
    /// A poll of the device listing.
    Enumerated(Enumeration),
    /// The microphone level (RMS, 0..1) and the connected call that is muted, if any.
    MicLevel {
        level: f32,
        muted_call: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The chosen device.
    Wanted,
    /// The default (or silence) in place of the chosen device.
    StandIn,
}

#[derive(Debug, Clone)]
struct Active {
    spec: DeviceSpec,
    opened: Opened,
    role: Role,
}

#[derive(Debug, Clone)]
struct Attempt {
    spec: DeviceSpec,
    reason: SwitchReason,
    /// The device still open if this fails works: keep it rather than fall further.
    previous_works: bool,
}

#[derive(Debug)]
struct Slot {
    kind: DeviceKind,
    wanted: DeviceSpec,
    active: Active,
    /// Why the chosen device does not work, while it does not (silence stands in).
    failure: Option<String>,
    /// The listing generation when an automatic open last failed: tried again only once the
    /// listing has changed.
    failed_gen: Option<u64>,
    /// When a running device's failure was last answered by reopening.
    reopened_at: Option<Instant>,
    attempt: Option<Attempt>,
}

impl Slot {
    fn new(kind: DeviceKind) -> Slot {
        Slot {
            kind,
            wanted: DeviceSpec::Silence,
            active: Active {
                spec: DeviceSpec::Silence,
                opened: Opened::virtual_device(&DeviceSpec::Silence),
                role: Role::Wanted,
            },
            failure: None,
            failed_gen: None,
            reopened_at: None,
            attempt: None,
        }
    }

    fn wants_real(&self) -> bool {
        !self.wanted.is_virtual()
    }

    fn silent(&self) -> bool {
        self.active.spec == DeviceSpec::Silence
    }
}

/// Speech heard while muted.
#[derive(Debug, Default)]
struct MutedSpeech {
    first: Option<Instant>,
    last: Option<Instant>,
    on: bool,
    call_id: Option<String>,
}

/// The state behind device choice and the media diagnostics.
#[derive(Debug)]
pub struct MediaDevices {
    slots: [Slot; 2],
    /// The last listing, and how many times it has changed.
    listing: Option<Enumeration>,
    generation: u64,
    muted: MutedSpeech,
    /// The last value reported for each diagnostic.
    reported: BTreeMap<MediaDiagnostic, bool>,
    out: VecDeque<DeviceOutput>,
}

impl Default for MediaDevices {
    fn default() -> Self {
        MediaDevices {
            slots: [
                Slot::new(DeviceKind::Microphone),
                Slot::new(DeviceKind::Speaker),
            ],
            listing: None,
            generation: 0,
            muted: MutedSpeech::default(),
            reported: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }
}

fn index(kind: DeviceKind) -> usize {
    match kind {
        DeviceKind::Microphone => 0,
        DeviceKind::Speaker => 1,
    }
}

impl MediaDevices {
    /// Feeds one input; drain [`MediaDevices::poll_output`] afterwards.
    pub fn handle(&mut self, input: DeviceInput, now: Instant) {
        match input {
            DeviceInput::Chosen { kind, spec, opened } => self.chosen(kind, spec, opened),
            DeviceInput::Opened { kind, spec, result } => self.opened(kind, spec, result),
            DeviceInput::StreamFailed { kind, message } => self.stream_failed(kind, message, now),
            DeviceInput::Enumerated(listing) => self.enumerated(listing),
            DeviceInput::MicLevel { level, muted_call } => {
                self.mic_level(level, muted_call.as_deref(), now)
            }
        }
    }

    /// The user's choice (at start, or a live switch), and how opening it went. On an error the
    /// engine still has what it had (silence at start): silence stands in, the choice is kept
    /// and opened again once the device listing changes.
    pub fn chosen(&mut self, kind: DeviceKind, spec: DeviceSpec, opened: Result<Opened, String>) {
        let generation = self.generation;
        let slot = &mut self.slots[index(kind)];
        slot.wanted = spec.clone();
        slot.attempt = None;
        slot.reopened_at = None;
        match opened {
            Ok(opened) => {
                slot.active = Active {
                    spec,
                    opened,
                    role: Role::Wanted,
                };
                slot.failure = None;
                slot.failed_gen = None;
            }
            Err(why) => {
                slot.failure = Some(why);
                slot.failed_gen = Some(generation);
                if slot.silent() {
                    slot.active.role = Role::StandIn;
                } else {
                    self.attempt(kind, DeviceSpec::Silence, SwitchReason::Failed, false);
                }
            }
        }
        self.settle();
    }

    /// An [`DeviceOutput::Open`] finished.
    pub fn opened(&mut self, kind: DeviceKind, spec: DeviceSpec, result: Result<Opened, String>) {
        let generation = self.generation;
        let slot = &mut self.slots[index(kind)];
        let Some(attempt) = slot.attempt.take_if(|a| a.spec == spec) else {
            return;
        };
        match result {
            Ok(opened) => {
                let role = if spec == slot.wanted {
                    Role::Wanted
                } else {
                    Role::StandIn
                };
                let name = (!spec.is_virtual()).then(|| opened.name.clone());
                slot.active = Active {
                    spec: spec.clone(),
                    opened,
                    role,
                };
                if spec == DeviceSpec::Silence && slot.wanted != DeviceSpec::Silence {
                    slot.failed_gen = Some(generation);
                } else {
                    slot.failure = None;
                    slot.failed_gen = None;
                }
                let message = switch_message(slot, attempt.reason);
                self.out.push_back(DeviceOutput::Switched(DeviceSwitch {
                    kind,
                    wanted: slot.wanted.clone(),
                    using: spec,
                    name,
                    reason: attempt.reason,
                    message,
                }));
            }
            Err(why) => {
                tracing::debug!("{kind} `{spec}` did not open: {why}");
                slot.failed_gen = Some(generation);
                if !attempt.previous_works {
                    slot.failure = Some(why);
                    let next = match &spec {
                        DeviceSpec::Named(_) => Some((DeviceSpec::Default, SwitchReason::Fallback)),
                        _ if slot.silent() => {
                            slot.active.role = Role::StandIn;
                            None
                        }
                        DeviceSpec::Silence => None,
                        _ => Some((DeviceSpec::Silence, SwitchReason::Failed)),
                    };
                    if let Some((spec, reason)) = next {
                        self.attempt(kind, spec, reason, false);
                    }
                }
            }
        }
        self.settle();
    }

    /// A running device failed (unplugged, the sound server went away). It is reopened at once
    /// (the default standing in for a chosen device that is gone), unless it failed a moment
    /// ago: then silence stands in until the listing changes.
    pub fn stream_failed(&mut self, kind: DeviceKind, message: String, now: Instant) {
        let slot = &mut self.slots[index(kind)];
        // Virtual devices report their own errors (a file that cannot be written); the
        // diagnostics are about sound devices.
        if slot.active.spec.is_virtual() || slot.attempt.is_some() {
            return;
        }
        slot.failure = Some(message);
        let recent = slot
            .reopened_at
            .is_some_and(|t| now.saturating_duration_since(t) < REOPEN_EVERY);
        if recent {
            slot.failed_gen = Some(self.generation);
            self.attempt(kind, DeviceSpec::Silence, SwitchReason::Failed, false);
        } else {
            slot.reopened_at = Some(now);
            let gone = match (&slot.wanted, &self.listing) {
                (DeviceSpec::Named(n), Some(Ok(s))) => s.find(kind, n).is_none(),
                _ => false,
            };
            let (spec, reason) = if gone {
                (DeviceSpec::Default, SwitchReason::Fallback)
            } else {
                (slot.wanted.clone(), SwitchReason::Recovered)
            };
            self.attempt(kind, spec, reason, false);
        }
        self.settle();
    }

    /// A poll of the device listing.
    pub fn enumerated(&mut self, listing: Enumeration) {
        if self.listing.as_ref() != Some(&listing) {
            self.generation += 1;
            self.listing = Some(listing);
        }
        for kind in [DeviceKind::Microphone, DeviceKind::Speaker] {
            self.follow(kind);
        }
        self.settle();
    }

    /// The microphone level (RMS, 0..1) and the connected call that is muted, if any; the
    /// engine reports it a few times a second.
    pub fn mic_level(&mut self, level: f32, muted_call: Option<&str>, now: Instant) {
        let m = &mut self.muted;
        match muted_call {
            // The call it was about is kept, so that clearing it names the call too.
            None => {
                let call_id = m.call_id.take();
                *m = MutedSpeech {
                    call_id,
                    ..MutedSpeech::default()
                };
            }
            Some(id) => {
                m.call_id = Some(id.to_owned());
                if level >= MUTED_SPEECH_RMS {
                    if m.last
                        .is_none_or(|l| now.saturating_duration_since(l) > MUTED_SPEECH_GAP)
                    {
                        m.first = Some(now);
                    }
                    m.last = Some(now);
                    if m.first
                        .is_some_and(|f| now.saturating_duration_since(f) >= MUTED_SPEECH_MIN)
                    {
                        m.on = true;
                    }
                } else if m
                    .last
                    .is_some_and(|l| now.saturating_duration_since(l) >= MUTED_SPEECH_HOLD)
                {
                    m.first = None;
                    m.last = None;
                    m.on = false;
                }
            }
        }
        self.settle();
    }

    /// Whether the device listing is worth polling: a real device is chosen on some end.
    pub fn watching(&self) -> bool {
        self.slots.iter().any(Slot::wants_real)
    }

    /// What is in use on that end now.
    pub fn using(&self, kind: DeviceKind) -> &DeviceSpec {
        &self.slots[index(kind)].active.spec
    }

    pub fn poll_output(&mut self) -> Option<DeviceOutput> {
        self.out.pop_front()
    }

    /// Decides what a (possibly new) listing means for one end.
    fn follow(&mut self, kind: DeviceKind) {
        let Some(Ok(snap)) = &self.listing else {
            return;
        };
        let slot = &self.slots[index(kind)];
        if !slot.wants_real() || slot.attempt.is_some() {
            return;
        }
        let fresh = slot.failed_gen.is_none_or(|g| self.generation > g);
        let default = snap.default_id(kind);
        let active_id = slot.active.opened.id.as_deref();
        let default_moved = matches!((default, active_id), (Some(d), Some(a)) if d != a);
        let next = match (&slot.wanted, slot.active.role, slot.silent()) {
            // Silence stands in: try again once something changed.
            (_, _, true) if !fresh => None,
            (DeviceSpec::Named(n), _, true) if snap.find(kind, n).is_some() => {
                Some((slot.wanted.clone(), SwitchReason::Recovered, false))
            }
            (_, _, true) if default.is_some() => {
                let reason = if slot.wanted == DeviceSpec::Default {
                    SwitchReason::Recovered
                } else {
                    SwitchReason::Fallback
                };
                Some((DeviceSpec::Default, reason, false))
            }
            (_, _, true) => None,
            // The chosen device went away.
            (DeviceSpec::Named(_), Role::Wanted, false)
                if active_id.is_some_and(|id| !snap.has_id(kind, id)) =>
            {
                Some((DeviceSpec::Default, SwitchReason::Fallback, false))
            }
            // It is back.
            (DeviceSpec::Named(n), Role::StandIn, false)
                if fresh && snap.find(kind, n).is_some() =>
            {
                Some((slot.wanted.clone(), SwitchReason::Restored, true))
            }
            // The default moved: follow it (with `default` chosen, or standing in).
            (DeviceSpec::Default, _, false) | (DeviceSpec::Named(_), Role::StandIn, false)
                if fresh && default_moved =>
            {
                Some((DeviceSpec::Default, SwitchReason::DefaultChanged, true))
            }
            _ => None,
        };
        if let Some((spec, reason, previous_works)) = next {
            self.attempt(kind, spec, reason, previous_works);
        }
    }

    fn attempt(
        &mut self,
        kind: DeviceKind,
        spec: DeviceSpec,
        reason: SwitchReason,
        previous_works: bool,
    ) {
        self.slots[index(kind)].attempt = Some(Attempt {
            spec: spec.clone(),
            reason,
            previous_works,
        });
        self.out.push_back(DeviceOutput::Open { kind, spec });
    }

    /// Reports what changed, once no open is under way.
    fn settle(&mut self) {
        if self.slots.iter().any(|s| s.attempt.is_some()) {
            return;
        }
        for kind in [DeviceKind::Microphone, DeviceKind::Speaker] {
            let slot = &self.slots[index(kind)];
            let failure = slot.failure.clone();
            self.report(
                None,
                MediaDiagnostic::not_functioning(kind),
                failure.is_some(),
                failure,
            );
            let none = match &self.listing {
                None => continue,
                Some(Err(why)) => Some(why.clone()),
                Some(Ok(s)) if s.list(kind).is_empty() => {
                    Some(format!("the sound system ({}) lists no {kind}", s.host))
                }
                Some(Ok(_)) => None,
            };
            self.report(
                None,
                MediaDiagnostic::none_enumerated(kind),
                none.is_some(),
                none,
            );
        }
        let message = self
            .muted
            .on
            .then(|| "you are speaking while your microphone is muted".to_owned());
        let call_id = self.muted.call_id.clone();
        self.report(
            call_id,
            MediaDiagnostic::SpeakingWhileMicrophoneIsMuted,
            self.muted.on,
            message,
        );
    }

    /// Reports `value` if it differs from the last one; a first report only if it is set, so
    /// a healthy device says nothing.
    fn report(
        &mut self,
        call_id: Option<String>,
        diagnostic: MediaDiagnostic,
        value: bool,
        message: Option<String>,
    ) {
        match self.reported.get(&diagnostic) {
            Some(v) if *v == value => return,
            None if !value => return,
            _ => {}
        }
        self.reported.insert(diagnostic, value);
        self.out
            .push_back(DeviceOutput::Diagnostic(MediaDiagnosticChange {
                call_id,
                diagnostic,
                value,
                message,
            }));
    }
}

/// The words for a switch that just happened.
fn switch_message(slot: &Slot, reason: SwitchReason) -> String {
    let kind = slot.kind;
    let name = &slot.active.opened.name;
    let wanted = &slot.wanted;
    match reason {
        SwitchReason::DefaultChanged => format!("the default {kind} is now `{name}`: following it"),
        SwitchReason::Fallback => {
            format!("{kind} `{wanted}` is not available: using the default, `{name}`")
        }
        SwitchReason::Restored => format!("{kind} `{wanted}` is back: using it again"),
        SwitchReason::Recovered => format!("the {kind} works again: `{name}`"),
        SwitchReason::Failed => {
            let what = match kind {
                DeviceKind::Microphone => "nothing is captured",
                DeviceKind::Speaker => "what would play is discarded",
            };
            match &slot.failure {
                Some(why) => format!("no {kind} works ({why}): {what} until one does"),
                None => format!("no {kind} works: {what} until one does"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceKind::{Microphone, Speaker};

    fn entry(id: &str, name: &str) -> DeviceEntry {
        DeviceEntry {
            id: id.into(),
            name: name.into(),
        }
    }

    fn snap(sinks: &[&str], default_sink: &str) -> Enumeration {
        Ok(DeviceSnapshot {
            host: "PulseAudio".into(),
            microphones: vec![entry("test.monitor", "Monitor of Null Output")],
            speakers: sinks
                .iter()
                .map(|s| entry(s, &format!("Sink {s}")))
                .collect(),
            default_microphone: Some("test.monitor".into()),
            default_speaker: Some(default_sink.into()),
        })
    }

    fn opened(id: &str) -> Result<Opened, String> {
        Ok(Opened {
            name: format!("Sink {id}"),
            id: Some(id.into()),
        })
    }

    fn outputs(d: &mut MediaDevices) -> Vec<DeviceOutput> {
        std::iter::from_fn(|| d.poll_output()).collect()
    }

    fn diagnostics(out: &[DeviceOutput]) -> Vec<(MediaDiagnostic, bool)> {
        out.iter()
            .filter_map(|o| match o {
                DeviceOutput::Diagnostic(c) => Some((c.diagnostic, c.value)),
                _ => None,
            })
            .collect()
    }

    fn opens(out: &[DeviceOutput]) -> Vec<(DeviceKind, DeviceSpec)> {
        out.iter()
            .filter_map(|o| match o {
                DeviceOutput::Open { kind, spec } => Some((*kind, spec.clone())),
                _ => None,
            })
            .collect()
    }

    fn switches(out: &[DeviceOutput]) -> Vec<(SwitchReason, DeviceSpec)> {
        out.iter()
            .filter_map(|o| match o {
                DeviceOutput::Switched(s) => Some((s.reason, s.using.clone())),
                _ => None,
            })
            .collect()
    }

    fn named(n: &str) -> DeviceSpec {
        DeviceSpec::Named(n.into())
    }

    #[test]
    fn healthy_devices_say_nothing() {
        let mut d = MediaDevices::default();
        d.chosen(Microphone, DeviceSpec::Default, opened("test.monitor"));
        d.chosen(Speaker, DeviceSpec::Default, opened("test"));
        d.enumerated(snap(&["test"], "test"));
        assert!(outputs(&mut d).is_empty());
        assert!(d.watching());
        let mut v = MediaDevices::default();
        v.chosen(Microphone, DeviceSpec::Tone(440.0), opened("x"));
        v.chosen(Speaker, DeviceSpec::Silence, opened("x"));
        assert!(!v.watching());
        assert!(outputs(&mut v).is_empty());
    }

    #[test]
    fn no_sound_system_keeps_silence_reports_it_and_recovers_when_devices_appear() {
        let mut d = MediaDevices::default();
        d.chosen(
            Microphone,
            DeviceSpec::Default,
            Err("microphone `Default Audio Device` offers no usable stream format".into()),
        );
        d.chosen(Speaker, DeviceSpec::Default, Err("no speaker".into()));
        let out = outputs(&mut d);
        // Silence was already open (the engine's start): nothing to open, two failures to say.
        assert!(opens(&out).is_empty(), "{out:?}");
        assert_eq!(
            diagnostics(&out),
            [
                (MediaDiagnostic::MicrophoneNotFunctioning, true),
                (MediaDiagnostic::SpeakerNotFunctioning, true)
            ]
        );
        let DeviceOutput::Diagnostic(first) = &out[0] else {
            unreachable!()
        };
        assert!(
            first
                .message
                .as_deref()
                .unwrap()
                .contains("usable stream format")
        );
        assert_eq!(first.call_id, None);
        // The listing: ALSA with no card.
        let empty = Ok(DeviceSnapshot {
            host: "ALSA".into(),
            default_microphone: Some("default".into()),
            default_speaker: Some("default".into()),
            ..Default::default()
        });
        d.enumerated(empty.clone());
        let out = outputs(&mut d);
        // A first retry (the listing is new), which fails again...
        assert_eq!(
            opens(&out),
            [
                (Microphone, DeviceSpec::Default),
                (Speaker, DeviceSpec::Default)
            ]
        );
        d.opened(Microphone, DeviceSpec::Default, Err("still nothing".into()));
        d.opened(Speaker, DeviceSpec::Default, Err("still nothing".into()));
        let out = outputs(&mut d);
        assert!(opens(&out).is_empty(), "silence is already in: {out:?}");
        assert_eq!(
            diagnostics(&out),
            [
                (MediaDiagnostic::NoMicrophoneDevicesEnumerated, true),
                (MediaDiagnostic::NoSpeakerDevicesEnumerated, true)
            ]
        );
        let DeviceOutput::Diagnostic(c) = &out[0] else {
            unreachable!()
        };
        assert!(c.message.as_deref().unwrap().contains("ALSA"), "{c:?}");
        // ...and no more tries while nothing changes.
        d.enumerated(empty);
        assert!(outputs(&mut d).is_empty());
        // PulseAudio comes up: both ends open and it is said.
        d.enumerated(snap(&["test"], "test"));
        let out = outputs(&mut d);
        assert_eq!(opens(&out).len(), 2);
        d.opened(Microphone, DeviceSpec::Default, opened("test.monitor"));
        d.opened(Speaker, DeviceSpec::Default, opened("test"));
        let out = outputs(&mut d);
        assert_eq!(
            switches(&out),
            [
                (SwitchReason::Recovered, DeviceSpec::Default),
                (SwitchReason::Recovered, DeviceSpec::Default)
            ]
        );
        let mut diags = diagnostics(&out);
        diags.sort();
        assert_eq!(
            diags,
            [
                (MediaDiagnostic::NoMicrophoneDevicesEnumerated, false),
                (MediaDiagnostic::NoSpeakerDevicesEnumerated, false),
                (MediaDiagnostic::MicrophoneNotFunctioning, false),
                (MediaDiagnostic::SpeakerNotFunctioning, false),
            ]
        );
        assert_eq!(d.using(Speaker), &DeviceSpec::Default);
    }

    #[test]
    fn the_default_is_followed() {
        let mut d = MediaDevices::default();
        d.chosen(Speaker, DeviceSpec::Default, opened("test"));
        d.enumerated(snap(&["test"], "test"));
        assert!(outputs(&mut d).is_empty());
        // A headset appears: nothing moves until it becomes the default.
        d.enumerated(snap(&["test", "usb"], "test"));
        assert!(outputs(&mut d).is_empty());
        d.enumerated(snap(&["test", "usb"], "usb"));
        let out = outputs(&mut d);
        assert_eq!(opens(&out), [(Speaker, DeviceSpec::Default)]);
        d.opened(Speaker, DeviceSpec::Default, opened("usb"));
        let out = outputs(&mut d);
        assert_eq!(
            switches(&out),
            [(SwitchReason::DefaultChanged, DeviceSpec::Default)]
        );
        let DeviceOutput::Switched(s) = &out[0] else {
            unreachable!()
        };
        assert!(s.message.contains("Sink usb"), "{}", s.message);
        assert!(diagnostics(&out).is_empty());
        // A follow that fails keeps the device that works, and is not retried until the
        // listing changes again.
        d.enumerated(snap(&["test", "usb"], "test"));
        assert_eq!(opens(&outputs(&mut d)).len(), 1);
        d.opened(Speaker, DeviceSpec::Default, Err("busy".into()));
        assert!(outputs(&mut d).is_empty());
        d.enumerated(snap(&["test", "usb"], "test"));
        assert!(outputs(&mut d).is_empty());
    }

    #[test]
    fn a_chosen_device_that_goes_falls_back_to_the_default_and_comes_back() {
        let mut d = MediaDevices::default();
        d.chosen(Speaker, named("usb"), opened("usb"));
        d.enumerated(snap(&["test", "usb"], "test"));
        assert!(outputs(&mut d).is_empty());
        d.enumerated(snap(&["test"], "test"));
        let out = outputs(&mut d);
        assert_eq!(opens(&out), [(Speaker, DeviceSpec::Default)]);
        d.opened(Speaker, DeviceSpec::Default, opened("test"));
        let out = outputs(&mut d);
        assert_eq!(
            switches(&out),
            [(SwitchReason::Fallback, DeviceSpec::Default)]
        );
        let DeviceOutput::Switched(s) = &out[0] else {
            unreachable!()
        };
        assert!(
            s.message.contains("`usb` is not available") && s.message.contains("Sink test"),
            "{}",
            s.message
        );
        assert!(diagnostics(&out).is_empty(), "the stand-in works: {out:?}");
        // Back: used again.
        d.enumerated(snap(&["test", "usb"], "test"));
        let out = outputs(&mut d);
        assert_eq!(opens(&out), [(Speaker, named("usb"))]);
        d.opened(Speaker, named("usb"), opened("usb"));
        assert_eq!(
            switches(&outputs(&mut d)),
            [(SwitchReason::Restored, named("usb"))]
        );
    }

    #[test]
    fn a_running_device_that_fails_is_reopened_then_given_up_for_silence() {
        let t0 = Instant::now();
        let mut d = MediaDevices::default();
        d.chosen(Microphone, DeviceSpec::Default, opened("test.monitor"));
        d.stream_failed(Microphone, "PulseAudio disconnected".into(), t0);
        let out = outputs(&mut d);
        assert_eq!(opens(&out), [(Microphone, DeviceSpec::Default)]);
        assert!(diagnostics(&out).is_empty(), "not settled yet: {out:?}");
        d.opened(Microphone, DeviceSpec::Default, opened("test.monitor"));
        let out = outputs(&mut d);
        assert_eq!(
            switches(&out),
            [(SwitchReason::Recovered, DeviceSpec::Default)]
        );
        assert!(diagnostics(&out).is_empty(), "reopened at once: {out:?}");
        // Again a moment later: silence, reported.
        d.stream_failed(
            Microphone,
            "PulseAudio disconnected".into(),
            t0 + Duration::from_secs(1),
        );
        let out = outputs(&mut d);
        assert_eq!(opens(&out), [(Microphone, DeviceSpec::Silence)]);
        d.opened(Microphone, DeviceSpec::Silence, opened("silence"));
        let out = outputs(&mut d);
        assert_eq!(
            switches(&out),
            [(SwitchReason::Failed, DeviceSpec::Silence)]
        );
        assert_eq!(
            diagnostics(&out),
            [(MediaDiagnostic::MicrophoneNotFunctioning, true)]
        );
        // Failures of virtual devices are theirs to report.
        d.stream_failed(Microphone, "again".into(), t0 + Duration::from_secs(10));
        assert!(outputs(&mut d).is_empty());
    }

    #[test]
    fn a_reopen_that_fails_falls_through_to_the_default_then_silence() {
        let t0 = Instant::now();
        let mut d = MediaDevices::default();
        d.chosen(Speaker, named("usb"), opened("usb"));
        d.stream_failed(Speaker, "gone".into(), t0);
        assert_eq!(opens(&outputs(&mut d)), [(Speaker, named("usb"))]);
        d.opened(Speaker, named("usb"), Err("no speaker named `usb`".into()));
        assert_eq!(opens(&outputs(&mut d)), [(Speaker, DeviceSpec::Default)]);
        d.opened(Speaker, DeviceSpec::Default, Err("no default".into()));
        assert_eq!(opens(&outputs(&mut d)), [(Speaker, DeviceSpec::Silence)]);
        d.opened(Speaker, DeviceSpec::Silence, opened("silence"));
        let out = outputs(&mut d);
        assert_eq!(
            diagnostics(&out),
            [(MediaDiagnostic::SpeakerNotFunctioning, true)]
        );
        let DeviceOutput::Diagnostic(c) = out.last().unwrap() else {
            unreachable!()
        };
        assert_eq!(c.message.as_deref(), Some("no default"));
        // A choice made by the user clears it.
        d.chosen(Speaker, DeviceSpec::Silence, opened("silence"));
        assert_eq!(
            diagnostics(&outputs(&mut d)),
            [(MediaDiagnostic::SpeakerNotFunctioning, false)]
        );
        assert!(!d.watching());
    }

    #[test]
    fn a_listing_that_fails_is_reported() {
        let mut d = MediaDevices::default();
        d.chosen(Microphone, DeviceSpec::Default, opened("test.monitor"));
        d.enumerated(Err(
            "cannot list microphones on host PulseAudio: refused".into()
        ));
        let out = outputs(&mut d);
        assert_eq!(
            diagnostics(&out),
            [
                (MediaDiagnostic::NoMicrophoneDevicesEnumerated, true),
                (MediaDiagnostic::NoSpeakerDevicesEnumerated, true)
            ]
        );
        assert!(opens(&out).is_empty(), "nothing to decide on: {out:?}");
    }

    #[test]
    fn speaking_while_muted_needs_speech_and_clears_after_quiet_or_unmute() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut d = MediaDevices::default();
        // A click is not speech.
        d.mic_level(0.2, Some("c1"), ms(0));
        d.mic_level(0.0, Some("c1"), ms(100));
        d.mic_level(0.0, Some("c1"), ms(700));
        d.mic_level(0.2, Some("c1"), ms(800));
        assert!(outputs(&mut d).is_empty());
        d.mic_level(0.2, Some("c1"), ms(900));
        d.mic_level(0.2, Some("c1"), ms(1000));
        assert!(outputs(&mut d).is_empty());
        d.mic_level(0.2, Some("c1"), ms(1100));
        let out = outputs(&mut d);
        assert_eq!(
            diagnostics(&out),
            [(MediaDiagnostic::SpeakingWhileMicrophoneIsMuted, true)]
        );
        let DeviceOutput::Diagnostic(c) = &out[0] else {
            unreachable!()
        };
        assert_eq!(c.call_id.as_deref(), Some("c1"));
        // Short pauses keep it; two seconds of quiet clear it.
        d.mic_level(0.0, Some("c1"), ms(1500));
        d.mic_level(0.0, Some("c1"), ms(3000));
        assert!(outputs(&mut d).is_empty());
        d.mic_level(0.0, Some("c1"), ms(3100));
        assert_eq!(
            diagnostics(&outputs(&mut d)),
            [(MediaDiagnostic::SpeakingWhileMicrophoneIsMuted, false)]
        );
        // Unmuting clears it at once.
        for t in [4000, 4100, 4200, 4300] {
            d.mic_level(0.3, Some("c1"), ms(t));
        }
        assert_eq!(diagnostics(&outputs(&mut d)).len(), 1);
        d.mic_level(0.3, None, ms(4400));
        let out = outputs(&mut d);
        assert_eq!(
            diagnostics(&out),
            [(MediaDiagnostic::SpeakingWhileMicrophoneIsMuted, false)]
        );
        let DeviceOutput::Diagnostic(c) = &out[0] else {
            unreachable!()
        };
        assert_eq!(c.call_id.as_deref(), Some("c1"), "clearing names the call");
    }

    #[test]
    fn names_are_the_contracts() {
        use MediaDiagnostic::*;
        let names: Vec<&str> = [
            NoMicrophoneDevicesEnumerated,
            NoSpeakerDevicesEnumerated,
            MicrophoneNotFunctioning,
            SpeakerNotFunctioning,
            SpeakingWhileMicrophoneIsMuted,
            CameraStartFailed,
            CameraFreeze,
        ]
        .map(MediaDiagnostic::name)
        .to_vec();
        assert_eq!(
            names,
            [
                "noMicrophoneDevicesEnumerated",
                "noSpeakerDevicesEnumerated",
                "microphoneNotFunctioning",
                "speakerNotFunctioning",
                "speakingWhileMicrophoneIsMuted",
                "cameraStartFailed",
                "cameraFreeze"
            ]
        );
    }

    #[test]
    fn names_match_as_opening_would() {
        let Ok(s) = snap(&["alsa_output.usb-Headset", "test"], "test") else {
            unreachable!()
        };
        assert_eq!(s.find(Speaker, "test").unwrap().id, "test");
        assert_eq!(
            s.find(Speaker, "HEADSET").unwrap().id,
            "alsa_output.usb-Headset"
        );
        assert_eq!(s.find(Speaker, "sink TEST").unwrap().id, "test");
        assert!(s.find(Speaker, "nothing").is_none());
    }
}
