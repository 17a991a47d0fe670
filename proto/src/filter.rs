//! The allow-list for relayed message children (SPEC §5).
//!
//! Output is rebuilt from static names, never copied: whatever is not listed
//! here — nick, XHTML-IM, addresses, forwarded/carbons, delay, stanza-id,
//! origin-id, OOB, MUC invites, references, replies, caps, avatars, Jingle,
//! OpenPGP, OMEMO, any unknown namespace — and every attribute not listed is
//! dropped. Reference ids are translated by the caller or the child dropped.

use std::borrow::Cow;

use crate::element::Element;
use crate::ns;

/// What a reference id points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefKind {
    /// A receipt or chat marker: names a message the referrer received. The
    /// bit tells the kinds apart (receipt, marker received, displayed,
    /// acknowledged), so only the first of each kind is passed back.
    Received(u8),
    /// A correction: names the referrer's own earlier message.
    Own,
}

/// One child that survives the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Allowed<'a> {
    /// `body`, `subject` or `thread` in the stream namespace.
    Text {
        name: &'static str,
        lang: Option<&'a str>,
        text: Cow<'a, str>,
    },
    /// An empty element such as a chat state or a hint.
    Empty {
        name: &'static str,
        ns: &'static str,
    },
    /// An element whose `id` was translated.
    Ref {
        name: &'static str,
        ns: &'static str,
        id: String,
    },
}

fn static_name(name: &str, names: &[&'static str]) -> Option<&'static str> {
    names.iter().copied().find(|n| *n == name)
}

/// The children of `msg` that may be relayed, in order; `translate` maps a
/// reference id or refuses it. Lazy: the caller writes each as it comes.
pub(crate) fn allowed<'a>(
    msg: Element<'a>,
    mut translate: impl FnMut(RefKind, &str) -> Option<String>,
) -> impl Iterator<Item = Allowed<'a>> {
    msg.elements()
        .filter_map(move |c| allowed_child(c, &mut translate))
}

fn allowed_child<'a>(
    c: Element<'a>,
    translate: &mut impl FnMut(RefKind, &str) -> Option<String>,
) -> Option<Allowed<'a>> {
    let name = c.name();
    match c.ns() {
        x if ns::is_stanza_ns(x) => {
            static_name(name, &["body", "subject", "thread"]).map(|n| Allowed::Text {
                name: n,
                lang: if n == "thread" { None } else { c.lang() },
                text: c.text(),
            })
        }
        ns::CHATSTATES => static_name(name, &["active", "composing", "paused", "inactive", "gone"])
            .map(|n| Allowed::Empty {
                name: n,
                ns: ns::CHATSTATES,
            }),
        ns::HINTS => static_name(
            name,
            &["no-store", "no-copy", "store", "no-permanent-store"],
        )
        .map(|n| Allowed::Empty {
            name: n,
            ns: ns::HINTS,
        }),
        ns::RECEIPTS => match name {
            "request" => Some(Allowed::Empty {
                name: "request",
                ns: ns::RECEIPTS,
            }),
            "received" => reference(c, "received", ns::RECEIPTS, RefKind::Received(1), translate),
            _ => None,
        },
        ns::MARKERS => match name {
            "markable" => Some(Allowed::Empty {
                name: "markable",
                ns: ns::MARKERS,
            }),
            _ => static_name(name, &["received", "displayed", "acknowledged"]).and_then(|n| {
                let bit = match n {
                    "received" => 2,
                    "displayed" => 4,
                    _ => 8,
                };
                reference(c, n, ns::MARKERS, RefKind::Received(bit), translate)
            }),
        },
        ns::CORRECTION if name == "replace" => {
            reference(c, "replace", ns::CORRECTION, RefKind::Own, translate)
        }
        _ => None,
    }
}

fn reference(
    c: Element<'_>,
    name: &'static str,
    ns: &'static str,
    kind: RefKind,
    translate: &mut impl FnMut(RefKind, &str) -> Option<String>,
) -> Option<Allowed<'static>> {
    let id = translate(kind, c.attr("id")?)?;
    Some(Allowed::Ref { name, ns, id })
}
