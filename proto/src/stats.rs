//! Counters for the periodic log line and the metrics; they never hold
//! JIDs or text. Each is a plain integer bumped where the event happens;
//! readers take a copy.

/// Why a stanza was dropped: nothing sent back, nothing relayed. A fixed
/// set, so that it can label a metric without naming anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// `from` or `to` missing or not a JID.
    Unaddressed,
    /// Not for this domain, or from it (never relayed raw, never answered:
    /// loops).
    NotOurs,
    /// Neither message, presence nor IQ, or outside the stanza namespaces.
    UnknownStanza,
    /// Headlines are neither relayed nor answered.
    Headline,
    /// An error to the relay itself: nothing to pass back.
    ErrorToRelay,
    /// A message to the relay without a body (typing notifications,
    /// receipts): needs no answer.
    NoBody,
    /// An error naming no message the relay passed between these two.
    UnknownBounce,
    /// Presence the relay does not answer.
    Presence,
    /// A stanza before the handshake completed.
    NotOnline,
    /// A message with nothing the allow-list lets through.
    NothingAllowed,
    /// A bounce or error reply that could not be written (too large).
    Unwritable,
}

impl DropReason {
    /// How many reasons there are.
    pub const COUNT: usize = 11;
    /// Every reason, in label order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Unaddressed,
        DropReason::NotOurs,
        DropReason::UnknownStanza,
        DropReason::Headline,
        DropReason::ErrorToRelay,
        DropReason::NoBody,
        DropReason::UnknownBounce,
        DropReason::Presence,
        DropReason::NotOnline,
        DropReason::NothingAllowed,
        DropReason::Unwritable,
    ];

    /// The reason as a metric label and in debug logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Unaddressed => "unaddressed",
            DropReason::NotOurs => "not-ours",
            DropReason::UnknownStanza => "unknown-stanza",
            DropReason::Headline => "headline",
            DropReason::ErrorToRelay => "error-to-relay",
            DropReason::NoBody => "no-body",
            DropReason::UnknownBounce => "unknown-bounce",
            DropReason::Presence => "presence",
            DropReason::NotOnline => "not-online",
            DropReason::NothingAllowed => "nothing-allowed",
            DropReason::Unwritable => "unwritable",
        }
    }
}

/// Why the relay answered a stanza with an error: the stanza error
/// condition it sent (SPEC §5), or `Unwritable` for one of its own replies
/// that could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// `bad-request`: an IQ without exactly one payload.
    BadRequest,
    /// `item-not-found`: no mapping for the pseudonym.
    ItemNotFound,
    /// `not-acceptable`: groupchat, or a message too large once rewritten.
    NotAcceptable,
    /// `service-unavailable`: an IQ the relay does not answer.
    ServiceUnavailable,
    /// `internal-server-error`: the store failed for this stanza.
    InternalServerError,
    /// `policy-violation`: the stanza exceeded a limit.
    PolicyViolation,
    /// `remote-server-timeout`: still waiting on the store at a stop.
    RemoteServerTimeout,
    /// `resource-constraint`: too many stanzas waiting on the store.
    ResourceConstraint,
    /// `forbidden`: the sender or the recipient is banned.
    Forbidden,
    /// A bot answer, presence or IQ result too large to write.
    Unwritable,
}

impl RejectReason {
    /// How many reasons there are.
    pub const COUNT: usize = 10;
    /// Every reason, in label order.
    pub const ALL: [RejectReason; RejectReason::COUNT] = [
        RejectReason::BadRequest,
        RejectReason::ItemNotFound,
        RejectReason::NotAcceptable,
        RejectReason::ServiceUnavailable,
        RejectReason::InternalServerError,
        RejectReason::PolicyViolation,
        RejectReason::RemoteServerTimeout,
        RejectReason::ResourceConstraint,
        RejectReason::Forbidden,
        RejectReason::Unwritable,
    ];

    /// The stanza error condition's element name, also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadRequest => "bad-request",
            RejectReason::ItemNotFound => "item-not-found",
            RejectReason::NotAcceptable => "not-acceptable",
            RejectReason::ServiceUnavailable => "service-unavailable",
            RejectReason::InternalServerError => "internal-server-error",
            RejectReason::PolicyViolation => "policy-violation",
            RejectReason::RemoteServerTimeout => "remote-server-timeout",
            RejectReason::ResourceConstraint => "resource-constraint",
            RejectReason::Forbidden => "forbidden",
            RejectReason::Unwritable => "unwritable",
        }
    }
}

/// Totals since the relay was created (across reconnects).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Stanzas received from the server.
    pub stanzas_in: u64,
    /// Messages relayed to a real user.
    pub relayed: u64,
    /// Error messages (bounces) relayed back to the original sender.
    pub bounced: u64,
    /// Error stanzas the relay itself sent (the sum of `rejected_by`).
    pub rejected: u64,
    /// `rejected` by [`RejectReason`], indexed by `reason as usize`.
    pub rejected_by: [u64; RejectReason::COUNT],
    /// Stanzas dropped on purpose (the sum of `dropped_by`).
    pub dropped: u64,
    /// `dropped` by [`DropReason`], indexed by `reason as usize`.
    pub dropped_by: [u64; DropReason::COUNT],
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
    /// Stanzas refused because their sender or recipient is banned.
    pub banned: u64,
    /// Connections whose handshake succeeded.
    pub sessions: u64,
}

impl Stats {
    /// Count a dropped stanza.
    pub(crate) fn drop(&mut self, why: DropReason) {
        self.dropped += 1;
        self.dropped_by[why as usize] += 1;
    }

    /// Count an error reply.
    pub(crate) fn reject(&mut self, why: RejectReason) {
        self.rejected += 1;
        self.rejected_by[why as usize] += 1;
    }

    /// Stanzas dropped for `why`.
    pub fn dropped_for(&self, why: DropReason) -> u64 {
        self.dropped_by[why as usize]
    }

    /// Error replies for `why`.
    pub fn rejected_for(&self, why: RejectReason) -> u64 {
        self.rejected_by[why as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_in_index_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
