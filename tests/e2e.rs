//! End to end: a real Prosody 0.12 on 127.0.0.1, the `axrelay` binary as its
//! component, and real XMPP clients (slixmpp). The conversation of SPEC §1 and
//! what must survive it: no real JID reaches the other side, pseudonyms are
//! stable, bounces, receipts, chat states, restarts, both runtimes.
//!
//! Needs `prosody` and `python3-slixmpp` (installed with apt-get when the
//! tests run as root and they are missing; otherwise the tests fail and say
//! what to install).

use std::path::Path;
use std::time::Duration;

use axrelay_test_support::e2e::{
    assert_no_trace_of, bare, check_relayed, check_unknown_pseudonym, expect_relayed, random_hex,
    random_secret, Client, Elem, Identity, Memcached, Msg, Prosody, ProsodyOptions, Relay,
    RelayOptions, Store, COMPONENT, HOST, RELAY_RESOURCE, WAIT,
};

/// Only the root package's tests know where cargo put the binary.
const AXRELAY: &str = env!("CARGO_BIN_EXE_axrelay");
const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
const RECEIPTS: &str = "urn:xmpp:receipts";
const MARKERS: &str = "urn:xmpp:chat-markers:0";
const CORRECT: &str = "urn:xmpp:message-correct:0";
const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";
const DELAY: &str = "urn:xmpp:delay";

/// One Prosody, one relay, two users online (each with a random resource).
struct Rig {
    alice: Client,
    bob: Client,
    /// Resources each user had before its current session.
    alice_past: Vec<String>,
    bob_past: Vec<String>,
    relay: Relay,
    prosody: Prosody,
}

impl Rig {
    fn start(runtime: &str, opts: ProsodyOptions, store: Store) -> Rig {
        Rig::start_with(
            runtime,
            opts,
            RelayOptions {
                store,
                ..RelayOptions::default()
            },
        )
    }

    fn start_with(runtime: &str, opts: ProsodyOptions, relay: RelayOptions) -> Rig {
        let prosody = Prosody::start(opts);
        let relay = Relay::start_with(Path::new(AXRELAY), &prosody, runtime, relay);
        let alice = Client::login_new(&prosody, &prosody.account("alice"));
        let bob = Client::login_new(&prosody, &prosody.account("bob"));
        Rig {
            alice,
            bob,
            alice_past: Vec::new(),
            bob_past: Vec::new(),
            relay,
            prosody,
        }
    }

    fn new(runtime: &str) -> Rig {
        Rig::start(runtime, ProsodyOptions::default(), Store::Memory)
    }

    /// Alice logs out; `online` → she logs in again with a new resource.
    fn alice_relogin(&mut self, online: bool) {
        self.alice.quit();
        self.alice_past.push(self.alice.resource.clone());
        if online {
            self.alice = Client::login_new(&self.prosody, &self.alice.user.clone());
        }
    }

    /// Neither user saw anything naming the other (checks the clients that
    /// are still online).
    fn check_no_trace(&mut self) {
        if std::env::var_os("AXRELAY_E2E_SHOW_XML").is_some() {
            for c in [&mut self.alice, &mut self.bob] {
                if c.online() {
                    let raw = c.raw_log();
                    eprintln!("---- XML received by {} ----\n{raw}\n", c.user);
                }
            }
        }
        if self.alice.online() {
            assert_no_trace_of(&self.bob, &self.bob_past, &mut self.alice);
        }
        if self.bob.online() {
            assert_no_trace_of(&self.alice, &self.alice_past, &mut self.bob);
        }
    }

    /// The privacy check, then the relay must stop with status 0.
    fn finish(mut self) {
        self.check_no_trace();
        self.relay.stop_cleanly();
        self.alice.quit();
        self.bob.quit();
    }
}

/// Generate `#[test] fn smol()` and `#[test] fn blocking()` in a module
/// named after a scenario function taking the runtime's name.
macro_rules! both_runtimes {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn smol() {
                super::$scenario("smol");
            }
            #[test]
            fn blocking() {
                super::$scenario("blocking");
            }
        }
    )*};
}

both_runtimes!(
    whoami_and_relay_both_ways,
    pseudonym_stable_across_logins,
    unknown_pseudonym_is_item_not_found,
    rate_limit_refuses_the_excess,
    a_ban_through_the_control_socket_refuses_within_a_second,
    bounce_when_recipient_offline,
    offline_storage_delivers_at_next_login,
    unicode_and_large_bodies_byte_identical,
    burst_of_50_in_order,
    chat_state_and_receipt,
    iq_and_presence_stay_with_the_relay,
    every_device_gets_relayed_messages,
    correction_and_markers,
    identifying_extensions_are_dropped,
    hot_standby_takes_over,
    restart_keeps_mappings,
    full_identity_offline_and_a_new_resource,
    two_devices_with_carbons,
    receipts_and_typing_from_two_devices,
    restart_keeps_mappings_with_memcached,
    keepalives_keep_an_idle_relay_connected,
);

/// The rig itself, without the relay: two clients talk directly.
#[test]
fn rig_direct_chat_without_relay() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let mut alice = Client::login_new(&prosody, &prosody.account("alice"));
    let mut bob = Client::login_new(&prosody, &prosody.account("bob"));
    let id = bob.send(&alice.bare(), "direct héllo");
    let m = alice.expect_one(None);
    assert_eq!(m.body.as_deref(), Some("direct héllo"));
    assert_eq!(m.id, id);
    assert_eq!(m.from, format!("{}/{}", bob.bare(), bob.resource));
    // The privacy check does see a real JID when there is one.
    assert!(alice.raw_log().contains(&bob.bare()));
    alice.quit();
    bob.quit();
}

