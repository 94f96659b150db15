//! Several inbound streams (a 1:1 call has one; a group call up to a few the server forwards),
//! each with its own jitter buffer and decoder, summed into one signal.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec::{CodecError, MAX_DECODED_SAMPLES, OpusDecoder, SAMPLE_RATE};
use super::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
use super::level::{SpeakingDetector, rms};

/// Streams mixed at most; a packet from one more source evicts the one silent the longest.
pub const MAX_SOURCES: usize = 8;

/// A source's loudness, for meters and "is speaking".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceLevel {
    /// SSRC or participant index, as given to `push`.
    pub source: u32,
    /// RMS of the last frame played, 0.0 to 1.0.
    pub level: f32,
    pub speaking: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceStats {
    pub source: u32,
    pub jitter: JitterStats,
    /// Frames the decoder rejected (corrupt packets), played as concealment.
    pub decode_errors: u64,
}

struct Source {
    id: u32,
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    frame: Vec<f32>,
    len: usize,
    pos: usize,
    level: f32,
    speaking: SpeakingDetector,
    last_packet: Instant,
    decode_errors: u64,
}

impl Source {
    /// Decodes the next frame into `self.frame`. Returns false when the stream has nothing to
    /// play right now.
    fn refill(&mut self, now: Instant) -> bool {
        let result = loop {
            match self.jitter.pop(now) {
                Playout::Discard(packet) => {
                    let _ = self.decoder.decode(&packet, &mut self.frame);
                }
                Playout::Packet(packet) => break self.decoder.decode(&packet, &mut self.frame),
                Playout::Recover(next) => break self.decoder.decode_fec(&next, &mut self.frame),
                Playout::Conceal => break self.decoder.conceal(&mut self.frame),
                Playout::Silence => {
                    self.level = 0.0;
                    self.speaking.update(0.0, SAMPLE_RATE / 200);
                    return false;
                }
            }
        };
        let n = match result {
            Ok(n) if n > 0 => n,
            _ => {
                self.decode_errors += 1;
                self.decoder.conceal(&mut self.frame).unwrap_or(0)
            }
        };
        if n == 0 {
            return false;
        }
        self.len = n;
        self.pos = 0;
        self.level = rms(&self.frame[..n]);
        self.speaking.update(self.level, n as u32);
        true
    }
}

pub struct Mixer {
    config: JitterConfig,
    sources: Vec<Source>,
}

impl Mixer {
    pub fn new(config: JitterConfig) -> Self {
        Mixer {
            config,
            sources: Vec::with_capacity(MAX_SOURCES),
        }
    }

    /// Queues a packet from `source`, arrived at `now`. A new source gets its own jitter
    /// buffer and decoder.
    pub fn push(
        &mut self,
        source: u32,
        seq: u16,
        timestamp: u32,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), CodecError> {
        let index = match self.sources.iter().position(|s| s.id == source) {
            Some(i) => i,
            None => {
                if self.sources.len() >= MAX_SOURCES
                    && let Some(oldest) =
                        (0..self.sources.len()).min_by_key(|i| self.sources[*i].last_packet)
                {
                    self.sources.swap_remove(oldest);
                }
                self.sources.push(Source {
                    id: source,
                    jitter: JitterBuffer::new(self.config.clone()),
                    decoder: OpusDecoder::new()?,
                    frame: vec![0.0; MAX_DECODED_SAMPLES],
                    len: 0,
                    pos: 0,
                    level: 0.0,
                    speaking: SpeakingDetector::default(),
                    last_packet: now,
                    decode_errors: 0,
                });
                self.sources.len() - 1
            }
        };
        let s = &mut self.sources[index];
        s.last_packet = now;
        s.jitter.push(seq, timestamp, payload, now);
        Ok(())
    }

    /// Fills `out` (48 kHz mono) with the mix of every source, clipped to -1.0..=1.0. `now` is
    /// when `out[0]` plays.
    pub fn mix(&mut self, out: &mut [f32], now: Instant) {
        out.fill(0.0);
        for s in &mut self.sources {
            let mut i = 0;
            while i < out.len() {
                if s.pos >= s.len {
                    let at =
                        now + Duration::from_nanos(i as u64 * 1_000_000_000 / SAMPLE_RATE as u64);
                    if !s.refill(at) {
                        break;
                    }
                }
                let n = (out.len() - i).min(s.len - s.pos);
                for (o, v) in out[i..i + n].iter_mut().zip(&s.frame[s.pos..s.pos + n]) {
                    *o += v;
                }
                s.pos += n;
                i += n;
            }
        }
        for o in out.iter_mut() {
            *o = o.clamp(-1.0, 1.0);
        }
    }

    /// Drops every source (on hold, or when the call ends).
    pub fn clear(&mut self) {
        self.sources.clear();
    }

    /// Forgets sources that have sent nothing for `idle`, e.g. a participant who left.
    pub fn remove_idle(&mut self, now: Instant, idle: Duration) {
        self.sources
            .retain(|s| now.saturating_duration_since(s.last_packet) < idle);
    }

