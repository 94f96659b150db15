//! A device's side of the network: the sockets and relays its link's packets travel on.

pub mod client;
pub mod ifaces;
pub mod turn;
pub mod udp;

pub use client::{ClientConfig, ClientLink, MediaEvent, Via};
