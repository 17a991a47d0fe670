//! Carrying a verdict out: the writes, counters, id records, writes behind
//! and cache updates that `decide.rs` only names. Part of `impl Relay`.

use std::time::Instant;

use crate::cache::Gen;
use crate::element::{Element, Head};
use crate::filter::{self, Allowed, RefKind};
use crate::idmap::Origin;
use crate::jid::Jid;
use crate::ns;
use crate::pseudonym::IdentityMode;
use crate::pseudonym::Local;
use crate::rate::{Counted, Over};
use crate::relay::Relay;
use crate::stats::{DropReason, RejectReason};

use super::verdict::{
    BanRole, Bounce, IqAnswer, PresenceAnswer, Relayed, Sender, Verdict, WriteState,
};
use super::{kept_type, Incoming};

const HELP: &str = "This is a pseudonymous relay.\n\
/whoami - tells you your pseudonym. Give it to people instead of your address.\n\
Write to someone's pseudonym to talk to them under yours; neither of you sees the other's address.\n\
What you type is passed on as it is: do not type what you want to keep private.";

impl Relay {
    /// Carry out `verdict` for the stanza it was reached for, after
    /// [`Relay::remember`]. A [`Verdict::Wait`] never comes here: the
    /// callers queue its stanza (`wait.rs`).
    pub(crate) fn apply(&mut self, st: Incoming<'_>, verdict: &Verdict<'_>, now: Instant) {
        match verdict {
            Verdict::Drop(why) => {
                if self.cfg.log_decisions {
                    log::debug!("dropped a stanza: {}", why.as_str());
                }
                self.stats.drop(*why);
            }
            Verdict::Consume => {}
            Verdict::Error { etype, cond } => self.reply_error(st.el, etype, *cond),
            Verdict::Help { to } => self.bot_reply(st.head, to, HELP),
            Verdict::Whoami { to, sender } => self.whoami(st.head, to, sender, now),
            Verdict::Relay(r) => {
                if r.sender.write == WriteState::Refresh {
                    self.write_behind(&r.sender, now);
                }
                self.relay_message(st, r, now);
            }
            Verdict::Bounce(b) => self.send_bounce(b),
            Verdict::Presence { to, local, answer } => self.presence_answer(to, *local, *answer),
            Verdict::Iq { from, to, answer } => self.iq_answer(st.head, from, to, *answer),
            Verdict::Limited { sender, over } => self.limited(st, sender, *over, now),
            Verdict::Banned { local, role } => self.refuse_banned(st, local, *role, now),
            Verdict::Wait(_) => debug_assert!(false, "a waiting stanza is queued, not applied"),
        }
    }

    /// Record what deciding read from the caches: a computed pseudonym is
    /// cached, old-generation hits are promoted. After every decision, also
    /// for a stanza that queues behind its sender's earlier ones.
    pub(crate) fn remember(&mut self, verdict: &Verdict<'_>) {
        match verdict {
            Verdict::Whoami { sender, .. } => self.remember_sender(sender),
            Verdict::Relay(r) => {
                if r.recipient_gen == Gen::Old {
                    self.known.promote(r.recipient_local.as_str());
                }
                self.remember_sender(&r.sender);
            }
            Verdict::Bounce(b) if b.known_gen == Some(Gen::Old) => {
                self.known.promote(b.to_local.as_str());
            }
            Verdict::Wait(w) => {
                if let Some((local, Gen::Old)) = w.recipient_gen {
                    self.known.promote(local);
                }
                self.remember_sender(&w.sender);
            }
            _ => {}
        }
    }

    /// Count a stanza's first decision: against the rate limits, and as a
    /// cache hit when its recipient was known. Only the first: a stanza
    /// that waits is decided again, and would count twice.
    pub(crate) fn count(&mut self, verdict: &Verdict<'_>, now: Instant) {
        if matches!(verdict, Verdict::Relay(_))
            || matches!(verdict, Verdict::Wait(w) if w.recipient_gen.is_some())
        {
            self.stats.cache_hits += 1;
        }
        let (local, what) = match verdict {
            Verdict::Relay(r) => (r.sender.local, Counted::Message),
            Verdict::Whoami { sender, .. } => (sender.local, Counted::Whoami),
            Verdict::Wait(w) => match w.counted {
                Some(what) => (w.sender.local, what),
                None => return,
            },
            _ => return,
        };
        self.limiter.charge(&local, what, now);
    }

    /// Refused for a rate limit: the error, the counter, and at most one
    /// log line a minute per sender (naming nobody without
    /// `--log-sensitive`).
    fn limited(&mut self, st: Incoming<'_>, sender: &Local, over: Over, now: Instant) {
        self.stats.rate_limited += 1;
        self.reply_error(st.el, "wait", RejectReason::PolicyViolation);
        let Some(refused) = self.limiter.refused(sender, now) else {
            return;
        };
        let limit = match over {
            Over::Sender(Counted::Message) => "its message rate limit",
            Over::Sender(Counted::Whoami) => "its /whoami rate limit",
            Over::Global => "the global message rate limit",
        };
        if self.cfg.log_sensitive {
            log::warn!(
                "rate limit: {} ({sender}@{}) is over {limit}; {refused} refused since the last such line",
                st.head.from.unwrap_or("?"),
                self.cfg.domain
            );
        } else {
            log::warn!(
                "rate limit: a sender is over {limit}; {refused} refused since the last such line"
            );
        }
    }

