//! dialtone: a softphone in the terminal and the switchboard it talks to.
//!
//! See ARCHITECTURE.md for the code map and the invariants each module keeps.

pub mod agent;
pub mod config;
pub mod core;
pub mod devices;
pub mod engine;
pub mod media;
pub mod protocol;
pub mod server;
pub mod tui;