/// SPEC §1: both learn their pseudonyms, then talk through them.
fn whoami_and_relay_both_ways(runtime: &str) {
    let mut r = Rig::new(runtime);
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    assert_ne!(a, b);

    let sent = r.bob.send(&a, "Hello Alice, this is B'.");
    let m = expect_relayed(&mut r.alice, &b, "Hello Alice, this is B'.");
    assert_ne!(m.id, sent, "the relayed message must get a fresh id");

    r.alice.send(&b, "Hello stranger.");
    expect_relayed(&mut r.bob, &a, "Hello stranger.");

    r.bob.send(&a, "Once more.");
    expect_relayed(&mut r.alice, &b, "Once more.");
    r.finish();
}

/// SPEC §1.5 and §3: identity = bare, so a new resource keeps the
/// pseudonym, and messages to it reach the new session.
fn pseudonym_stable_across_logins(runtime: &str) {
    let mut r = Rig::new(runtime);
    let first = r.alice.whoami();
    let b = r.bob.whoami();

    r.alice_relogin(true);
    assert_eq!(
        r.alice.whoami(),
        first,
        "pseudonym changed with the resource"
    );

    // Two resources online at once: still one pseudonym.
    let mut second = Client::login_new(&r.prosody, &r.alice.user);
    assert_eq!(second.whoami(), first);
    second.quit();
    r.alice_past.push(second.resource.clone());

    r.bob.send(&first, "still you?");
    expect_relayed(&mut r.alice, &b, "still you?");
    r.finish();
}

/// SPEC §5: over the message rate limit the sender gets policy-violation
/// (`wait`) from the pseudonym it wrote to, the recipient gets nothing of
/// the excess, and another sender is not held up.
fn rate_limit_refuses_the_excess(runtime: &str) {
    let mut r = Rig::start_with(
        runtime,
        ProsodyOptions::default(),
        RelayOptions {
            extra: "[limits]\nsender_rate = 0.01\nsender_burst = 3\n".into(),
            ..RelayOptions::default()
        },
    );
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    for i in 0..5 {
        r.bob.send(&a, &format!("message {i}"));
    }
    for i in 0..3 {
        expect_relayed(&mut r.alice, &b, &format!("message {i}"));
    }
    let refused = r.bob.expect(2, None);
    for m in &refused {
        assert_eq!(
            m.error,
            Some(("wait".to_owned(), "policy-violation".to_owned())),
            "{m:#?}"
        );
        assert_eq!(
            bare(&m.from),
            a,
            "the error comes from the pseudonym: {m:#?}"
        );
    }
    r.alice.expect_none(Duration::from_secs(2));
    r.alice.send(&b, "another sender is fine");
    expect_relayed(&mut r.bob, &a, "another sender is fine");
    r.finish();
}

/// `forbidden` (`cancel`) from `from`.
fn assert_forbidden(m: &Msg, from: &str) {
    assert_eq!(
        m.error,
        Some(("cancel".to_owned(), "forbidden".to_owned())),
        "{m:#?}"
    );
    assert_eq!(bare(&m.from), from, "the error comes from {from}: {m:#?}");
}

/// `axrelay ARGS` beside the running relay: it must succeed and say that the
/// relay answered (through its control socket). Its standard output.
fn through_the_relay(relay: &Relay, args: &[&str]) -> String {
    let out = relay.command(args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
    assert!(
        stderr.contains("answered by the running relay"),
        "{args:?} did not go through the relay: {stderr}"
    );
    stdout
}

/// SPEC §5, §7: with the file store (which the relay holds), `axrelay ban`
/// reaches the running relay through its control socket; within about a
/// second the banned sender gets `forbidden` and the recipient nothing,
/// messages to the banned pseudonym are refused too, others go on; `bans`
/// lists it, `hash --lookup` works beside the relay, `unban` restores it.
fn a_ban_through_the_control_socket_refuses_within_a_second(runtime: &str) {
    let mut r = Rig::start(runtime, ProsodyOptions::default(), Store::File);
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    let mut carol = Client::login_new(&r.prosody, &r.prosody.account("carol"));
    let c = carol.whoami();
    r.bob.send(&a, "before the ban");
    expect_relayed(&mut r.alice, &b, "before the ban");

    // The relay's user (and root) only.
    let mode = std::fs::metadata(r.relay.control_path())
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.ok(), Some(0o600));

    // An abuse report names B': who is it?
    let found = through_the_relay(&r.relay, &["hash", "-v", "--lookup", &b]);
    assert_eq!(found, format!("{b} => {}\n", r.bob.bare()));

    let said = through_the_relay(&r.relay, &["ban", "-v", &b, "--reason", "abuse report 1"]);
    assert_eq!(said, format!("{b} banned\n"));
    std::thread::sleep(Duration::from_millis(1500));

    r.bob.send(&a, "after the ban");
    assert_forbidden(&r.bob.expect_one(None), &a);
    r.bob.send(COMPONENT, "/whoami");
    assert_forbidden(&r.bob.expect_one(None), COMPONENT);
    r.alice.send(&b, "to the banned one");
    assert_forbidden(&r.alice.expect_one(None), &b);
    r.alice.expect_none(Duration::from_secs(1));
    carol.send(&a, "another sender is fine");
    expect_relayed(&mut r.alice, &c, "another sender is fine");

    let listed = through_the_relay(&r.relay, &["bans", "-v"]);
    assert!(
        listed.starts_with(&format!("{b}  ")) && listed.trim_end().ends_with("  abuse report 1"),
        "{listed}"
    );
    let log = r.relay.log();
    assert!(
        log.contains(&format!("control socket: ban {}", local_of(&b))),
        "{log}"
    );
    assert!(!log.contains(&r.bob.bare()), "the log names bob");

    let said = through_the_relay(&r.relay, &["unban", "-v", &b]);
    assert_eq!(said, format!("{b} unbanned\n"));
    std::thread::sleep(Duration::from_millis(1500));
    r.bob.send(&a, "after the unban");
    expect_relayed(&mut r.alice, &b, "after the unban");
    carol.quit();
    r.finish();
}

