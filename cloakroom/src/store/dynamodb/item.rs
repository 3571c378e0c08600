//! What the table holds, attribute by attribute: session items, index
//! items, the condition expressions, and the way back to a [`Record`].

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::BACKEND;
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::StoreError;
use crate::store::kit::UserKey;

/// Partition key (string): `s#<hex storage key>` for a session,
/// `u#<hex SHA-256 of the user>` for a user's index items.
pub(super) const PK: &str = "pk";
/// Sort key (string): `s` for a session, the session's hex storage key for
/// an index item.
pub(super) const SK: &str = "sk";
/// Version (number), the compare-and-swap counter.
pub(super) const VERSION: &str = "v";
/// Idle deadline (number, Unix milliseconds).
pub(super) const IDLE: &str = "idle";
/// Absolute deadline (number, Unix milliseconds).
pub(super) const ABSOLUTE: &str = "abs";
/// The earlier of the two deadlines (number, Unix milliseconds): what the
/// conditions and reads judge liveness by.
pub(super) const EXPIRES: &str = "exp";
/// The same deadline in Unix seconds, rounded up: DynamoDB's TTL attribute,
/// on session and index items alike, so an index item expires with its
/// session.
pub(super) const TTL: &str = "ttl";
/// The user (string, hex SHA-256), on signed-in sessions only.
pub(super) const USER: &str = "u";
/// The encoded record (binary).
pub(super) const RECORD: &str = "r";

/// The sort key of a session item.
const SESSION_SK: &str = "s";

/// DynamoDB's item size limit (400 KB, attribute names included).
pub(super) const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Room left in an item for every attribute but the record: the names and
/// values above take under 300 bytes.
const ITEM_OVERHEAD: usize = 1024;
/// The largest encoded record a session item holds.
pub(super) const MAX_RECORD_BYTES: usize = MAX_ITEM_BYTES - ITEM_OVERHEAD;

/// An item, or the key of one.
pub(super) type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// `t` in milliseconds.
pub(super) fn millis(t: Timestamp) -> AttributeValue {
    n(t.as_millis())
}

/// The key of `key`'s session item.
pub(super) fn session_key(key: &StorageKey) -> Item {
    HashMap::from([
        (PK.to_owned(), s(format!("s#{}", key.to_hex()))),
        (SK.to_owned(), s(SESSION_SK)),
    ])
}

/// The partition of `user`'s index items.
pub(super) fn index_partition(user: &UserKey) -> AttributeValue {
    s(format!("u#{}", user.to_hex()))
}

/// The key of the index item of session `key` under `user`.
pub(super) fn index_key(user: &UserKey, key: &StorageKey) -> Item {
    HashMap::from([
        (PK.to_owned(), index_partition(user)),
        (SK.to_owned(), s(key.to_hex())),
    ])
}

/// The index item of session `key` under `user`, expiring at `expires`.
pub(super) fn index_item(user: &UserKey, key: &StorageKey, expires: Timestamp) -> Item {
    let mut item = index_key(user, key);
    item.insert(TTL.to_owned(), ttl(expires));
    item
}

/// A TTL value: `t` in Unix seconds, rounded up, so DynamoDB never deletes
/// an item before its deadline.
pub(super) fn ttl(t: Timestamp) -> AttributeValue {
    n(t.as_millis().div_ceil(1000))
}

/// The session item of `record` under `key`.
pub(super) fn session_item(key: &StorageKey, record: &Record) -> Item {
    let mut item = session_key(key);
    item.insert(VERSION.to_owned(), n(record.version));
    item.insert(IDLE.to_owned(), millis(record.idle_deadline));
    item.insert(ABSOLUTE.to_owned(), millis(record.absolute_deadline));
    item.insert(EXPIRES.to_owned(), millis(record.expires_at()));
    item.insert(TTL.to_owned(), ttl(record.expires_at()));
    item.insert(
        RECORD.to_owned(),
        AttributeValue::B(Blob::new(record.encode().to_vec())),
    );
    if let Some(user) = &record.user {
        item.insert(USER.to_owned(), s(UserKey::of(user).to_hex()));
    }
    item
}

/// `Err(TooLarge)` for a record a session item cannot hold.
///
/// # Errors
///
/// [`StoreError::TooLarge`] past [`MAX_RECORD_BYTES`].
pub(super) fn check_size(record: &Record) -> Result<(), StoreError> {
    let size = record.encoded_len();
    if size > MAX_RECORD_BYTES {
        return Err(StoreError::TooLarge {
            size,
            limit: MAX_RECORD_BYTES,
        });
    }
    Ok(())
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::corrupt_in(BACKEND, what)
}

fn number(item: &Item, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| corrupt("session item with a malformed number")),
        _ => Err(corrupt("session item without a number it needs")),
    }
}

/// What conditional writes need of a stored session item.
#[derive(Clone)]
pub(super) struct Head {
    pub(super) version: u64,
    pub(super) expires: Timestamp,
    pub(super) absolute: Timestamp,
    pub(super) user: Option<UserKey>,
}

impl Head {
    /// Whether the session is live at `now`.
    pub(super) fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires
    }
}

/// The head of a session item.
///
/// # Errors
///
/// [`StoreError::Corrupt`] for an item not in the layout above.
pub(super) fn head(item: &Item) -> Result<Head, StoreError> {
    let user = match item.get(USER) {
        None => None,
        Some(AttributeValue::S(hex)) => Some(
            user_key_from_hex(hex).ok_or_else(|| corrupt("session item with a malformed user"))?,
        ),
        Some(_) => return Err(corrupt("session item with a malformed user")),
    };
    Ok(Head {
        version: number(item, VERSION)?,
        expires: Timestamp::from_millis(number(item, EXPIRES)?),
        absolute: Timestamp::from_millis(number(item, ABSOLUTE)?),
        user,
    })
}

