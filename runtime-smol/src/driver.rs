//! The connection task: one select over stop, store results, timer and
//! socket reads.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use axrelay_proto::driver::{Exit, Options};
use axrelay_proto::{DisconnectReason, Relay, Store};
use axrelay_runtime_blocking::connect::{self, ConnectError, Target};
use axrelay_runtime_blocking::drain::drain;
use axrelay_runtime_blocking::lifecycle::{Lifecycle, Next};
use axrelay_runtime_blocking::report::StatsTicker;
use axrelay_runtime_blocking::store_jobs::{spawn_workers, Job, JobQueue, Outcomes};
use smol::channel::{self, Receiver};
use smol::future::{self, FutureExt};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, Task, Timer};

use crate::stop::Stopper;

/// A write that makes no progress this long means the connection is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const READ_BUF: usize = 16 * 1024;

/// What ended a wait.
enum Wake {
    Stop,
    Results(Outcomes),
    Timer,
    Read(io::Result<usize>),
    Connected(Result<TcpStream, ConnectError>),
}

pub(crate) struct Driver {
    relay: Relay,
    life: Lifecycle,
    jobs: JobQueue,
    work: mpsc::Sender<Job>,
    results_rx: Receiver<Outcomes>,
    stats: StatsTicker,
    stopper: Stopper,
    stopping: bool,
}

impl Driver {
    pub(crate) fn new(
        relay: Relay,
        opts: &Options,
        store: Arc<dyn Store>,
        stopper: Stopper,
    ) -> Self {
        // Bounded by the number of store calls in flight.
        let (results_tx, results_rx) = channel::unbounded::<Outcomes>();
        let work = spawn_workers(store, move |outcomes| {
            results_tx.send_blocking(outcomes).is_ok()
        });
        Driver {
            relay,
            life: Lifecycle::new(Target::new(opts)),
            jobs: JobQueue::new(opts.max_store_batch),
            work,
            results_rx,
            stats: StatsTicker::new(opts.stats_interval, Instant::now()),
            stopper,
            stopping: false,
        }
    }

    pub(crate) async fn run(mut self) -> Exit {
        loop {
            if self.stopper.requested() {
                return Exit::Stopped;
            }
            self.life.attempt();
            let target = self.life.target().clone();
            // Connects are rare and bounded by the connect timeout; the
            // blocking implementation (with SOCKS5) is shared with the
            // blocking runtime.
            let mut connecting: Task<_> = smol::unblock(move || connect::open(&target));
            let result = match self.idle(None, Some(&mut connecting)).await {
                Some(Wake::Connected(r)) => r,
                _ => return Exit::Stopped,
            };
            let next = match result {
                Ok(stream) => self.session(stream).await,
                Err(e) => Next::Retry(self.life.connect_failed(&e)),
            };
            match next {
                Next::Exit(exit) => return exit,
                Next::Retry(delay) => {
                    if let Some(Wake::Stop) = self.idle(Some(Instant::now() + delay), None).await {
                        return Exit::Stopped;
                    }
                }
            }
        }
    }

    /// Wait without a connection until `until` or until `connecting` ends;
    /// store results are still fed to the relay. Returns `Stop`,
    /// `Connected`, or `None` when `until` passed.
    async fn idle(
        &mut self,
        until: Option<Instant>,
        mut connecting: Option<&mut Task<Result<TcpStream, ConnectError>>>,
    ) -> Option<Wake> {
        let mut timer = Timer::never();
        loop {
            if self.stopper.requested() {
                return Some(Wake::Stop);
            }
            let now = Instant::now();
            if until.is_some_and(|u| now >= u) {
                return None;
            }
            self.stats
                .tick(now, self.relay.stats(), self.life.reconnects());
            timer.set_at(until.map_or(self.stats.deadline(), |u| u.min(self.stats.deadline())));
            let stop = async {
                self.stopper.requested_later().await;
                Wake::Stop
            };
            let results = self.results();
            let tick = async {
                (&mut timer).await;
                Wake::Timer
            };
            let connected = async {
                match connecting.as_mut() {
                    Some(task) => Wake::Connected(task.await),
                    None => future::pending().await,
                }
            };
            match stop.or(results).or(connected).or(tick).await {
                Wake::Stop => return Some(Wake::Stop),
                Wake::Connected(r) => return Some(Wake::Connected(r)),
                Wake::Results(outcomes) => {
                    self.store_done(outcomes);
                    // No connection to send on: what the relay owes now is moot.
                    drain(&mut self.relay, &mut self.jobs);
                    self.dispatch();
                }
                Wake::Timer | Wake::Read(_) => {}
            }
        }
    }

