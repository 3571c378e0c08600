//! Sessions in MySQL 8 or MariaDB 10.11+ (feature `mysql`).
//!
//! See [`MySqlStore`].

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use sqlx::Row as _;
use sqlx::mysql::{MySql, MySqlConnection, MySqlDatabaseError, MySqlPool, MySqlPoolOptions};
use sqlx::pool::PoolConnection;

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{SessionStore, StoreError, UserSession};

/// The schema version this build writes.
const SCHEMA_VERSION: i64 = 1;
/// Rows deleted per reaper statement.
const REAP_BATCH: i64 = 1000;
/// How long [`MySqlStore::connect`]'s pool waits for a connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Seconds a starting instance waits for another one's migration.
const MIGRATE_LOCK_WAIT_SECS: i64 = 10;
/// MySQL's error number for a duplicate key.
const ER_DUP_ENTRY: u16 = 1062;

/// Named locks are server-wide: scope them to the database (and cut them to
/// MySQL's 64-character limit).
const MIGRATE_LOCK: &str = "LEFT(CONCAT('cloakroom_migrate:', COALESCE(DATABASE(), '')), 64)";
const REAP_LOCK: &str = "LEFT(CONCAT('cloakroom_reap:', COALESCE(DATABASE(), '')), 64)";

const CREATE_META: &str = "CREATE TABLE IF NOT EXISTS cloakroom_meta (
    name  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    value BIGINT NOT NULL
) ENGINE = InnoDB";

/// Schema version 1, one statement each.
const SCHEMA_V1: &[&str] = &["CREATE TABLE IF NOT EXISTS cloakroom_sessions (
    `key`             BINARY(32) NOT NULL,
    version           BIGINT     NOT NULL,
    `user`            MEDIUMBLOB NULL,
    user_hash         BINARY(32) NULL,
    idle_deadline     BIGINT     NOT NULL,
    absolute_deadline BIGINT     NOT NULL,
    expires_at        BIGINT     NOT NULL,
    record            LONGBLOB   NOT NULL,
    PRIMARY KEY (`key`),
    KEY cloakroom_sessions_expires (expires_at),
    KEY cloakroom_sessions_user (user_hash)
) ENGINE = InnoDB"];

/// Sessions in MySQL or MariaDB. Cheap to clone: clones share one
/// connection pool.
///
/// ```no_run
/// # async fn demo() -> Result<(), cloakroom::store::StoreError> {
/// use cloakroom::{SessionLayer, store::MySqlStore};
///
/// let store = MySqlStore::connect("mysql://app@db.internal/app").await?;
/// let layer = SessionLayer::new(store);
/// # Ok(()) }
/// ```
///
/// Expired rows are never returned; start
/// [`spawn_reaper`](crate::store::spawn_reaper) to delete them.
///
/// # How it is built
///
/// * One InnoDB table, `cloakroom_sessions`, keyed by the 32-byte SHA-256
///   storage key (`BINARY(32)`), so a dump of the database holds no usable
///   session ID (S6). Each row carries the record's version (the
///   compare-and-swap token), its user, its idle and absolute deadlines and
///   `expires_at` (the earlier of the two), all in milliseconds since the
///   Unix epoch, and the encoded record. It is indexed by `expires_at` (for
///   the reaper) and by `user_hash`, the SHA-256 of the user.
/// * The user is stored as bytes (`MEDIUMBLOB`) and compared exactly
///   together with its hash: MySQL's and MariaDB's default collations are
///   case-insensitive and ignore trailing spaces, and two principals must
///   never match as one.
/// * The schema is created on [`MySqlStore::from_pool`] and versioned in
///   `cloakroom_meta` (`schema_version`). Migrations run under the named
///   lock `GET_LOCK('cloakroom_migrate:<database>')`, so any number of
///   instances may start at once; a database written by a newer cloakroom is
///   refused with [`StoreError::Corrupt`]. When the schema is current,
///   start-up runs no DDL.
/// * Every operation is one statement, except `rotate` (insert the new row
///   and delete the old one in one transaction), `delete_by_user` (live rows,
///   counted, then expired ones), a `create` that met an expired row under
///   its key (delete it, insert again) and a `save` that matched nothing (one
///   `SELECT` tells a version conflict from a missing record). "Now" is the
///   application's wall clock, passed as a parameter: rows whose
///   `expires_at` has passed are invisible to every operation even before
///   they are reaped.
///
/// # Dialects
///
/// The SQL is the common subset of MySQL 8.0 and MariaDB 10.11: indexes are
/// declared inside `CREATE TABLE` (MySQL has no `CREATE INDEX IF NOT
/// EXISTS`), nothing relies on `DELETE ... RETURNING` (MariaDB only), on
/// `VALUES()` in `ON DUPLICATE KEY UPDATE` (deprecated in MySQL 8.0.20) or
/// on `SKIP LOCKED`, and lock names are cut to 64 characters (MySQL's limit).
///
/// # Reaping
///
/// Expired rows are deleted by [`delete_expired`](SessionStore::delete_expired)
/// (driven by [`spawn_reaper`](crate::store::spawn_reaper) or the CLI), 1000
/// rows per statement so requests interleave. Only one instance reaps a
/// database at a time: a run takes the named lock
/// `cloakroom_reap:<database>` with `GET_LOCK(name, 0)` and returns `0` at
/// once when another connection holds it. [`MySqlStore::try_reap`] tells the
/// two cases apart.
///
/// # Errors
///
/// Connection, pool and I/O failures, and transient server states (too many
/// connections, shutdown, lock wait timeout, deadlock, read-only server) are
/// [`StoreError::Unavailable`]; rows that cannot be decoded are
/// [`StoreError::Corrupt`]; anything else is [`StoreError::Other`].
#[derive(Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
}

