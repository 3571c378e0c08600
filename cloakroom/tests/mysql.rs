//! `MySqlStore` against a real MySQL 8 or MariaDB server: the conformance suite, the S6
//! dump check, schema versioning and migration locking, reaping, exact
//! principals, concurrent logins and several instances on one database.
//!
//! The server comes from `CLOAKROOM_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`). When it is unreachable the
//! tests report themselves skipped, which fails under `CI=true`.

#![cfg(feature = "mysql")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{live_record, services, sql as scenario};

use cloakroom::store::conformance::skip_service;
use cloakroom::store::{MySqlStore, SessionStore, StoreError};
use cloakroom::{SessionId, Timestamp};
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlDatabaseError, MySqlPool, MySqlPoolOptions};

fn url() -> String {
    services::mysql_url()
}

/// A pool on a fresh database of its own, so a test owns the whole table.
/// Databases older than an hour, left by earlier runs, are dropped on the
/// way.
async fn throwaway_pool() -> Result<(MySqlPool, String), sqlx::Error> {
    let admin = scenario::admin_pool::<MySql>(&url()).await?;
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata
         WHERE schema_name LIKE 'cloakroom\\_it\\_%'",
    )
    .fetch_all(&admin)
    .await?;
    let database = scenario::fresh_throwaway(
        &admin,
        old,
        |name| format!("DROP DATABASE IF EXISTS `{name}`"),
        |name| format!("CREATE DATABASE `{name}`"),
    )
    .await?;
    admin.close().await;
    let options: MySqlConnectOptions = url().parse()?;
    let pool = scenario::test_pool(options.database(&database)).await?;
    Ok((pool, database))
}

async fn drop_database(database: &str) {
    let drop = format!("DROP DATABASE IF EXISTS `{database}`");
    scenario::drop_throwaway::<MySql>(&url(), &drop).await;
}

scenario::server_scenarios! {
    backend: "mysql",
    store: MySqlStore,
    pool: MySqlPool,
    throwaway_pool: throwaway_pool,
    drop: drop_database,
    url: url,
    unreachable: "mysql://root@127.0.0.1:1/test",
}

/// S6: no column of any row holds a session ID, raw, encoded or in hex.
#[tokio::test]
async fn dump_holds_no_session_id() {
    let Some(store) = shared_store().await else {
        return;
    };
    scenario::dump_holds_no_session_id(
        &store,
        async || {
            let dump = sqlx::query("SELECT * FROM cloakroom_sessions");
            dump.fetch_all(store.pool()).await.unwrap()
        },
        // MySQL cannot cast a whole row to text.
        async || Vec::new(),
    )
    .await;
}

/// The named locks are scoped to the database (as the store names them).
const MIGRATE_LOCK: &str = "LEFT(CONCAT('cloakroom_migrate:', COALESCE(DATABASE(), '')), 64)";
const REAP_LOCK: &str = "LEFT(CONCAT('cloakroom_reap:', COALESCE(DATABASE(), '')), 64)";

/// Takes the named lock `name` on a connection of its own, which it returns.
async fn hold_named_lock(pool: &MySqlPool, name: &str) -> sqlx::pool::PoolConnection<sqlx::MySql> {
    let mut holder = pool.acquire().await.unwrap();
    let got: Option<i64> =
        sqlx::query_scalar(&format!("SELECT CAST(GET_LOCK({name}, 0) AS SIGNED)"))
            .fetch_one(&mut *holder)
            .await
            .unwrap();
    assert_eq!(got, Some(1));
    holder
}

async fn release_named_lock(mut holder: sqlx::pool::PoolConnection<sqlx::MySql>, name: &str) {
    let _: Option<i64> =
        sqlx::query_scalar(&format!("SELECT CAST(RELEASE_LOCK({name}) AS SIGNED)"))
            .fetch_one(&mut *holder)
            .await
            .unwrap();
}

/// A start that cannot get the migration lock gives up with `Unavailable`
/// instead of hanging.
#[tokio::test]
async fn migration_lock_wait_is_bounded() {
    let Some((pool, database)) = throwaway().await else {
        return;
    };
    scenario::migration_lock_wait_is_bounded(
        async || MySqlStore::from_pool(pool.clone()).await,
        async || hold_named_lock(&pool, MIGRATE_LOCK).await,
        async |holder| release_named_lock(holder, MIGRATE_LOCK).await,
    )
    .await;
    pool.close().await;
    drop_database(&database).await;
}

/// Only one instance reaps at a time; the others return at once.
#[tokio::test]
async fn reaping_is_exclusive_and_batched() {
    let Some((pool, database)) = throwaway().await else {
        return;
    };
    let store = MySqlStore::from_pool(pool.clone()).await.unwrap();
    scenario::reaping_is_exclusive_and_batched(
        &store,
        async || store.try_reap(Timestamp::now()).await,
        // 2500 expired rows: more than two batches.
        async || {
            let values = vec!["(?, 1, 1, 1, 1, x'00')"; 2500].join(", ");
            let sql = format!(
                "INSERT INTO cloakroom_sessions
                     (`key`, version, idle_deadline, absolute_deadline, expires_at, record)
                 VALUES {values}"
            );
            let mut insert = sqlx::query(&sql);
            for _ in 0..2500 {
                insert = insert.bind(SessionId::generate().storage_key().0.to_vec());
            }
            insert.execute(&pool).await.unwrap();
        },
        async || hold_named_lock(&pool, REAP_LOCK).await,
        async |holder| release_named_lock(holder, REAP_LOCK).await,
    )
    .await;
    pool.close().await;
    drop_database(&database).await;
}

