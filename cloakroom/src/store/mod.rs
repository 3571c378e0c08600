//! The store contract: where server-side session records live.
//!
//! [`SessionStore`] is the one trait every backend implements, ours and
//! yours. It is deliberately small and, but for
//! [`is_durable`](SessionStore::is_durable) and the administrative
//! [`stats`](SessionStore::stats), has no default methods: each operation
//! carries a guarantee the session layer relies on for security,
//! so an implementation must think about every one. Prove an implementation
//! with the [`conformance`] suite:
//!
//! ```
//! // In your store's tests:
//! cloakroom::conformance_tests!(cloakroom::store::MemoryStore::new());
//! ```
//!
//! # The guarantees
//!
//! * Keys are [`StorageKey`]s, SHA-256 of the session ID: a store never sees
//!   the ID itself (S6).
//! * [`create`](SessionStore::create) is insert-if-absent: a collision is
//!   [`StoreError::Conflict`], never an overwrite (S7).
//! * [`load`](SessionStore::load) never returns an expired record, even if the
//!   reaper has not run (S23).
//! * [`save`](SessionStore::save) is update-only compare-and-swap: it fails
//!   with [`StoreError::VersionConflict`] if someone saved first and with
//!   [`StoreError::NotFound`] if the record is gone, so a save can never
//!   resurrect a destroyed session (S28).
//! * [`touch`](SessionStore::touch) moves the idle deadline and nothing else.
//! * [`rotate`](SessionStore::rotate) moves a live record only: with no live
//!   record under the old key it is [`StoreError::NotFound`] and files
//!   nothing, so a login racing a logout cannot bring the session back
//!   (S28). The new record exists before the old one is gone.
//! * The per-user index behind [`list_by_user`](SessionStore::list_by_user)
//!   and [`delete_by_user`](SessionStore::delete_by_user) loses its entries
//!   together with their sessions.
//!
//! # Time
//!
//! Every operation takes `now`, the caller's reading of its
//! [`Clock`](crate::Clock), taken just before the call. A store decides
//! liveness by that reading alone (and stamps anything it writes for its
//! own bookkeeping with it) and never reads a clock itself, so the clock the
//! session layer is configured with governs every expiry decision (a
//! `MockClock` in tests, feature `test-util`). Native
//! backend expiry (Redis `PEXPIREAT`, a TTL index) is set from the record's
//! absolute deadlines and only frees space: it never makes a record live.

use std::sync::Arc;

use async_trait::async_trait;

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub(crate) mod kit;

#[cfg(feature = "dynamodb")]
mod dynamodb;
mod encrypted;
mod file;
#[cfg(feature = "memcached")]
mod memcached;
mod memory;
#[cfg(feature = "mongodb")]
mod mongodb;
mod reaper;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod sql;
mod stats;
mod tiered;
mod url;

#[cfg(feature = "dynamodb")]
pub use self::dynamodb::DynamoStore;
#[cfg(feature = "memcached")]
pub use self::memcached::MemcachedStore;
#[cfg(feature = "mongodb")]
pub use self::mongodb::{MongoStore, MongoStoreBuilder};
#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};
#[cfg(feature = "mysql")]
pub use self::sql::MySqlStore;
#[cfg(feature = "postgres")]
pub use self::sql::PostgresStore;
#[cfg(feature = "sqlite")]
pub use self::sql::{SqliteStore, SqliteStoreBuilder, Synchronous};
pub use encrypted::EncryptedStore;
pub use file::FileStore;
pub use memory::MemoryStore;
pub use reaper::{Reaper, spawn_reaper};
pub use stats::StoreStats;
pub use tiered::TieredStore;
pub use url::{StoreUrl, StoreUrlError, connect};

