//! Opening the TCP connection to the server's component port, directly or
//! through a SOCKS5 proxy, within one time budget.
//!
//! Blocking on purpose: connects are rare, and the smol runtime runs this on
//! its blocking pool, so both runtimes share one tested implementation.

use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::options::Options;
use crate::socks5::{self, Proxy, Socks5Error};

/// Where to connect: the server, and the proxy in front of it if any.
#[derive(Debug, Clone)]
pub struct Target {
    server: String,
    port: u16,
    proxy: Option<Proxy>,
    timeout: Duration,
    dead_peer: Option<Duration>,
}

impl Target {
    /// The target described by `opts`.
    pub fn new(opts: &Options) -> Target {
        Target {
            server: opts.server.clone(),
            port: opts.port,
            proxy: opts.proxy.clone(),
            timeout: opts.connect_timeout,
            dead_peer: opts.dead_peer_timeout,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.server, self.port)?;
        if let Some(proxy) = &self.proxy {
            write!(f, " via SOCKS5 proxy {proxy}")?;
        }
        Ok(())
    }
}

/// Why no connection could be opened; the runtime backs off and retries.
#[derive(Debug)]
pub enum ConnectError {
    /// The host name did not resolve.
    Resolve(String, io::Error),
    /// The host name resolved to no address.
    NoAddress(String),
    /// TCP connect failed (refused, unreachable, …).
    Tcp(String, io::Error),
    /// The time budget ran out.
    TimedOut(String),
    /// The proxy would not open the tunnel; a hint at the usual cause on
    /// the darknets, where some refusals are routine.
    Proxy(String, Socks5Error, Option<&'static str>),
    /// A socket option could not be set.
    Socket(io::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Resolve(host, e) => write!(f, "cannot resolve {host}: {e}"),
            ConnectError::NoAddress(host) => write!(f, "{host} has no address"),
            ConnectError::Tcp(addr, e) => write!(f, "cannot connect to {addr}: {e}"),
            ConnectError::TimedOut(what) => write!(f, "timed out: {what}"),
            ConnectError::Proxy(proxy, e, hint) => {
                write!(f, "SOCKS5 proxy {proxy}: {e}")?;
                match hint {
                    Some(h) => write!(f, " ({h})"),
                    None => Ok(()),
                }
            }
            ConnectError::Socket(e) => write!(f, "cannot set up the socket: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Connect to the target within its timeout; the stream comes back in
/// blocking mode, `TCP_NODELAY` set, no socket timeouts, and on Linux the
/// target's bound on unacknowledged data (`TCP_USER_TIMEOUT`).
pub fn open(target: &Target) -> Result<TcpStream, ConnectError> {
    let deadline = Instant::now() + target.timeout;
    let stream = match &target.proxy {
        None => tcp(&target.server, target.port, deadline, "")?,
        Some(proxy) => {
            let mut stream = tcp(&proxy.host, proxy.port, deadline, "SOCKS5 proxy ")?;
            let budget = remaining(deadline, "connecting to the proxy")?;
            set_timeouts(&stream, Some(budget))?;
            socks5::handshake(&mut stream, proxy, &target.server, target.port).map_err(
                |e| match e {
                    Socks5Error::Io(io) if is_timeout(&io) => {
                        ConnectError::TimedOut(format!("SOCKS5 handshake with proxy {proxy}"))
                    }
                    e => {
                        let hint = refusal_hint(&target.server, &e);
                        ConnectError::Proxy(proxy.to_string(), e, hint)
                    }
                },
            )?;
            set_timeouts(&stream, None)?;
            stream
        }
    };
    stream.set_nodelay(true).map_err(ConnectError::Socket)?;
    set_dead_peer_timeout(&stream, target.dead_peer)?;
    Ok(stream)
}

impl ConnectError {
    /// Whether the proxy answered but could not reach the server: on I2P
    /// or Tor that is routine while tunnels are built, and ends by itself.
    pub fn is_proxy_refusal(&self) -> bool {
        matches!(self, ConnectError::Proxy(_, Socks5Error::Refused(_), _))
    }
}

/// What a proxy's refusal usually means for this server name.
fn refusal_hint(server: &str, e: &Socks5Error) -> Option<&'static str> {
    let i2p = server
        .get(server.len().saturating_sub(4)..)
        .is_some_and(|end| end.eq_ignore_ascii_case(".i2p"));
    match e {
        Socks5Error::Refused(4) if i2p => Some(
            "i2pd found no LeaseSet for the name: not published yet, or the proxy's own \
             tunnels are not built yet; this usually clears within a minute",
        ),
        Socks5Error::Refused(8) if !i2p => {
            Some("the proxy cannot reach names of this kind: an I2P proxy reaches .i2p names only")
        }
        _ => None,
    }
}

/// A write the peer never acknowledges fails after `timeout` instead of
/// after the system's retransmission limit (about 15 minutes on Linux):
/// with whitespace keepalives this is how a dead server is noticed.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_dead_peer_timeout(
    stream: &TcpStream,
    timeout: Option<Duration>,
) -> Result<(), ConnectError> {
    match timeout {
        Some(t) => socket2::SockRef::from(stream)
            .set_tcp_user_timeout(Some(t))
            .map_err(ConnectError::Socket),
        None => Ok(()),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_dead_peer_timeout(_: &TcpStream, _: Option<Duration>) -> Result<(), ConnectError> {
    Ok(())
}

/// TCP connect to the first address of `host` that answers in time;
/// `role` prefixes the name in errors.
fn tcp(host: &str, port: u16, deadline: Instant, role: &str) -> Result<TcpStream, ConnectError> {
    let name = if host.contains(':') {
        format!("{role}[{host}]:{port}")
    } else {
        format!("{role}{host}:{port}")
    };
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| ConnectError::Resolve(host.to_owned(), e))?
        .collect();
    let mut last = ConnectError::NoAddress(host.to_owned());
    for addr in addrs {
        let budget = remaining(deadline, &format!("connecting to {name}"))?;
        match TcpStream::connect_timeout(&addr, budget) {
            Ok(stream) => return Ok(stream),
            Err(e) if is_timeout(&e) => {
                last = ConnectError::TimedOut(format!("connecting to {name}"))
            }
            Err(e) => last = ConnectError::Tcp(name.clone(), e),
        }
    }
    Err(last)
}

fn remaining(deadline: Instant, what: &str) -> Result<Duration, ConnectError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ConnectError::TimedOut(what.to_owned()));
    }
    Ok(left)
}

