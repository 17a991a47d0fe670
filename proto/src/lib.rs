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
//! 4. To stop, call [`Relay::shutdown`] and keep driving until an
//!    `Action::Disconnect` (`Shutdown` when the stream closed cleanly).
//!
//! `axrelay-host`'s `Session` does all of this for both runtimes.
//!
//! # Reading order
//!
//! The modules below are listed in the order one message meets them, from
//! the bytes the server sends to the bytes the relay writes back; the
//! behaviour they implement is specified in `docs/SPEC.md` (the "SPEC §n"
//! in comments).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The connection: the public API, stream, handshake, keepalive, close.
mod relay;

// Bytes to stanzas, with the limits: the restricted-XML tokenizer, and
// the flat record of one stanza its tokens are written into.
mod framer;

mod element;
mod ns;
mod xml;

// What deciding a stanza reads: addresses, pseudonyms, the caches.
pub mod jid;
pub mod pseudonym;

mod cache;

// The stanza path: decide a verdict, apply it, or wait for the store first.
mod stanza;

// What applying writes: the allow-list, fresh and translated ids, the one
// serializer.
mod filter;
mod idmap;
mod idseal;
mod writer;

// Waiting on the store: per-sender queues, the store's operations, its
// keys and sealed values, the store contract.
mod pending;

mod action;
pub mod seal;
pub mod store;

// Rate limits and operator bans, checked while deciding.
mod rate;

pub mod bans;

// Around it all: the configuration, the store's health in the log, the
// counters.
mod config;
mod health;
mod stats;

pub use action::{Action, DisconnectReason, OpId, StoreOutcome};
pub use bans::record::{Ban, BanError};
pub use config::{Config, ConfigError, KeepaliveMode, Limit, Limits, WallClock};
pub use jid::Jid;
pub use pseudonym::{IdentityMode, Pseudonymizer};
pub use rate::{Rate, RateLimits, RateOf};
pub use relay::Relay;
pub use seal::StoreCodec;
pub use stats::{DropReason, RejectReason, Stats};
pub use store::{MemoryStore, Store, StoreError};

#[cfg(test)]
mod tests;

/// In-memory simulator and fake-server helpers for tests, fuzzing and
/// benches: not part of the relay's API.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
