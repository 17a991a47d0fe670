//! The loop thread: owns the relay, waits on one event channel, writes to
//! the socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use axrelay_proto::driver::{Exit, Options};
use axrelay_proto::{DisconnectReason, Relay, Store};

use crate::connect::{self, ConnectError, Target};
use crate::drain::drain;
use crate::lifecycle::{Lifecycle, Next};
use crate::report::StatsTicker;
use crate::stop::Stopper;
use crate::store_jobs::{spawn_workers, Job, JobQueue, Outcomes};

/// A write that makes no progress this long means the connection is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const READ_BUF: usize = 16 * 1024;

/// What wakes the loop. Socket events carry the connection number, so that
/// late ones from a previous connection are ignored.
#[derive(Debug)]
pub(crate) enum Event {
    Stop,
    Connected(u64, Result<TcpStream, ConnectError>),
    Input(u64, Vec<u8>),
    Closed(u64, Option<io::Error>),
    Store(Outcomes),
}

/// How a wait between connections ended.
enum Idle {
    Stopped,
    Elapsed,
    Connected(Result<TcpStream, ConnectError>),
}

pub(crate) struct Driver {
    relay: Relay,
    life: Lifecycle,
    jobs: JobQueue,
    work: mpsc::Sender<Job>,
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
        let tx = stopper.tx.clone();
        let work = spawn_workers(store, move |outcomes| {
            tx.send(Event::Store(outcomes)).is_ok()
        });
        Driver {
            relay,
            life: Lifecycle::new(Target::new(opts)),
            jobs: JobQueue::new(opts.max_store_batch),
            work,
            stats: StatsTicker::new(opts.stats_interval, Instant::now()),
            stopper,
            stopping: false,
        }
    }

    pub(crate) fn run(mut self) -> Exit {
        let mut conn = 0u64;
        loop {
            if self.stopper.requested() {
                return Exit::Stopped;
            }
            conn += 1;
            self.life.attempt();
            let target = self.life.target().clone();
            let tx = self.stopper.tx.clone();
            let spawned = thread::Builder::new()
                .name("axrelay-connect".into())
                .spawn(move || {
                    let _ = tx.send(Event::Connected(conn, connect::open(&target)));
                });
            let result = match spawned {
                Err(e) => Err(ConnectError::Socket(e)),
                Ok(_) => match self.idle(None, Some(conn)) {
                    Idle::Connected(r) => r,
                    Idle::Stopped | Idle::Elapsed => return Exit::Stopped,
                },
            };
            let next = match result {
                Ok(stream) => self.session(conn, stream),
                Err(e) => Next::Retry(self.life.connect_failed(&e)),
            };
            match next {
                Next::Exit(exit) => return exit,
                Next::Retry(delay) => {
                    if let Idle::Stopped = self.idle(Some(Instant::now() + delay), None) {
                        return Exit::Stopped;
                    }
                }
            }
        }
    }

    /// Wait without a connection until `until`, or until connection attempt
    /// `want` reports; store results are still fed to the relay.
    fn idle(&mut self, until: Option<Instant>, want: Option<u64>) -> Idle {
        loop {
            if self.stopper.requested() {
                return Idle::Stopped;
            }
            let now = Instant::now();
            if until.is_some_and(|u| now >= u) {
                return Idle::Elapsed;
            }
            self.stats
                .tick(now, self.relay.stats(), self.life.reconnects());
            let wake = until.map_or(self.stats.deadline(), |u| u.min(self.stats.deadline()));
            match self.stopper.rx.recv_timeout(wait_for(wake, now)) {
                Ok(Event::Connected(c, r)) if Some(c) == want => return Idle::Connected(r),
                Ok(Event::Store(outcomes)) => {
                    self.store_done(outcomes);
                    // No connection to send on: what the relay owes now is moot.
                    drain(&mut self.relay, &mut self.jobs);
                    self.dispatch();
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Idle::Stopped,
            }
        }
    }

    /// Drive one connection until it ends.
    fn session(&mut self, conn: u64, stream: TcpStream) -> Next {
        if let Err(e) = start_reader(conn, &stream, &self.stopper.tx) {
            return Next::Retry(self.life.connect_failed(&ConnectError::Socket(e)));
        }
        let mut writer = stream;
        let now = Instant::now();
        self.life.connected(now);
        self.relay.handle_connected(now);
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
            // Deadlines are honoured even when events never let the wait
            // time out.
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
                if let Err(e) = writer.write_all(&out.bytes) {
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
                let _ = writer.shutdown(Shutdown::Both);
                return self.life.ended(&reason, self.stopping, now);
            }

            let mut wake = self.stats.deadline();
            if let Some(t) = self.relay.poll_timeout() {
                wake = wake.min(t);
            }
            if let Some(t) = stop_deadline {
                wake = wake.min(t);
            }
            let event = self.stopper.rx.recv_timeout(wait_for(wake, now));
            let now = Instant::now();
            match event {
                Ok(Event::Input(c, data)) if c == conn => self.relay.handle_input(&data, now),
                Ok(Event::Closed(c, err)) if c == conn && !closed => {
                    match err {
                        Some(e) => log::debug!("read failed: {e}"),
                        None => log::debug!("the server closed the connection"),
                    }
                    closed = true;
                    self.relay.handle_closed(now);
                }
                Ok(Event::Store(outcomes)) => self.store_done(outcomes),
                // Stop is checked at the top; the stopper keeps a sender, so
                // the channel never disconnects.
                Ok(_) | Err(_) => {}
            }
        }
    }

    fn store_done(&mut self, outcomes: Outcomes) {
        self.jobs.finished();
        let now = Instant::now();
        for (op, outcome) in outcomes {
            self.relay.handle_store(op, outcome, now);
        }
    }

    fn dispatch(&mut self) {
        while let Some(job) = self.jobs.next_to_start() {
            if self.work.send(job).is_err() {
                // Workers only end with the driver; the core times the
                // operation out if this ever happens.
                log::error!("store workers are gone");
                self.jobs.finished();
            }
        }
    }
}

/// How long to wait until `wake`: at least 1 ms (a zero timeout would spin).
fn wait_for(wake: Instant, now: Instant) -> Duration {
    wake.saturating_duration_since(now)
        .max(Duration::from_millis(1))
}

/// The reader thread: socket reads become events until EOF or an error.
fn start_reader(conn: u64, stream: &TcpStream, tx: &SyncSender<Event>) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut reader = stream.try_clone()?;
    let tx = tx.clone();
    thread::Builder::new()
        .name("axrelay-reader".into())
        .spawn(move || {
            let mut buf = vec![0u8; READ_BUF];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.send(Event::Closed(conn, None));
                        return;
                    }
                    Ok(n) => {
                        if tx.send(Event::Input(conn, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Event::Closed(conn, Some(e)));
                        return;
                    }
                }
            }
        })?;
    Ok(())
}
