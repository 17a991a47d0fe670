//! The one serializer every outgoing byte goes through (SPEC §2).
//!
//! Prosody closes the whole component stream — for every user — on one bad
//! stanza: a `from` outside the component domain, invalid XML, a control
//! character, or more than 512 KiB. This writer cannot produce any of them:
//! element and attribute names are `&'static str` chosen in this crate, every
//! value is escaped and checked for characters XML forbids, `from` is always
//! built as `[local@]DOMAIN[/resource]` from this relay's own domain, and a
//! stanza that turns out too large or invalid is rolled back as a whole.

use bytes::BytesMut;

use crate::jid::{Jid, MAX_PART};
use crate::ns;

/// Why a stanza was not written; the output is left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// A value holds a character XML 1.0 forbids (a control character, U+FFFE/F).
    BadChar,
    /// An address is empty, too long, or not a JID.
    BadJid,
    /// The stanza has no `from` or no `to`.
    Unaddressed,
    /// The stanza is larger than the limit.
    TooLarge,
}

const MAX_NESTING: usize = 8;

/// Serializer settings for one relay.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    domain: String,
    max_stanza: usize,
}

impl Writer {
    pub(crate) fn new(domain: &str, max_stanza: usize) -> Self {
        Writer {
            domain: domain.to_owned(),
            max_stanza,
        }
    }

    /// The component stream header, written as one piece.
    pub(crate) fn header(&self, out: &mut BytesMut) {
        out.extend_from_slice(b"<stream:stream xmlns='");
        out.extend_from_slice(ns::COMPONENT.as_bytes());
        out.extend_from_slice(b"' xmlns:stream='");
        out.extend_from_slice(ns::STREAMS.as_bytes());
        out.extend_from_slice(b"' to='");
        // The domain was validated by `Config::validate`: no markup characters.
        let _ = escape(out, &self.domain, true);
        out.extend_from_slice(b"'>");
    }

    /// `<handshake>HEX</handshake>`.
    pub(crate) fn handshake(&self, out: &mut BytesMut, hex: &str) {
        out.extend_from_slice(b"<handshake>");
        out.extend_from_slice(hex.as_bytes());
        out.extend_from_slice(b"</handshake>");
    }

    /// A stream error followed by the stream close.
    pub(crate) fn stream_error(&self, out: &mut BytesMut, condition: &'static str) {
        out.extend_from_slice(b"<stream:error><");
        out.extend_from_slice(condition.as_bytes());
        out.extend_from_slice(b" xmlns='");
        out.extend_from_slice(ns::STREAM_ERRORS.as_bytes());
        out.extend_from_slice(b"'/></stream:error>");
        self.close(out);
    }

    /// The stream close tag.
    pub(crate) fn close(&self, out: &mut BytesMut) {
        out.extend_from_slice(b"</stream:stream>");
    }

    /// Begin a stanza named `name`; finish it with [`Stanza::finish`].
    pub(crate) fn stanza<'w>(&'w self, out: &'w mut BytesMut, name: &'static str) -> Stanza<'w> {
        let start = out.len();
        out.extend_from_slice(b"<");
        out.extend_from_slice(name.as_bytes());
        let mut s = Stanza {
            out,
            start,
            domain: &self.domain,
            max: self.max_stanza,
            stack: [""; MAX_NESTING],
            depth: 0,
            head_open: true,
            has_from: false,
            has_to: false,
            err: None,
        };
        s.stack[0] = name;
        s.depth = 1;
        s
    }
}

/// One stanza being written. Errors are sticky and reported by `finish`.
pub(crate) struct Stanza<'w> {
    out: &'w mut BytesMut,
    start: usize,
    domain: &'w str,
    max: usize,
    stack: [&'static str; MAX_NESTING],
    depth: usize,
    head_open: bool,
    has_from: bool,
    has_to: bool,
    err: Option<WriteError>,
}

