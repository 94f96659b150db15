//! The signaling wire format: the one place where the JSON that crosses the WebSocket is defined.
//!
//! Every frame is one JSON object with a `type` field. docs/protocol.md is the human-readable
//! form of this module; keep the two in step.

mod messages;

pub use messages::*;

/// The protocol version this build speaks. A `hello` with another version is refused with
/// `unsupportedVersion` so that old clients fail loudly instead of misbehaving.
pub const PROTOCOL_VERSION: u32 = 1;

/// Frames larger than this are refused before parsing: a signaling message is small, and an
/// attacker must not make the switchboard buffer megabytes of JSON. SDP offers are ~2-4 KiB.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Decodes a client frame, with an error that says what was wrong and never panics.
pub fn decode_client(text: &str) -> Result<ClientMessage, DecodeError> {
    decode(text)
}

/// Decodes a server frame (used by clients).
pub fn decode_server(text: &str) -> Result<ServerMessage, DecodeError> {
    decode(text)
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, DecodeError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge { len: text.len() });
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let ty = match value.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(_) => return Err(DecodeError::BadType),
        None => return Err(DecodeError::MissingType),
    };
    serde_json::from_value(value).map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with("unknown variant") {
            DecodeError::UnknownType(ty)
        } else {
            DecodeError::BadFields { ty, message: msg }
        }
    })
}

/// Encodes any message; serialisation of these types cannot fail.
pub fn encode<T: serde::Serialize>(msg: &T) -> String {
    serde_json::to_string(msg).expect("protocol messages are plain data and always serialise")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes is larger than the limit of {MAX_FRAME_BYTES} bytes")]
    TooLarge { len: usize },
    #[error("frame is not JSON: {0}")]
    NotJson(String),
    #[error("frame has no \"type\" field")]
    MissingType,
    #[error("frame's \"type\" is not a string")]
    BadType,
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("bad fields in {ty:?} message: {message}")]
    BadFields { ty: String, message: String },
}

impl DecodeError {
    /// The error code sent back on the wire.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::UnknownType(_) => ErrorCode::UnknownMessage,
            _ => ErrorCode::BadMessage,
        }
    }
}

#[cfg(test)]
mod tests;
