//! The connection to memcached: the URL, the pool (replaced whole after a
//! connection-level error), the few commands the store is built from, and
//! the shim that runs the blocking client off the async runtime.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use memcache::{CommandError, MemcacheError};
use sha2::{Digest, Sha256};

use super::{BACKEND, DEFAULT_PREFIX, MemcachedStore};
use crate::id::StorageKey;
use crate::store::StoreError;

/// Connections per store unless the URL says `pool_size=N`.
const DEFAULT_POOL_SIZE: u32 = 16;
/// Largest `pool_size` accepted.
const MAX_POOL_SIZE: u32 = 1024;
/// Socket read/write timeout unless the URL says `timeout=SECONDS`.
const DEFAULT_IO_TIMEOUT_SECS: &str = "5";
/// How long a request waits for a pooled connection unless the URL says
/// `connect_timeout=SECONDS`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of one gets/cas loop before giving up with `Unavailable`.
pub(super) const MAX_CAS_ATTEMPTS: u32 = 16;
/// Keys per multi-get request, so replies cannot fill both socket buffers.
const MULTI_GET_CHUNK: usize = 32;

/// What the URL configured.
struct Config {
    url: memcache::Url,
    pool_size: u32,
    connect_timeout: Duration,
}

/// The shared connection pool, replaced after a connection-level error.
pub(super) struct Conn {
    config: Config,
    /// The current client and its generation.
    client: RwLock<(u64, memcache::Client)>,
}

impl Conn {
    /// The pool for `url`. Opens no connection: the pool connects on demand.
    pub(super) fn open(url: &str) -> Result<Self, StoreError> {
        let config = parse_url(url)?;
        let client = build_client(&config)?;
        Ok(Self {
            config,
            client: RwLock::new((0, client)),
        })
    }

    /// Most connections.
    pub(super) fn pool_size(&self) -> u32 {
        self.config.pool_size
    }
}

fn parse_url(url: &str) -> Result<Config, StoreError> {
    // Error messages never echo the URL: it may hold a password.
    let mut parsed = memcache::Url::parse(url.trim())
        .map_err(|e| StoreError::other_in(BACKEND, format!("invalid memcached URL: {e}")))?;
    match parsed.scheme() {
        "memcache" | "memcache+tcp" | "memcache+unix" => {}
        "memcache+udp" => {
            return Err(StoreError::other_in(
                BACKEND,
                "memcached over UDP is not supported by the session store",
            ));
        }
        _ => {
            return Err(StoreError::other_in(
                BACKEND,
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
                return Err(StoreError::other_in(
                    BACKEND,
                    "the memcached session store needs the binary protocol; drop protocol=ascii",
                ));
            }
            "udp" if value == "true" => {
                return Err(StoreError::other_in(
                    BACKEND,
                    "memcached over UDP is not supported by the session store",
                ));
            }
            "pool_size" => {
                pool_size = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_POOL_SIZE).contains(n))
                    .ok_or_else(|| {
                        StoreError::other_in(
                            BACKEND,
                            format!(
                                "memcached pool_size must be a number from 1 to {MAX_POOL_SIZE}"
                            ),
                        )
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
            StoreError::other_in(
                BACKEND,
                format!("memcached {name} must be a number of seconds from 0.001 to 3600"),
            )
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
        | MemcacheError::ParseError(_) => StoreError::unavailable_in(BACKEND, e),
        MemcacheError::CommandError(CommandError::ValueTooLarge) => StoreError::other_in(
            BACKEND,
            "memcached refused the session as larger than its item size limit (-I)",
        ),
        _ => StoreError::other_in(BACKEND, e),
    }
}

pub(super) fn contention(what: &str) -> StoreError {
    StoreError::unavailable_in(
        BACKEND,
        format!(
            "memcached {what}: too many concurrent writers, gave up after {MAX_CAS_ATTEMPTS} attempts"
        ),
    )
}

/// A short pause between compare-and-swap attempts.
pub(super) fn backoff(attempt: u32) {
    std::thread::sleep(Duration::from_millis(u64::from(attempt.min(20))));
}

/// An item's value and CAS token.
pub(super) struct Item {
    pub(super) value: Vec<u8>,
    pub(super) cas: u64,
}

type Fetched = (Vec<u8>, u32, Option<u64>);

impl MemcachedStore {
    /// Runs the blocking `f` on Tokio's blocking thread pool: the client
    /// library is blocking.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::other_in(BACKEND, e))?
    }

    /// Runs one client call, replacing the pool if the call may have left a
    /// connection out of step with the server.
    pub(super) fn call_raw<T>(
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
    pub(super) fn call<T>(
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
    pub(super) fn probe(&self) -> Result<(), StoreError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::other_in(BACKEND, e.to_string()))?;
        let key = format!(
            "{DEFAULT_PREFIX}probe:{}",
            &StorageKey(Sha256::digest(nonce).into()).to_hex()[..32]
        );
        self.call(|c| c.set(&key, &b"1"[..], 10))?;
        let item = self.fetch(&key)?;
        self.call(|c| c.delete(&key))?;
        match item {
            Some(i) if i.cas != 0 => Ok(()),
            Some(_) => Err(StoreError::other_in(
                BACKEND,
                "memcached hands out no CAS tokens (started with -C); the session store needs them",
            )),
            None => Err(StoreError::unavailable_in(
                BACKEND,
                "memcached did not keep a probe item for a moment",
            )),
        }
    }

    /// One item with its CAS token. Read with a keyed multi-get, whose
    /// replies name their keys.
    pub(super) fn fetch(&self, key: &str) -> Result<Option<Item>, StoreError> {
        let mut found: HashMap<String, Fetched> = self.call(|c| c.gets(&[key]))?;
        Ok(found.remove(key).map(|(value, _flags, cas)| Item {
            value,
            cas: cas.unwrap_or(0),
        }))
    }

    /// Several items with their CAS tokens, by key.
    pub(super) fn fetch_many(&self, keys: &[String]) -> Result<HashMap<String, Item>, StoreError> {
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
    pub(super) fn add(&self, key: &str, value: &[u8], exptime: u32) -> Result<bool, StoreError> {
        match self.call_raw(|c| c.add(key, value, exptime)) {
            Ok(()) => Ok(true),
            Err(MemcacheError::CommandError(CommandError::KeyExists)) => Ok(false),
            Err(e) => Err(mc_err(e)),
        }
    }

    /// `cas`: `Ok(false)` if the item changed or vanished since `cas` was
    /// read.
    pub(super) fn cas(
        &self,
        key: &str,
        value: &[u8],
        exptime: u32,
        cas: u64,
    ) -> Result<bool, StoreError> {
        if cas == 0 {
            // The binary protocol reads a zero token as "no CAS": the write
            // would be an unconditional set.
            return Err(StoreError::other_in(
                BACKEND,
                "memcached returned no CAS token; is CAS disabled on the server (-C)?",
            ));
        }
        self.call(|c| c.cas(key, value, exptime, cas))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memcached::item::EXPIRED_EXPTIME;

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
    fn zero_cas_token_is_refused_before_any_write() {
        // Port 1: nothing listens, and nothing is sent anyway.
        let store = MemcachedStore::with_conn(Conn::open("memcache://127.0.0.1:1").unwrap());
        let r = store.cas("k", b"v", EXPIRED_EXPTIME, 0);
        assert!(matches!(r, Err(StoreError::Other(_))), "{r:?}");
    }
}
