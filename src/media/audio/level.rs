//! Loudness for meters, the RFC 6464 level carried with each packet, and "is speaking".

/// Below this RMS (about -42 dBFS) a frame counts as background noise, not voice.
pub const VOICE_RMS: f32 = 0.008;
/// How long "speaking" stays on after the last voiced frame, so it does not flicker between
/// words.
pub const SPEAKING_HOLD_SAMPLES: u32 = 48_000 * 400 / 1000;

pub fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f32 = samples.iter().map(|s| s * s).sum();
    (sum / samples.len() as f32).sqrt()
}

/// RFC 6464 audio level: 0 is the loudest (0 dBov), 127 is silence (-127 dBov or quieter).
pub fn dbov(rms: f32) -> u8 {
    if rms.is_nan() || rms <= 0.0 {
        return 127;
    }
    (-20.0 * rms.log10()).round().clamp(0.0, 127.0) as u8
}

/// Voice activity with a hold time, fed one block of samples at a time.
#[derive(Debug, Clone, Default)]
pub struct SpeakingDetector {
    since_voice: Option<u32>,
}

impl SpeakingDetector {
    /// Takes the RMS of a block of `samples` samples; returns whether the talker counts as
    /// speaking after it.
    pub fn update(&mut self, rms: f32, samples: u32) -> bool {
        if rms >= VOICE_RMS {
            self.since_voice = Some(0);
        } else if let Some(n) = self.since_voice {
            let n = n.saturating_add(samples);
            self.since_voice = (n <= SPEAKING_HOLD_SAMPLES).then_some(n);
        }
        self.speaking()
    }

    pub fn speaking(&self) -> bool {
        self.since_voice.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbov_follows_rfc_6464() {
        assert_eq!(dbov(1.0), 0);
        assert_eq!(dbov(0.1), 20);
        assert_eq!(dbov(0.0), 127);
        assert_eq!(dbov(f32::NAN), 127);
        assert_eq!(dbov(1e-9), 127);
        assert_eq!(dbov(2.0), 0);
    }

    #[test]
    fn speaking_holds_for_a_moment_after_the_voice_stops() {
        let mut d = SpeakingDetector::default();
        assert!(!d.update(0.001, 960));
        assert!(d.update(0.1, 960));
        for _ in 0..(SPEAKING_HOLD_SAMPLES / 960) {
            assert!(d.update(0.0, 960));
        }
        assert!(!d.update(0.0, 960));
        assert!(!d.speaking());
    }
}
