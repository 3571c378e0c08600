//! Scenarios both server SQL stores (PostgreSQL, MySQL) run against a real
//! server. What differs per dialect (raw SQL, lock statements, how a store
//! is made) comes in as closures; the scenario and its assertions are
//! written once.

use std::time::{Duration, Instant};

use cloakroom::store::{SessionStore, StoreError};
use cloakroom::{SessionId, StorageKey, Timestamp};

use super::live_record;

/// Two stores (two "instances") on one database see each other's writes
/// and deletes.
pub async fn two_instances_share_one_database(a: &impl SessionStore, b: &impl SessionStore) {
    let key = SessionId::generate().storage_key();
    let user = format!(
        "shared-{}",
        &SessionId::generate().storage_key().to_hex()[..12]
    );
    let mut rec = live_record(Some(&user));
    rec.insert("n", &1u32).unwrap();
    a.create(&key, &rec).await.unwrap();
    assert!(matches!(
        b.create(&key, &rec).await,
        Err(StoreError::Conflict)
    ));

    let mut seen = b.load(&key).await.unwrap().expect("b sees a's create");
    assert_eq!(seen.get::<u32>("n").unwrap(), Some(1));
    seen.insert("n", &2u32).unwrap();
    seen.version = 2;
    b.save(&key, &seen, 1).await.unwrap();
    let back = a.load(&key).await.unwrap().expect("a sees b's save");
    assert_eq!(back.version, 2);
    assert_eq!(back.get::<u32>("n").unwrap(), Some(2));
    assert!(matches!(
        a.save(&key, &rec, 1).await,
        Err(StoreError::VersionConflict)
    ));
    assert_eq!(b.list_by_user(&user).await.unwrap().len(), 1);

    a.delete(&key).await.unwrap();
    assert!(b.load(&key).await.unwrap().is_none(), "b sees a's delete");
    assert!(b.list_by_user(&user).await.unwrap().is_empty());
    assert!(matches!(
        b.save(&key, &seen, 2).await,
        Err(StoreError::NotFound)
    ));
}

