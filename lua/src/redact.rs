//! Keeping passwords out of every message: [`Secrets`] scrubs them from text, and
//! [`RedisFailure`] is the scrubbed error both Redis backends report.

use std::fmt;
use std::sync::Arc;

/// A failure of a Redis client or server (connection refused, a timeout, an
/// authentication failure, a bad URL, a transient error reply such as `LOADING`),
/// carried as the source of `BackendError::Unavailable` or `BackendError::Other`.
///
/// Its message is the client's (or the server's), with every password of the connection
/// replaced by `***`.
///
/// ```
/// use curlyq_lua::Secrets;
///
/// let secrets = Secrets::new(["s3cret".to_owned()]);
/// let failure = secrets.failure("could not connect", "auth s3cret refused");
/// assert_eq!(failure.message(), "could not connect: auth *** refused");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisFailure {
    message: String,
}

impl RedisFailure {
    /// A failure with `message`, which must already be scrubbed (see
    /// [`Secrets::failure`]).
    pub fn new(message: impl Into<String>) -> Self {
        RedisFailure {
            message: message.into(),
        }
    }

    /// The scrubbed message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RedisFailure {}

/// The strings (passwords, raw and decoded) that must never appear in a message.
/// Cloning is cheap.
#[derive(Clone, Default)]
pub struct Secrets(Arc<Vec<String>>);

impl Secrets {
    /// The secrets in `list` (empty strings are ignored).
    pub fn new(list: impl IntoIterator<Item = String>) -> Self {
        let mut all: Vec<String> = list.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so that a secret containing another one is hidden whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Secrets(Arc::new(all))
    }

    /// These secrets and those of `more`.
    pub fn with(&self, more: impl IntoIterator<Item = String>) -> Self {
        Secrets::new(self.0.iter().cloned().chain(more))
    }

    /// `text` with every secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in self.0.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    /// A [`RedisFailure`] saying `context: err` (just `err` when `context` is empty),
    /// scrubbed.
    pub fn failure(&self, context: &str, err: impl fmt::Display) -> RedisFailure {
        let text = if context.is_empty() {
            err.to_string()
        } else {
            format!("{context}: {err}")
        };
        RedisFailure {
            message: self.scrub(&text),
        }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} hidden)", self.0.len())
    }
}

/// The user-info part of a URL (`user:password` in `redis://user:password@host`), found
/// without a full URL parser so that even a URL a client rejects can be scrubbed.
fn userinfo(url: &str) -> Option<(&str, usize)> {
    let (rest, start) = match url.find("://") {
        Some(at) => (&url[at + 3..], at + 3),
        None => (url, 0),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some((&rest[..at], start))
}

/// The password of a `redis://user:password@host` URL as written (still
/// percent-encoded); `None` when it has none.
///
/// ```
/// use curlyq_lua::url_password;
///
/// assert_eq!(url_password("redis://u:s3cret@host:1/0").as_deref(), Some("s3cret"));
/// assert_eq!(url_password("redis://host:6379/"), None);
/// ```
pub fn url_password(url: &str) -> Option<String> {
    let (info, _) = userinfo(url)?;
    let (_, password) = info.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

/// `url` for display, with everything that may be a password replaced by `***`: the
/// password, and a user-info without a colon (some clients read `redis://pw@host` as a
/// password).
///
/// ```
/// use curlyq_lua::redact_url;
///
/// assert_eq!(redact_url("redis://u:pw@h:1/2"), "redis://u:***@h:1/2");
/// assert_eq!(redact_url("redis://h:1/"), "redis://h:1/");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((info, start)) = userinfo(url) else {
        return url.to_owned();
    };
    if !url.contains("://") {
        return url.to_owned();
    }
    let user = info.split_once(':').map_or("", |(user, _)| user);
    format!("{}{user}:***{}", &url[..start], &url[start + info.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_password_of_a_url() {
        assert_eq!(
            url_password("redis://user:s3cret@host:1/0").as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            url_password("rediss://:p%40ss@host").as_deref(),
            Some("p%40ss")
        );
        assert_eq!(url_password("redis://host:6379/").as_deref(), None);
        assert_eq!(url_password("redis://user@host/").as_deref(), None);
        assert_eq!(url_password("redis://:@h/").as_deref(), None);
    }

    #[test]
    fn scrubs_every_secret_longest_first() {
        let secrets = Secrets::new(["abc".to_owned(), "abcdef".to_owned(), String::new()]);
        assert_eq!(secrets.scrub("x abcdef y abc"), "x *** y ***");
        let more = secrets.with(["zz".to_owned()]);
        assert_eq!(more.scrub("zz abc"), "*** ***");
        let r = Secrets::new(["ab".to_owned(), "abcd".to_owned(), String::new()]);
        assert_eq!(r.scrub("1 abcd 2 ab"), "1 *** 2 ***");
    }

    #[test]
    fn urls_are_redacted_for_display() {
        assert_eq!(redact_url("redis://127.0.0.1:1/"), "redis://127.0.0.1:1/");
        assert_eq!(redact_url("redis://:pw@h:1/2"), "redis://:***@h:1/2");
        assert_eq!(redact_url("rediss://u:p@ss@h/0"), "rediss://u:***@h/0");
        assert_eq!(redact_url("redis://pw@h"), "redis://:***@h");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
