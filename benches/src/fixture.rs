//! The relay core driven synchronously, with a map as its store: what the
//! criterion benches and the profiling driver measure.
//!
//! Store operations are answered at once from a `HashMap`, inside the drain
//! that follows every `handle_*` call, the way the contract in
//! `axrelay_proto` asks (`poll_transmit`, then `poll_action`, repeatedly).

use std::collections::HashMap;
use std::time::Instant;

use axrelay_proto::{Action, Config, Pseudonymizer, Relay, StoreCodec, StoreOutcome};

use crate::wire;

/// Bytes the runtimes read from the socket at once.
pub const READ_CHUNK: usize = 16 * 1024;

/// The component password of the benches.
pub const PASSWORD: &str = "bench-component-password";
/// The pseudonym secret of the benches (not a real one).
pub const SECRET: &[u8] = b"bench-only pseudonym secret, not for use";

/// A connected, online relay and its synchronous store.
pub struct Fixture {
    relay: Relay,
    store: HashMap<String, Vec<u8>>,
    codec: StoreCodec,
    pseudo: Pseudonymizer,
    now: Instant,
    /// Bytes the relay has written since the last [`Fixture::take_counts`].
    pub out_bytes: usize,
    /// Store lookups answered since the last [`Fixture::take_counts`].
    pub gets: usize,
    /// Keep output here when set (for checks; off while measuring).
    pub keep: Option<Vec<u8>>,
}

/// The configuration of the benches: defaults, fixed keys.
pub fn config() -> Config {
    let mut c = Config::new(wire::COMPONENT, PASSWORD, SECRET);
    c.id_key = [7; 32];
    c
}

impl Fixture {
    /// A relay past the handshake, with no mapping known.
    pub fn online(config: Config) -> Fixture {
        let now = Instant::now();
        let codec = StoreCodec::new(config.encrypt);
        let pseudo = Pseudonymizer::new(&config.secret);
        let relay = Relay::new(config).expect("the bench configuration is valid");
        let mut f = Fixture {
            relay,
            store: HashMap::new(),
            codec,
            pseudo,
            now,
            out_bytes: 0,
            gets: 0,
            keep: None,
        };
        f.relay.handle_connected(now);
        f.drain();
        let id = "bench-stream";
        f.relay
            .handle_input(wire::server_header(id).as_bytes(), now);
        f.keep = Some(Vec::new());
        f.drain();
        let sent = f.keep.take().unwrap_or_default();
        let want = format!(
            "<handshake>{}</handshake>",
            wire::handshake_digest(id, PASSWORD)
        );
        assert_eq!(String::from_utf8_lossy(&sent), want, "handshake");
        f.relay.handle_input(b"<handshake/>", now);
        f.drain();
        assert!(f.relay.is_online(), "the relay did not go online");
        f.take_counts();
        f
    }

    /// The pseudonym localpart of user `i` (computed, as the relay does).
    pub fn localpart(&self, i: usize) -> String {
        self.pseudo.localpart(&wire::user_bare(i))
    }

    /// Put the mapping of user `i` in the store without telling the relay
    /// (as another instance, or an earlier run, would have).
    pub fn prestore(&mut self, i: usize) -> String {
        let local = self.localpart(i);
        let key = self.codec.key(&local, wire::COMPONENT);
        let value = self
            .codec
            .seal(&local, wire::COMPONENT, &wire::user_bare(i));
        self.store.insert(key, value.to_vec());
        local
    }

    /// Send `/whoami` for users `0..n` through the relay, so their mappings
    /// are stored and cached; returns their localparts, checked against
    /// the replies.
    pub fn learn(&mut self, n: usize) -> Vec<String> {
        let mut input = Vec::new();
        for i in 0..n {
            wire::push_whoami(&mut input, i, i as u64);
        }
        self.keep = Some(Vec::new());
        self.feed(&input);
        let out = String::from_utf8(self.keep.take().unwrap_or_default()).expect("UTF-8 output");
        let locals: Vec<String> = (0..n).map(|i| self.localpart(i)).collect();
        for l in &locals {
            assert!(
                out.contains(&format!("<body>{l}@{}</body>", wire::COMPONENT)),
                "no /whoami reply with {l}"
            );
        }
        self.take_counts();
        locals
    }

    /// Feed `input` in read-sized chunks, draining after each.
    pub fn feed(&mut self, input: &[u8]) {
        for chunk in input.chunks(READ_CHUNK) {
            self.relay.handle_input(chunk, self.now);
            self.drain();
        }
    }

