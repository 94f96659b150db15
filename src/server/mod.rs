//! The switchboard (`dialtone serve`): a pure core (switchboard.rs) and the runtime around it.

mod connections;
pub mod listener;
pub mod media;
pub mod relay;
pub mod runtime;
pub mod store;
pub mod switchboard;
pub mod token;
pub mod voicemail;

pub use runtime::{ServeOptions, ServerHandle, serve};
