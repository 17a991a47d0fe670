//! Test support, not part of the relay: an in-memory driver of [`Relay`]
//! for unit tests, fuzz targets and benches, and the server side of the
//! XEP-0114 handshake for fake servers.
//!
//! Compiled only for the crate's own tests and with the `testing` feature.
//!
//! [`Relay`]: crate::Relay

mod check;
mod server;
mod sim;
pub mod xml_diff;

pub use check::{split_jid, Written, XmlCheck};
pub use server::{
    component_header, handshake, handshake_digest, server_header, COMPONENT_NS, STREAMS_NS,
};
pub use sim::{Answer, Backend, Checks, Held, Sim, StoreMode, SIM_UNIX, STREAM_ID};
