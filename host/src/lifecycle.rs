//! What happens between connections: logging, backoff and the decision to
//! reconnect or return. Shared so both runtimes behave the same.
//!
//! Connection events go out at info (a hot standby's `conflict` loop is
//! routine); failures to reach the server or proxy at warn; a refused
//! configuration at error.

use std::time::{Duration, Instant};

use axrelay_proto::DisconnectReason;

use crate::backoff::{self, Backoff};
use crate::connect::{ConnectError, Target};
use crate::notify::Notifier;
use crate::options::Exit;

/// The longest wait between attempts while a proxy refuses to reach the
/// server (SOCKS5 replies other than success): on I2P a LeaseSet appears
/// within tens of seconds, and the backoff's 60 s would add to that.
pub const PROXY_REFUSAL_CAP: Duration = Duration::from_secs(10);

/// After a connection ended: return, or try again after a delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// `run` is over.
    Exit(Exit),
    /// Reconnect after this delay.
    Retry(Duration),
}

/// Connection history across reconnects.
#[derive(Debug)]
pub struct Lifecycle {
    target: Target,
    backoff: Backoff,
    /// Jitter for the backoff, from the seed the runtime hands in.
    rng: fastrand::Rng,
    notify: Notifier,
    attempts: u64,
    connected_at: Option<Instant>,
    /// Whether the current connection got past the handshake.
    online: bool,
}

impl Lifecycle {
    /// Nothing attempted yet; `seed` makes the backoff's jitter, `notify`
    /// tells systemd how it goes.
    pub fn new(target: Target, seed: u64, notify: Notifier) -> Self {
        Lifecycle {
            target,
            backoff: Backoff::new(),
            rng: fastrand::Rng::with_seed(seed),
            notify,
            attempts: 0,
            connected_at: None,
            online: false,
        }
    }

    /// Where connections go.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// How long a requested stop may take before the connection is dropped
    /// without the core: it drains and then waits for the server's close,
    /// each for up to `close_timeout`; the 2 s more are a margin for a loop
    /// that woke late, so that the core's own deadlines come first.
    pub fn stop_grace(close_timeout: Duration) -> Duration {
        close_timeout.saturating_mul(2) + Duration::from_secs(2)
    }

    /// A connection attempt starts.
    pub fn attempt(&mut self) {
        self.attempts += 1;
        let status = format!("connecting to {}", self.target);
        log::debug!("{status}");
        self.notify.status(&status);
    }

    /// Connection attempts after the first.
    pub fn reconnects(&self) -> u64 {
        self.attempts.saturating_sub(1)
    }

    /// The attempt failed: log why and how long we wait. A proxy that
    /// answers but cannot reach the server yet is asked again at most
    /// [`PROXY_REFUSAL_CAP`] apart: its tunnels are being built.
    pub fn connect_failed(&mut self, err: &ConnectError) -> Duration {
        let cap = if err.is_proxy_refusal() {
            PROXY_REFUSAL_CAP
        } else {
            backoff::CAP
        };
        let delay = self.delay(cap);
        let status = format!("{err}; retrying in {:.1} s", delay.as_secs_f64());
        log::warn!("{status}");
        self.notify.status(&status);
        delay
    }

    /// TCP (and the proxy tunnel) is up.
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
        self.online = false;
        log::info!("connected to {}", self.target);
    }

    /// The server accepted the handshake for `domain`.
    pub fn online(&mut self, domain: &str) {
        self.online = true;
        log::info!("online: the server accepted the component handshake");
        self.notify.status(&format!("online as {domain}"));
    }

    /// A graceful stop has begun.
    pub fn stopping(&mut self) {
        self.notify.stopping();
    }

    /// The connection ended for `reason`; `stopping` if a stop was requested.
    pub fn ended(&mut self, reason: &DisconnectReason, stopping: bool, now: Instant) -> Next {
        if let Some(at) = self.connected_at.take() {
            self.backoff
                .connection_lasted(now.saturating_duration_since(at));
        }
        if reason.is_fatal() {
            log::error!("disconnected: {reason}");
            return Next::Exit(Exit::Refused(reason.clone()));
        }
        if stopping || reason.is_shutdown() {
            if std::mem::take(&mut self.online) {
                log::info!("stopped: stream closed");
            } else {
                log::info!("stopped before the server accepted the handshake");
            }
            return Next::Exit(Exit::Stopped);
        }
        let delay = self.delay(backoff::CAP);
        let status = format!(
            "disconnected: {reason}; reconnecting in {:.1} s",
            delay.as_secs_f64()
        );
        log::info!("{status}");
        self.notify.status(&status);
        Next::Retry(delay)
    }

    fn delay(&mut self, cap: Duration) -> Duration {
        self.backoff.next_delay_within(self.rng.u64(..), cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;
    use crate::socks5::Socks5Error;

    #[test]
    fn decides_between_exit_and_retry() {
        let mut l = Lifecycle::new(
            Target::new(&Options::new("127.0.0.1", 5347)),
            1,
            Notifier::default(),
        );
        let now = Instant::now();
        l.connected(now);
        assert_eq!(
            l.ended(&DisconnectReason::NotAuthorized, false, now),
            Next::Exit(Exit::Refused(DisconnectReason::NotAuthorized))
        );
        assert_eq!(
            l.ended(&DisconnectReason::Shutdown, false, now),
            Next::Exit(Exit::Stopped)
        );
        assert_eq!(
            l.ended(&DisconnectReason::Closed, true, now),
            Next::Exit(Exit::Stopped)
        );
        match l.ended(&DisconnectReason::Conflict, false, now) {
            Next::Retry(d) => assert!(d <= Duration::from_secs(1)),
            other => panic!("expected a retry, got {other:?}"),
        }
        match l.ended(&DisconnectReason::Closed, false, now) {
            Next::Retry(d) => assert!(d <= Duration::from_secs(2)),
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn a_proxy_that_cannot_reach_the_server_yet_is_asked_again_soon() {
        let lifecycle = || {
            Lifecycle::new(
                Target::new(&Options::new("relay.b32.i2p", 5347)),
                3,
                Notifier::default(),
            )
        };
        let refused = ConnectError::Proxy("127.0.0.1:4447".into(), Socks5Error::Refused(4), None);
        let unreachable = ConnectError::TimedOut("connecting to 127.0.0.1:4447".into());
        let (mut proxy, mut tcp) = (lifecycle(), lifecycle());
        let mut longest = (Duration::ZERO, Duration::ZERO);
        for _ in 0..40 {
            longest.0 = longest.0.max(proxy.connect_failed(&refused));
            longest.1 = longest.1.max(tcp.connect_failed(&unreachable));
        }
        assert!(longest.0 <= PROXY_REFUSAL_CAP, "{:?}", longest.0);
        assert!(longest.1 > PROXY_REFUSAL_CAP, "{:?}", longest.1);
    }
}
