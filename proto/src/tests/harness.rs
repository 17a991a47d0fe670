//! Drives a [`Relay`] like a runtime would, against a [`MemoryStore`], with
//! virtual time; parses everything the relay writes with the relay's own
//! framer (so every output byte is checked for well-formedness).

use std::time::{Duration, Instant};

use data_encoding::HEXLOWER;
use sha1::{Digest, Sha1};

use crate::element::Element;
use crate::framer::{Frame, Framer};
use crate::store::{MemoryStore, Store};
use crate::{Action, Config, DisconnectReason, Limits, Relay, StoreOutcome};

pub(crate) const DOMAIN: &str = "axr.example";
pub(crate) const PASSWORD: &str = "component-pw";
pub(crate) const SECRET: &[u8] = b"a test secret of some length";
pub(crate) const STREAM_ID: &str = "s1d";
pub(crate) const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='axr.example' id='s1d'>";

pub(crate) fn config() -> Config {
    let mut c = Config::new(DOMAIN, PASSWORD, SECRET);
    c.id_key = [7; 32];
    c
}

pub(crate) struct Harness {
    pub(crate) relay: Relay,
    pub(crate) store: MemoryStore,
    pub(crate) now: Instant,
    /// Perform store actions at once (else hold them in `held`).
    pub(crate) auto_store: bool,
    pub(crate) held: Vec<Action>,
    pub(crate) puts: usize,
    pub(crate) gets: usize,
    /// Store actions in the order the relay asked for them.
    pub(crate) log: Vec<String>,
    pub(crate) raw_out: Vec<u8>,
    parser: Framer,
    pub(crate) sent: Vec<Element>,
    pub(crate) closed_stream: bool,
    pub(crate) disconnects: Vec<DisconnectReason>,
    pub(crate) online: usize,
}

impl Harness {
    pub(crate) fn new(config: Config) -> Self {
        Harness {
            relay: Relay::new(config).expect("valid config"),
            store: MemoryStore::new(1000),
            now: super::origin(),
            auto_store: true,
            held: Vec::new(),
            puts: 0,
            gets: 0,
            log: Vec::new(),
            raw_out: Vec::new(),
            parser: Framer::new(Limits::default()),
            sent: Vec::new(),
            closed_stream: false,
            disconnects: Vec::new(),
            online: 0,
        }
    }

    /// Connected and past the handshake.
    pub(crate) fn online(config: Config) -> Self {
        let mut h = Harness::new(config);
        h.connect();
        h
    }

    pub(crate) fn connect(&mut self) {
        self.relay.handle_connected(self.now);
        self.parser = Framer::new(Limits::default());
        let before = self.raw_out.len();
        self.pump();
        let header = String::from_utf8(self.raw_out[before..].to_vec()).unwrap();
        assert_eq!(
            header,
            format!("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{DOMAIN}'>")
        );
        let before = self.raw_out.len();
        self.feed(SERVER_HEADER);
        let mut h = Sha1::new();
        h.update(STREAM_ID.as_bytes());
        h.update(self.relay.config().password.as_bytes());
        let expected = format!("<handshake>{}</handshake>", HEXLOWER.encode(&h.finalize()));
        assert_eq!(&self.raw_out[before..], expected.as_bytes());
        self.sent.clear();
        let online = self.online;
        self.feed("<handshake/>");
        assert_eq!(self.online, online + 1, "not online after the handshake");
        assert!(self.relay.is_online());
    }

    pub(crate) fn feed(&mut self, xml: &str) {
        self.feed_bytes(xml.as_bytes());
    }

