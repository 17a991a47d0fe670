//! A scripted XMPP server for the component side of XEP-0114, over loopback
//! TCP. Every wait is bounded; a missed expectation panics with what was
//! expected.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use axrelay_proto::testing::{handshake_digest, server_header};
use rxml::error::EndOrError;
use rxml::{Event, Parse, Parser};

pub use axrelay_proto::testing::{COMPONENT_NS, STREAMS_NS};

const PING_NS: &str = "urn:xmpp:ping";

/// An element as the relay sent it.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub ns: String,
    pub name: String,
    pub attrs: BTreeMap<String, String>,
    pub children: Vec<Node>,
    pub text: String,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }

    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn body(&self) -> Option<&str> {
        self.child("body").map(|b| b.text.as_str())
    }

    /// Every attribute value and text in the tree, for leak checks.
    pub fn all_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.attrs {
            s.push_str(&format!("{k}={v} "));
        }
        s.push_str(&self.text);
        for c in &self.children {
            s.push(' ');
            s.push_str(&c.all_text());
        }
        s
    }
}

/// What the relay sent next.
#[derive(Debug)]
pub enum Got {
    Stanza(Node),
    /// `</stream:stream>`.
    End,
    /// The socket closed or failed.
    Eof,
}

/// The listening side.
pub struct FakeServer {
    listener: TcpListener,
}

impl FakeServer {
    pub fn start() -> Self {
        FakeServer::start_on(0)
    }

    /// Listen on `port` (0: any free one); a restarted server binds its
    /// old port again.
    pub fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind loopback");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        FakeServer { listener }
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().expect("local addr").port()
    }

    /// The next connection, within `within`.
    pub fn accept(&self, within: Duration) -> Conn {
        self.try_accept(within)
            .unwrap_or_else(|| panic!("no connection from the relay within {within:?}"))
    }

    pub fn try_accept(&self, within: Duration) -> Option<Conn> {
        let deadline = Instant::now() + within;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).expect("blocking stream");
                    return Some(Conn::new(stream));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept failed: {e}"),
            }
        }
    }
}

