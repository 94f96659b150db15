//! State the engine's handle and its threads share: atomics for the hot flags and meters, one
//! mutex for the per-source report (touched by the playout thread a few times a second, never
//! by a device callback).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};

use super::mixer::{SourceLevel, SourceStats};

pub(crate) struct Shared {
    /// Encode and emit microphone frames.
    pub capture: AtomicBool,
    /// Play inbound audio (false: drop it and play silence).
    pub playout: AtomicBool,
    /// RMS of the last microphone frame, as `f32` bits.
    pub mic_level: AtomicU32,
    pub speaking: AtomicBool,
    /// Microphone samples lost because the capture thread fell behind the device.
    pub mic_overruns: AtomicU64,
    /// Speaker callbacks that found too little audio queued and played silence.
    pub speaker_underruns: AtomicU64,
    pub remote: Mutex<RemoteReport>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct RemoteReport {
    pub levels: Vec<SourceLevel>,
    pub stats: Vec<SourceStats>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Shared {
            capture: AtomicBool::new(false),
            playout: AtomicBool::new(true),
            mic_level: AtomicU32::new(0),
            speaking: AtomicBool::new(false),
            mic_overruns: AtomicU64::new(0),
            speaker_underruns: AtomicU64::new(0),
            remote: Mutex::new(RemoteReport::default()),
        }
    }
}
