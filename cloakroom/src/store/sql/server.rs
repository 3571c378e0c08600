//! What the two sqlx stores (PostgreSQL, MySQL) share below their shell
//! (`shell.rs`), derived once: the pool `connect` builds, a `Debug` that
//! shows no credentials, the mapping of driver errors onto [`StoreError`],
//! the migration runner, the connection that closes itself when it may
//! still hold a lock, the exclusive reap, and rows read back as records. A
//! dialect file keeps its SQL, its placeholders and binding order, its
//! server error codes, its locks and the strategies its isolation level
//! needs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sqlx::Row as _;
use sqlx::error::DatabaseError;
use sqlx::pool::{Pool, PoolConnection, PoolOptions};
use sqlx::query::Query;

use crate::record::Record;
use crate::store::kit::key_from;
use crate::store::{StoreError, UserSession};

use super::{ReapBatch, SCHEMA_VERSION, check_schema_version, decode_row, reap_in_batches};

/// How long a pool made by [`connect_pool`] waits for a connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The pool `connect(url)` builds: up to 10 connections, waiting at most
/// 5 seconds for a free one.
pub(in crate::store) async fn connect_pool<DB: sqlx::Database>(
    url: &str,
) -> Result<Pool<DB>, sqlx::Error> {
    PoolOptions::<DB>::new()
        .max_connections(10)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(url)
        .await
}

/// A store's `Debug`: pool statistics only, nothing about the server or
/// its credentials.
pub(in crate::store) fn debug_pool<DB: sqlx::Database>(
    f: &mut fmt::Formatter<'_>,
    store: &str,
    pool: &Pool<DB>,
) -> fmt::Result {
    f.debug_struct(store)
        .field("connections", &pool.size())
        .field("idle_connections", &pool.num_idle())
        .finish_non_exhaustive()
}

/// Maps a driver error of `backend` onto the store's error kinds; the
/// dialect says which server errors are transient.
pub(in crate::store) fn driver_error(
    backend: &'static str,
    e: sqlx::Error,
    is_transient: impl Fn(&dyn DatabaseError) -> bool,
) -> StoreError {
    use sqlx::Error as E;
    match &e {
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::BeginFailed => StoreError::unavailable_in(backend, e),
        E::ColumnDecode { .. }
        | E::Decode(_)
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::TypeNotFound { .. } => StoreError::corrupt_in(backend, e),
        E::Database(db) if is_transient(&**db) => StoreError::unavailable_in(backend, e),
        _ => StoreError::other_in(backend, e),
    }
}

/// A dialect's mapping of driver errors (its `db_err`).
pub(in crate::store) type DbErr = fn(sqlx::Error) -> StoreError;

/// A server store's schema, as the statements that create it.
pub(in crate::store) struct Schema {
    /// The backend, as errors name it (`"postgres"`).
    pub(in crate::store) backend: &'static str,
    /// How the product is called in messages (`"PostgreSQL"`).
    pub(in crate::store) product: &'static str,
    /// Creates `cloakroom_meta`, where `schema_version` is kept.
    pub(in crate::store) create_meta: &'static str,
    /// Schema version 1, one statement each.
    pub(in crate::store) v1: &'static [&'static str],
}

