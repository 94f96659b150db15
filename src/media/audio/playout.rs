//! The playout thread: feeds inbound packets to the mixer and pulls mixed audio for the speaker
//! (a cpal device, a `record:` file, or nothing) in small steps, so a packet that arrives is
//! heard a few milliseconds later rather than a whole frame later.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use crate::devices::{DeviceKind, DeviceSpec};

use super::AudioEvent;
use super::clock::{SampleClock, unix_micros_now};
use super::codec::SAMPLE_RATE;
use crate::core::media_diagnostics::Opened;

use super::cpal_io::{CpalOutput, open_output};
use super::error::AudioError;
use super::jitter::JitterConfig;
use super::mixer::Mixer;
use super::resample::StreamResampler;
use super::shared::Shared;
use super::wav::WavRecorder;

/// Granularity of the virtual speakers: 10 ms at 48 kHz. Half a frame keeps the added delay
/// small (5 ms on average) at half the wake-ups of a 5 ms tick (measured: -0.2 % of a core).
const TICK_SAMPLES: u64 = 480;
/// The record file's header is rewritten this often, so a crash loses at most this much.
const FLUSH_EVERY_SAMPLES: u64 = SAMPLE_RATE as u64;
/// Shortest sleep while a cpal callback is expected to wake the thread anyway (a device period
/// when that is longer).
const CPAL_POLL: Duration = Duration::from_millis(5);
/// Sleep while nothing is playing.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// A real speaker with nothing to play is paused after this long (talk spurts of one call
/// keep it running).
const PAUSE_AFTER: Duration = Duration::from_secs(2);
/// How often the per-source levels and counters are published.
const REPORT_EVERY: Duration = Duration::from_millis(50);
/// A source silent this long has left (or the call ended): drop its decoder.
const SOURCE_IDLE: Duration = Duration::from_secs(10);
/// A virtual speaker catches up at most this much (60 s) after a stall.
const MAX_CATCH_UP_BLOCKS: u64 = 60 * SAMPLE_RATE as u64 / TICK_SAMPLES;

pub(crate) struct Inbound {
    pub source: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub payload: Bytes,
    pub arrival: Instant,
}

pub(crate) enum PlayoutCommand {
    Open(DeviceSpec, Sender<Result<Opened, AudioError>>),
    /// Rewrite the record file's header now.
    Flush(Sender<Result<(), AudioError>>),
    Shutdown,
}

enum Sink {
    // Boxed: the stream and the resampler are large, the virtual sinks small.
    Cpal {
        output: Box<CpalOutput>,
        resampler: Box<StreamResampler>,
        resampled: Vec<f32>,
    },
    Record {
        recorder: WavRecorder,
        clock: SampleClock,
        flushed_at: u64,
    },
    Silence {
        clock: SampleClock,
    },
}

pub(crate) struct PlayoutWorker {
    shared: Arc<Shared>,
    events: UnboundedSender<AudioEvent>,
    commands: Receiver<PlayoutCommand>,
    inbound: Receiver<Inbound>,
    mixer: Mixer,
    sink: Sink,
    spec: String,
    was_enabled: bool,
    /// Since when nothing has been playing.
    idle_since: Option<Instant>,
    mix: Vec<f32>,
    last_report: Instant,
}

