//! `MySqlStore` against a real MySQL 8 or MariaDB server: the conformance suite, the S6
//! dump check, schema versioning and several instances on one database.
//!
//! The server comes from `CLOAKROOM_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`). When it is unreachable the
//! tests report themselves skipped, which fails under `CI=true`.

#![cfg(feature = "mysql")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::services;

use std::time::Duration;

use cloakroom::store::conformance::skip_service;
use cloakroom::store::{MySqlStore, SessionStore, StoreError};
use cloakroom::{Record, SessionId, Timestamp};
use sqlx::Row as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

/// Throwaway databases are named `cloakroom_it_<unix seconds>_<random>`.
const THROWAWAY_PREFIX: &str = "cloakroom_it_";

fn url() -> String {
    services::mysql_url()
}

async fn admin_pool() -> Result<MySqlPool, sqlx::Error> {
    MySqlPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url())
        .await
}

/// A pool on a fresh database of its own, so a test owns the whole table.
/// Databases older than an hour, left by earlier runs, are dropped on the
/// way.
async fn throwaway_pool() -> Result<(MySqlPool, String), sqlx::Error> {
    let admin = admin_pool().await?;
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata
         WHERE schema_name LIKE 'cloakroom\\_it\\_%'",
    )
    .fetch_all(&admin)
    .await?;
    for name in old {
        if services::is_stale_throwaway(&name, THROWAWAY_PREFIX) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`"))
                .execute(&admin)
                .await;
        }
    }
    let database = services::throwaway_name(THROWAWAY_PREFIX);
    sqlx::query(&format!("CREATE DATABASE `{database}`"))
        .execute(&admin)
        .await?;
    admin.close().await;
    let options: MySqlConnectOptions = url().parse()?;
    let pool = MySqlPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.database(&database))
        .await?;
    Ok((pool, database))
}

async fn drop_database(database: &str) {
    if let Ok(admin) = admin_pool().await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{database}`"))
            .execute(&admin)
            .await;
        admin.close().await;
    }
}

async fn throwaway() -> Option<(MySqlPool, String)> {
    match throwaway_pool().await {
        Ok(p) => Some(p),
        Err(e) => {
            skip_service("mysql", &e);
            None
        }
    }
}

/// A store alone in a throwaway database.
async fn isolated_store() -> Result<MySqlStore, StoreError> {
    let (pool, _database) = throwaway_pool().await.map_err(StoreError::unavailable)?;
    MySqlStore::from_pool(pool).await
}

/// A store on the shared tables of the test database.
async fn shared_store() -> Option<MySqlStore> {
    match MySqlStore::connect(&url()).await {
        Ok(s) => Some(s),
        Err(e) => {
            skip_service("mysql", &e);
            None
        }
    }
}

/// Each scenario gets a database of its own: `delete_expired_reaps` counts
/// what one reaper run deleted, which a concurrent scenario's reaper could
/// otherwise steal from a shared table.
mod conformance {
    cloakroom::conformance_tests!(service "mysql", async super::isolated_store().await);
}

fn live_record(user: Option<&str>) -> Record {
    let mut r = Record::new(
        Timestamp::now(),
        Duration::from_secs(1800),
        Duration::from_secs(43_200),
    );
    r.version = 1;
    r.user = user.map(str::to_owned);
    r
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// S6: no column of any row holds a session ID, raw, encoded or in hex.
#[tokio::test]
async fn dump_holds_no_session_id() {
    let Some(store) = shared_store().await else {
        return;
    };
    let id = SessionId::generate();
    let key = id.storage_key();
    let mut rec = live_record(Some("s6-user"));
    rec.insert("note", "hello").unwrap();
    store.create(&key, &rec).await.unwrap();

    let hex_id: String = id.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let needles: [&[u8]; 3] = [
        id.as_bytes(),
        id.expose_secret().as_bytes(),
        hex_id.as_bytes(),
    ];
    let rows = sqlx::query("SELECT * FROM cloakroom_sessions")
        .fetch_all(store.pool())
        .await
        .unwrap();
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
    store.delete(&key).await.unwrap();
}

/// Two pools (two "instances") on one database see each other's writes and
/// deletes.
#[tokio::test]
async fn two_instances_share_one_database() {
    let (Some(a), Some(b)) = (shared_store().await, shared_store().await) else {
        return;
    };
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

/// A database written by a newer cloakroom is refused, and left alone.
#[tokio::test]
async fn newer_schema_version_is_refused() {
    let Some((pool, database)) = throwaway().await else {
        return;
    };
    MySqlStore::from_pool(pool.clone()).await.unwrap();
    sqlx::query("UPDATE cloakroom_meta SET value = 99 WHERE name = 'schema_version'")
        .execute(&pool)
        .await
        .unwrap();
    let err = MySqlStore::from_pool(pool.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "got {err:?}");
    assert!(err.to_string().contains("99"), "{err}");
    let v: i64 =
        sqlx::query_scalar("SELECT value FROM cloakroom_meta WHERE name = 'schema_version'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(v, 99);
    pool.close().await;
    drop_database(&database).await;
}

/// Many instances starting at once on an empty database all succeed.
#[tokio::test]
async fn concurrent_migrations() {
    let Some((pool, database)) = throwaway().await else {
        return;
    };
    let starts: Vec<_> = (0..8)
        .map(|_| tokio::spawn(MySqlStore::from_pool(pool.clone())))
        .collect();
    for start in starts {
        start.await.unwrap().unwrap();
    }
    pool.close().await;
    drop_database(&database).await;
}

/// Several instances reaping at once delete every expired row exactly once,
/// and nothing live.
#[tokio::test]
async fn concurrent_reapers_share_the_work() {
    let Some((pool, database)) = throwaway().await else {
        return;
    };
    let store = MySqlStore::from_pool(pool.clone()).await.unwrap();
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

    let mut instances = Vec::new();
    for _ in 0..4 {
        instances.push(MySqlStore::from_pool(pool.clone()).await.unwrap());
    }
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
    pool.close().await;
    drop_database(&database).await;
}
