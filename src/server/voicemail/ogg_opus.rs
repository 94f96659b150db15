//! Ogg Opus files (RFC 7845): a writer that muxes Opus packets as they come, and strict readers.
//!
//! The writer puts OpusHead alone on the first page and OpusTags alone on the second (both with
//! granule position 0), then audio on pages of about one second, each flushed to the file when
//! it is complete. It holds the latest packet back until the next one arrives, so that
//! [`OggOpusWriter::finish`] can put it on a last page flagged end-of-stream. Dropping a writer
//! without `finish` still ends the stream properly (errors are then ignored).
//!
//! The readers check what a careless file would get wrong: the capture pattern, page checksums,
//! page order, both headers, every packet's framing, granule positions that match the packets
//! (a missing page shows up here) and the end-of-stream flag (a file cut short shows up here).

use std::fs::File;
use std::io::{self, BufWriter, Cursor, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use ogg::{OggReadError, PacketReader, PacketWriteEndInfo, PacketWriter};

use super::VoicemailError;
use super::packet;
use crate::media::audio::codec::{MAX_DECODED_SAMPLES, OpusDecoder, SAMPLE_RATE};

/// Samples the decoder drops at the start: libopus's encoder delay at 48 kHz (6.5 ms), as
/// `opusenc` writes it.
pub const PRE_SKIP: u16 = 312;
/// The vendor string in OpusTags.
pub const VENDOR: &str = "dialtone";
/// Audio pages end once they hold this much (1 s): little overhead, little lost in a crash.
const PAGE_SAMPLES: u64 = SAMPLE_RATE as u64;
/// Biggest file the readers accept. A 10-minute message at 32 kbit/s is about 2.4 MB.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Longest audio the readers accept (it bounds memory: `decode_to_pcm` holds it as f32).
pub const MAX_READ_DURATION: Duration = Duration::from_secs(20 * 60);

/// Writes one mono Ogg Opus stream to a file.
pub struct OggOpusWriter {
    path: PathBuf,
    /// `None` once finished.
    ogg: Option<PacketWriter<'static, BufWriter<File>>>,
    serial: u32,
    /// The latest packet, held back so that the last one can end the stream.
    pending: Option<Pending>,
    /// Samples written so far (including the pre-skip): the granule position.
    granule: u64,
    /// Granule position where the current page started.
    page_start: u64,
    packets: u64,
}

struct Pending {
    data: Vec<u8>,
    granule: u64,
    ends_page: bool,
}

impl OggOpusWriter {
    /// Creates (or truncates) `path` and writes OpusHead (1 channel, pre-skip 312, 48 kHz) and
    /// OpusTags (vendor "dialtone", no comments).
    pub fn create(path: &Path) -> io::Result<Self> {
        Self::create_with_tags(path, &[])
    }

    /// Like [`create`](Self::create), with user comments in OpusTags (`("CALLER", "alice")`
    /// becomes `CALLER=alice`). Tag names may not contain `=`.
    pub fn create_with_tags(path: &Path, comments: &[(&str, &str)]) -> io::Result<Self> {
        if let Some((name, _)) = comments
            .iter()
            .find(|(n, _)| n.contains('=') || n.is_empty())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("tag name {name:?} is empty or contains '='"),
            ));
        }
        let file = File::create(path)?;
        let mut ogg = PacketWriter::new(BufWriter::new(file));
        let serial: u32 = rand::random();
        ogg.write_packet(opus_head(), serial, PacketWriteEndInfo::EndPage, 0)?;
        ogg.inner_mut().flush()?;
        Ok(OggOpusWriter {
            path: path.to_path_buf(),
            ogg: Some(ogg),
            serial,
            pending: Some(Pending {
                data: opus_tags(comments),
                granule: 0,
                ends_page: true,
            }),
            granule: 0,
            page_start: 0,
            packets: 0,
        })
    }

    /// Appends one Opus packet that plays for `samples` (48 kHz units); the granule position
    /// advances by that much. The packet must be valid Opus framing of exactly that duration
    /// (see [`packet::samples`]), else nothing is written and the error is `InvalidInput`.
    pub fn write_packet(&mut self, opus: &[u8], samples: u32) -> io::Result<()> {
        if packet::samples(opus) != Some(samples) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "not an Opus packet of {samples} samples ({} bytes, TOC {:?}, {:?} samples)",
                    opus.len(),
                    opus.first(),
                    packet::samples(opus)
                ),
            ));
        }
        if self.ogg.is_none() {
            return Err(io::Error::other("the stream is already finished"));
        }
        if let Some(p) = self.pending.take() {
            self.emit(p, false)?;
        }
        self.granule += u64::from(samples);
        self.packets += 1;
        let ends_page = self.granule - self.page_start >= PAGE_SAMPLES;
        if ends_page {
            self.page_start = self.granule;
        }
        self.pending = Some(Pending {
            data: opus.to_vec(),
            granule: self.granule,
            ends_page,
        });
        Ok(())
    }

    /// What a player will play: the samples written less the pre-skip.
    pub fn duration(&self) -> Duration {
        samples_to_duration(self.granule.saturating_sub(u64::from(PRE_SKIP)))
    }

    /// Audio packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Samples written so far, including the pre-skip (the granule position).
    pub fn samples(&self) -> u64 {
        self.granule
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the last page, flagged end-of-stream, flushes and syncs the file; returns the
    /// duration a player will play.
    pub fn finish(mut self) -> io::Result<Duration> {
        self.end_stream()?;
        if let Some(ogg) = self.ogg.take() {
            let file = ogg.into_inner().into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
        }
        Ok(self.duration())
    }

    fn end_stream(&mut self) -> io::Result<()> {
        match self.pending.take() {
            Some(p) => self.emit(p, true),
            None => Ok(()),
        }
    }

    fn emit(&mut self, p: Pending, last: bool) -> io::Result<()> {
        let Some(ogg) = self.ogg.as_mut() else {
            return Ok(());
        };
        let info = if last {
            PacketWriteEndInfo::EndStream
        } else if p.ends_page {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        ogg.write_packet(p.data, self.serial, info, p.granule)?;
        if info != PacketWriteEndInfo::NormalPacket {
            ogg.inner_mut().flush()?;
        }
        Ok(())
    }
}

impl Drop for OggOpusWriter {
    fn drop(&mut self) {
        // Not finished (an error, or the session was cancelled): still leave a valid file.
        let _ = self.end_stream();
    }
}

fn opus_head() -> Vec<u8> {
    let mut h = Vec::with_capacity(19);
    h.extend_from_slice(b"OpusHead");
    h.push(1); // version
    h.push(1); // channels
    h.extend_from_slice(&PRE_SKIP.to_le_bytes());
    h.extend_from_slice(&SAMPLE_RATE.to_le_bytes()); // input sample rate (informational)
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // channel mapping family 0: mono or stereo, no mapping table
    h
}

fn opus_tags(comments: &[(&str, &str)]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"OpusTags");
    t.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
    t.extend_from_slice(VENDOR.as_bytes());
    t.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for (name, value) in comments {
        let c = format!("{name}={value}");
        t.extend_from_slice(&(c.len() as u32).to_le_bytes());
        t.extend_from_slice(c.as_bytes());
    }
    t
}

