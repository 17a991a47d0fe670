//! Verdicts checked without the writer: each test decides on a parsed
//! stanza and looks at the verdict, and deciding must leave counters,
//! output, store actions and caches as they were.

use super::harness::*;
use crate::cache::Gen;
use crate::element::Tree;
use crate::framer::{Frame, Framer};
use crate::pending::{Need, Resolution, Served};
use crate::stanza::verdict::{Dropped, IqAnswer, PresenceAnswer, Verdict, WriteState};
use crate::stanza::Incoming;
use crate::{Limits, Pseudonymizer};

const ALICE: &str = "alice@a.example/phone";
const BOB: &str = "bob@b.example/laptop";

/// The stanza in `xml`, parsed as the relay parses what the server sends.
fn stanza(xml: &str) -> Tree {
    let mut framer = Framer::new(Limits::default());
    let input = format!("{SERVER_HEADER}{xml}");
    framer.feed(input.as_bytes());
    loop {
        match framer.poll().expect("well-formed test input") {
            Some(Frame::Stanza(el)) => return el,
            Some(_) => {}
            None => panic!("no stanza in {xml}"),
        }
    }
}

/// Everything of the relay that deciding must not change.
#[derive(Debug, PartialEq)]
struct Observed {
    stats: crate::Stats,
    out: usize,
    actions: usize,
    known: usize,
    forward: usize,
    pending: usize,
}

fn observe(h: &Harness) -> Observed {
    let r = &h.relay;
    Observed {
        stats: *r.stats(),
        out: r.out.len(),
        actions: r.actions.len(),
        known: r.known.len(),
        forward: r.forward.len(),
        pending: r.pending.len(),
    }
}

