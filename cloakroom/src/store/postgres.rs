//! Sessions in PostgreSQL (feature `postgres`).
//!
//! See [`PostgresStore`].

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::Row as _;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgExecutor, PgPool, PgPoolOptions, Postgres};

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{SessionStore, StoreError, UserSession};

/// The schema version this build writes.
const SCHEMA_VERSION: i64 = 1;
/// Rows deleted per reaper statement.
const REAP_BATCH: i64 = 1000;
/// How long [`PostgresStore::connect`]'s pool waits for a connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
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

const REAP_LOCK_ARGS: &str = "$1, 'cloakroom_sessions'::regclass::oid::int4";

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
///   "Now" is the application's wall clock, passed as a parameter: rows
///   whose `expires_at` has passed are invisible to every operation even
///   before they are reaped.
///
/// # Reaping
///
/// Expired rows are deleted by [`delete_expired`](SessionStore::delete_expired)
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
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl fmt::Debug for PostgresStore {
    // Pool statistics only: nothing about the server or its credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("connections", &self.pool.size())
            .field("idle_connections", &self.pool.num_idle())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
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
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(db_err)?;
        Self::from_pool(pool).await
    }

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
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        migrate(&pool).await?;
        Ok(Self { pool })
    }

    /// The underlying connection pool.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

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
    pub async fn try_reap(&self) -> Result<Option<u64>, StoreError> {
        let conn = self.pool.acquire().await.map_err(db_err)?;
        let mut lock = LockedConn { conn, held: true };
        let got: bool =
            sqlx::query_scalar(&format!("SELECT pg_try_advisory_lock({REAP_LOCK_ARGS})"))
                .bind(REAP_LOCK_CLASS)
                .fetch_one(&mut *lock.conn)
                .await
                .map_err(db_err)?;
        if !got {
            lock.held = false;
            return Ok(None);
        }
        let reaped = reap_batches(&mut lock.conn).await;
        let released: Result<bool, _> =
            sqlx::query_scalar(&format!("SELECT pg_advisory_unlock({REAP_LOCK_ARGS})"))
                .bind(REAP_LOCK_CLASS)
                .fetch_one(&mut *lock.conn)
                .await;
        match released {
            Ok(true) => lock.held = false,
            // Dropping `lock` closes the connection, which frees the lock.
            Ok(false) => tracing::warn!("the PostgreSQL reaper lock was not held at unlock"),
            Err(e) => tracing::warn!(error = %e, "releasing the PostgreSQL reaper lock failed"),
        }
        reaped.map(Some)
    }
}

/// A pooled connection that may hold a session-level advisory lock. If it
/// is dropped while the lock may still be held (cancellation, failed
/// unlock), the connection is closed instead of going back to the pool, so
/// the lock can never leak into an unrelated checkout.
struct LockedConn {
    conn: PoolConnection<Postgres>,
    held: bool,
}

impl Drop for LockedConn {
    fn drop(&mut self) {
        if self.held {
            self.conn.close_on_drop();
        }
    }
}

async fn reap_batches(conn: &mut PoolConnection<Postgres>) -> Result<u64, StoreError> {
    let mut total = 0u64;
    loop {
        // SKIP LOCKED: rows a request is replacing right now are left for the
        // next run instead of blocking it; the outer condition re-checks
        // expiry against the latest row version.
        let n = sqlx::query(
            "DELETE FROM cloakroom_sessions WHERE key IN (
                 SELECT key FROM cloakroom_sessions WHERE expires_at <= $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED
             ) AND expires_at <= $1",
        )
        .bind(now_ms())
        .bind(REAP_BATCH)
        .execute(&mut **conn)
        .await
        .map_err(db_err)?
        .rows_affected();
        total += n;
        if n < REAP_BATCH.unsigned_abs() {
            return Ok(total);
        }
    }
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
    let found: i64 = if has_meta {
        sqlx::query_scalar("SELECT value FROM cloakroom_meta WHERE name = 'schema_version'")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .unwrap_or(0)
    } else {
        0
    };
    // On an error `tx` is dropped: rolled back, lock released.
    check_schema_version(found)?;
    if found < SCHEMA_VERSION {
        let mut steps = vec![CREATE_META];
        if found < 1 {
            steps.extend_from_slice(SCHEMA_V1);
        }
        for step in steps {
            sqlx::query(step)
                .persistent(false)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        sqlx::query(
            "INSERT INTO cloakroom_meta (name, value) VALUES ('schema_version', $1)
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(SCHEMA_VERSION)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tracing::info!(
            from = found,
            to = SCHEMA_VERSION,
            "migrated the PostgreSQL session schema"
        );
    }
    tx.commit().await.map_err(db_err)
}

/// Refuses a database written by a newer schema than this build knows.
fn check_schema_version(found: i64) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::corrupt(format!(
            "PostgreSQL session schema version {found} is newer than this build supports ({SCHEMA_VERSION}); upgrade cloakroom"
        )));
    }
    Ok(())
}