fn samples_to_duration(samples: u64) -> Duration {
    Duration::from_micros(samples * 1_000_000 / u64::from(SAMPLE_RATE))
}

/// What the headers and pages of an Ogg Opus file say.
#[derive(Debug, Clone, PartialEq)]
pub struct OggOpusInfo {
    pub channels: u8,
    pub pre_skip: u16,
    /// The sample rate of the encoder's input (informational; Opus always decodes at 48 kHz).
    pub input_sample_rate: u32,
    /// Gain to apply on output, Q7.8 dB.
    pub output_gain: i16,
    pub vendor: String,
    /// User comments, `NAME=value`.
    pub comments: Vec<String>,
    /// Audio packets (headers not counted).
    pub packets: u64,
    /// 48 kHz samples a player plays: the last granule position less the pre-skip.
    pub samples: u64,
    pub duration: Duration,
}

/// Reads and checks the whole file; returns what it says about itself.
pub fn probe(path: &Path) -> Result<OggOpusInfo, VoicemailError> {
    read_stream(path).map(|(info, _)| info)
}

/// The audio packets of the file's Opus stream, in order (headers checked and skipped).
pub fn read_packets(path: &Path) -> Result<Vec<Bytes>, VoicemailError> {
    read_stream(path).map(|(_, packets)| packets)
}

