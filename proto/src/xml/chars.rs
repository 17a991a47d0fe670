//! Character classes of XML 1.0 (fifth edition) and the references XMPP
//! allows (RFC 6120 §11.1: the five predefined entities and character
//! references, nothing declared).

/// `Char` of XML 1.0 §2.2. Surrogates cannot occur in a `char`.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `NameStartChar` of XML 1.0 §2.3, without `:` (names are split at it first).
pub(crate) fn is_name_start(c: char) -> bool {
    match c {
        'a'..='z' | 'A'..='Z' | '_' => true,
        c if c.is_ascii() => false,
        '\u{C0}'..='\u{D6}'
        | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}'
        | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}'
        | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}'
        | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}' => true,
        _ => false,
    }
}

/// `NameChar` of XML 1.0 §2.3, without `:`.
pub(crate) fn is_name_char(c: char) -> bool {
    match c {
        'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' | '.' => true,
        c if c.is_ascii() => false,
        '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}' => true,
        c => is_name_start(c),
    }
}

/// Whether `s` is an `NCName` (a name without a colon).
pub(crate) fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

/// Whether `b` is XML white space (`S`).
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The character a reference stands for; `body` is what lies between `&`
/// and `;`. `None` for anything XMPP does not allow (declared entities) or
/// that is not a character.
pub(crate) fn reference(body: &str) -> Option<char> {
    let c = match body {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => {
            let num = body.strip_prefix('#')?;
            let (digits, radix) = match num.strip_prefix('x') {
                Some(hex) => (hex, 16),
                None => (num, 10),
            };
            // At most eight digits, as rxml and most parsers read them:
            // leading zeros are allowed, but not without end.
            if digits.is_empty()
                || digits.len() > 8
                || !digits.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return None;
            }
            let v = u32::from_str_radix(digits, radix).ok()?;
            char::from_u32(v).filter(|c| is_xml_char(*c))?
        }
    };
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_the_predefined_five_and_valid_characters() {
        for (body, c) in [
            ("lt", '<'),
            ("gt", '>'),
            ("amp", '&'),
            ("apos", '\''),
            ("quot", '"'),
            ("#65", 'A'),
            ("#x41", 'A'),
            ("#x0041", 'A'),
            ("#10", '\n'),
            ("#x10FFFF", '\u{10FFFF}'),
            ("#x0010FFFF", '\u{10FFFF}'),
            ("#00000065", 'A'),
        ] {
            assert_eq!(reference(body), Some(c), "{body}");
        }
        for body in [
            "",
            "#",
            "#x",
            "#0",
            "#x0",
            "#1",
            "#xD800",
            "#xFFFE",
            "#x110000",
            "#X41",
            "#-1",
            "#+1",
            "nbsp",
            "#99999999999",
            "# 1",
            "#xg",
            "#x000000041",
            "#000000065",
        ] {
            assert_eq!(reference(body), None, "{body}");
        }
    }

    #[test]
    fn name_classes_follow_the_fifth_edition() {
        assert!(is_ncname("message"));
        assert!(is_ncname("_a-b.c9"));
        assert!(is_ncname("é·\u{300}"));
        assert!(!is_ncname(""));
        assert!(!is_ncname("9a"));
        assert!(!is_ncname("-a"));
        assert!(!is_ncname("a:b"));
        assert!(!is_ncname("a b"));
        assert!(!is_ncname("\u{B7}a"));
        assert!(!is_ncname("a\u{D7}"));
    }
}
