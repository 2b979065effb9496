//! Formatting helpers: times, durations, payloads and plain aligned tables.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

/// A time in both forms the JSON output carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Timestamp {
    /// Unix seconds (fractions allowed).
    pub(crate) unix: f64,
    /// RFC 3339 in UTC with milliseconds; `null` for a time before 1970 or after 9999.
    pub(crate) rfc3339: Option<String>,
}

impl Timestamp {
    pub(crate) fn new(unix: f64) -> Self {
        Timestamp {
            unix,
            rfc3339: rfc3339(unix),
        }
    }
}

/// The RFC 3339 form of a Unix time, when it has one (humantime only formats times from
/// 1970 to 9999).
pub(crate) fn rfc3339(unix: f64) -> Option<String> {
    if !(0.0..253_402_300_800.0).contains(&unix) {
        return None;
    }
    let when = UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(unix).ok()?)?;
    Some(humantime::format_rfc3339_millis(when).to_string())
}

/// A time for a table: RFC 3339 to the second, or the raw number.
pub(crate) fn short_time(unix: f64) -> String {
    if !(0.0..253_402_300_800.0).contains(&unix) {
        return format!("{unix}");
    }
    match Duration::try_from_secs_f64(unix)
        .ok()
        .and_then(|d| UNIX_EPOCH.checked_add(d))
    {
        Some(when) => humantime::format_rfc3339_seconds(when).to_string(),
        None => format!("{unix}"),
    }
}

/// A duration for a table, to a sensible precision: `850ms`, `12.3s`, `4m 5s`, `2h 3m`,
/// `3d 4h`; negative ones with a minus sign.
pub(crate) fn human_seconds(secs: f64) -> String {
    if !secs.is_finite() {
        return "?".into();
    }
    if secs < 0.0 {
        return format!("-{}", human_seconds(-secs));
    }
    if secs < 1.0 {
        return format!("{}ms", (secs * 1000.0).round() as u64);
    }
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let s = secs as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {sec}s")
    }
}

/// Bytes as the JSON output shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Bytes {
    /// The bytes are UTF-8.
    Text(String),
    /// They are not: lower-case hex.
    Hex(String),
}

impl Bytes {
    /// Text when the bytes are UTF-8 (a character cut at the end by a byte limit is
    /// dropped), hex otherwise.
    pub(crate) fn of(bytes: &[u8]) -> Self {
        match utf8_prefix(bytes) {
            Some(text) => Bytes::Text(text.to_owned()),
            None => Bytes::Hex(hex::encode(bytes)),
        }
    }

    /// The text, or the hex with a `hex:` prefix, on one line (control characters
    /// escaped), at most `width` characters.
    pub(crate) fn one_line(&self, width: usize) -> String {
        let s = match self {
            Bytes::Text(t) => t
                .chars()
                .map(|c| match c {
                    '\n' => "\\n".to_owned(),
                    '\r' => "\\r".to_owned(),
                    '\t' => "\\t".to_owned(),
                    c if c.is_control() => c.escape_unicode().to_string(),
                    c => c.to_string(),
                })
                .collect(),
            Bytes::Hex(h) => format!("hex:{h}"),
        };
        cut(&s, width)
    }
}

/// `bytes` as UTF-8, allowing up to 3 bytes of a character cut at the end.
pub(crate) fn utf8_prefix(bytes: &[u8]) -> Option<&str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(e) if e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4 => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    }
}

/// At most `width` characters of `s`, with `…` at the end when cut.
pub(crate) fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A plain table: a header row and rows, columns separated by two spaces, each as wide
/// as its widest cell; no colour, no borders.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = width - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `Some(x)` as text, `None` as `-`.
pub(crate) fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_have_both_forms() {
        let t = Timestamp::new(1_700_000_000.5);
        assert_eq!(t.rfc3339.as_deref(), Some("2023-11-14T22:13:20.500Z"));
        assert_eq!(short_time(1_700_000_000.5), "2023-11-14T22:13:20Z");
        assert_eq!(Timestamp::new(-1.0).rfc3339, None);
        assert_eq!(Timestamp::new(f64::NAN).rfc3339, None);
        assert_eq!(Timestamp::new(1e300).rfc3339, None);
        assert_eq!(short_time(-3.0), "-3");
        let json = serde_json::to_value(Timestamp::new(60.0)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"unix": 60.0, "rfc3339": "1970-01-01T00:01:00.000Z"})
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_seconds(0.25), "250ms");
        assert_eq!(human_seconds(12.34), "12.3s");
        assert_eq!(human_seconds(245.0), "4m 5s");
        assert_eq!(human_seconds(7380.0), "2h 3m");
        assert_eq!(human_seconds(3.0 * 86_400.0 + 4.0 * 3600.0), "3d 4h");
        assert_eq!(human_seconds(-90.0), "-1m 30s");
    }

    #[test]
    fn bytes_are_text_or_hex() {
        assert_eq!(Bytes::of(b"hello"), Bytes::Text("hello".into()));
        assert_eq!(Bytes::of(b"\xff\x00"), Bytes::Hex("ff00".into()));
        // "é" is c3 a9: cut after c3, the text keeps what is whole.
        assert_eq!(Bytes::of(b"caf\xc3"), Bytes::Text("caf".into()));
        assert_eq!(
            serde_json::to_value(Bytes::of(b"hi")).unwrap(),
            serde_json::json!({"text": "hi"})
        );
        assert_eq!(
            serde_json::to_value(Bytes::of(b"\x80")).unwrap(),
            serde_json::json!({"hex": "80"})
        );
        assert_eq!(Bytes::of(b"a\nb").one_line(10), "a\\nb");
        assert_eq!(Bytes::of(br#"{"a":1}"#).one_line(10), r#"{"a":1}"#);
        assert_eq!(Bytes::of(b"abcdefghijk").one_line(5), "abcd…");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["ID", "STATE", "NOTE"]);
        t.row(vec!["a".into(), "active".into(), "".into()]);
        t.row(vec!["longer-id".into(), "dead".into(), "x".into()]);
        assert_eq!(
            t.render(),
            "ID         STATE   NOTE\na          active\nlonger-id  dead    x\n"
        );
    }
}
