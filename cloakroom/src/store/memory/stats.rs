//! `stats` of the memory store: a walk over every shard.

use super::{Inner, read};
use crate::expiry::Timestamp;
use crate::store::StoreStats;

const BACKEND: &str = "memory";

impl Inner {
    /// Counts the live entries of every shard, one shard's read lock at a
    /// time. Users come from the entry; token families need the record, so
    /// live entries are decoded (an undecodable one, which this store never
    /// writes, is skipped and makes the counts inexact).
    pub(super) fn stats(&self, now: Timestamp) -> StoreStats {
        let mut stats = StoreStats::new(BACKEND);
        for shard in &self.shards {
            let shard = read(shard);
            for (_, entry) in shard.iter().filter(|(_, e)| e.is_live(now)) {
                match entry.record() {
                    Ok(record) => stats.count(&record, now),
                    Err(_) => stats.exact = false,
                }
            }
        }
        stats
    }
}
