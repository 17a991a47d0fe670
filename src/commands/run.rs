//! `axrelay run`: check everything, open the store, relay until a signal.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use axrelay::admin::Admin;
use axrelay::config::{relay_config, secrets, Runtime, Settings, StoreSettings};
use axrelay::control;
use axrelay::logging;
use axrelay::store::{self, MemcachedStore};
use axrelay_host::metrics::{http, Metrics};
use axrelay_host::Exit;
use axrelay_proto::{DisconnectReason, Relay, Store};

use super::{random_key, start, Status};
use crate::cli::RunArgs;
use crate::launch;

/// Run the relay; the status follows `--help`.
pub fn run(args: &RunArgs) -> Status {
    match try_run(args) {
        Ok(status) | Err(status) => status,
    }
}

fn try_run(args: &RunArgs) -> Result<Status, Status> {
    let (settings, reopen) = start(&args.common)?;
    let weaknesses = settings.weaknesses();
    if !weaknesses.is_empty() {
        for e in weaknesses {
            logging::fatal(e);
        }
        return Err(Status::Config);
    }
    let mut plan = relay_config(&settings, random_key()?, args.log_sensitive).map_err(|e| {
        logging::fatal(e);
        Status::Config
    })?;
    plan.config.log_decisions = args.common.debug;
    let metrics_at = settings.metrics().map_err(|e| {
        logging::fatal(e);
        Status::Config
    })?;
    let path = settings.path().display();
    if let Some(w) = password_warning(&settings, &plan.config.password) {
        log::warn!("{w}");
    }
    if let Some(w) = store_warning(&plan.store) {
        log::warn!("{w}");
    }
    if args.log_sensitive {
        log::warn!(
            "--log-sensitive: debug messages name people and their pseudonyms{}; \
             keep such logs private and short-lived",
            if args.common.debug {
                ""
            } else {
                " (only with -d)"
            }
        );
    }

    let control_at = settings.control().map_err(|e| {
        logging::fatal(e);
        Status::Config
    })?;
    let store = open_store(&plan.store)?;
    // Removed again when `run` returns.
    let _control = control_at.and_then(|path| {
        let admin = Admin::new(
            store.clone(),
            &plan.config.domain,
            &plan.config.secret,
            plan.store.encrypt(),
        );
        control::server::serve(&path, Arc::new(admin))
    });
    if let Some(addr) = metrics_at {
        plan.options.metrics = Some(serve_metrics(addr)?);
    }
    let domain = plan.config.domain.clone();
    let relay = Relay::new(plan.config).map_err(|e| {
        logging::fatal(format!("{path}: {e}"));
        Status::Config
    })?;
    log::info!(
        "axrelay {}: component {domain} via {}:{}{}, {} runtime, {} store",
        env!("CARGO_PKG_VERSION"),
        plan.options.server,
        plan.options.port,
        if plan.options.proxy.is_some() {
            " (SOCKS5 proxy)"
        } else {
            ""
        },
        match plan.runtime {
            Runtime::Smol => "smol",
            Runtime::Blocking => "blocking",
        },
        store.kind()
    );

    // Under systemd (`Type=notify`): report readiness and the connection's
    // state there too.
    plan.options.notify_socket = std::env::var("NOTIFY_SOCKET").ok();
    let exit = launch::run(plan.runtime, relay, plan.options, store, reopen).map_err(|e| {
        logging::fatal(e);
        Status::Failure
    })?;
    Ok(match exit {
        Exit::Stopped => {
            log::info!("stopped");
            Status::Ok
        }
        Exit::Refused(reason) => {
            let advice = match reason {
                DisconnectReason::NotAuthorized => format!(
                    "check [relay] password in {path} against the component secret in the \
                     server's configuration"
                ),
                DisconnectReason::HostUnknown => format!(
                    "check [relay] jid in {path} against the component domain in the server's \
                     Component/listener configuration"
                ),
                _ => format!(
                    "check [relay] jid and password in {path} against the server's component \
                     settings"
                ),
            };
            logging::fatal(format!("{reason}; {advice}"));
            Status::Refused
        }
    })
}

/// Listen for scrapes at `addr` (before connecting, so that a taken port
/// is an error at start, not a silent absence).
fn serve_metrics(addr: SocketAddr) -> Result<Metrics, Status> {
    let failed = |e: std::io::Error| {
        logging::fatal(format!(
            "cannot serve metrics at {addr} ([metrics] listen): {e}"
        ));
        Status::Failure
    };
    let listener = TcpListener::bind(addr).map_err(failed)?;
    let metrics = Metrics::new();
    http::serve(listener, metrics.clone()).map_err(failed)?;
    log::info!("metrics at http://{addr}/metrics");
    Ok(metrics)
}

/// Open the store; a memcached that does not answer yet is only a warning,
/// since the relay answers lookups with errors until it is back.
fn open_store(settings: &StoreSettings) -> Result<Arc<dyn Store>, Status> {
    let failed = |e: &dyn std::fmt::Display| {
        logging::fatal(format!("cannot open the mapping store: {e}"));
        Status::Failure
    };
    if let StoreSettings::Memcached {
        servers, timeout, ..
    } = settings
    {
        let client = MemcachedStore::connect(servers, *timeout).map_err(|e| failed(&e))?;
        if let Err(e) = client.probe() {
            log::warn!("{e}; lookups fail until it answers");
        }
        return Ok(Arc::new(client));
    }
    store::open(settings).map_err(|e| failed(&e))
}

/// The warning about a published component password, if it is one.
pub(super) fn password_warning(settings: &Settings, password: &str) -> Option<String> {
    secrets::PUBLISHED_PASSWORDS.contains(&password).then(|| {
        format!(
            "{}: [relay] password: a published sample value; any local process that \
             guesses it can take over the component domain. Set a long random one on both \
             sides (`axrelay secret` makes one)",
            settings.path().display()
        )
    })
}

/// The warning about a store that forgets or keeps mappings in clear.
pub(super) fn store_warning(store: &StoreSettings) -> Option<String> {
    match store {
        StoreSettings::Memory { .. } => Some(
            "no [local_storage] path and no [memcache]: mappings live in memory, and a \
             restart loses them (people must send /whoami again before they can be reached)"
                .to_owned(),
        ),
        StoreSettings::File { encrypt: None, .. }
        | StoreSettings::Memcached { encrypt: None, .. } => Some(
            "no encrypt key for the store: mappings are stored in clear, and a copy of \
             the store de-anonymizes everyone in it (add `encrypt = ` output of `axrelay secret`)"
                .to_owned(),
        ),
        _ => None,
    }
}
