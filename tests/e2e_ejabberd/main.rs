//! End to end with ejabberd: a real ejabberd 23.01 (Debian's package) on
//! 127.0.0.1, the `axrelay` binary as its component, real XMPP clients
//! (slixmpp, tests/e2e/client.py), and for the scale-out case two relay
//! instances behind ejabberd's `domain_balancing` sharing a real memcached.
//!
//! The ejabberd configuration is scripts/ejabberd.yml.in, the same file the
//! README points operators to. Needs `ejabberd`, `memcached` and
//! `python3-slixmpp` (installed with apt-get when missing; the tests run as
//! root, since Debian's ejabberdctl runs the node as the ejabberd user). No
//! test is skipped: a missing piece fails it, saying what to install.

mod client;
mod ejabberd;
mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axrelay_test_support::e2e::{bare, random_hex, random_secret, COMPONENT, HOST, RELAY_RESOURCE};
use client::{assert_no_trace_of, Client, Msg};
use ejabberd::Ejabberd;
use procs::{wait_until, Memcached, Relay, RelaySettings};

/// `to` received `m`: a chat message from `from_pseudonym`/a with `body`.
fn check_relayed(m: &Msg, to: &Client, from_pseudonym: &str, body: &str) {
    assert_eq!(
        m.error, None,
        "{} got an error instead of {body:?}: {m:#?}",
        to.user
    );
    assert_eq!(
        m.from,
        format!("{from_pseudonym}/{RELAY_RESOURCE}"),
        "{m:#?}"
    );
    assert_eq!(bare(&m.to), to.bare(), "{m:#?}");
    assert_eq!(m.kind, "chat", "{m:#?}");
    assert_eq!(m.body.as_deref(), Some(body), "body changed: {m:#?}");
}

fn expect_relayed(to: &mut Client, from_pseudonym: &str, body: &str) -> Msg {
    let m = to.expect_one();
    check_relayed(&m, to, from_pseudonym, body);
    m
}

/// A pseudonym-shaped address nobody has.
fn unknown_pseudonym() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let hex = random_hex(45);
    let local: String = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let v = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
            ALPHABET[(v % 32) as usize] as char
        })
        .collect();
    format!("{local}@{COMPONENT}")
}

fn resource() -> String {
    format!("res-{}", random_hex(4))
}

/// SPEC §1 against ejabberd with one relay: both learn their pseudonyms,
/// talk through them both ways, an unknown pseudonym is item-not-found,
/// and neither client ever receives the other's real JID or resource.
fn core_scenario(runtime: &'static str) {
    let mut ej = Ejabberd::start(1);
    let (alice, bob) = (
        format!("alice-{}", random_hex(4)),
        format!("bob-{}", random_hex(4)),
    );
    ej.register(&alice);
    ej.register(&bob);

    let mut relay = Relay::new(
        "relay",
        ej.component_port,
        &ej.component_secret,
        &RelaySettings::new(runtime),
    );
    relay.spawn();
    ej.wait_component_logins(1, &mut [&mut relay]);

    let mut a = Client::login(ej.c2s_port, &alice, &resource());
    let mut b = Client::login(ej.c2s_port, &bob, &resource());
    let ap = a.whoami();
    let bp = b.whoami();
    assert_ne!(ap, bp);

    let sent = b.send(&ap, "Hello Alice, this is B'.");
    let m = expect_relayed(&mut a, &bp, "Hello Alice, this is B'.");
    assert_ne!(m.id, sent, "the relayed message must get a fresh id");

    a.send(&bp, "Hello stranger.");
    expect_relayed(&mut b, &ap, "Hello stranger.");

    b.send(&ap, "Once more, with ünïcödé & <markup>.");
    expect_relayed(&mut a, &bp, "Once more, with ünïcödé & <markup>.");

    let nobody = unknown_pseudonym();
    b.send(&nobody, "anyone there?");
    let m = b.expect_one();
    assert_eq!(m.kind, "error", "{m:#?}");
    assert_eq!(m.sender_bare(), nobody, "{m:#?}");
    assert_eq!(
        m.error.as_ref().map(|(_, c)| c.as_str()),
        Some("item-not-found"),
        "{m:#?}"
    );
    a.expect_none(Duration::from_millis(500));

    assert_no_trace_of(&[(&bob, &b.resource)], &mut a);
    assert_no_trace_of(&[(&alice, &a.resource)], &mut b);

    relay.check_running();
    relay.stop_cleanly();
    a.quit();
    b.quit();
    ej.assert_no_problems();
    ej.stop();
}

