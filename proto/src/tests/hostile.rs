//! Hostile input (SPEC §6): each case gets the behaviour the spec asks for,
//! memory stays bounded, and well-formed messages before and after it are
//! delivered — directly, or after the reconnect a fatal case requires.

use super::harness::*;
use crate::DisconnectReason;

const BOB: &str = "bob@b.example/x";

/// Largest number of bytes the framer may hold with the default limits:
/// the stanza limit plus the largest stream header (its namespace names
/// may be copied into a stanza's record).
const BOUND: usize = 512 * 1024 + 16 * 1024;

fn setup() -> (Harness, String) {
    let mut h = online(config());
    let a = h.whoami("alice@a.example/phone");
    (h, a)
}

fn msg(to: &str, text: &str) -> String {
    format!("<message from='{BOB}' to='{to}' type='chat'><body>{text}</body></message>")
}

/// Feed `bytes` in 64 KiB pieces, checking the memory bound after each.
fn feed_bounded(h: &mut Harness, bytes: &[u8]) {
    for piece in bytes.chunks(64 * 1024) {
        h.feed_bytes(piece);
        assert!(
            h.relay.buffered() <= BOUND,
            "buffered {} bytes",
            h.relay.buffered()
        );
    }
}

fn bodies(h: &mut Harness) -> Vec<String> {
    h.take()
        .iter()
        .filter(|m| m.name() == "message" && m.attr("type") != Some("error"))
        .map(body)
        .collect()
}

/// A case the stream survives: before and after are relayed; `errors`
/// policy-violation replies were sent.
fn survives(input: &[u8], errors: usize) {
    let (mut h, a) = setup();
    h.feed(&msg(&a, "before"));
    feed_bounded(&mut h, input);
    h.feed(&msg(&a, "after"));
    let out = h.take();
    let errs = out.iter().filter(|m| error_condition(m).is_some()).count();
    assert_eq!(errs, errors, "{out:#?}");
    let texts: Vec<String> = out
        .iter()
        .filter(|m| error_condition(m).is_none())
        .map(body)
        .collect();
    assert_eq!(texts, ["before", "after"]);
    assert!(h.disconnects.is_empty(), "{:?}", h.disconnects);
}

/// A case that ends the stream with `cond`: before is relayed, the stream
/// error is sent, and after a reconnect the next message is relayed.
fn resets(input: &[u8], cond: &str) {
    let (mut h, a) = setup();
    h.feed(&msg(&a, "before"));
    let mut all = input.to_vec();
    all.extend_from_slice(msg(&a, "lost").as_bytes());
    feed_bounded(&mut h, &all);
    assert_eq!(bodies(&mut h), ["before"]);
    let out = String::from_utf8_lossy(&h.raw_out).into_owned();
    assert!(
        out.ends_with(&format!("<stream:error><{cond} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")),
        "expected {cond}: …{}",
        &out[out.len().saturating_sub(200)..]
    );
    assert!(matches!(h.disconnects[..], [DisconnectReason::BadInput(_)]));
    h.connect();
    h.feed(&msg(&a, "after"));
    assert_eq!(bodies(&mut h), ["after"]);
}

#[test]
fn billion_laughs_and_entities() {
    let lol = "<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]><lolz>&lol2;</lolz>";
    resets(lol.as_bytes(), "restricted-xml");
    resets(b"<message><body>&lol9;</body></message>", "restricted-xml");
}

#[test]
fn dtd_and_external_entity() {
    resets(
        b"<!DOCTYPE foo [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>",
        "restricted-xml",
    );
    // A DTD before the server's header: refused before any stanza.
    let mut h = offline(config());
    h.relay.handle_connected(h.now);
    h.pump();
    h.feed("<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='1'>");
    assert!(matches!(h.disconnects[..], [DisconnectReason::BadInput(_)]));
    assert!(!String::from_utf8_lossy(&h.raw_out).contains("<handshake>"));
}

