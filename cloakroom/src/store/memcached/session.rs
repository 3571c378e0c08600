//! The session operations as memcached command sequences, blocking (the
//! `SessionStore` impl runs them on the blocking pool): `add` for
//! insert-if-absent, `gets` + `cas` for every conditional write.

use super::MemcachedStore;
use super::client::{MAX_CAS_ATTEMPTS, backoff, contention};
use super::item::{EXPIRED_EXPTIME, decode_session, encode_session, exptime, set_idle_deadline};
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::StoreError;

impl MemcachedStore {
    pub(super) fn create_blocking(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let skey = self.session_key(key);
        if !record.is_live(now) {
            // Nothing to store; but a live record there is still a conflict.
            return match self.fetch(&skey)? {
                Some(item) if decode_session(&item.value).is_ok_and(|s| s.is_live(now)) => {
                    Err(StoreError::Conflict)
                }
                _ => Ok(()),
            };
        }
        // Index first: a failure between the two leaves a stale entry, never
        // an unlisted session.
        if let Some(user) = &record.user {
            self.index_upsert(user, key, record.absolute_deadline, now)?;
        }
        let value = encode_session(record.idle_deadline, record);
        let exp = exptime(record.expires_at());
        for attempt in 0..MAX_CAS_ATTEMPTS {
            if self.add(&skey, &value, exp)? {
                return Ok(());
            }
            // Taken. Live, or unreadable: never overwrite. Expired by the
            // millisecond clock though still within its last second in
            // memcached: replace it, guarded by its token.
            match self.fetch(&skey)? {
                None => {}
                Some(item) => match decode_session(&item.value) {
                    Ok(s) if !s.is_live(now) => {
                        if self.cas(&skey, &value, exp, item.cas)? {
                            return Ok(());
                        }
                    }
                    _ => return Err(StoreError::Conflict),
                },
            }
            backoff(attempt);
        }
        Err(contention("create"))
    }

    pub(super) fn load_blocking(
        &self,
        key: &StorageKey,
        now: Timestamp,
    ) -> Result<Option<Record>, StoreError> {
        let Some(item) = self.fetch(&self.session_key(key))? else {
            return Ok(None);
        };
        let stored = decode_session(&item.value)?;
        Ok(stored.is_live(now).then(|| stored.into_record()))
    }

    pub(super) fn save_blocking(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let skey = self.session_key(key);
        let Some(item) = self.fetch(&skey)? else {
            return Err(StoreError::NotFound);
        };
        let current = decode_session(&item.value)?;
        if !current.is_live(now) {
            return Err(StoreError::NotFound);
        }
        if current.record.version != expected_version {
            return Err(StoreError::VersionConflict);
        }
        // Also puts back an entry lost to eviction; a no-op (one read) when
        // the entry is already there.
        if let Some(user) = &record.user {
            self.index_upsert(user, key, record.absolute_deadline, now)?;
        }
        let value = encode_session(record.idle_deadline, record);
        if self.cas(&skey, &value, exptime(record.expires_at()), item.cas)? {
            return Ok(());
        }
        // The token no longer matches: tell a rival save from a deletion.
        match self.fetch(&skey)? {
            None => Err(StoreError::NotFound),
            Some(item) => {
                if decode_session(&item.value)?.is_live(now) {
                    Err(StoreError::VersionConflict)
                } else {
                    Err(StoreError::NotFound)
                }
            }
        }
    }

    pub(super) fn touch_blocking(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let skey = self.session_key(key);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let Some(mut item) = self.fetch(&skey)? else {
                return Err(StoreError::NotFound);
            };
            let current = decode_session(&item.value)?;
            if !current.is_live(now) {
                return Err(StoreError::NotFound);
            }
            // Same record bytes, new deadline header.
            set_idle_deadline(&mut item.value, idle_deadline);
            let exp = exptime(idle_deadline.min(current.record.absolute_deadline));
            if self.cas(&skey, &item.value, exp, item.cas)? {
                return Ok(());
            }
            backoff(attempt);
        }
        Err(contention("touch"))
    }

    pub(super) fn delete_blocking(&self, key: &StorageKey) -> Result<(), StoreError> {
        let skey = self.session_key(key);
        self.call(|c| c.delete(&skey)).map(drop)
    }

    /// S28: files `record` under `new_key` only while a live record is under
    /// `old_key`. The new record is created (and indexed) first, then the
    /// old one is claimed: deleted with `cas` on the token of the live item
    /// read, so a concurrent `delete`, `delete_by_user` or save in between
    /// makes the claim read again. If no live old record is left, the new
    /// one is deleted again and the rotation is `NotFound`. A
    /// `delete_by_user` that reaches the old key after the claim finds the
    /// new key on its next pass (see `delete_by_user_blocking`).
    pub(super) fn rotate_blocking(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        // The new record exists before the old one is gone.
        self.create_blocking(new_key, record, now)?;
        match self.claim_blocking(old_key, now) {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.delete_blocking(new_key)?;
                Err(StoreError::NotFound)
            }
            Err(e) => {
                // Whether the old record went is unknown: take back the new
                // one rather than risk two live sessions.
                if let Err(undo) = self.delete_blocking(new_key) {
                    tracing::warn!(error = %undo, "could not take back a half-done memcached rotation");
                }
                Err(e)
            }
        }
    }

    /// Deletes the record under `key` if it is live; `Ok(false)` if there is
    /// none. Deletes with `cas` (an empty, already expired item) on the
    /// token of the live item read, so it never deletes anything else.
    fn claim_blocking(&self, key: &StorageKey, now: Timestamp) -> Result<bool, StoreError> {
        let skey = self.session_key(key);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let Some(item) = self.fetch(&skey)? else {
                return Ok(false);
            };
            if !decode_session(&item.value)?.is_live(now) {
                return Ok(false);
            }
            if self.cas(&skey, &[], EXPIRED_EXPTIME, item.cas)? {
                return Ok(true);
            }
            backoff(attempt);
        }
        Err(contention("rotate"))
    }
}
