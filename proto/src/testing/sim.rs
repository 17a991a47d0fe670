//! A relay driven the way a runtime drives it, entirely in memory: bytes in
//! through `handle_input`, every output drained after every call, store
//! operations answered from a map (at once, held, or failed), virtual time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::check::{Written, XmlCheck};
use super::server::{component_header, handshake, server_header};
use crate::{
    Action, Config, DisconnectReason, MemoryStore, Relay, Store, StoreCodec, StoreError,
    StoreOutcome, WallClock,
};

/// The stream id the simulated server gives every connection.
pub const STREAM_ID: &str = "s1d";

/// Where the simulator keeps what the relay stores.
pub trait Backend {
    /// The value under `key`.
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Keep `value` under `key`.
    fn put(&mut self, key: &str, value: &[u8], ttl: u32) -> Result<(), StoreError>;
}

impl Backend for HashMap<String, Vec<u8>> {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(HashMap::get(self, key).cloned())
    }

    fn put(&mut self, key: &str, value: &[u8], _ttl: u32) -> Result<(), StoreError> {
        self.insert(key.to_owned(), value.to_vec());
        Ok(())
    }
}

impl Backend for MemoryStore {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Store::get(self, key)
    }

    fn put(&mut self, key: &str, value: &[u8], ttl: u32) -> Result<(), StoreError> {
        Store::put(self, key, value, ttl)
    }
}

/// How the simulator answers store operations as they are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// From the store, at once.
    Auto,
    /// Not yet: they wait in [`Sim::held`] until answered.
    Hold,
    /// With a store failure, at once.
    Fail,
}

/// How to answer a store operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// What the store holds / the write went through.
    Right,
    /// The store failed.
    Fail,
    /// A value the relay never wrote (writes are acknowledged, not kept).
    Poison(Vec<u8>),
}

/// What the simulator checks while it drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Everything listed on [`Sim`].
    Full,
    /// Nothing but the handshake: output is counted (and kept if
    /// [`Sim::record`] is set), not parsed, so a benchmark measures the
    /// relay and not the checks.
    Off,
}

/// A store operation the simulated store has not answered yet.
#[derive(Debug)]
pub struct Held {
    /// The `Get` or `Put`.
    pub action: Action,
    /// When the relay gives up on it.
    deadline: Instant,
    /// The connection it was issued on.
    conn: u32,
}

/// A relay and the server, store and clock around it.
///
/// With [`Checks::Full`] a violation of any of these panics:
///
/// * every byte written parses as namespace-well-formed XML (with a parser
///   of its own), starting with the relay's stream header (`to` = the
///   component domain), and nothing follows the relay's `</stream:stream>`;
/// * every `message`/`presence`/`iq` written has a `to` and a `from`, and
///   the `from` is at exactly the component domain;
/// * no written stanza is larger than `max_stanza_bytes`;
/// * the framer never holds more than `max_stanza_bytes` + 16 KiB;
/// * at most two stanzas are written per stanza received (plus keepalive
///   pings): no amplification;
/// * store operations in flight never exceed `3 × max_pending`: a lookup
///   and a write for each waiting stanza, and at most `max_pending` writes
///   behind (mappings written again after a store failure);
/// * `stats().lookups`/`writes` equal the `Get`/`Put` actions seen, and
///   `stats().sessions` the `Online` actions (successful handshakes);
/// * after `Disconnect` the relay is idle;
/// * after `handle_timeout(now)`, the next deadline is later than `now`
///   (a runtime never spins on a deadline that does not move).
///
/// [`Sim::connect`] checks the header and handshake digest in both modes.
pub struct Sim<S: Backend = HashMap<String, Vec<u8>>> {
    /// The relay.
    pub relay: Relay,
    /// Virtual time.
    pub now: Instant,
    /// The store.
    pub store: S,
    /// How store operations are answered.
    pub mode: StoreMode,
    /// Store operations not answered yet (in [`StoreMode::Hold`]); answer
    /// them through [`Sim::answer`] and its siblings, which keep their
    /// deadlines in step.
    pub held: Vec<Held>,
    /// Keys of store operations, in the order the relay asked (full checks).
    pub log: Vec<String>,
    /// Whether to keep every byte written in [`Sim::raw_out`].
    pub record: bool,
    /// Every byte written, all connections, while [`Sim::record`] is set.
    pub raw_out: Vec<u8>,
    /// Bytes written, all connections.
    pub out_bytes: usize,
    /// Stanzas written, all connections (full checks).
    pub written: Vec<Written>,
    /// How many of [`Sim::written`] [`Sim::new_written`] has handed out.
    pub taken: usize,
    /// Whether the relay closed its stream (on any connection).
    pub closed_stream: bool,
    /// Disconnects seen.
    pub disconnects: Vec<DisconnectReason>,
    /// `Online` actions seen.
    pub online: u64,
    /// Lookups answered from the store (the ban list's reads not counted).
    pub gets: u64,
    /// Writes that reached the store (the ban list's not counted).
    pub puts: u64,
    /// Store operations on the ban list's record, asked for.
    pub ban_ops: u64,
    /// The ban list's store key.
    pub bans_key: String,
    /// Connection counter.
    pub conn: u32,
    /// Bytes fed.
    pub in_bytes: usize,
    /// The stream id [`Sim::connect`] hands out.
    pub stream_id: String,
    checks: Checks,
    check: Option<XmlCheck>,
    asked_gets: u64,
    asked_puts: u64,
    pings: u64,
    stanzas_out: u64,
}

