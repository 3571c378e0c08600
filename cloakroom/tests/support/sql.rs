//! Scenarios both server SQL stores (PostgreSQL, MySQL) run against a real
//! server. What differs per dialect (raw SQL, lock statements, how a store
//! is made) comes in as closures; the scenario and its assertions are
//! written once. [`server_scenarios!`] emits, one test each, the scenarios
//! that need nothing of a dialect but its store and pool types; throwaway
//! namespaces (schemas, databases) are made by [`fresh_throwaway`].

use std::time::{Duration, Instant};

use cloakroom::store::{SessionStore, StoreError};
use cloakroom::{SessionId, StorageKey, Timestamp};
use sqlx::pool::{Pool, PoolOptions};
use sqlx::{Connection, Database, Executor, IntoArguments};

use super::{contains, live_record, services};

/// Throwaway namespaces are named `cloakroom_it_<unix seconds>_<random>`.
pub const THROWAWAY_PREFIX: &str = "cloakroom_it_";

/// The tests that every server store runs alike, one `#[tokio::test]`
/// each (named as the scenario), the conformance suite among them, and the
/// store makers the test file's own tests use too: `throwaway()` (a pool on
/// a namespace of its own and its name, or `None`: skipped),
/// `isolated_store()` and `shared_store()` (a store on the shared tables,
/// or `None`). `store` is the store type on pools of type `pool`;
/// `throwaway_pool()` makes a pool on a fresh namespace, `drop(&name)`
/// removes one, `url()` is the server's and `unreachable` a URL where no
/// server listens.
// Every test crate compiles `support`; only the server stores' use this.
#[allow(unused_macros)]
macro_rules! server_scenarios {
    (
        backend: $backend:literal,
        store: $store:ident,
        pool: $pool:ty,
        throwaway_pool: $throwaway_pool:path,
        drop: $drop:path,
        url: $url:path,
        unreachable: $unreachable:literal $(,)?
    ) => {
        async fn throwaway() -> Option<($pool, String)> {
            $crate::support::sql::or_skip($backend, $throwaway_pool().await)
        }

        /// A store alone in a throwaway namespace.
        async fn isolated_store() -> Result<$store, cloakroom::store::StoreError> {
            let made = $throwaway_pool().await;
            let (pool, _name) = made.map_err(cloakroom::store::StoreError::unavailable)?;
            $store::from_pool(pool).await
        }

        /// A store on the shared tables of the test database.
        async fn shared_store() -> Option<$store> {
            $crate::support::sql::or_skip($backend, $store::connect(&$url()).await)
        }

        /// Each scenario gets a namespace of its own: `delete_expired_reaps`
        /// counts what one reaper run deleted, which a concurrent
        /// scenario's reaper could otherwise steal from a shared table.
        mod conformance {
            cloakroom::conformance_tests!(service $backend, async super::isolated_store().await);
        }

        /// Two pools (two "instances") on one database see each other's
        /// writes and deletes.
        #[tokio::test]
        async fn two_instances_share_one_database() {
            let (Some(a), Some(b)) = (shared_store().await, shared_store().await) else {
                return;
            };
            $crate::support::sql::two_instances_share_one_database(&a, &b).await;
        }

        /// A database written by a newer cloakroom is refused, and left
        /// alone.
        #[tokio::test]
        async fn newer_schema_version_is_refused() {
            let Some((pool, name)) = throwaway().await else {
                return;
            };
            $crate::support::sql::newer_schema_version_is_refused(
                $backend,
                async || $store::from_pool(pool.clone()).await,
                async |v| {
                    let sql = format!(
                        "UPDATE cloakroom_meta SET value = {v} WHERE name = 'schema_version'"
                    );
                    sqlx::query(&sql).execute(&pool).await.unwrap();
                },
                async || {
                    let sql = "SELECT value FROM cloakroom_meta WHERE name = 'schema_version'";
                    sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
                },
            )
            .await;
            pool.close().await;
            $drop(&name).await;
        }

        /// Many instances starting at once on an empty namespace all
        /// succeed.
        #[tokio::test]
        async fn concurrent_migrations() {
            let Some((pool, name)) = throwaway().await else {
                return;
            };
            $crate::support::sql::concurrent_migrations(|| $store::from_pool(pool.clone())).await;
            pool.close().await;
            $drop(&name).await;
        }

        /// Several instances reaping at once delete every expired row
        /// exactly once, and nothing live.
        #[tokio::test]
        async fn concurrent_reapers_share_the_work() {
            let Some((pool, name)) = throwaway().await else {
                return;
            };
            let store = $store::from_pool(pool.clone()).await.unwrap();
            let mut instances = Vec::new();
            for _ in 0..4 {
                instances.push($store::from_pool(pool.clone()).await.unwrap());
            }
            $crate::support::sql::concurrent_reapers_share_the_work(&store, instances).await;
            pool.close().await;
            $drop(&name).await;
        }

        /// A cancelled reaper run does not leave the lock held by a pooled
        /// connection.
        #[tokio::test]
        async fn cancelled_reap_releases_the_lock() {
            let Some((pool, name)) = throwaway().await else {
                return;
            };
            let store = $store::from_pool(pool.clone()).await.unwrap();
            $crate::support::sql::cancelled_reap_releases_the_lock(async || store.try_reap(cloakroom::Timestamp::now()).await)
                .await;
            pool.close().await;
            $drop(&name).await;
        }

        /// Principals are compared exactly, whatever their bytes or length.
        #[tokio::test]
        async fn unusual_users_round_trip() {
            if let Some(store) = shared_store().await {
                $crate::support::sql::unusual_users_round_trip(&store).await;
            }
        }

        /// Creating over an expired row replaces it, in `create` and
        /// `rotate`.
        #[tokio::test]
        async fn expired_rows_are_replaced() {
            if let Some(store) = shared_store().await {
                $crate::support::sql::expired_rows_are_replaced(&store).await;
            }
        }

        /// An unreachable server is `Unavailable`, promptly.
        #[tokio::test]
        async fn unreachable_server_is_unavailable() {
            let connect = $store::connect($unreachable);
            $crate::support::sql::unreachable_server_is_unavailable(connect).await;
        }

        /// The public futures can be spawned.
        #[allow(dead_code, clippy::let_underscore_future)]
        fn futures_are_send(store: &$store, pool: $pool) {
            fn send<T: Send>(_: T) {}
            send($store::connect($unreachable));
            send($store::from_pool(pool));
            send(store.try_reap(cloakroom::Timestamp::now()));
            send(cloakroom::store::SessionStore::delete_expired(
                store,
                cloakroom::Timestamp::now(),
            ));
        }
    };
}
#[allow(unused_imports)]
pub(crate) use server_scenarios;

