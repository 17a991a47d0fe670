//! The same scripted XEP-0114 server conversations, run against both
//! runtimes: handshake, `/whoami`, relaying, reconnects, stream errors,
//! graceful stop, a slow store, and SOCKS5.

mod harness;
mod socks;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axrelay_host::socks5::Proxy;
use axrelay_host::Exit;
use axrelay_proto::{DisconnectReason, MemoryStore, Relay, Store};

use axrelay_test_support::server::{self, Conn, FakeServer, Got, Node};
use harness::{
    config, init_logging, options, pseudonym, relay, relay_with, Running, SlowStore, Start, DOMAIN,
    PASSWORD,
};

const ALICE: &str = "alice@example.org/phone";
const BOB: &str = "bob@example.net/laptop";
const CAROL: &str = "carol@example.com/desk";
const SHORT: Duration = Duration::from_secs(5);

/// A chat message as the server would route it to the component.
fn chat(from: &str, to: &str, id: &str, body: &str) -> String {
    format!("<message from='{from}' to='{to}' type='chat' id='{id}'><body>{body}</body></message>")
}

/// Ask for `who`'s pseudonym and check the answer.
fn whoami(conn: &mut Conn, who: &str, id: &str) -> String {
    conn.send(&chat(who, DOMAIN, id, "/whoami"));
    let reply = conn.expect(SHORT, "the /whoami reply", |n| {
        n.name == "message" && n.attr("to") == Some(who)
    });
    let expected = pseudonym(who.split('/').next().unwrap_or(who));
    let from = reply.attr("from").unwrap_or_default();
    assert!(
        from == DOMAIN || from.starts_with(&format!("{DOMAIN}/")),
        "reply from {from}"
    );
    let body = reply.body().unwrap_or_default();
    let line = body.lines().find(|l| l.trim() == expected);
    assert!(line.is_some(), "whoami body {body:?} lacks {expected}");
    let local = expected.split('@').next().unwrap_or_default();
    assert_eq!(local.len(), 45);
    expected
}

/// Expect `body` relayed to `to_bare` from `from_pseudonym`/resource, with
/// nothing of `sender` in it.
fn expect_relayed(
    conn: &mut Conn,
    to_bare: &str,
    from_pseudonym: &str,
    body: &str,
    sender: &str,
) -> Node {
    let msg = conn.expect(SHORT, "a relayed message", |n| {
        n.name == "message" && n.body() == Some(body)
    });
    assert_eq!(msg.attr("to"), Some(to_bare));
    let from = msg.attr("from").unwrap_or_default();
    assert!(
        from.starts_with(&format!("{from_pseudonym}/")),
        "relayed from {from}, want {from_pseudonym}/…"
    );
    assert_eq!(msg.attr("type"), Some("chat"));
    let local = sender.split('@').next().unwrap_or(sender);
    assert!(
        !msg.all_text().contains(local),
        "the relayed message leaks the sender: {msg:?}"
    );
    msg
}

/// `relay` started against a fresh fake server, not yet accepted.
fn started(start: Start, relay: Relay, store: Arc<dyn Store>) -> (FakeServer, Running) {
    init_logging();
    let server = FakeServer::start();
    let running = start(relay, options(server.port()), store);
    (server, running)
}

/// A relay connected to a fresh fake server, online.
fn online(start: Start, store: Arc<dyn Store>) -> (FakeServer, Running, Conn) {
    let (server, running) = started(start, relay(), store);
    let mut conn = server.accept(SHORT);
    conn.handshake(PASSWORD);
    (server, running, conn)
}

/// The graceful stop every case ends with.
fn stop(running: Running, mut conn: Conn) {
    running.stop();
    conn.expect_end(SHORT);
    conn.close();
    assert_eq!(running.wait(SHORT), Exit::Stopped);
}

pub fn handshake(start: Start) {
    let (_server, running, conn) = online(start, Arc::new(MemoryStore::default()));
    assert_eq!(conn.domain, DOMAIN);
    assert_eq!(
        conn.header_reads, 1,
        "the stream header must arrive in one write"
    );
    stop(running, conn);
}

