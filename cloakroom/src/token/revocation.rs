//! What has been revoked, per user, in one store record: the user's
//! revocation epoch (the very record and epoch client-side sessions use)
//! plus the device handles (`sid`) and token IDs (`jti`) denied until
//! their last access token expires (S45). One record per user means one
//! store read per check, and none while the process's copy is fresh.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::client_side::{EPOCH_LIFE, EpochCache, epoch_floor};
use crate::expiry::Timestamp;
use crate::record::Record;
use crate::store::{SessionStore, StoreError};

/// Most denied IDs kept per user; past it the user's epoch is bumped
/// instead, which revokes all their tokens at once (fail closed).
const MAX_DENIED: usize = 512;

/// How often a read-modify-write of the record is retried on contention.
const ATTEMPTS: usize = 16;

/// One user's revocation state as stored.
#[derive(Debug, Clone, Default)]
struct UserState {
    epoch: Option<u64>,
    /// Denied `sid`s and `jti`s, each with the time (ms) it may be forgotten.
    sids: BTreeMap<String, u64>,
    jtis: BTreeMap<String, u64>,
}

impl UserState {
    fn of(record: &Record) -> Result<Self, StoreError> {
        Ok(Self {
            epoch: record.get("epoch").map_err(StoreError::corrupt)?,
            sids: record
                .get("deny_sid")
                .map_err(StoreError::corrupt)?
                .unwrap_or_default(),
            jtis: record
                .get("deny_jti")
                .map_err(StoreError::corrupt)?
                .unwrap_or_default(),
        })
    }

    fn write(&self, record: &mut Record) -> Result<(), StoreError> {
        if let Some(e) = self.epoch {
            record.insert("epoch", &e).map_err(StoreError::other)?;
        }
        record
            .insert("deny_sid", &self.sids)
            .map_err(StoreError::other)?;
        record
            .insert("deny_jti", &self.jtis)
            .map_err(StoreError::other)?;
        Ok(())
    }

    /// Whether this state revokes the token. Only the current epoch is
    /// accepted: an older one was revoked, and a missing or lower stored
    /// epoch means the record was lost (fail closed).
    fn revokes(&self, token: &TokenIds<'_>, now: Timestamp) -> bool {
        let now = now.as_millis();
        let denied = |m: &BTreeMap<String, u64>, id: &str| m.get(id).is_some_and(|u| *u > now);
        self.epoch != Some(token.ep)
            || denied(&self.sids, token.sid)
            || denied(&self.jtis, token.jti)
    }

    fn prune(&mut self, now: Timestamp) {
        let now = now.as_millis();
        self.sids.retain(|_, until| *until > now);
        self.jtis.retain(|_, until| *until > now);
    }
}

/// What identifies a token for revocation: its epoch, device and ID.
pub(crate) struct TokenIds<'a> {
    pub(crate) ep: u64,
    pub(crate) sid: &'a str,
    pub(crate) jti: &'a str,
}