/// One connection from the relay.
pub struct Conn {
    stream: TcpStream,
    parser: Parser,
    stack: Vec<Node>,
    got: VecDeque<Got>,
    header: Option<Node>,
    /// Bytes received before the stream header was complete.
    pub header_bytes: Vec<u8>,
    /// Number of reads it took to receive the header.
    pub header_reads: usize,
    pub domain: String,
    /// Answer the relay's keepalive pings (a live server does).
    pub answer_pings: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            parser: Parser::new(),
            stack: Vec::new(),
            got: VecDeque::new(),
            header: None,
            header_bytes: Vec::new(),
            header_reads: 0,
            domain: String::new(),
            answer_pings: true,
        }
    }

    pub fn send(&mut self, xml: &str) {
        self.stream
            .write_all(xml.as_bytes())
            .expect("write to the relay");
    }

    /// Read once, with a deadline; false at EOF.
    fn fill(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("read timeout");
        let mut buf = [0u8; 8192];
        match self.stream.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                if self.header.is_none() {
                    self.header_bytes.extend_from_slice(&buf[..n]);
                    self.header_reads += 1;
                }
                self.feed(&buf[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => true,
            Err(_) => false,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        loop {
            match self.parser.parse(&mut data, false) {
                Ok(Some(ev)) => self.event(ev),
                Ok(None) | Err(EndOrError::NeedMoreData) => return,
                Err(EndOrError::Error(e)) => panic!("the relay sent invalid XML: {e}"),
            }
        }
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::XmlDeclaration(..) => {}
            Event::StartElement(_, (ns, name), attrs) => {
                let node = Node {
                    ns: ns.as_str().to_owned(),
                    name: name.as_str().to_owned(),
                    attrs: attrs
                        .iter()
                        .map(|((_, n), v)| (n.as_str().to_owned(), v.to_string()))
                        .collect(),
                    ..Node::default()
                };
                if self.header.is_none() {
                    self.header = Some(node);
                } else {
                    self.stack.push(node);
                }
            }
            Event::Text(_, t) => {
                if let Some(top) = self.stack.last_mut() {
                    top.text.push_str(&t);
                }
            }
            Event::EndElement(_) => match self.stack.pop() {
                None => self.got.push_back(Got::End),
                Some(node) => match self.stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => self.got.push_back(Got::Stanza(node)),
                },
            },
        }
    }

    /// The relay's stream header.
    pub fn read_header(&mut self, within: Duration) -> Node {
        let deadline = Instant::now() + within;
        while self.header.is_none() {
            if Instant::now() >= deadline || !self.fill(deadline) {
                panic!("no stream header from the relay within {within:?}");
            }
        }
        self.header.clone().unwrap_or_default()
    }

    /// The next stanza or end of stream; keepalive pings are answered and
    /// skipped. `None` on timeout.
    pub fn next(&mut self, within: Duration) -> Option<Got> {
        let deadline = Instant::now() + within;
        loop {
            while let Some(got) = self.got.pop_front() {
                if let Got::Stanza(node) = &got {
                    if self.answer_pings
                        && node.name == "iq"
                        && node.attr("type") == Some("get")
                        && node.children.iter().any(|c| c.ns == PING_NS)
                    {
                        let reply = format!(
                            "<iq type='result' id='{}' from='{}' to='{}'/>",
                            node.attr("id").unwrap_or(""),
                            node.attr("to").unwrap_or(""),
                            node.attr("from").unwrap_or(""),
                        );
                        self.send(&reply);
                        continue;
                    }
                }
                return Some(got);
            }
            if Instant::now() >= deadline {
                return None;
            }
            if !self.fill(deadline) {
                return Some(Got::Eof);
            }
        }
    }

    /// The next stanza satisfying `want`, skipping others; panics on
    /// timeout or end of stream.
    pub fn expect(&mut self, within: Duration, what: &str, want: impl Fn(&Node) -> bool) -> Node {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(Got::Stanza(n)) if want(&n) => return n,
                Some(Got::Stanza(_)) => {}
                Some(other) => panic!("expected {what}, got {other:?}"),
                None => panic!("expected {what} within {within:?}, got nothing"),
            }
        }
    }

    /// Wait for the relay's `</stream:stream>` (skipping stanzas).
    pub fn expect_end(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(Got::End) => return,
                Some(Got::Stanza(_)) => {}
                Some(Got::Eof) => panic!("the relay closed the socket without </stream:stream>"),
                None => panic!("no </stream:stream> from the relay within {within:?}"),
            }
        }
    }

    /// Read the header, answer it with stream id `id`, and return the
    /// relay's handshake digest.
    pub fn open_stream(&mut self, id: &str) -> String {
        let header = self.read_header(Duration::from_secs(5));
        assert_eq!(
            (header.ns.as_str(), header.name.as_str()),
            (STREAMS_NS, "stream")
        );
        let raw = String::from_utf8_lossy(&self.header_bytes).into_owned();
        assert!(
            raw.contains(&format!("xmlns='{COMPONENT_NS}'"))
                || raw.contains(&format!("xmlns=\"{COMPONENT_NS}\"")),
            "the header does not open a component stream: {raw}"
        );
        self.domain = header.attr("to").unwrap_or_default().to_owned();
        self.send(&server_header(&self.domain, id));
        let hs = self.expect(Duration::from_secs(5), "<handshake>", |n| {
            n.name == "handshake"
        });
        assert_eq!(hs.ns, COMPONENT_NS);
        hs.text
    }

    /// A full, successful component handshake.
    pub fn handshake(&mut self, password: &str) {
        let id = format!("sid{}", std::process::id());
        let digest = self.open_stream(&id);
        assert_eq!(
            digest,
            handshake_digest(&id, password),
            "wrong handshake digest"
        );
        self.send("<handshake/>");
    }

    /// End the stream from the server side with a stream error.
    pub fn stream_error(&mut self, condition: &str) {
        self.send(&format!(
            "<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
        ));
    }

    /// Close the stream from our side after the relay closed it.
    pub fn close(mut self) {
        self.send("</stream:stream>");
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Drop the TCP connection without a word.
    pub fn drop_connection(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
