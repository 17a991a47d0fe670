//! What can become of a stanza: the [`Verdict`] `decide.rs` reaches and
//! `apply.rs` carries out. A verdict borrows from the stanza only, never
//! from the relay, so the relay is free to change while it is applied.

use std::sync::Arc;

use crate::cache::Gen;
use crate::jid::Jid;
use crate::pending::Need;
use crate::pseudonym::Local;
use crate::rate::{Counted, Over};
pub(crate) use crate::stats::{DropReason as Dropped, RejectReason};

/// What to do with one stanza.
#[derive(Debug)]
pub(crate) enum Verdict<'a> {
    /// Nothing is sent; counted in `dropped`.
    Drop(Dropped),
    /// Nothing is sent or counted: IQ results and errors (keepalive answers
    /// among them) are consumed.
    Consume,
    /// An error reply from the address the stanza was sent to.
    Error {
        etype: &'static str,
        cond: RejectReason,
    },
    /// The bot's help text, to the sender.
    Help { to: Jid<'a> },
    /// The bot tells the sender their pseudonym.
    Whoami { to: Jid<'a>, sender: Sender<'a> },
    /// Pass the message on to a real user, from the sender's pseudonym.
    Relay(Relayed<'a>),
    /// Pass a delivery error back to the original sender (SPEC §5).
    Bounce(Bounce),
    /// Synthesised presence to `to`, from the pseudonym (or the relay) it
    /// was sent to.
    Presence {
        to: &'a str,
        local: Option<&'a str>,
        answer: PresenceAnswer,
    },
    /// The relay answers an IQ itself.
    Iq {
        from: Jid<'a>,
        to: Jid<'a>,
        answer: IqAnswer,
    },
    /// The store has to answer first; what the caches gave is remembered
    /// all the same.
    Wait(Wait<'a>),
    /// Over a rate limit: `policy-violation` (`wait`) to the sender, from
    /// the address it wrote to.
    Limited { sender: Local, over: Over },
    /// The sender or the recipient is banned: `forbidden` (`cancel`) to the
    /// sender, from the address it wrote to.
    Banned { local: Local, role: BanRole },
}

/// Whose ban refused a stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BanRole {
    Sender,
    Recipient,
}

/// The sender's pseudonym, as the caches gave it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sender<'a> {
    /// What the pseudonym is derived from (SPEC §3).
    pub(crate) identity: &'a str,
    pub(crate) local: Local,
    /// Where `forward` holds it; `None`: computed now, to be cached.
    pub(crate) forward_gen: Option<Gen>,
    /// Where `known` holds the mapping, if it does.
    pub(crate) known_gen: Option<Gen>,
    pub(crate) write: WriteState,
}

/// What a mapping needs before it may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteState {
    /// Written, and the store has not failed since.
    Done,
    /// Written, but the store failed since: write it again, without waiting.
    Refresh,
    /// Never written by this relay, or due for renewal under `ttl`: write it
    /// first.
    Needed,
}

/// A message to relay, with everything writing it takes.
#[derive(Debug)]
pub(crate) struct Relayed<'a> {
    pub(crate) from: Jid<'a>,
    pub(crate) sender: Sender<'a>,
    /// Who is behind the pseudonym the message was sent to.
    pub(crate) recipient: Arc<str>,
    pub(crate) recipient_local: Local,
    /// Where `known` holds the recipient's mapping.
    pub(crate) recipient_gen: Gen,
}

/// A delivery error to pass back, rebuilt from its type and defined
/// condition only.
#[derive(Debug)]
pub(crate) struct Bounce {
    /// The original sender's full JID.
    pub(crate) to: String,
    /// The id the sender gave the message.
    pub(crate) orig_id: Option<String>,
    /// The bouncing user's pseudonym, which the error comes from.
    pub(crate) from_local: Local,
    /// The original sender's pseudonym.
    pub(crate) to_local: Local,
    /// Where `known` holds the original sender's mapping, when it was read
    /// there.
    pub(crate) known_gen: Option<Gen>,
    pub(crate) etype: &'static str,
    pub(crate) cond: &'static str,
}

/// The relay's answer to a subscription request or a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PresenceAnswer {
    /// `subscribed`, then available presence.
    Subscribed,
    /// `unsubscribed`: the address is not a pseudonym.
    Unsubscribed,
    /// Available presence.
    Available,
}

/// An IQ the relay answers itself (at its own address only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IqAnswer {
    DiscoInfo,
    DiscoItems,
    Pong,
}

/// Store operations a stanza needs before it can be handled.
#[derive(Debug)]
pub(crate) struct Wait<'a> {
    pub(crate) needs: Vec<Need>,
    /// What the stanza counts as against the rate limits (a bounce
    /// counts as nothing).
    pub(crate) counted: Option<Counted>,
    /// Whoever sent the stanza (for a bounce, the error's sender), whose
    /// pseudonym deciding computed.
    pub(crate) sender: Sender<'a>,
    /// The recipient's localpart and where `known` holds its mapping, when
    /// it does (a cache hit even though the stanza waits for the sender's
    /// write).
    pub(crate) recipient_gen: Option<(&'a str, Gen)>,
}