/// Decodes the file to 48 kHz mono (a stereo stream is down-mixed), with the pre-skip removed,
/// the end trimmed to the last granule position and the header's output gain applied.
pub fn decode_to_pcm(path: &Path) -> Result<Vec<f32>, VoicemailError> {
    let (info, packets) = read_stream(path)?;
    let p = path.display().to_string();
    let mut dec = OpusDecoder::new()?;
    let mut out = vec![0f32; MAX_DECODED_SAMPLES];
    let mut pcm = Vec::with_capacity((info.samples + u64::from(info.pre_skip)) as usize);
    for (index, packet) in packets.iter().enumerate() {
        let n = dec
            .decode(packet, &mut out)
            .map_err(|e| VoicemailError::Decode {
                path: p.clone(),
                index,
                message: e.to_string(),
            })?;
        pcm.extend_from_slice(&out[..n]);
    }
    let start = usize::from(info.pre_skip).min(pcm.len());
    pcm.drain(..start);
    pcm.truncate(info.samples as usize);
    if info.output_gain != 0 {
        let gain = 10f32.powf(f32::from(info.output_gain) / (20.0 * 256.0));
        pcm.iter_mut().for_each(|s| *s *= gain);
    }
    Ok(pcm)
}

fn read_stream(path: &Path) -> Result<(OggOpusInfo, Vec<Bytes>), VoicemailError> {
    let p = path.display().to_string();
    let read_err = |source| VoicemailError::Read {
        path: p.clone(),
        source,
    };
    let bytes = std::fs::metadata(path).map_err(read_err)?.len();
    if bytes > MAX_FILE_BYTES {
        return Err(VoicemailError::TooLarge {
            path: p,
            bytes,
            max: MAX_FILE_BYTES,
        });
    }
    let data = std::fs::read(path).map_err(read_err)?;
    if data.len() as u64 > MAX_FILE_BYTES {
        return Err(VoicemailError::TooLarge {
            path: p,
            bytes: data.len() as u64,
            max: MAX_FILE_BYTES,
        });
    }
    if !data.starts_with(b"OggS") {
        let message = if data.is_empty() {
            "it is empty".to_string()
        } else {
            format!("it starts with \"{}\", not \"OggS\"", preview(&data))
        };
        return Err(VoicemailError::NotOgg { path: p, message });
    }
    if data.len() < 28 {
        return Err(VoicemailError::Truncated {
            path: p,
            message: format!("{} bytes, less than one Ogg page", data.len()),
        });
    }
    // The ogg crate survives every mangled file the tests throw at it; should some other input
    // still make it panic, that is one more corrupt file, not a crashed task.
    std::panic::catch_unwind(|| parse(&p, data)).unwrap_or_else(|_| {
        Err(VoicemailError::Corrupt {
            path: p.clone(),
            message: "its pages could not be parsed (the Ogg reader panicked)".into(),
        })
    })
}

