//! One save at a time per session within a process.
//!
//! Concurrent requests writing the same session would otherwise race their
//! compare-and-swap saves: all but one fail, reload and retry, and under a
//! burst (64 requests on one session) the retries multiply store round trips.
//! A lane per session key serializes this process's saves of that session
//! and remembers the record it last saved, so a queued save starts from the
//! newest version instead of failing against it. Conflicts then only arise
//! between processes, where the compare-and-swap and per-key merge still
//! decide.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::id::StorageKey;
use crate::record::Record;

const SHARDS: usize = 64;

/// The lane of one session: held while saving; holds the last record this
/// process saved for it.
pub(crate) type Lane = tokio::sync::Mutex<Option<Record>>;

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
                    let _held = lane.lock().await;
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
