//! Operator bans (SPEC §5), driven through the simulator in virtual time.

use std::time::Duration;

use super::harness::*;
use crate::action::{Action, StoreOutcome};
use crate::bans::record::{self, Ban, List, NONCE_LEN};
use crate::bans::REFRESH_EVERY;
use crate::element::Tree;
use crate::pseudonym::Local;
use crate::store::Store;
use crate::StoreCodec;

const ALICE: &str = "alice@a.example/phone";
const BOB: &str = "bob@b.example/laptop";
const CAROL: &str = "carol@c.example/desk";

/// Write `banned` (pseudonym JIDs) as the store's ban list, one
/// generation above the stored one, as `axrelay ban` does.
fn write_bans(h: &mut Harness, banned: &[&str]) {
    let codec = StoreCodec::new(h.relay.config().encrypt);
    let stored = h.store.get(&h.bans_key).unwrap();
    let generation = stored.map_or(0, |r| {
        record::decode(&codec, DOMAIN, &r).map_or(0, |l| l.generation) + 1
    });
    write_bans_at(h, generation, banned);
}

/// Write `banned` as the ban list of `generation`.
fn write_bans_at(h: &mut Harness, generation: u64, banned: &[&str]) {
    let codec = StoreCodec::new(h.relay.config().encrypt);
    let bans: Vec<Ban> = banned
        .iter()
        .map(|p| Ban {
            local: Local::parse(local(p)).unwrap(),
            at: 1_700_000_000,
            reason: "abuse report".into(),
        })
        .collect();
    let list = List { generation, bans };
    let rec = record::encode(&codec, DOMAIN, &list, [5; NONCE_LEN]).unwrap();
    let key = h.bans_key.clone();
    h.store.put(&key, &rec, 0).unwrap();
}

/// A relay with `encrypt` that has read a sealed list of generation
/// `generation` banning Alice; her pseudonym.
fn sealed_with_ban_at(generation: u64) -> (Harness, String) {
    let mut c = config();
    c.encrypt = Some([4; 32]);
    let mut h = online(c);
    let a = h.whoami(ALICE);
    write_bans_at(&mut h, generation, &[&a]);
    h.advance(REFRESH_EVERY);
    (h, a)
}

fn chat(h: &mut Harness, from: &str, to: &str, id: &str) {
    h.feed(&format!(
        "<message from='{from}' to='{to}' type='chat' id='{id}'><body>{id}</body></message>"
    ));
}

/// `forbidden` of type `cancel`, to `to`, from `from`.
fn is_forbidden(e: &Tree, to: &str, from: &str) -> bool {
    e.attr("type") == Some("error")
        && e.attr("to") == Some(to)
        && e.attr("from") == Some(from)
        && error_condition(e) == Some(("cancel".into(), "forbidden".into()))
}

#[test]
fn a_banned_sender_is_refused_and_nothing_is_relayed() {
    let mut h = online(config());
    let a = h.whoami(ALICE);
    let b = h.whoami(BOB);
    let c = h.whoami(CAROL);
    write_bans(&mut h, &[&b]);
    h.advance(REFRESH_EVERY);
    assert_eq!(h.relay.bans.listed(), vec![local(&b).to_owned()]);

    chat(&mut h, BOB, &a, "b0");
    assert!(is_forbidden(&h.one(), BOB, &a));
    h.feed(&format!(
        "<message from='{BOB}' to='{DOMAIN}' type='chat' id='w'><body>/whoami</body></message>"
    ));
    assert!(is_forbidden(&h.one(), BOB, DOMAIN));
    assert_eq!(h.relay.stats().banned, 2);
    assert_eq!(
        h.relay.stats().rejected_for(crate::RejectReason::Forbidden),
        2
    );

    // Another sender is fine, also to the same recipient.
    chat(&mut h, CAROL, &a, "c0");
    assert_eq!(h.one().attr("to"), Some("alice@a.example"));
    let _ = c;
}

#[test]
fn a_message_to_a_banned_pseudonym_is_refused() {
    let mut h = online(config());
    let a = h.whoami(ALICE);
    let _b = h.whoami(BOB);
    write_bans(&mut h, &[&a]);
    h.advance(REFRESH_EVERY);
    let gets = h.gets;
    chat(&mut h, BOB, &a, "b0");
    assert!(is_forbidden(&h.one(), BOB, &a));
    assert_eq!(h.gets, gets, "refused without a lookup");
    assert_eq!(h.relay.stats().relayed, 0);
}