    /// Refused for a ban: the error, the counter, and at most one log line
    /// a minute per banned pseudonym (naming no JID without
    /// `--log-sensitive`).
    fn refuse_banned(&mut self, st: Incoming<'_>, local: &Local, role: BanRole, now: Instant) {
        self.stats.banned += 1;
        self.reply_error(st.el, "cancel", RejectReason::Forbidden);
        let Some(refused) = self.bans.refused(local, now) else {
            return;
        };
        match role {
            BanRole::Sender if self.cfg.log_sensitive => log::info!(
                "ban: {} ({local}@{}) is banned; {refused} of its stanzas refused since the last \
                 such line",
                st.head.from.unwrap_or("?"),
                self.cfg.domain
            ),
            BanRole::Sender => log::info!(
                "ban: {local} is banned; {refused} of its stanzas refused since the last such line"
            ),
            BanRole::Recipient => log::info!(
                "ban: {local} is banned; {refused} stanzas to it refused since the last such line"
            ),
        }
    }

    fn remember_sender(&mut self, sender: &Sender<'_>) {
        match sender.forward_gen {
            Some(Gen::Young) => {}
            Some(Gen::Old) => {
                self.forward.promote(sender.identity);
            }
            None => self
                .forward
                .insert(sender.identity.to_owned(), sender.local),
        }
        // `as_str` checks the text: only for an old entry.
        if sender.known_gen == Some(Gen::Old) {
            self.known.promote(sender.local.as_str());
        }
    }

    fn whoami(&mut self, head: Head<'_>, to: &Jid<'_>, sender: &Sender<'_>, now: Instant) {
        if sender.write == WriteState::Refresh {
            self.write_behind(sender, now);
        }
        self.stats.whoami += 1;
        let local = sender.local;
        if self.cfg.log_decisions {
            if self.cfg.log_sensitive {
                log::debug!("whoami: {} is {local}@{}", to.full(), self.cfg.domain);
            } else {
                log::debug!("whoami: told {local} its pseudonym");
            }
        }
        let reply = format!("{local}@{}", self.cfg.domain);
        self.bot_reply(head, to, &reply);
    }

    fn bot_reply(&mut self, head: Head<'_>, to: &Jid<'_>, body: &str) {
        let id = self.ids.bot_id();
        let mut s = self.writer.stanza(&mut self.out, "message");
        s.to(to.full())
            .from(None, Some(&self.cfg.resource))
            .attr("id", &id);
        if let Some(t) = kept_type(head) {
            s.attr("type", t);
        }
        s.child("body", None).text(body);
        if s.finish().is_err() {
            self.stats.reject(RejectReason::Unwritable);
        }
    }

    /// The message rebuilt from the allow-list (SPEC §5), under a fresh id,
    /// from the sender's pseudonym. What survives the filter is known only
    /// while writing: references are translated (and marked as passed) as
    /// they come.
    fn relay_message(&mut self, st: Incoming<'_>, r: &Relayed<'_>, now: Instant) {
        let Incoming { el, head } = st;
        let (sender_local, recipient_local) = (r.sender.local, r.recipient_local);
        let unix = self.unix(now);
        // A full identity names the device already.
        let resource = match self.cfg.identity {
            IdentityMode::Bare => r.from.resource(),
            IdentityMode::Full => None,
        };
        let fresh = self
            .ids
            .issue(&sender_local, &recipient_local, head.id, resource, unix);
        let ids = &mut self.ids;
        let items = filter::allowed(el, |k, id| match k {
            RefKind::Received(bit) => ids.back(id, &sender_local, &recipient_local, bit, unix),
            RefKind::Own => ids.forward(id, &sender_local, &recipient_local),
        });
        let mut s = self.writer.stanza(&mut self.out, "message");
        s.to(&r.recipient)
            .from(Some(sender_local.as_str()), Some(&self.cfg.resource))
            .attr("id", &fresh);
        if let Some(t) = kept_type(head) {
            s.attr("type", t);
        }
        let mut empty = true;
        for item in items {
            empty = false;
            match item {
                Allowed::Text { name, lang, text } => {
                    s.child(name, None);
                    if let Some(l) = lang {
                        s.attr("xml:lang", l);
                    }
                    s.text(&text).end();
                }
                Allowed::Empty { name, ns } => {
                    s.child(name, Some(ns)).end();
                }
                Allowed::Ref { name, ns, id } => {
                    s.child(name, Some(ns)).attr("id", &id).end();
                }
            }
        }
        if empty {
            // Nothing the recipient may see: not relayed at all.
            s.abandon();
            if self.cfg.log_decisions {
                log::debug!(
                    "dropped a message from {sender_local} to {recipient_local}: {}",
                    DropReason::NothingAllowed.as_str()
                );
            }
            self.stats.drop(DropReason::NothingAllowed);
            return;
        }
        if s.finish().is_err() {
            self.reply_error(el, "modify", RejectReason::NotAcceptable);
            return;
        }
        if self.cfg.log_decisions {
            if self.cfg.log_sensitive {
                log::debug!(
                    "relayed {} -> {} as {sender_local}",
                    r.from.full(),
                    r.recipient
                );
            } else {
                log::debug!("relayed {sender_local} -> {recipient_local}");
            }
        }
        self.stats.relayed += 1;
        self.ids.record(&fresh, &sender_local, head.id, || {
            Origin::new(r.from.full(), head.id)
        });
    }

