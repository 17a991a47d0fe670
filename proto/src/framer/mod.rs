//! Incremental stanza framing with the limits of SPEC §6.
//!
//! The tokenizer (`xml/`) finds tokens in the input without copying it;
//! the framer matches tags, keeps namespace declarations in force, and
//! writes each stanza into a [`Tree`] whose buffers are reused. Only the
//! bytes of an unfinished token are kept between reads.
//!
//! * A stanza with a name or value longer than `max_token_length` is parsed
//!   on but not kept, and reported as [`Frame::Skipped`] when it ends.
//! * A stanza that nests deeper than `max_depth`, grows beyond
//!   `max_stanza_bytes`, or has a tag with more attributes or namespace
//!   declarations than allowed is scanned as raw bytes (tags, quotes,
//!   CDATA) to its end, unparsed (`skip.rs`): no byte past the stanza
//!   limit is ever parsed, so whether an error there ends the stream
//!   cannot depend on how the input was split. The tag that is too deep or
//!   over a count limit is checked as a whole token first, then scanned
//!   from its `<`; its declarations are never declared or compared, so it
//!   costs no more than reading its bytes. Memory stays bounded by the
//!   limit.
//! * Malformed XML, DTDs, comments, processing instructions, undeclared
//!   entities and invalid UTF-8 are fatal: the caller closes the stream
//!   with [`FrameError::condition`].

mod skip;

use std::collections::VecDeque;

use self::skip::Skip;
use crate::config::Limits;
use crate::element::{Span, Tree};
use crate::ns;
use crate::xml::{
    declared_prefix, push_attr_value, push_cdata, push_text, split_qname, Bound, RawAttr, Scope,
    Token, Tokenizer, XmlError,
};

/// Largest stream header accepted.
const MAX_HEADER: usize = 16 * 1024;
/// Emptied trees kept for the next stanzas.
const SPARE_TREES: usize = 8;

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
    Stanza(Tree),
    /// A stanza skipped for breaking a limit, with its top element without
    /// children when its start tag could be read: all its attributes when
    /// the stanza was read on (too deep, too long a name or value, too
    /// large after its start tag), only the unprefixed `from`, `to`, `id`
    /// and `type` when the start tag itself broke a count limit, nothing
    /// when the start tag did not fit in the stanza limit.
    Skipped(Option<Tree>),
    /// The server closed the stream root.
    End,
}

/// A fatal parse error: the stream cannot go on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FrameError {
    /// The input is not restricted XML.
    Xml(XmlError),
    /// The stream header is larger than any server sends.
    HeaderTooLarge,
    /// Between stanzas, a token that is no start tag (a CDATA section,
    /// the stream's end tag) is larger than `max_stanza_bytes`.
    TokenTooLarge,
}

impl FrameError {
    /// The RFC 6120 stream error condition to answer with.
    pub(crate) fn condition(&self) -> &'static str {
        match self {
            FrameError::Xml(XmlError::Restricted(_)) => "restricted-xml",
            FrameError::Xml(XmlError::Malformed(_)) => "not-well-formed",
            FrameError::HeaderTooLarge | FrameError::TokenTooLarge => "policy-violation",
        }
    }
}

impl From<XmlError> for FrameError {
    fn from(e: XmlError) -> Self {
        FrameError::Xml(e)
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Xml(e) => write!(f, "{e}"),
            FrameError::HeaderTooLarge => f.write_str("stream header too large"),
            FrameError::TokenTooLarge => f.write_str("markup between stanzas larger than a stanza"),
        }
    }
}

/// What becomes of the stanza being read.
#[derive(Debug)]
enum Stanza {
    /// Parsed and written into `Framer::tree` (also the state between
    /// stanzas).
    Keeping,
    /// It broke a limit that parsing survives: parsed to its end, nothing
    /// kept but its start tag (in `Framer::tree`).
    Discarding,
    /// It broke a limit that parsing does not survive: its bytes are scanned
    /// raw to its end.
    Scanning(Skip),
}

/// What the framer does with a token it was handed.
enum Step {
    /// Consumed.
    Took,
    /// Not consumed: the stanza is scanned raw from the token's first byte.
    SkipHere,
}

