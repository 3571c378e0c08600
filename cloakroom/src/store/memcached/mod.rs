//! Sessions in memcached (feature `memcached`).
//!
//! See [`MemcachedStore`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use memcache::{CommandError, MemcacheError};
use sha2::{Digest, Sha256};

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::{MAX_RECORD_BYTES, Record};
use crate::store::{SessionStore, StoreError, UserSession};

/// The prefix used unless [`MemcachedStore::with_prefix`] says otherwise.
const DEFAULT_PREFIX: &str = "cloakroom:";
/// memcached's key length limit.
const MAX_KEY_BYTES: usize = 250;
/// Longest prefix: `s:` / `u:` and 64 hex characters follow it.
const MAX_PREFIX_BYTES: usize = MAX_KEY_BYTES - 2 - 64;
/// Connections per store unless the URL says `pool_size=N`.
const DEFAULT_POOL_SIZE: u32 = 16;
/// Largest `pool_size` accepted.
const MAX_POOL_SIZE: u32 = 1024;
/// Socket read/write timeout unless the URL says `timeout=SECONDS`.
const DEFAULT_IO_TIMEOUT_SECS: &str = "5";
/// How long a request waits for a pooled connection unless the URL says
/// `connect_timeout=SECONDS`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// memcached reads an exptime above 30 days as an absolute Unix time.
const REALTIME_MAXDELTA: u64 = 30 * 24 * 3600;
/// The smallest absolute exptime: a moment in January 1970, so an item
/// written with it is expired at once.
const EXPIRED_EXPTIME: u32 = (REALTIME_MAXDELTA + 1) as u32;
/// The largest exptime sent: memcached parses exptimes as signed 32-bit
/// numbers in places, so deadlines past January 2038 are stored with this
/// one (the millisecond deadline check still applies).
const MAX_EXPTIME: u64 = i32::MAX as u64;
/// Attempts of one gets/cas loop before giving up with `Unavailable`.
const MAX_CAS_ATTEMPTS: u32 = 16;
/// Most passes of one `delete_by_user` over a user's index (see
/// `delete_by_user_blocking`) before giving up with `Unavailable`.
const MAX_DELETE_BY_USER_PASSES: usize = 8;
/// Keys per multi-get request, so replies cannot fill both socket buffers.
const MULTI_GET_CHUNK: usize = 32;
/// Index format version, the first byte of every index item.
const INDEX_FORMAT: u8 = 1;
/// Bytes per index entry: key, absolute deadline, indexed-at.
const INDEX_ENTRY_BYTES: usize = 32 + 8 + 8;
/// An index entry whose session is missing (or belongs to someone else) is
/// only dropped once it is this old: the entry is written before the session
/// item, so a young entry may belong to a `create` still under way.
const INDEX_GRACE: Duration = Duration::from_secs(60);
/// An index write that finds more entries than this first checks each
/// entry's session and drops the stale ones.
const INDEX_COMPACT_AT: usize = 64;

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

/// What the URL configured.
struct Config {
    url: memcache::Url,
    pool_size: u32,
    connect_timeout: Duration,
}

/// The shared connection pool, replaced after a connection-level error.
struct Conn {
    config: Config,
    /// The current client and its generation.
    client: RwLock<(u64, memcache::Client)>,
}

impl fmt::Debug for MemcachedStore {
    // Never the URL: it may carry SASL credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedStore")
            .field("prefix", &self.prefix)
            .field("pool_size", &self.conn.config.pool_size)
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
        let config = parse_url(url)?;
        let client = build_client(&config)?;
        let store = Self {
            prefix: Arc::from(DEFAULT_PREFIX),
            conn: Arc::new(Conn {
                config,
                client: RwLock::new((0, client)),
            }),
        };
        store.run(Self::probe).await?;
        Ok(store)
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
            return Err(StoreError::other(format!(
                "memcached key prefix longer than {MAX_PREFIX_BYTES} bytes"
            )));
        }
        if !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(StoreError::other(
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

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(StoreError::other)?
    }

    fn session_key(&self, key: &StorageKey) -> String {
        format!("{}s:{}", self.prefix, key.to_hex())
    }

    fn index_key(&self, user: &str) -> String {
        let digest = StorageKey(Sha256::digest(user.as_bytes()).into());
        format!("{}u:{}", self.prefix, digest.to_hex())
    }
}

// ---------------------------------------------------------------------------
// Connection handling

fn parse_url(url: &str) -> Result<Config, StoreError> {
    // Error messages never echo the URL: it may hold a password.
    let mut parsed = memcache::Url::parse(url.trim())
        .map_err(|e| StoreError::other(format!("invalid memcached URL: {e}")))?;
    match parsed.scheme() {
        "memcache" | "memcache+tcp" | "memcache+unix" => {}
        "memcache+udp" => {
            return Err(StoreError::other(
                "memcached over UDP is not supported by the session store",
            ));
        }
        _ => {
            return Err(StoreError::other(
                "memcached URLs start with memcache:// (e.g. memcache://127.0.0.1:11211)",
            ));
        }
    }
    let mut pool_size = DEFAULT_POOL_SIZE;
    let mut connect_timeout = DEFAULT_CONNECT_TIMEOUT;
    let mut has_timeout = false;
    for (name, value) in parsed.query_pairs() {
        match &*name {
            "protocol" if value == "ascii" => {
                return Err(StoreError::other(
                    "the memcached session store needs the binary protocol; drop protocol=ascii",
                ));
            }
            "udp" if value == "true" => {
                return Err(StoreError::other(
                    "memcached over UDP is not supported by the session store",
                ));
            }
            "pool_size" => {
                pool_size = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_POOL_SIZE).contains(n))
                    .ok_or_else(|| {
                        StoreError::other(format!(
                            "memcached pool_size must be a number from 1 to {MAX_POOL_SIZE}"
                        ))
                    })?;
            }
            "connect_timeout" => connect_timeout = seconds(&value, "connect_timeout")?,
            "timeout" => {
                seconds(&value, "timeout")?;
                has_timeout = true;
            }
            _ => {}
        }
    }
    if !has_timeout {
        parsed
            .query_pairs_mut()
            .append_pair("timeout", DEFAULT_IO_TIMEOUT_SECS);
    }
    Ok(Config {
        url: parsed,
        pool_size,
        connect_timeout,
    })
}

fn seconds(value: &str, name: &str) -> Result<Duration, StoreError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.001 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            StoreError::other(format!(
                "memcached {name} must be a number of seconds from 0.001 to 3600"
            ))
        })
}

