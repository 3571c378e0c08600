//! Sessions in PostgreSQL (feature `postgres`).
//!
//! See [`PostgresStore`].

use sqlx::postgres::{PgArguments, PgConnection, PgExecutor, PgPool, Postgres};
use sqlx::query::Query;

use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{StoreError, UserSession};

use super::server::{
    Schema, SessionLock, driver_error, fetch_record, fetch_sessions, reap_exclusively,
};
use super::shell::{Dialect, server_store};
use super::{REAP_BATCH, Row, SCHEMA_VERSION};

/// The backend, as errors name it.
const BACKEND: &str = "postgres";
/// First half of the two-part advisory lock key serialising migrations
/// (ASCII "clmg"); the second half is a hash of the schema the tables go
/// to, so only starts that migrate the same tables wait for each other.
const MIGRATE_LOCK_CLASS: i32 = 0x636c_6d67;
const MIGRATE_LOCK_ARGS: &str =
    "$1, ('x' || left(md5(coalesce(current_schema(), '')), 8))::bit(32)::int4";
/// First half of the reaper's two-part advisory lock key (ASCII "clkr"); the
/// second half is the sessions table's OID, so stores in different schemas
/// reap independently.
const REAP_LOCK_CLASS: i32 = 0x636c_6b72;

const CREATE_META: &str = "CREATE TABLE IF NOT EXISTS cloakroom_meta (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
)";

const SCHEMA: Schema = Schema {
    backend: BACKEND,
    product: "PostgreSQL",
    create_meta: CREATE_META,
    v1: SCHEMA_V1,
};

/// Schema version 1, one statement each.
const SCHEMA_V1: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS cloakroom_sessions (
        key               BYTEA  PRIMARY KEY CHECK (octet_length(key) = 32),
        version           BIGINT NOT NULL,
        "user"            BYTEA,
        idle_deadline     BIGINT NOT NULL,
        absolute_deadline BIGINT NOT NULL,
        expires_at        BIGINT NOT NULL,
        record            BYTEA  NOT NULL
    )"#,
    "CREATE INDEX IF NOT EXISTS cloakroom_sessions_expires ON cloakroom_sessions (expires_at)",
    r#"CREATE INDEX IF NOT EXISTS cloakroom_sessions_user ON cloakroom_sessions
        USING hash ("user") WHERE "user" IS NOT NULL"#,
];

const INSERT_IF_ABSENT: &str = r#"
INSERT INTO cloakroom_sessions
    (key, version, "user", idle_deadline, absolute_deadline, expires_at, record)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (key) DO UPDATE SET
    version = EXCLUDED.version, "user" = EXCLUDED."user",
    idle_deadline = EXCLUDED.idle_deadline,
    absolute_deadline = EXCLUDED.absolute_deadline,
    expires_at = EXCLUDED.expires_at, record = EXCLUDED.record
WHERE cloakroom_sessions.expires_at <= $8"#;

/// `save`: the row at `expected` version, if live, gets the new columns.
const SAVE: &str = r#"UPDATE cloakroom_sessions SET
    version = $2, "user" = $3, idle_deadline = $4,
    absolute_deadline = $5, expires_at = $6, record = $7
WHERE key = $1 AND version = $8 AND expires_at > $9"#;

/// `rotate`: the live row under the old key moves to the new one.
const ROTATE: &str = r#"UPDATE cloakroom_sessions SET
    key = $2, version = $3, "user" = $4, idle_deadline = $5,
    absolute_deadline = $6, expires_at = $7, record = $8
WHERE key = $1 AND expires_at > $9"#;

const REAP_LOCK_ARGS: &str = "$1, 'cloakroom_sessions'::regclass::oid::int4";

