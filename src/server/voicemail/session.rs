//! One caller leaving one message: the greeting, paced in real time, then the caller's Opus
//! packets muxed into an Ogg Opus file as they are, with gaps in the stream written as time.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::greeting::Greeting;
use super::ogg_opus::OggOpusWriter;
use super::{VoicemailError, packet};
use crate::media::audio::codec::{FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE};
use crate::media::link::RtpAudio;

/// Packets held to put reordered ones back in order: 3 (60 ms at 20 ms a packet). Only the
/// file waits for them; nobody listens live.
const REORDER_DEPTH: usize = 3;
/// A packet this far behind the newest (in sequence numbers) means the sender restarted its
/// sequence, not a late packet.
const SEQ_RESTART: i64 = 100;
/// A timestamp jump this much (1 s) beyond the time that really passed between two packets
/// means the sender's clock jumped (a restart), not that it was muted: the gap written is then
/// the time that passed.
const CLOCK_JUMP_SAMPLES: i64 = SAMPLE_RATE as i64;

/// What [`run_session`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingDone {
    pub path: PathBuf,
    /// What a player plays (the pre-skip excluded).
    pub duration: Duration,
    /// The caller's packets written (gap fillers not counted).
    pub packets: u64,
    /// Time written as concealment or silence for the gaps in the caller's stream.
    pub filled: Duration,
    /// Caller packets not written: late (after a later one was written), duplicate, or not
    /// valid Opus. Packets that arrived during the greeting are not counted.
    pub discarded: u64,
    pub ended_by: EndedBy,
}

/// Why recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// `max_len` of audio was recorded.
    MaxLength,
    /// `stop` fired (or its sender was dropped).
    Stop,
    /// The inbound channel closed: the caller is gone.
    InboundClosed,
}

