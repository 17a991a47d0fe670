//! One scripted conversation per row of SPEC §5.

use std::time::Duration;

use super::harness::*;
use crate::store::Store;
use crate::{IdentityMode, Pseudonymizer, StoreCodec};

const ALICE: &str = "alice@a.example/phone";
const BOB: &str = "bob@b.example/laptop";

/// Alice and Bob online, each knowing the other's pseudonym.
fn pair() -> (Harness, String, String) {
    let mut h = online(config());
    let a = h.whoami(ALICE);
    let b = h.whoami(BOB);
    (h, a, b)
}

#[test]
fn whoami_answers_the_pseudonym_and_stores_the_mapping() {
    let mut h = online(config());
    h.feed(&format!(
        "<message from='{ALICE}' to='{DOMAIN}/anything' type='chat' id='q1'><body>/whoami please</body></message>"
    ));
    let r = h.one();
    let expected = Pseudonymizer::new(SECRET).localpart("alice@a.example");
    assert_eq!(body(&r), format!("{expected}@{DOMAIN}"));
    assert_eq!(r.attr("to"), Some(ALICE));
    assert_eq!(r.attr("from"), Some("axr.example/a"));
    assert_eq!(r.attr("type"), Some("chat"));
    let stored = h
        .store
        .get(&StoreCodec::new(None).key(&expected, DOMAIN))
        .unwrap();
    assert_eq!(stored.as_deref(), Some(&b"alice@a.example"[..]));
    assert_eq!(h.puts, 1);
    // Stable across resources; no second write for a mapping already written.
    assert_eq!(
        h.whoami("alice@a.example/tablet"),
        format!("{expected}@{DOMAIN}")
    );
    assert_eq!(h.puts, 1);
    assert_eq!(h.relay.stats().whoami, 2);
}

/// Bob writes to a pseudonym the relay does not know and the lookup
/// fails: the store has failed once. Store actions are held from here on.
fn store_fails_once(h: &mut Harness) {
    h.mode = StoreMode::Hold;
    h.feed(&format!(
        "<message from='{BOB}' to='{}@{DOMAIN}' type='chat' id='m1'><body>x</body></message>",
        "a".repeat(45)
    ));
    h.fail_held();
    assert_eq!(
        error_condition(&h.one()),
        Some(("wait".into(), "internal-server-error".into()))
    );
}

#[test]
fn a_store_failure_makes_known_mappings_be_written_again() {
    // A failed store call may mean the store lost its data (memcached
    // restarted empty): mappings written before it are written again when
    // next used, once, without holding up the stanza that uses them.
    let mut h = online(config());
    let a = h.whoami(ALICE);
    let b = h.whoami(BOB);
    assert_eq!(h.puts, 2);
    store_fails_once(&mut h);
    // The store is still down: Alice and Bob keep talking from memory, and
    // each use tries the write again.
    for id in ["m2", "m3"] {
        h.feed(&format!(
            "<message from='{ALICE}' to='{b}' type='chat' id='{id}'><body>{id}</body></message>"
        ));
        assert_eq!(body(&h.one()), id);
        assert_eq!(h.held.len(), 1, "a write of Alice's mapping");
        h.fail_held();
        assert!(h.take().is_empty(), "nothing to answer for a write behind");
    }
    // The store is back, empty.
    h.mode = StoreMode::Auto;
    h.store = crate::MemoryStore::new(1000);
    assert_eq!(h.whoami(ALICE), a);
    assert_eq!(h.puts, 3, "Alice's mapping written again");
    assert!(h
        .store
        .get(&StoreCodec::new(None).key(local(&a), DOMAIN))
        .unwrap()
        .is_some());
    assert_eq!(h.whoami(ALICE), a);
    h.feed(&format!(
        "<message from='{ALICE}' to='{b}' type='chat' id='m4'><body>back</body></message>"
    ));
    assert_eq!(body(&h.one()), "back");
    assert_eq!(
        h.puts, 3,
        "written once after the failure, not on every use"
    );
    // Bob's is written again at his next use.
    h.feed(&format!(
        "<message from='{BOB}' to='{a}' type='chat' id='m5'><body>hi</body></message>"
    ));
    assert_eq!(body(&h.one()), "hi");
    assert_eq!(h.puts, 4);
}

