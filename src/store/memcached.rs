//! memcached, shared by several relay instances.
//!
//! Uses the meta-protocol client of the `memcache` crate
//! (`memcache::exp::Memcache`) rather than its classic r2d2-pooled client:
//! it dials lazily (a server that is down at start does not block start-up),
//! bounds every exchange with one deadline, redials a dead pooled connection
//! (so it recovers after a memcached restart, which the classic client
//! without its per-checkout `version` round trip does not), reads many keys
//! in one round trip per server, and spreads keys by rendezvous hashing over
//! the configured addresses, so every instance agrees where a key lives.

use std::collections::HashMap;
use std::time::Duration;

use axrelay_proto::{Store, StoreError};
use memcache::exp::{Error, Memcache, Ttl};

/// Why the client could not be built (an address did not resolve).
#[derive(Debug)]
pub struct MemcachedError {
    servers: Vec<String>,
    problem: String,
}

impl std::fmt::Display for MemcachedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "memcached {}: {}", self.servers.join(", "), self.problem)
    }
}

impl std::error::Error for MemcachedError {}

/// Mappings in memcached.
pub struct MemcachedStore {
    cache: Memcache,
    servers: Vec<String>,
}

impl std::fmt::Debug for MemcachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedStore")
            .field("servers", &self.servers)
            .finish()
    }
}

/// Unreachable, slow or garbled: try again later. Refused: the server or
/// the client rejected this operation.
fn store_error(e: Error) -> StoreError {
    match e {
        Error::Io(_) | Error::Timeout { .. } | Error::Ambiguous { .. } | Error::Protocol(_) => {
            StoreError::Unavailable(format!("memcached: {e}"))
        }
        other => StoreError::Refused(format!("memcached: {other}")),
    }
}

impl MemcachedStore {
    /// A client for `servers` (`host:port` each). Names are resolved now;
    /// connections are made on first use, each bounded by `timeout`, as is
    /// every request.
    pub fn connect(
        servers: &[String],
        timeout: Duration,
    ) -> Result<MemcachedStore, MemcachedError> {
        let cache = Memcache::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .connect(servers.iter().map(String::as_str))
            .map_err(|e| MemcachedError {
                servers: servers.to_vec(),
                problem: e.to_string(),
            })?;
        Ok(MemcachedStore {
            cache,
            servers: servers.to_vec(),
        })
    }

    /// The configured servers.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// Whether every server answers now (a no-op round trip to each).
    pub fn probe(&self) -> Result<(), StoreError> {
        self.cache.meta().noop().map_err(store_error)
    }
}

impl Store for MemcachedStore {
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut found: HashMap<&str, Vec<u8>> = self
            .cache
            .get_many(keys.iter().copied())
            .map_err(store_error)?;
        Ok(keys.iter().map(|k| found.remove(k)).collect())
    }

    fn put(&self, key: &str, value: &[u8], ttl: u32) -> Result<(), StoreError> {
        let ttl = if ttl == 0 { Ttl::NEVER } else { Ttl::secs(ttl) };
        self.cache.set(key, value, ttl).map_err(store_error)
    }

    fn kind(&self) -> &'static str {
        "memcached"
    }
}
