//! Saving a session's changes: one compare-and-swap when nothing else of
//! this process is saving the session, group commit when something is.
//! Plain functions over (store, key, change set, limits); the lanes are
//! owned by the server mode.
//!
//! # Group commit
//!
//! Concurrent requests writing the same session would otherwise race their
//! compare-and-swap saves: all but one fail, reload and retry, and under a
//! burst (64 requests on one session) the retries multiply store round trips.
//! Once a save conflicts, or while another save of the session is under way,
//! a request files its change set in the session's lane instead. One of the
//! waiting requests at a time leads: it takes every change set filed so far,
//! applies them in filing order (per-key, the later one wins) on top of the
//! record this process last saved (or a fresh load), and commits them with
//! one compare-and-swap. Every request in the batch then gets the committed
//! record. Conflicts only arise between processes, where the
//! compare-and-swap and per-key merge still decide.
//!
//! A leader that is cancelled (its client went away) drops the batch's
//! replies; those requests notice and file their change sets again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::state::ChangeSet;
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{SessionStore, StoreError};

/// How often a save is retried after a version conflict. Each retry is a
/// reload plus a per-key merge, so even 64 requests writing one session at
/// once all land.
const MAX_SAVE_ATTEMPTS: u32 = 64;

const SHARDS: usize = 64;

/// What became of a change set filed in a lane.
#[derive(Debug)]
pub(crate) enum Saved {
    /// Committed: the record as saved.
    Record(Record),
    /// The session is gone (deleted, rotated away or expired).
    Gone,
    /// The commit failed.
    Failed(StoreError),
}

/// A change set waiting in a lane.
pub(crate) struct Waiter {
    pub(crate) changes: ChangeSet,
    pub(crate) reply: oneshot::Sender<Saved>,
}

/// The lane of one session.
#[derive(Default)]
pub(crate) struct Lane {
    queue: Mutex<Vec<Waiter>>,
    /// Held by the request committing a batch; holds the last record this
    /// process saved for the session, so the next batch needs no load.
    pub(crate) leader: tokio::sync::Mutex<Option<Record>>,
}

impl Lane {
    /// Files a change set.
    pub(crate) fn file(&self, waiter: Waiter) {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(waiter);
    }

    /// Takes every change set filed so far, in filing order.
    pub(crate) fn take(&self) -> Vec<Waiter> {
        std::mem::take(
            &mut *self
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

type Shard = HashMap<StorageKey, Arc<Lane>>;

/// Lanes by session key, created on demand and dropped when idle.
pub(crate) struct SaveLanes {
    shards: Box<[Mutex<Shard>]>,
}

impl SaveLanes {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &StorageKey) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[usize::from(key.0[1]) % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lane for `key`, held until the returned guard is dropped: on
    /// every path, including a request future cancelled mid-save, so an
    /// idle lane (which may hold a whole record) never outlives its users.
    pub(crate) fn lane(&self, key: &StorageKey) -> LaneGuard<'_> {
        let lane = self.shard(key).entry(*key).or_default().clone();
        LaneGuard {
            lanes: self,
            key: *key,
            lane: Some(lane),
        }
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }
}

/// A request's hold on a session's lane; dropping it gives the lane back.
pub(crate) struct LaneGuard<'a> {
    lanes: &'a SaveLanes,
    key: StorageKey,
    /// `Some` until dropped.
    lane: Option<Arc<Lane>>,
}

impl LaneGuard<'_> {
    /// Whether another request of this process holds the lane too (is
    /// saving or about to save the same session). A hint: it may change at
    /// once.
    pub(crate) fn shared(&self) -> bool {
        // The map's reference and ours.
        self.lane.as_ref().is_some_and(|l| Arc::strong_count(l) > 2)
    }
}

impl std::ops::Deref for LaneGuard<'_> {
    type Target = Lane;

    fn deref(&self) -> &Lane {
        match &self.lane {
            Some(lane) => lane,
            // `lane` is only taken in `drop`.
            None => unreachable!("a lane guard is used after drop"),
        }
    }
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        // Our reference is dropped *under the shard lock*, and references
        // are only handed out under it, so a count of one (the map's) seen
        // here means nobody holds or is about to take the lane. Counting
        // before dropping ours, or outside the lock, lets two releasing
        // requests each see the other and both leave the entry behind.
        let mut shard = self.lanes.shard(&self.key);
        drop(self.lane.take());
        if shard
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            shard.remove(&self.key);
        }
    }
}

/// Where a save goes and what it may write.
pub(crate) struct Target<'a> {
    pub(crate) store: &'a dyn SessionStore,
    pub(crate) lanes: &'a SaveLanes,
    pub(crate) max_record_bytes: usize,
}