fn set_timeouts(stream: &TcpStream, t: Option<Duration>) -> Result<(), ConnectError> {
    stream.set_read_timeout(t).map_err(ConnectError::Socket)?;
    stream.set_write_timeout(t).map_err(ConnectError::Socket)
}

/// Linux reports an expired socket timeout as `WouldBlock`.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn target(port: u16, dead_peer: Option<Duration>) -> Target {
        let mut opts = Options::new("127.0.0.1", port);
        opts.dead_peer_timeout = dead_peer;
        Target::new(&opts)
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn the_dead_peer_timeout_is_set_on_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = open(&target(port, Some(Duration::from_secs(7)))).unwrap();
        let sock = socket2::SockRef::from(&s);
        assert_eq!(
            sock.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(7))
        );
        assert!(s.nodelay().unwrap());
        let s = open(&target(port, None)).unwrap();
        assert_eq!(socket2::SockRef::from(&s).tcp_user_timeout().unwrap(), None);
    }

    #[test]
    fn refusals_get_a_hint_where_they_are_routine() {
        let four = refusal_hint("abc.b32.i2p", &Socks5Error::Refused(4));
        assert!(four.is_some_and(|h| h.contains("LeaseSet")), "{four:?}");
        let eight = refusal_hint("chat.example.org", &Socks5Error::Refused(8));
        assert!(
            eight.is_some_and(|h| h.contains(".i2p names only")),
            "{eight:?}"
        );
        assert_eq!(
            refusal_hint("chat.example.org", &Socks5Error::Refused(4)),
            None
        );
        let e = ConnectError::Proxy("127.0.0.1:4447".into(), Socks5Error::Refused(4), four);
        assert!(e.is_proxy_refusal());
        assert!(
            e.to_string().starts_with(
                "SOCKS5 proxy 127.0.0.1:4447: the proxy could not connect to the server: host \
                 unreachable (reply 4) (i2pd found no LeaseSet"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_refused_connection_names_the_address() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = open(&target(port, None)).unwrap_err();
        assert!(matches!(e, ConnectError::Tcp(..)), "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