fn parse(p: &str, data: Vec<u8>) -> Result<(OggOpusInfo, Vec<Bytes>), VoicemailError> {
    let corrupt = |message: String| VoicemailError::Corrupt {
        path: p.to_string(),
        message,
    };
    let bad_header = |message: String| VoicemailError::BadHeader {
        path: p.to_string(),
        message,
    };
    let truncated = |message: String| VoicemailError::Truncated {
        path: p.to_string(),
        message,
    };
    let mut reader = PacketReader::new(Cursor::new(data));
    let mut next = || reader.read_packet().map_err(|e| ogg_error(p, e));

    let head = next()?.ok_or_else(|| truncated("it ends before its first packet".into()))?;
    if !head.first_in_stream() {
        return Err(corrupt(
            "its first page is not flagged beginning-of-stream".into(),
        ));
    }
    if !head.data.starts_with(b"OpusHead") {
        return Err(VoicemailError::NotOpus {
            path: p.to_string(),
            message: format!(
                "its first packet starts with \"{}\", not \"OpusHead\"",
                preview(&head.data)
            ),
        });
    }
    let h = &head.data;
    if h.len() < 19 {
        return Err(bad_header(format!(
            "OpusHead is {} bytes, less than 19",
            h.len()
        )));
    }
    let version = h[8];
    if version & 0xf0 != 0 {
        return Err(bad_header(format!("OpusHead version {version} is not 0.x")));
    }
    let channels = h[9];
    let pre_skip = u16::from_le_bytes([h[10], h[11]]);
    let input_sample_rate = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    let output_gain = i16::from_le_bytes([h[16], h[17]]);
    let family = h[18];
    if family != 0 {
        return Err(bad_header(format!(
            "channel mapping family {family} (only 0, mono or stereo, is supported)"
        )));
    }
    if !(1..=2).contains(&channels) {
        return Err(bad_header(format!(
            "{channels} channels with mapping family 0 (it allows 1 or 2)"
        )));
    }
    if !head.last_in_page() || head.absgp_page() != 0 {
        return Err(bad_header(format!(
            "OpusHead is not alone on a first page with granule position 0 (granule {})",
            head.absgp_page() as i64
        )));
    }
    let serial = head.stream_serial();

    let tags = loop {
        match next()? {
            Some(t) if t.stream_serial() == serial => break t,
            Some(_) => continue, // another logical stream multiplexed in: not ours
            None => return Err(truncated("it ends after OpusHead, before OpusTags".into())),
        }
    };
    if !tags.data.starts_with(b"OpusTags") {
        return Err(bad_header(format!(
            "the second packet starts with \"{}\", not \"OpusTags\"",
            preview(&tags.data)
        )));
    }
    let (vendor, comments) = parse_tags(&tags.data).map_err(bad_header)?;
    if !tags.last_in_page() {
        return Err(bad_header("audio starts on the OpusTags page".into()));
    }

    let max_samples = MAX_READ_DURATION.as_secs() * u64::from(SAMPLE_RATE);
    let mut packets = Vec::new();
    let mut total: u64 = 0;
    let mut end: u64 = 0;
    let mut ended = tags.last_in_stream();
    while !ended {
        let Some(pk) = next()? else {
            return Err(truncated(format!(
                "no end-of-stream page after {} audio packets ({:.2} s)",
                packets.len(),
                total as f64 / f64::from(SAMPLE_RATE)
            )));
        };
        if pk.stream_serial() != serial {
            continue;
        }
        let index = packets.len();
        let n = packet::samples(&pk.data).ok_or_else(|| {
            corrupt(format!(
                "audio packet {index} is not valid Opus ({} bytes, starting \"{}\")",
                pk.data.len(),
                preview(&pk.data)
            ))
        })?;
        total += u64::from(n);
        if total > max_samples {
            return Err(VoicemailError::TooLong {
                path: p.to_string(),
                seconds: total as f64 / f64::from(SAMPLE_RATE),
                max_seconds: MAX_READ_DURATION.as_secs(),
            });
        }
        ended = pk.last_in_stream();
        if pk.last_in_page() {
            let g = pk.absgp_page();
            // Every page ends at the samples its packets add up to (a stream that starts
            // mid-way, with a granule offset, is refused), except that the last page may end
            // short of them (end trimming), though not before the page ahead of it.
            let ok = if ended {
                g <= total && g >= end
            } else {
                g == total
            };
            if !ok {
                return Err(corrupt(format!(
                    "the page ending at audio packet {index} has granule position {}, but the \
                     packets up to it play {total} samples (a page is missing or mislabelled)",
                    g as i64
                )));
            }
            end = g;
        }
        packets.push(Bytes::from(pk.data));
    }
    let samples = end.saturating_sub(u64::from(pre_skip));
    Ok((
        OggOpusInfo {
            channels,
            pre_skip,
            input_sample_rate,
            output_gain,
            vendor,
            comments,
            packets: packets.len() as u64,
            samples,
            duration: samples_to_duration(samples),
        },
        packets,
    ))
}