#[test]
fn writes_behind_are_bounded_while_the_store_is_slow() {
    // After a store failure every known sender's mapping is due to be
    // written again. With the store slow, those writes must not pile up one
    // per sender: at most `max_pending` are in flight, the messages are
    // relayed meanwhile, and the rest are written at a later use.
    let mut c = config();
    c.max_pending = 2;
    let mut h = online(c);
    let b = h.whoami(BOB);
    let senders: Vec<String> = (0..6).map(|i| format!("user{i}@a.example/r")).collect();
    for s in &senders {
        h.whoami(s);
    }
    assert_eq!(h.puts, 7);
    store_fails_once(&mut h);
    // The store answers nothing now.
    for (i, s) in senders.iter().enumerate() {
        for k in 0..3 {
            h.feed(&format!(
                "<message from='{s}' to='{b}' type='chat'><body>{i}.{k}</body></message>"
            ));
            assert_eq!(body(&h.one()), format!("{i}.{k}"), "relayed at once");
        }
    }
    assert_eq!(h.held.len(), 2, "{:?}", h.log);
    assert!(h
        .held
        .iter()
        .all(|h| matches!(h.action, crate::Action::Put { .. })));
    // The store answers: the two are written; the others at their next use.
    h.mode = StoreMode::Auto;
    h.release_all();
    assert_eq!(h.puts, 9);
    for s in &senders {
        h.feed(&format!(
            "<message from='{s}' to='{b}' type='chat'><body>again</body></message>"
        ));
        assert_eq!(body(&h.one()), "again");
    }
    assert_eq!(h.puts, 13, "each remaining mapping written once");
}

#[test]
fn whoami_with_full_identities_differs_per_resource() {
    let mut c = config();
    c.identity = IdentityMode::Full;
    let mut h = online(c);
    let p = Pseudonymizer::new(SECRET);
    assert_eq!(h.whoami(ALICE), format!("{}@{DOMAIN}", p.localpart(ALICE)));
    assert_ne!(h.whoami("alice@a.example/tablet"), h.whoami(ALICE));
}

#[test]
fn whoami_is_exact_and_anything_else_gets_help() {
    let mut h = online(config());
    for text in ["/help", "hello", "/WHOAMI", "x /whoami", ""] {
        h.feed(&format!(
            "<message from='{ALICE}' to='{DOMAIN}'><body>{text}</body></message>"
        ));
        let r = h.one();
        assert!(body(&r).contains("/whoami"), "{text}: {}", body(&r));
        assert!(!body(&r).contains('@'), "{text}");
    }
    // Typing notifications to the relay are not answered.
    h.feed(&format!(
        "<message from='{ALICE}' to='{DOMAIN}'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
    ));
    assert!(h.take().is_empty());
    // Nor are errors; groupchat is refused; headlines dropped.
    h.feed(&format!(
        "<message type='error' from='{ALICE}' to='{DOMAIN}'><body>/help</body></message>"
    ));
    h.feed(&format!(
        "<message type='headline' from='{ALICE}' to='{DOMAIN}'><body>/help</body></message>"
    ));
    assert!(h.take().is_empty());
    h.feed(&format!(
        "<message type='groupchat' from='{ALICE}' to='{DOMAIN}'><body>/help</body></message>"
    ));
    assert_eq!(
        error_condition(&h.one()),
        Some(("modify".into(), "not-acceptable".into()))
    );
}

#[test]
fn presence_to_the_relay_shows_it_online() {
    let mut h = online(config());
    h.feed(&format!("<presence type='subscribe' from='alice@a.example' to='{DOMAIN}'><nick xmlns='http://jabber.org/protocol/nick'>A</nick></presence>"));
    let s = h.take();
    assert_eq!(s.len(), 2);
    assert_eq!(
        (s[0].attr("type"), s[0].attr("to"), s[0].attr("from")),
        (Some("subscribed"), Some("alice@a.example"), Some(DOMAIN))
    );
    assert_eq!(
        (s[1].attr("type"), s[1].attr("from")),
        (None, Some("axr.example/a"))
    );
    assert!(
        s[1].node_count() == 0,
        "synthesised presence has no payload"
    );
    h.feed(&format!(
        "<presence type='probe' from='alice@a.example' to='{DOMAIN}'/>"
    ));
    let p = h.one();
    assert_eq!(
        (p.attr("type"), p.attr("to")),
        (None, Some("alice@a.example"))
    );
    h.feed(&format!(
        "<presence from='{ALICE}' to='{DOMAIN}'><show>dnd</show></presence>"
    ));
    assert!(h.take().is_empty());
}

