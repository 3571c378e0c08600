//! Scenarios of `rotate`, alone and racing `delete_by_user`.

use std::time::Duration;

use super::fixtures::*;
use crate::expiry::Timestamp;
use crate::store::{SessionStore, StoreError};

/// `rotate` leaves exactly one live record: the new one, with the data.
pub async fn rotate_keeps_exactly_one<S: SessionStore + ?Sized>(store: &S) {
    let old = fresh_key();
    let new = fresh_key();
    let user = fresh_user();
    let mut rec = with_value(live_record(), "cart", "3 items");
    rec.user = Some(user.clone());
    ok(store.create(&old, &rec, now()).await, "create");
    let mut rotated = rec.clone();
    rotated.version = 2;
    ok(store.rotate(&old, &new, &rotated, now()).await, "rotate");
    must_be_absent(store, &old, "old key after rotate").await;
    let back = must_load(store, &new, "new key after rotate").await;
    assert_eq!(
        value(&back, "cart").as_deref(),
        Some("3 items"),
        "rotate must carry the data"
    );
    let listed = ok(store.list_by_user(&user, now()).await, "list_by_user");
    assert_eq!(
        listed.len(),
        1,
        "after rotate the user must have exactly one session"
    );
    assert_eq!(listed[0].key, new, "the listed session must be the new key");
    // A save through the old key must not bring it back.
    let r = store.save(&old, &rotated, 1, now()).await;
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "save through the rotated-away key must be NotFound, got {r:?}"
    );
    must_be_absent(store, &old, "old key after a late save").await;
    ok(store.delete(&new, now()).await, "delete");
}

/// `rotate` onto a taken key is `Conflict` and changes nothing.
pub async fn rotate_onto_taken_key_is_conflict<S: SessionStore + ?Sized>(store: &S) {
    let old = fresh_key();
    let taken = fresh_key();
    ok(
        store
            .create(&old, &with_value(live_record(), "who", "old"), now())
            .await,
        "create old",
    );
    ok(
        store
            .create(&taken, &with_value(live_record(), "who", "taken"), now())
            .await,
        "create taken",
    );
    let r = store
        .rotate(
            &old,
            &taken,
            &with_value(live_record(), "who", "rotated"),
            now(),
        )
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict)),
        "rotate onto a taken key must be Conflict, got {r:?}"
    );
    let a = must_load(store, &old, "old key after failed rotate").await;
    let b = must_load(store, &taken, "taken key after failed rotate").await;
    assert_eq!(value(&a, "who").as_deref(), Some("old"));
    assert_eq!(value(&b, "who").as_deref(), Some("taken"));
    ok(store.delete(&old, now()).await, "delete");
    ok(store.delete(&taken, now()).await, "delete");
}

/// S28: `rotate` needs a live record under the old key. Rotating a deleted
/// (or never created) key is `NotFound` and files nothing under the new key,
/// so a login racing a logout cannot bring the session back.
pub async fn rotate_of_deleted_key_is_not_found<S: SessionStore + ?Sized>(store: &S) {
    let user = fresh_user();
    let old = fresh_key();
    let new = fresh_key();
    let mut rec = with_value(live_record(), "cart", "3 items");
    rec.user = Some(user.clone());
    ok(store.create(&old, &rec, now()).await, "create");
    ok(store.delete(&old, now()).await, "delete");
    let mut rotated = rec.clone();
    rotated.version = 2;
    let r = store.rotate(&old, &new, &rotated, now()).await;
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "rotate of a deleted key must be NotFound, got {r:?}"
    );
    must_be_absent(store, &new, "new key after rotating a deleted key").await;
    must_be_absent(store, &old, "deleted key after a rotate attempt").await;
    assert!(
        listed_keys(store, &user).await.is_empty(),
        "rotating a deleted key must not give the user a session"
    );

    let never = fresh_key();
    let new2 = fresh_key();
    let r = store.rotate(&never, &new2, &rotated, now()).await;
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "rotate of a never-created key must be NotFound, got {r:?}"
    );
    must_be_absent(store, &new2, "new key after rotating a never-created key").await;
    assert!(
        listed_keys(store, &user).await.is_empty(),
        "rotating a never-created key must not give the user a session"
    );
}

