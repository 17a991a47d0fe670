//! The loop both runtimes run, without the IO: one connection after
//! another, what to write, which store job to start, when to wake.
//!
//! A runtime tells the [`Session`] what happened (`handle_*`), then calls
//! [`Session::poll`] until it answers [`Output::Wait`], doing what each
//! other [`Output`] says. It owns the socket, the clock, the store threads
//! and the wait; the session owns every decision around the core: when to
//! connect, when a connection is over and why, the stop's grace period,
//! backoff, the counters line, publishing the metrics.
//!
//! Socket events (`handle_input`, `handle_closed`, `handle_write_error`)
//! must be those of the connection the last [`Output::Connect`] opened: a
//! runtime whose reader can outlive its connection tells late events apart
//! itself (the blocking runtime numbers its connections).

use std::io;
use std::time::{Duration, Instant};

use axrelay_proto::{Action, DisconnectReason, Relay, WallClock};
use bytes::Bytes;

use crate::connect::{ConnectError, Target};
use crate::lifecycle::{Lifecycle, Next};
use crate::metrics::{ConnState, Publisher, Snapshot};
use crate::notify::Notifier;
use crate::options::{Exit, Options, WRITE_TIMEOUT};
use crate::report::StatsTicker;
use crate::store_jobs::{Job, JobQueue, Outcomes};

/// What the runtime does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a connection to [`Session::target`] off the loop, then report
    /// [`Session::handle_connected`] or [`Session::handle_connect_failed`].
    Connect,
    /// Write all of these bytes, in order; report a failure with
    /// [`Session::handle_write_error`].
    Transmit(Bytes),
    /// Start this store job; report its end with [`Session::handle_store`]
    /// (or [`Session::handle_job_lost`] if it cannot be started).
    Store(Job),
    /// The connection is over: close the socket.
    Close,
    /// `run` is over: return this.
    Exit(Exit),
    /// Nothing to do until this instant or the next event.
    Wait(Instant),
}

/// Where the connection stands.
#[derive(Debug)]
enum Conn {
    /// Connect at the next poll.
    Due,
    /// A connect is under way.
    Connecting,
    /// The socket is up and the relay is driven over it; see `Session::up`.
    Up,
    /// Between connections until `until`.
    Backoff { until: Instant },
    /// `run` is over.
    Done(Exit),
}

/// One connection's state beyond the core's; reset on every connect.
#[derive(Debug, Default)]
struct Up {
    /// The socket reached EOF or failed: nothing more is written to it.
    closed: bool,
    /// Why the connection ends, once that is decided.
    ending: Option<DisconnectReason>,
    /// A requested stop drops the connection at this instant if the
    /// stream has not closed by then.
    stop_deadline: Option<Instant>,
}

/// The relay and everything around it, across reconnects.
#[derive(Debug)]
pub struct Session {
    relay: Relay,
    life: Lifecycle,
    jobs: JobQueue,
    ticker: StatsTicker,
    metrics: Option<Publisher>,
    wall_clock: fn() -> WallClock,
    conn: Conn,
    up: Up,
    stopping: bool,
}

impl Session {
    /// A session about to make its first connection; `seed` makes the
    /// backoff's jitter.
    pub fn new(relay: Relay, opts: &Options, seed: u64, now: Instant) -> Self {
        Session {
            relay,
            life: Lifecycle::new(
                Target::new(opts),
                seed,
                opts.notify_socket
                    .as_deref()
                    .map_or_else(Notifier::default, Notifier::to),
            ),
            jobs: JobQueue::new(opts.max_store_batch),
            ticker: StatsTicker::new(opts.stats_interval, now),
            metrics: opts.metrics.clone().map(|m| Publisher::new(m, now)),
            wall_clock: opts.wall_clock,
            conn: Conn::Due,
            up: Up::default(),
            stopping: false,
        }
    }

    /// Where [`Output::Connect`] connects to.
    pub fn target(&self) -> &Target {
        self.life.target()
    }

