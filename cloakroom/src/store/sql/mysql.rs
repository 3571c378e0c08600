//! Sessions in MySQL 8 or MariaDB 10.11+ (feature `mysql`).
//!
//! See [`MySqlStore`].

use sqlx::mysql::{
    MySql, MySqlArguments, MySqlConnection, MySqlDatabaseError, MySqlExecutor, MySqlPool,
};
use sqlx::query::Query;

use crate::id::StorageKey;
use crate::record::Record;
use crate::store::kit::UserKey;
use crate::store::{StoreError, UserSession};

use super::server::{
    LockedConn, Schema, SessionLock, driver_error, fetch_record, fetch_sessions, reap_exclusively,
};
use super::shell::{Dialect, server_store};
use super::{REAP_BATCH, Row, SCHEMA_VERSION};

/// The backend, as errors name it.
const BACKEND: &str = "mysql";
/// Seconds a starting instance waits for another one's migration.
const MIGRATE_LOCK_WAIT_SECS: i64 = 10;
/// MySQL's error number for a duplicate key.
const ER_DUP_ENTRY: u16 = 1062;

/// Named locks are server-wide: scope them to the database (and cut them to
/// MySQL's 64-character limit). A start waits for another one's migration;
/// a reaper never waits for another reaper.
const MIGRATE_LOCK: NamedLock = NamedLock {
    name: "LEFT(CONCAT('cloakroom_migrate:', COALESCE(DATABASE(), '')), 64)",
    wait_secs: MIGRATE_LOCK_WAIT_SECS,
};
const REAP_LOCK: NamedLock = NamedLock {
    name: "LEFT(CONCAT('cloakroom_reap:', COALESCE(DATABASE(), '')), 64)",
    wait_secs: 0,
};

const CREATE_META: &str = "CREATE TABLE IF NOT EXISTS cloakroom_meta (
    name  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    value BIGINT NOT NULL
) ENGINE = InnoDB";

const SCHEMA: Schema = Schema {
    backend: BACKEND,
    product: "MySQL",
    create_meta: CREATE_META,
    v1: SCHEMA_V1,
};

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

server_store! {
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
    /// Expired rows are deleted by [`delete_expired`](crate::store::SessionStore::delete_expired)
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
    pub struct MySqlStore(MySqlPool);
    errors: db_err;

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
    connect;

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
    from_pool => migrate;

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
    try_reap => reap;
}

impl Dialect for MySqlStore {
    const DELETE: &str = "DELETE FROM cloakroom_sessions WHERE `key` = ?";
    const BACKEND: &str = BACKEND;

    async fn create(&self, key: &StorageKey, row: &Row, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        insert_if_absent(&mut conn, key, row, now).await
    }

    async fn load(&self, key: &StorageKey, now: i64) -> Result<Option<Record>, StoreError> {
        let load = sqlx::query(
            "SELECT record, idle_deadline FROM cloakroom_sessions
             WHERE `key` = ? AND expires_at > ?",
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
        // sqlx connects with CLIENT_FOUND_ROWS, so a matched row counts even
        // if no value changed.
        let update = sqlx::query(
            "UPDATE cloakroom_sessions SET
                 version = ?, `user` = ?, user_hash = ?, idle_deadline = ?,
                 absolute_deadline = ?, expires_at = ?, record = ?
             WHERE `key` = ? AND version = ? AND expires_at > ?",
        );
        let update = bind_row(update, row).bind(&key.0[..]).bind(expected);
        affected(update.bind(now), &self.pool).await
    }

    async fn is_live(&self, key: &StorageKey, now: i64) -> Result<bool, StoreError> {
        let live = sqlx::query(
            "SELECT version FROM cloakroom_sessions WHERE `key` = ? AND expires_at > ?",
        );
        let found = live.bind(&key.0[..]).bind(now).fetch_optional(&self.pool);
        Ok(found.await.map_err(db_err)?.is_some())
    }

    async fn touch(&self, key: &StorageKey, idle: i64, now: i64) -> Result<bool, StoreError> {
        let touch = sqlx::query(
            "UPDATE cloakroom_sessions
             SET idle_deadline = ?, expires_at = LEAST(?, absolute_deadline)
             WHERE `key` = ? AND expires_at > ?",
        );
        let touch = touch.bind(idle).bind(idle).bind(&key.0[..]).bind(now);
        let n = affected(touch, &self.pool).await?;
        // Without CLIENT_FOUND_ROWS a touch to the same deadline would count
        // 0 rows; check before answering NotFound.
        Ok(n == 1 || self.is_live(key, now).await?)
    }

    async fn rotate(
        &self,
        old: &StorageKey,
        new: &StorageKey,
        row: &Row,
        now: i64,
    ) -> Result<(), StoreError> {
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
        let live = sqlx::query("DELETE FROM cloakroom_sessions WHERE `key` = ? AND expires_at > ?");
        let moved = affected(live.bind(&old.0[..]).bind(now), &mut *tx).await?;
        let outcome = if moved == 0 {
            StoreError::NotFound
        } else if insert_if_absent(&mut tx, new, row, now).await? {
            return tx.commit().await.map_err(db_err);
        } else {
            StoreError::Conflict
        };
        // Undo the delete: nothing changes. A failed rollback closes the
        // connection.
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
            "SELECT `key`, record, idle_deadline FROM cloakroom_sessions
             WHERE `key` > ? AND expires_at > ? ORDER BY `key` LIMIT ?",
        );
        fetch_sessions(page.bind(after).bind(now).bind(limit), &self.pool, db_err).await
    }

