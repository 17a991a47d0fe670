//! The stanzas of the benchmarks, built by hand into byte buffers (the way
//! a server writes them: already normalised, in the component namespace).

use std::io::Write as _;

use axrelay_proto::testing;

/// The relay's component domain in every benchmark.
pub const COMPONENT: &str = "axr.load.example";
/// The users' domain.
pub const USER_DOMAIN: &str = "load.example";
/// The resource every simulated user sends from.
pub const USER_RESOURCE: &str = "r";
/// The resource of relayed stanzas (the relay's default).
pub const RELAY_RESOURCE: &str = "a";
pub use testing::{COMPONENT_NS, STREAMS_NS};
/// Chat states (XEP-0085).
pub const CHATSTATES_NS: &str = "http://jabber.org/protocol/chatstates";

/// `user{i}@load.example`: the identity (bare JID) of user `i`.
pub fn user_bare(i: usize) -> String {
    format!("user{i}@{USER_DOMAIN}")
}

/// The stream header a server sends to a component, with the stream id.
pub fn server_header(id: &str) -> String {
    testing::server_header(COMPONENT, id)
}

pub use testing::handshake_digest;

/// A chat message from user `from` to the pseudonym `to_local`, carrying
/// `body` (which must need no escaping).
pub fn push_message(out: &mut Vec<u8>, from: usize, to_local: &str, id: u64, body: &[u8]) {
    let _ = write!(
        out,
        "<message from='user{from}@{USER_DOMAIN}/{USER_RESOURCE}' \
         to='{to_local}@{COMPONENT}' type='chat' id='m{id}'><body>"
    );
    out.extend_from_slice(body);
    out.extend_from_slice(b"</body></message>");
}

/// A body-less typing notification from user `from` to `to_local`.
pub fn push_typing(out: &mut Vec<u8>, from: usize, to_local: &str, id: u64) {
    let _ = write!(
        out,
        "<message from='user{from}@{USER_DOMAIN}/{USER_RESOURCE}' \
         to='{to_local}@{COMPONENT}' type='chat' id='t{id}'>\
         <composing xmlns='{CHATSTATES_NS}'/></message>"
    );
}

/// `/whoami` from user `from` to the relay itself.
pub fn push_whoami(out: &mut Vec<u8>, from: usize, id: u64) {
    let _ = write!(
        out,
        "<message from='user{from}@{USER_DOMAIN}/{USER_RESOURCE}' \
         to='{COMPONENT}' type='chat' id='w{id}'><body>/whoami</body></message>"
    );
}

/// A body of exactly `len` bytes (lower-case letters and digits, so it
/// needs no escaping) that starts with `prefix`; the filler after the
/// prefix depends on `seed`, so a receiver can check it byte for byte.
pub fn push_body(out: &mut Vec<u8>, prefix: &[u8], seed: u64, len: usize) {
    out.extend_from_slice(prefix);
    let mut need = len.saturating_sub(prefix.len());
    let start = (seed % 26) as usize;
    while need > 0 {
        let take = need.min(FILLER.len() - start);
        out.extend_from_slice(&FILLER[start..start + take]);
        need -= take;
    }
}

/// Whether `filler` is exactly what [`push_body`] wrote after its prefix.
pub fn check_filler(filler: &[u8], seed: u64) -> bool {
    let start = (seed % 26) as usize;
    let mut rest = filler;
    while !rest.is_empty() {
        let take = rest.len().min(FILLER.len() - start);
        if rest[..take] != FILLER[start..start + take] {
            return false;
        }
        rest = &rest[take..];
    }
    true
}

const FILLER: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_asked_length_and_check() {
        for len in [0, 5, 100, 1000, 10_000] {
            for seed in [0, 7, 25, 1234] {
                let mut b = Vec::new();
                push_body(&mut b, b"12 34 ", seed, len);
                assert_eq!(b.len(), len.max(6));
                if len > 6 {
                    assert!(check_filler(&b[6..], seed));
                    assert!(!check_filler(&b[6..], seed + 1));
                }
            }
        }
    }

    #[test]
    fn digest_is_lower_hex_sha1() {
        // SHA-1("abc") = a9993e36...
        assert_eq!(
            handshake_digest("a", "bc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
