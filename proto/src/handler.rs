//! What the relay does with each stanza (SPEC §5).

use std::time::Instant;

use crate::element::{Element, Head};
use crate::filter::{self, Allowed, RefKind};
use crate::idmap::{Origin, Sent};
use crate::jid::Jid;
use crate::ns;
use crate::pending::{Job, Need, Resolution};
use crate::pseudonym::{Local, Pseudonymizer};
use crate::relay::Relay;
use crate::Action;

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

const HELP: &str = "This is a pseudonymous relay.\n\
/whoami - tells you your pseudonym. Give it to people instead of your address.\n\
Write to someone's pseudonym to talk to them under yours; neither of you sees the other's address.\n\
What you type is passed on as it is: do not type what you want to keep private.";

/// A stanza and the attributes its handling reads, read once: the handler's
/// steps take this rather than the element and its head side by side.
#[derive(Debug, Clone, Copy)]
struct Incoming<'a> {
    el: &'a Element,
    head: Head<'a>,
}

impl<'a> Incoming<'a> {
    fn new(el: &'a Element) -> Self {
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

/// Whether a store-backed step may run now.
type Step = Result<(), Vec<Need>>;

/// What a mapping needs before it may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteState {
    /// Written, and the store has not failed since.
    Done,
    /// Written, but the store failed since: write it again, without waiting.
    Refresh,
    /// Never written by this relay, or due for renewal under `ttl`: write it
    /// first.
    Needed,
}

impl Relay {
    /// A stanza from the server while online.
    pub(crate) fn handle_stanza(&mut self, el: Element, now: Instant) {
        if !ns::is_stanza_ns(el.ns()) {
            self.stats.dropped += 1;
            return;
        }
        let st = Incoming::new(&el);
        let Some(sender) = st.head.from else {
            self.stats.dropped += 1;
            return;
        };
        // The sender is copied only for a stanza that has to wait.
        if self.pending.has_queue(sender) {
            let sender = sender.to_owned();
            return self.enqueue(el, &sender, now);
        }
        if let Err(needs) = self.process(st, &Resolution::default(), true, now) {
            let sender = sender.to_owned();
            self.enqueue_with(el, &sender, needs, now);
        }
    }

    fn enqueue(&mut self, el: Element, sender: &str, now: Instant) {
        match self.process(Incoming::new(&el), &Resolution::default(), false, now) {
            Ok(()) => self.enqueue_with(el, sender, Vec::new(), now),
            Err(needs) => self.enqueue_with(el, sender, needs, now),
        }
    }

    fn enqueue_with(&mut self, el: Element, sender: &str, needs: Vec<Need>, now: Instant) {
        let job = Job::new(el);
        // One stanza may always wait, whatever it weighs.
        let over_bytes = !self.pending.is_empty()
            && self.pending.bytes() + job.weight > self.cfg.max_pending_bytes;
        if self.pending.len() >= self.cfg.max_pending || over_bytes {
            self.reply_error(&job.stanza, "wait", "resource-constraint");
            return;
        }
        self.pending.push(sender, job);
        for need in &needs {
            let op = self.issue(need, sender, now);
            self.pending.wait_last(sender, op);
        }
        // A job with nothing to wait for may be at the head already.
        self.advance(sender, now);
    }

    fn issue(&mut self, need: &Need, sender: &str, now: Instant) -> crate::OpId {
        let (op, new) = self
            .pending
            .op_for(need, sender, now + self.cfg.store_timeout);
        if new {
            self.emit(need, op);
        }
        op
    }

    /// The store action for a new operation.
    fn emit(&mut self, need: &Need, op: crate::OpId) {
        let domain = &self.cfg.domain;
        match need {
            Need::Lookup(local) => {
                self.stats.lookups += 1;
                let key = self.codec.key(local, domain);
                self.actions.push_back(Action::Get { op, key });
            }
            Need::Write(local, identity) => {
                self.stats.writes += 1;
                let key = self.codec.key(local, domain);
                let value = self.codec.seal(local, domain, identity);
                self.actions.push_back(Action::Put {
                    op,
                    key,
                    value,
                    ttl: self.cfg.ttl,
                });
            }
        }
    }

