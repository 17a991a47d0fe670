//! The tokenizer on whole inputs and on every split of them.

use super::*;

/// Tokens of `input` fed in pieces of `step` bytes, as the framer feeds
/// them (unconsumed bytes kept and fed again with more), printed.
fn tokens(input: &[u8], step: usize) -> Result<Vec<String>, XmlError> {
    let mut t = Tokenizer::default();
    let mut attrs = Vec::new();
    let mut held: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for chunk in input.chunks(step.max(1)) {
        held.extend_from_slice(chunk);
        let mut pos = 0;
        while let Some((tok, n)) = t.next(&held[pos..], &mut attrs)? {
            if matches!(tok, Token::Start { .. }) {
                t.enter_root();
            }
            out.push(match tok {
                Token::Decl => "decl".to_owned(),
                Token::Start { tag, name, empty } => {
                    let a: Vec<String> = attrs
                        .iter()
                        .map(|a| format!("{}={}", a.name(tag), a.value(tag)))
                        .collect();
                    format!("<{name} {}{}>", a.join(" "), if empty { "/" } else { "" })
                }
                Token::End { name } => format!("</{name}>"),
                Token::Text { raw } => {
                    let mut s = String::new();
                    push_text(raw, &mut s);
                    format!("t:{s}")
                }
                Token::CData { text } => format!("c:{text}"),
            });
            pos += n;
        }
        held.drain(..pos);
    }
    // Join adjacent text pieces: how text is split depends on the reads.
    let mut joined: Vec<String> = Vec::new();
    for tok in out {
        match (joined.last_mut(), tok.strip_prefix("t:")) {
            (Some(last), Some(more)) if last.starts_with("t:") => last.push_str(more),
            _ => joined.push(tok),
        }
    }
    Ok(joined)
}

fn every_split(input: &str) -> Result<Vec<String>, XmlError> {
    let whole = tokens(input.as_bytes(), usize::MAX);
    for step in 1..=input.len().min(40) {
        assert_eq!(
            tokens(input.as_bytes(), step),
            whole,
            "{input:?} in steps of {step}"
        );
    }
    whole
}

#[test]
fn a_stream_tokenizes_the_same_in_every_split() {
    let doc = "<?xml version='1.0' encoding=\"UTF-8\"?><stream:stream xmlns='jabber:component:accept' \
               xmlns:stream='http://etherx.jabber.org/streams' id='a&amp;b'>\r\n \
               <message to='b@x' id=\"1\"><body>caf\u{e9} &lt;3 &#x1F600; ]] ]>\r\nok</body>\
               <active xmlns='http://jabber.org/protocol/chatstates'/><![CDATA[<not a tag>]]></message>";
    assert_eq!(
        every_split(doc).unwrap(),
        [
            "decl",
            "<stream:stream xmlns=jabber:component:accept xmlns:stream=http://etherx.jabber.org/streams id=a&amp;b>",
            "t:\n ",
            "<message to=b@x id=1>",
            "<body >",
            "t:caf\u{e9} <3 \u{1F600} ]] ]>\nok",
            "</body>",
            "<active xmlns=http://jabber.org/protocol/chatstates/>",
            "c:<not a tag>",
            "</message>",
        ]
    );
}

