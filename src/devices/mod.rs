//! Audio devices.
