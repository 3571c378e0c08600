//! The SQL stores: one embedded file ([`SqliteStore`]) and two servers
//! ([`PostgresStore`], [`MySqlStore`]).
//!
//! The three keep the same table, `cloakroom_sessions`: one row per
//! session, keyed by the 32-byte storage key, with the record's version, its
//! user, its deadlines in milliseconds since the Unix epoch and the encoded
//! record. What they share lives here, derived once: a record as its row's
//! columns ([`Row`]), a row read back as a record, the schema-version check
//! and migration plan, and the batched reap. The two server stores (sqlx)
//! also share the connection that closes itself when it may still hold a
//! lock, and the mapping of driver errors onto [`StoreError`]. Each dialect
//! file keeps only its SQL, its placeholders, its server error codes and
//! the rotate strategy its isolation level needs.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::record::Record;
use crate::store::StoreError;
use crate::store::kit;

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "mysql")]
pub use mysql::MySqlStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, SqliteStoreBuilder, Synchronous};

/// The schema version this build writes.
pub(super) const SCHEMA_VERSION: i64 = 1;
/// Rows deleted per reaper statement (or transaction), so requests
/// interleave with the reaper.
pub(super) const REAP_BATCH: i64 = 1000;

/// A record as its row's columns, encoded on the request's task (never on
/// a writer thread or inside a transaction).
pub(super) struct Row {
    pub(super) version: i64,
    pub(super) user: Option<String>,
    pub(super) idle_deadline: i64,
    pub(super) absolute_deadline: i64,
    pub(super) expires_at: i64,
    pub(super) record: Bytes,
}

impl Row {
    pub(super) fn of(r: &Record) -> Self {
        Self {
            version: sql_version(r.version),
            user: r.user.clone(),
            idle_deadline: kit::sql_millis(r.idle_deadline),
            absolute_deadline: kit::sql_millis(r.absolute_deadline),
            expires_at: kit::sql_millis(r.expires_at()),
            record: r.encode(),
        }
    }

    /// The user as the bytes the server stores compare exactly.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(super) fn user_bytes(&self) -> Option<&[u8]> {
        self.user.as_deref().map(str::as_bytes)
    }
}

/// A record version (or expected version) as a `BIGINT`, clamped.
pub(super) fn sql_version(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A record read back from its `record` and `idle_deadline` columns; the
/// column's idle deadline wins, since `touch` moves only the column.
pub(super) fn decode_row(bytes: Vec<u8>, idle_deadline: i64) -> Result<Record, StoreError> {
    kit::decode_with_idle(&Bytes::from(bytes), kit::from_sql_millis(idle_deadline))
}

/// Refuses a database written by a newer schema than this build knows.
///
/// # Errors
///
/// [`StoreError::Corrupt`], naming `backend`, when `found` is newer than
/// [`SCHEMA_VERSION`].
pub(super) fn check_schema_version(
    backend: &'static str,
    product: &str,
    found: i64,
) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::corrupt_in(
            backend,
            format!(
                "{product} session schema version {found} is newer than this build supports ({SCHEMA_VERSION}); upgrade cloakroom"
            ),
        ));
    }
    Ok(())
}

/// A server store's schema, as the statements that create it.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(super) struct Schema {
    /// The backend, as errors name it (`"postgres"`).
    pub(super) backend: &'static str,
    /// How the product is called in messages (`"PostgreSQL"`).
    pub(super) product: &'static str,
    /// Creates `cloakroom_meta`, where `schema_version` is kept.
    pub(super) create_meta: &'static str,
    /// Schema version 1, one statement each.
    pub(super) v1: &'static [&'static str],
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl Schema {
    /// The statements that bring a database at schema version `found` to
    /// [`SCHEMA_VERSION`]; none when it is current. Every statement is
    /// idempotent, so an interrupted migration simply runs again.
    ///
    /// # Errors
    ///
    /// As [`check_schema_version`].
    pub(super) fn steps_from(&self, found: i64) -> Result<Vec<&'static str>, StoreError> {
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
}

/// One reaper batch: deletes up to [`REAP_BATCH`] expired rows over `C`.
pub(super) type ReapBatch<'a> = Pin<Box<dyn Future<Output = Result<u64, StoreError>> + Send + 'a>>;

/// Runs `batch` until one deletes fewer than [`REAP_BATCH`] rows; returns
/// the total. Each batch commits on its own, so a long reap never holds
/// locks for long and requests interleave.
pub(super) async fn reap_in_batches<C: Send + ?Sized>(
    conn: &mut C,
    mut batch: impl for<'a> FnMut(&'a mut C) -> ReapBatch<'a> + Send,
) -> Result<u64, StoreError> {
    let mut total = 0u64;
    loop {
        let n = batch(conn).await?;
        total += n;
        if n < REAP_BATCH.unsigned_abs() {
            return Ok(total);
        }
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(super) use self::server::{LockedConn, connect_pool, debug_pool, driver_error};

/// What the two sqlx stores share.
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod server {
    use std::fmt;
    use std::time::Duration;

    use sqlx::error::DatabaseError;
    use sqlx::pool::{Pool, PoolConnection, PoolOptions};

    use crate::store::StoreError;

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
    }

    impl<DB: sqlx::Database> Drop for LockedConn<DB> {
        fn drop(&mut self) {
            if self.held {
                self.conn.close_on_drop();
            }
        }
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

    #[cfg(test)]
    mod tests {
        use super::*;

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(feature = "postgres", feature = "mysql"))]
    const SCHEMA: Schema = Schema {
        backend: "test",
        product: "Test",
        create_meta: "meta",
        v1: &["v1a", "v1b"],
    };

    #[test]
    fn newer_schema_versions_are_refused() {
        assert!(check_schema_version("test", "Test", 0).is_ok());
        assert!(check_schema_version("test", "Test", SCHEMA_VERSION).is_ok());
        let err = check_schema_version("test", "Test", SCHEMA_VERSION + 1).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)));
        assert_eq!(err.backend(), Some("test"));
        assert!(err.to_string().contains("newer than this build supports"));
    }

    #[cfg(any(feature = "postgres", feature = "mysql"))]
    #[test]
    fn migration_plan_follows_the_found_version() {
        assert_eq!(SCHEMA.steps_from(0).unwrap(), ["meta", "v1a", "v1b"]);
        assert!(SCHEMA.steps_from(SCHEMA_VERSION).unwrap().is_empty());
        assert!(SCHEMA.steps_from(SCHEMA_VERSION + 1).is_err());
    }

    #[test]
    fn rows_hold_what_the_columns_hold() {
        let mut r = Record::new(
            crate::expiry::Timestamp::from_millis(1_000),
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs(60),
        );
        r.version = u64::MAX;
        let row = Row::of(&r);
        assert_eq!(row.version, i64::MAX);
        assert_eq!((row.idle_deadline, row.absolute_deadline), (11_000, 61_000));
        assert_eq!(row.expires_at, 11_000);
        let back = decode_row(row.record.to_vec(), 5_000).unwrap();
        assert_eq!(back.idle_deadline.as_millis(), 5_000);
    }
}
