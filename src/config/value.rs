//! Parsers for single values. Each returns the problem as a sentence that
//! ends up after `FILE: [section] key: `; secrets are never echoed.

use std::ops::RangeInclusive;
use std::time::Duration;

use axrelay_host::socks5::Proxy;
use data_encoding::{BASE64, BASE64_NOPAD};

/// A TCP port, 1–65535.
pub fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("expected a port number from 1 to 65535, got '{s}'")),
    }
}

/// Bounds of a number of seconds: the lowest allowed (`None`: anything
/// above 0) and the highest.
#[derive(Debug, Clone, Copy)]
pub struct SecondsRange {
    min: Option<u32>,
    max: u32,
}

/// `[relay] keepalive`: a ping at least every second, at most once a day.
pub const KEEPALIVE: SecondsRange = SecondsRange {
    min: Some(1),
    max: 86_400,
};

/// `[relay] connect_timeout` and `handshake_timeout`: an I2P tunnel may take
/// minutes to build, more than an hour is a mistake.
pub const TIMEOUT: SecondsRange = SecondsRange {
    min: None,
    max: 3_600,
};

/// `[memcache] timeout`: each request also runs under the fixed 5 s store
/// deadline, so more than a minute only delays noticing a dead server.
pub const MEMCACHE_TIMEOUT: SecondsRange = SecondsRange { min: None, max: 60 };

/// Highest `[limits] max_stanza_bytes`: 16 MiB, a quarter of the memory
/// the stanzas waiting for the store may hold.
pub const MAX_STANZA_BYTES: usize = 16 << 20;

/// Highest `[limits] max_depth`.
pub const MAX_DEPTH: usize = 256;

/// A number of seconds within `range`, fractions allowed (`0.5`).
pub fn seconds(s: &str, range: SecondsRange) -> Result<Duration, String> {
    let bad = || match range.min {
        Some(min) => format!(
            "expected a number of seconds from {min} to {}, got '{s}'",
            range.max
        ),
        None => format!(
            "expected a number of seconds greater than 0 and at most {}, got '{s}'",
            range.max
        ),
    };
    let secs: f64 = s.parse().map_err(|_| bad())?;
    let above_min = match range.min {
        Some(min) => secs >= f64::from(min),
        None => secs > 0.0,
    };
    if !(secs.is_finite() && above_min && secs <= f64::from(range.max)) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A whole number of seconds from `min` to `max`.
pub fn whole_seconds(s: &str, min: u64, max: u64) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "expected a whole number of seconds from {min} to {max}, got '{s}'"
        )),
    }
}

/// `IP:port` (`[v6]:port` for IPv6), port not 0.
pub fn socket_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    match s.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        _ => Err(format!(
            "expected an address and port such as 127.0.0.1:9150, got '{s}'"
        )),
    }
}

/// A whole number of seconds, `0` meaning "never expire".
pub fn ttl(s: &str) -> Result<u32, String> {
    s.parse::<u32>().map_err(|_| {
        format!(
            "expected a whole number of seconds from 0 (never expire) to {}, got '{s}'",
            u32::MAX
        )
    })
}

/// A whole number within `range`.
pub fn count(s: &str, range: RangeInclusive<usize>) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            format!(
                "expected a whole number from {} to {}, got '{s}'",
                range.start(),
                range.end()
            )
        })
}

/// The largest rate and burst a limit may be set to.
pub const MAX_RATE: u32 = 1_000_000;

/// A rate per second from 0 (the limit is off) to [`MAX_RATE`]; decimals
/// allowed (`0.1` is one every 10 s).
pub fn rate(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && (0.0..=f64::from(MAX_RATE)).contains(r))
        .ok_or_else(|| {
            format!("expected a number per second from 0 (off) to {MAX_RATE}, got '{s}'")
        })
}

/// A 32-byte key written as base64 (the output of `axrelay secret`).
pub fn key32(s: &str) -> Result<[u8; 32], String> {
    let bytes = BASE64
        .decode(s.as_bytes())
        .or_else(|_| BASE64_NOPAD.decode(s.as_bytes()))
        .map_err(|_| "expected base64 of 32 bytes (make one with `axrelay secret`), got something that is not base64".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "expected base64 of exactly 32 bytes (make one with `axrelay secret`), got {} bytes",
            bytes.len()
        )
    })
}

/// A domain, normalised the way the server does it (nameprep, lower case).
pub fn domain(s: &str) -> Result<String, String> {
    let bad = || format!("expected a domain such as axr.example.org, got '{s}'");
    let jid = jid::Jid::new(s).map_err(|_| bad())?;
    if jid.node().is_some() || jid.resource().is_some() {
        return Err(bad());
    }
    Ok(jid.domain().as_str().to_owned())
}

