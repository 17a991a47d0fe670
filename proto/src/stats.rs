//! Counters for the periodic log line; they never hold JIDs or text.

/// Totals since the relay was created (across reconnects).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Stanzas received from the server.
    pub stanzas_in: u64,
    /// Messages relayed to a real user.
    pub relayed: u64,
    /// Error messages (bounces) relayed back to the original sender.
    pub bounced: u64,
    /// Error stanzas the relay itself sent.
    pub rejected: u64,
    /// Stanzas dropped on purpose (headlines, unmapped references, own domain).
    pub dropped: u64,
    /// Stanzas skipped for exceeding a limit.
    pub oversized: u64,
    /// `/whoami` answers.
    pub whoami: u64,
    /// Store lookups issued.
    pub lookups: u64,
    /// Store writes issued.
    pub writes: u64,
    /// Mappings served from the in-process cache.
    pub cache_hits: u64,
    /// Store operations that failed or timed out.
    pub store_errors: u64,
    /// Stored values that failed authentication or verification.
    pub poisoned: u64,
    /// Stanzas refused for a rate limit.
    pub rate_limited: u64,
    /// Connections whose handshake succeeded.
    pub sessions: u64,
}
