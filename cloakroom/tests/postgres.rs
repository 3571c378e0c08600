//! `PostgresStore` against a real server: the conformance suite, the S6
//! dump check, schema versioning and migration locking, reaping, exact
//! principals, and several instances on one database.
//!
//! The server comes from `CLOAKROOM_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). When it is unreachable the
//! tests report themselves skipped, which fails under `CI=true`.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{contains, live_record, services, sql as scenario};

use std::time::Duration;

use cloakroom::SessionId;
use cloakroom::store::{PostgresStore, SessionStore, StoreError};
use sqlx::Row as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// Throwaway schemas are named `cloakroom_it_<unix seconds>_<random>`.
const THROWAWAY_PREFIX: &str = "cloakroom_it_";

fn url() -> String {
    services::postgres_url()
}

async fn admin_pool() -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url())
        .await
}

/// A pool whose connections live in a fresh schema of their own (through
/// `search_path`), so a test owns the whole table. Schemas older than an
/// hour, left by earlier runs, are dropped on the way.
async fn throwaway_pool() -> Result<(PgPool, String), sqlx::Error> {
    let admin = admin_pool().await?;
    let old: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)")
            .bind(THROWAWAY_PREFIX)
            .fetch_all(&admin)
            .await?;
    for name in old {
        if services::is_stale_throwaway(&name, THROWAWAY_PREFIX) {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&admin)
                .await;
        }
    }
    let schema = services::throwaway_name(THROWAWAY_PREFIX);
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&admin)
        .await?;
    admin.close().await;
    let options: PgConnectOptions = url().parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.options([("search_path", schema.as_str())]))
        .await?;
    Ok((pool, schema))
}

async fn drop_schema(schema: &str) {
    if let Ok(admin) = admin_pool().await {
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .execute(&admin)
            .await;
        admin.close().await;
    }
}

async fn throwaway() -> Option<(PgPool, String)> {
    scenario::or_skip("postgres", throwaway_pool().await)
}

/// A store alone in a throwaway schema.
async fn isolated_store() -> Result<PostgresStore, StoreError> {
    let (pool, _schema) = throwaway_pool().await.map_err(StoreError::unavailable)?;
    PostgresStore::from_pool(pool).await
}

/// A store on the shared tables of the test database.
async fn shared_store() -> Option<PostgresStore> {
    scenario::or_skip("postgres", PostgresStore::connect(&url()).await)
}

/// Each scenario gets a schema of its own: `delete_expired_reaps` counts
/// what one reaper run deleted, which a concurrent scenario's reaper could
/// otherwise steal from a shared table.
mod conformance {
    cloakroom::conformance_tests!(service "postgres", async super::isolated_store().await);
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
    let text: Vec<String> = sqlx::query_scalar("SELECT t::text FROM cloakroom_sessions t")
        .fetch_all(store.pool())
        .await
        .unwrap();
    for line in text {
        for needle in needles {
            assert!(!contains(line.as_bytes(), needle));
        }
    }
    store.delete(&key).await.unwrap();
}

/// Two pools (two "instances") on one database see each other's writes and
/// deletes.
#[tokio::test]
async fn two_instances_share_one_database() {
    let (Some(a), Some(b)) = (shared_store().await, shared_store().await) else {
        return;
    };
    scenario::two_instances_share_one_database(&a, &b).await;
}

/// A database written by a newer cloakroom is refused, and left alone.
#[tokio::test]
async fn newer_schema_version_is_refused() {
    let Some((pool, schema)) = throwaway().await else {
        return;
    };
    scenario::newer_schema_version_is_refused(
        "postgres",
        async || PostgresStore::from_pool(pool.clone()).await,
        async |v| {
            let sql =
                format!("UPDATE cloakroom_meta SET value = {v} WHERE name = 'schema_version'");
            sqlx::query(&sql).execute(&pool).await.unwrap();
        },
        async || {
            let sql = "SELECT value FROM cloakroom_meta WHERE name = 'schema_version'";
            sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
        },
    )
    .await;
    pool.close().await;
    drop_schema(&schema).await;
}

/// Many instances starting at once on an empty schema all succeed.
#[tokio::test]
async fn concurrent_migrations() {
    let Some((pool, schema)) = throwaway().await else {
        return;
    };
    scenario::concurrent_migrations(|| PostgresStore::from_pool(pool.clone())).await;
    pool.close().await;
    drop_schema(&schema).await;
}

/// Several instances reaping at once delete every expired row exactly once,
/// and nothing live.
#[tokio::test]
async fn concurrent_reapers_share_the_work() {
    let Some((pool, schema)) = throwaway().await else {
        return;
    };
    let store = PostgresStore::from_pool(pool.clone()).await.unwrap();
    let mut instances = Vec::new();
    for _ in 0..4 {
        instances.push(PostgresStore::from_pool(pool.clone()).await.unwrap());
    }
    scenario::concurrent_reapers_share_the_work(&store, instances).await;
    pool.close().await;
    drop_schema(&schema).await;
}

