//! The page layout and the small formatting helpers every page uses. All text goes
//! through maud, which escapes it.

use std::time::{Duration, UNIX_EPOCH};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use curlyq_core::BackendError;
use maud::{html, Markup, DOCTYPE};

use crate::assets;
use crate::links::Links;

/// A full page: the layout around `body`, with the CSRF token (for forms) known to
/// the caller.
pub(crate) fn page(links: &Links, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · curlyq" }
                // No request for /favicon.ico (a 404 in the console of every page).
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(links.path(&assets::style_path()));
                script src=(links.path(&assets::script_path())) defer {}
            }
            body {
                header.top {
                    a.brand href=(links.home()) { "curlyq" }
                    span.sub { "queues dashboard" }
                }
                main { (body) }
            }
        }
    }
}

/// An HTML response with `status`.
pub(crate) fn respond(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A page that only says why a request was refused or failed.
pub(crate) fn refusal(links: &Links, status: StatusCode, message: &str) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = html! {
        h1 { (title) }
        p.message { (message) }
        p { a href=(links.home()) { "Back to the overview" } }
    };
    respond(status, page(links, &title, body))
}

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    /// No such queue, job or page.
    #[error("{0}")]
    NotFound(String),
    /// A query or form value that makes no sense.
    #[error("{0}")]
    BadRequest(String),
    /// The action is not allowed here (read-only).
    #[error("{0}")]
    Forbidden(String),
    /// The queue store failed.
    #[error("the queue store failed: {0}")]
    Backend(#[from] BackendError),
}

impl PageError {
    /// The status that answers it: 503 when the store is unreachable, 502 when it
    /// answered with an error or nonsense.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::Backend(BackendError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Backend(_) => StatusCode::BAD_GATEWAY,
        }
    }

    pub(crate) fn respond(&self, links: &Links) -> Response {
        refusal(links, self.status(), &self.to_string())
    }
}

/// A time as ISO 8601 in UTC with milliseconds, or the raw number when it is out of the
/// years 1970 to 9999.
pub(crate) fn iso(unix: f64) -> String {
    if (0.0..253_402_300_800.0).contains(&unix) {
        if let Some(when) = Duration::try_from_secs_f64(unix)
            .ok()
            .and_then(|d| UNIX_EPOCH.checked_add(d))
        {
            return humantime::format_rfc3339_millis(when).to_string();
        }
    }
    format!("{unix} (Unix seconds)")
}

/// A duration in seconds, to a sensible precision: `850ms`, `12.3s`, `4m 5s`, `2h 3m`,
/// `3d 4h`.
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
        return format!("{:.1}s", secs);
    }
    let whole = secs as u64;
    let (d, h, m, s) = (
        whole / 86_400,
        whole / 3600 % 24,
        whole / 60 % 60,
        whole % 60,
    );
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {s}s")
    }
}

/// How far `at` is from `now`: `5m 3s ago`, `in 12.0s`.
pub(crate) fn relative(at: f64, now: f64) -> String {
    let diff = now - at;
    if diff >= 0.0 {
        format!("{} ago", human_seconds(diff))
    } else {
        format!("in {}", human_seconds(-diff))
    }
}

/// A time with its distance from now, in a `<time>` element.
pub(crate) fn time(at: f64, now: f64) -> Markup {
    let stamp = iso(at);
    html! {
        time datetime=(stamp) { (stamp) } " " span.muted { "(" (relative(at, now)) ")" }
    }
}

/// A byte count: `812 B`, `3.4 KiB`, `16.0 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f < KIB {
        format!("{n} B")
    } else if f < KIB * KIB {
        format!("{:.1} KiB", f / KIB)
    } else if f < KIB * KIB * KIB {
        format!("{:.1} MiB", f / KIB / KIB)
    } else {
        format!("{:.1} GiB", f / KIB / KIB / KIB)
    }
}

/// A short one-line view of a payload's first bytes: the text when they are UTF-8
/// (cut at `max` characters), else hex.
pub(crate) fn preview(data: &[u8], max: usize) -> String {
    match crate::payload::utf8_prefix(data) {
        Some(text) => {
            let one_line: String = text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(max)
                .collect();
            if text.chars().count() > max {
                format!("{one_line}…")
            } else {
                one_line
            }
        }
        None => {
            let hex: String = data
                .iter()
                .take(max / 2)
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("0x{hex}")
        }
    }
}

/// A text cut at `max` characters, with an ellipsis when cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}

/// The hidden field that carries the CSRF token in every form.
pub(crate) fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name=(crate::guard::CSRF_FIELD) value=(token); }
}

/// The message shown after an action, from its code in the redirect's query (a fixed
/// set: nothing of the query is shown as it is).
pub(crate) fn notice(code: Option<&str>, n: Option<u64>) -> Option<String> {
    let n = n.unwrap_or(0);
    let jobs = |n: u64| {
        if n == 1 {
            "1 job".to_owned()
        } else {
            format!("{n} jobs")
        }
    };
    Some(match code? {
        "retried" => format!("Retried: {} moved to the active list.", jobs(n)),
        "ran" => format!("Run now: {} moved to the active list.", jobs(n)),
        "deleted" => "The job was deleted.".to_owned(),
        "paused" => "The queue is paused: curlyq consumers take nothing from it.".to_owned(),
        "resumed" => "The queue is resumed.".to_owned(),
        "removed" => format!("The consumer was removed; {} requeued.", jobs(n)),
        "kept" => "The consumer was not removed: it heartbeat again, or is gone.".to_owned(),
        "skipped" => "Nothing was done: the job is no longer in that state.".to_owned(),
        "in-flight" => "The job was not deleted: a consumer holds it.".to_owned(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_8601_in_utc() {
        assert_eq!(iso(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_700_000_000.25), "2023-11-14T22:13:20.250Z");
        assert_eq!(iso(-1.0), "-1 (Unix seconds)");
        assert_eq!(iso(f64::NAN), "NaN (Unix seconds)");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_seconds(0.25), "250ms");
        assert_eq!(human_seconds(12.34), "12.3s");
        assert_eq!(human_seconds(245.0), "4m 5s");
        assert_eq!(human_seconds(7380.0), "2h 3m");
        assert_eq!(human_seconds(3.0 * 86_400.0 + 4.0 * 3600.0), "3d 4h");
        assert_eq!(relative(10.0, 20.0), "10.0s ago");
        assert_eq!(relative(30.0, 20.0), "in 10.0s");
        assert_eq!(human_seconds(f64::INFINITY), "?");
    }

    #[test]
    fn previews_are_text_or_hex() {
        assert_eq!(preview(b"hello\nworld", 20), "hello world");
        assert_eq!(preview(b"abcdef", 3), "abc…");
        assert_eq!(preview(&[0xff, 0x00, 0x01], 8), "0xff0001");
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(16 * 1024 * 1024), "16.0 MiB");
    }

    #[test]
    fn notices_come_from_a_fixed_set() {
        assert_eq!(
            notice(Some("retried"), Some(1)).unwrap(),
            "Retried: 1 job moved to the active list."
        );
        assert_eq!(notice(Some("<script>"), None), None);
        assert_eq!(notice(None, Some(3)), None);
    }
}
