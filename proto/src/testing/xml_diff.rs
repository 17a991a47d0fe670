//! The relay's framer against rxml, a parser written by others: the same
//! bytes must give the same stanzas, or both must refuse them. Used by the
//! `xml_framer` fuzz target and the framer's tests.
//!
//! Both sides are rendered the same way: the header's root name and id,
//! then each stanza as its elements (namespace, name, attributes sorted by
//! namespace and name, values decoded) and text (adjacent pieces joined),
//! then the root's end. Limits are set out of reach, so that only parsing
//! is compared ([`small_limits`] is for checking the framer against
//! itself).

use rxml::error::EndOrError;
use rxml::{Event, Options, Parse, Parser, WithOptions};

use crate::config::Limits;
use crate::element::{Element, Tree};
use crate::framer::{Frame, Framer};

/// What a parser made of the input: its frames, and whether it refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The header, stanzas and end, rendered.
    pub frames: Vec<String>,
    /// Refused: the framer's stream error condition (its reason may name
    /// another fault in the same bytes when they come in other pieces), or
    /// rxml's message.
    pub error: Option<String>,
    /// The framer's reason for refusing (not compared).
    pub reason: Option<String>,
    /// The input ended inside a token (the framer waits for its end
    /// before checking it; rxml may refuse its first bytes already).
    pub unfinished: bool,
}

impl Parsed {
    /// Whether rxml's reading of the same bytes agrees with this one (the
    /// framer's): the same frames, and refused exactly when this is. Where
    /// rxml refuses, it may do so before reporting the last frame it read
    /// (it reads ahead) and on the first bytes of a token this waits to
    /// see whole; so then its frames need only be a prefix of these, one
    /// short at most.
    pub fn agrees_with(&self, rxml: &Parsed) -> Result<(), String> {
        let prefix =
            self.frames.starts_with(&rxml.frames) && self.frames.len() <= rxml.frames.len() + 1;
        let ok = match (&self.error, &rxml.error) {
            (None, None) => self.frames == rxml.frames,
            (Some(_), Some(_)) => prefix,
            (None, Some(_)) => self.unfinished && prefix,
            (Some(_), None) => false,
        };
        if ok {
            return Ok(());
        }
        Err(format!(
            "framer: {:?} {:?} ({:?})\nrxml:   {:?} {:?}",
            self.frames, self.error, self.reason, rxml.frames, rxml.error
        ))
    }
}

/// Limits out of reach: only parsing is compared.
pub fn no_limits() -> Limits {
    Limits {
        max_stanza_bytes: 1 << 30,
        max_depth: 1 << 20,
        max_attributes: 1 << 20,
        max_namespace_decls: 1 << 20,
        max_token_length: 1 << 30,
    }
}

/// Limits small enough for short inputs to break each of them.
pub fn small_limits() -> Limits {
    Limits {
        max_stanza_bytes: 96,
        max_depth: 3,
        max_attributes: 3,
        max_namespace_decls: 2,
        max_token_length: 16,
    }
}

/// The relay's framer, fed `input` in pieces of `step` bytes.
pub fn framer(input: &[u8], step: usize) -> Parsed {
    framer_with(no_limits(), input, step)
}

/// The framer with `limits`.
pub fn framer_with(limits: Limits, input: &[u8], step: usize) -> Parsed {
    let mut f = Framer::new(limits);
    let mut frames = Vec::new();
    for chunk in input.chunks(step.max(1)) {
        f.feed(chunk);
        loop {
            match f.poll() {
                Ok(Some(frame)) => frames.push(render_frame(&frame)),
                Ok(None) => break,
                Err(e) => {
                    return Parsed {
                        frames,
                        error: Some(e.condition().to_owned()),
                        reason: Some(e.to_string()),
                        unfinished: false,
                    }
                }
            }
        }
        if frames.last().is_some_and(|f| f == "end") {
            break;
        }
    }
    let unfinished = f.unfinished();
    Parsed {
        frames,
        error: None,
        reason: None,
        unfinished,
    }
}

fn render_frame(frame: &Frame) -> String {
    match frame {
        Frame::Header { is_stream, id } => header(*is_stream, id.as_deref()),
        Frame::Stanza(tree) => render_tree(tree),
        Frame::Skipped(_) => "skipped".to_owned(),
        Frame::End => "end".to_owned(),
    }
}

fn render_tree(tree: &Tree) -> String {
    let mut s = String::new();
    render_element(tree.root(), &mut s);
    s
}

fn header(is_stream: bool, id: Option<&str>) -> String {
    format!("header {is_stream} {id:?}")
}

/// A start tag: namespace, name, and the attributes as (namespace, name,
/// value), sorted.
fn push_start(s: &mut String, ns: &str, name: &str, attrs: &[(&str, &str, &str)]) {
    s.push_str(&format!("<{{{ns}}}{name}"));
    for (ns, name, value) in attrs {
        s.push_str(&format!(" {{{ns}}}{name}={value:?}"));
    }
    s.push('>');
}

