//! How mappings look in the store (SPEC §4).
//!
//! Only the reverse map is stored: pseudonym → identity. With an `encrypt` key,
//! neither the key nor the value reveals a pseudonym or a real JID:
//!
//! * store key = `lower(base32(HMAC-SHA-224(encrypt, "local@domain")))`;
//! * value = XSalsa20-Poly1305 of the identity under the entry key
//!   `HMAC-SHA-256(encrypt, "local@domain")`, with a nonce derived from that
//!   entry key. An entry key only ever seals one identity (the pseudonym is a
//!   MAC of it), so the fixed nonce is never reused for a different plaintext;
//!   values are deterministic and writes idempotent.
//!
//! Without `encrypt`, the key is `axr:` + localpart and the value the identity.

use bytes::Bytes;
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit as _, Mac};
use sha2::{Sha224, Sha256};
use xsalsa20poly1305::aead::{Aead, KeyInit as AeadKeyInit};
use xsalsa20poly1305::{Key, Nonce, XSalsa20Poly1305};

/// Prefix of clear-text store keys.
pub const CLEAR_PREFIX: &str = "axr:";

/// Encodes and decodes store entries; cheap to clone.
#[derive(Clone)]
pub struct StoreCodec {
    encrypt: Option<Box<[u8; 32]>>,
}

impl std::fmt::Debug for StoreCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCodec")
            .field("encrypted", &self.encrypt.is_some())
            .finish()
    }
}

impl StoreCodec {
    /// `encrypt` is the decoded 32-byte `encrypt` key, or `None` for clear text.
    pub fn new(encrypt: Option<[u8; 32]>) -> Self {
        StoreCodec {
            encrypt: encrypt.map(Box::new),
        }
    }

    /// Whether values are sealed.
    pub fn is_encrypted(&self) -> bool {
        self.encrypt.is_some()
    }

    /// The `encrypt` key, for the ban list's record (`bans/record.rs`).
    pub(crate) fn encrypt_key(&self) -> Option<&[u8; 32]> {
        self.encrypt.as_deref()
    }

    pub(crate) fn mac224(key: &[u8], msg: &[u8]) -> [u8; 28] {
        let mut m = Hmac::<Sha224>::new_from_slice(key).expect("any key length");
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    pub(crate) fn mac256(key: &[u8], msg: &[u8]) -> [u8; 32] {
        let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    fn cipher(enc: &[u8; 32], pseudonym: &str) -> (XSalsa20Poly1305, [u8; 24]) {
        let entry = Self::mac256(enc, pseudonym.as_bytes());
        let nonce_full = Self::mac256(&entry, b"axrelay entry nonce");
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&nonce_full[..24]);
        (XSalsa20Poly1305::new(Key::from_slice(&entry)), nonce)
    }

    /// The store key for the pseudonym `localpart@domain`.
    pub fn key(&self, localpart: &str, domain: &str) -> String {
        match &self.encrypt {
            None => format!("{CLEAR_PREFIX}{localpart}"),
            Some(enc) => {
                let bare = format!("{localpart}@{domain}");
                let mut k = BASE32_NOPAD.encode(&Self::mac224(&enc[..], bare.as_bytes()));
                k.make_ascii_lowercase();
                k
            }
        }
    }

    /// The stored value for `identity` behind the pseudonym `localpart@domain`.
    pub fn seal(&self, localpart: &str, domain: &str, identity: &str) -> Bytes {
        match &self.encrypt {
            None => Bytes::copy_from_slice(identity.as_bytes()),
            Some(enc) => {
                let bare = format!("{localpart}@{domain}");
                let (cipher, nonce) = Self::cipher(enc, &bare);
                // Encryption into a Vec cannot fail for inputs of this size.
                let sealed = cipher
                    .encrypt(Nonce::from_slice(&nonce), identity.as_bytes())
                    .expect("xsalsa20poly1305 encryption of a short value");
                Bytes::from(sealed)
            }
        }
    }

    /// The identity inside a stored value, or `None` if the value does not
    /// authenticate (tampered, another key) or is not UTF-8.
    pub fn open(&self, localpart: &str, domain: &str, value: &[u8]) -> Option<String> {
        let plain = match &self.encrypt {
            None => value.to_vec(),
            Some(enc) => {
                let bare = format!("{localpart}@{domain}");
                let (cipher, nonce) = Self::cipher(enc, &bare);
                cipher.decrypt(Nonce::from_slice(&nonce), value).ok()?
            }
        };
        String::from_utf8(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENC: [u8; 32] = *b"0123456789abcdef0123456789abcdef";
    const LOCAL: &str = "zi36rtka6iz3zuszk5un4svb4m4qvtsiqacao56f7bspy";

    #[test]
    fn clear_entries() {
        let c = StoreCodec::new(None);
        assert_eq!(c.key(LOCAL, "axr.example"), format!("axr:{LOCAL}"));
        let v = c.seal(LOCAL, "axr.example", "alice@example.com");
        assert_eq!(&v[..], b"alice@example.com");
        assert_eq!(
            c.open(LOCAL, "axr.example", &v).as_deref(),
            Some("alice@example.com")
        );
    }

    #[test]
    fn encrypted_entries_hide_both_sides_and_are_deterministic() {
        let c = StoreCodec::new(Some(ENC));
        let key = c.key(LOCAL, "axr.example");
        assert_eq!(key.len(), 45);
        assert!(!key.contains(LOCAL));
        let v = c.seal(LOCAL, "axr.example", "alice@example.com");
        assert_eq!(v, c.seal(LOCAL, "axr.example", "alice@example.com"));
        assert!(!v.windows(5).any(|w| w == b"alice"));
        assert_eq!(v.len(), "alice@example.com".len() + 16);
        assert_eq!(
            c.open(LOCAL, "axr.example", &v).as_deref(),
            Some("alice@example.com")
        );
    }

    #[test]
    fn tampered_or_misplaced_values_do_not_open() {
        let c = StoreCodec::new(Some(ENC));
        let v = c.seal(LOCAL, "axr.example", "alice@example.com");
        for i in 0..v.len() {
            let mut bad = v.to_vec();
            bad[i] ^= 1;
            assert_eq!(c.open(LOCAL, "axr.example", &bad), None, "byte {i}");
        }
        assert_eq!(c.open(LOCAL, "axr.example", &v[..v.len() - 1]), None);
        assert_eq!(c.open(LOCAL, "axr.example", b""), None);
        // A value copied under another pseudonym's key does not open there.
        let other = "nsabsapqn7a334u3wgagrzll5k5icsnkdsdacb24vvkgc";
        assert_eq!(c.open(other, "axr.example", &v), None);
        let other_key = StoreCodec::new(Some([7; 32]));
        assert_eq!(other_key.open(LOCAL, "axr.example", &v), None);
    }
}
