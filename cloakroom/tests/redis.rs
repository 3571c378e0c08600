//! The Redis store against real servers, through the public API: the
//! conformance suite on a single server, on a Redis Cluster and as a tiered
//! store's shared cache; the documented data layout, clock skew and odd data
//! on both; the cluster index under races; S6 (nothing at rest can be
//! presented as a session ID); connection failures and recovery after the
//! server dies and comes back.
//!
//! Servers: `CLOAKROOM_TEST_REDIS_URL` (default `redis://127.0.0.1:6379/`)
//! and `CLOAKROOM_TEST_REDIS_CLUSTER_URLS` (comma-separated, default the
//! cluster `scripts/redis-cluster.sh` starts on ports 7001-7003). A server
//! that cannot be reached skips its tests, which fails them under `CI=true`.
//!
//! Over 600 lines on purpose: this is the one home of the Redis store's
//! service-backed tests (issue "Store wing"), single server and cluster
//! alike, and both share the setup helpers at the top; split it by
//! deployment only together with those helpers.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

mod support;

use support::services;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cloakroom::store::conformance::skip_service;
use cloakroom::store::{RedisStore, SessionStore, StoreError};
use cloakroom::{Record, SessionId, StorageKey, Timestamp};
use redis::aio::MultiplexedConnection;
use redis::{Cmd, Value};
use services::{redis_cluster_urls as cluster_urls, redis_url};

/// A prefix per store, so tests share the servers and run in parallel.
fn random_prefix() -> String {
    format!(
        "cloakroom-it:{}:",
        &SessionId::generate().storage_key().to_hex()[..16]
    )
}

async fn single_store() -> Result<RedisStore, StoreError> {
    RedisStore::connect(&redis_url())
        .await?
        .with_prefix(random_prefix())
}

async fn cluster_store() -> Result<RedisStore, StoreError> {
    let urls = cluster_urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    RedisStore::connect_cluster(&urls)
        .await?
        .with_prefix(random_prefix())
}

mod single_server {
    use super::*;
    cloakroom::conformance_tests!(service "redis", async single_store().await, native_expiry);
}

mod cluster {
    use super::*;
    cloakroom::conformance_tests!(service "redis-cluster", async cluster_store().await, native_expiry);
}

/// The store under test and plain connections to every node that can
/// hold its keys, or `None` (test skipped) if the service is down.
async fn setup(cluster: bool) -> Option<(RedisStore, Vec<MultiplexedConnection>)> {
    let (service, store, urls) = if cluster {
        ("redis-cluster", cluster_store().await, cluster_urls())
    } else {
        ("redis", single_store().await, vec![redis_url()])
    };
    let store = match store {
        Ok(s) => s,
        Err(e) => {
            skip_service(service, &e);
            return None;
        }
    };
    let mut nodes = Vec::new();
    for url in urls {
        let client = redis::Client::open(url.as_str()).unwrap();
        nodes.push(client.get_multiplexed_async_connection().await.unwrap());
    }
    Some((store, nodes))
}

/// Runs `cmd` on the node that holds `key` (the others answer MOVED).
async fn on_key(nodes: &[MultiplexedConnection], key: &str, cmd: &Cmd) -> Value {
    for node in nodes {
        let mut c = node.clone();
        let exists: Result<i64, _> = redis::cmd("EXISTS").arg(key).query_async(&mut c).await;
        if exists == Ok(1) {
            return cmd.query_async(&mut c).await.unwrap();
        }
    }
    Value::Nil
}

/// Every key under `prefix` on every node, with everything Redis would
/// reveal about it: its name, its `DUMP`, and its contents by type.
async fn everything(nodes: &[MultiplexedConnection], prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for node in nodes {
        let mut c = node.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut c)
            .await
            .unwrap();
        for key in keys {
            let mut bytes = key.clone().into_bytes();
            let dump: Vec<u8> = redis::cmd("DUMP")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            bytes.extend(dump);
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
            bytes.extend(parts.concat());
            out.push((key, bytes));
        }
    }
    out
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
    r.device.user_agent = Some("redis-test/1".into());
    r
}

fn fresh_user() -> String {
    format!(
        "redis-test-{}",
        &SessionId::generate().storage_key().to_hex()[..12]
    )
}

fn bytes_of(v: Value) -> Vec<u8> {
    match v {
        Value::Nil => Vec::new(),
        v => redis::from_redis_value(v).unwrap(),
    }
}

