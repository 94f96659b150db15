//! The capture thread: takes 48 kHz mono from the microphone (a cpal device or a virtual one),
//! cuts it into 20 ms frames, meters them and, while capture is on, encodes them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{Sender as FrameSender, UnboundedSender};

use crate::devices::{DeviceKind, DeviceSpec};

use super::clock::{SampleClock, unix_micros_now};
use super::codec::{FRAME_SAMPLES, OpusEncoder, SAMPLE_RATE};
use crate::core::media_diagnostics::Opened;

use super::cpal_io::{CpalInput, open_input};
use super::error::AudioError;
use super::level::{SpeakingDetector, dbov, rms};
use super::resample::StreamResampler;
use super::shared::Shared;
use super::wav::load_mono_48k;
use super::{AudioEvent, EncodedFrame};

/// Amplitude of `tone:` (about -13 dBFS RMS): loud enough to meter, far from clipping.
const TONE_AMPLITUDE: f32 = 0.3;
/// A virtual device that fell this many frames behind (the machine was suspended, say) skips
/// ahead instead of bursting them all out.
const MAX_CATCH_UP_FRAMES: u64 = 50;
/// Longest sleep while a cpal callback is expected to wake the thread anyway.
const CPAL_POLL: Duration = Duration::from_millis(20);
/// Sleep while capture is off: the level meter still updates ten times a second.
const IDLE_POLL: Duration = Duration::from_millis(100);

pub(crate) enum CaptureCommand {
    Open(DeviceSpec, Sender<Result<Opened, AudioError>>),
    Shutdown,
}

enum Source {
    // Boxed: the stream and the resampler are large, the virtual sources tiny.
    Cpal {
        input: Box<CpalInput>,
        resampler: Box<StreamResampler>,
        raw: Vec<f32>,
    },
    /// `playing` turns on the first time capture is enabled; the file then plays once.
    File {
        samples: Vec<f32>,
        pos: usize,
        playing: bool,
        clock: SampleClock,
    },
    Tone {
        hz: f32,
        phase: f32,
        clock: SampleClock,
    },
    Silence {
        clock: SampleClock,
    },
}

impl Source {
    fn clock_mut(&mut self) -> Option<&mut SampleClock> {
        match self {
            Source::Cpal { .. } => None,
            Source::File { clock, .. } | Source::Tone { clock, .. } | Source::Silence { clock } => {
                Some(clock)
            }
        }
    }
}

pub(crate) struct CaptureWorker {
    shared: Arc<Shared>,
    frames: FrameSender<EncodedFrame>,
    events: UnboundedSender<AudioEvent>,
    commands: Receiver<CaptureCommand>,
    source: Source,
    spec: String,
    encoder: OpusEncoder,
    detector: SpeakingDetector,
    was_enabled: bool,
    /// The expected loss the encoder was last told (`Shared::expected_loss`).
    expected_loss: u8,
    /// 48 kHz samples from a cpal device, waiting to fill a frame.
    pending: Vec<f32>,
    frame: Vec<f32>,
    dropped_frames: u64,
}

impl CaptureWorker {
    pub(crate) fn new(
        shared: Arc<Shared>,
        frames: FrameSender<EncodedFrame>,
        events: UnboundedSender<AudioEvent>,
        commands: Receiver<CaptureCommand>,
    ) -> Result<Self, AudioError> {
        Ok(CaptureWorker {
            shared,
            frames,
            events,
            commands,
            source: Source::Silence {
                clock: SampleClock::start(SAMPLE_RATE),
            },
            spec: DeviceSpec::Silence.to_string(),
            encoder: OpusEncoder::new()?,
            detector: SpeakingDetector::default(),
            was_enabled: false,
            expected_loss: super::codec::EXPECTED_LOSS_PERCENT as u8,
            pending: Vec::with_capacity(SAMPLE_RATE as usize),
            frame: vec![0.0; FRAME_SAMPLES],
            dropped_frames: 0,
        })
    }