fn local_of(pseudonym: &str) -> &str {
    pseudonym.split('@').next().unwrap_or(pseudonym)
}

/// SPEC §5: a pseudonym nobody has → item-not-found from that pseudonym.
fn unknown_pseudonym_is_item_not_found(runtime: &str) {
    let mut r = Rig::new(runtime);
    r.bob.whoami();
    check_unknown_pseudonym(&mut r.bob, &mut r.alice);
    r.finish();
}

/// SPEC §5: with mod_offline disabled the recipient's server bounces; the
/// bounce reaches the sender from the recipient's pseudonym and carries
/// nothing of the recipient.
fn bounce_when_recipient_offline(runtime: &str) {
    let mut r = Rig::start(
        runtime,
        ProsodyOptions {
            offline_storage: false,
        },
        Store::Memory,
    );
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    r.bob.send(&a, "while you are here");
    expect_relayed(&mut r.alice, &b, "while you are here");

    r.alice_relogin(false);
    r.bob.send(&a, "are you there?");
    let m = r.bob.expect_one(None);
    assert_eq!(m.kind, "error", "expected a bounce, got {m:#?}");
    assert_eq!(m.sender_bare(), a, "the bounce must come from A': {m:#?}");
    let (kind, condition) = m.error.clone().expect("an <error/> child");
    assert!(
        !condition.is_empty(),
        "bounce without a defined condition: {m:#?}"
    );
    // Rebuilt from type and condition only: no echoed payload, no <text/>.
    assert_eq!(m.body, None, "the bounce echoes the body: {m:#?}");
    assert_eq!(
        m.children.len(),
        1,
        "the bounce carries more than <error/>: {m:#?}"
    );
    assert_eq!(
        m.children[0].children.len(),
        1,
        "more than a condition in <error/>: {m:#?}"
    );
    eprintln!("bounce as bob saw it: type={kind} condition={condition}");
    r.finish();
}

/// SPEC §8: the relay addresses the bare JID, so the server's offline
/// storage keeps the messages until the next login (a new resource); they
/// arrive in order from B', bodies intact, with nothing that identifies B,
/// and a receipt sent at that login still reaches B with B's own id.
fn offline_storage_delivers_at_next_login(runtime: &str) {
    let mut r = Rig::new(runtime);
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    r.alice_relogin(false);
    r.bob.send(&a, "for when you are back");
    let original = format!("bob-offline-{}", random_hex(4));
    r.bob.send_ex(
        &a,
        Some("and a second one, receipt please"),
        Some(&original),
        &format!("<request xmlns='{RECEIPTS}'/>"),
    );
    // Stored, not bounced.
    r.bob.expect_none(Duration::from_secs(1));

    r.alice = Client::login_new(&r.prosody, &r.alice.user.clone());
    let got = r.alice.expect(2, None);
    let bodies = ["for when you are back", "and a second one, receipt please"];
    for (m, body) in got.iter().zip(bodies) {
        check_relayed(m, &r.alice, &b, body);
        // Prosody's offline storage stamps it: proof it was kept, not live.
        let delay = m
            .child(DELAY, "delay")
            .unwrap_or_else(|| panic!("not from offline storage: {m:#?}"));
        assert_eq!(delay.attr("from"), Some(HOST), "{m:#?}");
    }
    let stored = &got[1];
    assert_ne!(
        stored.id, original,
        "the relayed message must get a fresh id"
    );
    assert!(stored.child(RECEIPTS, "request").is_some(), "{stored:#?}");
    // Nothing in any byte alice received names bob.
    assert_no_trace_of(&r.bob, &r.bob_past, &mut r.alice);

    // The receipt from the new session reaches bob, with bob's id.
    r.alice.send_ex(
        &b,
        None,
        None,
        &format!("<received xmlns='{RECEIPTS}' id='{}'/>", stored.id),
    );
    let ack = r.bob.expect_one(None);
    assert_eq!(ack.from, format!("{a}/{RELAY_RESOURCE}"), "{ack:#?}");
    let received = ack
        .child(RECEIPTS, "received")
        .unwrap_or_else(|| panic!("no receipt: {ack:#?}"));
    assert_eq!(received.attr("id"), Some(original.as_str()), "{ack:#?}");

    r.alice.send(&b, "I am back");
    expect_relayed(&mut r.bob, &a, "I am back");
    r.finish();
}

/// Bodies arrive byte for byte: any script, XML specials, whitespace, 10 KB.
fn unicode_and_large_bodies_byte_identical(runtime: &str) {
    let mut r = Rig::new(runtime);
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    let mut ten_kb = String::new();
    let pattern = "Grüße, 世界! Привет 👋🏽 مرحبا ";
    while ten_kb.len() < 10 * 1024 {
        ten_kb.push_str(pattern);
    }
    let bodies = [
        "Grüße aus Köln — ça va? Ελληνικά, 日本語, עברית, हिन्दी, 🏳️‍🌈👩‍👩‍👧 e\u{301}".to_string(),
        "<b>not markup</b> & 'quotes' \"double\" ]]> &amp; <![CDATA[x]]>".to_string(),
        "  leading and trailing spaces  \n second line\n\tindented\n".to_string(),
        "\u{200f}\u{202e}mixed direction\u{202c} \u{feff}zero\u{200b}width\u{fe0f}".to_string(),
        ten_kb.clone(),
    ];
    for body in &bodies {
        r.bob.send(&a, body);
        expect_relayed(&mut r.alice, &b, body);
    }
    r.alice.send(&b, &ten_kb);
    expect_relayed(&mut r.bob, &a, &ten_kb);
    r.finish();
}