impl Stanza<'_> {
    fn fail(&mut self, e: WriteError) {
        self.err.get_or_insert(e);
    }

    fn ok(&self) -> bool {
        self.err.is_none()
    }

    /// An attribute whose value is the concatenation of `value` (escaping
    /// the pieces one by one gives the same bytes: none splits a character).
    fn raw_attr(&mut self, name: &str, value: &[&str]) {
        if !self.ok() {
            return;
        }
        if !self.head_open {
            debug_assert!(false, "attribute after content");
            return self.fail(WriteError::BadChar);
        }
        self.out.extend_from_slice(b" ");
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"='");
        for part in value {
            if let Err(e) = escape(self.out, part, true) {
                self.fail(e);
                break;
            }
        }
        self.out.extend_from_slice(b"'");
    }

    /// The recipient, which must be a valid JID.
    pub(crate) fn to(&mut self, jid: &str) -> &mut Self {
        if Jid::parse(jid).is_err() {
            self.fail(WriteError::BadJid);
        }
        self.has_to = true;
        self.raw_attr("to", &[jid]);
        self
    }

    /// The sender: always `[local@]DOMAIN[/resource]` at this relay's domain.
    pub(crate) fn from(&mut self, local: Option<&str>, resource: Option<&str>) -> &mut Self {
        let bad = |p: Option<&str>| p.is_some_and(|p| p.is_empty() || p.len() > MAX_PART);
        if bad(local) || bad(resource) || local.is_some_and(|l| l.contains(['@', '/'])) {
            self.fail(WriteError::BadJid);
        }
        let domain = self.domain;
        self.has_from = true;
        self.raw_attr(
            "from",
            &[
                local.unwrap_or(""),
                if local.is_some() { "@" } else { "" },
                domain,
                if resource.is_some() { "/" } else { "" },
                resource.unwrap_or(""),
            ],
        );
        self
    }

    /// Any other attribute of the current element.
    pub(crate) fn attr(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.raw_attr(name, &[value]);
        self
    }

    fn close_head(&mut self) {
        if self.head_open {
            self.out.extend_from_slice(b">");
            self.head_open = false;
        }
    }

    /// Open a child element, declaring `xmlns` when it differs from the parent's.
    pub(crate) fn child(&mut self, name: &'static str, xmlns: Option<&'static str>) -> &mut Self {
        if self.depth == MAX_NESTING {
            self.fail(WriteError::TooLarge);
            return self;
        }
        self.close_head();
        self.out.extend_from_slice(b"<");
        self.out.extend_from_slice(name.as_bytes());
        self.stack[self.depth] = name;
        self.depth += 1;
        self.head_open = true;
        if let Some(x) = xmlns {
            self.raw_attr("xmlns", &[x]);
        }
        self
    }

    /// Character data inside the current element.
    pub(crate) fn text(&mut self, s: &str) -> &mut Self {
        self.close_head();
        if let Err(e) = escape(self.out, s, false) {
            self.fail(e);
        }
        self
    }

    /// Close the current element.
    pub(crate) fn end(&mut self) -> &mut Self {
        if self.depth == 0 {
            return self;
        }
        self.depth -= 1;
        if self.head_open {
            self.out.extend_from_slice(b"/>");
            self.head_open = false;
        } else {
            let name = self.stack[self.depth];
            self.out.extend_from_slice(b"</");
            self.out.extend_from_slice(name.as_bytes());
            self.out.extend_from_slice(b">");
        }
        self
    }

    /// Take back everything written of this stanza.
    pub(crate) fn abandon(self) {
        self.out.truncate(self.start);
    }

    /// Close what is open and check the whole stanza; on error nothing of it
    /// remains in the output.
    pub(crate) fn finish(mut self) -> Result<usize, WriteError> {
        while self.depth > 0 {
            self.end();
        }
        if self.ok() && !(self.has_from && self.has_to) {
            self.fail(WriteError::Unaddressed);
        }
        let len = self.out.len() - self.start;
        if self.ok() && len > self.max {
            self.fail(WriteError::TooLarge);
        }
        match self.err {
            None => Ok(len),
            Some(e) => {
                self.out.truncate(self.start);
                Err(e)
            }
        }
    }
}

