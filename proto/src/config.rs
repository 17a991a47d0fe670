//! What the core needs to know; built by the binary from the INI file.

use std::time::{Duration, Instant};

use crate::jid::Jid;
use crate::pseudonym::IdentityMode;
use crate::rate::{RateLimits, RateOf};

/// Parsing limits (SPEC §6), enforced while parsing, before anything is
/// buffered whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest stanza accepted, in bytes of XML (Prosody sends at most 512 KiB).
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza (the stanza itself is depth 1).
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Most namespace declarations on one element.
    pub max_namespace_decls: usize,
    /// Longest name or value, in bytes: an element's local name, an
    /// attribute's whole name (prefix included), an attribute value once
    /// decoded, a namespace name as written (it is compared, not decoded).
    pub max_token_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 512 * 1024,
            max_depth: 32,
            max_attributes: 64,
            max_namespace_decls: 16,
            max_token_length: 8192,
        }
    }
}

/// One of the [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`Limits::max_stanza_bytes`].
    MaxStanzaBytes,
    /// [`Limits::max_depth`].
    MaxDepth,
    /// [`Limits::max_attributes`].
    MaxAttributes,
    /// [`Limits::max_namespace_decls`].
    MaxNamespaceDecls,
    /// [`Limits::max_token_length`].
    MaxTokenLength,
}

impl Limit {
    /// Every limit, in the order they are checked.
    pub const ALL: [Limit; 5] = [
        Limit::MaxStanzaBytes,
        Limit::MaxDepth,
        Limit::MaxAttributes,
        Limit::MaxNamespaceDecls,
        Limit::MaxTokenLength,
    ];

    /// The field's name; the configuration file's key for the limits it
    /// sets (`max_stanza_bytes`, `max_depth`).
    pub fn name(self) -> &'static str {
        match self {
            Limit::MaxStanzaBytes => "max_stanza_bytes",
            Limit::MaxDepth => "max_depth",
            Limit::MaxAttributes => "max_attributes",
            Limit::MaxNamespaceDecls => "max_namespace_decls",
            Limit::MaxTokenLength => "max_token_length",
        }
    }

    /// The smallest value that still carries ordinary stanzas.
    pub fn minimum(self) -> usize {
        match self {
            Limit::MaxStanzaBytes => 4096,
            Limit::MaxDepth => 4,
            Limit::MaxAttributes => 8,
            Limit::MaxNamespaceDecls => 2,
            Limit::MaxTokenLength => 1024,
        }
    }

    /// The largest value accepted: what a stanza's record addresses with
    /// 32-bit offsets stays far below 4 GiB, and the scans that grow with
    /// these counts stay short.
    pub fn maximum(self) -> usize {
        match self {
            Limit::MaxStanzaBytes => 64 << 20,
            Limit::MaxDepth => 256,
            Limit::MaxAttributes => 1024,
            Limit::MaxNamespaceDecls => 256,
            Limit::MaxTokenLength => 64 << 20,
        }
    }
}

impl Limits {
    /// The value of `limit`.
    pub fn get(&self, limit: Limit) -> usize {
        match limit {
            Limit::MaxStanzaBytes => self.max_stanza_bytes,
            Limit::MaxDepth => self.max_depth,
            Limit::MaxAttributes => self.max_attributes,
            Limit::MaxNamespaceDecls => self.max_namespace_decls,
            Limit::MaxTokenLength => self.max_token_length,
        }
    }
}

/// How the relay keeps an idle connection alive and notices a dead one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepaliveMode {
    /// A XEP-0199 ping to the server after `keepalive` of silence; no
    /// answer within another `keepalive` ends the connection. Notices a hung
    /// server too. The default (SPEC §2).
    #[default]
    Ping,
    /// One space after `keepalive` of silence, no answer expected; a dead
    /// peer shows as a failed write (the runtime bounds unacknowledged data
    /// with a TCP user timeout). For servers that may route the ping's
    /// answer to another connection of the domain (ejabberd's
    /// `domain_balancing`), where a ping would time out on an idle,
    /// healthy connection.
    Whitespace,
}

