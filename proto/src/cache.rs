//! A bounded map with approximate LRU eviction, for caches and the id map.
//!
//! Two generations: inserts go to the young one; when it is full the old one
//! is dropped and the young one becomes old. A hit in the old generation is
//! promoted. Memory is bounded by `capacity` entries, every operation is O(1),
//! and an entry used within the last `capacity / 2` inserts survives.
//! Hashing is SipHash keyed from the configuration, so peers cannot aim for
//! collisions and the core stays deterministic.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use siphasher::sip::SipHasher13;

/// SipHash-1-3 with fixed per-relay keys.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keyed(u64, u64);

impl Keyed {
    pub(crate) fn new(key: &[u8; 32], salt: u64) -> Self {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&key[..8]);
        b.copy_from_slice(&key[8..16]);
        Keyed(u64::from_le_bytes(a) ^ salt, u64::from_le_bytes(b))
    }
}

impl BuildHasher for Keyed {
    type Hasher = SipHasher13;
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.0, self.1)
    }
}

/// The two-generation bounded map.
#[derive(Debug)]
pub(crate) struct GenMap<K, V> {
    young: HashMap<K, V, Keyed>,
    old: HashMap<K, V, Keyed>,
    half: usize,
}

impl<K: Hash + Eq, V> GenMap<K, V> {
    pub(crate) fn new(capacity: usize, hasher: Keyed) -> Self {
        let half = (capacity / 2).max(1);
        GenMap {
            young: HashMap::with_hasher(hasher),
            old: HashMap::with_hasher(hasher),
            half,
        }
    }

    pub(crate) fn insert(&mut self, k: K, v: V) {
        if self.young.len() >= self.half && !self.young.contains_key(&k) {
            let hasher = *self.young.hasher();
            self.old = std::mem::replace(&mut self.young, HashMap::with_hasher(hasher));
        }
        self.young.insert(k, v);
    }

    pub(crate) fn get<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.young.contains_key(k) {
            let (k, v) = self.old.remove_entry(k)?;
            self.insert(k, v);
        }
        self.young.get_mut(k)
    }

    #[cfg(test)]
    pub(crate) fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.young.remove(k).or_else(|| self.old.remove(k))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_recently_used_entries_survive() {
        let mut m = GenMap::new(10, Keyed::new(&[1; 32], 0));
        for i in 0..1000u32 {
            m.insert(i, i);
            assert!(m.len() <= 10);
            // Entry 0 is used all the time, so it is never evicted.
            assert_eq!(m.get(&0).copied(), Some(0));
        }
        assert_eq!(m.get(&999).copied(), Some(999));
        assert_eq!(m.get(&500), None);
        assert_eq!(m.remove(&999), Some(999));
        assert_eq!(m.get(&999), None);
    }
}
