//! What the binary hands a runtime, and how a runtime's `run` ends.
//!
//! Both runtimes take the same [`Options`] and end with the same [`Exit`],
//! so the binary can pick one at run time.

use std::time::Duration;

use axrelay_proto::DisconnectReason;

use crate::metrics::Metrics;
use crate::socks5::Proxy;

/// A write that makes no progress this long means the connection is dead.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How much a runtime reads from the socket at once.
pub const READ_BUF: usize = 16 * 1024;

/// How a runtime reaches the server and paces its housekeeping.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server host name or address of the component port.
    pub server: String,
    /// Component port (Prosody's default is 5347).
    pub port: u16,
    /// Optional SOCKS5 proxy; the server name is passed to it unresolved.
    pub proxy: Option<Proxy>,
    /// Bound on TCP connect (and the proxy's CONNECT).
    pub connect_timeout: Duration,
    /// How often the counters are logged.
    pub stats_interval: Duration,
    /// Most store lookups sent to the store in one batch.
    pub max_store_batch: usize,
    /// How long written data may stay unacknowledged before the connection
    /// counts as dead (`TCP_USER_TIMEOUT`, on Linux); `None` leaves the
    /// system's default of many minutes. The binary sets twice the
    /// keepalive interval.
    pub dead_peer_timeout: Option<Duration>,
    /// systemd's notification socket (`NOTIFY_SOCKET`), to which the
    /// connection's state is reported; `None` outside systemd.
    pub notify_socket: Option<String>,
    /// Where the session publishes its figures and the store threads their
    /// latency; `None`: no metrics.
    pub metrics: Option<Metrics>,
    /// Reads the wall clock, at every connect: the core dates the ids it
    /// issues by it, and a clock set after the relay started (NTP at
    /// boot) is picked up at the next connection.
    pub wall_clock: fn() -> axrelay_proto::WallClock,
}

impl Options {
    /// Options for `server:port` with the defaults.
    pub fn new(server: &str, port: u16) -> Self {
        Options {
            server: server.to_owned(),
            port,
            proxy: None,
            connect_timeout: Duration::from_secs(10),
            stats_interval: Duration::from_secs(300),
            max_store_batch: 64,
            dead_peer_timeout: None,
            notify_socket: None,
            metrics: None,
            wall_clock,
        }
    }
}

/// How a runtime's `run` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// A requested stop completed: the stream was closed cleanly.
    Stopped,
    /// The server refused the configuration (wrong secret, unknown host):
    /// retrying cannot help.
    Refused(DisconnectReason),
}

/// The wall clock the core is handed (it reads none): the Unix time now,
/// paired with the instant it was read at.
pub fn wall_clock() -> axrelay_proto::WallClock {
    let unix_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    axrelay_proto::WallClock {
        at: std::time::Instant::now(),
        unix_secs,
    }
}
