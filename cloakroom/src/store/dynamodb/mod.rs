//! Sessions in DynamoDB (feature `dynamodb`).
//!
//! See [`DynamoStore`]. The rooms: `item` (the attribute layout and
//! conditions), `write` (single-item writes and transactions, with one
//! outcome), `ops` (the operations), `table` (checking and creating the
//! table) and `error` (the SDK's errors as [`StoreError`]s).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{SessionStore, StoreError, StoreStats, UserSession};

mod error;
mod item;
mod ops;
mod stats;
mod table;
mod write;

/// The name errors of this store carry (see [`StoreError::backend`]).
const BACKEND: &str = "dynamodb";
/// Region used for a local endpoint when the environment names none.
const LOCAL_REGION: &str = "us-east-1";
/// Credentials used for a local endpoint when the environment has none:
/// emulators accept any.
const LOCAL_CREDENTIAL: &str = "cloakroom-local";

/// Sessions in DynamoDB, through `aws-sdk-dynamodb` 1.x. Cheap to clone:
/// clones share the SDK client.
///
/// On AWS, bring a client configured the usual way (`aws-config`, which
/// also brings the HTTPS client this crate leaves out):
///
/// ```ignore
/// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let store = cloakroom::store::DynamoStore::from_client(
///     aws_sdk_dynamodb::Client::new(&config),
///     "sessions",
/// );
/// store.check_table().await?;
/// ```
///
/// For a local endpoint (an emulator, DynamoDB Local) over plain HTTP, a
/// store URL is enough: `dynamodb+http://127.0.0.1:8000/TABLE`, with the
/// region from `AWS_REGION` (default `us-east-1`) and credentials from
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (default: placeholders,
/// which emulators accept); see [`connect_endpoint`](Self::connect_endpoint).
///
/// # How it is built
///
/// One table, created by [`create_table`](Self::create_table) (or
/// `cloakroom dynamodb-create-table --store URL`): string keys `pk` (hash)
/// and `sk` (range), on-demand billing, DynamoDB TTL on `ttl`.
///
/// ```text
/// session     pk = "s#<hex storage key>"  sk = "s"
///             v (N) version · idle, abs (N) deadlines, Unix ms ·
///             exp (N) the earlier of the two · ttl (N) exp in Unix s,
///             rounded up · r (B) the encoded record ·
///             u (S) hex SHA-256 of the user, when signed in
/// index item  pk = "u#<hex SHA-256 of the user>"  sk = "<hex storage key>"
///             ttl (N) the session's
/// ```
///
/// Keys hold only SHA-256 outputs in hex: neither the session ID nor a user
/// name reaches a key (S6).
///
/// * `create` puts the session on the condition `attribute_not_exists(pk)
///   OR exp <= :now`: a live item is [`StoreError::Conflict`], an expired
///   one (not yet deleted by TTL) is replaced.
/// * Every read is strongly consistent and checks `exp`: DynamoDB's TTL
///   deletes expired items only "within a few days", so an expired item is
///   never returned, saved, touched or rotated (S23).
/// * `save` reads the item, then puts the new one on the condition
///   `v = :expected AND exp > :now`: [`StoreError::VersionConflict`] when
///   another save came first, [`StoreError::NotFound`] when the session is
///   gone or expired, never a resurrection (S28).
/// * `touch` updates `idle`, `exp` and `ttl` only (the record is not
///   rewritten), on the same version-and-liveness condition.
/// * The per-user index is one item per session in the user's partition,
///   written **in the same transaction** as the session (create, save that
///   signs in, out or changes user, touch, rotate, delete) and carrying the
///   session's TTL, so it expires with it; listing is one strongly
///   consistent `Query` and a `BatchGetItem` of the sessions (no
///   eventually consistent secondary index).
/// * `rotate` is one transaction: put the new session and its index item,
///   delete the old session (on the condition that it is live at the
///   version read) and its index item. All or nothing; a rotation of a
///   deleted or expired session is [`StoreError::NotFound`] and files
///   nothing (S28).
/// * `delete_by_user` deletes each indexed session on the condition that it
///   is live and still the user's, passing over the index again until a
///   pass finds nothing, so a rotation racing it cannot leave the user a
///   live session.
/// * [`delete_expired`](SessionStore::delete_expired) scans the table for
///   expired sessions (a full scan: on AWS, where TTL deletes them anyway,
///   run the reaper rarely, or not at all).
/// * A record whose encoding exceeds 399 KiB (DynamoDB's 400 KB item limit
///   less the other attributes) is refused with [`StoreError::TooLarge`]
///   before anything is sent.
///
/// Writes of a signed-in session are transactions (two write units per
/// item on AWS); those of anonymous sessions are single conditional writes.
/// A `load` is one `GetItem`; a `save`, `touch` or `delete` is a read and a
/// write.
///
/// # Errors
///
/// Timeouts, connection failures and throttling are
/// [`StoreError::Unavailable`]; items this build cannot read are
/// [`StoreError::Corrupt`]; anything else (a missing table, refused
/// credentials) is [`StoreError::Other`].
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl DynamoStore {
    /// A store on `table` through a client you configured (AWS proper:
    /// region, credentials, HTTPS client, retries). No I/O; call
    /// [`check_table`](Self::check_table) or
    /// [`create_table`](Self::create_table) next.
    #[must_use]
    pub fn from_client(client: Client, table: &str) -> Self {
        Self {
            client,
            table: Arc::from(table),
        }
    }

    /// A store on `table` at a DynamoDB-compatible `endpoint` over plain
    /// HTTP (`http://127.0.0.1:8000`), without checking anything: for
    /// [`create_table`](Self::create_table). Region and credentials as in
    /// the [type docs](Self); every request times out after 10 seconds.
    ///
    /// # Errors
    ///
    /// [`StoreError::Other`] unless `endpoint` is an `http://` URL.
    pub fn local_endpoint(endpoint: &str, table: &str) -> Result<Self, StoreError> {
        if !endpoint.starts_with("http://") {
            return Err(StoreError::other_in(
                BACKEND,
                "a local DynamoDB endpoint is an http:// URL; for AWS use DynamoStore::from_client",
            ));
        }
        let region = env_nonempty("AWS_REGION")
            .or_else(|| env_nonempty("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| LOCAL_REGION.to_owned());
        let credentials = match (
            env_nonempty("AWS_ACCESS_KEY_ID"),
            env_nonempty("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => Credentials::new(
                id,
                secret,
                env_nonempty("AWS_SESSION_TOKEN"),
                None,
                "environment",
            ),
            _ => Credentials::new(LOCAL_CREDENTIAL, LOCAL_CREDENTIAL, None, None, "cloakroom"),
        };
        let timeouts = aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(10))
            .build();
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(credentials)
            .endpoint_url(endpoint)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .timeout_config(timeouts)
            .build();
        Ok(Self::from_client(Client::from_conf(config), table))
    }

    /// [`local_endpoint`](Self::local_endpoint), then
    /// [`check_table`](Self::check_table): what the store URL
    /// `dynamodb+http://host:port/TABLE` opens.
    ///
    /// # Errors
    ///
    /// As those two.
    pub async fn connect_endpoint(endpoint: &str, table: &str) -> Result<Self, StoreError> {
        let store = Self::local_endpoint(endpoint, table)?;
        store.check_table().await?;
        Ok(store)
    }

    /// The table's name.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The SDK client the store sends its requests through.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
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

    /// DynamoDB keeps every acknowledged write (replicated across zones).
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
