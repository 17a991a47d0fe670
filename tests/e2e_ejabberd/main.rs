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

mod ejabberd;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axrelay_test_support::e2e::{
    assert_no_trace_of, bare, check_relayed, check_unknown_pseudonym, expect_relayed, new_resource,
    random_hex, random_secret, wait_until, Client, Memcached, Msg, Relay, RelayOptions, COMPONENT,
    HOST,
};
use ejabberd::Ejabberd;

/// What an instance logs (`-d --log-sensitive`) for a `/whoami` it answers
/// and for a message it relays, each followed by the sender's full JID.
const WHOAMI: &str = " DEBUG whoami: ";
const RELAYED: &str = " DEBUG relayed ";

/// Relay instances for `ej`, one per runtime, named `relay-1`, `relay-2`…
/// Each is connected before the next starts, so that they take the slots
/// of `domain_balancing` in this order.
fn start_relays<const N: usize>(
    ej: &Ejabberd,
    opts: &RelayOptions,
    runtimes: [&str; N],
) -> [Relay; N] {
    let mut relays = Vec::new();
    for (i, runtime) in runtimes.into_iter().enumerate() {
        let mut relay = ej.relay(&format!("relay-{}", i + 1), runtime, opts);
        relay.spawn_process();
        relays.push(relay);
        ej.wait_component_logins(i + 1, &mut relays.iter_mut().collect::<Vec<_>>());
    }
    relays.try_into().unwrap_or_else(|_| unreachable!())
}

/// `user-1` … `user-8`, registered. Fixed names: ejabberd hashes the
/// sender's bare JID to pick the slot, so the split between the instances
/// is the same on every run.
fn register_fixed_users(ej: &Ejabberd) -> Vec<String> {
    let users: Vec<String> = (1..=8).map(|i| format!("user-{i}")).collect();
    for u in &users {
        ej.register(u);
    }
    users
}

/// Instances behind `domain_balancing` sharing `memcached`. Every ping's
/// answer goes to one instance, so they keep alive with whitespace; a short
/// interval puts keepalives between the messages.
fn balanced_options(memcached: &Memcached) -> RelayOptions {
    RelayOptions {
        memcache: Some((memcached.addr(), random_secret())),
        keepalive: (2, "whitespace"),
        ..RelayOptions::default()
    }
}

/// Every user online with a fresh resource, and the pseudonym each got.
fn log_in(ej: &Ejabberd, users: &[String]) -> (Vec<Client>, Vec<String>) {
    let mut clients: Vec<Client> = users
        .iter()
        .map(|u| Client::login_at(ej.c2s_port, u, &new_resource()))
        .collect();
    let pseudonyms = clients.iter_mut().map(Client::whoami).collect();
    (clients, pseudonyms)
}

/// A new account `prefix-<random>` online with a fresh resource, and the
/// pseudonym the relay gives it.
fn online(ej: &Ejabberd, prefix: &str) -> (Client, String) {
    let mut client = Client::login_at(ej.c2s_port, &ej.account(prefix), &new_resource());
    let pseudonym = client.whoami();
    (client, pseudonym)
}

/// The bare JIDs that follow `marker` in `relay`'s log.
fn logged_senders(relay: &Relay, marker: &str) -> BTreeSet<String> {
    relay
        .log()
        .lines()
        .filter_map(|l| l.split(marker).nth(1))
        .filter_map(|rest| rest.split(' ').next())
        .map(|full| bare(full).to_owned())
        .collect()
}

/// How many messages `relay` relayed.
fn relayed(relay: &Relay) -> usize {
    relay.log().matches(RELAYED).count()
}

/// Every relay exits 0 on SIGTERM (SPEC §7), every client logs out, and
/// ejabberd logged no warning or error throughout.
fn finish<'a>(
    mut ej: Ejabberd,
    relays: impl IntoIterator<Item = &'a mut Relay>,
    clients: impl IntoIterator<Item = &'a mut Client>,
) {
    for relay in relays {
        relay.stop_cleanly();
    }
    for client in clients {
        client.quit();
    }
    ej.assert_no_problems();
    ej.stop();
}