impl fmt::Debug for MySqlStore {
    // Pool statistics only: nothing about the server or its credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlStore")
            .field("connections", &self.pool.size())
            .field("idle_connections", &self.pool.num_idle())
            .finish_non_exhaustive()
    }
}

impl MySqlStore {
    /// Connects to the database at `url` (`mysql://user:password@host/db`;
    /// the URL must name a database) with a pool of up to 10 connections
    /// that waits at most 5 seconds for a free connection, then creates or
    /// migrates the schema. For other pool settings build the pool yourself
    /// and call [`from_pool`](Self::from_pool).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached,
    /// [`StoreError::Other`] for a malformed URL or a refused login, and as
    /// [`from_pool`](Self::from_pool).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = MySqlPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(db_err)?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool, creating or migrating the schema first, in the
    /// connections' default database.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the database was written by a newer schema
    /// version than this build supports, [`StoreError::Unavailable`] if the
    /// server cannot be reached or another instance's migration holds the
    /// lock for more than 10 seconds, [`StoreError::Other`] if the
    /// connections have no default database or the schema cannot be created
    /// (for example, missing privileges).
    pub async fn from_pool(pool: MySqlPool) -> Result<Self, StoreError> {
        migrate(&pool).await?;
        Ok(Self { pool })
    }

    /// The underlying connection pool.
    #[must_use]
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Deletes every expired record, unless another instance is already
    /// doing so: returns `Some(count)` after reaping, `None` at once if
    /// another connection holds the reaper lock.
    ///
    /// The lock is a named lock (`GET_LOCK`) held by one pooled connection
    /// for the length of the run; rows are deleted 1000 per statement, each
    /// statement committing on its own. If the run is cancelled midway, the
    /// connection is closed rather than returned to the pool, which releases
    /// the lock.
    ///
    /// # Errors
    ///
    /// A backend failure.
    pub async fn try_reap(&self) -> Result<Option<u64>, StoreError> {
        let conn = self.pool.acquire().await.map_err(db_err)?;
        let mut lock = LockedConn { conn, held: true };
        let got: Option<i64> =
            sqlx::query_scalar(&format!("SELECT CAST(GET_LOCK({REAP_LOCK}, 0) AS SIGNED)"))
                .fetch_one(&mut *lock.conn)
                .await
                .map_err(db_err)?;
        if got != Some(1) {
            lock.held = false;
            return Ok(None);
        }
        let reaped = reap_batches(&mut lock.conn).await;
        release(&mut lock, REAP_LOCK).await;
        reaped.map(Some)
    }
}