    async fn list_by_user(&self, user: &str, now: i64) -> Result<Vec<UserSession>, StoreError> {
        let list = sqlx::query(
            "SELECT `key`, record, idle_deadline FROM cloakroom_sessions
             WHERE user_hash = ? AND `user` = ? AND expires_at > ?",
        );
        let hash = user_hash(user);
        let list = list.bind(&hash[..]).bind(user.as_bytes()).bind(now);
        fetch_sessions(list, &self.pool, db_err).await
    }

    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let hash = user_hash(user);
        // An empty `except` matches no key.
        let except = except.map_or(&[][..], |k| &k.0[..]);
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
}

/// A named lock (`GET_LOCK`), waiting at most `wait_secs` for it.
struct NamedLock {
    /// The lock's name, as an SQL expression.
    name: &'static str,
    wait_secs: i64,
}

impl SessionLock<MySql> for NamedLock {
    fn name(&self) -> &'static str {
        "a cloakroom MySQL lock"
    }

    async fn try_lock(&self, conn: &mut MySqlConnection) -> Result<bool, StoreError> {
        let (name, wait) = (self.name, self.wait_secs);
        let sql = format!("SELECT CAST(GET_LOCK({name}, {wait}) AS SIGNED)");
        let got: Option<i64> = sqlx::query_scalar(&sql)
            .fetch_one(conn)
            .await
            .map_err(db_err)?;
        Ok(got == Some(1))
    }

    async fn unlock(&self, conn: &mut MySqlConnection) -> Result<bool, sqlx::Error> {
        let sql = format!("SELECT CAST(RELEASE_LOCK({}) AS SIGNED)", self.name);
        let released: Option<i64> = sqlx::query_scalar(&sql).fetch_one(conn).await?;
        Ok(released == Some(1))
    }
}

/// `try_reap`: the batched reap, under the reaper lock.
async fn reap(pool: &MySqlPool, now: i64) -> Result<Option<u64>, StoreError> {
    reap_exclusively(pool, db_err, &REAP_LOCK, move |c| {
        Box::pin(reap_batch(c, now))
    })
    .await
}

/// Deletes up to [`REAP_BATCH`] expired rows.
async fn reap_batch(conn: &mut MySqlConnection, now: i64) -> Result<u64, StoreError> {
    // Ordered by the expiry index (and the key, which makes the LIMIT
    // deterministic for statement-based replication).
    let done = sqlx::query(
        "DELETE FROM cloakroom_sessions WHERE expires_at <= ?
         ORDER BY expires_at, `key` LIMIT ?",
    )
    .bind(now)
    .bind(REAP_BATCH)
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected())
}

async fn migrate(pool: &MySqlPool) -> Result<(), StoreError> {
    let conn = pool.acquire().await.map_err(db_err)?;
    let migrated = LockedConn::exclusively(conn, &MIGRATE_LOCK, |c| Box::pin(migrate_locked(c)));
    migrated.await?.unwrap_or_else(|| {
        Err(StoreError::unavailable_in(
            BACKEND,
            "timed out waiting for another instance's cloakroom schema migration",
        ))
    })
}

