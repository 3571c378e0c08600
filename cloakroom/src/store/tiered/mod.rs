//! Any store as a cache in front of any durable store.
//!
//! ```
//! use std::sync::Arc;
//! use cloakroom::store::{MemoryStore, TieredStore};
//!
//! // In production the durable side is PostgreSQL or SQLite, the cache
//! // Redis (shared) or MemoryStore (per process).
//! let store = TieredStore::new(Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
//! ```
//!
//! # Semantics
//!
//! * **Read-through**: `load` asks the cache, and on a miss the durable
//!   store, then fills the cache.
//! * **Write-through**: `create`, `save` and `touch` go to the durable store
//!   first (it alone decides compare-and-swap), then refresh the cache. A
//!   version conflict drops the cached copy, so the retry reads the truth.
//! * **Invalidate before acknowledging**: `delete`, `rotate` and
//!   `delete_by_user` remove the cached copies before they return (and once
//!   more after the durable write, to catch a refill that raced them).
//! * **Bounded cache lifetime**: a cached copy lives at most until the
//!   session expires and at most [`TieredStore::with_cache_ttl`] (default
//!   30 s) after it was filled; an expired copy counts as a miss.
//!
//! # Worst-case revocation delay (S29)
//!
//! * With a **shared** cache (Redis in front of PostgreSQL, say) every
//!   instance invalidates the one cache, so a logout or revocation takes
//!   effect everywhere before it is acknowledged.
//! * With a **per-process** cache ([`MemoryStore`](super::MemoryStore) in
//!   each instance), an instance that did not perform the revocation keeps
//!   serving its cached copy for up to the cache TTL. That TTL is the
//!   documented worst-case delay; lower it, or use a shared cache, if that
//!   is too long.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::{self, Record};
use crate::store::{SessionStore, StoreError, UserSession};

/// The reserved data key under which a cached copy carries its own expiry.
/// Keys starting with a control character are refused by
/// [`Session::insert`](crate::Session::insert), so it cannot collide.
const CACHED_UNTIL: &str = "\u{1}cloakroom.cached_until";

/// A cache store in front of a durable store; see the [module docs](self).
#[derive(Clone)]
pub struct TieredStore {
    cache: Arc<dyn SessionStore>,
    durable: Arc<dyn SessionStore>,
    cache_ttl: Duration,
}

impl std::fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore")
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

impl TieredStore {
    /// `cache` in front of `durable`, cached copies living at most 30 s.
    #[must_use]
    pub fn new(cache: Arc<dyn SessionStore>, durable: Arc<dyn SessionStore>) -> Self {
        Self {
            cache,
            durable,
            cache_ttl: Duration::from_secs(30),
        }
    }

    /// How long a cached copy may serve reads after it was filled: the
    /// worst-case revocation delay with a per-process cache.
    #[must_use]
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Puts a copy of `record` in the cache (best effort: a cache failure
    /// only costs a later miss).
    async fn fill(&self, key: &StorageKey, record: &Record) {
        let mut copy = record.clone();
        let until = Timestamp::now().saturating_add(self.cache_ttl);
        match record::encode_value(&until.as_millis()) {
            Ok(bytes) => {
                if copy.insert_raw(CACHED_UNTIL.to_owned(), bytes).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
        let _ = self.cache.delete(key).await;
        if let Err(e) = self.cache.create(key, &copy).await
            && e.is_backend_failure()
        {
            tracing::debug!(error = %e, "session cache fill failed");
        }
    }

    async fn invalidate(&self, key: &StorageKey) {
        if let Err(e) = self.cache.delete(key).await {
            tracing::warn!(error = %e, "session cache invalidation failed");
        }
    }
}

/// A fresh cached copy with its marker removed, or `None` if stale.
fn fresh(mut cached: Record, now: Timestamp) -> Option<Record> {
    let until = cached
        .remove(CACHED_UNTIL)
        .and_then(|b| record::decode_value::<u64>(&b).ok())?;
    (now.as_millis() < until).then_some(cached)
}

#[async_trait]
impl SessionStore for TieredStore {
    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        self.durable.create(key, record).await?;
        self.fill(key, record).await;
        Ok(())
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, StoreError> {
        match self.cache.load(key).await {
            Ok(Some(cached)) => {
                if let Some(record) = fresh(cached, Timestamp::now()) {
                    metrics::counter!("cloakroom_cache_hits_total").increment(1);
                    return Ok(Some(record));
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "session cache read failed; reading through"),
        }
        metrics::counter!("cloakroom_cache_misses_total").increment(1);
        let record = self.durable.load(key).await?;
        if let Some(r) = &record {
            self.fill(key, r).await;
        }
        Ok(record)
    }

    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        match self.durable.save(key, record, expected_version).await {
            Ok(()) => {
                self.fill(key, record).await;
                Ok(())
            }
            Err(e) => {
                // A conflict means our cached copy is stale; a NotFound that
                // it outlived a delete elsewhere.
                self.invalidate(key).await;
                Err(e)
            }
        }
    }

    async fn touch(&self, key: &StorageKey, idle_deadline: Timestamp) -> Result<(), StoreError> {
        let result = self.durable.touch(key, idle_deadline).await;
        match &result {
            Ok(()) => {
                if let Err(StoreError::NotFound) = self.cache.touch(key, idle_deadline).await {
                    // Not cached: nothing to refresh.
                }
            }
            Err(_) => self.invalidate(key).await,
        }
        result
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), StoreError> {
        self.cache.delete(key).await?;
        self.durable.delete(key).await?;
        self.cache.delete(key).await
    }

    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
    ) -> Result<(), StoreError> {
        self.cache.delete(old_key).await?;
        self.durable.rotate(old_key, new_key, record).await?;
        self.cache.delete(old_key).await?;
        self.fill(new_key, record).await;
        Ok(())
    }

    async fn list_by_user(&self, user: &str) -> Result<Vec<UserSession>, StoreError> {
        self.durable.list_by_user(user).await
    }

    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
    ) -> Result<u64, StoreError> {
        let doomed: Vec<StorageKey> = self
            .durable
            .list_by_user(user)
            .await?
            .into_iter()
            .map(|s| s.key)
            .filter(|k| Some(k) != except)
            .collect();
        for key in &doomed {
            self.cache.delete(key).await?;
        }
        let n = self.durable.delete_by_user(user, except).await?;
        for key in &doomed {
            self.cache.delete(key).await?;
        }
        // Sessions created between the listing and the delete.
        let _ = self.cache.delete_by_user(user, except).await;
        Ok(n)
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let _ = self.cache.delete_expired().await;
        self.durable.delete_expired().await
    }
}

#[cfg(test)]
mod test_stores;
#[cfg(test)]
mod tests;
