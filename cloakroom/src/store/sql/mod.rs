//! The SQL stores: one embedded file ([`SqliteStore`]) and two servers
//! ([`PostgresStore`], [`MySqlStore`]).
//!
//! The three keep the same table, `cloakroom_sessions`: one row per
//! session, keyed by the 32-byte storage key, with the record's version, its
//! user, its deadlines in milliseconds since the Unix epoch and the encoded
//! record. What the three share lives here, derived once: a record as its
//! row's columns ([`Row`]), a row read back as a record, the schema-version
//! check and the batched reap. The two server stores (sqlx) also share
//! their public shell (`shell.rs`: struct, inherent methods and the
//! `SessionStore` impl around a dialect) and what lies below it
//! (`server.rs`: pool, driver errors, migration runner, session locks, row
//! readers). Each dialect file keeps only its SQL, its placeholders, its
//! server error codes, its locks and the rotate strategy its isolation
//! level needs.

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
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod server;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod shell;
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
/// Rows `stats` reads per statement.
pub(super) const STATS_BATCH: i64 = 500;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_schema_versions_are_refused() {
        assert!(check_schema_version("test", "Test", 0).is_ok());
        assert!(check_schema_version("test", "Test", SCHEMA_VERSION).is_ok());
        let err = check_schema_version("test", "Test", SCHEMA_VERSION + 1).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)));
        assert_eq!(err.backend(), Some("test"));
        assert!(err.to_string().contains("newer than this build supports"));
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
