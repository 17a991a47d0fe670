//! What an operator does to the store: look a pseudonym up, and ban,
//! unban and list banned pseudonyms (SPEC §4, §7). The command line does it
//! directly when no relay runs, and a running relay's control socket does it
//! against the relay's own store, with these same functions.
//!
//! The ban list is one record, so a ban is a read-modify-write, and each
//! write raises the list's generation by one (relays refuse a lower one).
//! The store has no compare-and-swap, so two writers can still lose an
//! update: each reads the list back after writing it and tries again (at
//! most [`ATTEMPTS`] times) if its change is not there, which catches a
//! writer that overwrote this one before the read back, but not one that
//! read before this write and writes after the read back. One operator at a
//! time, or everything through one relay's control socket (its requests
//! are served one at a time), is safe.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axrelay_proto::bans::record::{self, List, NONCE_LEN};
use axrelay_proto::pseudonym::Local;
use axrelay_proto::{Ban, BanError, Pseudonymizer, Store, StoreCodec, StoreError};

/// Read-modify-write rounds before a ban or unban gives up.
pub const ATTEMPTS: usize = 3;

/// Why an operation failed.
#[derive(Debug)]
pub enum AdminError {
    /// The store failed.
    Store(StoreError),
    /// The ban list cannot be read, or would be too large.
    Record(BanError),
    /// No random nonce for sealing the list.
    Randomness(String),
    /// Another writer kept changing the list.
    Raced,
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Store(e) => e.fmt(f),
            AdminError::Record(e) => e.fmt(f),
            AdminError::Randomness(e) => write!(f, "no randomness from the operating system: {e}"),
            AdminError::Raced => write!(
                f,
                "the ban list kept changing under another writer ({ATTEMPTS} attempts); try again"
            ),
        }
    }
}

impl std::error::Error for AdminError {}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Store(e)
    }
}

impl From<BanError> for AdminError {
    fn from(e: BanError) -> Self {
        AdminError::Record(e)
    }
}

/// What a ban or unban changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Done.
    Done,
    /// Nothing to do: already banned, or not banned.
    Unchanged,
}

/// The store, and what reading and writing its entries takes.
pub struct Admin {
    store: Arc<dyn Store>,
    codec: StoreCodec,
    domain: String,
    verifier: Pseudonymizer,
    bans_key: String,
}

impl Admin {
    /// For the store of the relay at `domain`, with its `[hash] secret` and
    /// the store's `encrypt` key.
    pub fn new(
        store: Arc<dyn Store>,
        domain: &str,
        secret: &[u8],
        encrypt: Option<[u8; 32]>,
    ) -> Admin {
        let codec = StoreCodec::new(encrypt);
        Admin {
            bans_key: record::key(&codec, domain),
            store,
            codec,
            domain: domain.to_owned(),
            verifier: Pseudonymizer::new(secret),
        }
    }

    /// Who is behind `local`, if the store has a mapping that verifies.
    pub fn lookup(&self, local: &Local) -> Result<Option<String>, StoreError> {
        let value = self.store.get(&self.codec.key(local, &self.domain))?;
        // A value that does not open, or names someone whose pseudonym is
        // another, is a poisoned entry: a miss.
        Ok(value
            .and_then(|v| self.codec.open(local, &self.domain, &v))
            .filter(|identity| self.verifier.verify(local, identity)))
    }

    /// The ban list; empty when the store has none.
    pub fn bans(&self) -> Result<Vec<Ban>, AdminError> {
        Ok(self.list()?.bans)
    }

    /// The ban list and its generation; empty, generation 0, when the
    /// store has none.
    fn list(&self) -> Result<List, AdminError> {
        match self.store.get(&self.bans_key)? {
            Some(value) => Ok(record::decode(&self.codec, &self.domain, &value)?),
            None => Ok(List::default()),
        }
    }

