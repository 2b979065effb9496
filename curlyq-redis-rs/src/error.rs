//! Mapping `redis` errors and error replies to [`BackendError`], with secrets removed.

use std::fmt;
use std::sync::Arc;

use curlyq_core::BackendError;
use redis::{ErrorKind, RedisError, ServerError, ServerErrorKind};

/// A failure of the Redis client (connection refused, timeout, authentication failure,
/// a bad URL...), carried as the source of [`BackendError::Unavailable`] or
/// [`BackendError::Other`].
///
/// Its message is the client's, with any password of the connection replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisFailure {
    message: String,
}

impl RedisFailure {
    /// The (scrubbed) message.
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

/// The secrets (passwords) that must never appear in an error message.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Arc<Vec<String>>);

impl Secrets {
    pub(crate) fn new(list: impl IntoIterator<Item = String>) -> Self {
        let mut all: Vec<String> = list.into_iter().filter(|s| !s.is_empty()).collect();
        // Replace longer secrets first, so that one containing another is fully hidden.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Secrets(Arc::new(all))
    }

    /// The message with every secret replaced by `***`.
    pub(crate) fn scrub(&self, message: &str) -> String {
        let mut out = message.to_owned();
        for secret in self.0.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    pub(crate) fn failure(&self, context: &str, err: &RedisError) -> RedisFailure {
        let message = if context.is_empty() {
            err.to_string()
        } else {
            format!("{context}: {err}")
        };
        RedisFailure {
            message: self.scrub(&message),
        }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} hidden)", self.0.len())
    }
}

/// The password part of a `redis://user:password@host` URL, as written (still
/// percent-encoded), found without a full URL parser so that even a URL the client
/// rejects can be scrubbed.
pub(crate) fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

/// Error codes of replies that mean "the server cannot serve this now" rather than "the
/// operation is refused".
const TRANSIENT_CODES: &[&str] = &[
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "READONLY",
];

/// The text of an error reply as Redis sent it (`CODE detail`).
pub(crate) fn reply_text(err: &ServerError) -> String {
    match err.details() {
        Some(detail) => format!("{} {detail}", err.code()),
        None => err.code().to_owned(),
    }
}

/// Maps an error reply (not `NOSCRIPT` or `NOTREG`, which callers handle) to a
/// [`BackendError`].
pub(crate) fn from_reply(secrets: &Secrets, err: &ServerError) -> BackendError {
    let text = secrets.scrub(&reply_text(err));
    if TRANSIENT_CODES.contains(&err.code()) {
        BackendError::Unavailable(Box::new(RedisFailure { message: text }))
    } else {
        BackendError::Rejected(text)
    }
}

/// Maps an error of the client (the request did not produce a reply we could use).
pub(crate) fn from_redis(secrets: &Secrets, err: &RedisError) -> BackendError {
    if err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
    {
        return BackendError::Unavailable(Box::new(secrets.failure("", err)));
    }
    match err.kind() {
        ErrorKind::Io
        | ErrorKind::AuthenticationFailed
        | ErrorKind::Client
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly,
        ) => BackendError::Unavailable(Box::new(secrets.failure("", err))),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            BackendError::InvalidReply(secrets.failure("", err).message)
        }
        ErrorKind::Server(_) | ErrorKind::Extension => {
            BackendError::Rejected(secrets.failure("", err).message)
        }
        _ => BackendError::Other(Box::new(secrets.failure("", err))),
    }
}

pub(crate) fn invalid(what: impl Into<String>) -> BackendError {
    BackendError::InvalidReply(what.into())
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
    }

    #[test]
    fn scrubs_every_secret() {
        let secrets = Secrets::new(["abc".to_owned(), "abcdef".to_owned(), String::new()]);
        assert_eq!(secrets.scrub("x abcdef y abc"), "x *** y ***");
    }
}
