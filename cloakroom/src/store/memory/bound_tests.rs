//! The byte bound: accounting, eviction under it, rounding of the bounds.

use std::time::Duration;

use super::*;
use crate::id::SessionId;

fn rec(user: Option<&str>, ttl: Duration) -> Record {
    let mut r = Record::new(Timestamp::now(), ttl, Duration::from_secs(3600));
    r.version = 1;
    r.user = user.map(str::to_owned);
    r
}

fn big(user: Option<&str>, size: usize) -> Record {
    let mut r = rec(user, Duration::from_secs(600));
    r.insert("blob", &"x".repeat(size)).unwrap();
    r
}

/// The byte total as recomputed from what is held.
fn recount(store: &MemoryStore) -> usize {
    store.dump().iter().map(|(_, b)| b.len()).sum()
}

#[tokio::test]
async fn byte_bound_holds_under_a_flood_of_large_records() {
    let store = MemoryStore::with_limits(MemoryStore::DEFAULT_MAX_SESSIONS, 64 << 20);
    assert_eq!(store.max_bytes(), 64 << 20);
    let signed = SessionId::generate().storage_key();
    store
        .create(&signed, &big(Some("alice"), 100_000), Timestamp::now())
        .await
        .unwrap();
    // 400 anonymous records of 200 kB: 80 MB offered, 64 MiB allowed.
    for _ in 0..400 {
        let k = SessionId::generate().storage_key();
        store
            .create(&k, &big(None, 200_000), Timestamp::now())
            .await
            .unwrap();
        assert!(store.encoded_bytes() <= store.max_bytes());
    }
    assert_eq!(store.encoded_bytes(), recount(&store), "exact accounting");
    assert!(store.len() < 401, "something was evicted");
    // Anonymous records go first: the sign-in survives.
    assert!(
        store
            .load(&signed, Timestamp::now())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_growing_save_evicts_others_never_itself() {
    let store = MemoryStore::with_limits(MemoryStore::DEFAULT_MAX_SESSIONS, 0);
    let key = SessionId::generate().storage_key();
    store
        .create(
            &key,
            &rec(Some("bob"), Duration::from_secs(600)),
            Timestamp::now(),
        )
        .await
        .unwrap();
    // Fill every shard with anonymous records of 300 kB.
    for _ in 0..2_000 {
        let k = SessionId::generate().storage_key();
        store
            .create(&k, &big(None, 300_000), Timestamp::now())
            .await
            .unwrap();
    }
    let mut grown = big(Some("bob"), 900_000);
    grown.version = 2;
    store.save(&key, &grown, 1, Timestamp::now()).await.unwrap();
    assert!(store.encoded_bytes() <= store.max_bytes());
    assert_eq!(store.encoded_bytes(), recount(&store), "exact accounting");
    assert_eq!(
        store
            .load(&key, Timestamp::now())
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
    assert_eq!(
        store
            .list_by_user("bob", Timestamp::now())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn accounting_stays_exact_through_every_operation() {
    let store = MemoryStore::new();
    let mut keys = Vec::new();
    for i in 0..50 {
        let k = SessionId::generate().storage_key();
        store
            .create(&k, &big(Some("carol"), 100 * i), Timestamp::now())
            .await
            .unwrap();
        keys.push(k);
    }
    let mut r = big(Some("carol"), 5_000);
    r.version = 2;
    store.save(&keys[0], &r, 1, Timestamp::now()).await.unwrap();
    store.delete(&keys[1], Timestamp::now()).await.unwrap();
    store
        .rotate(
            &keys[2],
            &SessionId::generate().storage_key(),
            &r,
            Timestamp::now(),
        )
        .await
        .unwrap();
    store
        .touch(&keys[3], Timestamp::now(), Timestamp::now())
        .await
        .unwrap();
    store.delete_expired(Timestamp::now()).await.unwrap();
    assert_eq!(store.encoded_bytes(), recount(&store));
    store
        .delete_by_user("carol", None, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(store.encoded_bytes(), 0);
    assert!(store.is_empty());
}

#[test]
fn bounds_round_and_keep_each_other() {
    let store = MemoryStore::with_limits(100, 1);
    assert_eq!(
        store.max_bytes(),
        64 * MAX_RECORD_BYTES,
        "floor: the largest record per shard"
    );
    assert_eq!(store.max_sessions(), 128, "a multiple of 64");
    let store = MemoryStore::with_limits(64, 300 << 20);
    assert_eq!(store.max_sessions(), 64);
    assert_eq!(store.max_bytes(), 300 << 20);
    let defaults = MemoryStore::new();
    assert_eq!(defaults.max_bytes(), MemoryStore::DEFAULT_MAX_BYTES);
    assert_eq!(defaults.max_sessions(), MemoryStore::DEFAULT_MAX_SESSIONS);
}

#[tokio::test]
async fn a_record_no_shard_can_hold_is_refused() {
    let store = MemoryStore::with_limits(MemoryStore::DEFAULT_MAX_SESSIONS, 0);
    let key = SessionId::generate().storage_key();
    let err = store
        .create(&key, &big(None, MAX_RECORD_BYTES + 1), Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
    assert!(store.is_empty());
}
