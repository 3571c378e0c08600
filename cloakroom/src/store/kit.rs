//! What the backends share, each idea derived once: time as the stored
//! columns and scripts hold it, the "stored idle deadline wins" overlay, the
//! per-user index key, and storage keys read back from bytes.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::StoreError;

/// Largest millisecond value a Lua script holds exactly (its numbers are
/// doubles): deadlines are clamped to it.
#[cfg(feature = "redis")]
pub(crate) const LUA_MAX_MS: u64 = (1 << 53) - 1;

/// `t` as a signed 64-bit column value (SQL `BIGINT`, a BSON date),
/// clamped.
#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "mysql",
    feature = "mongodb"
))]
pub(crate) fn sql_millis(t: Timestamp) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

/// A `BIGINT` column (or BSON date) back as a time (negative values, which
/// cloakroom never writes, read as the epoch).
#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "mysql",
    feature = "mongodb"
))]
pub(crate) fn from_sql_millis(ms: i64) -> Timestamp {
    Timestamp::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// `t` as milliseconds a Lua script holds exactly, clamped.
#[cfg(feature = "redis")]
pub(crate) fn lua_millis(t: Timestamp) -> u64 {
    t.as_millis().min(LUA_MAX_MS)
}

/// Decodes a stored record and overlays the idle deadline stored beside
/// it: `touch` moves only that deadline (never rewriting the record), so
/// the stored one wins over the one encoded inside.
///
/// # Errors
///
/// [`StoreError::Corrupt`] when the bytes are not a record.
pub(crate) fn decode_with_idle(
    bytes: &Bytes,
    idle_deadline: Timestamp,
) -> Result<Record, StoreError> {
    let mut record = Record::decode(bytes).map_err(StoreError::corrupt)?;
    record.idle_deadline = idle_deadline;
    Ok(record)
}

/// A record together with the idle deadline stored beside it (see
/// [`decode_with_idle`]).
pub(crate) struct Stored {
    pub(crate) idle_deadline: Timestamp,
    pub(crate) record: Record,
}

impl Stored {
    /// When the stored record stops being live.
    pub(crate) fn expires_at(&self) -> Timestamp {
        self.idle_deadline.min(self.record.absolute_deadline)
    }

    /// Whether it is still live at `now`.
    pub(crate) fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at()
    }

    /// The record as the session layer sees it: with the stored deadline.
    pub(crate) fn into_record(mut self) -> Record {
        self.record.idle_deadline = self.idle_deadline;
        self.record
    }
}

/// The per-user index key: SHA-256 of the principal, so index names and
/// columns hold no user names and have a fixed size. (Not a
/// [`StorageKey`]: that names a session.)
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct UserKey([u8; 32]);

impl UserKey {
    /// The key of `user`.
    pub(crate) fn of(user: &str) -> Self {
        Self(Sha256::digest(user.as_bytes()).into())
    }

    /// A key read back from a backend.
    #[cfg(feature = "dynamodb")]
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, for key names and file names.
    pub(crate) fn to_hex(self) -> String {
        StorageKey(self.0).to_hex()
    }
}

/// A session's storage key read back from a backend.
///
/// # Errors
///
/// [`StoreError::Corrupt`] unless `bytes` is exactly 32 bytes long.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) fn key_from(bytes: &[u8]) -> Result<StorageKey, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(StorageKey)
        .map_err(|_| StoreError::corrupt("storage key is not 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(
        feature = "redis",
        any(feature = "sqlite", feature = "postgres", feature = "mysql")
    ))]
    fn clamps_and_round_trips() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(from_sql_millis(sql_millis(t)), t);
        assert_eq!(sql_millis(Timestamp::from_millis(u64::MAX)), i64::MAX);
        assert_eq!(from_sql_millis(-5), Timestamp::from_millis(0));
        assert_eq!(lua_millis(Timestamp::from_millis(u64::MAX)), LUA_MAX_MS);
    }

    #[test]
    fn user_keys_are_sha256_of_the_user() {
        // Locks the on-disk/in-store format of every per-user index.
        assert_eq!(
            UserKey::of("alice").to_hex(),
            "2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90"
        );
    }

    #[test]
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
    fn keys_read_back_only_at_32_bytes() {
        assert!(key_from(&[0; 31]).is_err());
        assert_eq!(key_from(&[7; 32]).ok(), Some(StorageKey([7; 32])));
    }
}