/// 50 messages sent back to back arrive complete and in order.
fn burst_of_50_in_order(runtime: &str) {
    let mut r = Rig::new(runtime);
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    let sent: Vec<String> = (0..50).map(|i| format!("burst message {i:02}")).collect();
    for body in &sent {
        r.bob.send(&a, body);
    }
    let got = r.alice.wait(50, Duration::from_secs(20), None);
    let bodies: Vec<String> = got
        .iter()
        .map(|m| m.body.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        bodies, sent,
        "burst lost, duplicated or reordered: {got:#?}"
    );
    assert!(got
        .iter()
        .all(|m| m.from == format!("{b}/{RELAY_RESOURCE}")));
    r.finish();
}

/// A typing notification and a delivery receipt cross the relay; the
/// receipt comes back carrying the id the sender chose.
fn chat_state_and_receipt(runtime: &str) {
    let mut r = Rig::new(runtime);
    let a = r.alice.whoami();
    let b = r.bob.whoami();

    // Typing: body-less, only a chat state.
    r.bob.send_ex(
        &a,
        None,
        Some("typing-1"),
        &format!("<composing xmlns='{CHATSTATES}'/>"),
    );
    let m = r.alice.expect_one(None);
    assert_eq!(m.from, format!("{b}/{RELAY_RESOURCE}"), "{m:#?}");
    assert_eq!(m.body, None, "{m:#?}");
    assert!(
        m.child(CHATSTATES, "composing").is_some(),
        "chat state lost: {m:#?}"
    );

    // A message asking for a receipt.
    let original = format!("bob-original-{}", random_hex(4));
    r.bob.send_ex(
        &a,
        Some("did you get this?"),
        Some(&original),
        &format!("<active xmlns='{CHATSTATES}'/><request xmlns='{RECEIPTS}'/>"),
    );
    let m = expect_relayed(&mut r.alice, &b, "did you get this?");
    assert_ne!(m.id, original, "the relayed message must get a fresh id");
    assert!(!m.id.is_empty(), "a receipt request needs an id: {m:#?}");
    assert!(
        m.child(RECEIPTS, "request").is_some(),
        "receipt request lost: {m:#?}"
    );
    assert!(
        m.child(CHATSTATES, "active").is_some(),
        "chat state lost: {m:#?}"
    );

    // Alice's client acknowledges the id it saw.
    r.alice.send_ex(
        &b,
        None,
        Some("ack-1"),
        &format!("<received xmlns='{RECEIPTS}' id='{}'/>", m.id),
    );
    let ack = r.bob.expect_one(None);
    assert_eq!(ack.from, format!("{a}/{RELAY_RESOURCE}"), "{ack:#?}");
    let received = ack
        .child(RECEIPTS, "received")
        .unwrap_or_else(|| panic!("no receipt: {ack:#?}"));
    assert_eq!(
        received.attr("id"),
        Some(original.as_str()),
        "receipt id not translated back: {ack:#?}"
    );
    r.finish();
}