#[test]
fn comments_and_processing_instructions() {
    resets(b"<!-- hello -->", "restricted-xml");
    resets(
        b"<message><body>x<!-- c --></body></message>",
        "restricted-xml",
    );
    resets(b"<?php echo 1; ?>", "restricted-xml");
}

#[test]
fn eighty_thousand_attributes() {
    let attrs: String = (0..80_000).map(|i| format!(" a{i}=''")).collect();
    // Over the size limit inside the start tag: skipped without an address.
    survives(
        format!("<message from='{BOB}' to='axr.example'{attrs}/>").as_bytes(),
        0,
    );
    // Within the size limit but over the attribute limit: bounced.
    let few: String = (0..1000).map(|i| format!(" a{i}=''")).collect();
    survives(
        format!("<message from='{BOB}' to='axr.example' id='m'{few}/>").as_bytes(),
        1,
    );
}

#[test]
fn many_namespace_declarations() {
    let decls: String = (0..10_000)
        .map(|i| format!(" xmlns:p{i}='urn:x:{i}'"))
        .collect();
    survives(
        format!("<message from='{BOB}' to='axr.example'{decls}><body>x</body></message>")
            .as_bytes(),
        1,
    );
    survives(
        format!("<message from='{BOB}' to='axr.example'><x{decls}/></message>").as_bytes(),
        1,
    );
}

#[test]
fn ten_thousand_levels_of_nesting() {
    let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
    survives(
        format!("<message from='{BOB}' to='axr.example'>{deep}</message>").as_bytes(),
        1,
    );
    // Deeper than the size limit allows, unclosed until the end.
    let deeper = format!("{}{}", "<a>".repeat(200_000), "</a>".repeat(200_000));
    survives(
        format!("<message from='{BOB}' to='axr.example'>{deeper}</message>").as_bytes(),
        1,
    );
}

#[test]
fn oversized_stanza_and_ten_megabyte_text() {
    survives(
        format!(
            "<message from='{BOB}' to='axr.example'><body>{}</body></message>",
            "x".repeat(600_000)
        )
        .as_bytes(),
        1,
    );
    let ten_mb = "t".repeat(10 * 1024 * 1024);
    survives(
        format!("<message from='{BOB}' to='axr.example'><body>{ten_mb}</body></message>")
            .as_bytes(),
        1,
    );
    // A long attribute value is no reason to drop the whole stream.
    let long = "v".repeat(100_000);
    survives(
        format!("<message from='{BOB}' to='axr.example' x='{long}'><body>x</body></message>")
            .as_bytes(),
        1,
    );
}

#[test]
fn invalid_utf8_nul_and_control_characters() {
    resets(
        b"<message><body>\xff\xfe</body></message>",
        "not-well-formed",
    );
    resets(b"<message><body>\xc3</body></message>", "not-well-formed");
    resets(b"<message><body>\x00</body></message>", "not-well-formed");
    resets(b"<message><body>&#0;</body></message>", "not-well-formed");
    resets(b"<message><body>\x01</body></message>", "not-well-formed");
    resets(b"<message><body>&#x1b;</body></message>", "not-well-formed");
}

#[test]
fn stream_truncated_mid_stanza() {
    let (mut h, a) = setup();
    h.feed(&msg(&a, "before"));
    h.feed(&format!("<message from='{BOB}' to='{a}'><body>cut of"));
    h.relay.handle_closed(h.now);
    h.pump();
    assert_eq!(bodies(&mut h), ["before"]);
    assert_eq!(h.disconnects, vec![DisconnectReason::Closed]);
    h.connect();
    h.feed(&msg(&a, "after"));
    assert_eq!(bodies(&mut h), ["after"]);
}

#[test]
fn second_root_and_nested_stream_header() {
    let (mut h, a) = setup();
    h.feed(&msg(&a, "before"));
    h.feed("</stream:stream><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>");
    assert_eq!(bodies(&mut h), ["before"]);
    assert_eq!(h.disconnects, vec![DisconnectReason::Closed]);
    // A stream header inside the stream is just an unknown element.
    survives(
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>",
        0,
    );
}