/// The record of a session item, with the stored idle deadline and
/// version laid over the encoded ones (`touch` moves only the attributes).
///
/// # Errors
///
/// [`StoreError::Corrupt`] for an item not in the layout above.
pub(super) fn decode(item: &Item) -> Result<Record, StoreError> {
    let Some(AttributeValue::B(bytes)) = item.get(RECORD) else {
        return Err(corrupt("session item without its record"));
    };
    let mut record = Record::decode(&bytes::Bytes::copy_from_slice(bytes.as_ref()))
        .map_err(|e| StoreError::corrupt_in(BACKEND, e))?;
    record.idle_deadline = Timestamp::from_millis(number(item, IDLE)?);
    record.version = number(item, VERSION)?;
    Ok(record)
}

/// The storage key an index item points at.
pub(super) fn indexed_key(item: &Item) -> Option<StorageKey> {
    match item.get(SK) {
        Some(AttributeValue::S(hex)) => key_from_hex(hex),
        _ => None,
    }
}

/// The storage key of a session item.
pub(super) fn session_key_of(item: &Item) -> Option<StorageKey> {
    match item.get(PK) {
        Some(AttributeValue::S(pk)) => pk.strip_prefix("s#").and_then(key_from_hex),
        _ => None,
    }
}

fn bytes_from_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn key_from_hex(hex: &str) -> Option<StorageKey> {
    bytes_from_hex(hex).map(StorageKey)
}

fn user_key_from_hex(hex: &str) -> Option<UserKey> {
    bytes_from_hex(hex).map(UserKey::from_bytes)
}

/// An expression's attribute names and values, declared exactly (DynamoDB
/// refuses unused ones).
#[derive(Debug, Default, Clone)]
pub(super) struct Params {
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
}

impl Params {
    /// Declares `#name` for the attribute `name`.
    pub(super) fn name(mut self, name: &str) -> Self {
        self.names.insert(format!("#{name}"), name.to_owned());
        self
    }

    /// Declares the value `:name`.
    pub(super) fn value(mut self, name: &str, v: AttributeValue) -> Self {
        self.values.insert(format!(":{name}"), v);
        self
    }
}

/// A condition and what it names.
#[derive(Debug, Clone)]
pub(super) struct Condition {
    pub(super) text: &'static str,
    pub(super) params: Params,
}

impl Condition {
    /// No item under the key, or an expired one (create may take its key).
    pub(super) fn absent_or_expired(now: Timestamp) -> Self {
        Self {
            text: "attribute_not_exists(#pk) OR #exp <= :now",
            params: Params::default()
                .name(PK)
                .name(EXPIRES)
                .value("now", millis(now)),
        }
    }

    /// The live item at `version`.
    pub(super) fn live_at(version: u64, now: Timestamp) -> Self {
        Self {
            text: "#v = :v AND #exp > :now",
            params: Params::default()
                .name(VERSION)
                .name(EXPIRES)
                .value("v", n(version))
                .value("now", millis(now)),
        }
    }

    /// The item at `version`, live or not.
    pub(super) fn at(version: u64) -> Self {
        Self {
            text: "#v = :v",
            params: Params::default().name(VERSION).value("v", n(version)),
        }
    }

    /// A live item of `user`.
    pub(super) fn live_of(user: &UserKey, now: Timestamp) -> Self {
        Self {
            text: "#u = :u AND #exp > :now",
            params: Params::default()
                .name(USER)
                .name(EXPIRES)
                .value("u", s(user.to_hex()))
                .value("now", millis(now)),
        }
    }

    /// An item expired at `now`.
    pub(super) fn expired(now: Timestamp) -> Self {
        Self {
            text: "#exp <= :now",
            params: Params::default().name(EXPIRES).value("now", millis(now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn items_round_trip() {
        let mut r = Record::new(
            Timestamp::from_millis(1_700_000_000_000),
            Duration::from_secs(60),
            Duration::from_secs(3600),
        );
        r.version = 3;
        r.user = Some("alice".into());
        let key = StorageKey([5; 32]);
        let mut item = session_item(&key, &r);
        assert_eq!(session_key_of(&item), Some(key));
        let h = head(&item).ok();
        assert_eq!(h.as_ref().map(|h| h.version), Some(3));
        assert!(h.and_then(|h| h.user) == Some(UserKey::of("alice")));
        item.insert(IDLE.to_owned(), n(1_700_000_030_000));
        let back = decode(&item).ok();
        assert_eq!(
            back.map(|b| b.idle_deadline),
            Some(Timestamp::from_millis(1_700_000_030_000))
        );
        item.insert(VERSION.to_owned(), s("x"));
        assert!(matches!(decode(&item), Err(StoreError::Corrupt(_))));
        let idx = index_item(&UserKey::of("alice"), &key, r.expires_at());
        assert_eq!(indexed_key(&idx), Some(key));
        // TTL seconds round up: never before the deadline.
        assert_eq!(ttl(Timestamp::from_millis(1_001)), n(2));
        assert_eq!(ttl(Timestamp::from_millis(1_000)), n(1));
    }

    #[test]
    fn hex_keys_are_exact() {
        assert!(key_from_hex(&"ab".repeat(32)).is_some());
        for bad in ["", "ab", &"zz".repeat(32), &"é".repeat(32)] {
            assert!(key_from_hex(bad).is_none(), "{bad}");
        }
    }
}
