//! WAV files for the virtual devices: the `file:` microphone reads one, the `record:` speaker
//! writes one.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::codec::SAMPLE_RATE;
use super::error::AudioError;
use super::resample::{StreamResampler, downmix};

/// Longest file the `file:` microphone accepts; it is held in memory as 48 kHz f32 (about
/// 115 MB for this much).
const MAX_SECONDS: u64 = 10 * 60;

/// Reads a WAV file as 48 kHz mono samples in -1.0..=1.0, whatever its rate, channels and
/// sample format.
pub fn load_mono_48k(path: &Path) -> Result<Vec<f32>, AudioError> {
    let fail = |message: String| AudioError::ReadWav {
        path: path.display().to_string(),
        message,
    };
    let mut reader = hound::WavReader::open(path).map_err(|e| fail(e.to_string()))?;
    let spec = reader.spec();
    let channels = spec.channels.max(1) as usize;
    if spec.sample_rate == 0 {
        return Err(fail("sample rate is 0 Hz".into()));
    }
    let frames = reader.duration() as u64;
    if frames / spec.sample_rate as u64 > MAX_SECONDS {
        return Err(fail(format!(
            "{} s long, more than the {MAX_SECONDS} s a microphone file may be",
            frames / spec.sample_rate as u64
        )));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader.samples::<f32>().collect::<Result<_, _>>(),
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
        }
        (format, bits) => {
            return Err(fail(format!(
                "unsupported sample format {format:?} with {bits} bits"
            )));
        }
    }
    .map_err(|e| fail(e.to_string()))?;
    let mut mono = Vec::with_capacity(interleaved.len() / channels);
    downmix(&interleaved, channels, |s| s, &mut mono);
    let mono = StreamResampler::clip(spec.sample_rate, SAMPLE_RATE, &mono)?;
    Ok(mono
        .into_iter()
        .map(|s| {
            if s.is_finite() {
                s.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        })
        .collect())
}

/// A 48 kHz mono 16-bit WAV file being written. `flush` makes the file valid up to that point
/// while writing can go on.
pub struct WavRecorder {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
}

impl WavRecorder {
    pub fn create(path: &Path) -> Result<Self, AudioError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| AudioError::WriteWav {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(WavRecorder {
            path: path.to_path_buf(),
            writer: Some(writer),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let mut result = Ok(());
        for s in samples {
            result = w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16);
            if result.is_err() {
                break;
            }
        }
        result.map_err(|e| self.error(e))
    }

    /// Rewrites the header for the samples written so far.
    pub fn flush(&mut self) -> Result<(), AudioError> {
        match self.writer.as_mut() {
            Some(w) => w.flush().map_err(|e| AudioError::WriteWav {
                path: self.path.display().to_string(),
                message: e.to_string(),
            }),
            None => Ok(()),
        }
    }

    pub fn finalize(&mut self) -> Result<(), AudioError> {
        match self.writer.take() {
            Some(w) => w.finalize().map_err(|e| self.error(e)),
            None => Ok(()),
        }
    }

    /// Samples written so far.
    pub fn len(&self) -> u32 {
        self.writer.as_ref().map_or(0, |w| w.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn error(&self, e: hound::Error) -> AudioError {
        AudioError::WriteWav {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }
}

impl Drop for WavRecorder {
    fn drop(&mut self) {
        let _ = self.finalize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for s in samples {
            w.write_sample(*s).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn loads_stereo_16k_as_mono_48k() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.wav");
        let frames: Vec<i16> = (0..16_000).flat_map(|_| [16384i16, 0]).collect();
        write_wav(&path, 16_000, 2, &frames);
        let mono = load_mono_48k(&path).unwrap();
        assert_eq!(mono.len(), 48_000);
        assert!((mono[24_000] - 0.25).abs() < 0.01, "{}", mono[24_000]);
    }

    #[test]
    fn bad_files_give_errors_that_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.wav");
        let e = load_mono_48k(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.wav") && !e.ends_with('.'), "{e}");
        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"RIFF\x10\x00\x00\x00WAVEnope").unwrap();
        let e = load_mono_48k(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.wav"), "{e}");
        let e = WavRecorder::create(&dir.path().join("no/such/dir/out.wav"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("out.wav"), "{e}");
    }

    #[test]
    fn recorder_file_is_valid_after_each_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.wav");
        let mut rec = WavRecorder::create(&path).unwrap();
        rec.write(&[0.5; 480]).unwrap();
        rec.flush().unwrap();
        let r = hound::WavReader::open(&path).unwrap();
        assert_eq!(
            (r.spec().sample_rate, r.spec().channels, r.duration()),
            (48_000, 1, 480)
        );
        rec.write(&[-2.0; 480]).unwrap();
        drop(rec);
        let mut r = hound::WavReader::open(&path).unwrap();
        let s: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(s.len(), 960);
        assert_eq!((s[0], s[959]), (16384, -32767));
    }
}