/// What is denied: a device or one token.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Denied<'a> {
    Device(&'a str),
    Token(&'a str),
}

/// The revocation state of every user, in a store, cached for `ttl`.
pub(crate) struct Revocations {
    store: Arc<dyn SessionStore>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (UserState, Timestamp)>>,
}

impl Revocations {
    pub(crate) fn new(store: Arc<dyn SessionStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn load(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Option<(Record, UserState)>, StoreError> {
        match self.store.load(&EpochCache::key(user), now).await? {
            Some(r) => {
                let state = UserState::of(&r)?;
                Ok(Some((r, state)))
            }
            None => Ok(None),
        }
    }

    fn remember(&self, user: &str, state: UserState, now: Timestamp) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(user.to_owned(), (state, now));
    }

    /// The verdict on a token from the cached state, when it is fresh and
    /// not older than the token (judged under the lock, nothing copied).
    fn judge_cached(&self, user: &str, token: &TokenIds<'_>, now: Timestamp) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(user)
            .filter(|(s, at)| now.since(*at) < self.ttl && s.epoch.is_some_and(|e| token.ep <= e))
            .map(|(s, _)| s.revokes(token, now))
    }

    /// Whether a token of `user` with epoch `ep`, device `sid` and ID `jti`
    /// is revoked. A cached state is used while fresh, except that a token
    /// newer than it (signed in since the copy was taken) reads the store.
    pub(crate) async fn is_revoked(
        &self,
        user: &str,
        token: &TokenIds<'_>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        if let Some(verdict) = self.judge_cached(user, token, now) {
            return Ok(verdict);
        }
        let state = self
            .load(user, now)
            .await?
            .map(|(_, s)| s)
            .unwrap_or_default();
        let verdict = state.revokes(token, now);
        self.remember(user, state, now);
        Ok(verdict)
    }

    /// The epoch to issue tokens under, read from the store (never the
    /// cache), creating the record if the user has none.
    pub(crate) async fn epoch_for_issue(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.update(user, now, |_| Ok(())).await
    }

    /// Bumps the user's epoch: every token issued before is revoked.
    pub(crate) async fn bump(&self, user: &str, now: Timestamp) -> Result<u64, StoreError> {
        self.update(user, now, |s| {
            let next = s.epoch.unwrap_or(0).saturating_add(1).max(epoch_floor());
            s.epoch = Some(next);
            Ok(())
        })
        .await
    }

    /// Denies a device or a token of `user` until `until`.
    pub(crate) async fn deny(
        &self,
        user: &str,
        what: Denied<'_>,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.update(user, now, |s| {
            let (map, id) = match what {
                Denied::Device(id) => (&mut s.sids, id),
                Denied::Token(id) => (&mut s.jtis, id),
            };
            let until = until.as_millis();
            let entry = map.entry(id.to_owned()).or_insert(until);
            *entry = (*entry).max(until);
            if s.sids.len() + s.jtis.len() > MAX_DENIED {
                // Too much to list: revoke everything instead.
                s.sids.clear();
                s.jtis.clear();
                s.epoch = Some(s.epoch.unwrap_or(0).saturating_add(1).max(epoch_floor()));
            }
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Reads the user's record, applies `change` and writes it back under
    /// compare-and-swap (creating it at the epoch floor if missing);
    /// returns the epoch now stored.
    async fn update(
        &self,
        user: &str,
        now: Timestamp,
        change: impl Fn(&mut UserState) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let key = EpochCache::key(user);
        for _ in 0..ATTEMPTS {
            let loaded = self.load(user, now).await?;
            let (mut record, mut state, existed) = match loaded {
                Some((r, s)) => (r, s, true),
                None => {
                    let mut r = Record::new(now, EPOCH_LIFE, EPOCH_LIFE);
                    r.version = 1;
                    (r, UserState::default(), false)
                }
            };
            let before = (state.epoch, state.sids.clone(), state.jtis.clone());
            if state.epoch.is_none() {
                state.epoch = Some(epoch_floor());
            }
            state.prune(now);
            change(&mut state)?;
            let epoch = state.epoch.unwrap_or_else(epoch_floor);
            if existed && before == (state.epoch, state.sids.clone(), state.jtis.clone()) {
                self.remember(user, state, now);
                return Ok(epoch);
            }
            state.write(&mut record)?;
            let written = if existed {
                let expected = record.version;
                record.version = expected + 1;
                record.idle_deadline = now.saturating_add(EPOCH_LIFE);
                record.absolute_deadline = now.saturating_add(EPOCH_LIFE);
                self.store.save(&key, &record, expected, now).await
            } else {
                self.store.create(&key, &record, now).await
            };
            match written {
                Ok(()) => {
                    self.remember(user, state, now);
                    return Ok(epoch);
                }
                Err(StoreError::VersionConflict | StoreError::NotFound | StoreError::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::other(
            "could not update the revocation record: too much contention",
        ))
    }
}