#[test]
fn core_scenario_smol() {
    core_scenario("smol");
}

#[test]
fn core_scenario_blocking() {
    core_scenario("blocking");
}

/// The template renders for one relay without `domain_balancing`, and for
/// several with `component_number` set to their number.
#[test]
fn template_renders_with_and_without_balancing() {
    let one = ejabberd::render_config(5222, 5347, "pw", 1, "info");
    assert!(!one.contains("domain_balancing"), "{one}");
    assert!(one.contains("max_stanza_size: 524288"), "{one}");
    assert!(one.contains(&format!("\"{COMPONENT}\":\n        password: \"pw\"")));
    let three = ejabberd::render_config(5222, 5347, "pw", 3, "info");
    assert!(three.contains(&format!(
        "domain_balancing:\n  \"{COMPONENT}\":\n    type: bare_source\n    component_number: 3\n"
    )));
}

/// The README's ejabberd snippet is the fenced block after this marker.
const README_MARKER: &str = "<!-- ejabberd-config -->";

/// Check that the fenced block after [`README_MARKER`] in `doc` is taken
/// from the template: its lines appear in the template, in order, filled in
/// with the README's example values (domain `axr.example.org`, port 5347,
/// password `CHANGE-ME`, two instances). `None` when there is no marker.
fn check_readme_snippet(doc: &str) -> Option<Result<(), String>> {
    let at = doc.find(README_MARKER)?;
    let rest = &doc[at + README_MARKER.len()..];
    let Some(open) = rest.find("```") else {
        return Some(Err("no fenced block after the marker".into()));
    };
    let body = &rest[open..];
    let first_newline = body.find('\n').unwrap_or(body.len());
    let Some(end) = body[first_newline..].find("\n```") else {
        return Some(Err("the fenced block is not closed".into()));
    };
    let snippet = &body[first_newline + 1..first_newline + end];
    let rendered = ejabberd::render_config(5222, 5347, "CHANGE-ME", 2, "info")
        .replace(COMPONENT, "axr.example.org");
    let mut template = rendered.lines().map(str::trim_end);
    for line in snippet.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        if !template.any(|t| t == line) {
            return Some(Err(format!(
                "snippet line {line:?} is not in scripts/ejabberd.yml.in (or not in \
                 the same order); rendered template:\n{rendered}"
            )));
        }
    }
    Some(Ok(()))
}

/// The README's ejabberd snippet cannot drift from the file the tests run.
#[test]
fn readme_ejabberd_snippet_comes_from_the_template() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    match check_readme_snippet(&readme) {
        Some(Ok(())) => {}
        Some(Err(e)) => panic!("README.md: {e}"),
        None => panic!("README.md has no {README_MARKER} block"),
    }

    // The check itself: the operator's snippet passes, a changed one fails.
    let good = format!(
        "{README_MARKER}\n```yaml\nlisten:\n  -\n    port: 5347\n    ip: \"127.0.0.1\"\n    \
         module: ejabberd_service\n    max_stanza_size: 524288\n    hosts:\n      \
         \"axr.example.org\":\n        password: \"CHANGE-ME\"\n\ndomain_balancing:\n  \
         \"axr.example.org\":\n    type: bare_source\n    component_number: 2\n```\n"
    );
    assert_eq!(check_readme_snippet(&good), Some(Ok(())));
    let bad = good.replace("524288", "1048576");
    assert!(matches!(check_readme_snippet(&bad), Some(Err(_))));
}