/// S23/S28: an expired record cannot be rotated: `NotFound`, and nothing is
/// filed under the new key.
pub async fn rotate_of_expired_key_is_not_found<S: SessionStore + ?Sized>(store: &S) {
    let user = fresh_user();

    // Already expired when created (some stores do not even store it).
    let old = fresh_key();
    let new = fresh_key();
    let mut rec = expired_record();
    rec.user = Some(user.clone());
    let created = store.create(&old, &rec, now()).await;
    assert!(
        created.is_ok(),
        "create of an expired record must not fail: {created:?}"
    );
    let mut rotated = live_record();
    rotated.user = Some(user.clone());
    rotated.version = 2;
    let r = store.rotate(&old, &new, &rotated, now()).await;
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "rotate of a record created expired must be NotFound, got {r:?}"
    );
    must_be_absent(store, &new, "new key after rotating an expired record").await;

    // Live when created, expired a moment later.
    let old = fresh_key();
    let new = fresh_key();
    let (rec, wait) = short_lived_for(&user);
    ok(store.create(&old, &rec, now()).await, "create short-lived");
    must_load(store, &old, "short-lived record before its deadline").await;
    tokio::time::sleep(wait).await;
    must_be_absent(store, &old, "short-lived record after its deadline").await;
    let r = store.rotate(&old, &new, &rotated, now()).await;
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "rotate of an expired record must be NotFound, got {r:?}"
    );
    must_be_absent(store, &new, "new key after rotating an expired record").await;
    must_be_absent(store, &old, "expired record after a rotate attempt").await;
    assert!(
        listed_keys(store, &user).await.is_empty(),
        "rotating an expired record must not give the user a session"
    );
}

/// S23: `touch` of an expired record is `NotFound` and does not make it
/// loadable again.
pub async fn touch_after_expiry_is_not_found<S: SessionStore + ?Sized>(store: &S) {
    let user = fresh_user();
    let key = fresh_key();
    let (rec, wait) = short_lived_for(&user);
    ok(store.create(&key, &rec, now()).await, "create short-lived");
    must_load(store, &key, "short-lived record before its deadline").await;
    tokio::time::sleep(wait).await;
    must_be_absent(store, &key, "short-lived record after its deadline").await;
    let later = Timestamp::now().saturating_add(Duration::from_secs(600));
    let r = store.touch(&key, later, now()).await;
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "touch of an expired record must be NotFound, got {r:?}"
    );
    must_be_absent(store, &key, "expired record after a touch attempt").await;
    assert!(
        listed_keys(store, &user).await.is_empty(),
        "a touch must not bring an expired session back into the listing"
    );
}

/// S28: "log out everywhere" racing a rotation of one of the user's sessions
/// leaves the user with no live session, whichever runs first: if the
/// rotation completed first, `delete_by_user` deletes the new key too; if
/// the deletion reached the old key first, the rotation is `NotFound`.
pub async fn delete_by_user_racing_rotate_leaves_no_live_session<S: SessionStore + ?Sized>(
    store: &S,
) {
    for round in 0u64..20 {
        let user = fresh_user();
        let mut keys = Vec::new();
        for _ in 0..3 {
            keys.push(create_for(store, &user).await);
        }
        let old = keys[0];
        let new = fresh_key();
        let mut rotated = must_load(store, &old, "before the race").await;
        rotated.version += 1;
        // Stagger the two by 0-2 ms, alternately, so the rounds cover
        // several interleavings.
        let lag = Duration::from_millis(round % 3);
        let (rotate_lag, delete_lag) = if round % 2 == 0 {
            (lag, Duration::ZERO)
        } else {
            (Duration::ZERO, lag)
        };
        let (deleted, rotated_result) = tokio::join!(
            async {
                tokio::time::sleep(delete_lag).await;
                retrying("delete_by_user", || {
                    store.delete_by_user(&user, None, now())
                })
                .await
            },
            async {
                tokio::time::sleep(rotate_lag).await;
                retrying("rotate", || store.rotate(&old, &new, &rotated, now())).await
            },
        );
        ok(deleted, "delete_by_user racing rotate");
        assert!(
            matches!(rotated_result, Ok(()) | Err(StoreError::NotFound)),
            "rotate racing delete_by_user must succeed or be NotFound, got {rotated_result:?}"
        );
        must_be_absent(
            store,
            &new,
            &format!(
                "round {round}: the rotated-to key after delete_by_user (rotate gave {rotated_result:?})"
            ),
        )
        .await;
        for key in &keys {
            must_be_absent(store, key, &format!("round {round}: a deleted-by-user key")).await;
        }
        assert!(
            listed_keys(store, &user).await.is_empty(),
            "round {round}: the user must have no session left (rotate gave {rotated_result:?})"
        );
    }
}
