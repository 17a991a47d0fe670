//! The ban list as one store record (SPEC §4).
//!
//! * key: `axr:bans` in clear; with `encrypt`,
//!   `lower(base32(HMAC-SHA-224(encrypt, "axrelay bans@" + domain)))`, which
//!   looks like any mapping's key. Never a JID.
//! * value: a format byte, then the list. Format 1 (clear): the list as it
//!   is. Format 2 (sealed): a 24-byte nonce, then XSalsa20-Poly1305 of the
//!   list under `HMAC-SHA-256(encrypt, "axrelay ban list")` (a codec with a
//!   key accepts format 2 only, so the byte cannot be downgraded). The nonce is random, chosen by whoever writes
//!   the list (the command line or the control socket, which may read the
//!   system's generator); the relay only opens it, or writes back bytes it
//!   read.
//! * list: a 4-byte big-endian count, then per ban the 45-byte localpart, an
//!   8-byte big-endian Unix time and the reason (2-byte big-endian length,
//!   UTF-8).
//!
//! Bounded: at most [`MAX_BANS`] bans and [`MAX_RECORD_BYTES`] bytes, a
//! reason of at most [`MAX_REASON_BYTES`] without control characters.

use data_encoding::BASE32_NOPAD;
use xsalsa20poly1305::aead::{Aead, KeyInit};
use xsalsa20poly1305::{Key, Nonce, XSalsa20Poly1305};

use crate::pseudonym::{Local, LOCALPART_LEN};
use crate::seal::{StoreCodec, CLEAR_PREFIX};

/// Most bans one list holds.
pub const MAX_BANS: usize = 10_000;
/// Largest record, in bytes.
pub const MAX_RECORD_BYTES: usize = 512 * 1024;
/// Longest reason, in bytes of UTF-8.
pub const MAX_REASON_BYTES: usize = 256;
/// Length of the random nonce a sealed record carries.
pub const NONCE_LEN: usize = 24;

const CLEAR: u8 = 1;
const SEALED: u8 = 2;
const ENTRY_FIXED: usize = LOCALPART_LEN + 8 + 2;

/// One banned pseudonym.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The pseudonym's localpart.
    pub local: Local,
    /// When it was banned, Unix seconds (UTC).
    pub at: u64,
    /// Why, as the operator wrote it; may be empty.
    pub reason: String,
}

/// Why a ban list cannot be written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanError {
    /// More than [`MAX_BANS`] bans.
    TooMany,
    /// Over [`MAX_RECORD_BYTES`].
    TooLarge,
    /// A reason over [`MAX_REASON_BYTES`] or with a control character.
    BadReason,
    /// The record is sealed and this side has no `encrypt` key, or the
    /// other way round.
    WrongFormat(u8),
    /// A sealed record that does not authenticate under this `encrypt` key.
    Unauthentic,
    /// Truncated, trailing bytes, a bad localpart or reason.
    Malformed(&'static str),
}

impl std::fmt::Display for BanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BanError::TooMany => write!(f, "the ban list would hold more than {MAX_BANS} bans"),
            BanError::TooLarge => write!(
                f,
                "the ban list would be larger than {} KiB",
                MAX_RECORD_BYTES / 1024
            ),
            BanError::BadReason => write!(
                f,
                "a reason is at most {MAX_REASON_BYTES} bytes on one line, without control \
                 characters"
            ),
            BanError::WrongFormat(CLEAR) => {
                f.write_str("the stored ban list is in clear, but the store has an encrypt key")
            }
            BanError::WrongFormat(SEALED) => {
                f.write_str("the stored ban list is encrypted, but the store has no encrypt key")
            }
            BanError::WrongFormat(b) => write!(f, "the stored ban list has unknown format {b}"),
            BanError::Unauthentic => f.write_str(
                "the stored ban list does not authenticate (tampered with, or written under \
                 another encrypt key)",
            ),
            BanError::Malformed(what) => write!(f, "the stored ban list is malformed: {what}"),
        }
    }
}

impl std::error::Error for BanError {}

/// Whether `reason` may be stored.
pub fn reason_ok(reason: &str) -> bool {
    reason.len() <= MAX_REASON_BYTES && !reason.chars().any(char::is_control)
}

