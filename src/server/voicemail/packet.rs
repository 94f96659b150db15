//! Opus packets as RFC 6716 §3 frames them, read from the TOC byte without decoding: how long a
//! packet plays and whether its framing is valid. And the packets a recorder writes into a gap
//! so that a file's timeline stays true (RFC 7845 §4.1): zero-length frames that ask the decoder
//! for loss concealment, and CELT frames coded as silence.

use bytes::Bytes;

/// The most audio one packet may carry: 120 ms at 48 kHz (RFC 6716 §3.2.5).
pub const MAX_PACKET_SAMPLES: u32 = 5_760;
/// The shortest Opus frame, 2.5 ms: gaps are filled in multiples of it.
pub const MIN_FRAME_SAMPLES: u32 = 120;
/// Gaps up to this long (100 ms) are filled with loss-concealment requests, as RFC 7845 §4.1
/// recommends (the decoder continues the last sound and fades it); longer ones with silence.
pub const MAX_PLC_SAMPLES: u32 = 4_800;
/// RFC 6716 §3.4 R2: no frame is longer than 1275 bytes.
const MAX_FRAME_BYTES: usize = 1_275;
/// A CELT frame that decodes as silence: the range coder's first symbol, the silence flag, is 1.
const CELT_SILENCE: [u8; 2] = [0xff, 0xfe];