/// What `escape` does with a byte, by the byte's value.
const COPY: u8 = 0;
/// Replaced by a reference (`replacement`).
const REF: u8 = 1;
/// Not allowed in XML 1.0: a control character.
const BAD: u8 = 2;
/// First byte of U+F000..U+FFFF: refused only for U+FFFE and U+FFFF.
const EF: u8 = 3;

const fn classes(attr: bool) -> [u8; 256] {
    let mut t = [COPY; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = BAD;
        c += 1;
    }
    t[b'<' as usize] = REF;
    t[b'>' as usize] = REF;
    t[b'&' as usize] = REF;
    t[b'\r' as usize] = REF;
    let ws = if attr { REF } else { COPY };
    t[b'\t' as usize] = ws;
    t[b'\n' as usize] = ws;
    if attr {
        t[b'\'' as usize] = REF;
        t[b'"' as usize] = REF;
    }
    t[0xEF] = EF;
    t
}

static TEXT_CLASSES: [u8; 256] = classes(false);
static ATTR_CLASSES: [u8; 256] = classes(true);

fn replacement(c: u8) -> &'static [u8] {
    match c {
        b'<' => b"&lt;",
        b'>' => b"&gt;",
        b'&' => b"&amp;",
        b'\'' => b"&apos;",
        b'"' => b"&quot;",
        b'\r' => b"&#13;",
        b'\t' => b"&#9;",
        _ => b"&#10;",
    }
}

