//! The relay's framer against rxml (`axrelay_proto::testing::xml_diff`).
//!
//! Input layout: `[flags][bytes]`; a `<` is put after the bytes, so that
//! both parsers check the text before it (rxml reports text only when the
//! next markup starts). Flag bit 0 puts an XMPP stream header before the
//! bytes (so the fuzzer spends its time on stanzas); bit 1 sets limits
//! small enough for these inputs to break (`small_limits`); bits 2–7 pick
//! the size of the pieces the framer is fed in (1 to 64 bytes).
//!
//! Invariants:
//! - the framer gives the same frames and the same error (condition and
//!   reason) whether the input comes whole or in pieces, with either limits;
//! - with limits out of reach, rxml, fed the same bytes whole (line ends as
//!   LF, `line_ends_as_lf`), gives the same frames and refuses the input
//!   exactly when the framer does (`Parsed::agrees_with` says what rxml's
//!   reading ahead allows), but for `known_difference`, where rxml is
//!   wrong.
#![no_main]

use axrelay_proto::testing::xml_diff::{
    framer_with, known_difference, line_ends_as_lf, no_limits, rxml, small_limits,
};
use libfuzzer_sys::fuzz_target;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='s1'>";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let input = if flags & 1 == 1 {
        [HEADER, rest, b"<"].concat()
    } else {
        [rest, b"<"].concat()
    };
    let small = flags & 2 == 2;
    let limits = if small { small_limits() } else { no_limits() };
    let step = usize::from(flags >> 2) + 1;
    let whole = framer_with(limits.clone(), &input, input.len());
    let pieces = framer_with(limits, &input, step);
    assert_eq!(
        (&whole.frames, &whole.error, &whole.reason),
        (&pieces.frames, &pieces.error, &pieces.reason),
        "split in pieces of {step}"
    );
    if small {
        return;
    }
    let theirs = rxml(&line_ends_as_lf(&input));
    if known_difference(&whole, &theirs) {
        return;
    }
    if let Err(e) = whole.agrees_with(&theirs) {
        panic!("{e}");
    }
});