#[test]
fn bad_input_is_refused_the_same_in_every_split() {
    use XmlError::{Malformed as M, Restricted as R};
    type Kind = fn(&'static str) -> XmlError;
    let cases: &[(&str, Kind)] = &[
        ("<a><!-- c --></a>", R),
        ("<a><!DOCTYPE a></a>", R),
        ("<a><?pi x?></a>", R),
        ("<a>&nbsp;</a>", R),
        ("<a>&#0;</a>", M),
        ("<a>&#xD800;</a>", M),
        ("<a>& b</a>", M),
        ("<a>&amp</a>", M),
        ("<a>&la44&amp; b</a>", M),
        ("<a>&amp;&x&lt;</a>", M),
        ("<a>x]]>y</a>", M),
        ("<a>\u{1}</a>", M),
        ("<a>\u{FFFE}</a>", M),
        ("<a b='<'/>", M),
        ("<a b=c/>", M),
        ("<a b='1'c='2'/>", M),
        ("<a b/>", M),
        ("< a/>", M),
        ("<1a/>", M),
        ("<a:b:c/>", M),
        ("<a/ >", M),
        ("</a b>", M),
        ("<![CDAT[x]]>", M),
        ("<!x>", M),
        ("<a>x</a>  <?xml version='1.0'?>", R),
    ];
    for (input, kind) in cases {
        let got = every_split(input).unwrap_err();
        let expected = kind("");
        assert_eq!(
            std::mem::discriminant(&got),
            std::mem::discriminant(&expected),
            "{input}: {got}"
        );
    }
}

#[test]
fn invalid_utf8_is_refused_wherever_it_is() {
    for input in [
        &b"<a>\xff</a>"[..],
        b"<a b='\xc3'/>",
        b"<a\xe2\x82/>",
        b"<a>\xed\xa0\x80</a>",
        b"<a>ok\xc3",
    ] {
        for step in 1..=input.len() {
            let r = tokens(input, step);
            // A truncated sequence at the very end is only waited for.
            if input.ends_with(b"\xc3") {
                assert!(r.is_ok(), "{input:?} step {step}");
            } else {
                assert!(r.is_err(), "{input:?} step {step}");
            }
        }
    }
}

#[test]
fn the_declaration_is_checked_and_only_first() {
    for ok in [
        "<?xml version='1.0'?><a/>",
        "<?xml version=\"1.0\" encoding='utf-8' standalone='yes'?><a/>",
        "<?xml version='1.0' standalone='yes'?><a/>",
        "<?xml version = '1.0' ?><a/>",
    ] {
        every_split(ok).unwrap();
    }
    for bad in [
        "<?xml?><a/>",
        "<?xml encoding='UTF-8'?><a/>",
        "<?xml version='1.1'?><a/>",
        "<?xml version='1.0' encoding='latin1'?><a/>",
        "<?xml version='1.0' standalone='yes' encoding='UTF-8'?><a/>",
        "<?xml version='1.0'encoding='UTF-8'?><a/>",
        "<?xml version='1.0' standalone='no'?><a/>",
        " <?xml version='1.0'?><a/>",
    ] {
        assert!(every_split(bad).is_err(), "{bad}");
    }
}

#[test]
fn long_text_comes_in_pieces_without_its_end() {
    let mut t = Tokenizer::default();
    let mut attrs = Vec::new();
    t.enter_root();
    let (tok, n) = t.next(b"abc&am", &mut attrs).unwrap().unwrap();
    assert_eq!((tok, n), (Token::Text { raw: "abc" }, 3));
    assert_eq!(t.next(b"&am", &mut attrs).unwrap(), None);
    let (_, n) = t.next(b"x]]", &mut attrs).unwrap().unwrap();
    assert_eq!(n, 1);
    let (_, n) = t.next(b"x\r", &mut attrs).unwrap().unwrap();
    assert_eq!(n, 1);
}

/// The framer and rxml agree on chosen inputs, whole and byte by byte
/// (the `xml_framer` fuzz target searches for the rest).
#[test]
fn the_framer_agrees_with_rxml() {
    use crate::testing::xml_diff::{framer, line_ends_as_lf, rxml};
    const H: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='x&amp;y'>";
    for body in [
        "<message to='a' xml:lang='en' a:b='1' xmlns:a='urn:a'><body>x &lt; y\r\n&#x1F600;</body><x xmlns='urn:x'><y/>t<![CDATA[c]]></x></message>",
        "<iq id='1'/><presence><p:q xmlns:p='urn:p' p:r='\t1\n'/></presence></stream:stream>",
        "<m xmlns=''><n xmlns='urn:n'><o/></n></m>",
        "<m a='1\r' b='\r2\r\n3'>x\ry\r</m>",
        "<m a='1' a='2'/>",
        "<m xmlns:p='urn:p' xmlns:q='urn:p' p:a='1' q:a='2'/>",
        "<m><!-- c --></m>",
        "<m>&unknown;</m>",
        "<m><p:x/></m>",
        "<m></n>",
        "<m>]]></m>",
        "<m b='&#0;'/>",
        "<m xmlns:xml='urn:x'/>",
        "<m xmlns:p=''/>",
        "<m><?pi?></m>",
        "</stream:stream>trailing",
    ] {
        let input = format!("{H}{body}");
        let theirs = rxml(&line_ends_as_lf(input.as_bytes()));
        for step in [1, 3, input.len()] {
            let ours = framer(input.as_bytes(), step);
            if let Err(e) = ours.agrees_with(&theirs) {
                panic!("{body} in steps of {step}: {e}");
            }
        }
    }
}