/// SPEC §5: IQs to a pseudonym are answered by the relay, never forwarded;
/// presence is synthesised, never relayed; the relay's own JID answers
/// disco and ping but gives away no software version.
fn iq_and_presence_stay_with_the_relay(runtime: &str) {
    let mut r = Rig::new(runtime);
    let a = r.alice.whoami();
    r.bob.whoami();
    let full_a = format!("{a}/{RELAY_RESOURCE}");

    let queries = [
        ("query", "jabber:iq:version"),
        ("time", "urn:xmpp:time"),
        ("ping", "urn:xmpp:ping"),
        ("query", "http://jabber.org/protocol/disco#info"),
        ("vCard", "vcard-temp"),
    ];
    for (tag, ns) in queries {
        for to in [a.as_str(), full_a.as_str()] {
            let id = format!("q-{}", random_hex(3));
            r.bob.raw(&format!(
                "<iq type='get' id='{id}' to='{to}'><{tag} xmlns='{ns}'/></iq>"
            ));
            let iq = r.bob.iq_answer(&id);
            assert_eq!(iq.id, id, "{iq:#?}");
            assert_eq!(iq.sender_bare(), a, "{iq:#?}");
            assert_eq!(
                iq.kind, "error",
                "{ns} IQ to {to} must not be answered: {iq:#?}"
            );
            let (_, condition) = iq.error.clone().expect("an <error/> child");
            assert_eq!(condition, "service-unavailable", "{iq:#?}");
        }
    }

    // The relay's own JID.
    let id = format!("disco-{}", random_hex(3));
    r.bob.raw(&format!(
        "<iq type='get' id='{id}' to='{COMPONENT}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    let iq = r.bob.iq_answer(&id);
    assert_eq!(iq.kind, "result", "{iq:#?}");
    let identity = iq
        .children
        .first()
        .and_then(|q| q.children.iter().find(|c| c.tag == "identity"))
        .unwrap_or_else(|| panic!("no identity: {iq:#?}"));
    assert_eq!(identity.attr("category"), Some("component"), "{iq:#?}");
    for (tag, ns, want) in [
        ("ping", "urn:xmpp:ping", "result"),
        ("query", "jabber:iq:version", "error"),
    ] {
        let id = format!("q-{}", random_hex(3));
        r.bob.raw(&format!(
            "<iq type='get' id='{id}' to='{COMPONENT}'><{tag} xmlns='{ns}'/></iq>"
        ));
        let iq = r.bob.iq_answer(&id);
        assert_eq!(
            (iq.id.as_str(), iq.kind.as_str()),
            (id.as_str(), want),
            "{ns}: {iq:#?}"
        );
    }

    // Presence: a subscription is answered by the pseudonym; bob's own
    // presence (with a status) never reaches alice.
    r.bob.raw(&format!("<presence to='{a}' type='subscribe'/>"));
    let got = r.bob.wait_kind("presence", 1, WAIT, Some(&a));
    let p = got
        .first()
        .unwrap_or_else(|| panic!("no answer to a subscription"));
    assert_eq!(p.kind, "subscribed", "{p:#?}");
    let status = format!("status-{}", random_hex(4));
    r.bob.raw(&format!(
        "<presence to='{full_a}'><show>dnd</show><status>{status}</status></presence>"
    ));

    // Alice saw none of it.
    r.alice.expect_none(Duration::from_millis(500));
    let raw = r.alice.raw_log();
    for leak in [
        status.as_str(),
        "jabber:iq:version",
        "urn:xmpp:time",
        "vcard-temp",
        "type='subscribe'",
    ] {
        assert!(!raw.contains(leak), "alice received {leak:?}");
    }
    r.finish();
}

/// Message correction and chat markers refer to message ids; each side
/// must see the ids it knows.
fn correction_and_markers(runtime: &str) {
    let mut r = Rig::new(runtime);
    let a = r.alice.whoami();
    let b = r.bob.whoami();

    let original = format!("bob-typo-{}", random_hex(4));
    r.bob.send_ex(
        &a,
        Some("helo"),
        Some(&original),
        &format!("<markable xmlns='{MARKERS}'/>"),
    );
    let seen = expect_relayed(&mut r.alice, &b, "helo");
    assert!(
        seen.child(MARKERS, "markable").is_some(),
        "markable lost: {seen:#?}"
    );

    // Bob corrects his own message: alice must see the id she knows.
    r.bob.send_ex(
        &a,
        Some("hello"),
        Some(&format!("bob-fix-{}", random_hex(4))),
        &format!("<replace xmlns='{CORRECT}' id='{original}'/>"),
    );
    let fix = expect_relayed(&mut r.alice, &b, "hello");
    let replace = fix
        .child(CORRECT, "replace")
        .unwrap_or_else(|| panic!("correction lost: {fix:#?}"));
    assert_eq!(
        replace.attr("id"),
        Some(seen.id.as_str()),
        "the correction must name the id alice saw ({}), not bob's ({original}): {fix:#?}",
        seen.id
    );

    // Alice marks it displayed: bob must see his own id.
    r.alice.send_ex(
        &b,
        None,
        None,
        &format!("<displayed xmlns='{MARKERS}' id='{}'/>", seen.id),
    );
    let marker = r.bob.expect_one(None);
    assert_eq!(marker.from, format!("{a}/{RELAY_RESOURCE}"), "{marker:#?}");
    let displayed = marker
        .child(MARKERS, "displayed")
        .unwrap_or_else(|| panic!("marker lost: {marker:#?}"));
    assert_eq!(displayed.attr("id"), Some(original.as_str()), "{marker:#?}");
    r.finish();
}

/// SPEC §5 allow-list, with what real clients attach: everything that can
/// name the sender (nick, reply, addresses, OMEMO, origin-id, …) is dropped;
/// body, subject and thread arrive, `xml:lang` on the body is kept.
fn identifying_extensions_are_dropped(runtime: &str) {
    let mut r = Rig::new(runtime);
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    let me = format!("{}/{}", r.bob.bare(), r.bob.resource);
    let extra = format!(
        "<subject>Subject line</subject>\
         <thread>thread-{t}</thread>\
         <nick xmlns='http://jabber.org/protocol/nick'>{user}</nick>\
         <origin-id xmlns='urn:xmpp:sid:0' id='{user}-origin'/>\
         <reply xmlns='urn:xmpp:reply:0' to='{me}' id='x1'/>\
         <addresses xmlns='http://jabber.org/protocol/address'>\
           <address type='ofrom' jid='{me}'/></addresses>\
         <encrypted xmlns='eu.siacs.conversations.axolotl'>\
           <header sid='{sid}'><iv>AAAA</iv></header></encrypted>\
         <html xmlns='http://jabber.org/protocol/xhtml-im'>\
           <body xmlns='http://www.w3.org/1999/xhtml'>{user}</body></html>\
         <x xmlns='jabber:x:oob'><url>https://example.invalid/{user}</url></x>\
         <delay xmlns='urn:xmpp:delay' from='{me}' stamp='2002-09-10T23:08:25Z'/>\
         <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='client-{user}' ver='x'/>\
         <x xmlns='urn:example:unknown'>{user}</x>",
        t = random_hex(3),
        user = r.bob.user,
        sid = 4_000_000_000u32,
    );
    r.bob.send_ex(&a, Some("plain text"), None, &extra);
    let m = expect_relayed(&mut r.alice, &b, "plain text");
    let mut kept: Vec<(String, String)> = m
        .children
        .iter()
        .map(|c| (c.ns.clone(), c.tag.clone()))
        .collect();
    kept.sort();
    let client = |t: &str| ("jabber:client".to_string(), t.to_string());
    assert_eq!(
        kept,
        vec![client("body"), client("subject"), client("thread")],
        "only body, subject and thread may arrive: {m:#?}"
    );
    assert!(
        !r.alice.raw_log().contains("4000000000"),
        "the OMEMO device id arrived"
    );

    // xml:lang on the body is kept.
    r.bob
        .send_ex(&a, None, None, "<body xml:lang='de'>Hallo</body>");
    let m = expect_relayed(&mut r.alice, &b, "Hallo");
    let body = m.child("jabber:client", "body").unwrap();
    assert_eq!(
        body.attr("{http://www.w3.org/XML/1998/namespace}lang"),
        Some("de"),
        "{m:#?}"
    );
    r.finish();
}

/// SPEC §8: one account on two devices gets relayed messages on each (the
/// relay addresses the bare JID; the server routes).
fn every_device_gets_relayed_messages(runtime: &str) {
    let mut r = Rig::new(runtime);
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    let mut phone = Client::login_new(&r.prosody, &r.alice.user);
    r.bob.send(&a, "to all of your devices");
    expect_relayed(&mut r.alice, &b, "to all of your devices");
    expect_relayed(&mut phone, &b, "to all of your devices");
    assert_no_trace_of(&r.bob, &[], &mut phone);
    phone.quit();
    r.alice_past.push(phone.resource.clone());
    r.finish();
}

/// SPEC §8: Prosody allows one connection per component. A second instance
/// is refused with `conflict`, keeps retrying, and takes over when the
/// first stops; with the same secret it gives the same pseudonyms.
fn hot_standby_takes_over(runtime: &str) {
    let mut r = Rig::new(runtime);
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    let mut standby = r.relay.standby(&r.prosody);
    assert!(standby.running(), "the standby gave up after `conflict`");
    // The first instance still serves.
    r.bob.send(&a, "first instance");
    expect_relayed(&mut r.alice, &b, "first instance");

    let before = r.prosody.component_logins();
    r.relay.stop_cleanly();
    let stopped = std::time::Instant::now();
    standby.wait_connected(&r.prosody, before, Duration::from_secs(75));
    eprintln!(
        "standby took over {:?} after the first instance stopped",
        stopped.elapsed()
    );
    r.relay = standby;

    // Memory store: the standby learns mappings afresh, same pseudonyms.
    assert_eq!(r.alice.whoami(), a);
    assert_eq!(r.bob.whoami(), b);
    r.bob.send(&a, "second instance");
    expect_relayed(&mut r.alice, &b, "second instance");
    r.finish();
}

/// Bob asks for a receipt and marks his message markable; what Alice saw.
fn ask_for_acknowledgements(r: &mut Rig, a: &str, b: &str) -> (String, Msg) {
    let original = format!("bob-before-{}", random_hex(4));
    r.bob.send_ex(
        a,
        Some("acknowledge this after the restart"),
        Some(&original),
        &format!("<request xmlns='{RECEIPTS}'/><markable xmlns='{MARKERS}'/>"),
    );
    let seen = expect_relayed(&mut r.alice, b, "acknowledge this after the restart");
    (original, seen)
}

/// Alice's receipt and displayed marker for `seen` reach Bob with his own
/// id, though the relay that gave `seen` its id has restarted since (the id
/// carries its way back, SPEC §5).
fn acknowledged_after_the_restart(r: &mut Rig, a: &str, b: &str, original: &str, seen: &Msg) {
    r.alice.send_ex(
        b,
        None,
        None,
        &format!("<received xmlns='{RECEIPTS}' id='{}'/>", seen.id),
    );
    let ack = r.bob.expect_one(None);
    assert_eq!(ack.from, format!("{a}/{RELAY_RESOURCE}"), "{ack:#?}");
    let received = ack
        .child(RECEIPTS, "received")
        .unwrap_or_else(|| panic!("no receipt after the restart: {ack:#?}"));
    assert_eq!(received.attr("id"), Some(original), "{ack:#?}");
    r.alice.send_ex(
        b,
        None,
        None,
        &format!("<displayed xmlns='{MARKERS}' id='{}'/>", seen.id),
    );
    let marker = r.bob.expect_one(None);
    let displayed = marker
        .child(MARKERS, "displayed")
        .unwrap_or_else(|| panic!("no marker after the restart: {marker:#?}"));
    assert_eq!(displayed.attr("id"), Some(original), "{marker:#?}");
}

/// With the file store, a pseudonym learnt before a restart still works
/// after it (SPEC §1.5), in both directions, and a receipt and a marker for
/// a message relayed before the restart reach its sender.
fn restart_keeps_mappings(runtime: &str) {
    // One runtime with the store encrypted, the other in clear.
    let store = if runtime == "smol" {
        Store::File
    } else {
        Store::EncryptedFile
    };
    let mut r = Rig::start(runtime, ProsodyOptions::default(), store);
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    r.bob.send(&a, "before the restart");
    expect_relayed(&mut r.alice, &b, "before the restart");
    let (original, seen) = ask_for_acknowledgements(&mut r, &a, &b);

    r.relay.restart(&r.prosody);
    acknowledged_after_the_restart(&mut r, &a, &b, &original, &seen);

    r.bob.send(&a, "after the restart");
    expect_relayed(&mut r.alice, &b, "after the restart");
    r.alice.send(&b, "got it");
    expect_relayed(&mut r.bob, &a, "got it");

    let db = std::fs::read(r.relay.store_path()).expect("the store file exists");
    let contains = |needle: &str| db.windows(needle.len()).any(|w| w == needle.as_bytes());
    if store == Store::EncryptedFile {
        for secret in [&r.alice.user, &r.bob.user, &a, &b] {
            assert!(
                !contains(secret),
                "the encrypted store file contains {secret:?}"
            );
        }
    } else {
        assert!(
            contains(&r.alice.user),
            "the store file should hold alice's mapping in clear"
        );
    }
    r.finish();
}

/// `[hash] identity = full` (the 2014 mode): a pseudonym per resource. A
/// message to the pseudonym of a resource that has gone is addressed to
/// that full JID; Prosody handles a chat message to an unavailable full JID
/// as if it were sent to the bare JID (RFC 6121 §8.5.3.2.1), so it is kept
/// offline and delivered at the next login, whatever the resource. The
/// answer from the new resource comes from a different pseudonym, and a
/// receipt from it does not reach the sender.
fn full_identity_offline_and_a_new_resource(runtime: &str) {
    let mut r = Rig::start_with(
        runtime,
        ProsodyOptions::default(),
        RelayOptions {
            identity: Identity::Full,
            ..RelayOptions::default()
        },
    );
    let a_old = r.alice.whoami();
    let b = r.bob.whoami();
    let old_resource = r.alice.resource.clone();

    // One pseudonym per resource, even while both are online.
    let mut tablet = Client::login_new(&r.prosody, &r.alice.user);
    let a_tablet = tablet.whoami();
    assert_ne!(
        a_tablet, a_old,
        "identity = full: the pseudonym is per resource"
    );
    tablet.quit();
    r.alice_past.push(tablet.resource.clone());

    r.bob.send(&a_old, "hello, first device");
    expect_relayed(&mut r.alice, &b, "hello, first device");

    // Alice logs out; bob writes to the pseudonym he knows.
    r.alice_relogin(false);
    let original = format!("bob-full-{}", random_hex(4));
    r.bob.send_ex(
        &a_old,
        Some("written while you were away"),
        Some(&original),
        &format!("<request xmlns='{RECEIPTS}'/>"),
    );
    r.bob.expect_none(Duration::from_secs(1));

    // Next login, another resource: the message is there.
    r.alice = Client::login_new(&r.prosody, &r.alice.user.clone());
    let m = expect_relayed(&mut r.alice, &b, "written while you were away");
    assert_eq!(
        m.to,
        format!("{}/{old_resource}", r.alice.bare()),
        "the relay addresses the full JID the pseudonym was made from: {m:#?}"
    );
    let delay = m
        .child(DELAY, "delay")
        .unwrap_or_else(|| panic!("not from offline storage: {m:#?}"));
    assert_eq!(delay.attr("from"), Some(HOST), "{m:#?}");
    assert_no_trace_of(&r.bob, &r.bob_past, &mut r.alice);

    let a_new = r.alice.whoami();
    assert_ne!(
        a_new, a_old,
        "identity = full: a new resource, a new pseudonym"
    );

    // A receipt from the new resource names a message relayed to another
    // pseudonym: the relay drops the reference, and with it the message.
    r.alice.send_ex(
        &b,
        None,
        None,
        &format!("<received xmlns='{RECEIPTS}' id='{}'/>", m.id),
    );
    r.bob.expect_none(Duration::from_secs(1));

    // The answer reaches bob from a pseudonym he has never seen.
    r.alice.send(&b, "back, on another device");
    let reply = expect_relayed(&mut r.bob, &a_new, "back, on another device");
    assert_ne!(reply.sender_bare(), a_old, "{reply:#?}");

    // The old pseudonym still reaches alice while she is online elsewhere
    // (the server routes it to her available resource).
    r.bob.send(&a_old, "to your old pseudonym");
    let m = expect_relayed(&mut r.alice, &b, "to your old pseudonym");
    assert_eq!(m.to, format!("{}/{old_resource}", r.alice.bare()), "{m:#?}");
    r.finish();
}

/// The message inside a carbon (XEP-0280) `<sent/>` or `<received/>`.
fn carbon_copy<'m>(m: &'m Msg, direction: &str) -> &'m Elem {
    m.child(CARBONS, direction)
        .and_then(|c| c.children.iter().find(|f| f.ns == FORWARD))
        .and_then(|f| f.children.iter().find(|e| e.tag == "message"))
        .unwrap_or_else(|| panic!("not a carbon <{direction}/>: {m:#?}"))
}

