//! Per-user revocation epochs of client-side sessions: kept in a
//! [`SessionStore`], cached per process, and only ever growing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{SessionStore, StoreError};

/// Per-user revocation epochs, kept in a [`SessionStore`] and cached.
pub(crate) struct EpochCache {
    pub(super) store: Arc<dyn SessionStore>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (u64, Timestamp)>>,
}

impl EpochCache {
    pub(super) fn new(store: Arc<dyn SessionStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The store key of a user's epoch: a hash, so it can never collide
    /// with a session's storage key (those are hashes of random IDs).
    pub(crate) fn key(user: &str) -> StorageKey {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"cloakroom/epoch/v1\0");
        h.update(user.as_bytes());
        StorageKey(h.finalize().into())
    }

    /// Whether a cookie sealed under `epoch` may be used for `user`.
    pub(crate) async fn check(
        &self,
        user: &str,
        epoch: u64,
        now: Timestamp,
    ) -> Result<EpochCheck, StoreError> {
        let cached = self
            .lock()
            .get(user)
            .filter(|(_, at)| now.since(*at) < self.ttl)
            .map(|(e, _)| *e);
        // Only a cached epoch that says "current" or "revoked" is trusted;
        // a cookie newer than the cache (a sign-in elsewhere since it was
        // filled) is checked against the store.
        if let Some(stored) = cached
            && epoch <= stored
        {
            return Ok(EpochCheck::judge(epoch, Some(stored)));
        }
        let stored = self.load(user, now).await?;
        if let Some(stored) = stored {
            self.remember(user, stored, now);
        }
        Ok(EpochCheck::judge(epoch, stored))
    }

    /// The epoch to seal a fresh sign-in under, read from the store (never
    /// the cache). A user without an epoch record gets one, starting at the
    /// current time in microseconds ([`epoch_floor`]): epochs then only grow,
    /// even after the store lost a record, so no cookie sealed before the
    /// loss matches.
    pub(crate) async fn for_login(&self, user: &str, now: Timestamp) -> Result<u64, StoreError> {
        for _ in 0..16 {
            if let Some(epoch) = self.load(user, now).await? {
                self.remember(user, epoch, now);
                return Ok(epoch);
            }
            let start = epoch_floor();
            match self
                .store
                .create(&Self::key(user), &epoch_record(start, now)?, now)
                .await
            {
                Ok(()) => {
                    self.remember(user, start, now);
                    return Ok(start);
                }
                // Another sign-in created it first: read theirs.
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::other(
            "could not read the revocation epoch: too much contention",
        ))
    }

    /// The stored epoch, `None` if the user has no epoch record.
    async fn load(&self, user: &str, now: Timestamp) -> Result<Option<u64>, StoreError> {
        match self.store.load(&Self::key(user), now).await? {
            Some(r) => r
                .get::<u64>("epoch")
                .map_err(StoreError::corrupt)?
                .ok_or_else(|| StoreError::corrupt("epoch record without an epoch"))
                .map(Some),
            None => Ok(None),
        }
    }

    pub(super) async fn bump(&self, user: &str, now: Timestamp) -> Result<u64, StoreError> {
        let key = Self::key(user);
        for _ in 0..16 {
            match self.store.load(&key, now).await? {
                Some(mut r) => {
                    let expected = r.version;
                    let current = r
                        .get::<u64>("epoch")
                        .map_err(StoreError::corrupt)?
                        .ok_or_else(|| StoreError::corrupt("epoch record without an epoch"))?;
                    // Never below the clock either: a record recreated after
                    // a loss starts at the clock, above every epoch set
                    // before (see `epoch_floor`).
                    let next = current.saturating_add(1).max(epoch_floor());
                    r.insert("epoch", &next).map_err(StoreError::other)?;
                    r.version = expected + 1;
                    r.idle_deadline = now.saturating_add(EPOCH_LIFE);
                    r.absolute_deadline = now.saturating_add(EPOCH_LIFE);
                    match self.store.save(&key, &r, expected, now).await {
                        Ok(()) => return Ok(self.remember(user, next, now)),
                        Err(StoreError::VersionConflict | StoreError::NotFound) => continue,
                        Err(e) => return Err(e),
                    }
                }
                None => {
                    // No record (never signed in since epochs were kept, or
                    // lost): start above every epoch a cookie can carry.
                    let start = epoch_floor();
                    match self
                        .store
                        .create(&key, &epoch_record(start, now)?, now)
                        .await
                    {
                        Ok(()) => return Ok(self.remember(user, start, now)),
                        Err(StoreError::Conflict) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(StoreError::other(
            "could not bump the revocation epoch: too much contention",
        ))
    }

    /// Caches `epoch` for `user`, never replacing a newer one: a slow read
    /// must not undo a revocation this process has seen.
    pub(super) fn remember(&self, user: &str, epoch: u64, now: Timestamp) -> u64 {
        let mut cache = self.lock();
        if cache.len() > 100_000 {
            cache.clear();
        }
        let entry = cache.entry(user.to_owned()).or_insert((epoch, now));
        if epoch >= entry.0 {
            *entry = (epoch, now);
        }
        epoch
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Timestamp)>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long an epoch record lives: longer than every session it can revoke
/// (cookies last at most 400 days).
pub(crate) const EPOCH_LIFE: Duration = Duration::from_secs(400 * 24 * 3600);

/// The lowest epoch a record may be given now: the wall clock in
/// microseconds. Every epoch is set to at least the clock, and each bump
/// takes a store round trip (far more than a microsecond), so an epoch
/// record recreated after a loss starts above every epoch set before it and
/// no earlier cookie matches it.
///
/// This is the one place that reads the system clock rather than the
/// configured [`Clock`]: it decides no expiry, and its guarantee (above
/// every epoch ever set, in any process, before a loss) needs real time; a
/// mock clock only ever runs ahead of it, which keeps epochs growing.
pub(crate) fn epoch_floor() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .max(1)
}

/// A fresh epoch record holding `epoch`.
fn epoch_record(epoch: u64, now: Timestamp) -> Result<Record, StoreError> {
    let mut r = Record::new(now, EPOCH_LIFE, EPOCH_LIFE);
    r.version = 1;
    r.insert("epoch", &epoch).map_err(StoreError::other)?;
    Ok(r)
}

/// What a cookie's revocation epoch says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EpochCheck {
    /// Sealed under the user's current epoch: usable.
    Current,
    /// Sealed under an older epoch: revoked.
    Revoked,
    /// The store has no epoch for the user, or an older one than the
    /// cookie's: it lost data. Refused (fail closed).
    Unknown,
}

impl EpochCheck {
    fn judge(cookie: u64, stored: Option<u64>) -> Self {
        match stored {
            Some(s) if cookie == s => Self::Current,
            Some(s) if cookie < s => Self::Revoked,
            _ => Self::Unknown,
        }
    }

    /// Why a cookie was refused, for the log.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Revoked => "revoked (older epoch)",
            Self::Unknown => "revocation state lost (no or older epoch stored); sign in again",
        }
    }
}