/// A client over a fresh pool. Opens no connection: the pool connects on
/// demand.
fn build_client(config: &Config) -> Result<memcache::Client, StoreError> {
    let pool = memcache::Pool::builder()
        .max_size(config.pool_size)
        .min_idle(Some(0))
        .test_on_check_out(true)
        .connection_timeout(config.connect_timeout)
        .build_unchecked(memcache::ConnectionManager::new(config.url.clone()));
    memcache::Client::with_pool(pool).map_err(mc_err)
}

/// Whether `e` may have left a connection mid-reply, so that its pool must
/// not be used again.
fn breaks_connection(e: &MemcacheError) -> bool {
    matches!(
        e,
        MemcacheError::IOError(_) | MemcacheError::ServerError(_) | MemcacheError::ParseError(_)
    )
}

fn mc_err(e: MemcacheError) -> StoreError {
    match e {
        // A reply the library could not parse is a protocol failure, like a
        // bad magic byte: the connection is suspect, the data is not.
        MemcacheError::IOError(_)
        | MemcacheError::PoolError(_)
        | MemcacheError::ServerError(_)
        | MemcacheError::ParseError(_) => StoreError::unavailable(e),
        MemcacheError::CommandError(CommandError::ValueTooLarge) => StoreError::other(
            "memcached refused the session as larger than its item size limit (-I)",
        ),
        _ => StoreError::other(e),
    }
}

fn contention(what: &str) -> StoreError {
    StoreError::unavailable(format!(
        "memcached {what}: too many concurrent writers, gave up after {MAX_CAS_ATTEMPTS} attempts"
    ))
}

/// A short pause between compare-and-swap attempts.
fn backoff(attempt: u32) {
    std::thread::sleep(Duration::from_millis(u64::from(attempt.min(20))));
}

/// An item's value and CAS token.
struct Item {
    value: Vec<u8>,
    cas: u64,
}

type Fetched = (Vec<u8>, u32, Option<u64>);

impl MemcachedStore {
    /// Runs one client call, replacing the pool if the call may have left a
    /// connection out of step with the server.
    fn call_raw<T>(
        &self,
        f: impl FnOnce(&memcache::Client) -> Result<T, MemcacheError>,
    ) -> Result<T, MemcacheError> {
        let (generation, client) = {
            let guard = self
                .conn
                .client
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            (guard.0, guard.1.clone())
        };
        f(&client).inspect_err(|e| {
            if breaks_connection(e) {
                self.reset(generation);
            }
        })
    }

    /// [`call_raw`](Self::call_raw) with the error mapped.
    fn call<T>(
        &self,
        f: impl FnOnce(&memcache::Client) -> Result<T, MemcacheError>,
    ) -> Result<T, StoreError> {
        self.call_raw(f).map_err(mc_err)
    }

    fn reset(&self, generation: u64) {
        let Ok(fresh) = build_client(&self.conn.config) else {
            return;
        };
        let mut guard = self
            .conn
            .client
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if guard.0 == generation {
            tracing::warn!("memcached connection error; replacing the connection pool");
            *guard = (generation.wrapping_add(1), fresh);
        }
    }

    /// Checks that the server answers and hands out CAS tokens (not so
    /// under `-C`), with a throwaway item that lives 10 seconds at most.
    fn probe(&self) -> Result<(), StoreError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::other(e.to_string()))?;
        let key = format!(
            "{DEFAULT_PREFIX}probe:{}",
            &StorageKey(Sha256::digest(nonce).into()).to_hex()[..32]
        );
        self.call(|c| c.set(&key, &b"1"[..], 10))?;
        let item = self.fetch(&key)?;
        self.call(|c| c.delete(&key))?;
        match item {
            Some(i) if i.cas != 0 => Ok(()),
            Some(_) => Err(StoreError::other(
                "memcached hands out no CAS tokens (started with -C); the session store needs them",
            )),
            None => Err(StoreError::unavailable(
                "memcached did not keep a probe item for a moment",
            )),
        }
    }

    /// One item with its CAS token. Read with a keyed multi-get, whose
    /// replies name their keys.
    fn fetch(&self, key: &str) -> Result<Option<Item>, StoreError> {
        let mut found: HashMap<String, Fetched> = self.call(|c| c.gets(&[key]))?;
        Ok(found.remove(key).map(|(value, _flags, cas)| Item {
            value,
            cas: cas.unwrap_or(0),
        }))
    }

    /// Several items with their CAS tokens, by key.
    fn fetch_many(&self, keys: &[String]) -> Result<HashMap<String, Item>, StoreError> {
        let mut out = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(MULTI_GET_CHUNK) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let found: HashMap<String, Fetched> = self.call(|c| c.gets(&refs))?;
            for (key, (value, _flags, cas)) in found {
                if chunk.contains(&key) {
                    out.insert(
                        key,
                        Item {
                            value,
                            cas: cas.unwrap_or(0),
                        },
                    );
                }
            }
        }
        Ok(out)
    }

    /// `add`: `Ok(false)` if the key is taken.
    fn add(&self, key: &str, value: &[u8], exptime: u32) -> Result<bool, StoreError> {
        match self.call_raw(|c| c.add(key, value, exptime)) {
            Ok(()) => Ok(true),
            Err(MemcacheError::CommandError(CommandError::KeyExists)) => Ok(false),
            Err(e) => Err(mc_err(e)),
        }
    }

    /// `cas`: `Ok(false)` if the item changed or vanished since `cas` was
    /// read.
    fn cas(&self, key: &str, value: &[u8], exptime: u32, cas: u64) -> Result<bool, StoreError> {
        if cas == 0 {
            // The binary protocol reads a zero token as "no CAS": the write
            // would be an unconditional set.
            return Err(StoreError::other(
                "memcached returned no CAS token; is CAS disabled on the server (-C)?",
            ));
        }
        self.call(|c| c.cas(key, value, exptime, cas))
    }
}

// ---------------------------------------------------------------------------
// Values

/// memcached exptime for a deadline: absolute Unix seconds, rounded up,
/// clamped to `EXPIRED_EXPTIME..=MAX_EXPTIME` (never 0, which means "never
/// expires", and never a small number, which means "seconds from now").
fn exptime(deadline: Timestamp) -> u32 {
    let secs = deadline
        .as_millis()
        .div_ceil(1000)
        .clamp(u64::from(EXPIRED_EXPTIME), MAX_EXPTIME);
    u32::try_from(secs).unwrap_or(EXPIRED_EXPTIME)
}