/// The Unix time at one instant: the core reads no clock, and an
/// [`Instant`] means nothing to another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// The instant.
    pub at: Instant,
    /// Seconds since the Unix epoch at `at`.
    pub unix_secs: u64,
}

impl WallClock {
    /// Unix seconds at `now`, counted on from `at`.
    pub fn unix_at(&self, now: Instant) -> u64 {
        self.unix_secs + now.saturating_duration_since(self.at).as_secs()
    }
}

/// Configuration of one relay.
#[derive(Clone)]
pub struct Config {
    /// The component's domain, e.g. `axr.example.org` (also the pseudonym domain).
    pub domain: String,
    /// The component secret shared with the server (XEP-0114 handshake).
    pub password: String,
    /// `[hash] secret`, as raw bytes: the pseudonym HMAC key.
    pub secret: Vec<u8>,
    /// Bare (default) or full JIDs as identities.
    pub identity: IdentityMode,
    /// Resource of relayed stanzas' `from` (default `a`).
    pub resource: String,
    /// Decoded `encrypt` key of the store, if values are sealed.
    pub encrypt: Option<[u8; 32]>,
    /// Store entry lifetime in seconds; 0 = never expire.
    pub ttl: u32,
    /// Silence after which the relay pings the server, and the time it then
    /// waits for any answer before it declares the connection dead.
    pub keepalive: Duration,
    /// What is sent after `keepalive` of silence.
    pub keepalive_mode: KeepaliveMode,
    /// How long the server may take to answer the header and the handshake.
    pub handshake_timeout: Duration,
    /// How long a store operation may take before the waiting stanzas are
    /// answered with an error.
    pub store_timeout: Duration,
    /// How long a graceful stop waits (for pending work, then the server's close).
    pub close_timeout: Duration,
    /// Where keepalive pings go; default: the component's own domain, which
    /// the server routes back to the relay (a round trip through the server
    /// that depends on no other host).
    pub server_domain: Option<String>,
    /// Parsing limits.
    pub limits: Limits,
    /// Random per process, from the runtime: seeds the in-process caches'
    /// hashing and the bot's reply ids.
    pub id_key: [u8; 32],
    /// The Unix time at one instant, from the runtime: fresh ids carry the
    /// time they were issued, which every instance must read alike (SPEC
    /// §5). Required.
    pub wall_clock: Option<WallClock>,
    /// Mappings kept in process (both directions of the store cache).
    pub cache_capacity: usize,
    /// Relayed message ids remembered for receipts, markers and corrections.
    pub id_map_capacity: usize,
    /// Stanzas allowed to wait on the store at once; also the number of
    /// mappings that may be being written again after a store failure.
    pub max_pending: usize,
    /// What those stanzas may hold in total (approximate heap bytes, see
    /// `Tree::weight`), beyond which only a first one may wait: with a
    /// slow store, `max_pending` stanzas of `max_stanza_bytes` each would
    /// be gigabytes.
    pub max_pending_bytes: usize,
    /// Allow JIDs and pseudonyms in debug logs (`--log-sensitive`); bodies
    /// are never logged.
    pub log_sensitive: bool,
    /// Rate limits per sender and for everyone (SPEC §5).
    pub rates: RateLimits,
    /// Log each decision at debug level (`-d`): relayed, bounced, dropped
    /// and refused, with pseudonyms only unless `log_sensitive`. A plain
    /// flag, so that the relay path reads no logger state when it is off.
    pub log_decisions: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of debug output.
        f.debug_struct("Config")
            .field("domain", &self.domain)
            .field("identity", &self.identity)
            .field("resource", &self.resource)
            .field("encrypted", &self.encrypt.is_some())
            .field("ttl", &self.ttl)
            .field("keepalive", &self.keepalive)
            .field("keepalive_mode", &self.keepalive_mode)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A configuration the core cannot work with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The component domain is not a valid domain JID.
    BadDomain(String),
    /// The relay resource is empty, too long or contains markup characters.
    BadResource(String),
    /// The pseudonym secret is empty.
    EmptySecret,
    /// No [`WallClock`] was given.
    NoWallClock,
    /// A rate is negative or not a number, or a limit that is on lets
    /// nothing through (a burst below 1).
    BadRate(RateOf),
    /// A limit is below its [`Limit::minimum`] or above its
    /// [`Limit::maximum`].
    BadLimit {
        /// Which limit.
        limit: Limit,
        /// The smallest value allowed.
        minimum: usize,
        /// The largest value allowed.
        maximum: usize,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::BadDomain(d) => write!(f, "'{d}' is not a valid component domain"),
            ConfigError::BadResource(r) => write!(f, "'{r}' is not a valid resource"),
            ConfigError::EmptySecret => f.write_str("the pseudonym secret is empty"),
            ConfigError::NoWallClock => f.write_str("no wall clock was given"),
            ConfigError::BadRate(which) => write!(
                f,
                "the {} rate limit must be a rate of 0 (off) or more with a burst of at least 1",
                which.name()
            ),
            ConfigError::BadLimit {
                limit,
                minimum,
                maximum,
            } => write!(
                f,
                "limit {} must be from {minimum} to {maximum}",
                limit.name()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// A configuration with the defaults of SPEC §7.
    pub fn new(domain: &str, password: &str, secret: &[u8]) -> Self {
        Config {
            domain: domain.to_owned(),
            password: password.to_owned(),
            secret: secret.to_vec(),
            identity: IdentityMode::Bare,
            resource: "a".to_owned(),
            encrypt: None,
            ttl: 0,
            keepalive: Duration::from_secs(60),
            keepalive_mode: KeepaliveMode::Ping,
            handshake_timeout: Duration::from_secs(30),
            store_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(2),
            server_domain: None,
            limits: Limits::default(),
            id_key: [0; 32],
            wall_clock: None,
            cache_capacity: 100_000,
            id_map_capacity: 100_000,
            max_pending: 10_000,
            max_pending_bytes: 64 * 1024 * 1024,
            log_sensitive: false,
            rates: RateLimits::default(),
            log_decisions: false,
        }
    }

    /// Check what the core relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let jid =
            Jid::parse(&self.domain).map_err(|_| ConfigError::BadDomain(self.domain.clone()))?;
        if jid.local().is_some() || jid.resource().is_some() || !is_plain(&self.domain) {
            return Err(ConfigError::BadDomain(self.domain.clone()));
        }
        if self.resource.is_empty() || self.resource.len() > 1023 || !is_plain(&self.resource) {
            return Err(ConfigError::BadResource(self.resource.clone()));
        }
        if self.secret.is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        if self.wall_clock.is_none() {
            return Err(ConfigError::NoWallClock);
        }
        for which in RateOf::ALL {
            let rate = self.rates.get(which);
            let on = rate.per_second > 0.0;
            if !rate.per_second.is_finite() || rate.per_second < 0.0 || (on && rate.burst < 1) {
                return Err(ConfigError::BadRate(which));
            }
        }
        for limit in Limit::ALL {
            let (minimum, maximum) = (limit.minimum(), limit.maximum());
            if !(minimum..=maximum).contains(&self.limits.get(limit)) {
                return Err(ConfigError::BadLimit {
                    limit,
                    minimum,
                    maximum,
                });
            }
        }
        Ok(())
    }

    /// The keepalive ping target: `server_domain`, else the component's own
    /// domain. Guessing the server from the component's name fails for
    /// names like `RELAY.b32.i2p`, whose "parent" is no server at all.
    pub fn ping_target(&self) -> &str {
        self.server_domain.as_deref().unwrap_or(&self.domain)
    }
}

/// No characters that would need escaping or that XML forbids.
fn is_plain(s: &str) -> bool {
    !s.chars().any(|c| {
        matches!(c, '<' | '>' | '&' | '\'' | '"' | '/' | '@') || c.is_control() || c.is_whitespace()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut c = Config::new("axr.example.org", "pw", b"secret");
        c.wall_clock = Some(WallClock {
            at: crate::tests::origin(),
            unix_secs: 1_800_000_000,
        });
        c
    }

    #[test]
    fn defaults_validate_and_bad_values_do_not() {
        let c = config();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.ping_target(), "axr.example.org");
        let mut d = c.clone();
        d.domain = "user@axr.example.org".into();
        assert!(matches!(d.validate(), Err(ConfigError::BadDomain(_))));
        let mut d = c.clone();
        d.resource = "a<b".into();
        assert!(matches!(d.validate(), Err(ConfigError::BadResource(_))));
        let mut d = c.clone();
        d.secret.clear();
        assert_eq!(d.validate(), Err(ConfigError::EmptySecret));
        let mut d = c.clone();
        d.wall_clock = None;
        assert_eq!(d.validate(), Err(ConfigError::NoWallClock));
    }

    #[test]
    fn the_wall_clock_counts_on_from_its_instant() {
        let at = crate::tests::origin();
        let w = WallClock {
            at,
            unix_secs: 1_800_000_000,
        };
        assert_eq!(w.unix_at(at), 1_800_000_000);
        assert_eq!(w.unix_at(at + Duration::from_millis(2500)), 1_800_000_002);
        // An instant before `at` reads as `at`.
        assert_eq!(
            w.unix_at(at.checked_sub(Duration::from_secs(9)).unwrap_or(at)),
            1_800_000_000
        );
    }

    #[test]
    fn each_limit_out_of_range_is_named_with_its_range() {
        let c = config();
        let set = |limits: &mut Limits, limit: Limit, value: usize| match limit {
            Limit::MaxStanzaBytes => limits.max_stanza_bytes = value,
            Limit::MaxDepth => limits.max_depth = value,
            Limit::MaxAttributes => limits.max_attributes = value,
            Limit::MaxNamespaceDecls => limits.max_namespace_decls = value,
            Limit::MaxTokenLength => limits.max_token_length = value,
        };
        for limit in Limit::ALL {
            let minimum = limit.minimum();
            let mut d = c.clone();
            set(&mut d.limits, limit, minimum);
            assert_eq!(d.limits.get(limit), minimum);
            assert_eq!(d.validate(), Ok(()), "{limit:?} at its minimum");
            let maximum = limit.maximum();
            set(&mut d.limits, limit, maximum);
            assert_eq!(d.validate(), Ok(()), "{limit:?} at its maximum");
            for value in [minimum - 1, maximum + 1] {
                set(&mut d.limits, limit, value);
                let e = d.validate().unwrap_err();
                assert_eq!(
                    e,
                    ConfigError::BadLimit {
                        limit,
                        minimum,
                        maximum
                    }
                );
                assert_eq!(
                    e.to_string(),
                    format!("limit {} must be from {minimum} to {maximum}", limit.name())
                );
            }
        }
        let mut d = c;
        d.limits.max_depth = 1;
        assert_eq!(
            d.validate().unwrap_err().to_string(),
            "limit max_depth must be from 4 to 256"
        );
    }

    #[test]
    fn ping_target_defaults() {
        assert_eq!(
            Config::new("r.b32.i2p", "", b"s").ping_target(),
            "r.b32.i2p"
        );
        let mut c = Config::new("axr.io", "", b"s");
        c.server_domain = Some("server.io".into());
        assert_eq!(c.ping_target(), "server.io");
    }
}
