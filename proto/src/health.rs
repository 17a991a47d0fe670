//! What the log says about the store (SPEC §7): one warning when it stops
//! answering, one line when it answers again, and poisoned entries at most
//! once a minute. Fed from the store's answers only, never per message.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// Poisoned entries are reported at most this often.
pub(crate) const POISON_WARNING_EVERY: Duration = Duration::from_secs(60);

/// An outage under way.
#[derive(Debug, Clone, Copy)]
struct Outage {
    since: Instant,
    /// Stanzas refused for the store before it began.
    refused_before: u64,
}

/// The store's health as the log tells it.
#[derive(Debug, Default)]
pub(crate) struct StoreHealth {
    outage: Option<Outage>,
    /// Poisoned entries already reported, and when the next report may come.
    poison_reported: u64,
    poison_next: Option<Instant>,
}

impl StoreHealth {
    /// A store operation failed or timed out; `refused` is the count of
    /// stanzas refused for the store so far.
    pub(crate) fn failed(&mut self, why: &dyn Display, refused: u64, now: Instant) {
        if self.outage.is_none() {
            log::warn!(
                "the mapping store is unavailable ({why}); stanzas that need it are refused \
                 with internal-server-error until it answers"
            );
            self.outage = Some(Outage {
                since: now,
                refused_before: refused,
            });
        }
    }

    /// A store operation succeeded.
    pub(crate) fn answered(&mut self, refused: u64, now: Instant) {
        if let Some(o) = self.outage.take() {
            let down = now.saturating_duration_since(o.since);
            log::info!(
                "the mapping store answers again after {:.1} s; {} stanzas refused meanwhile",
                down.as_secs_f64(),
                refused.saturating_sub(o.refused_before)
            );
        }
    }

    /// Whether an outage is under way.
    #[cfg(test)]
    pub(crate) fn is_down(&self) -> bool {
        self.outage.is_some()
    }

    /// `total` poisoned entries so far: report the new ones if the last
    /// report is a minute old. Also called on timeouts, so that entries
    /// seen within the quiet minute are reported after it.
    pub(crate) fn poisoned(&mut self, total: u64, now: Instant) {
        if total == self.poison_reported || self.poison_next.is_some_and(|t| now < t) {
            return;
        }
        log::warn!(
            "{} stored mappings failed verification since the last such warning (tampered \
             with, or written under another secret or encrypt key); they were treated as absent",
            total - self.poison_reported
        );
        self.poison_reported = total;
        self.poison_next = Some(now + POISON_WARNING_EVERY);
    }
}