    /// Run every job at the head of `sender`'s queue that is ready.
    pub(crate) fn advance(&mut self, sender: &str, now: Instant) {
        while let Some(mut job) = self.pending.pop_ready(sender) {
            let st = Incoming::new(&job.stanza);
            if let Err(needs) = self.process(st, &job.res, true, now) {
                job.res.rounds += 1;
                if job.res.rounds > 3 {
                    job.res.failed = true;
                    let _ = self.process(st, &job.res, true, now);
                    continue;
                }
                self.pending.push_front(sender, job);
                for need in &needs {
                    let op = self.issue(need, sender, now);
                    self.pending.wait_first(sender, op);
                }
                return;
            }
        }
    }

    /// Handle `el`, or say which store operations it needs first. With
    /// `run = false` nothing is sent: only the needs are computed.
    fn process(&mut self, st: Incoming<'_>, res: &Resolution, run: bool, now: Instant) -> Step {
        let Incoming { el, head } = st;
        let parsed = head
            .from
            .zip(head.to)
            .and_then(|(f, t)| Some((Jid::parse(f).ok()?, Jid::parse(t).ok()?)));
        let Some((from, to)) = parsed else {
            if run {
                self.stats.dropped += 1;
            }
            return Ok(());
        };
        // Only stanzas for this domain, and never from it: a sender at the
        // relay's own domain is never relayed raw (and never answered: loops).
        if to.domain() != self.cfg.domain || from.domain() == self.cfg.domain {
            if run {
                self.stats.dropped += 1;
            }
            return Ok(());
        }
        match (el.name(), to.local()) {
            ("message", None) => self.bot_message(st, &from, res, run, now),
            ("message", Some(local)) => self.pseudonym_message(st, &from, local, res, run, now),
            ("presence", local) => {
                if run {
                    self.presence(head, &from, local);
                }
                Ok(())
            }
            ("iq", local) => {
                if run {
                    self.iq(st, &from, &to, local);
                }
                Ok(())
            }
            _ => {
                if run {
                    self.stats.dropped += 1;
                }
                Ok(())
            }
        }
    }

    /// The pseudonym localpart of an identity (cached; the HMAC is the cost).
    fn local_of(&mut self, identity: &str) -> Local {
        if let Some(l) = self.forward.with(identity, |l| *l) {
            return l;
        }
        let l = self.pseudo.local(identity);
        self.forward.insert(identity.to_owned(), l);
        l
    }

    /// Whether `local` must be written before it is handed out or used as
    /// a sender's pseudonym.
    fn write_state(&mut self, local: &str, now: Instant) -> WriteState {
        let ttl = self.cfg.ttl;
        let failures = self.store_failures;
        match self.known.with(local, |k| k.written).flatten() {
            None => WriteState::Needed,
            Some((at, _))
                if ttl != 0
                    && now.saturating_duration_since(at).as_secs() >= u64::from(ttl / 2) =>
            {
                WriteState::Needed
            }
            Some((_, seen)) if seen != failures => WriteState::Refresh,
            Some(_) => WriteState::Done,
        }
    }

    /// Write `local → identity` again without holding anything up: it was
    /// written once, but the store has failed since and may have lost it.
    /// Used while the store is down, this fails too, and the next use tries
    /// again; so does a use while `max_pending` such writes are in flight,
    /// which keeps a slow store from collecting one per known sender.
    fn write_behind(&mut self, local: &str, identity: &str, now: Instant) {
        let deadline = now + self.cfg.store_timeout;
        let limit = self.cfg.max_pending;
        if let Some((op, need)) = self.pending.op_behind(local, identity, deadline, limit) {
            self.emit(&need, op);
        }
    }

