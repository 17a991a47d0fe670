//! Finding and checking one token at a time.

use super::chars::{is_name_char, is_name_start, is_ncname, is_space, reference};
use super::XmlError::{self, Malformed, Restricted};

/// Longest reference body accepted (`#x` and eight digits). A longer one is
/// refused however the input is split.
const MAX_REF: usize = 10;

/// One token, borrowed from the buffer it was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// `<?xml version='1.0' ...?>` at the very start.
    Decl,
    /// A start tag: the whole tag and its qualified name; its attributes
    /// are in the vector handed to [`Tokenizer::next`].
    Start {
        tag: &'a str,
        name: &'a str,
        /// `<x/>`: no end tag follows.
        empty: bool,
    },
    /// An end tag's qualified name.
    End { name: &'a str },
    /// Character data, checked, its references and line ends still raw
    /// (see `decode.rs`).
    Text { raw: &'a str },
    /// The content of a CDATA section, checked, line ends still raw.
    CData { text: &'a str },
}

/// An attribute of a start tag: byte ranges of its qualified name and its
/// raw value (between the quotes) in the tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawAttr {
    name: (u32, u32),
    value: (u32, u32),
}

impl RawAttr {
    /// The qualified name.
    pub(crate) fn name<'a>(&self, tag: &'a str) -> &'a str {
        tag.get(self.name.0 as usize..self.name.1 as usize)
            .unwrap_or_default()
    }

    /// The raw value: references and white space not yet replaced.
    pub(crate) fn value<'a>(&self, tag: &'a str) -> &'a str {
        tag.get(self.value.0 as usize..self.value.1 as usize)
            .unwrap_or_default()
    }
}

/// Splits a buffer into tokens; holds only where the search for the
/// current token's end stopped, so no byte is scanned twice for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tokenizer {
    /// Bytes of the unfinished token already searched for its end.
    searched: usize,
    /// The quote a start tag's search stopped inside.
    quote: u8,
    /// Something was consumed: the XML declaration may only come first.
    started: bool,
    /// The root element has started: text is no longer white space only.
    in_root: bool,
}