/// SPEC §8, scale-out: two relay instances (one per runtime) for one domain
/// behind `domain_balancing` (`bare_source`, `component_number: 2`),
/// sharing one memcached with `encrypt`, and a third instance connected as
/// a would-be standby. Eight users all write to each other; every message
/// reaches the right person from the right pseudonym, both slotted
/// instances carry traffic, each sender stays on one instance, the standby
/// gets nothing, and the store holds no readable name. Then instance 1
/// stops: its senders' messages are dropped without an error, and the
/// connected standby does not take the free slot (ejabberd assigns slots
/// only when a connection is made). Restarted, the standby takes the slot
/// and, with an empty cache, relays through the shared store.
#[test]
fn two_instances_behind_domain_balancing_share_memcached() {
    let memcached = Memcached::start();
    let mut ej = Ejabberd::start(2);
    // Fixed names: ejabberd hashes the sender's bare JID to pick the slot,
    // so the split between the instances is the same on every run.
    let users: Vec<String> = (1..=8).map(|i| format!("user-{i}")).collect();
    for u in &users {
        ej.register(u);
    }

    let mut settings = RelaySettings::new("smol");
    settings.memcache = Some((memcached.addr(), random_secret()));
    // Under domain_balancing every ping's answer goes to one instance, so
    // balanced instances keep alive with whitespace; a short interval puts
    // keepalives between the messages.
    settings.keepalive = 2;
    settings.keepalive_mode = "whitespace";
    let mut r1 = Relay::new(
        "relay-1",
        ej.component_port,
        &ej.component_secret,
        &settings,
    );
    settings.runtime = "blocking";
    let mut r2 = Relay::new(
        "relay-2",
        ej.component_port,
        &ej.component_secret,
        &settings,
    );
    r1.spawn();
    ej.wait_component_logins(1, &mut [&mut r1]);
    r2.spawn();
    ej.wait_component_logins(2, &mut [&mut r1, &mut r2]);
    // Both slots are taken: ejabberd accepts this one, but routes nothing
    // to it.
    let mut r3 = Relay::new(
        "relay-3",
        ej.component_port,
        &ej.component_secret,
        &settings,
    );
    r3.spawn();
    ej.wait_component_logins(3, &mut [&mut r1, &mut r2, &mut r3]);

    let resources: Vec<String> = users.iter().map(|_| resource()).collect();
    let mut clients: Vec<Client> = users
        .iter()
        .zip(&resources)
        .map(|(u, r)| Client::login(ej.c2s_port, u, r))
        .collect();
    let pseudonyms: Vec<String> = clients.iter_mut().map(Client::whoami).collect();
    let distinct: BTreeSet<&String> = pseudonyms.iter().collect();
    assert_eq!(distinct.len(), users.len(), "{pseudonyms:#?}");

    // Which instance answered whom.
    let bare_of = |u: &str| format!("{u}@{}", HOST);
    let on1: BTreeSet<String> = r1.whoami_senders().into_iter().collect();
    let on2: BTreeSet<String> = r2.whoami_senders().into_iter().collect();
    for u in &users {
        let b = bare_of(u);
        assert!(
            on1.contains(&b) != on2.contains(&b),
            "{b} should have been answered by exactly one instance: {on1:?} / {on2:?}"
        );
    }
    assert!(
        !on1.is_empty() && !on2.is_empty(),
        "every sender went to one instance: {on1:?} / {on2:?}"
    );

    // Everyone writes to everyone else: 56 messages.
    let n = users.len();
    for (i, sender) in clients.iter_mut().enumerate() {
        for (j, to) in pseudonyms.iter().enumerate() {
            if i != j {
                sender.send(to, &format!("message {i} to {j}"));
            }
        }
    }
    for (j, c) in clients.iter_mut().enumerate() {
        let got = c.expect(n - 1, Duration::from_secs(20), None);
        let mut from: BTreeMap<usize, Msg> = BTreeMap::new();
        for m in got {
            let body = m.body.clone().unwrap_or_default();
            let i: usize = body
                .strip_prefix("message ")
                .and_then(|r| r.split(' ').next())
                .and_then(|i| i.parse().ok())
                .unwrap_or_else(|| panic!("unexpected message to {}: {m:#?}", c.user));
            check_relayed(&m, c, &pseudonyms[i], &format!("message {i} to {j}"));
            assert!(from.insert(i, m).is_none(), "duplicate from {i}");
        }
    }

    // Both instances relayed, each only for the senders pinned to it.
    let relayed_by = |r: &Relay| -> BTreeSet<String> {
        r.log()
            .lines()
            .filter_map(|l| l.split(" DEBUG relayed ").nth(1))
            .filter_map(|rest| rest.split(' ').next())
            .map(|full| bare(full).to_owned())
            .collect()
    };
    let (c1, c2) = (r1.relayed(), r2.relayed());
    eprintln!(
        "relay-1 answered {on1:?} and relayed {c1}; relay-2 answered {on2:?} and relayed {c2}"
    );
    assert_eq!(c1 + c2, n * (n - 1), "every message relayed exactly once");
    assert!(c1 > 0 && c2 > 0, "relay-1 relayed {c1}, relay-2 {c2}");
    assert!(relayed_by(&r1).is_subset(&on1), "a sender moved instance");
    assert!(relayed_by(&r2).is_subset(&on2), "a sender moved instance");
    assert!(r3.whoami_senders().is_empty() && r3.relayed() == 0);

    // A dump of the shared store names nobody (encrypt is set).
    let dump = memcached.dump();
    assert!(dump.contains("key="), "memcached holds no mapping:\n{dump}");
    for (u, p) in users.iter().zip(&pseudonyms) {
        let local = p.split('@').next().unwrap();
        for needle in [u.as_str(), local] {
            assert!(
                !dump.contains(needle),
                "memcached holds {needle:?} readable:\n{dump}"
            );
        }
    }

    // No client received anything naming another user.
    for (k, reader) in clients.iter_mut().enumerate() {
        let others: Vec<(&str, &str)> = users
            .iter()
            .zip(&resources)
            .enumerate()
            .filter(|(i, _)| *i != k)
            .map(|(_, (u, r))| (u.as_str(), r.as_str()))
            .collect();
        assert_no_trace_of(&others, reader);
    }

    // Instance 1 goes away: ejabberd keeps its slot, and drops what the
    // senders pinned to it write to the relay, without an error. The
    // connected standby does not take the slot.
    let s = users
        .iter()
        .position(|u| on1.contains(&bare_of(u)))
        .unwrap();
    let t = users
        .iter()
        .position(|u| on2.contains(&bare_of(u)))
        .unwrap();
    r1.stop_cleanly();
    clients[s].send(&pseudonyms[t], "while relay-1 is down");
    clients[t].send(&pseudonyms[s], "relay-2 still relays");
    let m = clients[s].expect_one();
    check_relayed(&m, &clients[s], &pseudonyms[t], "relay-2 still relays");
    clients[t].expect_none(Duration::from_secs(3));
    clients[s].expect_none(Duration::from_millis(200));
    assert_eq!(r3.relayed(), 0, "the standby took the free slot after all");

    // The standby reconnects and takes the free slot; its cache is empty,
    // so the lookup goes to memcached.
    let logins = ej.component_logins();
    r3.stop_cleanly();
    r3.spawn();
    ej.wait_component_logins(logins + 1, &mut [&mut r2, &mut r3]);
    clients[s].send(&pseudonyms[t], "relay-3 took the slot");
    expect_relayed(&mut clients[t], &pseudonyms[s], "relay-3 took the slot");
    assert_eq!(r3.relayed(), 1, "relay-3 should have relayed it");

    r2.stop_cleanly();
    r3.stop_cleanly();
    for c in &mut clients {
        c.quit();
    }
    ej.assert_no_problems();
    ej.stop();
}