/// Escape `s` into `out`, refusing characters XML 1.0 cannot carry. Carriage
/// returns (and in attributes tabs and newlines) become character references
/// so that they survive the receiver's normalisation byte for byte.
///
/// Every outgoing value passes through here, so it is built for the common
/// case of nothing to escape: one table lookup per byte to find the next
/// byte that needs attention, and one copy per clean run.
fn escape(out: &mut BytesMut, s: &str, attr: bool) -> Result<(), WriteError> {
    let b = s.as_bytes();
    let table = if attr { &ATTR_CLASSES } else { &TEXT_CLASSES };
    let mut last = 0;
    let mut i = 0;
    while let Some(n) = b[i..].iter().position(|&c| table[usize::from(c)] != COPY) {
        let at = i + n;
        i = at + 1;
        let c = b[at];
        match table[usize::from(c)] {
            REF => {
                out.extend_from_slice(&b[last..at]);
                out.extend_from_slice(replacement(c));
                last = i;
            }
            // U+FFFE and U+FFFF (EF BF BE / EF BF BF) are not XML characters.
            EF if b.get(at + 1) == Some(&0xBF) && matches!(b.get(at + 2), Some(0xBE | 0xBF)) => {
                return Err(WriteError::BadChar)
            }
            EF => {}
            _ => return Err(WriteError::BadChar),
        }
    }
    out.extend_from_slice(&b[last..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> Writer {
        Writer::new("axr.example", 200)
    }

    #[test]
    fn writes_a_stanza_with_escaping() {
        let w = w();
        let mut out = BytesMut::new();
        let mut s = w.stanza(&mut out, "message");
        s.to("b@example.org")
            .from(Some("p"), Some("a"))
            .attr("id", "x'\"<");
        s.child("body", None).text("a < b & c > d\r\n\t\"'").end();
        s.child("active", Some(ns::CHATSTATES)).end();
        s.finish().unwrap();
        assert_eq!(
            &out[..],
            b"<message to='b@example.org' from='p@axr.example/a' id='x&apos;&quot;&lt;'>\
<body>a &lt; b &amp; c &gt; d&#13;\n\t\"'</body>\
<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        );
    }

    #[test]
    fn from_is_built_from_its_parts() {
        let w = w();
        for (local, resource, want) in [
            (None, None, "axr.example"),
            (Some("p"), None, "p@axr.example"),
            (None, Some("a b"), "axr.example/a b"),
            (Some("p"), Some("<r>"), "p@axr.example/&lt;r&gt;"),
        ] {
            let mut out = BytesMut::new();
            let mut s = w.stanza(&mut out, "presence");
            s.to("b@example.org").from(local, resource);
            s.finish().unwrap();
            let want = format!("<presence to='b@example.org' from='{want}'/>");
            assert_eq!(&out[..], want.as_bytes());
        }
    }

    #[test]
    fn bad_stanzas_leave_no_trace() {
        let w = w();
        let mut out = BytesMut::from(&b"<keep/>"[..]);
        for build in [
            (|s: &mut Stanza| {
                s.to("b@example.org")
                    .from(None, None)
                    .child("body", None)
                    .text("\u{1}");
            }) as fn(&mut Stanza),
            |s| {
                s.to("b@example.org")
                    .from(None, None)
                    .child("body", None)
                    .text("\u{FFFE}");
            },
            |s| {
                s.to("b@example.org").from(None, None).attr("id", "\u{0}");
            },
            |s| {
                s.to("").from(None, None);
            },
            |s| {
                s.to("b@example.org");
            },
            |s| {
                s.from(Some("x@evil.org"), None).to("b@example.org");
            },
            |s| {
                s.to("b@example.org")
                    .from(None, None)
                    .child("body", None)
                    .text(&"x".repeat(300));
            },
        ] {
            let mut s = w.stanza(&mut out, "message");
            build(&mut s);
            assert!(s.finish().is_err());
            assert_eq!(&out[..], b"<keep/>");
        }
    }

    /// The byte-by-byte escape this module used before, to check the fast one against.
    fn reference_escape(out: &mut BytesMut, s: &str, attr: bool) -> Result<(), WriteError> {
        let b = s.as_bytes();
        let mut last = 0;
        for (i, &c) in b.iter().enumerate() {
            let rep: &[u8] = match c {
                b'<' => b"&lt;",
                b'>' => b"&gt;",
                b'&' => b"&amp;",
                b'\'' if attr => b"&apos;",
                b'"' if attr => b"&quot;",
                b'\r' => b"&#13;",
                b'\t' if attr => b"&#9;",
                b'\n' if attr => b"&#10;",
                b'\t' | b'\n' => continue,
                0..=0x1f => return Err(WriteError::BadChar),
                // U+FFFE and U+FFFF (EF BF BE / EF BF BF) are not XML characters.
                0xEF if b.get(i + 1) == Some(&0xBF)
                    && matches!(b.get(i + 2), Some(0xBE | 0xBF)) =>
                {
                    return Err(WriteError::BadChar)
                }
                _ => continue,
            };
            out.extend_from_slice(&b[last..i]);
            out.extend_from_slice(rep);
            last = i + 1;
        }
        out.extend_from_slice(&b[last..]);
        Ok(())
    }

    #[test]
    fn escape_matches_the_byte_by_byte_reference() {
        let samples = [
            "",
            "plain text",
            "a < b & c > d\r\n\t\"'",
            "<<>>&&''\"\"",
            "ends with <",
            "\u{FFFD}\u{F000}\u{FEFF}\u{FFEF}fullwidth\u{FF01}",
            "\u{FFFE}",
            "x\u{FFFF}y",
            "ok\u{1}",
            "\u{7f}\u{80}\u{10FFFF}é",
        ];
        let chars: Vec<char> = (0u32..0x80)
            .chain([0xE9, 0xFFFD, 0xFFFE, 0xFFFF, 0xFF01, 0xF000, 0x1F600])
            .filter_map(char::from_u32)
            .collect();
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let random = (0..2000).map(|_| {
            let mut s = String::new();
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            for k in 0..(rng % 40) {
                let r = rng.rotate_left(k as u32 * 7) ^ k;
                // Mostly letters, so clean runs of all lengths occur.
                let c = if r.is_multiple_of(3) {
                    chars[(r >> 8) as usize % chars.len()]
                } else {
                    'q'
                };
                s.push(c);
            }
            s
        });
        for s in samples.iter().map(|s| s.to_string()).chain(random) {
            for attr in [false, true] {
                let mut fast = BytesMut::from(&b"pre"[..]);
                let mut slow = fast.clone();
                let a = escape(&mut fast, &s, attr);
                let b = reference_escape(&mut slow, &s, attr);
                assert_eq!(a, b, "{s:?} attr={attr}");
                if a.is_ok() {
                    assert_eq!(fast, slow, "{s:?} attr={attr}");
                }
            }
        }
    }
}
