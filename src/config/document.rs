//! Reading the INI file into sections and keys, the way the 2014 tool's
//! `RawConfigParser` did: whole-line `#`/`;` comments, inline `;`/`#`
//! comments after whitespace, `=` or `:` between key and value, no quoting,
//! no escapes, case-insensitive names, the last duplicate wins. rust-ini
//! does the parsing; a line ending in a backslash is refused first, because
//! rust-ini would join the next line to it (whatever its escape option
//! says), and a typo could then pull a password into a value that an error
//! message shows.

use std::collections::BTreeMap;

use ini::{Ini, ParseOption};

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

/// The first line that is neither blank, a comment, a section header nor
/// `key = value` (the parser would only notice it at the end of the file),
/// or that ends in a backslash.
fn check_lines(text: &str) -> Result<(), SyntaxError> {
    for (n, line) in text.lines().enumerate() {
        if line.ends_with('\\') {
            return Err(SyntaxError {
                line: n + 1,
                message: "a line may not end with a backslash (it would continue on the \
                          next line); put a space after it if the value ends with one"
                    .to_owned(),
            });
        }
        let line = line.trim();
        let fail = |message: &str| {
            Err(SyntaxError {
                line: n + 1,
                message: message.to_owned(),
            })
        };
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            if !line.contains(']') {
                return fail("expected ']' to close the section name");
            }
        } else if !line.contains(['=', ':']) {
            return fail("expected 'key = value' (or a [section], or a comment)");
        }
    }
    Ok(())
}

/// Parse `text` as INI.
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    check_lines(text)?;
    let options = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: false,
        enabled_preserve_key_leading_whitespace: false,
    };
    let ini = Ini::load_from_str_opt(text, options).map_err(|e| SyntaxError {
        line: e.line,
        message: e.msg.into_owned(),
    })?;
    let mut doc = Document::default();
    for (section, props) in ini.iter() {
        match section {
            Some(name) => {
                let keys = doc.sections.entry(name.trim().to_lowercase()).or_default();
                for (k, v) in props.iter() {
                    keys.insert(k.trim().to_lowercase(), v.trim().to_owned());
                }
            }
            None => doc
                .stray_keys
                .extend(props.iter().map(|(k, _)| k.trim().to_lowercase())),
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
    }

    #[test]
    fn a_trailing_backslash_is_refused_not_joined() {
        let text = "[relay]\njid = axr.example.org\\\npassword = S3cretComponentPassword\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(!e.message.contains("S3cret"), "{}", e.message);
        // With CRLF line ends too.
        let e = parse(&text.replace('\n', "\r\n")).unwrap_err();
        assert_eq!(e.line, 2);
        // A space after it keeps the backslash as part of the value.
        let doc = parse("[relay]\npassword = p\\ \nport = 1\n").unwrap();
        assert_eq!(doc.sections["relay"]["password"], "p\\");
        assert_eq!(doc.sections["relay"]["port"], "1");
    }

    #[test]
    fn crlf_and_repeated_sections() {
        let doc = parse("[relay]\r\nport = 1\r\n[hash]\r\n[RELAY]\r\nserver = h\r\n").unwrap();
        assert_eq!(doc.sections["relay"]["port"], "1");
        assert_eq!(doc.sections["relay"]["server"], "h");
    }
}
