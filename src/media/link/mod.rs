//! One WebRTC link per device, sans I/O: [`LinkCore`] speaks ICE, DTLS-SRTP and RTP; the
//! adapters own the sockets (`media::net` on a device, `server::media` on the switchboard).

mod core;
mod rtp;

pub use self::core::{
    DEFAULT_SLOTS, LinkCore, LinkError, LinkEvent, LinkStats, LocalCandidate, MAX_SLOTS, Path,
    Proto, Role, Transmit, random_credentials, server_certificate,
};
pub use self::rtp::{AUDIO_LEVEL_URI, AudioLevel, RtpAudio};

#[cfg(test)]
mod tests;