    fn bot_message(
        &mut self,
        st: Incoming<'_>,
        from: &Jid,
        res: &Resolution,
        run: bool,
        now: Instant,
    ) -> Step {
        let Incoming { el, head } = st;
        match head.kind {
            Some("error") | Some("headline") => {
                if run {
                    self.stats.dropped += 1;
                }
                return Ok(());
            }
            Some("groupchat") => {
                if run {
                    self.reply_error(el, "modify", "not-acceptable");
                }
                return Ok(());
            }
            _ => {}
        }
        let Some(body) = el
            .elements()
            .find(|c| c.name() == "body" && ns::is_stanza_ns(c.ns()))
        else {
            // Typing notifications and receipts to the relay need no answer.
            if run {
                self.stats.dropped += 1;
            }
            return Ok(());
        };
        let text = body.text();
        if text.split_whitespace().next() != Some("/whoami") {
            if run {
                self.bot_reply(head, from, HELP);
            }
            return Ok(());
        }
        if res.failed {
            if run {
                self.reply_error(el, "wait", "internal-server-error");
            }
            return Ok(());
        }
        let identity = self.cfg.identity.identity(from);
        let local = self.local_of(identity);
        match self.write_state(&local, now) {
            WriteState::Needed => {
                return Err(vec![Need::Write(local.to_string(), identity.to_owned())])
            }
            WriteState::Refresh if run => self.write_behind(&local, identity, now),
            _ => {}
        }
        if run {
            self.stats.whoami += 1;
            if self.cfg.log_sensitive {
                log::debug!("whoami: {} is {local}@{}", from.full(), self.cfg.domain);
            }
            let reply = format!("{local}@{}", self.cfg.domain);
            self.bot_reply(head, from, &reply);
        }
        Ok(())
    }

    fn bot_reply(&mut self, head: Head<'_>, from: &Jid, body: &str) {
        let id = self.ids.fresh();
        let mut s = self.writer.stanza(&mut self.out, "message");
        s.to(from.full())
            .from(None, Some(&self.cfg.resource))
            .attr("id", &id);
        if let Some(t) = kept_type(head) {
            s.attr("type", t);
        }
        s.child("body", None).text(body);
        if s.finish().is_err() {
            self.stats.rejected += 1;
        }
    }

    fn pseudonym_message(
        &mut self,
        st: Incoming<'_>,
        from: &Jid,
        local: &str,
        res: &Resolution,
        run: bool,
        now: Instant,
    ) -> Step {
        let el = st.el;
        match st.head.kind {
            Some("error") => {
                if run {
                    self.bounce(st, local);
                }
                return Ok(());
            }
            Some("groupchat") => {
                if run {
                    self.reply_error(el, "modify", "not-acceptable");
                }
                return Ok(());
            }
            Some("headline") => {
                if run {
                    self.stats.dropped += 1;
                }
                return Ok(());
            }
            _ => {}
        }
        if res.failed {
            if run {
                self.reply_error(el, "wait", "internal-server-error");
            }
            return Ok(());
        }
        let recipient_local =
            Local::parse(local).filter(|_| !res.absent.iter().any(|a| a == local));
        let Some(recipient_local) = recipient_local else {
            if run {
                self.reply_error(el, "cancel", "item-not-found");
            }
            return Ok(());
        };
        let mut needs = Vec::new();
        let recipient = self.known.with(local, |k| k.identity.clone());
        if recipient.is_some() {
            self.stats.cache_hits += 1;
        } else {
            needs.push(Need::Lookup(local.to_owned()));
        }
        let identity = self.cfg.identity.identity(from);
        let sender_local = self.local_of(identity);
        let state = self.write_state(&sender_local, now);
        if state == WriteState::Needed {
            needs.push(Need::Write(sender_local.to_string(), identity.to_owned()));
        }
        let Some(recipient) = recipient.filter(|_| needs.is_empty()) else {
            return Err(needs);
        };
        if run && state == WriteState::Refresh {
            self.write_behind(&sender_local, identity, now);
        }
        if run {
            self.relay_message(st, from, &recipient, recipient_local, sender_local);
        }
        Ok(())
    }

    fn relay_message(
        &mut self,
        st: Incoming<'_>,
        from: &Jid,
        recipient: &str,
        recipient_local: Local,
        sender_local: Local,
    ) {
        let Incoming { el, head } = st;
        let fresh = self.ids.fresh();
        let ids = &mut self.ids;
        let items = filter::allowed(el, |k, id| match k {
            RefKind::Received(bit) => ids.back(id, &sender_local, &recipient_local, bit),
            RefKind::Own => ids.forward(id, &sender_local, &recipient_local),
        });
        let mut s = self.writer.stanza(&mut self.out, "message");
        s.to(recipient)
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
            self.stats.dropped += 1;
            return;
        }
        if s.finish().is_err() {
            self.reply_error(el, "modify", "not-acceptable");
            return;
        }
        if self.cfg.log_sensitive {
            log::debug!("relayed {} -> {recipient} as {sender_local}", from.full());
        }
        self.stats.relayed += 1;
        self.ids.record(
            fresh,
            Sent {
                origin: Origin::new(from.full(), head.id),
                sender_local,
                recipient_local,
                acked: 0,
            },
        );
    }