/// SPEC §8: one account on two devices, both with carbons enabled. A
/// relayed message reaches each device once; an answer from the second
/// device reaches B from the same A'; the first device gets the carbon of
/// that answer, addressed to B'. No device of A's sees anything of B, and B
/// sees nothing of either device.
fn two_devices_with_carbons(runtime: &str) {
    let mut r = Rig::new(runtime);
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    let mut phone = Client::login_new(&r.prosody, &r.alice.user);
    r.alice_past.push(phone.resource.clone());
    assert_eq!(phone.whoami(), a, "one pseudonym for both devices");
    // Enabled after /whoami, whose carbons are not the point here.
    r.alice.carbons(true);
    phone.carbons(true);

    r.bob.send(&a, "to both of your devices");
    expect_relayed(&mut r.alice, &b, "to both of your devices");
    expect_relayed(&mut phone, &b, "to both of your devices");

    phone.send(&b, "answered from the phone");
    expect_relayed(&mut r.bob, &a, "answered from the phone");

    // The first device sees what the phone sent, as the server routed it.
    let own = r.alice.bare();
    let carbon = r.alice.expect_one(Some(&own));
    assert_eq!(carbon.from, own, "{carbon:#?}");
    let copy = carbon_copy(&carbon, "sent");
    assert_eq!(copy.attr("to"), Some(b.as_str()), "{carbon:#?}");
    assert_eq!(
        copy.attr("from"),
        Some(format!("{own}/{}", phone.resource).as_str()),
        "{carbon:#?}"
    );
    let body = copy.children.iter().find(|e| e.tag == "body");
    assert_eq!(
        body.map(|e| e.text.as_str()),
        Some("answered from the phone"),
        "{carbon:#?}"
    );

    // Bob answers; both devices again, each once, and no carbon of a
    // relayed message (the server delivers it to both already).
    r.bob.send(&a, "thanks, phone");
    expect_relayed(&mut r.alice, &b, "thanks, phone");
    expect_relayed(&mut phone, &b, "thanks, phone");
    r.alice.expect_none(Duration::from_millis(500));
    phone.expect_none(Duration::from_millis(500));

    // The first device answers too: still A', the phone gets the carbon.
    r.alice.send(&b, "and from the laptop");
    expect_relayed(&mut r.bob, &a, "and from the laptop");
    let carbon = phone.expect_one(Some(&own));
    let copy = carbon_copy(&carbon, "sent");
    assert_eq!(copy.attr("to"), Some(b.as_str()), "{carbon:#?}");

    // Nothing of bob on either device; nothing of alice's devices at bob's
    // (checked by finish with alice_past).
    assert_no_trace_of(&r.bob, &r.bob_past, &mut phone);
    phone.quit();
    r.finish();
}

