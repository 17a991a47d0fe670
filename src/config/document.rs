//! Reading the INI file into sections and keys, the way the 2014 tool's
//! `RawConfigParser` did: whole-line `#`/`;` comments, inline `;`/`#`
//! comments after whitespace, `=` or `:` between key and value, no
//! escapes, case-insensitive names. rust-ini does the parsing; a first pass
//! over the lines refuses first what it would take silently:
//!
//! * a line ending in a backslash, because rust-ini would join the next
//!   line to it (whatever its escape option says), and a typo could then
//!   pull a password into a value that an error message shows;
//! * a repeated section or key, which would override the earlier one;
//! * a value in matching quotes, which would be taken with its quotes
//!   (Prosody's configuration quotes every string, and a quoted secret would
//!   silently change every pseudonym).
//!
//! A UTF-8 byte order mark at the start is skipped.

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

/// Why a file is not a usable INI document; lines are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxError {
    /// A line the parser cannot read.
    Line {
        /// Line of the error.
        line: usize,
        /// What the parser expected.
        message: String,
    },
    /// A section header given a second time.
    RepeatedSection {
        /// Section name, lower-cased.
        section: String,
        /// Line of the first header.
        first: usize,
        /// Line of the repeated one.
        line: usize,
    },
    /// A key given a second time in one section.
    RepeatedKey {
        /// Section name, lower-cased.
        section: String,
        /// Key name, lower-cased.
        key: String,
        /// Line of the first occurrence.
        first: usize,
        /// Line of the repeated one.
        line: usize,
    },
    /// A value between matching quotes.
    Quoted {
        /// Section name, lower-cased.
        section: String,
        /// Key name, lower-cased.
        key: String,
        /// Line of the value.
        line: usize,
    },
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyntaxError::Line { line, message } => write!(f, "line {line}: {message}"),
            SyntaxError::RepeatedSection {
                section,
                first,
                line,
            } => write!(
                f,
                "line {line}: [{section}] repeated (first at line {first}); merge the two \
                 sections into one"
            ),
            SyntaxError::RepeatedKey {
                section,
                key,
                first,
                line,
            } => write!(
                f,
                "line {line}: [{section}] {key}: repeated (first at line {first}); keep one \
                 of the two"
            ),
            SyntaxError::Quoted { section, key, line } => write!(
                f,
                "line {line}: [{section}] {key}: the value is in quotes, which would be part \
                 of it (values are taken as written); remove the quotes"
            ),
        }
    }
}

/// Where each section and key was first given, for the messages about
/// quotes.
type Lines = BTreeMap<(String, String), usize>;

/// The first line that is neither blank, a comment, a section header nor
/// `key = value` (the parser would only notice it at the end of the file),
/// that ends in a backslash, or that repeats a section or key.
fn check_lines(text: &str) -> Result<Lines, SyntaxError> {
    // Section headers by name (key ""), keys by (section, key).
    let mut seen = Lines::new();
    let mut section: Option<String> = None;
    // rust-ini ends a line at a lone `\r` too.
    let text = text.replace("\r\n", "\n");
    for (n, line) in text.split(['\n', '\r']).enumerate() {
        let number = n + 1;
        if line.ends_with('\\') {
            return Err(SyntaxError::Line {
                line: number,
                message: "a line may not end with a backslash (it would continue on the \
                          next line); put a space after it if the value ends with one"
                    .to_owned(),
            });
        }
        let line = line.trim();
        let fail = |message: &str| {
            Err(SyntaxError::Line {
                line: number,
                message: message.to_owned(),
            })
        };
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some((name, _)) = rest.split_once(']') else {
                return fail("expected ']' to close the section name");
            };
            let name = name.trim().to_lowercase();
            if let Some(&first) = seen.get(&(name.clone(), String::new())) {
                return Err(SyntaxError::RepeatedSection {
                    section: name,
                    first,
                    line: number,
                });
            }
            seen.insert((name.clone(), String::new()), number);
            section = Some(name);
        } else if let Some(i) = line.find(['=', ':']) {
            // Keys before the first section are only warned about.
            let Some(section) = &section else {
                continue;
            };
            let key = line[..i].trim().to_lowercase();
            if let Some(&first) = seen.get(&(section.clone(), key.clone())) {
                return Err(SyntaxError::RepeatedKey {
                    section: section.clone(),
                    key,
                    first,
                    line: number,
                });
            }
            seen.insert((section.clone(), key), number);
        } else {
            return fail("expected 'key = value' (or a [section], or a comment)");
        }
    }
    Ok(seen)
}

/// Whether `value` starts and ends with the same quote character.
fn is_quoted(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0]
}