/// 48 kHz samples in one frame of the configuration the TOC byte names (RFC 6716 §3.1, table 2).
pub fn frame_samples(toc: u8) -> u32 {
    let config = toc >> 3;
    match config {
        // SILK-only, NB/MB/WB: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1_920, 2_880][usize::from(config % 4)],
        // Hybrid, SWB/FB: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT-only, NB/WB/SWB/FB: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    }
}

/// How long `packet` plays, in 48 kHz samples, or `None` when its framing breaks one of the
/// rules of RFC 6716 §3.4 (R1-R7): empty, a frame longer than 1275 bytes, lengths that overrun
/// the packet, no frames, or more than 120 ms.
pub fn samples(packet: &[u8]) -> Option<u32> {
    let (&toc, rest) = packet.split_first()?;
    let frames: u32 = match toc & 3 {
        0 => {
            (rest.len() <= MAX_FRAME_BYTES).then_some(())?;
            1
        }
        1 => {
            (rest.len().is_multiple_of(2) && rest.len() / 2 <= MAX_FRAME_BYTES).then_some(())?;
            2
        }
        2 => {
            let (first, used) = frame_length(rest)?;
            let rest = rest.get(used..)?;
            (first <= rest.len() && rest.len() - first <= MAX_FRAME_BYTES).then_some(())?;
            2
        }
        _ => {
            let (&count, mut rest) = rest.split_first()?;
            let m = u32::from(count & 0x3f);
            (m >= 1 && m * frame_samples(toc) <= MAX_PACKET_SAMPLES).then_some(())?;
            let mut padding = 0usize;
            if count & 0x40 != 0 {
                loop {
                    let (&p, r) = rest.split_first()?;
                    rest = r;
                    if p == 255 {
                        padding += 254;
                    } else {
                        padding += usize::from(p);
                        break;
                    }
                }
            }
            if count & 0x80 != 0 {
                let mut total = 0usize;
                for _ in 1..m {
                    let (len, used) = frame_length(rest)?;
                    rest = rest.get(used..)?;
                    total += len;
                }
                let data = rest.len().checked_sub(padding)?;
                (total <= data && data - total <= MAX_FRAME_BYTES).then_some(())?;
            } else {
                let data = rest.len().checked_sub(padding)?;
                let m = m as usize;
                (data.is_multiple_of(m) && data / m <= MAX_FRAME_BYTES).then_some(())?;
            }
            m
        }
    };
    Some(frames * frame_samples(toc))
}

/// One frame length, coded in one or two bytes (RFC 6716 §3.2.1); returns (length, bytes used).
fn frame_length(b: &[u8]) -> Option<(usize, usize)> {
    match *b {
        [x, ..] if x < 252 => Some((usize::from(x), 1)),
        [x, y, ..] => Some((usize::from(x) + 4 * usize::from(y), 2)),
        _ => None,
    }
}

/// A packet of `count` CELT frames (fullband, `frame` samples each: 120, 240, 480 or 960) that
/// all decode as exact silence. `None` for other frame sizes, no frames or more than 120 ms.
pub fn silence(frame: u32, count: u8) -> Option<Bytes> {
    let config: u8 = match frame {
        120 => 28,
        240 => 29,
        480 => 30,
        960 => 31,
        _ => return None,
    };
    if count == 0 || u32::from(count) * frame > MAX_PACKET_SAMPLES {
        return None;
    }
    if count == 1 {
        let mut p = vec![config << 3];
        p.extend_from_slice(&CELT_SILENCE);
        return Some(Bytes::from(p));
    }
    // Code 3, constant bitrate: every frame is the same two bytes.
    let mut p = vec![config << 3 | 3, count];
    for _ in 0..count {
        p.extend_from_slice(&CELT_SILENCE);
    }
    Some(Bytes::from(p))
}

/// A packet that asks the decoder to conceal one lost frame: the TOC byte `like` (mode,
/// bandwidth and frame size of the packet before the gap) with a zero-length frame (RFC 6716
/// §3.2.1, RFC 7845 §4.1). It plays for [`frame_samples`]`(like)`.
pub fn plc(like: u8) -> Bytes {
    Bytes::from(vec![like & !3])
}

/// Packets that fill `gap` samples (rounded down to 2.5 ms) after a packet whose TOC byte was
/// `prev_toc`, each with its duration. Short gaps that the previous frame size (10 or 20 ms)
/// divides become concealment requests; anything else becomes silence.
pub fn fill(gap: u32, prev_toc: Option<u8>) -> Vec<(Bytes, u32)> {
    let gap = gap - gap % MIN_FRAME_SAMPLES;
    let mut out = Vec::new();
    if gap == 0 {
        return out;
    }
    if let Some(toc) = prev_toc {
        let fs = frame_samples(toc);
        // libopus conceals 10 and 20 ms frames in one go; other sizes it may cut short, which
        // would put the file's granule positions out of step with what a player decodes.
        if (fs == 480 || fs == 960) && gap.is_multiple_of(fs) && gap <= MAX_PLC_SAMPLES {
            for _ in 0..gap / fs {
                out.push((plc(toc), fs));
            }
            return out;
        }
    }
    let mut rest = gap;
    while rest >= MAX_PACKET_SAMPLES {
        out.extend(silence(960, 6).map(|p| (p, MAX_PACKET_SAMPLES)));
        rest -= MAX_PACKET_SAMPLES;
    }
    if rest >= 960 {
        let count = (rest / 960) as u8;
        out.extend(silence(960, count).map(|p| (p, u32::from(count) * 960)));
        rest %= 960;
    }
    for frame in [480, 240, 120] {
        if rest >= frame {
            out.extend(silence(frame, 1).map(|p| (p, frame)));
            rest -= frame;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::codec::{MAX_DECODED_SAMPLES, OpusDecoder, OpusEncoder};

    fn speechy(n: usize, start: usize) -> Vec<f32> {
        (start..start + n)
            .map(|i| {
                let t = i as f32 / 48_000.0;
                let env = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 3.0 * t).sin();
                env * 0.3
                    * ((2.0 * std::f32::consts::PI * 180.0 * t).sin()
                        + 0.5 * (2.0 * std::f32::consts::PI * 720.0 * t).sin())
            })
            .collect()
    }

    #[test]
    fn durations_follow_the_toc() {
        // Code 0, 20 ms SILK WB; 10 ms hybrid; 2.5 ms CELT.
        assert_eq!(samples(&[9 << 3, 1, 2, 3]), Some(960));
        assert_eq!(samples(&[12 << 3, 1]), Some(480));
        assert_eq!(samples(&[28 << 3]), Some(120));
        // Code 1: two equal frames, so the payload must be even.
        assert_eq!(samples(&[(1 << 3) | 1, 1, 2]), Some(1_920));
        assert_eq!(samples(&[(1 << 3) | 1, 1, 2, 3]), None);
        // Code 2: first frame 2 bytes, second 1 byte; then a first length that overruns.
        assert_eq!(samples(&[(31 << 3) | 2, 2, 7, 7, 7]), Some(1_920));
        assert_eq!(samples(&[(31 << 3) | 2, 9, 7]), None);
        // Code 3 CBR: 3 frames of 2 bytes; 60 ms SILK x 3 = 180 ms is too long; zero frames.
        assert_eq!(samples(&[(31 << 3) | 3, 3, 1, 1, 2, 2, 3, 3]), Some(2_880));
        assert_eq!(samples(&[(3 << 3) | 3, 3, 0, 0, 0]), None);
        assert_eq!(samples(&[(31 << 3) | 3, 0]), None);
        // Code 3 VBR with padding: 2 frames, 1 padding byte, first frame 1 byte.
        assert_eq!(
            samples(&[(31 << 3) | 3, 0x80 | 0x40 | 2, 1, 1, 5, 6, 6, 0]),
            Some(1_920)
        );
        assert_eq!(samples(&[(31 << 3) | 3, 0x40 | 2, 200, 1, 1]), None);
        assert_eq!(samples(&[]), None);
        assert_eq!(samples(&[0; 1_277]), None);
    }

    #[test]
    fn our_encoder_makes_20_ms_packets_the_parser_accepts() {
        let mut enc = OpusEncoder::new().unwrap();
        for f in 0..20 {
            let p = enc.encode(&speechy(960, f * 960)).unwrap();
            assert_eq!(samples(&p), Some(960), "{p:?}");
        }
    }

    #[test]
    fn silence_packets_decode_to_zeros_of_the_right_length() {
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = vec![1.0; MAX_DECODED_SAMPLES];
        for (frame, count) in [(120, 1), (240, 1), (480, 1), (960, 1), (960, 6), (960, 3)] {
            let p = silence(frame, count).unwrap();
            let n = frame * u32::from(count);
            assert_eq!(samples(&p), Some(n));
            assert_eq!(dec.decode(&p, &mut out).unwrap(), n as usize);
            let peak = out[..n as usize].iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(peak < 1e-6, "{frame}x{count}: peak {peak}");
        }
        assert!(
            silence(960, 7).is_none() && silence(100, 1).is_none() && silence(960, 0).is_none()
        );
    }

    #[test]
    fn silence_after_speech_fades_out_and_speech_after_it_decodes() {
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = vec![0.0; MAX_DECODED_SAMPLES];
        for f in 0..25 {
            let p = enc.encode(&speechy(960, f * 960)).unwrap();
            dec.decode(&p, &mut out).unwrap();
        }
        let p = silence(960, 1).unwrap();
        assert_eq!(dec.decode(&p, &mut out).unwrap(), 960);
        // The decoder cross-fades the mode switch over a few ms, then it is silent.
        let tail = out[480..960].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(tail < 1e-3, "tail peak {tail}");
        for f in 25..35 {
            let p = enc.encode(&speechy(960, f * 960)).unwrap();
            assert_eq!(dec.decode(&p, &mut out).unwrap(), 960);
        }
        let rms = (out[..960].iter().map(|v| v * v).sum::<f32>() / 960.0).sqrt();
        assert!(rms > 0.05, "speech after silence has rms {rms}");
    }

    #[test]
    fn plc_requests_conceal_exactly_the_frame_size() {
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = vec![0.0; MAX_DECODED_SAMPLES];
        let mut last = Bytes::new();
        for f in 0..25 {
            last = enc.encode(&speechy(960, f * 960)).unwrap();
            dec.decode(&last, &mut out).unwrap();
        }
        for (toc, n) in [
            (last[0], 960),
            (last[0] & 0x07 | (30 << 3), 480),
            (0xf8, 960),
        ] {
            let p = plc(toc);
            assert_eq!(samples(&p), Some(n));
            assert_eq!(
                dec.decode(&p, &mut out).unwrap(),
                n as usize,
                "toc {toc:#04x}"
            );
        }
    }

    #[test]
    fn fill_covers_the_gap_exactly() {
        let total = |v: &[(Bytes, u32)]| v.iter().map(|(_, n)| n).sum::<u32>();
        for gap in [
            0, 119, 120, 960, 1_000, 4_800, 4_801, 9_600, 48_000, 100_000,
        ] {
            let v = fill(gap, Some(9 << 3));
            assert_eq!(total(&v), gap - gap % 120, "gap {gap}");
            for (p, n) in &v {
                assert_eq!(samples(p), Some(*n), "gap {gap}: {p:?}");
            }
        }
        // 60 ms after a 20 ms packet: three concealment requests; 2 s: silence.
        let v = fill(2_880, Some(9 << 3));
        assert!(v.iter().all(|(p, n)| p.len() == 1 && *n == 960), "{v:?}");
        let v = fill(96_000, Some(9 << 3));
        assert!(v.iter().all(|(p, _)| p.len() > 1), "{v:?}");
        assert_eq!(v.len(), 17);
    }
}
