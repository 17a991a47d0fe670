//! Store work as the runtimes perform it: consecutive lookups batched into
//! one `get_many`, writes one by one, each job answered exactly once.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Instant;

use axrelay_proto::{OpId, Store, StoreError, StoreOutcome};
use bytes::Bytes;

use crate::metrics::{Metrics, StoreCall};

/// Store calls allowed in flight at once. More than one, so that a slow
/// lookup does not hold up a `/whoami` write; few, so that a struggling
/// store is not flooded.
pub const MAX_IN_FLIGHT: usize = 4;

/// One store call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Lookups answered by one `get_many`.
    Get(Vec<(OpId, String)>),
    /// One write.
    Put {
        /// Echoed in the result.
        op: OpId,
        /// Encoded key.
        key: String,
        /// Encoded value.
        value: Bytes,
        /// Lifetime in seconds, 0 = forever.
        ttl: u32,
    },
}

/// Outcomes to feed back to the relay, one per operation of a job.
pub type Outcomes = Vec<(OpId, StoreOutcome)>;

/// Jobs waiting for a free slot, and how many slots are taken.
#[derive(Debug, Default)]
pub struct JobQueue {
    waiting: VecDeque<Job>,
    in_flight: usize,
    max_batch: usize,
}

impl JobQueue {
    /// An empty queue batching at most `max_batch` lookups per job.
    pub fn new(max_batch: usize) -> Self {
        JobQueue {
            waiting: VecDeque::new(),
            in_flight: 0,
            max_batch: max_batch.max(1),
        }
    }

    /// Queue a lookup; it joins the previous job if that is a lookup batch
    /// with room, so consecutive `Get`s share one round trip.
    pub fn get(&mut self, op: OpId, key: String) {
        if let Some(Job::Get(batch)) = self.waiting.back_mut() {
            if batch.len() < self.max_batch {
                batch.push((op, key));
                return;
            }
        }
        self.waiting.push_back(Job::Get(vec![(op, key)]));
    }

    /// Queue a write.
    pub fn put(&mut self, op: OpId, key: String, value: Bytes, ttl: u32) {
        self.waiting.push_back(Job::Put {
            op,
            key,
            value,
            ttl,
        });
    }

    /// The next job to start, if a slot is free; the caller must report its
    /// end with [`JobQueue::finished`].
    pub fn next_to_start(&mut self) -> Option<Job> {
        if self.in_flight >= MAX_IN_FLIGHT {
            return None;
        }
        let job = self.waiting.pop_front()?;
        self.in_flight += 1;
        Some(job)
    }

