//! Operator bans (SPEC §5): the set of banned pseudonyms the relay checks
//! while deciding, kept in step with the one record in the store that all
//! instances share (`record.rs`).
//!
//! While online, the relay reads the record at most [`REFRESH_EVERY`] after
//! the previous read was sent, one read at a time, so a ban takes effect
//! within about a second everywhere. A failed or late read keeps the last
//! list. A record that went missing while this relay knew bans (memcached
//! restarted or evicted it) is written back from the bytes last read: the
//! relay needs no key or randomness of its own for that. A record of a lower
//! generation than one already taken is an older list replayed into the
//! store, and refused.

pub mod record;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::action::{Action, OpId, StoreOutcome};
use crate::cache::Prehashed;
use crate::pseudonym::Local;
use crate::rate::LOG_EVERY;
use crate::relay::Relay;
use crate::seal::StoreCodec;

/// How often the ban list is read from the store.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// What the one ban operation in flight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BanOp {
    Read,
    WriteBack,
}

/// The ban list as this relay knows it.
pub(crate) struct Bans {
    /// Banned localparts: the stanza path's only concern.
    set: HashSet<Local, Prehashed>,
    /// The record `set` came from, while it holds a ban.
    record: Option<Bytes>,
    /// The highest generation taken so far.
    generation: u64,
    /// The bytes last read, whatever came of them: the same bytes again
    /// change nothing, so they are not decoded again.
    last: Option<Bytes>,
    key: String,
    domain: String,
    inflight: Option<(OpId, BanOp, Instant)>,
    /// When the next read is due; `None` while offline.
    next: Option<Instant>,
    warned_missing: bool,
    warned_unreadable: bool,
    warned_older: bool,
    /// Per banned pseudonym: when a refusal was last logged, and refusals
    /// since. Only banned pseudonyms are keys, so it is bounded by the list.
    logged: HashMap<Local, (Option<Instant>, u32), Prehashed>,
}

impl Bans {
    pub(crate) fn new(codec: &StoreCodec, domain: &str) -> Self {
        Bans {
            set: HashSet::with_hasher(Prehashed),
            record: None,
            generation: 0,
            last: None,
            key: record::key(codec, domain),
            domain: domain.to_owned(),
            inflight: None,
            next: None,
            warned_missing: false,
            warned_unreadable: false,
            warned_older: false,
            logged: HashMap::with_hasher(Prehashed),
        }
    }

    /// Whether any pseudonym is banned: the stanza path skips every check
    /// when none is.
    pub(crate) fn any(&self) -> bool {
        !self.set.is_empty()
    }

    pub(crate) fn holds(&self, local: &Local) -> bool {
        self.set.contains(local)
    }

    /// When the relay must act for the bans next: the read in flight times
    /// out, or the next read is due.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.inflight {
            Some((_, _, deadline)) => Some(deadline),
            None => self.next,
        }
    }

    /// A refusal of `local` for a ban: how many since the last one worth a
    /// log line (at most one a minute per pseudonym).
    pub(crate) fn refused(&mut self, local: &Local, now: Instant) -> Option<u32> {
        let (logged, refused) = self.logged.entry(*local).or_insert((None, 0));
        *refused = refused.saturating_add(1);
        if logged.is_some_and(|at| now.saturating_duration_since(at) < LOG_EVERY) {
            return None;
        }
        *logged = Some(now);
        Some(std::mem::take(refused))
    }

    fn adopt(&mut self, record: Bytes, list: record::List) {
        self.generation = list.generation;
        self.set = list.bans.iter().map(|b| b.local).collect();
        self.logged.retain(|l, _| self.set.contains(l));
        self.record = (!self.set.is_empty()).then_some(record);
    }

    /// The banned localparts, sorted (tests).
    #[cfg(test)]
    pub(crate) fn listed(&self) -> Vec<String> {
        let mut v: Vec<String> = self.set.iter().map(|l| l.to_string()).collect();
        v.sort();
        v
    }
}

