//! The greeting a caller hears before leaving a message, held as the 20 ms Opus frames the
//! session sends, encoded once and shared (an `Arc`) by every session that plays it.

use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;

use super::VoicemailError;
use super::ogg_opus::decode_to_pcm;
use crate::media::audio::codec::{FRAME_MS, FRAME_SAMPLES, OpusEncoder, SAMPLE_RATE};
use crate::media::audio::wav::load_mono_48k;

/// The built-in greeting (see assets/README.md), compiled in so the binary works anywhere.
static DEFAULT_WAV: &[u8] = include_bytes!("../../../assets/greeting.wav");
/// How the built-in greeting is named in errors.
const DEFAULT_NAME: &str = "(built-in) assets/greeting.wav";
/// Longest greeting accepted.
pub const MAX_GREETING: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub struct Greeting {
    /// 20 ms Opus frames (48 kHz mono), in playing order.
    pub frames: Arc<Vec<Bytes>>,
}

impl Greeting {
    /// Encodes a WAV file of any rate, channel count and sample format (resampled to 48 kHz and
    /// down-mixed to mono).
    pub fn from_wav(path: &Path) -> Result<Greeting, VoicemailError> {
        let pcm = load_mono_48k(path)?;
        Self::encode(&path.display().to_string(), &pcm)
    }

    /// Uses a recorded message (an Ogg Opus file) as a greeting: decoded and encoded again into
    /// 20 ms frames, whatever packet sizes the recording had.
    pub fn from_ogg_opus(path: &Path) -> Result<Greeting, VoicemailError> {
        let pcm = decode_to_pcm(path)?;
        Self::encode(&path.display().to_string(), &pcm)
    }

    /// Encodes 48 kHz mono samples in -1.0..=1.0; the last frame is padded with silence.
    pub fn from_pcm(pcm: &[f32]) -> Result<Greeting, VoicemailError> {
        Self::encode("(samples)", pcm)
    }

    /// The built-in "Please leave a message after the tone." and a 1 kHz beep, about 2.5 s.
    /// Encoded on first use; later calls share the frames.
    pub fn default_greeting() -> Result<Greeting, VoicemailError> {
        static CACHE: OnceLock<Greeting> = OnceLock::new();
        if let Some(g) = CACHE.get() {
            return Ok(g.clone());
        }
        let g = Self::encode(DEFAULT_NAME, &parse_default_wav()?)?;
        Ok(CACHE.get_or_init(|| g).clone())
    }

    /// How long the greeting plays: 20 ms a frame.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(u64::from(FRAME_MS) * self.frames.len() as u64)
    }

    fn encode(name: &str, pcm: &[f32]) -> Result<Greeting, VoicemailError> {
        let bad = |message: String| VoicemailError::Greeting {
            path: name.to_string(),
            message,
        };
        if pcm.is_empty() {
            return Err(bad("it holds no audio".into()));
        }
        let seconds = pcm.len() as f64 / f64::from(SAMPLE_RATE);
        if seconds > MAX_GREETING.as_secs_f64() {
            return Err(bad(format!(
                "it is {seconds:.1} s long, more than the {} s a greeting may be",
                MAX_GREETING.as_secs()
            )));
        }
        let mut enc = OpusEncoder::new()?;
        let mut frames = Vec::with_capacity(pcm.len().div_ceil(FRAME_SAMPLES));
        let mut buf = [0f32; FRAME_SAMPLES];
        for chunk in pcm.chunks(FRAME_SAMPLES) {
            buf[..chunk.len()].copy_from_slice(chunk);
            buf[chunk.len()..].fill(0.0);
            for s in &mut buf {
                *s = if s.is_finite() {
                    s.clamp(-1.0, 1.0)
                } else {
                    0.0
                };
            }
            frames.push(enc.encode(&buf)?);
        }
        Ok(Greeting {
            frames: Arc::new(frames),
        })
    }
}

/// The embedded file is 48 kHz mono 16-bit (a unit test holds it to that).
fn parse_default_wav() -> Result<Vec<f32>, VoicemailError> {
    let bad = |message: String| VoicemailError::Greeting {
        path: DEFAULT_NAME.to_string(),
        message,
    };
    let mut r = hound::WavReader::new(Cursor::new(DEFAULT_WAV)).map_err(|e| bad(e.to_string()))?;
    let spec = r.spec();
    if (
        spec.sample_rate,
        spec.channels,
        spec.bits_per_sample,
        spec.sample_format,
    ) != (SAMPLE_RATE, 1, 16, hound::SampleFormat::Int)
    {
        return Err(bad(format!(
            "it is {} Hz, {} channels, {}-bit {:?}, not 48000 Hz mono 16-bit integer",
            spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
        )));
    }
    r.samples::<i16>()
        .map(|s| s.map(|v| f32::from(v) / 32768.0))
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::codec::{MAX_DECODED_SAMPLES, OpusDecoder};

    #[test]
    fn default_greeting_is_speech_then_a_beep() {
        let g = Greeting::default_greeting().unwrap();
        let d = g.duration();
        assert!(
            (Duration::from_secs(2)..=Duration::from_secs(3)).contains(&d),
            "{d:?}"
        );
        // Shared on later calls.
        assert!(Arc::ptr_eq(
            &g.frames,
            &Greeting::default_greeting().unwrap().frames
        ));
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = vec![0.0; MAX_DECODED_SAMPLES];
        let mut pcm = Vec::new();
        for f in g.frames.iter() {
            let n = dec.decode(f, &mut out).unwrap();
            pcm.extend_from_slice(&out[..n]);
        }
        // The last 0.25 s is the 1 kHz beep: count zero crossings.
        let tail = &pcm[pcm.len() - 12_000..pcm.len() - 1_000];
        let crossings = tail
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        let hz = crossings as f32 / 2.0 / (tail.len() as f32 / 48_000.0);
        assert!((950.0..=1_050.0).contains(&hz), "beep at {hz} Hz");
        let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
        assert!(rms(tail) > 0.2, "beep rms {}", rms(tail));
        assert!(
            rms(&pcm[4_800..48_000]) > 0.03,
            "speech rms {}",
            rms(&pcm[4_800..48_000])
        );
    }

    #[test]
    fn from_wav_resamples_and_rejects_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..8_000 {
            let v = (8_000.0 * (i as f32 * 0.3).sin()) as i16;
            w.write_sample(v).unwrap();
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
        let g = Greeting::from_wav(&path).unwrap();
        assert_eq!(g.frames.len(), 50);
        assert_eq!(g.duration(), Duration::from_secs(1));

        let e = Greeting::from_wav(&dir.path().join("missing.wav"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.wav") && !e.ends_with('.'), "{e}");
        let empty = dir.path().join("empty.wav");
        hound::WavWriter::create(&empty, spec)
            .unwrap()
            .finalize()
            .unwrap();
        let e = Greeting::from_wav(&empty).unwrap_err().to_string();
        assert!(e.contains("empty.wav") && e.contains("no audio"), "{e}");
        let e = Greeting::from_pcm(&vec![0.0; 48_000 * 61])
            .unwrap_err()
            .to_string();
        assert!(e.contains("61.0 s"), "{e}");
    }
}
