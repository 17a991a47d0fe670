//! Sealed message ids seen from the stream (SPEC §5): what another instance
//! or a restarted one translates, and what nobody does.

use std::time::Duration;

use super::harness::*;
use crate::idmap::ID_LIFETIME_SECS;
use crate::testing::SIM_UNIX;
use crate::WallClock;

const ALICE: &str = "alice@a.example/phone";
const BOB: &str = "bob@b.example/laptop";
const RECEIPTS: &str = "urn:xmpp:receipts";
const MARKERS: &str = "urn:xmpp:chat-markers:0";

/// Alice and Bob know their pseudonyms; Alice has sent Bob a message with
/// the id `a-1`. Returns the id Bob got.
fn sent(h: &mut Harness) -> (String, String, String) {
    let a = h.whoami(ALICE);
    let b = h.whoami(BOB);
    h.feed(&format!(
        "<message from='{ALICE}' to='{b}' type='chat' id='a-1'><body>hi</body><request xmlns='{RECEIPTS}'/><markable xmlns='{MARKERS}'/></message>"
    ));
    let m = h.one();
    let fresh = m.attr("id").expect("a fresh id").to_owned();
    (a, b, fresh)
}

/// Another process of the same domain: its own random key, the store it
/// shares, its wall clock `later` seconds on.
fn other_instance(h: &mut Harness, later: u64) -> Harness {
    let mut c = config();
    c.id_key = [9; 32];
    c.wall_clock = Some(WallClock {
        at: super::origin(),
        unix_secs: SIM_UNIX + later,
    });
    let mut two = online(c);
    two.store = std::mem::take(&mut h.store);
    two
}

fn receipt(a: &str, id: &str) -> String {
    format!("<message from='{BOB}' to='{a}' type='chat'><received xmlns='{RECEIPTS}' id='{id}'/></message>")
}

fn marker(a: &str, id: &str) -> String {
    format!("<message from='{BOB}' to='{a}' type='chat'><displayed xmlns='{MARKERS}' id='{id}'/></message>")
}

fn bounce(a: &str, id: &str) -> String {
    format!("<message from='bob@b.example' to='{a}/a' type='error' id='{id}'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
}

fn named(h: &mut Harness, ns: &str, name: &str) -> Option<String> {
    let m = h.take().pop()?;
    let r = m
        .elements()
        .find(|c| c.name() == name && c.ns() == ns)
        .and_then(|c| c.attr("id").map(str::to_owned));
    r
}

#[test]
fn a_restarted_instance_translates_receipts_markers_and_bounces() {
    let mut one = online(config());
    let (a, _b, fresh) = sent(&mut one);
    // Nothing but the store survives: no mapping is in the new cache, so
    // Alice's pseudonym is looked up.
    let mut two = other_instance(&mut one, 3600);
    two.feed(&receipt(&a, &fresh));
    assert_eq!(
        named(&mut two, RECEIPTS, "received").as_deref(),
        Some("a-1")
    );
    two.feed(&marker(&a, &fresh));
    assert_eq!(
        named(&mut two, MARKERS, "displayed").as_deref(),
        Some("a-1")
    );
    two.feed(&bounce(&a, &fresh));
    let e = two.one();
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(e.attr("to"), Some(ALICE), "to the device that sent it");
    assert_eq!(e.attr("id"), Some("a-1"));
}

#[test]
fn a_bounce_whose_sender_must_be_looked_up_waits_for_the_store() {
    let mut one = online(config());
    let (a, _b, fresh) = sent(&mut one);
    let mut two = other_instance(&mut one, 60);
    two.mode = StoreMode::Hold;
    two.feed(&bounce(&a, &fresh));
    assert!(two.take().is_empty());
    two.release_all();
    assert_eq!(two.one().attr("to"), Some(ALICE));
    // Nobody has the pseudonym any more: dropped, never an error for an error.
    let mut three = other_instance(&mut two, 60);
    three.store = Default::default();
    three.feed(&bounce(&a, &fresh));
    assert!(three.take().is_empty());
}

#[test]
fn only_the_first_acknowledgement_of_a_kind_passes() {
    let mut h = online(config());
    let (a, _b, fresh) = sent(&mut h);
    h.feed(&receipt(&a, &fresh));
    assert_eq!(named(&mut h, RECEIPTS, "received").as_deref(), Some("a-1"));
    // Bob's second device: the receipt is taken out, nothing else is left.
    h.feed(&receipt(&a, &fresh));
    assert!(h.take().is_empty());
}

#[test]
fn expired_tampered_and_foreign_ids_translate_to_nothing() {
    let mut one = online(config());
    let (a, b, fresh) = sent(&mut one);
    // Expired: the receipt is dropped whole (nothing else in it).
    let mut late = other_instance(&mut one, ID_LIFETIME_SECS + 1);
    late.feed(&receipt(&a, &fresh));
    assert!(late.take().is_empty());
    late.feed(&bounce(&a, &fresh));
    assert!(late.take().is_empty());

    let mut h = other_instance(&mut late, 60);
    // One character changed, anywhere.
    for i in [0, 20, fresh.len() - 1] {
        let mut bad = fresh.clone().into_bytes();
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).expect("ASCII");
        h.feed(&receipt(&a, &bad));
        assert!(h.take().is_empty(), "position {i}");
        h.feed(&bounce(&a, &bad));
        assert!(h.take().is_empty(), "position {i}");
    }
    // Sealed under another secret.
    let mut c = config();
    c.secret = b"another domain's secret".to_vec();
    let mut foreign = online(c);
    let (_fa, _fb, ffresh) = sent(&mut foreign);
    h.feed(&receipt(&a, &ffresh));
    assert!(h.take().is_empty());
    // The right id, the wrong pair: Bob acknowledging to himself, Alice
    // acknowledging her own message.
    for (from, to) in [(BOB, &b), (ALICE, &b), (ALICE, &a)] {
        h.feed(&format!("<message from='{from}' to='{to}' type='chat'><received xmlns='{RECEIPTS}' id='{fresh}'/></message>"));
        let out = h.take();
        assert!(
            out.iter()
                .all(|m| m.elements().next().is_none() || m.attr("type") == Some("error")),
            "{from} to {to}: {out:?}"
        );
    }
    // And the untouched id still works.
    h.feed(&receipt(&a, &fresh));
    assert_eq!(named(&mut h, RECEIPTS, "received").as_deref(), Some("a-1"));
}