/// The Unix time a simulation starts at, unless its configuration says.
pub const SIM_UNIX: u64 = 1_800_000_000;

impl<S: Backend + Default> Sim<S> {
    /// A relay for `config`, not connected, with every check on; virtual
    /// time starts at `origin` (the caller's one reading of a clock: there
    /// is no other way to make an `Instant`).
    pub fn new(config: Config, origin: Instant) -> Self {
        Sim::with_checks(config, Checks::Full, origin)
    }

    /// Connected and past the handshake, with every check on.
    pub fn online(config: Config, origin: Instant) -> Self {
        let mut s = Sim::new(config, origin);
        s.connect();
        s
    }

    /// A relay for `config`, not connected, its virtual time at `origin`
    /// (and, unless `config` has a wall clock, at [`SIM_UNIX`]).
    pub fn with_checks(mut config: Config, checks: Checks, origin: Instant) -> Self {
        config.wall_clock.get_or_insert(WallClock {
            at: origin,
            unix_secs: SIM_UNIX,
        });
        let check = (checks == Checks::Full)
            .then(|| XmlCheck::new(&config.domain, config.limits.max_stanza_bytes, 0));
        let bans_key = crate::bans::record::key(&StoreCodec::new(config.encrypt), &config.domain);
        Sim {
            relay: Relay::new(config).expect("the simulated configuration is valid"),
            ban_ops: 0,
            bans_key,
            now: origin,
            store: S::default(),
            mode: StoreMode::Auto,
            held: Vec::new(),
            log: Vec::new(),
            record: checks == Checks::Full,
            raw_out: Vec::new(),
            out_bytes: 0,
            written: Vec::new(),
            taken: 0,
            closed_stream: false,
            disconnects: Vec::new(),
            online: 0,
            gets: 0,
            puts: 0,
            conn: 0,
            in_bytes: 0,
            stream_id: STREAM_ID.to_owned(),
            checks,
            check,
            asked_gets: 0,
            asked_puts: 0,
            pings: 0,
            stanzas_out: 0,
        }
    }
}

impl<S: Backend> Sim<S> {
    /// The checks in force.
    pub fn checks(&self) -> Checks {
        self.checks
    }

    /// The current connection's output checker (full checks).
    pub fn check(&self) -> Option<&XmlCheck> {
        self.check.as_ref()
    }

