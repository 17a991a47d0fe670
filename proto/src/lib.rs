//! Sans-IO core of axrelay, an anonymizing XMPP relay (an XEP-0114 component).
//!
//! [`Relay`] is a deterministic state machine: bytes from the server go in
//! through [`Relay::handle_input`], time through [`Relay::handle_timeout`],
//! store results through [`Relay::handle_store`]. After **every** such call,
//! drain the outputs: [`Relay::poll_transmit`] (bytes to write, in order),
//! [`Relay::poll_action`] (store operations, connection events) and
//! [`Relay::poll_timeout`] (when to call `handle_timeout` next). The core has
//! no sockets, threads, clock or randomness of its own.
//!
//! One connection's life, as a runtime sees it:
//!
//! 1. TCP connect, then [`Relay::handle_connected`]; write what
//!    `poll_transmit` gives (the stream header, in one write).
//! 2. Feed reads to `handle_input`; perform `Action::Get`/`Action::Put` off the
//!    stanza loop and feed results to `handle_store`; call `handle_timeout`
//!    at `poll_timeout`.
//! 3. On EOF or a socket error call [`Relay::handle_closed`]. On
//!    [`Action::Disconnect`] write what is left, close the socket, and either
//!    stop (shutdown, fatal reason) or reconnect after a backoff delay.
//! 4. To stop, call [`Relay::shutdown`] and keep driving until the
//!    `Disconnect(Shutdown)` action.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod action;
mod cache;
mod config;
mod element;
mod filter;
mod framer;
mod idmap;
pub mod jid;
mod ns;
mod pending;
pub mod pseudonym;
mod relay;
pub mod seal;
mod stanza;
mod stats;
pub mod store;
mod writer;

pub use action::{Action, DisconnectReason, OpId, StoreOutcome};
pub use config::{Config, ConfigError, KeepaliveMode, Limit, Limits};
pub use jid::Jid;
pub use pseudonym::{IdentityMode, Pseudonymizer};
pub use relay::Relay;
pub use seal::StoreCodec;
pub use stats::Stats;
pub use store::{MemoryStore, Store, StoreError};

#[cfg(test)]
mod tests;

/// In-memory simulator and fake-server helpers for tests, fuzzing and
/// benches: not part of the relay's API.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