/// Parse `text` as INI.
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = check_lines(text)?;
    let options = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: false,
        enabled_preserve_key_leading_whitespace: false,
    };
    let ini = Ini::load_from_str_opt(text, options).map_err(|e| SyntaxError::Line {
        line: e.line,
        message: e.msg.into_owned(),
    })?;
    let mut doc = Document::default();
    for (section, props) in ini.iter() {
        match section {
            Some(name) => {
                let name = name.trim().to_lowercase();
                let keys = doc.sections.entry(name.clone()).or_default();
                for (k, v) in props.iter() {
                    let key = k.trim().to_lowercase();
                    let value = v.trim();
                    if is_quoted(value) {
                        let line = lines
                            .get(&(name.clone(), key.clone()))
                            .copied()
                            .unwrap_or_default();
                        return Err(SyntaxError::Quoted {
                            section: name,
                            key,
                            line,
                        });
                    }
                    keys.insert(key, value.to_owned());
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
    fn comments_and_case() {
        let doc = parse(
            "# whole line\n; whole line\n[Relay]\nJID = axr.example.org ; inline\n\
             port: 5347\t# inline after a tab\npassword = pa;ss#word\n[memcache]\n",
        )
        .unwrap();
        let relay = &doc.sections["relay"];
        assert_eq!(relay["jid"], "axr.example.org");
        assert_eq!(relay["port"], "5347");
        assert_eq!(relay["password"], "pa;ss#word");
        assert!(doc.sections["memcache"].is_empty());
        assert!(doc.stray_keys.is_empty());
    }

    #[test]
    fn backslashes_and_unmatched_quotes_are_kept() {
        let doc = parse("[hash]\nsecret = 'a\\b\"c\nresource = \"\n").unwrap();
        assert_eq!(doc.sections["hash"]["secret"], "'a\\b\"c");
        assert_eq!(doc.sections["hash"]["resource"], "\"");
    }

    #[test]
    fn matching_quotes_are_refused_with_section_key_and_line() {
        for value in ["\"127.0.0.1\"", "'s3cret'", "\"\"", "\"x\" ; note"] {
            let e = parse(&format!("[relay]\njid = a\nServer = {value}\n")).unwrap_err();
            assert_eq!(
                e,
                SyntaxError::Quoted {
                    section: "relay".into(),
                    key: "server".into(),
                    line: 3
                }
            );
        }
        assert_eq!(
            parse("[hash]\nsecret = 's3cret'\n")
                .unwrap_err()
                .to_string(),
            "line 2: [hash] secret: the value is in quotes, which would be part of it \
             (values are taken as written); remove the quotes"
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let doc = parse("\u{feff}[relay]\nport = 1\n").unwrap();
        assert_eq!(doc.sections["relay"]["port"], "1");
    }

    #[test]
    fn repeated_sections_and_keys_name_both_lines() {
        let e = parse("[relay]\nport = 1\n\n; note\nPORT: 2\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 5: [relay] port: repeated (first at line 2); keep one of the two"
        );
        let e = parse("[relay]\r\nport = 1\r\n[hash]\r\n[ RELAY ]\r\nserver = h\r\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 4: [relay] repeated (first at line 1); merge the two sections into one"
        );
        // The same key in two sections is no repetition.
        let doc = parse("[local_storage]\nttl = 1\n[memcache]\nttl = 2\n").unwrap();
        assert_eq!(doc.sections["memcache"]["ttl"], "2");
    }

    #[test]
    fn stray_keys_and_syntax_errors() {
        let doc = parse("early = 1\n[hash]\n").unwrap();
        assert_eq!(doc.stray_keys, vec!["early".to_owned()]);
        let e = parse("[hash]\nsecret = x\n[relay\nport = 1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3: expected ']' to close the section name"
        );
        assert!(parse("; c\n[hash]\nsecret\n")
            .unwrap_err()
            .to_string()
            .starts_with("line 3: "));
    }

    #[test]
    fn a_trailing_backslash_is_refused_not_joined() {
        let text = "[relay]\njid = axr.example.org\\\npassword = S3cretComponentPassword\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(e.starts_with("line 2: a line may not end"), "{e}");
        assert!(!e.contains("S3cret"), "{e}");
        // With CRLF line ends too.
        let e = parse(&text.replace('\n', "\r\n")).unwrap_err().to_string();
        assert!(e.starts_with("line 2: "), "{e}");
        // A space after it keeps the backslash as part of the value.
        let doc = parse("[relay]\npassword = p\\ \nport = 1\n").unwrap();
        assert_eq!(doc.sections["relay"]["password"], "p\\");
        assert_eq!(doc.sections["relay"]["port"], "1");
    }
}