/// Several instances reaping at once delete every expired row exactly
/// once, and nothing live. `store` and `instances` share one database.
pub async fn concurrent_reapers_share_the_work<S: SessionStore + Clone>(
    store: &S,
    instances: Vec<S>,
) {
    let mut short = live_record(None);
    short.idle_deadline = Timestamp::now().saturating_add(Duration::from_millis(200));
    for _ in 0..50 {
        store
            .create(&SessionId::generate().storage_key(), &short)
            .await
            .unwrap();
    }
    let live = SessionId::generate().storage_key();
    store.create(&live, &live_record(None)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;

    let runs: Vec<_> = instances
        .into_iter()
        .map(|s| tokio::spawn(async move { s.delete_expired().await }))
        .collect();
    let mut total = 0;
    for run in runs {
        total += run.await.unwrap().unwrap();
    }
    // Runs that found the lock taken report 0; a run that started after
    // another finished finds nothing left. Either way: 50 in all.
    total += store.delete_expired().await.unwrap();
    assert_eq!(total, 50);
    assert!(store.load(&live).await.unwrap().is_some());
}

/// A start that cannot get the migration lock (held by `hold`, given back
/// by `release`) gives up with `Unavailable` after about 10 seconds instead
/// of hanging, and the next start after the release succeeds.
pub async fn migration_lock_wait_is_bounded<S, H>(
    start: impl AsyncFn() -> Result<S, StoreError>,
    hold: impl AsyncFnOnce() -> H,
    release: impl AsyncFnOnce(H),
) {
    let holder = hold().await;
    let started = Instant::now();
    let err = start()
        .await
        .err()
        .expect("a start under a held lock fails");
    assert!(matches!(err, StoreError::Unavailable(_)), "got {err:?}");
    assert!(started.elapsed() >= Duration::from_secs(9));
    release(holder).await;
    start().await.unwrap();
}

/// Only one instance reaps at a time (the others return at once, while
/// `hold` keeps the reaper lock), and a run deletes more than one batch.
/// `fill` files 2500 expired rows.
pub async fn reaping_is_exclusive_and_batched<S: SessionStore, H>(
    store: &S,
    try_reap: impl AsyncFn() -> Result<Option<u64>, StoreError>,
    fill: impl AsyncFnOnce(),
    hold: impl AsyncFnOnce() -> H,
    release: impl AsyncFnOnce(H),
) {
    fill().await;
    let live = SessionId::generate().storage_key();
    store.create(&live, &live_record(None)).await.unwrap();

    let holder = hold().await;
    assert_eq!(try_reap().await.unwrap(), None);
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    release(holder).await;

    assert_eq!(try_reap().await.unwrap(), Some(2500));
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert!(store.load(&live).await.unwrap().is_some());
    // The lock was released: a new holder can take it.
    assert_eq!(try_reap().await.unwrap(), Some(0));
}

/// A cancelled reaper run does not leave the lock held by a pooled
/// connection.
pub async fn cancelled_reap_releases_the_lock(
    try_reap: impl AsyncFn() -> Result<Option<u64>, StoreError>,
) {
    // Cancel runs at points spread over their length, some of them while
    // the lock is held.
    for i in 0..40 {
        let _ = tokio::time::timeout(Duration::from_micros(150 * i), try_reap()).await;
    }
    // The server frees the lock once it has seen the cancelled connections
    // close, which takes a while on a loaded machine.
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        if try_reap().await.unwrap().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the reaper lock leaked");
}

/// `touch` never pushes expiry (the `expires_at` column, read by
/// `expires_at`) past the absolute deadline, and touching to the same
/// deadline twice is not `NotFound`.
pub async fn touch_is_capped_by_the_absolute_deadline(
    store: &impl SessionStore,
    expires_at: impl AsyncFn(&StorageKey) -> i64,
) {
    let key = SessionId::generate().storage_key();
    let mut rec = live_record(None);
    rec.absolute_deadline = Timestamp::now().saturating_add(Duration::from_secs(5));
    store.create(&key, &rec).await.unwrap();
    let far = Timestamp::now().saturating_add(Duration::from_secs(3600));
    store.touch(&key, far).await.unwrap();
    store.touch(&key, far).await.unwrap();
    let stored = u64::try_from(expires_at(&key).await).unwrap();
    assert_eq!(stored, rec.absolute_deadline.as_millis());
    let left = rec.absolute_deadline.since(Timestamp::now());
    tokio::time::sleep(left + Duration::from_millis(300)).await;
    assert!(store.load(&key).await.unwrap().is_none());
    assert!(matches!(
        store.touch(&key, far).await,
        Err(StoreError::NotFound)
    ));
    store.delete(&key).await.unwrap();
}

/// Principals are compared exactly: no collation folds case, accents or
/// trailing spaces, and any length or byte (NUL included) works.
pub async fn unusual_users_round_trip(store: &impl SessionStore) {
    let tag = &SessionId::generate().storage_key().to_hex()[..12];
    let users = [
        format!("{tag}{}", "x".repeat(100_000)),
        format!("{tag}\0nul"),
        format!("{tag}-Alice"),
        format!("{tag}-alice"),
        format!("{tag}-alice "),
        format!("{tag}-alicé"),
    ];
    let mut keys = Vec::new();
    for user in &users {
        let key = SessionId::generate().storage_key();
        store.create(&key, &live_record(Some(user))).await.unwrap();
        keys.push(key);
    }
    for (user, key) in users.iter().zip(&keys) {
        let listed = store.list_by_user(user).await.unwrap();
        assert_eq!(listed.len(), 1, "user {:?}", &user[..user.len().min(20)]);
        assert_eq!(listed[0].key, *key);
        assert_eq!(listed[0].record.user.as_deref(), Some(user.as_str()));
    }
    assert_eq!(store.delete_by_user(&users[3], None).await.unwrap(), 1);
    for user in [&users[2], &users[4], &users[5]] {
        assert_eq!(store.list_by_user(user).await.unwrap().len(), 1);
    }
    for key in &keys {
        store.delete(key).await.unwrap();
    }
}

/// Creating over an expired row replaces it, in `create` and `rotate`.
pub async fn expired_rows_are_replaced(store: &impl SessionStore) {
    let key = SessionId::generate().storage_key();
    let mut old = live_record(None);
    old.idle_deadline = Timestamp::now().saturating_add(Duration::from_millis(300));
    store.create(&key, &old).await.unwrap();
    let other = SessionId::generate().storage_key();
    store.create(&other, &old).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut fresh = live_record(None);
    fresh.insert("v", "new").unwrap();
    store.create(&key, &fresh).await.unwrap();
    let back = store.load(&key).await.unwrap().unwrap();
    assert_eq!(back.get::<String>("v").unwrap().as_deref(), Some("new"));

    let from = SessionId::generate().storage_key();
    store.create(&from, &fresh).await.unwrap();
    store.rotate(&from, &other, &fresh).await.unwrap();
    assert!(store.load(&from).await.unwrap().is_none());
    assert!(store.load(&other).await.unwrap().is_some());
    for k in [key, other] {
        store.delete(&k).await.unwrap();
    }
}

/// A stored record that `spoil` overwrites with bytes that are no record
/// is `Corrupt`, not a panic.
pub async fn undecodable_record_is_corrupt(
    store: &impl SessionStore,
    spoil: impl AsyncFnOnce(&StorageKey),
) {
    let key = SessionId::generate().storage_key();
    store.create(&key, &live_record(None)).await.unwrap();
    spoil(&key).await;
    assert!(matches!(
        store.load(&key).await,
        Err(StoreError::Corrupt(_))
    ));
    store.delete(&key).await.unwrap();
}

/// An unreachable server is `Unavailable`, promptly.
pub async fn unreachable_server_is_unavailable<S: std::fmt::Debug>(
    connect: impl Future<Output = Result<S, StoreError>>,
) {
    let started = Instant::now();
    let err = connect.await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "got {err:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// A database written by a newer cloakroom (`set_version` writes its
/// `schema_version`, `version` reads it) is refused with `Corrupt` naming
/// `backend`, and left alone.
pub async fn newer_schema_version_is_refused<S: std::fmt::Debug>(
    backend: &str,
    start: impl AsyncFn() -> Result<S, StoreError>,
    set_version: impl AsyncFnOnce(i64),
    version: impl AsyncFnOnce() -> i64,
) {
    start().await.unwrap();
    set_version(99).await;
    let err = start().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "got {err:?}");
    assert!(err.to_string().contains("99"), "{err}");
    assert_eq!(err.backend(), Some(backend));
    assert_eq!(version().await, 99);
}

/// Many instances starting at once on an empty database all succeed.
pub async fn concurrent_migrations<S, F>(start: impl Fn() -> F)
where
    S: Send + 'static,
    F: Future<Output = Result<S, StoreError>> + Send + 'static,
{
    let starts: Vec<_> = (0..8).map(|_| tokio::spawn(start())).collect();
    for start in starts {
        start.await.unwrap().unwrap();
    }
}

/// `made`, or `None` after reporting `service` skipped (which fails under
/// `CI=true`).
pub fn or_skip<T, E: std::fmt::Display>(service: &str, made: Result<T, E>) -> Option<T> {
    made.map_err(|e| cloakroom::store::conformance::skip_service(service, &e))
        .ok()
}
