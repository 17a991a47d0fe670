//! Zero-copy JID splitting for addresses the server has already normalised.
//!
//! The server prepares and authenticates every `from` and `to` it routes to a
//! component, so the hot path only splits and bounds-checks (SPEC §2); it never
//! re-normalises, which would split one account into two pseudonyms.

/// Largest localpart, domainpart or resourcepart in bytes (RFC 7622 §3.1).
pub const MAX_PART: usize = 1023;

/// A JID borrowed from a stanza attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jid<'a> {
    full: &'a str,
    at: Option<usize>,
    slash: Option<usize>,
}

/// Why a JID was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JidError {
    /// A localpart, domainpart or resourcepart is empty.
    EmptyPart,
    /// A part is longer than 1023 bytes.
    TooLong,
}

impl std::fmt::Display for JidError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JidError::EmptyPart => "a JID part is empty",
            JidError::TooLong => "a JID part is longer than 1023 bytes",
        })
    }
}

impl std::error::Error for JidError {}

impl<'a> Jid<'a> {
    /// Split `s` as `[local@]domain[/resource]`.
    pub fn parse(s: &'a str) -> Result<Self, JidError> {
        let slash = s.find('/');
        let head = &s[..slash.unwrap_or(s.len())];
        let at = head.find('@');
        let jid = Jid { full: s, at, slash };
        let parts = [jid.local(), Some(jid.domain()), jid.resource()];
        for part in parts.into_iter().flatten() {
            if part.is_empty() {
                return Err(JidError::EmptyPart);
            }
            if part.len() > MAX_PART {
                return Err(JidError::TooLong);
            }
        }
        Ok(jid)
    }

    /// The localpart, if any.
    pub fn local(&self) -> Option<&'a str> {
        self.at.map(|at| &self.full[..at])
    }

    /// The domainpart.
    pub fn domain(&self) -> &'a str {
        let start = self.at.map_or(0, |at| at + 1);
        &self.full[start..self.slash.unwrap_or(self.full.len())]
    }

    /// The resourcepart, if any.
    pub fn resource(&self) -> Option<&'a str> {
        self.slash.map(|s| &self.full[s + 1..])
    }

    /// `local@domain` (or `domain`) without the resource.
    pub fn bare(&self) -> &'a str {
        &self.full[..self.slash.unwrap_or(self.full.len())]
    }

    /// The whole JID as it arrived.
    pub fn full(&self) -> &'a str {
        self.full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_parts() {
        let j = Jid::parse("alice@example.com/phone/x@y").unwrap();
        assert_eq!(j.local(), Some("alice"));
        assert_eq!(j.domain(), "example.com");
        assert_eq!(j.resource(), Some("phone/x@y"));
        assert_eq!(j.bare(), "alice@example.com");
        let d = Jid::parse("example.com").unwrap();
        assert_eq!(
            (d.local(), d.domain(), d.resource()),
            (None, "example.com", None)
        );
        let r = Jid::parse("a/b@c").unwrap();
        assert_eq!(
            (r.local(), r.domain(), r.resource()),
            (None, "a", Some("b@c"))
        );
    }

    #[test]
    fn rejects_empty_and_long_parts() {
        for bad in ["", "@example.com", "alice@", "alice@example.com/", "/res"] {
            assert_eq!(Jid::parse(bad), Err(JidError::EmptyPart), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(1024));
        assert_eq!(Jid::parse(&long), Err(JidError::TooLong));
        let ok = format!("{}@example.com", "a".repeat(1023));
        assert!(Jid::parse(&ok).is_ok());
    }
}