/// Plays `greeting` to the caller, then records what the caller sends into an Ogg Opus file at
/// `path` until `max_len` of audio is recorded, `stop` fires (a send or a dropped sender), or
/// `inbound` closes.
///
/// - The file is created first: if it cannot be, the caller hears no greeting and the error
///   comes back at once. It always ends up a valid Ogg Opus file, empty if the caller left
///   during the greeting.
/// - Each greeting frame goes to `send` on a 20 ms tokio interval (a late tick is caught up, so
///   the stream follows the media clock); sequence numbers and timestamps run on from random
///   starting values, the first packet carries the marker bit. The greeting ends one frame
///   time after its last frame was sent.
/// - Packets that arrive before that are dropped, not recorded.
/// - Recording starts with the first packet after the greeting. Packets are written as they
///   are (no transcoding), put back in order within a few packets; late and duplicate packets
///   are dropped. Gaps in the RTP timestamps, from loss or a muted sender, are written as time:
///   up to 100 ms as loss-concealment requests (RFC 7845 §4.1), longer as coded silence.
/// - The length counts every sample written, fillers included; recording stops once it reaches
///   `max_len` (a filler is cut to fit; a packet that starts before the limit is kept whole).
pub async fn run_session(
    greeting: Greeting,
    mut send: impl FnMut(RtpAudio) + Send,
    mut inbound: mpsc::Receiver<RtpAudio>,
    path: PathBuf,
    max_len: Duration,
    mut stop: oneshot::Receiver<()>,
) -> Result<RecordingDone, VoicemailError> {
    let write_err = |source| VoicemailError::Write {
        path: path.display().to_string(),
        source,
    };
    let writer = OggOpusWriter::create(&path).map_err(write_err)?;
    let max_samples = (max_len.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as u64;
    let mut rec = Recorder::new(writer, max_samples);

    // The greeting.
    let frames = greeting.frames;
    let mut ticker = tokio::time::interval(Duration::from_millis(u64::from(FRAME_MS)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut seq: u16 = rand::random();
    let mut timestamp: u32 = rand::random();
    let mut next = 0usize;
    let mut ignored = 0u64;
    let mut ended_by = None;
    while ended_by.is_none() {
        tokio::select! {
            biased;
            _ = &mut stop => ended_by = Some(EndedBy::Stop),
            _ = ticker.tick() => {
                let Some(frame) = frames.get(next) else { break };
                send(RtpAudio { ssrc: 0, seq, timestamp, marker: next == 0, level: None, payload: frame.clone() });
                seq = seq.wrapping_add(1);
                timestamp = timestamp.wrapping_add(FRAME_SAMPLES as u32);
                next += 1;
            }
            p = inbound.recv() => match p {
                Some(_) => ignored += 1,
                None => ended_by = Some(EndedBy::InboundClosed),
            },
        }
    }
    tracing::debug!(
        frames = next,
        ignored,
        "voicemail greeting done, recording to {}",
        path.display()
    );

    // The message.
    let start = Instant::now();
    while ended_by.is_none() {
        tokio::select! {
            biased;
            _ = &mut stop => ended_by = Some(EndedBy::Stop),
            p = inbound.recv() => match p {
                Some(p) => {
                    if rec.push(p, start.elapsed()).map_err(write_err)? {
                        ended_by = Some(EndedBy::MaxLength);
                    }
                }
                None => ended_by = Some(EndedBy::InboundClosed),
            },
        }
    }
    rec.flush().map_err(write_err)?;
    let ended_by = if rec.full() {
        EndedBy::MaxLength
    } else {
        ended_by.unwrap_or(EndedBy::Stop)
    };
    let (packets, filled, discarded) = (rec.packets, rec.filled, rec.discarded);
    let writer = rec.writer;
    // finish() syncs the file to disk: keep that off the async workers.
    let duration = tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| write_err(io::Error::other(e.to_string())))?
        .map_err(write_err)?;
    tracing::debug!(
        packets,
        filled,
        discarded,
        ?ended_by,
        "voicemail message of {duration:?} in {}",
        path.display()
    );
    Ok(RecordingDone {
        path,
        duration,
        packets,
        filled: Duration::from_micros(filled * 1_000_000 / u64::from(SAMPLE_RATE)),
        discarded,
        ended_by,
    })
}

struct Buffered {
    rtp: RtpAudio,
    samples: u32,
    arrival: Duration,
}

/// The recording half, free of tokio: packets in (with their arrival time), Ogg pages out.
struct Recorder {
    writer: OggOpusWriter,
    max_samples: u64,
    /// Extended sequence number -> packet, waiting to be written in order.
    buffer: BTreeMap<i64, Buffered>,
    /// The newest packet seen: (extended, raw) sequence number.
    newest: Option<(i64, u16)>,
    /// Extended sequence number of the last packet written.
    written: Option<i64>,
    /// The RTP timestamp the next packet should carry if nothing is missing.
    next_ts: Option<u32>,
    last_arrival: Duration,
    last_samples: u32,
    last_toc: Option<u8>,
    packets: u64,
    filled: u64,
    discarded: u64,
}

impl Recorder {
    fn new(writer: OggOpusWriter, max_samples: u64) -> Self {
        Recorder {
            writer,
            max_samples,
            buffer: BTreeMap::new(),
            newest: None,
            written: None,
            next_ts: None,
            last_arrival: Duration::ZERO,
            last_samples: 0,
            last_toc: None,
            packets: 0,
            filled: 0,
            discarded: 0,
        }
    }

    fn full(&self) -> bool {
        self.writer.samples() >= self.max_samples
    }

    /// Takes one packet; returns whether the recording is now full.
    fn push(&mut self, rtp: RtpAudio, arrival: Duration) -> io::Result<bool> {
        if self.full() {
            return Ok(true);
        }
        let Some(samples) = packet::samples(&rtp.payload) else {
            tracing::debug!(
                seq = rtp.seq,
                len = rtp.payload.len(),
                "not an Opus packet, dropped"
            );
            self.discarded += 1;
            return Ok(false);
        };
        let ext = match self.newest {
            None => i64::from(rtp.seq),
            Some((ext, seq)) => {
                let d = i64::from(rtp.seq.wrapping_sub(seq) as i16);
                if d < -SEQ_RESTART {
                    // The sender started over: write what is held, then continue after it.
                    self.flush()?;
                    self.newest = Some((ext + 1, rtp.seq));
                    ext + 1
                } else {
                    ext + d
                }
            }
        };
        if self.newest.is_none_or(|(newest, _)| ext > newest) {
            self.newest = Some((ext, rtp.seq));
        }
        if self.written.is_some_and(|w| ext <= w) || self.buffer.contains_key(&ext) {
            self.discarded += 1;
            return Ok(self.full());
        }
        self.buffer.insert(
            ext,
            Buffered {
                rtp,
                samples,
                arrival,
            },
        );
        while self.buffer.len() > REORDER_DEPTH && !self.full() {
            if let Some((ext, b)) = self.buffer.pop_first() {
                self.write(ext, b)?;
            }
        }
        Ok(self.full())
    }

    /// Writes every held packet (as far as the length allows).
    fn flush(&mut self) -> io::Result<()> {
        while !self.full() {
            let Some((ext, b)) = self.buffer.pop_first() else {
                break;
            };
            self.write(ext, b)?;
        }
        self.buffer.clear();
        Ok(())
    }

    fn write(&mut self, ext: i64, b: Buffered) -> io::Result<()> {
        if let Some(next_ts) = self.next_ts {
            let ts_gap = i64::from(b.rtp.timestamp.wrapping_sub(next_ts) as i32);
            let passed = (b.arrival.saturating_sub(self.last_arrival).as_micros() as i64)
                * i64::from(SAMPLE_RATE)
                / 1_000_000;
            let wall_gap = passed - i64::from(self.last_samples);
            let gap = if ts_gap > wall_gap + CLOCK_JUMP_SAMPLES || ts_gap < -CLOCK_JUMP_SAMPLES {
                // The sender's clock jumped: keep the time that passed, in whole frames.
                tracing::debug!(ts_gap, wall_gap, "RTP timestamp jump, using arrival times");
                let frame = FRAME_SAMPLES as i64;
                (wall_gap / frame * frame).max(0)
            } else {
                ts_gap.max(0)
            };
            let room = self.max_samples.saturating_sub(self.writer.samples());
            let gap = (gap as u64).min(room).min(u64::from(u32::MAX)) as u32;
            for (p, n) in packet::fill(gap, self.last_toc) {
                self.writer.write_packet(&p, n)?;
                self.filled += u64::from(n);
            }
        }
        if self.full() {
            return Ok(());
        }
        self.writer.write_packet(&b.rtp.payload, b.samples)?;
        self.packets += 1;
        self.written = Some(ext);
        self.next_ts = Some(b.rtp.timestamp.wrapping_add(b.samples));
        self.last_arrival = b.arrival;
        self.last_samples = b.samples;
        self.last_toc = b.rtp.payload.first().copied();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::voicemail::ogg_opus::{probe, read_packets};
    use bytes::Bytes;

    /// A distinct, valid 20 ms packet per index (CELT code 0, arbitrary payload).
    fn pkt(i: u16) -> Bytes {
        Bytes::from(vec![0xf8, 0x55, (i >> 8) as u8, i as u8])
    }

    fn rtp(seq: u16, ts: u32) -> RtpAudio {
        RtpAudio {
            ssrc: 7,
            seq,
            timestamp: ts,
            marker: false,
            level: None,
            payload: pkt(seq),
        }
    }

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn recorder(dir: &tempfile::TempDir, max_ms: u64) -> Recorder {
        let w = OggOpusWriter::create(&dir.path().join("r.opus")).unwrap();
        Recorder::new(w, max_ms * 48)
    }

    fn finish(rec: Recorder, dir: &tempfile::TempDir) -> Vec<Bytes> {
        rec.writer.finish().unwrap();
        read_packets(&dir.path().join("r.opus")).unwrap()
    }

    #[test]
    fn reordered_and_duplicate_packets_are_put_right() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = recorder(&dir, 10_000);
        let base = 65_530u16; // wraps
        let order = [0u16, 2, 1, 3, 3, 4, 6, 5, 7, 8, 9];
        for (k, i) in order.iter().enumerate() {
            let seq = base.wrapping_add(*i);
            let ts = 1_000u32.wrapping_add(u32::from(*i) * 960);
            assert!(!rec.push(rtp(seq, ts), at(20 * k as u64)).unwrap());
        }
        // Too late: 0 was written long ago.
        rec.push(rtp(base, 1_000), at(300)).unwrap();
        rec.flush().unwrap();
        assert_eq!((rec.packets, rec.discarded, rec.filled), (10, 2, 0));
        let got = finish(rec, &dir);
        let want: Vec<Bytes> = (0..10).map(|i| pkt(base.wrapping_add(i))).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn losses_become_concealment_and_mutes_become_silence() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = recorder(&dir, 10_000);
        // 0, 1, (2 and 3 lost), 4, then muted for 1 s (seq continues, timestamps jump), 5.
        let sends = [
            (0u16, 0u32, 0u64),
            (1, 960, 20),
            (4, 3_840, 80),
            (5, 3_840 + 960 + 48_000, 1_100),
        ];
        for (seq, ts, ms) in sends {
            rec.push(rtp(seq, ts), at(ms)).unwrap();
        }
        rec.flush().unwrap();
        assert_eq!(rec.packets, 4);
        assert_eq!(rec.filled, 2 * 960 + 48_000);
        let samples = rec.writer.samples();
        assert_eq!(samples, 4 * 960 + 2 * 960 + 48_000);
        let got = finish(rec, &dir);
        assert_eq!(&got[..2], &[pkt(0), pkt(1)]);
        assert_eq!(
            &got[2..4],
            &[Bytes::from_static(&[0xf8]), Bytes::from_static(&[0xf8])]
        );
        assert_eq!(got[4], pkt(4));
        assert_eq!(got.last().unwrap(), &pkt(5));
        // The second of silence is in 120 ms packets and one of 40 ms.
        let silence: u32 = got[5..got.len() - 1]
            .iter()
            .map(|p| packet::samples(p).unwrap())
            .sum();
        assert_eq!(silence, 48_000);
    }

    #[test]
    fn a_clock_jump_is_written_as_the_time_that_passed() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = recorder(&dir, 100_000);
        rec.push(rtp(0, 0), at(0)).unwrap();
        rec.push(rtp(1, 960), at(20)).unwrap();
        // 500 ms later the timestamps leap by an hour.
        rec.push(rtp(2, 960 + 48_000 * 3_600), at(520)).unwrap();
        rec.push(rtp(3, 1_920 + 48_000 * 3_600), at(540)).unwrap();
        rec.flush().unwrap();
        assert_eq!(rec.filled, 480 * 48);
        // And leaping back is no gap (within a second), or the time passed (beyond).
        rec.push(rtp(4, 0), at(560)).unwrap();
        rec.flush().unwrap();
        assert_eq!(rec.filled, 480 * 48);
    }

    #[test]
    fn stops_at_the_limit_and_cuts_a_gap_to_fit() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = recorder(&dir, 1_000);
        let mut full = false;
        for i in 0..40u16 {
            full = rec
                .push(rtp(i, u32::from(i) * 960), at(u64::from(i) * 20))
                .unwrap();
        }
        assert!(!full);
        // A 2 s mute: the recording fills up with silence inside it.
        let full = rec.push(rtp(40, 40 * 960 + 96_000), at(2_800)).unwrap()
            || rec.push(rtp(41, 41 * 960 + 96_000), at(2_820)).unwrap()
            || rec.push(rtp(42, 42 * 960 + 96_000), at(2_840)).unwrap()
            || rec.push(rtp(43, 43 * 960 + 96_000), at(2_860)).unwrap();
        assert!(full);
        assert_eq!(rec.writer.samples(), 48_000);
        assert_eq!(rec.packets, 40);
        rec.writer.finish().unwrap();
        let info = probe(&dir.path().join("r.opus")).unwrap();
        assert_eq!(info.samples, 48_000 - 312);
    }

    #[test]
    fn invalid_packets_are_dropped_and_a_sequence_restart_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = recorder(&dir, 10_000);
        rec.push(rtp(5_000, 0), at(0)).unwrap();
        let mut bad = rtp(5_001, 960);
        bad.payload = Bytes::new();
        rec.push(bad, at(20)).unwrap();
        rec.push(rtp(5_002, 1_920), at(40)).unwrap();
        // The sender restarts far back in sequence and timestamps.
        for i in 0..5u16 {
            rec.push(
                rtp(10 + i, 5 + u32::from(i) * 960),
                at(60 + u64::from(i) * 20),
            )
            .unwrap();
        }
        rec.flush().unwrap();
        assert_eq!((rec.packets, rec.discarded), (7, 1));
        // 5_001 missing: one 20 ms concealment; the restart itself adds no time.
        assert_eq!(rec.filled, 960);
    }
}
