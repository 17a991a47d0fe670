//! Drives the axrelay core on smol and async-io (the production runtime).
//!
//! One task owns the [`Session`] and the server stream and waits on
//! whichever comes first: a stop request, finished store work, the connect,
//! the session's deadline, or bytes from the server. Connects and store
//! calls run on threads, so neither stalls the stanza loop.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod stop;

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use axrelay_host::connect::{self, ConnectError};
use axrelay_host::store_jobs::{spawn_workers, Job, Outcomes};
use axrelay_host::{Exit, Options, Output, Session, READ_BUF};
use axrelay_proto::{Relay, Store};
use smol::channel::{self, Receiver};
use smol::future::{self, FutureExt};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, Task, Timer};

pub use crate::stop::{stop_handle, StopSignal};

/// Connect, relay and reconnect until stopped or refused.
///
/// Returns [`Exit::Stopped`] after a requested stop (through the
/// `StopHandle` paired with `stop`), [`Exit::Refused`] when the server
/// refuses the configuration. Network failures are retried with backoff.
/// Blocks the calling thread.
pub fn run(relay: Relay, opts: Options, store: Arc<dyn Store>, stop: StopSignal) -> Exit {
    // Bounded by the number of store calls in flight.
    let (results_tx, results) = channel::unbounded::<Outcomes>();
    let work = spawn_workers(store, opts.metrics.clone(), move |outcomes| {
        results_tx.send_blocking(outcomes).is_ok()
    });
    let session = Session::new(relay, &opts, fastrand::u64(..), Instant::now());
    smol::block_on(
        Loop {
            session,
            work,
            results,
            stop,
            stream: None,
            connecting: None,
            timer: Timer::never(),
            armed: None,
        }
        .run(),
    )
}

/// What ended a wait.
enum Wake {
    Stop,
    Results(Outcomes),
    Timer,
    Connected(Result<TcpStream, ConnectError>),
    Read(io::Result<usize>),
}

struct Loop {
    session: Session,
    work: mpsc::Sender<Job>,
    results: Receiver<Outcomes>,
    stop: StopSignal,
    stream: Option<Async<TcpStream>>,
    connecting: Option<Task<Result<TcpStream, ConnectError>>>,
    timer: Timer,
    /// What `timer` is set to. Re-arming costs a trip through the reactor,
    /// and the keepalive deadline moves later with every read: the timer is
    /// moved only to an earlier instant (or after it fired). Armed too
    /// early, it wakes the loop once for nothing and is set again.
    armed: Option<Instant>,
}

impl Loop {
    async fn run(mut self) -> Exit {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            if self.stop.flag.is_set() {
                self.session.handle_stop(Instant::now());
            }
            let wake = loop {
                match self.session.poll(Instant::now()) {
                    Output::Connect => {
                        let target = self.session.target().clone();
                        self.connecting = Some(smol::unblock(move || connect::open(&target)));
                    }
                    Output::Transmit(bytes) => self.write(&bytes).await,
                    Output::Store(job) => {
                        if self.work.send(job).is_err() {
                            self.session.handle_job_lost();
                        }
                    }
                    Output::Close => {
                        if let Some(s) = self.stream.take() {
                            let _ = s.get_ref().shutdown(Shutdown::Both);
                        }
                    }
                    Output::Exit(exit) => return exit,
                    Output::Wait(until) => break until,
                }
            };
            if self.armed.is_none_or(|a| wake < a) {
                self.timer.set_at(wake);
                self.armed = Some(wake);
            }
            let woke = self.wait(&mut buf).await;
            self.take(woke, &buf);
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        let Some(stream) = &self.stream else { return };
        let mut w = stream;
        let timeout = self.session.write_timeout(Instant::now());
        let written = w
            .write_all(bytes)
            .or(async {
                Timer::after(timeout).await;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the server stopped reading",
                ))
            })
            .await;
        if let Err(e) = written {
            self.session.handle_write_error(&e, Instant::now());
        }
    }

    /// The first of: a stop request, store results, the connect, the
    /// timer, a read. Biased in that order; reads come last so a busy
    /// stream cannot starve the rest.
    async fn wait(&mut self, buf: &mut [u8]) -> Wake {
        let Loop {
            session,
            results,
            stop,
            stream,
            connecting,
            timer,
            ..
        } = self;
        let stop = async {
            if session.is_stopping() {
                future::pending().await
            } else {
                stop.requested().await;
                Wake::Stop
            }
        };
        // Nothing can come while no job is out (a warm cache), and
        // listening on the channel costs a registration per pass.
        let store_busy = session.store_busy();
        let results = async {
            if !store_busy {
                return future::pending().await;
            }
            match results.recv().await {
                Ok(outcomes) => Wake::Results(outcomes),
                // The store threads keep senders while the loop lives.
                Err(_) => future::pending().await,
            }
        };
        let connected = async {
            match connecting.as_mut() {
                Some(task) => Wake::Connected(task.await),
                None => future::pending().await,
            }
        };
        let tick = async {
            timer.await;
            Wake::Timer
        };
        let read = async {
            match stream.as_ref() {
                Some(mut s) => Wake::Read(s.read(buf).await),
                None => future::pending().await,
            }
        };
        stop.or(results).or(connected).or(tick).or(read).await
    }

    fn take(&mut self, woke: Wake, buf: &[u8]) {
        let now = Instant::now();
        match woke {
            Wake::Read(Ok(0)) => self.session.handle_closed(None, now),
            Wake::Read(Ok(n)) => self.session.handle_input(&buf[..n], now),
            Wake::Read(Err(e)) => self.session.handle_closed(Some(&e), now),
            Wake::Results(outcomes) => {
                self.session.handle_store(outcomes, now);
                while let Ok(more) = self.results.try_recv() {
                    self.session.handle_store(more, now);
                }
            }
            Wake::Connected(result) => {
                self.connecting = None;
                let stream = result.and_then(|s| Async::new(s).map_err(ConnectError::Socket));
                match stream {
                    Ok(s) if self.session.handle_connected(now) => self.stream = Some(s),
                    // Not wanted any more: a stop came first.
                    Ok(s) => drop(s.get_ref().shutdown(Shutdown::Both)),
                    Err(e) => self.session.handle_connect_failed(&e, now),
                }
            }
            // A timer that fired does not fire again until it is set.
            Wake::Timer => self.armed = None,
            Wake::Stop => {}
        }
    }
}
