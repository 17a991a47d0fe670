//! The parse-rewrite hot path of the core, bytes in to bytes out, through
//! the public `Relay` API with a synchronous in-bench store; beside each
//! case, the floor: rxml parsing the identical bytes and doing nothing else.
//!
//! Every iteration feeds a batch of [`BATCH`] stanzas (in 16 KiB chunks, as
//! the runtimes read them), so criterion's time divided by `BATCH` is the
//! cost of one stanza; throughput is reported per stanza and in MB/s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use axrelay_benches::fixture::{self, Fixture};
use axrelay_benches::wire;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const BATCH: usize = 1000;
/// Mappings the relay caches by default is 100 000; a recipient pool twice
/// that size, visited in order, makes every lookup a cache miss.
const COLD_POOL: usize = 1 << 18;

fn throughput(input: &[u8]) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: BATCH as u64,
        bytes: input.len() as u64,
    }
}

fn hot_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_path");
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));

    let mut f = Fixture::online(fixture::config());
    let locals = f.learn(100);

    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, len) in [("msg_100B", 100), ("msg_1KB", 1000), ("msg_10KB", 10_000)] {
        cases.push((
            name.into(),
            fixture::message_batch(BATCH, len, 100, &locals, 1),
        ));
    }
    let mut typing = Vec::new();
    for k in 0..BATCH {
        wire::push_typing(&mut typing, k % 100, &locals[(k + 1) % 100], k as u64);
    }
    cases.push(("typing".into(), typing));
    let mut whoami = Vec::new();
    for k in 0..BATCH {
        wire::push_whoami(&mut whoami, k % 100, k as u64);
    }
    cases.push(("whoami".into(), whoami));

    for (name, input) in &cases {
        g.throughput(throughput(input));
        g.bench_with_input(BenchmarkId::new("relay", name), input, |b, input| {
            b.iter(|| f.feed(black_box(input)))
        });
        let mut parser = fixture::primed_parser();
        g.bench_with_input(BenchmarkId::new("rxml_parse", name), input, |b, input| {
            b.iter(|| fixture::parse_only(&mut parser, black_box(input)))
        });
    }

    // Cache cold: every message names a recipient the relay has not seen
    // for more than its cache holds; the lookup goes out as Action::Get and
    // is answered from the map, then the output is drained.
    let pool: Vec<String> = (1000..1000 + COLD_POOL).map(|i| f.prestore(i)).collect();
    let sample = fixture::message_batch(BATCH, 100, 100, &pool, 0);
    g.throughput(throughput(&sample));
    let mut next = 0usize;
    g.bench_function(BenchmarkId::new("relay", "msg_100B_cold"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch = fixture::message_batch(BATCH, 100, 100, &pool, next);
                next = (next + BATCH) % COLD_POOL;
                f.take_counts();
                let t = Instant::now();
                f.feed(black_box(&batch));
                total += t.elapsed();
                let (_, gets) = f.take_counts();
                assert_eq!(gets, BATCH, "every lookup must miss the cache");
            }
            total
        })
    });
    let mut parser = fixture::primed_parser();
    g.bench_with_input(
        BenchmarkId::new("rxml_parse", "msg_100B_cold"),
        &sample,
        |b, input| b.iter(|| fixture::parse_only(&mut parser, black_box(input))),
    );
    g.finish();

    f.assert_connected();
    let s = f.relay().stats();
    assert_eq!(s.rejected, 0, "the relay answered with errors: {s:?}");
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
