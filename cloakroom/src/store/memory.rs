//! An in-process store: fast, bounded, gone when the process ends.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use bytes::Bytes;

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::{MAX_RECORD_BYTES, Record};
use crate::store::{SessionStore, StoreError, StoreStats, UserSession};

mod shard;
mod stats;

use self::shard::{Limits, Room, Shard};

const SHARDS: usize = 64;
const INDEX_SHARDS: usize = 16;

/// Keeps sessions in this process's memory.
///
/// Good for development, tests and single-instance apps that accept losing
/// every session on restart. It is concurrent without a global lock: records
/// live in 64 independently locked shards chosen by the (uniformly random)
/// storage key, and the per-user index in 16 more.
///
/// # Bounded
///
/// Two bounds hold at once, each spread evenly over the shards:
///
/// * at most `max_sessions` records (default one million), and
/// * at most `max_bytes` bytes of encoded
///   records (default 256 MiB): the sum of [`Record::encoded_len`] over the
///   records held, so a client parking large records pushes out other
///   records instead of growing memory.
///
/// When a `create` (or a `save` that grows a record) would break either
/// bound in its shard, the store first drops the shard's expired records;
/// if that is not enough it **evicts records, one at a time: the anonymous
/// session closest to expiry, or, if every session in the shard is signed
/// in, the signed-in session closest to expiry**, until both bounds hold. A
/// flood of new anonymous sessions thus pushes out other anonymous sessions
/// before anyone's sign-in, and can never grow memory past the bounds. A
/// `save` never evicts the record it saves. Expired records are never
/// returned (S23) and are dropped when met, by
/// [`delete_expired`](SessionStore::delete_expired), and by a
/// [`spawn_reaper`](crate::store::spawn_reaper) task if you start one.
///
/// # How much memory
///
/// The byte bound counts the records' encoded bytes. Each record also
/// costs roughly 150-300 bytes of bookkeeping (its key, the map slot and
/// its slack, the allocation, the user index entry of a signed-in
/// session), which the session bound caps. With the defaults the store
/// thus holds at most 256 MiB of records plus up to about 300 MB of
/// bookkeeping, roughly 550 MB in all; size both bounds to your memory.
///
/// ```
/// use cloakroom::store::MemoryStore;
/// // Both bounds are set when the store is made (see `with_limits`).
/// let store = MemoryStore::with_limits(10_000, 64 << 20);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[RwLock<Shard>]>,
    /// Each shard's share of the bounds.
    limits: Limits,
    users: Box<[Mutex<UserIndex>]>,
    /// One per index shard: `rotate` into a user's session and
    /// `delete_by_user` of that user hold it for their whole run (S28).
    user_ops: Box<[Mutex<()>]>,
    user_hasher: std::collections::hash_map::RandomState,
}

type UserIndex = HashMap<String, HashSet<StorageKey, KeyHasher>>;

struct Entry {
    /// The encoded record, as saved (its idle deadline may be stale).
    bytes: Bytes,
    version: u64,
    idle_deadline: Timestamp,
    absolute_deadline: Timestamp,
    user: Option<Arc<str>>,
}

impl Entry {
    fn new(record: &Record) -> Self {
        Self {
            bytes: record.encode(),
            version: record.version,
            idle_deadline: record.idle_deadline,
            absolute_deadline: record.absolute_deadline,
            user: record.user.as_deref().map(Arc::from),
        }
    }
    fn expires_at(&self) -> Timestamp {
        self.idle_deadline.min(self.absolute_deadline)
    }
    fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at()
    }
    fn record(&self) -> Result<Record, StoreError> {
        super::kit::decode_with_idle(&self.bytes, self.idle_deadline)
    }
}

/// Storage keys are SHA-256 outputs of server-generated IDs, already uniform:
/// their first bytes make a fine hash, no SipHash needed.
#[derive(Default)]
struct KeyHash(u64);

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut buf = [0u8; 8];
        let n = bytes.len().min(8);
        buf[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(buf);
    }
}