fn render_element(e: Element<'_>, s: &mut String) {
    push_start(s, e.ns(), e.name(), &e.sorted_attrs());
    let mut text = String::new();
    for child in e.children() {
        match child {
            Ok(c) => {
                flush(&mut text, s);
                render_element(c, s);
            }
            Err(t) => text.push_str(t),
        }
    }
    flush(&mut text, s);
    s.push_str("</>");
}

fn flush(text: &mut String, s: &mut String) {
    if !text.is_empty() {
        s.push_str(&format!("{text:?}"));
        text.clear();
    }
}

/// Where rxml is known to be wrong, and the framer is not:
/// - rxml refuses an XML declaration with `standalone` but no `encoding`,
///   which XML 1.0 allows (§2.8, production 23);
/// - rxml accepts `xmlns` (or `xmlns:p`) twice on one element, which breaks
///   the uniqueness of attributes (§3.1);
/// - rxml refuses white space before the root when there is no XML
///   declaration, which the prolog allows (§2.8, `Misc`);
/// - rxml refuses some name characters that the fifth edition of XML 1.0
///   allows (§2.3), such as U+FF94: checked against the framer's classes;
/// - rxml accepts an empty CDATA section outside the root element (§2.1
///   allows none there; a non-empty one rxml refuses too).
pub fn known_difference(ours: &Parsed, theirs: &Parsed) -> bool {
    let declaration = ours.error.is_none()
        && theirs.frames.is_empty()
        && theirs
            .error
            .as_deref()
            .is_some_and(|e| e.contains("'version' attribute must be followed by"));
    let repeated = ours
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("declared twice"));
    let leading_space = theirs
        .error
        .as_deref()
        .is_some_and(|e| e.contains("unexpected Text token at beginning of document"));
    let name_char = theirs.error.as_deref().is_some_and(fifth_edition_name_char);
    let cdata_outside = ours
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("CDATA section outside the root"));
    declaration || repeated || leading_space || name_char || cdata_outside
}

/// Whether rxml's error names a character that the fifth edition allows
/// where rxml refused it.
fn fifth_edition_name_char(e: &str) -> bool {
    let Some(hex) = e.strip_prefix("U+").and_then(|r| r.split(' ').next()) else {
        return false;
    };
    let Some(c) = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) else {
        return false;
    };
    if e.ends_with("not allowed at start of name") {
        crate::xml::is_name_start(c)
    } else if e.ends_with("not allowed in name") {
        crate::xml::is_name_char(c)
    } else {
        false
    }
}

/// `input` with its line ends as XML reads them before parsing (§2.11):
/// CR LF and a lone CR as LF. rxml reads a lone CR in an attribute value
/// and CR LF in a CDATA section wrongly, so it is given this instead.
pub fn line_ends_as_lf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for (i, &b) in input.iter().enumerate() {
        match b {
            b'\r' if input.get(i + 1) == Some(&b'\n') => {}
            b'\r' => out.push(b'\n'),
            b => out.push(b),
        }
    }
    out
}

/// rxml, fed `input` whole, configured as the framer was before it had a
/// tokenizer of its own.
pub fn rxml(input: &[u8]) -> Parsed {
    let mut p = Parser::with_options(Options {
        max_token_length: 1 << 30,
        ..Options::default()
    });
    let mut frames = Vec::new();
    // Open elements of the current stanza, rendered so far, and its text.
    let mut depth = 0usize;
    let mut cur = String::new();
    let mut text = String::new();
    let mut data = input;
    loop {
        match p.parse(&mut data, false) {
            Ok(Some(ev)) => match ev {
                Event::XmlDeclaration(..) => {}
                Event::StartElement(_, (ns, name), attrs) => {
                    depth += 1;
                    if depth == 1 {
                        let id = attrs.get(&rxml::Namespace::NONE, "id");
                        let is_stream =
                            ns.as_str() == crate::ns::STREAMS && name.as_str() == "stream";
                        frames.push(header(is_stream, id.map(|v| v.as_str())));
                        continue;
                    }
                    flush(&mut text, &mut cur);
                    let mut all: Vec<_> = attrs
                        .iter()
                        .map(|((ns, n), v)| (ns.as_str(), n.as_str(), v.as_str()))
                        .collect();
                    all.sort_unstable();
                    push_start(&mut cur, ns.as_str(), name.as_str(), &all);
                }
                Event::Text(_, t) => {
                    if depth >= 2 {
                        text.push_str(&t);
                    }
                }
                Event::EndElement(_) => {
                    depth -= 1;
                    if depth == 0 {
                        frames.push("end".to_owned());
                        break;
                    }
                    flush(&mut text, &mut cur);
                    cur.push_str("</>");
                    if depth == 1 {
                        frames.push(std::mem::take(&mut cur));
                    }
                }
            },
            Ok(None) | Err(EndOrError::NeedMoreData) => break,
            Err(EndOrError::Error(e)) => {
                return Parsed {
                    frames,
                    error: Some(e.to_string()),
                    reason: None,
                    unfinished: false,
                };
            }
        }
    }
    Parsed {
        frames,
        error: None,
        reason: None,
        unfinished: !data.is_empty(),
    }
}