/// A pool of one connection on `url`, for making and dropping throwaway
/// namespaces.
pub async fn admin_pool<DB: Database>(url: &str) -> Result<Pool<DB>, sqlx::Error> {
    PoolOptions::<DB>::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}

/// A pool of up to 8 connections with `options`, as a test uses it.
pub async fn test_pool<DB: Database>(
    options: <DB::Connection as Connection>::Options,
) -> Result<Pool<DB>, sqlx::Error> {
    PoolOptions::<DB>::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// Drops those of the throwaway namespaces `old` that earlier runs left
/// (older than an hour) with the statement `drop` makes for a name, then
/// makes a fresh one with `create`'s: its name.
pub async fn fresh_throwaway<DB: Database>(
    admin: &Pool<DB>,
    old: Vec<String>,
    drop: impl Fn(&str) -> String,
    create: impl Fn(&str) -> String,
) -> Result<String, sqlx::Error>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    for name in old {
        if services::is_stale_throwaway(&name, THROWAWAY_PREFIX) {
            let _ = sqlx::query(&drop(&name)).execute(admin).await;
        }
    }
    let name = services::throwaway_name(THROWAWAY_PREFIX);
    sqlx::query(&create(&name)).execute(admin).await?;
    Ok(name)
}

/// Runs `drop` (the statement that drops a throwaway namespace) on an
/// admin connection to `url`, if the server is there.
pub async fn drop_throwaway<DB: Database>(url: &str, drop: &str)
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    if let Ok(admin) = admin_pool::<DB>(url).await {
        let _ = sqlx::query(drop).execute(&admin).await;
        admin.close().await;
    }
}

