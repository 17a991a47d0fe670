//! Running a runtime on its own thread with a test configuration.

use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Once};
use std::thread;
use std::time::Duration;

use axrelay_host::{Exit, Options};
use axrelay_proto::{Config, MemoryStore, Pseudonymizer, Relay, Store, StoreError};

pub const DOMAIN: &str = "relay.example.org";
pub const PASSWORD: &str = "component-password";
pub const SECRET: &[u8] = b"conformance-suite-pseudonym-secret";

/// Starts `run` of one runtime on a thread.
pub type Start = fn(Relay, Options, Arc<dyn Store>) -> Running;

/// A runtime running on its own thread.
pub struct Running {
    stop: Box<dyn Fn() + Send>,
    exit: Receiver<Exit>,
}

impl Running {
    /// Spawn `run` with a stop function from the same runtime crate.
    pub fn spawn(
        stop: Box<dyn Fn() + Send>,
        run: impl FnOnce() -> Exit + Send + 'static,
    ) -> Running {
        let (tx, exit) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(run());
        });
        Running { stop, exit }
    }

    pub fn stop(&self) {
        (self.stop)();
    }

    /// How `run` ended; panics if it does not end within `within`.
    pub fn wait(&self, within: Duration) -> Exit {
        self.exit
            .recv_timeout(within)
            .unwrap_or_else(|_| panic!("run did not return within {within:?}"))
    }

    /// Whether `run` is still going after `within`.
    pub fn still_running(&self, within: Duration) -> bool {
        self.exit.recv_timeout(within).is_err()
    }
}

impl Drop for Running {
    /// A failed test must not leave a relay reconnecting in the background.
    fn drop(&mut self) {
        (self.stop)();
    }
}

/// A configuration with short timers, so the suite stays fast.
pub fn config() -> Config {
    let mut c = Config::new(DOMAIN, PASSWORD, SECRET);
    c.keepalive = Duration::from_secs(5);
    c.handshake_timeout = Duration::from_secs(5);
    c.store_timeout = Duration::from_secs(5);
    c.close_timeout = Duration::from_secs(1);
    c.id_key = [7; 32];
    c.wall_clock = Some(axrelay_host::wall_clock());
    c
}

pub fn options(port: u16) -> Options {
    let mut o = Options::new("127.0.0.1", port);
    o.connect_timeout = Duration::from_secs(2);
    o.stats_interval = Duration::from_secs(1);
    o.max_store_batch = 16;
    o
}

pub fn relay() -> Relay {
    relay_with(config())
}

pub fn relay_with(config: Config) -> Relay {
    Relay::new(config).expect("test config is valid")
}

/// `identity`'s pseudonym (bare JID) at the test domain.
pub fn pseudonym(identity: &str) -> String {
    format!(
        "{}@{DOMAIN}",
        Pseudonymizer::new(SECRET).localpart(identity)
    )
}

/// A store whose lookups take `delay` (a slow or remote backend).
pub struct SlowStore {
    pub inner: MemoryStore,
    pub delay: Duration,
}

impl Store for SlowStore {
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        thread::sleep(self.delay);
        self.inner.get_many(keys)
    }

    fn put(&self, key: &str, value: &[u8], ttl: u32) -> Result<(), StoreError> {
        self.inner.put(key, value, ttl)
    }

    fn kind(&self) -> &'static str {
        "slow"
    }
}

/// Log to stderr (captured per test, shown on failure).
pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = log::set_logger(&StderrLog);
        log::set_max_level(log::LevelFilter::Debug);
    });
}

struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        eprintln!("[{} {}] {}", record.level(), record.target(), record.args());
    }

    fn flush(&self) {}
}
