//! Asking a running `run` to stop gracefully, from any thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use smol::channel::{self, Receiver, Sender};
use smol::future;

/// Requests a graceful stop; cheap to clone and usable from signal-handling
/// threads.
#[derive(Debug, Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    wake: Sender<()>,
}

impl StopHandle {
    /// Begin a graceful stop: close the stream cleanly, then `run` returns
    /// `Exit::Stopped`. Returns at once; calling it again does nothing more.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // The channel holds one wake-up; a second one would say nothing new.
        let _ = self.wake.try_send(());
    }
}

/// The receiving side of a [`StopHandle`], moved into `run`.
#[derive(Debug)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    wake: Receiver<()>,
}

impl Stopper {
    pub(crate) fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves once a stop is requested; never, if every handle is gone
    /// without asking.
    pub(crate) async fn requested_later(&self) {
        while !self.requested() {
            if self.wake.recv().await.is_err() && !self.requested() {
                future::pending::<()>().await;
            }
        }
    }
}

/// A linked stop handle and stopper.
pub fn stop_handle() -> (StopHandle, Stopper) {
    let flag = Arc::new(AtomicBool::new(false));
    let (tx, rx) = channel::bounded(1);
    (
        StopHandle {
            flag: flag.clone(),
            wake: tx,
        },
        Stopper { flag, wake: rx },
    )
}
