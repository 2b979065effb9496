//! The dashboard's URLs: the prefix it is mounted under, and links with their queue
//! names and job IDs percent-encoded.

use axum::extract::{NestedPath, OriginalUri};
use axum::http::request::Parts;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What stays as it is in a path segment or a query value: RFC 3986's unreserved
/// characters. Everything else, `/`, `?`, `#`, `%`, `{`, `}` and spaces included, is
/// percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// Percent-encodes `s` for a path segment or a query value. `.` is encoded too, so that
/// an ID such as `a.b` reads the same everywhere; the segments `.` and `..` still
/// cannot be used (browsers resolve `%2E` as a dot): see [`Links::job`].
pub(crate) fn encode(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Decodes one percent-encoded path segment; `None` when it is not UTF-8.
pub(crate) fn decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Whether `s` would be resolved away as a dot segment by a browser.
fn is_dot_segment(s: &str) -> bool {
    s == "." || s == ".."
}

/// The links of one request: where the dashboard is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Links {
    /// The mount prefix without a trailing `/` (`""` at the root, `/admin/queues`).
    base: String,
    /// The overview's URL (`/`, or the prefix itself: axum serves a router nested at
    /// `/admin` at `/admin`, not `/admin/`).
    home: String,
}

impl Links {
    /// The links of a request, from axum's [`NestedPath`] (or, without one, from the
    /// difference between the [`OriginalUri`] and the path the router saw).
    pub(crate) fn of(parts: &Parts) -> Links {
        let nested = parts
            .extensions
            .get::<NestedPath>()
            .map(|n| n.as_str().to_owned())
            .or_else(|| {
                let original = parts.extensions.get::<OriginalUri>()?.0.path().to_owned();
                let seen = parts.uri.path();
                if seen == "/" && !original.ends_with('/') {
                    return Some(original);
                }
                original.strip_suffix(seen).map(|prefix| prefix.to_owned())
            })
            .unwrap_or_default();
        Links::at(&nested)
    }

    /// The links of a dashboard mounted at `prefix` (`""` or `/` for the root).
    pub(crate) fn at(prefix: &str) -> Links {
        let base = prefix.trim_end_matches('/').to_owned();
        let home = if prefix.is_empty() || prefix.ends_with('/') {
            format!("{base}/")
        } else {
            base.clone()
        };
        Links { base, home }
    }

    pub(crate) fn home(&self) -> String {
        self.home.clone()
    }

    /// A path under the dashboard (`path` starts with `/`).
    pub(crate) fn path(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn fragment(&self) -> String {
        self.path("/fragments/overview")
    }

    pub(crate) fn queue(&self, queue: &str) -> String {
        self.path(&format!("/queues/{}", encode(queue)))
    }

    /// A queue's tab, at a page of its cursor (0: the first).
    pub(crate) fn tab(&self, queue: &str, state: &str, cursor: u64) -> String {
        let mut url = format!("{}?state={state}", self.queue(queue));
        if cursor != 0 {
            url.push_str(&format!("&cursor={cursor}"));
        }
        url
    }

    pub(crate) fn consumers(&self, queue: &str) -> String {
        format!("{}/consumers", self.queue(queue))
    }

    pub(crate) fn actions(&self, queue: &str) -> String {
        format!("{}/actions", self.queue(queue))
    }

    pub(crate) fn find(&self, queue: &str) -> String {
        format!("{}/find", self.queue(queue))
    }

    /// A job's page: `/queues/<queue>/jobs/<id>`, or, for the IDs `.` and `..` that a
    /// path cannot carry, the search by ID that renders the same page.
    pub(crate) fn job(&self, queue: &str, id: &str) -> String {
        if is_dot_segment(id) {
            format!("{}?id={}", self.find(queue), encode(id))
        } else {
            format!("{}/jobs/{}", self.queue(queue), encode(id))
        }
    }

    /// A job's payload download (as [`job`](Self::job), with a query form for dot IDs).
    pub(crate) fn payload(&self, queue: &str, id: &str) -> String {
        if is_dot_segment(id) {
            format!("{}/download?id={}", self.queue(queue), encode(id))
        } else {
            format!("{}/jobs/{}/payload", self.queue(queue), encode(id))
        }
    }
}

/// The queue a dashboard path is about (`/queues/<queue>` and below), decoded.
pub(crate) fn queue_of_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/queues/")?;
    let segment = rest.split('/').next()?;
    decode(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_ids_round_trip_through_a_segment() {
        for id in ["a/b c", "{emails}:42", "100%", "ü?#&=+", "a.b", "-_~"] {
            let encoded = encode(id);
            assert!(!encoded.contains('/') && !encoded.contains(' ') && !encoded.contains('{'));
            assert_eq!(decode(&encoded).as_deref(), Some(id));
        }
        assert_eq!(encode("{emails}"), "%7Bemails%7D");
    }

    #[test]
    fn links_carry_the_prefix() {
        let root = Links::at("");
        assert_eq!(root.home(), "/");
        assert_eq!(root.job("q", "a/b"), "/queues/q/jobs/a%2Fb");
        let nested = Links::at("/admin/queues");
        assert_eq!(nested.home(), "/admin/queues");
        assert_eq!(nested.queue("{q}"), "/admin/queues/queues/%7Bq%7D");
        assert_eq!(Links::at("/admin/").home(), "/admin/");
        assert_eq!(root.job("q", ".."), "/queues/q/find?id=%2E%2E");
        assert_eq!(root.tab("q", "dead", 0), "/queues/q?state=dead");
        assert_eq!(root.tab("q", "dead", 50), "/queues/q?state=dead&cursor=50");
    }

    #[test]
    fn the_queue_of_a_path_is_decoded() {
        assert_eq!(
            queue_of_path("/queues/%7Bq%7D/actions").as_deref(),
            Some("{q}")
        );
        assert_eq!(queue_of_path("/queues/q").as_deref(), Some("q"));
        assert_eq!(queue_of_path("/"), None);
    }
}