fn parse_tags(t: &[u8]) -> Result<(String, Vec<String>), String> {
    let mut at = 8usize;
    let mut field = |what: &str| -> Result<&[u8], String> {
        let len = t
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| format!("OpusTags ends before the {what} length"))?;
        let body = t
            .get(at + 4..)
            .and_then(|rest| rest.get(..len))
            .ok_or_else(|| {
                format!(
                    "OpusTags {what} length {len} overruns the {}-byte packet",
                    t.len()
                )
            })?;
        at += 4 + len;
        Ok(body)
    };
    let vendor = String::from_utf8_lossy(field("vendor string")?).into_owned();
    let count = t
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| "OpusTags ends before the comment count".to_string())?;
    at += 4;
    // Each comment takes at least 4 bytes, which bounds the count before anything is allocated.
    if count > (t.len() - at.min(t.len())) / 4 {
        return Err(format!(
            "OpusTags claims {count} comments in a {}-byte packet",
            t.len()
        ));
    }
    let mut comments = Vec::with_capacity(count);
    for _ in 0..count {
        let mut field = |what: &str| -> Result<&[u8], String> {
            let len = t
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(|| format!("OpusTags ends before the {what} length"))?;
            let body = t
                .get(at + 4..)
                .and_then(|rest| rest.get(..len))
                .ok_or_else(|| {
                    format!(
                        "OpusTags {what} length {len} overruns the {}-byte packet",
                        t.len()
                    )
                })?;
            at += 4 + len;
            Ok(body)
        };
        comments.push(String::from_utf8_lossy(field("comment")?).into_owned());
    }
    Ok((vendor, comments))
}

fn ogg_error(p: &str, e: OggReadError) -> VoicemailError {
    let corrupt = |message: String| VoicemailError::Corrupt {
        path: p.to_string(),
        message,
    };
    match e {
        OggReadError::ReadError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            VoicemailError::Truncated {
                path: p.to_string(),
                message: "it ends in the middle of an Ogg page".into(),
            }
        }
        OggReadError::ReadError(source) => VoicemailError::Read {
            path: p.to_string(),
            source,
        },
        OggReadError::HashMismatch(expected, got) => corrupt(format!(
            "an Ogg page's checksum is {got:08x}, not the {expected:08x} its header says"
        )),
        OggReadError::NoCapturePatternFound => {
            corrupt("no Ogg page starts where the next one should".into())
        }
        OggReadError::InvalidStreamStructVer(v) => corrupt(format!(
            "an Ogg page has stream structure version {v}, not 0"
        )),
        OggReadError::InvalidData => corrupt(
            "its Ogg pages are out of order (a packet continues from no earlier page, or a \
             stream begins twice)"
                .into(),
        ),
    }
}

