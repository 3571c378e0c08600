//! What [`SessionStore::stats`](super::SessionStore::stats) reports: how many
//! sessions a store holds, by kind.

use crate::expiry::Timestamp;
use crate::record::Record;

/// Counts of the sessions a store holds at one moment, as returned by
/// [`SessionStore::stats`](super::SessionStore::stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Records live at the time asked about.
    pub live: u64,
    /// Live records with [`Record::user`] set (signed-in sessions).
    pub signed_in: u64,
    /// Live records that are refresh-token families of the
    /// [`token`](crate::token) module (their data has `"kind"` = `"token"`
    /// and keys `"sid"` and `"gen"`).
    pub token_families: u64,
    /// The backend that counted (`"memory"`, `"redis"`, `"postgres"`, ...).
    pub backend: &'static str,
    /// Whether the counts are exact. `false` where the backend can only
    /// estimate (memcached cannot list its keys); the store's docs say
    /// what the numbers then mean.
    pub exact: bool,
}

impl StoreStats {
    /// Zero counts, exact, for `backend`: add records with
    /// [`StoreStats::count`].
    #[must_use]
    pub fn new(backend: &'static str) -> Self {
        Self {
            live: 0,
            signed_in: 0,
            token_families: 0,
            backend,
            exact: true,
        }
    }

    /// Live records that are not signed in.
    #[must_use]
    pub fn anonymous(&self) -> u64 {
        self.live.saturating_sub(self.signed_in)
    }

    /// Adds `record` to the counts if it is live at `now`.
    pub fn count(&mut self, record: &Record, now: Timestamp) {
        if !record.is_live(now) {
            return;
        }
        self.live += 1;
        if record.user.is_some() {
            self.signed_in += 1;
        }
        if is_token_family(record) {
            self.token_families += 1;
        }
    }
}

/// Whether `record` is a refresh-token family: the rule of the token
/// module's `Family::read` (`"kind"` = `"token"`, `"sid"` and `"gen"`
/// present).
#[must_use]
pub(crate) fn is_token_family(record: &Record) -> bool {
    record.get::<String>("kind").ok().flatten().as_deref() == Some("token")
        && record.get_raw("sid").is_some()
        && record.get_raw("gen").is_some()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn counts_live_records_by_kind() {
        let now = Timestamp::now();
        let live = Record::new(now, Duration::from_secs(60), Duration::from_secs(600));
        let mut user = live.clone();
        user.user = Some("ada".into());
        let mut token = live.clone();
        token.insert("kind", "token").unwrap();
        token.insert("sid", "s").unwrap();
        token.insert("gen", &1u64).unwrap();
        let mut not_token = live.clone();
        not_token.insert("kind", "token").unwrap();
        let later = now.saturating_add(Duration::from_secs(120));
        let mut s = StoreStats::new("test");
        for r in [&live, &user, &token, &not_token] {
            s.count(r, now);
            s.count(r, later);
        }
        assert_eq!((s.live, s.signed_in, s.token_families), (4, 1, 1));
        assert_eq!(s.anonymous(), 3);
        assert!(s.exact);
    }
}
