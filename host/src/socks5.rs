//! SOCKS5 client side (RFC 1928 CONNECT, RFC 1929 username/password), over
//! any blocking `Read + Write`.
//!
//! The server name goes to the proxy unresolved (ATYP 3), so darknet names
//! such as `.b32.i2p` resolve at the proxy, never locally.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::IpAddr;

/// A parsed `socks5://[user:pass@]host[:port]` proxy address.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Proxy host name or address.
    pub host: String,
    /// Proxy port (1080 when the URL names none).
    pub port: u16,
    auth: Option<(String, String)>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password stays out of logs.
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("auth", &self.auth.is_some())
            .finish()
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a proxy URL was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyUrlError {
    /// Only `socks5://` (or `socks5h://`) is supported.
    Scheme,
    /// No host after the scheme.
    NoHost,
    /// The port is not a number in 1..=65535.
    BadPort,
    /// A user name or password is empty, over 255 bytes or badly escaped.
    BadCredentials,
}

impl fmt::Display for ProxyUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyUrlError::Scheme => "the proxy must be written socks5://host:port",
            ProxyUrlError::NoHost => "the proxy URL names no host",
            ProxyUrlError::BadPort => "the proxy port must be a number from 1 to 65535",
            ProxyUrlError::BadCredentials => {
                "the proxy user name and password must each be 1 to 255 bytes"
            }
        })
    }
}

impl std::error::Error for ProxyUrlError {}

impl Proxy {
    /// Parse `socks5://[user:pass@]host[:port]`; user and password may be
    /// percent-encoded.
    pub fn parse(url: &str) -> Result<Proxy, ProxyUrlError> {
        let url = url.trim();
        let rest = ["socks5://", "socks5h://"]
            .iter()
            .find_map(|scheme| {
                let head = url.get(..scheme.len())?;
                head.eq_ignore_ascii_case(scheme)
                    .then(|| &url[scheme.len()..])
            })
            .ok_or(ProxyUrlError::Scheme)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let user = percent_decode(user).ok_or(ProxyUrlError::BadCredentials)?;
                let pass = percent_decode(pass).ok_or(ProxyUrlError::BadCredentials)?;
                if user.is_empty() || user.len() > 255 || pass.len() > 255 {
                    return Err(ProxyUrlError::BadCredentials);
                }
                (Some((user, pass)), hostport)
            }
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return Err(ProxyUrlError::NoHost);
        }
        Ok(Proxy {
            host: host.to_owned(),
            port,
            auth,
        })
    }
}

fn split_host_port(s: &str) -> Result<(&str, u16), ProxyUrlError> {
    let parse_port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(ProxyUrlError::BadPort),
        Ok(p) => Ok(p),
    };
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(ProxyUrlError::NoHost)?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, parse_port(p)?)),
            None if after.is_empty() => Ok((host, 1080)),
            None => Err(ProxyUrlError::BadPort),
        };
    }
    match s.rsplit_once(':') {
        Some((host, p)) => Ok((host, parse_port(p)?)),
        None => Ok((s, 1080)),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why the proxy did not give us a tunnel.
#[derive(Debug)]
pub enum Socks5Error {
    /// Reading from or writing to the proxy failed (or timed out).
    Io(io::Error),
    /// The peer does not speak SOCKS version 5.
    NotSocks5(u8),
    /// The proxy accepts none of the offered authentication methods.
    NoAcceptableMethod,
    /// The proxy rejected the user name and password.
    AuthRejected,
    /// The proxy could not open the connection (RFC 1928 reply code).
    Refused(u8),
    /// The proxy's answer is not valid SOCKS5.
    Malformed(&'static str),
    /// The server name is longer than the 255 bytes SOCKS5 can carry.
    NameTooLong,
}

impl fmt::Display for Socks5Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Socks5Error::Io(e) => write!(f, "proxy connection failed: {e}"),
            Socks5Error::NotSocks5(v) => write!(f, "the proxy is not a SOCKS5 proxy (version byte {v})"),
            Socks5Error::NoAcceptableMethod => f.write_str(
                "the proxy accepts none of our authentication methods: check the proxy's user name and password",
            ),
            Socks5Error::AuthRejected => f.write_str("the proxy rejected the user name and password"),
            Socks5Error::Refused(code) => {
                write!(f, "the proxy could not connect to the server: {} (reply {code})", reply_text(*code))
            }
            Socks5Error::Malformed(what) => write!(f, "malformed proxy reply: {what}"),
            Socks5Error::NameTooLong => f.write_str("the server name is too long for SOCKS5"),
        }
    }
}

impl std::error::Error for Socks5Error {}

impl From<io::Error> for Socks5Error {
    fn from(e: io::Error) -> Self {
        Socks5Error::Io(e)
    }
}

/// RFC 1928 §6 reply codes.
fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const USER_PASS: u8 = 2;

