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

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::cache::{GenMap, Keyed};

/// What the relay remembers about one relayed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sent {
    /// The id the sender gave it, if any.
    pub(crate) orig_id: Option<String>,
    /// The sender's real full JID, for bounces (servers drop errors sent to
    /// a bare JID).
    pub(crate) sender_full: String,
    /// Pseudonym localpart of the sender.
    pub(crate) sender_local: String,
    /// Pseudonym localpart of the recipient.
    pub(crate) recipient_local: String,
    /// Kinds of acknowledgement already passed back (bits of `RefKind::Received`).
    pub(crate) acked: u8,
}

pub(crate) struct IdMap {
    by_fresh: GenMap<String, Sent>,
    by_orig: GenMap<String, String>,
    mac: Hmac<Sha256>,
    counter: u64,
}

impl IdMap {
    pub(crate) fn new(key: &[u8; 32], capacity: usize) -> Self {
        IdMap {
            by_fresh: GenMap::new(capacity, Keyed::new(key, 1)),
            by_orig: GenMap::new(capacity, Keyed::new(key, 2)),
            mac: Hmac::<Sha256>::new_from_slice(key).expect("any key length"),
            counter: 0,
        }
    }

    /// A new id: unpredictable, unique per relay, 16 base32 characters.
    pub(crate) fn fresh(&mut self) -> String {
        self.counter += 1;
        let mut mac = self.mac.clone();
        mac.update(&self.counter.to_le_bytes());
        let tag = mac.finalize().into_bytes();
        let mut id = BASE32_NOPAD.encode(&tag[..10]);
        id.make_ascii_lowercase();
        id
    }

    fn orig_key(sender_local: &str, orig: &str) -> String {
        let mut k = String::with_capacity(sender_local.len() + 1 + orig.len());
        k.push_str(sender_local);
        k.push(' ');
        k.push_str(orig);
        k
    }

    pub(crate) fn record(&mut self, fresh: String, sent: Sent) {
        if let Some(orig) = &sent.orig_id {
            self.by_orig
                .insert(Self::orig_key(&sent.sender_local, orig), fresh.clone());
        }
        self.by_fresh.insert(fresh, sent);
    }

    /// The message relayed under `fresh`.
    pub(crate) fn sent(&mut self, fresh: &str) -> Option<&Sent> {
        self.by_fresh.get(fresh).map(|s| &*s)
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
        let s = self.by_fresh.get(fresh)?;
        if s.recipient_local != from_local || s.sender_local != to_local || s.acked & bit != 0 {
            return None;
        }
        s.acked |= bit;
        s.orig_id.clone()
    }

    /// A correction from `from_local` to `to_local` naming its own `orig`:
    /// the fresh id the recipient knows that message by.
    pub(crate) fn forward(
        &mut self,
        orig: &str,
        from_local: &str,
        to_local: &str,
    ) -> Option<String> {
        let fresh = self.by_orig.get(&Self::orig_key(from_local, orig))?.clone();
        let s = self.by_fresh.get(&fresh)?;
        (s.recipient_local == to_local).then_some(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(orig: &str) -> Sent {
        Sent {
            orig_id: Some(orig.into()),
            sender_full: "a@x/r".into(),
            sender_local: "pa".into(),
            recipient_local: "pb".into(),
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
    fn references_translate_only_between_the_same_pair() {
        let mut m = IdMap::new(&[1; 32], 10);
        let f = m.fresh();
        m.record(f.clone(), sent("orig-1"));
        assert_eq!(m.back(&f, "pc", "pa", 1), None);
        assert_eq!(m.back(&f, "pa", "pb", 1), None);
        assert_eq!(m.back("unknown", "pb", "pa", 1), None);
        assert_eq!(m.back(&f, "pb", "pa", 1).as_deref(), Some("orig-1"));
        // A second acknowledgement of the same kind (another device) is dropped…
        assert_eq!(m.back(&f, "pb", "pa", 1), None);
        // …one of another kind passes.
        assert_eq!(m.back(&f, "pb", "pa", 4).as_deref(), Some("orig-1"));
        assert_eq!(m.forward("orig-1", "pa", "pb").as_deref(), Some(f.as_str()));
        assert_eq!(m.forward("orig-1", "pa", "pc"), None);
        assert_eq!(m.forward("orig-1", "pc", "pb"), None);
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
