//! What both axrelay runtimes share, between the sans-IO core
//! (`axrelay-proto`) and the runtimes that own sockets and threads.
//!
//! - [`Session`]: the loop around the core, without the IO. A runtime feeds
//!   it events and does what [`Session::poll`] says: connect, write, start a
//!   store job, close, exit, or wait until an instant.
//! - [`connect`] and [`socks5`]: opening the connection (blocking; run off
//!   the loop), directly or through a SOCKS5 proxy.
//! - [`store_jobs`]: the store calls on dedicated threads, batched.
//! - [`Options`] and [`Exit`]: what the binary hands a runtime, and how
//!   its `run` ends; [`StopHandle`]: a graceful stop from any thread.
//!
//! Reconnect pacing ([`backoff`], [`lifecycle`]), the counters line
//! ([`report`]) and publishing the [`metrics`] are parts of the session;
//! the metrics' HTTP endpoint is a thread of its own.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod connect;
pub mod lifecycle;
pub mod metrics;
pub mod notify;
mod options;
pub mod report;
mod session;
pub mod socks5;
mod stop;
pub mod store_jobs;

pub use options::{wall_clock, Exit, Options, READ_BUF, WRITE_TIMEOUT};
pub use session::{Output, Session};
pub use stop::{StopFlag, StopHandle};
