//! Reading the INI file into sections and keys, the way the 2014 tool's
//! `RawConfigParser` did: whole-line `#`/`;` comments, inline `;`/`#`
//! comments after whitespace, `=` or `:` between key and value, no quoting,
//! no escapes, case-insensitive names, the last duplicate wins. One
//! deliberate difference: no line continues another (neither an indented
//! line nor a trailing backslash), so a typo cannot pull the next line —
//! perhaps a password — into a value that an error message then shows.

use std::collections::BTreeMap;

/// Keys of one section, lower-cased, with their values.
pub type Keys = BTreeMap<String, String>;

/// The sections of a file, lower-cased; a section given without keys is
/// still present (an empty `[memcache]` selects memcached).
#[derive(Debug, Default, Clone)]
pub struct Document {
    /// Sections by lower-cased name.
    pub sections: BTreeMap<String, Keys>,
    /// Keys that appear before the first section header.
    pub stray_keys: Vec<String>,
}

/// A syntax error, with the 1-based line where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Line of the error.
    pub line: usize,
    /// What the parser expected.
    pub message: String,
}

/// Where an inline comment starts: `;` or `#` after whitespace.
fn inline_comment(value: &str) -> Option<usize> {
    value
        .char_indices()
        .find(|&(i, c)| (c == ';' || c == '#') && value[..i].ends_with(|p: char| p.is_whitespace()))
        .map(|(i, _)| i)
}

/// Parse `text` as INI. Each line stands alone: there is no continuation
/// of any kind, so an error always points at the one line that caused it,
/// and no message ever needs to show a value.
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    let mut doc = Document::default();
    let mut section: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let fail = |message: &str| SyntaxError {
            line: n + 1,
            message: message.to_owned(),
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some((name, after)) = rest.split_once(']') else {
                return Err(fail("expected ']' to close the section name"));
            };
            let after = after.trim_start();
            if !(after.is_empty() || after.starts_with(['#', ';'])) {
                return Err(fail("unexpected text after the section name"));
            }
            let name = name.trim().to_lowercase();
            if name.is_empty() {
                return Err(fail("expected a section name between '[' and ']'"));
            }
            doc.sections.entry(name.clone()).or_default();
            section = Some(name);
            continue;
        }
        let Some(at) = line.find(['=', ':']) else {
            return Err(fail(
                "expected 'key = value' (or a [section], or a comment)",
            ));
        };
        let key = line[..at].trim().to_lowercase();
        if key.is_empty() {
            return Err(fail("expected a key name before '=' or ':'"));
        }
        let mut value = &line[at + 1..];
        if let Some(c) = inline_comment(value) {
            value = &value[..c];
        }
        match &section {
            Some(name) => {
                doc.sections
                    .entry(name.clone())
                    .or_default()
                    .insert(key, value.trim().to_owned());
            }
            None => doc.stray_keys.push(key),
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_case_and_duplicates() {
        let doc = parse(
            "# whole line\n; whole line\n[Relay]\nJID = axr.example.org ; inline\n\
             port: 5347\t# inline after a tab\npassword = pa;ss#word\nport = 5348\n[memcache]\n",
        )
        .unwrap();
        let relay = &doc.sections["relay"];
        assert_eq!(relay["jid"], "axr.example.org");
        assert_eq!(relay["port"], "5348");
        assert_eq!(relay["password"], "pa;ss#word");
        assert!(doc.sections["memcache"].is_empty());
        assert!(doc.stray_keys.is_empty());
    }

    #[test]
    fn backslashes_and_quotes_are_kept() {
        let doc = parse("[hash]\nsecret = 'a\\b\"c'\n").unwrap();
        assert_eq!(doc.sections["hash"]["secret"], "'a\\b\"c'");
    }

    #[test]
    fn stray_keys_and_syntax_errors() {
        let doc = parse("early = 1\n[hash]\n").unwrap();
        assert_eq!(doc.stray_keys, vec!["early".to_owned()]);
        let e = parse("[hash]\nsecret = x\n[relay\nport = 1\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("']'"), "{}", e.message);
        assert_eq!(parse("; c\n[hash]\nsecret\n").unwrap_err().line, 3);
        assert_eq!(parse("[hash]\n= x\n").unwrap_err().line, 2);
        assert_eq!(parse("[]\n").unwrap_err().line, 1);
        assert_eq!(parse("[hash] junk\n").unwrap_err().line, 1);
        assert!(parse("[hash] ; comment\nsecret = x\n").is_ok());
    }

    #[test]
    fn a_trailing_backslash_does_not_join_lines() {
        let doc = parse("[relay]\njid = axr.example.org\\\npassword = p\n").unwrap();
        let relay = &doc.sections["relay"];
        assert_eq!(relay["jid"], "axr.example.org\\");
        assert_eq!(relay["password"], "p");
        // Nor does an indented line: it is a line of its own.
        let doc = parse("[relay]\njid = a.example\n  password = p\n").unwrap();
        assert_eq!(doc.sections["relay"]["password"], "p");
    }

    #[test]
    fn crlf_and_repeated_sections() {
        let doc = parse("[relay]\r\nport = 1\r\n[hash]\r\n[RELAY]\r\nserver = h\r\n").unwrap();
        assert_eq!(doc.sections["relay"]["port"], "1");
        assert_eq!(doc.sections["relay"]["server"], "h");
    }
}
