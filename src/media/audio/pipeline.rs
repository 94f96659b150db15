//! `AudioEngine`: the one handle the rest of the app uses for sound. It owns two threads:
//!
//! ```text
//! mic (cpal callback -> rtrb, or a virtual source) -> capture thread: 20 ms frames, level, Opus
//!                                                     -> EncodedFrame channel
//! push_rtp -> channel -> playout thread: jitter buffer + decoder per source, mix
//!                        -> speaker (rtrb -> cpal callback, or a record: file, or nothing)
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender, SyncSender, TrySendError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::{Receiver, UnboundedSender};

use crate::core::media_diagnostics::Opened;
use crate::devices::{DeviceKind, DeviceSpec};

use super::capture::{CaptureCommand, CaptureWorker};
use super::error::AudioError;
use super::mixer::{SourceLevel, SourceStats};
use super::playout::{Inbound, PlayoutCommand, PlayoutWorker};
use super::shared::Shared;

/// Encoded frames buffered for the network side: 1 s. Beyond that nobody is reading and
/// frames are dropped rather than piling up.
const FRAME_QUEUE: usize = 50;
/// Inbound packets buffered for the playout thread, which drains them every 5 ms.
const INBOUND_QUEUE: usize = 512;
/// How long a real microphone keeps running for the level meter after `mic_level` was asked,
/// while capture is off.
const METER_HOLD: Duration = Duration::from_secs(3);
/// How long `finalize_recording` waits for the playout thread.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// One 20 ms Opus frame of microphone audio, ready to packetize.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedFrame {
    pub payload: Bytes,
    /// Samples at 48 kHz the frame covers (960): what the RTP timestamp advances by.
    pub samples: u32,
    /// RFC 6464 audio level: 0 (loudest) to 127 (silence), in -dBov.
    pub level_dbov: u8,
    /// Voice activity, with a short hold so it does not flicker between words.
    pub voice: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Microphone samples dropped because the pipeline fell behind the device.
    pub mic_overruns: u64,
    /// Speaker callbacks that found too little audio queued and played silence.
    pub speaker_underruns: u64,
}

#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AudioEvent {
    /// A device began. `unix_micros` is the wall-clock time of its sample 0: for a `record:`
    /// speaker, sample n of the file was played at `unix_micros + n / 48 kHz`; for a `file:`
    /// microphone, it is when the file started playing.
    DeviceStarted {
        kind: DeviceKind,
        spec: String,
        unix_micros: u64,
    },
    /// A device failed while running (unplugged, sound server gone, disk full).
    DeviceError { kind: DeviceKind, message: String },
}

struct Worker<C> {
    name: &'static str,
    commands: Sender<C>,
    thread: Thread,
    handle: Option<JoinHandle<()>>,
}

impl<C: Send + 'static> Worker<C> {
    fn spawn(
        name: &'static str,
        commands: Sender<C>,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<Self, AudioError> {
        let handle = std::thread::Builder::new()
            .name(format!("dialtone-{name}"))
            .spawn(body)
            .map_err(|e| AudioError::Spawn(name, e.to_string()))?;
        Ok(Worker {
            name,
            commands,
            thread: handle.thread().clone(),
            handle: Some(handle),
        })
    }

    /// Sends a command that carries a reply channel and waits for the reply.
    fn request<R>(
        &self,
        make: impl FnOnce(Sender<R>) -> C,
        wait: Option<Duration>,
    ) -> Result<R, AudioError> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| AudioError::ThreadGone(self.name))?;
        self.thread.unpark();
        match wait {
            Some(limit) => rx
                .recv_timeout(limit)
                .map_err(|_| AudioError::ThreadGone(self.name)),
            None => rx.recv().map_err(|_| AudioError::ThreadGone(self.name)),
        }
    }

    fn stop(&mut self, shutdown: C) {
        let _ = self.commands.send(shutdown);
        self.thread.unpark();
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!("the {} thread panicked", self.name);
        }
    }
}

/// Microphone capture and encoding, inbound decoding, mixing and playout.
pub struct AudioEngine {
    shared: Arc<Shared>,
    capture: Worker<CaptureCommand>,
    playout: Worker<PlayoutCommand>,
    inbound: SyncSender<Inbound>,
}

impl AudioEngine {
    /// Opens both devices and starts the pipeline. Capture starts off (no frames until
    /// `set_capture(true)`), playout starts on. Device events, starting with a
    /// `DeviceStarted` per device, go to `events`.
    pub fn start(
        mic: &DeviceSpec,
        speaker: &DeviceSpec,
        events: UnboundedSender<AudioEvent>,
    ) -> Result<(AudioEngine, Receiver<EncodedFrame>), AudioError> {
        crate::devices::silence_alsa();
        let shared = Arc::new(Shared::new());
        let (frames_tx, frames_rx) = tokio::sync::mpsc::channel(FRAME_QUEUE);
        let (capture_tx, capture_rx) = mpsc::channel();
        let worker = CaptureWorker::new(shared.clone(), frames_tx, events.clone(), capture_rx)?;
        let capture = Worker::spawn("capture", capture_tx, move || worker.run())?;
        let (playout_tx, playout_rx) = mpsc::channel();
        let (inbound_tx, inbound_rx) = mpsc::sync_channel(INBOUND_QUEUE);
        let worker = PlayoutWorker::new(shared.clone(), events, playout_rx, inbound_rx);
        let playout = Worker::spawn("playout", playout_tx, move || worker.run())?;
        let engine = AudioEngine {
            shared,
            capture,
            playout,
            inbound: inbound_tx,
        };
        // On failure `engine` is dropped here, which stops both threads.
        engine.set_microphone(mic)?;
        engine.set_speaker(speaker)?;
        Ok((engine, frames_rx))
    }

