//! A small driver of the hot path for profilers (`valgrind --tool=callgrind`,
//! `perf record`): the same fixture and stanzas as the criterion benches,
//! without criterion's statistics around them.
//!
//! Usage: `axrelay-hotpath CASE [BATCHES]`, CASE one of `relay-100`,
//! `relay-1k`, `relay-10k`, `typing`, `whoami`, `cold`, `parse-100`,
//! `parse-1k`, `parse-10k` (rxml's `Parser`, the relay's), `raw-100`,
//! `raw-1k`, `raw-10k` (the `RawParser` under it, without namespace
//! resolution). Each batch is 1000 stanzas. `stalls` feeds
//! 100-byte messages one by one and prints the distribution of the time
//! each one takes, to show pauses (cache rotations) that averages hide.

use std::process::ExitCode;
use std::time::Instant;

use axrelay_benches::fixture::{self, Fixture};
use axrelay_benches::wire;

const BATCH: usize = 1000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(case) = args.first() else {
        eprintln!("usage: axrelay-hotpath CASE [BATCHES]");
        return ExitCode::from(2);
    };
    let batches: usize = match args.get(1).map(|s| s.parse()) {
        None => 20,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("BATCHES must be a number");
            return ExitCode::from(2);
        }
    };
    let mut f = Fixture::online(fixture::config());
    let locals = f.learn(100);
    let body = |n| fixture::message_batch(BATCH, n, 100, &locals, 1);
    let input = match case.as_str() {
        "relay-100" | "parse-100" | "raw-100" => body(100),
        "relay-1k" | "parse-1k" | "raw-1k" => body(1000),
        "relay-10k" | "parse-10k" | "raw-10k" => body(10_000),
        "typing" => {
            let mut v = Vec::new();
            for k in 0..BATCH {
                wire::push_typing(&mut v, k % 100, &locals[(k + 1) % 100], k as u64);
            }
            v
        }
        "whoami" => {
            let mut v = Vec::new();
            for k in 0..BATCH {
                wire::push_whoami(&mut v, k % 100, k as u64);
            }
            v
        }
        "cold" | "stalls" => Vec::new(),
        other => {
            eprintln!("unknown case {other}");
            return ExitCode::from(2);
        }
    };
    let mut start = (Instant::now(), schedstat());
    let mut bytes = 0usize;
    if case == "stalls" {
        let one: Vec<Vec<u8>> = (0..BATCH)
            .map(|k| fixture::message_batch(1, 100, 100, &locals, k))
            .collect();
        let mut h = axrelay_benches::hist::Histogram::default();
        let mut slow = Vec::new();
        for n in 0..batches * BATCH {
            let t = Instant::now();
            f.feed(&one[n % BATCH]);
            let ns = t.elapsed().as_nanos() as u64;
            h.record(ns);
            if ns > 1_000_000 {
                slow.push((n, ns / 1000));
            }
        }
        println!(
            "stalls: {} messages one by one: p50 {} ns, p99 {} ns, p99.99 {} ns, max {} us; over 1 ms: {:?}",
            h.count(),
            h.quantile(0.5),
            h.quantile(0.99),
            h.quantile(0.9999),
            h.max() / 1000,
            slow
        );
        std::process::exit(0);
    }
    if case == "cold" {
        let pool: Vec<String> = (1000..1000 + BATCH * batches)
            .map(|i| f.prestore(i))
            .collect();
        let inputs: Vec<Vec<u8>> = (0..batches)
            .map(|b| fixture::message_batch(BATCH, 100, 100, &pool, b * BATCH))
            .collect();
        let start = (Instant::now(), schedstat());
        for i in &inputs {
            bytes += i.len();
            f.feed(i);
        }
        report(case, batches, bytes, start);
        // Skip tearing the caches down: profiles show the hot path only.
        std::process::exit(0);
    }
    // Two cache rotations (the id map holds 100 000) before measuring, so
    // the figure is the steady state.
    let parse_only = case.starts_with("parse") || case.starts_with("raw");
    if !parse_only {
        for _ in 0..200 {
            f.feed(&input);
        }
        start = (Instant::now(), schedstat());
    }
    if case.starts_with("parse") {
        let mut p = fixture::primed_parser();
        for _ in 0..batches {
            bytes += input.len();
            fixture::parse_only(&mut p, &input);
        }
    } else if case.starts_with("raw") {
        let mut p: rxml::RawParser = fixture::primed();
        for _ in 0..batches {
            bytes += input.len();
            fixture::parse_only(&mut p, &input);
        }
    } else {
        for _ in 0..batches {
            bytes += input.len();
            f.feed(&input);
        }
    }
    report(case, batches, bytes, start);
    std::process::exit(0);
}

/// Nanoseconds this process has run on a CPU, and waited for one
/// (`/proc/self/schedstat`): CPU time is not inflated by other processes
/// taking turns on a busy machine, wall time is.
fn schedstat() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/schedstat").unwrap_or_default();
    let mut f = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
    (f.next().unwrap_or(0), f.next().unwrap_or(0))
}

fn report(case: &str, batches: usize, bytes: usize, start: (Instant, (u64, u64))) {
    let secs = start.0.elapsed().as_secs_f64();
    let (cpu, wait) = schedstat();
    let (cpu, wait) = (cpu - (start.1).0, wait - (start.1).1);
    let n = (batches * BATCH) as f64;
    println!(
        "{case}: {n} stanzas, wall {:.0} ns/stanza ({:.1} MB/s), CPU {:.0} ns/stanza ({:.1} MB/s), waited for a CPU {:.0}% of the time",
        secs * 1e9 / n,
        bytes as f64 / secs / 1e6,
        cpu as f64 / n,
        bytes as f64 / (cpu as f64 / 1e9) / 1e6,
        100.0 * wait as f64 / (secs * 1e9),
    );
}