/// Ask the proxy on `s` for a tunnel to `host:port`. On success `s` carries
/// the tunnelled stream.
pub fn handshake<S: Read + Write>(
    s: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), Socks5Error> {
    // Build the CONNECT request first: a name that cannot be sent is our
    // error, not the proxy's.
    let mut request = vec![VERSION, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len()).map_err(|_| Socks5Error::NameTooLong)?;
            request.push(3);
            request.push(len);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());

    let greeting: &[u8] = match proxy.auth {
        Some(_) => &[VERSION, 2, NO_AUTH, USER_PASS],
        None => &[VERSION, 1, NO_AUTH],
    };
    s.write_all(greeting)?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice)?;
    if choice[0] != VERSION {
        return Err(Socks5Error::NotSocks5(choice[0]));
    }
    match (choice[1], &proxy.auth) {
        (NO_AUTH, _) => {}
        (USER_PASS, Some((user, pass))) => {
            // Lengths were checked when the URL was parsed.
            let mut auth = vec![1, user.len() as u8];
            auth.extend_from_slice(user.as_bytes());
            auth.push(pass.len() as u8);
            auth.extend_from_slice(pass.as_bytes());
            s.write_all(&auth)?;
            let mut status = [0u8; 2];
            s.read_exact(&mut status)?;
            if status[1] != 0 {
                return Err(Socks5Error::AuthRejected);
            }
        }
        _ => return Err(Socks5Error::NoAcceptableMethod),
    }

    s.write_all(&request)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head)?;
    if head[0] != VERSION {
        return Err(Socks5Error::NotSocks5(head[0]));
    }
    if head[1] != 0 {
        return Err(Socks5Error::Refused(head[1]));
    }
    // Skip the bound address the proxy reports; we have no use for it.
    let addr_len = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len)?;
            usize::from(len[0])
        }
        _ => return Err(Socks5Error::Malformed("unknown address type")),
    };
    let mut rest = vec![0u8; addr_len + 2];
    s.read_exact(&mut rest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted peer: reads come from `input`, writes land in `output`.
    struct Script {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn script(input: &[u8]) -> Script {
        Script {
            input: io::Cursor::new(input.to_vec()),
            output: Vec::new(),
        }
    }

    #[test]
    fn parses_proxy_urls() {
        let p = Proxy::parse("socks5://127.0.0.1:9050").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.auth.is_none()),
            ("127.0.0.1", 9050, true)
        );
        let p = Proxy::parse("SOCKS5h://u%40x:p%3Aw@proxy.lan/").unwrap();
        assert_eq!(p.port, 1080);
        assert_eq!(p.auth, Some(("u@x".into(), "p:w".into())));
        let p = Proxy::parse("socks5://[::1]:1080").unwrap();
        assert_eq!(p.to_string(), "[::1]:1080");
        assert_eq!(Proxy::parse("http://x:1"), Err(ProxyUrlError::Scheme));
        assert_eq!(Proxy::parse("socks5://x:0"), Err(ProxyUrlError::BadPort));
        assert_eq!(Proxy::parse("socks5://:1"), Err(ProxyUrlError::NoHost));
        assert_eq!(
            Proxy::parse("socks5://:p@x:1"),
            Err(ProxyUrlError::BadCredentials)
        );
        assert!(
            !format!("{:?}", Proxy::parse("socks5://u:secret@x:1").unwrap()).contains("secret")
        );
    }

    #[test]
    fn connect_with_password_sends_the_name_unresolved() {
        let proxy = Proxy::parse("socks5://me:pw@p:1").unwrap();
        let mut s = script(&[5, 2, 1, 0, 5, 0, 0, 3, 4, b'h', b'o', b's', b't', 0, 80]);
        handshake(&mut s, &proxy, "xmpp.i2p", 5347).unwrap();
        let mut want = vec![5, 2, 0, 2, 1, 2, b'm', b'e', 2, b'p', b'w', 5, 1, 0, 3, 8];
        want.extend_from_slice(b"xmpp.i2p");
        want.extend_from_slice(&5347u16.to_be_bytes());
        assert_eq!(s.output, want);
    }

    #[test]
    fn refusals_are_reported() {
        let proxy = Proxy::parse("socks5://p:1").unwrap();
        let mut s = script(&[5, 0, 5, 5, 0, 1]);
        assert!(matches!(
            handshake(&mut s, &proxy, "x", 1),
            Err(Socks5Error::Refused(5))
        ));
        let mut s = script(&[5, 0xff]);
        assert!(matches!(
            handshake(&mut s, &proxy, "x", 1),
            Err(Socks5Error::NoAcceptableMethod)
        ));
        let mut s = script(&[4, 0]);
        assert!(matches!(
            handshake(&mut s, &proxy, "x", 1),
            Err(Socks5Error::NotSocks5(4))
        ));
        let mut s = script(&[5, 0, 5]);
        assert!(matches!(
            handshake(&mut s, &proxy, "x", 1),
            Err(Socks5Error::Io(_))
        ));
        let long = "x".repeat(256);
        assert!(matches!(
            handshake(&mut script(&[]), &proxy, &long, 1),
            Err(Socks5Error::NameTooLong)
        ));
        let proxy = Proxy::parse("socks5://me:pw@p:1").unwrap();
        let mut s = script(&[5, 2, 1, 1]);
        assert!(matches!(
            handshake(&mut s, &proxy, "x", 1),
            Err(Socks5Error::AuthRejected)
        ));
    }
}
