//! Fresh message ids and the bounded map that translates references back.
//!
//! Client-chosen ids fingerprint clients and link senders, so every relayed
//! message gets a fresh id. Receipts and markers from the recipient name the
//! fresh id and are translated back to the original; corrections from the
//! sender name the original and are translated forward. Each entry also
//! records who talked to whom, so a reference is honoured only between the
//! same two pseudonyms; anything else is dropped. Only the first receipt or
//! marker of each kind for a message passes: when every device of an
//! account acknowledges, the sender would otherwise count the devices.

use std::hash::BuildHasher;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::cache::{Gen, GenMap, Keyed, Prehashed};
use crate::pseudonym::Local;

/// What the relay remembers about one relayed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sent {
    /// The sender's address and the message's own id.
    pub(crate) origin: Origin,
    /// Pseudonym localpart of the sender.
    pub(crate) sender_local: Local,
    /// Pseudonym localpart of the recipient.
    pub(crate) recipient_local: Local,
    /// Kinds of acknowledgement already passed back (bits of `RefKind::Received`).
    pub(crate) acked: u8,
}

/// The sender's real full JID (for bounces: servers drop errors sent to a
/// bare JID) and the id the sender gave the message, if any, in one
/// allocation: one is made for every relayed message, and freed long after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    text: Box<str>,
    full_len: usize,
    has_id: bool,
}

impl Origin {
    pub(crate) fn new(sender_full: &str, orig_id: Option<&str>) -> Self {
        let id = orig_id.unwrap_or_default();
        let mut text = String::with_capacity(sender_full.len() + id.len());
        text.push_str(sender_full);
        text.push_str(id);
        Origin {
            text: text.into_boxed_str(),
            full_len: sender_full.len(),
            has_id: orig_id.is_some(),
        }
    }

    pub(crate) fn sender_full(&self) -> &str {
        self.text.get(..self.full_len).unwrap_or_default()
    }

    pub(crate) fn orig_id(&self) -> Option<&str> {
        self.has_id
            .then(|| self.text.get(self.full_len..))
            .flatten()
    }
}

/// The 80 bits of a fresh id; the map keys on these rather than on their
/// text, so remembering an id allocates nothing.
type Raw = [u8; RAW_LEN];

const RAW_LEN: usize = 10;
const TEXT_LEN: usize = 16;
/// RFC 4648 base32, lower case: 16 characters carry exactly 80 bits, so
/// every id has one spelling and decoding is exact.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A fresh message id: its bytes and its text, on the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FreshId {
    raw: Raw,
    text: [u8; TEXT_LEN],
}

impl FreshId {
    fn new(raw: Raw) -> Self {
        let n = raw.iter().fold(0u128, |n, &b| n << 8 | u128::from(b));
        let mut text = [0u8; TEXT_LEN];
        for (i, c) in text.iter_mut().enumerate() {
            *c = ALPHABET[(n >> (5 * (TEXT_LEN - 1 - i))) as usize & 31];
        }
        FreshId { raw, text }
    }

    /// The bytes behind an id's text; `None` for anything `new` cannot
    /// produce (wrong length, upper case, other characters).
    fn parse(s: &str) -> Option<Raw> {
        if s.len() != TEXT_LEN {
            return None;
        }
        let mut n = 0u128;
        for c in s.bytes() {
            let v = match c {
                b'a'..=b'z' => c - b'a',
                b'2'..=b'7' => c - b'2' + 26,
                _ => return None,
            };
            n = n << 5 | u128::from(v);
        }
        let mut raw = [0u8; RAW_LEN];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = (n >> (8 * (RAW_LEN - 1 - i))) as u8;
        }
        Some(raw)
    }
}

impl std::ops::Deref for FreshId {
    type Target = str;
    fn deref(&self) -> &str {
        // Always ASCII from `ALPHABET`.
        std::str::from_utf8(&self.text).unwrap_or_default()
    }
}

