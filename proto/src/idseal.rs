//! Fresh ids that carry their own way back (SPEC §5).
//!
//! A relayed message's id is sealed, so that any instance holding the
//! secret, and this one after a restart, can translate a receipt, marker or
//! bounce that names it, with nothing shared but the secret:
//!
//! * plain = version and flags, the Unix time of issue, a counter, then the
//!   sender's original id and resource padded to one size;
//! * tag = HMAC-SHA-256(k_mac, sender pseudonym ‖ recipient pseudonym ‖
//!   plain), first 16 bytes: a synthetic IV (SIV), so the two pseudonyms
//!   are authenticated without being carried;
//! * id = base64url(tag ‖ AES-256-CTR(k_enc, initial counter block = tag)
//!   ⊕ plain): the SIV construction (RFC 5297) with HMAC for its PRF.
//!
//! Deterministic encryption needs no randomness from the runtime and no
//! nonce bookkeeping between instances: only equal plaintexts give equal
//! ids, and the counter and time keep plaintexts apart. Every id has the
//! same length, so its length tells the recipient nothing about the
//! sender's client. An id opens only for the two pseudonyms it was issued
//! between, in that order; a changed character, an id of another relay or
//! of another conversation does not open.

use aes::cipher::{InnerIvInit, KeyInit as _, StreamCipher};
use aes::Aes256;
use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::pseudonym::Local;

/// Bytes of the tag (the SIV).
const TAG_LEN: usize = 16;
/// Room for the original id and the resource together: a UUID id and a
/// server-assigned UUID resource (Prosody's) fit. A message whose two do
/// not fit gets an id of the same size whose way back is held by the
/// instance that relayed it ([`Plain::is_held`]).
pub(crate) const ROOM: usize = 75;
const COUNTER_AT: usize = 5;
const LENS_AT: usize = 9;
const CONTENT_AT: usize = LENS_AT + 2;
/// version/flags, time (4), counter (4), two lengths, the room.
const PLAIN_LEN: usize = CONTENT_AT + ROOM;
/// A whole sealed id: 102 bytes, a multiple of 3, so its base64 has no
/// partial characters and exactly one spelling.
pub(crate) const SEALED_LEN: usize = TAG_LEN + PLAIN_LEN;
/// The id's text: 136 base64url characters.
pub(crate) const TEXT_LEN: usize = SEALED_LEN / 3 * 4;

const VERSION: u8 = 0x10;
const VERSION_MASK: u8 = 0xf0;
const HAS_ID: u8 = 1;
const HAS_RESOURCE: u8 = 2;
const HELD: u8 = 4;
const FLAGS: u8 = HAS_ID | HAS_RESOURCE | HELD;

/// A tag: unique per id and uniformly random, so maps key on it as it is.
pub(crate) type Tag = [u8; TAG_LEN];
/// The bytes behind an id's text.
pub(crate) type Raw = [u8; SEALED_LEN];

/// A sealed id: its bytes and its text, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealedId {
    raw: Raw,
    text: [u8; TEXT_LEN],
    held: bool,
}

impl std::fmt::Debug for SealedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl SealedId {
    fn from_raw(raw: Raw, held: bool) -> Self {
        let mut text = [0u8; TEXT_LEN];
        BASE64URL_NOPAD.encode_mut(&raw, &mut text);
        SealedId { raw, text, held }
    }

    pub(crate) fn raw(&self) -> &Raw {
        &self.raw
    }

    pub(crate) fn tag(&self) -> Tag {
        tag_of(&self.raw)
    }

    /// Whether its way back is held by this instance only.
    pub(crate) fn is_held(&self) -> bool {
        self.held
    }
}

impl std::ops::Deref for SealedId {
    type Target = str;
    fn deref(&self) -> &str {
        // Always ASCII: base64url output.
        std::str::from_utf8(&self.text).unwrap_or_default()
    }
}

fn tag_of(raw: &Raw) -> Tag {
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&raw[..TAG_LEN]);
    tag
}