    pub(crate) fn run(mut self) {
        loop {
            loop {
                match self.commands.try_recv() {
                    Ok(CaptureCommand::Open(spec, reply)) => {
                        let result = self.open(&spec);
                        let _ = reply.send(result);
                    }
                    Ok(CaptureCommand::Shutdown) | Err(TryRecvError::Disconnected) => return,
                    Err(TryRecvError::Empty) => break,
                }
            }
            let enabled = self.shared.capture.load(Ordering::Acquire);
            if enabled != self.was_enabled {
                self.was_enabled = enabled;
                if enabled {
                    // Start the new talk spurt from a clean slate rather than from whatever
                    // preceded the mute, and drop audio captured while off (up to an idle
                    // poll's worth), which would otherwise go out as a late burst.
                    self.encoder.reset();
                    self.discard_backlog(Instant::now());
                    self.start_file_if_waiting();
                } else {
                    self.shared.speaking.store(false, Ordering::Release);
                }
            }
            let wait = self.step(Instant::now());
            std::thread::park_timeout(wait);
        }
    }

    fn open(&mut self, spec: &DeviceSpec) -> Result<Opened, AudioError> {
        if !spec.usable_as(DeviceKind::Microphone) {
            return Err(AudioError::WrongEnd {
                spec: spec.to_string(),
                kind: DeviceKind::Microphone,
            });
        }
        let source = match spec {
            DeviceSpec::Default | DeviceSpec::Named(_) => {
                let input = open_input(
                    spec,
                    std::thread::current(),
                    self.shared.capture.clone(),
                    self.events.clone(),
                )?;
                let resampler = StreamResampler::new(input.rate, SAMPLE_RATE)?;
                Source::Cpal {
                    raw: Vec::with_capacity(input.rate as usize / 10),
                    input: Box::new(input),
                    resampler: Box::new(resampler),
                }
            }
            DeviceSpec::File(path) => Source::File {
                samples: load_mono_48k(path)?,
                pos: 0,
                playing: false,
                clock: SampleClock::start(SAMPLE_RATE),
            },
            DeviceSpec::Tone(hz) => Source::Tone {
                hz: *hz,
                phase: 0.0,
                clock: SampleClock::start(SAMPLE_RATE),
            },
            DeviceSpec::Silence | DeviceSpec::Record(_) => Source::Silence {
                clock: SampleClock::start(SAMPLE_RATE),
            },
        };
        let started = match &source {
            Source::Cpal { .. } => Some(unix_micros_now()),
            Source::File { .. } => None,
            Source::Tone { clock, .. } | Source::Silence { clock } => Some(clock.unix_micros()),
        };
        let opened = match &source {
            Source::Cpal { input, .. } => {
                tracing::info!("microphone `{}` opened at {} Hz", input.name, input.rate);
                Opened {
                    name: input.name.clone(),
                    id: Some(input.id.clone()),
                }
            }
            _ => Opened::virtual_device(spec),
        };
        self.source = source;
        self.spec = spec.to_string();
        self.pending.clear();
        if let Some(unix_micros) = started {
            self.started(unix_micros);
        }
        if self.was_enabled {
            self.start_file_if_waiting();
        }
        Ok(opened)
    }

    fn started(&self, unix_micros: u64) {
        let _ = self.events.send(AudioEvent::DeviceStarted {
            kind: DeviceKind::Microphone,
            spec: self.spec.clone(),
            unix_micros,
        });
    }

    /// A `file:` microphone's first sample is the moment it starts playing, so its clock is
    /// re-anchored here and that moment is announced.
    fn start_file_if_waiting(&mut self) {
        if let Source::File {
            playing: playing @ false,
            clock,
            ..
        } = &mut self.source
        {
            *playing = true;
            *clock = SampleClock::start(SAMPLE_RATE);
            let at = clock.unix_micros();
            self.started(at);
        }
    }

    fn discard_backlog(&mut self, now: Instant) {
        self.pending.clear();
        match &mut self.source {
            Source::Cpal { input, .. } => {
                let stale = input.consumer.slots();
                if let Ok(chunk) = input.consumer.read_chunk(stale) {
                    chunk.commit_all();
                }
            }
            other => {
                if let Some(clock) = other.clock_mut() {
                    let block = FRAME_SAMPLES as u64;
                    let due = clock.blocks_due(now, block);
                    clock.advance(due * block);
                }
            }
        }
    }