pub(crate) struct IdMap {
    /// Keyed by MAC output, so not hashed again.
    by_fresh: GenMap<Raw, Sent, Prehashed>,
    /// Keyed hash of (sender pseudonym, original id) → fresh id. A hit is
    /// checked against the entry in `by_fresh`, so a collision can only lose
    /// a translation, never make a wrong one.
    by_orig: GenMap<u64, Raw, Prehashed>,
    orig_hasher: Keyed,
    mac: Hmac<Sha256>,
    counter: u64,
}

impl IdMap {
    pub(crate) fn new(key: &[u8; 32], capacity: usize) -> Self {
        IdMap {
            by_fresh: GenMap::new(capacity, Prehashed),
            by_orig: GenMap::new(capacity, Prehashed),
            orig_hasher: Keyed::new(key, 6),
            mac: Hmac::<Sha256>::new_from_slice(key).expect("any key length"),
            counter: 0,
        }
    }

    /// A new id: unpredictable, unique per relay, 16 base32 characters.
    pub(crate) fn fresh(&mut self) -> FreshId {
        self.counter += 1;
        let mut mac = self.mac.clone();
        mac.update(&self.counter.to_le_bytes());
        let tag = mac.finalize().into_bytes();
        let mut raw = [0u8; RAW_LEN];
        raw.copy_from_slice(&tag[..RAW_LEN]);
        FreshId::new(raw)
    }

    fn orig_key(&self, sender_local: &str, orig: &str) -> u64 {
        self.orig_hasher.hash_one((sender_local, orig))
    }

    pub(crate) fn record(&mut self, fresh: FreshId, sent: Sent) {
        if let Some(orig) = sent.origin.orig_id() {
            let k = self.orig_key(&sent.sender_local, orig);
            self.by_orig.insert(k, fresh.raw);
        }
        self.by_fresh.insert(fresh.raw, sent);
    }

    /// The message relayed under `fresh`, and where the map holds it, for
    /// [`IdMap::touch`] once the stanza naming it is handled.
    pub(crate) fn peek(&self, fresh: &str) -> Option<(&Sent, Gen)> {
        self.by_fresh.peek(&FreshId::parse(fresh)?)
    }

    /// Keep the message relayed under `fresh` as recently used.
    pub(crate) fn touch(&mut self, fresh: &str, gen: Gen) {
        if let (Gen::Old, Some(raw)) = (gen, FreshId::parse(fresh)) {
            self.by_fresh.promote(&raw);
        }
    }

    /// The message relayed under `fresh`.
    #[cfg(test)]
    pub(crate) fn sent(&mut self, fresh: &str) -> Option<&Sent> {
        self.by_fresh.get(&FreshId::parse(fresh)?).map(|s| &*s)
    }

    /// A receipt or marker of kind `bit` from `from_local` to `to_local`
    /// naming `fresh`: the original id, if that message went from `to_local`
    /// to `from_local` and no acknowledgement of this kind passed yet.
    pub(crate) fn back(
        &mut self,
        fresh: &str,
        from_local: &str,
        to_local: &str,
        bit: u8,
    ) -> Option<String> {
        let s = self.by_fresh.get(&FreshId::parse(fresh)?)?;
        if s.recipient_local.as_str() != from_local
            || s.sender_local.as_str() != to_local
            || s.acked & bit != 0
        {
            return None;
        }
        s.acked |= bit;
        s.origin.orig_id().map(str::to_owned)
    }

