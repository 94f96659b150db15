//! Real devices through cpal. The callbacks only move samples between the device buffer and a
//! lock-free ring (rtrb): no locks, no allocation, silence on underrun. Everything else
//! (resampling, mixing, coding) happens on the pipeline's own threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::Duration;

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{BufferSize, FromSample, SampleFormat, SizedSample, StreamConfig};
use tokio::sync::mpsc::UnboundedSender;

use crate::devices::host::{
    OpenConfig, choose_config, device_id, device_name, find_device, preferred_host,
};
use crate::devices::{DeviceKind, DeviceSpec};

use super::AudioEvent;
use super::error::AudioError;

/// How long to wait for a sound server to set a stream up before giving up on the device.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);

/// A running capture stream; mono samples at `rate` arrive in `consumer`.
pub struct CpalInput {
    stream: Pausable,
    pub consumer: rtrb::Consumer<f32>,
    pub rate: u32,
    pub name: String,
    /// The host's id (a PulseAudio source name, an ALSA PCM name).
    pub id: String,
    /// Samples dropped because the pipeline fell behind the device.
    pub overruns: Arc<AtomicU64>,
}

/// A running playback stream; mono samples at `rate` pushed into `producer` are played on
/// every channel.
pub struct CpalOutput {
    stream: Pausable,
    pub producer: rtrb::Producer<f32>,
    pub rate: u32,
    /// Frames the device takes per callback.
    pub period: usize,
    pub name: String,
    /// The host's id (a PulseAudio sink name, an ALSA PCM name).
    pub id: String,
    /// Callbacks that found the ring short and played silence.
    pub underruns: Arc<AtomicU64>,
}

/// A playing stream that can be paused while idle: the PulseAudio backend costs a server round
/// trip per callback, a few per cent of a core for nothing when no call is up.
struct Pausable {
    stream: cpal::Stream,
    running: bool,
    can_pause: bool,
    /// Set just before the stream is dropped: errors from its teardown are not news.
    closing: Arc<AtomicBool>,
}

impl Drop for Pausable {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
    }
}

impl Pausable {
    fn new(stream: cpal::Stream, closing: Arc<AtomicBool>) -> Self {
        Pausable {
            stream,
            running: true,
            can_pause: true,
            closing,
        }
    }

    fn set_running(&mut self, on: bool) {
        if self.running == on || (!on && !self.can_pause) {
            return;
        }
        let result = if on {
            self.stream.play()
        } else {
            self.stream.pause()
        };
        match result {
            Ok(()) => self.running = on,
            // A backend that cannot pause just keeps running.
            Err(e) if !on => {
                tracing::debug!("cannot pause an idle stream, leaving it running: {e}");
                self.can_pause = false;
            }
            Err(e) => tracing::warn!("cannot resume a stream: {e}"),
        }
    }
}

impl CpalInput {
    /// Pauses the stream while nobody needs microphone audio, resumes it when they do.
    pub fn set_running(&mut self, on: bool) {
        self.stream.set_running(on);
    }

    pub fn is_running(&self) -> bool {
        self.stream.running
    }
}

impl CpalOutput {
    /// Pauses the stream while nothing plays, resumes it when something does.
    pub fn set_running(&mut self, on: bool) {
        self.stream.set_running(on);
    }
}

fn error_reporter(
    kind: DeviceKind,
    events: UnboundedSender<AudioEvent>,
    closing: Arc<AtomicBool>,
) -> impl FnMut(cpal::Error) + Send + 'static {
    move |e: cpal::Error| {
        if e.kind() == cpal::ErrorKind::Xrun || closing.load(Ordering::Relaxed) {
            tracing::debug!("{kind}: {e}");
            return;
        }
        let _ = events.send(AudioEvent::DeviceError {
            kind,
            message: e.to_string(),
        });
    }
}

/// Calls a stream builder generic over the sample type with the device's format; the few
/// formats cpal hosts offer besides f32/i16/i32/u16 are taken as u8.
macro_rules! by_sample_format {
    ($format:expr, $build:ident($($arg:expr),* $(,)?)) => {
        match $format {
            SampleFormat::F32 => $build::<f32>($($arg),*),
            SampleFormat::I16 => $build::<i16>($($arg),*),
            SampleFormat::I32 => $build::<i32>($($arg),*),
            SampleFormat::U16 => $build::<u16>($($arg),*),
            _ => $build::<u8>($($arg),*),
        }
    };
}

