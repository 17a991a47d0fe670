//! The framer on whole streams and on every split of them.

use super::*;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='axr.example' id='abc'>";

fn limits() -> Limits {
    Limits {
        max_stanza_bytes: 4096,
        ..Limits::default()
    }
}

/// A piece size that feeds the input whole.
const WHOLE: usize = usize::MAX;

/// The frames of `doc` fed in pieces of `step` bytes to a framer with
/// `limits`, up to the first error.
fn run_with(limits: &Limits, doc: &[u8], step: usize) -> (Vec<Frame>, Result<(), FrameError>) {
    let mut f = Framer::new(limits.clone());
    let mut out = Vec::new();
    let r = doc.chunks(step).try_for_each(|c| f.feed_all(c, &mut out));
    (out, r)
}

/// The same with the tests' limits (4 KiB stanzas).
fn run(doc: &[u8], step: usize) -> (Vec<Frame>, Result<(), FrameError>) {
    run_with(&limits(), doc, step)
}

fn names(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f {
            Frame::Header { id, .. } => format!("header:{}", id.clone().unwrap_or_default()),
            Frame::Stanza(e) => {
                format!("{}:{}", e.root().name(), e.root().attr("id").unwrap_or(""))
            }
            Frame::Skipped(h) => format!(
                "skipped:{}",
                h.as_ref().and_then(|e| e.root().attr("id")).unwrap_or("")
            ),
            Frame::End => "end".into(),
        })
        .collect()
}

#[test]
fn frames_stanzas_and_merges_text() {
    let doc = format!(
        "{HEADER} <message id='1'><body>a &amp; b</body></message>\n<iq id='2'/></stream:stream>"
    );
    let (frames, r) = run(doc.as_bytes(), WHOLE);
    r.unwrap();
    assert_eq!(names(&frames), ["header:abc", "message:1", "iq:2", "end"]);
    let Frame::Stanza(m) = &frames[1] else {
        panic!()
    };
    assert_eq!(
        m.root().child(ns::COMPONENT, "body").unwrap().text(),
        "a & b"
    );
}

#[test]
fn oversized_text_is_skipped_and_the_stream_goes_on() {
    let big = "x".repeat(50_000);
    let doc = format!(
        "{HEADER}<message id='1'><body>ok</body></message><message id='2' from='u@h/r'><body>{big}</body><x a='>'/><![CDATA[</message>]]></message><message id='3'/>"
    );
    for step in [1usize, 7, 100, 4096, 100_000] {
        let (frames, r) = run(doc.as_bytes(), step);
        r.unwrap();
        assert_eq!(
            names(&frames),
            ["header:abc", "message:1", "skipped:2", "message:3"],
            "step {step}"
        );
    }
}

/// `n` distinct attributes, each with a leading space.
fn attributes(n: usize) -> String {
    (0..n).map(|i| format!(" a{i}='v'")).collect()
}

/// `n` distinct namespace declarations, each with a leading space.
fn declarations(n: usize) -> String {
    (0..n).map(|i| format!(" xmlns:p{i}='urn:{i}'")).collect()
}

/// A message of exactly `total` bytes, end tag included.
fn message_of(id: &str, total: usize) -> String {
    let shell = format!("<message id='{id}'><body></body></message>");
    format!(
        "<message id='{id}'><body>{}</body></message>",
        "y".repeat(total - shell.len())
    )
}

#[test]
fn the_limit_counts_the_whole_stanza_whatever_the_chunking() {
    for (total, expect) in [(4096, "message:m"), (4097, "skipped:m")] {
        let doc = format!("{HEADER}{}<message id='after'/>", message_of("m", total));
        for step in [1usize, 2, 7, 100, 4000, 4095, 4096, 100_000] {
            let (frames, r) = run(doc.as_bytes(), step);
            r.unwrap();
            assert_eq!(
                names(&frames),
                ["header:abc", expect, "message:after"],
                "{total} bytes, step {step}"
            );
        }
    }
}

#[test]
fn bytes_past_the_limit_are_skipped_unparsed_whatever_the_chunking() {
    // Invalid UTF-8, a control character, an undefined entity and `]]>`
    // after the limit: the stanza is
    // skipped in every split, never a parse error in some of them.
    let mut doc = format!("{HEADER}<message id='m'><body>").into_bytes();
    doc.extend(std::iter::repeat_n(b'z', 5000));
    doc.extend_from_slice(b"\xff\x01 &bogus; ]]></body></message><message id='after'/>");
    for step in [1usize, 100, 4099, 8192, 100_000] {
        let (frames, r) = run(&doc, step);
        r.unwrap();
        assert_eq!(
            names(&frames),
            ["header:abc", "skipped:m", "message:after"],
            "step {step}"
        );
    }
}