/// Maps a driver error onto the store's error kinds.
fn db_err(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match &e {
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::BeginFailed => StoreError::unavailable(e),
        E::ColumnDecode { .. }
        | E::Decode(_)
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::TypeNotFound { .. } => StoreError::corrupt(e),
        E::Database(db) if db.code().is_some_and(|c| is_transient(&c)) => {
            StoreError::unavailable(e)
        }
        _ => StoreError::other(e),
    }
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

fn millis(t: Timestamp) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    millis(Timestamp::now())
}

/// A record decoded from its row; the row's idle deadline wins, since
/// `touch` moves only the column.
fn decode_row(bytes: Vec<u8>, idle_deadline: i64) -> Result<Record, StoreError> {
    let mut record = Record::decode(&Bytes::from(bytes)).map_err(StoreError::corrupt)?;
    record.idle_deadline = Timestamp::from_millis(u64::try_from(idle_deadline).unwrap_or(0));
    Ok(record)
}

fn key_from(blob: &[u8]) -> Result<StorageKey, StoreError> {
    <[u8; 32]>::try_from(blob)
        .map(StorageKey)
        .map_err(|_| StoreError::corrupt("storage key is not 32 bytes"))
}

/// A record as its row's columns.
struct Row {
    version: i64,
    user: Option<Vec<u8>>,
    idle_deadline: i64,
    absolute_deadline: i64,
    expires_at: i64,
    record: Bytes,
}

impl Row {
    fn of(r: &Record) -> Self {
        Self {
            version: i64::try_from(r.version).unwrap_or(i64::MAX),
            user: r.user.as_ref().map(|u| u.as_bytes().to_vec()),
            idle_deadline: millis(r.idle_deadline),
            absolute_deadline: millis(r.absolute_deadline),
            expires_at: millis(r.expires_at()),
            record: r.encode(),
        }
    }
}

/// Inserts `row` under `key` unless a live row is there (an expired one is
/// replaced); returns whether it was written.
async fn insert_if_absent<'e>(
    ex: impl PgExecutor<'e>,
    key: &StorageKey,
    row: &Row,
    now: i64,
) -> Result<bool, StoreError> {
    let n = sqlx::query(INSERT_IF_ABSENT)
        .bind(&key.0[..])
        .bind(row.version)
        .bind(row.user.as_deref())
        .bind(row.idle_deadline)
        .bind(row.absolute_deadline)
        .bind(row.expires_at)
        .bind(&row.record[..])
        .bind(now)
        .execute(ex)
        .await
        .map_err(db_err)?
        .rows_affected();
    Ok(n == 1)
}