    /// Connect and complete the handshake as the server: the relay's header
    /// and handshake digest must be exactly right.
    pub fn connect(&mut self) {
        self.conn += 1;
        if self.checks == Checks::Full {
            let c = self.relay.config();
            self.check = Some(XmlCheck::new(
                &c.domain,
                c.limits.max_stanza_bytes,
                self.conn,
            ));
        }
        let domain = self.relay.config().domain.clone();
        let password = self.relay.config().password.clone();
        let record = std::mem::replace(&mut self.record, true);
        let start = self.raw_out.len();
        self.relay.handle_connected(self.now);
        self.pump();
        assert_eq!(
            String::from_utf8_lossy(&self.raw_out[start..]),
            component_header(&domain),
            "stream header"
        );
        let before = self.raw_out.len();
        let header = server_header(&domain, &self.stream_id);
        self.relay.handle_input(header.as_bytes(), self.now);
        self.pump();
        assert_eq!(
            String::from_utf8_lossy(&self.raw_out[before..]),
            handshake(&self.stream_id, &password),
            "handshake digest"
        );
        self.record = record;
        if !record {
            self.raw_out.truncate(start);
        }
        let online = self.online;
        self.relay.handle_input(b"<handshake/>", self.now);
        self.pump();
        assert_eq!(self.online, online + 1, "not online after the handshake");
        assert!(self.relay.is_online());
        self.taken = self.written.len();
    }

    /// Feed bytes from the server, in one read.
    pub fn feed<T: AsRef<[u8]> + ?Sized>(&mut self, input: &T) {
        let bytes = input.as_ref();
        self.in_bytes += bytes.len();
        self.relay.handle_input(bytes, self.now);
        if self.checks == Checks::Full {
            // What the framer holds is bounded by the stanza limit plus the
            // largest stream header, whatever the input (SPEC §6).
            let bound = self.relay.config().limits.max_stanza_bytes + 16 * 1024;
            let held = self.relay.buffered();
            assert!(held <= bound, "framer holds {held} bytes, bound {bound}");
        }
        self.pump();
    }