/// Decide on `xml` with what the store answered so far (`res`), check that
/// nothing changed, and hand the verdict to `check`.
fn decided<R>(h: &Harness, xml: &str, res: &Resolution, check: impl FnOnce(Verdict<'_>) -> R) -> R {
    let el = stanza(xml);
    let before = observe(h);
    let verdict = h.relay.decide(Incoming::new(el.root()), res, h.now);
    assert_eq!(observe(h), before, "deciding changed the relay");
    check(verdict)
}

fn fresh(h: &Harness, xml: &str, check: impl FnOnce(Verdict<'_>)) {
    decided(h, xml, &Resolution::default(), check)
}

fn local_of(identity: &str) -> String {
    Pseudonymizer::new(SECRET).localpart(identity)
}

fn message(from: &str, to: &str, kind: &str, body: &str) -> String {
    format!("<message from='{from}' to='{to}' type='{kind}' id='m1'><body>{body}</body></message>")
}

fn is_error(v: &Verdict<'_>, etype: &str, cond: &str) -> bool {
    matches!(v, Verdict::Error { etype: t, cond: c } if *t == etype && c.as_str() == cond)
}

#[test]
fn whoami_for_an_unwritten_mapping_needs_a_write() {
    let h = online(config());
    fresh(&h, &message(ALICE, DOMAIN, "chat", "/whoami"), |v| {
        let Verdict::Wait(w) = v else {
            panic!("expected a wait, got {v:?}")
        };
        let alice = local_of("alice@a.example");
        assert_eq!(
            w.needs,
            vec![Need::Write(alice.clone(), "alice@a.example".into())]
        );
        assert_eq!(w.sender.local.as_str(), alice);
        // Computed, not cached: apply caches it.
        assert_eq!(w.sender.forward_gen, None);
        assert_eq!(w.recipient_gen, None);
    });
    // Nothing was cached by deciding.
    assert_eq!(h.relay.forward.len(), 0);
}

#[test]
fn whoami_for_a_written_mapping_answers_it() {
    let mut h = online(config());
    h.whoami(ALICE);
    fresh(&h, &message(ALICE, DOMAIN, "chat", "/whoami"), |v| {
        let Verdict::Whoami { to, sender } = v else {
            panic!("expected whoami, got {v:?}")
        };
        assert_eq!(to.full(), ALICE);
        assert_eq!(sender.local.as_str(), local_of("alice@a.example"));
        assert_eq!(sender.write, WriteState::Done);
        assert_eq!(sender.forward_gen, Some(Gen::Young));
    });
    // Anything else to the relay gets the help text.
    fresh(&h, &message(ALICE, DOMAIN, "chat", "hello"), |v| {
        assert!(
            matches!(v, Verdict::Help { to } if to.full() == ALICE),
            "{v:?}"
        );
    });
}

#[test]
fn a_message_to_an_unknown_pseudonym_needs_a_lookup() {
    let mut h = online(config());
    h.whoami(BOB);
    let unknown = "a".repeat(45);
    let to = format!("{unknown}@{DOMAIN}");
    fresh(&h, &message(BOB, &to, "chat", "hi"), |v| {
        let Verdict::Wait(w) = v else {
            panic!("expected a wait, got {v:?}")
        };
        assert_eq!(w.needs, vec![Need::Lookup(unknown.clone())]);
        assert_eq!(w.sender.write, WriteState::Done);
    });
    // From a sender never written: the lookup, then the sender's write.
    fresh(&h, &message(ALICE, &to, "chat", "hi"), |v| {
        let Verdict::Wait(w) = v else {
            panic!("expected a wait, got {v:?}")
        };
        let alice = local_of("alice@a.example");
        assert_eq!(
            w.needs,
            vec![
                Need::Lookup(unknown.clone()),
                Need::Write(alice, "alice@a.example".into())
            ]
        );
    });
}

#[test]
fn what_the_store_answered_decides_a_waiting_message() {
    let mut h = online(config());
    h.whoami(BOB);
    let unknown = "a".repeat(45);
    let xml = message(BOB, &format!("{unknown}@{DOMAIN}"), "chat", "hi");
    let absent = Resolution {
        absent: vec![unknown.clone()],
        ..Resolution::default()
    };
    decided(&h, &xml, &absent, |v| {
        assert!(is_error(&v, "cancel", "item-not-found"), "{v:?}");
    });
    let failed = Resolution {
        served: Served::Failed,
        ..Resolution::default()
    };
    decided(&h, &xml, &failed, |v| {
        assert!(is_error(&v, "wait", "internal-server-error"), "{v:?}");
    });
    decided(&h, &message(BOB, DOMAIN, "chat", "/whoami"), &failed, |v| {
        assert!(is_error(&v, "wait", "internal-server-error"), "{v:?}");
    });
    // Not the shape of a pseudonym: nobody to look up.
    let xml = message(BOB, &format!("nobody@{DOMAIN}"), "chat", "hi");
    fresh(&h, &xml, |v| {
        assert!(is_error(&v, "cancel", "item-not-found"), "{v:?}");
    });
}

#[test]
fn a_message_between_known_pseudonyms_is_relayed() {
    let mut h = online(config());
    let a = h.whoami(ALICE);
    h.whoami(BOB);
    fresh(&h, &message(BOB, &a, "chat", "hi"), |v| {
        let Verdict::Relay(r) = v else {
            panic!("expected a relay, got {v:?}")
        };
        assert_eq!(&*r.recipient, "alice@a.example");
        assert_eq!(r.recipient_local.as_str(), local(&a));
        assert_eq!(r.recipient_gen, Gen::Young);
        assert_eq!(r.from.full(), BOB);
        assert_eq!(r.sender.local.as_str(), local_of("bob@b.example"));
        assert_eq!(r.sender.write, WriteState::Done);
    });
}

#[test]
fn groupchat_is_refused_and_headlines_dropped() {
    let mut h = online(config());
    let a = h.whoami(ALICE);
    for to in [DOMAIN, a.as_str()] {
        fresh(&h, &message(BOB, to, "groupchat", "hi"), |v| {
            assert!(is_error(&v, "modify", "not-acceptable"), "{v:?}");
        });
        fresh(&h, &message(BOB, to, "headline", "hi"), |v| {
            assert!(matches!(v, Verdict::Drop(Dropped::Headline)), "{v:?}");
        });
    }
    fresh(&h, &message(BOB, DOMAIN, "error", "hi"), |v| {
        assert!(matches!(v, Verdict::Drop(Dropped::ErrorToRelay)), "{v:?}");
    });
    let typing = format!(
        "<message from='{BOB}' to='{DOMAIN}' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
    );
    fresh(&h, &typing, |v| {
        assert!(matches!(v, Verdict::Drop(Dropped::NoBody)), "{v:?}");
    });
}

#[test]
fn an_error_naming_no_relayed_message_is_dropped() {
    let mut h = online(config());
    let a = h.whoami(ALICE);
    let error = |id: &str| {
        format!(
            "<message from='{BOB}' to='{a}' type='error' id='{id}'><error type='wait'><recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        )
    };
    fresh(&h, &error("abcdefghijklmnop"), |v| {
        assert!(matches!(v, Verdict::Drop(Dropped::UnknownBounce)), "{v:?}");
    });
    // One naming a message Alice sent to Bob goes back to her.
    let b = h.whoami(BOB);
    h.feed(&message(ALICE, &b, "chat", "hi"));
    let relayed = h.one();
    let id = relayed.attr("id").expect("a fresh id").to_owned();
    fresh(&h, &error(&id), |v| {
        let Verdict::Bounce(b) = v else {
            panic!("expected a bounce, got {v:?}")
        };
        assert_eq!((b.etype, b.cond), ("wait", "recipient-unavailable"));
        assert_eq!(b.to, ALICE);
        assert_eq!(b.orig_id.as_deref(), Some("m1"));
    });
}

#[test]
fn iq_to_a_pseudonym_is_refused_and_the_relay_answers_its_own() {
    let mut h = online(config());
    let a = h.whoami(ALICE);
    let iq = |to: &str, kind: &str, payload: &str| {
        format!("<iq from='{BOB}' to='{to}' type='{kind}' id='q'>{payload}</iq>")
    };
    let version = "<query xmlns='jabber:iq:version'/>";
    fresh(&h, &iq(&a, "get", version), |v| {
        assert!(is_error(&v, "cancel", "service-unavailable"), "{v:?}");
    });
    let ping = "<ping xmlns='urn:xmpp:ping'/>";
    fresh(&h, &iq(&a, "get", ping), |v| {
        assert!(is_error(&v, "cancel", "service-unavailable"), "{v:?}");
    });
    fresh(&h, &iq(DOMAIN, "get", ping), |v| {
        assert!(
            matches!(v, Verdict::Iq { answer: IqAnswer::Pong, from, .. } if from.full() == BOB),
            "{v:?}"
        );
    });
    let disco = "<query xmlns='http://jabber.org/protocol/disco#info'/>";
    fresh(&h, &iq(DOMAIN, "get", disco), |v| {
        assert!(
            matches!(
                v,
                Verdict::Iq {
                    answer: IqAnswer::DiscoInfo,
                    ..
                }
            ),
            "{v:?}"
        );
    });
    fresh(&h, &iq(DOMAIN, "get", &format!("{ping}{ping}")), |v| {
        assert!(is_error(&v, "modify", "bad-request"), "{v:?}");
    });
    fresh(&h, &iq(DOMAIN, "result", ""), |v| {
        assert!(matches!(v, Verdict::Consume), "{v:?}");
    });
}

#[test]
fn presence_answers() {
    let mut h = online(config());
    let a = h.whoami(ALICE);
    let presence =
        |to: &str, kind: &str| format!("<presence from='{BOB}' to='{to}' type='{kind}'/>");
    fresh(&h, &presence(&a, "subscribe"), |v| {
        assert!(
            matches!(v, Verdict::Presence { to: "bob@b.example", local: Some(l), answer: PresenceAnswer::Subscribed } if l == local(&a)),
            "{v:?}"
        );
    });
    fresh(
        &h,
        &presence(&format!("nobody@{DOMAIN}"), "subscribe"),
        |v| {
            assert!(
                matches!(
                    v,
                    Verdict::Presence {
                        answer: PresenceAnswer::Unsubscribed,
                        ..
                    }
                ),
                "{v:?}"
            );
        },
    );
    fresh(&h, &presence(DOMAIN, "probe"), |v| {
        assert!(
            matches!(
                v,
                Verdict::Presence {
                    to: BOB,
                    local: None,
                    answer: PresenceAnswer::Available
                }
            ),
            "{v:?}"
        );
    });
    fresh(&h, &presence(&a, "unavailable"), |v| {
        assert!(matches!(v, Verdict::Drop(Dropped::Presence)), "{v:?}");
    });
}

#[test]
fn stanzas_not_ours_are_dropped() {
    let h = online(config());
    for (xml, why) in [
        (
            message(ALICE, "other.example", "chat", "hi"),
            Dropped::NotOurs,
        ),
        (
            message(&format!("x@{DOMAIN}"), DOMAIN, "chat", "hi"),
            Dropped::NotOurs,
        ),
        (message(ALICE, "@", "chat", "hi"), Dropped::Unaddressed),
        (
            format!("<other from='{ALICE}' to='{DOMAIN}'/>"),
            Dropped::UnknownStanza,
        ),
    ] {
        fresh(&h, &xml, |v| {
            assert!(matches!(v, Verdict::Drop(w) if w == why), "{xml}: {v:?}");
        });
    }
}

#[test]
fn deciding_promotes_nothing_and_applying_does() {
    let mut c = config();
    // Two entries per generation: three senders push the first one old.
    c.cache_capacity = 4;
    let mut h = online(c);
    let a = h.whoami(ALICE);
    h.whoami(BOB);
    h.whoami("carol@c.example/x");
    let alice = local(&a).to_owned();
    assert_eq!(
        h.relay.known.peek(alice.as_str()).map(|e| e.1),
        Some(Gen::Old)
    );
    let xml = message(ALICE, DOMAIN, "chat", "/whoami");
    let el = stanza(&xml);
    let st = Incoming::new(el.root());
    let verdict = h.relay.decide(st, &Resolution::default(), h.now);
    let Verdict::Whoami { sender, .. } = &verdict else {
        panic!("expected whoami, got {verdict:?}")
    };
    assert_eq!(sender.forward_gen, Some(Gen::Old));
    assert_eq!(sender.known_gen, Some(Gen::Old));
    assert_eq!(
        h.relay.known.peek(alice.as_str()).map(|e| e.1),
        Some(Gen::Old)
    );
    let now = h.now;
    h.relay.remember(&verdict);
    h.relay.apply(st, &verdict, now);
    assert_eq!(
        h.relay.known.peek(alice.as_str()).map(|e| e.1),
        Some(Gen::Young)
    );
    assert_eq!(
        h.relay.forward.peek("alice@a.example").map(|e| e.1),
        Some(Gen::Young)
    );
    h.pump();
    assert_eq!(body(&h.one()), a);
}
