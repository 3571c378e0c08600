//! Sessions in memcached (feature `memcached`).
//!
//! See [`MemcachedStore`]. The rooms: `client` (URL, pool, the blocking
//! commands and the async shim), `item` (what memcached holds, byte by
//! byte), `session` (the session operations as command sequences) and
//! `index` (the per-user index memcached does not have).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{SessionStore, StoreError, StoreStats, UserSession};

mod client;
mod index;
mod item;
mod session;

use client::Conn;
use item::MAX_PREFIX_BYTES;

/// The name errors of this store carry (see [`StoreError::backend`]).
const BACKEND: &str = "memcached";
/// The prefix used unless [`MemcachedStore::with_prefix`] says otherwise.
const DEFAULT_PREFIX: &str = "cloakroom:";

/// Sessions in memcached. Cheap to clone: clones share one connection pool.
///
/// ```no_run
/// # async fn demo() -> Result<(), cloakroom::store::StoreError> {
/// use cloakroom::{SessionLayer, store::MemcachedStore};
///
/// let store = MemcachedStore::connect("memcache://127.0.0.1:11211")
///     .await?
///     .with_prefix("myapp:")?;
/// let layer = SessionLayer::new(store);
/// # Ok(()) }
/// ```
///
/// # Only for sessions you can afford to lose
///
/// memcached is a cache: under memory pressure it **evicts any item, least
/// recently used first, before its expiry time**, and it loses everything on
/// restart. With this store that means:
///
/// * a session can end early (the user is signed out);
/// * a user's index item can be evicted on its own: [`list_by_user`] and
///   [`delete_by_user`] then miss that user's sessions until each is next
///   saved (every save of a signed-in session puts a missing index entry
///   back), so "sign out everywhere" can leave sessions alive.
///
/// Size memcached so that it does not evict (watch its `evictions`
/// statistic), or use the Redis, PostgreSQL or MySQL store when sessions and
/// revocation must be reliable.
///
/// # How it is built
///
/// ```text
/// {prefix}s:{hex storage key}      one item per session:
///                                    u64 idle deadline (ms, big-endian)
///                                    + the encoded record
/// {prefix}u:{hex sha256(user)}     one item per signed-in user:
///                                    u8 format (= 1), then per session
///                                    32-byte storage key,
///                                    u64 absolute deadline (ms),
///                                    u64 indexed at (ms)
/// ```
///
/// The default prefix is `cloakroom:`. Keys are built only from SHA-256
/// outputs in hex, so no cookie or user name can shape a memcached key, and
/// the session ID itself is never sent to memcached (S6).
///
/// * `create` is memcached `add` (insert-if-absent): a live record under the
///   key is [`StoreError::Conflict`]. A record that is already expired is
///   not stored at all.
/// * Every item's exptime is the record's [`Record::expires_at`] as an
///   absolute Unix time, rounded **up** to whole seconds, so memcached drops
///   expired sessions by itself and [`delete_expired`] has nothing to do
///   (it returns 0; no reaper is needed). Because of the rounding, and
///   because memcached's clock may differ from the application's, every read
///   also checks the millisecond deadlines: an expired record is never
///   returned, saved or touched (S23).
/// * `save` reads the item with its CAS token (`gets`), checks that the
///   record is live and at the expected version, and writes with `cas`: a
///   concurrent writer makes it [`StoreError::VersionConflict`], a missing or
///   expired record [`StoreError::NotFound`]. It never uses `set`, so a save
///   cannot resurrect a deleted session (S28).
/// * `touch` is `gets` + `cas` too: it rewrites only the 8-byte idle deadline
///   in front of the record (the record's bytes are copied unchanged) and
///   moves the exptime.
/// * `delete` is memcached `delete`; `rotate` is `add` of the new record,
///   then a `gets`/`cas` delete of the old one that succeeds only while it
///   is live; otherwise the new record is deleted again and the rotation is
///   [`StoreError::NotFound`] (S28).
/// * The per-user index is one item per user holding the storage keys of
///   that user's sessions (with their absolute deadlines), updated with
///   bounded `gets`/`cas` retry loops. The entry is written before the
///   session item, so a crash in between leaves a stale entry, never an
///   unlisted session. Entries are not removed when a session is deleted or
///   expires; [`list_by_user`] and [`delete_by_user`] fetch every listed
///   session (multi-get), return only live sessions whose record names the
///   user, and write the index back without the stale entries. Entries past
///   their absolute deadline are dropped on every index write, large indexes
///   are checked entry by entry, and the index item expires with the last
///   absolute deadline it lists, so an index cannot grow without bound.
///   The index is not transactional: a session created while
///   [`delete_by_user`] runs may survive it (it counts as created after the
///   sign-out), and an entry is only dropped for a missing session or one
///   of another user once it is a minute old, so that a `create` or a
///   change of user still under way is not unindexed.
/// * [`delete_by_user`] removes each session with a `cas` on the token it
///   read (writing an empty, already expired item), so a session that was
///   meanwhile moved to another user is not deleted. It passes over the
///   index again until nothing changes, so that the new key of a rotation
///   racing it is deleted too.
///
/// # Connection URL
///
/// `memcache://HOST:PORT` (or `memcache:///path/to/socket`) with optional
/// query parameters:
///
/// | parameter | default | meaning |
/// |---|---|---|
/// | `timeout` | `5` | socket read/write timeout in seconds |
/// | `connect_timeout` | `5` | longest wait for a pooled connection, in seconds |
/// | `pool_size` | `16` | most connections |
/// | `tcp_nodelay` | `true` | `TCP_NODELAY` |
///
/// One server per store: the client library's way of spreading keys over
/// several servers depends on Rust's `DefaultHasher`, which may change
/// between Rust releases, so put a proxy such as mcrouter in front of a
/// memcached pool instead. Only memcached's binary protocol is used (the
/// library's ASCII `add` cannot report a taken key), so `protocol=ascii`,
/// `udp=true` and `memcache+udp://` are refused; the server must not run with
/// `-B ascii`, nor with `-C` (CAS disabled), which [`connect`](Self::connect)
/// detects and refuses (and every write checks again) instead of silently
/// losing the compare-and-swap.
///
/// Records (8 bytes more than [`Record::encode`]) must fit memcached's item
/// size limit (`-I`, 1 MiB by default); a larger one is refused with
/// [`StoreError::Other`].
///
/// # Connections
///
/// The client library is blocking, so every operation runs on Tokio's
/// blocking thread pool. Each connection is checked (a `version` round trip)
/// when it is taken from the pool, which costs one extra round trip per
/// memcached command but spares requests the dead connections a server
/// restart leaves behind. A `load` is one command, a `save` two (three for a
/// signed-in session: the index entry is checked too), a `create` one (three
/// when signed in). The library does not discard a connection
/// whose reply was cut short by a timeout, so after any I/O or protocol error
/// this store replaces the whole pool; and every read goes through a keyed
/// multi-get whose replies carry their keys, so a desynchronised connection
/// can produce an error or a miss, never another key's value.
///
/// # Errors
///
/// Connection, pool, I/O, timeout and protocol failures are
/// [`StoreError::Unavailable`]; stored bytes that cannot be decoded are
/// [`StoreError::Corrupt`]; anything else (item too large, a malformed URL,
/// CAS disabled on the server) is [`StoreError::Other`].
///
/// [`list_by_user`]: SessionStore::list_by_user
/// [`delete_by_user`]: SessionStore::delete_by_user
/// [`delete_expired`]: SessionStore::delete_expired
#[derive(Clone)]
pub struct MemcachedStore {
    prefix: Arc<str>,
    conn: Arc<Conn>,
}