#[test]
fn the_list_is_read_when_online_and_then_every_second() {
    let mut h = online(config());
    assert_eq!(h.ban_ops, 1, "read when the relay comes online");
    let due = h.now + REFRESH_EVERY;
    assert!(h.relay.poll_timeout().is_some_and(|t| t <= due));
    h.advance(Duration::from_millis(500));
    assert_eq!(h.ban_ops, 1);
    h.advance(Duration::from_millis(500));
    assert_eq!(h.ban_ops, 2);
    assert_eq!(h.log.last(), Some(&h.bans_key));

    // One read at a time: a slow store is not asked again before it
    // answers or the read times out.
    h.mode = StoreMode::Hold;
    h.advance(REFRESH_EVERY);
    assert_eq!(h.ban_ops, 3);
    assert!(matches!(&h.held[0].action, Action::Get { key, .. } if *key == h.bans_key));
    h.advance(REFRESH_EVERY);
    assert_eq!(h.ban_ops, 3);
    h.advance(h.relay.config().store_timeout);
    assert_eq!(h.ban_ops, 4, "given up and read again");
    // A ban written meanwhile takes effect at the next answered read.
    let a = {
        h.mode = StoreMode::Auto;
        h.release_all();
        h.whoami(ALICE)
    };
    write_bans(&mut h, &[&a]);
    h.advance(REFRESH_EVERY);
    assert_eq!(h.relay.bans.listed(), vec![local(&a).to_owned()]);

    // Offline: no deadline for the bans, no reads.
    h.relay.handle_closed(h.now);
    h.pump();
    assert_eq!(h.relay.poll_timeout(), None);
}

#[test]
fn a_failed_or_unreadable_read_keeps_the_last_list() {
    let mut h = online(config());
    let a = h.whoami(ALICE);
    write_bans(&mut h, &[&a]);
    h.advance(REFRESH_EVERY);
    h.mode = StoreMode::Fail;
    h.advance(REFRESH_EVERY);
    assert_eq!(h.relay.bans.listed(), vec![local(&a).to_owned()]);
    h.mode = StoreMode::Auto;
    // Tampered with: not taken.
    let key = h.bans_key.clone();
    let mut rec = h.store.get(&key).unwrap().unwrap();
    rec.push(0);
    h.store.put(&key, &rec, 0).unwrap();
    h.advance(REFRESH_EVERY);
    assert_eq!(h.relay.bans.listed(), vec![local(&a).to_owned()]);
    // An empty list, as `unban` writes it, clears the set.
    write_bans(&mut h, &[]);
    h.advance(REFRESH_EVERY);
    assert!(!h.relay.bans.any());
}

#[test]
fn a_missing_record_is_written_back_when_bans_were_known() {
    let (mut h, a) = sealed_with_ban_at(0);
    let key = h.bans_key.clone();
    let stored = h.store.get(&key).unwrap().unwrap();

    // The store lost it (a memcached restart): answered as missing.
    h.mode = StoreMode::Hold;
    h.advance(REFRESH_EVERY);
    let held = h.held.remove(0);
    let Action::Get { op, .. } = held.action else {
        panic!("expected the ban list's read: {:?}", held.action)
    };
    h.relay.handle_store(op, StoreOutcome::Found(None), h.now);
    h.pump();
    let Action::Put {
        key: put,
        value,
        ttl,
        ..
    } = &h.held[0].action
    else {
        panic!("expected a write back: {:?}", h.held)
    };
    assert_eq!((put, &value[..], *ttl), (&key, &stored[..], 0));
    assert_eq!(h.relay.bans.listed(), vec![local(&a).to_owned()]);

    // Without a known list, a missing record means no bans.
    let mut fresh = online(config());
    assert!(!fresh.relay.bans.any());
    fresh.advance(REFRESH_EVERY);
    assert_eq!(fresh.ban_ops, 2, "reads only, nothing written");
}

#[test]
fn with_no_bans_nothing_is_refused() {
    let mut h = online(config());
    write_bans(&mut h, &[]);
    h.advance(REFRESH_EVERY);
    assert!(!h.relay.bans.any());
    let a = h.whoami(ALICE);
    let b = h.whoami(BOB);
    chat(&mut h, BOB, &a, "b0");
    assert_eq!(h.one().attr("to"), Some("alice@a.example"));
    chat(&mut h, ALICE, &b, "a0");
    assert_eq!(h.one().attr("to"), Some("bob@b.example"));
    assert_eq!(h.relay.stats().banned, 0);
}

#[test]
fn refusals_are_logged_once_a_minute_per_pseudonym() {
    let mut h = online(config());
    let a = h.whoami(ALICE);
    write_bans(&mut h, &[&a]);
    h.advance(REFRESH_EVERY);
    let l = Local::parse(local(&a)).unwrap();
    let t = h.now;
    assert_eq!(h.relay.bans.refused(&l, t), Some(1));
    assert_eq!(h.relay.bans.refused(&l, t + Duration::from_secs(1)), None);
    assert_eq!(h.relay.bans.refused(&l, t + Duration::from_secs(2)), None);
    assert_eq!(
        h.relay.bans.refused(&l, t + Duration::from_secs(60)),
        Some(3)
    );
}

