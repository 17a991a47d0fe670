//! From the file's settings to what the core and the runtimes take.

use std::time::Duration;

use axrelay_host::Options;
use axrelay_proto::{Config, ConfigError as CoreError};

use super::{ConfigError, ErrorKind, Runtime, Settings, StoreSettings};

/// Timeouts when a SOCKS5 proxy is in the path: an I2P or Tor tunnel needs
/// tens of seconds to build.
const PROXY_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything `run` needs, checked.
#[derive(Debug)]
pub struct RelayPlan {
    /// The core's configuration.
    pub config: Config,
    /// The runtime's connection options.
    pub options: Options,
    /// Which runtime.
    pub runtime: Runtime,
    /// Which store.
    pub store: StoreSettings,
}

/// Build the relay's configuration from `settings`. `id_key` seeds fresh
/// message ids; `log_sensitive` allows JIDs in debug logs.
pub fn relay_config(
    settings: &Settings,
    id_key: [u8; 32],
    log_sensitive: bool,
) -> Result<RelayPlan, ConfigError> {
    let relay = settings.relay()?;
    let hash = settings.hash()?;
    let store = settings.store()?;
    let limits = settings.limits()?;
    let rates = settings.rates()?;

    let mut config = Config::new(&relay.jid, &relay.password, hash.secret.as_bytes());
    config.identity = hash.identity;
    config.resource = hash.resource.clone();
    config.encrypt = store.encrypt();
    config.ttl = store.ttl();
    config.keepalive = relay.keepalive;
    config.keepalive_mode = relay.keepalive_mode;
    config.server_domain = relay.server_domain.clone();
    config.limits = limits;
    config.rates = rates;
    config.id_key = id_key;
    config.wall_clock = Some(axrelay_host::wall_clock());
    config.log_sensitive = log_sensitive;

    let mut options = Options::new(&relay.server, relay.port);
    options.proxy = relay.proxy.clone();
    options.stats_interval = relay.stats_interval;
    // Unacknowledged data for two intervals means the peer is gone; with
    // whitespace keepalives this is the only dead-peer check.
    options.dead_peer_timeout = Some(2 * relay.keepalive);
    let (connect_default, handshake_default) = if relay.proxy.is_some() {
        (PROXY_TIMEOUT, PROXY_TIMEOUT)
    } else {
        (options.connect_timeout, config.handshake_timeout)
    };
    options.connect_timeout = relay.connect_timeout.unwrap_or(connect_default);
    config.handshake_timeout = relay.handshake_timeout.unwrap_or(handshake_default);

    config.validate().map_err(|e| core_error(settings, e))?;
    Ok(RelayPlan {
        config,
        options,
        runtime: relay.runtime,
        store,
    })
}

/// Name the file's key behind a check of the core.
fn core_error(settings: &Settings, e: CoreError) -> ConfigError {
    let (section, key) = match &e {
        CoreError::BadDomain(_) => ("relay", "jid"),
        CoreError::BadResource(_) => ("hash", "resource"),
        CoreError::EmptySecret => ("hash", "secret"),
        // Set above, from the system clock: no file can cause it.
        CoreError::NoWallClock => ("relay", "runtime"),
        CoreError::BadLimit { limit, .. } => ("limits", limit.name()),
        CoreError::BadRate(which) => (
            "limits",
            super::RATE_KEYS
                .iter()
                .find(|(w, ..)| w == which)
                .map_or("sender_rate", |(_, rate, _)| rate),
        ),
    };
    ConfigError {
        path: settings.path().to_owned(),
        kind: ErrorKind::Invalid {
            section,
            key,
            problem: e.to_string(),
        },
    }
}
