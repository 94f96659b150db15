//! The RTP facts the audio path uses, reduced from full packets: what arrives from a link and
//! what the relay forwards.

use bytes::Bytes;
use rtc::rtp;

/// One inbound RTP packet of an Opus stream, reduced to what the audio path uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpAudio {
    /// Which of the far end's streams this is: a link can carry several from the switchboard
    /// (a companion device, a group call), each with its own SSRC.
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// The RFC 6464 audio level the sender attached, if the link negotiated the extension and
    /// the packet carries it.
    pub level: Option<AudioLevel>,
    pub payload: Bytes,
}

/// The RFC 6464 client-to-mixer audio level of one packet
/// (`urn:ietf:params:rtp-hdrext:ssrc-audio-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// Loudness of the audio in the packet in -dBov: 0 is the loudest, 127 silence. Values
    /// above 127 are sent as 127.
    pub dbov: u8,
    /// The sender's voice activity flag (the V bit; our SDP leaves `vad` at its default, on).
    pub voice: bool,
}

impl AudioLevel {
    /// The extension's one data byte: V in the top bit, the level below.
    #[must_use]
    pub fn to_byte(self) -> u8 {
        (u8::from(self.voice) << 7) | self.dbov.min(127)
    }

    #[must_use]
    pub fn from_byte(b: u8) -> Self {
        AudioLevel {
            dbov: b & 0x7f,
            voice: b & 0x80 != 0,
        }
    }
}

/// The RFC 6464 header extension's URI, as it appears in `a=extmap`.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Every possible extension byte, so a packet's level is a slice of a static rather than a
/// fresh allocation.
static LEVEL_BYTES: [u8; 256] = {
    let mut all = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        all[i] = i as u8;
        i += 1;
    }
    all
};

/// The extension payload for `level`: one byte borrowed from a static table.
pub(crate) fn level_payload(level: AudioLevel) -> Bytes {
    let b = usize::from(level.to_byte());
    Bytes::from_static(&LEVEL_BYTES[b..=b])
}

/// The audio level a packet carries under extension `id`, if any. Only the first data byte
/// counts (the two-byte form pads with a zero).
pub(crate) fn level_of(header: &rtp::Header, id: u8) -> Option<AudioLevel> {
    if !header.extension {
        return None;
    }
    header
        .extensions
        .iter()
        .find(|e| e.id == id)
        .and_then(|e| e.payload.first())
        .map(|&b| AudioLevel::from_byte(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_level_byte_round_trips_and_clamps() {
        for dbov in 0..=127u8 {
            for voice in [false, true] {
                let l = AudioLevel { dbov, voice };
                assert_eq!(AudioLevel::from_byte(l.to_byte()), l);
            }
        }
        let loud = AudioLevel {
            dbov: 200,
            voice: true,
        };
        assert_eq!(loud.to_byte(), 0xff);
        assert_eq!(LEVEL_BYTES[0x9e], 0x9e);
        assert_eq!(&level_payload(loud)[..], &[0xff]);
    }

    #[test]
    fn level_is_read_from_the_negotiated_extension_only() {
        let mut h = rtp::Header::default();
        assert_eq!(level_of(&h, 1), None);
        h.set_extension(3, Bytes::from_static(&[0x33])).unwrap();
        h.set_extension(1, Bytes::from_static(&[0x80 | 25]))
            .unwrap();
        assert_eq!(
            level_of(&h, 1),
            Some(AudioLevel {
                dbov: 25,
                voice: true
            })
        );
        assert_eq!(level_of(&h, 2), None);
        h.set_extension(2, Bytes::new()).unwrap();
        assert_eq!(level_of(&h, 2), None, "empty data is no level");
    }
}
