//! Reading script replies without panicking on anything the server sends.

use curlyq_core::BackendError;
use redis::Value;

use crate::error::invalid;

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) => "a bulk string",
        Value::Array(_) => "an array",
        Value::SimpleString(_) => "a status",
        Value::Okay => "OK",
        Value::Map(_) => "a map",
        Value::Set(_) => "a set",
        Value::Double(_) => "a double",
        Value::Boolean(_) => "a boolean",
        Value::ServerError(_) => "an error",
        _ => "an unexpected value",
    }
}

/// An integer reply (RESP3 doubles and booleans of integral value are accepted).
pub(crate) fn int(op: &str, value: &Value) -> Result<i64, BackendError> {
    match value {
        Value::Int(n) => Ok(*n),
        Value::Boolean(b) => Ok(i64::from(*b)),
        Value::BulkString(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("{op}: expected an integer, got a string"))),
        other => Err(invalid(format!(
            "{op}: expected an integer, got {}",
            describe(other)
        ))),
    }
}

/// A non-negative count.
pub(crate) fn count(op: &str, value: &Value) -> Result<usize, BackendError> {
    let n = int(op, value)?;
    usize::try_from(n).map_err(|_| invalid(format!("{op}: negative count {n}")))
}

/// The elements of an array reply.
pub(crate) fn array<'a>(op: &str, value: &'a Value) -> Result<&'a [Value], BackendError> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        other => Err(invalid(format!(
            "{op}: expected an array, got {}",
            describe(other)
        ))),
    }
}

/// An array of 0/1 flags, of exactly `expected` elements.
pub(crate) fn flags(op: &str, value: &Value, expected: usize) -> Result<Vec<bool>, BackendError> {
    let items = array(op, value)?;
    if items.len() != expected {
        return Err(invalid(format!(
            "{op}: expected {expected} results, got {}",
            items.len()
        )));
    }
    items
        .iter()
        .map(|item| match int(op, item)? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(invalid(format!("{op}: expected 0 or 1, got {n}"))),
        })
        .collect()
}

/// Bytes of a string reply, `None` for nil (or RESP3 false).
pub(crate) fn optional_bytes(op: &str, value: &Value) -> Result<Option<Vec<u8>>, BackendError> {
    match value {
        Value::Nil | Value::Boolean(false) => Ok(None),
        Value::BulkString(bytes) => Ok(Some(bytes.clone())),
        Value::SimpleString(s) => Ok(Some(s.clone().into_bytes())),
        Value::VerbatimString { text, .. } => Ok(Some(text.clone().into_bytes())),
        other => Err(invalid(format!(
            "{op}: expected a string or nil, got {}",
            describe(other)
        ))),
    }
}

/// A float sent as a string (a sorted-set score), `None` for nil.
pub(crate) fn optional_score(op: &str, value: &Value) -> Result<Option<f64>, BackendError> {
    if let Value::Double(d) = value {
        return Ok(Some(*d));
    }
    match optional_bytes(op, value)? {
        None => Ok(None),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map(Some)
            .ok_or_else(|| invalid(format!("{op}: a score that is not a number"))),
    }
}
