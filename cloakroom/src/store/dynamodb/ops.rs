//! The session operations as DynamoDB requests. Each takes the time it
//! judges liveness by, so the caller's clock governs every expiry decision.
//! Reads are strongly consistent; a session and its index item are written
//! in one transaction.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::DynamoStore;
use super::error::{build_error, sdk_error};
use super::item::{
    self as it, Condition, Head, Item, PK, Params, SK, TTL, check_size, head, index_item,
    index_key, session_item, session_key,
};
use super::write::{Outcome, Write};
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::kit::UserKey;
use crate::store::{StoreError, UserSession};

/// How often an operation reads again when its conditional write lost to a
/// concurrent change it can retry past (a touch racing a save, say).
const ATTEMPTS: usize = 5;
/// Passes `delete_by_user` makes at most while rotations keep filing new
/// sessions for the user; past it the call reports the churn.
const MAX_DELETE_PASSES: usize = 10;
/// BatchGetItem's limit on keys per request.
const BATCH_GET: usize = 100;

fn contention(what: &str) -> StoreError {
    StoreError::unavailable_in(
        super::BACKEND,
        format!("{what} kept losing to concurrent changes of the session"),
    )
}

impl DynamoStore {
    /// The session item under `key`, read strongly consistently.
    async fn read(&self, key: &StorageKey) -> Result<Option<Item>, StoreError> {
        self.client
            .get_item()
            .table_name(self.table.as_ref())
            .set_key(Some(session_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map(|r| r.item)
            .map_err(sdk_error)
    }

    async fn read_head(&self, key: &StorageKey) -> Result<Option<Head>, StoreError> {
        self.read(key).await?.as_ref().map(head).transpose()
    }

    /// The writes that file `record` under `key` as a new session.
    fn file(key: &StorageKey, record: &Record, now: Timestamp) -> Vec<Write> {
        let mut writes = vec![Write::Put {
            item: session_item(key, record),
            condition: Some(Condition::absent_or_expired(now)),
        }];
        if let Some(user) = &record.user {
            writes.push(Write::Put {
                item: index_item(&UserKey::of(user), key, record.expires_at()),
                condition: None,
            });
        }
        writes
    }

    pub(super) async fn create_at(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        check_size(record)?;
        match self.write(Self::file(key, record, now)).await? {
            Outcome::Done => Ok(()),
            Outcome::ConditionFailed(_) => Err(StoreError::Conflict),
        }
    }

    pub(super) async fn load_at(
        &self,
        key: &StorageKey,
        now: Timestamp,
    ) -> Result<Option<Record>, StoreError> {
        let Some(item) = self.read(key).await? else {
            return Ok(None);
        };
        // DynamoDB's TTL deletes "within a few days": the deadline decides.
        if !head(&item)?.is_live(now) {
            return Ok(None);
        }
        it::decode(&item).map(Some)
    }

    pub(super) async fn save_at(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        check_size(record)?;
        let new_user = record.user.as_deref().map(UserKey::of);
        for _ in 0..ATTEMPTS {
            let Some(current) = self.read_head(key).await? else {
                return Err(StoreError::NotFound);
            };
            if !current.is_live(now) {
                return Err(StoreError::NotFound);
            }
            if current.version != expected_version {
                return Err(StoreError::VersionConflict);
            }
            let mut writes = vec![Write::Put {
                item: session_item(key, record),
                condition: Some(Condition::live_at(expected_version, now)),
            }];
            if let Some(user) = &new_user {
                writes.push(Write::Put {
                    item: index_item(user, key, record.expires_at()),
                    condition: None,
                });
            }
            if let Some(old) = current.user.filter(|old| Some(*old) != new_user) {
                writes.push(Write::Delete {
                    key: index_key(&old, key),
                    condition: None,
                });
            }
            match self.write(writes).await? {
                Outcome::Done => return Ok(()),
                // A rival save or a deletion came between: read again to
                // tell which.
                Outcome::ConditionFailed(_) => {}
            }
        }
        Err(contention("save"))
    }

    pub(super) async fn touch_at(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let Some(current) = self.read_head(key).await? else {
                return Err(StoreError::NotFound);
            };
            if !current.is_live(now) {
                return Err(StoreError::NotFound);
            }
            let expires = idle_deadline.min(current.absolute);
            let mut writes = vec![Write::Update {
                key: session_key(key),
                update: "SET #idle = :idle, #exp = :exp, #ttl = :ttl",
                params: Params::default()
                    .name(it::IDLE)
                    .name(it::EXPIRES)
                    .name(TTL)
                    .value("idle", it::millis(idle_deadline))
                    .value("exp", it::millis(expires))
                    .value("ttl", it::ttl(expires)),
                condition: Some(Condition::live_at(current.version, now)),
            }];
            if let Some(user) = &current.user {
                // Also puts back a missing index item.
                writes.push(Write::Update {
                    key: index_key(user, key),
                    update: "SET #ttl = :ttl",
                    params: Params::default().name(TTL).value("ttl", it::ttl(expires)),
                    condition: None,
                });
            }
            match self.write(writes).await? {
                Outcome::Done => return Ok(()),
                Outcome::ConditionFailed(_) => {}
            }
        }
        Err(contention("touch"))
    }

    pub(super) async fn delete_key(&self, key: &StorageKey) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let Some(current) = self.read_head(key).await? else {
                return Ok(());
            };
            let mut writes = vec![Write::Delete {
                key: session_key(key),
                condition: Some(Condition::at(current.version)),
            }];
            if let Some(user) = &current.user {
                writes.push(Write::Delete {
                    key: index_key(user, key),
                    condition: None,
                });
            }
            match self.write(writes).await? {
                Outcome::Done => return Ok(()),
                Outcome::ConditionFailed(_) => {}
            }
        }
        Err(contention("delete"))
    }

    /// S28: one transaction files the new session (and its index item) and
    /// deletes the old one (and its index item) on the condition that it is
    /// still live at the version read, so the rotation is all or nothing.
    pub(super) async fn rotate_at(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        check_size(record)?;
        for _ in 0..ATTEMPTS {
            let Some(old) = self.read_head(old_key).await? else {
                return Err(StoreError::NotFound);
            };
            if !old.is_live(now) {
                return Err(StoreError::NotFound);
            }
            let mut writes = Self::file(new_key, record, now);
            let claim = writes.len();
            writes.push(Write::Delete {
                key: session_key(old_key),
                condition: Some(Condition::live_at(old.version, now)),
            });
            if let Some(user) = &old.user {
                writes.push(Write::Delete {
                    key: index_key(user, old_key),
                    condition: None,
                });
            }
            match self.write(writes).await? {
                Outcome::Done => return Ok(()),
                Outcome::ConditionFailed(0) => return Err(StoreError::Conflict),
                // The old session changed, went or expired: read again.
                Outcome::ConditionFailed(i) if i == claim => {}
                Outcome::ConditionFailed(_) => {
                    return Err(StoreError::other_in(
                        super::BACKEND,
                        "a rotation failed on a write without a condition",
                    ));
                }
            }
        }
        Err(contention("rotate"))
    }

    /// The storage keys in `user`'s index items.
    async fn indexed(&self, user: &UserKey) -> Result<Vec<StorageKey>, StoreError> {
        let mut keys = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(self.table.as_ref())
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", it::index_partition(user))
                .projection_expression("#sk")
                .expression_attribute_names("#sk", SK)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            keys.extend(page.items().iter().filter_map(it::indexed_key));
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(keys),
            }
        }
    }

    /// The session items under `keys`, strongly consistent, in batches.
    async fn read_many(&self, keys: &[StorageKey]) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(BATCH_GET) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.iter().map(session_key).collect()))
                    .consistent_read(true)
                    .build()
                    .map_err(build_error)?,
            );
            let mut rounds = 0u32;
            while let Some(request) = pending.take() {
                let reply = self
                    .client
                    .batch_get_item()
                    .request_items(self.table.as_ref(), request)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                if let Some(mut found) = reply.responses {
                    out.extend(found.remove(self.table.as_ref()).unwrap_or_default());
                }
                pending = reply
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(self.table.as_ref()))
                    .filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    rounds += 1;
                    if rounds > 8 {
                        return Err(StoreError::unavailable_in(
                            super::BACKEND,
                            "BatchGetItem kept leaving keys unprocessed (throttled)",
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(10 << rounds.min(6))).await;
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn list_by_user_at(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        let keys = self.indexed(&UserKey::of(user)).await?;
        let mut out = Vec::new();
        for item in self.read_many(&keys).await? {
            if !head(&item)?.is_live(now) {
                continue;
            }
            let record = it::decode(&item)?;
            // A stale index item (its key reused by another user's session)
            // lists nothing: the record says whose it is.
            if record.user.as_deref() != Some(user) {
                continue;
            }
            let Some(key) = it::session_key_of(&item) else {
                return Err(StoreError::corrupt_in(
                    super::BACKEND,
                    "session item whose key is not a storage key",
                ));
            };
            out.push(UserSession { key, record });
        }
        Ok(out)
    }

    /// Deletes each indexed session that is live and still the user's,
    /// with its index item, pass after pass: at least two, then until a
    /// pass finds no index item. A query is not isolated from a rotation's
    /// transaction, but a rotation that committed while one pass read is
    /// seen whole by the next (S28).
    pub(super) async fn delete_by_user_at(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let ukey = UserKey::of(user);
        let mut total = 0;
        for pass in 0..MAX_DELETE_PASSES {
            let keys: Vec<StorageKey> = self
                .indexed(&ukey)
                .await?
                .into_iter()
                .filter(|k| Some(k) != except)
                .collect();
            if keys.is_empty() && pass >= 1 {
                return Ok(total);
            }
            for key in keys {
                let writes = vec![
                    Write::Delete {
                        key: session_key(&key),
                        condition: Some(Condition::live_of(&ukey, now)),
                    },
                    Write::Delete {
                        key: index_key(&ukey, &key),
                        condition: None,
                    },
                ];
                match self.write(writes).await? {
                    Outcome::Done => total += 1,
                    // Not live, or no longer this user's: the index item
                    // is stale; drop it alone.
                    Outcome::ConditionFailed(_) => {
                        self.write(vec![Write::Delete {
                            key: index_key(&ukey, &key),
                            condition: None,
                        }])
                        .await?;
                    }
                }
            }
        }
        Err(StoreError::unavailable_in(
            super::BACKEND,
            "sessions of the user kept appearing while they were being deleted; try again",
        ))
    }

    /// Scans for expired session items and deletes each with its index
    /// item (on the condition that it is still expired, so a key taken by a
    /// new session meanwhile is left alone).
    pub(super) async fn delete_expired_at(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut deleted = 0;
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(self.table.as_ref())
                .filter_expression("#exp <= :now")
                .expression_attribute_names("#exp", it::EXPIRES)
                .expression_attribute_values(":now", AttributeValue::N(now.as_millis().to_string()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in page.items() {
                let Some(key) = it::session_key_of(item) else {
                    continue;
                };
                let current = head(item)?;
                let mut writes = vec![Write::Delete {
                    key: session_key(&key),
                    condition: Some(Condition::expired(now)),
                }];
                if let Some(user) = &current.user {
                    writes.push(Write::Delete {
                        key: index_key(user, &key),
                        condition: None,
                    });
                }
                if let Outcome::Done = self.write(writes).await? {
                    deleted += 1;
                }
            }
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(deleted),
            }
        }
    }
}
