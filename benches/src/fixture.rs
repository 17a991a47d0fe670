//! The relay core driven synchronously, with a map as its store: what the
//! criterion benches and the profiling driver measure.
//!
//! The driver is the simulator of `axrelay_proto::testing` with its checks
//! off: store operations are answered at once from a `HashMap`, inside the
//! drain that follows every `handle_*` call, the way the contract in
//! `axrelay_proto` asks (`poll_transmit`, then `poll_action`, repeatedly);
//! output is counted, not parsed, so what is measured is the relay.

use std::collections::HashMap;
use std::time::Instant;

use axrelay_proto::testing::{Checks, Sim};
use axrelay_proto::{Config, DisconnectReason, Pseudonymizer, Rate, RateLimits, Relay, StoreCodec};

use crate::wire;

/// Bytes the runtimes read from the socket at once.
pub use axrelay_host::READ_BUF as READ_CHUNK;

/// The component password of the benches.
pub const PASSWORD: &str = "bench-component-password";
/// The pseudonym secret of the benches (not a real one).
pub const SECRET: &[u8] = b"bench-only pseudonym secret, not for use";

/// A connected, online relay and its synchronous store.
pub struct Fixture {
    sim: Sim<HashMap<String, Vec<u8>>>,
    codec: StoreCodec,
    pseudo: Pseudonymizer,
}

/// The configuration of the benches: defaults, fixed keys.
pub fn config() -> Config {
    let mut c = Config::new(wire::COMPONENT, PASSWORD, SECRET);
    c.id_key = [7; 32];
    // On, so their cost is measured, but out of reach: the clock stands
    // still while a benchmark sends millions of messages.
    let unreachable = Rate {
        per_second: 1e6,
        burst: u32::MAX,
    };
    c.rates = RateLimits {
        messages: unreachable,
        whoami: unreachable,
        global: Rate::OFF,
    };
    c
}

impl Fixture {
    /// A relay past the handshake (header and digest checked), with no
    /// mapping known.
    pub fn online(config: Config) -> Fixture {
        let codec = StoreCodec::new(config.encrypt);
        let pseudo = Pseudonymizer::new(&config.secret);
        let mut sim = Sim::with_checks(config, Checks::Off, Instant::now());
        sim.stream_id = "bench-stream".into();
        sim.connect();
        let mut f = Fixture { sim, codec, pseudo };
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
        self.sim.store.insert(key, value.to_vec());
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
        self.keep(true);
        self.feed(&input);
        let out = String::from_utf8(self.take_output()).expect("UTF-8 output");
        self.keep(false);
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
            self.sim.feed(chunk);
        }
    }

    /// Keep what the relay writes (for checks; off while measuring).
    pub fn keep(&mut self, on: bool) {
        self.sim.record = on;
    }

    /// What the relay wrote while kept, since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.sim.raw_out)
    }

    /// Reset and return (bytes written, lookups answered); the relay must
    /// not have disconnected.
    pub fn take_counts(&mut self) -> (usize, usize) {
        self.assert_connected();
        let r = (self.sim.out_bytes, self.sim.gets as usize);
        self.sim.out_bytes = 0;
        self.sim.gets = 0;
        r
    }

    /// Panics if the relay disconnected (checked between measurements,
    /// not inside them).
    pub fn assert_connected(&self) {
        let d: &[DisconnectReason] = &self.sim.disconnects;
        assert!(d.is_empty(), "the relay disconnected: {d:?}");
    }

    /// The relay's counters.
    pub fn relay(&self) -> &Relay {
        &self.sim.relay
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
    primed()
}

/// A parser of kind `P` (the namespace-resolving `rxml::Parser`, or the
/// `rxml::RawParser` under it) configured like the relay's and past the
/// server's stream header.
pub fn primed<P: rxml::Parse + rxml::WithOptions>() -> P {
    let limits = axrelay_proto::Limits::default();
    let mut p = P::with_options(rxml::Options {
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
pub fn parse_only<P: rxml::Parse>(p: &mut P, input: &[u8]) -> usize {
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
        f.keep(true);
        f.feed(&batch);
        let out = String::from_utf8(f.take_output()).unwrap();
        f.keep(false);
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
