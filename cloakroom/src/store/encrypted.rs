//! [`EncryptedStore`]: records sealed before they reach any store.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

use crate::crypto::Keyring;
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::{Device, MAX_RECORD_BYTES, Record};
use crate::store::{SessionStore, StoreError, StoreStats, UserSession};

/// The name errors of this wrapper carry (see [`StoreError::backend`]).
const BACKEND: &str = "encrypted";
/// The key purpose of sealed records: its own subkeys, so a record can
/// never be opened as a cookie or a cookie as a record.
const PURPOSE: &str = "cloakroom store record";
/// The one value of a stored record: the sealed original.
const SEALED: &str = "cloakroom.sealed";

/// Any store, with each record's contents encrypted at rest: a dump of the
/// database reveals no session data.
///
/// ```
/// use cloakroom::crypto::{Keyring, MasterKey};
/// use cloakroom::store::{EncryptedStore, MemoryStore};
///
/// // In production: Keyring::from_env() (CLOAKROOM_KEYS).
/// let keys = Keyring::from(MasterKey::generate());
/// let store = EncryptedStore::new(MemoryStore::new(), keys);
/// # let _ = store;
/// ```
///
/// # What is sealed
///
/// Before a record reaches the inner store, the whole record (data, device
/// metadata, deadlines, user) is encoded and sealed with the [`Keyring`]
/// (XChaCha20-Poly1305, fresh nonce, the purpose's own subkeys), with the
/// record's **storage key as associated data**: a sealed record copied to
/// another key does not open. The inner store receives a record that
/// carries the metadata it needs in the clear — version, deadlines and the
/// user (for the per-user index) — and, as its only value, the sealed
/// original; device metadata (user agent, IP address) is only in the
/// sealed part.
///
/// Reading opens the sealed original and lays over it the version and the
/// idle deadline the inner store keeps (`touch` moves the deadline without
/// rewriting the record). A record that does not open (tampered, moved,
/// sealed under a key no longer listed, or written before encryption was
/// enabled) is [`StoreError::Corrupt`], which the session layer treats as
/// no session (S38); so is one whose clear user differs from the sealed
/// one.
///
/// # Keys and rotation
///
/// Records are sealed with the newest key. Put a new key first (keep the
/// old ones listed): records sealed under an older key still open, and
/// each is re-sealed under the new key on its next save. Remove an old key
/// once every record it sealed has expired (the absolute timeout, or the
/// remember-me one), or those sessions end.
///
/// # What is not hidden
///
/// The user (principal id) stays readable, because the inner store's
/// per-user index needs it; use opaque ids if they are sensitive. The
/// deadlines, the version and the record's size are visible too. The idle
/// deadline and the version are not authenticated: someone who can write
/// to the database can keep a session alive (or end it) but cannot read or
/// forge its contents.
///
/// Sealing adds 45 bytes and a second encoding; a record whose stored form
/// would exceed [`MAX_RECORD_BYTES`] is refused with
/// [`StoreError::TooLarge`].
pub struct EncryptedStore<S> {
    inner: S,
    keys: Keyring,
}

impl<S> fmt::Debug for EncryptedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl<S: SessionStore> EncryptedStore<S> {
    /// `inner`, with records sealed under `keys` (newest first).
    #[must_use]
    pub fn new(inner: S, keys: Keyring) -> Self {
        Self { inner, keys }
    }

    /// The store the sealed records go to.
    #[must_use]
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// What the inner store keeps for `record` under `key`.
    fn seal(&self, key: &StorageKey, record: &Record) -> Result<Record, StoreError> {
        let sealed = self
            .keys
            .seal_bytes(PURPOSE, &key.to_hex(), &record.encode())
            .map_err(|e| StoreError::other_in(BACKEND, e))?;
        let mut stored = record.clone();
        stored.clear();
        stored.device = Device::default();
        stored
            .insert_raw(SEALED.to_owned(), Bytes::from(sealed))
            .map_err(|e| StoreError::other_in(BACKEND, e))?;
        let size = stored.encoded_len();
        if size > MAX_RECORD_BYTES {
            return Err(StoreError::TooLarge {
                size,
                limit: MAX_RECORD_BYTES,
            });
        }
        Ok(stored)
    }