/// What an id is sealed from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    /// Unix seconds at issue.
    pub(crate) issued: u64,
    pub(crate) counter: u32,
    /// The id the sender gave the message.
    pub(crate) orig_id: Option<&'a str>,
    /// The sender's resource, for a bounce to reach the device that sent
    /// (servers drop errors sent to a bare JID); `None` when the identity
    /// carries it already.
    pub(crate) resource: Option<&'a str>,
}

/// An opened id's plain text, checked: its accessors cannot fail.
#[derive(Clone)]
pub(crate) struct Plain {
    tag: Tag,
    buf: [u8; PLAIN_LEN],
}

impl std::fmt::Debug for Plain {
    // The original id and the resource stay out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plain")
            .field("issued", &self.issued())
            .field("held", &self.is_held())
            .finish_non_exhaustive()
    }
}

impl Plain {
    pub(crate) fn tag(&self) -> Tag {
        self.tag
    }

    /// Unix seconds at issue.
    pub(crate) fn issued(&self) -> u64 {
        let mut t = [0u8; 4];
        t.copy_from_slice(&self.buf[1..5]);
        u64::from(u32::from_be_bytes(t))
    }

    fn flags(&self) -> u8 {
        self.buf[0] & FLAGS
    }

    /// Whether the instance that issued the id holds its way back: the
    /// original id and the resource did not fit.
    pub(crate) fn is_held(&self) -> bool {
        self.flags() & HELD != 0
    }

    fn field(&self, start: usize, len: u8) -> &str {
        let end = start + usize::from(len);
        // Checked in `open`: within the room, and UTF-8.
        self.buf
            .get(start..end)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    pub(crate) fn orig_id(&self) -> Option<&str> {
        let len = self.buf[LENS_AT];
        (self.flags() & HAS_ID != 0).then(|| self.field(CONTENT_AT, len))
    }

    pub(crate) fn resource(&self) -> Option<&str> {
        let start = CONTENT_AT + usize::from(self.buf[LENS_AT]);
        let len = self.buf[LENS_AT + 1];
        (self.flags() & HAS_RESOURCE != 0).then(|| self.field(start, len))
    }

    /// Whether the fields are what `seal` writes: an authentic id always
    /// is; this guards the accessors, not the authenticity.
    fn well_formed(&self) -> bool {
        let id_len = usize::from(self.buf[LENS_AT]);
        let res_len = usize::from(self.buf[LENS_AT + 1]);
        let used = id_len + res_len;
        let content = &self.buf[CONTENT_AT..];
        self.buf[0] & VERSION_MASK == VERSION
            && self.buf[0] & !(VERSION_MASK | FLAGS) == 0
            && used <= ROOM
            && std::str::from_utf8(&content[..id_len]).is_ok()
            && std::str::from_utf8(&content[id_len..used]).is_ok()
            && content[used..].iter().all(|b| *b == 0)
    }
}

/// Seals and opens ids under keys derived from the pseudonym secret, which
/// every instance of a domain shares.
pub(crate) struct IdSealer {
    mac: Hmac<Sha256>,
    /// The expanded key: AES with the CPU's instructions where it has them.
    enc: Aes256,
}

impl IdSealer {
    pub(crate) fn new(secret: &[u8]) -> Self {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
            m.update(label);
            m.finalize().into_bytes().into()
        };
        IdSealer {
            mac: Hmac::<Sha256>::new_from_slice(&derive(b"axrelay id mac"))
                .expect("any key length"),
            enc: Aes256::new(&derive(b"axrelay id cipher").into()),
        }
    }

    fn siv(&self, sender: &Local, recipient: &Local, plain: &[u8]) -> Hmac<Sha256> {
        let mut m = self.mac.clone();
        m.update(sender.as_bytes());
        m.update(recipient.as_bytes());
        m.update(plain);
        m
    }

    fn keystream(&self, tag: &Tag, buf: &mut [u8]) {
        let core = ctr::CtrCore::<Aes256, ctr::flavors::Ctr128BE>::inner_iv_init(
            self.enc.clone(),
            &(*tag).into(),
        );
        ctr::cipher::StreamCipherCoreWrapper::from_core(core).apply_keystream(buf);
    }

