//! Asking a running relay to stop gracefully, from any thread (a signal
//! handler's among them).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Requests a graceful stop; cheap to clone.
#[derive(Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    /// Wakes the runtime's loop, which then reads the flag.
    wake: Arc<dyn Fn() + Send + Sync>,
}

/// The loop's side of a [`StopHandle`]: read on every wake-up.
#[derive(Debug, Clone)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopHandle {
    /// A handle whose [`StopHandle::stop`] sets the returned flag and calls
    /// `wake`. `wake` must not block; a lost wake-up is harmless as long as
    /// the loop wakes for some other reason before long.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> (StopHandle, StopFlag) {
        let flag = Arc::new(AtomicBool::new(false));
        let handle = StopHandle {
            flag: flag.clone(),
            wake: Arc::new(wake),
        };
        (handle, StopFlag(flag))
    }

    /// Begin a graceful stop: the stream is closed cleanly, then `run`
    /// returns `Exit::Stopped`. Returns at once; calling it again does
    /// nothing more.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        (self.wake)();
    }
}

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopped", &self.flag.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl StopFlag {
    /// Whether a stop was requested.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn stop_sets_the_flag_and_wakes_each_time() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let counted = wakes.clone();
        let (handle, flag) = StopHandle::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        assert!(!flag.is_set());
        handle.clone().stop();
        handle.stop();
        assert!(flag.is_set());
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
    }
}
