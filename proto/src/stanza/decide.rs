//! The verdict for a stanza (SPEC §5). Part of `impl Relay`, and read-only:
//! deciding takes `&self`, so it sends nothing, counts nothing and changes
//! no cache; what it read from the caches travels in the verdict, for
//! `apply.rs` to record.

use std::time::Instant;

use crate::cache::Gen;
use crate::idmap::Return;
use crate::jid::Jid;
use crate::ns;
use crate::pending::{Need, Resolution, Served};
use crate::pseudonym::{Local, Pseudonymizer};
use crate::rate::Counted;
use crate::relay::Relay;

use super::verdict::{
    BanRole, Bounce, Dropped, IqAnswer, PresenceAnswer, RejectReason, Relayed, Sender, Verdict,
    Wait, WriteState,
};
use super::Incoming;

/// Error types a bounce may carry (RFC 6120 §8.3.2).
const ERROR_TYPES: [&str; 5] = ["auth", "cancel", "continue", "modify", "wait"];

/// Defined stanza error conditions (RFC 6120 §8.3.3).
const CONDITIONS: [&str; 22] = [
    "bad-request",
    "conflict",
    "feature-not-implemented",
    "forbidden",
    "gone",
    "internal-server-error",
    "item-not-found",
    "jid-malformed",
    "not-acceptable",
    "not-allowed",
    "not-authorized",
    "policy-violation",
    "recipient-unavailable",
    "redirect",
    "registration-required",
    "remote-server-not-found",
    "remote-server-timeout",
    "resource-constraint",
    "service-unavailable",
    "subscription-required",
    "undefined-condition",
    "unexpected-request",
];

