use std::path::Path;
use std::time::Duration;

use axrelay_proto::{IdentityMode, KeepaliveMode};

use super::*;

/// The 2014 `sample.conf`, as published.
const SAMPLE_2014: &str = "\
[relay]
jid = axr.lantern.io
server = 127.0.0.1
port = 5347
password = secret

[hash]
secret = 2Wr0rSpTmncJe2UW/t6etJx0NqVBHS1wyFZI0zAdxS4=
domain = axr.lantern.io

[memcache]
servers = localhost
tcp_nodelay = True
ketama = True
noblock = True
num_replicas = 1
encrypt = zTLiKAKs6uGmq74enXRVOY4b2Va3XBeeG5r0tOBTObQ=
#username = axr
#password = b00z3C4$H

[local_storage]
#encrypt = zTLiKAKs6uGmq74enXRVOY4b2Va3XBeeG5r0tOBTObQ=
";

const GOOD: &str = "\
[relay]
jid      = axr.example.org    ; component JID
server   = 127.0.0.1
port     = 5347
password = a-long-component-password
runtime  = blocking           ; smol | blocking
keepalive = 30                ; seconds

[hash]
secret   = 0123456789abcdef0123
domain   = axr.example.org
identity = full
resource = r

[local_storage]
path     = /var/lib/axrelay/pseudonyms.db
encrypt  = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
ttl      = 3600

[limits]
max_stanza_bytes = 100000
max_depth        = 16
";

fn settings(text: &str) -> Settings {
    Settings::parse(Path::new("/etc/axrelay.conf"), text).unwrap()
}

fn message(r: Result<impl std::fmt::Debug, ConfigError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn the_2014_sample_loads_and_its_pylibmc_keys_are_named() {
    let s = settings(SAMPLE_2014);
    let w = s.warnings().join("\n");
    for key in ["tcp_nodelay", "ketama", "noblock", "num_replicas"] {
        assert!(w.contains(key), "{w}");
    }
    assert!(w.contains("[local_storage]: ignored"), "{w}");
    let hash = s.hash().unwrap();
    assert_eq!(hash.domain, "axr.lantern.io");
    assert_eq!(hash.identity, IdentityMode::Bare);
    assert_eq!(hash.resource, "a");
    match s.store().unwrap() {
        StoreSettings::Memcached {
            servers,
            encrypt,
            ttl,
            timeout,
        } => {
            assert_eq!(servers, vec!["localhost:11211"]);
            assert!(encrypt.is_some());
            assert_eq!(ttl, 0);
            assert_eq!(timeout, DEFAULT_MEMCACHE_TIMEOUT);
        }
        other => panic!("{other:?}"),
    }
    let weak: Vec<String> = s.weaknesses().iter().map(|e| e.to_string()).collect();
    assert_eq!(weak.len(), 2, "{weak:?}");
    assert!(weak[0].starts_with("/etc/axrelay.conf: [hash] secret: "));
    assert!(weak[1].starts_with("/etc/axrelay.conf: [memcache] encrypt: "));
}

#[test]
fn a_complete_file_maps_to_the_core_config() {
    let s = settings(GOOD);
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
    assert!(s.weaknesses().is_empty());
    let plan = relay_config(&s, [9; 32], true).unwrap();
    let c = &plan.config;
    assert_eq!(c.domain, "axr.example.org");
    assert_eq!(c.secret, b"0123456789abcdef0123");
    assert_eq!(c.identity, IdentityMode::Full);
    assert_eq!(c.resource, "r");
    assert_eq!(c.encrypt, Some(std::array::from_fn(|i| i as u8)));
    assert_eq!(c.ttl, 3600);
    assert_eq!(c.keepalive, Duration::from_secs(30));
    assert_eq!(c.keepalive_mode, KeepaliveMode::Ping);
    assert_eq!(
        plan.options.dead_peer_timeout,
        Some(Duration::from_secs(60))
    );
    assert_eq!(c.limits.max_stanza_bytes, 100_000);
    assert_eq!(c.limits.max_depth, 16);
    assert_eq!(c.id_key, [9; 32]);
    assert!(c.log_sensitive);
    assert_eq!(plan.options.server, "127.0.0.1");
    assert_eq!(plan.options.port, 5347);
    assert_eq!(plan.runtime, Runtime::Blocking);
    assert!(matches!(plan.store, StoreSettings::File { ttl: 3600, .. }));
}

#[test]
fn keepalive_mode_is_ping_or_whitespace() {
    let with = |mode: &str| {
        GOOD.replace(
            "keepalive = 30",
            &format!("keepalive = 30\nkeepalive_mode = {mode}"),
        )
    };
    let s = settings(&with("whitespace"));
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
    let plan = relay_config(&s, [9; 32], false).unwrap();
    assert_eq!(plan.config.keepalive_mode, KeepaliveMode::Whitespace);
    let plan = relay_config(&settings(&with("ping")), [9; 32], false).unwrap();
    assert_eq!(plan.config.keepalive_mode, KeepaliveMode::Ping);
    let e = relay_config(&settings(&with("pong")), [9; 32], false).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("[relay] keepalive_mode"), "{msg}");
    assert!(msg.contains("whitespace"), "{msg}");
}

