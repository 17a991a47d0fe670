//! Rate limits (SPEC §5): token buckets per sender for relayed messages and
//! for `/whoami`, and one for all relayed messages together. A sender is
//! counted under its pseudonym, so the buckets hold no real address.
//!
//! Deciding only reads a bucket ([`Limiter::allows`]); a stanza that is let
//! through is charged once ([`Limiter::charge`]), when it is first decided,
//! even if it then waits for the store.

use std::time::{Duration, Instant};

use crate::cache::{GenMap, Prehashed};
use crate::pseudonym::Local;

/// Senders whose buckets are kept; one evicted starts again with a full
/// bucket, which only ever lets a sender through.
const SENDERS: usize = 16 * 1024;

/// How often one sender's refusals are logged at most.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(60);

/// A refill rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second; 0 turns the limit off.
    pub per_second: f64,
    /// The most tokens a bucket holds: what may come at once.
    pub burst: u32,
}

impl Rate {
    /// No limit.
    pub const OFF: Rate = Rate {
        per_second: 0.0,
        burst: 0,
    };

    fn is_off(&self) -> bool {
        self.per_second <= 0.0
    }
}

/// The rate limits in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Messages one sender may have relayed.
    pub messages: Rate,
    /// `/whoami` requests of one sender.
    pub whoami: Rate,
    /// Messages relayed for everyone together.
    pub global: Rate,
}

impl Default for RateLimits {
    /// Loose enough never to bother a person typing, tight enough to stop
    /// a script: 10 messages a second after a burst of 50; a `/whoami`
    /// every 10 s after 5; no global limit.
    fn default() -> Self {
        RateLimits {
            messages: Rate {
                per_second: 10.0,
                burst: 50,
            },
            whoami: Rate {
                per_second: 0.1,
                burst: 5,
            },
            global: Rate::OFF,
        }
    }
}

/// One of the three limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateOf {
    /// A sender's relayed messages.
    Messages,
    /// A sender's `/whoami`.
    Whoami,
    /// All relayed messages.
    Global,
}

impl RateOf {
    /// All of them.
    pub const ALL: [RateOf; 3] = [RateOf::Messages, RateOf::Whoami, RateOf::Global];

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            RateOf::Messages => "message",
            RateOf::Whoami => "whoami",
            RateOf::Global => "global",
        }
    }
}

impl RateLimits {
    /// The rate of one limit.
    pub fn get(&self, which: RateOf) -> Rate {
        match which {
            RateOf::Messages => self.messages,
            RateOf::Whoami => self.whoami,
            RateOf::Global => self.global,
        }
    }

    /// Every limit off.
    pub const OFF: RateLimits = RateLimits {
        messages: Rate::OFF,
        whoami: Rate::OFF,
        global: Rate::OFF,
    };
}

/// What a stanza is counted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    /// A message to a pseudonym.
    Message,
    /// `/whoami`.
    Whoami,
}

/// Which limit refused a stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    /// The sender's own.
    Sender(Counted),
    /// The global one.
    Global,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    /// Tokens at `now`, without taking any.
    fn level(&self, rate: Rate, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst))
    }

    fn allows(&self, rate: Rate, now: Instant) -> bool {
        rate.is_off() || self.level(rate, now) >= 1.0
    }

    fn take(&mut self, rate: Rate, now: Instant) {
        if rate.is_off() {
            return;
        }
        self.tokens = (self.level(rate, now) - 1.0).max(0.0);
        self.at = now;
    }
}

#[derive(Debug, Clone, Copy)]
struct Sender {
    messages: Bucket,
    whoami: Bucket,
    /// When a refusal of this sender was last logged, and how many came
    /// since.
    logged: Option<Instant>,
    refused: u32,
}

impl Sender {
    fn new(rates: &RateLimits, now: Instant) -> Sender {
        Sender {
            messages: Bucket::full(rates.messages, now),
            whoami: Bucket::full(rates.whoami, now),
            logged: None,
            refused: 0,
        }
    }

    fn bucket(&mut self, what: Counted) -> &mut Bucket {
        match what {
            Counted::Message => &mut self.messages,
            Counted::Whoami => &mut self.whoami,
        }
    }
}

/// The buckets of every sender seen lately, and the global one.
pub(crate) struct Limiter {
    rates: RateLimits,
    /// Keyed by pseudonyms: MAC output no sender can choose, so only mixed.
    senders: GenMap<Local, Sender, Prehashed>,
    /// Full until the first message is charged.
    global: Option<Bucket>,
}

impl Limiter {
    pub(crate) fn new(rates: RateLimits) -> Limiter {
        Limiter {
            rates,
            senders: GenMap::new(SENDERS, Prehashed),
            global: None,
        }
    }

    fn rate(&self, what: Counted) -> Rate {
        match what {
            Counted::Message => self.rates.messages,
            Counted::Whoami => self.rates.whoami,
        }
    }

