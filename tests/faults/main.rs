//! Fault recovery of the real `axrelay` binary, for both runtimes: the
//! server drops the connection mid-stanza, the server restarts, memcached
//! crashes and comes back or hangs, a second instance meets `conflict`
//! (SPEC §2, §4, §6, §8). While it waits for something that is down the relay must
//! sleep, not spin: its CPU time is read from /proc. Every message these
//! tests hand to the relay must be relayed or answered with an error.

mod relay;

use std::os::unix::net::UnixDatagram;
use std::thread;
use std::time::{Duration, Instant};

use axrelay_proto::Pseudonymizer;

use axrelay_test_support::e2e::{random_secret, Memcached};
use axrelay_test_support::server::{Conn, FakeServer, Got, Node};
use relay::{CpuWatch, RelayProcess, DOMAIN, PASSWORD, RESOURCE, SECRET};

const ALICE: &str = "alice@example.org/phone";
const BOB: &str = "bob@example.net/laptop";
const CAROL: &str = "carol@example.com/desk";
/// How long an answer to one stanza may take.
const SHORT: Duration = Duration::from_secs(5);
/// How long a (re)connection may take: the binary starts, or a backoff
/// delay with full jitter runs out.
const RECONNECT: Duration = Duration::from_secs(30);

fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// `jid`'s pseudonym (bare JID identity, the default).
fn pseudonym(jid: &str) -> String {
    format!(
        "{}@{DOMAIN}",
        Pseudonymizer::new(SECRET.as_bytes()).localpart(bare(jid))
    )
}

fn chat(from: &str, to: &str, id: &str, body: &str) -> String {
    format!("<message from='{from}' to='{to}' type='chat' id='{id}'><body>{body}</body></message>")
}

/// The next stanza, which `want` must accept: the tests wait for each
/// answer before sending more, so anything else (a stray stanza, the
/// stream or the connection ending) is a failure.
fn expect(conn: &mut Conn, what: &str, want: impl Fn(&Node) -> bool) -> Node {
    match conn.next(SHORT) {
        Some(Got::Stanza(n)) if want(&n) => n,
        other => panic!("expected {what} within {SHORT:?}, got {other:?}"),
    }
}

/// `/whoami` from `who`: the answer must be its pseudonym.
fn whoami(conn: &mut Conn, who: &str, id: &str) -> String {
    conn.send(&chat(who, DOMAIN, id, "/whoami"));
    let reply = expect(conn, "the /whoami reply", |n| {
        n.name == "message" && n.attr("to") == Some(who)
    });
    let want = pseudonym(who);
    assert_ne!(
        reply.attr("type"),
        Some("error"),
        "whoami failed: {reply:?}"
    );
    assert_eq!(reply.body().map(str::trim), Some(want.as_str()));
    want
}

/// Send `from`'s message `id` with `body` (unique in the test) to `to` and
/// wait for what became of it: relayed (`Ok`) or answered with an error
/// (`Err`). Nothing else may happen to an accepted message.
fn outcome(conn: &mut Conn, from: &str, to: &str, id: &str, body: &str) -> Result<Node, Node> {
    conn.send(&chat(from, to, id, body));
    let got = expect(conn, &format!("message {id} relayed or refused"), |n| {
        n.name == "message"
            && (n.body() == Some(body)
                || (n.attr("id") == Some(id) && n.attr("type") == Some("error")))
    });
    if got.attr("type") == Some("error") {
        assert_eq!(got.attr("to"), Some(from), "{got:?}");
        Err(got)
    } else {
        Ok(got)
    }
}

/// `from` writes `body` to `to`: it must reach the owner of `to`
/// (`to_bare`) from `from`'s pseudonym.
fn relayed(conn: &mut Conn, from: &str, to: &str, to_bare: &str, id: &str, body: &str) {
    let msg = outcome(conn, from, to, id, body)
        .unwrap_or_else(|e| panic!("message {id} was refused: {e:?}"));
    assert_eq!(msg.attr("to"), Some(to_bare));
    assert_eq!(
        msg.attr("from"),
        Some(format!("{}/{RESOURCE}", pseudonym(from)).as_str())
    );
}

