//! The metrics endpoint: a small HTTP/1.1 server on a thread of its own
//! that answers `GET /metrics` and nothing else, one connection at a time,
//! each closed after its answer. Requests are bounded in size and time, so
//! a slow or hostile client holds up other scrapes for a few seconds at
//! most, and the relay never.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{Metrics, CONTENT_TYPE};

/// The longest request head read.
const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// After the answer: how long, and how much, is read before closing.
const LINGER: Duration = Duration::from_secs(1);
const MAX_LINGER: u64 = 64 * 1024;

/// Serve `metrics` on `listener` until the process ends.
pub fn serve(listener: TcpListener, metrics: Metrics) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("axrelay-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = answer(stream, &metrics) {
                            log::debug!("metrics request failed: {e}");
                        }
                    }
                    Err(e) => {
                        log::debug!("metrics accept failed: {e}");
                        // Out of descriptors, say: do not spin.
                        thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
}

fn answer(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    let complete = loop {
        if len == buf.len() {
            break false;
        }
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            break false;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
    };
    let (status, body) = if !complete {
        ("400 Bad Request", String::from("bad request\n"))
    } else {
        route(&buf[..len], metrics)
    };
    let ctype = if status.starts_with("200") {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()?;
    // Read what the client still sends until it closes (bounded), so that
    // closing with unread data does not reset the answer away.
    stream.shutdown(Shutdown::Write)?;
    stream.set_read_timeout(Some(LINGER))?;
    let _ = io::copy(&mut (&mut stream).take(MAX_LINGER), &mut io::sink());
    Ok(())
}

fn route(request: &[u8], metrics: &Metrics) -> (&'static str, String) {
    let line = request.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split(|b| *b == b'?').next().unwrap_or_default());
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => ("200 OK", metrics.render()),
        (Some(b"GET"), Some(_)) => ("404 Not Found", String::from("only /metrics\n")),
        (Some(_), Some(_)) => (
            "405 Method Not Allowed",
            String::from("only GET /metrics\n"),
        ),
        _ => ("400 Bad Request", String::from("bad request\n")),
    }
}

/// Fetch `GET /metrics` from `addr`: the body of a 200 answer.
pub fn scrape(addr: std::net::SocketAddr, timeout: Duration) -> Result<String, ScrapeError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(ScrapeError::Connect)?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(ScrapeError::Io)?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(ScrapeError::Io)?;
    let mut raw = Vec::new();
    stream
        .take(16 * 1024 * 1024)
        .read_to_end(&mut raw)
        .map_err(ScrapeError::Io)?;
    let text = String::from_utf8(raw).map_err(|_| ScrapeError::NotMetrics)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or(ScrapeError::NotMetrics)?;
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Err(ScrapeError::Status(status.to_owned()));
    }
    Ok(body.to_owned())
}

/// Why [`scrape`] failed.
#[derive(Debug)]
pub enum ScrapeError {
    /// Nothing accepted the connection.
    Connect(io::Error),
    /// The connection failed or timed out.
    Io(io::Error),
    /// The answer is not HTTP.
    NotMetrics,
    /// An answer other than 200.
    Status(String),
}

impl std::fmt::Display for ScrapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScrapeError::Connect(e) => write!(f, "nothing answers: {e}"),
            ScrapeError::Io(e) => write!(f, "the connection failed: {e}"),
            ScrapeError::NotMetrics => f.write_str("the answer is not an HTTP answer"),
            ScrapeError::Status(s) => write!(f, "answered '{s}'"),
        }
    }
}

impl std::error::Error for ScrapeError {}
