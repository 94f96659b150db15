//! Rate conversion between a device's rate and the pipeline's 48 kHz (rubato, on the
//! pipeline's threads, never in a device callback), and channel down/up-mixing.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, Resampler, SincInterpolationParameters, WindowFunction};

/// A mono stream resampler that takes and gives any number of samples per call.
pub struct StreamResampler {
    from: u32,
    to: u32,
    /// None when the rates match: samples pass straight through.
    inner: Option<Async<f32>>,
    chunk: usize,
    pending: Vec<f32>,
    out: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot resample from {from} Hz to {to} Hz: {message}")]
pub struct ResampleError {
    pub from: u32,
    pub to: u32,
    pub message: String,
}

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        let err = |message: String| ResampleError { from, to, message };
        if from == 0 || to == 0 {
            return Err(err("a rate of 0 Hz".into()));
        }
        // 5 ms chunks: each chunk waits for its last input sample, so this is the delay the
        // resampler adds on top of the filter's own (sinc_len / 2 input samples).
        let chunk = (from as usize / 200).max(16);
        let inner = if from == to {
            None
        } else {
            let params = SincInterpolationParameters::new(64, WindowFunction::BlackmanHarris2)
                .oversampling_factor(64);
            Some(
                Async::<f32>::new_sinc(
                    to as f64 / from as f64,
                    1.0,
                    &params,
                    chunk,
                    1,
                    FixedAsync::Input,
                )
                .map_err(|e| err(e.to_string()))?,
            )
        };
        let out_max = inner.as_ref().map_or(0, |r| r.output_frames_max());
        Ok(StreamResampler {
            from,
            to,
            inner,
            chunk,
            pending: Vec::with_capacity(chunk),
            out: vec![0.0; out_max],
        })
    }

    pub fn rates(&self) -> (u32, u32) {
        (self.from, self.to)
    }

    pub fn is_passthrough(&self) -> bool {
        self.inner.is_none()
    }

    /// Resamples `input` and appends the result to `output`. Keeps up to one chunk of input
    /// between calls.
    pub fn process(
        &mut self,
        mut input: &[f32],
        output: &mut Vec<f32>,
    ) -> Result<(), ResampleError> {
        let Some(inner) = self.inner.as_mut() else {
            output.extend_from_slice(input);
            return Ok(());
        };
        while !input.is_empty() {
            let take = (self.chunk - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() < self.chunk {
                break;
            }
            let err = |message: String| ResampleError {
                from: self.from,
                to: self.to,
                message,
            };
            let wave_in = InterleavedSlice::new(&self.pending[..], 1, self.chunk)
                .map_err(|e| err(e.to_string()))?;
            let frames_out = self.out.len();
            let mut wave_out = InterleavedSlice::new_mut(&mut self.out[..], 1, frames_out)
                .map_err(|e| err(e.to_string()))?;
            let (_, produced) = inner
                .process_into_buffer(&wave_in, &mut wave_out, None)
                .map_err(|e| err(e.to_string()))?;
            output.extend_from_slice(&self.out[..produced]);
            self.pending.clear();
        }
        Ok(())
    }

    /// Resamples a whole clip, trimming the filter delay so the output lines up with the input.
    pub fn clip(from: u32, to: u32, input: &[f32]) -> Result<Vec<f32>, ResampleError> {
        let mut r = StreamResampler::new(from, to)?;
        let Some(inner) = r.inner.as_mut() else {
            return Ok(input.to_vec());
        };
        let delay = inner.output_delay();
        let wanted = (input.len() as u64 * to as u64 / from as u64) as usize;
        let mut out = Vec::with_capacity(wanted + delay + r.out.len());
        r.process(input, &mut out)?;
        // Push silence through until the tail (held back by the filter delay) is out.
        let silence = vec![0.0; r.chunk];
        while out.len() < wanted + delay {
            r.process(&silence, &mut out)?;
        }
        out.drain(..delay.min(out.len()));
        out.truncate(wanted);
        Ok(out)
    }
}

/// Averages interleaved frames down to mono, appending to `out`.
pub fn downmix<T: Copy>(
    interleaved: &[T],
    channels: usize,
    to_f32: impl Fn(T) -> f32,
    out: &mut Vec<f32>,
) {
    let channels = channels.max(1);
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().map(|s| to_f32(*s)).sum::<f32>() * scale),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f32, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    /// Zero crossings per second, a rough frequency estimate that ignores amplitude.
    fn crossings_hz(x: &[f32], rate: u32) -> f32 {
        let c = x
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        c as f32 / 2.0 / (x.len() as f32 / rate as f32)
    }

    #[test]
    fn same_rate_passes_through() {
        let mut r = StreamResampler::new(48_000, 48_000).unwrap();
        assert!(r.is_passthrough());
        let mut out = Vec::new();
        r.process(&[0.1, 0.2, 0.3], &mut out).unwrap();
        assert_eq!(out, [0.1, 0.2, 0.3]);
    }

    #[test]
    fn streaming_44k1_to_48k_keeps_pitch_and_length() {
        let input = sine(1000.0, 44_100, 44_100);
        let mut r = StreamResampler::new(44_100, 48_000).unwrap();
        let mut out = Vec::new();
        // Odd-sized pieces, as a device callback would deliver them.
        for piece in input.chunks(137) {
            r.process(piece, &mut out).unwrap();
        }
        assert!(
            (out.len() as i64 - 48_000).abs() < 300,
            "{} samples",
            out.len()
        );
        let hz = crossings_hz(&out[2000..], 48_000);
        assert!((hz - 1000.0).abs() < 5.0, "{hz} Hz");
    }

    #[test]
    fn clip_resampling_lines_up_with_the_input() {
        let input = sine(440.0, 16_000, 16_000);
        let out = StreamResampler::clip(16_000, 48_000, &input).unwrap();
        assert_eq!(out.len(), 48_000);
        // The sine starts at zero going up, so after trimming the delay the output must too.
        assert!(out[0].abs() < 0.05 && out[30] > 0.0, "{:?}", &out[..4]);
        let hz = crossings_hz(&out, 48_000);
        assert!((hz - 440.0).abs() < 3.0, "{hz} Hz");
        let back = StreamResampler::clip(48_000, 22_050, &out).unwrap();
        assert_eq!(back.len(), 22_050);
        assert!(StreamResampler::new(0, 48_000).is_err());
    }

    #[test]
    fn downmix_averages_channels() {
        let mut out = Vec::new();
        downmix(&[1.0f32, 0.0, 0.5, 0.5, -1.0, 1.0], 2, |s| s, &mut out);
        assert_eq!(out, [0.5, 0.5, 0.0]);
        out.clear();
        downmix(&[i16::MAX, i16::MAX], 1, |s| s as f32 / 32768.0, &mut out);
        assert_eq!(out.len(), 2);
    }
}
