//! Fresh message ids, and what the relay keeps to translate references to
//! them (SPEC §5).
//!
//! Client-chosen ids fingerprint clients and link senders, so every relayed
//! message gets a fresh id: sealed (`idseal.rs`), it carries the original
//! id and the sender's resource itself, so any instance, and this one after
//! a restart, translates a receipt, marker or bounce that names it. What
//! stays here, per instance and bounded:
//!
//! * which acknowledgements passed: only the first receipt or marker of
//!   each kind for a message passes, or the sender could count the other
//!   side's devices. All of a recipient's devices' acknowledgements come
//!   from one account, which a balancing server keeps on one instance;
//! * the original id → fresh id direction, for corrections, which come
//!   from the sender and so through the instance that relayed the message;
//! * the way back of the rare message whose original id and resource do
//!   not fit in an id ([`idseal::ROOM`]).

use std::hash::BuildHasher;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::cache::{GenMap, Keyed, Prehashed};
use crate::idseal::{self, Fields, IdSealer, Plain, Raw, SealedId, Tag};
use crate::pseudonym::Local;

/// How long after issue an id is still translated: receipts and markers
/// come when the other side reads, which may be after weeks offline. An id
/// carries its time, so this holds on every instance and across restarts.
pub(crate) const ID_LIFETIME_SECS: u64 = 30 * 24 * 3600;
/// How far ahead of this instance's clock an id may be dated: instances'
/// clocks differ a little. An id dated further ahead came from a clock
/// that was wrong, and would otherwise never expire.
pub(crate) const ID_AHEAD_SECS: u64 = 3600;
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

pub(crate) struct IdMap {
    sealer: IdSealer,
    /// Keeps the plain texts of one instance's ids apart; starts anywhere.
    counter: u32,
    /// Keyed hash of (sender pseudonym, original id) → the fresh id. A hit
    /// is opened for the pair and compared, so a collision can only lose a
    /// translation, never make a wrong one.
    by_orig: GenMap<u64, Raw, Prehashed>,
    orig_hasher: Keyed,
    /// Acknowledgement kinds passed back (bits of `RefKind::Received`), by
    /// the id's tag.
    acked: GenMap<Tag, u8, Prehashed>,
    /// The way back of ids that could not carry it, by tag.
    held: GenMap<Tag, Origin, Prehashed>,
    /// For the bot's own replies, which nothing refers back to.
    mac: Hmac<Sha256>,
    bot_counter: u64,
}

/// Where a delivery error goes back to: what the id carried, or what this
/// instance held for it.
#[derive(Debug)]
pub(crate) enum Return {
    /// The id carried the original id and, in bare identity mode, the
    /// resource; the sender's address is the pseudonym's identity.
    Carried {
        orig_id: Option<String>,
        resource: Option<String>,
    },
    /// Held here: the sender's full JID and original id.
    Held(Origin),
}

impl IdMap {
    /// `secret` is the pseudonym secret every instance shares; `key` the
    /// process's own random key.
    pub(crate) fn new(secret: &[u8], key: &[u8; 32], capacity: usize) -> Self {
        IdMap {
            sealer: IdSealer::new(secret),
            // Derived apart from the caches' hashers, which share `key`.
            counter: Keyed::new(key, 7).hash_one("id counter") as u32,
            by_orig: GenMap::new(capacity, Prehashed),
            orig_hasher: Keyed::new(key, 6),
            acked: GenMap::new(capacity, Prehashed),
            held: GenMap::new(capacity, Prehashed),
            mac: Hmac::<Sha256>::new_from_slice(key).expect("any key length"),
            bot_counter: 0,
        }
    }

    /// An id for a reply of the bot: unpredictable, unique per relay, 16
    /// lower-case base32 characters (nothing refers back to it).
    pub(crate) fn bot_id(&mut self) -> String {
        self.bot_counter += 1;
        let mut mac = self.mac.clone();
        mac.update(&self.bot_counter.to_le_bytes());
        let tag = mac.finalize().into_bytes();
        let mut id = data_encoding::BASE32_NOPAD.encode(&tag[..10]);
        id.make_ascii_lowercase();
        id
    }

    /// The id for a message from `sender` to `recipient`, issued at `unix`;
    /// [`IdMap::record`] it once the message is out.
    pub(crate) fn issue(
        &mut self,
        sender: &Local,
        recipient: &Local,
        orig_id: Option<&str>,
        resource: Option<&str>,
        unix: u64,
    ) -> SealedId {
        self.counter = self.counter.wrapping_add(1);
        let fields = Fields {
            issued: unix,
            counter: self.counter,
            orig_id,
            resource,
        };
        self.sealer.seal(sender, recipient, fields)
    }

    fn orig_key(&self, sender_local: &str, orig: &str) -> u64 {
        self.orig_hasher.hash_one((sender_local, orig))
    }

