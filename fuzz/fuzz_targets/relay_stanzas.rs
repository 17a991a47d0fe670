//! Structured stanzas between two users, each of whose real JID, resource,
//! domain and client ids are embedded everywhere (attributes, namespaces,
//! text of extension children, error payloads) except in what SPEC §5 relays
//! on purpose (the text of `body`, `subject` and `thread`, and `xml:lang` on
//! `body` and `subject`). Checked: nothing written to one user carries the
//! other's identifying strings; every stanza to a user comes from the relay
//! itself or the peer's pseudonym; all output is well-formed with every
//! `from` at the component domain (see the driver's invariants). Ids are
//! referred to as seen, or forged from seen ones: the receipts and markers
//! a user receives never outnumber the genuine ids the other side used, so
//! a forged id that was translated would show.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use axrelay_fuzz::{config, split_jid, Answer, Sim, StoreMode, Written, DOMAIN};
use libfuzzer_sys::fuzz_target;

/// What identifies one user. Every token holds characters that base32
/// pseudonyms (upper case, `0`, `1`, `8`, `9`) and base64url fresh ids
/// (`.`) cannot, so it cannot appear in the relay's own output by chance.
struct Party {
    local: &'static str,
    domain: &'static str,
    resource: &'static str,
    client: &'static str,
}

const ALICE: Party = Party {
    local: "A1ice.Local",
    domain: "a1ice-Realm.example",
    resource: "A1ice.Res8",
    client: "A1ice.Cl1ent",
};
const BOB: Party = Party {
    local: "B0b.Local",
    domain: "b0b-Realm.example",
    resource: "B0b.Res9",
    client: "B0b.Cl1ent",
};

impl Party {
    fn bare(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
    fn full(&self) -> String {
        format!("{}@{}/{}", self.local, self.domain, self.resource)
    }
    fn tokens(&self) -> [&'static str; 4] {
        [self.local, self.domain, self.resource, self.client]
    }
}

#[derive(Arbitrary, Debug)]
struct Scenario {
    bits: u8,
    tune: u8,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Who {
    Alice,
    Bob,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// A message from one user to the other's pseudonym.
    Message {
        who: Who,
        msg: Msg,
    },
    /// A delivery error from one user's server about a message relayed to
    /// that user, addressed to the original sender's pseudonym.
    Bounce {
        who: Who,
        id: Value,
        error: ErrorPayload,
    },
    /// Presence or IQ towards the peer's pseudonym or the relay.
    Other {
        who: Who,
        kind: OtherKind,
        to_relay: bool,
        extra: Vec<Child>,
    },
    /// A message to a well-formed pseudonym nobody has.
    Unknown {
        who: Who,
        msg: Msg,
    },
    /// Store and clock.
    Hold,
    Release,
    Fail(u8),
    Poison(u8),
    Advance(u8),
}

#[derive(Arbitrary, Debug)]
enum OtherKind {
    Subscribe,
    Unsubscribe,
    Probe,
    Available,
    IqGet,
    IqSet,
    IqResult,
}

#[derive(Arbitrary, Debug)]
struct Msg {
    kind: MsgType,
    id: Option<Value>,
    lang: Option<Value>,
    to_resource: Option<Value>,
    body: Option<Free>,
    children: Vec<Child>,
}

#[derive(Arbitrary, Debug)]
enum MsgType {
    Absent,
    Chat,
    Normal,
    Headline,
    Groupchat,
    Error,
    Other(Free),
}

/// A string that may identify its author.
#[derive(Arbitrary, Debug)]
enum Value {
    /// One of the author's identifying tokens (or a JID built of them).
    Secret(u8),
    /// An id the author saw in a stanza the relay sent them.
    Seen(u8),
    /// A client id of the author's: `CLIENTn`.
    Client(u8),
    /// An id the author saw, altered: forged ids must translate to nothing
    /// (checked by counting, see [`Run::check`]).
    Forged { of: u8, how: u8, at: u8 },
    /// Anything else.
    Free(Free),
}

/// Free text; identifying tokens of either user are removed from it.
#[derive(Arbitrary, Debug)]
struct Free(String);

#[derive(Arbitrary, Debug)]
enum Ns {
    Receipts,
    Markers,
    ChatStates,
    Hints,
    Correction,
    Stanza,
    Client,
    Omemo,
    Forward,
    Nick,
    Xhtml,
    Delay,
    StanzaId,
    Oob,
    Muc,
    Secret(u8),
    Free(Free),
}

#[derive(Arbitrary, Debug)]
enum Name {
    Body,
    Subject,
    Thread,
    Request,
    Received,
    Displayed,
    Acknowledged,
    Markable,
    Active,
    Composing,
    Paused,
    Inactive,
    Gone,
    Replace,
    NoStore,
    NoCopy,
    Store,
    NoPermanentStore,
    Encrypted,
    Forwarded,
    Message,
    Nick,
    Html,
    Delay,
    OriginId,
    StanzaId,
    X,
    Error,
    Text,
    Other(u8),
}

#[derive(Arbitrary, Debug)]
enum AttrName {
    Id,
    Jid,
    From,
    To,
    By,
    Sid,
    Stamp,
    Var,
    Lang,
    Prefixed,
    Other(u8),
}

#[derive(Arbitrary, Debug)]
struct Child {
    ns: Option<Ns>,
    prefix: bool,
    name: Name,
    attrs: Vec<(AttrName, Value)>,
    text: Option<Value>,
    kids: Vec<Grandchild>,
}

#[derive(Arbitrary, Debug)]
struct Grandchild {
    ns: Option<Ns>,
    name: Name,
    attrs: Vec<(AttrName, Value)>,
    text: Option<Value>,
}

#[derive(Arbitrary, Debug)]
struct ErrorPayload {
    etype: u8,
    cond: u8,
    text: Option<Value>,
    echo: Option<Child>,
    by: Option<Value>,
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\'' => o.push_str("&apos;"),
            '"' => o.push_str("&quot;"),
            '\r' => o.push_str("&#13;"),
            '\t' | '\n' => o.push(ch),
            c if (c as u32) < 0x20 => {}
            '\u{FFFE}' | '\u{FFFF}' => {}
            c => o.push(c),
        }
    }
    o
}

