//! Store entries and pseudonym verification with arbitrary keys, values and
//! identities (SPEC §3, §4).
//!
//! * `StoreCodec::open` and `Pseudonymizer::verify` never panic, whatever
//!   they are given.
//! * Round trip: a sealed identity opens, under the same key and pseudonym,
//!   as itself; sealing is deterministic.
//! * With encryption, a value that opens under key K for pseudonym P was
//!   sealed under K for P (it equals `seal(P, identity)`); a changed,
//!   shortened or lengthened value, another pseudonym or another key does
//!   not open.
//! * `verify(l, i)` holds exactly when `l == localpart(i)`: no second
//!   spelling of a pseudonym (case, trailing base32 bits) is accepted.
//! * Store keys: 45 lower-case base32 characters that do not reveal the
//!   pseudonym when encrypted; `axr:` + localpart when clear.
#![no_main]

use arbitrary::Arbitrary;
use axrelay_proto::pseudonym::LOCALPART_LEN;
use axrelay_proto::{Pseudonymizer, StoreCodec};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    encrypt: Option<[u8; 32]>,
    other_key: [u8; 32],
    secret: Vec<u8>,
    identity: String,
    other_identity: String,
    domain: Domain,
    /// Use an arbitrary localpart instead of the identity's pseudonym.
    local: Option<String>,
    /// A stored value from nowhere.
    value: Vec<u8>,
    /// A change to the sealed value: (position, xor mask).
    flip: (u16, u8),
    cut: u8,
    /// A change to the localpart: (position, new character).
    respell: (u8, u8),
}

#[derive(Arbitrary, Debug)]
enum Domain {
    Fixed,
    Any(String),
}

fuzz_target!(|inp: Input| {
    let domain = match &inp.domain {
        Domain::Fixed => "axr.example".to_owned(),
        Domain::Any(d) => d.clone(),
    };
    let secret: &[u8] = if inp.secret.is_empty() {
        b"s"
    } else {
        &inp.secret
    };
    let p = Pseudonymizer::new(secret);
    let canonical = p.localpart(&inp.identity);
    assert_eq!(canonical.len(), LOCALPART_LEN);
    assert!(Pseudonymizer::is_well_formed(&canonical));
    assert!(
        p.verify(&canonical, &inp.identity),
        "own pseudonym not verified"
    );

    // verify(l, i) <=> l == localpart(i), for arbitrary l and for one-character
    // respellings of the real localpart.
    if let Some(l) = &inp.local {
        assert_eq!(
            p.verify(l, &inp.identity),
            *l == canonical,
            "verify({l:?}, {:?})",
            inp.identity
        );
    }
    let mut respelled = canonical.clone().into_bytes();
    let at = usize::from(inp.respell.0) % respelled.len();
    respelled[at] = inp.respell.1;
    if let Ok(r) = String::from_utf8(respelled) {
        assert_eq!(
            p.verify(&r, &inp.identity),
            r == canonical,
            "second spelling {r:?} of {canonical:?} accepted"
        );
    }
    if inp.other_identity != inp.identity {
        assert!(!p.verify(&canonical, &inp.other_identity));
    }

    let local = inp.local.clone().unwrap_or_else(|| canonical.clone());
    let codec = StoreCodec::new(inp.encrypt);

    // Keys.
    let key = codec.key(&local, &domain);
    match inp.encrypt {
        None => assert_eq!(key, format!("axr:{local}")),
        Some(_) => {
            assert_eq!(key.len(), 45);
            assert!(key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));
            if local.len() >= 8 {
                assert!(!key.contains(&local));
            }
        }
    }

    // Round trip, determinism.
    let sealed = codec.seal(&local, &domain, &inp.identity);
    assert_eq!(sealed, codec.seal(&local, &domain, &inp.identity));
    assert_eq!(
        codec.open(&local, &domain, &sealed).as_deref(),
        Some(inp.identity.as_str()),
        "round trip"
    );

    // A value from nowhere never panics; if it opens, it is what sealing
    // that identity for this pseudonym gives.
    let opened = codec.open(&local, &domain, &inp.value);
    match (&opened, inp.encrypt) {
        (Some(id), Some(_)) => {
            assert_eq!(&codec.seal(&local, &domain, id)[..], &inp.value[..]);
        }
        (Some(id), None) => assert_eq!(id.as_bytes(), &inp.value[..]),
        (None, None) => assert!(std::str::from_utf8(&inp.value).is_err()),
        (None, Some(_)) => {}
    }
    if let Some(id) = &opened {
        // The relay then verifies it; this must agree with the forward map.
        assert_eq!(p.verify(&local, id), local == p.localpart(id));
    }

    let Some(_) = inp.encrypt else { return };

    // Tampering.
    let mut bad = sealed.to_vec();
    let i = usize::from(inp.flip.0) % bad.len();
    let mask = inp.flip.1 | 1;
    bad[i] ^= mask;
    assert_eq!(codec.open(&local, &domain, &bad), None, "flipped byte {i}");
    let cut = usize::from(inp.cut) % sealed.len();
    assert_eq!(
        codec.open(&local, &domain, &sealed[..cut]),
        None,
        "cut to {cut}"
    );
    let mut longer = sealed.to_vec();
    longer.push(inp.cut);
    assert_eq!(
        codec.open(&local, &domain, &longer),
        None,
        "one byte longer"
    );

    // Another key.
    if Some(inp.other_key) != inp.encrypt {
        let other = StoreCodec::new(Some(inp.other_key));
        assert_eq!(
            other.open(&local, &domain, &sealed),
            None,
            "opened under another key"
        );
        assert_ne!(other.key(&local, &domain), key);
    }

    // Another pseudonym (the entry key is bound to `local@domain`).
    let other_local = p.localpart(&inp.other_identity);
    if format!("{other_local}@{domain}") != format!("{local}@{domain}") {
        assert_eq!(
            codec.open(&other_local, &domain, &sealed),
            None,
            "value for {local} opened for {other_local}"
        );
    }
});
