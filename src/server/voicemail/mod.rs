//! Voicemail media: the greeting a caller hears, and the caller's message recorded as an Ogg Opus
//! file (RFC 7845) straight from the Opus packets the relay receives, without transcoding.
//!
//! - [`ogg_opus`]: [`OggOpusWriter`] and the strict readers ([`read_packets`], [`decode_to_pcm`],
//!   [`probe`]) that check headers, checksums, page order and the end of the stream.
//! - [`greeting`]: [`Greeting`], 20 ms Opus frames made from a WAV file (or the built-in
//!   `assets/greeting.wav`), or from a recorded Ogg Opus file.
//! - [`session`]: [`run_session`], one caller leaving one message: the greeting paced in real
//!   time, then recording until the maximum length, a stop signal or the end of the inbound stream.
//! - [`packet`]: what an Opus packet's TOC byte says (duration, validity) and the packets that fill
//!   gaps (PLC requests and CELT silence).
//!
//! Mailbox bookkeeping, signaling and relay wiring live elsewhere; this module does media only.

pub mod greeting;
pub mod ogg_opus;
pub mod packet;
pub mod session;

pub use greeting::Greeting;
pub use ogg_opus::{OggOpusInfo, OggOpusWriter, decode_to_pcm, probe, read_packets};
pub use session::{RecordingDone, run_session};

use crate::media::audio::AudioError;
use crate::media::audio::codec::CodecError;

/// What went wrong reading, writing or preparing voicemail media. Every message names the file
/// (or the built-in greeting) and the bad value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VoicemailError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is {bytes} bytes long, more than the {max} bytes a voicemail file may be")]
    TooLarge { path: String, bytes: u64, max: u64 },
    #[error("`{path}` is not an Ogg file: {message}")]
    NotOgg { path: String, message: String },
    #[error("`{path}` is not an Ogg Opus file: {message}")]
    NotOpus { path: String, message: String },
    #[error("`{path}` has a bad Opus header: {message}")]
    BadHeader { path: String, message: String },
    #[error("`{path}` is corrupt: {message}")]
    Corrupt { path: String, message: String },
    #[error("`{path}` is cut short: {message}")]
    Truncated { path: String, message: String },
    #[error(
        "`{path}` holds {seconds:.1} s of audio, more than the {max_seconds} s that may be read"
    )]
    TooLong {
        path: String,
        seconds: f64,
        max_seconds: u64,
    },
    #[error("`{path}`: audio packet {index} does not decode: {message}")]
    Decode {
        path: String,
        index: usize,
        message: String,
    },
    #[error("cannot use `{path}` as a greeting: {message}")]
    Greeting { path: String, message: String },
    #[error(transparent)]
    Wav(#[from] AudioError),
    #[error(transparent)]
    Codec(#[from] CodecError),
}