/// S6: no column of any row holds a session ID, raw, encoded or in hex.
/// `dump` reads every row of `cloakroom_sessions` (`SELECT *`); `as_text`
/// reads each row as one line of text where the server can cast a row to
/// text (PostgreSQL), or nothing.
pub async fn dump_holds_no_session_id<R>(
    store: &impl SessionStore,
    dump: impl AsyncFn() -> Vec<R>,
    as_text: impl AsyncFn() -> Vec<String>,
) where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let id = SessionId::generate();
    let key = id.storage_key();
    let mut rec = live_record(Some("s6-user"));
    rec.insert("note", "hello").unwrap();
    store.create(&key, &rec, Timestamp::now()).await.unwrap();

    let hex_id: String = id.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let needles: [&[u8]; 3] = [
        id.as_bytes(),
        id.expose_secret().as_bytes(),
        hex_id.as_bytes(),
    ];
    let rows = dump().await;
    let mut saw_ours = false;
    for row in &rows {
        for i in 0..row.len() {
            let cell: Vec<u8> = if let Ok(b) = row.try_get::<Option<Vec<u8>>, _>(i) {
                b.unwrap_or_default()
            } else if let Ok(n) = row.try_get::<Option<i64>, _>(i) {
                n.map(|n| n.to_string().into_bytes()).unwrap_or_default()
            } else {
                row.try_get::<Option<String>, _>(i)
                    .unwrap()
                    .unwrap_or_default()
                    .into_bytes()
            };
            if cell == key.0 {
                saw_ours = true;
            }
            for needle in needles {
                assert!(!contains(&cell, needle), "column {i} holds the session ID");
            }
        }
    }
    assert!(saw_ours, "the dump must include the new row");
    for line in as_text().await {
        for needle in needles {
            assert!(!contains(line.as_bytes(), needle));
        }
    }
    store.delete(&key, Timestamp::now()).await.unwrap();
}

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
    a.create(&key, &rec, Timestamp::now()).await.unwrap();
    assert!(matches!(
        b.create(&key, &rec, Timestamp::now()).await,
        Err(StoreError::Conflict)
    ));

    let mut seen = b
        .load(&key, Timestamp::now())
        .await
        .unwrap()
        .expect("b sees a's create");
    assert_eq!(seen.get::<u32>("n").unwrap(), Some(1));
    seen.insert("n", &2u32).unwrap();
    seen.version = 2;
    b.save(&key, &seen, 1, Timestamp::now()).await.unwrap();
    let back = a
        .load(&key, Timestamp::now())
        .await
        .unwrap()
        .expect("a sees b's save");
    assert_eq!(back.version, 2);
    assert_eq!(back.get::<u32>("n").unwrap(), Some(2));
    assert!(matches!(
        a.save(&key, &rec, 1, Timestamp::now()).await,
        Err(StoreError::VersionConflict)
    ));
    assert_eq!(
        b.list_by_user(&user, Timestamp::now()).await.unwrap().len(),
        1
    );

    a.delete(&key, Timestamp::now()).await.unwrap();
    assert!(
        b.load(&key, Timestamp::now()).await.unwrap().is_none(),
        "b sees a's delete"
    );
    assert!(
        b.list_by_user(&user, Timestamp::now())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        b.save(&key, &seen, 2, Timestamp::now()).await,
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
            .create(
                &SessionId::generate().storage_key(),
                &short,
                Timestamp::now(),
            )
            .await
            .unwrap();
    }
    let live = SessionId::generate().storage_key();
    store
        .create(&live, &live_record(None), Timestamp::now())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;

    let runs: Vec<_> = instances
        .into_iter()
        .map(|s| tokio::spawn(async move { s.delete_expired(Timestamp::now()).await }))
        .collect();
    let mut total = 0;
    for run in runs {
        total += run.await.unwrap().unwrap();
    }
    // Runs that found the lock taken report 0; a run that started after
    // another finished finds nothing left. Either way: 50 in all.
    total += store.delete_expired(Timestamp::now()).await.unwrap();
    assert_eq!(total, 50);
    assert!(store.load(&live, Timestamp::now()).await.unwrap().is_some());
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
    store
        .create(&live, &live_record(None), Timestamp::now())
        .await
        .unwrap();

    let holder = hold().await;
    assert_eq!(try_reap().await.unwrap(), None);
    assert_eq!(store.delete_expired(Timestamp::now()).await.unwrap(), 0);
    release(holder).await;

    assert_eq!(try_reap().await.unwrap(), Some(2500));
    assert_eq!(store.delete_expired(Timestamp::now()).await.unwrap(), 0);
    assert!(store.load(&live, Timestamp::now()).await.unwrap().is_some());
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
    store.create(&key, &rec, Timestamp::now()).await.unwrap();
    let far = Timestamp::now().saturating_add(Duration::from_secs(3600));
    store.touch(&key, far, Timestamp::now()).await.unwrap();
    store.touch(&key, far, Timestamp::now()).await.unwrap();
    let stored = u64::try_from(expires_at(&key).await).unwrap();
    assert_eq!(stored, rec.absolute_deadline.as_millis());
    let left = rec.absolute_deadline.since(Timestamp::now());
    tokio::time::sleep(left + Duration::from_millis(300)).await;
    assert!(store.load(&key, Timestamp::now()).await.unwrap().is_none());
    assert!(matches!(
        store.touch(&key, far, Timestamp::now()).await,
        Err(StoreError::NotFound)
    ));
    store.delete(&key, Timestamp::now()).await.unwrap();
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
        store
            .create(&key, &live_record(Some(user)), Timestamp::now())
            .await
            .unwrap();
        keys.push(key);
    }
    for (user, key) in users.iter().zip(&keys) {
        let listed = store.list_by_user(user, Timestamp::now()).await.unwrap();
        assert_eq!(listed.len(), 1, "user {:?}", &user[..user.len().min(20)]);
        assert_eq!(listed[0].key, *key);
        assert_eq!(listed[0].record.user.as_deref(), Some(user.as_str()));
    }
    assert_eq!(
        store
            .delete_by_user(&users[3], None, Timestamp::now())
            .await
            .unwrap(),
        1
    );
    for user in [&users[2], &users[4], &users[5]] {
        assert_eq!(
            store
                .list_by_user(user, Timestamp::now())
                .await
                .unwrap()
                .len(),
            1
        );
    }
    for key in &keys {
        store.delete(key, Timestamp::now()).await.unwrap();
    }
}

