//! Re-parses what the relay writes, as the server would, with a parser of
//! its own (not the relay's framer), and checks every stanza's addressing.

use rxml::error::EndOrError;
use rxml::{Event, Namespace, Options, Parse, Parser, WithOptions};

use super::server::{COMPONENT_NS, STREAMS_NS};

/// One stanza (depth-1 element) the relay wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// Local name.
    pub name: String,
    /// Namespace.
    pub ns: String,
    /// Unqualified attributes.
    pub attrs: Vec<(String, String)>,
    /// Names of its direct children, as (namespace, local name).
    pub children: Vec<(String, String)>,
    /// Its serialized bytes, as written.
    pub raw: Vec<u8>,
    /// Which connection wrote it.
    pub conn: u32,
}

impl Written {
    /// An unqualified attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Split a JID the way RFC 7622 does: resource after the first `/`,
/// localpart before the first `@` of what is left.
pub fn split_jid(j: &str) -> (Option<&str>, &str, Option<&str>) {
    let (head, res) = match j.find('/') {
        Some(i) => (&j[..i], Some(&j[i + 1..])),
        None => (j, None),
    };
    match head.find('@') {
        Some(i) => (Some(&head[..i]), &head[i + 1..], res),
        None => (None, head, res),
    }
}

/// Checks the byte stream of one connection as the server would parse it:
/// namespace-well-formed, opened by a stream header to the component
/// domain, nothing after `</stream:stream>`, no stanza over the limit,
/// every `message`/`presence`/`iq` from the domain and to a JID.
pub struct XmlCheck {
    parser: Parser,
    domain: String,
    all: Vec<u8>,
    pos: usize,
    depth: usize,
    root_seen: bool,
    closed: bool,
    start: usize,
    cur: Option<Written>,
    max_stanza: usize,
    conn: u32,
}

impl XmlCheck {
    /// A checker for a fresh connection of the component at `domain`.
    pub fn new(domain: &str, max_stanza: usize, conn: u32) -> Self {
        XmlCheck {
            // Text may be as long as a stanza: the default token limit is
            // the parser's, not the protocol's.
            parser: Parser::with_options(Options {
                max_token_length: max_stanza + 16 * 1024,
                ..Options::default()
            }),
            domain: domain.to_owned(),
            all: Vec::new(),
            pos: 0,
            depth: 0,
            root_seen: false,
            closed: false,
            start: 0,
            cur: None,
            max_stanza,
            conn,
        }
    }

    /// Whether the relay closed its stream on this connection.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// All bytes written on this connection.
    pub fn bytes(&self) -> &[u8] {
        &self.all
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "relay output invalid: {what}\n--- output so far ---\n{}",
            String::from_utf8_lossy(&self.all)
        );
    }

    /// Feed bytes the relay wrote; finished stanzas go to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Written>) {
        if self.closed && !bytes.is_empty() {
            self.all.extend_from_slice(bytes);
            self.fail("bytes after the relay's </stream:stream>");
        }
        self.all.extend_from_slice(bytes);
        let mut s = bytes;
        loop {
            match self.parser.parse(&mut s, false) {
                Ok(Some(ev)) => self.event(ev, out),
                Ok(None) => return,
                Err(EndOrError::NeedMoreData) => return,
                Err(EndOrError::Error(e)) => self.fail(&format!("not well-formed: {e}")),
            }
        }
    }

    fn event(&mut self, ev: Event, out: &mut Vec<Written>) {
        let len = ev.metrics().len();
        let at = self.pos;
        self.pos += len;
        match ev {
            Event::XmlDeclaration(..) | Event::Text(..) => {}
            Event::StartElement(_, (ns, name), attrs) => {
                self.depth += 1;
                if !self.root_seen {
                    self.root_seen = true;
                    if ns.as_str() != STREAMS_NS || name.as_str() != "stream" {
                        self.fail("the root is not a stream header");
                    }
                    let to = attrs.get(&Namespace::NONE, "to").map(String::as_str);
                    if to != Some(self.domain.as_str()) {
                        self.fail(&format!("stream header to={to:?}"));
                    }
                    return;
                }
                if self.depth == 2 {
                    self.start = at;
                    let attrs: Vec<(String, String)> = attrs
                        .iter()
                        .filter(|((n, _), _)| n.is_none())
                        .map(|((_, k), v)| (k.as_str().to_owned(), v.clone()))
                        .collect();
                    self.cur = Some(Written {
                        name: name.as_str().to_owned(),
                        ns: ns.as_str().to_owned(),
                        attrs,
                        children: Vec::new(),
                        raw: Vec::new(),
                        conn: self.conn,
                    });
                } else if self.depth == 3 {
                    if let Some(cur) = &mut self.cur {
                        cur.children
                            .push((ns.as_str().to_owned(), name.as_str().to_owned()));
                    }
                }
            }
            Event::EndElement(_) => {
                self.depth -= 1;
                if self.depth == 0 {
                    self.closed = true;
                } else if self.depth == 1 {
                    let Some(mut w) = self.cur.take() else {
                        self.fail("end of a stanza that never started");
                    };
                    w.raw = self.all[self.start..self.pos].to_vec();
                    self.check_stanza(&w);
                    out.push(w);
                }
            }
        }
    }

    fn check_stanza(&self, w: &Written) {
        if w.raw.len() > self.max_stanza {
            self.fail(&format!(
                "a {} of {} bytes (limit {})",
                w.name,
                w.raw.len(),
                self.max_stanza
            ));
        }
        match (w.ns.as_str(), w.name.as_str()) {
            (COMPONENT_NS, "message" | "presence" | "iq") => {
                let Some(from) = w.attr("from") else {
                    self.fail("a stanza without from")
                };
                let Some(to) = w.attr("to") else {
                    self.fail("a stanza without to")
                };
                let (local, domain, res) = split_jid(from);
                if domain != self.domain
                    || local.is_some_and(str::is_empty)
                    || res.is_some_and(str::is_empty)
                {
                    self.fail(&format!("foreign or malformed from '{from}'"));
                }
                let (l, d, r) = split_jid(to);
                if d.is_empty() || l.is_some_and(str::is_empty) || r.is_some_and(str::is_empty) {
                    self.fail(&format!("malformed to '{to}'"));
                }
            }
            (COMPONENT_NS, "handshake") | (STREAMS_NS, "error") => {}
            (ns, name) => self.fail(&format!("unexpected top-level element {{{ns}}}{name}")),
        }
    }
}
