//! Scenarios of single records: create, load, save, touch, delete.

use std::time::Duration;

use super::fixtures::*;
use crate::expiry::Timestamp;
use crate::store::{SessionStore, StoreError};

/// A created record loads back equal, with its metadata.
pub async fn create_then_load<S: SessionStore + ?Sized>(store: &S) {
    let key = fresh_key();
    let mut rec = with_value(live_record(), "greeting", "hello");
    rec.user = Some(fresh_user());
    rec.device.user_agent = Some("conformance/1".into());
    ok(store.create(&key, &rec, now()).await, "create");
    let back = must_load(store, &key, "create_then_load").await;
    assert_eq!(back.version, rec.version, "version must round-trip");
    assert_eq!(
        value(&back, "greeting").as_deref(),
        Some("hello"),
        "data must round-trip"
    );
    assert_eq!(back.user, rec.user, "user must round-trip");
    assert_eq!(
        back.created_at, rec.created_at,
        "created_at must round-trip"
    );
    assert_eq!(
        back.absolute_deadline, rec.absolute_deadline,
        "absolute deadline must round-trip"
    );
    assert_eq!(
        back.idle_deadline, rec.idle_deadline,
        "idle deadline must round-trip"
    );
    assert_eq!(back.device, rec.device, "device metadata must round-trip");
    ok(store.delete(&key, now()).await, "delete");
}

/// S7: `create` on a taken key is `Conflict` and never overwrites.
pub async fn create_collision_is_conflict<S: SessionStore + ?Sized>(store: &S) {
    let key = fresh_key();
    ok(
        store
            .create(&key, &with_value(live_record(), "owner", "first"), now())
            .await,
        "create",
    );
    let second = store
        .create(&key, &with_value(live_record(), "owner", "attacker"), now())
        .await;
    assert!(
        matches!(second, Err(StoreError::Conflict)),
        "create on a taken key must be Conflict, got {second:?}"
    );
    let back = must_load(store, &key, "create collision").await;
    assert_eq!(
        value(&back, "owner").as_deref(),
        Some("first"),
        "create must never overwrite"
    );
    ok(store.delete(&key, now()).await, "delete");
}

/// Loading a key nobody created gives `None`, not an error.
pub async fn load_missing_is_none<S: SessionStore + ?Sized>(store: &S) {
    must_be_absent(store, &fresh_key(), "load of a never-created key").await;
}

/// S23: a store never returns an expired record, reaper or not.
pub async fn never_loads_expired<S: SessionStore + ?Sized>(store: &S) {
    // Already past its idle deadline when created.
    let key = fresh_key();
    let created = store.create(&key, &expired_record(), now()).await;
    assert!(
        created.is_ok(),
        "create of an expired record must not fail: {created:?}"
    );
    must_be_absent(store, &key, "record created already expired").await;

    // Past its absolute deadline although the idle one is far away.
    let key2 = fresh_key();
    let mut rec = live_record();
    rec.absolute_deadline = Timestamp::now().saturating_sub(Duration::from_secs(1));
    let _ = store.create(&key2, &rec, now()).await;
    must_be_absent(store, &key2, "record past its absolute deadline").await;

    // Live when created, expired a moment later.
    let key3 = fresh_key();
    let mut rec = live_record();
    // Three seconds leave room for a slow commit on a loaded machine and
    // for stores that keep expiry in whole seconds on a coarse clock.
    rec.idle_deadline = Timestamp::now().saturating_add(Duration::from_secs(3));
    ok(store.create(&key3, &rec, now()).await, "create short-lived");
    must_load(store, &key3, "short-lived record before its deadline").await;
    // Second-granular stores may keep an item up to a second past it.
    let left = rec.idle_deadline.since(Timestamp::now());
    tokio::time::sleep(left + Duration::from_millis(1100)).await;
    must_be_absent(store, &key3, "short-lived record after its deadline").await;
    // And it cannot be revived by a save or a touch.
    let mut again = rec.clone();
    again.version = 2;
    let saved = store.save(&key3, &again, 1, now()).await;
    assert!(
        matches!(saved, Err(StoreError::NotFound)),
        "save of an expired record must be NotFound, got {saved:?}"
    );
    must_be_absent(store, &key3, "expired record after a save attempt").await;
}