    /// The original of what the inner store returned for `key`.
    fn open(&self, key: &StorageKey, stored: Record) -> Result<Record, StoreError> {
        let sealed = stored
            .get_raw(SEALED)
            .ok_or_else(|| StoreError::corrupt_in(BACKEND, "record is not sealed"))?;
        let opened = self
            .keys
            .open_bytes(PURPOSE, &key.to_hex(), sealed.to_vec())
            .map_err(|e| StoreError::corrupt_in(BACKEND, e))?;
        let mut record = Record::decode(&Bytes::from(opened.plaintext))
            .map_err(|e| StoreError::corrupt_in(BACKEND, e))?;
        if record.user != stored.user {
            return Err(StoreError::corrupt_in(
                BACKEND,
                "the stored user differs from the sealed one",
            ));
        }
        record.idle_deadline = stored.idle_deadline;
        record.version = stored.version;
        Ok(record)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: SessionStore> SessionStore for EncryptedStore<S> {
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.create(key, &self.seal(key, record)?, now).await
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError> {
        match self.inner.load(key, now).await? {
            Some(stored) => self.open(key, stored).map(Some),
            None => Ok(None),
        }
    }

    /// Seals `record` under the newest key: a record an older key sealed is
    /// re-sealed here.
    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner
            .save(key, &self.seal(key, record)?, expected_version, now)
            .await
    }

    async fn touch(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.touch(key, idle_deadline, now).await
    }

    async fn delete(&self, key: &StorageKey, now: Timestamp) -> Result<(), StoreError> {
        self.inner.delete(key, now).await
    }

    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        // Sealed for the key it is filed under.
        self.inner
            .rotate(old_key, new_key, &self.seal(new_key, record)?, now)
            .await
    }

    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        self.inner
            .list_by_user(user, now)
            .await?
            .into_iter()
            .map(|s| {
                Ok(UserSession {
                    key: s.key,
                    record: self.open(&s.key, s.record)?,
                })
            })
            .collect()
    }

    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.inner.delete_by_user(user, except, now).await
    }

    fn is_durable(&self) -> bool {
        self.inner.is_durable()
    }

    async fn delete_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.delete_expired(now).await
    }

    /// The inner store's counts of live and signed-in records (deadlines
    /// and user stay readable beside the sealed data). Token families
    /// cannot be told apart without opening every record, which this
    /// administrative read does not do: `token_families` is 0 and `exact`
    /// is `false`.
    async fn stats(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        let inner = self.inner.stats(now).await?;
        let mut stats = StoreStats::new(inner.backend);
        stats.live = inner.live;
        stats.signed_in = inner.signed_in;
        stats.exact = false;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::store::MemoryStore;
    use std::time::Duration;

    fn record() -> Record {
        let mut r = Record::new(
            Timestamp::now(),
            Duration::from_secs(600),
            Duration::from_secs(3600),
        );
        r.version = 1;
        r
    }

    #[test]
    fn sealed_records_open_only_under_their_own_key() -> Result<(), StoreError> {
        let store = EncryptedStore::new(MemoryStore::new(), Keyring::from(MasterKey::generate()));
        let (a, b) = (StorageKey([1; 32]), StorageKey([2; 32]));
        let mut r = record();
        r.insert("secret", "hunter2").map_err(StoreError::other)?;
        let stored = store.seal(&a, &r)?;
        assert_eq!(stored.keys().collect::<Vec<_>>(), [SEALED]);
        assert!(store.open(&a, stored.clone()).is_ok());
        assert!(matches!(
            store.open(&b, stored.clone()),
            Err(StoreError::Corrupt(_))
        ));
        let mut relabelled = stored;
        relabelled.user = Some("mallory".into());
        assert!(matches!(
            store.open(&a, relabelled),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(store.open(&a, r), Err(StoreError::Corrupt(_))));
        Ok(())
    }
}
