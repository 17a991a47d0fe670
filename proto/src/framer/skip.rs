//! The raw scanner that finds the end of a stanza without parsing it:
//! tags, quotes and CDATA, nothing checked.

/// Raw scanner that finds the end of a stanza without parsing it.
#[derive(Debug, Clone)]
pub(super) struct Skip {
    /// Open elements of the skipped stanza.
    depth: usize,
    state: Scan,
    /// Last non-space byte inside a tag (to spot `/>`).
    last: u8,
    /// Bytes matched of a terminator (`]]>`, `-->`, `?>`).
    matched: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scan {
    Text,
    Lt,
    Tag { closing: bool, quote: u8 },
    Bang,
    Until(&'static [u8]),
}

impl Skip {
    pub(super) fn new(depth: usize) -> Self {
        Skip {
            depth,
            state: Scan::Text,
            last: 0,
            matched: 0,
        }
    }

    /// Scan `data`; `Some(n)` when the stanza ended after `n` bytes.
    pub(super) fn scan(&mut self, data: &[u8]) -> Option<usize> {
        for (i, &b) in data.iter().enumerate() {
            match self.state {
                Scan::Text => {
                    if b == b'<' {
                        self.state = Scan::Lt;
                    }
                }
                Scan::Lt => {
                    self.state = match b {
                        b'/' => Scan::Tag {
                            closing: true,
                            quote: 0,
                        },
                        b'!' => Scan::Bang,
                        b'?' => Scan::Until(b"?>"),
                        _ => Scan::Tag {
                            closing: false,
                            quote: 0,
                        },
                    };
                    self.last = b;
                }
                Scan::Bang => {
                    self.state = match b {
                        b'[' => Scan::Until(b"]]>"),
                        b'-' => Scan::Until(b"-->"),
                        _ => Scan::Until(b">"),
                    };
                    self.matched = 0;
                }
                Scan::Until(end) => {
                    if b == end[self.matched] {
                        self.matched += 1;
                        if self.matched == end.len() {
                            self.state = Scan::Text;
                            self.matched = 0;
                        }
                    } else if end[..self.matched].iter().all(|&c| c == b) {
                        // `]]]>` and `--->`: a repeated first byte keeps
                        // what matched (only these terminators repeat one).
                    } else {
                        self.matched = usize::from(b == end[0]);
                    }
                }
                Scan::Tag { closing, quote } => {
                    if quote != 0 {
                        if b == quote {
                            self.state = Scan::Tag { closing, quote: 0 };
                            self.last = b;
                        }
                    } else if b == b'\'' || b == b'"' {
                        self.state = Scan::Tag { closing, quote: b };
                    } else if b == b'>' {
                        self.state = Scan::Text;
                        if closing {
                            self.depth = self.depth.saturating_sub(1);
                            if self.depth == 0 {
                                return Some(i + 1);
                            }
                        } else if self.last == b'/' {
                            if self.depth == 0 {
                                return Some(i + 1);
                            }
                        } else {
                            self.depth += 1;
                        }
                    } else if !b.is_ascii_whitespace() {
                        self.last = b;
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_scanner_handles_quotes_cdata_and_self_closing() {
        let mut s = Skip::new(1);
        let data = b"<a x='>' y=\"</z>\"/><![CDATA[</m>]]><b>t</b></m>rest";
        assert_eq!(s.scan(data), Some(data.len() - 4));
        let mut s = Skip::new(0);
        assert_eq!(s.scan(b"  <m a='1'/>x"), Some(12));
        // A section whose content ends in `]` still ends at its `]]>`.
        for (data, end) in [
            (&b"<m><![CDATA[x]]]></m>r"[..], 21),
            (b"<m><![CDATA[]]]]]]></m>r", 23),
            (b"<m><!-- x ---></m>r", 18),
        ] {
            let mut s = Skip::new(0);
            assert_eq!(s.scan(data), Some(end), "{}", String::from_utf8_lossy(data));
        }
    }
}
