//! Scenarios of the per-user index.

use std::time::Duration;

use super::fixtures::*;
use crate::expiry::Timestamp;
use crate::store::SessionStore;

/// The per-user index lists exactly a user's live sessions.
pub async fn user_index_listing<S: SessionStore + ?Sized>(store: &S) {
    let alice = fresh_user();
    let bob = fresh_user();
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(create_for(store, &alice).await);
    }
    let theirs = create_for(store, &bob).await;
    let anonymous = fresh_key();
    ok(
        store.create(&anonymous, &live_record(), now()).await,
        "create anonymous",
    );

    assert_eq!(
        listed_keys(store, &alice).await,
        sorted(mine.clone()),
        "alice's listing"
    );
    assert_eq!(
        listed_keys(store, &bob).await,
        vec![theirs],
        "bob's listing"
    );
    assert!(
        listed_keys(store, &fresh_user()).await.is_empty(),
        "a stranger has no sessions"
    );
    let listed = ok(store.list_by_user(&alice, now()).await, "list_by_user");
    assert!(
        listed
            .iter()
            .all(|s| s.record.user.as_deref() == Some(alice.as_str())),
        "listed records must carry their user"
    );
    for key in mine.iter().chain([&theirs, &anonymous]) {
        ok(store.delete(key, now()).await, "delete");
    }
}

/// `delete_by_user` removes all but the excepted session, and no one else's.
pub async fn user_index_delete_except<S: SessionStore + ?Sized>(store: &S) {
    let alice = fresh_user();
    let bob = fresh_user();
    let keep = create_for(store, &alice).await;
    let a2 = create_for(store, &alice).await;
    let a3 = create_for(store, &alice).await;
    let theirs = create_for(store, &bob).await;

    let n = ok(
        store.delete_by_user(&alice, Some(&keep), now()).await,
        "delete_by_user",
    );
    assert_eq!(n, 2, "delete_by_user must report the sessions it deleted");
    must_be_absent(store, &a2, "deleted by user").await;
    must_be_absent(store, &a3, "deleted by user").await;
    must_load(store, &keep, "the excepted session").await;
    must_load(store, &theirs, "another user's session").await;
    assert_eq!(
        listed_keys(store, &alice).await,
        vec![keep],
        "only the excepted session is listed"
    );

    let n = ok(
        store.delete_by_user(&alice, None, now()).await,
        "delete_by_user(None)",
    );
    assert_eq!(n, 1, "delete_by_user without exception deletes the rest");
    must_be_absent(store, &keep, "after delete_by_user(None)").await;
    assert!(listed_keys(store, &alice).await.is_empty());
    ok(store.delete(&theirs, now()).await, "delete");
}

/// Index entries die with their sessions: delete, rotate, a change of user
/// and expiry all leave the listing exact.
pub async fn index_entries_die_with_sessions<S: SessionStore + ?Sized>(store: &S) {
    let alice = fresh_user();
    let bob = fresh_user();

    let deleted = create_for(store, &alice).await;
    ok(store.delete(&deleted, now()).await, "delete");
    assert!(
        listed_keys(store, &alice).await.is_empty(),
        "a deleted session must leave the index"
    );

    // A save that changes the user moves the index entry.
    let moved = create_for(store, &alice).await;
    let mut rec = must_load(store, &moved, "before user change").await;
    let expected = rec.version;
    rec.user = Some(bob.clone());
    rec.version = expected + 1;
    ok(
        store.save(&moved, &rec, expected, now()).await,
        "save with new user",
    );
    assert!(
        listed_keys(store, &alice).await.is_empty(),
        "old user's index must lose the session"
    );
    assert_eq!(
        listed_keys(store, &bob).await,
        vec![moved],
        "new user's index must gain it"
    );

    // A save that signs the user out removes the entry.
    rec.user = None;
    rec.version += 1;
    ok(
        store.save(&moved, &rec, expected + 1, now()).await,
        "save signing out",
    );
    assert!(
        listed_keys(store, &bob).await.is_empty(),
        "signing out must leave the index"
    );
    ok(store.delete(&moved, now()).await, "delete");

    // An expired session is never listed nor deleted-by-user as live.
    let key = fresh_key();
    let mut rec = live_record();
    rec.user = Some(alice.clone());
    rec.idle_deadline = Timestamp::now().saturating_add(Duration::from_millis(1000));
    ok(store.create(&key, &rec, now()).await, "create short-lived");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(
        listed_keys(store, &alice).await.is_empty(),
        "an expired session must not be listed"
    );
    let _ = store.delete_expired(now()).await;
    assert!(
        listed_keys(store, &alice).await.is_empty(),
        "reaping must leave the index exact"
    );
}
