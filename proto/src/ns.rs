//! Namespaces the relay reads or writes.

/// The component stream's default namespace (XEP-0114).
pub const COMPONENT: &str = "jabber:component:accept";
/// Stanzas may also arrive in the client or server namespace.
pub const CLIENT: &str = "jabber:client";
/// Server-to-server stanza namespace.
pub const SERVER: &str = "jabber:server";
/// The stream root namespace.
pub const STREAMS: &str = "http://etherx.jabber.org/streams";
/// Stream error conditions.
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Stanza error conditions.
pub const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// The `xml:` prefix namespace.
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
/// XEP-0085 chat states.
pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0184 delivery receipts.
pub const RECEIPTS: &str = "urn:xmpp:receipts";
/// XEP-0333 chat markers.
pub const MARKERS: &str = "urn:xmpp:chat-markers:0";
/// XEP-0334 processing hints.
pub const HINTS: &str = "urn:xmpp:hints";
/// XEP-0308 last message correction.
pub const CORRECTION: &str = "urn:xmpp:message-correct:0";
/// XEP-0030 service discovery, info.
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030 service discovery, items.
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0199 ping.
pub const PING: &str = "urn:xmpp:ping";

/// Whether `ns` is a namespace stanzas (and their body, subject, thread) use.
pub fn is_stanza_ns(ns: &str) -> bool {
    ns == COMPONENT || ns == CLIENT || ns == SERVER
}
