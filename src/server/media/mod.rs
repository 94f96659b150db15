//! The switchboard's media: one UDP port for every device ([`sockets`]), datagrams routed to
//! their link by ICE username and address ([`demux`]), and the task that runs every link and
//! the relay ([`hub`]).

pub mod control;
pub mod demux;
pub mod hub;
pub mod shard;
pub mod sockets;

pub use control::{Hub, HubGone};
pub use hub::{HubCmd, HubEvent, default_shards, start, start_spreading_at};
pub use sockets::{MediaListen, MediaSocket};
