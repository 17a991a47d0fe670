//! Stanzas waiting on the store, kept in order per sender.
//!
//! A stanza that needs a lookup or a write becomes a [`Job`] in its sender's
//! queue; the store operations it needs are emitted at once (deduplicated
//! across senders), so later stanzas prefetch while earlier ones wait, but a
//! sender's stanzas complete strictly in arrival order. Other senders are not
//! held up. Operations time out; a late answer settles no stanza (a late
//! failure still counts against the store).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::action::OpId;
use crate::cache::Keyed;
use crate::element::Tree;

/// A store operation a stanza needs before it can be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Need {
    /// Who is behind this pseudonym localpart?
    Lookup(String),
    /// Store `localpart → identity`.
    Write(String, String),
}

/// How one store operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Answered: a write stored, a lookup found a verified mapping.
    Answered,
    /// A lookup found nothing usable (nothing, or an entry that failed
    /// verification).
    Absent,
    /// Failed or timed out.
    Failed,
}

/// Whether the store has served a job so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// Every operation it waited on was answered (or it waited on none).
    #[default]
    Answered,
    /// One failed or timed out: the job is answered with an error.
    Failed,
}

/// What became of a job's operations.
#[derive(Debug, Default, Clone)]
pub(crate) struct Resolution {
    /// Localparts the store does not know (or whose entry failed verification).
    pub(crate) absent: Vec<String>,
    pub(crate) served: Served,
    /// How often the job went back for more operations.
    pub(crate) rounds: u8,
    /// Counted against the rate limits already, when first decided.
    pub(crate) counted: bool,
}

pub(crate) struct Job {
    pub(crate) stanza: Tree,
    /// `stanza.weight()`, taken once when the job is made.
    pub(crate) weight: usize,
    pub(crate) waits: Vec<OpId>,
    pub(crate) res: Resolution,
}

impl Job {
    pub(crate) fn new(stanza: Tree) -> Self {
        Job {
            weight: stanza.weight(),
            stanza,
            waits: Vec::new(),
            res: Resolution::default(),
        }
    }
}

pub(crate) enum OpKind {
    Get { local: String },
    Put { local: String, identity: String },
}

pub(crate) struct Op {
    pub(crate) kind: OpKind,
    waiters: Vec<String>,
    /// Issued by [`Pending::op_behind`]: no job asked for it.
    behind: bool,
}

pub(crate) struct Pending {
    queues: HashMap<String, VecDeque<Job>, Keyed>,
    ops: HashMap<OpId, Op, Keyed>,
    inflight_get: HashMap<String, OpId, Keyed>,
    inflight_put: HashMap<String, OpId, Keyed>,
    deadlines: VecDeque<(Instant, OpId)>,
    /// Operations in flight that no job asked for (writes behind).
    behind: usize,
    jobs: usize,
    /// Total weight of the queued jobs.
    bytes: usize,
    next_op: u64,
}

impl Pending {
    pub(crate) fn new(hasher: Keyed) -> Self {
        Pending {
            queues: HashMap::with_hasher(hasher),
            ops: HashMap::with_hasher(hasher),
            inflight_get: HashMap::with_hasher(hasher),
            inflight_put: HashMap::with_hasher(hasher),
            deadlines: VecDeque::new(),
            behind: 0,
            jobs: 0,
            bytes: 0,
            next_op: 0,
        }
    }

    /// What operation `op` is, while it is in flight.
    pub(crate) fn kind(&self, op: OpId) -> Option<&OpKind> {
        self.ops.get(&op).map(|o| &o.kind)
    }

    /// Jobs waiting, all senders together.
    pub(crate) fn len(&self) -> usize {
        self.jobs
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.jobs == 0
    }

    /// What the waiting stanzas hold, by [`Tree::weight`].
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `sender` has stanzas waiting (a new one must queue behind them).
    pub(crate) fn has_queue(&self, sender: &str) -> bool {
        !self.queues.is_empty() && self.queues.contains_key(sender)
    }

