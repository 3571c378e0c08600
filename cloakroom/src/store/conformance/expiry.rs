//! Scenarios of reaping and of concurrent saves.

use std::time::Duration;

use super::Capabilities;
use super::fixtures::*;
use crate::expiry::Timestamp;
use crate::record::Record;
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
        ok(store.create(&key, &rec, now()).await, "create short-lived");
        expired.push(key);
    }
    let live = create_for(store, &user).await;
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let n = ok(store.delete_expired(now()).await, "delete_expired");
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
    ok(store.delete(&live, now()).await, "delete");
}

/// Of many saves racing on one version, exactly one wins.
pub async fn concurrent_saves_one_winner<S: SessionStore + ?Sized>(store: &S) {
    let key = fresh_key();
    let rec = live_record();
    ok(store.create(&key, &rec, now()).await, "create");
    let attempts = (0..16).map(|i| {
        let mut next = with_value(rec.clone(), "writer", &i.to_string());
        next.version = 2;
        async move { (i, store.save(&key, &next, 1, now()).await) }
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
    ok(store.delete(&key, now()).await, "delete");
}

/// Every liveness decision follows the `now` the caller passes, not a
/// clock of the store's or the backend's own: at a time past a record's
/// idle deadline it is dead to `load`, `touch`, `save`, `rotate` and
/// `list_by_user` although the backend still holds it, and a `create` at
/// that time takes its key. (This is what lets a mock clock drive expiry
/// through any store.)
pub async fn judged_by_the_callers_clock<S: SessionStore + ?Sized>(store: &S) {
    let user = fresh_user();
    let key = fresh_key();
    let mut rec = live_record();
    rec.user = Some(user.clone());
    ok(store.create(&key, &rec, now()).await, "create");
    // An hour on: past the 30-minute idle deadline.
    let later = now().saturating_add(Duration::from_secs(3600));
    let seen = ok(store.load(&key, later).await, "load at a later time");
    assert!(
        seen.is_none(),
        "load must judge expiry by the caller's `now`: a record past its idle deadline at that time was returned"
    );
    let touched = store
        .touch(&key, later.saturating_add(Duration::from_secs(1800)), later)
        .await;
    assert!(
        matches!(touched, Err(StoreError::NotFound)),
        "touch at a time past the idle deadline must be NotFound, got {touched:?}"
    );
    let mut next = with_value(rec.clone(), "k", "v");
    next.version = 2;
    let saved = store.save(&key, &next, 1, later).await;
    assert!(
        matches!(saved, Err(StoreError::NotFound)),
        "save at a time past the idle deadline must be NotFound, got {saved:?}"
    );
    let new_key = fresh_key();
    let rotated = store.rotate(&key, &new_key, &next, later).await;
    assert!(
        matches!(rotated, Err(StoreError::NotFound)),
        "rotate at a time past the idle deadline must be NotFound, got {rotated:?}"
    );
    let filed = ok(
        store.load(&new_key, later).await,
        "load the rotation target",
    );
    assert!(filed.is_none(), "a refused rotation must file nothing");
    let listed = ok(store.list_by_user(&user, later).await, "list_by_user later");
    assert!(
        listed.is_empty(),
        "list_by_user must judge by the caller's `now`, listed {} session(s)",
        listed.len()
    );
    // At that time the key is free again.
    let mut fresh = Record::new(
        later,
        Duration::from_secs(1800),
        Duration::from_secs(43_200),
    );
    fresh.version = 1;
    fresh.user = Some(user.clone());
    let fresh = with_value(fresh, "generation", "second");
    ok(
        store.create(&key, &fresh, later).await,
        "create over a record expired by the caller's clock",
    );
    let back = ok(store.load(&key, later).await, "load the new record")
        .expect("the record created at the later time loads at that time");
    assert_eq!(value(&back, "generation"), Some("second".to_owned()));
    let listed = ok(store.list_by_user(&user, later).await, "list_by_user");
    assert_eq!(listed.len(), 1, "the new record is indexed");
    ok(store.delete(&key, later).await, "delete");
}