/// A boxed error source carried by [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a store operation. Match on the variant; the source
/// carries the backend's own error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `create` or `rotate` found a record already filed under the new key.
    #[error("a session with this key already exists")]
    Conflict,
    /// `save` found that another request saved first.
    #[error("the session was saved by another request (version conflict)")]
    VersionConflict,
    /// The record does not exist (deleted, rotated away or expired).
    #[error("the session does not exist")]
    NotFound,
    /// The backend could not be reached or did not answer. Transient: retry
    /// later.
    #[error("session store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The backend holds data this build cannot read.
    #[error("corrupt session record: {0}")]
    Corrupt(#[source] BoxError),
    /// The record is larger than the configured limit and was not written.
    /// Not a backend failure: the request asked for too much (answer 413).
    #[error(
        "session record of {size} bytes exceeds the {limit}-byte limit; not saved (keep large data in your database and its id in the session)"
    )]
    TooLarge {
        /// The encoded size of the refused record.
        size: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// Anything else the backend reported.
    #[error("session store error: {0}")]
    Other(#[source] BoxError),
}

impl StoreError {
    /// [`StoreError::Unavailable`] from any error.
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        Self::Unavailable(e.into())
    }

    /// [`StoreError::Corrupt`] from any error.
    pub fn corrupt(e: impl Into<BoxError>) -> Self {
        Self::Corrupt(e.into())
    }

    /// [`StoreError::Other`] from any error.
    pub fn other(e: impl Into<BoxError>) -> Self {
        Self::Other(e.into())
    }

    /// [`StoreError::Unavailable`] raised by the backend named `backend`
    /// (`"redis"`, `"postgres"`, ...), which [`StoreError::backend`] and the
    /// message then name: inside a [`TieredStore`] it tells the tiers apart.
    pub fn unavailable_in(backend: &'static str, e: impl Into<BoxError>) -> Self {
        Self::Unavailable(BackendError::boxed(backend, e))
    }

    /// [`StoreError::Corrupt`] raised by the backend named `backend`.
    pub fn corrupt_in(backend: &'static str, e: impl Into<BoxError>) -> Self {
        Self::Corrupt(BackendError::boxed(backend, e))
    }

    /// [`StoreError::Other`] raised by the backend named `backend`.
    pub fn other_in(backend: &'static str, e: impl Into<BoxError>) -> Self {
        Self::Other(BackendError::boxed(backend, e))
    }

    /// A copy of a shared error, keeping its kind (the failure policy tells
    /// "unavailable" from the rest): one for each request of a failed
    /// group commit.
    pub(crate) fn share(e: &Arc<Self>) -> Self {
        share_error(e)
    }

    /// The backend that raised this error, when it said (`"redis"`,
    /// `"sqlite"`, ...).
    #[must_use]
    pub fn backend(&self) -> Option<&'static str> {
        let mut source: Option<&(dyn std::error::Error + 'static)> = match self {
            Self::Unavailable(e) | Self::Corrupt(e) | Self::Other(e) => Some(&**e),
            _ => None,
        };
        while let Some(e) = source {
            if let Some(b) = e.downcast_ref::<BackendError>() {
                return Some(b.backend);
            }
            if let Some(shared) = e.downcast_ref::<SharedError>() {
                return shared.original().backend();
            }
            source = e.source();
        }
        None
    }

    /// Whether the failure is the backend being unreachable or failing, as
    /// opposed to an answer about the session (conflict, not found).
    #[must_use]
    pub fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Corrupt(_) | Self::Other(_)
        )
    }
}

/// A copy of a store error for each request of a failed batch, keeping its
/// kind (the failure policy tells "unavailable" from the rest).
fn share_error(e: &Arc<StoreError>) -> StoreError {
    let boxed = || -> BoxError { Box::new(SharedError(e.clone())) };
    match &**e {
        StoreError::Conflict => StoreError::Conflict,
        StoreError::VersionConflict => StoreError::VersionConflict,
        StoreError::NotFound => StoreError::NotFound,
        StoreError::TooLarge { size, limit } => StoreError::TooLarge {
            size: *size,
            limit: *limit,
        },
        StoreError::Unavailable(_) => StoreError::Unavailable(boxed()),
        StoreError::Corrupt(_) => StoreError::Corrupt(boxed()),
        _ => StoreError::Other(boxed()),
    }
}

/// The source of a shared store error: the original, shown as it was.
#[derive(Debug)]
pub(crate) struct SharedError(Arc<StoreError>);

impl SharedError {
    /// The error every copy stands for.
    pub(crate) fn original(&self) -> &StoreError {
        &self.0
    }
}

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::error::Error::source(&*self.0) {
            Some(inner) => std::fmt::Display::fmt(inner, f),
            None => std::fmt::Display::fmt(&self.0, f),
        }
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0).and_then(std::error::Error::source)
    }
}

/// A backend's own error, with the backend's name in front.
#[derive(Debug)]
struct BackendError {
    backend: &'static str,
    source: BoxError,
}

impl BackendError {
    fn boxed(backend: &'static str, e: impl Into<BoxError>) -> BoxError {
        Box::new(Self {
            backend,
            source: e.into(),
        })
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.backend, self.source)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// One of a user's sessions, as returned by [`SessionStore::list_by_user`].
#[derive(Debug, Clone)]
pub struct UserSession {
    /// The session's storage key (never the ID).
    pub key: StorageKey,
    /// Its record.
    pub record: Record,
}

/// Where server-side session records live. See the [module docs](self) for
/// the guarantees each method must keep, and run [`conformance`] to prove
/// them.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Inserts `record` under `key` if no live record is there, expiring at
    /// [`Record::expires_at`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] if a live record exists under `key`; a
    /// backend failure otherwise.
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// The live record under `key`, or `None` if there is none or it has
    /// expired by `now`.
    ///
    /// # Errors
    ///
    /// A backend failure; [`StoreError::Corrupt`] if the stored bytes cannot
    /// be decoded.
    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError>;

