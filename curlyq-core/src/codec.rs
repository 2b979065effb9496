//! Typed jobs: how a value becomes a job's payload and back. [`Json`] (the default, and
//! what a Go producer's `json.Marshal` writes into `Data`) and [`MessagePack`] (feature
//! `msgpack`).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a value could not become a payload, or a payload a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} {type_name} as {codec}: {message}")]
pub struct CodecError {
    action: &'static str,
    type_name: &'static str,
    codec: &'static str,
    message: String,
}

impl CodecError {
    /// An encoding failure of a `T` (for codec implementations).
    pub fn encoding<T: ?Sized>(codec: &'static str, error: impl std::fmt::Display) -> Self {
        CodecError {
            action: "encode",
            type_name: std::any::type_name::<T>(),
            codec,
            message: error.to_string(),
        }
    }

    /// A decoding failure into a `T` (for codec implementations).
    pub fn decoding<T: ?Sized>(codec: &'static str, error: impl std::fmt::Display) -> Self {
        CodecError {
            action: "decode",
            type_name: std::any::type_name::<T>(),
            codec,
            message: error.to_string(),
        }
    }

    /// The Rust type that was encoded or decoded into.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The codec's message (serde's, for the codecs here).
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Turns values into payload bytes and back. Implement it for another format; the
/// consumer kills a job whose payload does not decode, with the error's message as the
/// dead reason.
///
/// ```
/// use curlyq_core::{Codec, Json};
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Email { to: String }
///
/// let bytes = Json.encode(&Email { to: "a@example.com".into() }).unwrap();
/// assert_eq!(bytes, br#"{"to":"a@example.com"}"#);
/// let back: Email = Json.decode(&bytes).unwrap();
/// assert_eq!(back.to, "a@example.com");
/// ```
pub trait Codec: Clone + Send + Sync + 'static {
    /// The format's name, for messages.
    const NAME: &'static str;

    /// The payload of `value`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError>;

    /// The value of `bytes`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// JSON through `serde_json`: the default codec, and the format Go services usually put
/// in a job's `Data` (`json.Marshal`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

impl Codec for Json {
    const NAME: &'static str = "JSON";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|e| CodecError::encoding::<T>(Self::NAME, e))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::decoding::<T>(Self::NAME, e))
    }
}

/// MessagePack through `rmp-serde`, structs as maps with field names (so that fields
/// can be added and reordered, and a Go `msgpack.Marshal` of a struct reads the same).
#[cfg(feature = "msgpack")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessagePack;

#[cfg(feature = "msgpack")]
impl Codec for MessagePack {
    const NAME: &'static str = "MessagePack";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        rmp_serde::to_vec_named(value).map_err(|e| CodecError::encoding::<T>(Self::NAME, e))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        rmp_serde::from_slice(bytes).map_err(|e| CodecError::decoding::<T>(Self::NAME, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Email {
        to: String,
        retries: u8,
    }

    #[test]
    fn json_round_trips_and_names_type_and_message_on_failure() {
        let email = Email {
            to: "a@example.com".into(),
            retries: 2,
        };
        let bytes = Json.encode(&email).unwrap();
        assert_eq!(Json.decode::<Email>(&bytes).unwrap(), email);
        let err = Json.decode::<Email>(br#"{"to":"x"}"#).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("cannot decode "), "{text}");
        assert!(
            text.contains("Email as JSON: missing field `retries`"),
            "{text}"
        );
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn messagepack_round_trips_with_field_names() {
        let email = Email {
            to: "a@example.com".into(),
            retries: 2,
        };
        let bytes = MessagePack.encode(&email).unwrap();
        // A map of 2 (0x82) whose first key is the string "to".
        assert_eq!(&bytes[..4], &[0x82, 0xa2, b't', b'o']);
        assert_eq!(MessagePack.decode::<Email>(&bytes).unwrap(), email);
        assert!(MessagePack.decode::<Email>(b"\x01").is_err());
    }
}
