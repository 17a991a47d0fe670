//! The server's end of one component connection: buffered reads split into
//! stanzas, and the XEP-0114 handshake as a server performs it.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use axrelay_benches::scan::{self, Item};
use axrelay_benches::wire;

/// How long one blocking read may wait before loops check their deadlines.
pub const READ_POLL: Duration = Duration::from_millis(200);
const BUF: usize = 256 * 1024;
const MAX_BUF: usize = 4 * 1024 * 1024;

/// What a read brought.
pub enum Fill {
    Data,
    Eof,
    Idle,
}

/// One item taken off the buffer: a stanza's byte range, or the stream end.
pub enum Next {
    Stanza(usize, usize),
    End,
}

pub struct Conn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Result<Conn, String> {
        stream
            .set_read_timeout(Some(READ_POLL))
            .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(30))))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| format!("socket options: {e}"))?;
        Ok(Conn {
            stream,
            buf: vec![0; BUF],
            start: 0,
            end: 0,
        })
    }

    /// Read once (waiting at most [`READ_POLL`]).
    pub fn fill(&mut self) -> Result<Fill, String> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > self.buf.len() / 2 || self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_BUF {
                return Err("a stanza from the relay is larger than 4 MiB".into());
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        match self.stream.read(&mut self.buf[self.end..]) {
            Ok(0) => Ok(Fill::Eof),
            Ok(n) => {
                self.end += n;
                Ok(Fill::Data)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Fill::Idle)
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// The next complete item in the buffer, if any.
    pub fn next(&mut self) -> Result<Option<Next>, String> {
        match scan::next_item(&self.buf[self.start..self.end]) {
            Ok(None) => Ok(None),
            Ok(Some(Item::Stanza(n))) => {
                let at = self.start;
                self.start += n;
                Ok(Some(Next::Stanza(at, at + n)))
            }
            Ok(Some(Item::StreamEnd(n))) => {
                self.start += n;
                Ok(Some(Next::End))
            }
            Err(e) => Err(format!("unparsable output from the relay: {e}")),
        }
    }

    /// The next stanza, reading as needed until `deadline`.
    pub fn next_blocking(&mut self, deadline: Instant, what: &str) -> Result<Next, String> {
        loop {
            if let Some(n) = self.next()? {
                return Ok(n);
            }
            if Instant::now() >= deadline {
                return Err(format!("timed out waiting for {what}"));
            }
            if let Fill::Eof = self.fill()? {
                return Err(format!("the relay closed the connection before {what}"));
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("write: {e}"))
    }

    /// Accept the relay's stream header and handshake as a server would.
    pub fn handshake(&mut self, password: &str, stream_id: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        // The component's header: one start tag that stays open.
        let header_end = loop {
            let data = &self.buf[self.start..self.end];
            if let Some(at) = scan::subslice(data, b"<stream:stream") {
                if let Some(gt) = data[at..].iter().position(|&b| b == b'>') {
                    break at + gt + 1;
                }
            }
            if Instant::now() >= deadline {
                return Err("timed out waiting for the component's stream header".into());
            }
            if let Fill::Eof = self.fill()? {
                return Err("the relay closed the connection before its header".into());
            }
        };
        let header = String::from_utf8_lossy(&self.buf[self.start..self.start + header_end]);
        for want in [
            format!("xmlns='{}'", wire::COMPONENT_NS),
            format!("to='{}'", wire::COMPONENT),
        ] {
            if !header.contains(&want) {
                return Err(format!("stream header without {want}: {header}"));
            }
        }
        self.start += header_end;
        self.send(wire::server_header(stream_id).as_bytes())?;
        let Next::Stanza(a, b) = self.next_blocking(deadline, "the handshake")? else {
            return Err("the relay closed the stream instead of the handshake".into());
        };
        let is_handshake = scan::parse(&self.buf[a..b])
            .map_err(|e| e.to_string())?
            .name
            == b"handshake";
        let text = String::from_utf8_lossy(&self.buf[a..b]).into_owned();
        let digest = text
            .split_once('>')
            .and_then(|(_, rest)| rest.split_once('<'))
            .map(|(d, _)| d.trim())
            .unwrap_or("");
        let want = wire::handshake_digest(stream_id, password);
        if !is_handshake || digest != want {
            self.send(
                b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
                  </stream:error></stream:stream>",
            )?;
            return Err(format!("bad handshake from the relay: {text}"));
        }
        self.send(b"<handshake/>")
    }

    /// Close our side after the relay closed its stream (or to ask an echo
    /// component to), and wait for the peer's close; bounded.
    pub fn close(&mut self, wait_for_peer_end: bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        if wait_for_peer_end {
            loop {
                match self.next_blocking(deadline, "the relay's stream close")? {
                    Next::End => break,
                    Next::Stanza(..) => {}
                }
            }
        }
        self.send(b"</stream:stream>")?;
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        Ok(())
    }
}

/// Accept one connection on `listener`, waiting at most `timeout`.
pub fn accept(listener: &TcpListener, timeout: Duration) -> Result<TcpStream, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)
                    .map_err(|e| format!("socket: {e}"))?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err("the relay did not connect in time".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
}