pub fn whoami_is_answered(start: Start) {
    let (_server, running, mut conn) = online(start, Arc::new(MemoryStore::default()));
    whoami(&mut conn, ALICE, "1");
    stop(running, conn);
}

pub fn relays_both_ways(start: Start) {
    let store = Arc::new(MemoryStore::default());
    let (_server, running, mut conn) = online(start, store.clone());
    let a = whoami(&mut conn, ALICE, "1");
    let b = whoami(&mut conn, BOB, "2");
    assert_eq!(store.len(), 2, "both mappings are stored");
    conn.send(&chat(BOB, &a, "b1", "hi alice"));
    expect_relayed(&mut conn, "alice@example.org", &b, "hi alice", BOB);
    conn.send(&chat(ALICE, &format!("{b}/whatever"), "a1", "hi bob"));
    expect_relayed(&mut conn, "bob@example.net", &a, "hi bob", ALICE);
    stop(running, conn);
}

pub fn reconnects_after_a_drop(start: Start) {
    let (server, running, mut conn) = online(start, Arc::new(MemoryStore::default()));
    let a = whoami(&mut conn, ALICE, "1");
    conn.drop_connection();
    // First backoff is at most 1 s.
    let mut conn = server.accept(SHORT);
    conn.handshake(PASSWORD);
    assert_eq!(
        whoami(&mut conn, ALICE, "2"),
        a,
        "the pseudonym survives a reconnect"
    );
    let b = whoami(&mut conn, BOB, "3");
    conn.send(&chat(BOB, &a, "b1", "after the reconnect"));
    expect_relayed(
        &mut conn,
        "alice@example.org",
        &b,
        "after the reconnect",
        BOB,
    );
    stop(running, conn);
}

pub fn reconnects_when_pings_go_unanswered(start: Start) {
    let mut cfg = config();
    cfg.keepalive = Duration::from_millis(300);
    let (server, running) = started(start, relay_with(cfg), Arc::new(MemoryStore::default()));
    let mut conn = server.accept(SHORT);
    conn.handshake(PASSWORD);
    conn.answer_pings = false;
    let ping = conn.expect(SHORT, "a keepalive ping", |n| {
        n.name == "iq" && n.attr("type") == Some("get")
    });
    // The relay pings its own domain; the server routes it back.
    assert_eq!(ping.attr("to"), Some(DOMAIN));
    // No answer: after another interval the relay gives up on this
    // connection and dials again.
    let mut conn = server.accept(SHORT);
    conn.handshake(PASSWORD);
    whoami(&mut conn, ALICE, "1");
    stop(running, conn);
}

pub fn reconnects_after_bad_xml(start: Start) {
    let (server, running, mut conn) = online(start, Arc::new(MemoryStore::default()));
    // A processing instruction: rxml cannot carry on after it.
    conn.send("<?evil?>");
    let err = conn.expect(SHORT, "a stream error", |n| n.name == "error");
    assert_eq!(err.ns, server::STREAMS_NS);
    conn.expect_end(SHORT);
    let mut conn = server.accept(SHORT);
    conn.handshake(PASSWORD);
    whoami(&mut conn, ALICE, "1");
    stop(running, conn);
}

pub fn retries_on_conflict(start: Start) {
    let (server, running) = started(start, relay(), Arc::new(MemoryStore::default()));
    let mut first = server.accept(SHORT);
    first.open_stream("standby");
    first.stream_error("conflict");
    // A hot standby waits its turn: it must come back.
    let mut conn = server.accept(SHORT);
    conn.handshake(PASSWORD);
    whoami(&mut conn, ALICE, "1");
    stop(running, conn);
}

