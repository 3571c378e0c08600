//! Counters in this process: a bounded map, oldest counters dropped first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use super::policy::Counter;
use super::{CounterRef, Counters, Hash, Scope, Slot};
use crate::expiry::{Clock, SystemClock};
use crate::store::StoreError;

type Key = (Scope, Hash);

/// In-process counters for a [`LoginThrottle`](super::LoginThrottle):
/// correct for one server process; a fleet needs the Redis backend.
///
/// **Bound.** At most [`max_keys`](Self::with_max_keys) counters are kept
/// (default [`DEFAULT_MAX_KEYS`](Self::DEFAULT_MAX_KEYS), about 100 bytes
/// each). When a new counter would exceed it, expired counters go first,
/// then the counters started longest ago. A flood of more distinct
/// accounts and clients than the bound can thus push out older counters:
/// the price of bounded memory (IPv6 clients count per /64, which keeps one
/// host from minting counters at will).
///
/// Cheap to clone: clones share the counters.
#[derive(Clone)]
pub struct MemoryCounters {
    table: Arc<Mutex<Table>>,
    clock: Arc<dyn Clock>,
    max_keys: usize,
}

impl std::fmt::Debug for MemoryCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCounters")
            .field("max_keys", &self.max_keys)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Table {
    counters: HashMap<Key, (Counter, u64)>,
    /// Counters in the order their windows started, with that start: an
    /// entry whose start no longer matches the counter's is stale and
    /// skipped.
    order: VecDeque<(Key, u64)>,
}

impl Default for MemoryCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCounters {
    /// Default of [`with_max_keys`](Self::with_max_keys): 100,000.
    pub const DEFAULT_MAX_KEYS: usize = 100_000;

    /// Empty counters on the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self {
            table: Arc::new(Mutex::new(Table::default())),
            clock: Arc::new(SystemClock),
            max_keys: Self::DEFAULT_MAX_KEYS,
        }
    }

    /// Keeps at most `n` counters (at least 1).
    #[must_use]
    pub fn with_max_keys(mut self, n: usize) -> Self {
        self.max_keys = n.max(1);
        self
    }

    /// Reads time from `clock` (tests: `MockClock`, feature `test-util`).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many counters are kept now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().counters.len()
    }

    /// Whether no counter is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every update leaves the table consistent: ignore poisoning.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        self.clock.now().as_millis()
    }

    /// The wait `c` imposes now, in milliseconds.
    pub(crate) fn wait_one(&self, c: &CounterRef) -> u64 {
        let now = self.now();
        let table = self.lock();
        let found = table.counters.get(&(c.scope, c.hash)).map(|e| e.0);
        c.rule.wait(found, now)
    }

    /// Counts one failure on `c`; returns the failures in its window.
    pub(crate) fn fail_one(&self, c: &CounterRef) -> u32 {
        let now = self.now();
        let key = (c.scope, c.hash);
        let mut table = self.lock();
        let old = table.counters.get(&key).map(|e| e.0);
        let new = c.rule.record(old, now);
        if old.map(|o| o.start) != Some(new.start) {
            table.order.push_back((key, new.start));
        }
        table
            .counters
            .insert(key, (new, c.rule.expires_at(new.start)));
        table.trim(now, self.max_keys);
        new.failures
    }

    fn reset_one(&self, c: &CounterRef) {
        self.lock().counters.remove(&(c.scope, c.hash));
    }
}

impl Table {
    /// Drops expired and stale entries from the front, then the oldest
    /// counters while over `max`.
    fn trim(&mut self, now: u64, max: usize) {
        while let Some(&(key, start)) = self.order.front() {
            let entry = self.counters.get(&key).copied();
            let over = self.counters.len() > max;
            match entry {
                Some((c, _)) if c.start != start => {}
                None => {}
                Some((_, expires)) if over || now >= expires => {
                    self.counters.remove(&key);
                }
                Some(_) => break,
            }
            self.order.pop_front();
        }
        // Stale entries behind a long-lived front one: compact now and
        // then, so the queue stays within a small multiple of the map.
        if self.order.len() > max.saturating_mul(2).saturating_add(16) {
            let counters = &self.counters;
            self.order
                .retain(|(key, start)| counters.get(key).is_some_and(|(c, _)| c.start == *start));
        }
    }
}

#[async_trait]
impl Counters for MemoryCounters {
    async fn wait(&self, slot: &Slot) -> Result<(u64, Option<Scope>), StoreError> {
        let mut worst = (0, None);
        for c in &slot.counters {
            let w = self.wait_one(c);
            if w > worst.0 {
                worst = (w, Some(c.scope));
            }
        }
        Ok(worst)
    }

    async fn fail(&self, slot: &Slot) -> Result<(), StoreError> {
        for c in &slot.counters {
            self.fail_one(c);
        }
        Ok(())
    }

    async fn reset(&self, slot: &Slot) -> Result<(), StoreError> {
        for c in &slot.counters {
            self.reset_one(c);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Rule;
    use super::*;
    use crate::expiry::MockClock;
    use std::time::Duration;

    fn counter(i: u32, rule: Rule) -> CounterRef {
        let mut hash = [0u8; 32];
        hash[..4].copy_from_slice(&i.to_be_bytes());
        CounterRef {
            scope: Scope::Client,
            hash,
            rule,
        }
    }

    #[test]
    fn bound_drops_oldest_and_queue_stays_small() {
        let clock = MockClock::new();
        let m = MemoryCounters::new()
            .with_max_keys(10)
            .with_clock(clock.clone());
        let rule = Rule::cap(3, Duration::from_secs(60));
        for i in 0..1000 {
            m.fail_one(&counter(i, rule));
            clock.advance(Duration::from_millis(1));
        }
        assert_eq!(m.len(), 10);
        assert!(m.lock().order.len() <= 36);
        // The newest survive.
        assert_eq!(m.fail_one(&counter(999, rule)), 2);
        assert_eq!(m.fail_one(&counter(0, rule)), 1);
    }

    #[test]
    fn expired_counters_leave() {
        let clock = MockClock::new();
        let m = MemoryCounters::new().with_clock(clock.clone());
        let rule = Rule::cap(3, Duration::from_secs(1));
        m.fail_one(&counter(1, rule));
        clock.advance(Duration::from_secs(2));
        m.fail_one(&counter(2, rule));
        assert_eq!(m.len(), 1);
    }
}