/// What became of a save.
pub(crate) enum Committed {
    /// Saved: the record as it now is in the store.
    Saved(Record),
    /// The session was destroyed or rotated away meanwhile: the changes are
    /// dropped, never resurrecting it (S28).
    Gone,
}

impl Target<'_> {
    /// Refuses a record over the configured size (413, not an outage).
    pub(crate) fn check_size(&self, record: &Record) -> Result<(), StoreError> {
        let size = record.encoded_len();
        let limit = self.max_record_bytes;
        if size > limit {
            return Err(StoreError::TooLarge { size, limit });
        }
        Ok(())
    }
}

/// Saves `changes` on top of `base` (the record as loaded) under `key`.
///
/// # Errors
///
/// [`StoreError::TooLarge`] if the result is over the limit, or the
/// store's failure.
pub(crate) async fn save(
    target: &Target<'_>,
    key: StorageKey,
    base: &Record,
    changes: &ChangeSet,
    now: Timestamp,
) -> Result<Committed, StoreError> {
    // Holding the lane (even on the fast path) tells concurrent saves of
    // this session to batch up instead of racing this one.
    let lane = target.lanes.lane(&key);
    if !lane.shared() {
        // Fast path: one compare-and-swap, no coordination.
        let next = next_record(base, changes, now);
        target.check_size(&next)?;
        match timed("save", target.store.save(&key, &next, base.version, now)).await {
            Ok(()) => return Ok(Committed::Saved(next)),
            Err(StoreError::VersionConflict) => {
                metrics::counter!("cloakroom_cas_conflicts_total").increment(1);
            }
            Err(StoreError::NotFound) => return Ok(Committed::Gone),
            Err(e) => return Err(e),
        }
    }
    // Contended: commit together with this process's other saves of the
    // session (see "Group commit" above).
    match save_in_lane(target, &lane, key, now, changes).await {
        Saved::Record(record) => Ok(Committed::Saved(record)),
        Saved::Gone => Ok(Committed::Gone),
        Saved::Failed(e) => Err(e),
    }
}

/// `base` with `changes` applied, as the next version.
fn next_record(base: &Record, changes: &ChangeSet, now: Timestamp) -> Record {
    let mut next = base.clone();
    changes.apply(&mut next);
    next.version = base.version + 1;
    next.idle_deadline = now.saturating_add(next.idle_timeout);
    next
}

