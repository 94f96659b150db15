//! Audio devices: the names a user can give (specs), what exists on this machine (listing), and
//! the cpal host behind the real ones. Virtual devices (file, record, tone, silence) are run by
//! the audio pipeline; this layer only names them.

mod alsa_quiet;
pub mod cameras;
pub mod host;
mod kind;
pub mod list;
pub mod spec;

pub use alsa_quiet::silence_alsa;
pub use kind::DeviceKind;
pub use list::{DeviceInfo, DeviceList, list_devices};
pub use spec::{DeviceSpec, SpecError};