fn int_of(v: &Value) -> i64 {
    redis::from_redis_value(v.clone()).unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The documented layout, and touch writing only `i` and the TTL.
async fn layout(cluster: bool) {
    let Some((store, nodes)) = setup(cluster).await else {
        return;
    };
    let key = SessionId::generate().storage_key();
    let user = fresh_user();
    let rec = record(Some(&user));
    store.create(&key, &rec, Timestamp::now()).await.unwrap();

    let skey = format!("{}s:{}", store.prefix(), key.to_hex());
    let ikey = format!("{}u:{user}", store.prefix());
    let hget = |f: &str| {
        let mut c = redis::cmd("HGET");
        c.arg(&skey).arg(f);
        c
    };
    assert_eq!(
        bytes_of(on_key(&nodes, &skey, &hget("r")).await),
        rec.encode().to_vec()
    );
    assert_eq!(bytes_of(on_key(&nodes, &skey, &hget("v")).await), b"1");
    assert_eq!(
        bytes_of(on_key(&nodes, &skey, &hget("u")).await),
        user.as_bytes()
    );
    assert_eq!(
        int_of(&on_key(&nodes, &skey, &hget("i")).await),
        i64::try_from(rec.idle_deadline.as_millis()).unwrap()
    );
    assert_eq!(
        int_of(&on_key(&nodes, &skey, &hget("a")).await),
        i64::try_from(rec.absolute_deadline.as_millis()).unwrap()
    );
    let mut pexpiretime = redis::cmd("PEXPIRETIME");
    pexpiretime.arg(&skey);
    assert_eq!(
        int_of(&on_key(&nodes, &skey, &pexpiretime).await),
        i64::try_from(rec.expires_at().as_millis()).unwrap(),
        "the session expires natively at expires_at"
    );
    let mut zscore = redis::cmd("ZSCORE");
    zscore.arg(&ikey).arg(key.to_hex());
    assert_eq!(
        int_of(&on_key(&nodes, &ikey, &zscore).await),
        i64::try_from(rec.absolute_deadline.as_millis()).unwrap(),
        "the index member is scored by the absolute deadline"
    );
    let mut ipexpiretime = redis::cmd("PEXPIRETIME");
    ipexpiretime.arg(&ikey);
    assert_eq!(
        int_of(&on_key(&nodes, &ikey, &ipexpiretime).await),
        i64::try_from(rec.absolute_deadline.as_millis()).unwrap(),
        "the index expires with its last session's absolute deadline"
    );

    let later = rec.idle_deadline.saturating_add(Duration::from_secs(600));
    store.touch(&key, later, Timestamp::now()).await.unwrap();
    assert_eq!(
        bytes_of(on_key(&nodes, &skey, &hget("r")).await),
        rec.encode().to_vec(),
        "touch must not rewrite the record"
    );
    assert_eq!(
        int_of(&on_key(&nodes, &skey, &hget("i")).await),
        i64::try_from(later.as_millis()).unwrap()
    );
    assert_eq!(
        int_of(&on_key(&nodes, &skey, &pexpiretime).await),
        i64::try_from(later.as_millis()).unwrap(),
        "touch moves the TTL"
    );
    store.delete(&key, Timestamp::now()).await.unwrap();
    assert!(
        everything(&nodes, store.prefix()).await.is_empty(),
        "delete leaves nothing behind"
    );
}

#[tokio::test]
async fn layout_single_server() {
    layout(false).await;
}

#[tokio::test]
async fn layout_cluster() {
    layout(true).await;
}

/// Deadlines are judged by the application's clock even when Redis's TTL
/// says the key is still there (clock skew).
async fn skew(cluster: bool) {
    let Some((store, nodes)) = setup(cluster).await else {
        return;
    };
    let key = SessionId::generate().storage_key();
    let user = fresh_user();
    store
        .create(&key, &record(Some(&user)), Timestamp::now())
        .await
        .unwrap();
    let skey = format!("{}s:{}", store.prefix(), key.to_hex());
    let past = Timestamp::now()
        .saturating_sub(Duration::from_secs(5))
        .as_millis();
    let mut hset = redis::cmd("HSET");
    hset.arg(&skey).arg("i").arg(past);
    on_key(&nodes, &skey, &hset).await;
    assert!(
        store.load(&key, Timestamp::now()).await.unwrap().is_none(),
        "load of an expired record"
    );
    assert!(matches!(
        store
            .touch(
                &key,
                Timestamp::now().saturating_add(Duration::from_secs(60)),
                Timestamp::now()
            )
            .await,
        Err(StoreError::NotFound)
    ));
    let mut next = record(Some(&user));
    next.version = 2;
    assert!(matches!(
        store.save(&key, &next, 1, Timestamp::now()).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .list_by_user(&user, Timestamp::now())
            .await
            .unwrap()
            .is_empty()
    );
    // Dead by our clock, so a create may take the key over.
    store
        .create(&key, &record(Some(&user)), Timestamp::now())
        .await
        .unwrap();
    assert!(store.load(&key, Timestamp::now()).await.unwrap().is_some());
    assert_eq!(
        store
            .delete_by_user(&user, None, Timestamp::now())
            .await
            .unwrap(),
        1
    );
    assert!(everything(&nodes, store.prefix()).await.is_empty());
}

#[tokio::test]
async fn skew_single_server() {
    skew(false).await;
}

#[tokio::test]
async fn skew_cluster() {
    skew(true).await;
}

/// An expired record is not written at all, and corrupt data is reported
/// as such and can be overwritten or deleted.
async fn odd_data(cluster: bool) {
    let Some((store, nodes)) = setup(cluster).await else {
        return;
    };
    let mut dead = record(Some(&fresh_user()));
    dead.idle_deadline = Timestamp::now().saturating_sub(Duration::from_secs(1));
    store
        .create(
            &SessionId::generate().storage_key(),
            &dead,
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert!(
        everything(&nodes, store.prefix()).await.is_empty(),
        "an expired record was stored"
    );

    let key = SessionId::generate().storage_key();
    store
        .create(&key, &record(None), Timestamp::now())
        .await
        .unwrap();
    let skey = format!("{}s:{}", store.prefix(), key.to_hex());
    let mut hset = redis::cmd("HSET");
    hset.arg(&skey).arg("r").arg("not a record");
    on_key(&nodes, &skey, &hset).await;
    assert!(matches!(
        store.load(&key, Timestamp::now()).await,
        Err(StoreError::Corrupt(_))
    ));

    let mut set = redis::cmd("SET");
    set.arg(&skey).arg("a plain string");
    on_key(&nodes, &skey, &set).await;
    assert!(matches!(
        store.load(&key, Timestamp::now()).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.touch(&key, Timestamp::now(), Timestamp::now()).await,
        Err(StoreError::NotFound)
    ));
    store
        .create(&key, &record(None), Timestamp::now())
        .await
        .unwrap();
    assert!(store.load(&key, Timestamp::now()).await.unwrap().is_some());
    on_key(&nodes, &skey, &set).await;
    store.delete(&key, Timestamp::now()).await.unwrap();
    assert!(everything(&nodes, store.prefix()).await.is_empty());
    assert_eq!(store.delete_expired(Timestamp::now()).await.unwrap(), 0);
}

#[tokio::test]
async fn odd_data_single_server() {
    odd_data(false).await;
}

#[tokio::test]
async fn odd_data_cluster() {
    odd_data(true).await;
}

/// Cluster: sessions spread over the nodes, and the index never loses a
/// live session while listings (which drop stale members) race with
/// creates and user changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_index_survives_races() {
    let Some((store, nodes)) = setup(true).await else {
        return;
    };
    let user = fresh_user();
    let other = fresh_user();
    let keys: Vec<StorageKey> = (0..40)
        .map(|_| SessionId::generate().storage_key())
        .collect();
    let writer = {
        let store = store.clone();
        let keys = keys.clone();
        let (user, other) = (user.clone(), other.clone());
        tokio::spawn(async move {
            for (n, key) in keys.iter().enumerate() {
                if n % 2 == 0 {
                    store
                        .create(key, &record(Some(&user)), Timestamp::now())
                        .await
                        .unwrap();
                } else {
                    // Created for someone else, then handed to `user`.
                    let rec = record(Some(&other));
                    store.create(key, &rec, Timestamp::now()).await.unwrap();
                    let mut mine = rec.clone();
                    mine.user = Some(user.clone());
                    mine.version = 2;
                    store.save(key, &mine, 1, Timestamp::now()).await.unwrap();
                }
            }
        })
    };
    let lister = {
        let store = store.clone();
        let user = user.clone();
        tokio::spawn(async move {
            for _ in 0..100 {
                store.list_by_user(&user, Timestamp::now()).await.unwrap();
                match store.delete_by_user(&user, None, Timestamp::now()).await {
                    Ok(_) => {}
                    // The writer files new sessions of `user` faster than the
                    // passes can settle: `delete_by_user` says so (an error,
                    // never a short count), and the check below still holds.
                    Err(StoreError::Unavailable(_)) => {}
                    Err(e) => panic!("delete_by_user: {e}"),
                }
            }
        })
    };
    writer.await.unwrap();
    lister.await.unwrap();
    // Every key the lister did not delete must still be indexed.
    let mut live = Vec::new();
    for key in &keys {
        if store.load(key, Timestamp::now()).await.unwrap().is_some() {
            live.push(*key);
        }
    }
    let mut listed: Vec<StorageKey> = store
        .list_by_user(&user, Timestamp::now())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    listed.sort();
    live.sort();
    assert_eq!(listed, live, "every live session of the user is listed");
    assert!(
        store
            .list_by_user(&other, Timestamp::now())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .delete_by_user(&user, None, Timestamp::now())
            .await
            .unwrap(),
        live.len() as u64
    );

    // The keys really are spread over several nodes.
    let spread = (0..20)
        .map(|_| SessionId::generate().storage_key())
        .collect::<Vec<_>>();
    for key in &spread {
        store
            .create(key, &record(None), Timestamp::now())
            .await
            .unwrap();
    }
    let mut used = 0;
    for node in &nodes {
        let mut c = node.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", store.prefix()))
            .query_async(&mut c)
            .await
            .unwrap();
        used += usize::from(!keys.is_empty());
    }
    assert!(used >= 2, "sessions should land on several cluster nodes");
    for key in &spread {
        store.delete(key, Timestamp::now()).await.unwrap();
    }
    assert!(everything(&nodes, store.prefix()).await.is_empty());
}

/// S6: after create, save, touch and rotate, no key name, DUMP or value
/// under the store's prefix holds a raw session ID or its cookie text.
async fn s6(cluster: bool) {
    let Some((store, nodes)) = setup(cluster).await else {
        return;
    };
    let user = format!("s6-{}", &SessionId::generate().storage_key().to_hex()[..8]);
    let first = SessionId::generate();
    let rec = record(Some(&user));
    store
        .create(&first.storage_key(), &rec, Timestamp::now())
        .await
        .unwrap();
    let mut next = rec.clone();
    next.version = 2;
    next.insert("more", "data").unwrap();
    store
        .save(&first.storage_key(), &next, 1, Timestamp::now())
        .await
        .unwrap();
    store
        .touch(
            &first.storage_key(),
            rec.idle_deadline.saturating_add(Duration::from_secs(60)),
            Timestamp::now(),
        )
        .await
        .unwrap();
    let anonymous = SessionId::generate();
    store
        .create(&anonymous.storage_key(), &record(None), Timestamp::now())
        .await
        .unwrap();
    let rotated = SessionId::generate();
    next.version = 3;
    store
        .rotate(
            &first.storage_key(),
            &rotated.storage_key(),
            &next,
            Timestamp::now(),
        )
        .await
        .unwrap();

    let all: Vec<u8> = everything(&nodes, store.prefix())
        .await
        .into_iter()
        .flat_map(|(_, bytes)| bytes)
        .collect();
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
    store
        .delete(&rotated.storage_key(), Timestamp::now())
        .await
        .unwrap();
    store
        .delete(&anonymous.storage_key(), Timestamp::now())
        .await
        .unwrap();
    assert!(
        everything(&nodes, store.prefix()).await.is_empty(),
        "deleting every session leaves nothing behind"
    );
}

#[tokio::test]
async fn s6_single_server_holds_no_usable_id() {
    s6(false).await;
}

#[tokio::test]
async fn s6_cluster_holds_no_usable_id() {
    s6(true).await;
}

#[tokio::test]
async fn connect_failure_is_unavailable_and_hides_password() {
    let port = free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}/");
    let started = std::time::Instant::now();
    let err = RedisStore::builder(&url)
        .with_connection_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "got {err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = RedisStore::connect("not a url").await.unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "got {err:?}");
    let err = RedisStore::connect_cluster(&[]).await.unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "got {err:?}");
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
        .with_prefix(random_prefix())
        .with_response_timeout(Duration::from_millis(500))
        .with_connection_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let key = SessionId::generate().storage_key();
    store
        .create(&key, &record(Some("recovery")), Timestamp::now())
        .await
        .unwrap();
    assert!(store.load(&key, Timestamp::now()).await.unwrap().is_some());

    server.shutdown();
    let bound = Duration::from_secs(10);
    for _ in 0..3 {
        let r = tokio::time::timeout(bound, store.load(&key, Timestamp::now())).await;
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
        match store.load(&key, Timestamp::now()).await {
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
        .create(&fresh, &record(Some("recovery")), Timestamp::now())
        .await
        .unwrap();
    assert!(
        store
            .load(&fresh, Timestamp::now())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .list_by_user("recovery", Timestamp::now())
            .await
            .unwrap()
            .len(),
        1
    );
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
