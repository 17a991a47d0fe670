//! Shared pieces of the fuzz targets: the configurations they run, the
//! control bytes they read, and the driver, which is the simulator in
//! `axrelay_proto::testing` with every check on: it runs a [`Relay`] the way
//! a runtime does (virtual clock, in-memory store whose answers the fuzz
//! input can delay, fail or poison) and checks everything the relay writes
//! with a fresh `rxml` parser.
//!
//! Invariants checked on every run (a violation panics, which libFuzzer
//! reports as a crash):
//!
//! * every byte written parses as namespace-well-formed XML, starting with
//!   the relay's own stream header (`to` = the component domain), and
//!   nothing follows the relay's `</stream:stream>`;
//! * every `message`/`presence`/`iq` written has a `to` and a `from`, and
//!   the `from` is at exactly the component domain;
//! * no written stanza is larger than `max_stanza_bytes`;
//! * the framer never holds more than `max_stanza_bytes` + 16 KiB;
//! * at most two stanzas are written per stanza received (plus keepalive
//!   pings): no amplification;
//! * store operations in flight never exceed `3 × max_pending`: a lookup
//!   and a write for each waiting stanza, and at most `max_pending` writes
//!   behind (mappings written again after a store failure);
//! * `stats().lookups`/`writes` equal the `Get`/`Put` actions seen, and
//!   `stats().sessions` the `Online` actions (successful handshakes);
//! * after `Disconnect` the relay is idle;
//! * after `handle_timeout(now)`, the next deadline is later than `now`
//!   (a runtime never spins on a deadline that does not move).
//!
//! [`Relay`]: axrelay_proto::Relay

use std::collections::HashMap;

use axrelay_proto::{Config, Limits};

pub use axrelay_proto::testing::{split_jid, Answer, StoreMode, Written};

/// The driver: the shared simulator, its store a map the targets can read.
pub type Sim = axrelay_proto::testing::Sim<HashMap<String, Vec<u8>>>;

/// The component domain of every fuzzed relay.
pub const DOMAIN: &str = "axr.example";
/// The component password.
pub const PASSWORD: &str = "component-pw";
/// The pseudonym secret (seed files address pseudonyms made with it).
pub const SECRET: &[u8] = b"a fuzzing secret of some length";
/// The store sealing key when a run uses encryption.
pub const ENCRYPT: [u8; 32] = *b"fuzz-encrypt-key-0123456789abcde";

/// Control bytes, read one at a time; 0 once exhausted.
pub struct Ctl<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Ctl<'a> {
    /// Control bytes from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Ctl { bytes, pos: 0 }
    }

    /// The next byte, or 0.
    pub fn next(&mut self) -> u8 {
        let b = self.bytes.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// Whether any control byte is left.
    pub fn more(&self) -> bool {
        self.pos < self.bytes.len()
    }
}

/// The configuration a fuzz run uses; `bits` picks the variations.
pub fn config(bits: u8, tune: u8) -> Config {
    let mut c = Config::new(DOMAIN, PASSWORD, SECRET);
    c.id_key = [7; 32];
    if bits & 1 != 0 {
        c.encrypt = Some(ENCRYPT);
    }
    if bits & 2 != 0 {
        c.identity = axrelay_proto::IdentityMode::Full;
    }
    if bits & 4 != 0 {
        // Small limits: every limit path is a few bytes away.
        c.limits = Limits {
            max_stanza_bytes: 4096,
            max_depth: 4 + usize::from(tune & 7),
            max_attributes: 8,
            max_namespace_decls: 2 + usize::from((tune >> 3) & 3),
            max_token_length: 1024,
        };
    }
    if bits & 8 != 0 {
        // Tiny caches and queues: eviction and back-pressure paths.
        c.cache_capacity = 1 + usize::from(tune & 3);
        c.id_map_capacity = 2 + usize::from((tune >> 2) & 7);
        c.max_pending = 1 + usize::from((tune >> 5) & 7);
        c.max_pending_bytes = 512 << (tune & 7);
    }
    if bits & 16 != 0 {
        c.ttl = 60;
    }
    c
}
