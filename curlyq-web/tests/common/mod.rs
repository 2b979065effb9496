//! Helpers of the HTTP tests: requests through the router as a tower service, answers
//! read whole.

#![allow(dead_code, unreachable_pub)]

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use tower::ServiceExt;

/// The demo's seed time, and the clock of every dashboard under test.
pub const NOW: f64 = 1_750_000_000.0;

/// The `Host` every request is sent to.
pub const HOST: &str = "dash.test";

/// The `Origin` of the dashboard's own pages.
pub const ORIGIN: &str = "http://dash.test";

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The CSRF token of the `Set-Cookie` header.
    pub fn token(&self) -> String {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("curlyq_csrf="))
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
            .expect("the answer sets the CSRF cookie")
    }

    /// Asserts the status, showing the body when it differs.
    pub fn expect(self, status: StatusCode) -> Self {
        assert_eq!(self.status, status, "body: {}", self.text());
        self
    }
}

/// Sends `request` to `router`.
pub async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router never fails");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the body is readable")
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// `GET path`, with headers.
pub async fn get_with(router: &Router, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::builder().uri(path).header(header::HOST, HOST);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(router, request.body(Body::empty()).unwrap()).await
}

/// `GET path`.
pub async fn get(router: &Router, path: &str) -> Answer {
    get_with(router, path, &[]).await
}

/// A POST as a browser sends it from the dashboard's pages: `Origin`, the CSRF cookie
/// and the same token in the form.
pub struct Post<'a> {
    pub path: &'a str,
    pub fields: Vec<(&'a str, String)>,
    pub cookie: Option<String>,
    pub form_token: Option<String>,
    pub origin: Option<&'a str>,
    pub extra: Vec<(&'a str, &'a str)>,
}

impl<'a> Post<'a> {
    /// A valid POST of `fields` with `token`.
    pub fn new(path: &'a str, token: &str, fields: &[(&'a str, &str)]) -> Self {
        Post {
            path,
            fields: fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            cookie: Some(token.to_owned()),
            form_token: Some(token.to_owned()),
            origin: Some(ORIGIN),
            extra: Vec::new(),
        }
    }

    pub async fn send(self, router: &Router) -> Answer {
        let mut body = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.fields {
            body.append_pair(k, v);
        }
        if let Some(t) = &self.form_token {
            body.append_pair("_csrf", t);
        }
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.path)
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = &self.cookie {
            request = request.header(header::COOKIE, format!("curlyq_csrf={c}"));
        }
        if let Some(o) = self.origin {
            request = request.header(header::ORIGIN, o);
        }
        for (name, value) in &self.extra {
            request = request.header(*name, *value);
        }
        send(router, request.body(Body::from(body.finish())).unwrap()).await
    }
}

/// A valid POST of "retry" for the demo's dead job, from the pages of queue `emails`.
pub async fn retry_dead_job(router: &Router, token: &str) -> Answer {
    Post::new(
        "/queues/emails/actions",
        token,
        &[("action", "retry"), ("id", curlyq_web::demo::DEAD_JOB)],
    )
    .send(router)
    .await
}

/// A token the dashboard handed out (from a GET of the overview).
pub async fn token(router: &Router) -> String {
    get(router, "/").await.token()
}

/// Whether the page offers any action (a POST form).
pub fn has_actions(page: &str) -> bool {
    page.contains("method=\"post\"")
}