/// A pooled connection that may hold a named lock. If it is dropped while
/// the lock may still be held (cancellation, failed release), the
/// connection is closed instead of going back to the pool, so the lock can
/// never leak into an unrelated checkout.
struct LockedConn {
    conn: PoolConnection<MySql>,
    held: bool,
}

impl Drop for LockedConn {
    fn drop(&mut self) {
        if self.held {
            self.conn.close_on_drop();
        }
    }
}

/// Releases the named lock `name` (an SQL expression); on failure the
/// connection is closed when `lock` drops, which releases it too.
async fn release(lock: &mut LockedConn, name: &str) {
    let released: Result<Option<i64>, _> =
        sqlx::query_scalar(&format!("SELECT CAST(RELEASE_LOCK({name}) AS SIGNED)"))
            .fetch_one(&mut *lock.conn)
            .await;
    match released {
        Ok(Some(1)) => lock.held = false,
        Ok(_) => tracing::warn!("a cloakroom MySQL lock was not held at release"),
        Err(e) => tracing::warn!(error = %e, "releasing a cloakroom MySQL lock failed"),
    }
}

async fn reap_batches(conn: &mut MySqlConnection) -> Result<u64, StoreError> {
    let mut total = 0u64;
    loop {
        // Ordered by the expiry index (and the key, which makes the LIMIT
        // deterministic for statement-based replication).
        let n = sqlx::query(
            "DELETE FROM cloakroom_sessions WHERE expires_at <= ?
             ORDER BY expires_at, `key` LIMIT ?",
        )
        .bind(now_ms())
        .bind(REAP_BATCH)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?
        .rows_affected();
        total += n;
        if n < REAP_BATCH.unsigned_abs() {
            return Ok(total);
        }
    }
}

async fn migrate(pool: &MySqlPool) -> Result<(), StoreError> {
    let conn = pool.acquire().await.map_err(db_err)?;
    let mut lock = LockedConn { conn, held: true };
    let got: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT CAST(GET_LOCK({MIGRATE_LOCK}, {MIGRATE_LOCK_WAIT_SECS}) AS SIGNED)"
    ))
    .fetch_one(&mut *lock.conn)
    .await
    .map_err(db_err)?;
    if got != Some(1) {
        lock.held = false;
        return Err(StoreError::unavailable(
            "timed out waiting for another instance's cloakroom schema migration",
        ));
    }
    let result = migrate_locked(&mut lock.conn).await;
    release(&mut lock, MIGRATE_LOCK).await;
    result
}

async fn migrate_locked(conn: &mut MySqlConnection) -> Result<(), StoreError> {
    let database: Option<String> = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    if database.is_none() {
        return Err(StoreError::other(
            "the MySQL connection has no default database; name one in the URL",
        ));
    }
    let has_meta: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS SIGNED) FROM information_schema.tables
         WHERE table_schema = DATABASE() AND table_name = 'cloakroom_meta'",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    let found: i64 = if has_meta > 0 {
        sqlx::query_scalar("SELECT value FROM cloakroom_meta WHERE name = 'schema_version'")
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?
            .unwrap_or(0)
    } else {
        0
    };
    check_schema_version(found)?;
    if found < SCHEMA_VERSION {
        // DDL commits implicitly in MySQL: the named lock, not a
        // transaction, keeps concurrent starts apart, and every step is
        // idempotent so an interrupted migration simply runs again.
        let mut steps = vec![CREATE_META];
        if found < 1 {
            steps.extend_from_slice(SCHEMA_V1);
        }
        for step in steps {
            sqlx::query(step)
                .persistent(false)
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
        }
        sqlx::query(
            "INSERT INTO cloakroom_meta (name, value) VALUES ('schema_version', ?)
             ON DUPLICATE KEY UPDATE value = ?",
        )
        .bind(SCHEMA_VERSION)
        .bind(SCHEMA_VERSION)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        tracing::info!(
            from = found,
            to = SCHEMA_VERSION,
            "migrated the MySQL session schema"
        );
    }
    Ok(())
}

