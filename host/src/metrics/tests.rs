use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use super::*;

/// The value of one series in `text`, by its name and labels as rendered.
pub(crate) fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

const FAMILIES: &[&str] = &[
    "axrelay_stanzas_received",
    "axrelay_relayed",
    "axrelay_bounced",
    "axrelay_dropped",
    "axrelay_rejected",
    "axrelay_oversized",
    "axrelay_rate_limited",
    "axrelay_banned",
    "axrelay_whoami",
    "axrelay_store_lookups",
    "axrelay_store_writes",
    "axrelay_cache_hits",
    "axrelay_store_errors",
    "axrelay_store_poisoned",
    "axrelay_sessions",
    "axrelay_reconnects",
    "axrelay_pending_stanzas",
    "axrelay_connection_state",
    "axrelay_store_operations",
    "axrelay_store_latency_seconds",
];

fn busy() -> Snapshot {
    let mut stats = Stats {
        stanzas_in: 10,
        relayed: 4,
        bounced: 1,
        whoami: 2,
        lookups: 3,
        ..Stats::default()
    };
    stats.dropped_by[DropReason::Headline as usize] = 2;
    stats.rejected_by[RejectReason::ItemNotFound as usize] = 1;
    Snapshot {
        stats,
        reconnects: 1,
        pending: 3,
        state: ConnState::Online,
    }
}

#[test]
fn every_family_is_rendered_with_fixed_labels_only() {
    let m = Metrics::new();
    let mut p = Publisher::new(m.clone(), std::time::Instant::now());
    p.tick(std::time::Instant::now(), busy);
    m.store_call(
        StoreCall::Get,
        Duration::from_millis(2),
        &[
            (OpId(1), StoreOutcome::Found(Some(b"v".to_vec()))),
            (OpId(2), StoreOutcome::Found(None)),
        ],
    );
    let text = m.render();
    for f in FAMILIES {
        assert!(
            text.contains(&format!("# TYPE {f} ")),
            "{f} missing from\n{text}"
        );
    }
    for r in DropReason::ALL {
        let series = format!("axrelay_dropped_total{{reason=\"{}\"}}", r.as_str());
        assert!(value(&text, &series).is_some(), "{series}");
    }
    for r in RejectReason::ALL {
        let series = format!("axrelay_rejected_total{{reason=\"{}\"}}", r.as_str());
        assert!(value(&text, &series).is_some(), "{series}");
    }
    assert_eq!(value(&text, "axrelay_relayed_total"), Some(4.0));
    assert_eq!(
        value(&text, "axrelay_dropped_total{reason=\"headline\"}"),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "axrelay_rejected_total{reason=\"item-not-found\"}"),
        Some(1.0)
    );
    assert_eq!(value(&text, "axrelay_pending_stanzas"), Some(3.0));
    assert_eq!(
        value(&text, "axrelay_connection_state{state=\"online\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "axrelay_connection_state{state=\"backoff\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "axrelay_store_operations_total{op=\"get\",result=\"hit\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "axrelay_store_latency_seconds_count{op=\"get\"}"),
        Some(1.0)
    );
    assert!(text.ends_with("# EOF\n"));
    // Labels come from fixed sets: no address of any kind.
    assert!(!text.contains('@'), "{text}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((_, labels)) = line.split_once('{') {
            for pair in labels.split('}').next().unwrap_or("").split(',') {
                let key = pair.split('=').next().unwrap_or("");
                assert!(
                    ["reason", "state", "op", "result", "le"].contains(&key),
                    "{line}"
                );
            }
        }
    }
}

#[test]
fn counters_follow_the_published_totals() {
    let m = Metrics::new();
    let t0 = std::time::Instant::now();
    let mut p = Publisher::new(m.clone(), t0);
    p.tick(t0, busy);
    // Not due yet: nothing read.
    p.tick(t0 + Duration::from_millis(500), || unreachable!());
    let mut later = busy();
    later.stats.relayed = 9;
    later.state = ConnState::Backoff;
    p.tick(t0 + PUBLISH_EVERY, || later);
    let text = m.render();
    assert_eq!(value(&text, "axrelay_relayed_total"), Some(9.0));
    assert_eq!(
        value(&text, "axrelay_connection_state{state=\"online\"}"),
        Some(0.0)
    );
    assert_eq!(p.deadline(), t0 + 2 * PUBLISH_EVERY);
}

fn request(addr: std::net::SocketAddr, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_endpoint_serves_get_metrics_only() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let m = Metrics::new();
    http::serve(listener, m.clone()).unwrap();
    let ok = request(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.contains("Connection: close\r\n"));
    assert!(ok.contains(CONTENT_TYPE));
    assert!(ok.contains("# TYPE axrelay_relayed counter"));
    let other = request(addr, "GET / HTTP/1.1\r\n\r\n");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let post = request(addr, "POST /metrics HTTP/1.1\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let huge = request(addr, &"A".repeat(5000));
    assert!(huge.starts_with("HTTP/1.1 400"), "{huge}");
    let body = http::scrape(addr, Duration::from_secs(2)).unwrap();
    assert!(body.ends_with("# EOF\n"));
}