    /// Let `d` pass and tell the relay.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.timeout();
    }

    /// Jump to the relay's next deadline, if it has one.
    pub fn run_to_deadline(&mut self) -> bool {
        match self.relay.poll_timeout() {
            Some(t) => {
                self.now = self.now.max(t);
                self.timeout();
                true
            }
            None => false,
        }
    }

    fn timeout(&mut self) {
        self.relay.handle_timeout(self.now);
        if self.checks == Checks::Full {
            if let Some(t) = self.relay.poll_timeout() {
                assert!(
                    t > self.now,
                    "deadline does not move after handle_timeout: a runtime would spin"
                );
            }
        }
        self.pump();
    }

    /// The stanzas written since the last call (or since the handshake).
    pub fn new_written(&mut self) -> &[Written] {
        let from = self.taken.min(self.written.len());
        self.taken = self.written.len();
        &self.written[from..]
    }

    /// Drain transmits, then actions, until both are empty; store
    /// operations are answered as [`Sim::mode`] says.
    pub fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(bytes) = self.relay.poll_transmit() {
                progressed = true;
                self.out_bytes += bytes.len();
                if self.record {
                    self.raw_out.extend_from_slice(&bytes);
                }
                match self.check.as_mut() {
                    Some(check) => {
                        let start = self.written.len();
                        check.feed(&bytes, &mut self.written);
                        self.closed_stream |= check.closed();
                        for w in &self.written[start..] {
                            if matches!(w.name.as_str(), "message" | "presence" | "iq") {
                                self.stanzas_out += 1;
                                if w.name == "iq"
                                    && w.attr("id").is_some_and(|i| i.starts_with("keepalive-"))
                                {
                                    self.pings += 1;
                                }
                            }
                        }
                    }
                    None => {
                        std::hint::black_box(&bytes);
                    }
                }
            }
            while let Some(a) = self.relay.poll_action() {
                progressed = true;
                match a {
                    Action::Online => self.online += 1,
                    Action::Disconnect(r) => {
                        if self.checks == Checks::Full {
                            assert!(self.relay.is_idle(), "not idle after Disconnect");
                        }
                        self.disconnects.push(r);
                    }
                    a @ (Action::Get { .. } | Action::Put { .. }) => {
                        let key = match &a {
                            Action::Get { key, .. } | Action::Put { key, .. }
                                if *key == self.bans_key =>
                            {
                                self.ban_ops += 1;
                                key
                            }
                            Action::Get { key, .. } => {
                                self.asked_gets += 1;
                                key
                            }
                            Action::Put { key, .. } => {
                                self.asked_puts += 1;
                                key
                            }
                            _ => unreachable!(),
                        };
                        if self.checks == Checks::Full {
                            self.log.push(key.clone());
                        }
                        match self.mode {
                            StoreMode::Auto => self.perform(a, Answer::Right),
                            StoreMode::Fail => self.perform(a, Answer::Fail),
                            StoreMode::Hold => {
                                let deadline = self.now + self.relay.config().store_timeout;
                                self.held.push(Held {
                                    action: a,
                                    deadline,
                                    conn: self.conn,
                                });
                            }
                        }
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        if self.checks == Checks::Full {
            self.invariants();
        }
    }

    /// Answer a store operation (without draining the relay's outputs).
    pub fn perform(&mut self, action: Action, how: Answer) {
        let (op, outcome) = match (how, action) {
            (Answer::Fail, Action::Get { op, .. } | Action::Put { op, .. }) => (
                op,
                StoreOutcome::Failed(StoreError::Unavailable("simulated failure".into())),
            ),
            (Answer::Right, Action::Get { op, key }) => match self.store.get(&key) {
                Ok(v) => {
                    self.gets += u64::from(key != self.bans_key);
                    (op, StoreOutcome::Found(v))
                }
                Err(e) => (op, StoreOutcome::Failed(e)),
            },
            (
                Answer::Right,
                Action::Put {
                    op,
                    key,
                    value,
                    ttl,
                },
            ) => match self.store.put(&key, &value, ttl) {
                Ok(()) => {
                    self.puts += u64::from(key != self.bans_key);
                    (op, StoreOutcome::Stored)
                }
                Err(e) => (op, StoreOutcome::Failed(e)),
            },
            (Answer::Poison(v), Action::Get { op, .. }) => (op, StoreOutcome::Found(Some(v))),
            (Answer::Poison(_), Action::Put { op, .. }) => (op, StoreOutcome::Stored),
            (_, a) => panic!("not a store operation: {a:?}"),
        };
        self.relay.handle_store(op, outcome, self.now);
    }

    /// Answer held operation `i % len` (if any), then drain.
    pub fn answer(&mut self, i: usize, how: Answer) {
        if self.held.is_empty() {
            return;
        }
        let i = i % self.held.len();
        let held = self.held.remove(i);
        self.perform(held.action, how);
        self.pump();
    }

    /// Answer the operations held now from the store, then drain.
    pub fn release(&mut self) {
        for held in std::mem::take(&mut self.held) {
            self.perform(held.action, Answer::Right);
        }
        self.pump();
    }

    /// Fail the operations held now, then drain.
    pub fn fail_held(&mut self) {
        for held in std::mem::take(&mut self.held) {
            self.perform(held.action, Answer::Fail);
        }
        self.pump();
    }

    /// Answer held operations from the store until none is left.
    pub fn release_all(&mut self) {
        let mut rounds = 0;
        while !self.held.is_empty() {
            rounds += 1;
            assert!(rounds < 1000, "store operations never settle");
            self.release();
        }
    }

    /// Check the invariants that hold between calls.
    pub fn invariants(&self) {
        let stats = self.relay.stats();
        assert_eq!(
            stats.lookups, self.asked_gets,
            "stats.lookups vs Get actions"
        );
        assert_eq!(stats.writes, self.asked_puts, "stats.writes vs Put actions");
        assert_eq!(
            stats.sessions, self.online,
            "stats.sessions vs Online actions"
        );
        let incoming = stats.stanzas_in + stats.oversized;
        assert!(
            self.stanzas_out <= 2 * incoming + self.pings,
            "{} stanzas written for {} received and {} pings",
            self.stanzas_out,
            incoming,
            self.pings
        );
        let cfg = self.relay.config();
        let live = self
            .held
            .iter()
            .filter(|h| h.conn == self.conn && self.now < h.deadline)
            .count();
        if !self.relay.is_idle() {
            // Lookups and writes for waiting stanzas, writes behind, and
            // the ban list's one read or write-back.
            assert!(
                live <= 3 * cfg.max_pending + 1,
                "{live} store operations in flight with max_pending {}",
                cfg.max_pending
            );
        }
    }
}