    /// Encode and emit microphone frames only while true: a call is live and not muted or held.
    /// A `file:` microphone starts playing its file the first time this turns true.
    /// Sizes the encoder's in-band FEC for this much packet loss (%), from the next frame on.
    pub fn set_expected_loss(&self, percent: u8) {
        self.shared
            .expected_loss
            .store(percent.min(100), Ordering::Relaxed);
    }

    pub fn set_capture(&self, enabled: bool) {
        self.shared.capture.store(enabled, Ordering::Release);
        self.capture.thread.unpark();
    }

    /// Queues an inbound RTP payload. Any thread, never blocks; dropped while playout is off or
    /// if the playout thread is far behind.
    pub fn push_rtp(&self, source: u32, seq: u16, timestamp: u32, payload: Bytes) {
        if !self.shared.playout.load(Ordering::Acquire) {
            return;
        }
        let packet = Inbound {
            source,
            seq,
            timestamp,
            payload,
            arrival: Instant::now(),
        };
        if let Err(TrySendError::Full(_)) = self.inbound.try_send(packet) {
            tracing::debug!("inbound audio queue full, packet dropped");
        }
        // The playout thread sleeps long while nothing plays; the first packet must not wait.
        if !self.shared.playing.load(Ordering::Relaxed) {
            self.playout.thread.unpark();
        }
    }

    /// When false, inbound audio is dropped, buffers are emptied and silence is played.
    pub fn set_playout(&self, enabled: bool) {
        self.shared.playout.store(enabled, Ordering::Release);
        self.playout.thread.unpark();
    }

    /// Switches the microphone while running, and says what was opened. On error the previous
    /// one stays in use.
    pub fn set_microphone(&self, spec: &DeviceSpec) -> Result<Opened, AudioError> {
        if !spec.usable_as(DeviceKind::Microphone) {
            return Err(AudioError::WrongEnd {
                spec: spec.to_string(),
                kind: DeviceKind::Microphone,
            });
        }
        self.capture
            .request(|reply| CaptureCommand::Open(spec.clone(), reply), None)?
    }

    /// Switches the speaker while running. On error the previous one stays in use. A
    /// `record:` file being written is finalized first.
    pub fn set_speaker(&self, spec: &DeviceSpec) -> Result<Opened, AudioError> {
        if !spec.usable_as(DeviceKind::Speaker) {
            return Err(AudioError::WrongEnd {
                spec: spec.to_string(),
                kind: DeviceKind::Speaker,
            });
        }
        self.playout
            .request(|reply| PlayoutCommand::Open(spec.clone(), reply), None)?
    }

    /// Makes the `record:` file valid as it stands (its header counts every sample written so
    /// far). Recording goes on afterwards. Does nothing for other speakers.
    pub fn finalize_recording(&self) {
        match self
            .playout
            .request(PlayoutCommand::Flush, Some(FLUSH_WAIT))
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("{e}"),
            Err(e) => tracing::warn!("cannot flush the recording: {e}"),
        }
    }

    /// RMS of the last microphone frame, 0.0 (silence) to 1.0 (full scale). Meters even while
    /// capture is off: a real microphone that was paused for idleness resumes for a few seconds
    /// after each call, so the first reading after a long pause may be stale.
    pub fn mic_level(&self) -> f32 {
        self.shared.want_meter(METER_HOLD);
        if self.shared.mic_paused.load(Ordering::Relaxed) {
            self.capture.thread.unpark();
        }
        f32::from_bits(self.shared.mic_level.load(Ordering::Relaxed))
    }

    /// Whether the local user is talking into a live call (capture on and voice detected).
    pub fn speaking(&self) -> bool {
        self.shared.speaking.load(Ordering::Acquire)
    }

    /// Loudness of each inbound source, refreshed every 50 ms.
    pub fn remote_levels(&self) -> Vec<SourceLevel> {
        self.shared
            .remote
            .lock()
            .map(|r| r.levels.clone())
            .unwrap_or_default()
    }

    /// Jitter buffer and decoder counters of each inbound source, refreshed every 50 ms.
    pub fn inbound_stats(&self) -> Vec<SourceStats> {
        self.shared
            .remote
            .lock()
            .map(|r| r.stats.clone())
            .unwrap_or_default()
    }

    /// Device trouble counters of the current cpal devices (zero for virtual ones).
    pub fn device_stats(&self) -> DeviceStats {
        DeviceStats {
            mic_overruns: self.shared.mic_overruns.load(Ordering::Relaxed),
            speaker_underruns: self.shared.speaker_underruns.load(Ordering::Relaxed),
        }
    }

    /// Finalizes files and stops the threads (dropping the engine does the same).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for AudioEngine {
    fn drop(&mut self) {
        self.capture.stop(CaptureCommand::Shutdown);
        self.playout.stop(PlayoutCommand::Shutdown);
    }
}