/// Opens a microphone; while `eager` is set, `waker` is unparked after each callback so the
/// capture thread picks the samples up at once.
pub fn open_input(
    spec: &DeviceSpec,
    waker: Thread,
    eager: Arc<AtomicBool>,
    events: UnboundedSender<AudioEvent>,
) -> Result<CpalInput, AudioError> {
    let kind = DeviceKind::Microphone;
    let host = preferred_host();
    let device = find_device(&host, kind, spec)?;
    let name = device_name(&device);
    let id = device_id(&device);
    let open = choose_config(&device, kind)?;
    let overruns = Arc::new(AtomicU64::new(0));
    let closing = Arc::new(AtomicBool::new(false));
    let fail = |e: cpal::Error| AudioError::Open {
        kind,
        name: name.clone(),
        message: e.to_string(),
    };
    let (stream, consumer) = with_fallback(open, |config| {
        // Half a second of slack: the capture thread drains it every few milliseconds.
        let (producer, consumer) = rtrb::RingBuffer::new(config.sample_rate as usize / 2);
        let (waker, eager, overruns) = (waker.clone(), eager.clone(), overruns.clone());
        let on_error = error_reporter(kind, events.clone(), closing.clone());
        let stream = by_sample_format!(
            open.format,
            input_stream(
                &device,
                config,
                producer,
                (waker, eager),
                overruns,
                on_error
            )
        )?;
        Ok((stream, consumer))
    })
    .map_err(fail)?;
    stream.play().map_err(fail)?;
    Ok(CpalInput {
        stream: Pausable::new(stream, closing),
        consumer,
        rate: open.config.sample_rate,
        name,
        id,
        overruns,
    })
}

/// Opens a speaker; while `eager` is set, `waker` is unparked after each callback so the
/// playout thread tops the ring up at once (and running short counts as an underrun).
pub fn open_output(
    spec: &DeviceSpec,
    waker: Thread,
    eager: Arc<AtomicBool>,
    events: UnboundedSender<AudioEvent>,
) -> Result<CpalOutput, AudioError> {
    let kind = DeviceKind::Speaker;
    let host = preferred_host();
    let device = find_device(&host, kind, spec)?;
    let name = device_name(&device);
    let id = device_id(&device);
    let open = choose_config(&device, kind)?;
    let underruns = Arc::new(AtomicU64::new(0));
    let closing = Arc::new(AtomicBool::new(false));
    let fail = |e: cpal::Error| AudioError::Open {
        kind,
        name: name.clone(),
        message: e.to_string(),
    };
    let (stream, producer) = with_fallback(open, |config| {
        // The playout thread keeps only a couple of periods queued; the rest is headroom.
        let (producer, consumer) = rtrb::RingBuffer::new(config.sample_rate as usize / 5);
        let (waker, eager, underruns) = (waker.clone(), eager.clone(), underruns.clone());
        let on_error = error_reporter(kind, events.clone(), closing.clone());
        let stream = by_sample_format!(
            open.format,
            output_stream(
                &device,
                config,
                consumer,
                (waker, eager),
                underruns,
                on_error
            )
        )?;
        Ok((stream, producer))
    })
    .map_err(fail)?;
    let fixed = match open.config.buffer_size {
        BufferSize::Fixed(n) => n,
        BufferSize::Default => open.config.sample_rate / 100,
    };
    let period = stream.buffer_size().unwrap_or(fixed).max(1) as usize;
    stream.play().map_err(fail)?;
    Ok(CpalOutput {
        stream: Pausable::new(stream, closing),
        producer,
        rate: open.config.sample_rate,
        period,
        name,
        id,
        underruns,
    })
}

/// Builds with the small fixed period first; a backend that refuses it gets its default.
fn with_fallback<R>(
    open: OpenConfig,
    mut build: impl FnMut(StreamConfig) -> Result<R, cpal::Error>,
) -> Result<R, cpal::Error> {
    match build(open.config) {
        Ok(r) => Ok(r),
        Err(first) if open.config.buffer_size != BufferSize::Default => {
            tracing::debug!("fixed buffer refused ({first}), trying the device default");
            build(StreamConfig {
                buffer_size: BufferSize::Default,
                ..open.config
            })
            .map_err(|_| first)
        }
        Err(e) => Err(e),
    }
}

fn input_stream<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mut producer: rtrb::Producer<f32>,
    (waker, eager): (Thread, Arc<AtomicBool>),
    overruns: Arc<AtomicU64>,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = config.channels.max(1) as usize;
    let scale = 1.0 / channels as f32;
    let callback = move |data: &[T], _: &cpal::InputCallbackInfo| {
        let frames = data.len() / channels;
        let room = frames.min(producer.slots());
        if let Ok(chunk) = producer.write_chunk_uninit(room) {
            let mono = data.chunks_exact(channels).map(|f| {
                f.iter()
                    .map(|s| <f32 as FromSample<T>>::from_sample_(*s))
                    .sum::<f32>()
                    * scale
            });
            chunk.fill_from_iter(mono);
        }
        if room < frames {
            overruns.fetch_add((frames - room) as u64, Ordering::Relaxed);
        }
        if eager.load(Ordering::Relaxed) {
            waker.unpark();
        }
    };
    device.build_input_stream(config, callback, on_error, Some(OPEN_TIMEOUT))
}

fn output_stream<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mut consumer: rtrb::Consumer<f32>,
    (waker, eager): (Thread, Arc<AtomicBool>),
    underruns: Arc<AtomicU64>,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = config.channels.max(1) as usize;
    let callback = move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
        let mut short = false;
        for frame in data.chunks_exact_mut(channels) {
            let v = consumer.pop().unwrap_or_else(|_| {
                short = true;
                0.0
            });
            frame.fill(<T as FromSample<f32>>::from_sample_(v));
        }
        if eager.load(Ordering::Relaxed) {
            if short {
                underruns.fetch_add(1, Ordering::Relaxed);
            }
            waker.unpark();
        }
    };
    device.build_output_stream(config, callback, on_error, Some(OPEN_TIMEOUT))
}