/// A session item: `[u64 idle_deadline][encoded record]`.
fn encode_session(idle_deadline: Timestamp, record: &Record) -> Vec<u8> {
    let encoded = record.encode();
    let mut out = Vec::with_capacity(8 + encoded.len());
    out.extend_from_slice(&idle_deadline.as_millis().to_be_bytes());
    out.extend_from_slice(&encoded);
    out
}

/// A decoded session item.
struct Stored {
    idle_deadline: Timestamp,
    record: Record,
}

impl Stored {
    fn decode(value: &[u8]) -> Result<Self, StoreError> {
        if value.len() < 8 || value.len() > MAX_RECORD_BYTES + 8 {
            return Err(StoreError::corrupt(
                "memcached session item has an impossible size",
            ));
        }
        let (head, body) = value.split_at(8);
        let mut deadline = [0u8; 8];
        deadline.copy_from_slice(head);
        let record = Record::decode(&Bytes::copy_from_slice(body)).map_err(StoreError::corrupt)?;
        Ok(Self {
            idle_deadline: Timestamp::from_millis(u64::from_be_bytes(deadline)),
            record,
        })
    }

    fn expires_at(&self) -> Timestamp {
        self.idle_deadline.min(self.record.absolute_deadline)
    }

    fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at()
    }

    fn into_record(mut self) -> Record {
        self.record.idle_deadline = self.idle_deadline;
        self.record
    }
}

/// One entry of a user's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    key: StorageKey,
    /// The session's absolute deadline: it is certainly dead after this.
    absolute_deadline: Timestamp,
    /// When the entry was written.
    indexed_at: Timestamp,
}

fn encode_index(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * INDEX_ENTRY_BYTES);
    out.push(INDEX_FORMAT);
    for e in entries {
        out.extend_from_slice(&e.key.0);
        out.extend_from_slice(&e.absolute_deadline.as_millis().to_be_bytes());
        out.extend_from_slice(&e.indexed_at.as_millis().to_be_bytes());
    }
    out
}

fn decode_index(value: &[u8]) -> Result<Vec<IndexEntry>, StoreError> {
    let Some((&format, body)) = value.split_first() else {
        return Err(StoreError::corrupt("empty memcached user index"));
    };
    if format != INDEX_FORMAT {
        return Err(StoreError::corrupt(format!(
            "unknown memcached user index format {format}"
        )));
    }
    if body.len() % INDEX_ENTRY_BYTES != 0 {
        return Err(StoreError::corrupt("truncated memcached user index"));
    }
    let u64_at = |chunk: &[u8], at: usize| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&chunk[at..at + 8]);
        Timestamp::from_millis(u64::from_be_bytes(raw))
    };
    Ok(body
        .chunks_exact(INDEX_ENTRY_BYTES)
        .map(|chunk| {
            let mut key = [0u8; 32];
            key.copy_from_slice(&chunk[..32]);
            IndexEntry {
                key: StorageKey(key),
                absolute_deadline: u64_at(chunk, 32),
                indexed_at: u64_at(chunk, 40),
            }
        })
        .collect())
}

/// The index item's exptime: it outlives every session it lists.
fn index_exptime(entries: &[IndexEntry]) -> u32 {
    entries
        .iter()
        .map(|e| e.absolute_deadline)
        .max()
        .map_or(EXPIRED_EXPTIME, exptime)
}

/// What a look at an indexed session found.
enum Seen {
    /// A live session of this user.
    Live(Stored),
    /// The entry is stale: drop it.
    Stale,
    /// Not (yet) a live session of this user, but too young to drop.
    Young,
}

fn judge(entry: &IndexEntry, item: Option<&Item>, user: &str, now: Timestamp) -> Seen {
    let stored = item.map(|i| Stored::decode(&i.value));
    match stored {
        Some(Ok(s)) if s.is_live(now) && s.record.user.as_deref() == Some(user) => Seen::Live(s),
        Some(Err(_)) => {
            tracing::warn!("dropping an unreadable memcached session from a user index");
            Seen::Stale
        }
        _ if entry.absolute_deadline <= now || now.since(entry.indexed_at) >= INDEX_GRACE => {
            Seen::Stale
        }
        _ => Seen::Young,
    }
}

// ---------------------------------------------------------------------------
// Operations (blocking; run on the blocking pool)

impl MemcachedStore {
    fn create_blocking(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let skey = self.session_key(key);
        if !record.is_live(Timestamp::now()) {
            // Nothing to store; but a live record there is still a conflict.
            return match self.fetch(&skey)? {
                Some(item)
                    if Stored::decode(&item.value).is_ok_and(|s| s.is_live(Timestamp::now())) =>
                {
                    Err(StoreError::Conflict)
                }
                _ => Ok(()),
            };
        }
        // Index first: a failure between the two leaves a stale entry, never
        // an unlisted session.
        if let Some(user) = &record.user {
            self.index_upsert(user, key, record.absolute_deadline)?;
        }
        let value = encode_session(record.idle_deadline, record);
        let exp = exptime(record.expires_at());
        for attempt in 0..MAX_CAS_ATTEMPTS {
            if self.add(&skey, &value, exp)? {
                return Ok(());
            }
            // Taken. Live, or unreadable: never overwrite. Expired by the
            // millisecond clock though still within its last second in
            // memcached: replace it, guarded by its token.
            match self.fetch(&skey)? {
                None => {}
                Some(item) => match Stored::decode(&item.value) {
                    Ok(s) if !s.is_live(Timestamp::now()) => {
                        if self.cas(&skey, &value, exp, item.cas)? {
                            return Ok(());
                        }
                    }
                    _ => return Err(StoreError::Conflict),
                },
            }
            backoff(attempt);
        }
        Err(contention("create"))
    }

    fn load_blocking(&self, key: &StorageKey) -> Result<Option<Record>, StoreError> {
        let Some(item) = self.fetch(&self.session_key(key))? else {
            return Ok(None);
        };
        let stored = Stored::decode(&item.value)?;
        Ok(stored
            .is_live(Timestamp::now())
            .then(|| stored.into_record()))
    }