/// S28: `save` is compare-and-swap on the version.
pub async fn save_compare_and_swap<S: SessionStore + ?Sized>(store: &S) {
    let key = fresh_key();
    let rec = with_value(live_record(), "n", "1");
    ok(store.create(&key, &rec, now()).await, "create");

    let mut v2 = with_value(rec.clone(), "n", "2");
    v2.version = 2;
    ok(
        store.save(&key, &v2, 1, now()).await,
        "save with the current version",
    );
    let back = must_load(store, &key, "after save").await;
    assert_eq!(back.version, 2, "save must store the new version");
    assert_eq!(
        value(&back, "n").as_deref(),
        Some("2"),
        "save must store the new data"
    );

    // A writer that still believes version 1 loses.
    let mut stale = with_value(rec, "n", "stale");
    stale.version = 2;
    let r = store.save(&key, &stale, 1, now()).await;
    assert!(
        matches!(r, Err(StoreError::VersionConflict)),
        "stale save must be VersionConflict, got {r:?}"
    );
    let back = must_load(store, &key, "after stale save").await;
    assert_eq!(
        value(&back, "n").as_deref(),
        Some("2"),
        "a conflicting save must change nothing"
    );
    ok(store.delete(&key, now()).await, "delete");
}

/// S28: a save after a delete is `NotFound` and does not resurrect.
pub async fn save_after_delete_is_not_found<S: SessionStore + ?Sized>(store: &S) {
    let key = fresh_key();
    let rec = live_record();
    ok(store.create(&key, &rec, now()).await, "create");
    ok(store.delete(&key, now()).await, "delete");
    let mut next = with_value(rec, "k", "v");
    next.version = 2;
    let r = store.save(&key, &next, 1, now()).await;
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "save after delete must be NotFound, got {r:?}"
    );
    must_be_absent(store, &key, "save after delete").await;

    let never = fresh_key();
    let r = store.save(&never, &next, 1, now()).await;
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "save of a never-created key must be NotFound, got {r:?}"
    );
    must_be_absent(store, &never, "save of a never-created key").await;
}

/// `touch` moves the idle deadline and leaves data and version alone.
pub async fn touch_leaves_data<S: SessionStore + ?Sized>(store: &S) {
    let key = fresh_key();
    let rec = with_value(live_record(), "keep", "me");
    ok(store.create(&key, &rec, now()).await, "create");
    let later = rec.idle_deadline.saturating_add(Duration::from_secs(600));
    ok(store.touch(&key, later, now()).await, "touch");
    let back = must_load(store, &key, "after touch").await;
    assert_eq!(
        back.idle_deadline, later,
        "touch must move the idle deadline"
    );
    assert_eq!(
        back.version, rec.version,
        "touch must not change the version"
    );
    assert_eq!(
        value(&back, "keep").as_deref(),
        Some("me"),
        "touch must not change data"
    );
    assert_eq!(
        back.absolute_deadline, rec.absolute_deadline,
        "touch must not move the absolute deadline"
    );

    let r = store.touch(&fresh_key(), later, now()).await;
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "touch of a missing key must be NotFound, got {r:?}"
    );
    ok(store.delete(&key, now()).await, "delete");
}

/// Deleting twice, or deleting what never existed, succeeds.
pub async fn delete_is_idempotent<S: SessionStore + ?Sized>(store: &S) {
    let key = fresh_key();
    ok(store.create(&key, &live_record(), now()).await, "create");
    ok(store.delete(&key, now()).await, "first delete");
    ok(store.delete(&key, now()).await, "second delete");
    ok(
        store.delete(&fresh_key(), now()).await,
        "delete of a never-created key",
    );
    must_be_absent(store, &key, "after delete").await;
}
