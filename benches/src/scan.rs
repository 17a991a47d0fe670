//! A cheap splitter for what the relay writes, so the load generator can
//! check every stanza without spending as much CPU as the relay itself.
//!
//! It is not an XML parser. It relies on what the relay's serializer
//! guarantees: `<` and `>` never appear raw inside attribute values or text
//! (they are escaped), there are no comments, CDATA sections or processing
//! instructions, and values are quoted. Anything else is reported as an
//! error, never a panic.

/// One complete top-level element, or the end of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// A stanza: the byte range `0..len` of the scanned slice.
    Stanza(usize),
    /// `</stream:stream>` (or any end tag at depth 0), `len` bytes.
    StreamEnd(usize),
}

/// Input the splitter cannot make sense of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError(pub String);

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn find(hay: &[u8], b: u8) -> Option<usize> {
    hay.iter().position(|&c| c == b)
}

/// The first complete top-level item at the start of `buf` (whitespace
/// before it is part of it); `Ok(None)` when more bytes are needed.
pub fn next_item(buf: &[u8]) -> Result<Option<Item>, ScanError> {
    let mut pos = 0;
    let mut depth = 0usize;
    loop {
        let Some(lt) = find(&buf[pos..], b'<') else {
            if depth == 0 && buf[pos..].iter().any(|b| !b.is_ascii_whitespace()) {
                return Err(ScanError("text outside a stanza".into()));
            }
            return Ok(None);
        };
        let lt = pos + lt;
        if depth == 0 && buf[pos..lt].iter().any(|b| !b.is_ascii_whitespace()) {
            return Err(ScanError("text outside a stanza".into()));
        }
        let Some(gt) = find(&buf[lt..], b'>') else {
            return Ok(None);
        };
        let gt = lt + gt;
        let tag = &buf[lt + 1..gt];
        pos = gt + 1;
        match tag.first() {
            Some(b'/') => {
                if depth == 0 {
                    return Ok(Some(Item::StreamEnd(pos)));
                }
                depth -= 1;
            }
            Some(b'!' | b'?') | None => {
                return Err(ScanError(format!(
                    "unexpected markup: {}",
                    String::from_utf8_lossy(&buf[lt..pos.min(lt + 40)])
                )))
            }
            Some(_) if tag.last() == Some(&b'/') => {}
            Some(_) => depth += 1,
        }
        if depth == 0 {
            return Ok(Some(Item::Stanza(pos)));
        }
    }
}

/// The parts of a stanza the generator checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stanza<'a> {
    /// Element name of the stanza.
    pub name: &'a [u8],
    /// Raw `to` value.
    pub to: Option<&'a [u8]>,
    /// Raw `from` value.
    pub from: Option<&'a [u8]>,
    /// Raw `type` value.
    pub kind: Option<&'a [u8]>,
    /// Raw `id` value.
    pub id: Option<&'a [u8]>,
    /// Raw text of the first `<body>` child.
    pub body: Option<&'a [u8]>,
    /// Name of the first child of an `<error>` child (the condition).
    pub error: Option<&'a [u8]>,
}

/// The start tag's attribute `name`, unescaped only in that it is returned
/// raw (the generator sends nothing that needs escaping).
fn attr<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut at = 0;
    while at < head.len() {
        let rest = &head[at..];
        let i = rest
            .windows(name.len() + 1)
            .position(|w| w[..name.len()] == *name && w[name.len()] == b'=')?;
        let start = at + i;
        let ok_before = start > 0 && head[start - 1].is_ascii_whitespace();
        let q_at = start + name.len() + 1;
        let q = *head.get(q_at)?;
        if ok_before && (q == b'\'' || q == b'"') {
            let end = find(&head[q_at + 1..], q)?;
            return Some(&head[q_at + 1..q_at + 1 + end]);
        }
        at = start + 1;
    }
    None
}

/// Pick a stanza apart (the slice [`next_item`] delimited, leading
/// whitespace allowed).
pub fn parse(stanza: &[u8]) -> Result<Stanza<'_>, ScanError> {
    let lt = find(stanza, b'<').ok_or_else(|| ScanError("no start tag".into()))?;
    let gt = lt + find(&stanza[lt..], b'>').ok_or_else(|| ScanError("no start tag".into()))?;
    let head = &stanza[lt + 1..gt];
    let name_end = head
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'/')
        .unwrap_or(head.len());
    let mut s = Stanza {
        name: &head[..name_end],
        to: attr(head, b"to"),
        from: attr(head, b"from"),
        kind: attr(head, b"type"),
        id: attr(head, b"id"),
        ..Stanza::default()
    };
    let inner = &stanza[gt + 1..];
    if let Some(b) = subslice(inner, b"<body>") {
        let text = &inner[b + 6..];
        let end = subslice(text, b"</body>").ok_or_else(|| ScanError("unclosed body".into()))?;
        s.body = Some(&text[..end]);
    }
    if s.kind == Some(b"error") {
        if let Some(e) = subslice(inner, b"<error") {
            let err = &inner[e..];
            if let Some(gt) = find(err, b'>') {
                let cond = &err[gt + 1..];
                if cond.first() == Some(&b'<') {
                    let end = cond
                        .iter()
                        .position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')
                        .unwrap_or(cond.len());
                    s.error = Some(&cond[1..end]);
                }
            }
        }
    }
    Ok(s)
}

/// Position of `needle` in `hay`.
pub fn subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut at = 0;
    while let Some(i) = find(&hay[at..], first) {
        let start = at + i;
        if hay[start..].starts_with(needle) {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_nested_and_self_closing_stanzas() {
        let s = b" <message to='a' from='b'><body>x &amp; y</body><active xmlns='z'/></message><iq id='1'/></stream:stream>";
        let Some(Item::Stanza(n)) = next_item(s).unwrap() else {
            panic!()
        };
        let m = parse(&s[..n]).unwrap();
        assert_eq!(m.name, b"message");
        assert_eq!(m.to, Some(&b"a"[..]));
        assert_eq!(m.from, Some(&b"b"[..]));
        assert_eq!(m.body, Some(&b"x &amp; y"[..]));
        let rest = &s[n..];
        let Some(Item::Stanza(k)) = next_item(rest).unwrap() else {
            panic!()
        };
        assert_eq!(parse(&rest[..k]).unwrap().id, Some(&b"1"[..]));
        assert_eq!(
            next_item(&rest[k..]).unwrap(),
            Some(Item::StreamEnd(rest.len() - k))
        );
    }

    #[test]
    fn incomplete_input_waits_and_garbage_is_an_error() {
        let s = b"<message to='a'><body>x</bo";
        for end in 0..s.len() {
            assert_eq!(next_item(&s[..end]).unwrap(), None, "{end}");
        }
        assert!(next_item(b"junk<a/>").is_err());
        assert!(next_item(b"<!-- x -->").is_err());
    }

    #[test]
    fn attributes_need_a_word_boundary_and_errors_have_a_condition() {
        let s = b"<message xto='no' to=\"yes\" type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>";
        let m = parse(s).unwrap();
        assert_eq!(m.to, Some(&b"yes"[..]));
        assert_eq!(m.error, Some(&b"item-not-found"[..]));
        assert_eq!(m.from, None);
    }
}
