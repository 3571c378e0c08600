//! Reading Redis replies: shapes, stored fields and the scripts' answers.
//! Errors say only the shape of an unexpected reply, never its content
//! (replies may hold session data).

use bytes::Bytes;
use redis::Value;

use super::BACKEND;
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{StoreError, UserSession, kit};

/// The record `bytes` with the idle deadline stored beside it.
pub(super) fn decode(bytes: Vec<u8>, idle_deadline: u64) -> Result<Record, StoreError> {
    kit::decode_with_idle(&Bytes::from(bytes), Timestamp::from_millis(idle_deadline)).map_err(|e| {
        match e {
            StoreError::Corrupt(source) => StoreError::corrupt_in(BACKEND, source),
            other => other,
        }
    })
}

/// A stored deadline field.
pub(super) fn parse_ms(bytes: &[u8]) -> Result<u64, StoreError> {
    opt_ms(Some(bytes)).ok_or_else(|| corrupt("deadline field is not a number"))
}

/// A stored deadline field, if present and a number.
pub(super) fn opt_ms(bytes: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(bytes?).ok()?.parse().ok()
}

/// An index member as the storage key it names.
pub(super) fn parse_member(member: &str) -> Result<StorageKey, StoreError> {
    StorageKey::from_hex(member).map_err(|_| corrupt("index member is not a storage key"))
}

/// An index member, which is text.
pub(super) fn member_text(bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|_| corrupt("index member is not text"))
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::corrupt_in(BACKEND, what)
}

/// [`StoreError::Other`] for a reply the store did not expect.
pub(super) fn other(what: &'static str) -> StoreError {
    StoreError::other_in(BACKEND, what)
}

fn unexpected(what: &Value) -> StoreError {
    let shape = match what {
        Value::Nil => "nil",
        Value::Int(_) => "integer",
        Value::BulkString(_) => "bulk string",
        Value::Array(_) => "array",
        Value::SimpleString(_) => "simple string",
        Value::Okay => "OK",
        Value::Map(_) => "map",
        Value::Set(_) => "set",
        Value::Double(_) => "double",
        Value::Boolean(_) => "boolean",
        _ => "other",
    };
    StoreError::other_in(BACKEND, format!("unexpected {shape} reply from Redis"))
}

/// A string reply, or `None` for nil.
pub(super) fn opt_bytes(v: Value) -> Result<Option<Vec<u8>>, StoreError> {
    match v {
        // RESP3 turns a Lua `false` into a boolean rather than a nil.
        Value::Nil | Value::Boolean(false) => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        other => Err(unexpected(&other)),
    }
}

/// An integer reply (nil reads as 0).
pub(super) fn int(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(n) => Ok(*n),
        Value::Boolean(b) => Ok(i64::from(*b)),
        Value::Nil => Ok(0),
        other => Err(unexpected(other)),
    }
}

/// An array reply (nil reads as empty).
pub(super) fn array(v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected(&other)),
    }
}

/// The `N` fields of an `HMGET` reply.
pub(super) fn fields<const N: usize>(v: Value) -> Result<[Option<Vec<u8>>; N], StoreError> {
    let values = array(v)?;
    if values.len() != N {
        return Err(other("HMGET answered with the wrong field count"));
    }
    let mut out: [Option<Vec<u8>>; N] = std::array::from_fn(|_| None);
    for (slot, v) in out.iter_mut().zip(values) {
        *slot = opt_bytes(v)?;
    }
    Ok(out)
}

/// The answer of the save script.
#[derive(Debug, PartialEq)]
pub(super) enum Saved {
    /// Written (or deleted, being dead); the user the session had.
    Kept(Option<Vec<u8>>),
    NotFound,
    VersionConflict,
    /// Cluster: index the new user first, then save again.
    IndexFirst,
}

