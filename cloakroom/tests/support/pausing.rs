//! A store wrapper that lets a test choose an interleaving: `load` and
//! `list_by_user` can be paused after they have read and before they
//! answer.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tokio::sync::Notify;

use cloakroom::store::{MemoryStore, SessionStore, StoreError, StoreStats, UserSession};
use cloakroom::{Record, StorageKey, Timestamp};

/// A point where an operation can be made to wait, once per
/// [`arm`](Self::arm).
#[derive(Default)]
pub struct Pause {
    armed: AtomicBool,
    /// Notified when an armed operation has reached the point and waits.
    pub reached: Notify,
    /// Notify once to let the waiting operation go on.
    pub resume: Notify,
}

impl Pause {
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    async fn point(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            self.resume.notified().await;
        }
    }
}

/// A [`MemoryStore`] whose `load` and `list_by_user` can be paused after
/// they have read and before they answer: for `load`, the window in which
/// a read-through fill has a durable answer in hand but has not filled the
/// cache yet.
#[derive(Default)]
pub struct PausingStore {
    inner: MemoryStore,
    pub load: Pause,
    pub list: Pause,
}

#[async_trait]
impl SessionStore for PausingStore {
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.create(key, record, now).await
    }
    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let answer = self.inner.load(key, now).await;
        self.load.point().await;
        answer
    }
    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.save(key, record, expected, now).await
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
        old: &StorageKey,
        new: &StorageKey,
        r: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.rotate(old, new, r, now).await
    }
    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        let answer = self.inner.list_by_user(user, now).await;
        self.list.point().await;
        answer
    }
    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.inner.delete_by_user(user, except, now).await
    }
    async fn delete_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.delete_expired(now).await
    }
    async fn stats(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        self.inner.stats(now).await
    }
}