    fn save_blocking(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let skey = self.session_key(key);
        let Some(item) = self.fetch(&skey)? else {
            return Err(StoreError::NotFound);
        };
        let current = Stored::decode(&item.value)?;
        if !current.is_live(Timestamp::now()) {
            return Err(StoreError::NotFound);
        }
        if current.record.version != expected_version {
            return Err(StoreError::VersionConflict);
        }
        // Also puts back an entry lost to eviction; a no-op (one read) when
        // the entry is already there.
        if let Some(user) = &record.user {
            self.index_upsert(user, key, record.absolute_deadline)?;
        }
        let value = encode_session(record.idle_deadline, record);
        if self.cas(&skey, &value, exptime(record.expires_at()), item.cas)? {
            return Ok(());
        }
        // The token no longer matches: tell a rival save from a deletion.
        match self.fetch(&skey)? {
            None => Err(StoreError::NotFound),
            Some(item) => {
                if Stored::decode(&item.value)?.is_live(Timestamp::now()) {
                    Err(StoreError::VersionConflict)
                } else {
                    Err(StoreError::NotFound)
                }
            }
        }
    }

    fn touch_blocking(&self, key: &StorageKey, idle_deadline: Timestamp) -> Result<(), StoreError> {
        let skey = self.session_key(key);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let Some(mut item) = self.fetch(&skey)? else {
                return Err(StoreError::NotFound);
            };
            let current = Stored::decode(&item.value)?;
            if !current.is_live(Timestamp::now()) {
                return Err(StoreError::NotFound);
            }
            // Same record bytes, new deadline header.
            item.value[..8].copy_from_slice(&idle_deadline.as_millis().to_be_bytes());
            let exp = exptime(idle_deadline.min(current.record.absolute_deadline));
            if self.cas(&skey, &item.value, exp, item.cas)? {
                return Ok(());
            }
            backoff(attempt);
        }
        Err(contention("touch"))
    }

    fn delete_blocking(&self, key: &StorageKey) -> Result<(), StoreError> {
        let skey = self.session_key(key);
        self.call(|c| c.delete(&skey)).map(drop)
    }

    fn list_blocking(&self, user: &str) -> Result<Vec<UserSession>, StoreError> {
        let Some(index) = self.fetch(&self.index_key(user))? else {
            return Ok(Vec::new());
        };
        let entries = decode_index(&index.value)?;
        let skeys: Vec<String> = entries.iter().map(|e| self.session_key(&e.key)).collect();
        let items = self.fetch_many(&skeys)?;
        let now = Timestamp::now();
        let mut out = Vec::new();
        let mut stale = HashSet::new();
        for (entry, skey) in entries.iter().zip(&skeys) {
            match judge(entry, items.get(skey), user, now) {
                Seen::Live(stored) => out.push(UserSession {
                    key: entry.key,
                    record: stored.into_record(),
                }),
                Seen::Stale => {
                    stale.insert((entry.key, entry.indexed_at));
                }
                Seen::Young => {}
            }
        }
        // Listing already sees every stale entry for what it is; dropping
        // them is housekeeping and must not fail the listing.
        if let Err(e) = self.index_remove(user, &stale, Some(index)) {
            tracing::debug!(error = %e, "memcached user index cleanup failed");
        }
        Ok(out)
    }

    /// Passes over the user's index until it lists no other entry, or a
    /// quiet pass (nothing deleted, no item changed under it) is followed by
    /// the very same listing. S28: a rotation indexes and writes its new
    /// record before it claims the old one, so when a pass finds the old
    /// record claimed away, the next listing holds the new key and the next
    /// pass deletes it; entries that stay missing (young ones are kept for
    /// a minute) end the loop once nothing changes any more.
    fn delete_by_user_blocking(
        &self,
        user: &str,
        except: Option<&StorageKey>,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        let mut last: Option<(Vec<StorageKey>, bool)> = None;
        for _ in 0..MAX_DELETE_BY_USER_PASSES {
            let Some(index) = self.fetch(&self.index_key(user))? else {
                return Ok(deleted);
            };
            let entries: Vec<IndexEntry> = decode_index(&index.value)?
                .into_iter()
                .filter(|e| Some(&e.key) != except)
                .collect();
            let mut keys: Vec<StorageKey> = entries.iter().map(|e| e.key).collect();
            keys.sort();
            if keys.is_empty() || last.as_ref().is_some_and(|(k, quiet)| *quiet && *k == keys) {
                return Ok(deleted);
            }
            let (n, quiet) = self.delete_by_user_pass(user, &entries)?;
            deleted += n;
            last = Some((keys, quiet));
        }
        Err(contention("delete_by_user"))
    }

    /// One pass of `delete_by_user` over `entries`: how many live sessions
    /// it deleted, and whether it was quiet (deleted nothing and met no
    /// item that changed between its read and its `cas`).
    fn delete_by_user_pass(
        &self,
        user: &str,
        entries: &[IndexEntry],
    ) -> Result<(u64, bool), StoreError> {
        let skeys: Vec<String> = entries.iter().map(|e| self.session_key(&e.key)).collect();
        let mut items = self.fetch_many(&skeys)?;
        let now = Timestamp::now();
        let mut deleted = 0;
        let mut quiet = true;
        let mut stale = HashSet::new();
        for (entry, skey) in entries.iter().zip(&skeys) {
            let mut item = items.remove(skey);
            let mut attempt = 0;
            loop {
                let Some(current) = item.take() else {
                    // Gone (or never written): drop once the entry is old.
                    if matches!(judge(entry, None, user, now), Seen::Stale) {
                        stale.insert((entry.key, entry.indexed_at));
                    }
                    break;
                };
                let stored = match Stored::decode(&current.value) {
                    Ok(s) if s.record.user.as_deref() == Some(user) => s,
                    Ok(_) => {
                        // Someone else's now: not ours to delete.
                        if matches!(judge(entry, None, user, now), Seen::Stale) {
                            stale.insert((entry.key, entry.indexed_at));
                        }
                        break;
                    }
                    Err(_) => {
                        stale.insert((entry.key, entry.indexed_at));
                        break;
                    }
                };
                // Delete only what was read: an empty, already expired item,
                // written under the token.
                quiet = false;
                if self.cas(skey, &[], EXPIRED_EXPTIME, current.cas)? {
                    if stored.is_live(Timestamp::now()) {
                        deleted += 1;
                    }
                    stale.insert((entry.key, entry.indexed_at));
                    break;
                }
                attempt += 1;
                if attempt >= MAX_CAS_ATTEMPTS {
                    return Err(contention("delete_by_user"));
                }
                backoff(attempt);
                item = self.fetch(skey)?;
            }
        }
        if let Err(e) = self.index_remove(user, &stale, None) {
            tracing::debug!(error = %e, "memcached user index cleanup failed");
        }
        Ok((deleted, quiet))
    }

    /// S28: files `record` under `new_key` only while a live record is under
    /// `old_key`. The new record is created (and indexed) first, then the
    /// old one is claimed: deleted with `cas` on the token of the live item
    /// read, so a concurrent `delete`, `delete_by_user` or save in between
    /// makes the claim read again. If no live old record is left, the new
    /// one is deleted again and the rotation is `NotFound`. A
    /// `delete_by_user` that reaches the old key after the claim finds the
    /// new key on its next pass (see `delete_by_user_blocking`).
    fn rotate_blocking(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
    ) -> Result<(), StoreError> {
        // The new record exists before the old one is gone.
        self.create_blocking(new_key, record)?;
        match self.claim_blocking(old_key) {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.delete_blocking(new_key)?;
                Err(StoreError::NotFound)
            }
            Err(e) => {
                // Whether the old record went is unknown: take back the new
                // one rather than risk two live sessions.
                if let Err(undo) = self.delete_blocking(new_key) {
                    tracing::warn!(error = %undo, "could not take back a half-done memcached rotation");
                }
                Err(e)
            }
        }
    }

    /// Deletes the record under `key` if it is live; `Ok(false)` if there is
    /// none. Deletes with `cas` (an empty, already expired item) on the
    /// token of the live item read, so it never deletes anything else.
    fn claim_blocking(&self, key: &StorageKey) -> Result<bool, StoreError> {
        let skey = self.session_key(key);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let Some(item) = self.fetch(&skey)? else {
                return Ok(false);
            };
            if !Stored::decode(&item.value)?.is_live(Timestamp::now()) {
                return Ok(false);
            }
            if self.cas(&skey, &[], EXPIRED_EXPTIME, item.cas)? {
                return Ok(true);
            }
            backoff(attempt);
        }
        Err(contention("rotate"))
    }

    /// Adds (or refreshes) `key`'s entry in `user`'s index. Reads only when
    /// the entry is already there with this deadline.
    fn index_upsert(
        &self,
        user: &str,
        key: &StorageKey,
        absolute_deadline: Timestamp,
    ) -> Result<(), StoreError> {
        let ikey = self.index_key(user);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let now = Timestamp::now();
            let item = self.fetch(&ikey)?;
            let mut entries = match &item {
                None => Vec::new(),
                Some(i) => decode_index(&i.value).unwrap_or_else(|_| {
                    tracing::warn!("replacing an unreadable memcached user index");
                    Vec::new()
                }),
            };
            if entries
                .iter()
                .any(|e| e.key == *key && e.absolute_deadline == absolute_deadline)
            {
                return Ok(());
            }
            entries.retain(|e| e.key != *key && e.absolute_deadline > now);
            if entries.len() >= INDEX_COMPACT_AT {
                self.compact(user, &mut entries, now)?;
            }
            entries.push(IndexEntry {
                key: *key,
                absolute_deadline,
                indexed_at: now,
            });
            let value = encode_index(&entries);
            let exp = index_exptime(&entries);
            let written = match &item {
                None => self.add(&ikey, &value, exp)?,
                Some(i) => self.cas(&ikey, &value, exp, i.cas)?,
            };
            if written {
                return Ok(());
            }
            backoff(attempt);
        }
        Err(contention("user index update"))
    }

    /// Drops the entries of a large index whose sessions are stale.
    fn compact(
        &self,
        user: &str,
        entries: &mut Vec<IndexEntry>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let skeys: Vec<String> = entries.iter().map(|e| self.session_key(&e.key)).collect();
        let items = self.fetch_many(&skeys)?;
        let mut keep = Vec::with_capacity(entries.len());
        for (entry, skey) in entries.iter().zip(&skeys) {
            if !matches!(judge(entry, items.get(skey), user, now), Seen::Stale) {
                keep.push(*entry);
            }
        }
        *entries = keep;
        Ok(())
    }

    /// Removes the given entries (key and write time, so an entry rewritten
    /// meanwhile survives) and any past their absolute deadline from
    /// `user`'s index. `first` is an already fetched copy of the index.
    fn index_remove(
        &self,
        user: &str,
        stale: &HashSet<(StorageKey, Timestamp)>,
        mut first: Option<Item>,
    ) -> Result<(), StoreError> {
        let ikey = self.index_key(user);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let item = match first.take() {
                Some(i) => i,
                None => match self.fetch(&ikey)? {
                    Some(i) => i,
                    None => return Ok(()),
                },
            };
            let entries = decode_index(&item.value)?;
            let now = Timestamp::now();
            let kept: Vec<IndexEntry> = entries
                .iter()
                .filter(|e| !stale.contains(&(e.key, e.indexed_at)) && e.absolute_deadline > now)
                .copied()
                .collect();
            if kept.len() == entries.len() {
                return Ok(());
            }
            // An emptied index is written already expired rather than
            // deleted, so that the removal stays conditional on the token.
            if self.cas(&ikey, &encode_index(&kept), index_exptime(&kept), item.cas)? {
                return Ok(());
            }
            backoff(attempt);
        }
        Err(contention("user index cleanup"))
    }
}