pub fn not_authorized_is_fatal(start: Start) {
    let (server, running) = started(start, relay(), Arc::new(MemoryStore::default()));
    let mut conn = server.accept(SHORT);
    conn.open_stream("refuse");
    conn.stream_error("not-authorized");
    assert_eq!(
        running.wait(SHORT),
        Exit::Refused(DisconnectReason::NotAuthorized)
    );
    assert!(
        server.try_accept(Duration::from_millis(200)).is_none(),
        "no retry after not-authorized"
    );
}

pub fn stop_closes_the_stream(start: Start) {
    let (_server, running, mut conn) = online(start, Arc::new(MemoryStore::default()));
    whoami(&mut conn, ALICE, "1");
    let asked = Instant::now();
    running.stop();
    conn.expect_end(SHORT);
    conn.close();
    assert_eq!(running.wait(SHORT), Exit::Stopped);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        asked.elapsed()
    );
}

pub fn stop_while_waiting_to_reconnect(start: Start) {
    init_logging();
    // A port with nothing listening: every attempt is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port());
    let port = port.unwrap_or(1);
    let running = start(relay(), options(port), Arc::new(MemoryStore::default()));
    assert!(
        running.still_running(Duration::from_millis(300)),
        "run must retry, not return"
    );
    let asked = Instant::now();
    running.stop();
    assert_eq!(running.wait(SHORT), Exit::Stopped);
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "stop took {:?}",
        asked.elapsed()
    );
}

pub fn slow_store_does_not_stall_others(start: Start) {
    let store = Arc::new(SlowStore {
        inner: MemoryStore::default(),
        delay: Duration::from_secs(2),
    });
    let (_server, running, mut conn) = online(start, store);
    // Carol writes to a pseudonym nobody has claimed: a store lookup that
    // takes 2 s.
    let ghost = pseudonym("ghost@example.org");
    let sent = Instant::now();
    conn.send(&chat(CAROL, &ghost, "c1", "anyone there?"));
    conn.send(&chat(ALICE, DOMAIN, "a1", "/whoami"));
    let mut answered_alice = None;
    let mut answered_carol = None;
    while answered_alice.is_none() || answered_carol.is_none() {
        match conn.next(Duration::from_secs(6).saturating_sub(sent.elapsed())) {
            Some(Got::Stanza(n)) if n.attr("to") == Some(ALICE) => {
                answered_alice = Some(sent.elapsed())
            }
            Some(Got::Stanza(n)) if n.attr("to") == Some(CAROL) => {
                assert_eq!(n.attr("type"), Some("error"));
                assert!(
                    n.child("error")
                        .and_then(|e| e.child("item-not-found"))
                        .is_some(),
                    "{n:?}"
                );
                answered_carol = Some(sent.elapsed());
            }
            Some(Got::Stanza(_)) => {}
            other => panic!("waiting for both answers, got {other:?}"),
        }
    }
    let (alice, carol) = (
        answered_alice.unwrap_or_default(),
        answered_carol.unwrap_or_default(),
    );
    assert!(
        alice < Duration::from_millis(1500),
        "alice waited {alice:?} behind a slow lookup"
    );
    assert!(
        carol >= Duration::from_millis(1900),
        "the lookup cannot be faster than the store: {carol:?}"
    );
    assert!(alice < carol);
    stop(running, conn);
}

pub fn socks5_tunnel(start: Start) {
    init_logging();
    let server = FakeServer::start();
    let proxy = socks::Proxy::start(server.port(), None, vec![socks::Answer::Forward]);
    let mut opts = options(server.port());
    // Resolvable only by the proxy: proves the name is passed unresolved.
    opts.server = "xmpp.component.test".into();
    opts.proxy = Some(Proxy::parse(&proxy.url(None)).expect("a valid proxy URL"));
    let running = start(relay(), opts, Arc::new(MemoryStore::default()));
    let req = proxy.next_request(SHORT);
    assert_eq!(req.atyp, 3, "domain-name address type");
    assert_eq!(
        (req.host.as_str(), req.port),
        ("xmpp.component.test", server.port())
    );
    assert!(req.methods.contains(&0));
    let mut conn = server.accept(SHORT);
    conn.handshake(PASSWORD);
    whoami(&mut conn, ALICE, "1");
    stop(running, conn);
}

