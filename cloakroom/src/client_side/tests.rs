//! White-box tests of the revocation epoch cache.

use std::sync::Arc;
use std::time::Duration;

use super::epochs::{EpochCache, EpochCheck};
use crate::expiry::Timestamp;
use crate::store::{MemoryStore, SessionStore};

fn cache(store: &Arc<MemoryStore>) -> EpochCache {
    let store: Arc<dyn SessionStore> = store.clone();
    EpochCache::new(store, Duration::from_secs(3600))
}

// Issue 7 defect 3: a slow read that refills the cache must never replace
// a newer epoch this process has already seen (it would un-revoke).
#[tokio::test]
async fn a_refill_never_lowers_a_cached_epoch() {
    let store = Arc::new(MemoryStore::new());
    let epochs = cache(&store);
    let first = epochs
        .for_login("alice", Timestamp::now())
        .await
        .expect("login");
    let bumped = epochs.bump("alice", Timestamp::now()).await.expect("bump");
    assert!(bumped > first);
    // A read that started before the bump lands after it.
    epochs.remember("alice", first, Timestamp::now());
    assert_eq!(
        epochs
            .check("alice", first, Timestamp::now())
            .await
            .expect("check"),
        EpochCheck::Revoked
    );
    assert_eq!(
        epochs
            .check("alice", bumped, Timestamp::now())
            .await
            .expect("check"),
        EpochCheck::Current
    );
}

// Defect 3: a cookie newer than the cache (signed in elsewhere since) is
// checked against the store, not refused on the cache's word.
#[tokio::test]
async fn a_cookie_newer_than_the_cache_is_checked_in_the_store() {
    let store = Arc::new(MemoryStore::new());
    let (here, elsewhere) = (cache(&store), cache(&store));
    let old = here
        .for_login("alice", Timestamp::now())
        .await
        .expect("login");
    assert_eq!(
        here.check("alice", old, Timestamp::now())
            .await
            .expect("check"),
        EpochCheck::Current
    );
    let new = elsewhere
        .bump("alice", Timestamp::now())
        .await
        .expect("bump");
    assert_eq!(
        here.check("alice", new, Timestamp::now())
            .await
            .expect("check"),
        EpochCheck::Current
    );
    assert_eq!(
        here.check("alice", old, Timestamp::now())
            .await
            .expect("check"),
        EpochCheck::Revoked
    );
    // Higher than anything stored: the store lost data; refused.
    assert_eq!(
        here.check("alice", new + 1, Timestamp::now())
            .await
            .expect("check"),
        EpochCheck::Unknown
    );
    assert_eq!(
        here.check("bob", 0, Timestamp::now()).await.expect("check"),
        EpochCheck::Unknown,
        "no epoch record at all"
    );
}
