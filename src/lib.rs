//! The `axrelay` binary's building blocks: the configuration file, the
//! mapping stores and logging. The relay itself lives in `axrelay-proto`
//! and the runtimes.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod control;
pub mod logging;
pub mod store;