    /// Replaces the record under `key` with `record` only if the stored
    /// version equals `expected_version`. The caller has already set
    /// `record.version` to the new version.
    ///
    /// # Errors
    ///
    /// [`StoreError::VersionConflict`] if the stored version differs,
    /// [`StoreError::NotFound`] if there is no live record (never create
    /// one), or a backend failure.
    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Moves the idle deadline of the record under `key` to `idle_deadline`,
    /// leaving its data and version untouched.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if there is no live record, or a backend
    /// failure.
    async fn touch(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Deletes the record under `key` and its index entry. Deleting a
    /// missing record succeeds.
    ///
    /// # Errors
    ///
    /// A backend failure.
    async fn delete(&self, key: &StorageKey, now: Timestamp) -> Result<(), StoreError>;

    /// Files `record` under `new_key` and deletes the record under
    /// `old_key`, which must be live; the new record exists before the old
    /// one is gone.
    ///
    /// Rotation is conditional on the old record: if it was deleted (by
    /// `delete`, `delete_by_user` or an earlier rotation) or has expired,
    /// nothing is filed under `new_key`. A rotation racing `delete` or
    /// `delete_by_user` of the old record either happens entirely before it
    /// (and the new record is deleted with the user's sessions) or fails
    /// with `NotFound` (S28).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if there is no live record under `old_key`
    /// (nothing changes), [`StoreError::Conflict`] if `new_key` is taken
    /// (nothing changes), or a backend failure.
    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// The live sessions whose [`Record::user`] is `user`.
    ///
    /// # Errors
    ///
    /// A backend failure.
    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError>;

    /// Deletes every session of `user` except the one under `except`;
    /// returns how many were deleted.
    ///
    /// # Errors
    ///
    /// A backend failure.
    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Whether a record, once written, survives a restart of the backend and
    /// is never evicted before its deadlines. Revocation state (the
    /// client-side epochs of [`ClientSessions::with_revocation`](crate::client_side::ClientSessions::with_revocation))
    /// may only be kept where this is `true`: a store that forgets an epoch
    /// would bring revoked cookies back.
    ///
    /// The default is `false`, so a store that does not say is treated as
    /// volatile (fail closed).
    fn is_durable(&self) -> bool {
        false
    }

    /// Deletes every expired record; returns how many. Stores with native
    /// expiry may return 0, and so may a store whose reaping is coordinated
    /// across instances when another instance is reaping right now.
    ///
    /// # Errors
    ///
    /// A backend failure.
    async fn delete_expired(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// How many records are live at `now`, how many of them are signed in
    /// and how many are refresh-token families: what `cloakroom stats`
    /// prints. An administrative read, not for the request path: most
    /// backends scan every record (in bounded batches).
    ///
    /// Every store in this crate implements it; see each store's docs for
    /// what it counts exactly and where it can only estimate
    /// ([`StoreStats::exact`] is then `false`). The default, for stores of
    /// your own that do not implement it, is an error saying so: it never
    /// reports made-up counts.
    ///
    /// # Errors
    ///
    /// A backend failure; [`StoreError::Corrupt`] if a stored record cannot
    /// be decoded; [`StoreError::Other`] from the default implementation.
    async fn stats(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        let _ = now;
        Err(StoreError::other(
            "this session store cannot count its sessions (it does not implement SessionStore::stats)",
        ))
    }
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for Arc<S> {
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        (**self).create(key, record, now).await
    }
    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError> {
        (**self).load(key, now).await
    }
    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        (**self).save(key, record, expected_version, now).await
    }
    async fn touch(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        (**self).touch(key, idle_deadline, now).await
    }
    async fn delete(&self, key: &StorageKey, now: Timestamp) -> Result<(), StoreError> {
        (**self).delete(key, now).await
    }
    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        (**self).rotate(old_key, new_key, record, now).await
    }
    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        (**self).list_by_user(user, now).await
    }
    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        (**self).delete_by_user(user, except, now).await
    }
    fn is_durable(&self) -> bool {
        (**self).is_durable()
    }
    async fn delete_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        (**self).delete_expired(now).await
    }
    async fn stats(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        (**self).stats(now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_backend() {
        let e = StoreError::unavailable_in("redis", "connection refused");
        assert_eq!(e.backend(), Some("redis"));
        assert_eq!(
            e.to_string(),
            "session store unavailable: redis: connection refused"
        );
        assert!(e.is_backend_failure());
        assert_eq!(StoreError::unavailable("x").backend(), None);
        assert_eq!(StoreError::NotFound.backend(), None);
        // Kept through the copies a failed group commit hands out.
        let shared = StoreError::share(&Arc::new(StoreError::corrupt_in("file", "bad")));
        assert_eq!(shared.backend(), Some("file"));
    }
}