#[test]
fn a_large_stanza_does_not_count_against_the_next() {
    let doc = format!(
        "{HEADER}{}{}<message id='c'/>",
        message_of("a", 4096),
        message_of("b", 200)
    );
    for step in [1usize, 3, 64, 4096, 4200, 100_000] {
        let (frames, r) = run(doc.as_bytes(), step);
        r.unwrap();
        assert_eq!(
            names(&frames),
            ["header:abc", "message:a", "message:b", "message:c"],
            "step {step}"
        );
    }
}

#[test]
fn a_huge_start_tag_is_skipped_without_address() {
    let attrs = attributes(2000);
    let doc = format!("{HEADER}<message id='big'{attrs}><body/></message><message id='next'/>");
    let (frames, r) = run(doc.as_bytes(), WHOLE);
    r.unwrap();
    assert_eq!(names(&frames), ["header:abc", "skipped:", "message:next"]);
    let doc = format!("{HEADER}<message id='big'{attrs}/><message id='next'/>");
    let (frames, r) = run(doc.as_bytes(), WHOLE);
    r.unwrap();
    assert_eq!(names(&frames), ["header:abc", "skipped:", "message:next"]);
}

#[test]
fn limits_on_attributes_namespaces_and_depth_skip_one_stanza() {
    let attrs = attributes(65);
    let decls = declarations(17);
    let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
    let doc = format!(
        "{HEADER}<message id='1'{attrs}/><message id='2'><x{decls}/></message><message id='3'>{deep}</message><message id='4'/>"
    );
    let (frames, r) = run(doc.as_bytes(), WHOLE);
    r.unwrap();
    assert_eq!(
        names(&frames),
        [
            "header:abc",
            "skipped:1",
            "skipped:2",
            "skipped:3",
            "message:4"
        ]
    );
}

/// A tag with thousands of attributes or declarations is not parsed: the
/// stanza is skipped from it, its sender still known for the error reply,
/// and the stream goes on (declaring them all first would cost the square
/// of their number).
#[test]
fn counts_over_the_limits_are_skipped_unparsed() {
    let attrs = attributes(5000);
    let decls = declarations(5000);
    let doc = format!(
        "{HEADER}<message from='a@x/r' id='1'{attrs} xmlns='jabber:client'><body>x</body></message>\
         <message id='2'><x{decls}><p1:y/></x></message><message id='3'{decls}/><message id='4'/>"
    );
    let limits = Limits {
        max_stanza_bytes: 512 * 1024,
        ..Limits::default()
    };
    for step in [1usize, 777, doc.len()] {
        let (frames, r) = run_with(&limits, doc.as_bytes(), step);
        r.unwrap();
        assert_eq!(
            names(&frames),
            [
                "header:abc",
                "skipped:1",
                "skipped:2",
                "skipped:3",
                "message:4"
            ],
            "step {step}"
        );
        let Frame::Skipped(Some(head)) = &frames[1] else {
            panic!()
        };
        let head = head.root();
        assert_eq!(head.ns(), "jabber:client");
        assert_eq!(head.attr("from"), Some("a@x/r"));
        assert_eq!(head.elements().count(), 0);
    }
}

/// The tag that is too deep or over a count limit is checked like any
/// other, and a fault in it ends the stream; what follows it in the stanza
/// is scanned raw, and a fault there does not (SPEC §6).
#[test]
fn the_tag_that_breaks_a_limit_is_checked_and_what_follows_is_not() {
    let many = attributes(65);
    let limits = Limits {
        max_depth: 2,
        ..limits()
    };
    let fatal = [
        "<message id='1'><a><b x='&nbsp;'/></a></message>".to_string(),
        format!("<message id='1'><a{many} x='&nbsp;'/></message>"),
    ];
    let skipped = [
        "<message id='1'><a><b/><c x='&nbsp;'/></a></message>".to_string(),
        format!("<message id='1'><a{many}/><c x='&nbsp;'/></message>"),
    ];
    for (stanza, is_fatal) in fatal
        .iter()
        .map(|s| (s, true))
        .chain(skipped.iter().map(|s| (s, false)))
    {
        let doc = format!("{HEADER}{stanza}<message id='2'/>");
        for step in [1usize, 7, doc.len()] {
            let (frames, r) = run_with(&limits, doc.as_bytes(), step);
            if is_fatal {
                assert_eq!(names(&frames), ["header:abc"], "{stanza} step {step}");
                assert!(r.is_err(), "{stanza} step {step}");
            } else {
                r.unwrap();
                let want = ["header:abc", "skipped:1", "message:2"];
                assert_eq!(names(&frames), want, "{stanza} step {step}");
            }
        }
    }
}