/// Either of two words, case-insensitively.
pub fn choice<'a>(s: &str, choices: &[&'a str]) -> Result<&'a str, String> {
    choices
        .iter()
        .find(|c| c.eq_ignore_ascii_case(s))
        .copied()
        .ok_or_else(|| format!("expected {}, got '{s}'", choices.join(" or ")))
}

/// `socks5://[user:pass@]host[:port]`, parsed once here into what the
/// runtimes dial.
pub fn proxy(s: &str) -> Result<Proxy, String> {
    Proxy::parse(s).map_err(|e| format!("'{s}': {e}"))
}

/// memcached servers: `host`, `host:port` or `[v6]:port`, comma-separated,
/// default port 11211. Unix sockets and UDP (pylibmc syntax) are refused:
/// the client speaks TCP only.
pub fn servers(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let entry = entry.strip_prefix("memcache://").unwrap_or(entry);
        if entry.starts_with('/') || entry.starts_with("udp:") {
            return Err(format!(
                "'{entry}': only TCP servers (host:port) are supported"
            ));
        }
        let with_port = if let Some(v6) = entry.strip_prefix('[') {
            match v6.split_once(']') {
                Some((_, "")) => format!("{entry}:11211"),
                Some((_, p)) if p.strip_prefix(':').is_some_and(|p| port(p).is_ok()) => {
                    entry.to_owned()
                }
                _ => return Err(format!("'{entry}': expected [address]:port")),
            }
        } else {
            match entry.split_once(':') {
                None => format!("{entry}:11211"),
                Some((host, p)) if !host.is_empty() && port(p).is_ok() => entry.to_owned(),
                Some(_) => return Err(format!("'{entry}': expected host or host:port")),
            }
        };
        out.push(with_port);
    }
    if out.is_empty() {
        return Err("expected one or more servers, host:port, separated by commas".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_durations() {
        assert_eq!(port("5347"), Ok(5347));
        assert_eq!(
            port("abc"),
            Err("expected a port number from 1 to 65535, got 'abc'".to_owned())
        );
        assert!(port("0").is_err() && port("70000").is_err());
        assert_eq!(seconds("0.5", TIMEOUT), Ok(Duration::from_millis(500)));
        assert_eq!(seconds("3600", TIMEOUT), Ok(Duration::from_secs(3600)));
        for bad in ["0", "-1", "NaN", "inf", "3600.5"] {
            assert_eq!(
                seconds(bad, TIMEOUT),
                Err(format!(
                    "expected a number of seconds greater than 0 and at most 3600, got '{bad}'"
                ))
            );
        }
        assert_eq!(
            seconds("0.5", KEEPALIVE),
            Err("expected a number of seconds from 1 to 86400, got '0.5'".to_owned())
        );
        assert_eq!(ttl("0"), Ok(0));
        assert_eq!(ttl("4294967295"), Ok(u32::MAX));
        assert_eq!(
            ttl("-1"),
            Err(
                "expected a whole number of seconds from 0 (never expire) to 4294967295, got '-1'"
                    .to_owned()
            )
        );
        assert_eq!(count("4", 4..=256), Ok(4));
        assert!(count("3", 4..=256).is_err() && count("257", 4..=256).is_err());
    }

    #[test]
    fn keys_must_be_32_bytes_and_are_not_echoed() {
        let k = BASE64.encode(&[7u8; 32]);
        assert_eq!(key32(&k), Ok([7; 32]));
        assert_eq!(key32(k.trim_end_matches('=')), Ok([7; 32]));
        let short = key32(&BASE64.encode(&[7u8; 16])).unwrap_err();
        assert!(short.contains("got 16 bytes"), "{short}");
        let not = key32("hunter2!!").unwrap_err();
        assert!(!not.contains("hunter2"));
    }

    #[test]
    fn domains_are_normalised() {
        assert_eq!(domain("AXR.Example.ORG").as_deref(), Ok("axr.example.org"));
        assert!(domain("user@axr.example.org").is_err());
        assert!(domain("axr.example.org/res").is_err());
        assert!(domain("").is_err());
    }

    #[test]
    fn server_lists() {
        assert_eq!(
            servers("localhost, 10.0.0.2:11311,[::1]:1,[::1]").unwrap(),
            vec![
                "localhost:11211",
                "10.0.0.2:11311",
                "[::1]:1",
                "[::1]:11211"
            ]
        );
        assert!(servers("").is_err());
        assert!(servers("/run/memcached.sock").is_err());
        assert!(servers("udp:host").is_err());
        assert!(servers("host:port").is_err());
    }

    #[test]
    fn proxies() {
        assert!(proxy("socks5://127.0.0.1:9050").is_ok());
        assert!(proxy("socks5://u:p@proxy.example:1080").is_ok());
        assert!(proxy("http://127.0.0.1:8080").is_err());
        assert!(proxy("socks5://:p@host:1").is_err());
        assert!(proxy("socks5://host:0").is_err());
    }
}