/// Refuses a database written by a newer schema than this build knows.
fn check_schema_version(found: i64) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::corrupt(format!(
            "MySQL session schema version {found} is newer than this build supports ({SCHEMA_VERSION}); upgrade cloakroom"
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
        E::Database(db)
            if db
                .try_downcast_ref::<MySqlDatabaseError>()
                .is_some_and(|m| is_transient(m.number())) =>
        {
            StoreError::unavailable(e)
        }
        _ => StoreError::other(e),
    }
}

/// Server error numbers that mean "the server cannot serve this now", not
/// "this request is wrong".
fn is_transient(number: u16) -> bool {
    matches!(
        number,
        1040 // too many connections
            | 1053 // server shutdown in progress
            | 1203 // user has too many connections
            | 1205 // lock wait timeout
            | 1213 // deadlock
            | 1290 // --read-only (a replica after a failover)
            | 1317 // query interrupted
            | 1792 // read-only transaction
            | 1927 // connection killed (MariaDB)
            | 1969 // statement timeout (MariaDB)
            | 3024 // max_execution_time exceeded (MySQL)
            | 4031 // disconnected for inactivity (MySQL)
    )
}

fn is_duplicate_key(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .is_some_and(|m| m.number() == ER_DUP_ENTRY),
        _ => false,
    }
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

fn user_hash(user: &str) -> [u8; 32] {
    Sha256::digest(user.as_bytes()).into()
}

/// A record as its row's columns.
struct Row {
    version: i64,
    user: Option<Vec<u8>>,
    user_hash: Option<[u8; 32]>,
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
            user_hash: r.user.as_deref().map(user_hash),
            idle_deadline: millis(r.idle_deadline),
            absolute_deadline: millis(r.absolute_deadline),
            expires_at: millis(r.expires_at()),
            record: r.encode(),
        }
    }
}

/// Inserts `row` under `key` unless a live row is there; an expired row is
/// deleted and the insert tried once more. Returns whether it was written.
async fn insert_if_absent(
    conn: &mut MySqlConnection,
    key: &StorageKey,
    row: &Row,
    now: i64,
) -> Result<bool, StoreError> {
    for attempt in 0..2 {
        let inserted = sqlx::query(
            "INSERT INTO cloakroom_sessions
                 (`key`, version, `user`, user_hash, idle_deadline,
                  absolute_deadline, expires_at, record)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.0[..])
        .bind(row.version)
        .bind(row.user.as_deref())
        .bind(row.user_hash.as_ref().map(|h| &h[..]))
        .bind(row.idle_deadline)
        .bind(row.absolute_deadline)
        .bind(row.expires_at)
        .bind(&row.record[..])
        .execute(&mut *conn)
        .await;
        match inserted {
            Ok(_) => return Ok(true),
            Err(e) if is_duplicate_key(&e) => {
                if attempt > 0 {
                    break;
                }
                // Collided: only an expired row may be replaced.
                let gone = sqlx::query(
                    "DELETE FROM cloakroom_sessions WHERE `key` = ? AND expires_at <= ?",
                )
                .bind(&key.0[..])
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(db_err)?
                .rows_affected();
                if gone == 0 {
                    break;
                }
            }
            Err(e) => return Err(db_err(e)),
        }
    }
    Ok(false)
}

/// Whether a live row exists under `key`.
async fn is_live(pool: &MySqlPool, key: &StorageKey, now: i64) -> Result<bool, StoreError> {
    let found =
        sqlx::query("SELECT version FROM cloakroom_sessions WHERE `key` = ? AND expires_at > ?")
            .bind(&key.0[..])
            .bind(now)
            .fetch_optional(pool)
            .await
            .map_err(db_err)?;
    Ok(found.is_some())
}