    /// The core.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Whether a stop was requested (a runtime stops listening for more).
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// How long the next write may block before the connection counts as
    /// dead: [`WRITE_TIMEOUT`], or during a stop what is left of its grace,
    /// so that a server that stopped reading cannot hold the stop up.
    pub fn write_timeout(&self, now: Instant) -> Duration {
        let left = self
            .up
            .stop_deadline
            .filter(|_| matches!(self.conn, Conn::Up))
            .map(|d| {
                d.saturating_duration_since(now)
                    .max(Duration::from_millis(1))
            });
        left.map_or(WRITE_TIMEOUT, |l| l.min(WRITE_TIMEOUT))
    }

    /// Whether a store job is out: only then can a result arrive.
    pub fn store_busy(&self) -> bool {
        self.jobs.in_flight() > 0
    }

    /// The connect asked for by [`Output::Connect`] succeeded. Returns
    /// false if the connection is no longer wanted (a stop came first):
    /// the runtime then drops it.
    pub fn handle_connected(&mut self, now: Instant) -> bool {
        if !matches!(self.conn, Conn::Connecting) {
            return false;
        }
        self.life.connected(now);
        self.relay.set_wall_clock((self.wall_clock)());
        self.relay.handle_connected(now);
        self.conn = Conn::Up;
        self.up = Up::default();
        true
    }

    /// The connect failed: back off before the next attempt.
    pub fn handle_connect_failed(&mut self, err: &ConnectError, now: Instant) {
        if matches!(self.conn, Conn::Connecting) {
            let delay = self.life.connect_failed(err);
            self.conn = Conn::Backoff { until: now + delay };
        }
    }

