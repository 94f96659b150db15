//! The switchboard (`dialtone serve`): a pure core (switchboard.rs) and the runtime around it.

pub mod store;
pub mod switchboard;
pub mod token;
// WIP-GATE: relay, runtime wait for the media API.
