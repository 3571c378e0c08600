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

use support::{services, sql as scenario};

use cloakroom::Timestamp;
use cloakroom::store::PostgresStore;
use sqlx::postgres::{PgConnectOptions, PgPool, Postgres};

fn url() -> String {
    services::postgres_url()
}

/// A pool whose connections live in a fresh schema of their own (through
/// `search_path`), so a test owns the whole table. Schemas older than an
/// hour, left by earlier runs, are dropped on the way.
async fn throwaway_pool() -> Result<(PgPool, String), sqlx::Error> {
    let admin = scenario::admin_pool::<Postgres>(&url()).await?;
    let old: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)")
            .bind(scenario::THROWAWAY_PREFIX)
            .fetch_all(&admin)
            .await?;
    let schema = scenario::fresh_throwaway(
        &admin,
        old,
        |name| format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"),
        |name| format!("CREATE SCHEMA \"{name}\""),
    )
    .await?;
    admin.close().await;
    let options: PgConnectOptions = url().parse()?;
    let options = options.options([("search_path", schema.as_str())]);
    Ok((scenario::test_pool(options).await?, schema))
}

async fn drop_schema(schema: &str) {
    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    scenario::drop_throwaway::<Postgres>(&url(), &drop).await;
}

scenario::server_scenarios! {
    backend: "postgres",
    store: PostgresStore,
    pool: PgPool,
    throwaway_pool: throwaway_pool,
    drop: drop_schema,
    url: url,
    unreachable: "postgres://postgres@127.0.0.1:1/test",
}

/// S6: no column of any row holds a session ID, raw, encoded or in hex,
/// nor any row cast to text.
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
        async || {
            let dump = sqlx::query_scalar("SELECT t::text FROM cloakroom_sessions t");
            dump.fetch_all(store.pool()).await.unwrap()
        },
    )
    .await;
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
        async || store.try_reap(Timestamp::now()).await,
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