#[async_trait]
impl SessionStore for MySqlStore {
    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let row = Row::of(record);
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        if insert_if_absent(&mut conn, key, &row, now_ms()).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(
            "SELECT record, idle_deadline FROM cloakroom_sessions
             WHERE `key` = ? AND expires_at > ?",
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
        // sqlx connects with CLIENT_FOUND_ROWS, so a matched row counts even
        // if no value changed.
        let n = sqlx::query(
            "UPDATE cloakroom_sessions SET
                 version = ?, `user` = ?, user_hash = ?, idle_deadline = ?,
                 absolute_deadline = ?, expires_at = ?, record = ?
             WHERE `key` = ? AND version = ? AND expires_at > ?",
        )
        .bind(row.version)
        .bind(row.user.as_deref())
        .bind(row.user_hash.as_ref().map(|h| &h[..]))
        .bind(row.idle_deadline)
        .bind(row.absolute_deadline)
        .bind(row.expires_at)
        .bind(&row.record[..])
        .bind(&key.0[..])
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
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE cloakroom_sessions
             SET idle_deadline = ?, expires_at = LEAST(?, absolute_deadline)
             WHERE `key` = ? AND expires_at > ?",
        )
        .bind(millis(idle_deadline))
        .bind(millis(idle_deadline))
        .bind(&key.0[..])
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        // Without CLIENT_FOUND_ROWS a touch to the same deadline would count
        // 0 rows; check before answering NotFound.
        if n == 1 || is_live(&self.pool, key, now).await? {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cloakroom_sessions WHERE `key` = ?")
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
        // One transaction: the new row exists before the old is gone, and
        // nobody sees a moment with neither or both. S28: the old row goes
        // first and only if it is live; if there is none (deleted or
        // expired), nothing is filed under the new key. The DELETE locks
        // the old row, so a racing `delete` or `delete_by_user` either
        // removed it before (0 rows here) or waits for this commit; the
        // latter's locking read then sees the new row (same user) and
        // deletes it too, and its next-key locks on the user's index range
        // hold back an insert that would slip in behind it.
        let moved =
            sqlx::query("DELETE FROM cloakroom_sessions WHERE `key` = ? AND expires_at > ?")
                .bind(&old_key.0[..])
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
        let outcome = if moved == 0 {
            StoreError::NotFound
        } else if insert_if_absent(&mut tx, new_key, &row, now).await? {
            return tx.commit().await.map_err(db_err);
        } else {
            StoreError::Conflict
        };
        // Undo the delete: nothing changes. A failed rollback closes the
        // connection.
        let _ = tx.rollback().await;
        Err(outcome)
    }

    async fn list_by_user(&self, user: &str) -> Result<Vec<UserSession>, StoreError> {
        let rows = sqlx::query(
            "SELECT `key`, record, idle_deadline FROM cloakroom_sessions
             WHERE user_hash = ? AND `user` = ? AND expires_at > ?",
        )
        .bind(&user_hash(user)[..])
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
        let hash = user_hash(user);
        // An empty `except` matches no key.
        let except = except.map_or(&[][..], |k| &k.0[..]);
        let now = now_ms();
        // Live rows first: they are what is counted. Then the user's expired
        // rows, which no one can see any more, so the index stays exact.
        let mut counts = [0u64; 2];
        for (count, op) in counts.iter_mut().zip([">", "<="]) {
            *count = sqlx::query(&format!(
                "DELETE FROM cloakroom_sessions
                 WHERE user_hash = ? AND `user` = ? AND `key` <> ? AND expires_at {op} ?"
            ))
            .bind(&hash[..])
            .bind(user.as_bytes())
            .bind(except)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        }
        Ok(counts[0])
    }

