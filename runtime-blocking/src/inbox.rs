//! The loop's one bounded channel: socket reads, connect results, store
//! results and stop requests all arrive here.

use std::io;
use std::net::TcpStream;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use axrelay_host::connect::ConnectError;
use axrelay_host::store_jobs::Outcomes;
use axrelay_host::{StopFlag, StopHandle};

/// Room for events waiting on the loop; readers and store threads block
/// when it is full, which bounds memory under load.
const EVENT_QUEUE: usize = 256;

/// What wakes the loop. Socket events carry the connection's number, so
/// that late ones from an earlier connection are told apart.
#[derive(Debug)]
pub(crate) enum Event {
    Stop,
    Connected(u64, Result<TcpStream, ConnectError>),
    Input(u64, Vec<u8>),
    Closed(u64, Option<io::Error>),
    Store(Outcomes),
}

/// The loop's side of the channel, and the stop flag; moved into
/// [`crate::run`].
#[derive(Debug)]
pub struct Inbox {
    pub(crate) stop: StopFlag,
    pub(crate) tx: SyncSender<Event>,
    rx: Receiver<Event>,
}

impl Inbox {
    /// The next event, or `None` once `timeout` has passed.
    pub(crate) fn next(&self, timeout: Duration) -> Option<Event> {
        // The inbox keeps a sender, so the channel never disconnects.
        self.rx.recv_timeout(timeout).ok()
    }
}

/// A stop handle and the inbox it wakes.
pub fn stop_handle() -> (StopHandle, Inbox) {
    let (tx, rx) = mpsc::sync_channel(EVENT_QUEUE);
    let wake = tx.clone();
    // A full queue wakes the loop anyway, and it reads the flag on every
    // wake-up, so a dropped wake-up is harmless.
    let (handle, stop) = StopHandle::new(move || {
        let _ = wake.try_send(Event::Stop);
    });
    (handle, Inbox { stop, tx, rx })
}
