//! The tool's one error type: a message that says what failed and why.

use std::fmt;

/// A failed step of the benchmark, with its cause folded into the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BenchError(String);

impl BenchError {
    /// An error with this message.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        BenchError(message.into())
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

/// The tool's result type.
pub(crate) type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Adds what was being done to any displayable error.
pub(crate) trait Context<T> {
    /// Wraps the error as `"<what>: <error>"`.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| BenchError(format!("{}: {e}", what())))
    }
}
