//! A tokenizer for the restricted XML of XMPP streams (RFC 6120 §11.1):
//! start and end tags, character data, CDATA sections and the XML
//! declaration; comments, processing instructions, DTDs and declared
//! entities are refused.
//!
//! It works on the caller's buffer and allocates nothing: a token is
//! returned once its last byte is there, as slices of that buffer, after
//! its bytes are checked (UTF-8, characters, names, references, syntax).
//! Character data is returned in pieces as it arrives, so a long text never
//! waits for its end. Whether a token is valid depends only on its own
//! bytes, and whether it is complete on them and, for text, on at most the
//! 11 bytes after them (an unfinished reference, `]]`, CR, a partial UTF-8
//! character are held back until those come): any split of the input gives
//! the same tokens (text perhaps in other pieces) and the same error.
//! Namespaces and tag nesting are the framer's (`scope.rs` holds the
//! declarations in force).

mod chars;
mod decode;
mod scope;
mod token;

#[cfg(any(test, feature = "testing"))]
pub(crate) use chars::{is_name_char, is_name_start};
pub(crate) use decode::{push_attr_value, push_cdata, push_text};
pub(crate) use scope::{declared_prefix, split_qname, Bound, Scope};
pub(crate) use token::{RawAttr, Token, Tokenizer};

/// Why the input is not an XMPP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XmlError {
    /// Not well-formed XML, or not namespace-well-formed.
    Malformed(&'static str),
    /// Well-formed XML that XMPP forbids: comments, processing instructions,
    /// DTDs, declared entities (RFC 6120 §11.1).
    Restricted(&'static str),
}

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XmlError::Malformed(m) => write!(f, "not well-formed: {m}"),
            XmlError::Restricted(m) => write!(f, "restricted XML: {m}"),
        }
    }
}

#[cfg(test)]
mod tests;
