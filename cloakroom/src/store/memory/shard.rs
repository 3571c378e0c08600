//! One of the memory store's shards: its records, the sum of their encoded
//! sizes, and the eviction rule that keeps both under the shard's share of
//! the bounds (documented on [`MemoryStore`](super::MemoryStore)).

use std::collections::HashMap;
use std::sync::Arc;

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::store::StoreError;

use super::{Entry, KeyHasher};

/// One shard's share of the store's bounds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Most records.
    pub(super) entries: usize,
    /// Most bytes of encoded records.
    pub(super) bytes: usize,
}

/// What an insert, or a save that grows a record, needs a shard to take on.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Room {
    pub(super) entries: usize,
    pub(super) bytes: usize,
}

/// Index entries to drop once the shard lock is released.
type Gone = Vec<(Arc<str>, StorageKey)>;

/// One shard's records and the sum of their encoded sizes. Entries change
/// only through these methods (deadlines in place through `get_mut`), so
/// the sum is always exact.
#[derive(Default)]
pub(super) struct Shard {
    map: HashMap<StorageKey, Entry, KeyHasher>,
    bytes: usize,
}

impl Limits {
    /// Refuses a record no shard could hold within the byte bound.
    pub(super) fn check_record(self, entry: &Entry) -> Result<(), StoreError> {
        if entry.bytes.len() > self.bytes {
            return Err(StoreError::TooLarge {
                size: entry.bytes.len(),
                limit: self.bytes,
            });
        }
        Ok(())
    }
}

impl Shard {
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Sum of the encoded sizes of the records held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn get(&self, key: &StorageKey) -> Option<&Entry> {
        self.map.get(key)
    }

    /// For changing an entry's deadlines in place; replace entries with
    /// [`insert`](Self::insert), which keeps the byte sum right.
    pub(super) fn get_mut(&mut self, key: &StorageKey) -> Option<&mut Entry> {
        self.map.get_mut(key)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&StorageKey, &Entry)> {
        self.map.iter()
    }

    pub(super) fn insert(&mut self, key: StorageKey, entry: Entry) -> Option<Entry> {
        self.bytes += entry.bytes.len();
        let old = self.map.insert(key, entry);
        if let Some(e) = &old {
            self.bytes -= e.bytes.len();
        }
        old
    }

    pub(super) fn remove(&mut self, key: &StorageKey) -> Option<Entry> {
        let old = self.map.remove(key);
        if let Some(e) = &old {
            self.bytes -= e.bytes.len();
        }
        old
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&StorageKey, &Entry) -> bool) {
        let bytes = &mut self.bytes;
        self.map.retain(|k, e| {
            let kept = keep(k, e);
            if !kept {
                *bytes -= e.bytes.len();
            }
            kept
        });
    }

    /// Whether the shard stays within `limits` after taking `room` more.
    pub(super) fn fits(&self, limits: Limits, room: Room) -> bool {
        self.len() + room.entries <= limits.entries && self.bytes + room.bytes <= limits.bytes
    }

    /// Evicts by the documented rule until the shard can take `room` more
    /// within `limits`, never evicting `keep`: expired records first, then
    /// anonymous sessions before signed-in ones, each closest to expiry
    /// first. Pushes the index entries to drop onto `gone`.
    pub(super) fn make_room(
        &mut self,
        limits: Limits,
        room: Room,
        keep: Option<&StorageKey>,
        now: Timestamp,
        gone: &mut Gone,
    ) {
        if self.fits(limits, room) {
            return;
        }
        self.retain(|k, e| {
            let live = e.is_live(now) || Some(k) == keep;
            if !live && let Some(u) = &e.user {
                gone.push((u.clone(), *k));
            }
            live
        });
        let rank = |e: &Entry| (e.user.is_some(), e.expires_at());
        // Usually one victim does (a full shard, a small record): one scan.
        let first = self
            .iter()
            .filter(|(k, _)| Some(*k) != keep)
            .min_by_key(|(_, e)| rank(e))
            .map(|(k, _)| *k);
        if let Some(k) = first {
            self.evict(&k, gone);
        }
        if self.fits(limits, room) {
            return;
        }
        // A large record may need many small ones gone: rank the shard once
        // instead of scanning it per victim.
        let mut ranked: Vec<_> = self
            .iter()
            .filter(|(k, _)| Some(*k) != keep)
            .map(|(k, e)| (rank(e), *k))
            .collect();
        ranked.sort_unstable();
        for (_, k) in ranked {
            if self.fits(limits, room) {
                break;
            }
            self.evict(&k, gone);
        }
    }

    fn evict(&mut self, key: &StorageKey, gone: &mut Gone) {
        if let Some(e) = self.remove(key) {
            metrics::counter!("cloakroom_memory_evictions_total").increment(1);
            if let Some(u) = e.user {
                gone.push((u, *key));
            }
        }
    }
}
