//! The guard around every route: authorization, read-only, the CSRF checks of every
//! request that is not a GET or HEAD, and the security headers of every response.
//!
//! CSRF is refused twice over: the request must come from the dashboard's own origin
//! (`Origin` equal to the `Host` the request was sent to, or, from a browser that sends
//! no `Origin`, `Sec-Fetch-Site: same-origin` or `none`), and it must carry the token of
//! its `curlyq_csrf` cookie in its `_csrf` form field (double submit: a page of another
//! site can neither read the cookie nor set it, `SameSite=Strict` keeps it off
//! cross-site requests, and the comparison is in constant time).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use rand::Rng;

use crate::auth::constant_time_eq;
use crate::links::{queue_of_path, Links};
use crate::{render, Access, Dashboard};

/// The cookie that holds the CSRF token.
pub(crate) const CSRF_COOKIE: &str = "curlyq_csrf";

/// The form field that repeats it.
pub(crate) const CSRF_FIELD: &str = "_csrf";

/// The longest form body a POST may have (the dashboard's forms are a few fields).
const MAX_FORM: usize = 16 * 1024;

/// The Content-Security-Policy of every response: the page's own script and style
/// sheet only, no inline script or style, no framing, forms only to the dashboard.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// What the guard found out about a request, for the handlers.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    /// The hook's answer (ReadWrite without a hook).
    pub(crate) access: Access,
    /// The CSRF token that forms of the response must carry.
    pub(crate) token: String,
}

/// A fresh CSRF token: 32 random bytes from the thread's CSPRNG, as hex.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` has the shape of a token this dashboard makes (64 hex digits).
fn well_formed(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The well-formed CSRF token of the request's cookies, if any.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == CSRF_COOKIE && well_formed(value))
        .map(|(_, value)| value.to_owned())
}

pub(crate) async fn guard(
    State(dashboard): State<Arc<Dashboard>>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let access = match &dashboard.authorize {
        Some(hook) => match hook(&parts) {
            Ok(access) => access,
            Err(refusal) => return secure(refusal),
        },
        None => Access::ReadWrite,
    };
    let cookie = cookie_token(&parts.headers);
    let token = cookie.clone().unwrap_or_else(new_token);
    parts.extensions.insert(Verdict {
        access,
        token: token.clone(),
    });
    let request = if parts.method == Method::GET || parts.method == Method::HEAD {
        Request::from_parts(parts, body)
    } else {
        match check_unsafe(&dashboard, access, &parts, cookie.as_deref(), body).await {
            Ok(body) => Request::from_parts(parts, body),
            Err(refusal) => return secure(refusal),
        }
    };
    let mut response = next.run(request).await;
    if cookie.is_none() {
        let value = format!("{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    secure(response)
}

/// The checks of a request that may change something; on success, the body to hand on.
async fn check_unsafe(
    dashboard: &Dashboard,
    access: Access,
    parts: &Parts,
    cookie: Option<&str>,
    body: Body,
) -> Result<Body, Response> {
    let links = Links::of(parts);
    let forbidden = |why: &str| render::refusal(&links, StatusCode::FORBIDDEN, why);
    if dashboard.read_only || access == Access::ReadOnly {
        return Err(forbidden(
            "This dashboard is read-only for you: nothing can be changed.",
        ));
    }
    if let Some(queue) = queue_of_path(parts.uri.path()) {
        if dashboard.read_only_queues.contains(&queue) {
            return Err(forbidden(
                "This queue is read-only: nothing in it can be changed.",
            ));
        }
    }
    if !same_origin(dashboard, &parts.headers) {
        return Err(forbidden(
            "The request did not come from this dashboard's own pages (its Origin does not \
             match the server), so it was refused.",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        render::refusal(
            &links,
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form sent is too large.",
        )
    })?;
    let field = form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == CSRF_FIELD)
        .map(|(_, value)| value.into_owned());
    let valid = match (cookie, field) {
        (Some(cookie), Some(field)) => constant_time_eq(cookie.as_bytes(), field.as_bytes()),
        _ => false,
    };
    if !valid {
        return Err(forbidden(
            "The form's security token is missing or out of date. Reload the page and try \
             again.",
        ));
    }
    Ok(Body::from(bytes))
}

/// Whether the request comes from the dashboard's own origin.
fn same_origin(dashboard: &Dashboard, headers: &HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match origin {
        Some(origin) => {
            let origin = origin.trim_end_matches('/').to_ascii_lowercase();
            if dashboard.allowed_origins.contains(&origin) {
                return true;
            }
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_ascii_lowercase);
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            matches!((authority, host), (Some(a), Some(h)) if !a.is_empty() && a == h)
        }
        None => matches!(
            headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
            Some("same-origin") | Some("none")
        ),
    }
}

/// Adds the security headers to a response (pages get `Cache-Control: no-store`
/// unless they set their own).
pub(crate) fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn tokens_are_fresh_and_well_formed() {
        let (a, b) = (new_token(), new_token());
        assert!(well_formed(&a) && well_formed(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let t = "ab".repeat(32);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=1; {CSRF_COOKIE}={t}; b=2")).unwrap(),
        );
        assert_eq!(cookie_token(&h), Some(t));
        let h = headers(&[("cookie", "curlyq_csrf=short")]);
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn origins_must_match_the_host() {
        let d = Dashboard::new(Arc::new(curlyq_core::MemoryBackend::new()));
        let ok = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(same_origin(&d, &ok));
        let evil = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert!(!same_origin(&d, &evil));
        let null = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert!(!same_origin(&d, &null));
        let fetch = headers(&[("host", "h"), ("sec-fetch-site", "same-origin")]);
        assert!(same_origin(&d, &fetch));
        let cross = headers(&[("host", "h"), ("sec-fetch-site", "cross-site")]);
        assert!(!same_origin(&d, &cross));
        assert!(!same_origin(&d, &headers(&[("host", "h")])));
        let proxied = d.allow_origin("https://ops.example.com/");
        let via = headers(&[
            ("host", "10.0.0.1:80"),
            ("origin", "https://ops.example.com"),
        ]);
        assert!(same_origin(&proxied, &via));
    }
}