/// Up to 8 bytes, printable ASCII as is, the rest escaped.
fn preview(b: &[u8]) -> String {
    b[..b.len().min(8)].escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone_packets(n: usize) -> Vec<Bytes> {
        let mut enc = crate::media::audio::codec::OpusEncoder::new().unwrap();
        (0..n)
            .map(|f| {
                let pcm: Vec<f32> = (f * 960..(f + 1) * 960)
                    .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 48_000.0).sin())
                    .collect();
                enc.encode(&pcm).unwrap()
            })
            .collect()
    }

    fn write(path: &Path, packets: &[Bytes]) -> Duration {
        let mut w = OggOpusWriter::create(path).unwrap();
        for p in packets {
            w.write_packet(p, 960).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn headers_are_byte_exact() {
        assert_eq!(
            opus_head(),
            b"OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00".to_vec()
        );
        assert_eq!(
            opus_tags(&[("CALLER", "bob")]),
            b"OpusTags\x08\x00\x00\x00dialtone\x01\x00\x00\x00\x0a\x00\x00\x00CALLER=bob".to_vec()
        );
    }

    #[test]
    fn round_trip_keeps_packets_tags_and_duration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.opus");
        let packets = tone_packets(120);
        let mut w = OggOpusWriter::create_with_tags(&path, &[("CALLER", "alice")]).unwrap();
        for p in &packets {
            w.write_packet(p, 960).unwrap();
        }
        assert_eq!(w.packets(), 120);
        let d = w.finish().unwrap();
        assert_eq!(
            d,
            Duration::from_micros((120 * 960 - 312) * 1_000_000 / 48_000)
        );
        assert_eq!(read_packets(&path).unwrap(), packets);
        let info = probe(&path).unwrap();
        assert_eq!(
            (
                info.channels,
                info.pre_skip,
                info.packets,
                info.samples,
                info.duration
            ),
            (1, 312, 120, 120 * 960 - 312, d)
        );
        assert_eq!(
            (info.vendor.as_str(), info.comments.clone()),
            ("dialtone", vec!["CALLER=alice".to_string()])
        );
        let pcm = decode_to_pcm(&path).unwrap();
        assert_eq!(pcm.len(), 120 * 960 - 312);
    }

    #[test]
    fn empty_stream_is_valid_and_lasts_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.opus");
        assert_eq!(write(&path, &[]), Duration::ZERO);
        assert!(read_packets(&path).unwrap().is_empty());
        assert!(decode_to_pcm(&path).unwrap().is_empty());
    }

    #[test]
    fn dropped_writer_still_ends_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dropped.opus");
        let packets = tone_packets(10);
        {
            let mut w = OggOpusWriter::create(&path).unwrap();
            for p in &packets {
                w.write_packet(p, 960).unwrap();
            }
        }
        assert_eq!(read_packets(&path).unwrap(), packets);
    }

    #[test]
    fn rejects_packets_that_do_not_match_their_duration() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = OggOpusWriter::create(&dir.path().join("x.opus")).unwrap();
        let p = &tone_packets(1)[0];
        let e = w.write_packet(p, 480).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(w.write_packet(&[], 0).is_err());
        assert_eq!(w.packets(), 0);
        assert!(
            OggOpusWriter::create_with_tags(&dir.path().join("y.opus"), &[("A=B", "c")]).is_err()
        );
    }

    #[test]
    fn long_packets_span_pages_and_pages_end_every_second() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.opus");
        // 600-byte packets (code 0 CELT 20 ms, payload arbitrary): 3 segments each.
        let mut w = OggOpusWriter::create(&path).unwrap();
        let mut sent = Vec::new();
        for i in 0..200u32 {
            let mut p = vec![0xf8];
            p.extend((0..599).map(|j| (i + j) as u8));
            w.write_packet(&p, 960).unwrap();
            sent.push(Bytes::from(p));
        }
        w.finish().unwrap();
        assert_eq!(read_packets(&path).unwrap(), sent);
        let data = std::fs::read(&path).unwrap();
        let pages = data.windows(4).filter(|w| w == b"OggS").count();
        // 2 header pages, then a page per second (4 s) plus pages forced by the 255-segment cap.
        assert!((6..=12).contains(&pages), "{pages} pages");
    }

    #[test]
    fn garbage_gives_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.opus");
        let good = dir.path().join("good.opus");
        write(&good, &tone_packets(100));
        let bytes = std::fs::read(&good).unwrap();
        let mut rng_state = 0x1234_5678_9abc_def0u64;
        let mut rnd = move || {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            rng_state
        };
        for round in 0..400 {
            let mut b = bytes.clone();
            match round % 4 {
                0 => b.truncate(rnd() as usize % b.len()),
                1 => {
                    for _ in 0..1 + rnd() % 4 {
                        let i = rnd() as usize % b.len();
                        b[i] ^= 1 << (rnd() % 8);
                    }
                }
                2 => {
                    let i = rnd() as usize % b.len();
                    b.splice(i..i, (0..rnd() % 64).map(|_| rnd() as u8));
                }
                _ => b = (0..rnd() % 4096).map(|_| rnd() as u8).collect(),
            }
            std::fs::write(&path, &b).unwrap();
            if let Err(e) = decode_to_pcm(&path) {
                let m = e.to_string();
                assert!(m.contains("g.opus") && !m.ends_with('.'), "{m}");
            }
        }
    }
}
