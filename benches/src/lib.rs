//! Shared pieces of the axrelay benchmarks: the stanzas both the criterion
//! benches and the `axrelay-load` generator send, a synchronous in-memory
//! driver of the core for the benches and the profiling driver, a cheap
//! splitter for the relay's own output, and a latency histogram.
//!
//! Everything here plays the XMPP *server* side of XEP-0114: the relay is
//! the component, users live at [`wire::USER_DOMAIN`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod fixture;
pub mod hist;
pub mod proc_status;
pub mod scan;
pub mod wire;