impl fmt::Debug for MemcachedStore {
    // Never the URL: it may carry SASL credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedStore")
            .field("prefix", &self.prefix)
            .field("pool_size", &self.conn.pool_size())
            .finish_non_exhaustive()
    }
}

impl MemcachedStore {
    /// Connects to the memcached server at `url`
    /// (`memcache://127.0.0.1:11211`; see the [type docs](Self) for the
    /// query parameters) and checks that it answers and supports
    /// compare-and-swap (by writing and deleting one throwaway item,
    /// `cloakroom:probe:…`, that expires within 10 seconds anyway). Keys get
    /// the prefix `cloakroom:`; see [`with_prefix`](Self::with_prefix).
    ///
    /// # Errors
    ///
    /// [`StoreError::Other`] for a malformed or unsupported URL or a server
    /// without CAS (`-C`), [`StoreError::Unavailable`] if the server does not
    /// answer.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = Self::with_conn(Conn::open(url)?);
        store.run(Self::probe).await?;
        Ok(store)
    }

    /// A store over `conn` with the default prefix, not yet checked.
    fn with_conn(conn: Conn) -> Self {
        Self {
            prefix: Arc::from(DEFAULT_PREFIX),
            conn: Arc::new(conn),
        }
    }

    /// The same store with every key prefixed by `prefix` instead of
    /// `cloakroom:` (for several applications, or test runs, sharing one
    /// memcached). Clones share the connection pool.
    ///
    /// # Errors
    ///
    /// [`StoreError::Other`] if `prefix` is longer than 184 bytes or holds
    /// anything but printable ASCII without spaces (memcached keys are at
    /// most 250 bytes, without whitespace or control characters).
    pub fn with_prefix(self, prefix: &str) -> Result<Self, StoreError> {
        if prefix.len() > MAX_PREFIX_BYTES {
            return Err(StoreError::other_in(
                BACKEND,
                format!("memcached key prefix longer than {MAX_PREFIX_BYTES} bytes"),
            ));
        }
        if !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(StoreError::other_in(
                BACKEND,
                "memcached key prefix must be printable ASCII without spaces",
            ));
        }
        Ok(Self {
            prefix: Arc::from(prefix),
            conn: self.conn,
        })
    }

    /// The key prefix in use.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

