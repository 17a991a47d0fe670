//! Pseudonyms (SPEC §3): `lower(base32_nopad(HMAC-SHA-224(secret, identity)))`.
//!
//! The forward direction is pure computation; only the reverse direction needs
//! the store. Every identity read back from the store is re-verified here, in
//! constant time, so a poisoned store cannot redirect a pseudonym.

use data_encoding::{BASE32_NOPAD, BASE32_NOPAD_NOCASE};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha224;

use crate::jid::Jid;

/// Length of a pseudonym localpart: 28 HMAC bytes in unpadded base32.
pub const LOCALPART_LEN: usize = 45;
const DIGEST_LEN: usize = 28;

/// A pseudonym localpart held inline: the relay keeps two per relayed
/// message and one per known sender, and these need no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Local([u8; LOCALPART_LEN]);

impl Local {
    /// `s` as a `Local`, if it has the shape of a pseudonym.
    pub fn parse(s: &str) -> Option<Local> {
        if !Pseudonymizer::is_well_formed(s) {
            return None;
        }
        let mut buf = [0u8; LOCALPART_LEN];
        buf.copy_from_slice(s.as_bytes());
        Some(Local(buf))
    }

    /// The localpart's text.
    pub fn as_str(&self) -> &str {
        // Always ASCII: base32 output, or checked by `parse`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for Local {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Local({})", self.as_str())
    }
}

/// Which part of the sender's JID the pseudonym is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentityMode {
    /// The bare JID: one pseudonym per account, stable across resources.
    #[default]
    Bare,
    /// The full JID, resource included: the 2014 axrelay behaviour.
    Full,
}

impl IdentityMode {
    /// The identity string of `jid` under this mode.
    pub fn identity<'a>(self, jid: &Jid<'a>) -> &'a str {
        match self {
            IdentityMode::Bare => jid.bare(),
            IdentityMode::Full => jid.full(),
        }
    }
}

/// Computes and verifies pseudonym localparts under one secret.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha224>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer { .. }")
    }
}

impl Pseudonymizer {
    /// `secret` is the `[hash] secret` string's raw bytes (it is not decoded).
    pub fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length; this cannot fail.
        let mac = Hmac::<Sha224>::new_from_slice(secret).expect("HMAC takes any key length");
        Pseudonymizer { mac }
    }

    fn digest(&self, identity: &str) -> [u8; DIGEST_LEN] {
        let mut mac = self.mac.clone();
        mac.update(identity.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The 45-character localpart for `identity`.
    pub fn localpart(&self, identity: &str) -> String {
        self.local(identity).to_string()
    }

    /// The localpart for `identity`, held inline (no allocation).
    pub fn local(&self, identity: &str) -> Local {
        let mut buf = [0u8; LOCALPART_LEN];
        BASE32_NOPAD.encode_mut(&self.digest(identity), &mut buf);
        buf.make_ascii_lowercase();
        Local(buf)
    }

    /// Whether `localpart` has the shape of a pseudonym (45 base32 characters).
    /// Anything else at the relay's domain can be answered without a lookup.
    pub fn is_well_formed(localpart: &str) -> bool {
        localpart.len() == LOCALPART_LEN
            && localpart
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    }

    /// Whether `identity` really hashes to `localpart`, compared in constant time.
    pub fn verify(&self, localpart: &str, identity: &str) -> bool {
        if !Self::is_well_formed(localpart) {
            return false;
        }
        let Ok(tag) = BASE32_NOPAD_NOCASE.decode(localpart.as_bytes()) else {
            return false;
        };
        let mut mac = self.mac.clone();
        mac.update(identity.as_bytes());
        mac.verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "2Wr0rSpTmncJe2UW/t6etJx0NqVBHS1wyFZI0zAdxS4=";

    #[test]
    fn spec_test_vectors() {
        let p = Pseudonymizer::new(SECRET.as_bytes());
        for (identity, local) in [
            (
                "alice@example.com/laptop",
                "6k6gwuvbgn4cmo6f7cv2smwcxafcg6uqsok7mppvsec5a",
            ),
            (
                "alice@example.com/phone",
                "nsabsapqn7a334u3wgagrzll5k5icsnkdsdacb24vvkgc",
            ),
            (
                "alice@example.com",
                "zi36rtka6iz3zuszk5un4svb4m4qvtsiqacao56f7bspy",
            ),
        ] {
            assert_eq!(p.localpart(identity), local, "{identity}");
            assert!(p.verify(local, identity));
        }
    }

    #[test]
    fn identity_modes() {
        let jid = Jid::parse("alice@example.com/phone").unwrap();
        assert_eq!(IdentityMode::Bare.identity(&jid), "alice@example.com");
        assert_eq!(IdentityMode::Full.identity(&jid), "alice@example.com/phone");
    }

    #[test]
    fn verify_rejects_other_identities_and_malformed_localparts() {
        let p = Pseudonymizer::new(SECRET.as_bytes());
        let local = p.localpart("alice@example.com");
        assert!(!p.verify(&local, "mallory@example.com"));
        assert!(!p.verify(&local[1..], "alice@example.com"));
        assert!(!p.verify(&local.to_uppercase(), "alice@example.com"));
        assert!(!p.verify("", "alice@example.com"));
        let mut flipped = local.clone().into_bytes();
        flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
        assert!(!p.verify(std::str::from_utf8(&flipped).unwrap(), "alice@example.com"));
        // A different secret gives a different pseudonym.
        assert!(!Pseudonymizer::new(b"another secret!!").verify(&local, "alice@example.com"));
        assert_eq!(
            Local::parse(&local).map(|l| l.to_string()),
            Some(local.clone())
        );
        assert_eq!(p.local("alice@example.com").as_str(), local);
        assert_eq!(Local::parse(&local[1..]), None);
        assert_eq!(Local::parse(&local.to_uppercase()), None);
    }
}
