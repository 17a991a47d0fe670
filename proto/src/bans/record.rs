//! The ban list as one store record (SPEC §4).
//!
//! * key: `axr:bans` in clear; with `encrypt`,
//!   `lower(base32(HMAC-SHA-224(encrypt, "axrelay bans@" + domain)))`, which
//!   looks like any mapping's key. Never a JID.
//! * value: a format byte, then the body. Format 3 (clear): the generation,
//!   then the list. Format 4 (sealed): a 24-byte nonce, then
//!   XSalsa20-Poly1305 of the generation and the list under
//!   `HMAC-SHA-256(encrypt, "axrelay ban list 4@" + domain)`. The cipher has
//!   no associated data, so the domain (and with it the store key, which
//!   derives from it) is bound through the key: a record does not open
//!   under another domain. A codec with a key accepts sealed formats only,
//!   so the byte cannot be downgraded to clear. The nonce is random, chosen
//!   by whoever writes the list (the command line or the control socket,
//!   which may read the system's generator); the relay only opens it, or
//!   writes back bytes it read.
//! * Formats 1 (clear) and 2 (sealed under `HMAC-SHA-256(encrypt,
//!   "axrelay ban list")`) are the same without a generation, and read as
//!   generation 0.
//! * generation: 8 bytes big-endian, one more at every write, so that a
//!   relay can refuse an older record replayed into the store.
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

const CLEAR_V1: u8 = 1;
const SEALED_V1: u8 = 2;
const CLEAR: u8 = 3;
const SEALED: u8 = 4;
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

/// A ban list and its generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List {
    /// One more at every write; 0 for a record without one (formats 1, 2).
    pub generation: u64,
    /// The bans, in the order written.
    pub bans: Vec<Ban>,
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
    /// The cipher refused to seal the list.
    Sealing,
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
            BanError::WrongFormat(CLEAR | CLEAR_V1) => {
                f.write_str("the stored ban list is in clear, but the store has an encrypt key")
            }
            BanError::WrongFormat(SEALED | SEALED_V1) => {
                f.write_str("the stored ban list is encrypted, but the store has no encrypt key")
            }
            BanError::WrongFormat(b) => write!(f, "the stored ban list has unknown format {b}"),
            BanError::Unauthentic => f.write_str(
                "the stored ban list does not authenticate (tampered with, or written under \
                 another encrypt key)",
            ),
            BanError::Malformed(what) => write!(f, "the stored ban list is malformed: {what}"),
            BanError::Sealing => f.write_str("the ban list could not be encrypted"),
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

/// The cipher of a sealed record of `format` for `domain`.
fn cipher(enc: &[u8; 32], format: u8, domain: &str) -> XSalsa20Poly1305 {
    let key = if format == SEALED_V1 {
        StoreCodec::mac256(enc, b"axrelay ban list")
    } else {
        StoreCodec::mac256(
            enc,
            format!("axrelay ban list {format}@{domain}").as_bytes(),
        )
    };
    XSalsa20Poly1305::new(Key::from_slice(&key))
}