    pub(crate) fn feed_bytes(&mut self, bytes: &[u8]) {
        self.relay.handle_input(bytes, self.now);
        self.pump();
    }

    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.relay.handle_timeout(self.now);
        self.pump();
    }

    /// Advance to the relay's next deadline, if there is one.
    pub(crate) fn run_to_deadline(&mut self) -> bool {
        match self.relay.poll_timeout() {
            Some(t) => {
                self.now = self.now.max(t);
                self.relay.handle_timeout(self.now);
                self.pump();
                true
            }
            None => false,
        }
    }

    /// Perform held store actions until none are left.
    pub(crate) fn release_all(&mut self) {
        while !self.held.is_empty() {
            self.release();
        }
    }

    /// Perform the held store actions.
    pub(crate) fn release(&mut self) {
        let held = std::mem::take(&mut self.held);
        for a in held {
            self.perform(a);
        }
        self.pump();
    }

    pub(crate) fn fail_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        for a in held {
            let op = match a {
                Action::Get { op, .. } | Action::Put { op, .. } => op,
                _ => continue,
            };
            let err = crate::StoreError::Unavailable("test".into());
            self.relay
                .handle_store(op, StoreOutcome::Failed(err), self.now);
        }
        self.pump();
    }

    fn perform(&mut self, a: Action) {
        match a {
            Action::Get { op, key } => {
                self.gets += 1;
                let v = self.store.get(&key).unwrap();
                self.relay
                    .handle_store(op, StoreOutcome::Found(v), self.now);
            }
            Action::Put {
                op,
                key,
                value,
                ttl,
            } => {
                self.puts += 1;
                self.store.put(&key, &value, ttl).unwrap();
                self.relay.handle_store(op, StoreOutcome::Stored, self.now);
            }
            _ => unreachable!(),
        }
    }

    pub(crate) fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(bytes) = self.relay.poll_transmit() {
                progressed = true;
                self.raw_out.extend_from_slice(&bytes);
                let mut frames = Vec::new();
                self.parser.feed(&bytes, &mut frames).unwrap_or_else(|e| {
                    panic!(
                        "relay wrote malformed XML ({e}): {}",
                        String::from_utf8_lossy(&self.raw_out)
                    )
                });
                for f in frames {
                    match f {
                        Frame::Stanza(e) => {
                            let from = e.attr("from").unwrap_or_default().to_owned();
                            if matches!(e.name(), "message" | "presence" | "iq") {
                                let j = crate::Jid::parse(&from).expect("from is a JID");
                                assert_eq!(j.domain(), DOMAIN, "foreign from: {from}");
                            }
                            self.sent.push(e)
                        }
                        Frame::End => self.closed_stream = true,
                        Frame::Header { .. } => {}
                        Frame::Skipped(_) => panic!("relay wrote an oversized stanza"),
                    }
                }
            }
            while let Some(a) = self.relay.poll_action() {
                progressed = true;
                match a {
                    Action::Online => self.online += 1,
                    Action::Disconnect(r) => self.disconnects.push(r),
                    a => {
                        if let Action::Get { key, .. } | Action::Put { key, .. } = &a {
                            self.log.push(key.clone());
                        }
                        if self.auto_store {
                            self.perform(a)
                        } else {
                            self.held.push(a)
                        }
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// Take what the relay sent (stanzas, in order).
    pub(crate) fn take(&mut self) -> Vec<Element> {
        std::mem::take(&mut self.sent)
    }

    /// Exactly one stanza sent.
    pub(crate) fn one(&mut self) -> Element {
        let mut s = self.take();
        assert_eq!(s.len(), 1, "expected one stanza, got {s:#?}");
        s.remove(0)
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

pub(crate) fn body(e: &Element) -> String {
    e.elements()
        .find(|c| c.name() == "body")
        .map(|b| b.text().into_owned())
        .unwrap_or_default()
}

/// The local part of a pseudonym JID.
pub(crate) fn local(jid: &str) -> &str {
    jid.split('@').next().unwrap()
}

pub(crate) fn error_condition(e: &Element) -> Option<(String, String)> {
    let err = e.elements().find(|c| c.name() == "error")?;
    let cond = err.elements().next()?;
    Some((err.attr("type")?.to_owned(), cond.name().to_owned()))
}
