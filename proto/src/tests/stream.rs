//! The component stream: handshake, errors, keepalive, closing.

use std::time::Duration;

use super::harness::*;
use crate::DisconnectReason;

#[test]
fn handshake_then_online() {
    let h = online(config());
    assert_eq!(h.online, 1);
    assert!(h.disconnects.is_empty());
    assert_eq!(h.relay.stats().sessions, 1);
}

#[test]
fn header_without_id_is_refused_without_a_handshake() {
    let mut h = offline(config());
    h.relay.handle_connected(h.now);
    h.pump();
    h.feed("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='axr.example'>");
    assert!(!String::from_utf8_lossy(&h.raw_out).contains("<handshake>"));
    assert!(matches!(
        h.disconnects[..],
        [DisconnectReason::StreamError(_)]
    ));
}

#[test]
fn stream_errors_map_to_reasons() {
    for (cond, reason, fatal) in [
        ("not-authorized", DisconnectReason::NotAuthorized, true),
        ("host-unknown", DisconnectReason::HostUnknown, true),
        ("conflict", DisconnectReason::Conflict, false),
        (
            "system-shutdown",
            DisconnectReason::StreamError("system-shutdown".into()),
            false,
        ),
    ] {
        let mut h = offline(config());
        h.relay.handle_connected(h.now);
        h.pump();
        h.feed(SERVER_HEADER);
        h.feed(&format!(
            "<stream:error><{cond} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>x</text></stream:error></stream:stream>"
        ));
        assert_eq!(h.disconnects, vec![reason.clone()], "{cond}");
        assert_eq!(reason.is_fatal(), fatal);
        assert!(h.relay.is_idle());
        assert!(String::from_utf8_lossy(&h.raw_out).ends_with("</stream:stream>"));
    }
}

#[test]
fn reconnect_starts_a_fresh_stream_and_keeps_mappings() {
    let mut h = online(config());
    let a = h.whoami("alice@a.example/phone");
    h.feed("</stream:stream>");
    assert_eq!(h.disconnects, vec![DisconnectReason::Closed]);
    h.connect();
    h.feed(&format!(
        "<message from='bob@b.example/x' to='{a}' id='1'><body>hi</body></message>"
    ));
    let m = h.one();
    assert_eq!(m.attr("to"), Some("alice@a.example"));
    assert_eq!(h.relay.stats().sessions, 2);
}

#[test]
fn handshake_timeout() {
    let mut h = offline(config());
    h.relay.handle_connected(h.now);
    h.pump();
    h.feed(SERVER_HEADER);
    h.advance(Duration::from_secs(29));
    assert!(h.disconnects.is_empty());
    h.advance(Duration::from_secs(2));
    assert_eq!(
        h.disconnects,
        vec![DisconnectReason::Timeout("the handshake")]
    );
}

