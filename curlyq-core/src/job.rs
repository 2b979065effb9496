//! The job and its MessagePack encoding, wire compatible with Go CurlyQ.

use std::fmt;

use rmp::decode::{self, RmpRead};
use rmp::Marker;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{Codec, CodecError, Json};
use crate::error::DecodeError;

/// A unit of work: an ID, opaque bytes for the handler, and the count of failed runs.
///
/// [`Job::new`] gives the job a fresh UUIDv4 at once, before any push: a caller that
/// pushes the same job again after a timeout reuses its ID, and the second push reports
/// [`ProduceError::AlreadyExists`] instead of creating a second job. Set your own ID
/// with [`Job::with_id`] to deduplicate by a business key. A job with an empty ID gets
/// a UUIDv4 when pushed.
///
/// ```
/// use curlyq_core::Job;
///
/// let job = Job::new(b"send welcome mail to 42".to_vec()).with_id("welcome-42");
/// assert_eq!(job.id, "welcome-42");
/// assert_eq!(job.attempt, 0);
/// ```
///
/// [`ProduceError::AlreadyExists`]: crate::ProduceError::AlreadyExists
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Job {
    /// The job's ID, unique in its queue while the job exists. Empty means "make one".
    pub id: String,
    /// The payload, opaque to curlyq.
    pub data: Vec<u8>,
    /// How many runs of this job have ended in failure so far (0 for a new job).
    pub attempt: u32,
    /// When it last became ready to run, Unix milliseconds (see [`Job::ready_at`]).
    ready_at_ms: Option<i64>,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("data_len", &self.data.len())
            .field("attempt", &self.attempt)
            .field("ready_at_ms", &self.ready_at_ms)
            .finish()
    }
}

/// A fresh random (version 4) UUID as text. Its bytes come from `rand`'s thread-local
/// generator (a CSPRNG seeded from the OS) rather than one `getrandom` system call per
/// ID, which mattered at 100,000s of jobs per second.
pub(crate) fn random_uuid() -> String {
    uuid_from(rand::random())
}