/// Files this request's changes in the session's lane and waits until a
/// batch holding them is committed, leading a batch when no one else is.
async fn save_in_lane(
    target: &Target<'_>,
    lane: &Lane,
    key: StorageKey,
    now: Timestamp,
    changes: &ChangeSet,
) -> Saved {
    enum Next<'a> {
        Done(Saved),
        Refile,
        Lead(tokio::sync::MutexGuard<'a, Option<Record>>),
    }
    loop {
        let (reply, mut rx) = oneshot::channel();
        lane.file(Waiter {
            changes: changes.clone(),
            reply,
        });
        let next = tokio::select! {
            biased;
            r = &mut rx => match r {
                Ok(saved) => Next::Done(saved),
                // The leader holding our changes was cancelled.
                Err(_) => Next::Refile,
            },
            guard = lane.leader.lock() => Next::Lead(guard),
        };
        let mut last_saved = match next {
            Next::Done(saved) => return saved,
            Next::Refile => continue,
            Next::Lead(guard) => guard,
        };
        // The previous leader may have committed our changes already.
        match rx.try_recv() {
            Ok(saved) => return saved,
            Err(oneshot::error::TryRecvError::Closed) => continue,
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let batch = lane.take();
        commit_batch(target, &mut last_saved, key, now, batch).await;
        drop(last_saved);
        match rx.try_recv() {
            Ok(saved) => return saved,
            Err(_) => continue,
        }
    }
}

/// Commits a batch of change sets with one compare-and-swap (more on
/// conflicts with other processes) and answers every request in it.
async fn commit_batch(
    target: &Target<'_>,
    last_saved: &mut Option<Record>,
    key: StorageKey,
    now: Timestamp,
    batch: Vec<Waiter>,
) {
    fn answer_all(batch: Vec<Waiter>, outcome: &Result<Option<Record>, Arc<StoreError>>) {
        for w in batch {
            let saved = match outcome {
                Ok(Some(r)) => Saved::Record(r.clone()),
                Ok(None) => Saved::Gone,
                Err(e) => Saved::Failed(StoreError::share(e)),
            };
            let _ = w.reply.send(saved);
        }
    }
    let store = target.store;
    let mut base = match last_saved.take() {
        Some(r) => Ok(Some(r)),
        None => timed("load", store.load(&key, now)).await,
    };
    for attempt in 0..MAX_SAVE_ATTEMPTS {
        let record = match base {
            // The ID was renewed meanwhile (S21): dropped, as after a
            // rotation (S28).
            Ok(Some(r)) if super::renewal::forward_of(&r).is_some() => {
                return answer_all(batch, &Ok(None));
            }
            Ok(Some(r)) => r,
            Ok(None) => return answer_all(batch, &Ok(None)),
            Err(e) => return answer_all(batch, &Err(Arc::new(e))),
        };
        // Apply each change set in filing order; one that would make
        // the record too large is refused on its own.
        let mut next = record.clone();
        let verdicts: Vec<Result<(), StoreError>> = batch
            .iter()
            .map(|w| {
                let mut trial = next.clone();
                w.changes.apply(&mut trial);
                target.check_size(&trial).map(|()| next = trial)
            })
            .collect();
        next.version = record.version + 1;
        next.idle_deadline = now.saturating_add(next.idle_timeout);
        match timed("save", store.save(&key, &next, record.version, now)).await {
            Ok(()) => {
                for (w, verdict) in batch.into_iter().zip(verdicts) {
                    let saved = match verdict {
                        Ok(()) => Saved::Record(next.clone()),
                        Err(e) => Saved::Failed(e),
                    };
                    let _ = w.reply.send(saved);
                }
                *last_saved = Some(next);
                return;
            }
            Err(StoreError::VersionConflict) => {
                metrics::counter!("cloakroom_cas_conflicts_total").increment(1);
                tracing::debug!(attempt, "session save conflicted; merging per key");
                if attempt >= 2 {
                    // Jittered backoff so writers in other processes
                    // spread out.
                    tokio::time::sleep(backoff(attempt)).await;
                }
                base = timed("load", store.load(&key, now)).await;
            }
            Err(StoreError::NotFound) => return answer_all(batch, &Ok(None)),
            Err(e) => return answer_all(batch, &Err(Arc::new(e))),
        }
    }
    answer_all(
        batch,
        &Err(Arc::new(StoreError::other(format!(
            "session save still conflicted after {MAX_SAVE_ATTEMPTS} attempts"
        )))),
    );
}

fn backoff(attempt: u32) -> std::time::Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let cap_us = 100u64 << attempt.min(6);
    std::time::Duration::from_micros(u64::from(u16::from_le_bytes(b)) % cap_us)
}

/// Runs a store call, recording its latency (S50: no IDs in metrics).
pub(crate) async fn timed<T>(op: &'static str, fut: impl std::future::Future<Output = T>) -> T {
    let start = std::time::Instant::now();
    let out = fut.await;
    metrics::histogram!("cloakroom_store_seconds", "op" => op)
        .record(start.elapsed().as_secs_f64());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;

    #[tokio::test]
    async fn lanes_serialize_and_are_dropped_when_idle() {
        let lanes = Arc::new(SaveLanes::new());
        let key = SessionId::generate().storage_key();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (lanes, order) = (lanes.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let lane = lanes.lane(&key);
                {
                    let _held = lane.leader.lock().await;
                    order
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(i);
                    tokio::task::yield_now().await;
                    order
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(i);
                }
                drop(lane);
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let order = order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for pair in order.chunks(2) {
            assert_eq!(pair[0], pair[1], "two saves interleaved: {order:?}");
        }
        assert_eq!(lanes.len(), 0, "an idle lane was kept");
    }

    // Issue 7 defect 8 (release race): two requests releasing one lane at
    // once must not both leave the entry behind. The window in the old code
    // (count read under the lock, own reference dropped after it) is a few
    // nanoseconds, so this stress check rarely hits it there; the argument
    // is in `LaneGuard::drop`, and `session::tests` proves the cancellation
    // leak. A fresh key per round keeps any leak visible at the end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_releases_leave_no_lane_behind() {
        let lanes = Arc::new(SaveLanes::new());
        let keys: Arc<Vec<StorageKey>> = Arc::new(
            (0..5_000)
                .map(|_| SessionId::generate().storage_key())
                .collect(),
        );
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (lanes, keys) = (lanes.clone(), keys.clone());
            tasks.push(tokio::spawn(async move {
                for key in keys.iter() {
                    let lane = lanes.lane(key);
                    let _ = lane.shared();
                    tokio::task::yield_now().await;
                    drop(lane);
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(lanes.len(), 0, "a released lane was kept");
    }
}