#[async_trait]
impl SessionStore for MemcachedStore {
    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let (key, record) = (*key, record.clone());
        self.run(move |s| s.create_blocking(&key, &record)).await
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, StoreError> {
        let key = *key;
        self.run(move |s| s.load_blocking(&key)).await
    }

    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let (key, record) = (*key, record.clone());
        self.run(move |s| s.save_blocking(&key, &record, expected_version))
            .await
    }

    async fn touch(&self, key: &StorageKey, idle_deadline: Timestamp) -> Result<(), StoreError> {
        let key = *key;
        self.run(move |s| s.touch_blocking(&key, idle_deadline))
            .await
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), StoreError> {
        let key = *key;
        self.run(move |s| s.delete_blocking(&key)).await
    }

    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
    ) -> Result<(), StoreError> {
        let (old_key, new_key, record) = (*old_key, *new_key, record.clone());
        self.run(move |s| s.rotate_blocking(&old_key, &new_key, &record))
            .await
    }

    async fn list_by_user(&self, user: &str) -> Result<Vec<UserSession>, StoreError> {
        let user = user.to_owned();
        self.run(move |s| s.list_blocking(&user)).await
    }

    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
    ) -> Result<u64, StoreError> {
        let (user, except) = (user.to_owned(), except.copied());
        self.run(move |s| s.delete_by_user_blocking(&user, except.as_ref()))
            .await
    }

    /// memcached expires items itself (each item's exptime is its record's
    /// deadline): nothing to do, returns 0.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;

    use super::*;
    use crate::id::SessionId;
    use crate::store::conformance::skip_service;

    const DEFAULT_URL: &str = "memcache://127.0.0.1:11211";

    fn url() -> String {
        std::env::var("CLOAKROOM_TEST_MEMCACHED_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
    }

    /// A prefix of its own per test, so tests sharing the server never see
    /// each other's keys.
    fn random_prefix() -> String {
        format!(
            "cloakroom-test-{}:",
            &SessionId::generate().storage_key().to_hex()[..16]
        )
    }

    async fn test_store() -> Result<MemcachedStore, StoreError> {
        MemcachedStore::connect(&url())
            .await?
            .with_prefix(&random_prefix())
    }

    async fn store_or_skip() -> Option<MemcachedStore> {
        match test_store().await {
            Ok(s) => Some(s),
            Err(e) => {
                skip_service("memcached", &e);
                None
            }
        }
    }

    /// A store that has not talked to any server (the pool connects on
    /// demand), for tests of the pure parts.
    fn offline_store(url: &str) -> MemcachedStore {
        let config = parse_url(url).unwrap();
        let client = build_client(&config).unwrap();
        MemcachedStore {
            prefix: Arc::from(DEFAULT_PREFIX),
            conn: Arc::new(Conn {
                config,
                client: RwLock::new((0, client)),
            }),
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

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// The remaining TTL memcached reports for `key` (meta get, ASCII), or
    /// `None` if the item is missing.
    fn server_ttl(key: &str) -> Option<i64> {
        let parsed = memcache::Url::parse(&url()).unwrap();
        let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = parsed.port().unwrap_or(11211);
        let mut conn = TcpStream::connect((host.as_str(), port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(conn, "mg {key} t\r\n").unwrap();
        let mut line = String::new();
        BufReader::new(conn).read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line == "EN" {
            return None;
        }
        let ttl = line
            .split(' ')
            .find_map(|f| f.strip_prefix('t'))
            .unwrap_or_else(|| panic!("unexpected meta reply {line:?}"));
        Some(ttl.parse().unwrap())
    }

    // -- pure parts ---------------------------------------------------------

    #[test]
    fn exptime_rounds_up_to_absolute_seconds() {
        assert_eq!(
            exptime(Timestamp::from_millis(1_700_000_000_000)),
            1_700_000_000
        );
        assert_eq!(
            exptime(Timestamp::from_millis(1_700_000_000_001)),
            1_700_000_001
        );
        assert_eq!(
            exptime(Timestamp::from_millis(1_700_000_000_999)),
            1_700_000_001
        );
        // Never 0 ("never expires") nor a relative number of seconds.
        assert_eq!(exptime(Timestamp::EPOCH), EXPIRED_EXPTIME);
        assert_eq!(exptime(Timestamp::from_millis(5_000)), EXPIRED_EXPTIME);
        assert!(u64::from(EXPIRED_EXPTIME) > REALTIME_MAXDELTA);
        // Clamped below 2^31.
        assert_eq!(
            exptime(Timestamp::from_millis(u64::MAX)),
            u32::try_from(i32::MAX).unwrap()
        );
        assert_eq!(index_exptime(&[]), EXPIRED_EXPTIME);
    }

    #[test]
    fn session_value_round_trips_with_deadline_overlay() {
        let mut rec = live_record(Some("alice"));
        rec.insert("k", "v").unwrap();
        let later = rec.idle_deadline.saturating_add(Duration::from_secs(60));
        let value = encode_session(later, &rec);
        assert_eq!(
            &value[8..],
            &rec.encode()[..],
            "record bytes follow the header"
        );
        let back = Stored::decode(&value).unwrap().into_record();
        assert_eq!(back.idle_deadline, later);
        assert_eq!(back.get::<String>("k").unwrap().as_deref(), Some("v"));
        assert!(matches!(
            Stored::decode(&value[..7]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            Stored::decode(&value[..20]),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn index_round_trips_and_rejects_garbage() {
        let entries = vec![
            IndexEntry {
                key: SessionId::generate().storage_key(),
                absolute_deadline: Timestamp::from_millis(7),
                indexed_at: Timestamp::from_millis(3),
            },
            IndexEntry {
                key: SessionId::generate().storage_key(),
                absolute_deadline: Timestamp::from_millis(u64::MAX),
                indexed_at: Timestamp::from_millis(0),
            },
        ];
        let raw = encode_index(&entries);
        assert_eq!(raw.len(), 1 + 2 * INDEX_ENTRY_BYTES);
        assert_eq!(decode_index(&raw).unwrap(), entries);
        assert_eq!(decode_index(&[INDEX_FORMAT]).unwrap(), vec![]);
        assert!(decode_index(&[]).is_err());
        assert!(decode_index(&raw[..raw.len() - 1]).is_err());
        let mut other = raw.clone();
        other[0] = 9;
        assert!(decode_index(&other).is_err());
    }

    #[test]
    fn url_parsing() {
        let c = parse_url("memcache://127.0.0.1:11211").unwrap();
        assert_eq!(c.pool_size, DEFAULT_POOL_SIZE);
        assert_eq!(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert!(
            c.url.query_pairs().any(|(k, v)| k == "timeout" && v == "5"),
            "a default socket timeout is added"
        );
        let c = parse_url("memcache://h:1?timeout=0.5&pool_size=3&connect_timeout=2").unwrap();
        assert_eq!(c.pool_size, 3);
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(
            c.url.query_pairs().filter(|(k, _)| k == "timeout").count(),
            1
        );
        parse_url("memcache:///run/memcached.sock").unwrap();
        for bad in [
            "redis://127.0.0.1:6379",
            "memcache+udp://127.0.0.1:11211",
            "memcache://h:1?udp=true",
            "memcache://h:1?protocol=ascii",
            "memcache://h:1?pool_size=0",
            "memcache://h:1?pool_size=x",
            "memcache://h:1?timeout=0",
            "memcache://h:1?connect_timeout=-1",
            "not a url",
        ] {
            assert!(
                matches!(parse_url(bad), Err(StoreError::Other(_))),
                "{bad} must be refused"
            );
        }
        // The URL (and its password) never appears in an error.
        let Err(e) = parse_url("memcache://user:hunter2@h:1?pool_size=0") else {
            panic!("refused above");
        };
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn prefix_validation_and_debug() {
        let store = offline_store("memcache://user:hunter2@127.0.0.1:1");
        assert_eq!(store.prefix(), DEFAULT_PREFIX);
        let debug = format!("{store:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let store = store.with_prefix("app:").unwrap();
        assert_eq!(store.prefix(), "app:");
        let key = SessionId::generate().storage_key();
        assert_eq!(store.session_key(&key), format!("app:s:{}", key.to_hex()));
        assert!(store.index_key("alice").starts_with("app:u:"));
        let longest = "p".repeat(MAX_PREFIX_BYTES);
        let store = store.with_prefix(&longest).unwrap();
        assert_eq!(store.session_key(&key).len(), MAX_KEY_BYTES);
        assert_eq!(store.index_key("x").len(), MAX_KEY_BYTES);
        for bad in [
            "has space",
            "tab\t",
            "nl\n",
            "ünï",
            &"p".repeat(MAX_PREFIX_BYTES + 1),
        ] {
            assert!(
                matches!(store.clone().with_prefix(bad), Err(StoreError::Other(_))),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn zero_cas_token_is_refused_before_any_write() {
        // Port 1: nothing listens, and nothing is sent anyway.
        let store = offline_store("memcache://127.0.0.1:1");
        let r = store.cas("k", b"v", EXPIRED_EXPTIME, 0);
        assert!(matches!(r, Err(StoreError::Other(_))), "{r:?}");
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        let r = MemcachedStore::connect("memcache://127.0.0.1:1?connect_timeout=0.5").await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }

    // -- against a server ---------------------------------------------------

    /// S6: neither the raw ID nor its cookie form is in any key or value.
    #[tokio::test]
    async fn keys_and_values_hold_no_session_id() {
        let Some(store) = store_or_skip().await else {
            return;
        };
        let id = SessionId::generate();
        let key = id.storage_key();
        let user = format!("s6-{}", &SessionId::generate().storage_key().to_hex()[..8]);
        let mut rec = live_record(Some(&user));
        rec.insert("note", "hello").unwrap();
        rec.device.user_agent = Some("s6/1".into());
        store.create(&key, &rec).await.unwrap();
        let mut touched = rec.clone();
        touched.version = 2;
        store.save(&key, &touched, 1).await.unwrap();

        let hex_id: String = id.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let needles: [&[u8]; 3] = [
            id.as_bytes(),
            id.expose_secret().as_bytes(),
            hex_id.as_bytes(),
        ];
        let written = [store.session_key(&key), store.index_key(&user)];
        let s = store.clone();
        let keys = written.to_vec();
        let items = tokio::task::spawn_blocking(move || s.fetch_many(&keys))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(items.len(), 2, "both the session and the index item exist");
        for k in &written {
            let value = &items[k].value;
            assert!(!value.is_empty());
            for needle in needles {
                assert!(!contains(k.as_bytes(), needle), "key {k} holds the ID");
                assert!(!contains(value, needle), "value of {k} holds the ID");
            }
        }
        assert!(contains(&items[&written[1]].value, &key.0));
        store.delete(&key).await.unwrap();
    }

    /// Of 16 saves racing on one version from 16 threads, exactly one wins.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn cas_race_has_one_winner() {
        let Some(store) = store_or_skip().await else {
            return;
        };
        let key = SessionId::generate().storage_key();
        let rec = live_record(Some("racer"));
        store.create(&key, &rec).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = store.clone();
            let mut next = rec.clone();
            next.insert("writer", &i).unwrap();
            next.version = 2;
            tasks.push(tokio::spawn(async move {
                (i, store.save(&key, &next, 1).await)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            match r {
                Ok(()) => winners.push(i),
                Err(StoreError::VersionConflict) => {}
                Err(e) => panic!("a losing save must be VersionConflict, got {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let back = store.load(&key).await.unwrap().unwrap();
        assert_eq!(back.version, 2);
        assert_eq!(back.get::<i32>("writer").unwrap(), Some(winners[0]));
        store.delete(&key).await.unwrap();
    }

    /// The item's exptime is the record's deadline, rounded up; touch moves
    /// it and rewrites only the deadline header.
    #[tokio::test]
    async fn exptime_follows_deadlines_and_touch_keeps_bytes() {
        let Some(store) = store_or_skip().await else {
            return;
        };
        let key = SessionId::generate().storage_key();
        let skey = store.session_key(&key);
        let mut rec = live_record(None);
        rec.idle_deadline = Timestamp::now().saturating_add(Duration::from_secs(100));
        rec.insert("k", "v").unwrap();
        store.create(&key, &rec).await.unwrap();
        let ttl = server_ttl(&skey).expect("created item exists");
        // memcached turns an absolute exptime into a TTL with its own coarse
        // clock, which may sit a few seconds off the wall clock.
        assert!((95..=105).contains(&ttl), "ttl {ttl}");

        let fetch = |store: &MemcachedStore| {
            let (s, k) = (store.clone(), skey.clone());
            tokio::task::spawn_blocking(move || s.fetch(&k))
        };
        let before = fetch(&store).await.unwrap().unwrap().unwrap();
        let later = Timestamp::now().saturating_add(Duration::from_secs(1000));
        store.touch(&key, later).await.unwrap();
        let after = fetch(&store).await.unwrap().unwrap().unwrap();
        assert_eq!(
            &before.value[8..],
            &after.value[8..],
            "data bytes identical"
        );
        assert_eq!(&after.value[..8], &later.as_millis().to_be_bytes());
        let ttl = server_ttl(&skey).unwrap();
        assert!((995..=1005).contains(&ttl), "ttl after touch {ttl}");

        // Touch past the absolute deadline: the exptime stops there.
        let beyond = rec
            .absolute_deadline
            .saturating_add(Duration::from_secs(3600));
        store.touch(&key, beyond).await.unwrap();
        let ttl = server_ttl(&skey).unwrap();
        assert!((42_995..=43_205).contains(&ttl), "ttl capped {ttl}");
        store.delete(&key).await.unwrap();
        assert_eq!(server_ttl(&skey), None);
    }

    /// An already expired record is not stored at all.
    #[tokio::test]
    async fn expired_create_writes_nothing() {
        let Some(store) = store_or_skip().await else {
            return;
        };
        let key = SessionId::generate().storage_key();
        let mut rec = live_record(Some("late"));
        rec.idle_deadline = Timestamp::now().saturating_sub(Duration::from_secs(1));
        store.create(&key, &rec).await.unwrap();
        assert_eq!(server_ttl(&store.session_key(&key)), None);
        assert_eq!(server_ttl(&store.index_key("late")), None);
    }

    /// Garbage under a session key is `Corrupt`, never a session, and never
    /// overwritten by `create`.
    #[tokio::test]
    async fn garbage_is_corrupt() {
        let Some(store) = store_or_skip().await else {
            return;
        };
        let key = SessionId::generate().storage_key();
        let skey = store.session_key(&key);
        let s = store.clone();
        let k = skey.clone();
        tokio::task::spawn_blocking(move || {
            s.add(
                &k,
                b"\x00\x00\x01garbage",
                exptime(Timestamp::now().saturating_add(Duration::from_secs(60))),
            )
        })
        .await
        .unwrap()
        .unwrap();
        let r = store.load(&key).await;
        assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
        let r = store.create(&key, &live_record(None)).await;
        assert!(matches!(r, Err(StoreError::Conflict)), "{r:?}");
        let mut next = live_record(None);
        next.version = 2;
        let r = store.save(&key, &next, 1).await;
        assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
        store.delete(&key).await.unwrap();
        assert!(store.load(&key).await.unwrap().is_none());
    }

    /// A lost (evicted) index misses sessions until their next save puts the
    /// entry back; a stale entry is dropped by listing once old enough.
    #[tokio::test]
    async fn lost_index_heals_on_save() {
        let Some(store) = store_or_skip().await else {
            return;
        };
        let user = format!(
            "heal-{}",
            &SessionId::generate().storage_key().to_hex()[..8]
        );
        let key = SessionId::generate().storage_key();
        let rec = live_record(Some(&user));
        store.create(&key, &rec).await.unwrap();
        assert_eq!(store.list_by_user(&user).await.unwrap().len(), 1);

        let (s, ikey) = (store.clone(), store.index_key(&user));
        tokio::task::spawn_blocking(move || s.call(|c| c.delete(&ikey)))
            .await
            .unwrap()
            .unwrap();
        assert!(store.list_by_user(&user).await.unwrap().is_empty());

        let mut next = rec.clone();
        next.version = 2;
        store.save(&key, &next, 1).await.unwrap();
        let listed = store.list_by_user(&user).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, key);
        store.delete(&key).await.unwrap();
    }

    /// Listing drops entries of deleted sessions once they are older than
    /// the grace period, and keeps young ones (a create may be under way).
    #[tokio::test]
    async fn listing_cleans_old_stale_entries() {
        let Some(store) = store_or_skip().await else {
            return;
        };
        let user = format!(
            "clean-{}",
            &SessionId::generate().storage_key().to_hex()[..8]
        );
        let old = SessionId::generate().storage_key();
        let young = SessionId::generate().storage_key();
        let live = SessionId::generate().storage_key();
        let now = Timestamp::now();
        let far = now.saturating_add(Duration::from_secs(3600));
        let entries = [
            IndexEntry {
                key: old,
                absolute_deadline: far,
                indexed_at: now.saturating_sub(INDEX_GRACE + Duration::from_secs(1)),
            },
            IndexEntry {
                key: young,
                absolute_deadline: far,
                indexed_at: now,
            },
            IndexEntry {
                key: SessionId::generate().storage_key(),
                absolute_deadline: now.saturating_sub(Duration::from_secs(1)),
                indexed_at: now,
            },
        ];
        let (s, ikey) = (store.clone(), store.index_key(&user));
        let value = encode_index(&entries);
        tokio::task::spawn_blocking(move || s.add(&ikey, &value, exptime(far)))
            .await
            .unwrap()
            .unwrap();
        store
            .create(&live, &live_record(Some(&user)))
            .await
            .unwrap();
        let listed = store.list_by_user(&user).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, live);

        let (s, ikey) = (store.clone(), store.index_key(&user));
        let item = tokio::task::spawn_blocking(move || s.fetch(&ikey))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let mut left: Vec<StorageKey> = decode_index(&item.value)
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        left.sort();
        let mut want = vec![young, live];
        want.sort();
        assert_eq!(left, want, "old and expired entries dropped, young kept");
        store.delete(&live).await.unwrap();
    }

    /// `delete_by_user` does not delete a session that moved to another
    /// user, even though the first user's index still lists it.
    #[tokio::test]
    async fn delete_by_user_spares_moved_sessions() {
        let Some(store) = store_or_skip().await else {
            return;
        };
        let alice = format!("a-{}", &SessionId::generate().storage_key().to_hex()[..8]);
        let bob = format!("b-{}", &SessionId::generate().storage_key().to_hex()[..8]);
        let key = SessionId::generate().storage_key();
        let rec = live_record(Some(&alice));
        store.create(&key, &rec).await.unwrap();
        let mut moved = rec.clone();
        moved.user = Some(bob.clone());
        moved.version = 2;
        store.save(&key, &moved, 1).await.unwrap();
        assert_eq!(store.delete_by_user(&alice, None).await.unwrap(), 0);
        assert!(store.load(&key).await.unwrap().is_some());
        assert_eq!(store.list_by_user(&bob).await.unwrap().len(), 1);
        assert_eq!(store.delete_by_user(&bob, None).await.unwrap(), 1);
        assert!(store.load(&key).await.unwrap().is_none());
    }

    /// Many concurrent creates for one user all land in the index.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_index_writers_lose_nothing() {
        let Some(store) = store_or_skip().await else {
            return;
        };
        let user = format!(
            "many-{}",
            &SessionId::generate().storage_key().to_hex()[..8]
        );
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let store = store.clone();
            let user = user.clone();
            tasks.push(tokio::spawn(async move {
                let key = SessionId::generate().storage_key();
                store
                    .create(&key, &live_record(Some(&user)))
                    .await
                    .map(|()| key)
            }));
        }
        let mut keys = Vec::new();
        for t in tasks {
            keys.push(t.await.unwrap().unwrap());
        }
        keys.sort();
        let mut listed: Vec<StorageKey> = store
            .list_by_user(&user)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.key)
            .collect();
        listed.sort();
        assert_eq!(listed, keys);
        assert_eq!(store.delete_by_user(&user, None).await.unwrap(), 12);
        assert!(store.list_by_user(&user).await.unwrap().is_empty());
    }
}
