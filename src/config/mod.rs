//! The configuration file (SPEC §7), in the 2014 `sample.conf` layout.
//!
//! Loading only reads the INI structure; each command then asks for the
//! sections it needs, so `hash` works with a file that has no `[relay]`, and
//! every error names the file, section and key.

mod assemble;
mod document;
pub mod secrets;
mod value;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axrelay_host::socks5::Proxy;
use axrelay_proto::{IdentityMode, KeepaliveMode, Limit, Limits, RateLimits, RateOf};

pub use assemble::{relay_config, RelayPlan};
pub use document::{Document, SyntaxError};

/// Where `-c` points by default.
pub const DEFAULT_PATH: &str = "/etc/axrelay.conf";

/// Default `[relay] control`: the running relay's control socket, in the
/// directory systemd makes for it (`RuntimeDirectory=axrelay`).
pub const DEFAULT_CONTROL: &str = "/run/axrelay/control";

/// The longest path a Unix socket can have (`sun_path`, less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Default `[memcache] timeout`: connect, read and write, each.
pub const DEFAULT_MEMCACHE_TIMEOUT: Duration = Duration::from_millis(500);

const KNOWN: &[(&str, &[&str])] = &[
    (
        "relay",
        &[
            "jid",
            "server",
            "port",
            "password",
            "runtime",
            "keepalive",
            "keepalive_mode",
            "proxy",
            "connect_timeout",
            "handshake_timeout",
            "server_domain",
            "stats_interval",
            "control",
        ],
    ),
    ("hash", &["secret", "domain", "identity", "resource"]),
    ("memcache", &["servers", "encrypt", "ttl", "timeout"]),
    ("local_storage", &["path", "encrypt", "ttl"]),
    (
        "limits",
        &[
            "max_stanza_bytes",
            "max_depth",
            "sender_rate",
            "sender_burst",
            "whoami_rate",
            "whoami_burst",
            "global_rate",
            "global_burst",
        ],
    ),
    ("metrics", &["listen", "allow_remote"]),
];

/// Each rate limit's `[limits]` keys.
pub const RATE_KEYS: [(RateOf, &str, &str); 3] = [
    (RateOf::Messages, "sender_rate", "sender_burst"),
    (RateOf::Whoami, "whoami_rate", "whoami_burst"),
    (RateOf::Global, "global_rate", "global_burst"),
];

/// `[relay] stats_interval`: the default and the range, in seconds.
pub const STATS_INTERVAL: (u64, u64, u64) = (300, 10, 86_400);

/// `[memcache]` keys the 2014 axrelay passed to pylibmc; accepted so old
/// files load, and named in a warning because they do nothing here.
const LEGACY_MEMCACHE: &[&str] = &[
    "binary",
    "username",
    "password",
    "hash",
    "distribution",
    "ketama_hash",
    "ketama",
    "ketama_weighted",
    "buffer_requests",
    "cache_lookups",
    "no_block",
    "noblock",
    "tcp_nodelay",
    "cas",
    "verify_keys",
    "connect_timeout",
    "receive_timeout",
    "send_timeout",
    "num_replicas",
    "remove_failed",
];