    /// Deletes expired rows in batches; returns 0 at once when another
    /// instance is reaping (see [`MySqlStore::try_reap`]).
    fn is_durable(&self) -> bool {
        // Durable: records are rows in an InnoDB table; nothing evicts them.
        true
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(self.try_reap().await?.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use sqlx::mysql::MySqlConnectOptions;

    use super::*;
    use crate::id::SessionId;
    use crate::store::conformance::skip_service;
    use crate::store::test_services as services;

    /// Throwaway databases are named `cloakroom_t_<unix seconds>_<random>`.
    const THROWAWAY_PREFIX: &str = "cloakroom_t_";

    fn url() -> String {
        services::mysql_url()
    }

    async fn admin_pool() -> Result<MySqlPool, StoreError> {
        MySqlPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(&url())
            .await
            .map_err(db_err)
    }

    /// A pool on a fresh, empty database of its own, so a test can own the
    /// whole table (reaping, schema version) while other tests share the
    /// test database. Databases of runs older than an hour are dropped on
    /// the way.
    async fn throwaway_pool() -> Result<(MySqlPool, String), StoreError> {
        let admin = admin_pool().await?;
        let old: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata
             WHERE schema_name LIKE 'cloakroom\\_t\\_%'",
        )
        .fetch_all(&admin)
        .await
        .map_err(db_err)?;
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
            .await
            .map_err(db_err)?;
        admin.close().await;
        let options: MySqlConnectOptions = url().parse().map_err(StoreError::other)?;
        let pool = MySqlPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.database(&database))
            .await
            .map_err(db_err)?;
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

    /// A store on the shared tables of the test database, or `None` (after
    /// reporting the skip) when the server is unreachable.
    async fn shared_store() -> Option<MySqlStore> {
        match MySqlStore::connect(&url()).await {
            Ok(s) => Some(s),
            Err(e) => {
                skip_service("mysql", &e);
                None
            }
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

    /// A pool without a default database is refused with a clear error.
    #[tokio::test]
    async fn no_database_is_refused() {
        let Ok(options) = url().parse::<MySqlConnectOptions>() else {
            return;
        };
        let Ok(admin) = admin_pool().await else {
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
    }

    /// A start that cannot get the migration lock gives up with
    /// `Unavailable` instead of hanging.
    #[tokio::test]
    async fn migration_lock_wait_is_bounded() {
        let Some((pool, database)) = throwaway().await else {
            return;
        };
        let mut holder = pool.acquire().await.unwrap();
        let got: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT CAST(GET_LOCK({MIGRATE_LOCK}, 0) AS SIGNED)"
        ))
        .fetch_one(&mut *holder)
        .await
        .unwrap();
        assert_eq!(got, Some(1));
        let started = std::time::Instant::now();
        let err = MySqlStore::from_pool(pool.clone()).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "got {err:?}");
        assert!(started.elapsed() >= Duration::from_secs(9));
        let _: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT CAST(RELEASE_LOCK({MIGRATE_LOCK}) AS SIGNED)"
        ))
        .fetch_one(&mut *holder)
        .await
        .unwrap();
        drop(holder);
        MySqlStore::from_pool(pool.clone()).await.unwrap();
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
        // 2500 expired rows (more than two batches) and one live one.
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
        let live = SessionId::generate().storage_key();
        store.create(&live, &live_record(None)).await.unwrap();

        // Another "instance" holds the reaper lock.
        let mut other = pool.acquire().await.unwrap();
        let got: Option<i64> =
            sqlx::query_scalar(&format!("SELECT CAST(GET_LOCK({REAP_LOCK}, 0) AS SIGNED)"))
                .fetch_one(&mut *other)
                .await
                .unwrap();
        assert_eq!(got, Some(1));
        assert_eq!(store.try_reap().await.unwrap(), None);
        assert_eq!(store.delete_expired().await.unwrap(), 0);
        let _: Option<i64> =
            sqlx::query_scalar(&format!("SELECT CAST(RELEASE_LOCK({REAP_LOCK}) AS SIGNED)"))
                .fetch_one(&mut *other)
                .await
                .unwrap();
        drop(other);

