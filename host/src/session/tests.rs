//! The session in virtual time: every instant is made up, nothing touches a
//! socket, a thread or the clock.

use std::time::Duration;

use axrelay_proto::{Config, OpId, Pseudonymizer, StoreOutcome};

use super::*;
use crate::options::WRITE_TIMEOUT;
use crate::store_jobs::MAX_IN_FLIGHT;

const DOMAIN: &str = "axr.example";
const SECRET: &[u8] = b"session test pseudonym secret";
const SERVER_HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream \
    xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' \
    from='axr.example' id='s1'>";
const KEEPALIVE: Duration = Duration::from_secs(60);
const CLOSE: Duration = Duration::from_secs(2);

fn session(stats_interval: Duration) -> (Session, Instant) {
    let mut cfg = Config::new(DOMAIN, "pw", SECRET);
    cfg.wall_clock = Some(crate::wall_clock());
    cfg.keepalive = KEEPALIVE;
    cfg.close_timeout = CLOSE;
    let relay = Relay::new(cfg).expect("a valid configuration");
    let mut opts = Options::new("127.0.0.1", 5347);
    opts.stats_interval = stats_interval;
    let t0 = Instant::now();
    (Session::new(relay, &opts, 7, t0), t0)
}

/// Poll until the session waits; everything it asked for before, in order.
fn outputs(s: &mut Session, now: Instant) -> (Vec<Output>, Instant) {
    let mut out = Vec::new();
    for _ in 0..100 {
        match s.poll(now) {
            Output::Wait(t) => return (out, t),
            o @ (Output::Exit(_) | Output::Connect) => {
                out.push(o);
                return (out, now);
            }
            o => out.push(o),
        }
    }
    panic!("the session never waits: {out:?}");
}

