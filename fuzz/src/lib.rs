//! Shared driver for the fuzz targets: runs a [`Relay`] the way a runtime
//! does (virtual clock, in-memory store whose answers the fuzz input can
//! delay, fail or poison) and checks everything the relay writes with a
//! fresh `rxml` parser.
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
//! * at most two stanzas are written per stanza received (plus keepalive
//!   pings): no amplification;
//! * store operations in flight never exceed `3 × max_pending`: a lookup
//!   and a write for each waiting stanza, and at most `max_pending` writes
//!   behind (mappings written again after a store failure);
//! * `stats().lookups`/`writes` equal the `Get`/`Put` actions seen, and
//!   `stats().sessions` the successful handshakes;
//! * after `handle_timeout(now)`, the next deadline is later than `now`
//!   (a runtime never spins on a deadline that does not move).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axrelay_proto::{
    Action, Config, DisconnectReason, Limits, OpId, Relay, StoreError, StoreOutcome,
};
use data_encoding::HEXLOWER;
use rxml::error::EndOrError;
use rxml::{Event, Namespace, Parse, Parser};
use sha1::{Digest, Sha1};

/// The component domain of every fuzzed relay.
pub const DOMAIN: &str = "axr.example";
/// The component password.
pub const PASSWORD: &str = "component-pw";
/// The pseudonym secret (seed files address pseudonyms made with it).
pub const SECRET: &[u8] = b"a fuzzing secret of some length";
/// The store sealing key when a run uses encryption.
pub const ENCRYPT: [u8; 32] = *b"fuzz-encrypt-key-0123456789abcde";
/// The stream id the scripted server sends.
pub const STREAM_ID: &str = "fz1";
/// The scripted server's stream header.
pub const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='axr.example' id='fz1'>";

const STREAMS: &str = "http://etherx.jabber.org/streams";
const COMPONENT: &str = "jabber:component:accept";

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

/// One stanza (depth-1 element) the relay wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// Local name.
    pub name: String,
    /// Namespace.
    pub ns: String,
    /// Unqualified attributes.
    pub attrs: Vec<(String, String)>,
    /// Names of its direct children.
    pub children: Vec<(String, String)>,
    /// Its serialized bytes, as written.
    pub raw: Vec<u8>,
    /// Which connection wrote it.
    pub conn: u32,
}

impl Written {
    /// An unqualified attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Split a JID the way RFC 7622 does: resource after the first `/`,
/// localpart before the first `@` of what is left.
pub fn split_jid(j: &str) -> (Option<&str>, &str, Option<&str>) {
    let (head, res) = match j.find('/') {
        Some(i) => (&j[..i], Some(&j[i + 1..])),
        None => (j, None),
    };
    match head.find('@') {
        Some(i) => (Some(&head[..i]), &head[i + 1..], res),
        None => (None, head, res),
    }
}

/// Checks the byte stream of one connection as the server would parse it.
pub struct XmlCheck {
    parser: Parser,
    all: Vec<u8>,
    pos: usize,
    depth: usize,
    root_seen: bool,
    closed: bool,
    start: usize,
    cur: Option<Written>,
    max_stanza: usize,
    conn: u32,
}

impl XmlCheck {
    /// A checker for a fresh connection.
    pub fn new(max_stanza: usize, conn: u32) -> Self {
        XmlCheck {
            parser: Parser::new(),
            all: Vec::new(),
            pos: 0,
            depth: 0,
            root_seen: false,
            closed: false,
            start: 0,
            cur: None,
            max_stanza,
            conn,
        }
    }

    /// Whether the relay closed its stream on this connection.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// All bytes written on this connection.
    pub fn bytes(&self) -> &[u8] {
        &self.all
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "relay output invalid: {what}\n--- output so far ---\n{}",
            String::from_utf8_lossy(&self.all)
        );
    }