server_store! {
    /// Sessions in PostgreSQL. Cheap to clone: clones share one connection
    /// pool.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), cloakroom::store::StoreError> {
    /// use cloakroom::{SessionLayer, store::PostgresStore};
    ///
    /// let store = PostgresStore::connect("postgres://app@db.internal/app").await?;
    /// let layer = SessionLayer::new(store);
    /// # Ok(()) }
    /// ```
    ///
    /// Expired rows are never returned; start
    /// [`spawn_reaper`](crate::store::spawn_reaper) to delete them.
    ///
    /// # How it is built
    ///
    /// * One table, `cloakroom_sessions`, keyed by the 32-byte SHA-256 storage
    ///   key (`BYTEA`), so a dump of the database holds no usable session ID
    ///   (S6). Each row carries the record's version (the compare-and-swap
    ///   token), its user, its idle and absolute deadlines and `expires_at` (the
    ///   earlier of the two), all in milliseconds since the Unix epoch, and the
    ///   encoded record. It is indexed by `expires_at` (for the reaper) and by
    ///   user (a hash index, so a principal of any length can be indexed).
    /// * The user is stored as bytes (`BYTEA`) and compared exactly: a
    ///   principal may hold any character, NUL included, which `TEXT` refuses.
    /// * The schema is created on [`PostgresStore::from_pool`] and versioned in
    ///   `cloakroom_meta` (`schema_version`). Migrations run in one transaction
    ///   under `pg_advisory_xact_lock` (keyed by the target schema), so any
    ///   number of instances may start at once; a database written by a newer cloakroom is refused with
    ///   [`StoreError::Corrupt`]. When the schema is current, start-up runs no
    ///   DDL, so the application's role needs no `CREATE` privilege after the
    ///   first start.
    /// * Every operation is one statement, except `rotate` (insert the new row
    ///   and delete the old one in one transaction) and a `save` that matched
    ///   nothing (one `SELECT` tells a version conflict from a missing record).
    ///   "Now" is the caller's clock, passed as a parameter: rows
    ///   whose `expires_at` has passed are invisible to every operation even
    ///   before they are reaped.
    ///
    /// # Reaping
    ///
    /// Expired rows are deleted by [`delete_expired`](crate::store::SessionStore::delete_expired)
    /// (driven by [`spawn_reaper`](crate::store::spawn_reaper) or the CLI), 1000
    /// rows per statement so requests interleave. Only one instance reaps at a
    /// time: a run takes a session-level advisory lock scoped to the table and
    /// returns `0` at once when another instance holds it.
    /// [`PostgresStore::try_reap`] tells the two cases apart. (The lock is
    /// session-level, so behind a pooler in transaction mode, such as PgBouncer
    /// with `pool_mode = transaction`, it cannot be relied on; connect the
    /// reaping instance directly.)
    ///
    /// # Errors
    ///
    /// Connection, pool and I/O failures, and transient server states (shutdown,
    /// too many connections, deadlock, serialization failure, read-only standby)
    /// are [`StoreError::Unavailable`]; rows that cannot be decoded are
    /// [`StoreError::Corrupt`]; anything else is [`StoreError::Other`].
    pub struct PostgresStore(PgPool);
    errors: db_err;

    /// Connects to the database at `url` (`postgres://user:password@host/db`)
    /// with a pool of up to 10 connections that waits at most 5 seconds for
    /// a free connection, then creates or migrates the schema. For other pool
    /// settings build the pool yourself and call
    /// [`from_pool`](Self::from_pool).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached,
    /// [`StoreError::Other`] for a malformed URL or a refused login, and as
    /// [`from_pool`](Self::from_pool).
    connect;

    /// Uses an existing pool, creating or migrating the schema first. The
    /// tables are created unqualified, in the first schema of the
    /// connections' `search_path`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the database was written by a newer schema
    /// version than this build supports, [`StoreError::Unavailable`] if the
    /// server cannot be reached or another instance's migration holds the
    /// lock for more than 10 seconds, [`StoreError::Other`] if the schema
    /// cannot be created (for example, missing privileges).
    from_pool => migrate;

    /// Deletes every expired record, unless another instance is already
    /// doing so: returns `Some(count)` after reaping, `None` at once if
    /// another connection holds the reaper lock.
    ///
    /// The lock is a session-level advisory lock held by one pooled
    /// connection for the length of the run; rows are deleted 1000 per
    /// statement, each statement committing on its own. If the run is
    /// cancelled midway, the connection is closed rather than returned to
    /// the pool, which releases the lock.
    ///
    /// # Errors
    ///
    /// A backend failure.
    try_reap => reap;
}

impl Dialect for PostgresStore {
    const DELETE: &str = "DELETE FROM cloakroom_sessions WHERE key = $1";
    const BACKEND: &str = BACKEND;

    async fn create(&self, key: &StorageKey, row: &Row, now: i64) -> Result<bool, StoreError> {
        insert_if_absent(&self.pool, key, row, now).await
    }

    async fn load(&self, key: &StorageKey, now: i64) -> Result<Option<Record>, StoreError> {
        let load = sqlx::query(
            "SELECT record, idle_deadline FROM cloakroom_sessions
             WHERE key = $1 AND expires_at > $2",
        );
        fetch_record(load.bind(&key.0[..]).bind(now), &self.pool, db_err).await
    }

    async fn save(
        &self,
        key: &StorageKey,
        row: &Row,
        expected: i64,
        now: i64,
    ) -> Result<u64, StoreError> {
        let update = bind_row(sqlx::query(SAVE).bind(&key.0[..]), row);
        affected(update.bind(expected).bind(now), &self.pool).await
    }