    /// The id for a message from `sender` to `recipient`. When the original
    /// id and the resource do not fit, the id carries neither and says so:
    /// the caller holds them.
    pub(crate) fn seal(&self, sender: &Local, recipient: &Local, f: Fields<'_>) -> SealedId {
        let id = f.orig_id.unwrap_or_default();
        let res = f.resource.unwrap_or_default();
        let fits = id.len() + res.len() <= ROOM;
        let mut plain = [0u8; PLAIN_LEN];
        let mut flags = VERSION;
        let issued = u32::try_from(f.issued).unwrap_or(u32::MAX);
        plain[1..5].copy_from_slice(&issued.to_be_bytes());
        plain[COUNTER_AT..LENS_AT].copy_from_slice(&f.counter.to_be_bytes());
        if fits {
            // Both fit in the room, so each length fits in a byte.
            plain[LENS_AT] = id.len() as u8;
            plain[LENS_AT + 1] = res.len() as u8;
            let content = &mut plain[CONTENT_AT..];
            content[..id.len()].copy_from_slice(id.as_bytes());
            content[id.len()..id.len() + res.len()].copy_from_slice(res.as_bytes());
            if f.orig_id.is_some() {
                flags |= HAS_ID;
            }
            if f.resource.is_some() {
                flags |= HAS_RESOURCE;
            }
        } else {
            flags |= HELD;
        }
        plain[0] = flags;
        let full = self.siv(sender, recipient, &plain).finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        self.keystream(&tag, &mut plain);
        let mut raw = [0u8; SEALED_LEN];
        raw[..TAG_LEN].copy_from_slice(&tag);
        raw[TAG_LEN..].copy_from_slice(&plain);
        SealedId::from_raw(raw, !fits)
    }

    /// The bytes behind `text`, if it has the shape of a sealed id: the
    /// exact length and alphabet, one spelling.
    pub(crate) fn parse(text: &str) -> Option<Raw> {
        if text.len() != TEXT_LEN {
            return None;
        }
        let mut raw = [0u8; SEALED_LEN];
        let n = BASE64URL_NOPAD.decode_mut(text.as_bytes(), &mut raw).ok()?;
        (n == SEALED_LEN).then_some(raw)
    }

    /// The plain text of an id issued for a message from `sender` to
    /// `recipient`; `None` for anything else.
    pub(crate) fn open(&self, text: &str, sender: &Local, recipient: &Local) -> Option<Plain> {
        self.open_raw(&Self::parse(text)?, sender, recipient)
    }