/// The stanza framer for one connection.
pub(crate) struct Framer {
    tokenizer: Tokenizer,
    limits: Limits,
    /// Input fed and not yet framed; `held[..at]` is consumed.
    held: Vec<u8>,
    at: usize,
    /// Frames found and not yet polled.
    ready: VecDeque<Frame>,
    /// A start tag's attributes (reused).
    attrs: Vec<RawAttr>,
    scope: Scope,
    /// Qualified names of the open elements, the root's first, for
    /// matching end tags: `names[open_names[i]..]` is the i-th.
    names: String,
    open_names: Vec<u32>,
    seen_root: bool,
    ended: bool,
    header_bytes: usize,
    /// Bytes of the current stanza consumed so far.
    stanza_bytes: usize,
    stanza: Stanza,
    /// The stanza being read, or the start tag of one not kept.
    tree: Tree,
    /// Indices in `tree` of the stanza's open elements.
    open: Vec<u32>,
    /// Counts the trees built, to tell which one a namespace's place in
    /// a tree belongs to.
    stanza_no: u64,
    /// Where the current tree holds the `xml` namespace, if it does.
    xml_ns: Option<(u64, Span)>,
    spare: Vec<Tree>,
}

impl Framer {
    pub(crate) fn new(limits: Limits) -> Self {
        Framer {
            tokenizer: Tokenizer::default(),
            limits,
            held: Vec::new(),
            at: 0,
            ready: VecDeque::new(),
            attrs: Vec::new(),
            scope: Scope::default(),
            names: String::new(),
            open_names: Vec::new(),
            seen_root: false,
            ended: false,
            header_bytes: 0,
            stanza_bytes: 0,
            stanza: Stanza::Keeping,
            tree: Tree::default(),
            open: Vec::new(),
            stanza_no: 0,
            xml_ns: None,
            spare: Vec::new(),
        }
    }

    /// Bytes held for the unfinished stanza: input not yet framed, and the
    /// names, values and text of the partial tree (its node records are
    /// bounded by `a_stanza_record_is_bounded_by_its_bytes`), for checking
    /// that hostile input cannot grow memory without bound.
    pub(crate) fn buffered(&self) -> usize {
        self.held.len() - self.at + self.tree.text_len()
    }

