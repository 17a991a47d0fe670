//! The documentation's configuration snippets, which tests hold against
//! what runs.

/// The fenced block after `marker` (a line such as `<!-- name -->`) in
/// `doc`, without its fences; panics naming `what` (the document) if
/// there is none.
pub fn fenced_block(doc: &str, marker: &str, what: &str) -> String {
    let at = doc
        .find(marker)
        .unwrap_or_else(|| panic!("{what} has no {marker}"));
    let rest = &doc[at + marker.len()..];
    let open = rest
        .find("```")
        .unwrap_or_else(|| panic!("{what}: no fenced block after {marker}"));
    let body = &rest[open..];
    let first = body.find('\n').expect("fence line");
    let end = body[first..]
        .find("\n```")
        .unwrap_or_else(|| panic!("{what}: the block after {marker} is not closed"));
    body[first + 1..first + end + 1].to_string()
}
