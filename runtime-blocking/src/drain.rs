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

/// Drain transmits and actions from `relay`: bytes into `out`, store work
/// into `jobs`.
pub fn drain(relay: &mut Relay, jobs: &mut JobQueue, out: &mut Outputs) {
    loop {
        while let Some(bytes) = relay.poll_transmit() {
            if out.bytes.is_empty() {
                out.bytes = bytes;
            } else {
                // The core hands over everything it has at once, so this
                // is not expected; if it happens, the order is kept.
                let mut joined = Vec::with_capacity(out.bytes.len() + bytes.len());
                joined.extend_from_slice(&out.bytes);
                joined.extend_from_slice(&bytes);
                out.bytes = Bytes::from(joined);
            }
        }
        let Some(action) = relay.poll_action() else {
            break;
        };
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
}