    /// Queue a job for `sender` behind its earlier ones.
    pub(crate) fn push(&mut self, sender: &str, job: Job) {
        self.jobs += 1;
        self.bytes += job.weight;
        self.queues
            .entry(sender.to_owned())
            .or_default()
            .push_back(job);
    }

    /// Put a job back at the head of its sender's queue (it needs more).
    pub(crate) fn push_front(&mut self, sender: &str, job: Job) {
        self.jobs += 1;
        self.bytes += job.weight;
        self.queues
            .entry(sender.to_owned())
            .or_default()
            .push_front(job);
    }

    /// Take the sender's head job if it waits on nothing.
    pub(crate) fn pop_ready(&mut self, sender: &str) -> Option<Job> {
        let q = self.queues.get_mut(sender)?;
        if q.front().is_some_and(|j| j.waits.is_empty()) {
            let job = q.pop_front()?;
            if q.is_empty() {
                self.queues.remove(sender);
            }
            self.jobs -= 1;
            self.bytes -= job.weight;
            Some(job)
        } else {
            None
        }
    }

    /// The operation for `need`, reusing one in flight; `(op, new)` where a
    /// new one must be emitted by the caller.
    pub(crate) fn op_for(&mut self, need: &Need, sender: &str, deadline: Instant) -> (OpId, bool) {
        let existing = match need {
            Need::Lookup(l) => self.inflight_get.get(l),
            Need::Write(l, _) => self.inflight_put.get(l),
        };
        if let Some(&op) = existing {
            if let Some(o) = self.ops.get_mut(&op) {
                o.waiters.push(sender.to_owned());
            }
            return (op, false);
        }
        (
            self.insert_op(need, vec![sender.to_owned()], false, deadline),
            true,
        )
    }

    /// A write no job waits on (a mapping written again after a store
    /// failure), unless one for the same mapping is in flight or `limit`
    /// such writes are: then `None`, and a later use tries again. Without
    /// the limit a slow store would collect one per known sender.
    pub(crate) fn op_behind(
        &mut self,
        local: &str,
        identity: &str,
        deadline: Instant,
        limit: usize,
    ) -> Option<(OpId, Need)> {
        if self.behind >= limit || self.inflight_put.contains_key(local) {
            return None;
        }
        self.behind += 1;
        let need = Need::Write(local.to_owned(), identity.to_owned());
        Some((self.insert_op(&need, Vec::new(), true, deadline), need))
    }

    /// A fresh id for an operation kept outside the queues (the ban
    /// list's): ids never repeat, so answers cannot be confused.
    pub(crate) fn new_id(&mut self) -> OpId {
        self.next_op += 1;
        OpId(self.next_op)
    }

    fn insert_op(
        &mut self,
        need: &Need,
        waiters: Vec<String>,
        behind: bool,
        deadline: Instant,
    ) -> OpId {
        self.next_op += 1;
        let op = OpId(self.next_op);
        let kind = match need {
            Need::Lookup(l) => {
                self.inflight_get.insert(l.clone(), op);
                OpKind::Get { local: l.clone() }
            }
            Need::Write(l, i) => {
                self.inflight_put.insert(l.clone(), op);
                OpKind::Put {
                    local: l.clone(),
                    identity: i.clone(),
                }
            }
        };
        self.ops.insert(
            op,
            Op {
                kind,
                waiters,
                behind,
            },
        );
        self.deadlines.push_back((deadline, op));
        op
    }

    /// Add `op` to the waits of `sender`'s last job.
    pub(crate) fn wait_last(&mut self, sender: &str, op: OpId) {
        if let Some(job) = self.queues.get_mut(sender).and_then(|q| q.back_mut()) {
            if !job.waits.contains(&op) {
                job.waits.push(op);
            }
        }
    }

    /// Add `op` to the waits of `sender`'s first job.
    pub(crate) fn wait_first(&mut self, sender: &str, op: OpId) {
        if let Some(job) = self.queues.get_mut(sender).and_then(|q| q.front_mut()) {
            if !job.waits.contains(&op) {
                job.waits.push(op);
            }
        }
    }

