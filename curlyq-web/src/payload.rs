//! How a job page shows a payload: as pretty JSON when the whole of it is shown and
//! parses, else as text when it is UTF-8, else as a hex dump; never more than the
//! dashboard's limit of it.

/// What the page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum View {
    /// The payload is JSON, shown pretty-printed.
    Json(String),
    /// UTF-8 text (its first part when cut).
    Text(String),
    /// A hex dump of the first bytes: offset, 16 bytes in hex, the printable ASCII.
    Hex(String),
    /// No bytes.
    Empty,
}

/// A payload's view and how much of it the view covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shown {
    pub(crate) view: View,
    /// Bytes of the payload the view shows.
    pub(crate) shown: usize,
    /// The payload's length.
    pub(crate) total: usize,
}

impl Shown {
    /// Whether part of the payload is not shown.
    pub(crate) fn is_cut(&self) -> bool {
        self.shown < self.total
    }
}

/// How much a pretty-printed JSON may grow over its source before it is shown as the
/// text it is instead (deeply nested values indent a lot).
const PRETTY_GROWTH: usize = 4;

/// Bytes per line of a hex dump.
const HEX_LINE: usize = 16;

/// The view of `data` within `limit` bytes. Only the first `limit` bytes are looked at
/// (JSON is parsed only when the whole payload is within the limit); a hex dump shows
/// at most a quarter of the limit (each byte takes about four characters).
pub(crate) fn view(data: &[u8], limit: usize) -> Shown {
    view_head(&data[..data.len().min(limit)], data.len(), limit)
}

/// The view of a payload of `total` bytes of which `head` holds the first ones (all of
/// them when `head.len() == total`); only the first `limit` bytes of `head` are used.
pub(crate) fn view_head(head: &[u8], total: usize, limit: usize) -> Shown {
    if total == 0 {
        return Shown {
            view: View::Empty,
            shown: 0,
            total,
        };
    }
    let head = &head[..head.len().min(limit).min(total)];
    let whole = head.len() == total;
    if whole {
        if let Some(pretty) = pretty_json(head, total.saturating_mul(PRETTY_GROWTH).max(64)) {
            return Shown {
                view: View::Json(pretty),
                shown: total,
                total,
            };
        }
    }
    let text = if whole {
        std::str::from_utf8(head).ok()
    } else {
        utf8_prefix(head)
    };
    if let Some(text) = text.filter(|t| is_texty(t)) {
        return Shown {
            view: View::Text(text.to_owned()),
            shown: text.len(),
            total,
        };
    }
    let dumped = &head[..head.len().min((limit / 4).max(HEX_LINE))];
    Shown {
        view: View::Hex(hex_dump(dumped)),
        shown: dumped.len(),
        total,
    }
}

/// `bytes` re-indented with two spaces when they are one JSON value (checked by
/// serde_json), keeping the keys in their order and every number and string as
/// written; `None` when they are not JSON or the result would pass `max` bytes.
fn pretty_json(bytes: &[u8], max: usize) -> Option<String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).ok()?;
    let src = std::str::from_utf8(bytes).ok()?;
    let mut out = String::with_capacity(src.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // Just after `{` or `[`: the line break waits, in case the container is empty.
    let mut opened = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    for c in src.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        if opened {
            opened = false;
            if c == '}' || c == ']' {
                depth = depth.saturating_sub(1);
                out.push(c);
                continue;
            }
            newline(&mut out, depth);
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                depth += 1;
                opened = true;
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            other => out.push(other),
        }
        if out.len() > max {
            return None;
        }
    }
    Some(out)
}

/// The longest UTF-8 prefix of bytes that may have been cut in the middle of a
/// character: `None` when they hold an invalid sequence before the end (they are not
/// text), or when no character is whole.
pub(crate) fn utf8_prefix(bytes: &[u8]) -> Option<&str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Some(s),
        // An incomplete sequence at the very end: the cut went through a character.
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    }
}

/// Whether a string reads as text: no control characters but line breaks and tabs.
fn is_texty(s: &str) -> bool {
    s.chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

/// `00000010  68 65 6c 6c 6f ...  |hello...|` lines.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 + bytes.len() / HEX_LINE * 16);
    for (i, line) in bytes.chunks(HEX_LINE).enumerate() {
        out.push_str(&format!("{:08x} ", i * HEX_LINE));
        for j in 0..HEX_LINE {
            match line.get(j) {
                Some(b) => out.push_str(&format!(" {b:02x}")),
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        for b in line {
            out.push(if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_when_whole() {
        let shown = view(br#"{"to":"ada@example.com","n":[1,2]}"#, 1024);
        match &shown.view {
            View::Json(p) => assert!(p.contains("\n  \"to\": \"ada@example.com\"")),
            other => panic!("{other:?}"),
        }
        assert!(!shown.is_cut());
    }

    #[test]
    fn json_keeps_its_order_and_numbers() {
        let shown = view(
            br#" {"b": 1, "a": [ ], "c": {}, "big": 123456789012345678901234567890, "s": "x\"y,{"} "#,
            1024,
        );
        let expected = "{\n  \"b\": 1,\n  \"a\": [],\n  \"c\": {},\n  \"big\": \
                        123456789012345678901234567890,\n  \"s\": \"x\\\"y,{\"\n}";
        assert_eq!(shown.view, View::Json(expected.to_owned()));
        assert_eq!(
            view(b"[[1,2],[3]]", 64).view,
            View::Json("[\n  [\n    1,\n    2\n  ],\n  [\n    3\n  ]\n]".into())
        );
        assert_eq!(view(b"42", 64).view, View::Json("42".into()));
        assert!(matches!(view(b"{\"a\":}", 64).view, View::Text(_)));
    }

    #[test]
    fn a_cut_json_is_shown_as_text() {
        let big = format!("[{}1]", "1,".repeat(1000));
        let shown = view(big.as_bytes(), 100);
        assert_eq!(shown.view, View::Text(big[..100].to_owned()));
        assert!(shown.is_cut());
    }

    #[test]
    fn deeply_nested_json_is_not_blown_up() {
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let shown = view(deep.as_bytes(), 1 << 16);
        assert_eq!(shown.view, View::Text(deep.clone()));
    }

    #[test]
    fn text_cut_inside_a_character_keeps_whole_characters() {
        let text = "héllo".as_bytes();
        let shown = view(text, 2);
        assert_eq!(shown.view, View::Text("h".to_owned()));
        assert_eq!((shown.shown, shown.total), (1, 6));
    }

    #[test]
    fn binary_is_a_hex_dump() {
        let shown = view(&[0xff, 0x00, b'A', 0x10], 1024);
        assert_eq!(
            shown.view,
            View::Hex(format!(
                "00000000  ff 00 41 10{}  |..A.|\n",
                "   ".repeat(12)
            ))
        );
        let zeros = view(&[0u8; 5], 1024);
        assert!(matches!(zeros.view, View::Hex(_)));
        let big = view(&vec![0xfeu8; 100_000], 4096);
        assert_eq!(big.shown, 1024);
        assert!(big.is_cut());
        assert_eq!(view(b"", 10).view, View::Empty);
    }

    #[test]
    fn prefixes_reject_invalid_sequences() {
        assert_eq!(utf8_prefix(b"ab\xc3"), Some("ab"));
        assert_eq!(utf8_prefix(b"\xff"), None);
        assert_eq!(utf8_prefix(b"a\xffb"), None);
    }
}
