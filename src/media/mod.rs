//! Media: the WebRTC link (ICE, DTLS-SRTP) and the audio pipeline.

pub mod audio;
pub mod link;
pub mod net;