/// Creating over an expired row replaces it, in `create` and `rotate`.
pub async fn expired_rows_are_replaced(store: &impl SessionStore) {
    let key = SessionId::generate().storage_key();
    let mut old = live_record(None);
    old.idle_deadline = Timestamp::now().saturating_add(Duration::from_millis(300));
    store.create(&key, &old, Timestamp::now()).await.unwrap();
    let other = SessionId::generate().storage_key();
    store.create(&other, &old, Timestamp::now()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut fresh = live_record(None);
    fresh.insert("v", "new").unwrap();
    store.create(&key, &fresh, Timestamp::now()).await.unwrap();
    let back = store.load(&key, Timestamp::now()).await.unwrap().unwrap();
    assert_eq!(back.get::<String>("v").unwrap().as_deref(), Some("new"));

    let from = SessionId::generate().storage_key();
    store.create(&from, &fresh, Timestamp::now()).await.unwrap();
    store
        .rotate(&from, &other, &fresh, Timestamp::now())
        .await
        .unwrap();
    assert!(store.load(&from, Timestamp::now()).await.unwrap().is_none());
    assert!(
        store
            .load(&other, Timestamp::now())
            .await
            .unwrap()
            .is_some()
    );
    for k in [key, other] {
        store.delete(&k, Timestamp::now()).await.unwrap();
    }
}

/// A stored record that `spoil` overwrites with bytes that are no record
/// is `Corrupt`, not a panic.
pub async fn undecodable_record_is_corrupt(
    store: &impl SessionStore,
    spoil: impl AsyncFnOnce(&StorageKey),
) {
    let key = SessionId::generate().storage_key();
    store
        .create(&key, &live_record(None), Timestamp::now())
        .await
        .unwrap();
    spoil(&key).await;
    assert!(matches!(
        store.load(&key, Timestamp::now()).await,
        Err(StoreError::Corrupt(_))
    ));
    store.delete(&key, Timestamp::now()).await.unwrap();
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
