//! Asking a running `run` to stop gracefully, from any thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;

use crate::driver::Event;

/// Room for events waiting on the loop; readers and store workers block
/// when it is full, which bounds memory under load.
const EVENT_QUEUE: usize = 256;

/// Requests a graceful stop; cheap to clone and usable from signal-handling
/// threads.
#[derive(Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    wake: SyncSender<Event>,
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopped", &self.flag.load(Ordering::Relaxed))
            .finish()
    }
}

impl StopHandle {
    /// Begin a graceful stop: close the stream cleanly, then `run` returns
    /// `Exit::Stopped`. Returns at once; calling it again does nothing more.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // A full queue wakes the loop anyway, and it checks the flag on
        // every wake-up, so a dropped wake-up is harmless.
        let _ = self.wake.try_send(Event::Stop);
    }
}

/// The receiving side of a [`StopHandle`], moved into `run`; it also carries
/// the loop's event queue.
#[derive(Debug)]
pub struct Stopper {
    pub(crate) flag: Arc<AtomicBool>,
    pub(crate) tx: SyncSender<Event>,
    pub(crate) rx: Receiver<Event>,
}

impl Stopper {
    pub(crate) fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// A linked stop handle and stopper.
pub fn stop_handle() -> (StopHandle, Stopper) {
    let flag = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel(EVENT_QUEUE);
    let handle = StopHandle {
        flag: flag.clone(),
        wake: tx.clone(),
    };
    (handle, Stopper { flag, tx, rx })
}