/// Reads the save script's reply.
pub(super) fn saved(v: Value) -> Result<Saved, StoreError> {
    let mut reply = array(v)?.into_iter();
    let status = reply.next().map(opt_bytes).transpose()?.flatten();
    Ok(match status.as_deref() {
        Some(b"K") => Saved::Kept(reply.next().map(opt_bytes).transpose()?.flatten()),
        Some(b"N") => Saved::NotFound,
        Some(b"V") => Saved::VersionConflict,
        Some(b"I") => Saved::IndexFirst,
        _ => return Err(other("unexpected reply from the save script")),
    })
}

/// Reads the single-server list script's flattened (member, record, idle
/// deadline) triples.
pub(super) fn listed(v: Value) -> Result<Vec<UserSession>, StoreError> {
    let flat = array(v)?;
    let mut out = Vec::with_capacity(flat.len() / 3);
    let mut it = flat.into_iter();
    while let (Some(m), Some(r), Some(i)) = (it.next(), it.next(), it.next()) {
        let (Some(m), Some(r), Some(i)) = (opt_bytes(m)?, opt_bytes(r)?, opt_bytes(i)?) else {
            return Err(other("nil in the list script's reply"));
        };
        out.push(UserSession {
            key: parse_member(&member_text(m)?)?,
            record: decode(r, parse_ms(&i)?)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn bulk(b: impl Into<Vec<u8>>) -> Value {
        Value::BulkString(b.into())
    }

    #[test]
    fn shapes() {
        assert_eq!(opt_bytes(Value::Boolean(false)).ok(), Some(None));
        assert_eq!(opt_bytes(bulk("x")).ok(), Some(Some(b"x".to_vec())));
        assert_eq!(int(&Value::Nil).ok(), Some(0));
        assert!(array(Value::Nil).is_ok_and(|a| a.is_empty()));
        let err = opt_bytes(Value::Int(3)).unwrap_err();
        assert!(matches!(err, StoreError::Other(_)), "{err:?}");
        assert_eq!(err.backend(), Some("redis"));
        assert!(fields::<2>(Value::Array(vec![Value::Nil])).is_err());
    }

    #[test]
    fn stored_fields() {
        assert_eq!(parse_ms(b"1700000000123").ok(), Some(1_700_000_000_123));
        assert!(matches!(parse_ms(b"soon"), Err(StoreError::Corrupt(_))));
        assert!(matches!(parse_member("zz"), Err(StoreError::Corrupt(_))));
        let err = decode(b"not a record".to_vec(), 0).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert_eq!(err.backend(), Some("redis"));
    }

    #[test]
    fn save_answers() {
        let reply = |parts: Vec<Value>| saved(Value::Array(parts)).ok();
        assert_eq!(
            reply(vec![bulk("K"), bulk("alice")]),
            Some(Saved::Kept(Some(b"alice".to_vec())))
        );
        assert_eq!(reply(vec![bulk("K")]), Some(Saved::Kept(None)));
        assert_eq!(reply(vec![bulk("N")]), Some(Saved::NotFound));
        assert_eq!(reply(vec![bulk("V")]), Some(Saved::VersionConflict));
        assert_eq!(reply(vec![bulk("I")]), Some(Saved::IndexFirst));
        assert!(saved(Value::Array(vec![bulk("?")])).is_err());
    }

    #[test]
    fn list_answer() {
        let r = Record::new(
            Timestamp::from_millis(1_000),
            Duration::from_secs(10),
            Duration::from_secs(100),
        );
        let key = StorageKey([3; 32]);
        let reply = Value::Array(vec![
            bulk(key.to_hex()),
            bulk(r.encode().to_vec()),
            bulk("42000"),
        ]);
        let listed = listed(reply).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, key);
        assert_eq!(
            listed[0].record.idle_deadline,
            Timestamp::from_millis(42_000),
            "the stored idle deadline wins"
        );
        assert!(listed_nil_is_other());
    }

    fn listed_nil_is_other() -> bool {
        let reply = Value::Array(vec![Value::Nil, bulk("r"), bulk("1")]);
        matches!(listed(reply), Err(StoreError::Other(_)))
    }
}