impl Relay {
    /// What to do with a stanza (its namespace checked by `handle_stanza`),
    /// given what the store answered for it so far (`res`).
    pub(crate) fn decide<'a>(
        &self,
        st: Incoming<'a>,
        res: &Resolution,
        now: Instant,
    ) -> Verdict<'a> {
        let Incoming { el, head } = st;
        let parsed = head
            .from
            .zip(head.to)
            .and_then(|(f, t)| Some((Jid::parse(f).ok()?, Jid::parse(t).ok()?)));
        let Some((from, to)) = parsed else {
            return Verdict::Drop(Dropped::Unaddressed);
        };
        // Only stanzas for this domain, and never from it: a sender at the
        // relay's own domain is never relayed raw (and never answered: loops).
        if to.domain() != self.cfg.domain || from.domain() == self.cfg.domain {
            return Verdict::Drop(Dropped::NotOurs);
        }
        match (el.name(), to.local()) {
            ("message", None) => self.bot_message(st, from, res, now),
            ("message", Some(local)) => self.pseudonym_message(st, from, local, res, now),
            ("presence", local) => presence(st, from, local),
            ("iq", local) => iq(st, from, to, local),
            _ => Verdict::Drop(Dropped::UnknownStanza),
        }
    }

    /// The sender's pseudonym: from `forward`, or computed (the HMAC is the
    /// cost `forward` saves), and whether `known` says it is written.
    fn sender<'a>(&self, from: &Jid<'a>, now: Instant) -> Sender<'a> {
        let identity = self.cfg.identity.identity(from);
        let (local, cached) = match self.forward.peek(identity) {
            Some((l, gen)) => (*l, Some(gen)),
            None => (self.pseudo.local(identity), None),
        };
        let (write, known) = self.write_state(&local, now);
        Sender {
            identity,
            local,
            forward_gen: cached,
            known_gen: known,
            write,
        }
    }

    /// Whether `local` must be written before it is handed out or used as
    /// a sender's pseudonym, and where `known` holds it.
    fn write_state(&self, local: &str, now: Instant) -> (WriteState, Option<Gen>) {
        let Some((k, gen)) = self.known.peek(local) else {
            return (WriteState::Needed, None);
        };
        let ttl = self.cfg.ttl;
        let state = match k.written {
            None => WriteState::Needed,
            Some(w)
                if ttl != 0
                    && now.saturating_duration_since(w.at).as_secs() >= u64::from(ttl / 2) =>
            {
                WriteState::Needed
            }
            Some(w) if w.failures_seen != self.store_failures => WriteState::Refresh,
            Some(_) => WriteState::Done,
        };
        (state, Some(gen))
    }

    fn bot_message<'a>(
        &self,
        st: Incoming<'a>,
        from: Jid<'a>,
        res: &Resolution,
        now: Instant,
    ) -> Verdict<'a> {
        let Incoming { el, head } = st;
        match head.kind {
            Some("error") => return Verdict::Drop(Dropped::ErrorToRelay),
            Some("headline") => return Verdict::Drop(Dropped::Headline),
            Some("groupchat") => return error("modify", RejectReason::NotAcceptable),
            _ => {}
        }
        let Some(body) = el
            .elements()
            .find(|c| c.name() == "body" && ns::is_stanza_ns(c.ns()))
        else {
            return Verdict::Drop(Dropped::NoBody);
        };
        if body.text().split_whitespace().next() != Some("/whoami") {
            return Verdict::Help { to: from };
        }
        if res.served == Served::Failed {
            return error("wait", RejectReason::InternalServerError);
        }
        let sender = self.sender(&from, now);
        if let Some(banned) = self.banned(&sender.local, BanRole::Sender) {
            return banned;
        }
        if let Some(limited) = self.over_limit(res, &sender, Counted::Whoami, now) {
            return limited;
        }
        if sender.write == WriteState::Needed {
            let need = Need::Write(sender.local.to_string(), sender.identity.to_owned());
            return Verdict::Wait(Wait {
                needs: vec![need],
                counted: Some(Counted::Whoami),
                sender,
                recipient_gen: None,
            });
        }
        Verdict::Whoami { to: from, sender }
    }

    fn pseudonym_message<'a>(
        &self,
        st: Incoming<'a>,
        from: Jid<'a>,
        local: &'a str,
        res: &Resolution,
        now: Instant,
    ) -> Verdict<'a> {
        match st.head.kind {
            Some("error") => return self.bounce(st, from, local, res, now),
            Some("groupchat") => return error("modify", RejectReason::NotAcceptable),
            Some("headline") => return Verdict::Drop(Dropped::Headline),
            _ => {}
        }
        if res.served == Served::Failed {
            return error("wait", RejectReason::InternalServerError);
        }
        let recipient_local =
            Local::parse(local).filter(|_| !res.absent.iter().any(|a| a == local));
        let Some(recipient_local) = recipient_local else {
            return error("cancel", RejectReason::ItemNotFound);
        };
        if let Some(banned) = self.banned(&recipient_local, BanRole::Recipient) {
            return banned;
        }
        let sender = self.sender(&from, now);
        if let Some(banned) = self.banned(&sender.local, BanRole::Sender) {
            return banned;
        }
        if let Some(limited) = self.over_limit(res, &sender, Counted::Message, now) {
            return limited;
        }
        let mut needs = Vec::new();
        let recipient = self.known.peek(local);
        if recipient.is_none() {
            needs.push(Need::Lookup(local.to_owned()));
        }
        if sender.write == WriteState::Needed {
            needs.push(Need::Write(
                sender.local.to_string(),
                sender.identity.to_owned(),
            ));
        }
        match recipient {
            Some((known, gen)) if needs.is_empty() => Verdict::Relay(Relayed {
                from,
                sender,
                recipient: known.identity.clone(),
                recipient_local,
                recipient_gen: gen,
            }),
            _ => Verdict::Wait(Wait {
                needs,
                counted: Some(Counted::Message),
                sender,
                recipient_gen: recipient.map(|(_, gen)| (local, gen)),
            }),
        }
    }

    /// A stanza refused for a ban; nothing is looked up while no one is
    /// banned.
    fn banned(&self, local: &Local, role: BanRole) -> Option<Verdict<'static>> {
        (self.bans.any() && self.bans.holds(local)).then_some(Verdict::Banned {
            local: *local,
            role,
        })
    }

    /// A stanza over a rate limit, when it is first decided (a stanza that
    /// waited for the store was counted already).
    fn over_limit(
        &self,
        res: &Resolution,
        sender: &Sender<'_>,
        what: Counted,
        now: Instant,
    ) -> Option<Verdict<'static>> {
        if res.counted {
            return None;
        }
        let over = self.limiter.allows(&sender.local, what, now).err()?;
        Some(Verdict::Limited {
            sender: sender.local,
            over,
        })
    }

    /// A delivery error for a message the relay passed on: back to the
    /// original sender, from the bouncing user's pseudonym. The id says
    /// where (or this instance holds it); the original sender's address is
    /// the identity behind its pseudonym (a bare JID, or a full one with
    /// `identity = full`), which may have to be looked up.
    fn bounce<'a>(
        &self,
        st: Incoming<'a>,
        from: Jid<'a>,
        local: &'a str,
        res: &Resolution,
        now: Instant,
    ) -> Verdict<'a> {
        let Incoming { el, head } = st;
        let Some(to_local) = Local::parse(local) else {
            return Verdict::Drop(Dropped::UnknownBounce);
        };
        let bouncer = self.sender(&from, now);
        let unix = self.unix(now);
        let found = head
            .id
            .and_then(|id| self.ids.bounce(id, &to_local, &bouncer.local, unix));
        let Some(found) = found else {
            return Verdict::Drop(Dropped::UnknownBounce);
        };
        let (to, orig_id, known_gen) = match found {
            Return::Held(origin) => (
                origin.sender_full().to_owned(),
                origin.orig_id().map(str::to_owned),
                None,
            ),
            Return::Carried { orig_id, resource } => match self.known.peek(local) {
                Some((known, gen)) => {
                    let to = match resource {
                        Some(r) => format!("{}/{r}", known.identity),
                        None => known.identity.to_string(),
                    };
                    (to, orig_id, Some(gen))
                }
                // Nobody has the pseudonym any more, or the store cannot
                // say: an error is never answered with an error.
                None if res.served == Served::Failed || res.absent.iter().any(|a| a == local) => {
                    return Verdict::Drop(Dropped::UnknownBounce)
                }
                None => {
                    return Verdict::Wait(Wait {
                        needs: vec![Need::Lookup(local.to_owned())],
                        counted: None,
                        sender: bouncer,
                        recipient_gen: None,
                    })
                }
            },
        };
        let error = el
            .elements()
            .find(|c| c.name() == "error" && ns::is_stanza_ns(c.ns()));
        let etype = error
            .and_then(|e| e.attr("type"))
            .and_then(|t| ERROR_TYPES.iter().find(|x| **x == t))
            .copied()
            .unwrap_or("cancel");
        let cond = error
            .and_then(|e| {
                e.elements()
                    .filter(|c| c.ns() == ns::STANZA_ERRORS)
                    .find_map(|c| CONDITIONS.iter().find(|x| **x == c.name()))
            })
            .copied()
            .unwrap_or("undefined-condition");
        Verdict::Bounce(Bounce {
            to,
            orig_id,
            from_local: bouncer.local,
            to_local,
            known_gen,
            etype,
            cond,
        })
    }
}