/// The defined condition of an error stanza.
fn condition(err: &Node) -> Option<&str> {
    err.child("error")
        .and_then(|e| e.children.iter().find(|c| c.name != "text"))
        .map(|c| c.name.as_str())
}

/// `from` writes to `to`: the relay must answer that very message (its
/// id) with an error stanza carrying `want`.
fn refused(conn: &mut Conn, from: &str, to: &str, id: &str, want: &str) {
    let body = format!("message {id}");
    match outcome(conn, from, to, id, &body) {
        Ok(msg) => panic!("message {id} was relayed, want {want}: {msg:?}"),
        Err(err) => assert_eq!(condition(&err), Some(want), "{err:?}"),
    }
}

/// An IQ ping to the relay's domain is answered: the stream is up.
fn answers_ping(conn: &mut Conn, id: &str) {
    conn.send(&format!(
        "<iq type='get' id='{id}' from='{ALICE}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    let iq = expect(conn, "the ping's result", |n| {
        n.name == "iq" && n.attr("id") == Some(id)
    });
    assert_eq!(iq.attr("type"), Some("result"), "{iq:?}");
}

/// Accept the relay's next connection and complete the handshake.
fn online(server: &FakeServer) -> Conn {
    let mut conn = server.accept(RECONNECT);
    conn.handshake(PASSWORD);
    conn
}

/// SIGTERM: the relay closes its stream and exits 0.
fn stop(relay: &mut RelayProcess, conn: Conn) {
    relay.terminate();
    stop_after_signal(relay, conn);
}

/// After SIGTERM: the relay closes its stream and exits 0.
fn stop_after_signal(relay: &mut RelayProcess, mut conn: Conn) {
    conn.expect_end(SHORT);
    conn.close();
    let status = relay.wait(SHORT);
    assert!(
        status.success(),
        "axrelay exited with {status} after SIGTERM"
    );
}

/// The reconnect delays the relay logged, in order.
fn backoff_delays(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| {
            let (_, rest) = l
                .split_once("reconnecting in ")
                .or_else(|| l.split_once("retrying in "))?;
            rest.strip_suffix(" s")?.parse().ok()
        })
        .collect()
}

/// At least `min` delays were logged, each within the ceiling of SPEC §2
/// (1 s doubling to 60 s; full jitter, so any delay below it is right).
/// The relay may still be writing the last one: wait for it a little.
fn assert_backoff(relay: &RelayProcess, min: usize) {
    let deadline = Instant::now() + SHORT;
    let mut delays = backoff_delays(&relay.log());
    while delays.len() < min && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        delays = backoff_delays(&relay.log());
    }
    assert!(
        delays.len() >= min,
        "{} reconnect delays logged, want at least {min}: {delays:?}",
        delays.len()
    );
    for (i, d) in delays.iter().enumerate() {
        let ceiling = 2f64.powi(i.min(6) as i32).min(60.0);
        // The log rounds to a tenth of a second.
        assert!(
            *d <= ceiling + 0.05,
            "delay {i} is {d} s, over its ceiling {ceiling} s: {delays:?}"
        );
    }
}

/// Scenario 1: the server closes the connection in the middle of a
/// stanza. The half stanza was never accepted; the relay reconnects by
/// itself (after a backoff delay it logs) and relays again.
fn drop_mid_stanza(runtime: &str) {
    let server = FakeServer::start();
    let mut relay = RelayProcess::start(runtime, server.port(), "");
    let mut conn = online(&server);
    let a = whoami(&mut conn, ALICE, "w1");
    whoami(&mut conn, BOB, "w2");
    relayed(&mut conn, BOB, &a, bare(ALICE), "b1", "before the cut");

    conn.send(&format!(
        "<message from='{BOB}' to='{a}' type='chat' id='b2'><body>half a sen"
    ));
    thread::sleep(Duration::from_millis(100));
    conn.drop_connection();

    let mut conn = online(&server);
    relay.assert_running("after the drop");
    assert_backoff(&relay, 1);
    assert_eq!(whoami(&mut conn, ALICE, "w3"), a, "same pseudonym");
    relayed(&mut conn, BOB, &a, bare(ALICE), "b3", "after the cut");
    relayed(
        &mut conn,
        ALICE,
        &pseudonym(BOB),
        bare(BOB),
        "a1",
        "and back",
    );
    stop(&mut relay, conn);
}

