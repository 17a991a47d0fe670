//! Drives the axrelay core with std threads and blocking sockets.
//!
//! One loop thread owns the [`Session`] and the socket's write side; a
//! reader thread turns socket reads into events; the store threads of
//! `axrelay_host::store_jobs` perform lookups and writes. Everything reaches
//! the loop through one bounded [`Inbox`], which it waits on until the
//! session's next deadline, so the stanza loop never blocks on the store.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod inbox;
mod socket;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axrelay_host::connect::ConnectError;
use axrelay_host::store_jobs::spawn_workers;
use axrelay_host::{Exit, Options, Output, Session};
use axrelay_proto::{Relay, Store};

use crate::inbox::Event;
pub use crate::inbox::{stop_handle, Inbox};

/// Connect, relay and reconnect until stopped or refused.
///
/// Returns [`Exit::Stopped`] after a requested stop (through the
/// `StopHandle` paired with `inbox`), [`Exit::Refused`] when the server
/// refuses the configuration. Network failures are retried with backoff.
pub fn run(relay: Relay, opts: Options, store: Arc<dyn Store>, inbox: Inbox) -> Exit {
    let tx = inbox.tx.clone();
    let work = spawn_workers(store, opts.metrics.clone(), move |outcomes| {
        tx.send(Event::Store(outcomes)).is_ok()
    });
    let mut session = Session::new(relay, &opts, fastrand::u64(..), Instant::now());
    // The connection's number, and its write side once it is up.
    let mut conn = 0u64;
    let mut stream: Option<TcpStream> = None;
    loop {
        if inbox.stop.is_set() {
            session.handle_stop(Instant::now());
        }
        let wake = loop {
            match session.poll(Instant::now()) {
                Output::Connect => {
                    conn += 1;
                    let target = session.target().clone();
                    if let Err(e) = socket::connect(conn, target, inbox.tx.clone()) {
                        session.handle_connect_failed(&e, Instant::now());
                    }
                }
                Output::Transmit(bytes) => {
                    let written = stream.as_mut().map(|s| {
                        if session.is_stopping() {
                            // The socket's bound is the full write timeout.
                            let left = session.write_timeout(Instant::now());
                            s.set_write_timeout(Some(left))?;
                        }
                        s.write_all(&bytes)
                    });
                    if let Some(Err(e)) = written {
                        session.handle_write_error(&e, Instant::now());
                    }
                }
                Output::Store(job) => {
                    if work.send(job).is_err() {
                        session.handle_job_lost();
                    }
                }
                Output::Close => {
                    if let Some(s) = stream.take() {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
                Output::Exit(exit) => return exit,
                Output::Wait(until) => break until,
            }
        };
        // At least 1 ms: a zero timeout would spin.
        let timeout = wake
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let event = inbox.next(timeout);
        let now = Instant::now();
        match event {
            Some(Event::Connected(c, result)) if c == conn => {
                let started = result
                    .and_then(|s| socket::start(c, s, &inbox.tx).map_err(ConnectError::Socket));
                match started {
                    Ok(s) if session.handle_connected(now) => stream = Some(s),
                    // Not wanted any more: a stop came first.
                    Ok(s) => drop(s.shutdown(Shutdown::Both)),
                    Err(e) => session.handle_connect_failed(&e, now),
                }
            }
            Some(Event::Input(c, data)) if c == conn => session.handle_input(&data, now),
            Some(Event::Closed(c, err)) if c == conn => session.handle_closed(err.as_ref(), now),
            Some(Event::Store(outcomes)) => session.handle_store(outcomes, now),
            // Stop is read from the flag at the top; late socket events
            // belong to an earlier connection.
            Some(_) | None => {}
        }
    }
}
