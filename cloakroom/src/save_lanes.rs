//! Group commit of concurrent saves of one session within a process.
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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::id::StorageKey;
use crate::record::Record;
use crate::store::StoreError;

const SHARDS: usize = 64;

/// One request's changes to a session's values.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChangeSet {
    /// Every value was removed first.
    pub(crate) cleared: bool,
    /// Per key: the new encoded value, or `None` for a removal.
    pub(crate) changes: BTreeMap<String, Option<Bytes>>,
}

impl ChangeSet {
    /// Whether there is nothing to save.
    pub(crate) fn is_empty(&self) -> bool {
        !self.cleared && self.changes.is_empty()
    }

    /// Applies the changes to `record`.
    pub(crate) fn apply(&self, record: &mut Record) {
        if self.cleared {
            record.clear();
        }
        for (k, change) in &self.changes {
            match change {
                // Keys were checked by Session::insert: this cannot fail.
                Some(v) => {
                    let _ = record.insert_raw(k.clone(), v.clone());
                }
                None => {
                    record.remove(k);
                }
            }
        }
    }
}

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

    #[cfg(test)]
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

/// A copy of a store error for each request of a failed batch, keeping its
/// kind (the failure policy tells "unavailable" from the rest).
pub(crate) fn share_error(e: &Arc<StoreError>) -> StoreError {
    let boxed = || -> crate::store::BoxError { Box::new(SharedError(e.clone())) };
    match &**e {
        StoreError::Conflict => StoreError::Conflict,
        StoreError::VersionConflict => StoreError::VersionConflict,
        StoreError::NotFound => StoreError::NotFound,
        StoreError::TooLarge { size, limit } => StoreError::TooLarge {
            size: *size,
            limit: *limit,
        },
        StoreError::Unavailable(_) => StoreError::Unavailable(boxed()),
        StoreError::Corrupt(_) => StoreError::Corrupt(boxed()),
        _ => StoreError::Other(boxed()),
    }
}

/// The source of a shared store error: the original, shown as it was.
#[derive(Debug)]
pub(crate) struct SharedError(Arc<StoreError>);

impl SharedError {
    /// The error every copy stands for.
    pub(crate) fn original(&self) -> &StoreError {
        &self.0
    }
}

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::error::Error::source(&*self.0) {
            Some(inner) => std::fmt::Display::fmt(inner, f),
            None => std::fmt::Display::fmt(&self.0, f),
        }
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0).and_then(std::error::Error::source)
    }
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
