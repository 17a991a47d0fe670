//! Collecting what the relay owes the runtime after each `handle_*` call.

use axrelay_proto::{Action, DisconnectReason, Relay};

use crate::store_jobs::JobQueue;

/// Everything one drain produced, apart from store jobs (queued directly).
#[derive(Debug, Default)]
pub struct Outputs {
    /// Bytes to write, all transmits concatenated in order (one write per
    /// wake-up; the stream header is always whole).
    pub bytes: Vec<u8>,
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
            out.bytes.extend_from_slice(&bytes);
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
