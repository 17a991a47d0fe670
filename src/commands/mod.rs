//! One module per sub-command, and what they share.

pub mod ban;
pub mod check;
pub mod hash;
mod operator;
pub mod run;
pub mod secret;
pub mod status;

use std::sync::Arc;

use axrelay::config::{Settings, StoreSettings};
use axrelay::logging;
use axrelay::store;
use axrelay_proto::Store;

use crate::cli::Common;

/// Exit statuses, as documented in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Clean stop, or success.
    Ok = 0,
    /// A runtime failure.
    Failure = 1,
    /// A configuration or usage error.
    Config = 2,
    /// The server refused the component.
    Refused = 3,
    /// `hash --lookup`: a pseudonym was not found.
    NotFound = 4,
}

/// Write the manual pages of `command` and its sub-commands into `dir`.
pub fn manpage(command: clap::Command, dir: &std::path::Path) -> Status {
    match clap_mangen::generate_to(command, dir) {
        Ok(()) => Status::Ok,
        Err(e) => {
            logging::fatal(format!(
                "{}: cannot write the manual pages: {e}",
                dir.display()
            ));
            Status::Failure
        }
    }
}

/// Start logging and load the configuration, warning about what it ignores.
fn start(common: &Common) -> Result<(Settings, logging::ReopenFlag), Status> {
    let reopen = logging::init(common.verbosity(), common.log_file.as_deref()).map_err(|e| {
        eprintln!("axrelay: {e}");
        Status::Failure
    })?;
    let settings = Settings::load(&common.config).map_err(|e| {
        logging::fatal(e);
        Status::Config
    })?;
    for warning in settings.warnings() {
        log::warn!("{warning}");
    }
    Ok((settings, reopen))
}

/// 32 bytes from the operating system's generator.
fn random_key() -> Result<[u8; 32], Status> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| {
        logging::fatal(format!("no randomness from the operating system: {e}"));
        Status::Failure
    })?;
    Ok(key)
}

/// A configuration value, or its error reported (status 2).
fn config<T>(r: Result<T, axrelay::config::ConfigError>) -> Result<T, Status> {
    r.map_err(|e| {
        logging::fatal(e);
        Status::Config
    })
}

/// The store, opened by a command rather than by `run`.
fn open_store(settings: &StoreSettings) -> Result<Arc<dyn Store>, Status> {
    if !settings.is_persistent() {
        log::warn!(
            "no [local_storage] path and no [memcache] configured: nothing is kept after this \
             command"
        );
    }
    store::open(settings).map_err(|e| {
        logging::fatal(format!("cannot open the mapping store: {e}"));
        Status::Failure
    })
}