/// The other side of the trade-off (SPEC §8): two instances on one domain
/// without `domain_balancing`. ejabberd picks a connection at random for
/// every stanza, so one sender's messages are spread over both instances
/// (and may overtake each other), and when one instance stops the other
/// carries everything: nothing is lost.
#[test]
fn without_domain_balancing_traffic_fails_over() {
    let memcached = Memcached::start();
    let mut ej = Ejabberd::start(1);
    let (alice, bob) = (
        format!("alice-{}", random_hex(4)),
        format!("bob-{}", random_hex(4)),
    );
    ej.register(&alice);
    ej.register(&bob);
    let mut settings = RelaySettings::new("smol");
    settings.memcache = Some((memcached.addr(), random_secret()));
    settings.keepalive = 3600;
    let mut r1 = Relay::new(
        "relay-1",
        ej.component_port,
        &ej.component_secret,
        &settings,
    );
    let mut r2 = Relay::new(
        "relay-2",
        ej.component_port,
        &ej.component_secret,
        &settings,
    );
    r1.spawn();
    ej.wait_component_logins(1, &mut [&mut r1]);
    r2.spawn();
    ej.wait_component_logins(2, &mut [&mut r1, &mut r2]);

    let mut a = Client::login(ej.c2s_port, &alice, &resource());
    let mut b = Client::login(ej.c2s_port, &bob, &resource());
    let ap = a.whoami();
    let bp = b.whoami();

    let sent: Vec<String> = (0..40).map(|i| format!("spread {i:02}")).collect();
    for body in &sent {
        b.send(&ap, body);
    }
    let got = a.expect(sent.len(), Duration::from_secs(20), None);
    for m in &got {
        check_relayed(m, &a, &bp, m.body.as_deref().unwrap_or(""));
    }
    let mut bodies: Vec<String> = got.iter().filter_map(|m| m.body.clone()).collect();
    let in_order = bodies == sent;
    bodies.sort();
    assert_eq!(bodies, sent, "lost or duplicated messages");
    let (c1, c2) = (r1.relayed(), r2.relayed());
    eprintln!("relay-1 relayed {c1}, relay-2 {c2}; in order: {in_order}");
    assert_eq!(c1 + c2, sent.len());
    assert!(
        c1 > 0 && c2 > 0,
        "one sender's messages should be spread: {c1} / {c2}"
    );

    // One instance stops: the other carries everything, both ways.
    r1.stop_cleanly();
    for i in 0..10 {
        b.send(&ap, &format!("after failover {i}"));
        expect_relayed(&mut a, &bp, &format!("after failover {i}"));
        a.send(&bp, &format!("answer {i}"));
        expect_relayed(&mut b, &ap, &format!("answer {i}"));
    }

    r2.stop_cleanly();
    a.quit();
    b.quit();
    ej.assert_no_problems();
    ej.stop();
}

