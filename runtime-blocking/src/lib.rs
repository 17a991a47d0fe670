//! Drives an [`axrelay_proto::Relay`] with std threads and blocking sockets.
//!
//! One loop thread owns the relay and the socket's write side; a reader
//! thread turns socket reads into events; a small pool of store workers
//! performs lookups and writes. Everything reaches the loop through one
//! bounded channel, which it waits on with the relay's next deadline, so the
//! stanza loop never blocks on the store.
//!
//! The connect, SOCKS5, store-job, draining and lifecycle modules are also
//! the building blocks of the smol runtime, so both behave alike.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod connect;
pub mod drain;
mod driver;
pub mod lifecycle;
pub mod report;
pub mod socks5;
mod stop;
pub mod store_jobs;

use std::sync::Arc;

use axrelay_proto::driver::{Exit, Options};
use axrelay_proto::{Relay, Store};

pub use stop::{stop_handle, StopHandle, Stopper};

/// Connect, relay and reconnect until stopped or refused.
///
/// Returns [`Exit::Stopped`] after a requested stop (through the
/// [`StopHandle`] paired with `stopper`), [`Exit::Refused`] when the server
/// refuses the configuration. Network failures are retried with backoff.
pub fn run(relay: Relay, opts: Options, store: Arc<dyn Store>, stopper: Stopper) -> Exit {
    driver::Driver::new(relay, &opts, store, stopper).run()
}
