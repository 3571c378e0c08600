//! The tiered store's revocation guarantees (S29) under every interleaving
//! of a read-through fill with a delete, rotate or log-out-everywhere, with
//! a `MemoryStore` and (feature `redis`) a real Redis as the shared cache,
//! and during cache outages.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use cloakroom::store::{MemoryStore, SessionStore, StoreError, TieredStore};
use cloakroom::{Record, SessionId, StorageKey, Timestamp};
use support::TestStore;
use support::pausing::PausingStore;

fn record() -> Record {
    let mut r = Record::new(
        Timestamp::now(),
        Duration::from_secs(600),
        Duration::from_secs(3600),
    );
    r.version = 1;
    r.user = Some("alice".into());
    r
}

#[tokio::test]
async fn per_process_caches_bound_the_revocation_delay() {
    let durable: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let a = TieredStore::new(Arc::new(MemoryStore::new()), durable.clone())
        .with_cache_ttl(Duration::from_millis(300));
    let b = TieredStore::new(Arc::new(MemoryStore::new()), durable.clone())
        .with_cache_ttl(Duration::from_millis(300));
    let key = SessionId::generate().storage_key();
    a.create(&key, &record(), Timestamp::now()).await.unwrap();
    assert!(
        b.load(&key, Timestamp::now()).await.unwrap().is_some(),
        "b reads through and caches"
    );
    a.delete(&key, Timestamp::now()).await.unwrap();
    assert!(
        a.load(&key, Timestamp::now()).await.unwrap().is_none(),
        "the deleting instance sees it gone at once"
    );
    // b's per-process copy may serve until its TTL, never longer.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        b.load(&key, Timestamp::now()).await.unwrap().is_none(),
        "b's stale copy outlived the cache TTL"
    );
}

#[tokio::test]
async fn a_shared_cache_has_no_delay() {
    let cache: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let durable: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let a = TieredStore::new(cache.clone(), durable.clone());
    let b = TieredStore::new(cache, durable);
    let key = SessionId::generate().storage_key();
    a.create(&key, &record(), Timestamp::now()).await.unwrap();
    assert!(b.load(&key, Timestamp::now()).await.unwrap().is_some());
    a.delete_by_user("alice", None, Timestamp::now())
        .await
        .unwrap();
    assert!(
        b.load(&key, Timestamp::now()).await.unwrap().is_none(),
        "revocation visible at once through a shared cache"
    );
}