impl PlayoutWorker {
    pub(crate) fn new(
        shared: Arc<Shared>,
        events: UnboundedSender<AudioEvent>,
        commands: Receiver<PlayoutCommand>,
        inbound: Receiver<Inbound>,
    ) -> Self {
        PlayoutWorker {
            shared,
            events,
            commands,
            inbound,
            mixer: Mixer::new(JitterConfig::default()),
            sink: Sink::Silence {
                clock: SampleClock::start(SAMPLE_RATE),
            },
            spec: DeviceSpec::Silence.to_string(),
            was_enabled: true,
            idle_since: None,
            mix: vec![0.0; SAMPLE_RATE as usize / 5],
            last_report: Instant::now(),
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            match self.commands.try_recv() {
                Ok(PlayoutCommand::Open(spec, reply)) => {
                    let result = self.open(&spec);
                    let _ = reply.send(result);
                }
                Ok(PlayoutCommand::Flush(reply)) => {
                    let result = match &mut self.sink {
                        Sink::Record { recorder, .. } => recorder.flush(),
                        _ => Ok(()),
                    };
                    let _ = reply.send(result);
                }
                Ok(PlayoutCommand::Shutdown) | Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let wait = self.step(Instant::now());
                    std::thread::park_timeout(wait);
                }
            }
        }
        self.close_sink();
    }

    fn open(&mut self, spec: &DeviceSpec) -> Result<Opened, AudioError> {
        if !spec.usable_as(DeviceKind::Speaker) {
            return Err(AudioError::WrongEnd {
                spec: spec.to_string(),
                kind: DeviceKind::Speaker,
            });
        }
        let sink = match spec {
            DeviceSpec::Default | DeviceSpec::Named(_) => {
                let output = open_output(
                    spec,
                    std::thread::current(),
                    self.shared.playing.clone(),
                    self.events.clone(),
                )?;
                let resampler = StreamResampler::new(SAMPLE_RATE, output.rate)?;
                tracing::info!(
                    "speaker `{}` opened at {} Hz, {} frames per period",
                    output.name,
                    output.rate,
                    output.period
                );
                Sink::Cpal {
                    resampled: Vec::with_capacity(output.rate as usize / 5),
                    output: Box::new(output),
                    resampler: Box::new(resampler),
                }
            }
            DeviceSpec::Record(path) => Sink::Record {
                recorder: WavRecorder::create(path)?,
                clock: SampleClock::start(SAMPLE_RATE),
                flushed_at: 0,
            },
            _ => Sink::Silence {
                clock: SampleClock::start(SAMPLE_RATE),
            },
        };
        let opened = match &sink {
            Sink::Cpal { output, .. } => Opened {
                name: output.name.clone(),
                id: Some(output.id.clone()),
            },
            _ => Opened::virtual_device(spec),
        };
        let unix_micros = match &sink {
            Sink::Cpal { .. } => unix_micros_now(),
            Sink::Record { clock, .. } | Sink::Silence { clock } => clock.unix_micros(),
        };
        self.close_sink();
        self.sink = sink;
        self.spec = spec.to_string();
        let _ = self.events.send(AudioEvent::DeviceStarted {
            kind: DeviceKind::Speaker,
            spec: self.spec.clone(),
            unix_micros,
        });
        Ok(opened)
    }

    fn close_sink(&mut self) {
        if let Sink::Record { recorder, .. } = &mut self.sink
            && let Err(e) = recorder.finalize()
        {
            self.report_error(e.to_string());
        }
    }

    fn report_error(&self, message: String) {
        tracing::warn!("speaker: {message}");
        let _ = self.events.send(AudioEvent::DeviceError {
            kind: DeviceKind::Speaker,
            message,
        });
    }

    /// Takes in what arrived, plays whatever is due; returns how long to sleep.
    fn step(&mut self, now: Instant) -> Duration {
        let enabled = self.shared.playout.load(Ordering::Acquire);
        if enabled != self.was_enabled {
            self.was_enabled = enabled;
            if !enabled {
                self.mixer.clear();
            }
        }
        while let Ok(p) = self.inbound.try_recv() {
            if enabled
                && let Err(e) = self
                    .mixer
                    .push(p.source, p.seq, p.timestamp, p.payload, p.arrival)
            {
                tracing::warn!("inbound audio: {e}");
            }
        }
        let playing = enabled && self.mixer.source_count() > 0;
        self.shared.playing.store(playing, Ordering::Relaxed);
        if playing {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
        let long_idle = self
            .idle_since
            .is_some_and(|t| now.duration_since(t) >= PAUSE_AFTER);
        let wait = match &mut self.sink {
            Sink::Cpal { output, .. } if playing => {
                output.set_running(true);
                self.step_cpal(now)
            }
            // Nothing to play: the device callback pads with silence by itself, and after a
            // while the stream is paused altogether.
            Sink::Cpal { output, .. } => {
                if long_idle {
                    output.set_running(false);
                }
                IDLE_POLL
            }
            Sink::Record { .. } | Sink::Silence { .. } => self.step_virtual(now),
        };
        // With nothing to play the virtual speakers catch up in batches; `push_rtp` wakes the
        // thread the moment a packet arrives.
        let wait = if playing { wait } else { wait.max(IDLE_POLL) };
        if now.duration_since(self.last_report) >= REPORT_EVERY {
            self.last_report = now;
            self.mixer.remove_idle(now, SOURCE_IDLE);
            if let Sink::Cpal { output, .. } = &self.sink {
                self.shared
                    .speaker_underruns
                    .store(output.underruns.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            if let Ok(mut report) = self.shared.remote.lock() {
                report.levels.clear();
                report.levels.extend(self.mixer.levels());
                report.stats.clear();
                report.stats.extend(self.mixer.stats());
            }
        }
        wait
    }

    fn step_cpal(&mut self, now: Instant) -> Duration {
        let Sink::Cpal {
            output,
            resampler,
            resampled,
        } = &mut self.sink
        else {
            return CPAL_POLL;
        };
        // Keep two device periods queued: one being played, one ready. Fewer means underruns,
        // more only adds delay.
        let target = (2 * output.period).max(output.rate as usize / 200);
        let queued = output.producer.buffer().capacity() - output.producer.slots();
        if queued < target {
            let want = (target - queued) as u64 * SAMPLE_RATE as u64;
            let n = (want.div_ceil(output.rate as u64) as usize).min(self.mix.len());
            self.mixer.mix(&mut self.mix[..n], now);
            resampled.clear();
            if let Err(e) = resampler.process(&self.mix[..n], resampled) {
                tracing::warn!("speaker resampling failed: {e}");
            }
            let room = output.producer.slots().min(resampled.len());
            if let Ok(chunk) = output.producer.write_chunk_uninit(room) {
                chunk.fill_from_iter(resampled.iter().copied());
            }
        }
        // The speaker's callback wakes this thread every period; the poll is only a safety net,
        // so it need not come more often than that.
        CPAL_POLL.max(Duration::from_micros(
            output.period as u64 * 1_000_000 / u64::from(output.rate.max(1)),
        ))
    }

    fn step_virtual(&mut self, now: Instant) -> Duration {
        let clock = match &self.sink {
            Sink::Record { clock, .. } | Sink::Silence { clock } => clock.clone(),
            Sink::Cpal { .. } => return CPAL_POLL,
        };
        let due = clock.blocks_due(now, TICK_SAMPLES);
        // After a long stall (a suspended machine) the oldest part is skipped, not replayed.
        let skipped = due.saturating_sub(MAX_CATCH_UP_BLOCKS);
        let mut failed = None;
        for block in skipped..due {
            let first = clock.done() + block * TICK_SAMPLES;
            let chunk = &mut self.mix[..TICK_SAMPLES as usize];
            // Each block is mixed for the moment its first sample plays, so sample n of a
            // recording is heard at sample 0's time plus n / 48 kHz.
            self.mixer.mix(chunk, clock.time_of(first));
            if let Sink::Record { recorder, .. } = &mut self.sink
                && failed.is_none()
                && let Err(e) = recorder.write(chunk)
            {
                failed = Some(e);
            }
        }
        self.advance_virtual(due * TICK_SAMPLES, failed)
    }

    /// Moves a virtual speaker's clock on by `samples` (including any skipped after a stall),
    /// flushes the record file when due; returns the sleep until the next tick.
    fn advance_virtual(&mut self, samples: u64, failed: Option<AudioError>) -> Duration {
        if let Some(e) = failed {
            self.report_error(e.to_string());
            let clock = match &self.sink {
                Sink::Record { clock, .. } => clock.clone(),
                _ => SampleClock::start(SAMPLE_RATE),
            };
            // Dropping the recorder finalizes what it can; the error is already reported.
            self.sink = Sink::Silence { clock };
        }
        let mut flush_error = None;
        let next = match &mut self.sink {
            Sink::Record {
                recorder,
                clock,
                flushed_at,
            } => {
                clock.advance(samples);
                if clock.done() - *flushed_at >= FLUSH_EVERY_SAMPLES {
                    *flushed_at = clock.done();
                    flush_error = recorder.flush().err();
                }
                clock.next_deadline(TICK_SAMPLES)
            }
            Sink::Silence { clock } => {
                clock.advance(samples);
                clock.next_deadline(TICK_SAMPLES)
            }
            Sink::Cpal { .. } => Instant::now() + CPAL_POLL,
        };
        if let Some(e) = flush_error {
            self.report_error(e.to_string());
        }
        next.saturating_duration_since(Instant::now())
    }
}