fn written(out: &[Output]) -> String {
    out.iter()
        .filter_map(|o| match o {
            Output::Transmit(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect()
}

/// Connected and through the handshake at `t`.
fn online(s: &mut Session, t: Instant) {
    assert_eq!(s.poll(t), Output::Connect);
    assert!(s.handle_connected(t));
    let (out, _) = outputs(s, t);
    assert!(written(&out).contains("<stream:stream"), "{out:?}");
    s.handle_input(SERVER_HEADER, t);
    let (out, _) = outputs(s, t);
    assert!(written(&out).contains("<handshake>"), "{out:?}");
    s.handle_input(b"<handshake/>", t);
    let (out, _) = outputs(s, t);
    let out = answer_ban_reads(s, out, t);
    assert!(out.is_empty(), "{out:?}");
    assert!(s.relay().is_online());
}

/// Answer the ban list's reads among `out` (no list stored, then what
/// that leads to); the other outputs.
fn answer_ban_reads(s: &mut Session, out: Vec<Output>, t: Instant) -> Vec<Output> {
    let mut rest = Vec::new();
    for o in out {
        match o {
            Output::Store(Job::Get(batch)) if batch.iter().all(|(_, k)| k == "axr:bans") => {
                let found = batch
                    .into_iter()
                    .map(|(op, _)| (op, StoreOutcome::Found(None)))
                    .collect();
                s.handle_store(found, t);
                let more = outputs(s, t).0;
                rest.extend(answer_ban_reads(s, more, t));
            }
            o => rest.push(o),
        }
    }
    rest
}

/// Wake at every deadline up to `until`, answering the ban list's reads;
/// what else was asked for, and when the session first did more than read
/// the ban list.
fn run_until(s: &mut Session, mut now: Instant, until: Instant) -> (Vec<Output>, Instant) {
    loop {
        let (out, wake) = outputs(s, now);
        let out = answer_ban_reads(s, out, now);
        if !out.is_empty() || wake > until {
            return (out, now);
        }
        now = wake;
    }
}

fn message(from: &str, to: &str, body: &str) -> Vec<u8> {
    format!("<message from='{from}' to='{to}' type='chat' id='m1'><body>{body}</body></message>")
        .into_bytes()
}

/// Online, with a message from a new sender to a pseudonym not in the
/// cache: it waits for a lookup and a write. Returns what was asked for.
fn waiting_on_the_store() -> (Session, Instant, Vec<Output>) {
    let (mut s, t0) = session(Duration::from_secs(300));
    online(&mut s, t0);
    s.handle_input(
        &message("bob@b.example/r", &pseudonym("alice@a.example"), "hi"),
        t0,
    );
    let (out, _) = outputs(&mut s, t0);
    (s, t0, out)
}

fn pseudonym(identity: &str) -> String {
    format!(
        "{}@{DOMAIN}",
        Pseudonymizer::new(SECRET).localpart(identity)
    )
}

#[test]
fn a_failed_connect_backs_off_then_connects_again() {
    let (mut s, t0) = session(Duration::from_secs(300));
    assert_eq!(s.poll(t0), Output::Connect);
    let (out, wake) = outputs(&mut s, t0);
    assert!(out.is_empty());
    assert_eq!(wake, t0 + Duration::from_secs(300), "only the stats line");
    s.handle_connect_failed(&ConnectError::TimedOut("test".into()), t0);
    let (out, retry) = outputs(&mut s, t0);
    assert!(out.is_empty());
    assert!(retry <= t0 + backoff_first(), "first delay at most 1 s");
    assert_eq!(s.poll(retry), Output::Connect);
}

fn backoff_first() -> Duration {
    crate::backoff::BASE
}

#[test]
fn online_it_wakes_for_the_keepalive_or_the_stats_line() {
    let (mut s, t0) = session(Duration::from_secs(300));
    online(&mut s, t0);
    // The ban list is read every second meanwhile.
    let (_, wake) = outputs(&mut s, t0);
    assert_eq!(wake, t0 + axrelay_proto::bans::REFRESH_EVERY);
    let (out, at) = run_until(&mut s, t0, t0 + KEEPALIVE);
    assert_eq!(at, t0 + KEEPALIVE);
    assert!(written(&out).contains("urn:xmpp:ping"), "{out:?}");

    let (mut s, t0) = session(Duration::from_secs(10));
    online(&mut s, t0);
    let stats_due = t0 + Duration::from_secs(10);
    run_until(&mut s, t0, stats_due - Duration::from_millis(1));
    assert!(s.ticker.deadline() == stats_due);
}

#[test]
fn eof_ends_the_connection_and_a_reconnect_follows() {
    let (mut s, t0) = session(Duration::from_secs(300));
    online(&mut s, t0);
    s.handle_closed(None, t0);
    let (out, retry) = outputs(&mut s, t0);
    assert_eq!(out, vec![Output::Close]);
    assert!(retry <= t0 + backoff_first());
    s.handle_input(b"<late/>", t0);
    assert_eq!(s.poll(retry), Output::Connect);
    assert!(s.handle_connected(retry));
    let (out, _) = outputs(&mut s, retry);
    assert!(written(&out).contains("<stream:stream"), "a fresh stream");
}

#[test]
fn a_write_failure_ends_the_connection_without_writing_more() {
    let (mut s, t0) = session(Duration::from_secs(300));
    online(&mut s, t0);
    s.handle_input(
        b"<iq from='a@b.example/r' to='axr.example' type='get' id='q'>\
          <query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        t0,
    );
    let Output::Transmit(answer) = s.poll(t0) else {
        panic!("the disco answer is written first");
    };
    assert!(String::from_utf8_lossy(&answer).contains("disco#info"));
    s.handle_write_error(&io::Error::from(io::ErrorKind::BrokenPipe), t0);
    // Input that raced with the failure is answered into the void, not
    // written.
    s.handle_input(
        b"<iq from='a@b.example/r' to='axr.example' type='get' id='q2'>\
          <ping xmlns='urn:xmpp:ping'/></iq>",
        t0,
    );
    let (out, _) = outputs(&mut s, t0);
    assert_eq!(out, vec![Output::Close]);
}

#[test]
fn a_stop_closes_the_stream_and_exits_when_the_server_closes() {
    let (mut s, t0) = session(Duration::from_secs(300));
    online(&mut s, t0);
    s.handle_stop(t0);
    assert!(s.is_stopping());
    let (out, wake) = outputs(&mut s, t0);
    assert_eq!(written(&out), "</stream:stream>");
    assert_eq!(wake, t0 + CLOSE, "the core's wait for the server's close");
    s.handle_stop(t0);
    assert_eq!(outputs(&mut s, t0).0, vec![], "a second stop adds nothing");
    s.handle_input(b"</stream:stream>", t0);
    let (out, _) = outputs(&mut s, t0);
    assert_eq!(out, vec![Output::Close, Output::Exit(Exit::Stopped)]);
}

#[test]
fn during_a_stop_a_write_may_block_only_for_what_is_left_of_the_grace() {
    let (mut s, t0) = session(Duration::from_secs(300));
    assert_eq!(s.write_timeout(t0), WRITE_TIMEOUT);
    online(&mut s, t0);
    assert_eq!(s.write_timeout(t0), WRITE_TIMEOUT);
    s.handle_stop(t0);
    let grace = Lifecycle::stop_grace(CLOSE);
    assert_eq!(s.write_timeout(t0), grace);
    let later = t0 + grace - Duration::from_secs(1);
    assert_eq!(s.write_timeout(later), Duration::from_secs(1));
    assert_eq!(s.write_timeout(t0 + grace * 2), Duration::from_millis(1));
}

#[test]
fn a_stop_is_over_within_its_grace_when_the_server_never_answers() {
    // A stanza that waits for the store keeps the core draining.
    let (mut s, t0, out) = waiting_on_the_store();
    assert!(out.iter().all(|o| matches!(o, Output::Store(_))), "{out:?}");
    s.handle_stop(t0);
    let grace = t0 + Lifecycle::stop_grace(CLOSE);
    let mut now = t0;
    let mut all = Vec::new();
    while !matches!(all.last(), Some(Output::Exit(_))) {
        let (out, wake) = outputs(&mut s, now);
        all.extend(out);
        assert!(wake <= grace, "woken at {:?}", wake - t0);
        assert!(now <= grace, "still going after the grace period");
        now = wake.max(now);
        if !matches!(all.last(), Some(Output::Exit(_))) && wake == now {
            now += Duration::from_millis(1);
        }
    }
    let text = written(&all);
    assert!(text.contains("remote-server-timeout"), "{text}");
    assert!(text.ends_with("</stream:stream>"), "{text}");
    assert_eq!(
        all[all.len() - 2..],
        [Output::Close, Output::Exit(Exit::Stopped)]
    );
}

#[test]
fn a_stop_without_a_connection_exits_at_once() {
    let (mut s, t0) = session(Duration::from_secs(300));
    assert_eq!(s.poll(t0), Output::Connect);
    s.handle_stop(t0);
    assert_eq!(s.poll(t0), Output::Exit(Exit::Stopped));
    assert!(!s.handle_connected(t0), "a late connection is dropped");
    assert_eq!(s.poll(t0), Output::Exit(Exit::Stopped));

    let (mut s, t0) = session(Duration::from_secs(300));
    s.poll(t0);
    s.handle_connect_failed(&ConnectError::TimedOut("test".into()), t0);
    s.handle_stop(t0);
    assert_eq!(s.poll(t0), Output::Exit(Exit::Stopped));
}

#[test]
fn a_refused_secret_is_an_exit_not_a_retry() {
    let (mut s, t0) = session(Duration::from_secs(300));
    s.poll(t0);
    s.handle_connected(t0);
    s.handle_input(SERVER_HEADER, t0);
    s.handle_input(
        b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
          </stream:error>",
        t0,
    );
    let (out, _) = outputs(&mut s, t0);
    assert_eq!(
        out[out.len() - 2..],
        [
            Output::Close,
            Output::Exit(Exit::Refused(DisconnectReason::NotAuthorized))
        ]
    );
}

#[test]
fn store_results_after_a_disconnect_are_taken_and_nothing_is_written() {
    let (mut s, t0, out) = waiting_on_the_store();
    let ops: Vec<OpId> = out
        .iter()
        .flat_map(|o| match o {
            Output::Store(Job::Get(batch)) => batch.iter().map(|(op, _)| *op).collect(),
            Output::Store(Job::Put { op, .. }) => vec![*op],
            _ => vec![],
        })
        .collect();
    assert_eq!(ops.len(), 2, "a lookup and a write: {out:?}");
    assert!(s.store_busy());
    s.handle_closed(Some(&io::Error::from(io::ErrorKind::ConnectionReset)), t0);
    assert_eq!(outputs(&mut s, t0).0, vec![Output::Close]);
    for op in ops {
        s.handle_store(vec![(op, StoreOutcome::Found(None))], t0);
    }
    let (out, _) = outputs(&mut s, t0);
    assert!(out.is_empty(), "{out:?}");
    assert!(!s.store_busy());
}

#[test]
fn store_jobs_beyond_the_in_flight_cap_wait_for_a_free_slot() {
    let (mut s, t0) = session(Duration::from_secs(300));
    online(&mut s, t0);
    let senders = MAX_IN_FLIGHT + 1;
    for i in 0..senders {
        // Each /whoami of a new sender writes its mapping first: one job each.
        s.handle_input(
            &message(&format!("u{i}@b.example/r"), DOMAIN, "/whoami"),
            t0,
        );
    }
    let (out, _) = outputs(&mut s, t0);
    let started: Vec<OpId> = out
        .iter()
        .filter_map(|o| match o {
            Output::Store(Job::Put { op, .. }) => Some(*op),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), MAX_IN_FLIGHT, "{out:?}");
    s.handle_store(vec![(started[0], StoreOutcome::Stored)], t0);
    let (out, _) = outputs(&mut s, t0);
    assert!(written(&out).contains(DOMAIN), "the first answer: {out:?}");
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Output::Store(Job::Put { .. })))
            .count(),
        1,
        "the waiting job starts: {out:?}"
    );
}