    /// Whether `sender` may have one more `what` now; which limit says no.
    pub(crate) fn allows(&self, sender: &Local, what: Counted, now: Instant) -> Result<(), Over> {
        let rate = self.rate(what);
        if rate.is_off() && (what == Counted::Whoami || self.rates.global.is_off()) {
            return Ok(());
        }
        let own = match self.senders.peek(sender) {
            Some((s, _)) => match what {
                Counted::Message => s.messages.allows(rate, now),
                Counted::Whoami => s.whoami.allows(rate, now),
            },
            None => rate.is_off() || rate.burst >= 1,
        };
        if !own {
            return Err(Over::Sender(what));
        }
        let global = self.rates.global;
        if what == Counted::Message && self.global.is_some_and(|g| !g.allows(global, now)) {
            return Err(Over::Global);
        }
        Ok(())
    }

    /// One `what` of `sender` goes through.
    pub(crate) fn charge(&mut self, sender: &Local, what: Counted, now: Instant) {
        if what == Counted::Message && !self.rates.global.is_off() {
            let global = self.rates.global;
            self.global
                .get_or_insert_with(|| Bucket::full(global, now))
                .take(global, now);
        }
        let rate = self.rate(what);
        if rate.is_off() {
            return;
        }
        match self.senders.get(sender) {
            Some(s) => s.bucket(what).take(rate, now),
            None => {
                let mut s = Sender::new(&self.rates, now);
                s.bucket(what).take(rate, now);
                self.senders.insert(*sender, s);
            }
        }
    }

    /// A stanza of `sender` was refused. Returns how many were refused
    /// since the last time this was worth a log line (at most one a
    /// minute per sender).
    pub(crate) fn refused(&mut self, sender: &Local, now: Instant) -> Option<u32> {
        if self.senders.peek(sender).is_none() {
            self.senders.insert(*sender, Sender::new(&self.rates, now));
        }
        let s = self.senders.get(sender)?;
        s.refused = s.refused.saturating_add(1);
        if s.logged
            .is_some_and(|at| now.saturating_duration_since(at) < LOG_EVERY)
        {
            return None;
        }
        s.logged = Some(now);
        Some(std::mem::take(&mut s.refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pseudonym::Pseudonymizer;

    fn limiter(rates: RateLimits) -> Limiter {
        Limiter::new(rates)
    }

    fn local(who: &str) -> Local {
        Pseudonymizer::new(b"rate test secret").local(who)
    }

    /// Let through as many as allowed at `now`, charging each.
    fn burst(l: &mut Limiter, who: &Local, what: Counted, now: Instant) -> usize {
        let mut n = 0;
        while l.allows(who, what, now).is_ok() && n < 1000 {
            l.charge(who, what, now);
            n += 1;
        }
        n
    }

    #[test]
    fn a_sender_gets_its_burst_then_the_rate() {
        let t0 = crate::tests::origin();
        let mut l = limiter(RateLimits::default());
        let bob = local("bob@b.example");
        assert_eq!(burst(&mut l, &bob, Counted::Message, t0), 50);
        assert_eq!(
            l.allows(&bob, Counted::Message, t0),
            Err(Over::Sender(Counted::Message))
        );
        // 10 a second come back.
        let later = t0 + Duration::from_millis(1000);
        assert_eq!(burst(&mut l, &bob, Counted::Message, later), 10);
        // Another sender is not affected, nor bob's /whoami.
        assert_eq!(
            burst(&mut l, &local("carol@c.example"), Counted::Message, later),
            50
        );
        assert_eq!(burst(&mut l, &bob, Counted::Whoami, later), 5);
        let refill = later + Duration::from_secs(10);
        assert_eq!(burst(&mut l, &bob, Counted::Whoami, refill), 1);
    }

    #[test]
    fn the_global_limit_holds_for_everyone_together() {
        let t0 = crate::tests::origin();
        let rates = RateLimits {
            global: Rate {
                per_second: 1.0,
                burst: 3,
            },
            ..RateLimits::default()
        };
        let mut l = limiter(rates);
        let (a, b) = (local("a@x.example"), local("b@x.example"));
        assert_eq!(burst(&mut l, &a, Counted::Message, t0), 3);
        assert_eq!(l.allows(&b, Counted::Message, t0), Err(Over::Global));
        // /whoami is not a relayed message.
        assert!(l.allows(&b, Counted::Whoami, t0).is_ok());
    }

    #[test]
    fn off_means_off() {
        let t0 = crate::tests::origin();
        let mut l = limiter(RateLimits::OFF);
        let a = local("a@x.example");
        assert_eq!(burst(&mut l, &a, Counted::Message, t0), 1000);
        assert_eq!(burst(&mut l, &a, Counted::Whoami, t0), 1000);
    }

    #[test]
    fn refusals_are_worth_a_log_line_once_a_minute_per_sender() {
        let t0 = crate::tests::origin();
        let mut l = limiter(RateLimits::default());
        let a = local("a@x.example");
        assert_eq!(l.refused(&a, t0), Some(1));
        assert_eq!(l.refused(&a, t0 + Duration::from_secs(1)), None);
        assert_eq!(l.refused(&a, t0 + Duration::from_secs(2)), None);
        assert_eq!(l.refused(&local("b@x.example"), t0), Some(1));
        assert_eq!(l.refused(&a, t0 + LOG_EVERY), Some(3));
    }
}