    /// A started job ended.
    pub fn finished(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Jobs started and not finished: while there are none, no result can
    /// arrive.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Jobs not started yet.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// Run `job` against `store`. Never panics: a panicking or inconsistent
/// store is a failed operation, not a dead relay.
pub fn perform(store: &dyn Store, job: Job) -> Outcomes {
    match job {
        Job::Get(batch) => {
            let keys: Vec<&str> = batch.iter().map(|(_, k)| k.as_str()).collect();
            let answer = panic::catch_unwind(AssertUnwindSafe(|| store.get_many(&keys)))
                .unwrap_or_else(|_| Err(panicked(store)));
            match answer {
                Ok(values) if values.len() == batch.len() => batch
                    .into_iter()
                    .zip(values)
                    .map(|((op, _), v)| (op, StoreOutcome::Found(v)))
                    .collect(),
                Ok(values) => {
                    let e = StoreError::Unavailable(format!(
                        "{} store answered {} values for {} keys",
                        store.kind(),
                        values.len(),
                        batch.len()
                    ));
                    fail_all(batch.into_iter().map(|(op, _)| op), e)
                }
                Err(e) => fail_all(batch.into_iter().map(|(op, _)| op), e),
            }
        }
        Job::Put {
            op,
            key,
            value,
            ttl,
        } => {
            let answer = panic::catch_unwind(AssertUnwindSafe(|| store.put(&key, &value, ttl)))
                .unwrap_or_else(|_| Err(panicked(store)));
            match answer {
                Ok(()) => vec![(op, StoreOutcome::Stored)],
                Err(e) => vec![(op, StoreOutcome::Failed(e))],
            }
        }
    }
}

/// Start [`MAX_IN_FLIGHT`] store threads that perform the jobs sent on the
/// returned sender and hand each job's outcomes to `deliver`. Dedicated
/// threads keep a store client's connections on a few long-lived threads.
/// A thread ends when the sender is dropped or `deliver` returns false (no
/// one is listening any more).
/// With `metrics`, each call's latency and results are recorded there.
pub fn spawn_workers<D>(
    store: Arc<dyn Store>,
    metrics: Option<Metrics>,
    deliver: D,
) -> mpsc::Sender<Job>
where
    D: Fn(Outcomes) -> bool + Clone + Send + 'static,
{
    let (work_tx, work_rx) = mpsc::channel::<Job>();
    let work_rx = Arc::new(Mutex::new(work_rx));
    for i in 0..MAX_IN_FLIGHT {
        let (store, work_rx, deliver) = (store.clone(), work_rx.clone(), deliver.clone());
        let metrics = metrics.clone();
        let spawned = thread::Builder::new()
            .name(format!("axrelay-store-{i}"))
            .spawn(move || loop {
                // The lock is held only while waiting for the next job.
                let job = match work_rx.lock() {
                    Ok(rx) => match rx.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    },
                    Err(_) => return,
                };
                let call = match job {
                    Job::Get(_) => StoreCall::Get,
                    Job::Put { .. } => StoreCall::Put,
                };
                let started = Instant::now();
                let outcomes = perform(&*store, job);
                if let Some(m) = &metrics {
                    m.store_call(call, started.elapsed(), &outcomes);
                }
                if !deliver(outcomes) {
                    return;
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start store worker: {e}");
        }
    }
    work_tx
}

fn panicked(store: &dyn Store) -> StoreError {
    StoreError::Unavailable(format!("{} store call panicked", store.kind()))
}

fn fail_all(ops: impl Iterator<Item = OpId>, e: StoreError) -> Outcomes {
    ops.map(|op| (op, StoreOutcome::Failed(e.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axrelay_proto::MemoryStore;

    struct Broken;
    impl Store for Broken {
        fn get_many(&self, _: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
            Ok(vec![])
        }
        fn put(&self, _: &str, _: &[u8], _: u32) -> Result<(), StoreError> {
            panic!("boom")
        }
        fn kind(&self) -> &'static str {
            "broken"
        }
    }

    #[test]
    fn batches_consecutive_gets_up_to_the_limit() {
        let mut q = JobQueue::new(2);
        q.get(OpId(1), "a".into());
        q.get(OpId(2), "b".into());
        q.get(OpId(3), "c".into());
        q.put(OpId(4), "d".into(), Bytes::from_static(b"v"), 0);
        q.get(OpId(5), "e".into());
        assert_eq!(q.waiting(), 4);
        let first = q.next_to_start();
        assert_eq!(
            first,
            Some(Job::Get(vec![(OpId(1), "a".into()), (OpId(2), "b".into())]))
        );
        for _ in 1..MAX_IN_FLIGHT {
            assert!(q.next_to_start().is_some());
        }
        assert_eq!(q.next_to_start(), None);
        q.finished();
        assert_eq!(q.next_to_start(), None, "queue is empty");
    }

    #[test]
    fn performs_and_survives_a_broken_store() {
        let mem = MemoryStore::default();
        let put = Job::Put {
            op: OpId(1),
            key: "k".into(),
            value: Bytes::from_static(b"v"),
            ttl: 0,
        };
        assert_eq!(
            perform(&mem, put.clone()),
            vec![(OpId(1), StoreOutcome::Stored)]
        );
        let get = Job::Get(vec![(OpId(2), "k".into()), (OpId(3), "x".into())]);
        assert_eq!(
            perform(&mem, get.clone()),
            vec![
                (OpId(2), StoreOutcome::Found(Some(b"v".to_vec()))),
                (OpId(3), StoreOutcome::Found(None))
            ]
        );
        assert!(matches!(
            perform(&Broken, put)[0].1,
            StoreOutcome::Failed(_)
        ));
        let failed = perform(&Broken, get);
        assert_eq!(failed.len(), 2);
        assert!(failed
            .iter()
            .all(|(_, o)| matches!(o, StoreOutcome::Failed(_))));
    }
}