/// The store key of the ban list of `domain`.
pub fn key(codec: &StoreCodec, domain: &str) -> String {
    match codec.encrypt_key() {
        None => format!("{CLEAR_PREFIX}bans"),
        Some(enc) => {
            let name = format!("axrelay bans@{domain}");
            let mut k = BASE32_NOPAD.encode(&StoreCodec::mac224(enc, name.as_bytes()));
            k.make_ascii_lowercase();
            k
        }
    }
}

fn cipher(enc: &[u8; 32]) -> XSalsa20Poly1305 {
    let key = StoreCodec::mac256(enc, b"axrelay ban list");
    XSalsa20Poly1305::new(Key::from_slice(&key))
}

/// The record for `bans`. `nonce` must be fresh random bytes when the
/// codec seals (it is ignored in clear).
pub fn encode(
    codec: &StoreCodec,
    bans: &[Ban],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, BanError> {
    if bans.len() > MAX_BANS {
        return Err(BanError::TooMany);
    }
    let mut list = Vec::with_capacity(4 + bans.len() * (ENTRY_FIXED + 16));
    // At most MAX_BANS: fits.
    list.extend_from_slice(&(bans.len() as u32).to_be_bytes());
    for b in bans {
        if !reason_ok(&b.reason) {
            return Err(BanError::BadReason);
        }
        list.extend_from_slice(b.local.as_bytes());
        list.extend_from_slice(&b.at.to_be_bytes());
        // At most MAX_REASON_BYTES: fits.
        list.extend_from_slice(&(b.reason.len() as u16).to_be_bytes());
        list.extend_from_slice(b.reason.as_bytes());
        if list.len() > MAX_RECORD_BYTES {
            return Err(BanError::TooLarge);
        }
    }
    let record = match codec.encrypt_key() {
        None => [&[CLEAR][..], &list].concat(),
        Some(enc) => {
            let sealed = cipher(enc)
                .encrypt(Nonce::from_slice(&nonce), list.as_slice())
                .map_err(|_| BanError::TooLarge)?;
            [&[SEALED][..], &nonce, &sealed].concat()
        }
    };
    if record.len() > MAX_RECORD_BYTES {
        return Err(BanError::TooLarge);
    }
    Ok(record)
}

/// The bans in a stored record.
pub fn decode(codec: &StoreCodec, record: &[u8]) -> Result<Vec<Ban>, BanError> {
    if record.len() > MAX_RECORD_BYTES {
        return Err(BanError::TooLarge);
    }
    let (&format, rest) = record.split_first().ok_or(BanError::Malformed("empty"))?;
    let list = match (format, codec.encrypt_key()) {
        (CLEAR, None) => rest.to_vec(),
        (SEALED, Some(enc)) => {
            let (nonce, sealed) = rest
                .split_at_checked(NONCE_LEN)
                .ok_or(BanError::Malformed("truncated nonce"))?;
            cipher(enc)
                .decrypt(Nonce::from_slice(nonce), sealed)
                .map_err(|_| BanError::Unauthentic)?
        }
        (f, _) => return Err(BanError::WrongFormat(f)),
    };
    parse_list(&list)
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], BanError> {
    let (head, tail) = buf
        .split_at_checked(n)
        .ok_or(BanError::Malformed("truncated"))?;
    *buf = tail;
    Ok(head)
}

fn parse_list(mut buf: &[u8]) -> Result<Vec<Ban>, BanError> {
    let count = take(&mut buf, 4)?;
    let count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]) as usize;
    if count > MAX_BANS {
        return Err(BanError::TooMany);
    }
    // Bounded by what the bytes can hold, whatever the count says.
    let mut bans = Vec::with_capacity(count.min(buf.len() / ENTRY_FIXED));
    for _ in 0..count {
        let local = std::str::from_utf8(take(&mut buf, LOCALPART_LEN)?)
            .ok()
            .and_then(Local::parse)
            .ok_or(BanError::Malformed("not a pseudonym"))?;
        let mut at = [0u8; 8];
        at.copy_from_slice(take(&mut buf, 8)?);
        let len = take(&mut buf, 2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let reason = std::str::from_utf8(take(&mut buf, len)?)
            .ok()
            .filter(|r| reason_ok(r))
            .ok_or(BanError::Malformed("a reason"))?;
        bans.push(Ban {
            local,
            at: u64::from_be_bytes(at),
            reason: reason.to_owned(),
        });
    }
    if !buf.is_empty() {
        return Err(BanError::Malformed("trailing bytes"));
    }
    Ok(bans)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENC: [u8; 32] = *b"0123456789abcdef0123456789abcdef";
    const A: &str = "zi36rtka6iz3zuszk5un4svb4m4qvtsiqacao56f7bspy";
    const B: &str = "nsabsapqn7a334u3wgagrzll5k5icsnkdsdacb24vvkgc";

    fn list() -> Vec<Ban> {
        vec![
            Ban {
                local: Local::parse(A).unwrap(),
                at: 1_700_000_000,
                reason: "spam, reported by B — twice".into(),
            },
            Ban {
                local: Local::parse(B).unwrap(),
                at: 0,
                reason: String::new(),
            },
        ]
    }

    #[test]
    fn clear_and_sealed_records_round_trip() {
        for codec in [StoreCodec::new(None), StoreCodec::new(Some(ENC))] {
            for bans in [Vec::new(), list()] {
                let rec = encode(&codec, &bans, [9; NONCE_LEN]).unwrap();
                assert_eq!(decode(&codec, &rec).unwrap(), bans);
            }
        }
    }

    #[test]
    fn keys_name_no_one() {
        assert_eq!(key(&StoreCodec::new(None), "axr.example"), "axr:bans");
        let sealed = key(&StoreCodec::new(Some(ENC)), "axr.example");
        assert_eq!(sealed.len(), LOCALPART_LEN);
        assert_ne!(sealed, key(&StoreCodec::new(Some(ENC)), "other.example"));
    }

    #[test]
    fn a_sealed_record_hides_the_list_and_rejects_tampering() {
        let codec = StoreCodec::new(Some(ENC));
        let rec = encode(&codec, &list(), [3; NONCE_LEN]).unwrap();
        assert!(!rec.windows(8).any(|w| w == &A.as_bytes()[..8]));
        assert!(!rec.windows(4).any(|w| w == b"spam"));
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 1;
            assert!(decode(&codec, &bad).is_err(), "byte {i}");
        }
        assert!(decode(&codec, &rec[..rec.len() - 1]).is_err());
        assert_eq!(
            decode(&StoreCodec::new(Some([7; 32])), &rec),
            Err(BanError::Unauthentic)
        );
        // Neither side takes the other's format.
        assert_eq!(
            decode(&StoreCodec::new(None), &rec),
            Err(BanError::WrongFormat(SEALED))
        );
        let clear = encode(&StoreCodec::new(None), &list(), [0; NONCE_LEN]).unwrap();
        assert_eq!(decode(&codec, &clear), Err(BanError::WrongFormat(CLEAR)));
    }

    #[test]
    fn malformed_clear_records_are_errors_not_panics() {
        let codec = StoreCodec::new(None);
        let rec = encode(&codec, &list(), [0; NONCE_LEN]).unwrap();
        for n in 0..rec.len() {
            assert!(decode(&codec, &rec[..n]).is_err(), "prefix {n}");
        }
        let mut trailing = rec.clone();
        trailing.push(0);
        assert!(decode(&codec, &trailing).is_err());
        let mut huge_count = vec![CLEAR];
        huge_count.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&codec, &huge_count), Err(BanError::TooMany));
        assert!(decode(&codec, &[9, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn bounds_are_refused_when_writing() {
        let codec = StoreCodec::new(None);
        let mut bad = list();
        bad[0].reason = "two\nlines".into();
        assert_eq!(
            encode(&codec, &bad, [0; NONCE_LEN]),
            Err(BanError::BadReason)
        );
        bad[0].reason = "x".repeat(MAX_REASON_BYTES + 1);
        assert_eq!(
            encode(&codec, &bad, [0; NONCE_LEN]),
            Err(BanError::BadReason)
        );
        let one = list().remove(0);
        let many = vec![one.clone(); MAX_BANS + 1];
        assert_eq!(
            encode(&codec, &many, [0; NONCE_LEN]),
            Err(BanError::TooMany)
        );
        let long = Ban {
            reason: "r".repeat(MAX_REASON_BYTES),
            ..one
        };
        let large = vec![long; MAX_BANS];
        assert_eq!(
            encode(&codec, &large, [0; NONCE_LEN]),
            Err(BanError::TooLarge)
        );
    }
}