/// A UUIDv4 string made of 16 random bytes.
pub(crate) fn uuid_from(bytes: [u8; 16]) -> String {
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

impl Job {
    /// A new job with the given payload, a fresh UUIDv4 as its ID, and attempt 0.
    pub fn new(data: impl Into<Vec<u8>>) -> Self {
        Job {
            id: random_uuid(),
            data: data.into(),
            attempt: 0,
            ready_at_ms: None,
        }
    }

    /// When the job last became ready to run (pushed, or due when scheduled or retried),
    /// Unix seconds with millisecond precision, as curlyq's producer and consumer write it
    /// (in the encoding's extra key `ReadyAt`, which Go CurlyQ skips, and drops when it
    /// rewrites a job). `None` for jobs that do not say. The admin stats read it as the
    /// queue's latency.
    ///
    /// ```
    /// use curlyq_core::Job;
    /// let job = Job::new(b"x".to_vec()).with_ready_at(1_700_000_000.25);
    /// let back = Job::decode(&job.encode()).unwrap();
    /// assert_eq!(back.ready_at(), Some(1_700_000_000.25));
    /// ```
    pub fn ready_at(&self) -> Option<f64> {
        self.ready_at_ms.map(|ms| ms as f64 / 1000.0)
    }

    /// Sets when the job became ready (Unix seconds; kept to the millisecond; a time that
    /// is not finite clears it).
    pub fn with_ready_at(mut self, unix_seconds: f64) -> Self {
        self.ready_at_ms = unix_seconds
            .is_finite()
            .then(|| (unix_seconds * 1000.0).round() as i64);
        self
    }

    /// Sets the job's ID (used for deduplication).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the count of failed runs (mostly useful in tests and tools).
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// A new job (fresh ID, attempt 0) whose payload is `value` as JSON, the bytes a Go
    /// service's `json.Marshal` would put in `Data`.
    ///
    /// ```
    /// use curlyq_core::Job;
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Email { to: String }
    ///
    /// let job = Job::json(&Email { to: "a@example.com".into() })?.with_id("welcome-42");
    /// assert_eq!(job.data, br#"{"to":"a@example.com"}"#);
    /// let email: Email = job.json_value()?;
    /// assert_eq!(email.to, "a@example.com");
    /// # Ok::<(), curlyq_core::CodecError>(())
    /// ```
    ///
    /// # Errors
    /// [`CodecError`] when serde cannot encode the value (a map with non-string keys).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Job, CodecError> {
        Job::from_value(&Json, value)
    }

    /// A new job whose payload is `value` encoded by `codec`.
    ///
    /// # Errors
    /// [`CodecError`] when the codec cannot encode the value.
    pub fn from_value<C: Codec, T: Serialize + ?Sized>(
        codec: &C,
        value: &T,
    ) -> Result<Job, CodecError> {
        Ok(Job::new(codec.encode(value)?))
    }

    /// The payload decoded from JSON.
    ///
    /// # Errors
    /// [`CodecError`] naming the type and serde's message.
    pub fn json_value<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        self.value(&Json)
    }

    /// The payload decoded by `codec`.
    ///
    /// # Errors
    /// [`CodecError`] naming the type and the codec's message.
    pub fn value<C: Codec, T: DeserializeOwned>(&self, codec: &C) -> Result<T, CodecError> {
        codec.decode(&self.data)
    }

    /// Encodes the job as Go CurlyQ does: a MessagePack map with `ID` (str), `Data`
    /// (bin) and `Attempt` (int64).
    ///
    /// ```
    /// use curlyq_core::Job;
    /// let bytes = Job::new(b"hi".to_vec()).with_id("abc").encode();
    /// assert_eq!(Job::decode(&bytes).unwrap().id, "abc");
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.id.len() + self.data.len() + 32);
        // Writing into a Vec cannot fail, so the results are ignored deliberately.
        let _ = rmp::encode::write_map_len(&mut out, 3 + u32::from(self.ready_at_ms.is_some()));
        let _ = rmp::encode::write_str(&mut out, "ID");
        let _ = rmp::encode::write_str(&mut out, &self.id);
        if let Some(ms) = self.ready_at_ms {
            // Before `Data`, so that a bounded prefix of a large job still holds it.
            let _ = rmp::encode::write_str(&mut out, "ReadyAt");
            let _ = rmp::encode::write_sint(&mut out, ms);
        }
        let _ = rmp::encode::write_str(&mut out, "Data");
        let _ = rmp::encode::write_bin(&mut out, &self.data);
        let _ = rmp::encode::write_str(&mut out, "Attempt");
        let _ = rmp::encode::write_i64(&mut out, i64::from(self.attempt));
        out
    }

    /// Decodes a job written by Go CurlyQ or by this crate.
    ///
    /// Accepts any integer width for `Attempt`, `bin`, `str` or `nil` for `Data`, and
    /// skips keys it does not know. Fails with a [`DecodeError`] saying what is wrong
    /// (never panics), whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Job, DecodeError> {
        let mut rd = bytes;
        let len = match decode::read_marker(&mut rd).map_err(|_| DecodeError::Empty)? {
            Marker::FixMap(n) => u32::from(n),
            Marker::Map16 => u32::from(rd.read_data_u16().map_err(t)?),
            Marker::Map32 => rd.read_data_u32().map_err(t)?,
            other => {
                return Err(DecodeError::NotAMap {
                    found: format!("{other:?}"),
                })
            }
        };
        let mut id = None;
        let mut data = None;
        let mut attempt = None;
        let mut ready_at_ms = None;
        for _ in 0..len {
            let key = read_str_or_bin(&mut rd)?;
            match key.as_slice() {
                b"ID" => {
                    let raw = read_str_or_bin(&mut rd)?;
                    id = Some(String::from_utf8(raw).map_err(|_| DecodeError::IdNotUtf8)?);
                }
                b"Data" => {
                    if peek_nil(rd) {
                        skip_value(&mut rd, 0)?;
                        data = Some(Vec::new());
                    } else {
                        data = Some(read_str_or_bin(&mut rd)?);
                    }
                }
                b"Attempt" => attempt = Some(read_attempt(&mut rd)?),
                // Only an integer is ours; anything else under that name is skipped.
                b"ReadyAt" => ready_at_ms = read_int(&mut rd)?,
                _ => skip_value(&mut rd, 0)?,
            }
        }
        Ok(Job {
            id: id.ok_or(DecodeError::MissingField("ID"))?,
            data: data.unwrap_or_default(),
            attempt: attempt.unwrap_or(0),
            ready_at_ms,
        })
    }
}

