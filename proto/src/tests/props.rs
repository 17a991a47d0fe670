//! Properties over generated input.

use proptest::prelude::*;

use super::harness::*;

const ALICE: &str = "alice@a.example/phone";
const BOB_JID: &str = "bob@b.example";
const BOB_RES: &str = "SecretRes";
const CLIENT_ID: &str = "clientid77";

fn xml_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>().prop_filter("XML character", |c| matches!(*c,
            '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)),
        1 => prop::sample::select(vec!['&', '<', '>', '\'', '"', ']', '\r', '\n', '\t', ' ']),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(xml_char(), 0..64).prop_map(|v| v.into_iter().collect())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
        .replace('\r', "&#13;")
}

/// A session: whoami for both, a few relayed messages and answers.
fn script() -> (Vec<u8>, String) {
    let mut h = online(config());
    let a = h.whoami(ALICE);
    let b = h.whoami("bob@b.example/x");
    let mut s = String::new();
    s.push_str(&format!(
        "<message from='{ALICE}' to='{DOMAIN}' type='chat' id='1'><body>/whoami</body></message>"
    ));
    s.push_str(&format!(
        "<message from='bob@b.example/x' to='{DOMAIN}'><body>/whoami</body></message> \n"
    ));
    s.push_str(&format!("<message from='bob@b.example/x' to='{a}' id='m1'><body>h\u{e9}llo &amp; &lt;b&gt; \u{1F600}</body><request xmlns='urn:xmpp:receipts'/></message>"));
    s.push_str(&format!("<message from='{ALICE}' to='{b}'><received xmlns='urn:xmpp:receipts' id='xx'/><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"));
    s.push_str(&format!(
        "<presence type='subscribe' from='bob@b.example' to='{a}'/>"
    ));
    s.push_str(&format!("<iq type='get' id='i' from='{ALICE}' to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"));
    s.push_str(&format!("<message from='{ALICE}' to='{b}/a' type='chat' id='m2'><body><![CDATA[x]]]]><![CDATA[>y]]></body></message>"));
    s.push_str(&format!(
        "<message from='{ALICE}' to='{b}' id='big'><body>{}</body></message>",
        "z".repeat(600 * 1024)
    ));
    s.push_str(&format!(
        "<message from='{ALICE}' to='{b}' id='m3'><body>after</body></message>"
    ));
    (s.into_bytes(), a)
}

/// Feed `input` cut at `cuts`, the store answering only at the end (store
/// timing is the runtime's, not the input's).
fn run_chunked(input: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<String>) {
    let mut h = online(config());
    h.mode = StoreMode::Hold;
    let mut prev = 0;
    for &c in cuts {
        h.feed_bytes(&input[prev..c]);
        prev = c;
    }
    h.feed_bytes(&input[prev..]);
    h.release_all();
    (h.raw_out, h.log)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The output does not depend on how the input was chunked.
    #[test]
    fn any_chunking_gives_identical_output(cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24)) {
        let (input, _) = script();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len())).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let whole = run_chunked(&input, &[]);
        let chunked = run_chunked(&input, &cuts);
        prop_assert!(chunked == whole, "output differs for cuts {:?}", cuts);
    }

    /// Bodies arrive byte-identical, whatever characters they hold.
    #[test]
    fn bodies_survive_byte_for_byte(body in text(), subject in text()) {
        let mut h = online(config());
        let a = h.whoami(ALICE);
        h.feed(&format!(
            "<message from='bob@b.example/x' to='{a}' type='chat'><body>{}</body><subject>{}</subject></message>",
            escape(&body), escape(&subject)
        ));
        let m = h.one();
        let texts: Vec<String> = m.elements().map(|e| e.text().into_owned()).collect();
        prop_assert_eq!(texts, vec![body, subject]);
    }

    /// Extension children full of the sender's real JID, resource and
    /// client id never reach the recipient.
    #[test]
    fn nothing_identifying_leaks(children in prop::collection::vec(child(), 0..8)) {
        let mut h = online(config());
        let a = h.whoami(ALICE);
        h.take();
        let before = h.raw_out.len();
        let sender = format!("{BOB_JID}/{BOB_RES}");
        h.feed(&format!(
            "<message from='{sender}' to='{a}' id='{CLIENT_ID}' xml:lang='x-{BOB_RES}'><body>hello</body>{}</message>",
            children.concat()
        ));
        let out = String::from_utf8_lossy(&h.raw_out[before..]).into_owned();
        for secret in [BOB_JID, BOB_RES, CLIENT_ID, "bob"] {
            prop_assert!(!out.contains(secret), "{} leaked in {}", secret, out);
        }
        let m = h.one();
        prop_assert!(!m.root().has_text());
    }

    /// Arbitrary bytes never panic the relay, and whatever it writes is
    /// well-formed with a `from` at its domain (checked by the harness).
    #[test]
    fn arbitrary_bytes_are_harmless(prefix in prop::collection::vec(any::<u8>(), 0..512), noise in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut h = online(config());
        let a = h.whoami(ALICE);
        h.feed_bytes(&prefix);
        let mut mixed = format!("<message from='bob@b.example/x' to='{a}'><body>ok</body></message>").into_bytes();
        mixed.extend_from_slice(&noise);
        h.feed_bytes(&mixed);
        h.feed_bytes(b"<message from='c@c/c' to='axr.example'><body>/whoami</body></message>");
        h.relay.handle_closed(h.now);
        h.pump();
    }
}

/// A random extension child whose attributes and text carry identifying data.
fn child() -> impl Strategy<Value = String> {
    let ns = prop::sample::select(vec![
        "urn:xmpp:receipts",
        "urn:xmpp:chat-markers:0",
        "http://jabber.org/protocol/chatstates",
        "urn:xmpp:hints",
        "urn:xmpp:message-correct:0",
        "urn:xmpp:omemo:2",
        "urn:xmpp:forward:0",
        "urn:example:unknown",
        "jabber:component:accept",
    ]);
    let name = prop::sample::select(vec![
        "received",
        "displayed",
        "request",
        "markable",
        "composing",
        "replace",
        "no-store",
        "forwarded",
        "encrypted",
        "nick",
        "x",
        "delay",
        "origin-id",
        "html",
        "acknowledged",
    ]);
    let attr = prop::sample::select(vec!["id", "jid", "from", "to", "by", "sid", "extra"]);
    let secret = prop::sample::select(vec![
        format!("{BOB_JID}/{BOB_RES}"),
        BOB_JID.to_owned(),
        BOB_RES.to_owned(),
        CLIENT_ID.to_owned(),
    ]);
    (
        ns,
        name,
        prop::collection::vec((attr, secret.clone()), 0..3),
        prop::option::of(secret),
        any::<bool>(),
    )
        .prop_map(|(ns, name, attrs, text, nest)| {
            let mut seen = std::collections::HashSet::new();
            let attrs: String = attrs
                .into_iter()
                .filter(|(a, _)| seen.insert(*a))
                .map(|(a, v)| format!(" {a}='{v}'"))
                .collect();
            let inner = match (text, nest) {
                (Some(t), true) => format!("<inner xmlns='urn:x' jid='{t}'>{t}</inner>"),
                (Some(t), false) => t,
                (None, _) => String::new(),
            };
            format!("<{name} xmlns='{ns}'{attrs}>{inner}</{name}>")
        })
}