    /// A delivery error for a message the relay passed on: back to the
    /// original sender, from the bouncing user's pseudonym, rebuilt from the
    /// error type and defined condition only.
    fn bounce(&mut self, st: Incoming<'_>, local: &str) {
        let Incoming { el, head } = st;
        let sent = head
            .id
            .and_then(|id| self.ids.sent(id))
            .filter(|s| s.sender_local.as_str() == local)
            .cloned();
        let Some(sent) = sent else {
            self.stats.dropped += 1;
            return;
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
        let mut s = self.writer.stanza(&mut self.out, "message");
        s.to(sent.origin.sender_full())
            .from(
                Some(sent.recipient_local.as_str()),
                Some(&self.cfg.resource),
            )
            .attr("type", "error");
        if let Some(id) = sent.origin.orig_id() {
            s.attr("id", id);
        }
        s.child("error", None).attr("type", etype);
        s.child(cond, Some(ns::STANZA_ERRORS));
        match s.finish() {
            Ok(_) => self.stats.bounced += 1,
            Err(_) => self.stats.dropped += 1,
        }
    }

    fn presence(&mut self, head: Head<'_>, from: &Jid, local: Option<&str>) {
        let addressable = local.is_none_or(Pseudonymizer::is_well_formed);
        match head.kind {
            Some("subscribe") if addressable => {
                self.send_presence(from.bare(), local, None, Some("subscribed"));
                self.send_presence(from.bare(), local, Some(&self.cfg.resource.clone()), None);
            }
            Some("subscribe") | Some("unsubscribe") => {
                self.send_presence(from.bare(), local, None, Some("unsubscribed"));
            }
            Some("probe") if addressable => {
                self.send_presence(from.full(), local, Some(&self.cfg.resource.clone()), None);
            }
            _ => self.stats.dropped += 1,
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
            self.stats.rejected += 1;
        }
    }

    fn iq(&mut self, st: Incoming<'_>, from: &Jid, to: &Jid, local: Option<&str>) {
        let Incoming { el, head } = st;
        if !matches!(head.kind, Some("get") | Some("set")) {
            // Results and errors (keepalive answers among them) are consumed.
            return;
        }
        let mut children = el.elements();
        let (Some(payload), None) = (children.next(), children.next()) else {
            return self.reply_error(el, "modify", "bad-request");
        };
        let get = head.kind == Some("get");
        let answer = match (local, get, payload.ns(), payload.name()) {
            (None, true, ns::DISCO_INFO, "query") if payload.attr("node").is_none() => {
                Some(ns::DISCO_INFO)
            }
            (None, true, ns::DISCO_ITEMS, "query") if payload.attr("node").is_none() => {
                Some(ns::DISCO_ITEMS)
            }
            (None, true, ns::PING, "ping") => Some(ns::PING),
            // Pseudonyms answer nothing themselves: a forwarded version, time,
            // vCard, disco or ping query would fingerprint the person or
            // reveal that they are online.
            _ => None,
        };
        let Some(answer) = answer else {
            return self.reply_error(el, "cancel", "service-unavailable");
        };
        let mut s = self.writer.stanza(&mut self.out, "iq");
        s.to(from.full())
            .from(to.local(), to.resource())
            .attr("type", "result");
        if let Some(id) = head.id {
            s.attr("id", id);
        }
        if answer == ns::DISCO_INFO {
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
        } else if answer == ns::DISCO_ITEMS {
            s.child("query", Some(ns::DISCO_ITEMS)).end();
        }
        if s.finish().is_err() {
            self.stats.rejected += 1;
        }
    }

    /// An error reply to `el`, from the address it was sent to. Never for a
    /// stanza that is itself an error (or an IQ result).
    pub(crate) fn reply_error(&mut self, el: &Element, etype: &'static str, cond: &'static str) {
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
            Ok(_) => self.stats.rejected += 1,
            Err(_) => self.stats.dropped += 1,
        }
    }
}