impl Tokenizer {
    /// The next token at the start of `buf` and its length, or `None` when
    /// `buf` ends before it does. `attrs` receives a start tag's attributes.
    /// After `None` call again with the same bytes and more.
    pub(crate) fn next<'a>(
        &mut self,
        buf: &'a [u8],
        attrs: &mut Vec<RawAttr>,
    ) -> Result<Option<(Token<'a>, usize)>, XmlError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let found = if first != b'<' {
            if self.in_root {
                text(buf)?
            } else {
                prolog_space(buf)?
            }
        } else {
            match buf.get(1) {
                None => None,
                Some(b'/') => self.end_tag(buf)?,
                Some(b'!') => self.bang(buf)?,
                Some(b'?') => self.declaration(buf)?,
                Some(_) => self.start_tag(buf, attrs)?,
            }
        };
        if found.is_some() {
            self.searched = 0;
            self.quote = 0;
            self.started = true;
        }
        Ok(found)
    }

    /// The root element started: text may follow.
    pub(crate) fn enter_root(&mut self) {
        self.in_root = true;
    }

    /// Forgets the unfinished token (the framer skips it raw).
    pub(crate) fn abandon(&mut self) {
        self.searched = 0;
        self.quote = 0;
        self.started = true;
    }

    fn end_tag<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Token<'a>, usize)>, XmlError> {
        let from = self.searched.max(2);
        let Some(end) = memchr::memchr(b'>', &buf[from..]).map(|i| from + i) else {
            self.searched = buf.len();
            return Ok(None);
        };
        let tag = utf8(&buf[..=end])?;
        let inner = &tag[2..end];
        let name_end = inner.bytes().position(is_space).unwrap_or(inner.len());
        let name = &inner[..name_end];
        check_qname(name)?;
        if !inner[name_end..].bytes().all(is_space) {
            return Err(Malformed("junk in an end tag"));
        }
        Ok(Some((Token::End { name }, end + 1)))
    }

    fn start_tag<'a>(
        &mut self,
        buf: &'a [u8],
        attrs: &mut Vec<RawAttr>,
    ) -> Result<Option<(Token<'a>, usize)>, XmlError> {
        let mut quote = self.quote;
        let mut end = None;
        for (i, &b) in buf.iter().enumerate().skip(self.searched.max(1)) {
            if quote != 0 {
                if b == quote {
                    quote = 0;
                }
            } else if b == b'"' || b == b'\'' {
                quote = b;
            } else if b == b'>' {
                end = Some(i);
                break;
            }
        }
        let Some(end) = end else {
            self.searched = buf.len();
            self.quote = quote;
            return Ok(None);
        };
        let tag = utf8(&buf[..=end])?;
        let (name, empty) = parse_start(tag, attrs)?;
        Ok(Some((Token::Start { tag, name, empty }, end + 1)))
    }

    /// `<!`: a CDATA section; comments and DTDs are refused.
    fn bang<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Token<'a>, usize)>, XmlError> {
        const OPEN: &[u8] = b"<![CDATA[";
        match buf.get(2) {
            None => return Ok(None),
            Some(b'-') => {
                return match buf.get(3) {
                    None => Ok(None),
                    Some(b'-') => Err(Restricted("comment")),
                    Some(_) => Err(Malformed("invalid markup")),
                }
            }
            Some(b'[') => {}
            Some(b) if b.is_ascii_uppercase() => {
                return Err(Restricted("document type declaration"))
            }
            Some(_) => return Err(Malformed("invalid markup")),
        }
        let have = buf.len().min(OPEN.len());
        if buf[..have] != OPEN[..have] {
            return Err(Malformed("invalid markup"));
        }
        if have < OPEN.len() {
            return Ok(None);
        }
        let from = self.searched.saturating_sub(2).max(OPEN.len());
        let Some(close) = memchr::memmem::find(&buf[from..], b"]]>").map(|i| from + i) else {
            self.searched = buf.len();
            return Ok(None);
        };
        let text = utf8(&buf[OPEN.len()..close])?;
        check_chars(text.as_bytes())?;
        Ok(Some((Token::CData { text }, close + 3)))
    }

    /// `<?`: the XML declaration where it may stand; any other processing
    /// instruction is refused.
    fn declaration<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Token<'a>, usize)>, XmlError> {
        const OPEN: &[u8] = b"<?xml";
        let have = buf.len().min(OPEN.len());
        if self.started || buf[..have] != OPEN[..have] {
            return Err(Restricted("processing instruction"));
        }
        match buf.get(OPEN.len()) {
            None => return Ok(None),
            Some(&b) if is_space(b) => {}
            Some(_) => return Err(Restricted("processing instruction")),
        }
        let from = self.searched.saturating_sub(1).max(OPEN.len());
        let Some(close) = memchr::memmem::find(&buf[from..], b"?>").map(|i| from + i) else {
            self.searched = buf.len();
            return Ok(None);
        };
        let body = utf8(&buf[OPEN.len()..close])?;
        check_declaration(body)?;
        Ok(Some((Token::Decl, close + 2)))
    }
}

/// White space before the root element (nothing else may stand there).
fn prolog_space(buf: &[u8]) -> Result<Option<(Token<'_>, usize)>, XmlError> {
    let n = buf.iter().position(|b| !is_space(*b)).unwrap_or(buf.len());
    if buf.get(n).is_some_and(|b| *b != b'<') {
        return Err(Malformed("text outside the root element"));
    }
    // White space is ASCII.
    let raw = utf8(&buf[..n])?;
    Ok(Some((Token::Text { raw }, n)))
}