/// Whether a live row exists under `key`.
async fn is_live(pool: &PgPool, key: &StorageKey, now: i64) -> Result<bool, StoreError> {
    let found = sqlx::query("SELECT 1 FROM cloakroom_sessions WHERE key = $1 AND expires_at > $2")
        .bind(&key.0[..])
        .bind(now)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?;
    Ok(found.is_some())
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let row = Row::of(record);
        if insert_if_absent(&self.pool, key, &row, now_ms()).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(
            "SELECT record, idle_deadline FROM cloakroom_sessions
             WHERE key = $1 AND expires_at > $2",
        )
        .bind(&key.0[..])
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(|r| {
            let bytes: Vec<u8> = r.try_get(0).map_err(db_err)?;
            let idle: i64 = r.try_get(1).map_err(db_err)?;
            decode_row(bytes, idle)
        })
        .transpose()
    }

    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let row = Row::of(record);
        let now = now_ms();
        let n = sqlx::query(
            r#"UPDATE cloakroom_sessions SET
                   version = $2, "user" = $3, idle_deadline = $4,
                   absolute_deadline = $5, expires_at = $6, record = $7
               WHERE key = $1 AND version = $8 AND expires_at > $9"#,
        )
        .bind(&key.0[..])
        .bind(row.version)
        .bind(row.user.as_deref())
        .bind(row.idle_deadline)
        .bind(row.absolute_deadline)
        .bind(row.expires_at)
        .bind(&row.record[..])
        .bind(i64::try_from(expected_version).unwrap_or(i64::MAX))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        if n == 1 {
            Ok(())
        } else if is_live(&self.pool, key, now).await? {
            Err(StoreError::VersionConflict)
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn touch(&self, key: &StorageKey, idle_deadline: Timestamp) -> Result<(), StoreError> {
        let n = sqlx::query(
            "UPDATE cloakroom_sessions
             SET idle_deadline = $2, expires_at = LEAST($2, absolute_deadline)
             WHERE key = $1 AND expires_at > $3",
        )
        .bind(&key.0[..])
        .bind(millis(idle_deadline))
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cloakroom_sessions WHERE key = $1")
            .bind(&key.0[..])
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
    ) -> Result<(), StoreError> {
        let row = Row::of(record);
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // An expired row under the new key gives way, as in `create`.
        sqlx::query("DELETE FROM cloakroom_sessions WHERE key = $1 AND expires_at <= $2")
            .bind(&new_key.0[..])
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
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
        let moved = sqlx::query(
            r#"UPDATE cloakroom_sessions SET
                   key = $2, version = $3, "user" = $4, idle_deadline = $5,
                   absolute_deadline = $6, expires_at = $7, record = $8
               WHERE key = $1 AND expires_at > $9"#,
        )
        .bind(&old_key.0[..])
        .bind(&new_key.0[..])
        .bind(row.version)
        .bind(row.user.as_deref())
        .bind(row.idle_deadline)
        .bind(row.absolute_deadline)
        .bind(row.expires_at)
        .bind(&row.record[..])
        .bind(now)
        .execute(&mut *tx)
        .await;
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

    async fn list_by_user(&self, user: &str) -> Result<Vec<UserSession>, StoreError> {
        let rows = sqlx::query(
            r#"SELECT key, record, idle_deadline FROM cloakroom_sessions
               WHERE "user" = $1 AND expires_at > $2"#,
        )
        .bind(user.as_bytes())
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|r| {
                let key: Vec<u8> = r.try_get(0).map_err(db_err)?;
                let bytes: Vec<u8> = r.try_get(1).map_err(db_err)?;
                let idle: i64 = r.try_get(2).map_err(db_err)?;
                Ok(UserSession {
                    key: key_from(&key)?,
                    record: decode_row(bytes, idle)?,
                })
            })
            .collect()
    }

    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
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
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(live.unsigned_abs())
    }

    /// Deletes expired rows in batches; returns 0 at once when another
    /// instance is reaping (see [`PostgresStore::try_reap`]).
    fn is_durable(&self) -> bool {
        // Durable: records are rows in a table; nothing evicts them.
        true
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(self.try_reap().await?.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use sqlx::postgres::PgConnectOptions;

    use super::*;
    use crate::id::SessionId;
    use crate::store::conformance::skip_service;
    use crate::store::test_services as services;

    /// Throwaway schemas are named `cloakroom_t_<unix seconds>_<random>`.
    const THROWAWAY_PREFIX: &str = "cloakroom_t_";

    fn url() -> String {
        services::postgres_url()
    }

    async fn admin_pool() -> Result<PgPool, StoreError> {
        PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(&url())
            .await
            .map_err(db_err)
    }

    /// A pool whose connections live in a fresh, empty schema of their own,
    /// so a test can own the whole table (reaping, schema version) while
    /// other tests share the database. Schemas of runs older than an hour
    /// are dropped on the way.
    async fn throwaway_pool() -> Result<(PgPool, String), StoreError> {
        let admin = admin_pool().await?;
        let old: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)",
        )
        .bind(THROWAWAY_PREFIX)
        .fetch_all(&admin)
        .await
        .map_err(db_err)?;
        for name in old {
            if services::is_stale_throwaway(&name, THROWAWAY_PREFIX) {
                let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .execute(&admin)
                    .await;
            }
        }
        let schema = services::throwaway_name(THROWAWAY_PREFIX);
        sqlx::raw_sql(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&admin)
            .await
            .map_err(db_err)?;
        admin.close().await;
        let options: PgConnectOptions = url().parse().map_err(StoreError::other)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.options([("search_path", schema.as_str())]))
            .await
            .map_err(db_err)?;
        Ok((pool, schema))
    }

    async fn drop_schema(schema: &str) {
        if let Ok(admin) = admin_pool().await {
            let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }

    /// A store on the shared tables of the test database, or `None` (after
    /// reporting the skip) when the server is unreachable.
    async fn shared_store() -> Option<PostgresStore> {
        match PostgresStore::connect(&url()).await {
            Ok(s) => Some(s),
            Err(e) => {
                skip_service("postgres", &e);
                None
            }
        }
    }

    async fn throwaway() -> Option<(PgPool, String)> {
        match throwaway_pool().await {
            Ok(p) => Some(p),
            Err(e) => {
                skip_service("postgres", &e);
                None
            }
        }
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

    #[test]
    fn schema_version_check() {
        assert!(check_schema_version(0).is_ok());
        assert!(check_schema_version(SCHEMA_VERSION).is_ok());
        let err = check_schema_version(SCHEMA_VERSION + 1).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)));
        assert!(err.to_string().contains("newer than this build supports"));
    }

    /// A start that cannot get the migration lock gives up with
    /// `Unavailable` instead of hanging.
    #[tokio::test]
    async fn migration_lock_wait_is_bounded() {
        let Some((pool, schema)) = throwaway().await else {
            return;
        };
        let mut holder = pool.begin().await.unwrap();
        sqlx::query(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATE_LOCK_ARGS})"
        ))
        .bind(MIGRATE_LOCK_CLASS)
        .execute(&mut *holder)
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let err = PostgresStore::from_pool(pool.clone()).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "got {err:?}");
        assert!(started.elapsed() >= Duration::from_secs(9));
        holder.rollback().await.unwrap();
        PostgresStore::from_pool(pool.clone()).await.unwrap();
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
        // 2500 expired rows (more than two batches) and one live one.
        sqlx::query(
            "INSERT INTO cloakroom_sessions
                 (key, version, idle_deadline, absolute_deadline, expires_at, record)
             SELECT sha256(int8send(g)), 1, 1, 1, 1, '\\x00'::bytea
             FROM generate_series(1, 2500) AS g",
        )
        .execute(&pool)
        .await
        .unwrap();
        let live = SessionId::generate().storage_key();
        store.create(&live, &live_record(None)).await.unwrap();

        // Another "instance" holds the reaper lock.
        let mut other = pool.acquire().await.unwrap();
        let got: bool =
            sqlx::query_scalar(&format!("SELECT pg_try_advisory_lock({REAP_LOCK_ARGS})"))
                .bind(REAP_LOCK_CLASS)
                .fetch_one(&mut *other)
                .await
                .unwrap();
        assert!(got);
        assert_eq!(store.try_reap().await.unwrap(), None);
        assert_eq!(store.delete_expired().await.unwrap(), 0);
        let _: bool = sqlx::query_scalar(&format!("SELECT pg_advisory_unlock({REAP_LOCK_ARGS})"))
            .bind(REAP_LOCK_CLASS)
            .fetch_one(&mut *other)
            .await
            .unwrap();
        drop(other);

        assert_eq!(store.try_reap().await.unwrap(), Some(2500));
        assert_eq!(store.delete_expired().await.unwrap(), 0);
        assert!(store.load(&live).await.unwrap().is_some());
        // The lock was released: a new holder can take it.
        assert_eq!(store.try_reap().await.unwrap(), Some(0));
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
        // Cancel runs at points spread over their length, some of them
        // while the lock is held.
        for i in 0..40 {
            let _ = tokio::time::timeout(Duration::from_micros(150 * i), store.try_reap()).await;
        }
        let mut ok = false;
        // The server frees the lock once it has seen the cancelled
        // connections close, which takes a while on a loaded machine.
        let end = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < end {
            if store.try_reap().await.unwrap().is_some() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "the reaper lock leaked");
        pool.close().await;
        drop_schema(&schema).await;
    }

    /// `touch` never pushes expiry past the absolute deadline.
    #[tokio::test]
    async fn touch_is_capped_by_the_absolute_deadline() {
        let Some(store) = shared_store().await else {
            return;
        };
        let key = SessionId::generate().storage_key();
        let mut rec = live_record(None);
        rec.absolute_deadline = Timestamp::now().saturating_add(Duration::from_secs(5));
        store.create(&key, &rec).await.unwrap();
        let far = Timestamp::now().saturating_add(Duration::from_secs(3600));
        store.touch(&key, far).await.unwrap();
        let expires: i64 =
            sqlx::query_scalar("SELECT expires_at FROM cloakroom_sessions WHERE key = $1")
                .bind(&key.0[..])
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(expires, millis(rec.absolute_deadline));
        let left = rec.absolute_deadline.since(Timestamp::now());
        tokio::time::sleep(left + Duration::from_millis(300)).await;
        assert!(store.load(&key).await.unwrap().is_none());
        assert!(matches!(
            store.touch(&key, far).await,
            Err(StoreError::NotFound)
        ));
        store.delete(&key).await.unwrap();
    }

    /// Principals are compared exactly, whatever their bytes or length.
    #[tokio::test]
    async fn unusual_users_round_trip() {
        let Some(store) = shared_store().await else {
            return;
        };
        let tag = &SessionId::generate().storage_key().to_hex()[..12];
        let long = format!("{tag}{}", "x".repeat(100_000));
        let nul = format!("{tag}\0nul");
        let upper = format!("{tag}-Alice");
        let lower = format!("{tag}-alice");
        let padded = format!("{tag}-alice ");
        let mut keys = Vec::new();
        for user in [&long, &nul, &upper, &lower, &padded] {
            let key = SessionId::generate().storage_key();
            store.create(&key, &live_record(Some(user))).await.unwrap();
            keys.push(key);
        }
        for (user, key) in [&long, &nul, &upper, &lower, &padded].iter().zip(&keys) {
            let listed = store.list_by_user(user).await.unwrap();
            assert_eq!(listed.len(), 1, "user {:?}", &user[..user.len().min(20)]);
            assert_eq!(listed[0].key, *key);
            assert_eq!(listed[0].record.user.as_deref(), Some(user.as_str()));
        }
        assert_eq!(store.delete_by_user(&lower, None).await.unwrap(), 1);
        assert_eq!(store.list_by_user(&upper).await.unwrap().len(), 1);
        assert_eq!(store.list_by_user(&padded).await.unwrap().len(), 1);
        for key in &keys {
            store.delete(key).await.unwrap();
        }
    }

    /// Creating over an expired row replaces it, in `create` and `rotate`.
    #[tokio::test]
    async fn expired_rows_are_replaced() {
        let Some(store) = shared_store().await else {
            return;
        };
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

    /// An unreachable server is `Unavailable`, promptly.
    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        let started = std::time::Instant::now();
        let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/test")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "got {err:?}");
        assert!(started.elapsed() < Duration::from_secs(15));
    }

    /// Debug output never shows connection secrets.
    #[tokio::test]
    async fn debug_hides_the_password() {
        let base: PgConnectOptions = url().parse().unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(base.password("hunter2-secret"));
        let store = PostgresStore { pool };
        let shown = format!("{store:?}");
        assert!(shown.starts_with("PostgresStore"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
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

    #[test]
    fn driver_errors_map_to_store_errors() {
        assert!(matches!(
            db_err(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            db_err(sqlx::Error::Io(std::io::Error::other("reset"))),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            db_err(sqlx::Error::Decode("bad".into())),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            db_err(sqlx::Error::RowNotFound),
            StoreError::Other(_)
        ));
        assert!(is_transient("40P01") && is_transient("08006") && is_transient("57P01"));
        assert!(!is_transient("23505") && !is_transient("42P01"));
    }

    /// A stored record that cannot be decoded is `Corrupt`, not a panic.
    #[tokio::test]
    async fn undecodable_record_is_corrupt() {
        let Some(store) = shared_store().await else {
            return;
        };
        let key = SessionId::generate().storage_key();
        store.create(&key, &live_record(None)).await.unwrap();
        sqlx::query("UPDATE cloakroom_sessions SET record = '\\x09'::bytea WHERE key = $1")
            .bind(&key.0[..])
            .execute(store.pool())
            .await
            .unwrap();
        assert!(matches!(
            store.load(&key).await,
            Err(StoreError::Corrupt(_))
        ));
        store.delete(&key).await.unwrap();
    }
}
