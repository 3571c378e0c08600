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

    /// Whether another request of this process holds `lane` too (is saving
    /// or about to save the same session). A hint: it may change at once.
    pub(crate) fn shared(lane: &Arc<Lane>) -> bool {
        // The map's reference and the caller's.
        Arc::strong_count(lane) > 2
    }

    /// The lane for `key`; give it back with [`SaveLanes::release`].
    pub(crate) fn lane(&self, key: &StorageKey) -> Arc<Lane> {
        self.shard(key).entry(*key).or_default().clone()
    }

    /// Drops the lane once no request holds or waits for it.
    pub(crate) fn release(&self, key: &StorageKey, lane: Arc<Lane>) {
        let mut shard = self.shard(key);
        // Two references: the map's and ours. Anyone else waiting holds a
        // third, checked under the shard lock they need to obtain one.
        if Arc::strong_count(&lane) == 2 {
            shard.remove(key);
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

/// A copy of a store error for each request of a failed batch, keeping its
/// kind (the failure policy tells "unavailable" from the rest).
pub(crate) fn share_error(e: &Arc<StoreError>) -> StoreError {
    let boxed = || -> crate::store::BoxError { Box::new(SharedError(e.clone())) };
    match &**e {
        StoreError::Conflict => StoreError::Conflict,
        StoreError::VersionConflict => StoreError::VersionConflict,
        StoreError::NotFound => StoreError::NotFound,
        StoreError::Unavailable(_) => StoreError::Unavailable(boxed()),
        StoreError::Corrupt(_) => StoreError::Corrupt(boxed()),
        _ => StoreError::Other(boxed()),
    }
}

/// The source of a shared store error: the original, shown as it was.
#[derive(Debug)]
struct SharedError(Arc<StoreError>);

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
                lanes.release(&key, lane);
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
}