impl Schema {
    /// The statements that bring a database at schema version `found` to
    /// [`SCHEMA_VERSION`]; none when it is current. Every statement is
    /// idempotent, so an interrupted migration simply runs again.
    ///
    /// # Errors
    ///
    /// As [`check_schema_version`].
    pub(in crate::store) fn steps_from(&self, found: i64) -> Result<Vec<&'static str>, StoreError> {
        check_schema_version(self.backend, self.product, found)?;
        let mut steps = Vec::new();
        if found < SCHEMA_VERSION {
            steps.push(self.create_meta);
        }
        if found < 1 {
            steps.extend_from_slice(self.v1);
        }
        Ok(steps)
    }

    /// Reads the schema version on `conn` (0 while `has_meta` says there is
    /// no `cloakroom_meta`) and runs the steps that bring it to
    /// [`SCHEMA_VERSION`]. Returns the version found when steps ran (the
    /// caller then records the new version), `None` when it was current.
    ///
    /// # Errors
    ///
    /// As [`steps_from`](Self::steps_from), and any statement's failure.
    pub(in crate::store) async fn run_steps<C, DB>(
        &self,
        conn: &mut C,
        has_meta: bool,
        db_err: DbErr,
    ) -> Result<Option<i64>, StoreError>
    where
        DB: sqlx::Database + sqlx::database::HasStatementCache,
        for<'c> &'c mut C: sqlx::Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
        (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
    {
        let found: i64 = if has_meta {
            sqlx::query_scalar("SELECT value FROM cloakroom_meta WHERE name = 'schema_version'")
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err)?
                .unwrap_or(0)
        } else {
            0
        };
        let steps = self.steps_from(found)?;
        if steps.is_empty() {
            return Ok(None);
        }
        for step in steps {
            sqlx::query(step)
                .persistent(false)
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
        }
        Ok(Some(found))
    }

    /// Logs a finished migration from schema version `found`.
    pub(in crate::store) fn log_migrated(&self, found: i64) {
        tracing::info!(
            from = found,
            to = SCHEMA_VERSION,
            "migrated the {} session schema",
            self.product
        );
    }
}

/// A pooled connection that may hold a session-level lock (an advisory
/// lock, a named lock). If it is dropped while the lock may still be
/// held (cancellation, a failed unlock), the connection is closed
/// instead of going back to the pool, so the lock can never leak into
/// an unrelated checkout.
pub(in crate::store) struct LockedConn<DB: sqlx::Database> {
    pub(in crate::store) conn: PoolConnection<DB>,
    /// Whether the lock may be held; `false` once it is known not to be.
    pub(in crate::store) held: bool,
}

impl<DB: sqlx::Database> LockedConn<DB> {
    /// `conn`, about to try for a lock: held until known otherwise.
    pub(in crate::store) fn new(conn: PoolConnection<DB>) -> Self {
        Self { conn, held: true }
    }

    /// Runs `work` on `conn` while holding `lock`; `None` at once when
    /// another connection holds it. The lock is given back afterwards; if
    /// that fails, or the run is cancelled midway, the connection is closed
    /// rather than returned to the pool, which releases the lock.
    ///
    /// # Errors
    ///
    /// A failure to try for the lock.
    pub(in crate::store) async fn exclusively<T>(
        conn: PoolConnection<DB>,
        lock: &impl SessionLock<DB>,
        work: impl for<'c> FnOnce(&'c mut DB::Connection) -> Locked<'c, T>,
    ) -> Result<Option<T>, StoreError> {
        let mut this = Self::new(conn);
        if !lock.try_lock(&mut *this.conn).await? {
            this.held = false;
            return Ok(None);
        }
        let out = work(&mut *this.conn).await;
        // On `false` or an error, dropping `this` closes the connection,
        // which frees the lock.
        match lock.unlock(&mut *this.conn).await {
            Ok(true) => this.held = false,
            Ok(false) => tracing::warn!("{} was not held at unlock", lock.name()),
            Err(e) => tracing::warn!(error = %e, "releasing {} failed", lock.name()),
        }
        Ok(Some(out))
    }
}

impl<DB: sqlx::Database> Drop for LockedConn<DB> {
    fn drop(&mut self) {
        if self.held {
            self.conn.close_on_drop();
        }
    }
}

/// Work done under a [`SessionLock`], on the connection that holds it.
pub(in crate::store) type Locked<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// A lock held by one server connection at a time, across statements and
/// transactions: a PostgreSQL advisory lock, a MySQL named lock.
pub(in crate::store) trait SessionLock<DB: sqlx::Database>: Sync {
    /// The lock, as log messages name it (`"the PostgreSQL reaper lock"`).
    fn name(&self) -> &'static str;