#[test]
fn iq_to_the_relay() {
    let mut h = online(config());
    h.feed(&format!("<iq type='get' id='d1' from='{ALICE}' to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"));
    let r = h.one();
    assert_eq!(
        (r.attr("type"), r.attr("id"), r.attr("to")),
        (Some("result"), Some("d1"), Some(ALICE))
    );
    let q = r.elements().next().unwrap();
    let ident = q.elements().find(|c| c.name() == "identity").unwrap();
    assert_eq!(
        (ident.attr("category"), ident.attr("type")),
        (Some("component"), Some("generic"))
    );
    let features: Vec<_> = q.elements().filter_map(|c| c.attr("var")).collect();
    assert!(features.contains(&"urn:xmpp:ping"));
    h.feed(&format!("<iq type='get' id='d2' from='{ALICE}' to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"));
    let r = h.one();
    assert_eq!(r.attr("type"), Some("result"));
    assert_eq!(r.elements().next().unwrap().node_count(), 0);
    h.feed(&format!(
        "<iq type='get' id='p' from='{ALICE}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    assert_eq!(h.one().attr("type"), Some("result"));
    for payload in [
        "<query xmlns='jabber:iq:version'/>",
        "<time xmlns='urn:xmpp:time'/>",
        "<vCard xmlns='vcard-temp'/>",
    ] {
        h.feed(&format!(
            "<iq type='get' id='v' from='{ALICE}' to='{DOMAIN}'>{payload}</iq>"
        ));
        let r = h.one();
        assert_eq!(
            error_condition(&r),
            Some(("cancel".into(), "service-unavailable".into())),
            "{payload}"
        );
        assert_eq!(r.attr("id"), Some("v"));
    }
    h.feed(&format!(
        "<iq type='set' id='e' from='{ALICE}' to='{DOMAIN}'/>"
    ));
    assert_eq!(
        error_condition(&h.one()),
        Some(("modify".into(), "bad-request".into()))
    );
    h.feed(&format!("<iq type='result' id='r' from='{ALICE}' to='{DOMAIN}'/><iq type='error' id='r' from='{ALICE}' to='{DOMAIN}'/>"));
    assert!(h.take().is_empty());
}

#[test]
fn relay_carries_allowed_children_and_nothing_else() {
    let (mut h, a, b) = pair();
    let before = h.raw_out.len();
    let msg = format!(
        "<message from='{BOB}' to='{a}/whatever' type='chat' id='purple1a2b' xml:lang='de'>\
<body xml:lang='en'>Hello &amp; welcome</body><subject>s</subject><thread parent='p'>t1</thread>\
<nick xmlns='http://jabber.org/protocol/nick'>Bob Real</nick>\
<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><img src='http://bob.example/x.png'/></body></html>\
<delay xmlns='urn:xmpp:delay' from='b.example' stamp='2002-09-10T23:08:25Z'/>\
<origin-id xmlns='urn:xmpp:sid:0' id='client-id-1'/><stanza-id xmlns='urn:xmpp:sid:0' by='bob@b.example' id='x'/>\
<x xmlns='jabber:x:oob'><url>https://upload.b.example/f</url></x>\
<addresses xmlns='http://jabber.org/protocol/address'><address type='ofrom' jid='bob@b.example'/></addresses>\
<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1234'><keys jid='bob@b.example'/></header></encrypted>\
<reply xmlns='urn:xmpp:reply:0' to='bob@b.example/laptop' id='z'/>\
<active xmlns='http://jabber.org/protocol/chatstates' extra='x'/><request xmlns='urn:xmpp:receipts'/>\
<markable xmlns='urn:xmpp:chat-markers:0'/><no-copy xmlns='urn:xmpp:hints'/>\
</message>"
    );
    h.feed(&msg);
    let m = h.one();
    assert_eq!(m.attr("to"), Some("alice@a.example"));
    assert_eq!(m.attr("from"), Some(format!("{b}/a").as_str()));
    assert_eq!(m.attr("type"), Some("chat"));
    assert_ne!(m.attr("id"), Some("purple1a2b"));
    assert_eq!(m.attr_count(), 4, "only to, from, id, type: {:?}", m.root());
    let names: Vec<_> = m.elements().map(|c| c.name().to_owned()).collect();
    assert_eq!(
        names,
        ["body", "subject", "thread", "active", "request", "markable", "no-copy"]
    );
    let body_el = m.elements().next().unwrap();
    assert_eq!(body_el.text(), "Hello & welcome");
    assert_eq!(body_el.lang(), Some("en"));
    let thread = m.elements().nth(2).unwrap();
    assert_eq!(thread.attr_count(), 0);
    assert_eq!(m.elements().nth(3).unwrap().attr_count(), 0);
    let raw = String::from_utf8_lossy(&h.raw_out[before..]).into_owned();
    for leak in [
        "bob@b.example",
        "laptop",
        "Bob Real",
        "purple",
        "client-id-1",
        "upload.b.example",
        "1234",
    ] {
        assert!(!raw.contains(leak), "{leak} leaked: {raw}");
    }
    assert_eq!(h.relay.stats().relayed, 1);
}

#[test]
fn a_message_with_nothing_allowed_leaves_no_trace_in_the_output() {
    let (mut h, a, b) = pair();
    let before = h.raw_out.len();
    // Written as it is filtered: the stanza is begun, then taken back
    // whole; the message after it in the same read comes out intact.
    h.feed(&format!(
        "<message from='{BOB}' to='{a}' id='secret-id-1'><nick xmlns='http://jabber.org/protocol/nick'>Bob Real</nick>\
<received xmlns='urn:xmpp:receipts' id='nobody-sent-this'/></message>\
<message from='{BOB}' to='{a}' id='m2'><body>second</body></message>"
    ));
    let m = h.one();
    assert_eq!(body(&m), "second");
    assert_eq!(m.attr("from"), Some(format!("{b}/a").as_str()));
    let raw = String::from_utf8_lossy(&h.raw_out[before..]).into_owned();
    assert_eq!(raw.matches("<message").count(), 1, "{raw}");
    for leak in ["secret-id-1", "Bob Real", "nobody-sent-this"] {
        assert!(!raw.contains(leak), "{leak} leaked: {raw}");
    }
    assert_eq!(h.relay.stats().relayed, 1);
    assert_eq!(h.relay.stats().dropped, 1);
}

#[test]
fn replies_flow_back_and_body_less_messages_are_relayed() {
    let (mut h, a, b) = pair();
    h.feed(&format!(
        "<message from='{BOB}' to='{a}' id='1'><body>hi</body></message>"
    ));
    assert_eq!(h.one().attr("to"), Some("alice@a.example"));
    h.feed(&format!(
        "<message from='{ALICE}' to='{b}' type='chat' id='2'><body>hi yourself</body></message>"
    ));
    let r = h.one();
    assert_eq!(
        (r.attr("to"), r.attr("from")),
        (Some("bob@b.example"), Some(format!("{a}/a").as_str()))
    );
    assert_eq!(body(&r), "hi yourself");
    h.feed(&format!("<message from='{ALICE}' to='{b}' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"));
    let t = h.one();
    assert!(t.elements().any(|c| c.name() == "composing"));
    // A message left with nothing allowed is not relayed.
    h.feed(&format!("<message from='{ALICE}' to='{b}'><nick xmlns='http://jabber.org/protocol/nick'>A</nick></message>"));
    assert!(h.take().is_empty());
}

#[test]
fn receipts_markers_and_corrections_translate_ids() {
    let (mut h, a, b) = pair();
    h.feed(&format!("<message from='{BOB}' to='{a}' id='orig-1'><body>hi</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>"));
    let fresh = h.one().attr("id").unwrap().to_owned();
    // Alice's receipt and marker name the fresh id; Bob sees his own.
    h.feed(&format!("<message from='{ALICE}' to='{b}' id='r1'><received xmlns='urn:xmpp:receipts' id='{fresh}'/></message>"));
    let r = h.one();
    assert_eq!(r.elements().next().unwrap().attr("id"), Some("orig-1"));
    h.feed(&format!("<message from='{ALICE}' to='{b}'><displayed xmlns='urn:xmpp:chat-markers:0' id='{fresh}'/></message>"));
    assert_eq!(
        h.one().elements().next().unwrap().attr("id"),
        Some("orig-1")
    );
    // Alice's other device acknowledges too: Bob must not learn how many
    // devices she has, so the second receipt and marker are dropped.
    h.feed(&format!("<message from='alice@a.example/tablet' to='{b}' id='r2'><received xmlns='urn:xmpp:receipts' id='{fresh}'/></message>"));
    h.feed(&format!("<message from='alice@a.example/tablet' to='{b}'><displayed xmlns='urn:xmpp:chat-markers:0' id='{fresh}'/></message>"));
    assert!(h.take().is_empty());
    // Bob corrects his message: Alice sees the id she knows.
    h.feed(&format!("<message from='{BOB}' to='{a}' id='orig-2'><body>hello</body><replace xmlns='urn:xmpp:message-correct:0' id='orig-1'/></message>"));
    let c = h.one();
    assert_eq!(
        c.elements().nth(1).unwrap().attr("id"),
        Some(fresh.as_str())
    );
    // References nobody made, or made between other people, are dropped.
    let carol = h.whoami("carol@c.example/x");
    h.feed(&format!("<message from='carol@c.example/x' to='{b}'><received xmlns='urn:xmpp:receipts' id='{fresh}'/></message>"));
    assert!(h.take().is_empty());
    h.feed(&format!("<message from='{ALICE}' to='{b}'><body>x</body><received xmlns='urn:xmpp:receipts' id='nope'/></message>"));
    assert_eq!(h.one().elements().count(), 1);
    let _ = carol;
}

#[test]
fn unknown_or_malformed_pseudonyms_get_item_not_found() {
    let mut h = online(config());
    let unknown = Pseudonymizer::new(SECRET).localpart("nobody@n.example");
    h.feed(&format!(
        "<message from='{ALICE}' to='{unknown}@{DOMAIN}/a' id='m1'><body>hi</body></message>"
    ));
    let e = h.one();
    assert_eq!(
        error_condition(&e),
        Some(("cancel".into(), "item-not-found".into()))
    );
    assert_eq!(
        (e.attr("from"), e.attr("to"), e.attr("id")),
        (
            Some(format!("{unknown}@{DOMAIN}/a").as_str()),
            Some(ALICE),
            Some("m1")
        )
    );
    let gets = h.gets;
    h.feed(&format!(
        "<message from='{ALICE}' to='admin@{DOMAIN}'><body>hi</body></message>"
    ));
    assert_eq!(
        error_condition(&h.one()),
        Some(("cancel".into(), "item-not-found".into()))
    );
    assert_eq!(h.gets, gets, "a malformed localpart needs no lookup");
}

#[test]
fn bounces_come_back_anonymised() {
    let (mut h, a, b) = pair();
    h.feed(&format!(
        "<message from='{ALICE}' to='{b}' id='a-1'><body>are you there?</body></message>"
    ));
    let fresh = h.one().attr("id").unwrap().to_owned();
    h.feed(&format!(
        "<message type='error' from='bob@b.example' to='{a}/a' id='{fresh}'><body>are you there?</body>\
<error type='cancel' by='b.example'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>bob@b.example is offline</text></error></message>"
    ));
    let e = h.one();
    assert_eq!(e.attr("to"), Some(ALICE), "to the sender's full JID");
    assert_eq!(e.attr("from"), Some(format!("{b}/a").as_str()));
    assert_eq!(e.attr("id"), Some("a-1"));
    assert_eq!(
        error_condition(&e),
        Some(("cancel".into(), "service-unavailable".into()))
    );
    assert_eq!(e.elements().count(), 1);
    assert_eq!(
        e.elements().next().unwrap().elements().count(),
        1,
        "no text"
    );
    assert_eq!(h.relay.stats().bounced, 1);
    // Unknown conditions and types are normalised; unmapped bounces dropped.
    h.feed(&format!(
        "<message from='{ALICE}' to='{b}' id='a-2'><body>x</body></message>"
    ));
    let fresh = h.one().attr("id").unwrap().to_owned();
    // From the recipient only: not their server's domain, nor anyone else.
    for from in ["b.example", "carol@c.example"] {
        h.feed(&format!("<message type='error' from='{from}' to='{a}' id='{fresh}'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"));
        assert!(h.take().is_empty(), "{from}");
    }
    h.feed(&format!("<message type='error' from='bob@b.example/laptop' to='{a}' id='{fresh}'><error type='weird'><x xmlns='urn:other'/></error></message>"));
    assert_eq!(
        error_condition(&h.one()),
        Some(("cancel".into(), "undefined-condition".into()))
    );
    h.feed(&format!("<message type='error' from='b.example' to='{a}' id='unknown'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"));
    assert!(h.take().is_empty());
    // A bounce addressed to someone else's pseudonym is not honoured.
    h.feed(&format!(
        "<message from='{ALICE}' to='{b}' id='a-3'><body>x</body></message>"
    ));
    let fresh = h.one().attr("id").unwrap().to_owned();
    h.feed(&format!("<message type='error' from='bob@b.example' to='{b}' id='{fresh}'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"));
    assert!(h.take().is_empty());
}

#[test]
fn groupchat_headline_presence_and_iq_to_pseudonyms() {
    let (mut h, a, _b) = pair();
    h.feed(&format!(
        "<message type='groupchat' from='{BOB}' to='{a}'><body>x</body></message>"
    ));
    assert_eq!(
        error_condition(&h.one()),
        Some(("modify".into(), "not-acceptable".into()))
    );
    h.feed(&format!(
        "<message type='headline' from='{BOB}' to='{a}'><body>x</body></message>"
    ));
    assert!(h.take().is_empty());
    h.feed(&format!(
        "<presence type='subscribe' from='bob@b.example' to='{a}'/>"
    ));
    let s = h.take();
    assert_eq!(s[0].attr("type"), Some("subscribed"));
    assert_eq!(s[0].attr("from"), Some(a.as_str()));
    assert_eq!(s[1].attr("from"), Some(format!("{a}/a").as_str()));
    h.feed(&format!(
        "<presence type='probe' from='bob@b.example' to='{a}'/>"
    ));
    assert_eq!(h.one().attr("type"), None);
    h.feed(&format!(
        "<presence from='{BOB}' to='{a}'><status>at work</status></presence>"
    ));
    assert!(h.take().is_empty(), "real presence is never relayed");
    for payload in [
        "<ping xmlns='urn:xmpp:ping'/>",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        "<vCard xmlns='vcard-temp'/>",
    ] {
        h.feed(&format!(
            "<iq type='get' id='q' from='{BOB}' to='{a}/a'>{payload}</iq>"
        ));
        let r = h.one();
        assert_eq!(
            r.attr("to"),
            Some(BOB),
            "answered by the relay, never forwarded"
        );
        assert_eq!(
            error_condition(&r),
            Some(("cancel".into(), "service-unavailable".into()))
        );
    }
}

#[test]
fn senders_at_the_relay_domain_are_never_relayed() {
    let (mut h, a, _) = pair();
    h.feed(&format!(
        "<message from='{a}' to='{a}'><body>loop</body></message>"
    ));
    h.feed(&format!(
        "<message from='x@{DOMAIN}/r' to='{DOMAIN}'><body>/whoami</body></message>"
    ));
    assert!(h.take().is_empty());
}

#[test]
fn lookups_do_not_block_others_and_keep_per_sender_order() {
    let (h0, a, _) = pair();
    let mut h = online(config());
    h.store = h0.store;
    h.mode = StoreMode::Hold;
    // Bob's messages wait on a lookup of Alice's pseudonym…
    h.feed(&format!(
        "<message from='{BOB}' to='{a}' id='1'><body>one</body></message>"
    ));
    h.feed(&format!(
        "<message from='{BOB}' to='{DOMAIN}' id='2'><body>/help</body></message>"
    ));
    h.feed(&format!(
        "<message from='{BOB}' to='{a}' id='3'><body>three</body></message>"
    ));
    // …while Carol's stanzas are answered at once.
    h.feed(&format!("<iq type='get' id='c' from='carol@c.example/x' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"));
    let s = h.take();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].attr("to"), Some("carol@c.example/x"));
    assert_eq!(
        h.relay.stats().lookups,
        1,
        "one lookup for both of Bob's messages"
    );
    h.release();
    let s = h.take();
    let order: Vec<_> = s
        .iter()
        .map(|m| body(m).chars().take(5).collect::<String>())
        .collect();
    assert_eq!(order, ["one", "This ", "three"]);
}

