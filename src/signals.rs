//! SIGINT and SIGTERM begin a graceful stop; a second one ends the process
//! at once. SIGHUP reopens the log file.

use std::io;
use std::thread::JoinHandle;

use axrelay::logging::ReopenFlag;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// Exit status when a second signal cuts a graceful stop short.
const FORCED_EXIT: i32 = 1;

/// Keeps the signal thread alive; dropping it restores nothing but stops
/// the thread.
pub struct Installed {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Route signals: `stop` on the first SIGINT/SIGTERM, exit on the second.
pub fn install(stop: Box<dyn Fn() + Send>, reopen: ReopenFlag) -> io::Result<Installed> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let handle = signals.handle();
    let thread = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                match signal {
                    SIGHUP => reopen.request(),
                    _ if stopping => {
                        log::warn!("second stop signal: exiting without a clean close");
                        std::process::exit(FORCED_EXIT);
                    }
                    _ => {
                        stopping = true;
                        log::info!(
                            "stop signal: closing the stream (send it again to exit at once)"
                        );
                        stop();
                    }
                }
            }
        })?;
    Ok(Installed {
        handle,
        thread: Some(thread),
    })
}
