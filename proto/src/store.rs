//! The contract every mapping store fulfils, and the in-memory store.
//!
//! `proto` never calls a store: it emits [`crate::Action::Get`] and
//! [`crate::Action::Put`] and the runtime performs them against a [`Store`],
//! feeding the outcome back through [`crate::Relay::handle_store`]. Keys and
//! values arrive already encoded by [`crate::seal::StoreCodec`], so a backend
//! is a plain byte map with a TTL and knows nothing of XMPP.

use std::collections::HashMap;
use std::sync::Mutex;

/// Why a store operation failed. The relay answers the affected sender with
/// an error stanza and carries on; the next operation tries again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The backend could not be reached or timed out.
    Unavailable(String),
    /// The backend answered, but refused the operation.
    Refused(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "store unavailable: {e}"),
            StoreError::Refused(e) => write!(f, "store refused the operation: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A blocking key/value store for mappings. Runtimes call it off their stanza
/// loop (on store threads), so implementations may block, but must bound
/// every call with a timeout.
pub trait Store: Send + Sync {
    /// Look up several keys at once (one round trip where the backend allows);
    /// the answer has one entry per key, in order.
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Store `value` under `key`; `ttl` in seconds, 0 = never expire.
    fn put(&self, key: &str, value: &[u8], ttl: u32) -> Result<(), StoreError>;

    /// Look up one key.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut v = self.get_many(&[key])?;
        Ok(v.pop().flatten())
    }

    /// A short name for logs: `memory`, `file`, `memcached`.
    fn kind(&self) -> &'static str;
}

/// Mappings in process memory, bounded; lost at exit. TTLs are not enforced
/// (the process lifetime is shorter than any sensible TTL).
#[derive(Debug)]
pub struct MemoryStore {
    map: Mutex<HashMap<String, Vec<u8>>>,
    capacity: usize,
}

impl MemoryStore {
    /// A store holding at most `capacity` entries; when full, an arbitrary
    /// old entry makes room (its owner's next message writes it again).
    pub fn new(capacity: usize) -> Self {
        MemoryStore {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(1 << 20)
    }
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("memory store lock poisoned".into())
}

impl Store for MemoryStore {
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let map = self.map.lock().map_err(|_| poisoned())?;
        Ok(keys.iter().map(|k| map.get(*k).cloned()).collect())
    }

    fn put(&self, key: &str, value: &[u8], _ttl: u32) -> Result<(), StoreError> {
        let mut map = self.map.lock().map_err(|_| poisoned())?;
        if map.len() >= self.capacity && !map.contains_key(key) {
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        map.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_round_trip_and_bound() {
        let s = MemoryStore::new(2);
        s.put("a", b"1", 0).unwrap();
        s.put("b", b"2", 0).unwrap();
        assert_eq!(s.get("a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(
            s.get_many(&["b", "x"]).unwrap(),
            vec![Some(b"2".to_vec()), None]
        );
        s.put("c", b"3", 0).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.get("c").unwrap(), Some(b"3".to_vec()));
        s.put("c", b"4", 0).unwrap();
        assert_eq!(s.len(), 2);
    }
}
