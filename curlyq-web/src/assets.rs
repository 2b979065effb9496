//! The dashboard's one script and one style sheet, embedded in the binary and served
//! under names that carry a hash of their content, so that they can be cached for a
//! year and a new version is fetched at once.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The script: refreshes the overview's live part, asks before a delete.
const SCRIPT: &str = include_str!("assets/app.js");

/// The style sheet.
const STYLE: &str = include_str!("assets/app.css");

/// 64-bit FNV-1a of `bytes`, computed at compile time (a cache-busting name, not a
/// security measure).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

const SCRIPT_HASH: u64 = fnv1a(SCRIPT.as_bytes());
const STYLE_HASH: u64 = fnv1a(STYLE.as_bytes());

/// Where the script is served, relative to the dashboard's root.
pub(crate) fn script_path() -> String {
    format!("/assets/app-{SCRIPT_HASH:016x}.js")
}

/// Where the style sheet is served, relative to the dashboard's root.
pub(crate) fn style_path() -> String {
    format!("/assets/app-{STYLE_HASH:016x}.css")
}

/// A year, immutable: the name changes with the content.
const LONG_CACHE: &str = "public, max-age=31536000, immutable";

pub(crate) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, LONG_CACHE),
        ],
        SCRIPT,
    )
        .into_response()
}

pub(crate) async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, LONG_CACHE),
        ],
        STYLE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_content() {
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert!(script_path().starts_with("/assets/app-") && script_path().ends_with(".js"));
        assert!(style_path().ends_with(".css"));
    }
}