pub fn socks5_refusal_then_password(start: Start) {
    init_logging();
    let server = FakeServer::start();
    let creds = Some(("relay", "proxy-pw"));
    let proxy = socks::Proxy::start(
        server.port(),
        creds,
        vec![socks::Answer::Refuse, socks::Answer::Forward],
    );
    let mut opts = options(server.port());
    opts.server = "xmpp.component.test".into();
    opts.proxy = Some(Proxy::parse(&proxy.url(creds)).expect("a valid proxy URL"));
    let running = start(relay(), opts, Arc::new(MemoryStore::default()));
    let first = proxy.next_request(SHORT);
    assert_eq!(first.credentials, Some(("relay".into(), "proxy-pw".into())));
    // The refusal is a network failure: back off and retry.
    let second = proxy.next_request(SHORT);
    assert_eq!(second.host, "xmpp.component.test");
    let mut conn = server.accept(SHORT);
    conn.handshake(PASSWORD);
    whoami(&mut conn, ALICE, "1");
    stop(running, conn);
}

pub fn socks5_proxy_dies_mid_stream(start: Start) {
    init_logging();
    let server = FakeServer::start();
    let proxy = socks::Proxy::start(
        server.port(),
        None,
        vec![
            socks::Answer::ForwardFor(Duration::from_millis(1500)),
            socks::Answer::Forward,
        ],
    );
    let mut opts = options(server.port());
    opts.server = "xmpp.component.test".into();
    opts.proxy = Some(Proxy::parse(&proxy.url(None)).expect("a valid proxy URL"));
    let running = start(relay(), opts, Arc::new(MemoryStore::default()));
    proxy.next_request(SHORT);
    let mut conn = server.accept(SHORT);
    conn.handshake(PASSWORD);
    let before = whoami(&mut conn, ALICE, "1");
    // The proxy cuts the tunnel (both sides): the relay sees the
    // connection end and comes back through the proxy by itself.
    let cut = Instant::now() + Duration::from_secs(5);
    loop {
        match conn.next(cut.saturating_duration_since(Instant::now())) {
            Some(Got::Eof) => break,
            Some(_) => {}
            None => panic!("the proxy did not cut the tunnel"),
        }
    }
    let again = proxy.next_request(Duration::from_secs(10));
    assert_eq!(again.host, "xmpp.component.test");
    let mut conn = server.accept(SHORT);
    conn.handshake(PASSWORD);
    assert_eq!(whoami(&mut conn, ALICE, "2"), before);
    stop(running, conn);
}

macro_rules! conformance {
    ($runtime:ident, $krate:ident, [$($case:ident),* $(,)?]) => {
        mod $runtime {
            use super::*;

            fn start(relay: axrelay_proto::Relay, opts: axrelay_host::Options, store: Arc<dyn Store>) -> Running {
                let (handle, stopper) = $krate::stop_handle();
                Running::spawn(Box::new(move || handle.stop()), move || $krate::run(relay, opts, store, stopper))
            }

            $(
                #[test]
                fn $case() {
                    super::$case(start);
                }
            )*
        }
    };
}

macro_rules! both_runtimes {
    ($($case:ident),* $(,)?) => {
        conformance!(smol, axrelay_runtime_smol, [$($case),*]);
        conformance!(blocking, axrelay_runtime_blocking, [$($case),*]);
    };
}

both_runtimes!(
    handshake,
    whoami_is_answered,
    relays_both_ways,
    reconnects_after_a_drop,
    reconnects_when_pings_go_unanswered,
    reconnects_after_bad_xml,
    retries_on_conflict,
    not_authorized_is_fatal,
    stop_closes_the_stream,
    stop_while_waiting_to_reconnect,
    slow_store_does_not_stall_others,
    socks5_tunnel,
    socks5_refusal_then_password,
    socks5_proxy_dies_mid_stream,
);
