//! The audio pipeline: capture, resampling, Opus, jitter buffer, mixing and playout. Use
//! [`AudioEngine`]; the pieces are public for tests and tools.

mod capture;
pub mod clock;
pub mod codec;
mod cpal_io;
pub mod error;
pub mod jitter;
pub mod level;
pub mod mixer;
mod pipeline;
mod playout;
pub mod resample;
mod shared;
pub mod wav;

pub use crate::devices::DeviceKind;
pub use error::AudioError;
pub use mixer::{SourceLevel, SourceStats};
pub use pipeline::{AudioEngine, AudioEvent, DeviceStats, EncodedFrame};