#[test]
fn store_failures_and_timeouts_answer_the_sender() {
    let (h0, a, _) = pair();
    let mut h = online(config());
    h.store = h0.store;
    h.mode = StoreMode::Hold;
    h.feed(&format!(
        "<message from='{BOB}' to='{a}' id='1'><body>x</body></message>"
    ));
    h.fail_held();
    let e = h.one();
    assert_eq!(
        error_condition(&e),
        Some(("wait".into(), "internal-server-error".into()))
    );
    assert_eq!(e.attr("from"), Some(a.as_str()));
    // Timeout: answered after the store timeout; a late answer is ignored.
    h.feed(&format!(
        "<message from='{BOB}' to='{a}' id='2'><body>x</body></message>"
    ));
    assert!(h.take().is_empty());
    h.advance(Duration::from_secs(5));
    assert_eq!(
        error_condition(&h.one()),
        Some(("wait".into(), "internal-server-error".into()))
    );
    h.release();
    assert!(h.take().is_empty());
    // The store comes back: relaying resumes.
    h.mode = StoreMode::Auto;
    h.feed(&format!(
        "<message from='{BOB}' to='{a}' id='3'><body>back</body></message>"
    ));
    assert_eq!(body(&h.one()), "back");
    // Two operations (lookup, write) failed, then two timed out.
    assert_eq!(h.relay.stats().store_errors, 4);
}