    async fn is_live(&self, key: &StorageKey, now: i64) -> Result<bool, StoreError> {
        let live =
            sqlx::query("SELECT 1 FROM cloakroom_sessions WHERE key = $1 AND expires_at > $2");
        let found = live.bind(&key.0[..]).bind(now).fetch_optional(&self.pool);
        Ok(found.await.map_err(db_err)?.is_some())
    }

    async fn touch(&self, key: &StorageKey, idle: i64, now: i64) -> Result<bool, StoreError> {
        let touch = sqlx::query(
            "UPDATE cloakroom_sessions
             SET idle_deadline = $2, expires_at = LEAST($2, absolute_deadline)
             WHERE key = $1 AND expires_at > $3",
        );
        let touch = touch.bind(&key.0[..]).bind(idle).bind(now);
        Ok(affected(touch, &self.pool).await? == 1)
    }

    async fn rotate(
        &self,
        old: &StorageKey,
        new: &StorageKey,
        row: &Row,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // An expired row under the new key gives way, as in `create`.
        let expired =
            sqlx::query("DELETE FROM cloakroom_sessions WHERE key = $1 AND expires_at <= $2");
        affected(expired.bind(&new.0[..]).bind(now), &mut *tx).await?;
        // S28: the live old row is moved to the new key in one UPDATE, so
        // the new row exists exactly when the old is gone, and only a live
        // row moves (0 rows: deleted or expired, nothing is filed). Moving
        // the row rather than deleting it and inserting another is what
        // makes a racing `delete_by_user` safe under READ COMMITTED: a
        // DELETE that meets the row locked by this UPDATE re-checks its
        // WHERE against the moved row once we commit (same user: deleted),
        // while a fresh INSERT would be invisible to its snapshot and
        // survive. A `delete` or `delete_by_user` that got there first
        // leaves this UPDATE nothing to move.
        let keys = sqlx::query(ROTATE).bind(&old.0[..]).bind(&new.0[..]);
        let moved = bind_row(keys, row).bind(now).execute(&mut *tx).await;
        let outcome = match moved {
            Ok(done) if done.rows_affected() == 1 => return tx.commit().await.map_err(db_err),
            Ok(_) => StoreError::NotFound,
            Err(e) if is_unique_violation(&e) => StoreError::Conflict,
            Err(e) => db_err(e),
        };
        // Nothing changed; a failed rollback closes the connection.
        let _ = tx.rollback().await;
        Err(outcome)
    }

    async fn live_batch(
        &self,
        after: &[u8],
        now: i64,
        limit: i64,
    ) -> Result<Vec<UserSession>, StoreError> {
        let page = sqlx::query(
            "SELECT key, record, idle_deadline FROM cloakroom_sessions
             WHERE key > $1 AND expires_at > $2 ORDER BY key LIMIT $3",
        );
        fetch_sessions(page.bind(after).bind(now).bind(limit), &self.pool, db_err).await
    }

    async fn list_by_user(&self, user: &str, now: i64) -> Result<Vec<UserSession>, StoreError> {
        let list = sqlx::query(
            r#"SELECT key, record, idle_deadline FROM cloakroom_sessions
               WHERE "user" = $1 AND expires_at > $2"#,
        );
        fetch_sessions(list.bind(user.as_bytes()).bind(now), &self.pool, db_err).await
    }

    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: i64,
    ) -> Result<u64, StoreError> {
        // Expired rows of the user go too, but only live ones are counted.
        // An empty `except` matches no key.
        let live: i64 = sqlx::query_scalar(
            r#"WITH gone AS (
                   DELETE FROM cloakroom_sessions
                   WHERE "user" = $1 AND key <> $2
                   RETURNING expires_at
               )
               SELECT count(*) FROM gone WHERE expires_at > $3"#,
        )
        .bind(user.as_bytes())
        .bind(except.map_or(&[][..], |k| &k.0[..]))
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(live.unsigned_abs())
    }
}

/// The reaper lock: a session-level advisory lock, keyed by the table.
struct ReaperLock;

impl SessionLock<Postgres> for ReaperLock {
    fn name(&self) -> &'static str {
        "the PostgreSQL reaper lock"
    }

    async fn try_lock(&self, conn: &mut PgConnection) -> Result<bool, StoreError> {
        let sql = format!("SELECT pg_try_advisory_lock({REAP_LOCK_ARGS})");
        let got = sqlx::query_scalar(&sql)
            .bind(REAP_LOCK_CLASS)
            .fetch_one(conn);
        got.await.map_err(db_err)
    }

    async fn unlock(&self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        let sql = format!("SELECT pg_advisory_unlock({REAP_LOCK_ARGS})");
        sqlx::query_scalar(&sql)
            .bind(REAP_LOCK_CLASS)
            .fetch_one(conn)
            .await
    }
}