/// Receipts, markers and chat states from either of A's devices reach B
/// from A', carrying B's own message id. Each device that acknowledges
/// sends its own receipt, and B gets each one.
fn receipts_and_typing_from_two_devices(runtime: &str) {
    let mut r = Rig::new(runtime);
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    r.alice.carbons(true);
    let mut phone = Client::login_new(&r.prosody, &r.alice.user);
    phone.carbons(true);
    r.alice_past.push(phone.resource.clone());

    let original = format!("bob-ask-{}", random_hex(4));
    r.bob.send_ex(
        &a,
        Some("did both of you get this?"),
        Some(&original),
        &format!(
            "<active xmlns='{CHATSTATES}'/><request xmlns='{RECEIPTS}'/>\
             <markable xmlns='{MARKERS}'/>"
        ),
    );
    let on_laptop = expect_relayed(&mut r.alice, &b, "did both of you get this?");
    let on_phone = expect_relayed(&mut phone, &b, "did both of you get this?");
    assert_eq!(on_laptop.id, on_phone.id, "one stanza, routed to both");
    assert_ne!(
        on_phone.id, original,
        "the relayed message must get a fresh id"
    );
    for m in [&on_laptop, &on_phone] {
        assert!(m.child(RECEIPTS, "request").is_some(), "{m:#?}");
        assert!(m.child(MARKERS, "markable").is_some(), "{m:#?}");
    }
    let check_from_a = |m: &Msg| {
        assert_eq!(m.from, format!("{a}/{RELAY_RESOURCE}"), "{m:#?}");
        assert_eq!(m.kind, "chat", "{m:#?}");
        assert_eq!(m.body, None, "{m:#?}");
    };

    // The second device acknowledges: bob gets his own id back.
    phone.send_ex(
        &b,
        None,
        Some(&format!("ack-{}", random_hex(3))),
        &format!("<received xmlns='{RECEIPTS}' id='{}'/>", on_phone.id),
    );
    let ack = r.bob.expect_one(None);
    check_from_a(&ack);
    let received = ack
        .child(RECEIPTS, "received")
        .unwrap_or_else(|| panic!("no receipt: {ack:#?}"));
    assert_eq!(received.attr("id"), Some(original.as_str()), "{ack:#?}");

    // The first device acknowledges as well. A second receipt would tell
    // bob how many of alice's devices are online: the relay passes only the
    // first of each kind.
    r.alice.send_ex(
        &b,
        None,
        None,
        &format!("<received xmlns='{RECEIPTS}' id='{}'/>", on_laptop.id),
    );
    r.bob.expect_none(Duration::from_secs(1));

    // Read on the phone.
    phone.send_ex(
        &b,
        None,
        None,
        &format!("<displayed xmlns='{MARKERS}' id='{}'/>", on_phone.id),
    );
    let marker = r.bob.expect_one(None);
    check_from_a(&marker);
    let displayed = marker
        .child(MARKERS, "displayed")
        .unwrap_or_else(|| panic!("marker lost: {marker:#?}"));
    assert_eq!(displayed.attr("id"), Some(original.as_str()), "{marker:#?}");

    // Typing on either device.
    for (device, state) in [(&mut r.alice, "composing"), (&mut phone, "paused")] {
        device.send_ex(&b, None, None, &format!("<{state} xmlns='{CHATSTATES}'/>"));
        let m = r.bob.expect_one(None);
        check_from_a(&m);
        assert!(
            m.child(CHATSTATES, state).is_some(),
            "chat state lost: {m:#?}"
        );
    }

    assert_no_trace_of(&r.bob, &r.bob_past, &mut phone);
    phone.quit();
    r.finish();
}