/// What the first bytes of a stored job say (a prefix that may end anywhere).
#[derive(Debug, Default)]
pub(crate) struct Peek {
    pub(crate) attempt: Option<u32>,
    pub(crate) ready_at_ms: Option<i64>,
    pub(crate) payload_bytes: Option<u64>,
    pub(crate) preview: Vec<u8>,
}

/// Reads the keys of a job's map from a prefix of its encoding, as far as it goes.
pub(crate) fn peek(prefix: &[u8], preview: usize) -> Peek {
    let mut out = Peek::default();
    let mut rd = prefix;
    let len = match decode::read_marker(&mut rd) {
        Ok(Marker::FixMap(n)) => u32::from(n),
        Ok(Marker::Map16) => rd.read_data_u16().map(u32::from).unwrap_or(0),
        Ok(Marker::Map32) => rd.read_data_u32().unwrap_or(0),
        _ => return out,
    };
    for _ in 0..len {
        let Ok(key) = read_str_or_bin(&mut rd) else {
            return out;
        };
        match key.as_slice() {
            b"Data" => {
                let Ok(marker) = decode::read_marker(&mut rd) else {
                    return out;
                };
                if marker == Marker::Null {
                    out.payload_bytes = Some(0);
                    continue;
                }
                let Ok(Some(n)) = read_len(&mut rd, marker) else {
                    return out;
                };
                out.payload_bytes = Some(n as u64);
                out.preview = rd[..rd.len().min(n).min(preview)].to_vec();
                if rd.len() < n {
                    return out;
                }
                rd = &rd[n..];
            }
            b"Attempt" => match read_attempt(&mut rd) {
                Ok(attempt) => out.attempt = Some(attempt),
                Err(_) => return out,
            },
            b"ReadyAt" => match read_int(&mut rd) {
                Ok(ms) => out.ready_at_ms = ms,
                Err(_) => return out,
            },
            _ => {
                if skip_value(&mut rd, 0).is_err() {
                    return out;
                }
            }
        }
    }
    out
}

/// The `Attempt` of a job whose encoding ends with that key and its integer (as Go
/// CurlyQ and curlyq write it), read from the encoding's last bytes.
pub(crate) fn attempt_at_end(tail: &[u8]) -> Option<u32> {
    const KEY: &[u8] = b"\xa7Attempt";
    let at = tail.windows(KEY.len()).rposition(|w| w == KEY)?;
    let mut rd = &tail[at + KEY.len()..];
    let attempt = read_attempt(&mut rd).ok()?;
    rd.is_empty().then_some(attempt)
}

/// Maps any read error to [`DecodeError::Truncated`] (reads from a slice fail only at its end).
fn t<E>(_: E) -> DecodeError {
    DecodeError::Truncated
}

fn peek_nil(rd: &[u8]) -> bool {
    rd.first() == Some(&0xc0)
}

fn read_len(rd: &mut &[u8], marker: Marker) -> Result<Option<usize>, DecodeError> {
    Ok(Some(match marker {
        Marker::FixStr(n) => usize::from(n),
        Marker::Str8 | Marker::Bin8 => usize::from(rd.read_data_u8().map_err(t)?),
        Marker::Str16 | Marker::Bin16 => usize::from(rd.read_data_u16().map_err(t)?),
        Marker::Str32 | Marker::Bin32 => rd.read_data_u32().map_err(t)? as usize,
        _ => return Ok(None),
    }))
}

fn take_bytes(rd: &mut &[u8], n: usize) -> Result<Vec<u8>, DecodeError> {
    if rd.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (head, tail) = rd.split_at(n);
    *rd = tail;
    Ok(head.to_vec())
}

fn read_str_or_bin(rd: &mut &[u8]) -> Result<Vec<u8>, DecodeError> {
    let marker = decode::read_marker(rd).map_err(t)?;
    match read_len(rd, marker)? {
        Some(n) => take_bytes(rd, n),
        None => Err(DecodeError::UnexpectedType {
            expected: "str or bin",
            found: format!("{marker:?}"),
        }),
    }
}