#[test]
fn errors_name_file_section_and_key() {
    let s = settings(&GOOD.replace("port     = 5347", "port = abc"));
    assert_eq!(
        message(s.relay()),
        "/etc/axrelay.conf: [relay] port: expected a port number, got 'abc'"
    );
    let s = settings(&GOOD.replace("server   = 127.0.0.1\n", ""));
    assert_eq!(
        message(s.relay()),
        "/etc/axrelay.conf: [relay] server: missing (required)"
    );
    let s = settings("[hash]\nsecret = x\n");
    assert_eq!(
        message(s.relay()),
        "/etc/axrelay.conf: [relay]: section missing"
    );
    assert_eq!(
        message(s.hash()),
        "/etc/axrelay.conf: [hash] domain: missing (required)"
    );
    let s = settings(&GOOD.replace("identity = full", "identity = partial"));
    assert_eq!(
        message(s.hash()),
        "/etc/axrelay.conf: [hash] identity: expected bare or full, got 'partial'"
    );
    let s = settings(&GOOD.replace("max_depth        = 16", "max_depth = 2"));
    assert!(message(relay_config(&s, [0; 32], false))
        .starts_with("/etc/axrelay.conf: [limits] max_depth: "));
    assert_eq!(
        message(Settings::parse(Path::new("/etc/axrelay.conf"), "[relay\njid").map(|_| ())),
        "/etc/axrelay.conf: line 1: expected ']' to close the section name"
    );
}

#[test]
fn each_small_limit_is_reported_under_its_own_key_with_its_minimum() {
    for (from, to, expect) in [
        (
            "max_stanza_bytes = 100000",
            "max_stanza_bytes = 4095",
            "/etc/axrelay.conf: [limits] max_stanza_bytes: limit max_stanza_bytes is too small \
             (at least 4096)",
        ),
        (
            "max_depth        = 16",
            "max_depth = 3",
            "/etc/axrelay.conf: [limits] max_depth: limit max_depth is too small (at least 4)",
        ),
    ] {
        let s = settings(&GOOD.replace(from, to));
        assert_eq!(message(relay_config(&s, [0; 32], false)), expect);
    }
}

#[test]
fn unknown_sections_and_keys_are_warned_by_name() {
    let s = settings(&format!("{GOOD}\n[extra]\nx = 1\n[relay]\ncolour = blue\n"));
    let w = s.warnings().join("\n");
    assert!(w.contains("[extra]: unknown section"), "{w}");
    assert!(w.contains("[relay] colour: unknown key"), "{w}");
}

#[test]
fn store_choice() {
    let memory = settings("[hash]\nsecret = x\n");
    assert_eq!(
        memory.store().unwrap(),
        StoreSettings::Memory { encrypt: None }
    );
    let s = settings("[memcache]\n");
    assert_eq!(
        message(s.store()),
        "/etc/axrelay.conf: [memcache] servers: missing (required)"
    );
    let s = settings("[memcache]\nservers = a, b:1\ntimeout = 2\nttl = 5\n");
    assert!(matches!(
        s.store().unwrap(),
        StoreSettings::Memcached { ref servers, ttl: 5, timeout, .. }
            if servers.len() == 2 && timeout == Duration::from_secs(2)
    ));
    let s = settings("[local_storage]\npath = /x\nencrypt = c2hvcnQ=\n");
    assert!(message(s.store()).starts_with(
        "/etc/axrelay.conf: [local_storage] encrypt: expected base64 of exactly 32 bytes"
    ));
}

#[test]
fn a_foreign_hash_domain_is_a_weakness() {
    let s = settings(&GOOD.replace("domain   = axr.example.org", "domain = AXR.other.org"));
    let weak: Vec<String> = s.weaknesses().iter().map(|e| e.to_string()).collect();
    assert_eq!(weak.len(), 1);
    assert!(weak[0].starts_with("/etc/axrelay.conf: [hash] domain: 'axr.other.org' differs"));
    // Case alone is no difference: both sides are normalised.
    let s = settings(&GOOD.replace("domain   = axr.example.org", "domain = AXR.example.org"));
    assert!(s.weaknesses().is_empty());
}

