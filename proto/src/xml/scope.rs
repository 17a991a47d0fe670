//! Namespace declarations in force (Namespaces in XML 1.0), kept in one
//! buffer reused for the whole stream.

use super::decode::push_attr_value;
use super::XmlError::{self, Malformed};
use crate::ns;

const XMLNS: &str = "http://www.w3.org/2000/xmlns/";

/// Splits a checked qualified name into prefix (empty if none) and local name.
pub(crate) fn split_qname(q: &str) -> (&str, &str) {
    match q.split_once(':') {
        Some((p, l)) => (p, l),
        None => ("", q),
    }
}

/// The prefix an attribute named `name` declares (empty for the default
/// namespace), or `None` when it is no namespace declaration.
pub(crate) fn declared_prefix(name: &str) -> Option<&str> {
    match name.strip_prefix("xmlns")? {
        "" => Some(""),
        p => p.strip_prefix(':'),
    }
}

#[derive(Debug, Clone, Copy)]
struct Decl {
    /// Byte ranges in `Scope::text`; the default namespace has an empty prefix.
    prefix: (u32, u32),
    uri: (u32, u32),
    /// A value the framer keeps for this declaration, and for which stanza.
    memo: Option<(u64, (u32, u32))>,
}

/// Where a prefix's namespace comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// No namespace (an unprefixed name with no default declared).
    Nothing,
    /// The `xml` prefix, bound by definition.
    Xml,
    /// A declaration in force: its index.
    Decl(u32),
}

/// The declarations of every open element, innermost last.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    text: String,
    decls: Vec<Decl>,
    /// Per open element: `decls` and `text` lengths before its
    /// declarations, and the default namespace's declaration around it.
    marks: Vec<(u32, u32, Option<u32>)>,
    /// The declaration of the default namespace in force: most names use
    /// it, so it is found without a search.
    default: Option<u32>,
}

impl Scope {
    /// An element opens; its declarations follow.
    pub(crate) fn open(&mut self) {
        self.marks.push((
            self.decls.len() as u32,
            self.text.len() as u32,
            self.default,
        ));
    }

    /// The innermost element closes.
    pub(crate) fn close(&mut self) {
        if let Some((decls, text, default)) = self.marks.pop() {
            self.decls.truncate(decls as usize);
            self.text.truncate(text as usize);
            self.default = default;
        }
    }

    /// Number of open elements.
    pub(crate) fn depth(&self) -> usize {
        self.marks.len()
    }

    /// `xmlns[:prefix]='raw'` on the element just opened. A prefix declared
    /// twice on one element is a duplicate attribute.
    pub(crate) fn declare(&mut self, prefix: &str, raw: &str) -> Result<(), XmlError> {
        let own = self.marks.last().map_or(0, |m| m.0 as usize);
        if self.decls[own..]
            .iter()
            .any(|d| self.get(d.prefix) == prefix)
        {
            return Err(Malformed("a namespace declared twice on one element"));
        }
        let p0 = self.text.len();
        self.text.push_str(prefix);
        let u0 = self.text.len();
        push_attr_value(raw, &mut self.text);
        let uri = &self.text[u0..];
        let bad = match prefix {
            "xmlns" => true,
            "xml" => uri != ns::XML,
            "" => uri == ns::XML || uri == XMLNS,
            _ => uri.is_empty() || uri == ns::XML || uri == XMLNS,
        };
        if bad {
            self.text.truncate(p0);
            return Err(Malformed("invalid namespace declaration"));
        }
        if prefix.is_empty() {
            self.default = Some(self.decls.len() as u32);
        }
        self.decls.push(Decl {
            prefix: (p0 as u32, u0 as u32),
            uri: (u0 as u32, self.text.len() as u32),
            memo: None,
        });
        Ok(())
    }