#[test]
fn whoami_waits_for_the_write_and_reports_its_failure() {
    let mut h = online(config());
    h.mode = StoreMode::Hold;
    h.feed(&format!(
        "<message from='{ALICE}' to='{DOMAIN}'><body>/whoami</body></message>"
    ));
    assert!(h.take().is_empty());
    h.fail_held();
    assert_eq!(
        error_condition(&h.one()),
        Some(("wait".into(), "internal-server-error".into()))
    );
}

#[test]
fn poisoned_and_tampered_entries_are_misses() {
    for encrypt in [None, Some([9u8; 32])] {
        let mut c = config();
        c.encrypt = encrypt;
        let mut h = online(c);
        let codec = StoreCodec::new(encrypt);
        let a = h.whoami(ALICE);
        let la = local(&a).to_owned();
        // Point Alice's pseudonym at Mallory: verification fails.
        h.poison(&a);
        let mut h2 = online(config_with(encrypt));
        h2.store = std::mem::take(&mut h.store);
        h2.feed(&format!(
            "<message from='{BOB}' to='{a}'><body>x</body></message>"
        ));
        assert_eq!(
            error_condition(&h2.one()),
            Some(("cancel".into(), "item-not-found".into()))
        );
        assert_eq!(h2.relay.stats().poisoned, 1);
        // Garbage under the key: a miss too.
        h2.store
            .put(&codec.key(&la, DOMAIN), b"\x00garbage", 0)
            .unwrap();
        let mut h3 = online(config_with(encrypt));
        h3.store = std::mem::take(&mut h2.store);
        h3.feed(&format!(
            "<message from='{BOB}' to='{a}'><body>x</body></message>"
        ));
        assert_eq!(
            error_condition(&h3.one()),
            Some(("cancel".into(), "item-not-found".into()))
        );
    }
}

