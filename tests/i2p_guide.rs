//! The configuration snippets of docs/I2P.md stay valid: the Prosody block
//! passes `prosodyctl check config`, and each axrelay block parses with the
//! relay's own configuration code into what the guide says it does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axrelay::config::{Settings, StoreSettings};
use axrelay_test_support::docs::fenced_block;

fn guide() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/I2P.md");
    std::fs::read_to_string(&path).expect("docs/I2P.md is readable")
}

/// The fenced block that follows the `<!-- marker -->` line.
fn block(marker: &str) -> String {
    fenced_block(&guide(), &format!("<!-- {marker} -->"), "docs/I2P.md")
}

fn ensure_prosody() {
    if Command::new("prosodyctl").arg("--help").output().is_ok() {
        return;
    }
    let ok = Command::new("sh")
        .args(["-c", "(apt-get install -y prosody || (apt-get update && apt-get install -y prosody)) >/dev/null 2>&1"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "prosody is not installed and `apt-get install -y prosody` failed"
    );
}

#[test]
fn prosody_block_passes_prosodyctl_check_config() {
    ensure_prosody();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::create_dir_all(dir.path().join("certs")).expect("certs dir");
    let cfg: PathBuf = dir.path().join("prosody.cfg.lua");
    // Keep the check inside the temp dir: pid, data and certificates.
    let header = format!(
        "pidfile = \"{d}/prosody.pid\"\ndata_path = \"{d}/data\"\ncertificates = \"{d}/certs\"\nlog = {{ }}\n",
        d = dir.path().display()
    );
    std::fs::write(&cfg, header + &block("prosody-config")).expect("write config");
    let out = Command::new("prosodyctl")
        .arg("--config")
        .arg(&cfg)
        .args(["check", "config"])
        .output()
        .expect("run prosodyctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "prosodyctl check config failed:\n{text}"
    );
    assert!(text.contains("All checks passed"), "{text}");
}

fn parse(marker: &str) -> Settings {
    Settings::parse(Path::new("I2P.md"), &block(marker)).unwrap_or_else(|e| panic!("{marker}: {e}"))
}

#[test]
fn local_relay_block_parses() {
    let s = parse("axrelay-config: local");
    let relay = s.relay().expect("[relay]");
    assert!(
        relay.jid.eq_ignore_ascii_case("RELAY.b32.i2p"),
        "{}",
        relay.jid
    );
    assert_eq!((relay.server.as_str(), relay.port), ("127.0.0.1", 5347));
    assert_eq!(relay.proxy, None);
    assert!(s
        .hash()
        .expect("[hash]")
        .domain
        .eq_ignore_ascii_case("RELAY.b32.i2p"));
    let store = s.store().expect("store");
    assert!(matches!(store, StoreSettings::File { .. }), "{store:?}");
    assert!(store.encrypt().is_some());
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
}

#[test]
fn socks5_relay_block_parses_with_long_timeouts() {
    let s = parse("axrelay-config: socks5");
    let relay = s.relay().expect("[relay]");
    assert!(
        relay.server.eq_ignore_ascii_case("COMPONENT.b32.i2p"),
        "{}",
        relay.server
    );
    let proxy = relay.proxy.as_ref().expect("a proxy");
    assert_eq!((proxy.host.as_str(), proxy.port), ("127.0.0.1", 4447));
    assert_eq!(relay.connect_timeout, Some(Duration::from_secs(120)));
    assert_eq!(relay.handshake_timeout, Some(Duration::from_secs(120)));
    assert_eq!(relay.keepalive, Duration::from_secs(300));
    assert!(matches!(
        s.store().expect("store"),
        StoreSettings::Memcached { .. }
    ));
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
}
