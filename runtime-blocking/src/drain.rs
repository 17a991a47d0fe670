//! Collecting what the relay owes the runtime after each `handle_*` call.

use axrelay_proto::{Action, DisconnectReason, Relay};
use bytes::Bytes;

use crate::store_jobs::JobQueue;

/// Everything one drain produced, apart from store jobs (queued directly).
#[derive(Debug, Default)]
pub struct Outputs {
    /// Bytes to write: the core's output buffer as it hands it over, not
    /// copied (one write per wake-up; the stream header is always whole).
    pub bytes: Bytes,
    /// The handshake succeeded during this drain.
    pub online: bool,
    /// The connection is over; write `bytes`, then close.
    pub disconnect: Option<DisconnectReason>,
}

/// Drain transmits and actions from `relay`: store work into `jobs`, the
/// rest into the returned `Outputs`.
pub fn drain(relay: &mut Relay, jobs: &mut JobQueue) -> Outputs {
    // Performing an action here never calls back into the relay, so its
    // output is complete now, and one transmit holds all of it.
    let mut out = Outputs {
        bytes: relay.poll_transmit().unwrap_or_default(),
        ..Outputs::default()
    };
    while let Some(action) = relay.poll_action() {
        match action {
            Action::Get { op, key } => jobs.get(op, key),
            Action::Put {
                op,
                key,
                value,
                ttl,
            } => jobs.put(op, key, value, ttl),
            Action::Online => out.online = true,
            Action::Disconnect(reason) => {
                // The first reason is the one that counts.
                out.disconnect.get_or_insert(reason);
            }
        }
    }
    out
}
