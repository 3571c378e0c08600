//! The Redis store against real servers, through the public API: the
//! conformance suite on a single server, on a Redis Cluster and as a tiered
//! store's shared cache, S6 (nothing at rest can be presented as a session
//! ID) and recovery after the server dies and comes back.
//!
//! Servers: `CLOAKROOM_TEST_REDIS_URL` (default `redis://127.0.0.1:6379/`)
//! and `CLOAKROOM_TEST_REDIS_CLUSTER_URLS` (comma-separated, default the
//! cluster `scripts/redis-cluster.sh` starts on ports 7001-7003). A server
//! that cannot be reached skips its tests, which fails them under `CI=true`.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

mod support;

use support::services;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cloakroom::store::conformance::skip_service;
use cloakroom::store::{RedisStore, SessionStore, StoreError};
use cloakroom::{Record, SessionId, Timestamp};
use redis::aio::MultiplexedConnection;
use services::{redis_cluster_urls as cluster_urls, redis_url};

/// A prefix per store, so tests share the servers and run in parallel.
fn random_prefix() -> String {
    format!(
        "cloakroom-it:{}:",
        &SessionId::generate().storage_key().to_hex()[..16]
    )
}

async fn single_store() -> Result<RedisStore, StoreError> {
    Ok(RedisStore::connect(&redis_url())
        .await?
        .with_prefix(random_prefix()))
}

async fn cluster_store() -> Result<RedisStore, StoreError> {
    let urls = cluster_urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    Ok(RedisStore::connect_cluster(&urls)
        .await?
        .with_prefix(random_prefix()))
}

mod single_server {
    use super::*;
    cloakroom::conformance_tests!(service "redis", async single_store().await, native_expiry);
}

mod cluster {
    use super::*;
    cloakroom::conformance_tests!(service "redis-cluster", async cluster_store().await, native_expiry);
}

fn record(user: Option<&str>) -> Record {
    let mut r = Record::new(
        Timestamp::now(),
        Duration::from_secs(1800),
        Duration::from_secs(43_200),
    );
    r.version = 1;
    r.user = user.map(str::to_owned);
    r.insert("cart", "three items").unwrap();
    r
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every key under `prefix` on every node, with its name, its `DUMP` and
/// its contents.
async fn everything(urls: &[String], prefix: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for url in urls {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut c: MultiplexedConnection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut c)
            .await
            .unwrap();
        for key in keys {
            out.extend(key.as_bytes());
            let dump: Vec<u8> = redis::cmd("DUMP")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            out.extend(dump);
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            let parts: Vec<Vec<u8>> = match kind.as_str() {
                "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut c).await,
                "zset" => {
                    redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query_async(&mut c)
                        .await
                }
                "string" => redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .map(|v: Vec<u8>| vec![v]),
                other => panic!("unexpected key type {other}"),
            }
            .unwrap();
            out.extend(parts.concat());
        }
    }
    out
}

/// S6: after create, save, touch and rotate, no key name, DUMP or value
/// under the store's prefix holds a raw session ID or its cookie text.
async fn s6(service: &str, store: Result<RedisStore, StoreError>, urls: &[String]) {
    let store = match store {
        Ok(s) => s,
        Err(e) => return skip_service(service, &e),
    };
    let user = format!("s6-{}", &SessionId::generate().storage_key().to_hex()[..8]);
    let first = SessionId::generate();
    let rec = record(Some(&user));
    store.create(&first.storage_key(), &rec).await.unwrap();
    let mut next = rec.clone();
    next.version = 2;
    next.insert("more", "data").unwrap();
    store.save(&first.storage_key(), &next, 1).await.unwrap();
    store
        .touch(
            &first.storage_key(),
            rec.idle_deadline.saturating_add(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let anonymous = SessionId::generate();
    store
        .create(&anonymous.storage_key(), &record(None))
        .await
        .unwrap();
    let rotated = SessionId::generate();
    next.version = 3;
    store
        .rotate(&first.storage_key(), &rotated.storage_key(), &next)
        .await
        .unwrap();

    let all = everything(urls, store.prefix()).await;
    assert!(
        contains(&all, rotated.storage_key().to_hex().as_bytes()),
        "the hashed key should be there"
    );
    for id in [&first, &anonymous, &rotated] {
        assert!(!contains(&all, id.as_bytes()), "raw ID bytes in Redis");
        assert!(
            !contains(&all, id.expose_secret().as_bytes()),
            "an ID's cookie text in Redis"
        );
    }
    store.delete(&rotated.storage_key()).await.unwrap();
    store.delete(&anonymous.storage_key()).await.unwrap();
    assert!(
        everything(urls, store.prefix()).await.is_empty(),
        "deleting every session leaves nothing behind"
    );
}

#[tokio::test]
async fn s6_single_server_holds_no_usable_id() {
    s6("redis", single_store().await, &[redis_url()]).await;
}

#[tokio::test]
async fn s6_cluster_holds_no_usable_id() {
    s6("redis-cluster", cluster_store().await, &cluster_urls()).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A throwaway, non-persistent redis-server on its own port; killed when
/// dropped.
struct SpareServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl SpareServer {
    fn start(port: u16) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::io::Error::other("redis-server did not start"))
    }

    /// `redis-cli shutdown nosave`, as an operator would; reaps the process.
    fn shutdown(mut self) {
        let by_cli = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !by_cli {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for SpareServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With the server gone, calls fail fast with `Unavailable` (never hang);
/// once it is back, the same store object works again without being
/// rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_after_the_server_restarts() {
    let port = free_port();
    let server = match SpareServer::start(port) {
        Ok(s) => s,
        Err(e) => return skip_service("redis-server (spare instance)", &e),
    };
    let store = RedisStore::builder(&format!("redis://127.0.0.1:{port}/"))
        .prefix(random_prefix())
        .response_timeout(Duration::from_millis(500))
        .connection_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let key = SessionId::generate().storage_key();
    store.create(&key, &record(Some("recovery"))).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_some());

    server.shutdown();
    let bound = Duration::from_secs(10);
    for _ in 0..3 {
        let r = tokio::time::timeout(bound, store.load(&key)).await;
        assert!(
            matches!(r, Ok(Err(StoreError::Unavailable(_)))),
            "a stopped server must give Unavailable in time, got {r:?}"
        );
    }
    // Down long enough for the background reconnection to give up.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let _server = SpareServer::start(port).unwrap();
    // The store reconnects by itself; on a loaded machine the first attempt
    // may still race the server's start, so allow a few.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let loaded = loop {
        match store.load(&key).await {
            Ok(r) => break r,
            Err(e) if std::time::Instant::now() < end => {
                eprintln!("not reconnected yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not reconnect within 10 s: {e}"),
        }
    };
    assert!(
        loaded.is_none(),
        "nothing was persisted, so the session died with the server"
    );
    let fresh = SessionId::generate().storage_key();
    store
        .create(&fresh, &record(Some("recovery")))
        .await
        .unwrap();
    assert!(store.load(&fresh).await.unwrap().is_some());
    assert_eq!(store.list_by_user("recovery").await.unwrap().len(), 1);
}

/// Redis as the shared cache of a tiered store: the tombstones and gated
/// fills (S29) keep every guarantee on a real server.
mod tiered_redis_cache {
    use super::*;
    use cloakroom::store::{MemoryStore, TieredStore};
    use std::sync::Arc;

    async fn tiered() -> Result<TieredStore, StoreError> {
        Ok(TieredStore::new(
            Arc::new(single_store().await?),
            Arc::new(MemoryStore::new()),
        ))
    }
    cloakroom::conformance_tests!(service "redis", async tiered().await);
}
