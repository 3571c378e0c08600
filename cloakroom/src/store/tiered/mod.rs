//! Any store as a cache in front of any durable store.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{SessionStore, StoreError, StoreStats, UserSession};
use sha2::{Digest, Sha256};

mod slot;

use self::slot::Slot;

/// How much longer than the cache TTL a tombstone lives: the clock
/// difference between instances the no-delay guarantee tolerates.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(5);

/// Conditional cache writes tried before giving up. Each failed attempt
/// means another writer changed the slot in between; fills stop as soon as
/// they see a tombstone or a copy at least as new as theirs.
const CACHE_WRITE_ATTEMPTS: usize = 4;

/// Any store as a cache in front of any durable store.
///
/// ```
/// use std::sync::Arc;
/// use cloakroom::store::{MemoryStore, TieredStore};
///
/// // In production the durable side is PostgreSQL or SQLite, the cache
/// // Redis (shared) or MemoryStore (per process).
/// let store = TieredStore::new(Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
/// ```
///
/// # Semantics
///
/// * **The durable store is the truth.** It alone decides compare-and-swap,
///   and every operation that ends a session (`delete`, `rotate`,
///   `delete_by_user`) succeeds or fails on the durable store alone: a cache
///   outage never makes a logout fail.
/// * **Read-through**: `load` asks the cache, and on a miss the durable
///   store, then fills the cache.
/// * **Write-through**: `create`, `save` and `touch` go to the durable store
///   first, then refresh the cache. A version conflict refreshes the cached
///   copy from the durable store, so the retry reads the truth.
/// * **Tombstones**: after ending a session in the durable store, the cache
///   slot is overwritten with a tombstone that lives for the cache TTL plus
///   5 s. A tombstone reads as a miss that must not be filled.
///   `delete_by_user` also leaves a *user* tombstone, which every fill of
///   that user's records checks after writing (one more cache read per fill
///   of a signed-in session).
/// * **Gated fills**: a fill only ever inserts into an empty slot or
///   compare-and-swaps over a copy of an *older* version (or a stale copy of
///   the same one); it never overwrites a tombstone or a newer copy.
/// * **Bounded cache lifetime**: a cached copy serves reads at most until
///   the session expires and at most [`TieredStore::with_cache_ttl`]
///   (default 30 s) after the moment its durable read or write *began*.
///
/// # Worst-case revocation delay (S29)
///
/// * **Shared cache** (Redis in front of PostgreSQL, say), reachable, and
///   keeping entries for their TTL: **none**. Once `delete`, `rotate` or
///   `delete_by_user` returns, no instance serves the old record, whatever
///   fills were in flight.
/// * **Everything else**: a **per-process** cache
///   ([`MemoryStore`](super::MemoryStore) in each instance: other instances
///   never see the tombstone), a cache that was unreachable during the
///   revocation (logged as a warning), a cache that evicts under memory
///   pressure (tombstones are small anonymous records, evicted first by a
///   full `MemoryStore`), or clocks more than 5 s apart: a revoked session
///   may be served for **at most the cache TTL after the durable delete**
///   (plus the clock difference between instances). Lower the TTL if that
///   is too long.
///
/// An older version is never cached over a newer one. It can be cached
/// only after the newer copy vanished from the cache (eviction, outage)
/// while a slow fill was in flight, for at most that fill's cache TTL; a
/// save based on it fails with [`StoreError::VersionConflict`], so it costs
/// a retry, never a lost update.
///
/// # Why no fill can resurrect a revoked session
///
/// Take a fill F of key K and a revocation R of K (shared cache):
///
/// * F stamps its copy "fresh until `s + ttl`", where `s` is read *before*
///   F's durable read (or write, for write-through) starts.
/// * R deletes K from the durable store, finishing at `d`, then writes a
///   tombstone computed at `t >= d` that lives until `t + ttl + 5 s`. The
///   tombstone write overwrites whatever the slot holds (insert if empty,
///   else compare-and-swap on the version it saw, retried).
/// * If F's durable read came after the delete it found nothing and fills
///   nothing. Otherwise `s < d`. F's write then lands (1) before the
///   tombstone, and the tombstone overwrites it; (2) while the tombstone
///   lives, and the gate refuses it (an insert finds the slot taken, a
///   compare-and-swap expecting a copy's version finds
///   the tombstone version, which no copy has); or (3) after the
///   tombstone expired, at a time `>= t + ttl + 5 s > s + ttl`, so the copy
///   is already stale when it lands and serves nothing.
/// * Interleavings inside the compare-and-swap loops: a fill and the
///   tombstone writer both read the slot, then write conditionally on what
///   they read. Whichever writes second fails (insert into a taken slot, or
///   a version that changed) and reads again; a fill that then sees the
///   tombstone stops, the tombstone writer never stops short of writing. A
///   fill that replaced a same-version copy between the tombstone writer's
///   read and write does not stop the tombstone either: the version it
///   expects is unchanged.
///
/// Case (3) needs the tombstone to outlive `ttl` on the cache's clock as
/// measured from the filler's clock: the 5 s margin is that allowance. Where
/// the tombstone is missing (outage, eviction, per-process caches), only
/// case (3)'s freshness bound is left, giving `s + ttl < d + ttl`: the
/// documented worst case.
///
/// `delete_by_user` tombstones the keys it listed before its durable delete
/// and the copies the cache lists after it. What neither listing sees is a
/// session filed between the durable listing and the durable delete whose
/// copy lands after the cache listing. For those: R writes the user
/// tombstone (at `t`, after the durable delete) *before* listing the cache,
/// and a fill F of one of the user's records reads the user tombstone
/// *after* its write lands. Either F's write precedes the cache listing
/// (listed, so buried) or F's check follows the user tombstone; a check
/// that finds it with `s < t + 5 s` buries F's own copy. (Over-burying
/// only costs read-throughs: a sign-in within 5 s after "log out
/// everywhere" is not cached for a TTL.) A check after the user tombstone
/// expired is again case (3).
///
/// Versions work the same way: a fill reading version 1 and landing after
/// a save wrote version 2 finds a copy of version 2 (or a tombstone) and
/// stops, since the gate only replaces older versions.
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

    /// How long a cached copy may serve reads after its durable read or
    /// write began: the worst-case revocation delay with a per-process
    /// cache or during a cache outage (see the [type docs](TieredStore)).
    /// Tombstones live this long plus 5 s.
    #[must_use]
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Puts a copy of `record`, read from or written to the durable store in
    /// an operation that began at `began`, into the cache, through the gate
    /// (see the module docs). Best effort: a cache failure only costs a
    /// later miss.
    async fn fill(&self, key: &StorageKey, record: &Record, began: Timestamp) {
        let now = began;
        let fresh_until = began.saturating_add(self.cache_ttl);
        let Some(copy) = slot::copy(record, fresh_until) else {
            return;
        };
        for _ in 0..CACHE_WRITE_ATTEMPTS {
            let held = match self.cache.load(key, now).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::debug!(error = %e, "session cache fill skipped: cache read failed");
                    return;
                }
            };
            let written = match Slot::of(held) {
                Slot::Empty => self.cache.create(key, &copy, now).await,
                Slot::Copy(c) if c.may_be_replaced_by(record, now) => {
                    self.cache.save(key, &copy, c.record.version, now).await
                }
                // A tombstone, or a copy at least as new as ours.
                Slot::Tombstone { .. } | Slot::Copy(_) => return,
            };
            match written {
                Ok(()) => {
                    if let Some(user) = &record.user
                        && self.user_revoked_since(user, began).await
                    {
                        // delete_by_user may have missed this copy: undo it.
                        self.bury_logged(key, now).await;
                    }
                    return;
                }
                Err(e) if e.is_backend_failure() => {
                    tracing::debug!(error = %e, "session cache fill failed");
                    return;
                }
                // The slot changed under us: look again.
                Err(_) => {}
            }
        }
    }

    /// Overwrites the cache slot of a session just ended in the durable
    /// store with a tombstone; see the module docs for why this order.
    async fn bury(&self, key: &StorageKey, now: Timestamp) -> Result<(), StoreError> {
        let ttl = self.cache_ttl.saturating_add(CLOCK_SKEW_ALLOWANCE);
        let stone = slot::tombstone(now, ttl)
            .ok_or_else(|| StoreError::other_in("tiered", "could not build a cache tombstone"))?;
        for _ in 0..CACHE_WRITE_ATTEMPTS {
            let written = match self.cache.load(key, now).await {
                Ok(None) => self.cache.create(key, &stone, now).await,
                Ok(Some(held)) => self.cache.save(key, &stone, held.version, now).await,
                // Unreadable (corrupt) or unreachable: a plain delete below.
                Err(_) => break,
            };
            match written {
                Ok(()) => return Ok(()),
                Err(e) if e.is_backend_failure() => break,
                Err(_) => {}
            }
        }
        // Still contended or failing: at least drop the copy. Any copy
        // filled after this is bounded by its freshness (module docs).
        self.cache.delete(key, now).await
    }

    /// [`bury`](Self::bury), logging a failure: the durable store has ended
    /// the session, which is what the caller is told; a copy the cache
    /// still holds serves at most until its freshness ends.
    async fn bury_logged(&self, key: &StorageKey, now: Timestamp) -> bool {
        match self.bury(key, now).await {
            Ok(()) => true,
            Err(e) => {
                metrics::counter!("cloakroom_cache_tombstone_failures_total").increment(1);
                tracing::warn!(
                    error = %e,
                    cache_ttl_ms = u64::try_from(self.cache_ttl.as_millis()).unwrap_or(u64::MAX),
                    "session cache could not record a revocation; a cached copy may serve reads until its cache TTL ends"
                );
                false
            }
        }
    }

    /// Whether a `delete_by_user(user)` may have ended sessions after an
    /// operation that began at `began` read them (its user tombstone is at
    /// most 5 s older than `began`, the clock allowance).
    async fn user_revoked_since(&self, user: &str, began: Timestamp) -> bool {
        let now = began;
        match self
            .cache
            .load(&user_tombstone_key(user), now)
            .await
            .map(Slot::of)
        {
            Ok(Slot::Tombstone { written_at }) => {
                began < written_at.saturating_add(CLOCK_SKEW_ALLOWANCE)
            }
            _ => false,
        }
    }

    /// Re-reads `key` from the durable store after a write that failed, so
    /// a cached copy the failure proved stale is replaced (or buried).
    async fn refresh(&self, key: &StorageKey, now: Timestamp) {
        let began = now;
        match self.durable.load(key, now).await {
            Ok(Some(record)) => self.fill(key, &record, began).await,
            Ok(None) => {
                self.bury_logged(key, now).await;
            }
            // The durable store is failing too; the copy ages out by itself.
            Err(_) => {}
        }
    }
}

