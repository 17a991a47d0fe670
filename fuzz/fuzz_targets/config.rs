//! The binary's configuration parser (SPEC §7) on arbitrary files:
//! `axrelay::config::Settings::parse` and every accessor `run` and `hash`
//! use, then `relay_config`.
//!
//! * Nothing panics.
//! * Every error names the file.
//! * No error message repeats the value of a secret key (`[relay]
//!   password`, `[hash] secret`, `encrypt`), unless that value is also given
//!   to a key whose value errors may quote.
//! * A configuration `relay_config` accepts gives a relay that starts: its
//!   stream header is well-formed XML addressed to exactly the configured
//!   domain.
#![no_main]

use std::path::Path;
use std::time::Instant;

use axrelay::config::{relay_config, ConfigError, Settings};
use axrelay_proto::Relay;
use libfuzzer_sys::fuzz_target;
use rxml::error::EndOrError;
use rxml::{Event, Namespace, Parse, Parser};

const PATH: &str = "fuzz.conf";

/// The text of the parser's sources: a secret value that occurs in it might
/// be part of a fixed message, so it is not a useful probe.
const SOURCES: &[&str] = &[
    include_str!("../../src/config/mod.rs"),
    include_str!("../../src/config/value.rs"),
    include_str!("../../src/config/document.rs"),
    include_str!("../../src/config/assemble.rs"),
    include_str!("../../src/config/secrets.rs"),
    include_str!("../../proto/src/config.rs"),
];

/// (section, key) whose values are secrets.
const SECRETS: &[(&str, &str)] = &[
    ("relay", "password"),
    ("hash", "secret"),
    ("memcache", "encrypt"),
    ("local_storage", "encrypt"),
];

/// Values of secret keys, as a simple reading of the file finds them: only
/// distinctive ones (12+ characters, no spaces) that no other line of the
/// file and no fixed message text also holds.
fn secret_values(text: &str) -> Vec<String> {
    let mut section = String::new();
    let mut secrets = Vec::new();
    let mut others = Vec::new();
    // The INI parser ends lines at a lone `\r` too.
    for line in text.split(['\n', '\r']) {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix('[') {
            section = rest.split(']').next().unwrap_or("").trim().to_lowercase();
            // The INI parser also reads a key after `]` on the same line.
            others.push(line.to_owned());
            continue;
        }
        let Some(i) = line.find(['=', ':']) else {
            continue;
        };
        let key = line[..i].trim().to_lowercase();
        let value = line[i + 1..].trim();
        let is_secret = SECRETS.iter().any(|(s, k)| *s == section && *k == key);
        if is_secret {
            // Inline comments and surrounding text do not matter: the
            // longest space-free piece is what would be echoed.
            for piece in value.split_whitespace() {
                if piece.len() >= 12 {
                    secrets.push(piece.to_owned());
                }
            }
        } else {
            others.push(line.to_owned());
        }
    }
    secrets.retain(|s| {
        !others.iter().any(|o| o.contains(s.as_str()))
            && !SOURCES.iter().any(|src| src.contains(s.as_str()))
            && !PATH.contains(s.as_str())
    });
    secrets
}

fn check_error(e: &ConfigError, secrets: &[String]) {
    let msg = e.to_string();
    assert!(msg.starts_with(PATH), "error does not name the file: {msg}");
    for s in secrets {
        assert!(
            !msg.contains(s.as_str()),
            "error message repeats a secret value {s:?}: {msg}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let secrets = secret_values(&text);
    let settings = match Settings::parse(Path::new(PATH), &text) {
        Ok(s) => s,
        Err(e) => return check_error(&e, &secrets),
    };
    for w in settings.warnings() {
        assert!(w.starts_with(PATH), "warning does not name the file: {w}");
    }
    for e in settings.weaknesses() {
        check_error(&e, &secrets);
    }
    let results = [
        settings.relay_jid().map(|_| ()),
        settings.relay().map(|_| ()),
        settings.hash().map(|_| ()),
        settings.store().map(|_| ()),
        settings.limits().map(|_| ()),
    ];
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        check_error(r, &secrets);
    }
    let plan = match relay_config(&settings, [3; 32], false) {
        Ok(p) => p,
        Err(e) => return check_error(&e, &secrets),
    };
    let domain = plan.config.domain.clone();
    let mut relay = Relay::new(plan.config).expect("relay_config gave a config Relay::new refuses");
    relay.handle_connected(Instant::now());
    let header = relay.poll_transmit().expect("a stream header");
    let mut p = Parser::new();
    let mut s: &[u8] = &header;
    match p.parse(&mut s, false) {
        Ok(Some(Event::StartElement(_, (ns, name), attrs))) => {
            assert_eq!(ns.as_str(), "http://etherx.jabber.org/streams");
            assert_eq!(name.as_str(), "stream");
            assert_eq!(
                attrs.get(&Namespace::NONE, "to").map(String::as_str),
                Some(domain.as_str()),
                "stream header addressed to another domain"
            );
        }
        Ok(other) => panic!("stream header parsed as {other:?}"),
        Err(EndOrError::NeedMoreData) => panic!("incomplete stream header"),
        Err(EndOrError::Error(e)) => panic!(
            "stream header is not well-formed ({e}): {}",
            String::from_utf8_lossy(&header)
        ),
    }
});