/// Under systemd the relay says it is ready and how its connection goes:
/// `READY=1` with `connecting to …`, `online as DOMAIN`, the reconnect
/// after the server dropped it, and `STOPPING=1` at SIGTERM.
fn systemd_hears_the_state(runtime: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify");
    let systemd = UnixDatagram::bind(&path).expect("bind the notification socket");
    systemd
        .set_read_timeout(Some(RECONNECT))
        .expect("socket timeout");
    let next = || {
        let mut buf = [0u8; 512];
        let n = systemd.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let server = FakeServer::start();
    let port = server.port();
    let mut relay = RelayProcess::start_notifying(runtime, port, "", Some(path.clone()));
    assert_eq!(
        next(),
        format!("READY=1\nSTATUS=connecting to 127.0.0.1:{port}")
    );
    let conn = online(&server);
    assert_eq!(next(), format!("STATUS=online as {DOMAIN}"));
    conn.drop_connection();
    let status = next();
    assert!(
        status.starts_with("STATUS=disconnected: ") && status.contains("reconnecting in"),
        "{status}"
    );
    assert_eq!(next(), format!("STATUS=connecting to 127.0.0.1:{port}"));
    let conn = online(&server);
    assert_eq!(next(), format!("STATUS=online as {DOMAIN}"));
    relay.terminate();
    assert_eq!(next(), "STOPPING=1\nSTATUS=stopping");
    stop_after_signal(&mut relay, conn);
}

/// Scenario 2: the server restarts: its port refuses connections for 2 s,
/// then it listens on the same port again. The relay waits without
/// spinning, reconnects and relays again.
fn server_restart(runtime: &str) {
    let server = FakeServer::start();
    let port = server.port();
    let mut relay = RelayProcess::start(runtime, port, "");
    let mut conn = online(&server);
    let a = whoami(&mut conn, ALICE, "w1");
    whoami(&mut conn, BOB, "w2");
    relayed(&mut conn, BOB, &a, bare(ALICE), "b1", "before the restart");

    drop(server);
    conn.drop_connection();
    let down = CpuWatch::start(relay.pid());
    thread::sleep(Duration::from_secs(2));
    relay.assert_running("while the server was down");
    down.assert_idle("the server was down");
    // The drop, then at least one refused attempt.
    assert_backoff(&relay, 2);

    let server = FakeServer::start_on(port);
    let mut conn = online(&server);
    assert_eq!(whoami(&mut conn, ALICE, "w3"), a);
    relayed(&mut conn, BOB, &a, bare(ALICE), "b2", "after the restart");
    relayed(
        &mut conn,
        ALICE,
        &pseudonym(BOB),
        bare(BOB),
        "a1",
        "and back",
    );
    stop(&mut relay, conn);
}

/// The server accepts the connection but never answers the stream header
/// (a hung server process): the relay gives up after `handshake_timeout`
/// (5 s here), sleeping meanwhile, and dials again.
fn server_silent(runtime: &str) {
    let server = FakeServer::start();
    let mut relay = RelayProcess::start(runtime, server.port(), "");
    let mut silent = server.accept(RECONNECT);
    silent.read_header(SHORT);
    let waiting = CpuWatch::start(relay.pid());
    let mut conn = server.accept(RECONNECT);
    let waited = waiting.elapsed();
    assert!(
        waited >= Duration::from_millis(4500),
        "gave up on the silent server after {waited:?}, before its timeout"
    );
    waiting.assert_idle("the server was silent");
    match silent.next(SHORT) {
        Some(Got::End | Got::Eof) => {}
        other => panic!("the relay did not close the silent connection: {other:?}"),
    }
    relay.assert_running("after the silent server");
    conn.handshake(PASSWORD);
    let a = whoami(&mut conn, ALICE, "w1");
    whoami(&mut conn, BOB, "w2");
    relayed(&mut conn, BOB, &a, bare(ALICE), "b1", "after the silence");
    stop(&mut relay, conn);
}

/// SIGTERM while the server has not answered the handshake: a clean exit,
/// and the log says the relay stopped before it was online (no stream of
/// its was closed by the server).
fn stop_during_a_hung_handshake(runtime: &str) {
    let server = FakeServer::start();
    let mut relay = RelayProcess::start(runtime, server.port(), "");
    let mut silent = server.accept(RECONNECT);
    silent.read_header(SHORT);
    relay.terminate();
    let status = relay.wait(SHORT);
    assert!(
        status.success(),
        "axrelay exited with {status} after SIGTERM"
    );
    let log = relay.log();
    assert!(
        log.contains("stopped before the server accepted the handshake"),
        "{log}"
    );
    assert!(!log.contains("stopped: stream closed"), "{log}");
}

/// `PSEUDONYM => JID` as `axrelay hash --lookup` prints a stored mapping.
fn stored(relay: &RelayProcess, jid: &str) -> bool {
    let out = relay.hash(&["--lookup", &pseudonym(jid)]);
    out.lines()
        .any(|l| l.trim_end().ends_with(&format!("=> {}", bare(jid))))
}

/// Scenario 3: memcached is killed (SIGKILL) under the relay. A message
/// that needs a lookup gets an error back, the stream stays up and the
/// relay does not spin; memcached restarted empty on the same port serves
/// lookups and writes again without touching the relay.
fn memcached_crash(runtime: &str) {
    let (mut memcached, _server, mut relay, mut conn) = memcached_relay(runtime);
    let port = memcached.port;
    let a = whoami(&mut conn, ALICE, "w1");
    whoami(&mut conn, BOB, "w2");
    relayed(&mut conn, BOB, &a, bare(ALICE), "b1", "memcached is up");
    // Carol's mapping is written by another instance (the `hash` command):
    // this relay has never seen it, a message to her needs a lookup.
    relay.hash(&["--store", bare(CAROL)]);
    let c = pseudonym(CAROL);
    relayed(&mut conn, BOB, &c, bare(CAROL), "b2", "a lookup while up");

    memcached.stop();
    let dave = "dave@example.com";
    let d = pseudonym(dave);
    let down = CpuWatch::start(relay.pid());
    refused(&mut conn, BOB, &d, "b3", "internal-server-error");
    answers_ping(&mut conn, "p1");
    // Mappings it holds in memory still work.
    relayed(&mut conn, BOB, &a, bare(ALICE), "b4", "from memory");
    // A new user's /whoami needs a write: refused, never a pseudonym that
    // cannot be resolved.
    conn.send(&chat(dave, DOMAIN, "w3", "/whoami"));
    let reply = expect(&mut conn, "dave's /whoami answer", |n| {
        n.attr("id") == Some("w3")
    });
    assert_eq!(reply.attr("type"), Some("error"), "{reply:?}");
    thread::sleep(Duration::from_secs(2));
    refused(&mut conn, BOB, &d, "b5", "internal-server-error");
    relay.assert_running("while memcached was down");
    down.assert_idle("memcached was down");
    // The outage is told once, however many operations fail.
    let log = relay.log();
    assert_eq!(
        log.matches("the mapping store is unavailable").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("answers again"), "{log}");

    let _memcached = Memcached::start_on(port);
    // The fresh memcached is empty: Dave's /whoami stores his mapping now,
    // and another instance would find it there.
    assert_eq!(whoami(&mut conn, dave, "w4"), d);
    // Its end too, with the stanzas refused meanwhile (b3, w3, b5).
    let log = relay.log();
    let back: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the mapping store answers again after"))
        .collect();
    assert_eq!(back.len(), 1, "{log}");
    let refused_meanwhile: u64 = back[0]
        .rsplit("; ")
        .next()
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", back[0]));
    assert!(refused_meanwhile >= 3, "{}", back[0]);
    assert!(stored(&relay, dave), "dave's mapping is not in memcached");
    relayed(&mut conn, BOB, &d, dave, "b6", "memcached is back");
    // A lookup that only memcached can answer.
    let erin = "erin@example.net";
    relay.hash(&["--store", erin]);
    relayed(&mut conn, BOB, &pseudonym(erin), erin, "b7", "lookup again");
    stop(&mut relay, conn);
}

/// The memcached store of a relay process, and that relay, online.
fn memcached_relay(runtime: &str) -> (Memcached, FakeServer, RelayProcess, Conn) {
    let memcached = Memcached::start();
    let server = FakeServer::start();
    let relay = RelayProcess::start(
        runtime,
        server.port(),
        &format!(
            "\n[memcache]\nservers = {}\nencrypt = {}\ntimeout = 0.5\n",
            memcached.addr(),
            random_secret()
        ),
    );
    let conn = online(&server);
    (memcached, server, relay, conn)
}

/// Scenario 3, what other instances see: memcached restarted empty holds
/// none of the mappings this relay wrote before the crash. The users'
/// next `/whoami` (SPEC §5: "the mapping is stored") and messages must
/// store them again, or every other instance, and this one after a
/// restart, answers `item-not-found` for pseudonyms people already use.
fn memcached_crash_mappings_come_back(runtime: &str) {
    let (mut memcached, server, mut relay, mut conn) = memcached_relay(runtime);
    let port = memcached.port;
    let b = whoami(&mut conn, BOB, "w1");
    let a = whoami(&mut conn, ALICE, "w2");
    assert!(stored(&relay, ALICE), "alice's mapping is not in memcached");

    memcached.stop();
    // The relay has seen the store fail.
    refused(
        &mut conn,
        BOB,
        &pseudonym(CAROL),
        "b1",
        "internal-server-error",
    );

    let _memcached = Memcached::start_on(port);
    assert!(!stored(&relay, ALICE), "a fresh memcached is empty");
    assert_eq!(whoami(&mut conn, ALICE, "w3"), a);
    relayed(&mut conn, ALICE, &b, bare(BOB), "a1", "after the crash");
    relayed(&mut conn, BOB, &a, bare(ALICE), "b2", "and back");
    relay.assert_running("after memcached came back");
    assert!(
        stored(&relay, ALICE),
        "alice's /whoami and message after the memcached restart did not store \
         her mapping again"
    );

    // The relay restarts (an upgrade, a reboot): only memcached remembers.
    stop(&mut relay, conn);
    relay.respawn();
    let mut conn = online(&server);
    if let Err(e) = outcome(&mut conn, BOB, &a, "b3", "after the relay restart") {
        panic!(
            "bob's message to alice's pseudonym was refused ({:?}) although alice \
             used the relay after memcached came back",
            condition(&e)
        );
    }
    relayed(&mut conn, ALICE, &b, bare(BOB), "a2", "all is well");
    stop(&mut relay, conn);
}

/// The pid of the memcached listening on `port` (from /proc).
fn memcached_pid(port: u16) -> u32 {
    let want = ["-p".to_owned(), port.to_string()];
    let pids = std::fs::read_dir("/proc").expect("read /proc");
    for entry in pids.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_memcached = args.first().is_some_and(|a| a.ends_with("memcached"));
        if is_memcached && args.windows(2).any(|w| w == want) {
            return pid;
        }
    }
    panic!("no memcached process for port {port}");
}

