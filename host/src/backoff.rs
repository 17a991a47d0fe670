//! Reconnect delays: exponential backoff with full jitter (SPEC §2).
//!
//! Pure arithmetic; the runtime hands in the random numbers and the clock.

use std::time::Duration;

/// First delay ceiling.
pub const BASE: Duration = Duration::from_secs(1);
/// Largest delay ceiling.
pub const CAP: Duration = Duration::from_secs(60);
/// A connection that lasted this long resets the backoff.
pub const STABLE: Duration = Duration::from_secs(60);

/// Backoff state across reconnects.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// A fresh backoff: the first delay is at most [`BASE`].
    pub fn new() -> Self {
        Backoff::default()
    }

    /// The delay before the next attempt: uniform in `[0, min(CAP, BASE·2ⁿ)]`,
    /// drawn from `random`. Each call doubles the ceiling.
    pub fn next_delay(&mut self, random: u64) -> Duration {
        self.next_delay_within(random, CAP)
    }

    /// [`Backoff::next_delay`] with a lower cap, for failures that end by
    /// themselves soon (a proxy whose tunnels are still being built).
    pub fn next_delay_within(&mut self, random: u64, cap: Duration) -> Duration {
        let ceiling = BASE
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(CAP)
            .min(cap);
        self.attempt = self.attempt.saturating_add(1);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(random % (millis + 1))
    }

    /// Tell the backoff how long the last connection lasted: a stable one
    /// resets it, so a single drop after hours of service reconnects at once.
    pub fn connection_lasted(&mut self, lasted: Duration) {
        if lasted >= STABLE {
            self.attempt = 0;
        }
    }

    /// Ceiling of the next delay (for logs and tests).
    pub fn next_ceiling(&self) -> Duration {
        BASE.saturating_mul(1u32 << self.attempt.min(16)).min(CAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_full_jitter() {
        let mut b = Backoff::new();
        let ceilings: Vec<u64> = (0..9)
            .map(|_| {
                let c = b.next_ceiling().as_secs();
                assert!(b.next_delay(u64::MAX) <= Duration::from_secs(c));
                c
            })
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(Backoff::new().next_delay(0), Duration::ZERO);
    }

    #[test]
    fn a_stable_connection_resets() {
        let mut b = Backoff::new();
        for _ in 0..5 {
            b.next_delay(1);
        }
        b.connection_lasted(Duration::from_secs(5));
        assert_eq!(b.next_ceiling(), Duration::from_secs(32));
        b.connection_lasted(Duration::from_secs(61));
        assert_eq!(b.next_ceiling(), Duration::from_secs(1));
    }
}
