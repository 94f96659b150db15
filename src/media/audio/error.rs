use crate::devices::DeviceKind;
use crate::devices::host::HostError;

use super::codec::CodecError;
use super::resample::ResampleError;

/// Why the audio pipeline could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    #[error("`{spec}` cannot be used as a {kind}")]
    WrongEnd { spec: String, kind: DeviceKind },
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("cannot open {kind} `{name}`: {message}")]
    Open {
        kind: DeviceKind,
        name: String,
        message: String,
    },
    #[error("cannot read WAV file `{path}`: {message}")]
    ReadWav { path: String, message: String },
    #[error("cannot write WAV file `{path}`: {message}")]
    WriteWav { path: String, message: String },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Resample(#[from] ResampleError),
    #[error("cannot start the {0} thread: {1}")]
    Spawn(&'static str, String),
    #[error("the {0} thread has stopped")]
    ThreadGone(&'static str),
}