    /// An operation finished: take it and tell its waiting jobs how.
    /// Returns the operation and the senders to advance, or `None` for an
    /// unknown (late or duplicate) answer.
    pub(crate) fn complete(&mut self, op: OpId, settled: Settled) -> Option<(OpKind, Vec<String>)> {
        let o = self.ops.remove(&op)?;
        if o.behind {
            self.behind -= 1;
        }
        self.prune_deadlines();
        match &o.kind {
            OpKind::Get { local } => {
                self.inflight_get.remove(local);
            }
            OpKind::Put { local, .. } => {
                self.inflight_put.remove(local);
            }
        }
        let mut senders = o.waiters;
        senders.sort_unstable();
        senders.dedup();
        for s in &senders {
            let Some(q) = self.queues.get_mut(s) else {
                continue;
            };
            for job in q.iter_mut().filter(|j| j.waits.contains(&op)) {
                job.waits.retain(|w| *w != op);
                match (settled, &o.kind) {
                    (Settled::Failed, _) => job.res.served = Served::Failed,
                    (Settled::Absent, OpKind::Get { local }) => job.res.absent.push(local.clone()),
                    _ => {}
                }
            }
        }
        Some((o.kind, senders))
    }

    /// Operations whose deadline passed, oldest first.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<OpId> {
        let mut out = Vec::new();
        while let Some(&(t, op)) = self.deadlines.front() {
            if !self.ops.contains_key(&op) {
                self.deadlines.pop_front();
            } else if t <= now {
                self.deadlines.pop_front();
                out.push(op);
            } else {
                break;
            }
        }
        out
    }

    /// When the oldest operation times out. Constant time: the front of
    /// `deadlines` is always a live operation (see `prune_deadlines`).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.front().map(|(t, _)| *t)
    }

    /// Drop finished operations from the front of `deadlines`, so that the
    /// front is live; finished ones further back go when they reach it.
    fn prune_deadlines(&mut self) {
        while let Some((_, op)) = self.deadlines.front() {
            if self.ops.contains_key(op) {
                break;
            }
            self.deadlines.pop_front();
        }
    }

    /// Every waiting job, for answering them at a stop; clears everything.
    pub(crate) fn drain(&mut self) -> Vec<Job> {
        let mut jobs = Vec::with_capacity(self.jobs);
        let mut senders: Vec<String> = self.queues.keys().cloned().collect();
        senders.sort_unstable();
        for s in senders {
            if let Some(q) = self.queues.remove(&s) {
                jobs.extend(q);
            }
        }
        self.clear();
        jobs
    }

    /// Forget everything (the connection is gone).
    pub(crate) fn clear(&mut self) {
        self.queues.clear();
        self.ops.clear();
        self.inflight_get.clear();
        self.inflight_put.clear();
        self.deadlines.clear();
        self.behind = 0;
        self.jobs = 0;
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Keyed;
    use std::time::Duration;

    #[test]
    fn next_deadline_follows_the_oldest_live_operation() {
        let mut p = Pending::new(Keyed::new(&[1; 32], 0));
        let t0 = crate::tests::origin();
        let at = |s| t0 + Duration::from_secs(s);
        let ops: Vec<OpId> = (0..3)
            .map(|i| p.op_for(&Need::Lookup(format!("u{i}")), "s", at(i)).0)
            .collect();
        assert_eq!(p.next_deadline(), Some(at(0)));
        // Finishing a later one leaves the oldest in front.
        p.complete(ops[1], Settled::Answered);
        assert_eq!(p.next_deadline(), Some(at(0)));
        // Finishing the oldest skips the finished one behind it.
        p.complete(ops[0], Settled::Answered);
        assert_eq!(p.next_deadline(), Some(at(2)));
        assert_eq!(p.deadlines.len(), 1);
        assert_eq!(p.expired(at(2)), vec![ops[2]]);
        p.complete(ops[2], Settled::Failed);
        assert_eq!(p.next_deadline(), None);
        // A late answer to a finished operation changes nothing.
        assert!(p.complete(ops[0], Settled::Answered).is_none());
    }
}