    /// Whether fed bytes wait for the rest of their token.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn unfinished(&self) -> bool {
        self.held.len() > self.at
    }

    /// Takes back a stanza's tree once it is handled, to read a later
    /// stanza into without allocating.
    pub(crate) fn recycle(&mut self, mut tree: Tree) {
        // A tree grown by a large stanza is not kept: memory returns to
        // what ordinary stanzas need.
        if self.spare.len() < SPARE_TREES && tree.capacity() <= 16 * 1024 {
            tree.clear();
            self.spare.push(tree);
        }
    }

    /// Bytes from the server, in order; [`Framer::poll`] reads them.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        self.held.extend_from_slice(data);
    }

    /// The next frame, or `None` until more bytes are fed. After an error
    /// the framer is unusable (the stream must be closed).
    pub(crate) fn poll(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(frame) = self.ready.pop_front() {
            return Ok(Some(frame));
        }
        let held = std::mem::take(&mut self.held);
        let mut ready = std::mem::take(&mut self.ready);
        let result = self.consume(&held[self.at..], &mut ready);
        self.held = held;
        let frame = ready.pop_front();
        self.ready = ready;
        self.at += result?;
        if frame.is_none() {
            // Everything before the unfinished token is done with.
            self.held.drain(..self.at);
            self.at = 0;
        }
        Ok(frame)
    }

    /// Every frame `data` completes, in order (for tests).
    #[cfg(test)]
    fn feed_all(&mut self, data: &[u8], out: &mut Vec<Frame>) -> Result<(), FrameError> {
        self.feed(data);
        while let Some(frame) = self.poll()? {
            out.push(frame);
        }
        Ok(())
    }

    /// Consumes `data` until a frame is ready or all of it is used;
    /// returns how much it used.
    fn consume(&mut self, data: &[u8], out: &mut VecDeque<Frame>) -> Result<usize, FrameError> {
        let mut pos = 0;
        while pos < data.len() && out.is_empty() {
            if self.ended {
                // Nothing after the stream's end is read.
                return Ok(data.len());
            }
            if let Stanza::Scanning(skip) = &mut self.stanza {
                match skip.scan(&data[pos..]) {
                    Some(n) => {
                        pos += n;
                        self.end_skip(out);
                        continue;
                    }
                    None => return Ok(data.len()),
                }
            }
            // No token may reach past the limit: one that does not fit is
            // not parsed, and its stanza is skipped.
            let room = if self.seen_root {
                self.limits
                    .max_stanza_bytes
                    .saturating_sub(self.stanza_bytes)
            } else {
                MAX_HEADER.saturating_sub(self.header_bytes)
            };
            let view = &data[pos..data.len().min(pos + room)];
            let Some((token, n)) = self.tokenizer.next(view, &mut self.attrs)? else {
                if view.len() == data.len() - pos {
                    return Ok(pos);
                }
                if !self.seen_root {
                    return Err(FrameError::HeaderTooLarge);
                }
                // Between stanzas only a stanza's start tag can be too large
                // to skip: a CDATA section or the stream's end tag larger
                // than a stanza is no stanza to skip, and the raw scanner
                // would take the next stanza for its end.
                if self.scope.depth() == 1 && !starts_start_tag(&data[pos..]) {
                    return Err(FrameError::TokenTooLarge);
                }
                self.begin_skip();
                continue;
            };
            match self.on_token(token, n, out)? {
                Step::Took => pos += n,
                Step::SkipHere => self.begin_skip(),
            }
            // `room` let no token cross the limit.
            debug_assert!(self.stanza_bytes <= self.limits.max_stanza_bytes);
        }
        Ok(pos)
    }

    fn on_token(
        &mut self,
        token: Token<'_>,
        n: usize,
        out: &mut VecDeque<Frame>,
    ) -> Result<Step, FrameError> {
        let depth = self.scope.depth();
        if !self.seen_root {
            self.header_bytes += n;
        } else if depth >= 2 || matches!(token, Token::Start { .. }) {
            self.stanza_bytes += n;
        }
        match token {
            Token::Decl => {}
            Token::CData { .. } if depth == 0 => {
                return Err(XmlError::Malformed("CDATA section outside the root element").into())
            }
            Token::Text { raw } => {
                if depth >= 2 && matches!(self.stanza, Stanza::Keeping) {
                    self.tree.add_text(|s| push_text(raw, s));
                }
            }
            Token::CData { text } => {
                if depth >= 2 && matches!(self.stanza, Stanza::Keeping) {
                    self.tree.add_text(|s| push_cdata(text, s));
                }
            }
            Token::Start { tag, name, empty } => {
                // Too deep, or more attributes or declarations than allowed:
                // the stanza is skipped unparsed from here, so that neither
                // the nesting nor the count costs more than reading bytes.
                if self.seen_root && (depth > self.limits.max_depth || self.too_many(tag)) {
                    if depth == 1 {
                        self.head_from_tag(tag, name);
                    }
                    self.stanza_bytes -= n;
                    return Ok(Step::SkipHere);
                }
                self.start(tag, name, empty, out)?;
            }
            Token::End { name } => self.end(name, out)?,
        }
        Ok(Step::Took)
    }

    /// A start tag: declarations, names, duplicates, limits; then the
    /// element is opened (and closed again if empty).
    fn start(
        &mut self,
        tag: &str,
        qname: &str,
        empty: bool,
        out: &mut VecDeque<Frame>,
    ) -> Result<(), FrameError> {
        let depth = self.scope.depth();
        let max_token = self.limits.max_token_length;
        self.scope.open();
        let mut too_long = false;
        for a in &self.attrs {
            let name = a.name(tag);
            let Some(prefix) = declared_prefix(name) else {
                continue;
            };
            self.scope.declare(prefix, a.value(tag))?;
            too_long |= name.len() > max_token || a.value(tag).len() > max_token;
        }
        let (prefix, local) = split_qname(qname);
        if prefix == "xmlns" {
            return Err(XmlError::Malformed("element in the xmlns namespace").into());
        }
        let bound = self.scope.lookup(prefix)?;
        check_duplicates(tag, &self.attrs, &self.scope)?;

        if !self.seen_root {
            self.seen_root = true;
            self.tokenizer.enter_root();
            let id = self.attrs.iter().find(|a| a.name(tag) == "id").map(|a| {
                let mut s = String::new();
                push_attr_value(a.value(tag), &mut s);
                s
            });
            out.push_back(Frame::Header {
                is_stream: self.scope.uri(bound) == ns::STREAMS && local == "stream",
                id,
            });
        } else if matches!(self.stanza, Stanza::Keeping) {
            let ns = self.ns_span(bound);
            let index = self.tree.open(ns, local);
            too_long |= local.len() > max_token;
            for k in 0..self.attrs.len() {
                let a = self.attrs[k];
                let name = a.name(tag);
                if declared_prefix(name).is_some() {
                    continue;
                }
                let (p, local) = split_qname(name);
                too_long |= name.len() > max_token;
                let bound = match p {
                    "" => Bound::Nothing,
                    p => self.scope.lookup(p)?,
                };
                let ns = self.ns_span(bound);
                self.tree
                    .add_attr(ns, local, |s| push_attr_value(a.value(tag), s));
                too_long |= self.tree.last_value_len() > max_token;
            }
            if too_long {
                self.tree.keep_head();
                self.open.clear();
                self.stanza = Stanza::Discarding;
            } else if empty {
                self.tree.close(index);
            } else {
                self.open.push(index);
            }
        }
        if empty {
            self.scope.close();
            match depth {
                0 => {
                    self.ended = true;
                    out.push_back(Frame::End);
                }
                1 => self.finish_stanza(out),
                _ => {}
            }
        } else {
            self.open_names.push(self.names.len() as u32);
            self.names.push_str(qname);
        }
        Ok(())
    }

    fn end(&mut self, qname: &str, out: &mut VecDeque<Frame>) -> Result<(), FrameError> {
        let Some(at) = self.open_names.pop() else {
            return Err(XmlError::Malformed("end tag without a start").into());
        };
        if self.names.get(at as usize..) != Some(qname) {
            return Err(XmlError::Malformed("end tag does not match its start").into());
        }
        self.names.truncate(at as usize);
        self.scope.close();
        match self.scope.depth() {
            0 => {
                self.ended = true;
                out.push_back(Frame::End);
            }
            depth => {
                if matches!(self.stanza, Stanza::Keeping) {
                    if let Some(index) = self.open.pop() {
                        self.tree.close(index);
                    }
                }
                if depth == 1 {
                    self.finish_stanza(out);
                }
            }
        }
        Ok(())
    }

    /// Whether a start tag has more attributes or namespace declarations
    /// than an element may.
    fn too_many(&self, tag: &str) -> bool {
        let decls = self
            .attrs
            .iter()
            .filter(|a| declared_prefix(a.name(tag)).is_some())
            .count();
        decls > self.limits.max_namespace_decls
            || self.attrs.len() - decls > self.limits.max_attributes
    }

    /// The start tag of a stanza skipped unparsed, for the error reply:
    /// its namespace and name and its unqualified `from`, `to`, `id` and
    /// `type`. Nothing if its prefix is not declared.
    fn head_from_tag(&mut self, tag: &str, qname: &str) {
        let (prefix, local) = split_qname(qname);
        let own = self
            .attrs
            .iter()
            .find(|a| declared_prefix(a.name(tag)) == Some(prefix));
        let mut ns = String::new();
        match own {
            Some(a) => push_attr_value(a.value(tag), &mut ns),
            None => match self.scope.resolve(prefix) {
                Ok(uri) => ns.push_str(uri),
                Err(_) => return,
            },
        }
        self.tree.clear();
        let span = self.tree.push_ns(&ns);
        let index = self.tree.open(span, local);
        for k in 0..self.attrs.len() {
            let a = self.attrs[k];
            let name = a.name(tag);
            if matches!(name, "from" | "to" | "id" | "type")
                && self.tree.root().attr(name).is_none()
            {
                self.tree
                    .add_attr(Span::default(), name, |s| push_attr_value(a.value(tag), s));
            }
        }
        self.tree.close(index);
    }

    /// Where the stanza being built holds namespace `bound`'s name: each
    /// is written once per stanza, so a stanza's record grows with its
    /// bytes, not with how often it names a long namespace.
    fn ns_span(&mut self, bound: Bound) -> Span {
        match bound {
            Bound::Nothing => Span::default(),
            Bound::Xml => match self.xml_ns {
                Some((stanza, span)) if stanza == self.stanza_no => span,
                _ => {
                    let span = self.tree.push_ns(ns::XML);
                    self.xml_ns = Some((self.stanza_no, span));
                    span
                }
            },
            Bound::Decl(i) => match self.scope.memo(i, self.stanza_no) {
                Some((at, end)) => Span { at, end },
                None => {
                    let span = self.tree.push_ns(self.scope.uri(bound));
                    self.scope.set_memo(i, self.stanza_no, (span.at, span.end));
                    span
                }
            },
        }
    }

    /// A fresh tree for the next stanza.
    fn take_tree(&mut self) -> Tree {
        self.stanza_no += 1;
        std::mem::replace(&mut self.tree, self.spare.pop().unwrap_or_default())
    }

    /// The stanza's last tag was read.
    fn finish_stanza(&mut self, out: &mut VecDeque<Frame>) {
        let tree = self.take_tree();
        let frame = match std::mem::replace(&mut self.stanza, Stanza::Keeping) {
            Stanza::Keeping => Frame::Stanza(tree),
            _ => skipped(tree),
        };
        out.push_back(frame);
        self.open.clear();
        self.stanza_bytes = 0;
    }

    /// Scans the rest of the current stanza raw, from the next byte.
    fn begin_skip(&mut self) {
        let open = self.scope.depth().saturating_sub(1);
        while self.scope.depth() > 1 {
            self.scope.close();
            if let Some(at) = self.open_names.pop() {
                self.names.truncate(at as usize);
            }
        }
        if matches!(self.stanza, Stanza::Keeping) {
            self.tree.keep_head();
        }
        self.open.clear();
        self.tokenizer.abandon();
        self.stanza = Stanza::Scanning(Skip::new(open));
    }

    /// The raw scan reached the stanza's end.
    fn end_skip(&mut self, out: &mut VecDeque<Frame>) {
        let tree = self.take_tree();
        out.push_back(skipped(tree));
        self.stanza = Stanza::Keeping;
        self.stanza_bytes = 0;
    }
}