fn config_with(encrypt: Option<[u8; 32]>) -> crate::Config {
    let mut c = config();
    c.encrypt = encrypt;
    c
}

#[test]
fn encrypted_store_holds_neither_pseudonyms_nor_jids() {
    let mut h = online(config_with(Some([3; 32])));
    let a = h.whoami(ALICE);
    let la = local(&a).to_owned();
    let codec = StoreCodec::new(Some([3; 32]));
    let v = h.store.get(&codec.key(&la, DOMAIN)).unwrap().unwrap();
    assert!(!v.windows(5).any(|w| w == b"alice"));
    assert!(!codec.key(&la, DOMAIN).contains(&la));
    // And a relay with the same key reads it back.
    let mut h2 = online(config_with(Some([3; 32])));
    h2.store = std::mem::take(&mut h.store);
    h2.feed(&format!(
        "<message from='{BOB}' to='{a}'><body>x</body></message>"
    ));
    assert_eq!(h2.one().attr("to"), Some("alice@a.example"));
}

#[test]
fn oversized_stanzas_are_bounced_and_the_stream_goes_on() {
    let (mut h, a, _) = pair();
    let big = "y".repeat(600 * 1024);
    h.feed(&format!("<message from='{BOB}' to='{a}' id='big'><body>{big}</body></message><message from='{BOB}' to='{a}' id='small'><body>ok</body></message>"));
    let s = h.take();
    assert_eq!(s.len(), 2);
    assert_eq!(
        error_condition(&s[0]),
        Some(("modify".into(), "policy-violation".into()))
    );
    assert_eq!(s[0].attr("id"), Some("big"));
    assert_eq!(body(&s[1]), "ok");
    assert!(h.disconnects.is_empty());
    assert_eq!(h.relay.stats().oversized, 1);
}

