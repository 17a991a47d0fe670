//! What the XMPP server says in the XEP-0114 exchange, and what it expects.

use data_encoding::HEXLOWER;
use sha1::{Digest, Sha1};

/// The namespace of stream headers and stream errors.
pub const STREAMS_NS: &str = "http://etherx.jabber.org/streams";
/// The namespace of a component's stream.
pub const COMPONENT_NS: &str = "jabber:component:accept";

/// The server's stream header answering a component at `domain`, with
/// stream id `id`.
pub fn server_header(domain: &str, id: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{COMPONENT_NS}' \
         xmlns:stream='{STREAMS_NS}' from='{domain}' id='{id}'>"
    )
}

/// The stream header the relay opens with, byte for byte.
pub fn component_header(domain: &str) -> String {
    format!("<stream:stream xmlns='{COMPONENT_NS}' xmlns:stream='{STREAMS_NS}' to='{domain}'>")
}

/// The handshake digest (XEP-0114 §3): lower-hex SHA-1 of id ‖ password.
pub fn handshake_digest(id: &str, password: &str) -> String {
    let mut h = Sha1::new();
    h.update(id.as_bytes());
    h.update(password.as_bytes());
    HEXLOWER.encode(&h.finalize())
}

/// The `<handshake>` element a component sends for stream `id`.
pub fn handshake(id: &str, password: &str) -> String {
    format!("<handshake>{}</handshake>", handshake_digest(id, password))
}