    /// Reset and return (bytes written, lookups answered).
    pub fn take_counts(&mut self) -> (usize, usize) {
        let r = (self.out_bytes, self.gets);
        self.out_bytes = 0;
        self.gets = 0;
        r
    }

    /// The relay's counters.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Transmits, then actions, until both are empty; store operations are
    /// answered synchronously.
    fn drain(&mut self) {
        loop {
            while let Some(bytes) = self.relay.poll_transmit() {
                self.out_bytes += bytes.len();
                if let Some(k) = self.keep.as_mut() {
                    k.extend_from_slice(&bytes);
                }
                std::hint::black_box(&bytes);
            }
            let Some(action) = self.relay.poll_action() else {
                return;
            };
            match action {
                Action::Get { op, key } => {
                    self.gets += 1;
                    let v = self.store.get(&key).cloned();
                    self.relay
                        .handle_store(op, StoreOutcome::Found(v), self.now);
                }
                Action::Put { op, key, value, .. } => {
                    self.store.insert(key, value.to_vec());
                    self.relay.handle_store(op, StoreOutcome::Stored, self.now);
                }
                Action::Online => {}
                Action::Disconnect(reason) => panic!("the relay disconnected: {reason}"),
            }
        }
    }
}

/// A batch of `n` chat messages with `body_len`-byte bodies, from users
/// `0..senders` (cycling) to `to_locals` (cycling from `first`).
pub fn message_batch(
    n: usize,
    body_len: usize,
    senders: usize,
    to_locals: &[String],
    first: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * (body_len + 200));
    let mut body = Vec::with_capacity(body_len);
    for k in 0..n {
        body.clear();
        wire::push_body(&mut body, b"", k as u64, body_len);
        let to = &to_locals[(first + k) % to_locals.len()];
        wire::push_message(&mut out, k % senders, to, k as u64, &body);
    }
    out
}

/// A stream header and a fresh rxml parser that has read it, configured as
/// the relay's framer configures its own.
pub fn primed_parser() -> rxml::Parser {
    use rxml::{Parse as _, WithOptions as _};
    let limits = axrelay_proto::Limits::default();
    let mut p = rxml::Parser::with_options(rxml::Options {
        max_token_length: limits.max_stanza_bytes + 16 * 1024,
        ..rxml::Options::default()
    });
    let header = wire::server_header("bench-stream");
    let mut buf: &[u8] = header.as_bytes();
    loop {
        match p.parse(&mut buf, false) {
            Ok(Some(_)) => {}
            Ok(None) | Err(rxml::error::EndOrError::NeedMoreData) => break,
            Err(rxml::error::EndOrError::Error(e)) => panic!("header: {e}"),
        }
    }
    p
}

/// Parse `input` with rxml and nothing else (in read-sized chunks); returns
/// the number of events.
pub fn parse_only(p: &mut rxml::Parser, input: &[u8]) -> usize {
    use rxml::Parse as _;
    let mut events = 0;
    for chunk in input.chunks(READ_CHUNK) {
        let mut buf = chunk;
        loop {
            match p.parse(&mut buf, false) {
                Ok(Some(ev)) => {
                    std::hint::black_box(&ev);
                    events += 1;
                }
                Ok(None) | Err(rxml::error::EndOrError::NeedMoreData) => break,
                Err(rxml::error::EndOrError::Error(e)) => panic!("rxml: {e}"),
            }
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_a_batch_and_answers_cold_lookups() {
        let mut f = Fixture::online(config());
        let locals = f.learn(4);
        let batch = message_batch(100, 100, 4, &locals, 0);
        f.keep = Some(Vec::new());
        f.feed(&batch);
        let out = String::from_utf8(f.keep.take().unwrap()).unwrap();
        assert_eq!(out.matches("</message>").count(), 100);
        assert_eq!(f.relay().stats().relayed, 100);

        let cold: Vec<String> = (100..150).map(|i| f.prestore(i)).collect();
        let batch = message_batch(50, 100, 4, &cold, 0);
        f.take_counts();
        f.feed(&batch);
        let (_, gets) = f.take_counts();
        assert_eq!(gets, 50);
        assert_eq!(f.relay().stats().relayed, 150);

        let mut p = primed_parser();
        assert!(parse_only(&mut p, &batch) >= 50 * 4);
    }
}