    /// Where the namespace `prefix` stands for comes from; the empty
    /// prefix is the default namespace.
    ///
    /// A prefix is searched from the innermost declaration out, so it costs
    /// up to the declarations in scope (the header's, and `max_depth` ×
    /// `max_namespace_decls` in a stanza). Servers re-serialize what they
    /// relay (Prosody puts elements in default namespaces and declares an
    /// attribute's prefix on its element), so the search ends at once; a
    /// map per prefix would cost every stanza to spare a case only the
    /// server itself could write.
    pub(crate) fn lookup(&self, prefix: &str) -> Result<Bound, XmlError> {
        if prefix == "xml" {
            return Ok(Bound::Xml);
        }
        let found = if prefix.is_empty() {
            self.default.map(|i| i as usize)
        } else {
            self.decls
                .iter()
                .rposition(|d| self.get(d.prefix) == prefix)
        };
        match found {
            Some(i) if self.decls[i].uri.0 == self.decls[i].uri.1 => Ok(Bound::Nothing),
            Some(i) => Ok(Bound::Decl(i as u32)),
            None if prefix.is_empty() => Ok(Bound::Nothing),
            None => Err(Malformed("undeclared namespace prefix")),
        }
    }

    /// The namespace name.
    pub(crate) fn uri(&self, bound: Bound) -> &str {
        match bound {
            Bound::Nothing => "",
            Bound::Xml => ns::XML,
            Bound::Decl(i) => self.decls.get(i as usize).map_or("", |d| self.get(d.uri)),
        }
    }

    /// The namespace `prefix` stands for (empty for none).
    pub(crate) fn resolve(&self, prefix: &str) -> Result<&str, XmlError> {
        Ok(self.uri(self.lookup(prefix)?))
    }

    /// What the framer kept for declaration `i` while reading stanza `stanza`.
    pub(crate) fn memo(&self, i: u32, stanza: u64) -> Option<(u32, u32)> {
        match self.decls.get(i as usize)?.memo {
            Some((s, v)) if s == stanza => Some(v),
            _ => None,
        }
    }

    pub(crate) fn set_memo(&mut self, i: u32, stanza: u64, value: (u32, u32)) {
        if let Some(d) = self.decls.get_mut(i as usize) {
            d.memo = Some((stanza, value));
        }
    }

    fn get(&self, (a, b): (u32, u32)) -> &str {
        self.text.get(a as usize..b as usize).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_prefix_tells_declarations_from_attributes() {
        assert_eq!(declared_prefix("xmlns"), Some(""));
        assert_eq!(declared_prefix("xmlns:p"), Some("p"));
        for name in ["xmlnsx", "p:xmlns", "a", "xml:lang"] {
            assert_eq!(declared_prefix(name), None, "{name}");
        }
    }

    #[test]
    fn declarations_nest_and_close() {
        let mut s = Scope::default();
        s.open();
        s.declare("", "jabber:component:accept").unwrap();
        s.declare("stream", "http://etherx.jabber.org/streams")
            .unwrap();
        s.open();
        s.declare("", "urn:x").unwrap();
        assert_eq!(s.resolve("").unwrap(), "urn:x");
        assert_eq!(s.resolve("stream").unwrap(), ns::STREAMS);
        assert_eq!(s.resolve("xml").unwrap(), ns::XML);
        assert!(s.resolve("p").is_err());
        s.close();
        assert_eq!(s.resolve("").unwrap(), ns::COMPONENT);
        s.open();
        s.declare("", "").unwrap();
        assert_eq!(s.resolve("").unwrap(), "");
        assert_eq!(s.depth(), 2);
    }

    #[test]
    fn reserved_and_repeated_declarations_are_refused() {
        let mut s = Scope::default();
        s.open();
        s.declare("xml", ns::XML).unwrap();
        for (p, u) in [
            ("xml", "urn:x"),
            ("xmlns", "urn:x"),
            ("p", ""),
            ("p", ns::XML),
            ("", XMLNS),
            ("xml", ns::XML),
        ] {
            assert!(s.declare(p, u).is_err(), "{p}={u}");
        }
        s.declare("p", "urn:a").unwrap();
        assert!(s.declare("p", "urn:b").is_err());
    }
}
