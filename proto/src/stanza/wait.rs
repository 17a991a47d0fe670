//! Stanzas waiting on the store, seen from the relay: queueing a stanza
//! with the operations its verdict needs, emitting them, settling their
//! answers and running the jobs they held up. Part of `impl Relay`; the
//! queues themselves are in `pending.rs`.

use std::sync::Arc;
use std::time::Instant;

use crate::action::{Action, OpId, StoreOutcome};
use crate::element::Tree;
use crate::pending::{Job, Need, OpKind, Resolution, Served, Settled};
use crate::relay::{Known, Relay, Written};
use crate::stats::RejectReason;

use super::verdict::{Sender, Verdict};
use super::Incoming;

/// How often a job may go back for more operations. It goes back when a
/// mapping it needs is missing again by its turn: evicted from a cache
/// smaller than what is waiting at once, or due for renewal under `ttl`
/// while it waited behind its sender's earlier stanzas. A few rounds get
/// past an unlucky eviction; without a bound the job could cycle for as
/// long as the cache cannot hold its mappings. Past it, the job is answered
/// as if the store had failed.
const MAX_ROUNDS: u8 = 3;

impl Relay {
    /// A stanza from a sender with stanzas waiting: it queues behind them,
    /// its operations issued now so that they are under way by its turn.
    pub(super) fn enqueue(&mut self, el: Tree, sender: &str, now: Instant) {
        let st = Incoming::new(el.root());
        let verdict = self.decide(st, &Resolution::default(), now);
        self.remember(&verdict);
        self.count(&verdict, now);
        let needs = match verdict {
            Verdict::Wait(w) => w.needs,
            // Refused at once: it would be refused in its turn too.
            Verdict::Limited { .. } => {
                self.apply(st, &verdict, now);
                return self.recycle(el);
            }
            _ => Vec::new(),
        };
        self.enqueue_with(el, sender, needs, now);
    }

    pub(super) fn enqueue_with(&mut self, el: Tree, sender: &str, needs: Vec<Need>, now: Instant) {
        // One stanza may always wait, whatever it weighs.
        let over_bytes = !self.pending.is_empty()
            && self.pending.bytes() + el.weight() > self.cfg.max_pending_bytes;
        if self.pending.len() >= self.cfg.max_pending || over_bytes {
            self.reply_error(el.root(), "wait", RejectReason::ResourceConstraint);
            return self.recycle(el);
        }
        // The job keeps a copy the size of the stanza; the framer gets its
        // tree back, capacity and all, for the next one.
        let mut job = Job::new(el.clone());
        self.recycle(el);
        // Every job was counted against the rate limits when first decided.
        job.res.counted = true;
        self.pending.push(sender, job);
        for need in &needs {
            let op = self.issue(need, sender, now);
            self.pending.wait_last(sender, op);
        }
        // A job with nothing to wait for may be at the head already.
        self.advance(sender, now);
    }

    fn issue(&mut self, need: &Need, sender: &str, now: Instant) -> OpId {
        let (op, new) = self
            .pending
            .op_for(need, sender, now + self.cfg.store_timeout);
        if new {
            self.emit(need, op);
        }
        op
    }

    /// Write the sender's mapping again without holding anything up: it was
    /// written once, but the store has failed since and may have lost it.
    /// Used while the store is down, this fails too, and the next use tries
    /// again; so does a use while `max_pending` such writes are in flight,
    /// which keeps a slow store from collecting one per known sender.
    pub(super) fn write_behind(&mut self, sender: &Sender<'_>, now: Instant) {
        let deadline = now + self.cfg.store_timeout;
        let limit = self.cfg.max_pending;
        let behind = self
            .pending
            .op_behind(&sender.local, sender.identity, deadline, limit);
        if let Some((op, need)) = behind {
            self.emit(&need, op);
        }
    }

