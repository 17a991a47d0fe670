//! The metrics (SPEC §7): counters, gauges and the store latency
//! histogram, rendered as OpenMetrics text by [`http`].
//!
//! Nothing here is touched per message. The session publishes a copy of
//! the core's [`Stats`] and its own state once a second ([`Publisher`]);
//! the store threads record each call's latency and results directly; a
//! scrape reads atomics only, so it never waits for the relay loop nor
//! holds it up. Labels are fixed sets (reasons, store operations,
//! connection states): never a JID or a pseudonym.

pub mod http;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axrelay_proto::{DropReason, OpId, RejectReason, Stats, StoreOutcome};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How often the session publishes.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

type Labels = [(&'static str, &'static str); 1];
type StoreLabels = [(&'static str, &'static str); 2];

/// Where the connection stands, as the `axrelay_connection_state` gauge
/// shows it (one state at 1, the others at 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Connecting, or waiting for the stream header or the handshake.
    Connecting,
    /// Handshake done: relaying.
    Online,
    /// Waiting before the next attempt.
    Backoff,
    /// A stop was requested, or the relay is about to exit.
    Stopping,
}

impl ConnState {
    const ALL: [ConnState; 4] = [
        ConnState::Connecting,
        ConnState::Online,
        ConnState::Backoff,
        ConnState::Stopping,
    ];

    /// The state's label.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Online => "online",
            ConnState::Backoff => "backoff",
            ConnState::Stopping => "stopping",
        }
    }
}

/// What the session publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The core's counters.
    pub stats: Stats,
    /// Connections ended and tried again.
    pub reconnects: u64,
    /// Stanzas waiting on the store.
    pub pending: usize,
    /// Where the connection stands.
    pub state: ConnState,
}

/// A store call, as the store threads report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCall {
    /// A batch of lookups.
    Get,
    /// One write.
    Put,
}

/// The registry and a handle on each of its series; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    stanzas_in: Counter,
    relayed: Counter,
    bounced: Counter,
    dropped: Vec<Counter>,
    rejected: Vec<Counter>,
    oversized: Counter,
    rate_limited: Counter,
    banned: Counter,
    whoami: Counter,
    lookups: Counter,
    writes: Counter,
    cache_hits: Counter,
    store_errors: Counter,
    poisoned: Counter,
    sessions: Counter,
    reconnects: Counter,
    pending: Gauge,
    state: Vec<Gauge>,
    /// get: hit, miss, error; put: ok, error.
    store_get: [Counter; 3],
    store_put: [Counter; 2],
    latency: [Histogram; 2],
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

/// Two handles are equal when they share one registry.
impl PartialEq for Metrics {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Metrics {}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn counter(r: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    r.register(name, help, c.clone());
    c
}

/// A family with every label value present from the start, so that a
/// scrape shows each series even while it is 0.
fn family<M: Clone + Default + prometheus_client::registry::Metric>(
    r: &mut Registry,
    name: &str,
    help: &str,
    key: &'static str,
    values: impl Iterator<Item = &'static str>,
) -> Vec<M>
where
    Family<Labels, M>: prometheus_client::registry::Metric,
{
    let f = Family::<Labels, M>::default();
    let out = values
        .map(|v| f.get_or_create(&[(key, v)]).clone())
        .collect();
    r.register(name, help, f);
    out
}

impl Metrics {
    /// Every family registered, every series at 0.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("axrelay");
        let stanzas_in = counter(&mut r, "stanzas_received", "Stanzas received while online");
        let relayed = counter(&mut r, "relayed", "Messages relayed to a real user");
        let bounced = counter(
            &mut r,
            "bounced",
            "Delivery errors passed back to the original sender",
        );
        let dropped = family::<Counter>(
            &mut r,
            "dropped",
            "Stanzas dropped without an answer, by reason",
            "reason",
            DropReason::ALL.iter().map(|d| d.as_str()),
        );
        let rejected = family::<Counter>(
            &mut r,
            "rejected",
            "Stanzas answered with an error, by stanza error condition",
            "reason",
            RejectReason::ALL.iter().map(|d| d.as_str()),
        );
        let oversized = counter(&mut r, "oversized", "Stanzas skipped for exceeding a limit");
        let rate_limited = counter(&mut r, "rate_limited", "Stanzas refused for a rate limit");
        let banned = counter(
            &mut r,
            "banned",
            "Stanzas refused because their sender or recipient is banned",
        );
        let whoami = counter(&mut r, "whoami", "/whoami answers");
        let lookups = counter(&mut r, "store_lookups", "Store lookups issued by the relay");
        let writes = counter(&mut r, "store_writes", "Store writes issued by the relay");
        let cache_hits = counter(
            &mut r,
            "cache_hits",
            "Mappings served from the in-process cache",
        );
        let store_errors = counter(
            &mut r,
            "store_errors",
            "Store operations that failed or timed out, as the relay saw them",
        );
        let poisoned = counter(
            &mut r,
            "store_poisoned",
            "Stored mappings that failed verification",
        );
        let sessions = counter(&mut r, "sessions", "Connections whose handshake succeeded");
        let reconnects = counter(&mut r, "reconnects", "Connections ended and tried again");
        let pending = Gauge::default();
        r.register(
            "pending_stanzas",
            "Stanzas waiting on the store",
            pending.clone(),
        );
        let state = family::<Gauge>(
            &mut r,
            "connection_state",
            "Where the connection to the server stands (1 for the current state)",
            "state",
            ConnState::ALL.iter().map(|s| s.as_str()),
        );
        let ops = Family::<StoreLabels, Counter>::default();
        let op = |o: &'static str, res: &'static str| {
            let c = ops.get_or_create(&[("op", o), ("result", res)]).clone();
            c
        };
        let store_get = [op("get", "hit"), op("get", "miss"), op("get", "error")];
        let store_put = [op("put", "ok"), op("put", "error")];
        r.register(
            "store_operations",
            "Store operations performed by the store threads, by result (get: per key)",
            ops,
        );
        let lat = Family::<Labels, Histogram>::new_with_constructor(|| {
            // 0.1 ms to about 3.3 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        // One at a time: a guard kept to the end of a longer expression
        // would deadlock the next `get_or_create`.
        let get = lat.get_or_create(&[("op", "get")]).clone();
        let put = lat.get_or_create(&[("op", "put")]).clone();
        let latency = [get, put];
        r.register_with_unit(
            "store_latency",
            "Duration of store calls (a get is one batch)",
            Unit::Seconds,
            lat,
        );
        Metrics(Arc::new(Inner {
            registry: r,
            stanzas_in,
            relayed,
            bounced,
            dropped,
            rejected,
            oversized,
            rate_limited,
            banned,
            whoami,
            lookups,
            writes,
            cache_hits,
            store_errors,
            poisoned,
            sessions,
            reconnects,
            pending,
            state,
            store_get,
            store_put,
            latency,
        }))
    }

    /// The OpenMetrics text of every family.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.0.registry);
        out
    }

