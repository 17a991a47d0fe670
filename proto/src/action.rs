//! What the core asks of the outside world, and what it is told back.

use bytes::Bytes;

use crate::store::StoreError;

/// Identifies one store operation; echo it in [`crate::Relay::handle_store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// Work for the runtime, drained with [`crate::Relay::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Look `key` up in the store and report [`StoreOutcome::Found`].
    /// Consecutive `Get`s may be batched into one round trip.
    Get {
        /// Echo this back.
        op: OpId,
        /// Encoded store key.
        key: String,
    },
    /// Write `value` under `key` and report [`StoreOutcome::Stored`].
    Put {
        /// Echo this back.
        op: OpId,
        /// Encoded store key.
        key: String,
        /// Encoded (possibly sealed) value.
        value: Bytes,
        /// Lifetime in seconds, 0 = forever.
        ttl: u32,
    },
    /// The server accepted the handshake: the relay is online.
    Online,
    /// This connection is over. Write what [`crate::Relay::poll_transmit`]
    /// still returns, close the socket, then act on the reason.
    Disconnect(DisconnectReason),
}

/// The result of an [`Action::Get`] or [`Action::Put`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The value stored under the key, if any.
    Found(Option<Vec<u8>>),
    /// The write went through.
    Stored,
    /// The store failed; the waiting senders get an error stanza.
    Failed(StoreError),
}

/// Why a connection ended, and so what the runtime does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// A graceful stop finished: exit cleanly.
    Shutdown,
    /// The server refused the component secret: a configuration error.
    NotAuthorized,
    /// The server does not serve this component domain: a configuration error.
    HostUnknown,
    /// Another instance holds the domain: retry with backoff (hot standby).
    Conflict,
    /// The server ended the stream with another stream error: retry.
    StreamError(String),
    /// The server sent XML the relay cannot parse; the relay sent the named
    /// stream error and closes: retry.
    BadInput(String),
    /// The server closed the stream or the socket: retry.
    Closed,
    /// The server did not answer the header, the handshake or a keepalive
    /// ping in time: retry.
    Timeout(&'static str),
}

impl DisconnectReason {
    /// Whether retrying cannot help (wrong secret, unknown host).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            DisconnectReason::NotAuthorized | DisconnectReason::HostUnknown
        )
    }

    /// Whether this is the end of a requested stop.
    pub fn is_shutdown(&self) -> bool {
        matches!(self, DisconnectReason::Shutdown)
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::Shutdown => f.write_str("stopped"),
            DisconnectReason::NotAuthorized => {
                f.write_str("the server refused the component secret (not-authorized)")
            }
            DisconnectReason::HostUnknown => {
                f.write_str("the server does not serve this component domain (host-unknown)")
            }
            DisconnectReason::Conflict => {
                f.write_str("another instance holds the component domain (conflict)")
            }
            DisconnectReason::StreamError(c) => write!(f, "the server ended the stream ({c})"),
            DisconnectReason::BadInput(e) => write!(f, "unparsable input from the server: {e}"),
            DisconnectReason::Closed => f.write_str("the server closed the connection"),
            DisconnectReason::Timeout(what) => write!(f, "no answer from the server to {what}"),
        }
    }
}