        assert_eq!(store.try_reap().await.unwrap(), Some(2500));
        assert_eq!(store.delete_expired().await.unwrap(), 0);
        assert!(store.load(&live).await.unwrap().is_some());
        assert_eq!(store.try_reap().await.unwrap(), Some(0));
        pool.close().await;
        drop_database(&database).await;
    }

    /// A cancelled reaper run does not leave the lock held by a pooled
    /// connection.
    #[tokio::test]
    async fn cancelled_reap_releases_the_lock() {
        let Some((pool, database)) = throwaway().await else {
            return;
        };
        let store = MySqlStore::from_pool(pool.clone()).await.unwrap();
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
        drop_database(&database).await;
    }

    /// `touch` never pushes expiry past the absolute deadline, and touching
    /// to the same deadline twice is not `NotFound`.
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
        store.touch(&key, far).await.unwrap();
        let expires: i64 =
            sqlx::query_scalar("SELECT expires_at FROM cloakroom_sessions WHERE `key` = ?")
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

    /// Principals are compared exactly: no collation folds case or trailing
    /// spaces, and any length or byte works.
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
        let accented = format!("{tag}-alicé");
        let users = [&long, &nul, &upper, &lower, &padded, &accented];
        let mut keys = Vec::new();
        for user in users {
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
        assert_eq!(store.delete_by_user(&lower, None).await.unwrap(), 1);
        assert_eq!(store.list_by_user(&upper).await.unwrap().len(), 1);
        assert_eq!(store.list_by_user(&padded).await.unwrap().len(), 1);
        assert_eq!(store.list_by_user(&accented).await.unwrap().len(), 1);
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
            store.create(&key, &live_record(None)).await.unwrap();
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
                        store.rotate(&old, &new, &rec).await?;
                    } else {
                        let gone = SessionId::generate().storage_key();
                        match store.rotate(&gone, &new, &rec).await {
                            Err(StoreError::NotFound) => {}
                            Ok(()) => return Err(StoreError::other("rotated a missing key")),
                            Err(e) => return Err(e),
                        }
                    }
                    store.delete(&old).await?;
                    store.delete(&new).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }

    /// An unreachable server is `Unavailable`, promptly.
    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        let started = std::time::Instant::now();
        let err = MySqlStore::connect("mysql://root@127.0.0.1:1/test")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "got {err:?}");
        assert!(started.elapsed() < Duration::from_secs(15));
    }

    /// Debug output never shows connection secrets.
    #[tokio::test]
    async fn debug_hides_the_password() {
        let base: MySqlConnectOptions = url().parse().unwrap();
        let pool = MySqlPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(base.password("hunter2-secret"));
        let store = MySqlStore { pool };
        let shown = format!("{store:?}");
        assert!(shown.starts_with("MySqlStore"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    /// The public futures can be spawned.
    #[allow(dead_code, clippy::let_underscore_future)]
    fn futures_are_send(store: &MySqlStore, pool: MySqlPool) {
        fn send<T: Send>(_: T) {}
        send(MySqlStore::connect("mysql://x"));
        send(MySqlStore::from_pool(pool));
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
        assert!(is_transient(1213) && is_transient(1205) && is_transient(1040));
        assert!(!is_transient(ER_DUP_ENTRY) && !is_transient(1146));
    }

    /// Real server errors map as expected.
    #[tokio::test]
    async fn server_errors_map_to_store_errors() {
        let Some(store) = shared_store().await else {
            return;
        };
        let e = sqlx::query("SELECT * FROM cloakroom_no_such_table")
            .execute(store.pool())
            .await
            .unwrap_err();
        assert!(!is_duplicate_key(&e));
        assert!(matches!(db_err(e), StoreError::Other(_)));
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
        assert!(is_duplicate_key(&e), "{e}");
        assert!(matches!(db_err(e), StoreError::Other(_)));
        store.delete(&key).await.unwrap();
    }

    /// A stored record that cannot be decoded is `Corrupt`, not a panic.
    #[tokio::test]
    async fn undecodable_record_is_corrupt() {
        let Some(store) = shared_store().await else {
            return;
        };
        let key = SessionId::generate().storage_key();
        store.create(&key, &live_record(None)).await.unwrap();
        sqlx::query("UPDATE cloakroom_sessions SET record = x'09' WHERE `key` = ?")
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
