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

use crate::element::{Element, Head, Tree};
use crate::ns;
use crate::pending::Resolution;
use crate::relay::Relay;
use crate::stats::DropReason;

use self::verdict::Verdict;

/// A stanza and the attributes its handling reads, read once for deciding
/// and applying (an error reply reads them again: it is rare).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Incoming<'a> {
    el: Element<'a>,
    head: Head<'a>,
}

impl<'a> Incoming<'a> {
    pub(crate) fn new(el: Element<'a>) -> Self {
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
    pub(crate) fn handle_stanza(&mut self, tree: Tree, now: Instant) {
        let el = tree.root();
        if !ns::is_stanza_ns(el.ns()) {
            self.stats.drop(DropReason::UnknownStanza);
            return self.recycle(tree);
        }
        let st = Incoming::new(el);
        let Some(sender) = st.head.from else {
            self.stats.drop(DropReason::Unaddressed);
            return self.recycle(tree);
        };
        // The sender is copied only for a stanza that has to wait.
        if self.pending.has_queue(sender) {
            let sender = sender.to_owned();
            return self.enqueue(tree, &sender, now);
        }
        let verdict = self.decide(st, &Resolution::default(), now);
        self.remember(&verdict);
        self.count(&verdict, now);
        // Moved out only for a stanza that waits: the others are applied in
        // place, which spares the relay path a copy of its verdict.
        if let Verdict::Wait(w) = verdict {
            let (sender, needs) = (sender.to_owned(), w.needs);
            return self.enqueue_with(tree, &sender, needs, now);
        }
        self.apply(st, &verdict, now);
        self.recycle(tree);
    }

    /// Hands a handled stanza's buffers back to the framer.
    pub(super) fn recycle(&mut self, tree: Tree) {
        if let Some(framer) = self.framer.as_mut() {
            framer.recycle(tree);
        }
    }
}