    /// A store call ended after `took` with these outcomes.
    pub fn store_call(&self, call: StoreCall, took: Duration, outcomes: &[(OpId, StoreOutcome)]) {
        let m = &self.0;
        let i = match call {
            StoreCall::Get => 0,
            StoreCall::Put => 1,
        };
        m.latency[i].observe(took.as_secs_f64());
        for (_, o) in outcomes {
            match (call, o) {
                (StoreCall::Get, StoreOutcome::Found(Some(_))) => m.store_get[0].inc(),
                (StoreCall::Get, StoreOutcome::Found(None)) => m.store_get[1].inc(),
                (StoreCall::Get, _) => m.store_get[2].inc(),
                (StoreCall::Put, StoreOutcome::Stored) => m.store_put[0].inc(),
                (StoreCall::Put, _) => m.store_put[1].inc(),
            };
        }
    }

    /// Bring the series up to `now`, counters by their growth since `last`.
    fn publish(&self, now: &Snapshot, last: &Snapshot) {
        let m = &self.0;
        let (s, l) = (&now.stats, &last.stats);
        let add = |c: &Counter, new: u64, old: u64| {
            if new > old {
                c.inc_by(new - old);
            }
        };
        add(&m.stanzas_in, s.stanzas_in, l.stanzas_in);
        add(&m.relayed, s.relayed, l.relayed);
        add(&m.bounced, s.bounced, l.bounced);
        for (i, c) in m.dropped.iter().enumerate() {
            add(c, s.dropped_by[i], l.dropped_by[i]);
        }
        for (i, c) in m.rejected.iter().enumerate() {
            add(c, s.rejected_by[i], l.rejected_by[i]);
        }
        add(&m.oversized, s.oversized, l.oversized);
        add(&m.rate_limited, s.rate_limited, l.rate_limited);
        add(&m.banned, s.banned, l.banned);
        add(&m.whoami, s.whoami, l.whoami);
        add(&m.lookups, s.lookups, l.lookups);
        add(&m.writes, s.writes, l.writes);
        add(&m.cache_hits, s.cache_hits, l.cache_hits);
        add(&m.store_errors, s.store_errors, l.store_errors);
        add(&m.poisoned, s.poisoned, l.poisoned);
        add(&m.sessions, s.sessions, l.sessions);
        add(&m.reconnects, now.reconnects, last.reconnects);
        m.pending
            .set(i64::try_from(now.pending).unwrap_or(i64::MAX));
        for (g, st) in m.state.iter().zip(ConnState::ALL) {
            g.set(i64::from(st == now.state));
        }
    }
}

/// The session's side: when to publish next, and what was published.
#[derive(Debug)]
pub struct Publisher {
    metrics: Metrics,
    last: Option<Snapshot>,
    next: Instant,
}

impl Publisher {
    /// The first publication is due at once.
    pub fn new(metrics: Metrics, now: Instant) -> Self {
        Publisher {
            metrics,
            last: None,
            next: now,
        }
    }

    /// When the next publication is due.
    pub fn deadline(&self) -> Instant {
        self.next
    }

    /// Publish `snap` if it is due.
    pub fn tick(&mut self, now: Instant, snap: impl FnOnce() -> Snapshot) {
        if now < self.next {
            return;
        }
        let snap = snap();
        let zero = Snapshot {
            stats: Stats::default(),
            reconnects: 0,
            pending: 0,
            state: ConnState::Connecting,
        };
        self.metrics
            .publish(&snap, self.last.as_ref().unwrap_or(&zero));
        self.last = Some(snap);
        self.next = now + PUBLISH_EVERY;
    }
}

#[cfg(test)]
pub(crate) mod tests;
