//! HTTP Basic authentication as an [`authorize`](crate::Dashboard::authorize) hook, and
//! the constant-time comparison that it and the CSRF check use.

use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::Access;

/// An [`authorize`](crate::Dashboard::authorize) hook for HTTP Basic authentication with
/// one user: a request with these credentials gets [`Access::ReadWrite`]; any other is
/// answered `401 Unauthorized` with `WWW-Authenticate: Basic realm="curlyq"` (browsers
/// then ask for a user name and password).
///
/// The credentials are compared in constant time. Basic authentication sends the
/// password with every request, readable by anyone on the path: serve the dashboard
/// over TLS (or on loopback only).
///
/// ```
/// use std::sync::Arc;
/// let dashboard = curlyq_web::Dashboard::new(Arc::new(curlyq_core::MemoryBackend::new()))
///     .authorize(curlyq_web::basic_auth("ops", std::env::var("DASHBOARD_PASSWORD").unwrap_or_default()));
/// # drop(dashboard);
/// ```
pub fn basic_auth(
    user: impl Into<String>,
    password: impl Into<String>,
) -> impl Fn(&Parts) -> Result<Access, Response> + Clone + Send + Sync + 'static {
    let credentials = format!("{}:{}", user.into(), password.into());
    let expected = base64(credentials.as_bytes());
    move |parts: &Parts| {
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| basic_token(v.as_bytes()));
        match given {
            Some(token) if constant_time_eq(token, expected.as_bytes()) => Ok(Access::ReadWrite),
            _ => Err(unauthorized()),
        }
    }
}

/// The credentials part of an `Authorization: Basic <credentials>` value (the scheme is
/// case-insensitive, spaces around the token are allowed).
fn basic_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// The 401 answer that makes a browser ask for credentials.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"curlyq\", charset=\"UTF-8\""),
            ),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
        ],
        "401 Unauthorized: this dashboard needs a user name and password.\n",
    )
        .into_response()
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only (never
/// on where they first differ).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    // Lengths that differ make the answer false without an early return.
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Standard base64 with padding (RFC 4648 §4), as browsers encode Basic credentials.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let digits = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, d) in digits.iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[*d as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn equality_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        assert_eq!(basic_token(b"Basic abc"), Some(&b"abc"[..]));
        assert_eq!(basic_token(b"  bAsIc   abc "), Some(&b"abc"[..]));
        assert_eq!(basic_token(b"Bearer abc"), None);
        assert_eq!(basic_token(b"Basic"), None);
    }
}
