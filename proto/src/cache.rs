//! A bounded map with approximate LRU eviction, for caches and the id map.
//!
//! Two generations: inserts go to the young one; when it is full the old one
//! is retired and the young one becomes old. A hit in the old generation is
//! promoted. At most `capacity` entries are visible, every operation is O(1),
//! and an entry used within the last `capacity / 2` inserts survives.
//! Hashing is SipHash keyed from the configuration, so peers cannot aim for
//! collisions and the core stays deterministic; keys that are secret and
//! uniform already (the id map's) are only mixed ([`Prehashed`]).
//!
//! Rotations are cheap: three tables, each allocated once at its final
//! size, swap roles (young, old, retired), so none rehashes and no entry
//! moves; a retired generation is invisible at once and freed a batch at a
//! time over the following inserts rather than all at once (dropping 50,000
//! entries at once stalled the relay for tens of milliseconds).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use siphasher::sip::SipHasher13;

/// Retired entries are freed `FREE_BATCH` at a time every `FREE_EVERY`
/// inserts: 4 per insert on average. A generation takes `capacity / 2`
/// inserts to fill, so a retired one is gone after about `capacity / 8`,
/// long before the next retires. Batches, because each one scans the
/// retired table from its start.
const FREE_EVERY: usize = 64;
const FREE_BATCH: usize = 4 * FREE_EVERY;

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

/// For keys that are already secret and uniform (MAC output, keyed hashes;
/// the id map's): hashing them again would buy nothing. Peers may look such
/// keys up but never choose what is inserted, so they cannot aim for
/// collisions.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Prehashed;

/// Folds the key's bytes into 64 bits, then mixes them.
#[derive(Debug, Default)]
pub(crate) struct Fold(u64);

impl Hasher for Fold {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }

    /// MurmurHash3's finaliser: every input bit reaches every output bit,
    /// for a few instructions.
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

impl BuildHasher for Prehashed {
    type Hasher = Fold;
    fn build_hasher(&self) -> Fold {
        Fold::default()
    }
}

/// Which generation a [`GenMap::peek`] found an entry in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gen {
    Young,
    /// To be promoted on use, or it goes at the next rotation.
    Old,
}

/// The two-generation bounded map.
pub(crate) struct GenMap<K, V, S = Keyed> {
    young: HashMap<K, V, S>,
    old: HashMap<K, V, S>,
    /// The generation before `old`: invisible, emptied a batch at a time,
    /// then the next young table. Three tables that swap roles: a rotation
    /// moves no entry and allocates and frees no large block (freeing one
    /// made glibc consolidate every small chunk freed since, for
    /// milliseconds).
    retired: HashMap<K, V, S>,
    half: usize,
    inserts: usize,
}

impl<K, V, S> std::fmt::Debug for GenMap<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenMap")
            .field("young", &self.young.len())
            .field("old", &self.old.len())
            .field("retired", &self.retired.len())
            .finish()
    }
}

/// An empty table that holds `n` entries without growing. If the allocation
/// is refused (an absurd configured capacity), the table grows on demand
/// instead.
fn table<K: Hash + Eq, V, S: BuildHasher>(n: usize, hasher: S) -> HashMap<K, V, S> {
    let mut t = HashMap::with_hasher(hasher);
    let _ = t.try_reserve(n);
    t
}

impl<K: Hash + Eq, V, S: BuildHasher + Copy> GenMap<K, V, S> {
    pub(crate) fn new(capacity: usize, hasher: S) -> Self {
        let half = (capacity / 2).max(1);
        // All three at their final size now: a block of megabytes allocated
        // while relaying (at the first two rotations, before) stalled the
        // relay for milliseconds with some allocators. Pages are only
        // touched as entries arrive.
        GenMap {
            young: table(half, hasher),
            old: table(half, hasher),
            retired: table(half, hasher),
            half,
            inserts: 0,
        }
    }

    pub(crate) fn insert(&mut self, k: K, v: V) {
        if self.young.len() >= self.half && !self.young.contains_key(&k) {
            self.rotate();
        }
        self.young.insert(k, v);
        self.free_some();
    }

    /// Young becomes old; the old generation is retired.
    fn rotate(&mut self) {
        // Only in small maps (fewer than `4 * FREE_EVERY` entries) is
        // anything left to drop here, see `FREE_EVERY`.
        self.retired.clear();
        std::mem::swap(&mut self.retired, &mut self.old);
        std::mem::swap(&mut self.old, &mut self.young);
        // Allocates only if `new` could not.
        let _ = self.young.try_reserve(self.half);
    }

    fn free_some(&mut self) {
        self.inserts = self.inserts.wrapping_add(1);
        let left = self.retired.len();
        if left == 0 || !self.inserts.is_multiple_of(FREE_EVERY) {
            return;
        }
        if left > FREE_BATCH {
            self.retired
                .extract_if(|_, _| true)
                .take(FREE_BATCH)
                .for_each(drop);
        } else {
            // `clear` on a non-empty table also resets the slots the removals
            // only marked as deleted, which would otherwise count against the
            // room of the next young table (and make it rehash).
            self.retired.clear();
        }
    }