/// `touch` never pushes expiry past the absolute deadline, and touching to
/// the same deadline twice (a matched row that changes nothing) is not
/// `NotFound`.
#[tokio::test]
async fn touch_is_capped_by_the_absolute_deadline() {
    let Some(store) = shared_store().await else {
        return;
    };
    let expires_at = async |key: &cloakroom::StorageKey| -> i64 {
        let sql = "SELECT expires_at FROM cloakroom_sessions WHERE `key` = ?";
        let query = sqlx::query_scalar(sql).bind(key.0.to_vec());
        query.fetch_one(store.pool()).await.unwrap()
    };
    scenario::touch_is_capped_by_the_absolute_deadline(&store, expires_at).await;
}

/// A stored record that cannot be decoded is `Corrupt`, not a panic.
#[tokio::test]
async fn undecodable_record_is_corrupt() {
    let Some(store) = shared_store().await else {
        return;
    };
    let spoil = async |key: &cloakroom::StorageKey| {
        let sql = "UPDATE cloakroom_sessions SET record = x'09' WHERE `key` = ?";
        let query = sqlx::query(sql).bind(key.0.to_vec());
        query.execute(store.pool()).await.unwrap();
    };
    scenario::undecodable_record_is_corrupt(&store, spoil).await;
}

/// A pool without a default database is refused with a clear error.
#[tokio::test]
async fn no_database_is_refused() {
    let Ok(options) = url().parse::<MySqlConnectOptions>() else {
        return;
    };
    let Ok(admin) = scenario::admin_pool::<MySql>(&url()).await else {
        skip_service("mysql", &"unreachable");
        return;
    };
    admin.close().await;
    // Options without a database: rebuild from host, port and user.
    let bare = MySqlConnectOptions::new()
        .host(options.get_host())
        .port(options.get_port())
        .username(options.get_username());
    let pool = MySqlPoolOptions::new()
        .max_connections(1)
        .connect_with(bare)
        .await
        .unwrap();
    let err = MySqlStore::from_pool(pool).await.unwrap_err();
    assert!(err.to_string().contains("no default database"), "{err}");
    assert_eq!(err.backend(), Some("mysql"));
}

/// Many logins at once (rotate + create on neighbouring keys) neither
/// deadlock nor wait on InnoDB gap locks.
#[tokio::test]
async fn concurrent_rotations_do_not_deadlock() {
    let Some(store) = shared_store().await else {
        return;
    };
    let mut olds = Vec::new();
    for _ in 0..40 {
        let key = SessionId::generate().storage_key();
        store
            .create(&key, &live_record(None), Timestamp::now())
            .await
            .unwrap();
        olds.push(key);
    }
    let tasks: Vec<_> = olds
        .into_iter()
        .enumerate()
        .map(|(i, old)| {
            let store = store.clone();
            tokio::spawn(async move {
                let new = SessionId::generate().storage_key();
                let rec = live_record(Some("deadlock-test"));
                // Every other task also rotates a key that is already
                // gone, which files nothing (S28).
                if i % 2 == 0 {
                    store.rotate(&old, &new, &rec, Timestamp::now()).await?;
                } else {
                    let gone = SessionId::generate().storage_key();
                    match store.rotate(&gone, &new, &rec, Timestamp::now()).await {
                        Err(StoreError::NotFound) => {}
                        Ok(()) => return Err(StoreError::other("rotated a missing key")),
                        Err(e) => return Err(e),
                    }
                }
                store.delete(&old, Timestamp::now()).await?;
                store.delete(&new, Timestamp::now()).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

/// The server reports the error numbers the store's mapping relies on: a
/// duplicate key is `ER_DUP_ENTRY` (1062, how `create` tells a collision),
/// a missing table 1146 (not transient), and through the store a duplicate
/// key on `create` is a `Conflict`.
#[tokio::test]
async fn server_errors_map_to_store_errors() {
    let Some(store) = shared_store().await else {
        return;
    };
    let number = |e: sqlx::Error| match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(|m| m.number()),
        _ => None,
    };
    let e = sqlx::query("SELECT * FROM cloakroom_no_such_table")
        .execute(store.pool())
        .await
        .unwrap_err();
    assert_eq!(number(e), Some(1146));
    let key = SessionId::generate().storage_key();
    let e = sqlx::query(
        "INSERT INTO cloakroom_sessions
             (`key`, version, idle_deadline, absolute_deadline, expires_at, record)
         VALUES (?, 1, 1, 1, 1, x'00'), (?, 1, 1, 1, 1, x'00')",
    )
    .bind(&key.0[..])
    .bind(&key.0[..])
    .execute(store.pool())
    .await
    .unwrap_err();
    assert_eq!(number(e), Some(1062));
    store
        .create(&key, &live_record(None), Timestamp::now())
        .await
        .unwrap();
    assert!(matches!(
        store
            .create(&key, &live_record(None), Timestamp::now())
            .await,
        Err(StoreError::Conflict)
    ));
    store.delete(&key, Timestamp::now()).await.unwrap();
}