/// Free text with every identifying token of both users removed.
fn clean(s: &str) -> String {
    // First drop what `esc` would drop, so that dropping cannot join pieces
    // into a token afterwards.
    let mut s: String = s
        .chars()
        .filter(|&c| !((c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r')))
        .filter(|&c| c != '\u{FFFE}' && c != '\u{FFFF}')
        .collect();
    loop {
        let before = s.len();
        for t in ALICE.tokens().iter().chain(BOB.tokens().iter()) {
            s = s.replace(t, "");
        }
        if s.len() == before {
            return s;
        }
    }
}

struct Ctx<'a> {
    me: &'a Party,
    seen: &'a [String],
    /// How many genuine seen ids went into the stanza (an upper bound on
    /// the references it can get translated).
    genuine: std::cell::Cell<usize>,
}

impl Ctx<'_> {
    fn value(&self, v: &Value) -> String {
        match v {
            Value::Secret(i) => match i % 7 {
                0 => self.me.local.to_owned(),
                1 => self.me.domain.to_owned(),
                2 => self.me.resource.to_owned(),
                3 => self.me.bare(),
                4 => self.me.full(),
                5 => format!("xmpp:{}?message", self.me.bare()),
                _ => format!("{} {}", self.me.client, self.me.resource),
            },
            Value::Seen(i) => match self.seen.len() {
                0 => format!("{}{i}", self.me.client),
                n => {
                    self.genuine.set(self.genuine.get() + 1);
                    self.seen[usize::from(*i) % n].clone()
                }
            },
            Value::Client(i) => format!("{}{i}", self.me.client),
            Value::Forged { of, how, at } => match self.seen.len() {
                0 => format!("{}{of}", self.me.client),
                n => {
                    let seen = &self.seen[usize::from(*of) % n];
                    let forged = forge(seen, *how, *at);
                    // A rotation by nothing forges nothing.
                    if forged == *seen {
                        self.genuine.set(self.genuine.get() + 1);
                    }
                    forged
                }
            },
            Value::Free(f) => clean(&f.0),
        }
    }

    /// A value for a place that is relayed on purpose: never identifying.
    /// (Seen ids include the author's own ids echoed in error replies.)
    fn free(&self, v: &Value) -> String {
        match v {
            Value::Free(f) => clean(&f.0),
            Value::Seen(i) => match self.seen.len() {
                0 => String::new(),
                n => clean(&self.seen[usize::from(*i) % n]),
            },
            _ => "plain".to_owned(),
        }
    }

    fn ns(&self, ns: &Ns) -> String {
        match ns {
            Ns::Receipts => "urn:xmpp:receipts".into(),
            Ns::Markers => "urn:xmpp:chat-markers:0".into(),
            Ns::ChatStates => "http://jabber.org/protocol/chatstates".into(),
            Ns::Hints => "urn:xmpp:hints".into(),
            Ns::Correction => "urn:xmpp:message-correct:0".into(),
            Ns::Stanza => "jabber:component:accept".into(),
            Ns::Client => "jabber:client".into(),
            Ns::Omemo => "urn:xmpp:omemo:2".into(),
            Ns::Forward => "urn:xmpp:forward:0".into(),
            Ns::Nick => "http://jabber.org/protocol/nick".into(),
            Ns::Xhtml => "http://jabber.org/protocol/xhtml-im".into(),
            Ns::Delay => "urn:xmpp:delay".into(),
            Ns::StanzaId => "urn:xmpp:sid:0".into(),
            Ns::Oob => "jabber:x:oob".into(),
            Ns::Muc => "http://jabber.org/protocol/muc#user".into(),
            Ns::Secret(i) => format!("urn:x:{}", self.value(&Value::Secret(*i))),
            Ns::Free(f) => {
                let s = clean(&f.0);
                if s.is_empty() {
                    "urn:x:empty".into()
                } else {
                    s
                }
            }
        }
    }
}

fn name(n: &Name) -> String {
    match n {
        Name::Body => "body",
        Name::Subject => "subject",
        Name::Thread => "thread",
        Name::Request => "request",
        Name::Received => "received",
        Name::Displayed => "displayed",
        Name::Acknowledged => "acknowledged",
        Name::Markable => "markable",
        Name::Active => "active",
        Name::Composing => "composing",
        Name::Paused => "paused",
        Name::Inactive => "inactive",
        Name::Gone => "gone",
        Name::Replace => "replace",
        Name::NoStore => "no-store",
        Name::NoCopy => "no-copy",
        Name::Store => "store",
        Name::NoPermanentStore => "no-permanent-store",
        Name::Encrypted => "encrypted",
        Name::Forwarded => "forwarded",
        Name::Message => "message",
        Name::Nick => "nick",
        Name::Html => "html",
        Name::Delay => "delay",
        Name::OriginId => "origin-id",
        Name::StanzaId => "stanza-id",
        Name::X => "x",
        Name::Error => "error",
        Name::Text => "text",
        Name::Other(i) => return format!("e{i}"),
    }
    .to_owned()
}

fn attr_name(a: &AttrName) -> String {
    match a {
        AttrName::Id => "id",
        AttrName::Jid => "jid",
        AttrName::From => "from",
        AttrName::To => "to",
        AttrName::By => "by",
        AttrName::Sid => "sid",
        AttrName::Stamp => "stamp",
        AttrName::Var => "var",
        AttrName::Lang => "xml:lang",
        AttrName::Prefixed => "p:attr",
        AttrName::Other(i) => return format!("a{i}"),
    }
    .to_owned()
}

/// Attributes, each name once; `p:` is declared by the caller.
fn attrs(cx: &Ctx, list: &[(AttrName, Value)], relayed: bool) -> String {
    let mut seen = Vec::new();
    let mut out = String::new();
    for (n, v) in list.iter().take(6) {
        let n = attr_name(n);
        if seen.contains(&n) {
            continue;
        }
        // xml:lang on body and subject is relayed on purpose.
        let v = if relayed && n == "xml:lang" {
            cx.free(v)
        } else {
            cx.value(v)
        };
        out.push_str(&format!(" {n}='{}'", esc(&v)));
        seen.push(n);
    }
    out
}

fn is_stanza_ns(ns: &Option<Ns>) -> bool {
    matches!(ns, None | Some(Ns::Stanza) | Some(Ns::Client))
}

fn child(cx: &Ctx, c: &Child, top: bool) -> String {
    let n = name(&c.name);
    // Direct children body/subject/thread in a stanza namespace, prefixed or
    // not (`<q:body xmlns:q='jabber:client'>` is a body): relayed text.
    let relayed =
        top && is_stanza_ns(&c.ns) && matches!(c.name, Name::Body | Name::Subject | Name::Thread);
    let (tag, decl) = match (&c.ns, c.prefix) {
        (Some(ns), true) => (format!("q:{n}"), format!(" xmlns:q='{}'", esc(&cx.ns(ns)))),
        (Some(ns), false) => (n.clone(), format!(" xmlns='{}'", esc(&cx.ns(ns)))),
        (None, _) => (n.clone(), String::new()),
    };
    let mut s = format!(
        "<{tag}{decl} xmlns:p='urn:x:p'{}>",
        attrs(cx, &c.attrs, relayed && n != "thread")
    );
    if let Some(t) = &c.text {
        let t = if relayed { cx.free(t) } else { cx.value(t) };
        s.push_str(&esc(&t));
    }
    for k in c.kids.iter().take(4) {
        let kn = name(&k.name);
        let decl = match &k.ns {
            Some(ns) => format!(" xmlns='{}'", esc(&cx.ns(ns))),
            None => String::new(),
        };
        s.push_str(&format!("<{kn}{decl}{}>", attrs(cx, &k.attrs, false)));
        if let Some(t) = &k.text {
            s.push_str(&esc(&cx.value(t)));
        }
        s.push_str(&format!("</{kn}>"));
    }
    s.push_str(&format!("</{tag}>"));
    s
}

fn message(cx: &Ctx, from: &str, to: &str, m: &Msg) -> String {
    let mut s = format!("<message from='{}' to='{}'", esc(from), esc(to));
    match &m.kind {
        MsgType::Absent => {}
        MsgType::Chat => s.push_str(" type='chat'"),
        MsgType::Normal => s.push_str(" type='normal'"),
        MsgType::Headline => s.push_str(" type='headline'"),
        MsgType::Groupchat => s.push_str(" type='groupchat'"),
        MsgType::Error => s.push_str(" type='error'"),
        MsgType::Other(f) => s.push_str(&format!(" type='{}'", esc(&clean(&f.0)))),
    }
    if let Some(id) = &m.id {
        s.push_str(&format!(" id='{}'", esc(&cx.value(id))));
    }
    if let Some(l) = &m.lang {
        s.push_str(&format!(" xml:lang='{}'", esc(&cx.value(l))));
    }
    s.push('>');
    if let Some(b) = &m.body {
        s.push_str(&format!("<body>{}</body>", esc(&clean(&b.0))));
    }
    for c in m.children.iter().take(12) {
        s.push_str(&child(cx, c, true));
    }
    s.push_str("</message>");
    s
}

struct Run {
    sim: Sim,
    /// Pseudonym localparts of Alice and Bob, and a well-formed unknown one.
    pa: String,
    pb: String,
    pc: String,
    checked: usize,
    seen_alice: Vec<String>,
    seen_bob: Vec<String>,
    /// Genuine seen ids each user has sent so far, and translated
    /// references each has received.
    genuine_by_alice: usize,
    genuine_by_bob: usize,
    refs_to_alice: usize,
    refs_to_bob: usize,
}

impl Run {
    fn whoami(sim: &mut Sim, p: &Party) -> String {
        let before = sim.written.len();
        sim.feed(
            format!(
                "<message from='{}' to='{DOMAIN}' type='chat' id='w'><body>/whoami</body></message>",
                p.full()
            )
            .as_bytes(),
        );
        let reply = &sim.written[before..];
        assert_eq!(reply.len(), 1, "one whoami reply");
        let raw = String::from_utf8_lossy(&reply[0].raw).into_owned();
        let start = raw.find("<body>").expect("whoami body") + 6;
        let end = raw.find("</body>").expect("whoami body end");
        let jid = &raw[start..end];
        split_jid(jid).0.expect("pseudonym localpart").to_owned()
    }

    /// Check every stanza written since the last check.
    fn check(&mut self) {
        let alice = ALICE.bare();
        let bob = BOB.bare();
        for w in &self.sim.written[self.checked..] {
            if !matches!(w.name.as_str(), "message" | "presence" | "iq") {
                continue;
            }
            let to = w.attr("to").unwrap_or_default();
            let (tl, td, _) = split_jid(to);
            let to_bare = match tl {
                Some(l) => format!("{l}@{td}"),
                None => td.to_owned(),
            };
            let (peer, peer_local, other_local) = if to_bare == alice {
                (&BOB, &self.pb, None)
            } else if to_bare == bob {
                (&ALICE, &self.pa, Some(&self.pc))
            } else {
                // Keepalive pings and the like: nobody's tokens at all.
                for t in ALICE.tokens().iter().chain(BOB.tokens().iter()) {
                    leak(w, t, to);
                }
                continue;
            };
            for t in peer.tokens() {
                leak(w, t, to);
            }
            // Receipts and markers are translated only from ids the relay
            // issued, so never more than the other side's genuine ids.
            // (Corrections name their sender's own ids: not counted.)
            let raw = String::from_utf8_lossy(&w.raw);
            let refs = ["<received ", "<displayed ", "<acknowledged "]
                .iter()
                .map(|r| raw.matches(r).count())
                .sum::<usize>();
            let (got, genuine) = if to_bare == alice {
                self.refs_to_alice += refs;
                (self.refs_to_alice, self.genuine_by_bob)
            } else {
                self.refs_to_bob += refs;
                (self.refs_to_bob, self.genuine_by_alice)
            };
            assert!(
                got <= genuine,
                "{got} references translated to {to} from {genuine} genuine ids:\n{raw}"
            );
            let from = w.attr("from").unwrap_or_default();
            let (fl, _, _) = split_jid(from);
            if let Some(fl) = fl {
                let ok = fl == peer_local.as_str()
                    || other_local.is_some_and(|o| fl == o.as_str())
                    || (to_bare == alice && fl == self.pc);
                assert!(
                    ok,
                    "stanza to {to} from {from}: not the relay, nor the peer's pseudonym\n{}",
                    String::from_utf8_lossy(&w.raw)
                );
            }
            // Remember ids a user could refer to later.
            if let Some(id) = w.attr("id") {
                let seen = if to_bare == alice {
                    &mut self.seen_alice
                } else {
                    &mut self.seen_bob
                };
                if seen.len() < 64 && !seen.iter().any(|s| s == id) {
                    seen.push(id.to_owned());
                }
            }
        }
        self.checked = self.sim.written.len();
    }
}

/// `id` altered the ways a forger would try: one character changed, cut
/// short, lengthened, or its halves swapped (a valid tag on another body).
fn forge(id: &str, how: u8, at: u8) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut b = id.as_bytes().to_vec();
    if b.is_empty() {
        return "A".to_owned();
    }
    let i = usize::from(at) % b.len();
    match how % 4 {
        0 => {
            let pos = B64.iter().position(|c| *c == b[i]).unwrap_or(0);
            b[i] = B64[(pos + 1 + usize::from(how / 4)) % B64.len()];
        }
        1 => b.truncate(i),
        2 => b.insert(i, B64[usize::from(how) % B64.len()]),
        _ => b.rotate_left(i),
    }
    String::from_utf8(b).unwrap_or_default()
}