/// Where `delete_by_user(user)` leaves its user tombstone in the cache. A
/// hash of a name no session ID hashes to, so it never meets a session key.
fn user_tombstone_key(user: &str) -> StorageKey {
    let mut h = Sha256::new();
    h.update(b"\x01cloakroom.user-revoked\x00");
    h.update(user.as_bytes());
    StorageKey(h.finalize().into())
}

#[async_trait]
impl SessionStore for TieredStore {
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let began = now;
        self.durable.create(key, record, now).await?;
        self.fill(key, record, began).await;
        Ok(())
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let mut may_fill = true;
        match self.cache.load(key, now).await.map(Slot::of) {
            Ok(Slot::Copy(c)) if c.is_fresh(now) => {
                metrics::counter!("cloakroom_cache_hits_total").increment(1);
                return Ok(Some(c.record));
            }
            Ok(Slot::Tombstone { .. }) => may_fill = false,
            // Empty, or a stale copy the fill below replaces.
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "session cache read failed; reading through"),
        }
        metrics::counter!("cloakroom_cache_misses_total").increment(1);
        let began = now;
        let record = self.durable.load(key, now).await?;
        if may_fill && let Some(r) = &record {
            self.fill(key, r, began).await;
        }
        Ok(record)
    }

    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let began = now;
        match self.durable.save(key, record, expected_version, now).await {
            Ok(()) => {
                self.fill(key, record, began).await;
                Ok(())
            }
            Err(StoreError::NotFound) => {
                // Our cached copy outlived a delete elsewhere.
                self.bury_logged(key, now).await;
                Err(StoreError::NotFound)
            }
            Err(e) => {
                // A conflict means our cached copy is stale; after a backend
                // failure the save may have landed.
                self.refresh(key, now).await;
                Err(e)
            }
        }
    }

    async fn touch(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let result = self.durable.touch(key, idle_deadline, now).await;
        match &result {
            Ok(()) => match self.cache.touch(key, idle_deadline, now).await {
                // Not cached: nothing to refresh. (Touching a tombstone only
                // makes it live longer, which is harmless.)
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(e) => tracing::debug!(error = %e, "session cache touch failed"),
            },
            Err(StoreError::NotFound) => {
                self.bury_logged(key, now).await;
            }
            // The copy's data is still right; its idle deadline ages out.
            Err(_) => {}
        }
        result
    }

    async fn delete(&self, key: &StorageKey, now: Timestamp) -> Result<(), StoreError> {
        let result = self.durable.delete(key, now).await;
        // Even if the durable delete reports a failure it may have happened:
        // a tombstone costs nothing but a read-through.
        self.bury_logged(key, now).await;
        result
    }

    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let began = now;
        let result = self.durable.rotate(old_key, new_key, record, now).await;
        // A conflict changed nothing; any other outcome may have ended the
        // old key.
        if !matches!(result, Err(StoreError::Conflict)) {
            self.bury_logged(old_key, now).await;
        }
        if result.is_ok() {
            self.fill(new_key, record, began).await;
        }
        result
    }

    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        self.durable.list_by_user(user, now).await
    }

    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut doomed: Vec<StorageKey> = self
            .durable
            .list_by_user(user, now)
            .await?
            .into_iter()
            .map(|s| s.key)
            .collect();
        let result = self.durable.delete_by_user(user, except, now).await;
        // Before listing the cache, so that a fill the listing misses sees
        // it (module docs). One failure means the cache is down: the rest
        // would only wait for their own timeouts.
        if !self.bury_logged(&user_tombstone_key(user), now).await {
            return result;
        }
        // Copies of sessions created between the listing and the delete.
        match self.cache.list_by_user(user, now).await {
            Ok(cached) => doomed.extend(cached.into_iter().map(|s| s.key)),
            Err(e) => tracing::debug!(error = %e, "session cache listing failed"),
        }
        doomed.sort_unstable();
        doomed.dedup();
        for key in doomed.iter().filter(|k| Some(*k) != except) {
            if !self.bury_logged(key, now).await {
                break;
            }
        }
        result
    }

    fn is_durable(&self) -> bool {
        // The cache is only a copy: what counts is the durable tier.
        self.durable.is_durable()
    }

    async fn delete_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let _ = self.cache.delete_expired(now).await;
        self.durable.delete_expired(now).await
    }

    /// The durable store's counts: it is the truth, the cache a subset.
    async fn stats(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        self.durable.stats(now).await
    }
}
