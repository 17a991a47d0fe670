//! The relay's framer against rxml (`axrelay_proto::testing::xml_diff`).
//!
//! Input layout: `[flags][bytes]`; a `<` is put after the bytes. Flag bit 0 puts an XMPP stream header
//! before the bytes (so the fuzzer spends its time on stanzas); bits 1–7
//! pick the size of the pieces the framer is fed in (1 to 128 bytes).
//!
//! Invariants:
//! - the framer gives the same frames and the same error condition whether the input
//!   comes whole or in pieces;
//! - rxml, fed the same bytes whole (line ends as LF, `line_ends_as_lf`), gives the same frames, and refuses
//!   the input exactly when the framer does, except that rxml may refuse
//!   the first bytes of a token the framer waits to see whole, and but
//!   for `known_difference`, where rxml is wrong.
#![no_main]

use axrelay_proto::testing::xml_diff::{framer, known_difference, line_ends_as_lf, rxml};
use libfuzzer_sys::fuzz_target;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='s1'>";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    // The `<` at the end ends any text, so that both parsers check it: rxml
    // reports text only when the next markup starts.
    let input = if flags & 1 == 1 {
        [HEADER, rest, b"<"].concat()
    } else {
        [rest, b"<"].concat()
    };
    let step = usize::from(flags >> 1) + 1;
    let whole = framer(&input, input.len());
    let pieces = framer(&input, step);
    assert_eq!(
        (&whole.frames, &whole.error),
        (&pieces.frames, &pieces.error),
        "split in pieces of {step}"
    );
    let theirs = rxml(&line_ends_as_lf(&input));
    if known_difference(&whole, &theirs) {
        return;
    }
    if let Err(e) = whole.agrees_with(&theirs) {
        panic!("{e}");
    }
});
