//! What memcached holds, byte by byte: the key names, the session item (an
//! idle-deadline header, then the record), the user index item, and the
//! exptimes that make memcached drop both by itself. The layouts are drawn
//! in the [`MemcachedStore`] docs; changing a byte here changes them.

use bytes::Bytes;

use super::{BACKEND, MemcachedStore};
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::{MAX_RECORD_BYTES, Record};
use crate::store::StoreError;
use crate::store::kit::{Stored, UserKey};

/// memcached's key length limit.
const MAX_MEMCACHED_KEY_BYTES: usize = 250;
/// Longest prefix: `s:` / `u:` and 64 hex characters follow it.
pub(super) const MAX_PREFIX_BYTES: usize = MAX_MEMCACHED_KEY_BYTES - 2 - 64;
/// memcached reads an exptime above 30 days as an absolute Unix time.
const REALTIME_MAXDELTA: u64 = 30 * 24 * 3600;
/// The smallest absolute exptime: a moment in January 1970, so an item
/// written with it is expired at once.
pub(super) const EXPIRED_EXPTIME: u32 = (REALTIME_MAXDELTA + 1) as u32;
/// The largest exptime sent: memcached parses exptimes as signed 32-bit
/// numbers in places, so deadlines past January 2038 are stored with this
/// one (the millisecond deadline check still applies).
const MAX_EXPTIME: u64 = i32::MAX as u64;
/// Bytes of the idle-deadline header in front of a session item's record.
const HEADER_BYTES: usize = 8;
/// Index format version, the first byte of every index item.
const INDEX_FORMAT: u8 = 1;
/// Bytes per index entry: key, absolute deadline, indexed-at.
const INDEX_ENTRY_BYTES: usize = 32 + 8 + 8;

impl MemcachedStore {
    /// `{prefix}s:{hex storage key}`: the session item.
    pub(super) fn session_key(&self, key: &StorageKey) -> String {
        format!("{}s:{}", self.prefix, key.to_hex())
    }

    /// `{prefix}u:{hex sha256(user)}`: the user's index item.
    pub(super) fn index_key(&self, user: &str) -> String {
        format!("{}u:{}", self.prefix, UserKey::of(user).to_hex())
    }
}

/// memcached exptime for a deadline: absolute Unix seconds, rounded up,
/// clamped to `EXPIRED_EXPTIME..=MAX_EXPTIME` (never 0, which means "never
/// expires", and never a small number, which means "seconds from now").
pub(super) fn exptime(deadline: Timestamp) -> u32 {
    let secs = deadline
        .as_millis()
        .div_ceil(1000)
        .clamp(u64::from(EXPIRED_EXPTIME), MAX_EXPTIME);
    u32::try_from(secs).unwrap_or(EXPIRED_EXPTIME)
}

/// A session item: `[u64 idle_deadline][encoded record]`.
pub(super) fn encode_session(idle_deadline: Timestamp, record: &Record) -> Vec<u8> {
    let encoded = record.encode();
    let mut out = Vec::with_capacity(HEADER_BYTES + encoded.len());
    out.extend_from_slice(&idle_deadline.as_millis().to_be_bytes());
    out.extend_from_slice(&encoded);
    out
}

/// A session item read back, its header as the stored idle deadline.
pub(super) fn decode_session(value: &[u8]) -> Result<Stored, StoreError> {
    if value.len() < HEADER_BYTES || value.len() > MAX_RECORD_BYTES + HEADER_BYTES {
        return Err(StoreError::corrupt_in(
            BACKEND,
            "memcached session item has an impossible size",
        ));
    }
    let (head, body) = value.split_at(HEADER_BYTES);
    let mut deadline = [0u8; HEADER_BYTES];
    deadline.copy_from_slice(head);
    let record = Record::decode(&Bytes::copy_from_slice(body))
        .map_err(|e| StoreError::corrupt_in(BACKEND, e))?;
    Ok(Stored {
        idle_deadline: Timestamp::from_millis(u64::from_be_bytes(deadline)),
        record,
    })
}

/// Moves a session item's idle deadline in place: only the header changes,
/// the record's bytes stay as they are (what `touch` promises).
pub(super) fn set_idle_deadline(value: &mut [u8], idle_deadline: Timestamp) {
    value[..HEADER_BYTES].copy_from_slice(&idle_deadline.as_millis().to_be_bytes());
}

/// One entry of a user's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IndexEntry {
    pub(super) key: StorageKey,
    /// The session's absolute deadline: it is certainly dead after this.
    pub(super) absolute_deadline: Timestamp,
    /// When the entry was written.
    pub(super) indexed_at: Timestamp,
}

pub(super) fn encode_index(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * INDEX_ENTRY_BYTES);
    out.push(INDEX_FORMAT);
    for e in entries {
        out.extend_from_slice(&e.key.0);
        out.extend_from_slice(&e.absolute_deadline.as_millis().to_be_bytes());
        out.extend_from_slice(&e.indexed_at.as_millis().to_be_bytes());
    }
    out
}

pub(super) fn decode_index(value: &[u8]) -> Result<Vec<IndexEntry>, StoreError> {
    let Some((&format, body)) = value.split_first() else {
        return Err(StoreError::corrupt_in(
            BACKEND,
            "empty memcached user index",
        ));
    };
    if format != INDEX_FORMAT {
        return Err(StoreError::corrupt_in(
            BACKEND,
            format!("unknown memcached user index format {format}"),
        ));
    }
    if body.len() % INDEX_ENTRY_BYTES != 0 {
        return Err(StoreError::corrupt_in(
            BACKEND,
            "truncated memcached user index",
        ));
    }
    let u64_at = |chunk: &[u8], at: usize| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&chunk[at..at + 8]);
        Timestamp::from_millis(u64::from_be_bytes(raw))
    };
    Ok(body
        .chunks_exact(INDEX_ENTRY_BYTES)
        .map(|chunk| {
            let mut key = [0u8; 32];
            key.copy_from_slice(&chunk[..32]);
            IndexEntry {
                key: StorageKey(key),
                absolute_deadline: u64_at(chunk, 32),
                indexed_at: u64_at(chunk, 40),
            }
        })
        .collect())
}

