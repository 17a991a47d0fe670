//! The public state machine (in progress).

use std::time::Instant;

use bytes::Bytes;

use crate::{Action, Config, ConfigError, OpId, Stats, StoreOutcome};

/// The relay core for one component domain; lives across reconnects.
pub struct Relay {
    stats: Stats,
}

impl Relay {
    /// A relay that is not connected yet.
    pub fn new(config: Config) -> Result<Relay, ConfigError> {
        config.validate()?;
        Ok(Relay { stats: Stats::default() })
    }

    /// A TCP connection to the server is up: start the stream.
    pub fn handle_connected(&mut self, _now: Instant) {}

    /// Bytes read from the server.
    pub fn handle_input(&mut self, _data: &[u8], _now: Instant) {}

    /// The server closed the socket, or it failed.
    pub fn handle_closed(&mut self, _now: Instant) {}

    /// Time has passed; spurious calls are harmless.
    pub fn handle_timeout(&mut self, _now: Instant) {}

    /// The outcome of a store operation.
    pub fn handle_store(&mut self, _op: OpId, _outcome: StoreOutcome, _now: Instant) {}

    /// Begin a graceful stop.
    pub fn shutdown(&mut self, _now: Instant) {}

    /// Bytes to write to the server, in order.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        None
    }

    /// The next action for the runtime.
    pub fn poll_action(&mut self) -> Option<Action> {
        None
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}