fn error(etype: &'static str, cond: RejectReason) -> Verdict<'static> {
    Verdict::Error { etype, cond }
}

fn presence<'a>(st: Incoming<'a>, from: Jid<'a>, local: Option<&'a str>) -> Verdict<'a> {
    let addressable = local.is_none_or(Pseudonymizer::is_well_formed);
    let (to, answer) = match st.head.kind {
        Some("subscribe") if addressable => (from.bare(), PresenceAnswer::Subscribed),
        Some("subscribe") | Some("unsubscribe") => (from.bare(), PresenceAnswer::Unsubscribed),
        Some("probe") if addressable => (from.full(), PresenceAnswer::Available),
        _ => return Verdict::Drop(Dropped::Presence),
    };
    Verdict::Presence { to, local, answer }
}

fn iq<'a>(st: Incoming<'a>, from: Jid<'a>, to: Jid<'a>, local: Option<&str>) -> Verdict<'a> {
    let Incoming { el, head } = st;
    if !matches!(head.kind, Some("get") | Some("set")) {
        // Results and errors (keepalive answers among them) are consumed.
        return Verdict::Consume;
    }
    let mut children = el.elements();
    let (Some(payload), None) = (children.next(), children.next()) else {
        return error("modify", RejectReason::BadRequest);
    };
    let get = head.kind == Some("get");
    let answer = match (local, get, payload.ns(), payload.name()) {
        (None, true, ns::DISCO_INFO, "query") if payload.attr("node").is_none() => {
            IqAnswer::DiscoInfo
        }
        (None, true, ns::DISCO_ITEMS, "query") if payload.attr("node").is_none() => {
            IqAnswer::DiscoItems
        }
        (None, true, ns::PING, "ping") => IqAnswer::Pong,
        // Pseudonyms answer nothing themselves: a forwarded version, time,
        // vCard, disco or ping query would fingerprint the person or
        // reveal that they are online.
        _ => return error("cancel", RejectReason::ServiceUnavailable),
    };
    Verdict::Iq { from, to, answer }
}