#[tokio::test]
async fn stale_cache_never_wedges_compare_and_swap() {
    let durable: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let a = TieredStore::new(Arc::new(MemoryStore::new()), durable.clone());
    let b = TieredStore::new(Arc::new(MemoryStore::new()), durable);
    let key = SessionId::generate().storage_key();
    a.create(&key, &record(), Timestamp::now()).await.unwrap();
    let mut stale = b.load(&key, Timestamp::now()).await.unwrap().unwrap();
    let mut next = a.load(&key, Timestamp::now()).await.unwrap().unwrap();
    next.version = 2;
    a.save(&key, &next, 1, Timestamp::now()).await.unwrap();
    stale.version = 2;
    assert!(matches!(
        b.save(&key, &stale, 1, Timestamp::now()).await,
        Err(StoreError::VersionConflict)
    ));
    // The conflict dropped b's cached copy: the reload sees version 2.
    assert_eq!(
        b.load(&key, Timestamp::now())
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
}

#[tokio::test]
async fn marker_never_leaks() {
    let t = TieredStore::new(Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    let key = SessionId::generate().storage_key();
    t.create(&key, &record(), Timestamp::now()).await.unwrap();
    let loaded = t.load(&key, Timestamp::now()).await.unwrap().unwrap();
    assert_eq!(loaded.keys().count(), 0, "the freshness marker leaked");
}

/// Two instances sharing `cache` and one durable store whose next load can
/// be paused between its durable answer and its cache fill.
fn shared_pair(cache: Arc<dyn SessionStore>) -> (Arc<PausingStore>, TieredStore, TieredStore) {
    let durable = Arc::new(PausingStore::default());
    let a = TieredStore::new(cache.clone(), durable.clone());
    let b = TieredStore::new(cache, durable.clone());
    (durable, a, b)
}

/// Starts `a.load(key)`, holds it between its durable answer and its cache
/// fill while `meanwhile` runs, then lets the fill go on; returns `a`'s
/// answer (which began before `meanwhile`, so it may be the old record).
async fn with_fill_paused(
    durable: &PausingStore,
    a: TieredStore,
    key: StorageKey,
    meanwhile: impl std::future::Future<Output = ()>,
) -> Option<Record> {
    durable.load.arm();
    let reader = tokio::spawn(async move { a.load(&key, Timestamp::now()).await });
    durable.load.reached.notified().await;
    meanwhile.await;
    durable.load.resume.notify_one();
    reader.await.unwrap().unwrap()
}

/// S29 regression: a read-through fill that read the durable record before
/// a delete and fills after it must not make the revoked session visible.
async fn a_fill_racing_a_delete_never_resurrects_it(cache: Arc<dyn SessionStore>) {
    let (durable, a, b) = shared_pair(cache);
    let key = SessionId::generate().storage_key();
    durable
        .create(&key, &record(), Timestamp::now())
        .await
        .unwrap();
    with_fill_paused(&durable, a, key, async {
        b.delete(&key, Timestamp::now()).await.unwrap()
    })
    .await;
    assert!(
        b.load(&key, Timestamp::now()).await.unwrap().is_none(),
        "a fill that started before the delete served the revoked session from the shared cache"
    );
}

/// The same race against `delete_by_user` (log out everywhere).
async fn a_fill_racing_delete_by_user_never_resurrects_it(cache: Arc<dyn SessionStore>) {
    let (durable, a, b) = shared_pair(cache);
    let key = SessionId::generate().storage_key();
    durable
        .create(&key, &record(), Timestamp::now())
        .await
        .unwrap();
    with_fill_paused(&durable, a, key, async {
        assert_eq!(
            b.delete_by_user("alice", None, Timestamp::now())
                .await
                .unwrap(),
            1
        );
    })
    .await;
    assert!(
        b.load(&key, Timestamp::now()).await.unwrap().is_none(),
        "a fill that started before delete_by_user served a revoked session"
    );
}

/// The same race against `rotate`: the old key must stay dead.
async fn a_fill_racing_rotate_never_revives_the_old_key(cache: Arc<dyn SessionStore>) {
    let (durable, a, b) = shared_pair(cache);
    let old = SessionId::generate().storage_key();
    let new = SessionId::generate().storage_key();
    durable
        .create(&old, &record(), Timestamp::now())
        .await
        .unwrap();
    with_fill_paused(&durable, a, old, async {
        b.rotate(&old, &new, &record(), Timestamp::now())
            .await
            .unwrap();
    })
    .await;
    assert!(
        b.load(&old, Timestamp::now()).await.unwrap().is_none(),
        "a fill that started before the rotation served the old key"
    );
    assert!(b.load(&new, Timestamp::now()).await.unwrap().is_some());
}

/// A slow read-through fill of version 1 must not replace the copy of
/// version 2 that a save wrote meanwhile.
async fn a_slow_fill_never_replaces_a_newer_save(cache: Arc<dyn SessionStore>) {
    let (durable, a, b) = shared_pair(cache);
    let key = SessionId::generate().storage_key();
    durable
        .create(&key, &record(), Timestamp::now())
        .await
        .unwrap();
    let mut next = record();
    next.version = 2;
    let answer = with_fill_paused(&durable, a, key, async {
        b.save(&key, &next, 1, Timestamp::now()).await.unwrap();
    })
    .await;
    assert_eq!(answer.unwrap().version, 1);
    assert_eq!(
        b.load(&key, Timestamp::now())
            .await
            .unwrap()
            .unwrap()
            .version,
        2,
        "an older version replaced a newer one in the cache"
    );
}

/// Two read-through fills racing: the one that read version 1 and fills
/// last must not leave version 1 cached over version 2.
async fn concurrent_fills_never_leave_an_older_version_cached(cache: Arc<dyn SessionStore>) {
    let (durable, a, b) = shared_pair(cache);
    let key = SessionId::generate().storage_key();
    durable
        .create(&key, &record(), Timestamp::now())
        .await
        .unwrap();
    let mut next = record();
    next.version = 2;
    let answer = with_fill_paused(&durable, a, key, async {
        // Another process (no shared cache) saves version 2 ...
        durable
            .save(&key, &next, 1, Timestamp::now())
            .await
            .unwrap();
        // ... and b reads it through, filling version 2.
        assert_eq!(
            b.load(&key, Timestamp::now())
                .await
                .unwrap()
                .unwrap()
                .version,
            2
        );
    })
    .await;
    assert_eq!(answer.unwrap().version, 1);
    assert_eq!(
        b.load(&key, Timestamp::now())
            .await
            .unwrap()
            .unwrap()
            .version,
        2,
        "the slower fill left an older version cached"
    );
}

/// A session filed between `delete_by_user`'s listing and its delete (a
/// login racing "log out everywhere") is deleted by it; a read-through
/// fill that read it before the delete must not serve it afterwards.
async fn a_session_unknown_to_delete_by_user_is_not_served(cache: Arc<dyn SessionStore>) {
    let (durable, a, b) = shared_pair(cache);
    let user = format!(
        "racer-{}",
        &SessionId::generate().storage_key().to_hex()[..8]
    );
    let mut r = record();
    r.user = Some(user.clone());
    durable.list.arm();
    let revoker = {
        let user = user.clone();
        tokio::spawn(async move { b.delete_by_user(&user, None, Timestamp::now()).await })
    };
    // delete_by_user has listed the user's sessions: none yet.
    durable.list.reached.notified().await;
    let key = SessionId::generate().storage_key();
    durable.create(&key, &r, Timestamp::now()).await.unwrap();
    durable.load.arm();
    let a2 = a.clone();
    let reader = tokio::spawn(async move { a2.load(&key, Timestamp::now()).await });
    durable.load.reached.notified().await;
    durable.list.resume.notify_one();
    assert_eq!(
        revoker.await.unwrap().unwrap(),
        1,
        "the late session was deleted"
    );
    durable.load.resume.notify_one();
    reader.await.unwrap().unwrap();
    assert!(
        a.load(&key, Timestamp::now()).await.unwrap().is_none(),
        "a session deleted by delete_by_user was served from the shared cache"
    );
}

/// Runs each race scenario with a `MemoryStore` as the shared cache and, with
/// the `redis` feature, a real Redis (skipped when unreachable, failed under
/// `CI=true`).
macro_rules! race_tests {
    ($($name:ident),* $(,)?) => {
        mod memory_cache {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(Arc::new(MemoryStore::new())).await;
                }
            )*
        }
        #[cfg(feature = "redis")]
        mod redis_cache {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(cache) = redis_cache().await {
                        super::$name(cache).await;
                    }
                }
            )*
        }
    };
}