    /// Remember what only this instance can do for `id`: translate
    /// corrections to it, and, if it could not carry its way back, hold
    /// that (`origin` is called only then).
    pub(crate) fn record(
        &mut self,
        id: &SealedId,
        sender: &Local,
        orig_id: Option<&str>,
        origin: impl FnOnce() -> Origin,
    ) {
        if let Some(orig) = orig_id {
            let k = self.orig_key(sender, orig);
            self.by_orig.insert(k, *id.raw());
        }
        if id.is_held() {
            self.held.insert(id.tag(), origin());
        }
    }

    /// `fresh` opened for a message from `sender` to `recipient`, if it is
    /// one and not expired at `unix`.
    fn open(&self, fresh: &str, sender: &Local, recipient: &Local, unix: u64) -> Option<Plain> {
        let plain = self.sealer.open(fresh, sender, recipient)?;
        let issued = plain.issued();
        let fresh_enough = unix.saturating_sub(issued) <= ID_LIFETIME_SECS;
        let not_ahead = issued <= unix.saturating_add(ID_AHEAD_SECS);
        (fresh_enough && not_ahead).then_some(plain)
    }

    /// A receipt or marker of kind `bit` from `from_local` to `to_local`
    /// naming `fresh`: the original id, if that message went from `to_local`
    /// to `from_local`, is not expired, and no acknowledgement of this kind
    /// passed yet (here).
    pub(crate) fn back(
        &mut self,
        fresh: &str,
        from_local: &Local,
        to_local: &Local,
        bit: u8,
        unix: u64,
    ) -> Option<String> {
        let plain = self.open(fresh, to_local, from_local, unix)?;
        let tag = plain.tag();
        let orig = if plain.is_held() {
            self.held.get(&tag)?.orig_id()?.to_owned()
        } else {
            plain.orig_id()?.to_owned()
        };
        match self.acked.get(&tag) {
            Some(acked) if *acked & bit != 0 => None,
            Some(acked) => {
                *acked |= bit;
                Some(orig)
            }
            None => {
                self.acked.insert(tag, bit);
                Some(orig)
            }
        }
    }

    /// A correction from `from_local` to `to_local` naming its own `orig`:
    /// the fresh id the recipient knows that message by.
    pub(crate) fn forward(
        &mut self,
        orig: &str,
        from_local: &Local,
        to_local: &Local,
    ) -> Option<String> {
        let raw = *self.by_orig.get(&self.orig_key(from_local, orig))?;
        let plain = self.sealer.open_raw(&raw, from_local, to_local)?;
        let named = if plain.is_held() {
            self.held.get(&plain.tag())?.orig_id()
        } else {
            plain.orig_id()
        };
        (named == Some(orig)).then(|| {
            // Always ASCII: base64url.
            let text = data_encoding::BASE64URL_NOPAD.encode(&raw);
            debug_assert_eq!(text.len(), idseal::TEXT_LEN);
            text
        })
    }

