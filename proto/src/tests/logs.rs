//! What the log tells about the store and, with `-d`, about each decision:
//! records captured by a logger that keeps each test thread's own.

use std::cell::RefCell;
use std::sync::Once;
use std::time::Duration;

use super::harness::*;

const ALICE: &str = "alice@a.example/phone";
const BOB: &str = "bob@b.example/laptop";

thread_local! {
    static RECORDS: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = record.args().to_string();
        RECORDS.with(|r| r.borrow_mut().push((record.level(), line)));
    }
    fn flush(&self) {}
}

/// Start capturing this thread's records (the logger is installed once per
/// test binary; other threads' records stay apart).
pub(super) fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = log::set_logger(&Capture);
        log::set_max_level(log::LevelFilter::Trace);
    });
    RECORDS.with(|r| r.borrow_mut().clear());
}

/// Records at `level` mentioning `text`, taken out of the capture.
pub(super) fn taken(level: log::Level, text: &str) -> Vec<String> {
    RECORDS.with(|r| {
        r.borrow()
            .iter()
            .filter(|(l, m)| *l == level && m.contains(text))
            .map(|(_, m)| m.clone())
            .collect()
    })
}

fn all() -> Vec<String> {
    RECORDS.with(|r| r.borrow().iter().map(|(_, m)| m.clone()).collect())
}

#[test]
fn an_outage_is_one_warning_and_its_end_one_line() {
    let mut h = online(config());
    let a = h.whoami(ALICE);
    h.whoami(BOB);
    capture();
    // A fresh relay over the same store has to look Alice's pseudonym up.
    let store = std::mem::take(&mut h.store);
    let mut h = online(config());
    h.store = store;
    h.mode = StoreMode::Hold;
    h.feed(&format!(
        "<message from='{BOB}' to='{a}' id='1'><body>x</body></message>"
    ));
    h.fail_held();
    h.feed(&format!(
        "<message from='{BOB}' to='{a}' id='2'><body>x</body></message>"
    ));
    h.advance(Duration::from_secs(5));
    assert_eq!(h.take().len(), 2, "both refused");
    let down = taken(log::Level::Warn, "mapping store is unavailable");
    assert_eq!(down.len(), 1, "{:?}", all());
    assert!(down[0].contains("store unavailable"), "{}", down[0]);
    assert!(h.relay.health.is_down());
    assert!(taken(log::Level::Info, "answers again").is_empty());
    // Back: the next answer ends the outage, once.
    h.mode = StoreMode::Auto;
    h.advance(Duration::from_secs(2));
    h.feed(&format!(
        "<message from='{BOB}' to='{a}' id='3'><body>back</body></message>"
    ));
    assert_eq!(body(&h.one()), "back");
    let up = taken(log::Level::Info, "answers again");
    assert_eq!(
        up,
        ["the mapping store answers again after 7.0 s; 2 stanzas refused meanwhile"]
    );
    h.feed(&format!(
        "<message from='{BOB}' to='{a}' id='4'><body>more</body></message>"
    ));
    h.take();
    assert_eq!(taken(log::Level::Info, "answers again").len(), 1);
    assert_eq!(taken(log::Level::Warn, "unavailable").len(), 1);
}

#[test]
fn poisoned_entries_are_reported_at_most_once_a_minute() {
    let mut h = online(config());
    let mut victims = Vec::new();
    for i in 0..4 {
        let a = h.whoami(&format!("user{i}@a.example"));
        h.poison(&a);
        victims.push(a);
    }
    capture();
    let store = std::mem::take(&mut h.store);
    // No keepalive in the way: the harness reports every advance as a
    // timeout anyway.
    let mut c = config();
    c.keepalive = Duration::from_secs(1000);
    let mut h = online(c);
    h.store = store;
    let send = |h: &mut Harness, to: &str| {
        h.feed(&format!(
            "<message from='{BOB}' to='{to}'><body>x</body></message>"
        ));
        h.take();
    };
    send(&mut h, &victims[0]);
    send(&mut h, &victims[1]);
    send(&mut h, &victims[2]);
    let warned = taken(log::Level::Warn, "failed verification");
    assert_eq!(warned.len(), 1, "{:?}", all());
    assert!(warned[0].starts_with("1 stored mappings"), "{}", warned[0]);
    // The two seen within the minute are reported after it, on the next
    // timeout, even with nothing new.
    h.advance(Duration::from_secs(61));
    let warned = taken(log::Level::Warn, "failed verification");
    assert_eq!(warned.len(), 2, "{:?}", all());
    assert!(warned[1].starts_with("2 stored mappings"), "{}", warned[1]);
    // And one more a minute later still, alone.
    h.advance(Duration::from_secs(61));
    send(&mut h, &victims[3]);
    let warned = taken(log::Level::Warn, "failed verification");
    assert_eq!(warned.len(), 3, "{:?}", all());
    assert!(warned[2].starts_with("1 stored mappings"), "{}", warned[2]);
    assert_eq!(h.relay.stats().poisoned, 4);
}

#[test]
fn decisions_are_logged_with_pseudonyms_only() {
    for (decisions, sensitive) in [(false, false), (true, false), (true, true)] {
        let mut c = config();
        c.log_decisions = decisions;
        c.log_sensitive = sensitive;
        let mut h = online(c);
        let a = h.whoami(ALICE);
        let b = h.whoami(BOB);
        capture();
        h.feed(&format!(
            "<message from='{BOB}' to='{a}' type='chat'><body>hi</body></message>"
        ));
        h.feed(&format!(
            "<message from='{BOB}' to='{a}' type='headline'><body>hi</body></message>"
        ));
        h.feed(&format!(
            "<message from='{BOB}' to='nobody@{DOMAIN}'><body>hi</body></message>"
        ));
        h.take();
        let lines = taken(log::Level::Debug, "");
        if !decisions {
            assert!(lines.is_empty(), "{lines:?}");
            continue;
        }
        let (la, lb) = (local(&a), local(&b));
        assert!(
            lines.contains(&"dropped a stanza: headline".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"refused a message: item-not-found".to_owned()),
            "{lines:?}"
        );
        if sensitive {
            assert!(
                lines.iter().any(|l| l.contains("bob@b.example")),
                "{lines:?}"
            );
        } else {
            assert!(
                lines.contains(&format!("relayed {lb} -> {la}")),
                "{lines:?}"
            );
            for l in &lines {
                assert!(!l.contains("alice") && !l.contains("bob"), "{l}");
            }
        }
    }
}

fn local(bare: &str) -> &str {
    bare.split('@').next().unwrap_or(bare)
}