    pub(crate) fn get<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.young.contains_key(k) && !self.promote(k) {
            return None;
        }
        self.young.get_mut(k)
    }

    /// `f` of the entry, as `get` would find it, with one lookup when it is
    /// young: `get` has to look twice, because a reference it returns from
    /// the first lookup would keep the map borrowed on the way to the
    /// promotion. The relay itself reads with `peek` and `promote`.
    #[cfg(test)]
    pub(crate) fn with<Q, R>(&mut self, k: &Q, f: impl FnOnce(&mut V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(v) = self.young.get_mut(k) {
            return Some(f(v));
        }
        if !self.promote(k) {
            return None;
        }
        self.young.get_mut(k).map(f)
    }

    /// The entry and where it is, without promoting it: for deciding what
    /// to do with a stanza before anything changes.
    pub(crate) fn peek<Q>(&self, k: &Q) -> Option<(&V, Gen)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(v) = self.young.get(k) {
            return Some((v, Gen::Young));
        }
        self.old.get(k).map(|v| (v, Gen::Old))
    }

    /// Move `k`'s entry from the old generation to the young one; whether
    /// there was one. After a [`GenMap::peek`] that found it old, this does
    /// what `get` would have done; if a rotation retired it since, it is
    /// gone, as if evicted.
    pub(crate) fn promote<Q>(&mut self, k: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.old.remove_entry(k) {
            Some((k, v)) => {
                self.insert(k, v);
                true
            }
            None => false,
        }
    }

    #[cfg(test)]
    pub(crate) fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.young.remove(k).or_else(|| self.old.remove(k))
    }

    /// Visible entries.
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
        assert_eq!(m.with(&999, |v| *v), Some(999));
        assert_eq!(m.get(&500), None);
        assert_eq!(m.with(&500, |v| *v), None);
        assert_eq!(m.remove(&999), Some(999));
        assert_eq!(m.get(&999), None);
    }

    #[test]
    fn young_table_never_grows() {
        let mut m = GenMap::new(1000, Keyed::new(&[1; 32], 0));
        let cap = m.young.capacity();
        assert!(cap >= 500);
        for i in 0..10_000u32 {
            m.insert(i, i);
            assert_eq!(m.young.capacity(), cap);
            assert!(m.len() <= 1000);
            assert!(m.retired.len() <= 500);
        }
    }

    #[test]
    fn both_generations_are_found_and_retired_ones_are_freed() {
        let mut m = GenMap::new(1000, Keyed::new(&[1; 32], 0));
        for i in 0..1000u32 {
            m.insert(i, i);
        }
        // 0..500 are old, 500..1000 young: all visible.
        assert_eq!(m.len(), 1000);
        assert!(m.retired.is_empty());
        // The next insert retires 0..500; they are invisible at once.
        m.insert(1000, 1000);
        assert_eq!(m.len(), 501);
        assert!(m.retired.len() >= 500 - FREE_BATCH);
        assert_eq!(m.get(&0), None);
        for i in 1001..1000 + 2 * FREE_EVERY as u32 {
            m.insert(i, i);
        }
        assert!(m.retired.is_empty(), "{m:?}");
        // Old entries are promoted on use, young ones stay.
        assert_eq!(m.get(&600).copied(), Some(600));
        assert!(m.young.contains_key(&600));
        assert!(!m.young.contains_key(&700));
        assert_eq!(m.with(&700, |v| *v), Some(700));
        assert!(m.young.contains_key(&700));
        assert_eq!(m.get(&1001).copied(), Some(1001));
    }

    #[test]
    fn peek_moves_nothing_and_promote_does() {
        let mut m = GenMap::new(4, Keyed::new(&[1; 32], 0));
        for i in 0..4u32 {
            m.insert(i, i);
        }
        // 0 and 1 are old, 2 and 3 young.
        assert_eq!(m.peek(&0), Some((&0, Gen::Old)));
        assert_eq!(m.peek(&3), Some((&3, Gen::Young)));
        assert_eq!(m.peek(&9), None);
        assert!(!m.young.contains_key(&0));
        // Only an old entry moves.
        assert!(!m.promote(&3));
        assert!(m.promote(&0));
        assert_eq!(m.peek(&0), Some((&0, Gen::Young)));
    }

    #[test]
    fn prehashed_keys_spread_over_the_whole_hash() {
        // hashbrown takes the bucket from the low bits and a tag from the
        // top 7: both must come from the key, for arrays (length prefix
        // first) and integers alike.
        let h = |k: &dyn Fn(&mut Fold)| {
            let mut f = Prehashed.build_hasher();
            k(&mut f);
            f.finish()
        };
        let a = h(&|f| [0x80u8, 0, 0, 0, 0, 0, 0, 0, 0, 1].hash(f));
        let b = h(&|f| [0x81u8, 0, 0, 0, 0, 0, 0, 0, 0, 1].hash(f));
        let c = h(&|f| [0x80u8, 0, 0, 0, 0, 0, 0, 0, 0, 2].hash(f));
        assert_ne!(a & 0xffff, b & 0xffff);
        assert_ne!(a, c);
        assert_ne!(
            h(&|f| 1u64.hash(f)) >> 57,
            h(&|f| (1u64 << 60).hash(f)) >> 57
        );
        let mut m = GenMap::new(100, Prehashed);
        for i in 0..1000u64 {
            m.insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i);
        }
        assert_eq!(
            m.get(&999u64.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            Some(&mut 999)
        );
    }

    #[test]
    fn an_absurd_capacity_does_not_allocate_up_front() {
        let mut m = GenMap::new(usize::MAX, Keyed::new(&[1; 32], 0));
        m.insert(1u8, 1u8);
        assert_eq!(m.get(&1).copied(), Some(1));
    }
}
