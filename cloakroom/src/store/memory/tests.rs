//! Unit tests of the memory store: eviction order and the user index.

use super::*;
use crate::id::SessionId;
use std::time::Duration;

fn rec(user: Option<&str>, ttl: Duration) -> Record {
    let mut r = Record::new(Timestamp::now(), ttl, Duration::from_secs(3600));
    r.version = 1;
    r.user = user.map(str::to_owned);
    r
}

#[tokio::test]
async fn bounded_and_evicts_anonymous_first() {
    let store = MemoryStore::with_limits(256, MemoryStore::DEFAULT_MAX_BYTES);
    // One signed-in session, then a flood of anonymous ones.
    let signed = SessionId::generate().storage_key();
    store
        .create(
            &signed,
            &rec(Some("alice"), Duration::from_secs(60)),
            Timestamp::now(),
        )
        .await
        .unwrap();
    for _ in 0..5_000 {
        let k = SessionId::generate().storage_key();
        store
            .create(&k, &rec(None, Duration::from_secs(600)), Timestamp::now())
            .await
            .unwrap();
    }
    assert!(
        store.len() <= 256,
        "store grew past its bound: {}",
        store.len()
    );
    // The signed-in session survives although it expires soonest.
    assert!(
        store
            .load(&signed, Timestamp::now())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .list_by_user("alice", Timestamp::now())
            .await
            .unwrap()
            .len(),
        1
    );
}