#[test]
fn waiting_stanzas_are_bounded() {
    let (h0, a, _) = pair();
    let mut c = config();
    c.max_pending = 3;
    let mut h = online(c);
    h.store = h0.store;
    h.mode = StoreMode::Hold;
    for i in 0..5 {
        h.feed(&format!(
            "<message from='{BOB}' to='{a}' id='{i}'><body>x</body></message>"
        ));
    }
    let s = h.take();
    assert_eq!(s.len(), 2);
    assert!(s
        .iter()
        .all(|e| error_condition(e) == Some(("wait".into(), "resource-constraint".into()))));
    h.release();
    assert_eq!(h.take().len(), 3);
}

#[test]
fn waiting_stanzas_are_bounded_in_bytes() {
    let (h0, a, _) = pair();
    let mut c = config();
    c.max_pending_bytes = 50_000;
    let mut h = online(c);
    h.store = h0.store;
    h.mode = StoreMode::Hold;
    // Five 20 KB messages: two fit the budget, the rest are refused.
    let big = "x".repeat(20_000);
    for i in 0..5 {
        h.feed(&format!(
            "<message from='{BOB}' to='{a}' id='{i}'><body>{big}</body></message>"
        ));
    }
    let s = h.take();
    assert_eq!(s.len(), 3);
    assert!(s
        .iter()
        .all(|e| error_condition(e) == Some(("wait".into(), "resource-constraint".into()))));
    assert_eq!(
        s.iter()
            .map(|e| e.attr("id").unwrap_or(""))
            .collect::<Vec<_>>(),
        ["2", "3", "4"]
    );
    h.release();
    let done = h.take();
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|e| body(e) == big));
    // One stanza over the whole budget may still wait alone.
    let mut c = config();
    c.max_pending_bytes = 50_000;
    let mut h = online(c);
    let (h1, a, _) = pair();
    h.store = h1.store;
    h.mode = StoreMode::Hold;
    let huge = "y".repeat(60_000);
    h.feed(&format!(
        "<message from='{BOB}' to='{a}' id='h'><body>{huge}</body></message>"
    ));
    assert!(h.take().is_empty());
    h.release();
    assert_eq!(body(&h.one()), huge);
}

#[test]
fn a_stanza_that_waits_counts_one_cache_hit() {
    let (mut h, _a, b) = pair();
    let before = h.relay.stats().cache_hits;
    h.mode = StoreMode::Hold;
    // Carol is new: her mapping is written first, Bob's is cached. Her
    // second message queues behind the first.
    for body in ["one", "two"] {
        h.feed(&format!(
            "<message from='carol@c.example/x' to='{b}' type='chat'><body>{body}</body></message>"
        ));
    }
    assert!(h.take().is_empty());
    h.release_all();
    assert_eq!(h.take().len(), 2);
    assert_eq!(h.relay.stats().cache_hits - before, 2, "one per stanza");
}