/// The integer after `marker`, or `None` when the marker is no integer (nothing more is
/// read then).
fn integer(rd: &mut &[u8], marker: Marker) -> Result<Option<i128>, DecodeError> {
    Ok(Some(match marker {
        Marker::FixPos(n) => i128::from(n),
        Marker::FixNeg(n) => i128::from(n),
        Marker::U8 => i128::from(rd.read_data_u8().map_err(t)?),
        Marker::U16 => i128::from(rd.read_data_u16().map_err(t)?),
        Marker::U32 => i128::from(rd.read_data_u32().map_err(t)?),
        Marker::U64 => i128::from(rd.read_data_u64().map_err(t)?),
        Marker::I8 => i128::from(rd.read_data_i8().map_err(t)?),
        Marker::I16 => i128::from(rd.read_data_i16().map_err(t)?),
        Marker::I32 => i128::from(rd.read_data_i32().map_err(t)?),
        Marker::I64 => i128::from(rd.read_data_i64().map_err(t)?),
        _ => return Ok(None),
    }))
}

fn read_attempt(rd: &mut &[u8]) -> Result<u32, DecodeError> {
    let marker = decode::read_marker(rd).map_err(t)?;
    let value = match integer(rd, marker)? {
        Some(value) => value,
        None if marker == Marker::Null => 0,
        None => {
            return Err(DecodeError::UnexpectedType {
                expected: "integer Attempt",
                found: format!("{marker:?}"),
            })
        }
    };
    u32::try_from(value).map_err(|_| DecodeError::AttemptOutOfRange(value))
}

/// An integer value that fits an `i64`; any other value is skipped and gives `None`.
fn read_int(rd: &mut &[u8]) -> Result<Option<i64>, DecodeError> {
    let mut probe = *rd;
    let marker = decode::read_marker(&mut probe).map_err(t)?;
    match integer(&mut probe, marker)? {
        Some(value) => {
            *rd = probe;
            Ok(i64::try_from(value).ok())
        }
        None => {
            skip_value(rd, 0)?;
            Ok(None)
        }
    }
}

