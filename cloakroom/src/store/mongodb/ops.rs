//! The session operations as MongoDB commands. Each takes the time it
//! judges liveness by, so the caller's clock governs every expiry decision.

use mongodb::bson::{Document, doc};

use super::MongoStore;
use super::doc::{self as d, ID, USER};
use super::error::{is_duplicate_key, mongo_error};
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{StoreError, StoreStats, UserSession};

/// How often `create` goes round when the key is taken by an expired
/// document that vanishes (the TTL monitor, a reaper) while it looks.
const CREATE_ATTEMPTS: usize = 3;
/// Passes `delete_by_user` makes at most while rotations keep filing new
/// sessions for the user; past it the call reports the churn.
const MAX_DELETE_PASSES: usize = 10;

impl MongoStore {
    pub(super) async fn create_at(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let doc = d::session(key, record);
        for _ in 0..CREATE_ATTEMPTS {
            match self.coll.insert_one(&doc).await {
                Ok(_) => return Ok(()),
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => return Err(mongo_error(e)),
            }
            // Taken. An expired document the TTL monitor has not reached
            // yet is replaced, guarded by the filter; a live one never is.
            let replaced = self
                .coll
                .replace_one(expired_with_id(key, now), &doc)
                .await
                .map_err(mongo_error)?;
            if replaced.matched_count == 1 {
                return Ok(());
            }
            if self.find_live(key, now).await?.is_some() {
                return Err(StoreError::Conflict);
            }
            // Gone between the insert and the replace: insert again.
        }
        // Every attempt found the key taken when it inserted, and freed by
        // the time it looked again: other writers are creating and
        // deleting under this key (a contended lease, say). Taken at the
        // moment of each insert is a collision under the contract.
        Err(StoreError::Conflict)
    }

    async fn find_live(
        &self,
        key: &StorageKey,
        now: Timestamp,
    ) -> Result<Option<Document>, StoreError> {
        self.coll
            .find_one(d::live(d::by_id(key), now))
            .await
            .map_err(mongo_error)
    }

    pub(super) async fn load_at(
        &self,
        key: &StorageKey,
        now: Timestamp,
    ) -> Result<Option<Record>, StoreError> {
        self.find_live(key, now)
            .await?
            .map(|doc| d::decode(&doc))
            .transpose()
    }

    pub(super) async fn save_at(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut filter = d::by_id(key);
        filter.insert(
            d::VERSION,
            i64::try_from(expected_version).unwrap_or(i64::MAX),
        );
        let updated = self
            .coll
            .update_one(d::live(filter, now), d::save_update(record))
            .await
            .map_err(mongo_error)?;
        if updated.matched_count == 1 {
            return Ok(());
        }
        // Nothing matched: a live document at another version is a rival
        // save; no live document means deleted, rotated away or expired.
        match self.find_live(key, now).await? {
            Some(_) => Err(StoreError::VersionConflict),
            None => Err(StoreError::NotFound),
        }
    }

    pub(super) async fn touch_at(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let updated = self
            .coll
            .update_one(d::live(d::by_id(key), now), d::touch_update(idle_deadline))
            .await
            .map_err(mongo_error)?;
        if updated.matched_count == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    pub(super) async fn delete_key(&self, key: &StorageKey) -> Result<(), StoreError> {
        self.majority
            .delete_one(d::by_id(key))
            .await
            .map(drop)
            .map_err(mongo_error)
    }

    /// S28: the new record is inserted first (so it exists before the old
    /// one is gone), then the old one is deleted only while it is live. If
    /// it was not, the new one is taken back and the rotation is
    /// `NotFound`. A `delete_by_user` racing this finds the new record on
    /// its next pass (see [`delete_by_user_at`](Self::delete_by_user_at)).
    pub(super) async fn rotate_at(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.create_at(new_key, record, now).await?;
        let claimed = self
            .majority
            .delete_one(d::live(d::by_id(old_key), now))
            .await;
        match claimed {
            Ok(r) if r.deleted_count == 1 => Ok(()),
            Ok(_) => {
                self.delete_key(new_key).await?;
                Err(StoreError::NotFound)
            }
            Err(e) => {
                // Whether the old record went is unknown: take back the new
                // one rather than risk two live sessions.
                if let Err(undo) = self.delete_key(new_key).await {
                    tracing::warn!(error = %undo, "could not take back a half-done MongoDB rotation");
                }
                Err(mongo_error(e))
            }
        }
    }

    pub(super) async fn list_by_user_at(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        let mut cursor = self
            .coll
            .find(d::live(doc! { USER: d::user(user) }, now))
            .await
            .map_err(mongo_error)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(mongo_error)? {
            let doc: Document = cursor.deserialize_current().map_err(mongo_error)?;
            let record = d::decode(&doc)?;
            // The field is a hash of the user; the record says who it is.
            if record.user.as_deref() == Some(user) {
                out.push(UserSession {
                    key: d::key_of(&doc)?,
                    record,
                });
            }
        }
        Ok(out)
    }

    /// Deletes the user's live sessions with one `deleteMany` per pass, at
    /// least two passes and then until a pass finds nothing: a rotation
    /// that deleted its old record while a pass was under way filed its new
    /// record before that, so the next pass sees it (S28).
    pub(super) async fn delete_by_user_at(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut filter = doc! { USER: d::user(user) };
        if let Some(keep) = except {
            filter.insert(ID, doc! { "$ne": d::id(keep) });
        }
        let filter = d::live(filter, now);
        let mut total = 0;
        for pass in 0..MAX_DELETE_PASSES {
            let deleted = self
                .majority
                .delete_many(filter.clone())
                .await
                .map_err(mongo_error)?
                .deleted_count;
            total += deleted;
            if deleted == 0 && pass >= 1 {
                return Ok(total);
            }
        }
        Err(StoreError::unavailable_in(
            super::BACKEND,
            "sessions of the user kept appearing while they were being deleted; try again",
        ))
    }

    /// Every live document, streamed in the driver's batches and decoded
    /// (token families are known only from the record's data).
    pub(super) async fn stats_at(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        let mut cursor = self
            .coll
            .find(d::live(doc! {}, now))
            .await
            .map_err(mongo_error)?;
        let mut stats = StoreStats::new(super::BACKEND);
        while cursor.advance().await.map_err(mongo_error)? {
            let doc: Document = cursor.deserialize_current().map_err(mongo_error)?;
            match d::decode(&doc) {
                Ok(record) => stats.count(&record, now),
                Err(_) => stats.exact = false,
            }
        }
        Ok(stats)
    }

    pub(super) async fn delete_expired_at(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.coll
            .delete_many(d::expired(now))
            .await
            .map(|r| r.deleted_count)
            .map_err(mongo_error)
    }
}

/// `{_id: key}` for a document already expired at `now`.
fn expired_with_id(key: &StorageKey, now: Timestamp) -> Document {
    let mut filter = d::expired(now);
    filter.insert(ID, d::id(key));
    filter
}