#[test]
fn figures_are_published_once_a_second_not_per_message() {
    let metrics = crate::metrics::Metrics::new();
    let mut cfg = Config::new(DOMAIN, "pw", SECRET);
    cfg.wall_clock = Some(crate::wall_clock());
    cfg.keepalive = KEEPALIVE;
    let relay = Relay::new(cfg).expect("a valid configuration");
    let mut opts = Options::new("127.0.0.1", 5347);
    opts.metrics = Some(metrics.clone());
    let t0 = Instant::now();
    let mut s = Session::new(relay, &opts, 7, t0);
    let series = |name: &str| crate::metrics::tests::value(&metrics.render(), name);
    online(&mut s, t0);
    // Published at the first poll, while connecting.
    assert_eq!(
        series("axrelay_connection_state{state=\"connecting\"}"),
        Some(1.0)
    );
    let (_, wake) = outputs(&mut s, t0);
    assert_eq!(wake, t0 + Duration::from_secs(1), "the publication is due");
    let headline = format!(
        "<message from='bob@b.example/r' to='{}' type='headline'><body>x</body></message>",
        pseudonym("alice@a.example")
    );
    s.handle_input(headline.as_bytes(), t0);
    s.handle_input(
        format!("<iq from='bob@b.example/r' to='{DOMAIN}' type='get' id='q'/>").as_bytes(),
        t0,
    );
    let (out, _) = outputs(&mut s, t0);
    assert!(written(&out).contains("bad-request"), "{out:?}");
    // Counted in the core, not yet published.
    assert_eq!(s.relay().stats().stanzas_in, 2);
    assert_eq!(series("axrelay_stanzas_received_total"), Some(0.0));
    let t1 = t0 + Duration::from_secs(1);
    let (_, wake) = outputs(&mut s, t1);
    assert_eq!(wake, t1 + Duration::from_secs(1));
    assert_eq!(series("axrelay_stanzas_received_total"), Some(2.0));
    assert_eq!(
        series("axrelay_dropped_total{reason=\"headline\"}"),
        Some(1.0)
    );
    assert_eq!(
        series("axrelay_rejected_total{reason=\"bad-request\"}"),
        Some(1.0)
    );
    assert_eq!(
        series("axrelay_connection_state{state=\"online\"}"),
        Some(1.0)
    );
    assert_eq!(series("axrelay_sessions_total"), Some(1.0));
    // The server goes away: a reconnect and the back-off are published.
    s.handle_closed(None, t1);
    let (out, _) = outputs(&mut s, t1);
    assert!(out.contains(&Output::Close), "{out:?}");
    // The back-off (at most 1 s) is over by the next publication: the
    // session connects again, and the poll after says so.
    let t2 = t1 + Duration::from_secs(1);
    assert_eq!(s.poll(t2), Output::Connect);
    let _ = s.poll(t2);
    assert!(
        series("axrelay_connection_state{state=\"backoff\"}") == Some(1.0)
            || series("axrelay_connection_state{state=\"connecting\"}") == Some(1.0)
    );
    assert_eq!(
        series("axrelay_connection_state{state=\"online\"}"),
        Some(0.0)
    );
}

#[test]
fn every_connect_reads_the_wall_clock_again() {
    fn late() -> WallClock {
        WallClock {
            at: Instant::now(),
            unix_secs: 2_000_000_000,
        }
    }
    let mut cfg = Config::new(DOMAIN, "pw", SECRET);
    cfg.wall_clock = Some(crate::wall_clock());
    let relay = Relay::new(cfg).expect("a valid configuration");
    let mut opts = Options::new("127.0.0.1", 5347);
    opts.wall_clock = late;
    let t0 = Instant::now();
    let mut s = Session::new(relay, &opts, 7, t0);
    assert_ne!(
        s.relay().config().wall_clock.map(|w| w.unix_secs),
        Some(2_000_000_000)
    );
    online(&mut s, t0);
    assert_eq!(
        s.relay().config().wall_clock.map(|w| w.unix_secs),
        Some(2_000_000_000)
    );
}
