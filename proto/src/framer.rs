//! Incremental stanza framing with the limits of SPEC §6.
//!
//! Bytes go to rxml in bounded slices; every consumed byte is kept on a
//! "tape" until an event accounts for it, so at every point the framer knows
//! how large the unfinished element is without rxml having to finish it.
//!
//! * A stanza that breaks the attribute, namespace-declaration or token
//!   limits is parsed on but not kept, and reported as [`Frame::Skipped`]
//!   when it ends.
//! * A stanza that nests deeper than `max_depth`, or grows beyond
//!   `max_stanza_bytes`, cannot be parsed on: rxml's cost grows with the
//!   square of the depth, and rxml cannot resynchronise. So the framer scans
//!   the rest of it as raw bytes (tags, quotes, CDATA) to its end, then starts
//!   a fresh parser primed with the server's original stream header. Memory
//!   stays bounded by the limit plus two slices.
//! * Malformed XML, DTDs, comments, processing instructions, undeclared
//!   entities and invalid UTF-8 are fatal: rxml cannot resynchronise, so the
//!   caller closes the stream with [`FrameError::condition`].

use bytes::{Buf, Bytes, BytesMut};
use rxml::error::EndOrError;
use rxml::{Event, Options, Parse, Parser, WithOptions};

use crate::config::Limits;
use crate::element::{Element, Node};
use crate::ns;

/// Largest slice handed to rxml at once; bounds what rxml holds beyond a limit.
const SLICE: usize = 8 * 1024;
/// Largest stream header accepted.
const MAX_HEADER: usize = 16 * 1024;

/// What the framer found in the input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    /// The server's stream header.
    Header {
        /// Whether the root is `{http://etherx.jabber.org/streams}stream`.
        is_stream: bool,
        /// The stream id (the handshake salt).
        id: Option<String>,
    },
    /// A complete stanza (any element at depth 1 of the stream).
    Stanza(Element),
    /// A stanza skipped for breaking a limit; its top element without
    /// children when its start tag could be read.
    Skipped(Option<Element>),
    /// The server closed the stream root.
    End,
}

/// A fatal parse error: the stream cannot go on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FrameError {
    /// rxml refused the input.
    Xml(rxml::Error),
    /// The stream header is larger than any server sends.
    HeaderTooLarge,
}

impl FrameError {
    /// The RFC 6120 stream error condition to answer with.
    pub(crate) fn condition(&self) -> &'static str {
        match self {
            FrameError::Xml(rxml::Error::RestrictedXml(_))
            | FrameError::Xml(rxml::Error::UndeclaredEntity) => "restricted-xml",
            // rxml reports `<!DOCTYPE` and `<!--` this way.
            FrameError::Xml(rxml::Error::InvalidSyntax(m)) if m.contains("comment") => {
                "restricted-xml"
            }
            FrameError::HeaderTooLarge => "policy-violation",
            FrameError::Xml(_) => "not-well-formed",
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Xml(e) => write!(f, "{e}"),
            FrameError::HeaderTooLarge => f.write_str("stream header too large"),
        }
    }
}