/// The index item's exptime: it outlives every session it lists.
pub(super) fn index_exptime(entries: &[IndexEntry]) -> u32 {
    entries
        .iter()
        .map(|e| e.absolute_deadline)
        .max()
        .map_or(EXPIRED_EXPTIME, exptime)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::id::SessionId;
    use crate::store::memcached::client::Conn;

    /// A record made at a fixed moment, so the bytes below are reproducible.
    fn record(user: Option<&str>) -> Record {
        let made = Timestamp::from_millis(1_700_000_000_000);
        let mut r = Record::new(made, Duration::from_secs(60), Duration::from_secs(600));
        r.user = user.map(str::to_owned);
        r
    }

    #[test]
    fn exptime_rounds_up_to_absolute_seconds() {
        assert_eq!(
            exptime(Timestamp::from_millis(1_700_000_000_000)),
            1_700_000_000
        );
        assert_eq!(
            exptime(Timestamp::from_millis(1_700_000_000_001)),
            1_700_000_001
        );
        assert_eq!(
            exptime(Timestamp::from_millis(1_700_000_000_999)),
            1_700_000_001
        );
        // Never 0 ("never expires") nor a relative number of seconds.
        assert_eq!(exptime(Timestamp::EPOCH), EXPIRED_EXPTIME);
        assert_eq!(exptime(Timestamp::from_millis(5_000)), EXPIRED_EXPTIME);
        assert!(u64::from(EXPIRED_EXPTIME) > REALTIME_MAXDELTA);
        // Clamped below 2^31.
        assert_eq!(
            exptime(Timestamp::from_millis(u64::MAX)),
            u32::try_from(i32::MAX).unwrap()
        );
        assert_eq!(index_exptime(&[]), EXPIRED_EXPTIME);
    }

    #[test]
    fn session_value_round_trips_with_deadline_overlay() {
        let mut rec = record(Some("alice"));
        rec.insert("k", "v").unwrap();
        let later = rec.idle_deadline.saturating_add(Duration::from_secs(60));
        let mut value = encode_session(later, &rec);
        assert_eq!(
            &value[8..],
            &rec.encode()[..],
            "record bytes follow the header"
        );
        let back = decode_session(&value).unwrap().into_record();
        assert_eq!(back.idle_deadline, later);
        assert_eq!(back.get::<String>("k").unwrap().as_deref(), Some("v"));
        for cut in [&value[..7], &value[..20]] {
            let r = decode_session(cut);
            assert!(matches!(r, Err(StoreError::Corrupt(_))));
            assert_eq!(r.err().and_then(|e| e.backend()), Some(BACKEND));
        }
        let touched = later.saturating_add(Duration::from_secs(60));
        set_idle_deadline(&mut value, touched);
        assert_eq!(&value[8..], &rec.encode()[..], "touch keeps the record");
        assert_eq!(decode_session(&value).unwrap().idle_deadline, touched);
    }

    #[test]
    fn index_round_trips_and_rejects_garbage() {
        let entries = vec![
            IndexEntry {
                key: SessionId::generate().storage_key(),
                absolute_deadline: Timestamp::from_millis(7),
                indexed_at: Timestamp::from_millis(3),
            },
            IndexEntry {
                key: SessionId::generate().storage_key(),
                absolute_deadline: Timestamp::from_millis(u64::MAX),
                indexed_at: Timestamp::from_millis(0),
            },
        ];
        let raw = encode_index(&entries);
        assert_eq!(raw.len(), 1 + 2 * INDEX_ENTRY_BYTES);
        assert_eq!(decode_index(&raw).unwrap(), entries);
        assert_eq!(decode_index(&[INDEX_FORMAT]).unwrap(), vec![]);
        assert!(decode_index(&[]).is_err());
        assert!(decode_index(&raw[..raw.len() - 1]).is_err());
        let mut other = raw.clone();
        other[0] = 9;
        assert!(decode_index(&other).is_err());
    }

    /// Known answers: the key names and the bytes of a session header and an
    /// index item, so no refactoring can change what is stored.
    #[test]
    fn stored_layouts_are_locked() {
        let store = MemcachedStore::with_conn(Conn::open("memcache://127.0.0.1:1").unwrap());
        let key = StorageKey([0xab; 32]);
        assert_eq!(
            store.session_key(&key),
            format!("cloakroom:s:{}", "ab".repeat(32))
        );
        assert_eq!(
            store.index_key("alice"),
            "cloakroom:u:2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90"
        );
        let longest = store.with_prefix(&"p".repeat(MAX_PREFIX_BYTES)).unwrap();
        assert_eq!(longest.session_key(&key).len(), MAX_MEMCACHED_KEY_BYTES);
        assert_eq!(longest.index_key("x").len(), MAX_MEMCACHED_KEY_BYTES);

        let value = encode_session(Timestamp::from_millis(0x0102_0304_0506_0708), &record(None));
        assert_eq!(&value[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let index = encode_index(&[IndexEntry {
            key,
            absolute_deadline: Timestamp::from_millis(0x1122),
            indexed_at: Timestamp::from_millis(0x33),
        }]);
        let mut want = vec![1];
        want.extend_from_slice(&[0xab; 32]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x11, 0x22]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x33]);
        assert_eq!(index, want);
    }
}