/// Skips one MessagePack value of any type (bounded nesting, no recursion blow-up).
fn skip_value(rd: &mut &[u8], depth: u32) -> Result<(), DecodeError> {
    if depth > 64 {
        return Err(DecodeError::TooDeep);
    }
    let marker = decode::read_marker(rd).map_err(t)?;
    let skip = |rd: &mut &[u8], n: usize| -> Result<(), DecodeError> {
        if rd.len() < n {
            return Err(DecodeError::Truncated);
        }
        *rd = &rd[n..];
        Ok(())
    };
    if let Some(n) = read_len(rd, marker)? {
        return skip(rd, n);
    }
    match marker {
        Marker::Null | Marker::True | Marker::False | Marker::FixPos(_) | Marker::FixNeg(_) => {
            Ok(())
        }
        Marker::U8 | Marker::I8 => skip(rd, 1),
        Marker::U16 | Marker::I16 => skip(rd, 2),
        Marker::U32 | Marker::I32 | Marker::F32 => skip(rd, 4),
        Marker::U64 | Marker::I64 | Marker::F64 => skip(rd, 8),
        Marker::FixExt1 => skip(rd, 2),
        Marker::FixExt2 => skip(rd, 3),
        Marker::FixExt4 => skip(rd, 5),
        Marker::FixExt8 => skip(rd, 9),
        Marker::FixExt16 => skip(rd, 17),
        Marker::Ext8 => {
            let n = usize::from(rd.read_data_u8().map_err(t)?);
            skip(rd, n + 1)
        }
        Marker::Ext16 => {
            let n = usize::from(rd.read_data_u16().map_err(t)?);
            skip(rd, n + 1)
        }
        Marker::Ext32 => {
            let n = rd.read_data_u32().map_err(t)? as usize;
            skip(rd, n.saturating_add(1))
        }
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
            let n = match marker {
                Marker::FixArray(n) => u32::from(n),
                Marker::Array16 => u32::from(rd.read_data_u16().map_err(t)?),
                _ => rd.read_data_u32().map_err(t)?,
            };
            for _ in 0..n {
                skip_value(rd, depth + 1)?;
            }
            Ok(())
        }
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
            let n = match marker {
                Marker::FixMap(n) => u32::from(n),
                Marker::Map16 => u32::from(rd.read_data_u16().map_err(t)?),
                _ => rd.read_data_u32().map_err(t)?,
            };
            for _ in 0..n {
                skip_value(rd, depth + 1)?;
                skip_value(rd, depth + 1)?;
            }
            Ok(())
        }
        Marker::Reserved => Err(DecodeError::UnexpectedType {
            expected: "a MessagePack value",
            found: "reserved marker 0xc1".into(),
        }),
        _ => Err(DecodeError::UnexpectedType {
            expected: "a MessagePack value",
            found: format!("{marker:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_jobs_get_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| Job::new("x").id).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
    }

    const VECTOR_1: &str = "83a24944a3616263a444617461c4026869a7417474656d7074d30000000000000002";
    const VECTOR_2: &str = "83a24944a178a444617461c0a7417474656d7074d30000000000000000";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).expect("valid hex")
    }

    #[test]
    fn go_vector_1_decodes_and_encodes_byte_identical() {
        let bytes = unhex(VECTOR_1);
        let job = Job::decode(&bytes).expect("decodes");
        assert_eq!(job, Job::new(b"hi".to_vec()).with_id("abc").with_attempt(2));
        assert_eq!(job.encode(), bytes, "we write exactly what Go writes");
    }

    #[test]
    fn go_vector_2_nil_data_decodes_to_empty_and_round_trips() {
        let job = Job::decode(&unhex(VECTOR_2)).expect("decodes");
        assert_eq!(job, Job::new(Vec::new()).with_id("x"));
        let ours = job.encode();
        // Go's rules: a map with ID str, Data bin (empty bin is allowed), Attempt int.
        assert_eq!(
            ours,
            unhex("83a24944a178a444617461c400a7417474656d7074d30000000000000000")
        );
        assert_eq!(Job::decode(&ours).expect("decodes"), job);
    }

    #[test]
    fn accepts_every_int_width_str_data_and_unknown_keys() {
        let mut b = Vec::new();
        rmp::encode::write_map_len(&mut b, 5).unwrap();
        rmp::encode::write_str(&mut b, "Extra").unwrap();
        rmp::encode::write_array_len(&mut b, 2).unwrap();
        rmp::encode::write_u8(&mut b, 1).unwrap();
        rmp::encode::write_str(&mut b, "nested").unwrap();
        rmp::encode::write_str(&mut b, "Attempt").unwrap();
        rmp::encode::write_u16(&mut b, 300).unwrap();
        rmp::encode::write_str(&mut b, "Data").unwrap();
        rmp::encode::write_str(&mut b, "text").unwrap();
        rmp::encode::write_str(&mut b, "ID").unwrap();
        rmp::encode::write_str(&mut b, "k").unwrap();
        rmp::encode::write_str(&mut b, "More").unwrap();
        rmp::encode::write_f64(&mut b, 1.5).unwrap();
        let job = Job::decode(&b).expect("decodes");
        assert_eq!(
            (job.id.as_str(), job.data.as_slice(), job.attempt),
            ("k", &b"text"[..], 300)
        );
    }

    #[test]
    fn bad_bytes_give_typed_errors_never_panics() {
        assert!(matches!(Job::decode(&[]), Err(DecodeError::Empty)));
        assert!(matches!(
            Job::decode(&[0x93, 1, 2, 3]),
            Err(DecodeError::NotAMap { .. })
        ));
        let good = unhex(VECTOR_1);
        for cut in 1..good.len() {
            assert!(Job::decode(&good[..cut]).is_err(), "truncated at {cut}");
        }
        // A negative Attempt is out of range.
        let mut b = Vec::new();
        rmp::encode::write_map_len(&mut b, 2).unwrap();
        rmp::encode::write_str(&mut b, "ID").unwrap();
        rmp::encode::write_str(&mut b, "n").unwrap();
        rmp::encode::write_str(&mut b, "Attempt").unwrap();
        rmp::encode::write_i64(&mut b, -5).unwrap();
        assert!(matches!(
            Job::decode(&b),
            Err(DecodeError::AttemptOutOfRange(-5))
        ));
        // Missing ID.
        let mut b = Vec::new();
        rmp::encode::write_map_len(&mut b, 0).unwrap();
        assert!(matches!(
            Job::decode(&b),
            Err(DecodeError::MissingField("ID"))
        ));
    }

    #[test]
    fn debug_does_not_print_the_payload() {
        let job = Job::new(b"secret-token".to_vec()).with_id("a");
        assert!(!format!("{job:?}").contains("secret"));
    }
}