/// Between stanzas, markup larger than a stanza that is no stanza ends the
/// stream: the raw scanner, knowing no stanza to skip, would take the next
/// stanza for its end.
#[test]
fn markup_between_stanzas_larger_than_a_stanza_is_fatal() {
    let big = "x".repeat(5000);
    let spaces = " ".repeat(5000);
    for tail in [
        format!("<![CDATA[{big}]]><message id='1'/>"),
        format!("</stream:stream{spaces}>"),
    ] {
        let doc = format!("{HEADER}<message id='0'/>{tail}");
        for step in [1usize, 4096, doc.len()] {
            let (frames, r) = run(doc.as_bytes(), step);
            assert_eq!(names(&frames), ["header:abc", "message:0"], "step {step}");
            assert_eq!(
                r.unwrap_err().condition(),
                "policy-violation",
                "step {step}"
            );
        }
    }
}

/// White space before the stream header counts against its limit.
#[test]
fn the_header_limit_counts_white_space_before_it() {
    let doc = format!("{}{HEADER}", " ".repeat(MAX_HEADER + 1));
    for step in [1usize, 4096, doc.len()] {
        let (_, r) = run(doc.as_bytes(), step);
        assert_eq!(r, Err(FrameError::HeaderTooLarge), "step {step}");
    }
}

#[test]
fn depth_violations_resynchronise_even_on_a_self_closing_tag() {
    for inner in ["<b/>", "<b></b>", "<b x='/>'/>", "<b>t</b>"] {
        // The message is depth 1, so the inner element is the first past 32.
        let deep = format!("{}{inner}{}", "<a>".repeat(31), "</a>".repeat(31));
        let doc = format!("{HEADER}<message id='1'>{deep}</message><message id='2'/>");
        for step in [1usize, 5, 4096] {
            let (frames, r) = run(doc.as_bytes(), step);
            r.unwrap();
            assert_eq!(
                names(&frames),
                ["header:abc", "skipped:1", "message:2"],
                "{inner} step {step}"
            );
        }
    }
}

#[test]
fn fatal_inputs_name_their_condition() {
    for (input, cond) in [
        ("<message><!-- c --></message>", "restricted-xml"),
        ("<?pi x?>", "restricted-xml"),
        ("<message>&foo;</message>", "restricted-xml"),
        ("<message></iq>", "not-well-formed"),
        ("<message a='1' a='2'/>", "not-well-formed"),
    ] {
        let doc = format!("{HEADER}{input}");
        let (_, r) = run(doc.as_bytes(), WHOLE);
        assert_eq!(r.unwrap_err().condition(), cond, "{input}");
    }
    let (_, r) = run(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x/>", WHOLE);
    assert_eq!(r.unwrap_err().condition(), "restricted-xml");
    let mut bad = HEADER.as_bytes().to_vec();
    bad.extend_from_slice(b"<message><body>\xff</body></message>");
    let (_, r) = run(&bad, WHOLE);
    assert_eq!(r.unwrap_err().condition(), "not-well-formed");
}

#[test]
fn namespace_declarations_are_counted_exactly() {
    // An attribute value that only mentions xmlns is no declaration.
    let doc = format!(
        "{HEADER}<message id='1'><x{} a='xmlns xmlns'/></message><message id='2'><x{}/></message>",
        declarations(16),
        declarations(17)
    );
    let (frames, r) = run(doc.as_bytes(), WHOLE);
    r.unwrap();
    assert_eq!(names(&frames), ["header:abc", "message:1", "skipped:2"]);
}

/// What the record of a stanza holds grows with the stanza's bytes
/// (at most 14 times them, for text split by empty elements), never
/// with how often it names a long namespace.
#[test]
fn a_stanza_record_is_bounded_by_its_bytes() {
    let uri = format!("urn:{}", "n".repeat(4000));
    for body in [
        "<p:a/>".repeat(2000),
        "<p:a p:b='' xml:lang=''/>".repeat(500),
        "x<a/>".repeat(2000),
        "<a b='' c='' d=''/>".repeat(500),
        "&amp;".repeat(2000),
    ] {
        let stanza = format!("<message xmlns:p='{uri}' id='1'>{body}</message>");
        let doc = format!("{HEADER}{stanza}");
        let (frames, r) = run_with(&Limits::default(), doc.as_bytes(), WHOLE);
        r.unwrap();
        let Some(Frame::Stanza(tree)) = frames.get(1) else {
            panic!("{frames:?}")
        };
        assert!(
            tree.weight() <= 14 * stanza.len(),
            "{} for {} bytes: {}",
            tree.weight(),
            stanza.len(),
            &body[..20]
        );
    }
}