#[test]
fn a_stanza_waiting_for_the_store_is_refused_once_the_ban_list_arrives() {
    let mut first = online(config());
    let a = first.whoami(ALICE);
    let b = first.whoami(BOB);
    // A fresh relay over the same store has to look Alice's pseudonym up.
    let store = std::mem::take(&mut first.store);
    let mut h = online(config());
    h.store = store;
    h.mode = StoreMode::Hold;
    chat(&mut h, BOB, &a, "b0");
    assert!(h.take().is_empty(), "waiting for the lookup");
    let lookup = h.held.len();
    assert!(lookup > 0);
    // Bob is banned meanwhile, and the list is read before the lookup answers.
    write_bans(&mut h, &[&b]);
    h.advance(REFRESH_EVERY);
    let read = h
        .held
        .iter()
        .position(|held| matches!(&held.action, Action::Get { key, .. } if *key == h.bans_key))
        .expect("the ban list's read");
    h.answer(read, crate::testing::Answer::Right);
    assert_eq!(h.relay.bans.listed(), vec![local(&b).to_owned()]);
    h.release_all();
    assert!(is_forbidden(&h.one(), BOB, &a));
    assert_eq!(h.relay.stats().relayed, 0);
    assert_eq!(h.relay.stats().banned, 1);
}

#[test]
fn a_sealed_record_that_does_not_authenticate_keeps_the_last_list() {
    let (mut h, a) = sealed_with_ban_at(0);
    assert_eq!(h.relay.bans.listed(), vec![local(&a).to_owned()]);
    super::logs::capture();
    let key = h.bans_key.clone();
    let stored = h.store.get(&key).unwrap().unwrap();
    // Sealed under another key, with a higher generation: not taken.
    let other = StoreCodec::new(Some([5; 32]));
    let list = List {
        generation: 99,
        bans: Vec::new(),
    };
    let forged = record::encode(&other, DOMAIN, &list, [6; NONCE_LEN]).unwrap();
    h.store.put(&key, &forged, 0).unwrap();
    h.advance(REFRESH_EVERY);
    assert_eq!(h.relay.bans.listed(), vec![local(&a).to_owned()]);
    // A flipped bit in the ciphertext: not taken either.
    let mut flipped = stored.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    h.store.put(&key, &flipped, 0).unwrap();
    h.advance(REFRESH_EVERY);
    assert_eq!(h.relay.bans.listed(), vec![local(&a).to_owned()]);
    let warned = super::logs::taken(log::Level::Warn, "does not authenticate");
    assert_eq!(warned.len(), 1, "one warning: {warned:?}");
    // The authentic record again: taken, and a later bad one warns again.
    h.store.put(&key, &stored, 0).unwrap();
    h.advance(REFRESH_EVERY);
    h.store.put(&key, &forged, 0).unwrap();
    h.advance(REFRESH_EVERY);
    assert_eq!(
        super::logs::taken(log::Level::Warn, "does not authenticate").len(),
        2
    );
}

#[test]
fn an_older_generation_is_refused_with_one_warning() {
    let (mut h, a) = sealed_with_ban_at(5);
    assert_eq!(h.relay.bans.listed(), vec![local(&a).to_owned()]);
    super::logs::capture();
    // An authentic but older list replayed into the store: the ban stays.
    write_bans_at(&mut h, 4, &[]);
    h.advance(REFRESH_EVERY);
    write_bans_at(&mut h, 0, &[]);
    h.advance(REFRESH_EVERY);
    assert_eq!(h.relay.bans.listed(), vec![local(&a).to_owned()]);
    let warned = super::logs::taken(log::Level::Warn, "older");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("generation 4"), "{}", warned[0]);
    // The same generation is taken (two writers may both write it), and
    // a newer one too.
    write_bans_at(&mut h, 5, &[]);
    h.advance(REFRESH_EVERY);
    assert!(!h.relay.bans.any());
    write_bans_at(&mut h, 6, &[&a]);
    h.advance(REFRESH_EVERY);
    assert!(h.relay.bans.any());
}

#[test]
fn refusals_are_logged_once_a_minute_naming_the_pseudonym_only() {
    let mut h = online(config());
    let a = h.whoami(ALICE);
    let b = h.whoami(BOB);
    write_bans(&mut h, &[&b]);
    h.advance(REFRESH_EVERY);
    super::logs::capture();
    for id in ["1", "2", "3"] {
        chat(&mut h, BOB, &a, id);
        assert!(is_forbidden(&h.one(), BOB, &a));
    }
    let lines = super::logs::taken(log::Level::Info, "ban:");
    assert_eq!(
        lines,
        [format!(
            "ban: {} is banned; 1 of its stanzas refused since the last such line",
            local(&b)
        )]
    );
    h.advance(Duration::from_secs(60));
    chat(&mut h, BOB, &a, "4");
    h.take();
    let lines = super::logs::taken(log::Level::Info, "ban:");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("3 of its stanzas"), "{}", lines[1]);
    assert!(lines.iter().all(|l| !l.contains("bob@")), "{lines:?}");
}
