//! The periodic counters line: numbers only, never a JID or a body.

use std::time::{Duration, Instant};

use axrelay_proto::Stats;

/// When the next counters line is due.
#[derive(Debug)]
pub struct StatsTicker {
    interval: Duration,
    next: Instant,
}

impl StatsTicker {
    /// First line one `interval` from `now`.
    pub fn new(interval: Duration, now: Instant) -> Self {
        let interval = interval.max(Duration::from_secs(1));
        StatsTicker {
            interval,
            next: now + interval,
        }
    }

    /// When to wake up for the next line.
    pub fn deadline(&self) -> Instant {
        self.next
    }

    /// Log the counters if they are due.
    pub fn tick(&mut self, now: Instant, stats: &Stats, reconnects: u64) {
        if now >= self.next {
            log::info!("{}", stats_line(stats, reconnects));
            self.next = now + self.interval;
        }
    }
}

/// One line of counters.
pub fn stats_line(s: &Stats, reconnects: u64) -> String {
    format!(
        "stats: stanzas in {}, relayed {}, bounced {}, rejected {}, dropped {}, oversized {}, \
         rate-limited {}, banned {}, whoami {}, lookups {}, writes {}, cache hits {}, store errors {}, \
         poisoned {}, sessions {}, reconnects {}",
        s.stanzas_in,
        s.relayed,
        s.bounced,
        s.rejected,
        s.dropped,
        s.oversized,
        s.rate_limited,
        s.banned,
        s.whoami,
        s.lookups,
        s.writes,
        s.cache_hits,
        s.store_errors,
        s.poisoned,
        s.sessions,
        reconnects
    )
}