#[test]
fn keepalive_pings_after_silence_and_detects_a_dead_peer() {
    let mut h = online(config());
    h.advance(Duration::from_secs(59));
    assert!(h.take().is_empty());
    assert!(h.run_to_deadline());
    let ping = h.one();
    assert_eq!(ping.name(), "iq");
    // By default the relay pings itself through the server.
    assert_eq!(ping.attr("to"), Some(DOMAIN));
    assert_eq!(ping.attr("from"), Some(DOMAIN));
    assert!(ping.elements().any(|c| c.is("urn:xmpp:ping", "ping")));
    // Any answer proves the peer alive.
    let id = ping.attr("id").unwrap().to_owned();
    h.feed(&format!(
        "<iq type='error' from='{DOMAIN}' to='{DOMAIN}' id='{id}'/>"
    ));
    assert!(
        h.take().is_empty(),
        "an error answer is consumed, not answered"
    );
    h.advance(Duration::from_secs(59));
    assert!(h.disconnects.is_empty());
    assert!(h.run_to_deadline());
    assert_eq!(h.one().name(), "iq");
    // No answer within another interval: dead.
    h.advance(Duration::from_secs(59));
    assert!(h.disconnects.is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(
        h.disconnects,
        vec![DisconnectReason::Timeout("a keepalive ping")]
    );
}

#[test]
fn whitespace_keepalive_expects_no_answer() {
    let mut cfg = config();
    cfg.keepalive_mode = crate::KeepaliveMode::Whitespace;
    let mut h = online(cfg);
    let a = h.whoami("alice@a.example/phone");
    let written = h.raw_out.len();
    // A silent server for ten intervals: one space per interval, no ping,
    // no disconnect.
    for i in 0..10 {
        h.advance(Duration::from_secs(59));
        assert_eq!(h.raw_out.len(), written + i);
        h.advance(Duration::from_secs(1));
        assert_eq!(h.raw_out.len(), written + i + 1);
    }
    assert_eq!(&h.raw_out[written..], b"          ");
    assert!(h.take().is_empty());
    assert!(h.disconnects.is_empty());
    // Input restarts the interval, and relaying goes on.
    h.advance(Duration::from_secs(30));
    h.feed(&format!(
        "<message from='bob@b.example/x' to='{a}' type='chat'><body>hi</body></message>"
    ));
    assert_eq!(body(&h.one()), "hi");
    let written = h.raw_out.len();
    h.advance(Duration::from_secs(59));
    assert_eq!(h.raw_out.len(), written);
    h.advance(Duration::from_secs(1));
    assert_eq!(&h.raw_out[written..], b" ");
}

#[test]
fn graceful_stop_closes_and_waits_for_the_server() {
    let mut h = online(config());
    h.relay.shutdown(h.now);
    h.pump();
    assert!(h.closed_stream);
    assert!(h.disconnects.is_empty());
    h.feed("</stream:stream>");
    assert_eq!(h.disconnects, vec![DisconnectReason::Shutdown]);

    // Without the server's close, it gives up after the close timeout.
    let mut h = online(config());
    h.relay.shutdown(h.now);
    h.pump();
    h.advance(Duration::from_millis(1999));
    assert!(h.disconnects.is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(h.disconnects, vec![DisconnectReason::Shutdown]);
}

#[test]
fn nothing_follows_our_close() {
    // Whatever the server sends while we wait for its close — a stream error
    // or bytes that do not parse — our `</stream:stream>` stays the last thing
    // written on the stream.
    for input in [
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        "<message><</message>",
    ] {
        let mut h = online(config());
        h.relay.shutdown(h.now);
        h.pump();
        assert!(h.closed_stream);
        let written = h.raw_out.len();
        h.feed(input);
        assert_eq!(h.disconnects.len(), 1, "{input}");
        assert_eq!(h.raw_out.len(), written, "wrote after our close: {input}");
        assert!(String::from_utf8_lossy(&h.raw_out).ends_with("</stream:stream>"));
    }
}

#[test]
fn graceful_stop_finishes_waiting_stanzas_first() {
    let mut h = online(config());
    let a = h.whoami("alice@a.example/phone");
    // A fresh relay sharing the store must look Alice up.
    let mut h2 = online(config());
    h2.store = std::mem::take(&mut h.store);
    h2.mode = StoreMode::Hold;
    h2.feed(&format!(
        "<message from='bob@b.example/x' to='{a}' id='1'><body>hi</body></message>"
    ));
    assert!(!h2.held.is_empty());
    h2.relay.shutdown(h2.now);
    h2.pump();
    assert!(!h2.closed_stream, "closed with work pending");
    h2.release();
    let sent = h2.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(body(&sent[0]), "hi");
    assert!(h2.closed_stream);
}

#[test]
fn graceful_stop_answers_what_the_store_did_not_finish() {
    let mut h = online(config());
    h.mode = StoreMode::Hold;
    h.feed("<message from='bob@b.example/x' to='zi36rtka6iz3zuszk5un4svb4m4qvtsiqacao56f7bspy@axr.example' id='1'><body>hi</body></message>");
    h.relay.shutdown(h.now);
    h.pump();
    h.advance(Duration::from_secs(2));
    let e = h.one();
    assert_eq!(
        error_condition(&e),
        Some(("wait".into(), "remote-server-timeout".into()))
    );
    assert!(h.closed_stream);
}

#[test]
fn server_close_and_socket_loss() {
    let mut h = online(config());
    h.feed("</stream:stream>");
    assert!(h.closed_stream);
    assert_eq!(h.disconnects, vec![DisconnectReason::Closed]);
    let mut h = online(config());
    h.relay.handle_closed(h.now);
    h.pump();
    assert_eq!(h.disconnects, vec![DisconnectReason::Closed]);
    // Nothing happens while idle.
    h.feed("<message/>");
    h.relay.handle_closed(h.now);
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.disconnects.len(), 1);
}

#[test]
fn malformed_input_ends_the_stream_with_the_matching_error() {
    for (input, cond) in [
        ("<message><body>x</iq>", "not-well-formed"),
        ("<!-- c -->", "restricted-xml"),
        ("<?pi?>", "restricted-xml"),
        ("<message><body>&ent;</body></message>", "restricted-xml"),
    ] {
        let mut h = online(config());
        h.feed(input);
        let out = String::from_utf8_lossy(&h.raw_out).into_owned();
        assert!(
            out.ends_with(&format!(
                "<stream:error><{cond} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
            )),
            "{input}: {out}"
        );
        assert!(
            matches!(h.disconnects[..], [DisconnectReason::BadInput(_)]),
            "{input}"
        );
    }
}

#[test]
fn whitespace_keepalives_from_the_server_are_fine() {
    let mut h = online(config());
    h.feed(" \n ");
    h.advance(Duration::from_secs(30));
    h.feed(" ");
    h.advance(Duration::from_secs(59));
    assert!(h.take().is_empty(), "whitespace counts as life");
}