/// The end-to-end check of the memcached store: with `[memcache]` and
/// `encrypt`, a pseudonym learnt before a relay restart still works after
/// it, both ways (the new process has an empty cache: the lookups go to
/// memcached), acknowledgements of a message relayed before the restart
/// reach its sender, and memcached holds neither JIDs nor pseudonyms
/// readable.
fn restart_keeps_mappings_with_memcached(runtime: &str) {
    let mut memcached = Memcached::start();
    let mut r = Rig::start_with(
        runtime,
        ProsodyOptions::default(),
        RelayOptions {
            memcache: Some((memcached.addr(), random_secret())),
            ..RelayOptions::default()
        },
    );
    let a = r.alice.whoami();
    let b = r.bob.whoami();
    r.bob.send(&a, "before the restart");
    expect_relayed(&mut r.alice, &b, "before the restart");
    let (original, seen) = ask_for_acknowledgements(&mut r, &a, &b);

    r.relay.restart(&r.prosody);
    acknowledged_after_the_restart(&mut r, &a, &b, &original, &seen);

    r.bob.send(&a, "after the restart");
    expect_relayed(&mut r.alice, &b, "after the restart");
    r.alice.send(&b, "got it");
    expect_relayed(&mut r.bob, &a, "got it");

    let dump = memcached.dump();
    assert!(dump.contains("key="), "memcached holds no mapping:\n{dump}");
    for secret in [&r.alice.user, &r.bob.user, &a, &b] {
        let local = secret.split('@').next().unwrap();
        assert!(
            !dump.contains(local),
            "memcached holds {secret:?} readable:\n{dump}"
        );
    }
    assert!(memcached.running(), "memcached died during the test");
    r.finish();
    memcached.stop();
}

/// SPEC §2 keepalive against Prosody, in both modes: with a one-second
/// interval the relay sits idle for several intervals (pings answered by
/// Prosody's routing back to the component, or whitespace Prosody ignores),
/// stays connected, and relays afterwards.
fn keepalives_keep_an_idle_relay_connected(runtime: &str) {
    for mode in ["ping", "whitespace"] {
        let mut r = Rig::start_with(
            runtime,
            ProsodyOptions::default(),
            RelayOptions {
                keepalive: (1, mode),
                ..RelayOptions::default()
            },
        );
        let a = r.alice.whoami();
        let b = r.bob.whoami();
        std::thread::sleep(Duration::from_secs(5));
        assert_eq!(
            r.prosody.component_logins(),
            1,
            "{mode}: the relay reconnected while idle:\n{}",
            r.relay.log()
        );
        r.bob.send(&a, "after a quiet spell");
        expect_relayed(&mut r.alice, &b, "after a quiet spell");
        r.finish();
    }
}
