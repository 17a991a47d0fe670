//! Checked raw text to the characters it stands for (XML 1.0 §2.11, §3.3.3,
//! §4.6): references replaced, CR LF and lone CR read as LF, and in
//! attribute values every white-space character read as a space.

use super::chars::reference;

/// Appends the character data `raw` (checked by the tokenizer) means.
/// A CR at the end of `raw` is read as a line end: the tokenizer never
/// ends a piece of text between CR and LF.
pub(crate) fn push_text(raw: &str, out: &mut String) {
    push(raw, out, false);
}

/// Appends the value an attribute's raw value (checked) means.
pub(crate) fn push_attr_value(raw: &str, out: &mut String) {
    push(raw, out, true);
}

/// Appends a CDATA section's content: line ends only.
pub(crate) fn push_cdata(raw: &str, out: &mut String) {
    let mut lines = raw.split('\r');
    out.push_str(lines.next().unwrap_or_default());
    for line in lines {
        out.push('\n');
        out.push_str(line.strip_prefix('\n').unwrap_or(line));
    }
}

fn push(raw: &str, out: &mut String, attr: bool) {
    let special = |b: u8| b == b'&' || b == b'\r' || (attr && (b == b'\n' || b == b'\t'));
    let bytes = raw.as_bytes();
    let mut from = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !special(b) {
            i += 1;
            continue;
        }
        out.push_str(&raw[from..i]);
        i += 1;
        match b {
            b'&' => {
                let len = raw[i..].find(';').unwrap_or(raw.len() - i);
                // The tokenizer let only valid references through.
                if let Some(c) = reference(&raw[i..i + len]) {
                    out.push(c);
                }
                i += len + 1;
            }
            b'\r' => {
                if bytes.get(i) == Some(&b'\n') {
                    i += 1;
                }
                out.push(if attr { ' ' } else { '\n' });
            }
            _ => out.push(' '),
        }
        from = i.min(raw.len());
    }
    out.push_str(&raw[from.min(raw.len())..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(raw: &str) -> String {
        let mut s = String::new();
        push_text(raw, &mut s);
        s
    }

    fn attr(raw: &str) -> String {
        let mut s = String::new();
        push_attr_value(raw, &mut s);
        s
    }

    #[test]
    fn text_reads_references_and_line_ends() {
        assert_eq!(text("plain"), "plain");
        assert_eq!(text("a &amp; b&lt;&#x41;&#66;"), "a & b<AB");
        assert_eq!(text("1\r\n2\r3\n\r"), "1\n2\n3\n\n");
        assert_eq!(text("&#13;\t"), "\r\t");
        assert_eq!(text(""), "");
        let mut s = String::new();
        push_cdata("a&amp;\r\nb\rc\n", &mut s);
        assert_eq!(s, "a&amp;\nb\nc\n");
    }

    #[test]
    fn attribute_values_read_white_space_as_spaces() {
        assert_eq!(attr("a\tb\nc\r\nd\re"), "a b c d e");
        assert_eq!(attr("&#10;&#9;&#13;&quot;&apos;"), "\n\t\r\"'");
    }
}
