//! `axrelay check`: the whole configuration, the store and the way to the
//! server, checked the way `run` would meet them, with a line for each.
//!
//! Everything goes to stdout; nothing is written to the store, and a
//! database file that does not exist yet is not created.

use std::net::ToSocketAddrs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use axrelay::config::{relay_config, ConfigError, RelayPlan, Settings, StoreSettings};
use axrelay::control::trust;
use axrelay::store::{FileStore, MemcachedStore};
use axrelay_host::connect::{self, Target};
use axrelay_proto::IdentityMode;

use super::run::{password_warning, store_warning};
use super::Status;
use crate::cli::CheckArgs;

/// Run `check`; the status follows `--help`.
pub fn check(args: &CheckArgs) -> Status {
    println!("checking {}", args.config.display());
    let settings = match Settings::load(&args.config) {
        Ok(s) => s,
        Err(e) => return config_errors(&[e]),
    };
    for w in settings.warnings() {
        println!("warning: {w}");
    }
    let plan = match plan(&settings) {
        Ok(plan) => plan,
        Err(errors) => return config_errors(&errors),
    };
    for w in [
        password_warning(&settings, &plan.config.password),
        store_warning(&plan.store),
    ]
    .into_iter()
    .flatten()
    {
        println!("warning: {w}");
    }
    println!(
        "config: ok: component {}, {} pseudonyms, server {}:{}{}",
        plan.config.domain,
        match plan.config.identity {
            IdentityMode::Bare => "bare-JID",
            IdentityMode::Full => "full-JID",
        },
        plan.options.server,
        plan.options.port,
        match &plan.options.proxy {
            Some(proxy) => format!(" through SOCKS5 proxy {proxy}"),
            None => String::new(),
        }
    );
    let control_ok = match settings.control() {
        Ok(Some(path)) => check_control(&path),
        _ => true,
    };
    let store_ok = check_store(&plan.store);
    let server_ok = check_server(&plan);
    if control_ok && store_ok && server_ok {
        println!("all checks passed");
        Status::Ok
    } else {
        println!("some checks failed");
        Status::Failure
    }
}

/// Every configuration error `run` could meet, not only the first.
fn plan(settings: &Settings) -> Result<RelayPlan, Vec<ConfigError>> {
    let mut errors: Vec<ConfigError> = [
        settings.relay().err(),
        settings.hash().err(),
        settings.store().err(),
        settings.limits().err(),
        settings.control().err(),
    ]
    .into_iter()
    .flatten()
    .collect();
    errors.extend(settings.weaknesses());
    if !errors.is_empty() {
        return Err(errors);
    }
    // The id key seeds the caches' hashing and the ids of the relay's own
    // replies; nothing is cached or relayed here.
    relay_config(settings, [0; 32], false).map_err(|e| vec![e])
}

fn config_errors(errors: &[ConfigError]) -> Status {
    for e in errors {
        println!("error: {e}");
    }
    println!("the configuration is not valid: `run` would exit with status 2");
    Status::Config
}

/// The control socket's directory, if it exists, against the rules `run`
/// and the commands apply (SPEC §7). Its owner is not judged when checking
/// as root: root cannot tell which user `run` will run as.
fn check_control(path: &Path) -> bool {
    let dir = trust::directory_of(path);
    if !dir.is_dir() {
        println!(
            "control: ok: {} does not exist yet; `run` serves {} once it does",
            dir.display(),
            path.display()
        );
        return true;
    }
    let owner = (trust::own_uid() == 0)
        .then(|| std::fs::metadata(dir).ok().map(|m| m.uid()))
        .flatten();
    match trust::check_directory(dir, owner) {
        Ok(()) => {
            println!("control: ok: socket {}", path.display());
            true
        }
        Err(why) => {
            println!(
                "control: error: {}: {why}; `run` would serve no control socket",
                path.display()
            );
            false
        }
    }
}

fn check_store(store: &StoreSettings) -> bool {
    match store {
        StoreSettings::Memory { .. } => {
            println!("store: ok: in memory");
            true
        }
        StoreSettings::File { path, .. } => check_file(path),
        StoreSettings::Memcached {
            servers, timeout, ..
        } => {
            let answer = match MemcachedStore::connect(servers, *timeout) {
                Ok(client) => client.probe().map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match answer {
                Ok(()) => {
                    println!("store: ok: memcached {} answers", servers.join(", "));
                    true
                }
                Err(e) => {
                    println!("store: error: {e}");
                    false
                }
            }
        }
    }
}

fn check_file(path: &Path) -> bool {
    if !path.exists() {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if dir.is_dir() {
            println!(
                "store: ok: database file {} does not exist yet; `run` creates it in {}, which \
                 must be writable by the user it runs as",
                path.display(),
                dir.display()
            );
            return true;
        }
        println!(
            "store: error: {}: directory {} does not exist; create it, owned by the user \
             axrelay runs as",
            path.display(),
            dir.display()
        );
        return false;
    }
    match FileStore::open(path) {
        Ok(_) => {
            println!("store: ok: database file {} opens", path.display());
            true
        }
        // The relay holds it: the store is what it uses right now.
        Err(e) if e.is_in_use() => {
            println!(
                "store: ok: database file {} is in use by a running relay (not opened)",
                path.display()
            );
            true
        }
        Err(e) => {
            println!("store: error: {e}");
            false
        }
    }
}

/// Resolve the first host on the way (the proxy, if any, else the server)
/// and open the connection `run` would open.
fn check_server(plan: &RelayPlan) -> bool {
    let (role, host, port) = match &plan.options.proxy {
        Some(proxy) => ("proxy", proxy.host.as_str(), proxy.port),
        None => ("server", plan.options.server.as_str(), plan.options.port),
    };
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<String> = addrs.map(|a| a.to_string()).collect();
            println!("{role}: {host} resolves to {}", addrs.join(", "));
        }
        Err(e) => {
            println!("{role}: error: cannot resolve {host}: {e}");
            return false;
        }
    }
    let target = Target::new(&plan.options);
    match connect::open(&target) {
        Ok(_) => {
            println!("server: ok: connected to {target}");
            true
        }
        Err(e) => {
            println!("server: error: {e}");
            false
        }
    }
}
