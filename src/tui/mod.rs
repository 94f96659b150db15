//! The terminal softphone. `app` holds the state and decides (pure, no I/O); `keymap` maps keys
//! to commands (pure, table-tested); `view` renders the state (pure, snapshot-tested); `run` is
//! the driver: terminal events and engine events in one select! loop, redraws when dirty at a
//! capped rate.

pub mod app;
pub mod cmdline;
pub mod docs;
pub mod history;
pub mod input;
pub mod keymap;
pub mod run;
pub mod settings;
pub mod strings;
pub mod theme;
pub mod view;

pub use app::{Action, App, AppOptions, Update};
pub use keymap::{Keymap, KeysConfig};
pub use run::{TuiOptions, run};
pub use settings::TuiConfig;