impl Relay {
    /// Online: read the list at once.
    pub(crate) fn bans_online(&mut self, now: Instant) {
        self.bans.next = Some(now);
        self.bans_timeout(now);
    }

    /// Offline: no reads until the next connection; an answer still in
    /// flight is ignored.
    pub(crate) fn bans_offline(&mut self) {
        self.bans.next = None;
        self.bans.inflight = None;
    }

    /// Time for the bans: a read that took too long is given up (the last
    /// list stays), and a due read is sent.
    pub(crate) fn bans_timeout(&mut self, now: Instant) {
        if let Some((_, op, deadline)) = self.bans.inflight {
            if now < deadline {
                return;
            }
            log::debug!("the store did not answer the ban list's {op:?} in time");
            self.bans.inflight = None;
        }
        let Some(next) = self.bans.next else { return };
        if now < next {
            return;
        }
        let op = self.pending.new_id();
        self.bans.inflight = Some((op, BanOp::Read, now + self.cfg.store_timeout));
        self.bans.next = Some(now + REFRESH_EVERY);
        let key = self.bans.key.clone();
        self.actions.push_back(Action::Get { op, key });
    }

    /// If `op` is the ban operation in flight, take its outcome and say so.
    pub(crate) fn bans_answer(&mut self, op: OpId, outcome: &StoreOutcome, now: Instant) -> bool {
        let Some((_, kind, _)) = self.bans.inflight.filter(|(o, ..)| *o == op) else {
            return false;
        };
        self.bans.inflight = None;
        match (kind, outcome) {
            (BanOp::Read, StoreOutcome::Found(Some(value))) => self.bans_read(value),
            (BanOp::Read, StoreOutcome::Found(None)) => self.bans_missing(now),
            (_, StoreOutcome::Failed(e)) => {
                log::debug!(
                    "the ban list could not be read or written ({e}); keeping the last one"
                );
            }
            (BanOp::WriteBack, _) | (BanOp::Read, StoreOutcome::Stored) => {}
        }
        true
    }

    fn bans_read(&mut self, value: &[u8]) {
        self.bans.warned_missing = false;
        if self.bans.last.as_deref() == Some(value) {
            return;
        }
        let value = Bytes::copy_from_slice(value);
        self.bans.last = Some(value.clone());
        match record::decode(&self.codec, &self.bans.domain, &value) {
            Ok(list) if list.generation < self.bans.generation => {
                if !std::mem::replace(&mut self.bans.warned_older, true) {
                    log::warn!(
                        "the stored ban list is older (generation {}) than one already read \
                         here ({}): replayed into the store? Keeping the last one ({} banned)",
                        list.generation,
                        self.bans.generation,
                        self.bans.set.len()
                    );
                }
            }
            Ok(list) => {
                self.bans.warned_unreadable = false;
                self.bans.warned_older = false;
                let before = self.bans.set.len();
                self.bans.adopt(value, list);
                if before != self.bans.set.len() {
                    log::debug!("ban list: {} banned", self.bans.set.len());
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut self.bans.warned_unreadable, true) {
                    log::warn!(
                        "{e}; keeping the last ban list ({} banned)",
                        self.bans.set.len()
                    );
                }
            }
        }
    }

    /// No record: nothing banned, unless this relay knew bans, which it
    /// then writes back.
    fn bans_missing(&mut self, now: Instant) {
        self.bans.last = None;
        let Some(record) = self.bans.record.clone() else {
            self.bans.set.clear();
            self.bans.logged.clear();
            return;
        };
        if !std::mem::replace(&mut self.bans.warned_missing, true) {
            log::warn!(
                "the ban list is missing from the store (restarted or evicted?); writing back \
                 the last one known here ({} banned)",
                self.bans.set.len()
            );
        }
        let op = self.pending.new_id();
        self.bans.inflight = Some((op, BanOp::WriteBack, now + self.cfg.store_timeout));
        self.actions.push_back(Action::Put {
            op,
            key: self.bans.key.clone(),
            value: record,
            ttl: 0,
        });
    }
}
