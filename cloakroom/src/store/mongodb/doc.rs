//! What MongoDB holds, field by field: one document per session, the
//! filters that say "live", and the way back to a [`Record`].

use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc};

use super::BACKEND;
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::StoreError;
use crate::store::kit::{UserKey, from_sql_millis, sql_millis};

/// The storage key (32 bytes, binary): unique by MongoDB's own `_id` index,
/// which is what makes `create` insert-if-absent.
pub(super) const ID: &str = "_id";
/// The compare-and-swap counter (int64).
pub(super) const VERSION: &str = "v";
/// The idle deadline (date); `touch` moves it and nothing else.
pub(super) const IDLE: &str = "idle";
/// The absolute deadline (date).
pub(super) const ABSOLUTE: &str = "abs";
/// `[idle, abs]` (dates), the TTL index's field: MongoDB expires a document
/// by the earliest date of an array, so the monitor deletes a session at
/// whichever deadline comes first without a computed field to keep in step.
pub(super) const EXPIRES: &str = "exp";
/// SHA-256 of the user (32 bytes, binary), absent for anonymous sessions;
/// indexed (sparse) for the device list.
pub(super) const USER: &str = "u";
/// The encoded record ([`Record::encode`], binary).
pub(super) const RECORD: &str = "r";

/// The names of the indexes [`MongoStore`](super::MongoStore) creates.
pub(super) const TTL_INDEX: &str = "cloakroom_expiry";
pub(super) const USER_INDEX: &str = "cloakroom_user";

fn binary(bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

/// The last millisecond of the year 9999: later dates are clamped to it.
/// BSON dates reach much further, but Python-backed servers and tools
/// (SecantusDB among them) refuse a date past year 9999 with `BadValue`,
/// and no session lives that long.
const MAX_DATE_MILLIS: i64 = 253_402_300_799_999;

pub(super) fn date(t: Timestamp) -> Bson {
    Bson::DateTime(DateTime::from_millis(sql_millis(t).min(MAX_DATE_MILLIS)))
}

fn version(v: u64) -> Bson {
    Bson::Int64(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The `_id` of `key`.
pub(super) fn id(key: &StorageKey) -> Bson {
    binary(&key.0)
}

/// The indexed user field of `user`.
pub(super) fn user(user: &str) -> Bson {
    binary(UserKey::of(user).as_bytes())
}

/// `{_id: key}`.
pub(super) fn by_id(key: &StorageKey) -> Document {
    doc! { ID: id(key) }
}

/// The fields a session's live document must match: both deadlines still
/// ahead of `now`. Every read and conditional write carries it, because
/// MongoDB's TTL monitor runs only every 60 seconds (and some compatible
/// servers have none).
pub(super) fn live(mut filter: Document, now: Timestamp) -> Document {
    filter.insert(IDLE, doc! { "$gt": date(now) });
    filter.insert(ABSOLUTE, doc! { "$gt": date(now) });
    filter
}

/// Documents past either deadline at `now`: one element of [`EXPIRES`] is
/// not after `now` (served by the TTL index).
pub(super) fn expired(now: Timestamp) -> Document {
    doc! { EXPIRES: { "$lte": date(now) } }
}

/// The fields that change with the record (all but `_id` and the version).
pub(super) fn record_fields(record: &Record) -> Document {
    let mut d = doc! {
        IDLE: date(record.idle_deadline),
        ABSOLUTE: date(record.absolute_deadline),
        EXPIRES: [date(record.idle_deadline), date(record.absolute_deadline)],
        RECORD: binary(&record.encode()),
    };
    if let Some(u) = &record.user {
        d.insert(USER, user(u));
    }
    d
}

/// The whole document of a new session.
pub(super) fn session(key: &StorageKey, record: &Record) -> Document {
    let mut d = doc! { ID: id(key), VERSION: version(record.version) };
    d.extend(record_fields(record));
    d
}

/// The update of a compare-and-swap save: new fields, the user field set
/// or removed, the version moved on by one.
pub(super) fn save_update(record: &Record) -> Document {
    let mut update = doc! {
        "$set": record_fields(record),
        "$inc": { VERSION: 1_i64 },
    };
    if record.user.is_none() {
        update.insert("$unset", doc! { USER: "" });
    }
    update
}

/// The update of `touch`: the idle deadline, in both places it is kept.
pub(super) fn touch_update(idle_deadline: Timestamp) -> Document {
    doc! { "$set": { IDLE: date(idle_deadline), format!("{EXPIRES}.0"): date(idle_deadline) } }
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::corrupt_in(BACKEND, what)
}

/// The record a session document holds, with the stored idle deadline and
/// version laid over the encoded ones (`touch` and `$inc` move only those).
///
/// # Errors
///
/// [`StoreError::Corrupt`] for a document not in the layout above.
pub(super) fn decode(d: &Document) -> Result<Record, StoreError> {
    let bytes = d
        .get_binary_generic(RECORD)
        .map_err(|_| corrupt("session document without its record"))?;
    let idle = d
        .get_datetime(IDLE)
        .map_err(|_| corrupt("session document without its idle deadline"))?;
    let v = d
        .get_i64(VERSION)
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| corrupt("session document without a valid version"))?;
    let mut record = Record::decode(&bytes::Bytes::copy_from_slice(bytes))
        .map_err(|e| StoreError::corrupt_in(BACKEND, e))?;
    record.idle_deadline = from_sql_millis(idle.timestamp_millis());
    record.version = v;
    Ok(record)
}

/// The storage key of a session document.
///
/// # Errors
///
/// [`StoreError::Corrupt`] unless `_id` is 32 bytes of binary.
pub(super) fn key_of(d: &Document) -> Result<StorageKey, StoreError> {
    d.get_binary_generic(ID)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .map(StorageKey)
        .ok_or_else(|| corrupt("session document whose _id is not a storage key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn documents_round_trip_with_the_stored_deadline_and_version() {
        let mut r = Record::new(
            Timestamp::from_millis(1_700_000_000_000),
            Duration::from_secs(60),
            Duration::from_secs(3600),
        );
        r.version = 4;
        r.user = Some("alice".into());
        let key = StorageKey([9; 32]);
        let mut d = session(&key, &r);
        assert_eq!(key_of(&d).ok(), Some(key));
        assert_eq!(decode(&d).ok().map(|b| b.version), Some(4));
        d.insert(IDLE, date(Timestamp::from_millis(1_700_000_100_000)));
        d.insert(VERSION, 5_i64);
        let back = decode(&d).ok();
        assert_eq!(
            back.as_ref().map(|b| b.idle_deadline),
            Some(Timestamp::from_millis(1_700_000_100_000))
        );
        assert_eq!(back.map(|b| b.version), Some(5));
        d.insert(VERSION, -1_i64);
        assert!(matches!(decode(&d), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            decode(&doc! { RECORD: "text" }),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn dates_stop_at_the_year_9999() {
        assert_eq!(
            date(Timestamp::from_millis(u64::MAX)),
            Bson::DateTime(DateTime::from_millis(MAX_DATE_MILLIS))
        );
    }

    #[test]
    fn anonymous_saves_drop_the_user_field() {
        let r = Record::new(Timestamp::from_millis(0), Duration::ZERO, Duration::ZERO);
        let u = save_update(&r);
        assert!(u.get_document("$unset").is_ok());
        assert!(!session(&StorageKey([0; 32]), &r).contains_key(USER));
    }
}