/// Character data up to the next `<`, or as much of it as can be checked
/// before more arrives.
fn text(buf: &[u8]) -> Result<Option<(Token<'_>, usize)>, XmlError> {
    let end = match memchr::memchr(b'<', buf) {
        Some(i) => i,
        None => checkable(buf),
    };
    if end == 0 {
        return Ok(None);
    }
    // Text comes in pieces that depend on the reads: faults are reported
    // in the order they stand, so that every split reports the first.
    let raw = match std::str::from_utf8(&buf[..end]) {
        Ok(raw) => raw,
        Err(e) => {
            let valid = utf8(&buf[..e.valid_up_to()])?;
            check_text(valid, false)?;
            return Err(Malformed("invalid UTF-8"));
        }
    };
    check_text(raw, false)?;
    Ok(Some((Token::Text { raw }, end)))
}

/// How much of unfinished character data can be checked now: not a
/// character, reference, `]]>` or CR LF that more bytes could complete.
fn checkable(buf: &[u8]) -> usize {
    let mut end = buf.len();
    // A partial UTF-8 sequence.
    if let Some(lead) = buf[end.saturating_sub(3)..]
        .iter()
        .rposition(|b| b & 0xC0 != 0x80)
        .map(|i| end.saturating_sub(3) + i)
    {
        let need = match buf[lead] {
            b if b >= 0xF0 => 4,
            b if b >= 0xE0 => 3,
            b if b >= 0xC0 => 2,
            _ => 1,
        };
        if lead + need > end {
            end = lead;
        }
    }
    // `]]` and `\r` that the next bytes could make `]]>` or CR LF.
    for _ in 0..3 {
        match end.checked_sub(1).map(|i| buf[i]) {
            Some(b']' | b'\r') => end -= 1,
            _ => break,
        }
    }
    // A reference not yet closed: from the first `&` near the end with no
    // `;` after it (a later one may be the first's bad content, and the
    // first must be judged whole, as it is when the input comes in one
    // piece).
    let tail = end.saturating_sub(MAX_REF + 1);
    let open = memchr::memrchr(b';', &buf[tail..end]).map_or(tail, |i| tail + i + 1);
    if let Some(amp) = memchr::memchr(b'&', &buf[open..end]) {
        end = open + amp;
    }
    end
}

fn utf8(b: &[u8]) -> Result<&str, XmlError> {
    std::str::from_utf8(b).map_err(|_| Malformed("invalid UTF-8"))
}

/// Characters, references and (in text) `]]>`; `in_attr` also refuses `<`.
fn check_text(s: &str, in_attr: bool) -> Result<(), XmlError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'&' => i += check_reference(&s[i + 1..])?,
            b']' if !in_attr && b[i..].starts_with(b"]]>") => {
                return Err(Malformed("`]]>` in character data"))
            }
            b'<' if in_attr => return Err(Malformed("`<` in an attribute value")),
            c => check_byte(b, i, c)?,
        }
        i += 1;
    }
    Ok(())
}

/// Characters only (CDATA content).
fn check_chars(b: &[u8]) -> Result<(), XmlError> {
    for (i, &c) in b.iter().enumerate() {
        check_byte(b, i, c)?;
    }
    Ok(())
}

/// The byte at `i` of valid UTF-8 does not start a character XML forbids:
/// C0 controls other than tab, LF, CR, and U+FFFE/U+FFFF.
fn check_byte(b: &[u8], i: usize, c: u8) -> Result<(), XmlError> {
    if c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r') {
        return Err(Malformed("control character"));
    }
    if c == 0xEF && b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)) {
        return Err(Malformed("not a character"));
    }
    Ok(())
}

/// A reference after its `&`; returns how far its `;` is.
fn check_reference(rest: &str) -> Result<usize, XmlError> {
    let semi = rest
        .bytes()
        .take(MAX_REF + 1)
        .position(|b| b == b';')
        .ok_or(Malformed("unterminated reference"))?;
    let body = &rest[..semi];
    match reference(body) {
        Some(_) => Ok(semi + 1),
        // A name is an entity XMPP forbids declaring; anything else is malformed.
        None if is_ncname(body) => Err(Restricted("undeclared entity")),
        None => Err(Malformed("invalid character reference")),
    }
}

