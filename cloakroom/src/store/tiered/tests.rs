//! White-box tests of the tiered store.

use super::*;
use crate::id::SessionId;
use crate::store::MemoryStore;

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
    a.create(&key, &record()).await.unwrap();
    assert!(
        b.load(&key).await.unwrap().is_some(),
        "b reads through and caches"
    );
    a.delete(&key).await.unwrap();
    assert!(
        a.load(&key).await.unwrap().is_none(),
        "the deleting instance sees it gone at once"
    );
    // b's per-process copy may serve until its TTL, never longer.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        b.load(&key).await.unwrap().is_none(),
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
    a.create(&key, &record()).await.unwrap();
    assert!(b.load(&key).await.unwrap().is_some());
    a.delete_by_user("alice", None).await.unwrap();
    assert!(
        b.load(&key).await.unwrap().is_none(),
        "revocation visible at once through a shared cache"
    );
}

#[tokio::test]
async fn stale_cache_never_wedges_compare_and_swap() {
    let durable: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let a = TieredStore::new(Arc::new(MemoryStore::new()), durable.clone());
    let b = TieredStore::new(Arc::new(MemoryStore::new()), durable);
    let key = SessionId::generate().storage_key();
    a.create(&key, &record()).await.unwrap();
    let mut stale = b.load(&key).await.unwrap().unwrap();
    let mut next = a.load(&key).await.unwrap().unwrap();
    next.version = 2;
    a.save(&key, &next, 1).await.unwrap();
    stale.version = 2;
    assert!(matches!(
        b.save(&key, &stale, 1).await,
        Err(StoreError::VersionConflict)
    ));
    // The conflict dropped b's cached copy: the reload sees version 2.
    assert_eq!(b.load(&key).await.unwrap().unwrap().version, 2);
}

#[tokio::test]
async fn marker_never_leaks() {
    let t = TieredStore::new(Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    let key = SessionId::generate().storage_key();
    t.create(&key, &record()).await.unwrap();
    let loaded = t.load(&key).await.unwrap().unwrap();
    assert!(loaded.get_raw(CACHED_UNTIL).is_none());
    assert_eq!(loaded.keys().count(), 0);
}
