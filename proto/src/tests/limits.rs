//! Rate limits (SPEC §5), driven through the simulator in virtual time.

use std::time::Duration;

use super::harness::*;
use crate::element::Tree;
use crate::{Rate, RateLimits};

const ALICE: &str = "alice@a.example/phone";
const BOB: &str = "bob@b.example/laptop";
const CAROL: &str = "carol@c.example/desk";

fn limited(rates: RateLimits) -> Harness {
    let mut c = config();
    c.rates = rates;
    online(c)
}

fn chat(h: &mut Harness, from: &str, to: &str, id: &str) {
    h.feed(&format!(
        "<message from='{from}' to='{to}' type='chat' id='{id}'><body>{id}</body></message>"
    ));
}

/// `policy-violation` of type `wait`, to `to`, from `from`.
fn is_refusal(e: &Tree, to: &str, from: &str) -> bool {
    let err = e.elements().find(|c| c.name() == "error");
    e.attr("type") == Some("error")
        && e.attr("to") == Some(to)
        && e.attr("from") == Some(from)
        && err.is_some_and(|err| {
            err.attr("type") == Some("wait")
                && err.elements().any(|c| c.name() == "policy-violation")
        })
}

#[test]
fn over_its_message_rate_a_sender_is_refused_and_others_go_on() {
    let mut h = limited(RateLimits {
        messages: Rate {
            per_second: 1.0,
            burst: 3,
        },
        ..RateLimits::default()
    });
    let a = h.whoami(ALICE);
    let _b = h.whoami(BOB);
    let c = h.whoami(CAROL);
    for i in 0..5 {
        chat(&mut h, BOB, &a, &format!("b{i}"));
    }
    let out = h.take();
    assert_eq!(out.len(), 5, "{out:#?}");
    let relayed = out
        .iter()
        .filter(|e| e.attr("to") == Some("alice@a.example"));
    assert_eq!(relayed.count(), 3, "{out:#?}");
    let refused: Vec<_> = out.iter().filter(|e| is_refusal(e, BOB, &a)).collect();
    assert_eq!(refused.len(), 2, "{out:#?}");
    assert_eq!(h.relay.stats().rate_limited, 2);

    // Another sender is not held up; Bob gets one more a second later.
    chat(&mut h, CAROL, &a, "c0");
    assert_eq!(h.one().attr("to"), Some("alice@a.example"));
    h.advance(Duration::from_secs(1));
    chat(&mut h, BOB, &a, "b5");
    assert_eq!(h.one().attr("to"), Some("alice@a.example"));
    chat(&mut h, BOB, &c, "b6");
    assert!(is_refusal(&h.one(), BOB, &c));
}

#[test]
fn whoami_has_a_limit_of_its_own() {
    let mut h = limited(RateLimits {
        whoami: Rate {
            per_second: 0.1,
            burst: 2,
        },
        ..RateLimits::default()
    });
    let a = h.whoami(ALICE);
    assert_eq!(h.whoami(ALICE), a);
    h.feed(&format!(
        "<message from='{ALICE}' to='{DOMAIN}' type='chat' id='w3'><body>/whoami</body></message>"
    ));
    assert!(is_refusal(&h.one(), ALICE, DOMAIN));
    // Messages are counted apart: Alice can still write.
    let b = h.whoami(BOB);
    chat(&mut h, ALICE, &b, "a0");
    assert_eq!(h.one().attr("to"), Some("bob@b.example"));
    h.advance(Duration::from_secs(10));
    assert_eq!(h.whoami(ALICE), a);
}

#[test]
fn the_global_limit_holds_for_all_senders_together() {
    let mut h = limited(RateLimits {
        global: Rate {
            per_second: 1.0,
            burst: 2,
        },
        ..RateLimits::default()
    });
    let a = h.whoami(ALICE);
    let b = h.whoami(BOB);
    chat(&mut h, BOB, &a, "b0");
    chat(&mut h, ALICE, &b, "a0");
    assert_eq!(h.take().len(), 2);
    h.feed(&format!(
        "<message from='{CAROL}' to='{a}' type='chat' id='c0'><body>c0</body></message>"
    ));
    assert!(is_refusal(&h.one(), CAROL, &a));
}

#[test]
fn a_stanza_that_waits_for_the_store_is_counted_once() {
    let mut h = limited(RateLimits {
        messages: Rate {
            per_second: 0.001,
            burst: 2,
        },
        ..RateLimits::default()
    });
    let a = h.whoami(ALICE);
    // Bob's first message waits for his mapping's write, the second
    // queues behind it: both are counted when they arrive, not again when
    // they run.
    h.mode = StoreMode::Hold;
    chat(&mut h, BOB, &a, "b0");
    chat(&mut h, BOB, &a, "b1");
    assert!(h.take().is_empty());
    h.mode = StoreMode::Auto;
    h.release_all();
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out.iter().all(|e| e.attr("to") == Some("alice@a.example")));
    chat(&mut h, BOB, &a, "b2");
    assert!(is_refusal(&h.one(), BOB, &a));
}
