//! Sessions in MongoDB (feature `mongodb`).
//!
//! See [`MongoStore`]. The rooms: `builder` (URL, client, indexes), `doc`
//! (the document layout and filters), `ops` (the operations as commands)
//! and `error` (the driver's errors as [`StoreError`]s).

use std::fmt;

use async_trait::async_trait;
use mongodb::Collection;
use mongodb::bson::Document;

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{SessionStore, StoreError, StoreStats, UserSession};

mod builder;
mod doc;
mod error;
mod ops;

pub use builder::MongoStoreBuilder;

/// The name errors of this store carry (see [`StoreError::backend`]).
const BACKEND: &str = "mongodb";

/// Sessions in MongoDB, through the official `mongodb` driver (3.x). Cheap
/// to clone: clones share the driver's connection pool.
///
/// ```no_run
/// # async fn demo() -> Result<(), cloakroom::store::StoreError> {
/// use cloakroom::{SessionLayer, store::MongoStore};
///
/// let store = MongoStore::connect("mongodb://127.0.0.1:27017/myapp").await?;
/// let layer = SessionLayer::new(store);
/// # Ok(()) }
/// ```
///
/// # How it is built
///
/// One document per session in one collection (default
/// `cloakroom_sessions`, in the database the URL names):
///
/// ```text
/// { _id:  BinData(32 bytes)   the storage key, SHA-256 of the ID (S6)
///   v:    Int64               version, the compare-and-swap counter
///   idle: Date                idle deadline
///   abs:  Date                absolute deadline
///   exp:  [Date, Date]        [idle, abs], for the TTL index
///   u:    BinData(32 bytes)   SHA-256 of the user; absent when anonymous
///   r:    BinData             the encoded record }
/// ```
///
/// * `create` is `insertOne`: the unique `_id` makes it insert-if-absent,
///   and a duplicate key is [`StoreError::Conflict`] (no transaction
///   needed). A taken key whose document has already expired (the TTL
///   monitor has not reached it yet) is replaced, guarded by a filter that
///   matches only an expired document.
/// * `save` is one `updateOne` filtered by `{_id, v: expected, live}` that
///   sets the record's fields and `$inc`s `v`; when nothing matches, a read
///   tells [`StoreError::VersionConflict`] (a live document at another
///   version) from [`StoreError::NotFound`] (none), so a save never
///   resurrects a deleted session (S28).
/// * `touch` sets `idle` and `exp.0` only: the record is never rewritten.
/// * Expiry: a TTL index on `exp` (`expireAfterSeconds: 0`) deletes a
///   document at the earlier of its two deadlines, MongoDB taking the
///   earliest date of an array. The TTL monitor runs only every 60 seconds,
///   so **every read and write also filters on both deadlines**: an expired
///   document is never returned, saved, touched or rotated (S23).
///   [`delete_expired`](SessionStore::delete_expired) deletes expired
///   documents through the same index, for servers without a TTL monitor.
/// * The per-user index is the `u` field with a sparse index on it:
///   listing is one indexed `find`, and an entry cannot outlive its session
///   because it is part of the session's document.
/// * `delete`, `delete_by_user` and `rotate`'s delete use majority write
///   concern, so a logout is acknowledged by a majority of the replica set
///   before the reply and survives a failover.
/// * `rotate` inserts the new document, then deletes the old one with a
///   filter that matches only a live document; if nothing was deleted it
///   deletes the new one again and is [`StoreError::NotFound`]. For a
///   moment both exist. `delete_by_user` repeats its `deleteMany` (at least
///   twice, then until a pass deletes nothing), so that a rotation racing
///   it cannot leave the user a live session.
///
/// Both indexes are created at [`connect`](Self::connect) when missing
/// (creating an existing index with the same options is a no-op). The
/// record's size is bounded by the session layer (1 MiB), well under
/// MongoDB's 16 MiB document limit.
///
/// # Connection URL
///
/// The driver's own: `mongodb://[user:password@]host[:port][,host…]/DB[?options]`,
/// with every option the driver knows (`replicaSet`, `tls=true`,
/// `authSource`, `maxPoolSize` (the driver's default is 10 connections per
/// server: raise it for more concurrent requests), …). TLS goes through the system's OpenSSL (building the
/// `mongodb` feature needs its headers: `libssl-dev` and `pkg-config` on
/// Debian). Without `serverSelectionTimeoutMS` the store waits at
/// most 5 seconds for a server. `mongodb+srv://` is not supported (this
/// build leaves out the driver's DNS resolver): list the hosts. For a
/// client you configured yourself, use [`from_client`](Self::from_client).
///
/// # Errors
///
/// Unreachable servers, dropped connections, elections and unsatisfied
/// write concerns are [`StoreError::Unavailable`]; documents this build
/// cannot read are [`StoreError::Corrupt`]; anything else (a malformed URL,
/// a refused command, an index that exists with other options) is
/// [`StoreError::Other`].
#[derive(Clone)]
pub struct MongoStore {
    coll: Collection<Document>,
    /// The same collection with majority write concern.
    majority: Collection<Document>,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("namespace", &self.coll.namespace().to_string())
            .finish_non_exhaustive()
    }
}

impl MongoStore {
    /// The collection used unless [`MongoStoreBuilder::with_collection`]
    /// says otherwise.
    pub const DEFAULT_COLLECTION: &'static str = "cloakroom_sessions";

    /// Connects to the server at `url` (see the [type docs](Self)), checks
    /// that it answers and creates the indexes if they are missing.
    ///
    /// # Errors
    ///
    /// As [`MongoStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// A builder for a store at `url`, to choose the database or the
    /// collection.
    pub fn builder(url: &str) -> MongoStoreBuilder {
        MongoStoreBuilder::from_url(url)
    }

    /// A builder for a store on a client you configured (TLS, credentials,
    /// pool size, monitoring, …).
    pub fn from_client(client: mongodb::Client) -> MongoStoreBuilder {
        MongoStoreBuilder::from_client(client)
    }

    /// The `database.collection` the sessions live in.
    #[must_use]
    pub fn namespace(&self) -> String {
        self.coll.namespace().to_string()
    }
}

#[async_trait]
impl SessionStore for MongoStore {
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.create_at(key, record, now).await
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError> {
        self.load_at(key, now).await
    }

    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.save_at(key, record, expected_version, now).await
    }

    async fn touch(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.touch_at(key, idle_deadline, now).await
    }

    async fn delete(&self, key: &StorageKey, _now: Timestamp) -> Result<(), StoreError> {
        self.delete_key(key).await
    }

    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.rotate_at(old_key, new_key, record, now).await
    }

    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        self.list_by_user_at(user, now).await
    }

    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.delete_by_user_at(user, except, now).await
    }

    /// Durable as far as the deployment is: journaled writes, and
    /// majority-acknowledged deletions.
    fn is_durable(&self) -> bool {
        true
    }

    async fn delete_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.delete_expired_at(now).await
    }

    async fn stats(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        self.stats_at(now).await
    }
}
