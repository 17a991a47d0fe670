//! A store wrapper that counts what the runtime asks of the store: how
//! many keys each `get_many` carries and how long the calls take.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axrelay_proto::{Store, StoreError};

#[derive(Default)]
pub struct Counts {
    pub get_calls: AtomicU64,
    pub get_keys: AtomicU64,
    pub get_ns: AtomicU64,
    pub puts: AtomicU64,
    pub put_ns: AtomicU64,
}

impl Counts {
    /// `get_many` calls, keys, mean keys per call, mean µs per call, puts,
    /// mean µs per put.
    pub fn summary(&self) -> String {
        let calls = self.get_calls.load(Ordering::Relaxed);
        let keys = self.get_keys.load(Ordering::Relaxed);
        let puts = self.puts.load(Ordering::Relaxed);
        let per = |total: u64, n: u64| total as f64 / n.max(1) as f64;
        format!(
            "{calls} get_many calls for {keys} keys ({:.1} keys/call, {:.0} us/call); {puts} puts ({:.0} us/put)",
            per(keys, calls),
            per(self.get_ns.load(Ordering::Relaxed), calls) / 1000.0,
            per(self.put_ns.load(Ordering::Relaxed), puts) / 1000.0,
        )
    }

    pub fn reset(&self) {
        for c in [
            &self.get_calls,
            &self.get_keys,
            &self.get_ns,
            &self.puts,
            &self.put_ns,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

pub struct Counting {
    pub inner: Arc<dyn Store>,
    pub counts: Arc<Counts>,
}

impl Store for Counting {
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let t = Instant::now();
        let r = self.inner.get_many(keys);
        let c = &self.counts;
        c.get_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        c.get_calls.fetch_add(1, Ordering::Relaxed);
        c.get_keys.fetch_add(keys.len() as u64, Ordering::Relaxed);
        r
    }

    fn put(&self, key: &str, value: &[u8], ttl: u32) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.inner.put(key, value, ttl);
        let c = &self.counts;
        c.put_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        c.puts.fetch_add(1, Ordering::Relaxed);
        r
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}