    /// Drive one connection until it ends.
    async fn session(&mut self, stream: TcpStream) -> Next {
        let stream = match Async::new(stream) {
            Ok(s) => s,
            Err(e) => return Next::Retry(self.life.connect_failed(&ConnectError::Socket(e))),
        };
        let now = Instant::now();
        self.life.connected(now);
        self.relay.handle_connected(now);
        let mut buf = vec![0u8; READ_BUF];
        let mut timer = Timer::never();
        // What `timer` is set to. Re-arming costs a trip through the
        // reactor, and the keepalive deadline moves later with every read:
        // the timer is moved only to an earlier instant (or after it
        // fired). Armed too early, it wakes the loop once for nothing and
        // is set again.
        let mut armed: Option<Instant> = None;
        let mut closed = false;
        let mut stop_deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if self.stopper.requested() && !self.stopping {
                self.stopping = true;
                stop_deadline =
                    Some(now + Lifecycle::stop_grace(self.relay.config().close_timeout));
                self.relay.shutdown(now);
            }
            // Deadlines are honoured even when other wake-ups keep coming.
            if self.relay.poll_timeout().is_some_and(|t| t <= now) {
                self.relay.handle_timeout(now);
            }
            self.stats
                .tick(now, self.relay.stats(), self.life.reconnects());

            let mut out = drain(&mut self.relay, &mut self.jobs);
            if out.online {
                self.life.online();
            }
            if !out.bytes.is_empty() && !closed {
                if let Err(e) = write_all(&stream, &out.bytes).await {
                    log::debug!("write failed: {e}");
                    self.relay.handle_closed(Instant::now());
                    closed = true;
                    let after = drain(&mut self.relay, &mut self.jobs);
                    out.disconnect = out.disconnect.or(after.disconnect);
                }
            }
            self.dispatch();
            let now = Instant::now();
            if out.disconnect.is_none() && closed {
                // The core must answer a close with a disconnect; never spin
                // on a dead socket if it does not.
                out.disconnect = Some(DisconnectReason::Closed);
            }
            if out.disconnect.is_none() && stop_deadline.is_some_and(|d| now >= d) {
                log::warn!("the stream did not close in time; dropping the connection");
                out.disconnect = Some(DisconnectReason::Shutdown);
            }
            if let Some(reason) = out.disconnect {
                let _ = stream.get_ref().shutdown(Shutdown::Both);
                return self.life.ended(&reason, self.stopping, now);
            }

            let mut wake = self.stats.deadline();
            if let Some(t) = self.relay.poll_timeout() {
                wake = wake.min(t);
            }
            if let Some(t) = stop_deadline {
                wake = wake.min(t);
            }
            if armed.is_none_or(|a| wake < a) {
                timer.set_at(wake);
                armed = Some(wake);
            }
            let stopping = self.stopping;
            let stop = async {
                if stopping {
                    future::pending().await
                } else {
                    self.stopper.requested_later().await;
                    Wake::Stop
                }
            };
            let results = self.results();
            let tick = async {
                (&mut timer).await;
                Wake::Timer
            };
            let read = async { Wake::Read((&stream).read(&mut buf).await) };
            // Biased in this order; reads come last so a busy stream cannot
            // starve the rest.
            let woke = stop.or(results).or(tick).or(read).await;
            let now = Instant::now();
            match woke {
                Wake::Read(Ok(0)) => {
                    log::debug!("the server closed the connection");
                    closed = true;
                    self.relay.handle_closed(now);
                }
                Wake::Read(Ok(n)) => self.relay.handle_input(&buf[..n], now),
                Wake::Read(Err(e)) => {
                    log::debug!("read failed: {e}");
                    closed = true;
                    self.relay.handle_closed(now);
                }
                Wake::Results(outcomes) => {
                    self.store_done(outcomes);
                    while let Ok(more) = self.results_rx.try_recv() {
                        self.store_done(more);
                    }
                }
                // A timer that fired does not fire again until it is set.
                Wake::Timer => armed = None,
                Wake::Stop | Wake::Connected(_) => {}
            }
        }
    }

    /// The next store results. Pending while no job is out: nothing can
    /// come then (a warm cache), and listening on the channel costs a
    /// registration per pass.
    async fn results(&self) -> Wake {
        if self.jobs.in_flight() == 0 {
            future::pending().await
        } else {
            recv(&self.results_rx).await
        }
    }

    fn store_done(&mut self, outcomes: Outcomes) {
        self.jobs.finished();
        let now = Instant::now();
        for (op, outcome) in outcomes {
            self.relay.handle_store(op, outcome, now);
        }
    }

    /// Hand queued store jobs to the store threads, up to the in-flight cap.
    fn dispatch(&mut self) {
        while let Some(job) = self.jobs.next_to_start() {
            if self.work.send(job).is_err() {
                // The threads only end with the driver; the core times the
                // operation out if this ever happens.
                log::error!("store workers are gone");
                self.jobs.finished();
            }
        }
    }
}

/// Wait for the next store result; the store threads keep senders while
/// the driver lives, so the channel does not close while it waits.
async fn recv(rx: &Receiver<Outcomes>) -> Wake {
    match rx.recv().await {
        Ok(outcomes) => Wake::Results(outcomes),
        Err(_) => future::pending().await,
    }
}

/// Write everything, or fail if the server stops taking bytes.
async fn write_all(stream: &Async<TcpStream>, bytes: &[u8]) -> io::Result<()> {
    let mut w = stream;
    w.write_all(bytes)
        .or(async {
            Timer::after(WRITE_TIMEOUT).await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the server stopped reading",
            ))
        })
        .await
}
