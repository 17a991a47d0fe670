//! A graceful stop, seen from the loop: the flag, and a channel that wakes
//! the loop's wait.

use axrelay_host::{StopFlag, StopHandle};
use smol::channel::{self, Receiver};
use smol::future;

/// The loop's side of a [`StopHandle`]; moved into [`crate::run`].
#[derive(Debug)]
pub struct StopSignal {
    pub(crate) flag: StopFlag,
    wake: Receiver<()>,
}

impl StopSignal {
    /// Resolves once a stop is requested; never, if every handle is gone
    /// without asking.
    pub(crate) async fn requested(&self) {
        while !self.flag.is_set() {
            if self.wake.recv().await.is_err() && !self.flag.is_set() {
                future::pending::<()>().await;
            }
        }
    }
}

/// A linked stop handle and signal.
pub fn stop_handle() -> (StopHandle, StopSignal) {
    // One wake-up is enough: a second would say nothing new.
    let (tx, rx) = channel::bounded(1);
    let (handle, flag) = StopHandle::new(move || {
        let _ = tx.try_send(());
    });
    (handle, StopSignal { flag, wake: rx })
}