    /// A correction from `from_local` to `to_local` naming its own `orig`:
    /// the fresh id the recipient knows that message by.
    pub(crate) fn forward(
        &mut self,
        orig: &str,
        from_local: &str,
        to_local: &str,
    ) -> Option<String> {
        let raw = *self.by_orig.get(&self.orig_key(from_local, orig))?;
        let s = self.by_fresh.get(&raw)?;
        let same = s.recipient_local.as_str() == to_local
            && s.sender_local.as_str() == from_local
            && s.origin.orig_id() == Some(orig);
        same.then(|| FreshId::new(raw).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Three pseudonym localparts: 45 base32 characters each.
    const PA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const PB: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const PC: &str = "ccccccccccccccccccccccccccccccccccccccccccccc";

    fn local(s: &str) -> Local {
        Local::parse(s).expect("a well-formed localpart")
    }

    fn sent(orig: &str) -> Sent {
        Sent {
            origin: Origin::new("a@x/r", Some(orig)),
            sender_local: local(PA),
            recipient_local: local(PB),
            acked: 0,
        }
    }

    #[test]
    fn fresh_ids_are_unique_and_keyed() {
        let mut m = IdMap::new(&[1; 32], 10);
        let a = m.fresh();
        let b = m.fresh();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert_ne!(IdMap::new(&[2; 32], 10).fresh(), a);
    }

    #[test]
    fn id_text_is_lower_case_base32_and_parses_back_exactly() {
        let mut m = IdMap::new(&[3; 32], 10);
        for raw in [[0u8; 10], [0xff; 10]]
            .into_iter()
            .chain((0..200).map(|_| m.fresh().raw))
        {
            let id = FreshId::new(raw);
            let text = data_encoding::BASE32_NOPAD
                .encode(&raw)
                .to_ascii_lowercase();
            assert_eq!(&*id, text);
            assert_eq!(FreshId::parse(&id), Some(raw));
            let upper = text.to_ascii_uppercase();
            if upper != text {
                assert_eq!(FreshId::parse(&upper), None);
            }
            assert_eq!(FreshId::parse(&text[1..]), None);
            assert_eq!(FreshId::parse(&format!("{text}a")), None);
            assert_eq!(FreshId::parse(&text.replace(|_| true, "1")), None);
        }
    }

    #[test]
    fn references_translate_only_between_the_same_pair() {
        let mut m = IdMap::new(&[1; 32], 10);
        let f = m.fresh();
        m.record(f, sent("orig-1"));
        assert_eq!(m.back(&f, PC, PA, 1), None);
        assert_eq!(m.back(&f, PA, PB, 1), None);
        assert_eq!(m.back("unknown", PB, PA, 1), None);
        assert_eq!(m.back(&f.to_uppercase(), PB, PA, 1), None);
        assert_eq!(m.back(&f, PB, PA, 1).as_deref(), Some("orig-1"));
        // A second acknowledgement of the same kind (another device) is dropped…
        assert_eq!(m.back(&f, PB, PA, 1), None);
        // …one of another kind passes.
        assert_eq!(m.back(&f, PB, PA, 4).as_deref(), Some("orig-1"));
        assert_eq!(m.forward("orig-1", PA, PB).as_deref(), Some(&*f));
        assert_eq!(m.forward("orig-1", PA, PC), None);
        assert_eq!(m.forward("orig-1", PC, PB), None);
        assert_eq!(m.forward("orig-2", PA, PB), None);
        assert_eq!(
            m.sent(&f),
            Some(&Sent {
                acked: 5,
                ..sent("orig-1")
            })
        );
    }

    #[test]
    fn a_later_message_with_the_same_original_id_wins() {
        let mut m = IdMap::new(&[1; 32], 10);
        let f1 = m.fresh();
        m.record(f1, sent("same"));
        let f2 = m.fresh();
        m.record(f2, sent("same"));
        assert_eq!(m.forward("same", PA, PB).as_deref(), Some(&*f2));
        // Without an original id nothing is translated forward.
        let f3 = m.fresh();
        m.record(
            f3,
            Sent {
                origin: Origin::new("a@x/r", None),
                ..sent("")
            },
        );
        assert_eq!(m.forward("", PA, PB), None);
        assert_eq!(m.back(&f3, PB, PA, 1), None);
        assert!(m.sent(&f3).is_some());
    }

    #[test]
    fn origin_keeps_address_and_id_apart() {
        for (full, id) in [
            ("a@x/r", Some("1")),
            ("a@x/r", Some("")),
            ("a@x/r", None),
            ("é@x/ü", Some("ß")),
        ] {
            let o = Origin::new(full, id);
            assert_eq!((o.sender_full(), o.orig_id()), (full, id));
        }
    }

    #[test]
    fn bounded() {
        let mut m = IdMap::new(&[1; 32], 10);
        for i in 0..100 {
            let f = m.fresh();
            m.record(f, sent(&i.to_string()));
        }
        assert!(m.by_fresh.len() <= 10 && m.by_orig.len() <= 10);
    }
}
