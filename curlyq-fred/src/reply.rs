//! Reading fred's [`Value`]s without panicking on anything the server sends, and
//! converting them into the neutral [`Reply`] the shared parsers read.

use curlyq_core::BackendError;
use curlyq_lua::calls::Reply;
use fred::types::Value;

use crate::error::invalid;

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Boolean(_) => "a boolean",
        Value::Integer(_) => "an integer",
        Value::Double(_) => "a double",
        Value::String(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Null => "nil",
        Value::Queued => "QUEUED",
        Value::Map(_) => "a map",
        Value::Array(_) => "an array",
    }
}

/// An integer (also from a numeric string or a boolean).
pub(crate) fn int(op: &str, value: &Value) -> Result<i64, BackendError> {
    match value {
        Value::Integer(n) => Ok(*n),
        Value::Boolean(b) => Ok(i64::from(*b)),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| invalid(format!("{op}: expected an integer, got a string"))),
        other => Err(invalid(format!(
            "{op}: expected an integer, got {}",
            kind(other)
        ))),
    }
}

/// The elements of an array.
pub(crate) fn array<'a>(op: &str, value: &'a Value) -> Result<&'a [Value], BackendError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(invalid(format!(
            "{op}: expected an array, got {}",
            kind(other)
        ))),
    }
}

/// The bytes of a string, `None` for nil.
pub(crate) fn bytes(op: &str, value: &Value) -> Result<Option<Vec<u8>>, BackendError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.as_bytes().to_vec())),
        Value::Bytes(b) => Ok(Some(b.to_vec())),
        // A Lua string of digits can come back as an integer in some client modes.
        Value::Integer(n) => Ok(Some(n.to_string().into_bytes())),
        other => Err(invalid(format!(
            "{op}: expected a string, got {}",
            kind(other)
        ))),
    }
}

/// A text string (IDs, consumer names): invalid UTF-8 is replaced, never refused.
pub(crate) fn text(op: &str, value: &Value) -> Result<String, BackendError> {
    let raw = bytes(op, value)?.ok_or_else(|| invalid(format!("{op}: an unexpected nil")))?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// A score sent as a string, `None` for nil.
pub(crate) fn score(op: &str, value: &Value) -> Result<Option<f64>, BackendError> {
    if let Value::Double(d) = value {
        return Ok(Some(*d));
    }
    match bytes(op, value)? {
        None => Ok(None),
        Some(raw) => std::str::from_utf8(&raw)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map(Some)
            .ok_or_else(|| invalid(format!("{op}: a score that is not a number"))),
    }
}

/// Pairs of (text, score) from a `WITHSCORES` reply (flat in RESP2, nested in RESP3).
pub(crate) fn scored(op: &str, value: &Value) -> Result<Vec<(String, f64)>, BackendError> {
    let items = array(op, value)?;
    let mut out = Vec::new();
    if items.iter().all(|item| matches!(item, Value::Array(_))) && !items.is_empty() {
        for item in items {
            match array(op, item)? {
                [member, score] => out.push((text(op, member)?, need_score(op, score)?)),
                _ => return Err(invalid(format!("{op}: a malformed scored member"))),
            }
        }
        return Ok(out);
    }
    if items.len() % 2 != 0 {
        return Err(invalid(format!("{op}: an odd number of elements")));
    }
    for pair in items.chunks_exact(2) {
        out.push((text(op, &pair[0])?, need_score(op, &pair[1])?));
    }
    Ok(out)
}

fn need_score(op: &str, value: &Value) -> Result<f64, BackendError> {
    score(op, value)?.ok_or_else(|| invalid(format!("{op}: a nil score")))
}

/// Field/value pairs of a hash reply (flat in RESP2, a map in RESP3), values as bytes.
pub(crate) fn hash(op: &str, value: &Value) -> Result<Vec<(String, Vec<u8>)>, BackendError> {
    let mut out = Vec::new();
    match value {
        Value::Map(map) => {
            for (field, v) in map.iter() {
                let field = String::from_utf8_lossy(field.as_bytes()).into_owned();
                let v = bytes(op, v)?.ok_or_else(|| invalid(format!("{op}: a nil value")))?;
                out.push((field, v));
            }
        }
        other => {
            let items = array(op, other)?;
            if items.len() % 2 != 0 {
                return Err(invalid(format!("{op}: an odd number of elements")));
            }
            for pair in items.chunks_exact(2) {
                let v =
                    bytes(op, &pair[1])?.ok_or_else(|| invalid(format!("{op}: a nil value")))?;
                out.push((text(op, &pair[0])?, v));
            }
        }
    }
    Ok(out)
}

/// The elements of an array (or RESP3 set) as text.
pub(crate) fn texts(op: &str, value: &Value) -> Result<Vec<String>, BackendError> {
    array(op, value)?.iter().map(|v| text(op, v)).collect()
}

/// `value` as a [`Reply`]; kinds no script answers become [`Reply::Other`].
pub(crate) fn to_reply(value: Value) -> Reply {
    match value {
        Value::Null => Reply::Nil,
        Value::Integer(n) => Reply::Int(n),
        Value::String(s) => Reply::Bulk(s.as_bytes().to_vec()),
        Value::Bytes(b) => Reply::Bulk(b.to_vec()),
        Value::Array(items) => Reply::Array(items.into_iter().map(to_reply).collect()),
        Value::Double(d) => Reply::Double(d),
        Value::Boolean(b) => Reply::Bool(b),
        other => Reply::Other(kind(&other)),
    }
}