/// The migration lock: a two-part advisory key, "clmg" and a hash of the
/// target schema (locked here as the store derives it).
const MIGRATE_LOCK: &str = "SELECT pg_advisory_xact_lock(1668050279, \
     ('x' || left(md5(coalesce(current_schema(), '')), 8))::bit(32)::int4)";
/// The reaper lock: "clkr" and the sessions table's OID.
const REAP_LOCK: &str = "1668049778, 'cloakroom_sessions'::regclass::oid::int4";

/// A start that cannot get the migration lock gives up with `Unavailable`
/// instead of hanging.
#[tokio::test]
async fn migration_lock_wait_is_bounded() {
    let Some((pool, schema)) = throwaway().await else {
        return;
    };
    scenario::migration_lock_wait_is_bounded(
        async || PostgresStore::from_pool(pool.clone()).await,
        async || {
            let mut holder = pool.begin().await.unwrap();
            sqlx::query(MIGRATE_LOCK)
                .execute(&mut *holder)
                .await
                .unwrap();
            holder
        },
        async |holder| holder.rollback().await.unwrap(),
    )
    .await;
    pool.close().await;
    drop_schema(&schema).await;
}

/// Only one instance reaps at a time; the others return at once.
#[tokio::test]
async fn reaping_is_exclusive_and_batched() {
    let Some((pool, schema)) = throwaway().await else {
        return;
    };
    let store = PostgresStore::from_pool(pool.clone()).await.unwrap();
    scenario::reaping_is_exclusive_and_batched(
        &store,
        async || store.try_reap().await,
        // 2500 expired rows: more than two batches.
        async || {
            sqlx::query(
                "INSERT INTO cloakroom_sessions
                     (key, version, idle_deadline, absolute_deadline, expires_at, record)
                 SELECT sha256(int8send(g)), 1, 1, 1, 1, '\\x00'::bytea
                 FROM generate_series(1, 2500) AS g",
            )
            .execute(&pool)
            .await
            .unwrap();
        },
        // Another "instance" holds the reaper lock.
        async || {
            let mut other = pool.acquire().await.unwrap();
            let got: bool =
                sqlx::query_scalar(&format!("SELECT pg_try_advisory_lock({REAP_LOCK})"))
                    .fetch_one(&mut *other)
                    .await
                    .unwrap();
            assert!(got);
            other
        },
        async |mut other| {
            let _: bool = sqlx::query_scalar(&format!("SELECT pg_advisory_unlock({REAP_LOCK})"))
                .fetch_one(&mut *other)
                .await
                .unwrap();
        },
    )
    .await;
    pool.close().await;
    drop_schema(&schema).await;
}

/// A cancelled reaper run does not leave the lock held by a pooled
/// connection.
#[tokio::test]
async fn cancelled_reap_releases_the_lock() {
    let Some((pool, schema)) = throwaway().await else {
        return;
    };
    let store = PostgresStore::from_pool(pool.clone()).await.unwrap();
    scenario::cancelled_reap_releases_the_lock(async || store.try_reap().await).await;
    pool.close().await;
    drop_schema(&schema).await;
}

/// `touch` never pushes expiry past the absolute deadline.
#[tokio::test]
async fn touch_is_capped_by_the_absolute_deadline() {
    let Some(store) = shared_store().await else {
        return;
    };
    scenario::touch_is_capped_by_the_absolute_deadline(&store, async |key| {
        sqlx::query_scalar("SELECT expires_at FROM cloakroom_sessions WHERE key = $1")
            .bind(&key.0[..])
            .fetch_one(store.pool())
            .await
            .unwrap()
    })
    .await;
}

/// Principals are compared exactly, whatever their bytes or length.
#[tokio::test]
async fn unusual_users_round_trip() {
    let Some(store) = shared_store().await else {
        return;
    };
    scenario::unusual_users_round_trip(&store).await;
}

/// Creating over an expired row replaces it, in `create` and `rotate`.
#[tokio::test]
async fn expired_rows_are_replaced() {
    let Some(store) = shared_store().await else {
        return;
    };
    scenario::expired_rows_are_replaced(&store).await;
}

/// A stored record that cannot be decoded is `Corrupt`, not a panic.
#[tokio::test]
async fn undecodable_record_is_corrupt() {
    let Some(store) = shared_store().await else {
        return;
    };
    scenario::undecodable_record_is_corrupt(&store, async |key| {
        sqlx::query("UPDATE cloakroom_sessions SET record = '\\x09'::bytea WHERE key = $1")
            .bind(&key.0[..])
            .execute(store.pool())
            .await
            .unwrap();
    })
    .await;
}

/// An unreachable server is `Unavailable`, promptly.
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    scenario::unreachable_server_is_unavailable(PostgresStore::connect(
        "postgres://postgres@127.0.0.1:1/test",
    ))
    .await;
}

/// The public futures can be spawned.
#[allow(dead_code, clippy::let_underscore_future)]
fn futures_are_send(store: &PostgresStore, pool: PgPool) {
    fn send<T: Send>(_: T) {}
    send(PostgresStore::connect("postgres://x"));
    send(PostgresStore::from_pool(pool));
    send(store.try_reap());
    send(store.delete_expired());
}
