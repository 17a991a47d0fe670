//! Arbitrary bytes from the server, after a valid handshake.
//!
//! Input layout: `[n][n control bytes][stream bytes]`. The first control
//! byte picks the configuration (encryption, identity mode, small limits,
//! tiny caches, TTL) and whether this is a differential run; the rest pick,
//! per step, a chunk size and what happens to the store and the clock.
//! Once the control bytes run out, the rest of the stream goes in one piece
//! and the store answers at once.
//!
//! Differential runs feed the same bytes twice, once chunked and once whole,
//! with every store answer held to the end, and require identical output:
//! framing must not depend on how TCP cut the stream.
#![no_main]

use std::time::{Duration, Instant};

use axrelay_fuzz::{config, Answer, Ctl, Sim, StoreMode};
use libfuzzer_sys::fuzz_target;

/// Reconnects allowed per run (each costs a handshake).
const MAX_CONNECTS: usize = 8;

fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.split_first() {
        Some((&n, rest)) => rest.split_at(usize::from(n).min(rest.len())),
        None => (&[], &[]),
    }
}

fn chunk_len(b: u8, left: usize) -> usize {
    let n = match b {
        0 => left,
        1..=127 => usize::from(b & 15) + 1,
        128..=223 => usize::from(b - 127) * 37,
        _ => usize::from(b - 223) * 4099,
    };
    n.clamp(1, left.max(1))
}

fuzz_target!(|data: &[u8]| {
    let (ctl, stream) = split(data);
    let mut c = Ctl::new(ctl);
    let bits = c.next();
    let tune = c.next();
    let cfg = config(bits, tune);
    if bits & 0x80 != 0 {
        differential(cfg, &mut c, stream);
    } else {
        scheduled(cfg, &mut c, stream);
    }
});

/// Chunked vs whole, store answers held to the end: same bytes out.
fn differential(cfg: axrelay_proto::Config, c: &mut Ctl, stream: &[u8]) {
    // One origin: the two runs see the same virtual times.
    let origin = Instant::now();
    let mut chunked = Sim::online(cfg.clone(), origin);
    chunked.mode = StoreMode::Hold;
    let mut pos = 0;
    while pos < stream.len() && chunked.disconnects.is_empty() {
        let n = chunk_len(c.next(), stream.len() - pos);
        chunked.feed(&stream[pos..pos + n]);
        pos += n;
    }
    chunked.release_all();

    let mut whole = Sim::online(cfg, origin);
    whole.mode = StoreMode::Hold;
    whole.feed(stream);
    whole.release_all();

    if chunked.raw_out != whole.raw_out {
        panic!(
            "output depends on chunking\n--- chunked ---\n{}\n--- whole ---\n{}",
            String::from_utf8_lossy(&chunked.raw_out),
            String::from_utf8_lossy(&whole.raw_out)
        );
    }
    assert_eq!(chunked.disconnects, whole.disconnects, "disconnects differ");
    assert_eq!(chunked.relay.stats(), whole.relay.stats(), "stats differ");
}

/// Chunks, store answers and time driven by the control bytes.
fn scheduled(cfg: axrelay_proto::Config, c: &mut Ctl, stream: &[u8]) {
    let mut sim = Sim::online(cfg, Instant::now());
    let mut connects = 1;
    let mut pos = 0;
    while pos < stream.len() {
        if sim.relay.is_idle() {
            if connects >= MAX_CONNECTS {
                break;
            }
            connects += 1;
            sim.connect();
        }
        let step = c.next();
        let n = chunk_len(c.next(), stream.len() - pos);
        sim.feed(&stream[pos..pos + n]);
        pos += n;
        match step % 12 {
            0 => {}
            1 => sim.mode = StoreMode::Hold,
            2 => sim.mode = StoreMode::Auto,
            3 => {
                let i = usize::from(c.next());
                sim.answer(i, Answer::Right);
            }
            4 => {
                let i = usize::from(c.next());
                sim.answer(i, Answer::Fail);
            }
            5 => {
                // A value the relay never wrote: another identity's, or noise.
                let i = usize::from(c.next());
                let v = match c.next() % 3 {
                    0 => b"mallory@evil.example".to_vec(),
                    1 => sim.store.values().next().cloned().unwrap_or_default(),
                    _ => stream[..stream.len().min(64)].to_vec(),
                };
                sim.answer(i, Answer::Poison(v));
            }
            6 => sim.release_all(),
            7 => {
                let ms = u64::from(c.next()) * 250;
                sim.advance(Duration::from_millis(ms));
            }
            8 => {
                sim.run_to_deadline();
            }
            9 => {
                // The socket dropped; late store answers must be ignored.
                sim.relay.handle_closed(sim.now);
                sim.pump();
            }
            10 => {
                sim.relay.shutdown(sim.now);
                sim.pump();
            }
            _ => {
                // A duplicate or unknown answer.
                let op = axrelay_proto::OpId(u64::from(c.next()));
                sim.relay.handle_store(
                    op,
                    axrelay_proto::StoreOutcome::Found(Some(b"x@y".to_vec())),
                    sim.now,
                );
                sim.pump();
            }
        }
        if !c.more() {
            sim.mode = StoreMode::Auto;
            sim.release_all();
        }
    }
    // Settle: answer what is held, then let every timer fire.
    sim.release_all();
    for _ in 0..64 {
        if !sim.run_to_deadline() {
            break;
        }
        sim.release_all();
    }
    sim.relay.handle_closed(sim.now);
    sim.pump();
    assert!(sim.relay.is_idle());
    assert_eq!(sim.relay.poll_timeout(), None, "a deadline while idle");
}
