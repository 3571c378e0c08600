//! The public shell of the two sqlx stores, written once: [`server_store!`]
//! makes a store's struct, inherent methods and `SessionStore` impl around
//! the operations its [`Dialect`] writes as statements.

use std::future::Future;

use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{StoreError, UserSession};

use super::Row;

/// A server store around its [`Dialect`]: the struct (one pool, cheap to
/// clone), `Debug` through `debug_pool`, the inherent methods `connect`
/// (a pool from `connect_pool`), `from_pool` (migrates first), `pool` and
/// `try_reap`, and the `SessionStore` impl, which turns the contract's
/// arguments into columns (the row encoded on the request's task, the caller's
/// "now" in milliseconds) and the dialect's answers into the contract's errors. The
/// dialect gives the docs of the struct and of each method, and the
/// functions they run: `errors` maps a driver error, `from_pool` migrates a
/// pool, `try_reap` reaps under the reaper lock.
macro_rules! server_store {
    (
        $(#[$doc:meta])*
        pub struct $store:ident($pool:ty);
        errors: $db_err:path;
        $(#[$connect_doc:meta])*
        connect;
        $(#[$from_pool_doc:meta])*
        from_pool => $migrate:path;
        $(#[$try_reap_doc:meta])*
        try_reap => $reap:path;
    ) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $store {
            pool: $pool,
        }

        impl ::std::fmt::Debug for $store {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                $crate::store::sql::server::debug_pool(f, stringify!($store), &self.pool)
            }
        }

        impl $store {
            $(#[$connect_doc])*
            pub async fn connect(url: &str) -> Result<Self, $crate::store::StoreError> {
                let pool = $crate::store::sql::server::connect_pool(url).await;
                Self::from_pool(pool.map_err($db_err)?).await
            }

            $(#[$from_pool_doc])*
            pub async fn from_pool(pool: $pool) -> Result<Self, $crate::store::StoreError> {
                $migrate(&pool).await?;
                Ok(Self { pool })
            }

            /// The underlying connection pool.
            #[must_use]
            pub fn pool(&self) -> &$pool {
                &self.pool
            }

            $(#[$try_reap_doc])*
            pub async fn try_reap(
                &self,
                now: $crate::expiry::Timestamp,
            ) -> Result<Option<u64>, $crate::store::StoreError> {
                $reap(&self.pool, $crate::store::kit::sql_millis(now)).await
            }
        }

        $crate::store::sql::shell::session_store!($store, $db_err);
    };
}
pub(in crate::store) use server_store;

/// The `SessionStore` impl of a server store (see [`server_store!`]).
macro_rules! session_store {
    ($store:ident, $db_err:path) => {
        #[::async_trait::async_trait]
        impl $crate::store::SessionStore for $store {
            async fn create(
                &self,
                key: &$crate::id::StorageKey,
                record: &$crate::record::Record,
                now: $crate::expiry::Timestamp,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql::shell::Dialect;
                let row = $crate::store::sql::Row::of(record);
                let now = $crate::store::kit::sql_millis(now);
                let written = Dialect::create(self, key, &row, now).await?;
                written
                    .then_some(())
                    .ok_or($crate::store::StoreError::Conflict)
            }

            async fn load(
                &self,
                key: &$crate::id::StorageKey,
                now: $crate::expiry::Timestamp,
            ) -> Result<Option<$crate::record::Record>, $crate::store::StoreError> {
                use $crate::store::sql::shell::Dialect;
                Dialect::load(self, key, $crate::store::kit::sql_millis(now)).await
            }

            async fn save(
                &self,
                key: &$crate::id::StorageKey,
                record: &$crate::record::Record,
                expected_version: u64,
                now: $crate::expiry::Timestamp,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql::shell::Dialect;
                let row = $crate::store::sql::Row::of(record);
                let expected = $crate::store::sql::sql_version(expected_version);
                let now = $crate::store::kit::sql_millis(now);
                if Dialect::save(self, key, &row, expected, now).await? == 1 {
                    return Ok(());
                }
                let live = Dialect::is_live(self, key, now).await?;
                Err($crate::store::sql::shell::missed_save(live))
            }

            async fn touch(
                &self,
                key: &$crate::id::StorageKey,
                idle_deadline: $crate::expiry::Timestamp,
                now: $crate::expiry::Timestamp,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql::shell::Dialect;
                let idle = $crate::store::kit::sql_millis(idle_deadline);
                let now = $crate::store::kit::sql_millis(now);
                let touched = Dialect::touch(self, key, idle, now).await?;
                touched
                    .then_some(())
                    .ok_or($crate::store::StoreError::NotFound)
            }

            async fn delete(
                &self,
                key: &$crate::id::StorageKey,
                _now: $crate::expiry::Timestamp,
            ) -> Result<(), $crate::store::StoreError> {
                let delete = <Self as $crate::store::sql::shell::Dialect>::DELETE;
                let delete = ::sqlx::query(delete).bind(&key.0[..]);
                delete.execute(&self.pool).await.map_err($db_err)?;
                Ok(())
            }

            async fn rotate(
                &self,
                old_key: &$crate::id::StorageKey,
                new_key: &$crate::id::StorageKey,
                record: &$crate::record::Record,
                now: $crate::expiry::Timestamp,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql::shell::Dialect;
                let row = $crate::store::sql::Row::of(record);
                let now = $crate::store::kit::sql_millis(now);
                Dialect::rotate(self, old_key, new_key, &row, now).await
            }

            async fn list_by_user(
                &self,
                user: &str,
                now: $crate::expiry::Timestamp,
            ) -> Result<Vec<$crate::store::UserSession>, $crate::store::StoreError> {
                use $crate::store::sql::shell::Dialect;
                Dialect::list_by_user(self, user, $crate::store::kit::sql_millis(now)).await
            }

            async fn delete_by_user(
                &self,
                user: &str,
                except: Option<&$crate::id::StorageKey>,
                now: $crate::expiry::Timestamp,
            ) -> Result<u64, $crate::store::StoreError> {
                use $crate::store::sql::shell::Dialect;
                let now = $crate::store::kit::sql_millis(now);
                Dialect::delete_by_user(self, user, except, now).await
            }

            fn is_durable(&self) -> bool {
                // Durable: records are rows in a table; nothing evicts them.
                true
            }

            async fn delete_expired(
                &self,
                now: $crate::expiry::Timestamp,
            ) -> Result<u64, $crate::store::StoreError> {
                // Batched; 0 at once when another instance is reaping.
                Ok(self.try_reap(now).await?.unwrap_or(0))
            }

            async fn stats(
                &self,
                now: $crate::expiry::Timestamp,
            ) -> Result<$crate::store::StoreStats, $crate::store::StoreError> {
                use $crate::store::sql::shell::Dialect;
                let mut stats = $crate::store::StoreStats::new(<Self as Dialect>::BACKEND);
                let at = $crate::store::kit::sql_millis(now);
                let mut after: Vec<u8> = Vec::new();
                loop {
                    let batch =
                        Dialect::live_batch(self, &after, at, $crate::store::sql::STATS_BATCH)
                            .await?;
                    for s in &batch {
                        stats.count(&s.record, now);
                    }
                    match batch.last() {
                        Some(last) if batch.len() as i64 == $crate::store::sql::STATS_BATCH => {
                            after = last.key.0.to_vec();
                        }
                        _ => return Ok(stats),
                    }
                }
            }
        }
    };
}
pub(in crate::store) use session_store;

/// One server's statements for each operation of the store contract, with
/// the arguments already columns: the row encoded, deadlines and "now" in
/// milliseconds. What the contract makes of the answers (a `Conflict` for
/// a `create` that wrote nothing, a `save` that matched nothing told apart
/// by [`is_live`](Self::is_live)) is [`server_store!`]'s.
pub(in crate::store) trait Dialect: Sync {
    /// Deletes the row under the key bound first, if any.
    const DELETE: &'static str;
    /// The backend's name, as errors and stats carry it.
    const BACKEND: &'static str;

    /// Up to `limit` live sessions whose key sorts after `after` (an empty
    /// `after` is before every key), in key order: `stats` pages through
    /// the table with it.
    fn live_batch(
        &self,
        after: &[u8],
        now: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<UserSession>, StoreError>> + Send;

    /// Inserts `row` under `key` unless a live row is there (an expired one
    /// gives way): whether it was written.
    fn create(
        &self,
        key: &StorageKey,
        row: &Row,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The live record under `key`.
    fn load(
        &self,
        key: &StorageKey,
        now: i64,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// Writes `row` over the live row under `key` if it is at version
    /// `expected`: the rows matched (0 or 1).
    fn save(
        &self,
        key: &StorageKey,
        row: &Row,
        expected: i64,
        now: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Whether a live row is under `key`.
    fn is_live(
        &self,
        key: &StorageKey,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Moves the live row's idle deadline to `idle` (and its expiry with
    /// it, never past the absolute deadline): whether there was one.
    fn touch(
        &self,
        key: &StorageKey,
        idle: i64,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Files `row` under `new`, in one transaction with removing the live
    /// row under `old` (`NotFound` without one, `Conflict` when `new` is
    /// taken, and then nothing changes).
    fn rotate(
        &self,
        old: &StorageKey,
        new: &StorageKey,
        row: &Row,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The live sessions of `user`.
    fn list_by_user(
        &self,
        user: &str,
        now: i64,
    ) -> impl Future<Output = Result<Vec<UserSession>, StoreError>> + Send;

    /// Deletes every row of `user` but the one under `except`: how many of
    /// them were live.
    fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// What a `save` whose `UPDATE` matched no row means: a version conflict
/// when a live row is still there (`live`), else a missing record.
pub(in crate::store) fn missed_save(live: bool) -> StoreError {
    if live {
        StoreError::VersionConflict
    } else {
        StoreError::NotFound
    }
}
