//! The switchboard's media: one UDP port for every device ([`sockets`]), datagrams routed to
//! their link by ICE username and address ([`demux`]), and the task that runs every link and
//! the relay ([`hub`]).

pub mod demux;
pub mod hub;
pub mod sockets;

pub use hub::{Hub, HubCmd, HubEvent};
pub use sockets::{MediaListen, MediaSocket};