/// The record of `list` for `domain`. `nonce` must be fresh random bytes
/// when the codec seals (it is ignored in clear).
pub fn encode(
    codec: &StoreCodec,
    domain: &str,
    list: &List,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, BanError> {
    let bans = &list.bans;
    if bans.len() > MAX_BANS {
        return Err(BanError::TooMany);
    }
    let mut body = Vec::with_capacity(12 + bans.len() * (ENTRY_FIXED + 16));
    body.extend_from_slice(&list.generation.to_be_bytes());
    // At most MAX_BANS: fits.
    body.extend_from_slice(&(bans.len() as u32).to_be_bytes());
    for b in bans {
        if !reason_ok(&b.reason) {
            return Err(BanError::BadReason);
        }
        body.extend_from_slice(b.local.as_bytes());
        body.extend_from_slice(&b.at.to_be_bytes());
        // At most MAX_REASON_BYTES: fits.
        body.extend_from_slice(&(b.reason.len() as u16).to_be_bytes());
        body.extend_from_slice(b.reason.as_bytes());
        if body.len() > MAX_RECORD_BYTES {
            return Err(BanError::TooLarge);
        }
    }
    let record = match codec.encrypt_key() {
        None => [&[CLEAR][..], &body].concat(),
        Some(enc) => {
            let sealed = cipher(enc, SEALED, domain)
                .encrypt(Nonce::from_slice(&nonce), body.as_slice())
                .map_err(|_| BanError::Sealing)?;
            [&[SEALED][..], &nonce, &sealed].concat()
        }
    };
    if record.len() > MAX_RECORD_BYTES {
        return Err(BanError::TooLarge);
    }
    Ok(record)
}

/// The list in a stored record of `domain`.
pub fn decode(codec: &StoreCodec, domain: &str, record: &[u8]) -> Result<List, BanError> {
    if record.len() > MAX_RECORD_BYTES {
        return Err(BanError::TooLarge);
    }
    let (&format, rest) = record.split_first().ok_or(BanError::Malformed("empty"))?;
    let body = match (format, codec.encrypt_key()) {
        (CLEAR | CLEAR_V1, None) => rest.to_vec(),
        (SEALED | SEALED_V1, Some(enc)) => {
            let (nonce, sealed) = rest
                .split_at_checked(NONCE_LEN)
                .ok_or(BanError::Malformed("truncated nonce"))?;
            cipher(enc, format, domain)
                .decrypt(Nonce::from_slice(nonce), sealed)
                .map_err(|_| BanError::Unauthentic)?
        }
        (f, _) => return Err(BanError::WrongFormat(f)),
    };
    let mut buf = body.as_slice();
    let generation = if format == CLEAR || format == SEALED {
        let g = take(&mut buf, 8)?;
        u64::from_be_bytes([g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]])
    } else {
        0
    };
    Ok(List {
        generation,
        bans: parse_list(buf)?,
    })
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

    const D: &str = "axr.example";

    fn gen(generation: u64, bans: Vec<Ban>) -> List {
        List { generation, bans }
    }

    #[test]
    fn clear_and_sealed_records_round_trip() {
        for codec in [StoreCodec::new(None), StoreCodec::new(Some(ENC))] {
            for l in [gen(0, Vec::new()), gen(7, list()), gen(u64::MAX, list())] {
                let rec = encode(&codec, D, &l, [9; NONCE_LEN]).unwrap();
                assert_eq!(decode(&codec, D, &rec).unwrap(), l);
            }
        }
    }

    /// A record as formats 1 and 2 wrote it: the list without a generation.
    fn old_record(codec: &StoreCodec, bans: Vec<Ban>) -> Vec<u8> {
        let new = encode(&StoreCodec::new(None), D, &gen(0, bans), [0; NONCE_LEN]).unwrap();
        let body = &new[1 + 8..];
        match codec.encrypt_key() {
            None => [&[CLEAR_V1][..], body].concat(),
            Some(enc) => {
                let nonce = [1; NONCE_LEN];
                let sealed = cipher(enc, SEALED_V1, D)
                    .encrypt(Nonce::from_slice(&nonce), body)
                    .unwrap();
                [&[SEALED_V1][..], &nonce, &sealed].concat()
            }
        }
    }

    #[test]
    fn old_records_read_as_generation_0() {
        for codec in [StoreCodec::new(None), StoreCodec::new(Some(ENC))] {
            let rec = old_record(&codec, list());
            assert_eq!(decode(&codec, D, &rec), Ok(gen(0, list())));
            // The old sealed format was not bound to a domain.
            assert_eq!(decode(&codec, "other.example", &rec), Ok(gen(0, list())));
        }
    }

    #[test]
    fn a_sealed_record_does_not_open_under_another_domain() {
        let codec = StoreCodec::new(Some(ENC));
        let rec = encode(&codec, D, &gen(3, list()), [2; NONCE_LEN]).unwrap();
        assert_eq!(
            decode(&codec, "other.example", &rec),
            Err(BanError::Unauthentic)
        );
        // Nor relabelled as the old format, whose key names no domain.
        let mut relabelled = rec.clone();
        relabelled[0] = SEALED_V1;
        assert_eq!(decode(&codec, D, &relabelled), Err(BanError::Unauthentic));
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
        let rec = encode(&codec, D, &gen(1, list()), [3; NONCE_LEN]).unwrap();
        assert!(!rec.windows(8).any(|w| w == &A.as_bytes()[..8]));
        assert!(!rec.windows(4).any(|w| w == b"spam"));
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 1;
            assert!(decode(&codec, D, &bad).is_err(), "byte {i}");
        }
        assert!(decode(&codec, D, &rec[..rec.len() - 1]).is_err());
        assert_eq!(
            decode(&StoreCodec::new(Some([7; 32])), D, &rec),
            Err(BanError::Unauthentic)
        );
        // Neither side takes the other's format.
        assert_eq!(
            decode(&StoreCodec::new(None), D, &rec),
            Err(BanError::WrongFormat(SEALED))
        );
        let clear = encode(&StoreCodec::new(None), D, &gen(1, list()), [0; NONCE_LEN]).unwrap();
        assert_eq!(decode(&codec, D, &clear), Err(BanError::WrongFormat(CLEAR)));
    }

    #[test]
    fn malformed_clear_records_are_errors_not_panics() {
        let codec = StoreCodec::new(None);
        let rec = encode(&codec, D, &gen(1, list()), [0; NONCE_LEN]).unwrap();
        for n in 0..rec.len() {
            assert!(decode(&codec, D, &rec[..n]).is_err(), "prefix {n}");
        }
        let mut trailing = rec.clone();
        trailing.push(0);
        assert!(decode(&codec, D, &trailing).is_err());
        let mut huge_count = vec![CLEAR];
        huge_count.extend_from_slice(&1u64.to_be_bytes());
        huge_count.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&codec, D, &huge_count), Err(BanError::TooMany));
        assert!(decode(&codec, D, &[9, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn bounds_are_refused_when_writing() {
        let codec = StoreCodec::new(None);
        let mut bad = list();
        bad[0].reason = "two\nlines".into();
        assert_eq!(
            encode(&codec, D, &gen(1, bad.clone()), [0; NONCE_LEN]),
            Err(BanError::BadReason)
        );
        bad[0].reason = "x".repeat(MAX_REASON_BYTES + 1);
        assert_eq!(
            encode(&codec, D, &gen(1, bad.clone()), [0; NONCE_LEN]),
            Err(BanError::BadReason)
        );
        let one = list().remove(0);
        let many = vec![one.clone(); MAX_BANS + 1];
        assert_eq!(
            encode(&codec, D, &gen(1, many), [0; NONCE_LEN]),
            Err(BanError::TooMany)
        );
        let long = Ban {
            reason: "r".repeat(MAX_REASON_BYTES),
            ..one
        };
        let large = vec![long; MAX_BANS];
        assert_eq!(
            encode(&codec, D, &gen(1, large), [0; NONCE_LEN]),
            Err(BanError::TooLarge)
        );
    }
}