#[test]
fn a_correction_is_translated_by_the_instance_that_relayed_the_message() {
    let mut h = online(config());
    let (_a, b, fresh) = sent(&mut h);
    let fix = format!(
        "<message from='{ALICE}' to='{b}' type='chat' id='a-2'><body>hi!</body><replace xmlns='urn:xmpp:message-correct:0' id='a-1'/></message>"
    );
    h.advance(Duration::from_secs(1));
    h.feed(&fix);
    let m = h.one();
    let replace = m
        .elements()
        .find(|c| c.name() == "replace")
        .and_then(|c| c.attr("id").map(str::to_owned));
    assert_eq!(replace.as_deref(), Some(fresh.as_str()));
    assert_ne!(m.attr("id"), Some(fresh.as_str()));
    // After a restart the correction has nothing to name: the body goes on
    // without it.
    let mut two = other_instance(&mut h, 60);
    two.whoami(ALICE);
    two.feed(&fix);
    let m = two.one();
    assert!(m.elements().all(|c| c.name() != "replace"), "{m:?}");
}

#[test]
fn with_full_identities_the_id_carries_no_resource_and_a_bounce_goes_to_the_identity() {
    // A resource too long to fit beside the id: were it carried, the id
    // would be held by this instance alone.
    let alice = format!("alice@a.example/{}", "r".repeat(80));
    let full = || {
        let mut c = config();
        c.identity = crate::IdentityMode::Full;
        c
    };
    let mut one = online(full());
    let a = one.whoami(&alice);
    let b = one.whoami(BOB);
    one.feed(&format!(
        "<message from='{alice}' to='{b}' type='chat' id='a-1'><body>hi</body></message>"
    ));
    let fresh = one.one().attr("id").expect("a fresh id").to_owned();
    let mut c = full();
    c.id_key = [9; 32];
    let mut two = online(c);
    two.store = std::mem::take(&mut one.store);
    // Bob's error comes from the full JID the message went to.
    two.feed(&format!(
        "<message from='{BOB}' to='{a}/a' type='error' id='{fresh}'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ));
    let e = two.one();
    assert_eq!(e.attr("to"), Some(alice.as_str()));
    assert_eq!(e.attr("id"), Some("a-1"));
}