    pub(crate) fn open_raw(&self, raw: &Raw, sender: &Local, recipient: &Local) -> Option<Plain> {
        let tag = tag_of(raw);
        let mut buf = [0u8; PLAIN_LEN];
        buf.copy_from_slice(&raw[TAG_LEN..]);
        self.keystream(&tag, &mut buf);
        // Constant time: a forger learns nothing from how long it took.
        self.siv(sender, recipient, &buf)
            .verify_truncated_left(&tag)
            .ok()?;
        let plain = Plain { tag, buf };
        plain.well_formed().then_some(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const PB: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn local(s: &str) -> Local {
        Local::parse(s).expect("a well-formed localpart")
    }

    fn fields<'a>(id: Option<&'a str>, res: Option<&'a str>) -> Fields<'a> {
        Fields {
            issued: 1_800_000_000,
            counter: 7,
            orig_id: id,
            resource: res,
        }
    }

    #[test]
    fn opens_between_the_same_two_only() {
        let s = IdSealer::new(b"secret");
        let (a, b) = (local(PA), local(PB));
        let id = s.seal(&a, &b, fields(Some("m-1"), Some("phone")));
        assert_eq!(id.len(), TEXT_LEN);
        assert!(!id.is_held());
        let p = s.open(&id, &a, &b).expect("opens");
        assert_eq!(p.orig_id(), Some("m-1"));
        assert_eq!(p.resource(), Some("phone"));
        assert_eq!(p.issued(), 1_800_000_000);
        assert_eq!(p.tag(), id.tag());
        // The other direction, another pair, another secret: nothing.
        assert!(s.open(&id, &b, &a).is_none());
        assert!(s.open(&id, &a, &a).is_none());
        assert!(IdSealer::new(b"other").open(&id, &a, &b).is_none());
    }

    #[test]
    fn every_changed_character_is_rejected() {
        let s = IdSealer::new(b"secret");
        let (a, b) = (local(PA), local(PB));
        let id = s.seal(&a, &b, fields(Some("m-1"), None)).to_string();
        for i in 0..id.len() {
            for c in ["A", "_", "-", "z", "0"] {
                let mut bad = id.clone();
                bad.replace_range(i..=i, c);
                if bad != id {
                    assert!(s.open(&bad, &a, &b).is_none(), "{i} {c}");
                }
            }
        }
        assert!(s.open(&id[1..], &a, &b).is_none());
        assert!(s.open(&format!("{id}A"), &a, &b).is_none());
        assert!(s.open("", &a, &b).is_none());
        assert!(s.open(&"é".repeat(TEXT_LEN / 2), &a, &b).is_none());
    }

    #[test]
    fn length_says_nothing_and_overflow_is_held() {
        let s = IdSealer::new(b"secret");
        let (a, b) = (local(PA), local(PB));
        let short = s.seal(&a, &b, fields(None, None));
        let full = s.seal(&a, &b, fields(Some(&"i".repeat(40)), Some(&"r".repeat(35))));
        let over = s.seal(&a, &b, fields(Some(&"i".repeat(40)), Some(&"r".repeat(36))));
        assert_eq!((short.len(), full.len(), over.len()), (136, 136, 136));
        assert!(!full.is_held() && over.is_held());
        let p = s.open(&full, &a, &b).expect("opens");
        assert_eq!(p.orig_id().map(str::len), Some(40));
        assert_eq!(p.resource().map(str::len), Some(35));
        let p = s.open(&over, &a, &b).expect("opens");
        assert!(p.is_held());
        assert_eq!((p.orig_id(), p.resource()), (None, None));
        let p = s.open(&short, &a, &b).expect("opens");
        assert_eq!((p.orig_id(), p.resource()), (None, None));
        // Empty is not absent.
        let p = s.open(&s.seal(&a, &b, fields(Some(""), Some(""))), &a, &b);
        let p = p.expect("opens");
        assert_eq!((p.orig_id(), p.resource()), (Some(""), Some("")));
    }

    #[test]
    fn counter_and_time_make_ids_differ_and_text_is_one_spelling() {
        let s = IdSealer::new(b"secret");
        let (a, b) = (local(PA), local(PB));
        let one = s.seal(&a, &b, fields(Some("x"), None));
        let again = s.seal(&a, &b, fields(Some("x"), None));
        assert_eq!(one, again);
        let next = s.seal(
            &a,
            &b,
            Fields {
                counter: 8,
                ..fields(Some("x"), None)
            },
        );
        assert_ne!(one, next);
        assert_ne!(one.tag(), next.tag());
        assert_eq!(IdSealer::parse(&one), Some(*one.raw()));
        assert!(one
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        // Neither the original id nor the resource shows in the text.
        let id = s.seal(&a, &b, fields(Some("SECRETID"), Some("laptop")));
        let bytes = BASE64URL_NOPAD.decode(id.as_bytes()).expect("base64");
        assert!(!bytes.windows(6).any(|w| w == b"laptop" || w == b"SECRET"));
    }

    #[test]
    fn a_forged_plain_text_with_a_valid_mac_still_needs_the_shape() {
        // What `well_formed` guards: a length pointing past the room.
        let mut p = Plain {
            tag: [0; TAG_LEN],
            buf: [0; PLAIN_LEN],
        };
        p.buf[0] = VERSION | HAS_ID;
        p.buf[LENS_AT] = ROOM as u8 + 1;
        assert!(!p.well_formed());
        p.buf[LENS_AT] = 1;
        p.buf[CONTENT_AT] = 0xff;
        assert!(!p.well_formed());
        p.buf[CONTENT_AT] = b'a';
        assert!(p.well_formed());
        p.buf[0] = 0x20 | HAS_ID;
        assert!(!p.well_formed());
        p.buf[0] = VERSION | 8;
        assert!(!p.well_formed());
        p.buf[0] = VERSION;
        p.buf[CONTENT_AT + 40] = 1;
        assert!(!p.well_formed());
    }
}