/// What [`await_all`] waits for: a description and a test.
type Want<'a> = (&'a str, &'a dyn Fn(&Node) -> bool);

/// Wait for one stanza matching each of `wants` (in any order) and say
/// when each came; any other stanza, or the stream ending, fails the test.
fn await_all(conn: &mut Conn, within: Duration, wants: &[Want]) -> Vec<(Node, Duration)> {
    let start = Instant::now();
    let mut got: Vec<Option<(Node, Duration)>> = wants.iter().map(|_| None).collect();
    while got.iter().any(Option::is_none) {
        let left = within.saturating_sub(start.elapsed());
        let missing: Vec<&str> = wants
            .iter()
            .zip(&got)
            .filter(|(_, g)| g.is_none())
            .map(|((what, _), _)| *what)
            .collect();
        let node = match conn.next(left) {
            Some(Got::Stanza(n)) => n,
            other => panic!("waiting for {missing:?} within {within:?}, got {other:?}"),
        };
        let slot = wants
            .iter()
            .zip(got.iter_mut())
            .find(|((_, want), g)| g.is_none() && want(&node))
            .map(|(_, g)| g);
        match slot {
            Some(g) => *g = Some((node, start.elapsed())),
            None => panic!("waiting for {missing:?}, got an unexpected {node:?}"),
        }
    }
    got.into_iter().flatten().collect()
}