/// A skipped stanza, with its start tag when that could be read.
fn skipped(head: Tree) -> Frame {
    Frame::Skipped((!head.is_empty()).then_some(head))
}

/// Whether `data` starts with a start tag (or what could still become one).
fn starts_start_tag(data: &[u8]) -> bool {
    data.first() == Some(&b'<') && !matches!(data.get(1), Some(b'/' | b'!' | b'?'))
}

/// No two attributes of a tag share a name and namespace.
fn check_duplicates(tag: &str, attrs: &[RawAttr], scope: &Scope) -> Result<(), XmlError> {
    const DUPLICATE: XmlError = XmlError::Malformed("duplicate attribute");
    let named = |a: &RawAttr| -> Result<Option<(&str, &str)>, XmlError> {
        let name = a.name(tag);
        if declared_prefix(name).is_some() {
            // Declarations were compared when declared.
            return Ok(None);
        }
        let (p, local) = split_qname(name);
        let ns = if p.is_empty() { "" } else { scope.resolve(p)? };
        Ok(Some((ns, local)))
    };
    if attrs.len() <= 16 {
        for (i, a) in attrs.iter().enumerate() {
            let Some(this) = named(a)? else { continue };
            for b in &attrs[..i] {
                if split_qname(b.name(tag)).1 == this.1 && named(b)? == Some(this) {
                    return Err(DUPLICATE);
                }
            }
        }
        return Ok(());
    }
    let mut all = Vec::with_capacity(attrs.len());
    for a in attrs {
        if let Some(n) = named(a)? {
            all.push(n);
        }
    }
    all.sort_unstable();
    if all.windows(2).any(|w| w[0] == w[1]) {
        return Err(DUPLICATE);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
