//! Mapping the `redis` crate's own errors to [`BackendError`], with secrets removed.
//! (Error *replies* are read by the shared backend: see [`curlyq_lua::error_reply`].)

use curlyq_core::BackendError;
use curlyq_lua::Secrets;
use redis::{ErrorKind, RedisError, ServerErrorKind};

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
            BackendError::InvalidReply(secrets.failure("", err).message().to_owned())
        }
        ErrorKind::Server(_) | ErrorKind::Extension => {
            BackendError::Rejected(secrets.failure("", err).message().to_owned())
        }
        _ => BackendError::Other(Box::new(secrets.failure("", err))),
    }
}
