//! Drives an [`axrelay_proto::Relay`] on smol and async-io (the production
//! runtime).
//!
//! One task owns the relay and the server stream and waits on whichever
//! comes first: a stop request, finished store work, the relay's deadline,
//! or bytes from the server. Store calls run on a few dedicated store
//! threads and report back through a channel, so a slow store never stalls the stanza loop.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;
mod stop;

use std::sync::Arc;

use axrelay_proto::driver::{Exit, Options};
use axrelay_proto::{Relay, Store};

pub use stop::{stop_handle, StopHandle, Stopper};

/// Connect, relay and reconnect until stopped or refused.
///
/// Returns [`Exit::Stopped`] after a requested stop (through the
/// [`StopHandle`] paired with `stopper`), [`Exit::Refused`] when the server
/// refuses the configuration. Network failures are retried with backoff.
/// Blocks the calling thread.
pub fn run(relay: Relay, opts: Options, store: Arc<dyn Store>, stopper: Stopper) -> Exit {
    smol::block_on(driver::Driver::new(relay, &opts, store, stopper).run())
}