#[async_trait]
impl SessionStore for MemcachedStore {
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (key, record) = (*key, record.clone());
        self.run(move |s| s.create_blocking(&key, &record, now))
            .await
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let key = *key;
        self.run(move |s| s.load_blocking(&key, now)).await
    }

    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (key, record) = (*key, record.clone());
        self.run(move |s| s.save_blocking(&key, &record, expected_version, now))
            .await
    }

    async fn touch(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let key = *key;
        self.run(move |s| s.touch_blocking(&key, idle_deadline, now))
            .await
    }

    async fn delete(&self, key: &StorageKey, _now: Timestamp) -> Result<(), StoreError> {
        let key = *key;
        self.run(move |s| s.delete_blocking(&key)).await
    }

    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (old_key, new_key, record) = (*old_key, *new_key, record.clone());
        self.run(move |s| s.rotate_blocking(&old_key, &new_key, &record, now))
            .await
    }

    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        let user = user.to_owned();
        self.run(move |s| s.list_blocking(&user, now)).await
    }

    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let (user, except) = (user.to_owned(), except.copied());
        self.run(move |s| s.delete_by_user_blocking(&user, except.as_ref(), now))
            .await
    }

    /// memcached expires items itself (each item's exptime is its record's
    /// deadline): nothing to do, returns 0.
    async fn delete_expired(&self, _now: Timestamp) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// An estimate only (`exact: false`): memcached cannot list its keys,
    /// so sessions cannot be told from index items, other prefixes' items
    /// or other applications' data. `live` is the servers' `curr_items`
    /// (every item they hold, summed over the pool's servers): an upper
    /// bound of the live sessions when memcached is dedicated to this
    /// store. `signed_in` and `token_families` are unknown and reported as
    /// 0.
    async fn stats(&self, _now: Timestamp) -> Result<StoreStats, StoreError> {
        self.run(|s| {
            let servers = s.call(memcache::Client::stats)?;
            let mut stats = StoreStats::new(BACKEND);
            stats.exact = false;
            for (_, server) in servers {
                let items = server
                    .get("curr_items")
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| {
                        StoreError::other_in(BACKEND, "memcached stats lack curr_items")
                    })?;
                stats.live = stats.live.saturating_add(items);
            }
            Ok(stats)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_validation_and_debug() {
        let store =
            MemcachedStore::with_conn(Conn::open("memcache://user:hunter2@127.0.0.1:1").unwrap());
        assert_eq!(store.prefix(), DEFAULT_PREFIX);
        let debug = format!("{store:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let store = store.with_prefix("app:").unwrap();
        assert_eq!(store.prefix(), "app:");
        let store = store.with_prefix(&"p".repeat(MAX_PREFIX_BYTES)).unwrap();
        for bad in [
            "has space",
            "tab\t",
            "nl\n",
            "ünï",
            &"p".repeat(MAX_PREFIX_BYTES + 1),
        ] {
            let r = store.clone().with_prefix(bad);
            assert!(
                matches!(r, Err(StoreError::Other(_))),
                "{bad:?} must be refused"
            );
            assert_eq!(r.unwrap_err().backend(), Some(BACKEND));
        }
    }
}