/// `try_reap`: the batched reap, under the reaper lock.
async fn reap(pool: &PgPool, now: i64) -> Result<Option<u64>, StoreError> {
    reap_exclusively(pool, db_err, &ReaperLock, move |c| {
        Box::pin(reap_batch(c, now))
    })
    .await
}

/// Deletes up to [`REAP_BATCH`] expired rows.
async fn reap_batch(conn: &mut PgConnection, now: i64) -> Result<u64, StoreError> {
    // SKIP LOCKED: rows a request is replacing right now are left for the
    // next run instead of blocking it; the outer condition re-checks
    // expiry against the latest row version.
    let done = sqlx::query(
        "DELETE FROM cloakroom_sessions WHERE key IN (
             SELECT key FROM cloakroom_sessions WHERE expires_at <= $1
             LIMIT $2 FOR UPDATE SKIP LOCKED
         ) AND expires_at <= $1",
    )
    .bind(now)
    .bind(REAP_BATCH)
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected())
}

async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    // Wait at most 10 s for another instance's migration (then 55P03,
    // `Unavailable`), as the MySQL store does.
    sqlx::query("SET LOCAL lock_timeout = '10s'")
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    sqlx::query(&format!(
        "SELECT pg_advisory_xact_lock({MIGRATE_LOCK_ARGS})"
    ))
    .bind(MIGRATE_LOCK_CLASS)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    let has_meta: bool = sqlx::query_scalar("SELECT to_regclass('cloakroom_meta') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    // On an error `tx` is dropped: rolled back, lock released.
    if let Some(found) = SCHEMA.run_steps(&mut *tx, has_meta, db_err).await? {
        sqlx::query(
            "INSERT INTO cloakroom_meta (name, value) VALUES ('schema_version', $1)
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(SCHEMA_VERSION)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        SCHEMA.log_migrated(found);
    }
    tx.commit().await.map_err(db_err)
}

/// Maps a driver error onto the store's error kinds.
fn db_err(e: sqlx::Error) -> StoreError {
    driver_error(BACKEND, e, |db| db.code().is_some_and(|c| is_transient(&c)))
}

/// Whether `e` is a unique-key violation (SQLSTATE 23505).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// SQLSTATEs that mean "the server cannot serve this now", not "this
/// request is wrong".
fn is_transient(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") // connection exception
        || sqlstate.starts_with("53") // insufficient resources
        || sqlstate.starts_with("57P") // admin / crash shutdown, cannot connect now
        || matches!(
            sqlstate,
            "40001" // serialization failure
                | "40P01" // deadlock detected
                | "55P03" // lock not available
                | "57014" // statement timeout / cancelled
                | "25006" // read-only transaction (standby after a failover)
        )
}

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// `query` with the columns of `row` bound next, in column order: version,
/// user, idle and absolute deadlines, `expires_at`, record.
fn bind_row<'q>(query: PgQuery<'q>, row: &'q Row) -> PgQuery<'q> {
    query
        .bind(row.version)
        .bind(row.user_bytes())
        .bind(row.idle_deadline)
        .bind(row.absolute_deadline)
        .bind(row.expires_at)
        .bind(&row.record[..])
}

/// Runs `query` on `ex`: how many rows it affected.
async fn affected<'q>(query: PgQuery<'q>, ex: impl PgExecutor<'q>) -> Result<u64, StoreError> {
    Ok(query.execute(ex).await.map_err(db_err)?.rows_affected())
}

/// Inserts `row` under `key` unless a live row is there (an expired one is
/// replaced); returns whether it was written.
async fn insert_if_absent<'q>(
    ex: impl PgExecutor<'q>,
    key: &'q StorageKey,
    row: &'q Row,
    now: i64,
) -> Result<bool, StoreError> {
    let insert = bind_row(sqlx::query(INSERT_IF_ABSENT).bind(&key.0[..]), row).bind(now);
    Ok(affected(insert, ex).await? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::server::check_schema;

    #[test]
    fn schema_version_check() {
        check_schema(&SCHEMA);
    }

    /// Transient server states are `Unavailable`; a bad request is not.
    #[test]
    fn driver_errors_map_to_store_errors() {
        assert!(matches!(
            db_err(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert_eq!(db_err(sqlx::Error::PoolClosed).backend(), Some(BACKEND));
        assert!(is_transient("40P01") && is_transient("08006") && is_transient("57P01"));
        assert!(!is_transient("23505") && !is_transient("42P01"));
    }

    /// Debug output never shows connection secrets.
    #[tokio::test]
    async fn debug_hides_the_password() {
        let options = sqlx::postgres::PgConnectOptions::new().password("hunter2-secret");
        let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy_with(options);
        let shown = format!("{:?}", PostgresStore { pool });
        assert!(shown.starts_with("PostgresStore"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
