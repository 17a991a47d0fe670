//! The unit tests drive a [`Relay`](crate::Relay) through the shared
//! simulator ([`crate::testing::Sim`]), against a [`MemoryStore`], with
//! virtual time and every output check on; what it wrote comes back here as
//! the relay's own [`Tree`]s.

use crate::element::Tree;
use crate::framer::{Frame, Framer};
use crate::store::MemoryStore;
use crate::store::Store;
use crate::testing::{component_header, Sim};
use crate::{Config, Limits, StoreCodec};

pub(crate) use crate::testing::StoreMode;

pub(crate) const DOMAIN: &str = "axr.example";
pub(crate) const PASSWORD: &str = "component-pw";
pub(crate) const SECRET: &[u8] = b"a test secret of some length";
pub(crate) const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='axr.example' id='s1d'>";

pub(crate) fn config() -> Config {
    let mut c = Config::new(DOMAIN, PASSWORD, SECRET);
    c.id_key = [7; 32];
    c
}

pub(crate) type Harness = Sim<MemoryStore>;

/// A relay past the handshake, its virtual time from the tests' origin.
pub(crate) fn online(config: Config) -> Harness {
    Harness::online(config, super::origin())
}

/// A relay not connected yet.
pub(crate) fn offline(config: Config) -> Harness {
    Harness::new(config, super::origin())
}

impl Sim<MemoryStore> {
    pub(crate) fn feed_bytes(&mut self, bytes: &[u8]) {
        self.feed(bytes);
    }

    /// Take what the relay sent (stanzas, in order).
    pub(crate) fn take(&mut self) -> Vec<Tree> {
        let header = component_header(&self.relay.config().domain);
        self.new_written()
            .iter()
            .map(|w| {
                // Parsed again in a stream of its own, by the relay's framer,
                // to get the relay's element type.
                let mut framer = Framer::new(Limits::default());
                framer.feed(header.as_bytes());
                framer.feed(&w.raw);
                loop {
                    match framer.poll() {
                        Ok(Some(Frame::Stanza(e))) => break e,
                        Ok(Some(_)) => {}
                        Ok(None) => panic!("no stanza in {}", String::from_utf8_lossy(&w.raw)),
                        Err(e) => panic!("{e:?} in {}", String::from_utf8_lossy(&w.raw)),
                    }
                }
            })
            .collect()
    }

    /// Exactly one stanza sent.
    pub(crate) fn one(&mut self) -> Tree {
        let mut s = self.take();
        assert_eq!(s.len(), 1, "expected one stanza, got {s:#?}");
        s.remove(0)
    }

    /// Point `pseudonym`'s stored mapping at someone it is not a MAC of,
    /// sealed the way this relay seals: verification must refuse it.
    pub(crate) fn poison(&mut self, pseudonym: &str) {
        let codec = StoreCodec::new(self.relay.config().encrypt);
        let l = local(pseudonym);
        let value = codec.seal(l, DOMAIN, "mallory@m.example");
        self.store
            .put(&codec.key(l, DOMAIN), &value, 0)
            .expect("the memory store takes every write");
    }

    /// `/whoami` for `jid`: its pseudonym bare JID.
    pub(crate) fn whoami(&mut self, jid: &str) -> String {
        self.feed(&format!(
            "<message from='{jid}' to='{DOMAIN}' type='chat' id='w'><body>/whoami</body></message>"
        ));
        let reply = self.one();
        body(&reply)
    }
}

pub(crate) fn body(e: &Tree) -> String {
    e.elements()
        .find(|c| c.name() == "body")
        .map(|b| b.text().into_owned())
        .unwrap_or_default()
}

/// The local part of a pseudonym JID.
pub(crate) fn local(jid: &str) -> &str {
    jid.split('@').next().unwrap()
}

pub(crate) fn error_condition(e: &Tree) -> Option<(String, String)> {
    let err = e.elements().find(|c| c.name() == "error")?;
    let cond = err.elements().next()?;
    Some((err.attr("type")?.to_owned(), cond.name().to_owned()))
}