    /// Bytes read from the socket.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        if matches!(self.conn, Conn::Up) {
            self.relay.handle_input(data, now);
        }
    }

    /// The socket reached EOF (`None`) or a read failed.
    pub fn handle_closed(&mut self, err: Option<&io::Error>, now: Instant) {
        if !matches!(self.conn, Conn::Up) || self.up.closed {
            return;
        }
        match err {
            Some(e) => log::debug!("read failed: {e}"),
            None => log::debug!("the server closed the connection"),
        }
        self.up.closed = true;
        self.relay.handle_closed(now);
    }

    /// Writing an [`Output::Transmit`] failed.
    pub fn handle_write_error(&mut self, err: &io::Error, now: Instant) {
        if matches!(self.conn, Conn::Up) {
            log::debug!("write failed: {err}");
            self.up.closed = true;
            self.relay.handle_closed(now);
        }
    }

    /// A store job ended with these outcomes; late ones (after a
    /// disconnect) are harmless.
    pub fn handle_store(&mut self, outcomes: Outcomes, now: Instant) {
        self.jobs.finished();
        for (op, outcome) in outcomes {
            self.relay.handle_store(op, outcome, now);
        }
    }

    /// A job from [`Output::Store`] could not be started (the store threads
    /// are gone); the core times its operations out.
    pub fn handle_job_lost(&mut self) {
        log::error!("store workers are gone");
        self.jobs.finished();
    }

    /// A graceful stop was requested: close the stream cleanly, then exit.
    /// Without a connection, exit at once.
    pub fn handle_stop(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.life.stopping();
        match self.conn {
            Conn::Up => {
                self.up.stop_deadline =
                    Some(now + Lifecycle::stop_grace(self.relay.config().close_timeout));
                self.relay.shutdown(now);
            }
            Conn::Done(_) => {}
            Conn::Due | Conn::Connecting | Conn::Backoff { .. } => {
                self.conn = Conn::Done(Exit::Stopped)
            }
        }
    }

    /// What to do next; call until it answers [`Output::Wait`].
    pub fn poll(&mut self, now: Instant) -> Output {
        match &self.conn {
            Conn::Done(exit) => Output::Exit(exit.clone()),
            Conn::Due => {
                self.life.attempt();
                self.conn = Conn::Connecting;
                Output::Connect
            }
            Conn::Backoff { until } if now >= *until => {
                self.conn = Conn::Due;
                self.poll(now)
            }
            Conn::Connecting | Conn::Backoff { .. } => self.poll_between(now),
            Conn::Up => self.poll_up(now),
        }
    }

    /// Without a connection: store results still come in and their
    /// follow-up work still goes out, but what the core would write is moot.
    fn poll_between(&mut self, now: Instant) -> Output {
        self.housekeeping(now);
        self.relay.poll_transmit();
        self.take_actions();
        if let Some(job) = self.jobs.next_to_start() {
            return Output::Store(job);
        }
        let wake = self.wake();
        Output::Wait(match self.conn {
            Conn::Backoff { until } => wake.min(until),
            _ => wake,
        })
    }

    fn poll_up(&mut self, now: Instant) -> Output {
        // Deadlines are honoured even when events never let a wait time out.
        if self.relay.poll_timeout().is_some_and(|t| t <= now) {
            self.relay.handle_timeout(now);
        }
        self.housekeeping(now);
        let transmit = self.relay.poll_transmit();
        self.take_actions();
        let up = &mut self.up;
        if let Some(bytes) = transmit.filter(|_| !up.closed) {
            return Output::Transmit(bytes);
        }
        if let Some(job) = self.jobs.next_to_start() {
            return Output::Store(job);
        }
        if up.ending.is_none() && up.closed {
            // The core answers a close with a disconnect; never spin on a
            // dead socket if it does not.
            up.ending = Some(DisconnectReason::Closed);
        }
        if up.ending.is_none() && up.stop_deadline.is_some_and(|d| now >= d) {
            log::warn!("the stream did not close in time; dropping the connection");
            up.ending = Some(DisconnectReason::Shutdown);
        }
        if let Some(reason) = up.ending.take() {
            self.conn = match self.life.ended(&reason, self.stopping, now) {
                Next::Exit(exit) => Conn::Done(exit),
                Next::Retry(delay) => Conn::Backoff { until: now + delay },
            };
            return Output::Close;
        }
        let mut wake = self.wake();
        let up = &self.up;
        if let Some(t) = self.relay.poll_timeout() {
            wake = wake.min(t);
        }
        if let Some(t) = up.stop_deadline {
            wake = wake.min(t);
        }
        Output::Wait(wake)
    }

    /// The session's own deadlines: the counters line and the metrics.
    fn wake(&self) -> Instant {
        let wake = self.ticker.deadline();
        match &self.metrics {
            Some(p) => wake.min(p.deadline()),
            None => wake,
        }
    }

    /// The counters line and the metrics, when due.
    fn housekeeping(&mut self, now: Instant) {
        self.ticker
            .tick(now, self.relay.stats(), self.life.reconnects());
        self.publish(now);
    }

    /// Publish the figures if they are due (once a second, never per
    /// message).
    fn publish(&mut self, now: Instant) {
        let Some(p) = self.metrics.as_mut() else {
            return;
        };
        let (relay, life) = (&self.relay, &self.life);
        let state = match self.conn {
            _ if self.stopping => ConnState::Stopping,
            Conn::Done(_) => ConnState::Stopping,
            Conn::Backoff { .. } => ConnState::Backoff,
            Conn::Up if relay.is_online() => ConnState::Online,
            Conn::Due | Conn::Connecting | Conn::Up => ConnState::Connecting,
        };
        p.tick(now, || Snapshot {
            stats: *relay.stats(),
            reconnects: life.reconnects(),
            pending: relay.pending_stanzas(),
            state,
        });
    }

    /// The core's actions: store work queued, the rest noted.
    fn take_actions(&mut self) {
        while let Some(action) = self.relay.poll_action() {
            match action {
                Action::Get { op, key } => self.jobs.get(op, key),
                Action::Put {
                    op,
                    key,
                    value,
                    ttl,
                } => self.jobs.put(op, key, value, ttl),
                Action::Online => self.life.online(&self.relay.config().domain),
                Action::Disconnect(reason) => {
                    if matches!(self.conn, Conn::Up) {
                        // The first reason is the one that counts.
                        self.up.ending.get_or_insert(reason);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