    /// Ban `local` for `reason`.
    pub fn ban(&self, local: Local, reason: &str) -> Result<Change, AdminError> {
        if !record::reason_ok(reason) {
            return Err(BanError::BadReason.into());
        }
        self.change(
            |bans| {
                if bans.iter().any(|b| b.local == local) {
                    return false;
                }
                bans.push(Ban {
                    local,
                    at: unix_now(),
                    reason: reason.to_owned(),
                });
                true
            },
            |bans| bans.iter().any(|b| b.local == local),
        )
    }

    /// Lift the ban on `local`.
    pub fn unban(&self, local: Local) -> Result<Change, AdminError> {
        self.change(
            |bans| {
                let before = bans.len();
                bans.retain(|b| b.local != local);
                bans.len() != before
            },
            |bans| bans.iter().all(|b| b.local != local),
        )
    }

    /// Apply `edit` (false: nothing to change) and write the list, until
    /// a read back shows `done`.
    fn change(
        &self,
        edit: impl Fn(&mut Vec<Ban>) -> bool,
        done: impl Fn(&[Ban]) -> bool,
    ) -> Result<Change, AdminError> {
        for _ in 0..ATTEMPTS {
            let mut list = self.list()?;
            if !edit(&mut list.bans) {
                return Ok(Change::Unchanged);
            }
            // Saturating: a clear record's generation is anyone's to set,
            // and at the top a write is still taken (equal is not older).
            list.generation = list.generation.saturating_add(1);
            let mut nonce = [0u8; NONCE_LEN];
            getrandom::fill(&mut nonce).map_err(|e| AdminError::Randomness(e.to_string()))?;
            let value = record::encode(&self.codec, &self.domain, &list, nonce)?;
            // Never expires: a ban outlives any `ttl` of mappings.
            self.store.put(&self.bans_key, &value, 0)?;
            if done(&self.bans()?) {
                return Ok(Change::Done);
            }
        }
        Err(AdminError::Raced)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axrelay_proto::MemoryStore;

    fn admin(encrypt: Option<[u8; 32]>) -> Admin {
        Admin::new(
            Arc::new(MemoryStore::default()),
            "axr.example",
            b"admin test secret",
            encrypt,
        )
    }

    #[test]
    fn ban_unban_and_list() {
        for a in [admin(None), admin(Some([3; 32]))] {
            let p = Pseudonymizer::new(b"admin test secret").local("alice@a.example");
            assert!(a.bans().unwrap().is_empty());
            assert_eq!(a.ban(p, "spam").unwrap(), Change::Done);
            assert_eq!(a.ban(p, "again").unwrap(), Change::Unchanged);
            let bans = a.bans().unwrap();
            assert_eq!(bans.len(), 1);
            assert_eq!((bans[0].local, bans[0].reason.as_str()), (p, "spam"));
            assert!(a.ban(p, "line\nbreak").is_err());
            assert_eq!(a.unban(p).unwrap(), Change::Done);
            assert_eq!(a.unban(p).unwrap(), Change::Unchanged);
            // An empty list is a record, not a deletion.
            assert!(a.store.get(&a.bans_key).unwrap().is_some());
            assert!(a.bans().unwrap().is_empty());
            // Every write raised the generation; no-ops wrote nothing.
            assert_eq!(a.list().unwrap().generation, 2);
        }
    }

    #[test]
    fn lookups_verify() {
        let a = admin(Some([3; 32]));
        let p = Pseudonymizer::new(b"admin test secret").local("alice@a.example");
        assert_eq!(a.lookup(&p).unwrap(), None);
        let key = a.codec.key(&p, "axr.example");
        let value = a.codec.seal(&p, "axr.example", "alice@a.example");
        a.store.put(&key, &value, 0).unwrap();
        assert_eq!(a.lookup(&p).unwrap().as_deref(), Some("alice@a.example"));
        let poisoned = a.codec.seal(&p, "axr.example", "mallory@m.example");
        a.store.put(&key, &poisoned, 0).unwrap();
        assert_eq!(a.lookup(&p).unwrap(), None);
    }
}