    /// The store action for a new operation.
    fn emit(&mut self, need: &Need, op: OpId) {
        let domain = &self.cfg.domain;
        match need {
            Need::Lookup(local) => {
                self.stats.lookups += 1;
                let key = self.codec.key(local, domain);
                self.actions.push_back(Action::Get { op, key });
            }
            Need::Write(local, identity) => {
                self.stats.writes += 1;
                let key = self.codec.key(local, domain);
                let value = self.codec.seal(local, domain, identity);
                self.actions.push_back(Action::Put {
                    op,
                    key,
                    value,
                    ttl: self.cfg.ttl,
                });
            }
        }
    }

    /// Run every job at the head of `sender`'s queue that is ready.
    fn advance(&mut self, sender: &str, now: Instant) {
        while let Some(mut job) = self.pending.pop_ready(sender) {
            let st = Incoming::new(job.stanza.root());
            let verdict = self.decide(st, &job.res, now);
            self.remember(&verdict);
            let needs = match verdict {
                Verdict::Wait(w) => w.needs,
                _ => {
                    self.apply(st, &verdict, now);
                    continue;
                }
            };
            job.res.rounds += 1;
            if job.res.rounds > MAX_ROUNDS {
                // A failed job is answered, never queued again: deciding
                // with a failed store never waits.
                job.res.served = Served::Failed;
                let verdict = self.decide(st, &job.res, now);
                self.remember(&verdict);
                self.apply(st, &verdict, now);
                continue;
            }
            self.pending.push_front(sender, job);
            for need in &needs {
                let op = self.issue(need, sender, now);
                self.pending.wait_first(sender, op);
            }
            return;
        }
    }

    /// What a store answer means for the operation it answers; mappings
    /// it brings in go to `known`.
    pub(crate) fn settle_outcome(
        &mut self,
        op: OpId,
        outcome: StoreOutcome,
        now: Instant,
    ) -> Settled {
        // What the store's health reports count: stanzas refused for it.
        let refused = self.stats.rejected_for(RejectReason::InternalServerError);
        match outcome {
            StoreOutcome::Failed(e) => {
                self.stats.store_errors += 1;
                self.health.failed(&e, refused, now);
                Settled::Failed
            }
            StoreOutcome::Stored => {
                self.health.answered(refused, now);
                if let Some(OpKind::Put { local, identity }) = self.pending.kind(op) {
                    let (local, identity) = (local.clone(), Arc::from(identity.as_str()));
                    self.known.insert(
                        local,
                        Known {
                            identity,
                            written: Some(Written {
                                at: now,
                                failures_seen: self.store_failures,
                            }),
                        },
                    );
                }
                Settled::Answered
            }
            StoreOutcome::Found(value) => {
                self.health.answered(refused, now);
                self.found(op, value, now)
            }
        }
    }

    /// A lookup's answer: a verified mapping goes to `known`.
    fn found(&mut self, op: OpId, value: Option<Vec<u8>>, now: Instant) -> Settled {
        match (self.pending.kind(op), value) {
            (Some(OpKind::Get { local }), Some(v)) => {
                let local = local.clone();
                match self.codec.open(&local, &self.cfg.domain, &v) {
                    Some(identity) if self.pseudo.verify(&local, &identity) => {
                        if self.known.get(&local).is_none() {
                            self.known.insert(
                                local,
                                Known {
                                    identity: Arc::from(identity),
                                    written: None,
                                },
                            );
                        }
                        Settled::Answered
                    }
                    _ => {
                        // Tampered, sealed under another key, or pointing
                        // at someone the pseudonym is not a MAC of.
                        self.stats.poisoned += 1;
                        self.health.poisoned(self.stats.poisoned, now);
                        Settled::Absent
                    }
                }
            }
            _ => Settled::Absent,
        }
    }

    /// Settle an operation and advance the senders waiting on it.
    pub(crate) fn settle(&mut self, op: OpId, settled: Settled, now: Instant) {
        if settled == Settled::Failed {
            self.store_failures += 1;
        }
        if let Some((_, senders)) = self.pending.complete(op, settled) {
            for s in senders {
                self.advance(&s, now);
            }
        }
    }
}
