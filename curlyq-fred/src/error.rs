//! Turning fred's errors and values into [`BackendError`]s and [`Reply`]s, with
//! passwords removed from every message.

use curlyq_core::BackendError;
use curlyq_lua::calls::Reply;
use curlyq_lua::{error_reply, Secrets};
use fred::error::{Error as FredError, ErrorKind};
use fred::types::Value;

/// The first word of an error reply (`NOSCRIPT`, `WRONGTYPE`...).
fn code(err: &FredError) -> &str {
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

/// The error reply fred's error carries, if it is one the backend reads (`NOSCRIPT` and
/// `NOTREG` of any kind; others of the kinds fred gives error replies).
fn as_error_reply(err: &FredError) -> Option<Reply> {
    let code = code(err);
    let reply_kind = matches!(
        err.kind(),
        ErrorKind::Unknown | ErrorKind::InvalidArgument | ErrorKind::InvalidCommand
    );
    (code == "NOSCRIPT" || code == "NOTREG" || (reply_kind && is_reply(err))).then(|| {
        let (code, message) = split_reply(err);
        Reply::Error {
            code: code.to_owned(),
            message: message.to_owned(),
        }
    })
}

/// An error reply's text split into its code and the rest (`WRONGTYPE`, `curlyq: ...`).
fn split_reply(err: &FredError) -> (&str, &str) {
    let code = code(err);
    let rest = err.details().trim_start()[code.len()..].trim_start();
    (code, rest)
}

/// Maps any fred error: client-side failures by kind, error replies by their code.
///
/// fred gives error replies the kinds `Unknown`, `InvalidArgument`, `InvalidCommand`,
/// `Auth`, `Cluster` or `Config` with the reply's text as details; the client's own
/// failures have the other kinds.
pub(crate) fn from_fred(secrets: &Secrets, err: &FredError) -> BackendError {
    let unavailable = || BackendError::Unavailable(Box::new(secrets.failure("", err)));
    match err.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Routing
        | ErrorKind::Backpressure
        | ErrorKind::Auth
        | ErrorKind::Cluster
        | ErrorKind::Sentinel => unavailable(),
        ErrorKind::Protocol | ErrorKind::Parse | ErrorKind::NotFound => {
            BackendError::InvalidReply(secrets.failure("", err).message().to_owned())
        }
        ErrorKind::Unknown | ErrorKind::InvalidArgument | ErrorKind::InvalidCommand
            if is_reply(err) =>
        {
            let (code, rest) = split_reply(err);
            error_reply(secrets, code, rest)
        }
        // The client's own failures of these kinds: "Failed to route command." while
        // the connection is down, and the like.
        ErrorKind::Unknown => unavailable(),
        _ => BackendError::Other(Box::new(secrets.failure("", err))),
    }
}

/// The reply of one command: a value, an error reply in its place, or a failure.
pub(crate) fn to_reply(
    secrets: &Secrets,
    answer: Result<Value, FredError>,
) -> Result<Reply, BackendError> {
    match answer {
        Ok(value) => Ok(value_reply(value)),
        Err(e) => as_error_reply(&e).ok_or_else(|| from_fred(secrets, &e)),
    }
}

/// A fred value as a [`Reply`].
pub(crate) fn value_reply(value: Value) -> Reply {
    match value {
        Value::Null => Reply::Nil,
        Value::Integer(n) => Reply::Int(n),
        Value::String(s) => Reply::Bulk(s.as_bytes().to_vec()),
        Value::Bytes(b) => Reply::Bulk(b.to_vec()),
        Value::Array(items) => Reply::Array(items.into_iter().map(value_reply).collect()),
        Value::Map(map) => Reply::Map(
            map.inner()
                .into_iter()
                .map(|(k, v)| (Reply::Bulk(k.as_bytes().to_vec()), value_reply(v)))
                .collect(),
        ),
        Value::Double(d) => Reply::Double(d),
        Value::Boolean(b) => Reply::Bool(b),
        Value::Queued => Reply::Other("QUEUED"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_error_replies() {
        let r = Secrets::default();
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

    #[test]
    fn error_replies_come_back_in_their_place() {
        let secrets = Secrets::default();
        let missing = FredError::new(ErrorKind::Unknown, "NOSCRIPT No matching script.");
        assert_eq!(
            to_reply(&secrets, Err(missing)).ok(),
            Some(Reply::Error {
                code: "NOSCRIPT".into(),
                message: "No matching script.".into()
            })
        );
        let io = FredError::new(ErrorKind::IO, "broken pipe");
        assert!(matches!(
            to_reply(&secrets, Err(io)),
            Err(BackendError::Unavailable(_))
        ));
    }
}