/// memcached hangs (SIGSTOP): it still accepts connections but answers
/// nothing. A lookup is answered with an error within the store timeout
/// while other senders' stanzas go on, the relay does not spin, and once
/// memcached resumes (SIGCONT; its late answers to abandoned requests
/// arrive at last) lookups give the right answers again.
fn memcached_hangs(runtime: &str) {
    let (memcached, _server, mut relay, mut conn) = memcached_relay(runtime);
    let pid = memcached_pid(memcached.port);
    let a = whoami(&mut conn, ALICE, "w1");
    let b = whoami(&mut conn, BOB, "w2");
    relay.hash(&["--store", bare(CAROL)]);
    let c = pseudonym(CAROL);

    relay::signal(pid, "STOP");
    let hung = CpuWatch::start(relay.pid());
    conn.send(&chat(BOB, &c, "b1", "lookup while memcached hangs"));
    conn.send(&format!(
        "<iq type='get' id='p1' from='{ALICE}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    conn.send(&chat(ALICE, &b, "a1", "alice is not held up"));
    let got = await_all(
        &mut conn,
        Duration::from_secs(10),
        &[
            ("the error for b1", &|n: &Node| {
                n.attr("id") == Some("b1") && n.attr("type") == Some("error")
            }),
            ("the ping's result", &|n: &Node| {
                n.attr("id") == Some("p1") && n.attr("type") == Some("result")
            }),
            ("a1 relayed", &|n: &Node| {
                n.body() == Some("alice is not held up")
            }),
        ],
    );
    let (err, answered) = &got[0];
    assert_eq!(condition(err), Some("internal-server-error"), "{err:?}");
    assert!(
        got[1].1 < *answered && got[2].1 < *answered,
        "other senders waited for the hung store: {got:?}"
    );
    eprintln!("a lookup in a hung memcached was answered after {answered:?}");
    assert!(
        *answered < Duration::from_secs(6),
        "{answered:?}: no store timeout"
    );
    thread::sleep(Duration::from_secs(2));
    refused(&mut conn, BOB, &c, "b2", "internal-server-error");
    relay.assert_running("while memcached hung");
    hung.assert_idle("memcached hung");

    relay::signal(pid, "CONT");
    relayed(&mut conn, BOB, &c, bare(CAROL), "b3", "resumed");
    let erin = "erin@example.net";
    relay.hash(&["--store", erin]);
    relayed(&mut conn, BOB, &pseudonym(erin), erin, "b4", "right answer");
    refused(
        &mut conn,
        BOB,
        &pseudonym("dave@example.com"),
        "b5",
        "item-not-found",
    );
    relayed(&mut conn, BOB, &a, bare(ALICE), "b6", "all is well");
    stop(&mut relay, conn);
}

/// Scenario 4: a second instance for the same domain meets `conflict`. It
/// keeps retrying with backoff (neither exiting nor spinning) and takes
/// over once the first instance has stopped.
fn conflict_standby(runtime: &str) {
    let server = FakeServer::start();
    let mut first = RelayProcess::start(runtime, server.port(), "");
    let mut conn = online(&server);
    let a = whoami(&mut conn, ALICE, "w1");
    whoami(&mut conn, BOB, "w2");

    let mut standby = RelayProcess::start(runtime, server.port(), "");
    // Refused connections stay open until the end: closing one with
    // unread data would reset it before the relay reads the stream error.
    let mut refused_conns = Vec::new();
    let mut refuse = |mut standby: Conn| {
        standby.open_stream("standby");
        standby.stream_error("conflict");
        refused_conns.push(standby);
    };
    refuse(server.accept(RECONNECT));
    // Every attempt within 3 s is refused too; meanwhile the first
    // instance keeps relaying.
    let idle = CpuWatch::start(standby.pid());
    let window = Instant::now() + Duration::from_secs(3);
    let mut attempts = 1;
    let mut n = 0;
    while Instant::now() < window {
        n += 1;
        let body = format!("while the standby waits {n}");
        relayed(&mut conn, BOB, &a, bare(ALICE), &format!("b{n}"), &body);
        if let Some(c) = server.try_accept(Duration::from_millis(300)) {
            refuse(c);
            attempts += 1;
        }
    }
    standby.assert_running("after conflicts");
    idle.assert_idle("it waited its turn");
    assert!(attempts < 10, "{attempts} attempts in 3 s: no backoff");
    assert_backoff(&standby, attempts);
    assert!(
        standby.log().contains("conflict"),
        "the standby does not log the conflict"
    );

    stop(&mut first, conn);
    let mut conn = online(&server);
    standby.assert_running("taking over");
    let a2 = whoami(&mut conn, ALICE, "w3");
    assert_eq!(a2, a, "the same pseudonym from the standby");
    whoami(&mut conn, BOB, "w4");
    relayed(&mut conn, BOB, &a, bare(ALICE), "b-after", "taken over");
    stop(&mut standby, conn);
}

/// The CPU reading the scenarios rely on sees a busy process: this
/// thread spins until the kernel's own count for it (nanoseconds in
/// /proc/thread-self/schedstat) reaches 300 ms, however loaded the host.
#[test]
fn cpu_time_sees_work() {
    let thread_ns = || -> u64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .expect("read /proc/thread-self/schedstat")
    };
    let me = std::process::id();
    let before = relay::cpu_time(me);
    let start = thread_ns();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut x = 0u64;
    while thread_ns() - start < 300_000_000 && Instant::now() < deadline {
        x = std::hint::black_box(x.wrapping_add(1));
    }
    let spun = Duration::from_nanos(thread_ns() - start);
    let used = relay::cpu_time(me).saturating_sub(before);
    assert!(
        used + Duration::from_millis(50) >= spun,
        "/proc/PID/stat shows {used:?} for {spun:?} of work"
    );
}

/// Each scenario once per runtime, as `smol::NAME` and `blocking::NAME`.
macro_rules! both_runtimes {
    ($($(#[$attr:meta])* $case:ident),* $(,)?) => {
        mod smol {
            $(
                $(#[$attr])*
                #[test]
                fn $case() {
                    super::$case("smol");
                }
            )*
        }
        mod blocking {
            $(
                $(#[$attr])*
                #[test]
                fn $case() {
                    super::$case("blocking");
                }
            )*
        }
    };
}

both_runtimes!(
    systemd_hears_the_state,
    stop_during_a_hung_handshake,
    drop_mid_stanza,
    server_restart,
    server_silent,
    memcached_crash,
    memcached_crash_mappings_come_back,
    memcached_hangs,
    conflict_standby,
);
