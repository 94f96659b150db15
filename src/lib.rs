//! dialtone: a softphone in the terminal and the switchboard it talks to.
//!
//! See ARCHITECTURE.md for the code map and the invariants each module keeps.

pub mod core;
pub mod devices;
pub mod media;
pub mod protocol;
pub mod server;
// WIP-GATE: agent, config, engine wait for the media and audio APIs.
