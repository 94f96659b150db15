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

/// Index of the best match for `wanted` among (name, id) pairs: exact, then case-insensitive,
/// then a case-insensitive part of either. Opening a device and reading a listing both use it.
pub fn best_match<'a>(
    candidates: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    wanted: &str,
) -> Option<usize> {
    let wanted = wanted.trim();
    let lower = wanted.to_lowercase();
    let exact = |n: &str, id: &str| n == wanted || id == wanted;
    let folded = |n: &str, id: &str| n.to_lowercase() == lower || id.to_lowercase() == lower;
    let partial =
        |n: &str, id: &str| n.to_lowercase().contains(&lower) || id.to_lowercase().contains(&lower);
    let find =
        |test: &dyn Fn(&str, &str) -> bool| candidates.clone().position(|(n, id)| test(n, id));
    find(&exact)
        .or_else(|| find(&folded))
        .or_else(|| find(&partial))
}