    /// A delivery error to `to_local` from `from_local` naming `fresh`:
    /// where it goes back to, if `fresh` is a message `to_local` sent
    /// `from_local`, not expired. Read only: deciding calls it.
    pub(crate) fn bounce(
        &self,
        fresh: &str,
        to_local: &Local,
        from_local: &Local,
        unix: u64,
    ) -> Option<Return> {
        let plain = self.open(fresh, to_local, from_local, unix)?;
        if plain.is_held() {
            let (origin, _) = self.held.peek(&plain.tag())?;
            return Some(Return::Held(origin.clone()));
        }
        Some(Return::Carried {
            orig_id: plain.orig_id().map(str::to_owned),
            resource: plain.resource().map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Three pseudonym localparts: 45 base32 characters each.
    const PA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const PB: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const PC: &str = "ccccccccccccccccccccccccccccccccccccccccccccc";
    const T0: u64 = 1_800_000_000;

    fn local(s: &str) -> Local {
        Local::parse(s).expect("a well-formed localpart")
    }

    fn map() -> IdMap {
        IdMap::new(b"secret", &[1; 32], 10)
    }

    /// A message from PA to PB relayed under a fresh id, recorded.
    fn relayed(m: &mut IdMap, orig: Option<&str>, resource: Option<&str>) -> SealedId {
        let (a, b) = (local(PA), local(PB));
        let id = m.issue(&a, &b, orig, resource, T0);
        m.record(&id, &a, orig, || Origin::new("a@x/r", orig));
        id
    }

    #[test]
    fn references_translate_only_between_the_same_pair() {
        let (a, b, c) = (local(PA), local(PB), local(PC));
        let mut m = map();
        let f = relayed(&mut m, Some("orig-1"), Some("r"));
        assert_eq!(m.back(&f, &c, &a, 1, T0), None);
        assert_eq!(m.back(&f, &a, &b, 1, T0), None);
        assert_eq!(m.back("unknown", &b, &a, 1, T0), None);
        assert_eq!(m.back(&f.to_uppercase(), &b, &a, 1, T0), None);
        assert_eq!(m.back(&f, &b, &a, 1, T0).as_deref(), Some("orig-1"));
        // A second acknowledgement of the same kind (another device) is dropped…
        assert_eq!(m.back(&f, &b, &a, 1, T0), None);
        // …one of another kind passes.
        assert_eq!(m.back(&f, &b, &a, 4, T0).as_deref(), Some("orig-1"));
        assert_eq!(m.forward("orig-1", &a, &b).as_deref(), Some(&*f));
        assert_eq!(m.forward("orig-1", &a, &c), None);
        assert_eq!(m.forward("orig-1", &c, &b), None);
        assert_eq!(m.forward("orig-2", &a, &b), None);
    }

    #[test]
    fn another_instance_with_the_secret_translates_back_and_bounces() {
        let (a, b) = (local(PA), local(PB));
        let mut one = map();
        let f = relayed(&mut one, Some("orig-1"), Some("phone"));
        // Another process: its own random key, the same secret.
        let mut two = IdMap::new(b"secret", &[2; 32], 10);
        let later = T0 + ID_LIFETIME_SECS;
        assert_eq!(two.back(&f, &b, &a, 1, later).as_deref(), Some("orig-1"));
        match two.bounce(&f, &a, &b, later) {
            Some(Return::Carried { orig_id, resource }) => {
                assert_eq!(orig_id.as_deref(), Some("orig-1"));
                assert_eq!(resource.as_deref(), Some("phone"));
            }
            other => panic!("{other:?}"),
        }
        // A bounce names the pair the other way round from a receipt.
        assert!(two.bounce(&f, &b, &a, T0).is_none());
        // Another secret opens nothing.
        let mut other = IdMap::new(b"other", &[1; 32], 10);
        assert_eq!(other.back(&f, &b, &a, 1, T0), None);
        assert!(other.bounce(&f, &a, &b, T0).is_none());
    }

    #[test]
    fn expired_ids_are_not_translated() {
        let (a, b) = (local(PA), local(PB));
        let mut m = map();
        let f = relayed(&mut m, Some("orig-1"), None);
        let expired = T0 + ID_LIFETIME_SECS + 1;
        assert_eq!(m.back(&f, &b, &a, 1, expired), None);
        assert!(m.bounce(&f, &a, &b, expired).is_none());
        // An id from an instance whose clock runs a little ahead is
        // translated; one dated far ahead came from a wrong clock.
        assert!(m.bounce(&f, &a, &b, T0 - ID_AHEAD_SECS - 1).is_none());
        assert_eq!(m.back(&f, &b, &a, 1, T0 - 60).as_deref(), Some("orig-1"));
    }

    #[test]
    fn what_does_not_fit_is_held_here_only() {
        let (a, b) = (local(PA), local(PB));
        let long = "i".repeat(200);
        let mut m = map();
        let f = relayed(&mut m, Some(&long), Some("r"));
        assert!(f.is_held());
        assert_eq!(m.back(&f, &b, &a, 1, T0).as_deref(), Some(&*long));
        assert_eq!(m.forward(&long, &a, &b).as_deref(), Some(&*f));
        match m.bounce(&f, &a, &b, T0) {
            Some(Return::Held(o)) => {
                assert_eq!((o.sender_full(), o.orig_id()), ("a@x/r", Some(&*long)))
            }
            other => panic!("{other:?}"),
        }
        let mut two = IdMap::new(b"secret", &[2; 32], 10);
        assert_eq!(two.back(&f, &b, &a, 1, T0), None);
        assert!(two.bounce(&f, &a, &b, T0).is_none());
    }

    #[test]
    fn a_later_message_with_the_same_original_id_wins() {
        let (a, b) = (local(PA), local(PB));
        let mut m = map();
        let _f1 = relayed(&mut m, Some("same"), None);
        let f2 = relayed(&mut m, Some("same"), None);
        assert_eq!(m.forward("same", &a, &b).as_deref(), Some(&*f2));
        // Without an original id nothing is translated.
        let f3 = relayed(&mut m, None, None);
        assert_eq!(m.forward("", &a, &b), None);
        assert_eq!(m.back(&f3, &b, &a, 1, T0), None);
    }

    #[test]
    fn bot_ids_are_unique_and_lower_case_base32() {
        let mut m = map();
        let (x, y) = (m.bot_id(), m.bot_id());
        assert_ne!(x, y);
        assert_eq!(x.len(), 16);
        assert!(x.bytes().all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7')));
        assert_ne!(IdMap::new(b"secret", &[2; 32], 10).bot_id(), x);
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
        let (b, a) = (local(PB), local(PA));
        let mut m = map();
        let long = "i".repeat(100);
        for i in 0..100 {
            let f = relayed(&mut m, Some(&format!("{long}{i}")), None);
            m.back(&f, &b, &a, 1, T0);
        }
        assert!(m.by_orig.len() <= 10 && m.acked.len() <= 10 && m.held.len() <= 10);
    }
}