/// Raw scanner that finds the end of a stanza without parsing it.
#[derive(Debug, Clone)]
struct Skip {
    /// Open elements of the skipped stanza.
    depth: usize,
    state: Scan,
    /// Last non-space byte inside a tag (to spot `/>`).
    last: u8,
    /// Bytes matched of a terminator (`]]>`, `-->`, `?>`).
    matched: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scan {
    Text,
    Lt,
    Tag { closing: bool, quote: u8 },
    Bang,
    Until(&'static [u8]),
}

impl Skip {
    fn new(depth: usize) -> Self {
        Skip {
            depth,
            state: Scan::Text,
            last: 0,
            matched: 0,
        }
    }

    /// Scan `data`; `Some(n)` when the stanza ended after `n` bytes.
    fn scan(&mut self, data: &[u8]) -> Option<usize> {
        for (i, &b) in data.iter().enumerate() {
            match self.state {
                Scan::Text => {
                    if b == b'<' {
                        self.state = Scan::Lt;
                    }
                }
                Scan::Lt => {
                    self.state = match b {
                        b'/' => Scan::Tag {
                            closing: true,
                            quote: 0,
                        },
                        b'!' => Scan::Bang,
                        b'?' => Scan::Until(b"?>"),
                        _ => Scan::Tag {
                            closing: false,
                            quote: 0,
                        },
                    };
                    self.last = b;
                }
                Scan::Bang => {
                    self.state = match b {
                        b'[' => Scan::Until(b"]]>"),
                        b'-' => Scan::Until(b"-->"),
                        _ => Scan::Until(b">"),
                    };
                    self.matched = 0;
                }
                Scan::Until(end) => {
                    if b == end[self.matched] {
                        self.matched += 1;
                        if self.matched == end.len() {
                            self.state = Scan::Text;
                            self.matched = 0;
                        }
                    } else {
                        self.matched = usize::from(b == end[0]);
                    }
                }
                Scan::Tag { closing, quote } => {
                    if quote != 0 {
                        if b == quote {
                            self.state = Scan::Tag { closing, quote: 0 };
                            self.last = b;
                        }
                    } else if b == b'\'' || b == b'"' {
                        self.state = Scan::Tag { closing, quote: b };
                    } else if b == b'>' {
                        self.state = Scan::Text;
                        if closing {
                            self.depth = self.depth.saturating_sub(1);
                            if self.depth == 0 {
                                return Some(i + 1);
                            }
                        } else if self.last == b'/' {
                            if self.depth == 0 {
                                return Some(i + 1);
                            }
                        } else {
                            self.depth += 1;
                        }
                    } else if !b.is_ascii_whitespace() {
                        self.last = b;
                    }
                }
            }
        }
        None
    }
}

/// What becomes of the stanza being read.
#[derive(Debug)]
enum Stanza {
    /// Parsed and built on `Framer::stack` (also the state between stanzas).
    Keeping,
    /// It broke a limit that parsing survives: parsed to its end, nothing
    /// kept but its start tag, when that could be read.
    Discarding { head: Option<Element> },
    /// It broke a limit that parsing does not survive: its bytes are scanned
    /// raw to its end.
    Scanning { skip: Skip, head: Option<Element> },
}

/// The stanza framer for one connection.
pub(crate) struct Framer {
    parser: Parser,
    limits: Limits,
    /// Consumed bytes no event has accounted for yet.
    tape: BytesMut,
    /// The bytes of the XML declaration and stream header, to prime a fresh
    /// parser after a raw skip.
    header: Vec<u8>,
    seen_root: bool,
    /// Open elements, the stream root included.
    depth: usize,
    /// The stanza being built (outermost first); its capacity is reused.
    stack: Vec<Element>,
    stanza_bytes: usize,
    stanza: Stanza,
    /// Bytes to feed before new input (left over after a raw skip).
    replay: Option<Bytes>,
    /// The last start tag was self-closing and rxml has yet to report its
    /// end (matters when a raw skip starts right there).
    end_pending: bool,
}

fn new_parser(limits: &Limits) -> Parser {
    // Long attribute values up to the stanza limit must not be fatal for
    // the whole stream; the framer applies `max_token_length` per stanza.
    Parser::with_options(Options {
        max_token_length: limits.max_stanza_bytes + 2 * SLICE,
        ..Options::default()
    })
}

/// The start tag alone, for error replies about a skipped stanza.
fn head_of(e: &Element) -> Element {
    Element {
        ns: e.ns.clone(),
        name: e.name.clone(),
        attrs: e.attrs.clone(),
        children: Vec::new(),
    }
}

/// Whether a start tag declares more than `limit` namespaces. Every
/// declaration takes at least 9 bytes (` xmlns=''`), so a shorter tag is not
/// scanned: almost every stanza's start tag is.
fn too_many_xmlns(tag: &[u8], limit: usize) -> bool {
    const SHORTEST: usize = b" xmlns=''".len();
    if tag.len() < SHORTEST.saturating_mul(limit.saturating_add(1)) {
        return false;
    }
    tag.windows(5).filter(|w| *w == b"xmlns").count() > limit
}

impl Framer {
    pub(crate) fn new(limits: Limits) -> Self {
        Framer {
            parser: new_parser(&limits),
            limits,
            tape: BytesMut::new(),
            header: Vec::new(),
            seen_root: false,
            depth: 0,
            stack: Vec::new(),
            stanza_bytes: 0,
            stanza: Stanza::Keeping,
            replay: None,
            end_pending: false,
        }
    }

    /// Bytes held for the unfinished stanza (tape and partial tree), for
    /// checking that hostile input cannot grow memory without bound.
    pub(crate) fn buffered(&self) -> usize {
        fn size(e: &Element) -> usize {
            e.name.len()
                + e.attrs.iter().map(|(_, v)| v.len() + 8).sum::<usize>()
                + e.children
                    .iter()
                    .map(|c| match c {
                        Node::Element(e) => size(e),
                        Node::Text(t) => t.len(),
                    })
                    .sum::<usize>()
        }
        self.tape.len()
            + self.stack.iter().map(size).sum::<usize>()
            + self.replay.as_ref().map_or(0, |r| r.len())
    }

    /// Feed bytes from the server; frames are appended to `out` in order.
    /// After an error the framer is unusable (the stream must be closed).
    pub(crate) fn feed(&mut self, data: &[u8], out: &mut Vec<Frame>) -> Result<(), FrameError> {
        let mut pos = 0;
        loop {
            while let Some(replay) = self.replay.take() {
                let mut at = 0;
                while at < replay.len() && self.replay.is_none() {
                    at += self.feed_some(&replay[at..], out)?;
                }
                if at < replay.len() {
                    // A new skip ended inside the replay: queue the rest behind it.
                    let rest = replay.slice(at..);
                    self.replay = Some(match self.replay.take() {
                        Some(r) => [r, rest].concat().into(),
                        None => rest,
                    });
                }
            }
            if pos >= data.len() {
                return Ok(());
            }
            pos += self.feed_some(&data[pos..], out)?;
        }
    }

    /// Consume a prefix of `data`; returns its length. Stops early when a raw
    /// skip ends, so that the replay is fed before the rest.
    fn feed_some(&mut self, data: &[u8], out: &mut Vec<Frame>) -> Result<usize, FrameError> {
        if let Stanza::Scanning { skip, .. } = &mut self.stanza {
            return Ok(match skip.scan(data) {
                Some(n) => {
                    self.end_skip(out)?;
                    n
                }
                None => data.len(),
            });
        }
        let mut end = data.len().min(SLICE);
        if self.seen_root {
            // rxml never sees past the first byte over the limit: what comes
            // after it is skipped unparsed, so an error there cannot end the
            // stream in one split of the input and pass in another.
            let used = self.stanza_bytes + self.tape.len();
            end = end.min(
                (self.limits.max_stanza_bytes + 1)
                    .saturating_sub(used)
                    .max(1),
            );
        }
        let mut slice = &data[..end];
        loop {
            let before = slice.len();
            let result = self.parser.parse(&mut slice, false);
            let start = end - before;
            self.tape.extend_from_slice(&data[start..end - slice.len()]);
            match result {
                Ok(Some(ev)) => {
                    let had_root = self.seen_root;
                    if self.on_event(ev, out)? {
                        // A raw skip started: rescan what rxml held.
                        self.begin_raw_skip(out)?;
                        return Ok(end - slice.len());
                    }
                    if !had_root && self.seen_root {
                        // From here on the slice is bounded by the limit.
                        return Ok(end - slice.len());
                    }
                }
                Ok(None) => return Ok(end),
                Err(EndOrError::NeedMoreData) => {
                    if self.over_size() {
                        self.begin_raw_skip(out)?;
                    }
                    return Ok(end);
                }
                Err(EndOrError::Error(e)) => return Err(FrameError::Xml(e)),
            }
        }
    }

    /// Whether the unfinished stanza (or start tag) is over the byte limit.
    fn over_size(&self) -> bool {
        self.seen_root && self.stanza_bytes + self.tape.len() > self.limits.max_stanza_bytes
    }

    fn begin_raw_skip(&mut self, out: &mut Vec<Frame>) -> Result<(), FrameError> {
        let head = match std::mem::replace(&mut self.stanza, Stanza::Keeping) {
            Stanza::Discarding { head } => head,
            _ => self.stack.first().map(head_of),
        };
        self.stack.clear();
        let mut skip = Skip::new(self.depth.saturating_sub(1) - usize::from(self.end_pending));
        self.end_pending = false;
        let held = self.tape.split().freeze();
        let ended = skip.scan(&held);
        self.stanza = Stanza::Scanning { skip, head };
        if let Some(n) = ended {
            self.end_skip(out)?;
            if n < held.len() {
                self.replay = Some(held.slice(n..));
            }
        }
        Ok(())
    }

    /// The skipped stanza ended: report it and restart the parser.
    fn end_skip(&mut self, out: &mut Vec<Frame>) -> Result<(), FrameError> {
        if let Stanza::Scanning { head, .. } = std::mem::replace(&mut self.stanza, Stanza::Keeping)
        {
            out.push(Frame::Skipped(head));
        }
        self.parser = new_parser(&self.limits);
        self.tape.clear();
        self.depth = 0;
        self.stanza_bytes = 0;
        let mut header: &[u8] = &self.header;
        loop {
            match self.parser.parse(&mut header, false) {
                Ok(Some(Event::StartElement(..))) => self.depth += 1,
                Ok(Some(_)) => {}
                Ok(None) | Err(EndOrError::NeedMoreData) => break,
                Err(EndOrError::Error(e)) => return Err(FrameError::Xml(e)),
            }
        }
        Ok(())
    }

    /// Handle one event; `true` when a raw skip must start.
    fn on_event(&mut self, ev: Event, out: &mut Vec<Frame>) -> Result<bool, FrameError> {
        let len = ev.metrics().len().min(self.tape.len());
        if !self.seen_root {
            self.header.extend_from_slice(&self.tape[..len]);
            if self.header.len() > MAX_HEADER {
                return Err(FrameError::HeaderTooLarge);
            }
        }
        match ev {
            Event::XmlDeclaration(..) => {}
            Event::StartElement(_, (ns, name), attrs) => {
                self.depth += 1;
                if !self.seen_root {
                    self.seen_root = true;
                    let id = attrs.get(&rxml::Namespace::NONE, "id").cloned();
                    out.push(Frame::Header {
                        is_stream: ns.as_str() == ns::STREAMS && name.as_str() == "stream",
                        id,
                    });
                    self.tape.advance(len);
                    return Ok(false);
                }
                if self.depth == 2 {
                    self.stanza_bytes = 0;
                }
                self.stanza_bytes += len;
                let el = Element {
                    ns,
                    name,
                    attrs,
                    children: Vec::new(),
                };
                let l = &self.limits;
                if self.depth - 1 > l.max_depth {
                    if matches!(self.stanza, Stanza::Keeping) && self.stack.is_empty() {
                        // `el` has no children yet: it is its own start tag.
                        self.stanza = Stanza::Discarding { head: Some(el) };
                    }
                    self.end_pending = self.tape[..len].ends_with(b"/>");
                    self.tape.advance(len);
                    return Ok(true);
                }
                if let Stanza::Keeping = self.stanza {
                    if el.attrs.len() > l.max_attributes
                        || too_many_xmlns(&self.tape[..len], l.max_namespace_decls)
                        || el.name.len() > l.max_token_length
                        || el.attrs.iter().any(|(_, v)| v.len() > l.max_token_length)
                    {
                        let head = match self.stack.first() {
                            Some(top) => head_of(top),
                            None => el,
                        };
                        self.stack.clear();
                        self.stanza = Stanza::Discarding { head: Some(head) };
                    } else {
                        self.stack.push(el);
                    }
                }
            }
            Event::EndElement(_) => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    out.push(Frame::End);
                } else {
                    self.stanza_bytes += len;
                    if let Some(done) = self.stack.pop() {
                        match self.stack.last_mut() {
                            Some(parent) => parent.children.push(Node::Element(done)),
                            // The end tag counts too: a stanza that only its
                            // end tag takes over the limit is skipped, as it
                            // is when the end tag arrives in a later read.
                            None if self.stanza_bytes > self.limits.max_stanza_bytes => {
                                out.push(Frame::Skipped(Some(head_of(&done))))
                            }
                            None => out.push(Frame::Stanza(done)),
                        }
                    }
                    if self.depth == 1 {
                        if let Stanza::Discarding { head } = &mut self.stanza {
                            out.push(Frame::Skipped(head.take()));
                            self.stanza = Stanza::Keeping;
                        }
                        // Between stanzas: the next one starts from zero.
                        self.stanza_bytes = 0;
                    }
                }
            }
            Event::Text(_, text) => {
                if self.depth >= 2 {
                    self.stanza_bytes += len;
                    if let Some(top) = self.stack.last_mut() {
                        match top.children.last_mut() {
                            Some(Node::Text(t)) => t.push_str(&text),
                            _ => top.children.push(Node::Text(text)),
                        }
                    }
                }
            }
        }
        self.tape.advance(len);
        Ok(self.depth >= 2 && self.over_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='axr.example' id='abc'>";

    fn limits() -> Limits {
        Limits {
            max_stanza_bytes: 4096,
            ..Limits::default()
        }
    }

    fn run(chunks: &[&[u8]]) -> (Vec<Frame>, Result<(), FrameError>) {
        let mut f = Framer::new(limits());
        let mut out = Vec::new();
        for c in chunks {
            if let Err(e) = f.feed(c, &mut out) {
                return (out, Err(e));
            }
        }
        (out, Ok(()))
    }

    fn names(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Header { id, .. } => format!("header:{}", id.clone().unwrap_or_default()),
                Frame::Stanza(e) => format!("{}:{}", e.name(), e.attr("id").unwrap_or("")),
                Frame::Skipped(h) => format!(
                    "skipped:{}",
                    h.as_ref().and_then(|e| e.attr("id")).unwrap_or("")
                ),
                Frame::End => "end".into(),
            })
            .collect()
    }