/// A qualified name: an NCName, or two joined by one colon.
pub(super) fn check_qname(name: &str) -> Result<(), XmlError> {
    let mut parts = name.splitn(3, ':');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            let mut c = p.chars();
            c.next().is_some_and(is_name_start) && c.all(is_name_char)
        })
    };
    let first = parts.next();
    let second = parts.next();
    if !ok(first) || (second.is_some() && !ok(second)) || parts.next().is_some() {
        return Err(Malformed("invalid name"));
    }
    Ok(())
}

/// A start tag's name and attributes; `tag` runs from `<` to `>`.
fn parse_start<'a>(tag: &'a str, attrs: &mut Vec<RawAttr>) -> Result<(&'a str, bool), XmlError> {
    let b = tag.as_bytes();
    let last = b.len() - 1;
    let stop = |c: u8| is_space(c) || matches!(c, b'/' | b'>' | b'=' | b'"' | b'\'');
    let name_end = 1 + b[1..].iter().position(|&c| stop(c)).unwrap_or(last);
    let name = &tag[1..name_end];
    check_qname(name)?;
    attrs.clear();
    let mut i = name_end;
    loop {
        let spaced = i;
        while is_space(b[i]) {
            i += 1;
        }
        match b[i] {
            b'>' => return Ok((name, false)),
            b'/' if i + 1 == last => return Ok((name, true)),
            b'/' => return Err(Malformed("`/` inside a start tag")),
            _ if i == spaced => {
                return Err(Malformed("attributes must be separated by white space"))
            }
            _ => {}
        }
        let start = i;
        while !stop(b[i]) {
            i += 1;
        }
        check_qname(&tag[start..i])?;
        let name = (start as u32, i as u32);
        while is_space(b[i]) {
            i += 1;
        }
        if b[i] != b'=' {
            return Err(Malformed("attribute without a value"));
        }
        i += 1;
        while is_space(b[i]) {
            i += 1;
        }
        let quote = b[i];
        if quote != b'"' && quote != b'\'' {
            return Err(Malformed("unquoted attribute value"));
        }
        let from = i + 1;
        // The tag's end was found outside quotes, so this quote closes.
        let to = from
            + memchr::memchr(quote, &b[from..]).ok_or(Malformed("unterminated attribute value"))?;
        check_text(&tag[from..to], true)?;
        attrs.push(RawAttr {
            name,
            value: (from as u32, to as u32),
        });
        i = to + 1;
    }
}

/// The XML declaration between `<?xml` and `?>`: version 1.0, optionally
/// UTF-8, optionally `standalone='yes'`, in that order.
fn check_declaration(body: &str) -> Result<(), XmlError> {
    const BAD: XmlError = Malformed("invalid XML declaration");
    let mut rest = body;
    let mut seen = 0;
    loop {
        let trimmed = rest.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
        if trimmed.is_empty() {
            break;
        }
        if trimmed.len() == rest.len() {
            return Err(BAD);
        }
        let eq = trimmed.find('=').ok_or(BAD)?;
        let name = trimmed[..eq].trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8));
        let after =
            trimmed[eq + 1..].trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
        let quote = after
            .chars()
            .next()
            .filter(|q| *q == '"' || *q == '\'')
            .ok_or(BAD)?;
        let close = after[1..].find(quote).ok_or(BAD)? + 1;
        let value = &after[1..close];
        rest = &after[close + 1..];
        let order = match name {
            "version" if value == "1.0" => 1,
            "encoding" if value.eq_ignore_ascii_case("utf-8") => 2,
            "standalone" if value == "yes" => 3,
            // A document that needs external declarations is no XMPP stream.
            "standalone" if value == "no" => return Err(Restricted("not a standalone document")),
            _ => return Err(BAD),
        };
        if order <= seen || (seen == 0 && order != 1) {
            return Err(BAD);
        }
        seen = order;
    }
    if seen == 0 {
        return Err(BAD);
    }
    Ok(())
}