    /// Feed bytes the relay wrote; finished stanzas go to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Written>) {
        if self.closed && !bytes.is_empty() {
            self.all.extend_from_slice(bytes);
            self.fail("bytes after the relay's </stream:stream>");
        }
        self.all.extend_from_slice(bytes);
        let mut s = bytes;
        loop {
            match self.parser.parse(&mut s, false) {
                Ok(Some(ev)) => self.event(ev, out),
                Ok(None) => return,
                Err(EndOrError::NeedMoreData) => return,
                Err(EndOrError::Error(e)) => self.fail(&format!("not well-formed: {e}")),
            }
        }
    }

    fn event(&mut self, ev: Event, out: &mut Vec<Written>) {
        let len = ev.metrics().len();
        let at = self.pos;
        self.pos += len;
        match ev {
            Event::XmlDeclaration(..) => {}
            Event::StartElement(_, (ns, name), attrs) => {
                self.depth += 1;
                if !self.root_seen {
                    self.root_seen = true;
                    if ns.as_str() != STREAMS || name.as_str() != "stream" {
                        self.fail("the root is not a stream header");
                    }
                    let to = attrs.get(&Namespace::NONE, "to").map(String::as_str);
                    if to != Some(DOMAIN) {
                        self.fail(&format!("stream header to={to:?}"));
                    }
                    return;
                }
                if self.depth == 2 {
                    self.start = at;
                    let attrs: Vec<(String, String)> = attrs
                        .iter()
                        .filter(|((n, _), _)| n.is_none())
                        .map(|((_, k), v)| (k.as_str().to_owned(), v.clone()))
                        .collect();
                    self.cur = Some(Written {
                        name: name.as_str().to_owned(),
                        ns: ns.as_str().to_owned(),
                        attrs,
                        children: Vec::new(),
                        raw: Vec::new(),
                        conn: self.conn,
                    });
                } else if self.depth == 3 {
                    if let Some(cur) = &mut self.cur {
                        cur.children
                            .push((ns.as_str().to_owned(), name.as_str().to_owned()));
                    }
                }
            }
            Event::EndElement(_) => {
                self.depth -= 1;
                if self.depth == 0 {
                    self.closed = true;
                } else if self.depth == 1 {
                    let Some(mut w) = self.cur.take() else {
                        self.fail("end of a stanza that never started");
                    };
                    w.raw = self.all[self.start..self.pos].to_vec();
                    self.check_stanza(&w);
                    out.push(w);
                }
            }
            Event::Text(..) => {
                if self.depth == 1 {
                    // Whitespace between stanzas is legal; the relay writes none.
                }
            }
        }
    }

    fn check_stanza(&self, w: &Written) {
        if w.raw.len() > self.max_stanza {
            self.fail(&format!(
                "a {} of {} bytes (limit {})",
                w.name,
                w.raw.len(),
                self.max_stanza
            ));
        }
        match (w.ns.as_str(), w.name.as_str()) {
            (COMPONENT, "message" | "presence" | "iq") => {
                let Some(from) = w.attr("from") else {
                    self.fail("a stanza without from")
                };
                let Some(to) = w.attr("to") else {
                    self.fail("a stanza without to")
                };
                let (local, domain, res) = split_jid(from);
                if domain != DOMAIN
                    || local.is_some_and(str::is_empty)
                    || res.is_some_and(str::is_empty)
                {
                    self.fail(&format!("foreign or malformed from '{from}'"));
                }
                let (l, d, r) = split_jid(to);
                if d.is_empty() || l.is_some_and(str::is_empty) || r.is_some_and(str::is_empty) {
                    self.fail(&format!("malformed to '{to}'"));
                }
            }
            (COMPONENT, "handshake") | (STREAMS, "error") => {}
            (ns, name) => self.fail(&format!("unexpected top-level element {{{ns}}}{name}")),
        }
    }
}

/// A store operation the driver holds.
#[derive(Debug, Clone)]
pub struct Held {
    /// The action.
    pub action: Action,
    /// When its deadline passes (the relay forgets it then).
    pub deadline: Instant,
    /// The connection it belongs to.
    pub conn: u32,
}

impl Held {
    fn op(&self) -> OpId {
        match &self.action {
            Action::Get { op, .. } | Action::Put { op, .. } => *op,
            _ => unreachable!(),
        }
    }
}

/// How the driver answers store operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// Answer each at once.
    Auto,
    /// Hold them until told.
    Hold,
}

/// A relay driven like a runtime would drive it.
pub struct Sim {
    /// The relay.
    pub relay: Relay,
    /// Virtual time.
    pub now: Instant,
    /// The store.
    pub store: HashMap<String, Vec<u8>>,
    /// Store operations not answered yet.
    pub held: Vec<Held>,
    /// How operations are answered.
    pub mode: StoreMode,
    /// The current connection's output checker.
    pub check: XmlCheck,
    /// Stanzas written, all connections.
    pub written: Vec<Written>,
    /// Every byte written, all connections.
    pub raw_out: Vec<u8>,
    /// Disconnects seen.
    pub disconnects: Vec<DisconnectReason>,
    /// Connection counter.
    pub conn: u32,
    /// Bytes fed.
    pub in_bytes: usize,
    gets: u64,
    puts: u64,
    onlines: u64,
    pings: u64,
    stanzas_out: u64,
}

impl Sim {
    /// A relay for `config`, not connected.
    pub fn new(config: Config) -> Self {
        let max = config.limits.max_stanza_bytes;
        Sim {
            relay: Relay::new(config).expect("fuzz config is valid"),
            now: Instant::now(),
            store: HashMap::new(),
            held: Vec::new(),
            mode: StoreMode::Auto,
            check: XmlCheck::new(max, 0),
            written: Vec::new(),
            raw_out: Vec::new(),
            disconnects: Vec::new(),
            conn: 0,
            in_bytes: 0,
            gets: 0,
            puts: 0,
            onlines: 0,
            pings: 0,
            stanzas_out: 0,
        }
    }

    /// Connected and past the handshake.
    pub fn online(config: Config) -> Self {
        let mut s = Sim::new(config);
        s.connect();
        s
    }