    #[test]
    fn frames_stanzas_and_merges_text() {
        let doc = format!("{HEADER} <message id='1'><body>a &amp; b</body></message>\n<iq id='2'/></stream:stream>");
        let (frames, r) = run(&[doc.as_bytes()]);
        r.unwrap();
        assert_eq!(names(&frames), ["header:abc", "message:1", "iq:2", "end"]);
        let Frame::Stanza(m) = &frames[1] else {
            panic!()
        };
        assert_eq!(m.child(ns::COMPONENT, "body").unwrap().text(), "a & b");
    }

    #[test]
    fn oversized_text_is_skipped_and_the_stream_goes_on() {
        let big = "x".repeat(50_000);
        let doc = format!(
            "{HEADER}<message id='1'><body>ok</body></message><message id='2' from='u@h/r'><body>{big}</body><x a='>'/><![CDATA[</message>]]></message><message id='3'/>"
        );
        for step in [1usize, 7, 100, 4096, 100_000] {
            let chunks: Vec<&[u8]> = doc.as_bytes().chunks(step).collect();
            let (frames, r) = run(&chunks);
            r.unwrap();
            assert_eq!(
                names(&frames),
                ["header:abc", "message:1", "skipped:2", "message:3"],
                "step {step}"
            );
        }
    }

