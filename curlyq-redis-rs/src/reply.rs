//! Converting `redis` reply values into the neutral [`Reply`] the shared parsers read.

use curlyq_lua::calls::Reply;
use redis::Value;

/// `value` as a [`Reply`]; kinds no script answers become [`Reply::Other`].
pub(crate) fn to_reply(value: Value) -> Reply {
    match value {
        Value::Nil => Reply::Nil,
        Value::Int(n) => Reply::Int(n),
        Value::BulkString(bytes) => Reply::Bulk(bytes),
        Value::Array(items) | Value::Set(items) => {
            Reply::Array(items.into_iter().map(to_reply).collect())
        }
        Value::SimpleString(s) => Reply::Status(s),
        Value::Okay => Reply::Status("OK".to_owned()),
        Value::VerbatimString { text, .. } => Reply::Bulk(text.into_bytes()),
        Value::Double(d) => Reply::Double(d),
        Value::Boolean(b) => Reply::Bool(b),
        Value::ServerError(e) => Reply::Error {
            code: e.code().to_owned(),
            message: e.details().unwrap_or_default().to_owned(),
        },
        Value::Map(_) => Reply::Other("a map"),
        _ => Reply::Other("an unexpected value"),
    }
}
