//! Turning fred errors into [`BackendError`]s, with passwords removed from every message.

use std::fmt;
use std::sync::Arc;

use curlyq_core::BackendError;
use fred::error::{Error as FredError, ErrorKind};

/// A failure of the fred client (connection refused, timeout, authentication, a bad
/// URL...), carried as the source of [`BackendError::Unavailable`] or
/// [`BackendError::Other`].
///
/// Its message is fred's, with every password of the connection replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FredFailure {
    message: String,
}

impl FredFailure {
    pub(crate) fn new(message: String) -> Self {
        FredFailure { message }
    }

    /// The scrubbed message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FredFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FredFailure {}

/// Strings that must never be shown (the connection's passwords, raw and decoded).
#[derive(Clone, Default)]
pub(crate) struct Redactor(Arc<Vec<String>>);

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} hidden)", self.0.len())
    }
}

impl Redactor {
    pub(crate) fn new<I: IntoIterator<Item = String>>(secrets: I) -> Self {
        let mut list: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first: a secret that contains another one is hidden whole.
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
        list.dedup();
        Redactor(Arc::new(list))
    }

    /// `text` with each secret replaced by `***`.
    pub(crate) fn clean(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |acc, secret| {
            acc.replace(secret.as_str(), "***")
        })
    }

    /// A [`FredFailure`] from fred's error, prefixed with `context` when not empty.
    pub(crate) fn failure(&self, context: &str, err: &FredError) -> FredFailure {
        let text = if context.is_empty() {
            err.to_string()
        } else {
            format!("{context}: {err}")
        };
        FredFailure {
            message: self.clean(&text),
        }
    }

    pub(crate) fn unavailable(&self, context: &str, err: &FredError) -> BackendError {
        BackendError::Unavailable(Box::new(self.failure(context, err)))
    }
}

/// The password of a `redis://user:password@host` URL as written (still percent-encoded),
/// found by hand so that even a URL fred refuses can be scrubbed.
pub(crate) fn password_in_url(url: &str) -> Option<String> {
    let after_scheme = match url.find("://") {
        Some(at) => &url[at + 3..],
        None => url,
    };
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or(after_scheme);
    let userinfo = &authority[..authority.rfind('@')?];
    let password = &userinfo[userinfo.find(':')? + 1..];
    if password.is_empty() {
        None
    } else {
        Some(password.to_owned())
    }
}

/// Error codes that mean "the server cannot serve this now" rather than "refused".
const TRANSIENT: [&str; 6] = [
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "READONLY",
];

/// The first word of an error reply (`NOSCRIPT`, `WRONGTYPE`...).
pub(crate) fn code(err: &FredError) -> &str {
    err.details().split_whitespace().next().unwrap_or("")
}

/// Whether fred's error carries an error reply of the server: those start with an
/// upper-case code (`ERR`, `WRONGTYPE`, `NOSCRIPT`...), fred's own messages do not.
fn is_reply(err: &FredError) -> bool {
    let code = code(err);
    !code.is_empty()
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Maps an error reply of the server (`CODE detail`) that callers did not handle.
pub(crate) fn from_reply(redactor: &Redactor, err: &FredError) -> BackendError {
    let text = redactor.clean(err.details());
    if TRANSIENT.contains(&code(err)) {
        BackendError::Unavailable(Box::new(FredFailure { message: text }))
    } else {
        BackendError::Rejected(text)
    }
}

/// Maps any fred error: client-side failures by kind, error replies by their code.
///
/// fred gives error replies the kinds `Unknown`, `InvalidArgument`, `InvalidCommand`,
/// `Auth`, `Cluster` or `Config` with the reply's text as details; the client's own
/// failures have the other kinds.
pub(crate) fn from_fred(redactor: &Redactor, err: &FredError) -> BackendError {
    match err.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Routing
        | ErrorKind::Backpressure
        | ErrorKind::Auth
        | ErrorKind::Cluster
        | ErrorKind::Sentinel => redactor.unavailable("", err),
        ErrorKind::Protocol | ErrorKind::Parse | ErrorKind::NotFound => {
            BackendError::InvalidReply(redactor.failure("", err).message)
        }
        ErrorKind::Unknown | ErrorKind::InvalidArgument | ErrorKind::InvalidCommand
            if is_reply(err) =>
        {
            from_reply(redactor, err)
        }
        // The client's own failures of these kinds: "Failed to route command." while
        // the connection is down, and the like.
        ErrorKind::Unknown => redactor.unavailable("", err),
        _ => BackendError::Other(Box::new(redactor.failure("", err))),
    }
}

pub(crate) fn invalid(what: impl Into<String>) -> BackendError {
    BackendError::InvalidReply(what.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_passwords_in_urls() {
        assert_eq!(password_in_url("redis://u:pw@h:1/0").as_deref(), Some("pw"));
        assert_eq!(
            password_in_url("rediss://:p%40ss@h").as_deref(),
            Some("p%40ss")
        );
        assert_eq!(password_in_url("redis://h:6379/").as_deref(), None);
        assert_eq!(password_in_url("redis://u@h/").as_deref(), None);
        assert_eq!(password_in_url("redis://:@h/").as_deref(), None);
    }

    #[test]
    fn hides_longer_secrets_whole() {
        let r = Redactor::new(["ab".to_owned(), "abcd".to_owned(), String::new()]);
        assert_eq!(r.clean("1 abcd 2 ab"), "1 *** 2 ***");
    }

    #[test]
    fn sorts_error_replies() {
        let r = Redactor::default();
        let wrong = FredError::new(ErrorKind::InvalidArgument, "WRONGTYPE curlyq: x");
        assert!(
            matches!(from_fred(&r, &wrong), BackendError::Rejected(m) if m.starts_with("WRONGTYPE"))
        );
        let loading = FredError::new(ErrorKind::Unknown, "LOADING dataset");
        assert!(matches!(
            from_fred(&r, &loading),
            BackendError::Unavailable(_)
        ));
        let io = FredError::new(ErrorKind::IO, "connection refused");
        assert!(matches!(from_fred(&r, &io), BackendError::Unavailable(_)));
        let route = FredError::new(ErrorKind::Unknown, "Failed to route command.");
        assert!(matches!(
            from_fred(&r, &route),
            BackendError::Unavailable(_)
        ));
        let arg = FredError::new(ErrorKind::InvalidArgument, "Invalid argument type: Map");
        assert!(matches!(from_fred(&r, &arg), BackendError::Other(_)));
        let parse = FredError::new(ErrorKind::Parse, "bad");
        assert!(matches!(
            from_fred(&r, &parse),
            BackendError::InvalidReply(_)
        ));
    }
}
