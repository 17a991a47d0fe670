//! Hand the relay to the chosen runtime, with signals wired to its stop
//! handle.

use std::sync::Arc;

use axrelay::config::Runtime;
use axrelay::logging::ReopenFlag;
use axrelay_host::{Exit, Options};
use axrelay_proto::{Relay, Store};

use crate::signals;

/// Run until a signal stops the relay or the server refuses it. Fails only
/// when the signal handlers cannot be installed.
pub fn run(
    runtime: Runtime,
    relay: Relay,
    options: Options,
    store: Arc<dyn Store>,
    reopen: ReopenFlag,
) -> Result<Exit, String> {
    let install = |stop: Box<dyn Fn() + Send>| {
        signals::install(stop, reopen.clone())
            .map_err(|e| format!("cannot install signal handlers: {e}"))
    };
    match runtime {
        Runtime::Smol => {
            let (handle, stopper) = axrelay_runtime_smol::stop_handle();
            let _signals = install(Box::new(move || handle.stop()))?;
            Ok(axrelay_runtime_smol::run(relay, options, store, stopper))
        }
        Runtime::Blocking => {
            let (handle, stopper) = axrelay_runtime_blocking::stop_handle();
            let _signals = install(Box::new(move || handle.stop()))?;
            Ok(axrelay_runtime_blocking::run(
                relay, options, store, stopper,
            ))
        }
    }
}