    /// The delivery error, back to the original sender from the bouncing
    /// user's pseudonym.
    fn send_bounce(&mut self, b: &Bounce) {
        let mut s = self.writer.stanza(&mut self.out, "message");
        s.to(&b.to)
            .from(Some(b.from_local.as_str()), Some(&self.cfg.resource))
            .attr("type", "error");
        if let Some(id) = &b.orig_id {
            s.attr("id", id);
        }
        s.child("error", None).attr("type", b.etype);
        s.child(b.cond, Some(ns::STANZA_ERRORS));
        match s.finish() {
            Ok(_) => {
                if self.cfg.log_decisions {
                    log::debug!("bounced {}: {} -> {}", b.cond, b.from_local, b.to_local);
                }
                self.stats.bounced += 1
            }
            Err(_) => self.stats.drop(DropReason::Unwritable),
        }
    }

    fn presence_answer(&mut self, to: &str, local: Option<&str>, answer: PresenceAnswer) {
        match answer {
            PresenceAnswer::Subscribed => {
                self.send_presence(to, local, None, Some("subscribed"));
                let resource = self.cfg.resource.clone();
                self.send_presence(to, local, Some(&resource), None);
            }
            PresenceAnswer::Unsubscribed => {
                self.send_presence(to, local, None, Some("unsubscribed"))
            }
            PresenceAnswer::Available => {
                let resource = self.cfg.resource.clone();
                self.send_presence(to, local, Some(&resource), None);
            }
        }
    }

    /// Synthesised presence: no show, status, caps, avatar, idle or delay.
    fn send_presence(
        &mut self,
        to: &str,
        local: Option<&str>,
        resource: Option<&str>,
        kind: Option<&str>,
    ) {
        let mut s = self.writer.stanza(&mut self.out, "presence");
        s.to(to).from(local, resource);
        if let Some(k) = kind {
            s.attr("type", k);
        }
        if s.finish().is_err() {
            self.stats.reject(RejectReason::Unwritable);
        }
    }

    fn iq_answer(&mut self, head: Head<'_>, from: &Jid<'_>, to: &Jid<'_>, answer: IqAnswer) {
        let mut s = self.writer.stanza(&mut self.out, "iq");
        s.to(from.full())
            .from(to.local(), to.resource())
            .attr("type", "result");
        if let Some(id) = head.id {
            s.attr("id", id);
        }
        match answer {
            IqAnswer::DiscoInfo => {
                s.child("query", Some(ns::DISCO_INFO));
                s.child("identity", None)
                    .attr("category", "component")
                    .attr("type", "generic")
                    .attr("name", "Pseudonymous relay")
                    .end();
                for feature in [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PING] {
                    s.child("feature", None).attr("var", feature).end();
                }
                s.end();
            }
            IqAnswer::DiscoItems => {
                s.child("query", Some(ns::DISCO_ITEMS)).end();
            }
            IqAnswer::Pong => {}
        }
        if s.finish().is_err() {
            self.stats.reject(RejectReason::Unwritable);
        }
    }

    /// An error reply to `el`, from the address it was sent to. Never for a
    /// stanza that is itself an error (or an IQ result).
    pub(crate) fn reply_error(&mut self, el: Element<'_>, etype: &'static str, why: RejectReason) {
        let cond = why.as_str();
        let kind = match el.name() {
            "message" => "message",
            "presence" => "presence",
            "iq" => "iq",
            _ => return,
        };
        let head = el.head();
        if matches!(head.kind, Some("error") | Some("result")) || !ns::is_stanza_ns(el.ns()) {
            return;
        }
        let parsed = head
            .from
            .zip(head.to)
            .and_then(|(f, t)| Some((Jid::parse(f).ok()?, Jid::parse(t).ok()?)));
        let Some((from, to)) = parsed else { return };
        if to.domain() != self.cfg.domain || from.domain() == self.cfg.domain {
            return;
        }
        let mut s = self.writer.stanza(&mut self.out, kind);
        s.to(from.full())
            .from(to.local(), to.resource())
            .attr("type", "error");
        if let Some(id) = head.id {
            s.attr("id", id);
        }
        s.child("error", None).attr("type", etype);
        s.child(cond, Some(ns::STANZA_ERRORS));
        match s.finish() {
            Ok(_) => {
                if self.cfg.log_decisions {
                    // Neither address: the one written to may be anything
                    // the sender typed.
                    log::debug!("refused a {kind}: {cond}");
                }
                self.stats.reject(why)
            }
            Err(_) => self.stats.drop(DropReason::Unwritable),
        }
    }
}