/// A configuration problem; the message names file, section and key.
#[derive(Debug)]
pub struct ConfigError {
    /// The configuration file.
    pub path: PathBuf,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong with a configuration file.
#[derive(Debug)]
pub enum ErrorKind {
    /// The file cannot be read.
    Unreadable(std::io::Error),
    /// The file is not INI, repeats a section or key, or quotes a value.
    Syntax(document::SyntaxError),
    /// A required section is absent.
    MissingSection(&'static str),
    /// A required key is absent or empty.
    Missing {
        /// Section name.
        section: &'static str,
        /// Key name.
        key: &'static str,
    },
    /// A key has a value that cannot be used.
    Invalid {
        /// Section name.
        section: &'static str,
        /// Key name.
        key: &'static str,
        /// Why, as a sentence.
        problem: String,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match &self.kind {
            ErrorKind::Unreadable(e) => write!(f, "{path}: cannot read the configuration: {e}"),
            ErrorKind::Syntax(e) => write!(f, "{path}: {e}"),
            ErrorKind::MissingSection(s) => write!(f, "{path}: [{s}]: section missing"),
            ErrorKind::Missing { section, key } => {
                write!(f, "{path}: [{section}] {key}: missing (required)")
            }
            ErrorKind::Invalid {
                section,
                key,
                problem,
            } => write!(f, "{path}: [{section}] {key}: {problem}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Which runtime drives the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// One thread, async I/O (the default).
    Smol,
    /// Threads and blocking sockets.
    Blocking,
}

/// `[relay]`: how to reach the server.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// The component's domain, normalised.
    pub jid: String,
    /// Server host or address.
    pub server: String,
    /// Component port.
    pub port: u16,
    /// Component password (handshake secret).
    pub password: String,
    /// Runtime to use.
    pub runtime: Runtime,
    /// Keepalive interval.
    pub keepalive: Duration,
    /// Ping (default) or whitespace keepalives.
    pub keepalive_mode: KeepaliveMode,
    /// Optional SOCKS5 proxy.
    pub proxy: Option<Proxy>,
    /// TCP (and proxy) connect timeout, if set.
    pub connect_timeout: Option<Duration>,
    /// Stream header and handshake timeout, if set.
    pub handshake_timeout: Option<Duration>,
    /// Where keepalive pings go, if not to the component's own domain.
    pub server_domain: Option<String>,
    /// How often the counters line is logged.
    pub stats_interval: Duration,
}

/// `[hash]`: how pseudonyms are made.
#[derive(Clone)]
pub struct HashSettings {
    /// The raw secret string; its UTF-8 bytes are the HMAC key.
    pub secret: String,
    /// Pseudonym domain, normalised.
    pub domain: String,
    /// Whether `domain` was given in `[hash]` (rather than taken from `[relay] jid`).
    pub domain_given: bool,
    /// Bare or full JIDs as identities.
    pub identity: IdentityMode,
    /// Resource of relayed stanzas.
    pub resource: String,
}

impl std::fmt::Debug for HashSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashSettings")
            .field("domain", &self.domain)
            .field("identity", &self.identity)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

/// Which store holds the mappings, and how.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// In process memory: lost at exit.
    Memory {
        /// Sealing key, if given.
        encrypt: Option<[u8; 32]>,
    },
    /// A local database file.
    File {
        /// Database path.
        path: PathBuf,
        /// Sealing key, if given.
        encrypt: Option<[u8; 32]>,
        /// Entry lifetime, seconds; 0 = never.
        ttl: u32,
    },
    /// memcached servers.
    Memcached {
        /// `host:port` of each server.
        servers: Vec<String>,
        /// Sealing key, if given.
        encrypt: Option<[u8; 32]>,
        /// Entry lifetime, seconds; 0 = never.
        ttl: u32,
        /// Connect, read and write timeout.
        timeout: Duration,
    },
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSettings::Memory { encrypt } => f
                .debug_struct("Memory")
                .field("encrypted", &encrypt.is_some())
                .finish(),
            StoreSettings::File { path, encrypt, ttl } => f
                .debug_struct("File")
                .field("path", path)
                .field("encrypted", &encrypt.is_some())
                .field("ttl", ttl)
                .finish(),
            StoreSettings::Memcached {
                servers,
                encrypt,
                ttl,
                timeout,
            } => f
                .debug_struct("Memcached")
                .field("servers", servers)
                .field("encrypted", &encrypt.is_some())
                .field("ttl", ttl)
                .field("timeout", timeout)
                .finish(),
        }
    }
}

impl StoreSettings {
    /// The sealing key of the chosen store.
    pub fn encrypt(&self) -> Option<[u8; 32]> {
        match self {
            StoreSettings::Memory { encrypt }
            | StoreSettings::File { encrypt, .. }
            | StoreSettings::Memcached { encrypt, .. } => *encrypt,
        }
    }

    /// Entry lifetime of the chosen store (0 = never; memory ignores it).
    pub fn ttl(&self) -> u32 {
        match self {
            StoreSettings::Memory { .. } => 0,
            StoreSettings::File { ttl, .. } | StoreSettings::Memcached { ttl, .. } => *ttl,
        }
    }