fn leak(w: &Written, token: &str, to: &str) {
    let raw = String::from_utf8_lossy(&w.raw);
    assert!(!raw.contains(token), "'{token}' leaked to {to}:\n{raw}");
}

fuzz_target!(|s: Scenario| {
    // Encryption, identity mode, tiny caches and TTL vary; limits stay at
    // the defaults (relay_bytes covers the small ones).
    let cfg = config(s.bits & !4, s.tune);
    let mut sim = Sim::online(cfg, Instant::now());
    let pa = Run::whoami(&mut sim, &ALICE);
    let pb = Run::whoami(&mut sim, &BOB);
    let pc = "c".repeat(45);
    let mut run = Run {
        sim,
        pa,
        pb,
        pc,
        checked: 0,
        seen_alice: Vec::new(),
        seen_bob: Vec::new(),
        genuine_by_alice: 0,
        genuine_by_bob: 0,
        refs_to_alice: 0,
        refs_to_bob: 0,
    };
    run.check();
    for step in s.steps.iter().take(48) {
        if run.sim.relay.is_idle() {
            run.sim.connect();
        }
        let who = match step {
            Step::Message { who, .. }
            | Step::Bounce { who, .. }
            | Step::Other { who, .. }
            | Step::Unknown { who, .. } => who,
            _ => &Who::Alice,
        };
        let (me, peer_local, seen) = match who {
            Who::Alice => (&ALICE, run.pb.clone(), run.seen_alice.clone()),
            Who::Bob => (&BOB, run.pa.clone(), run.seen_bob.clone()),
        };
        let cx = Ctx {
            me,
            seen: &seen,
            genuine: std::cell::Cell::new(0),
        };
        let to_pseudo = |res: &Option<Value>, local: &str| match res {
            Some(r) => {
                let r = cx.value(r);
                if r.is_empty() {
                    format!("{local}@{DOMAIN}")
                } else {
                    format!("{local}@{DOMAIN}/{r}")
                }
            }
            None => format!("{local}@{DOMAIN}"),
        };
        let xml = match step {
            Step::Message { msg, .. } => message(
                &cx,
                &me.full(),
                &to_pseudo(&msg.to_resource, &peer_local),
                msg,
            ),
            Step::Unknown { msg, .. } => {
                let pc = run.pc.clone();
                message(&cx, &me.full(), &to_pseudo(&msg.to_resource, &pc), msg)
            }
            Step::Bounce { id, error, .. } => {
                let etype = ["cancel", "wait", "modify", "auth", "continue", "bogus"]
                    [usize::from(error.etype) % 6];
                let cond = [
                    "service-unavailable",
                    "recipient-unavailable",
                    "item-not-found",
                    "undefined-condition",
                    "bogus",
                ][usize::from(error.cond) % 5];
                let mut x = format!(
                    "<message from='{}' to='{peer_local}@{DOMAIN}/a' type='error' id='{}'>",
                    esc(&me.full()),
                    esc(&cx.value(id))
                );
                if let Some(echo) = &error.echo {
                    x.push_str(&child(&cx, echo, false));
                }
                x.push_str(&format!("<error type='{etype}'"));
                if let Some(by) = &error.by {
                    x.push_str(&format!(" by='{}'", esc(&cx.value(by))));
                }
                x.push_str(&format!(
                    "><{cond} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                ));
                if let Some(t) = &error.text {
                    x.push_str(&format!(
                        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>{}</text>",
                        esc(&cx.value(t))
                    ));
                }
                x.push_str("</error></message>");
                x
            }
            Step::Other {
                kind,
                to_relay,
                extra,
                ..
            } => {
                let to = if *to_relay {
                    DOMAIN.to_owned()
                } else {
                    format!("{peer_local}@{DOMAIN}")
                };
                let kids: String = extra.iter().take(4).map(|c| child(&cx, c, false)).collect();
                let (el, ty) = match kind {
                    OtherKind::Subscribe => ("presence", Some("subscribe")),
                    OtherKind::Unsubscribe => ("presence", Some("unsubscribe")),
                    OtherKind::Probe => ("presence", Some("probe")),
                    OtherKind::Available => ("presence", None),
                    OtherKind::IqGet => ("iq", Some("get")),
                    OtherKind::IqSet => ("iq", Some("set")),
                    OtherKind::IqResult => ("iq", Some("result")),
                };
                let ty = ty.map(|t| format!(" type='{t}'")).unwrap_or_default();
                format!(
                    "<{el} from='{}' to='{to}'{ty} id='{}'>{kids}</{el}>",
                    esc(&me.full()),
                    me.client
                )
            }
            Step::Hold => {
                run.sim.mode = StoreMode::Hold;
                continue;
            }
            Step::Release => {
                run.sim.mode = StoreMode::Auto;
                run.sim.release_all();
                run.check();
                continue;
            }
            Step::Fail(i) => {
                run.sim.answer(usize::from(*i), Answer::Fail);
                run.check();
                continue;
            }
            Step::Poison(i) => {
                // The store claims the pseudonym belongs to someone else.
                let v = if i % 2 == 0 {
                    ALICE.bare().into_bytes()
                } else {
                    BOB.bare().into_bytes()
                };
                run.sim.answer(usize::from(*i), Answer::Poison(v));
                run.check();
                continue;
            }
            Step::Advance(s) => {
                run.sim.advance(Duration::from_millis(u64::from(*s) * 100));
                run.check();
                continue;
            }
        };
        match who {
            Who::Alice => run.genuine_by_alice += cx.genuine.get(),
            Who::Bob => run.genuine_by_bob += cx.genuine.get(),
        }
        run.sim.feed(xml.as_bytes());
        run.check();
    }
    run.sim.mode = StoreMode::Auto;
    run.sim.release_all();
    run.check();
    for _ in 0..8 {
        if !run.sim.run_to_deadline() {
            break;
        }
        run.sim.release_all();
        run.check();
    }
});