/// SPEC §1 against ejabberd with one relay: both learn their pseudonyms,
/// talk through them both ways, an unknown pseudonym is item-not-found,
/// and neither client ever receives the other's real JID or resource.
fn core_scenario(runtime: &'static str) {
    let ej = Ejabberd::start(1);
    let [mut relay] = start_relays(&ej, &RelayOptions::default(), [runtime]);
    let (mut a, ap) = online(&ej, "alice");
    let (mut b, bp) = online(&ej, "bob");
    assert_ne!(ap, bp);

    let sent = b.send(&ap, "Hello Alice, this is B'.");
    let m = expect_relayed(&mut a, &bp, "Hello Alice, this is B'.");
    assert_ne!(m.id, sent, "the relayed message must get a fresh id");

    a.send(&bp, "Hello stranger.");
    expect_relayed(&mut b, &ap, "Hello stranger.");

    b.send(&ap, "Once more, with ünïcödé & <markup>.");
    expect_relayed(&mut a, &bp, "Once more, with ünïcödé & <markup>.");

    check_unknown_pseudonym(&mut b, &mut a);

    assert_no_trace_of(&b, &[], &mut a);
    assert_no_trace_of(&a, &[], &mut b);

    relay.check_running();
    finish(ej, [&mut relay], [&mut a, &mut b]);
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
    let ej = Ejabberd::start(2);
    let users = register_fixed_users(&ej);
    // Both slots are taken when the third connects: ejabberd accepts it,
    // but routes nothing to it.
    let opts = balanced_options(&memcached);
    let [mut r1, mut r2, mut r3] = start_relays(&ej, &opts, ["smol", "blocking", "blocking"]);
    let (mut clients, pseudonyms) = log_in(&ej, &users);
    let distinct: BTreeSet<&String> = pseudonyms.iter().collect();
    assert_eq!(distinct.len(), users.len(), "{pseudonyms:#?}");

    // Which instance answered whom.
    let bare_of = |u: &str| format!("{u}@{}", HOST);
    let on1 = logged_senders(&r1, WHOAMI);
    let on2 = logged_senders(&r2, WHOAMI);
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
        let got = c.expect_within(n - 1, Duration::from_secs(20), None);
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
    let (c1, c2) = (relayed(&r1), relayed(&r2));
    eprintln!(
        "relay-1 answered {on1:?} and relayed {c1}; relay-2 answered {on2:?} and relayed {c2}"
    );
    assert_eq!(c1 + c2, n * (n - 1), "every message relayed exactly once");
    assert!(c1 > 0 && c2 > 0, "relay-1 relayed {c1}, relay-2 {c2}");
    assert!(
        logged_senders(&r1, RELAYED).is_subset(&on1),
        "a sender moved instance"
    );
    assert!(
        logged_senders(&r2, RELAYED).is_subset(&on2),
        "a sender moved instance"
    );
    assert!(logged_senders(&r3, WHOAMI).is_empty() && relayed(&r3) == 0);

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
    for k in 0..clients.len() {
        let (before, rest) = clients.split_at_mut(k);
        let (reader, after) = rest.split_first_mut().unwrap();
        for other in before.iter().chain(after.iter()) {
            assert_no_trace_of(other, &[], reader);
        }
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
    expect_relayed(&mut clients[s], &pseudonyms[t], "relay-2 still relays");
    clients[t].expect_none(Duration::from_secs(3));
    clients[s].expect_none(Duration::from_millis(200));
    assert_eq!(relayed(&r3), 0, "the standby took the free slot after all");

    // The standby reconnects and takes the free slot; its cache is empty,
    // so the lookup goes to memcached.
    let logins = ej.component_logins();
    r3.stop_cleanly();
    r3.spawn_process();
    ej.wait_component_logins(logins + 1, &mut [&mut r2, &mut r3]);
    clients[s].send(&pseudonyms[t], "relay-3 took the slot");
    expect_relayed(&mut clients[t], &pseudonyms[s], "relay-3 took the slot");
    assert_eq!(relayed(&r3), 1, "relay-3 should have relayed it");

    finish(ej, [&mut r2, &mut r3], &mut clients);
}

const RECEIPTS: &str = "urn:xmpp:receipts";
const MARKERS: &str = "urn:xmpp:chat-markers:0";
const CORRECT: &str = "urn:xmpp:message-correct:0";

/// SPEC §5 across instances: with `domain_balancing` by source, Bob's
/// stanzas go through one instance and Alice's and Carol's through the
/// other, so every answer to a message is handled by an instance that did
/// not relay it. The receipt, the displayed marker and the bounce are
/// translated from the sealed id alone (the mapping of the original sender
/// from memcached); the correction is translated by the instance that
/// relayed the message it names, which is the one its sender is pinned to.
#[test]
fn answers_cross_instances_behind_domain_balancing() {
    let memcached = Memcached::start();
    let ej = Ejabberd::start(2);
    let users = register_fixed_users(&ej);
    let [mut r1, mut r2] = start_relays(&ej, &balanced_options(&memcached), ["smol", "blocking"]);
    let (mut clients, pseudonyms) = log_in(&ej, &users);
    let bare_of = |u: &str| format!("{u}@{}", HOST);
    let on1 = logged_senders(&r1, WHOAMI);
    let on2 = logged_senders(&r2, WHOAMI);
    // Bob alone on one instance, Alice and Carol on the other (the one
    // with at least two of the users).
    let pinned = |on: &BTreeSet<String>| -> Vec<usize> {
        (0..users.len())
            .filter(|&i| on.contains(&bare_of(&users[i])))
            .collect()
    };
    let (p1, p2) = (pinned(&on1), pinned(&on2));
    let (bob_side, other_side, bob_relay_is_1) = if p2.len() >= 2 && !p1.is_empty() {
        (p1, p2, true)
    } else {
        (p2, p1, false)
    };
    assert!(
        !bob_side.is_empty() && other_side.len() >= 2,
        "the users did not split over both instances: {on1:?} / {on2:?}"
    );
    let (bob, alice, carol) = (bob_side[0], other_side[0], other_side[1]);
    let (bob_relay, other_relay) = if bob_relay_is_1 {
        (&r1, &r2)
    } else {
        (&r2, &r1)
    };
    let (bp, ap, cp) = (
        pseudonyms[bob].clone(),
        pseudonyms[alice].clone(),
        pseudonyms[carol].clone(),
    );
    let other_relayed_before = relayed(other_relay);

    // Bob's message, relayed by Bob's instance.
    let original = format!("bob-{}", random_hex(4));
    clients[bob].send_ex(
        &ap,
        Some("please acknowledge"),
        Some(&original),
        &format!("<request xmlns='{RECEIPTS}'/><markable xmlns='{MARKERS}'/>"),
    );
    let seen = expect_relayed(&mut clients[alice], &bp, "please acknowledge");
    assert!(
        logged_senders(bob_relay, RELAYED).contains(&bare_of(&users[bob])),
        "Bob's instance did not relay his message"
    );

    // Alice's receipt and marker go through the other instance.
    clients[alice].send_ex(
        &bp,
        None,
        None,
        &format!("<received xmlns='{RECEIPTS}' id='{}'/>", seen.id),
    );
    let ack = clients[bob].expect_one(None);
    let received = ack
        .child(RECEIPTS, "received")
        .unwrap_or_else(|| panic!("the receipt did not cross instances: {ack:#?}"));
    assert_eq!(received.attr("id"), Some(original.as_str()), "{ack:#?}");
    clients[alice].send_ex(
        &bp,
        None,
        None,
        &format!("<displayed xmlns='{MARKERS}' id='{}'/>", seen.id),
    );
    let marker = clients[bob].expect_one(None);
    let displayed = marker
        .child(MARKERS, "displayed")
        .unwrap_or_else(|| panic!("the marker did not cross instances: {marker:#?}"));
    assert_eq!(displayed.attr("id"), Some(original.as_str()), "{marker:#?}");
    assert_eq!(
        relayed(other_relay),
        other_relayed_before + 2,
        "the other instance should have relayed the receipt and the marker"
    );

    // Alice's message and her correction, relayed by her instance, reach
    // Bob with the id he knows it by.
    let hers = format!("alice-{}", random_hex(4));
    clients[alice].send_ex(&bp, Some("helo"), Some(&hers), "");
    let first = expect_relayed(&mut clients[bob], &ap, "helo");
    clients[alice].send_ex(
        &bp,
        Some("hello"),
        None,
        &format!("<replace xmlns='{CORRECT}' id='{hers}'/>"),
    );
    let fix = expect_relayed(&mut clients[bob], &ap, "hello");
    let replace = fix
        .child(CORRECT, "replace")
        .unwrap_or_else(|| panic!("the correction lost its reference: {fix:#?}"));
    assert_eq!(replace.attr("id"), Some(first.id.as_str()), "{fix:#?}");

    // Carol's account goes away; ejabberd answers Bob's message to her
    // pseudonym with an error from her address, which comes to the relay
    // through her instance, not Bob's.
    clients[carol].quit();
    ej.ctl(&["unregister", &users[carol], HOST])
        .unwrap_or_else(|e| panic!("{e}"));
    let lost = format!("bob-lost-{}", random_hex(4));
    clients[bob].send_ex(&cp, Some("anyone there?"), Some(&lost), "");
    let bounce = clients[bob].expect_one(None);
    assert_eq!(bounce.kind, "error", "expected a bounce: {bounce:#?}");
    assert_eq!(bounce.id, lost, "{bounce:#?}");
    assert_eq!(
        bounce.sender_bare(),
        cp,
        "the bounce must come from C': {bounce:#?}"
    );
    assert!(
        other_relay.log().contains(" DEBUG bounced "),
        "the bounce was not handled by Carol's instance"
    );
    assert!(!bob_relay.log().contains(" DEBUG bounced "));

    // A ban given through the other instance's control socket reaches
    // Bob's instance through the store within a second.
    let out = other_relay.command(&["ban", &bp, "--reason", "report"]);
    assert!(
        out.status.success(),
        "ban: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(1500));
    clients[bob].send(&ap, "after the ban");
    let refused = clients[bob].expect_one(None);
    assert_eq!(
        refused.error,
        Some(("cancel".to_owned(), "forbidden".to_owned())),
        "{refused:#?}"
    );
    clients[alice].expect_none(Duration::from_secs(1));
    assert!(
        bob_relay.log().contains(" is banned; "),
        "Bob's instance did not refuse him"
    );

    // Neither received anything naming the other.
    let (lo, hi) = (alice.min(bob), alice.max(bob));
    let (below, above) = clients.split_at_mut(hi);
    assert_no_trace_of(&above[0], &[], &mut below[lo]);
    assert_no_trace_of(&below[lo], &[], &mut above[0]);
    let mut online: Vec<Client> = clients
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != carol)
        .map(|(_, c)| c)
        .collect();
    finish(ej, [&mut r1, &mut r2], &mut online);
}

/// The other side of the trade-off (SPEC §8): two instances on one domain
/// without `domain_balancing`. ejabberd picks a connection at random for
/// every stanza, so one sender's messages are spread over both instances
/// (and may overtake each other), and when one instance stops the other
/// carries everything: nothing is lost.
#[test]
fn without_domain_balancing_traffic_fails_over() {
    let memcached = Memcached::start();
    let ej = Ejabberd::start(1);
    let opts = RelayOptions {
        memcache: Some((memcached.addr(), random_secret())),
        keepalive: (3600, "ping"),
        ..RelayOptions::default()
    };
    let [mut r1, mut r2] = start_relays(&ej, &opts, ["smol", "smol"]);
    let (mut a, ap) = online(&ej, "alice");
    let (mut b, bp) = online(&ej, "bob");

    let sent: Vec<String> = (0..40).map(|i| format!("spread {i:02}")).collect();
    for body in &sent {
        b.send(&ap, body);
    }
    let got = a.expect_within(sent.len(), Duration::from_secs(20), None);
    for m in &got {
        check_relayed(m, &a, &bp, m.body.as_deref().unwrap_or(""));
    }
    let mut bodies: Vec<String> = got.iter().filter_map(|m| m.body.clone()).collect();
    let in_order = bodies == sent;
    bodies.sort();
    assert_eq!(bodies, sent, "lost or duplicated messages");
    let (c1, c2) = (relayed(&r1), relayed(&r2));
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

    finish(ej, [&mut r2], [&mut a, &mut b]);
}

/// Under `domain_balancing` ejabberd routes the answer to a keepalive ping
/// (by its source, `bare_source`) to one slot only. With pings, the other
/// instance never sees an answer and reconnects every two keepalive
/// intervals; with `keepalive_mode = whitespace` (what the README tells
/// operators of balanced domains to set) every instance stays connected.
#[test]
fn balanced_instances_stay_connected_when_idle() {
    let ej = Ejabberd::start(2);
    let opts = RelayOptions {
        keepalive: (2, "whitespace"),
        ..RelayOptions::default()
    };
    let [mut r1, mut r2] = start_relays(&ej, &opts, ["smol", "blocking"]);
    let quiet = !wait_until(Duration::from_secs(9), || ej.component_logins() > 2);
    assert!(
        quiet,
        "an idle instance reconnected:\n{}\n---\n{}",
        r1.log(),
        r2.log()
    );
    finish(ej, [&mut r1, &mut r2], []);
}