type KeyHasher = BuildHasherDefault<KeyHash>;

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_sessions", &self.max_sessions())
            .field("max_bytes", &self.max_bytes())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// Default session bound of [`MemoryStore::new`].
    pub const DEFAULT_MAX_SESSIONS: usize = 1_000_000;
    /// Default byte bound of [`MemoryStore::new`]: 256 MiB of encoded
    /// records.
    pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

    /// An empty store holding at most one million sessions and 256 MiB of
    /// encoded records.
    #[must_use]
    pub fn new() -> Self {
        Self::with_limits(Self::DEFAULT_MAX_SESSIONS, Self::DEFAULT_MAX_BYTES)
    }

    /// An empty store holding at most `max_sessions` records (rounded up to
    /// a multiple of 64, at least 64) and `max_bytes` bytes of encoded
    /// records (rounded up to a multiple of 64 and to at least 64 MiB: each
    /// of the 64 shards must be able to hold the largest record,
    /// [`MAX_RECORD_BYTES`], 1 MiB). See the eviction rule in the type's
    /// docs.
    ///
    /// A record larger than one shard's share (only possible above
    /// [`MAX_RECORD_BYTES`], which no store can load back) is refused by
    /// `create` and `save` with [`StoreError::TooLarge`].
    #[must_use]
    pub fn with_limits(max_sessions: usize, max_bytes: usize) -> Self {
        Self::bounded(max_sessions, max_bytes)
    }

    /// The session bound in force (after rounding).
    #[must_use]
    pub fn max_sessions(&self) -> usize {
        self.inner.limits.entries * SHARDS
    }

    /// The byte bound in force (after rounding).
    #[must_use]
    pub fn max_bytes(&self) -> usize {
        self.inner.limits.bytes.saturating_mul(SHARDS)
    }

    fn bounded(max_sessions: usize, max_bytes: usize) -> Self {
        let limits = Limits {
            entries: max_sessions.div_ceil(SHARDS).max(1),
            bytes: max_bytes.div_ceil(SHARDS).max(MAX_RECORD_BYTES),
        };
        let shards = (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect();
        let users = (0..INDEX_SHARDS)
            .map(|_| Mutex::new(HashMap::new()))
            .collect();
        let user_ops = (0..INDEX_SHARDS).map(|_| Mutex::new(())).collect();
        Self {
            inner: Arc::new(Inner {
                shards,
                limits,
                users,
                user_ops,
                user_hasher: std::collections::hash_map::RandomState::new(),
            }),
        }
    }

    /// Number of records held, live or not yet purged.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| read(s).len()).sum()
    }

    /// Whether no records are held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum of the encoded sizes of the records held: what the byte bound
    /// of [`with_limits`](Self::with_limits) bounds.
    #[must_use]
    pub fn encoded_bytes(&self) -> usize {
        self.inner.shards.iter().map(|s| read(s).bytes()).sum()
    }

    /// Every storage key and encoded record held, for tests that check what
    /// a store keeps (S6). Feature `test-util`.
    #[cfg(any(test, feature = "test-util"))]
    #[must_use]
    pub fn dump(&self) -> Vec<(StorageKey, Bytes)> {
        self.inner
            .shards
            .iter()
            .flat_map(|s| {
                read(s)
                    .iter()
                    .map(|(k, e)| (*k, e.bytes.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A panic while holding a shard lock cannot leave an entry half-written
    // (every mutation is a single map operation), so poisoning is ignored.
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    fn shard(&self, key: &StorageKey) -> &RwLock<Shard> {
        &self.shards[Self::shard_slot(key)]
    }

    fn user_slot(&self, user: &str) -> usize {
        usize::try_from(self.user_hasher.hash_one(user) % INDEX_SHARDS as u64).unwrap_or(0)
    }

    fn user_shard(&self, user: &str) -> &Mutex<UserIndex> {
        &self.users[self.user_slot(user)]
    }

    fn user_op(&self, user: &str) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.user_ops[self.user_slot(user)])
    }

    fn shard_slot(key: &StorageKey) -> usize {
        // Byte 8 onward is independent of the bytes the map hashes.
        usize::from(key.0[8]) % SHARDS
    }

    fn index_add(&self, user: &str, key: StorageKey) {
        lock(self.user_shard(user))
            .entry(user.to_owned())
            .or_default()
            .insert(key);
    }

    fn index_remove(&self, user: &str, key: &StorageKey) {
        let mut shard = lock(self.user_shard(user));
        if let Some(set) = shard.get_mut(user) {
            set.remove(key);
            if set.is_empty() {
                shard.remove(user);
            }
        }
    }

    fn index_keys(&self, user: &str) -> Vec<StorageKey> {
        lock(self.user_shard(user))
            .get(user)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    fn drop_index(&self, gone: Vec<(Arc<str>, StorageKey)>) {
        for (user, key) in gone {
            self.index_remove(&user, &key);
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let entry = Entry::new(record);
        self.inner.limits.check_record(&entry)?;
        let mut gone = Vec::new();
        {
            let mut shard = write(self.inner.shard(key));
            if let Some(existing) = shard.get(key) {
                if existing.is_live(now) {
                    return Err(StoreError::Conflict);
                }
                if let Some(u) = &existing.user {
                    gone.push((u.clone(), *key));
                }
                shard.remove(key);
            }
            let room = Room {
                entries: 1,
                bytes: entry.bytes.len(),
            };
            shard.make_room(self.inner.limits, room, None, now, &mut gone);
            shard.insert(*key, entry);
        }
        self.inner.drop_index(gone);
        if let Some(user) = &record.user {
            self.inner.index_add(user, *key);
        }
        Ok(())
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError> {
        {
            let shard = read(self.inner.shard(key));
            match shard.get(key) {
                None => return Ok(None),
                Some(e) if e.is_live(now) => return e.record().map(Some),
                Some(_) => {}
            }
        }
        // Expired: drop it now rather than wait for the reaper.
        self.delete(key, now).await?;
        Ok(None)
    }

    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let entry = Entry::new(record);
        self.inner.limits.check_record(&entry)?;
        let mut gone = Vec::new();
        let old_user = {
            let mut shard = write(self.inner.shard(key));
            let Some(current) = shard.get(key) else {
                return Err(StoreError::NotFound);
            };
            if !current.is_live(now) {
                return Err(StoreError::NotFound);
            }
            if current.version != expected_version {
                return Err(StoreError::VersionConflict);
            }
            let growth = entry.bytes.len().saturating_sub(current.bytes.len());
            let room = Room {
                entries: 0,
                bytes: growth,
            };
            shard.make_room(self.inner.limits, room, Some(key), now, &mut gone);
            shard.insert(*key, entry).and_then(|old| old.user)
        };
        self.inner.drop_index(gone);
        if old_user.as_deref() != record.user.as_deref() {
            if let Some(u) = old_user {
                self.inner.index_remove(&u, key);
            }
            if let Some(u) = &record.user {
                self.inner.index_add(u, *key);
            }
        }
        Ok(())
    }

    async fn touch(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut shard = write(self.inner.shard(key));
        match shard.get_mut(key) {
            Some(e) if e.is_live(now) => {
                e.idle_deadline = idle_deadline;
                Ok(())
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, key: &StorageKey, _now: Timestamp) -> Result<(), StoreError> {
        let removed = write(self.inner.shard(key)).remove(key);
        if let Some(Entry { user: Some(u), .. }) = removed {
            self.inner.index_remove(&u, key);
        }
        Ok(())
    }

    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let entry = Entry::new(record);
        self.inner.limits.check_record(&entry)?;
        let mut gone = Vec::new();
        // S28: a rotation racing `delete_by_user` of the new record's user
        // runs entirely before it (which then finds the new key in the
        // index) or entirely after it (and finds no old record).
        let _user_op = record.user.as_deref().map(|u| self.inner.user_op(u));
        let old_user = {
            // Both shards at once, in slot order (no deadlock): the old
            // record is checked, the new one filed and the old one removed
            // in one step, so a racing `delete` of the old key cannot come
            // in between and no reader sees both or neither.
            let (old_slot, new_slot) = (Inner::shard_slot(old_key), Inner::shard_slot(new_key));
            let (mut first, mut second) = if old_slot == new_slot {
                (write(&self.inner.shards[old_slot]), None)
            } else {
                let (lo, hi) = (old_slot.min(new_slot), old_slot.max(new_slot));
                let lo = write(&self.inner.shards[lo]);
                let hi = write(&self.inner.shards[hi]);
                if old_slot < new_slot {
                    (lo, Some(hi))
                } else {
                    (hi, Some(lo))
                }
            };
            let old_shard: &mut Shard = &mut first;
            // Rotation moves a live record only: never file a destroyed or
            // expired session under a new key.
            let old_user = match old_shard.get(old_key) {
                Some(e) if e.is_live(now) => e.user.clone(),
                _ => return Err(StoreError::NotFound),
            };
            let new_shard: &mut Shard = match second.as_deref_mut() {
                Some(s) => s,
                None => &mut *old_shard,
            };
            if let Some(existing) = new_shard.get(new_key) {
                if existing.is_live(now) {
                    return Err(StoreError::Conflict);
                }
                if let Some(u) = &existing.user {
                    gone.push((u.clone(), *new_key));
                }
                new_shard.remove(new_key);
            }
            // Nothing has changed yet; from here on the rotation happens.
            // The old record goes first, so that when both keys share a
            // shard its bytes count as free room.
            let room = Room {
                entries: 1,
                bytes: entry.bytes.len(),
            };
            first.remove(old_key);
            let new_shard: &mut Shard = match second.as_deref_mut() {
                Some(s) => s,
                None => &mut first,
            };
            new_shard.make_room(self.inner.limits, room, None, now, &mut gone);
            new_shard.insert(*new_key, entry);
            old_user
        };
        self.inner.drop_index(gone);
        if let Some(u) = old_user {
            self.inner.index_remove(&u, old_key);
        }
        // Still under the user's lock: a `delete_by_user` that starts after
        // this rotation finds the new key in the index.
        if let Some(user) = &record.user {
            self.inner.index_add(user, *new_key);
        }
        Ok(())
    }

    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        let mut out = Vec::new();
        for key in self.inner.index_keys(user) {
            let found = {
                let shard = read(self.inner.shard(&key));
                shard
                    .get(&key)
                    .filter(|e| e.is_live(now) && e.user.as_deref() == Some(user))
                    .map(Entry::record)
            };
            match found {
                Some(record) => out.push(UserSession {
                    key,
                    record: record?,
                }),
                // Stale entry (expired, or raced with a delete): clean it.
                None => self.inner.index_remove(user, &key),
            }
        }
        Ok(out)
    }

    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        // Rotations into this user's sessions wait (see `rotate`).
        let _user_op = self.inner.user_op(user);
        let mut n = 0;
        for key in self.inner.index_keys(user) {
            if Some(&key) == except {
                continue;
            }
            let removed = {
                let mut shard = write(self.inner.shard(&key));
                match shard.get(&key) {
                    Some(e) if e.user.as_deref() == Some(user) => shard.remove(&key),
                    _ => None,
                }
            };
            if removed.is_some_and(|e| e.is_live(now)) {
                n += 1;
            }
            self.inner.index_remove(user, &key);
        }
        Ok(n)
    }

    async fn delete_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for shard in &self.inner.shards {
            let mut gone = Vec::new();
            {
                let mut shard = write(shard);
                let before = shard.len();
                shard.retain(|k, e| {
                    let live = e.is_live(now);
                    if !live && let Some(u) = &e.user {
                        gone.push((u.clone(), *k));
                    }
                    live
                });
                n += (before - shard.len()) as u64;
            }
            self.inner.drop_index(gone);
        }
        Ok(n)
    }

    async fn stats(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        Ok(self.inner.stats(now))
    }
}

#[cfg(test)]
mod bound_tests;
#[cfg(test)]
mod tests;