    /// Connect and complete the handshake (scripted like the tests' harness).
    pub fn connect(&mut self) {
        self.conn += 1;
        self.check = XmlCheck::new(self.relay.config().limits.max_stanza_bytes, self.conn);
        self.relay.handle_connected(self.now);
        self.pump();
        let before = self.check.bytes().len();
        self.relay.handle_input(SERVER_HEADER.as_bytes(), self.now);
        self.pump();
        let mut h = Sha1::new();
        h.update(STREAM_ID.as_bytes());
        h.update(PASSWORD.as_bytes());
        let expected = format!("<handshake>{}</handshake>", HEXLOWER.encode(&h.finalize()));
        assert_eq!(
            &self.check.bytes()[before..],
            expected.as_bytes(),
            "handshake digest"
        );
        let onlines = self.onlines;
        self.relay.handle_input(b"<handshake/>", self.now);
        self.pump();
        assert_eq!(self.onlines, onlines + 1, "not online after the handshake");
        assert!(self.relay.is_online());
    }

    /// Feed bytes from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.in_bytes += bytes.len();
        self.relay.handle_input(bytes, self.now);
        // What the framer holds is bounded by the stanza limit plus two
        // parser slices, whatever the input (SPEC §6).
        let bound = self.relay.config().limits.max_stanza_bytes + 16 * 1024;
        let held = self.relay.buffered();
        assert!(held <= bound, "framer holds {held} bytes, bound {bound}");
        self.pump();
    }

    /// Let `d` pass and tell the relay.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.timeout();
    }

    /// Jump to the next deadline, if any.
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
        if let Some(t) = self.relay.poll_timeout() {
            assert!(
                t > self.now,
                "deadline does not move after handle_timeout: a runtime would spin"
            );
        }
        self.pump();
    }

    /// Drain outputs; answer store operations in `Auto` mode.
    pub fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(bytes) = self.relay.poll_transmit() {
                progressed = true;
                self.raw_out.extend_from_slice(&bytes);
                let start = self.written.len();
                self.check.feed(&bytes, &mut self.written);
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
            while let Some(a) = self.relay.poll_action() {
                progressed = true;
                match a {
                    Action::Online => self.onlines += 1,
                    Action::Disconnect(r) => {
                        assert!(self.relay.is_idle(), "not idle after Disconnect");
                        self.disconnects.push(r);
                    }
                    a @ (Action::Get { .. } | Action::Put { .. }) => {
                        if matches!(a, Action::Get { .. }) {
                            self.gets += 1;
                        } else {
                            self.puts += 1;
                        }
                        let held = Held {
                            action: a,
                            deadline: self.now + self.relay.config().store_timeout,
                            conn: self.conn,
                        };
                        if self.mode == StoreMode::Auto {
                            self.perform(held, Answer::Right);
                        } else {
                            self.held.push(held);
                        }
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        self.invariants();
    }

    /// Answer a held operation.
    pub fn perform(&mut self, h: Held, how: Answer) {
        let op = h.op();
        let outcome = match (how, &h.action) {
            (Answer::Fail, _) => StoreOutcome::Failed(StoreError::Unavailable("fuzz".into())),
            (Answer::Right, Action::Get { key, .. }) => {
                StoreOutcome::Found(self.store.get(key).cloned())
            }
            (Answer::Right, Action::Put { key, value, .. }) => {
                self.store.insert(key.clone(), value.to_vec());
                StoreOutcome::Stored
            }
            (Answer::Poison(v), Action::Get { .. }) => StoreOutcome::Found(Some(v)),
            (Answer::Poison(_), Action::Put { .. }) => StoreOutcome::Stored,
            _ => unreachable!(),
        };
        self.relay.handle_store(op, outcome, self.now);
    }

    /// Answer held operation `i % len` (if any).
    pub fn answer(&mut self, i: usize, how: Answer) {
        if self.held.is_empty() {
            return;
        }
        let h = self.held.remove(i % self.held.len());
        self.perform(h, how);
        self.pump();
    }

    /// Answer every held operation correctly, until none is left.
    pub fn release_all(&mut self) {
        let mut rounds = 0;
        while !self.held.is_empty() {
            rounds += 1;
            assert!(rounds < 1000, "store operations never settle");
            for h in std::mem::take(&mut self.held) {
                self.perform(h, Answer::Right);
            }
            self.pump();
        }
    }

    /// Check the invariants that hold between calls.
    pub fn invariants(&self) {
        let stats = self.relay.stats();
        assert_eq!(stats.lookups, self.gets, "stats.lookups vs Get actions");
        assert_eq!(stats.writes, self.puts, "stats.writes vs Put actions");
        assert_eq!(
            stats.sessions, self.onlines,
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
            assert!(
                live <= 3 * cfg.max_pending,
                "{live} store operations in flight with max_pending {}",
                cfg.max_pending
            );
        }
    }
}

/// How to answer a store operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// What the store holds / the write went through.
    Right,
    /// The store failed.
    Fail,
    /// A value the relay never wrote.
    Poison(Vec<u8>),
}
