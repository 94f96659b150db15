//! Media: the WebRTC peer connection (DTLS-SRTP, ICE) and the audio pipeline.

pub mod audio;
pub mod peer;
