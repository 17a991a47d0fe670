use std::path::Path;
use std::time::Duration;

use axrelay_proto::{IdentityMode, KeepaliveMode, Rate, RateLimits};

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
        "/etc/axrelay.conf: [relay] port: expected a port number from 1 to 65535, got 'abc'"
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
fn each_limit_is_reported_under_its_own_key_with_its_range() {
    for (from, to, expect) in [
        (
            "max_stanza_bytes = 100000",
            "max_stanza_bytes = 4095",
            "/etc/axrelay.conf: [limits] max_stanza_bytes: expected a whole number from 4096 \
             to 16777216, got '4095'",
        ),
        (
            "max_stanza_bytes = 100000",
            "max_stanza_bytes = 99999999999",
            "/etc/axrelay.conf: [limits] max_stanza_bytes: expected a whole number from 4096 \
             to 16777216, got '99999999999'",
        ),
        (
            "max_depth        = 16",
            "max_depth = 3",
            "/etc/axrelay.conf: [limits] max_depth: expected a whole number from 4 to 256, \
             got '3'",
        ),
        (
            "max_depth        = 16",
            "max_depth = 257",
            "/etc/axrelay.conf: [limits] max_depth: expected a whole number from 4 to 256, \
             got '257'",
        ),
    ] {
        let s = settings(&GOOD.replace(from, to));
        assert_eq!(message(relay_config(&s, [0; 32], false)), expect);
    }
    let s = settings(&GOOD.replace("max_stanza_bytes = 100000", "max_stanza_bytes = 16777216"));
    assert_eq!(s.limits().unwrap().max_stanza_bytes, 16 << 20);
}

#[test]
fn every_numeric_key_states_its_range() {
    let relay = |line: &str| GOOD.replace("keepalive = 30 ", &format!("{line}\nkeepalive = 30"));
    for (text, expect) in [
        (
            GOOD.replace("port     = 5347", "port = 70000"),
            "[relay] port: expected a port number from 1 to 65535, got '70000'",
        ),
        (
            GOOD.replace("keepalive = 30 ", "keepalive = 0.5"),
            "[relay] keepalive: expected a number of seconds from 1 to 86400, got '0.5'",
        ),
        (
            GOOD.replace("keepalive = 30 ", "keepalive = 86401"),
            "[relay] keepalive: expected a number of seconds from 1 to 86400, got '86401'",
        ),
        (
            relay("connect_timeout = 0"),
            "[relay] connect_timeout: expected a number of seconds greater than 0 and at most \
             3600, got '0'",
        ),
        (
            relay("handshake_timeout = 7200"),
            "[relay] handshake_timeout: expected a number of seconds greater than 0 and at \
             most 3600, got '7200'",
        ),
        (
            GOOD.replace("ttl      = 3600", "ttl = 4294967296"),
            "[local_storage] ttl: expected a whole number of seconds from 0 (never expire) to \
             4294967295, got '4294967296'",
        ),
        (
            "[memcache]\nservers = a\ntimeout = 61\n".to_owned(),
            "[memcache] timeout: expected a number of seconds greater than 0 and at most 60, \
             got '61'",
        ),
    ] {
        let s = settings(&text);
        let got = message(s.store().map(|_| ()).and_then(|()| s.relay().map(|_| ())));
        assert_eq!(got, format!("/etc/axrelay.conf: {expect}"));
    }
}

#[test]
fn quoted_values_are_refused_by_section_and_key() {
    let e = Settings::parse(
        Path::new("/etc/axrelay.conf"),
        &GOOD.replace("server   = 127.0.0.1", "server = \"127.0.0.1\""),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/axrelay.conf: line 3: [relay] server: the value is in quotes, which would be part \
         of it (values are taken as written); remove the quotes"
    );
    // A quoted secret never passes: it would change every pseudonym.
    let e = Settings::parse(
        Path::new("/etc/axrelay.conf"),
        &GOOD.replace(
            "secret   = 0123456789abcdef0123",
            "secret = '0123456789abcdef0123'",
        ),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "/etc/axrelay.conf: line 10: [hash] secret: the value is in quotes, which would be part \
         of it (values are taken as written); remove the quotes"
    );
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let s = settings(&format!("\u{feff}{GOOD}"));
    assert_eq!(s.relay().unwrap().jid, "axr.example.org");
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
}