#[test]
fn a_proxy_lengthens_the_default_timeouts() {
    let s = settings(&GOOD.replace("[hash]", "proxy = socks5://127.0.0.1:4447\n[hash]"));
    let plan = relay_config(&s, [0; 32], false).unwrap();
    assert_eq!(
        plan.options.proxy,
        Some(Proxy::parse("socks5://127.0.0.1:4447").unwrap())
    );
    assert_eq!(plan.options.connect_timeout, Duration::from_secs(60));
    assert_eq!(plan.config.handshake_timeout, Duration::from_secs(60));
}

const EXAMPLE: &str = include_str!("../../axrelay.conf.example");

#[test]
fn the_example_file_loads_and_its_placeholders_are_refused() {
    let s = settings(EXAMPLE);
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
    s.relay().unwrap();
    assert!(matches!(s.store().unwrap(), StoreSettings::File { .. }));
    let weak: Vec<String> = s.weaknesses().iter().map(|e| e.to_string()).collect();
    assert!(weak.iter().any(|w| w.contains("[hash] secret")), "{weak:?}");
}

#[test]
fn every_key_of_the_example_is_known_and_valid() {
    // Uncomment every `; key = value` line, with real keys for placeholders.
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let text: String = EXAMPLE
        .lines()
        .map(|l| {
            let l = l.replace("<output of axrelay secret>", key);
            let setting = |rest: &str| {
                rest.split_once('=').is_some_and(|(k, _)| {
                    let k = k.trim_end();
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
            };
            match l.strip_prefix("; ") {
                Some(rest) if setting(rest) || rest == "[memcache]" => format!("{rest}\n"),
                _ => format!("{l}\n"),
            }
        })
        .collect();
    let s = settings(&text);
    let used: usize = s.doc.sections.values().map(|k| k.len()).sum();
    let known: usize = KNOWN.iter().map(|(_, keys)| keys.len()).sum();
    assert_eq!(used, known, "{text}");
    assert_eq!(s.warnings().len(), 1, "{:?}", s.warnings());
    let plan = relay_config(&s, [0; 32], false).unwrap();
    assert!(plan.options.proxy.is_some());
    assert!(
        matches!(plan.store, StoreSettings::Memcached { ref servers, .. } if servers.len() == 2)
    );
}

#[test]
fn stats_interval_has_a_default_and_a_range() {
    let s = settings(GOOD);
    assert_eq!(s.relay().unwrap().stats_interval, Duration::from_secs(300));
    let with =
        |v: &str| settings(&GOOD.replace("[hash]", &format!("stats_interval = {v}\n[hash]")));
    assert_eq!(
        with("60").relay().unwrap().stats_interval,
        Duration::from_secs(60)
    );
    for bad in ["5", "86401", "1.5", "x"] {
        assert_eq!(
            message(with(bad).relay()),
            format!(
                "/etc/axrelay.conf: [relay] stats_interval: expected a whole number of seconds \
                 from 10 to 86400, got '{bad}'"
            )
        );
    }
}

#[test]
fn metrics_are_off_by_default_and_loopback_unless_allowed() {
    assert_eq!(settings(GOOD).metrics().unwrap(), None);
    let with = |v: &str| settings(&format!("{GOOD}\n[metrics]\n{v}\n"));
    assert_eq!(
        with("listen = 127.0.0.1:9150").metrics().unwrap(),
        Some("127.0.0.1:9150".parse().unwrap())
    );
    assert_eq!(
        with("listen = [::1]:9150").metrics().unwrap(),
        Some("[::1]:9150".parse().unwrap())
    );
    assert_eq!(
        message(with("listen = 0.0.0.0:9150").metrics()),
        "/etc/axrelay.conf: [metrics] listen: 0.0.0.0:9150 is not a loopback address; the \
         metrics would be reachable from other machines (add `allow_remote = yes` to \
         [metrics] if that is meant)"
    );
    assert!(with("listen = 0.0.0.0:9150\nallow_remote = yes")
        .metrics()
        .unwrap()
        .is_some());
    assert_eq!(
        message(with("listen = localhost:9150").metrics()),
        "/etc/axrelay.conf: [metrics] listen: expected an address and port such as \
         127.0.0.1:9150, got 'localhost:9150'"
    );
}