    pub fn levels(&self) -> impl Iterator<Item = SourceLevel> + '_ {
        self.sources.iter().map(|s| SourceLevel {
            source: s.id,
            level: s.level,
            speaking: s.speaking.speaking(),
        })
    }

    pub fn stats(&self) -> impl Iterator<Item = SourceStats> + '_ {
        self.sources.iter().map(|s| SourceStats {
            source: s.id,
            jitter: s.jitter.stats(),
            decode_errors: s.decode_errors,
        })
    }

    pub fn source_count(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::codec::{FRAME_SAMPLES, OpusEncoder};

    fn sine(hz: f32, amp: f32, n: usize, from: usize) -> Vec<f32> {
        (from..from + n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * hz * i as f32 / 48_000.0).sin())
            .collect()
    }

    /// Goertzel power of `hz` in `x`, normalised so a full-scale sine gives about 0.25.
    fn power_at(x: &[f32], hz: f32) -> f32 {
        let w = 2.0 * std::f32::consts::PI * hz / 48_000.0;
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for v in x {
            let s0 = v + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / (x.len() as f32 * x.len() as f32)
    }

    #[test]
    fn mixes_two_sources_and_reports_each_level() {
        let mut mixer = Mixer::new(JitterConfig::default());
        let mut a = OpusEncoder::new().unwrap();
        let mut b = OpusEncoder::new().unwrap();
        let base = Instant::now();
        let mut out = Vec::new();
        let mut chunk = vec![0.0; 240];
        // 1 s of traffic; the mixer pulls 5 ms at a time, as the record sink does.
        for tick in 0..200u32 {
            let t = base + Duration::from_millis(5 * tick as u64);
            if tick % 4 == 0 {
                let f = (tick / 4) as usize;
                let pa = a
                    .encode(&sine(500.0, 0.3, FRAME_SAMPLES, f * FRAME_SAMPLES))
                    .unwrap();
                let pb = b
                    .encode(&sine(1500.0, 0.05, FRAME_SAMPLES, f * FRAME_SAMPLES))
                    .unwrap();
                mixer
                    .push(11, f as u16, (f * FRAME_SAMPLES) as u32, pa, t)
                    .unwrap();
                mixer
                    .push(22, 100 + f as u16, 7 + (f * FRAME_SAMPLES) as u32, pb, t)
                    .unwrap();
            }
            mixer.mix(&mut chunk, t);
            out.extend_from_slice(&chunk);
        }
        let tail = &out[24_000..];
        assert!(power_at(tail, 500.0) > 10.0 * power_at(tail, 1000.0));
        assert!(power_at(tail, 1500.0) > 10.0 * power_at(tail, 1000.0));
        let levels: Vec<_> = mixer.levels().collect();
        assert_eq!(levels.len(), 2);
        let la = levels.iter().find(|l| l.source == 11).unwrap();
        let lb = levels.iter().find(|l| l.source == 22).unwrap();
        assert!(la.speaking && lb.speaking);
        assert!((la.level - 0.3 / 2f32.sqrt()).abs() < 0.05, "{la:?}");
        assert!((lb.level - 0.05 / 2f32.sqrt()).abs() < 0.02, "{lb:?}");
        assert!(
            mixer
                .stats()
                .all(|s| s.jitter.lost == 0 && s.decode_errors == 0)
        );
    }

    #[test]
    fn loud_sources_saturate_instead_of_wrapping() {
        let mut mixer = Mixer::new(JitterConfig::default());
        let base = Instant::now();
        let mut encoders: Vec<_> = (0..3).map(|_| OpusEncoder::new().unwrap()).collect();
        let mut chunk = vec![0.0; 960];
        let mut peak = 0.0f32;
        for f in 0..40usize {
            let t = base + Duration::from_millis(20 * f as u64);
            for (src, enc) in encoders.iter_mut().enumerate() {
                let p = enc
                    .encode(&sine(200.0, 0.9, FRAME_SAMPLES, f * FRAME_SAMPLES))
                    .unwrap();
                mixer
                    .push(src as u32, f as u16, (f * FRAME_SAMPLES) as u32, p, t)
                    .unwrap();
            }
            mixer.mix(&mut chunk, t);
            peak = chunk.iter().fold(peak, |m, v| m.max(v.abs()));
        }
        assert!(peak <= 1.0 && peak > 0.99, "peak {peak}");
    }

    #[test]
    fn garbage_and_idle_sources_do_not_break_the_mix() {
        let mut mixer = Mixer::new(JitterConfig::default());
        let base = Instant::now();
        let mut chunk = vec![0.0; 480];
        for f in 0..20u16 {
            let t = base + Duration::from_millis(20 * f as u64);
            mixer
                .push(
                    5,
                    f,
                    f as u32 * 960,
                    Bytes::from_static(&[0xff, 0xfe, 0xfd]),
                    t,
                )
                .unwrap();
            mixer.mix(&mut chunk, t);
            assert!(chunk.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
        }
        assert!(mixer.stats().next().unwrap().decode_errors > 0);
        mixer.remove_idle(base + Duration::from_secs(10), Duration::from_secs(2));
        assert_eq!(mixer.source_count(), 0);
        for i in 0..(MAX_SOURCES as u32 + 3) {
            mixer
                .push(
                    i,
                    0,
                    0,
                    Bytes::from_static(b"\x08"),
                    base + Duration::from_millis(i as u64),
                )
                .unwrap();
        }
        assert_eq!(mixer.source_count(), MAX_SOURCES);
    }
}