/// Under `domain_balancing` ejabberd routes the answer to a keepalive ping
/// (by its source, `bare_source`) to one slot only. With pings, the other
/// instance never sees an answer and reconnects every two keepalive
/// intervals; with `keepalive_mode = whitespace` (what the README tells
/// operators of balanced domains to set) every instance stays connected.
#[test]
fn balanced_instances_stay_connected_when_idle() {
    let mut ej = Ejabberd::start(2);
    let mut settings = RelaySettings::new("smol");
    settings.keepalive = 2;
    settings.keepalive_mode = "whitespace";
    let mut r1 = Relay::new(
        "relay-1",
        ej.component_port,
        &ej.component_secret,
        &settings,
    );
    settings.runtime = "blocking";
    let mut r2 = Relay::new(
        "relay-2",
        ej.component_port,
        &ej.component_secret,
        &settings,
    );
    r1.spawn();
    r2.spawn();
    ej.wait_component_logins(2, &mut [&mut r1, &mut r2]);
    let quiet = !wait_until(Duration::from_secs(9), || ej.component_logins() > 2);
    assert!(
        quiet,
        "an idle instance reconnected:\n{}\n---\n{}",
        r1.log(),
        r2.log()
    );
    r1.stop_cleanly();
    r2.stop_cleanly();
    ej.assert_no_problems();
    ej.stop();
}