    /// Whether mappings survive a restart of the relay.
    pub fn is_persistent(&self) -> bool {
        !matches!(self, StoreSettings::Memory { .. })
    }
}

/// A loaded configuration file.
#[derive(Debug, Clone)]
pub struct Settings {
    path: PathBuf,
    doc: Document,
}

impl Settings {
    /// Read and parse `path`.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            kind: ErrorKind::Unreadable(e),
        })?;
        Settings::parse(path, &text)
    }

    /// Parse `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigError> {
        let doc = document::parse(text).map_err(|e| ConfigError {
            path: path.to_owned(),
            kind: ErrorKind::Syntax(e),
        })?;
        Ok(Settings {
            path: path.to_owned(),
            doc,
        })
    }

    /// The file this came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, kind: ErrorKind) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            kind,
        }
    }

    fn has(&self, section: &str) -> bool {
        self.doc.sections.contains_key(section)
    }

    /// A non-empty value.
    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.doc
            .sections
            .get(section)
            .and_then(|keys| keys.get(key))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn require(&self, section: &'static str, key: &'static str) -> Result<&str, ConfigError> {
        if !self.has(section) {
            return Err(self.error(ErrorKind::MissingSection(section)));
        }
        self.get(section, key)
            .ok_or_else(|| self.error(ErrorKind::Missing { section, key }))
    }

    /// Parse an optional value.
    fn parse_opt<T>(
        &self,
        section: &'static str,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(section, key)
            .map(|v| parse(v).map_err(|problem| self.invalid(section, key, problem)))
            .transpose()
    }

    fn invalid(&self, section: &'static str, key: &'static str, problem: String) -> ConfigError {
        self.error(ErrorKind::Invalid {
            section,
            key,
            problem,
        })
    }

    /// Sections and keys this version does not use, one warning line each.
    pub fn warnings(&self) -> Vec<String> {
        let path = self.path.display();
        let mut out = Vec::new();
        if !self.doc.stray_keys.is_empty() {
            out.push(format!(
                "{path}: {}: keys outside any section, ignored",
                self.doc.stray_keys.join(", ")
            ));
        }
        for (section, keys) in &self.doc.sections {
            let Some((_, known)) = KNOWN.iter().find(|(s, _)| s == section) else {
                out.push(format!("{path}: [{section}]: unknown section, ignored"));
                continue;
            };
            let unknown: Vec<&str> = keys
                .keys()
                .map(String::as_str)
                .filter(|k| !known.contains(k))
                .collect();
            let (legacy, other): (Vec<&str>, Vec<&str>) = unknown
                .into_iter()
                .partition(|k| section == "memcache" && LEGACY_MEMCACHE.contains(k));
            if !legacy.is_empty() {
                out.push(format!(
                    "{path}: [{section}] {}: settings of the 2014 axrelay's memcached client, ignored",
                    legacy.join(", ")
                ));
            }
            if !other.is_empty() {
                out.push(format!(
                    "{path}: [{section}] {}: unknown {}, ignored",
                    other.join(", "),
                    if other.len() == 1 { "key" } else { "keys" }
                ));
            }
        }
        if self.has("memcache") && self.has("local_storage") {
            out.push(format!(
                "{path}: [local_storage]: ignored, because [memcache] is present"
            ));
        }
        if self.looks_2014() && self.get("hash", "identity").is_none() {
            out.push(format!(
                "{path}: [hash] identity: not set in a file of the 2014 axrelay's layout; \
                 pseudonyms are then made from bare JIDs and differ from the 2014 tool's, \
                 which hashed full JIDs: add `identity = full` to keep the old pseudonyms \
                 (or `identity = bare` to confirm new ones)"
            ));
        }
        out
    }

    /// Whether the file has what only the 2014 axrelay's files have: its
    /// memcached client's options, `[local_storage]` beside `[memcache]`
    /// (as in its sample.conf), or one of its published secrets.
    fn looks_2014(&self) -> bool {
        let legacy_keys = self
            .doc
            .sections
            .get("memcache")
            .is_some_and(|keys| keys.keys().any(|k| LEGACY_MEMCACHE.contains(&k.as_str())));
        let both_stores = self.has("memcache") && self.has("local_storage");
        let published = self
            .get("hash", "secret")
            .is_some_and(secrets::is_published);
        legacy_keys || both_stores || published
    }

    /// `[relay] jid`, if given (for `hash`, which does not need `[relay]`).
    pub fn relay_jid(&self) -> Result<Option<String>, ConfigError> {
        self.parse_opt("relay", "jid", value::domain)
    }

    /// `[relay]`, all required keys present and valid.
    pub fn relay(&self) -> Result<RelaySettings, ConfigError> {
        let jid_text = self.require("relay", "jid")?;
        let jid = value::domain(jid_text).map_err(|p| self.invalid("relay", "jid", p))?;
        let server = self.require("relay", "server")?.to_owned();
        let port_text = self.require("relay", "port")?;
        let port = value::port(port_text).map_err(|p| self.invalid("relay", "port", p))?;
        let password = self.require("relay", "password")?.to_owned();
        let runtime = match self.parse_opt("relay", "runtime", |v| {
            value::choice(v, &["smol", "blocking"])
        })? {
            Some("blocking") => Runtime::Blocking,
            _ => Runtime::Smol,
        };
        let keepalive = self
            .parse_opt("relay", "keepalive", |v| {
                value::seconds(v, value::KEEPALIVE)
            })?
            .unwrap_or(Duration::from_secs(60));
        let keepalive_mode = match self.parse_opt("relay", "keepalive_mode", |v| {
            value::choice(v, &["ping", "whitespace"])
        })? {
            Some("whitespace") => KeepaliveMode::Whitespace,
            _ => KeepaliveMode::Ping,
        };
        Ok(RelaySettings {
            jid,
            server,
            port,
            password,
            runtime,
            keepalive,
            keepalive_mode,
            proxy: self.parse_opt("relay", "proxy", value::proxy)?,
            connect_timeout: self.parse_opt("relay", "connect_timeout", |v| {
                value::seconds(v, value::TIMEOUT)
            })?,
            handshake_timeout: self.parse_opt("relay", "handshake_timeout", |v| {
                value::seconds(v, value::TIMEOUT)
            })?,
            server_domain: self.parse_opt("relay", "server_domain", value::domain)?,
            stats_interval: self
                .parse_opt("relay", "stats_interval", |v| {
                    let (_, min, max) = STATS_INTERVAL;
                    value::whole_seconds(v, min, max)
                })?
                .unwrap_or(Duration::from_secs(STATS_INTERVAL.0)),
        })
    }

    /// `[relay] control`: the control socket's path, or `None` for `none`.
    /// Read without the rest of `[relay]`, so that `ban` and `hash` work
    /// with a file that has only what they need.
    pub fn control(&self) -> Result<Option<PathBuf>, ConfigError> {
        match self.get("relay", "control") {
            None => Ok(Some(PathBuf::from(DEFAULT_CONTROL))),
            Some("none") => Ok(None),
            Some(path) if path.len() > MAX_SOCKET_PATH => Err(self.invalid(
                "relay",
                "control",
                format!("a socket path is at most {MAX_SOCKET_PATH} bytes"),
            )),
            Some(path) => Ok(Some(PathBuf::from(path))),
        }
    }

    /// `[metrics]`: where to serve them, if anywhere. Only a loopback
    /// address unless `allow_remote = yes`: the counters name no one, but
    /// their movement is traffic information.
    pub fn metrics(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(addr) = self.parse_opt("metrics", "listen", value::socket_addr)? else {
            return Ok(None);
        };
        let remote = self.parse_opt("metrics", "allow_remote", |v| {
            value::choice(v, &["yes", "no"])
        })? == Some("yes");
        if !addr.ip().is_loopback() && !remote {
            return Err(self.invalid(
                "metrics",
                "listen",
                format!(
                    "{addr} is not a loopback address; the metrics would be reachable from \
                     other machines (add `allow_remote = yes` to [metrics] if that is meant)"
                ),
            ));
        }
        Ok(Some(addr))
    }

    /// `[hash]`; the domain falls back to `[relay] jid`.
    pub fn hash(&self) -> Result<HashSettings, ConfigError> {
        let secret = self.require("hash", "secret")?.to_owned();
        let given = self.parse_opt("hash", "domain", value::domain)?;
        let domain_given = given.is_some();
        let domain = match given {
            Some(d) => d,
            None => self.relay_jid()?.ok_or_else(|| {
                self.error(ErrorKind::Missing {
                    section: "hash",
                    key: "domain",
                })
            })?,
        };
        let identity =
            match self.parse_opt("hash", "identity", |v| value::choice(v, &["bare", "full"]))? {
                Some("full") => IdentityMode::Full,
                _ => IdentityMode::Bare,
            };
        let resource = self.get("hash", "resource").unwrap_or("a").to_owned();
        Ok(HashSettings {
            secret,
            domain,
            domain_given,
            identity,
            resource,
        })
    }

    /// The store: `[memcache]` if present, else `[local_storage]` with a
    /// `path`, else memory.
    pub fn store(&self) -> Result<StoreSettings, ConfigError> {
        if self.has("memcache") {
            let servers_text = self.require("memcache", "servers")?;
            let servers =
                value::servers(servers_text).map_err(|p| self.invalid("memcache", "servers", p))?;
            return Ok(StoreSettings::Memcached {
                servers,
                encrypt: self.parse_opt("memcache", "encrypt", value::key32)?,
                ttl: self.parse_opt("memcache", "ttl", value::ttl)?.unwrap_or(0),
                timeout: self
                    .parse_opt("memcache", "timeout", |v| {
                        value::seconds(v, value::MEMCACHE_TIMEOUT)
                    })?
                    .unwrap_or(DEFAULT_MEMCACHE_TIMEOUT),
            });
        }
        let encrypt = self.parse_opt("local_storage", "encrypt", value::key32)?;
        let ttl = self
            .parse_opt("local_storage", "ttl", value::ttl)?
            .unwrap_or(0);
        Ok(match self.get("local_storage", "path") {
            Some(path) => StoreSettings::File {
                path: PathBuf::from(path),
                encrypt,
                ttl,
            },
            None => StoreSettings::Memory { encrypt },
        })
    }

    /// `[limits]` over the defaults.
    pub fn limits(&self) -> Result<Limits, ConfigError> {
        let mut limits = Limits::default();
        let range = |limit: Limit, max: usize| limit.minimum()..=max;
        if let Some(n) = self.parse_opt("limits", "max_stanza_bytes", |v| {
            value::count(v, range(Limit::MaxStanzaBytes, value::MAX_STANZA_BYTES))
        })? {
            limits.max_stanza_bytes = n;
        }
        if let Some(n) = self.parse_opt("limits", "max_depth", |v| {
            value::count(v, range(Limit::MaxDepth, value::MAX_DEPTH))
        })? {
            limits.max_depth = n;
        }
        Ok(limits)
    }

    /// The rate limits of `[limits]` over the defaults: `NAME_rate` per
    /// second (0 turns the limit off) and `NAME_burst` for each of
    /// `sender`, `whoami` and `global`.
    pub fn rates(&self) -> Result<RateLimits, ConfigError> {
        let mut rates = RateLimits::default();
        for (which, rate_key, burst_key) in RATE_KEYS {
            let mut rate = rates.get(which);
            if let Some(r) = self.parse_opt("limits", rate_key, value::rate)? {
                rate.per_second = r;
            }
            let burst = self.parse_opt("limits", burst_key, |v| {
                value::count(v, 1..=value::MAX_RATE as usize)
            })?;
            if let Some(b) = burst {
                rate.burst = u32::try_from(b).unwrap_or(value::MAX_RATE);
            }
            // A limit switched on without a burst gets one second's worth.
            if rate.per_second > 0.0 && rate.burst == 0 {
                rate.burst = (rate.per_second.ceil() as u32).max(1);
            }
            match which {
                RateOf::Messages => rates.messages = rate,
                RateOf::Whoami => rates.whoami = rate,
                RateOf::Global => rates.global = rate,
            }
        }
        Ok(rates)
    }

    /// Secrets anyone can know, and a pseudonym domain that is not the
    /// relay's: `run` refuses to start on any of these, `hash` warns.
    pub fn weaknesses(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        if let Some(secret) = self.get("hash", "secret") {
            if let Some(w) = secrets::hash_secret_weakness(secret) {
                out.push(self.invalid("hash", "secret", w.to_string()));
            }
        }
        let store_section = if self.has("memcache") {
            "memcache"
        } else {
            "local_storage"
        };
        if let Some(key) = self.get(store_section, "encrypt") {
            if let Some(w) = secrets::encrypt_weakness(key) {
                out.push(self.invalid(store_section, "encrypt", w.to_string()));
            }
        }
        if let (Ok(Some(hash_domain)), Ok(Some(jid))) = (
            self.parse_opt("hash", "domain", value::domain),
            self.relay_jid(),
        ) {
            if hash_domain != jid {
                out.push(self.invalid(
                    "hash",
                    "domain",
                    format!(
                        "'{hash_domain}' differs from [relay] jid '{jid}'; pseudonyms must be \
                         at the relay's own domain (remove the key, or make them equal)"
                    ),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
