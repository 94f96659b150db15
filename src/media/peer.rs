//! WebRTC peer connection.
