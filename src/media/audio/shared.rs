//! State the engine's handle and its threads share: atomics for the hot flags and meters, one
//! mutex for the per-source report (touched by the playout thread a few times a second, never
//! by a device callback).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::mixer::{SourceLevel, SourceStats};

pub(crate) struct Shared {
    /// Encode and emit microphone frames. Shared with the microphone callback, which only
    /// wakes the capture thread at once while this is on.
    pub capture: Arc<AtomicBool>,
    /// Inbound audio is playing. Shared with the speaker callback, which only wakes the
    /// playout thread while this is on: with nothing to play, silence needs no feeding.
    pub playing: Arc<AtomicBool>,
    /// Play inbound audio (false: drop it and play silence).
    pub playout: AtomicBool,
    /// RMS of the last microphone frame, as `f32` bits.
    pub mic_level: AtomicU32,
    pub speaking: AtomicBool,
    /// The packet loss (%) the encoder sizes its in-band FEC for.
    pub expected_loss: AtomicU8,
    /// Microphone samples lost because the capture thread fell behind the device.
    pub mic_overruns: AtomicU64,
    /// Speaker callbacks that found too little audio queued and played silence.
    pub speaker_underruns: AtomicU64,
    pub remote: Mutex<RemoteReport>,
    /// Until when (ms after `epoch`) someone is watching the microphone level: while capture
    /// is off, the microphone stream only runs for a meter.
    pub meter_until_ms: AtomicU64,
    /// The microphone stream is paused (set by the capture thread).
    pub mic_paused: AtomicBool,
    pub epoch: Instant,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct RemoteReport {
    pub levels: Vec<SourceLevel>,
    pub stats: Vec<SourceStats>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Shared {
            capture: Arc::new(AtomicBool::new(false)),
            playing: Arc::new(AtomicBool::new(false)),
            playout: AtomicBool::new(true),
            mic_level: AtomicU32::new(0),
            speaking: AtomicBool::new(false),
            expected_loss: AtomicU8::new(super::codec::EXPECTED_LOSS_PERCENT as u8),
            mic_overruns: AtomicU64::new(0),
            speaker_underruns: AtomicU64::new(0),
            remote: Mutex::new(RemoteReport::default()),
            meter_until_ms: AtomicU64::new(0),
            mic_paused: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    /// Notes that the microphone level is being watched, for `hold` from now.
    pub(crate) fn want_meter(&self, hold: Duration) {
        let until = (self.epoch.elapsed() + hold).as_millis() as u64;
        self.meter_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    pub(crate) fn meter_wanted(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.epoch).as_millis() as u64
            <= self.meter_until_ms.load(Ordering::Relaxed)
    }
}