    /// Handles whatever audio is due now; returns how long to sleep. While capture is off
    /// nothing is latency-sensitive (only the level meter runs), so the thread wakes rarely.
    fn step(&mut self, now: Instant) -> Duration {
        let wait = self.process(now);
        if self.was_enabled { wait } else { IDLE_POLL }
    }

    fn process(&mut self, now: Instant) -> Duration {
        if let Source::Cpal {
            input,
            resampler,
            raw,
        } = &mut self.source
        {
            input.set_running(self.was_enabled || self.shared.meter_wanted(now));
            self.shared
                .mic_paused
                .store(!input.is_running(), Ordering::Relaxed);
            raw.clear();
            let available = input.consumer.slots();
            if let Ok(chunk) = input.consumer.read_chunk(available) {
                let (a, b) = chunk.as_slices();
                raw.extend_from_slice(a);
                raw.extend_from_slice(b);
                chunk.commit_all();
            }
            if let Err(e) = resampler.process(raw, &mut self.pending) {
                tracing::warn!("microphone resampling failed: {e}");
            }
            let mut offset = 0;
            while self.pending.len() - offset >= FRAME_SAMPLES {
                self.frame
                    .copy_from_slice(&self.pending[offset..offset + FRAME_SAMPLES]);
                offset += FRAME_SAMPLES;
                self.emit_frame();
            }
            self.pending.drain(..offset);
            if let Source::Cpal { input, .. } = &self.source {
                self.shared
                    .mic_overruns
                    .store(input.overruns.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            return CPAL_POLL;
        }
        let block = FRAME_SAMPLES as u64;
        let clock = self
            .source
            .clock_mut()
            .expect("virtual sources have a clock");
        let mut due = clock.blocks_due(now, block);
        if due > MAX_CATCH_UP_FRAMES {
            clock.advance((due - 1) * block);
            due = 1;
        }
        for _ in 0..due {
            self.generate_frame();
            self.emit_frame();
            if let Some(clock) = self.source.clock_mut() {
                clock.advance(block);
            }
        }
        let next = self
            .source
            .clock_mut()
            .map_or(now, |c| c.next_deadline(block));
        next.saturating_duration_since(Instant::now())
    }

    fn generate_frame(&mut self) {
        match &mut self.source {
            Source::File {
                samples,
                pos,
                playing: true,
                ..
            } => {
                let n = (samples.len() - *pos).min(FRAME_SAMPLES);
                self.frame[..n].copy_from_slice(&samples[*pos..*pos + n]);
                self.frame[n..].fill(0.0);
                *pos += n;
            }
            Source::Tone { hz, phase, .. } => {
                let step = *hz / SAMPLE_RATE as f32;
                for s in self.frame.iter_mut() {
                    *s = TONE_AMPLITUDE * (std::f32::consts::TAU * *phase).sin();
                    *phase = (*phase + step).fract();
                }
            }
            _ => self.frame.fill(0.0),
        }
    }

    fn emit_frame(&mut self) {
        let level = rms(&self.frame);
        let voice = self.detector.update(level, FRAME_SAMPLES as u32);
        self.shared
            .mic_level
            .store(level.to_bits(), Ordering::Relaxed);
        // The flag as last acted upon, not the live one: frames from before the switch-on
        // have been discarded under the same value.
        let enabled = self.was_enabled;
        self.shared
            .speaking
            .store(enabled && voice, Ordering::Release);
        if !enabled {
            return;
        }
        let loss = self.shared.expected_loss.load(Ordering::Relaxed);
        if loss != self.expected_loss {
            self.expected_loss = loss;
            self.encoder.set_expected_loss(i32::from(loss));
        }
        let payload = match self.encoder.encode(&self.frame) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        };
        let frame = EncodedFrame {
            payload,
            samples: FRAME_SAMPLES as u32,
            level_dbov: dbov(level),
            voice,
        };
        match self.frames.try_send(frame) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped_frames += 1;
                if self.dropped_frames.is_power_of_two() {
                    tracing::warn!(
                        "{} encoded frames dropped: nobody is reading them",
                        self.dropped_frames
                    );
                }
            }
        }
    }
}
