//! The stanza path (SPEC §5): what the relay does with each stanza it
//! receives while online. These modules are the second half of
//! `impl Relay`; `relay.rs`, the connection, is the first, and calls in
//! here only through `handle_stanza` (below), `settle_outcome` and
//! `settle` (store answers, `wait.rs`) and `reply_error` (`apply.rs`).
//! Read them in this order:
//!
//! 1. this file: the entry, and the per-sender order;
//! 2. `verdict.rs`: what can become of a stanza;
//! 3. `decide.rs`: the verdict for a stanza, without side effects;
//! 4. `apply.rs`: carrying a verdict out (output, counters, ids, caches);
//! 5. `wait.rs`: stanzas waiting on the store, and the store's answers.

mod apply;
mod decide;
pub(crate) mod verdict;
mod wait;

use std::time::Instant;

use crate::element::{Element, Head};
use crate::ns;
use crate::pending::Resolution;
use crate::relay::Relay;
use crate::stats::DropReason;

/// A stanza and the attributes its handling reads, read once: the steps
/// take this rather than the element and its head side by side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Incoming<'a> {
    el: &'a Element,
    head: Head<'a>,
}

impl<'a> Incoming<'a> {
    pub(crate) fn new(el: &'a Element) -> Self {
        Incoming {
            el,
            head: el.head(),
        }
    }
}

/// The type a relayed message or a bot reply keeps: `chat` or `normal`.
fn kept_type(head: Head<'_>) -> Option<&str> {
    head.kind.filter(|t| *t == "chat" || *t == "normal")
}

impl Relay {
    /// A stanza from the server while online.
    pub(crate) fn handle_stanza(&mut self, el: Element, now: Instant) {
        if !ns::is_stanza_ns(el.ns()) {
            self.stats.drop(DropReason::UnknownStanza);
            return;
        }
        let st = Incoming::new(&el);
        let Some(sender) = st.head.from else {
            self.stats.drop(DropReason::Unaddressed);
            return;
        };
        // The sender is copied only for a stanza that has to wait.
        if self.pending.has_queue(sender) {
            let sender = sender.to_owned();
            return self.enqueue(el, &sender, now);
        }
        let verdict = self.decide(st, &Resolution::default(), now);
        if let Err(needs) = self.apply(st, verdict, now) {
            let sender = sender.to_owned();
            self.enqueue_with(el, &sender, needs, now);
        }
    }
}