/// A Redis store under a prefix of its own, or `None` if Redis is down.
#[cfg(feature = "redis")]
async fn redis_cache() -> Option<Arc<dyn SessionStore>> {
    let prefix = format!(
        "cloakroom-test:tiered:{}:",
        &SessionId::generate().storage_key().to_hex()[..16]
    );
    match cloakroom::store::RedisStore::connect(&support::services::redis_url()).await {
        Ok(store) => Some(Arc::new(
            store.with_prefix(prefix).expect("a brace-free prefix"),
        )),
        Err(e) => {
            cloakroom::store::conformance::skip_service("redis", &e);
            None
        }
    }
}

race_tests!(
    a_fill_racing_a_delete_never_resurrects_it,
    a_fill_racing_delete_by_user_never_resurrects_it,
    a_fill_racing_rotate_never_revives_the_old_key,
    a_slow_fill_never_replaces_a_newer_save,
    concurrent_fills_never_leave_an_older_version_cached,
    a_session_unknown_to_delete_by_user_is_not_served,
);

/// With the cache unreachable, ending a session still ends it in the
/// durable store, and it cannot be loaded afterwards.
#[tokio::test]
async fn ending_sessions_works_during_a_cache_outage() {
    let durable = Arc::new(MemoryStore::new());
    let cache = TestStore::new(MemoryStore::new());
    cache.set_down(true);
    let t = TieredStore::new(cache, durable.clone());

    let key = SessionId::generate().storage_key();
    t.create(&key, &record(), Timestamp::now()).await.unwrap();
    t.delete(&key, Timestamp::now())
        .await
        .expect("delete must succeed on the durable store while the cache is down");
    assert!(
        durable
            .load(&key, Timestamp::now())
            .await
            .unwrap()
            .is_none()
    );
    assert!(t.load(&key, Timestamp::now()).await.unwrap().is_none());

    let old = SessionId::generate().storage_key();
    let new = SessionId::generate().storage_key();
    t.create(&old, &record(), Timestamp::now()).await.unwrap();
    t.rotate(&old, &new, &record(), Timestamp::now())
        .await
        .expect("rotate must succeed on the durable store while the cache is down");
    assert!(
        durable
            .load(&old, Timestamp::now())
            .await
            .unwrap()
            .is_none()
    );
    assert!(t.load(&old, Timestamp::now()).await.unwrap().is_none());
    assert!(t.load(&new, Timestamp::now()).await.unwrap().is_some());

    let n = t
        .delete_by_user("alice", None, Timestamp::now())
        .await
        .expect("delete_by_user must succeed on the durable store while the cache is down");
    assert_eq!(n, 1);
    assert!(t.load(&new, Timestamp::now()).await.unwrap().is_none());
    assert!(
        durable
            .list_by_user("alice", Timestamp::now())
            .await
            .unwrap()
            .is_empty()
    );
}

/// A copy the cache held when it went down may be served once it is back,
/// but never for longer than the cache TTL after the delete (S29).
#[tokio::test]
async fn a_copy_stranded_by_an_outage_dies_within_the_cache_ttl() {
    let cache = TestStore::new(MemoryStore::new());
    let t = TieredStore::new(cache.clone(), Arc::new(MemoryStore::new()))
        .with_cache_ttl(Duration::from_millis(300));
    let key = SessionId::generate().storage_key();
    t.create(&key, &record(), Timestamp::now()).await.unwrap();
    assert!(
        t.load(&key, Timestamp::now()).await.unwrap().is_some(),
        "cached"
    );
    cache.set_down(true);
    t.delete(&key, Timestamp::now())
        .await
        .expect("delete must succeed while the cache is down");
    cache.set_down(false);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        t.load(&key, Timestamp::now()).await.unwrap().is_none(),
        "a stranded copy outlived the cache TTL"
    );
}