#[test]
fn repeated_keys_and_sections_are_refused_naming_both_lines() {
    let e = Settings::parse(
        Path::new("/etc/axrelay.conf"),
        &GOOD.replace("port     = 5347", "port = 5347\nPort = 5348"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/axrelay.conf: line 5: [relay] port: repeated (first at line 4); keep one of the two"
    );
    let e =
        Settings::parse(Path::new("/etc/axrelay.conf"), &format!("{GOOD}[Hash]\n")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/axrelay.conf: line 23: [hash] repeated (first at line 9); merge the two sections \
         into one"
    );
}

#[test]
fn a_2014_file_without_identity_is_warned_about() {
    const WARNING: &str = "/etc/axrelay.conf: [hash] identity: not set in a file of the 2014 \
        axrelay's layout; pseudonyms are then made from bare JIDs and differ from the 2014 \
        tool's, which hashed full JIDs: add `identity = full` to keep the old pseudonyms (or \
        `identity = bare` to confirm new ones)";
    let w = settings(SAMPLE_2014).warnings();
    assert!(w.iter().any(|w| w == WARNING), "{w:?}");
    for identity in ["full", "bare"] {
        let text = SAMPLE_2014.replace(
            "domain = axr.lantern.io\n",
            &format!("domain = axr.lantern.io\nidentity = {identity}\n"),
        );
        let w = settings(&text).warnings();
        assert!(!w.iter().any(|w| w.contains("identity")), "{w:?}");
    }
    // A file of this version's layout has nothing to keep.
    let w = settings(&GOOD.replace("identity = full\n", "")).warnings();
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn unknown_sections_and_keys_are_warned_by_name() {
    let s = settings(&format!(
        "{}\n[extra]\nx = 1\n",
        GOOD.replace("[relay]\n", "[relay]\ncolour = blue\n")
    ));
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
fn rate_limits_have_defaults_keys_and_ranges() {
    let plan = relay_config(&settings(GOOD), [0; 32], false).unwrap();
    assert_eq!(plan.config.rates, RateLimits::default());

    let s = settings(&GOOD.replace(
        "max_depth        = 16",
        "max_depth = 16\nsender_rate = 2.5\nsender_burst = 7\nwhoami_rate = 0\n\
         global_rate = 100",
    ));
    let rates = relay_config(&s, [0; 32], false).unwrap().config.rates;
    assert_eq!(
        rates.messages,
        Rate {
            per_second: 2.5,
            burst: 7
        }
    );
    assert_eq!(rates.whoami.per_second, 0.0, "0 turns it off");
    assert_eq!(
        rates.global,
        Rate {
            per_second: 100.0,
            burst: 100
        },
        "a global limit without a burst gets one second's worth"
    );

    for (line, expect) in [
        (
            "sender_rate = -1",
            "/etc/axrelay.conf: [limits] sender_rate: expected a number per second from 0 (off) \
             to 1000000, got '-1'",
        ),
        (
            "whoami_rate = often",
            "/etc/axrelay.conf: [limits] whoami_rate: expected a number per second from 0 (off) \
             to 1000000, got 'often'",
        ),
        (
            "global_burst = 0",
            "/etc/axrelay.conf: [limits] global_burst: expected a whole number from 1 to \
             1000000, got '0'",
        ),
    ] {
        let s =
            settings(&GOOD.replace("max_depth        = 16", &format!("max_depth = 16\n{line}")));
        assert_eq!(message(relay_config(&s, [0; 32], false)), expect);
    }
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