async fn migrate_locked(conn: &mut MySqlConnection) -> Result<(), StoreError> {
    let database: Option<String> = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    if database.is_none() {
        return Err(StoreError::other_in(
            BACKEND,
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
    // DDL commits implicitly in MySQL: the named lock, not a transaction,
    // keeps concurrent starts apart, and every step is idempotent so an
    // interrupted migration simply runs again.
    if let Some(found) = SCHEMA.run_steps(&mut *conn, has_meta > 0, db_err).await? {
        sqlx::query(
            "INSERT INTO cloakroom_meta (name, value) VALUES ('schema_version', ?)
             ON DUPLICATE KEY UPDATE value = ?",
        )
        .bind(SCHEMA_VERSION)
        .bind(SCHEMA_VERSION)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        SCHEMA.log_migrated(found);
    }
    Ok(())
}

/// Maps a driver error onto the store's error kinds.
fn db_err(e: sqlx::Error) -> StoreError {
    driver_error(BACKEND, e, |db| {
        db.try_downcast_ref::<MySqlDatabaseError>()
            .is_some_and(|m| is_transient(m.number()))
    })
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

/// The `user_hash` column: the per-user index key, so the index has a
/// fixed width whatever the principal's length.
fn user_hash(user: &str) -> [u8; 32] {
    *UserKey::of(user).as_bytes()
}

type MySqlQuery<'q> = Query<'q, MySql, MySqlArguments>;

/// `query` with the columns of `row` bound next, in column order: version,
/// user and its hash, idle and absolute deadlines, `expires_at`, record.
fn bind_row<'q>(query: MySqlQuery<'q>, row: &'q Row) -> MySqlQuery<'q> {
    query
        .bind(row.version)
        .bind(row.user_bytes())
        .bind(row.user.as_deref().map(|u| user_hash(u).to_vec()))
        .bind(row.idle_deadline)
        .bind(row.absolute_deadline)
        .bind(row.expires_at)
        .bind(&row.record[..])
}

/// Runs `query` on `ex`: how many rows it affected.
async fn affected<'q>(
    query: MySqlQuery<'q>,
    ex: impl MySqlExecutor<'q>,
) -> Result<u64, StoreError> {
    Ok(query.execute(ex).await.map_err(db_err)?.rows_affected())
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
        let insert = sqlx::query(
            "INSERT INTO cloakroom_sessions
                 (`key`, version, `user`, user_hash, idle_deadline,
                  absolute_deadline, expires_at, record)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        );
        let inserted = bind_row(insert.bind(&key.0[..]), row)
            .execute(&mut *conn)
            .await;
        match inserted {
            Ok(_) => return Ok(true),
            Err(e) if is_duplicate_key(&e) => {
                if attempt > 0 {
                    break;
                }
                // Collided: only an expired row may be replaced.
                let expired = sqlx::query(
                    "DELETE FROM cloakroom_sessions WHERE `key` = ? AND expires_at <= ?",
                );
                if affected(expired.bind(&key.0[..]).bind(now), &mut *conn).await? == 0 {
                    break;
                }
            }
            Err(e) => return Err(db_err(e)),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::server::check_schema;

    #[test]
    fn schema_version_check() {
        assert_eq!(SCHEMA.steps_from(0).unwrap(), [CREATE_META, SCHEMA_V1[0]]);
        check_schema(&SCHEMA);
    }

    /// Transient server states are `Unavailable`; a bad request (a
    /// duplicate key, a missing table) is not.
    #[test]
    fn transient_server_errors() {
        assert!(is_transient(1213) && is_transient(1205) && is_transient(1040));
        assert!(!is_transient(ER_DUP_ENTRY) && !is_transient(1146));
        assert_eq!(db_err(sqlx::Error::WorkerCrashed).backend(), Some(BACKEND));
    }

    /// The `user_hash` column is the per-user index key, byte for byte.
    #[test]
    fn user_hash_is_sha256_of_the_user() {
        assert_eq!(user_hash("alice")[..4], [0x2b, 0xd8, 0x06, 0xc9]);
    }

    /// Debug output never shows connection secrets.
    #[tokio::test]
    async fn debug_hides_the_password() {
        let options = sqlx::mysql::MySqlConnectOptions::new().password("hunter2-secret");
        let store = MySqlStore {
            pool: sqlx::mysql::MySqlPoolOptions::new().connect_lazy_with(options),
        };
        let shown = format!("{store:?}");
        assert!(
            shown.starts_with("MySqlStore") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