    /// Tries for the lock on `conn`: whether it was got.
    fn try_lock(
        &self,
        conn: &mut DB::Connection,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives the lock back: whether it was held.
    fn unlock(
        &self,
        conn: &mut DB::Connection,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;
}

/// `try_reap`: deletes expired rows, `batch` at a time, on a connection of
/// `pool` holding the reaper `lock`; `None` at once when another connection
/// holds it.
///
/// # Errors
///
/// A backend failure.
pub(in crate::store) async fn reap_exclusively<DB: sqlx::Database>(
    pool: &Pool<DB>,
    db_err: DbErr,
    lock: &impl SessionLock<DB>,
    batch: impl for<'a> FnMut(&'a mut DB::Connection) -> ReapBatch<'a> + Send + 'static,
) -> Result<Option<u64>, StoreError> {
    let conn = pool.acquire().await.map_err(db_err)?;
    LockedConn::exclusively(conn, lock, |c| Box::pin(reap_in_batches(c, batch)))
        .await?
        .transpose()
}

/// Runs `query`, which selects `record, idle_deadline` of at most one
/// row, on `pool`: the row's record, if there is one.
///
/// # Errors
///
/// A backend failure; [`StoreError::Corrupt`] for columns that do not
/// decode.
pub(in crate::store) async fn fetch_record<'q, DB>(
    query: Query<'q, DB, DB::Arguments<'q>>,
    pool: &Pool<DB>,
    db_err: DbErr,
) -> Result<Option<Record>, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    Vec<u8>: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
{
    let row = query.fetch_optional(pool).await.map_err(db_err)?;
    row.map(|r| record_at(&r, 0, db_err)).transpose()
}

/// Runs `query`, which selects `key, record, idle_deadline` of a user's
/// rows, on `pool`: the user's sessions.
///
/// # Errors
///
/// A backend failure; [`StoreError::Corrupt`] for columns that do not
/// decode.
pub(in crate::store) async fn fetch_sessions<'q, DB>(
    query: Query<'q, DB, DB::Arguments<'q>>,
    pool: &Pool<DB>,
    db_err: DbErr,
) -> Result<Vec<UserSession>, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    Vec<u8>: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
{
    let rows = query.fetch_all(pool).await.map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let key: Vec<u8> = r.try_get(0).map_err(db_err)?;
            Ok(UserSession {
                key: key_from(&key)?,
                record: record_at(r, 1, db_err)?,
            })
        })
        .collect()
}

/// Columns `first` (`record`) and `first + 1` (`idle_deadline`) of a row,
/// read back as its record.
fn record_at<R>(row: &R, first: usize, db_err: DbErr) -> Result<Record, StoreError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let bytes: Vec<u8> = row.try_get(first).map_err(db_err)?;
    let idle: i64 = row.try_get(first + 1).map_err(db_err)?;
    decode_row(bytes, idle)
}

/// Checks a dialect's `schema`: an empty database gets `cloakroom_meta`
/// and every version-1 statement, a current one nothing, and a newer one
/// is refused naming the product.
#[cfg(test)]
pub(in crate::store) fn check_schema(schema: &Schema) {
    let mut all = vec![schema.create_meta];
    all.extend_from_slice(schema.v1);
    assert_eq!(schema.steps_from(0).unwrap(), all);
    assert!(schema.steps_from(SCHEMA_VERSION).unwrap().is_empty());
    let err = schema.steps_from(SCHEMA_VERSION + 1).unwrap_err();
    let newer = format!(
        "{} session schema version {}",
        schema.product,
        SCHEMA_VERSION + 1
    );
    assert!(err.to_string().contains(&newer), "{err}");
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: Schema = Schema {
        backend: "test",
        product: "Test",
        create_meta: "meta",
        v1: &["v1a", "v1b"],
    };

    #[test]
    fn migration_plan_follows_the_found_version() {
        assert_eq!(SCHEMA.steps_from(0).unwrap(), ["meta", "v1a", "v1b"]);
        assert!(SCHEMA.steps_from(SCHEMA_VERSION).unwrap().is_empty());
        assert!(SCHEMA.steps_from(SCHEMA_VERSION + 1).is_err());
    }

    #[test]
    fn driver_errors_map_to_store_errors() {
        let map = |e| driver_error("test", e, |_| false);
        assert!(matches!(
            map(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        let io = map(sqlx::Error::Io(std::io::Error::other("reset")));
        assert!(matches!(io, StoreError::Unavailable(_)));
        assert_eq!(io.backend(), Some("test"));
        assert!(matches!(
            map(sqlx::Error::Decode("bad".into())),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            map(sqlx::Error::RowNotFound),
            StoreError::Other(_)
        ));
    }
}
