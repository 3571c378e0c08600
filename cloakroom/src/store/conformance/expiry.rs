//! Scenarios of reaping and of concurrent saves.

use std::time::Duration;

use super::Capabilities;
use super::fixtures::*;
use crate::expiry::Timestamp;
use crate::store::{SessionStore, StoreError};

/// `delete_expired` removes expired records and nothing live.
pub async fn delete_expired_reaps<S: SessionStore + ?Sized>(store: &S, caps: Capabilities) {
    let user = fresh_user();
    let mut expired = Vec::new();
    for _ in 0..3 {
        let key = fresh_key();
        let mut rec = live_record();
        rec.user = Some(user.clone());
        rec.idle_deadline = Timestamp::now().saturating_add(Duration::from_millis(800));
        ok(store.create(&key, &rec).await, "create short-lived");
        expired.push(key);
    }
    let live = create_for(store, &user).await;
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let n = ok(store.delete_expired().await, "delete_expired");
    if !caps.native_expiry {
        assert!(
            n >= 3,
            "delete_expired must report the expired records it removed (got {n})"
        );
    }
    for key in &expired {
        must_be_absent(store, key, "expired record after delete_expired").await;
    }
    must_load(store, &live, "live record after delete_expired").await;
    assert_eq!(
        listed_keys(store, &user).await,
        vec![live],
        "only the live session stays indexed"
    );
    ok(store.delete(&live).await, "delete");
}

/// Of many saves racing on one version, exactly one wins.
pub async fn concurrent_saves_one_winner<S: SessionStore + ?Sized>(store: &S) {
    let key = fresh_key();
    let rec = live_record();
    ok(store.create(&key, &rec).await, "create");
    let attempts = (0..16).map(|i| {
        let mut next = with_value(rec.clone(), "writer", &i.to_string());
        next.version = 2;
        async move { (i, store.save(&key, &next, 1).await) }
    });
    let results = futures_join_all(attempts).await;
    let winners: Vec<_> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of the racing saves must win, got {winners:?}"
    );
    for (_, r) in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, StoreError::VersionConflict),
                "losers must see VersionConflict, got {e:?}"
            );
        }
    }
    let back = must_load(store, &key, "after racing saves").await;
    assert_eq!(
        value(&back, "writer"),
        Some(winners[0].to_string()),
        "the winner's data is stored"
    );
    ok(store.delete(&key).await, "delete");
}