    /// A message of exactly `total` bytes, end tag included.
    fn message_of(id: &str, total: usize) -> String {
        let shell = format!("<message id='{id}'><body></body></message>");
        format!(
            "<message id='{id}'><body>{}</body></message>",
            "y".repeat(total - shell.len())
        )
    }

    #[test]
    fn the_limit_counts_the_whole_stanza_whatever_the_chunking() {
        for (total, expect) in [(4096, "message:m"), (4097, "skipped:m")] {
            let doc = format!("{HEADER}{}<message id='after'/>", message_of("m", total));
            for step in [1usize, 2, 7, 100, 4000, 4095, 4096, 100_000] {
                let chunks: Vec<&[u8]> = doc.as_bytes().chunks(step).collect();
                let (frames, r) = run(&chunks);
                r.unwrap();
                assert_eq!(
                    names(&frames),
                    ["header:abc", expect, "message:after"],
                    "{total} bytes, step {step}"
                );
            }
        }
    }

    #[test]
    fn bytes_past_the_limit_are_skipped_unparsed_whatever_the_chunking() {
        // Invalid UTF-8, a control character, an undefined entity and `]]>`
        // after the limit: the stanza is
        // skipped in every split, never a parse error in some of them.
        let mut doc = format!("{HEADER}<message id='m'><body>").into_bytes();
        doc.extend(std::iter::repeat_n(b'z', 5000));
        doc.extend_from_slice(b"\xff\x01 &bogus; ]]></body></message><message id='after'/>");
        for step in [1usize, 100, 4099, 8192, 100_000] {
            let chunks: Vec<&[u8]> = doc.chunks(step).collect();
            let (frames, r) = run(&chunks);
            r.unwrap();
            assert_eq!(
                names(&frames),
                ["header:abc", "skipped:m", "message:after"],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_large_stanza_does_not_count_against_the_next() {
        let doc = format!(
            "{HEADER}{}{}<message id='c'/>",
            message_of("a", 4096),
            message_of("b", 200)
        );
        for step in [1usize, 3, 64, 4096, 4200, 100_000] {
            let chunks: Vec<&[u8]> = doc.as_bytes().chunks(step).collect();
            let (frames, r) = run(&chunks);
            r.unwrap();
            assert_eq!(
                names(&frames),
                ["header:abc", "message:a", "message:b", "message:c"],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_huge_start_tag_is_skipped_without_address() {
        let attrs: String = (0..2000).map(|i| format!(" a{i}='v'")).collect();
        let doc = format!("{HEADER}<message id='big'{attrs}><body/></message><message id='next'/>");
        let (frames, r) = run(&[doc.as_bytes()]);
        r.unwrap();
        assert_eq!(names(&frames), ["header:abc", "skipped:", "message:next"]);
        let doc = format!("{HEADER}<message id='big'{attrs}/><message id='next'/>");
        let (frames, r) = run(&[doc.as_bytes()]);
        r.unwrap();
        assert_eq!(names(&frames), ["header:abc", "skipped:", "message:next"]);
    }

    #[test]
    fn limits_on_attributes_namespaces_and_depth_skip_one_stanza() {
        let attrs: String = (0..65).map(|i| format!(" a{i}='v'")).collect();
        let decls: String = (0..17).map(|i| format!(" xmlns:p{i}='urn:{i}'")).collect();
        let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
        let doc = format!(
            "{HEADER}<message id='1'{attrs}/><message id='2'><x{decls}/></message><message id='3'>{deep}</message><message id='4'/>"
        );
        let (frames, r) = run(&[doc.as_bytes()]);
        r.unwrap();
        assert_eq!(
            names(&frames),
            [
                "header:abc",
                "skipped:1",
                "skipped:2",
                "skipped:3",
                "message:4"
            ]
        );
    }

    #[test]
    fn depth_violations_resynchronise_even_on_a_self_closing_tag() {
        for inner in ["<b/>", "<b></b>", "<b x='/>'/>", "<b>t</b>"] {
            // The message is depth 1, so the inner element is the first past 32.
            let deep = format!("{}{inner}{}", "<a>".repeat(31), "</a>".repeat(31));
            let doc = format!("{HEADER}<message id='1'>{deep}</message><message id='2'/>");
            for step in [1usize, 5, 4096] {
                let chunks: Vec<&[u8]> = doc.as_bytes().chunks(step).collect();
                let (frames, r) = run(&chunks);
                r.unwrap();
                assert_eq!(
                    names(&frames),
                    ["header:abc", "skipped:1", "message:2"],
                    "{inner} step {step}"
                );
            }
        }
    }

    #[test]
    fn fatal_inputs_name_their_condition() {
        for (input, cond) in [
            ("<message><!-- c --></message>", "restricted-xml"),
            ("<?pi x?>", "restricted-xml"),
            ("<message>&foo;</message>", "restricted-xml"),
            ("<message></iq>", "not-well-formed"),
            ("<message a='1' a='2'/>", "not-well-formed"),
        ] {
            let doc = format!("{HEADER}{input}");
            let (_, r) = run(&[doc.as_bytes()]);
            assert_eq!(r.unwrap_err().condition(), cond, "{input}");
        }
        let (_, r) = run(&[b"<!DOCTYPE x [<!ENTITY a 'b'>]><x/>"]);
        assert_eq!(r.unwrap_err().condition(), "restricted-xml");
        let mut bad = HEADER.as_bytes().to_vec();
        bad.extend_from_slice(b"<message><body>\xff</body></message>");
        let (_, r) = run(&[&bad]);
        assert_eq!(r.unwrap_err().condition(), "not-well-formed");
    }

    #[test]
    fn namespace_declarations_are_counted_only_where_they_fit() {
        let tag = |n: usize| {
            let decls: String = (0..n).map(|i| format!(" xmlns:p{i}='u'")).collect();
            format!("<x{decls}>")
        };
        assert!(!too_many_xmlns(tag(16).as_bytes(), 16));
        assert!(too_many_xmlns(tag(17).as_bytes(), 16));
        // The shortest declarations, one more than allowed, are exactly at
        // the length where counting starts.
        let shortest = format!("<x{}>", " xmlns=''".repeat(3));
        assert!(too_many_xmlns(shortest.as_bytes(), 2));
        assert!(!too_many_xmlns(shortest.as_bytes(), 3));
    }

    #[test]
    fn skip_scanner_handles_quotes_cdata_and_self_closing() {
        let mut s = Skip::new(1);
        let data = b"<a x='>' y=\"</z>\"/><![CDATA[</m>]]><b>t</b></m>rest";
        assert_eq!(s.scan(data), Some(data.len() - 4));
        let mut s = Skip::new(0);
        assert_eq!(s.scan(b"  <m a='1'/>x"), Some(12));
    }
}
