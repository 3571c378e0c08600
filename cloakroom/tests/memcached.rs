//! `MemcachedStore` against a real server, through the public API only
//! (plus a plain memcache client to read and plant what the store would
//! write): the conformance suite, S6, a compare-and-swap race, exptimes,
//! corrupt items and the per-user index's self-healing.
//!
//! The server comes from `CLOAKROOM_TEST_MEMCACHED_URL` (default
//! `memcache://127.0.0.1:11211`; `bash scripts/memcached.sh` starts one).
//! When it is unreachable the tests report themselves skipped, which fails
//! under `CI=true`.

#![cfg(feature = "memcached")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::services;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use cloakroom::store::conformance::skip_service;
use cloakroom::store::{MemcachedStore, SessionStore, StoreError};
use cloakroom::{Record, SessionId, StorageKey, Timestamp};
use services::{memcached_url as url, random_hex};
use sha2::{Digest, Sha256};

/// A store with a prefix of its own, so tests never see each other's keys.
async fn test_store() -> Result<MemcachedStore, StoreError> {
    MemcachedStore::connect(&url())
        .await?
        .with_prefix(&format!("cloakroom-it-{}:", random_hex(16)))
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

mod conformance {
    cloakroom::conformance_tests!(service "memcached", async super::test_store().await, native_expiry);
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

/// The documented key layout.
fn session_key(store: &MemcachedStore, key: &StorageKey) -> String {
    format!("{}s:{}", store.prefix(), key.to_hex())
}

fn index_key(store: &MemcachedStore, user: &str) -> String {
    let digest = StorageKey(Sha256::digest(user.as_bytes()).into());
    format!("{}u:{}", store.prefix(), digest.to_hex())
}

/// Runs `f` with a plain client of our own, off the runtime.
async fn raw<T: Send + 'static>(f: impl FnOnce(&memcache::Client) -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(move || f(&memcache::Client::connect(url()).unwrap()))
        .await
        .unwrap()
}

/// Reads raw items with a client of our own.
async fn raw_get(keys: Vec<String>) -> HashMap<String, Vec<u8>> {
    raw(move |c| {
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        c.gets::<Vec<u8>>(&refs).unwrap()
    })
    .await
}

/// Writes `value` under `key` if it is free, expiring in `secs` seconds
/// (as an absolute Unix time, as the store writes them).
async fn raw_add(key: String, value: Vec<u8>, secs: u64) {
    let exptime = u32::try_from(services::unix_secs() + secs).unwrap();
    raw(move |c| c.add(&key, &value[..], exptime).unwrap()).await;
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

/// A user index item in the documented layout: format 1, then per entry
/// the storage key, its absolute deadline and when it was indexed (ms,
/// big-endian).
fn index_item(entries: &[(StorageKey, Timestamp, Timestamp)]) -> Vec<u8> {
    let mut out = vec![1];
    for (key, absolute_deadline, indexed_at) in entries {
        out.extend_from_slice(&key.0);
        out.extend_from_slice(&absolute_deadline.as_millis().to_be_bytes());
        out.extend_from_slice(&indexed_at.as_millis().to_be_bytes());
    }
    out
}

/// The storage keys a user index item lists, sorted.
fn index_item_keys(value: &[u8]) -> Vec<StorageKey> {
    assert_eq!(value[0], 1, "index format");
    let mut keys: Vec<StorageKey> = value[1..]
        .chunks_exact(48)
        .map(|entry| StorageKey(entry[..32].try_into().unwrap()))
        .collect();
    keys.sort();
    keys
}

fn user(tag: &str) -> String {
    format!("{tag}-{}", random_hex(8))
}

/// S6: neither the 32 raw ID bytes, nor the 43-character cookie form, nor
/// the ID in hex appears in any key or value the store wrote.
#[tokio::test]
async fn keys_and_values_hold_no_session_id() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let id = SessionId::generate();
    let key = id.storage_key();
    let user = format!("s6-{}", random_hex(8));
    let mut rec = live_record(Some(&user));
    rec.insert("note", "hello").unwrap();
    rec.device.user_agent = Some("s6/1".into());
    rec.device.ip = Some("192.0.2.1".into());
    store.create(&key, &rec, Timestamp::now()).await.unwrap();
    let mut next = rec.clone();
    next.version = 2;
    next.insert("more", &[1, 2, 3]).unwrap();
    store.save(&key, &next, 1, Timestamp::now()).await.unwrap();
    store
        .touch(
            &key,
            Timestamp::now().saturating_add(Duration::from_secs(900)),
            Timestamp::now(),
        )
        .await
        .unwrap();

    let written = vec![session_key(&store, &key), index_key(&store, &user)];
    let items = raw_get(written.clone()).await;
    assert_eq!(
        items.len(),
        written.len(),
        "the store wrote exactly the documented keys"
    );
    let hex_id: String = id.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let needles: [(&str, &[u8]); 3] = [
        ("raw ID bytes", id.as_bytes()),
        ("cookie ID", id.expose_secret().as_bytes()),
        ("hex ID", hex_id.as_bytes()),
    ];
    for k in &written {
        let value = &items[k];
        assert!(!value.is_empty());
        for (what, needle) in needles {
            assert!(!contains(k.as_bytes(), needle), "key {k} holds the {what}");
            assert!(!contains(value, needle), "value of {k} holds the {what}");
        }
    }
    // The session item is the record behind an 8-byte deadline; the index
    // holds the storage key (a hash), not the ID.
    assert!(contains(&items[&written[0]], b"hello"));
    assert!(contains(&items[&written[1]], &key.0));
    store.delete(&key, Timestamp::now()).await.unwrap();
}

/// Of 16 saves racing from 16 tasks on one expected version, exactly one
/// wins; the others see `VersionConflict` and the winner's data is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_saves_have_one_winner() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    for _round in 0..3 {
        let key = SessionId::generate().storage_key();
        let rec = live_record(Some("racer"));
        store.create(&key, &rec, Timestamp::now()).await.unwrap();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (store, barrier) = (store.clone(), barrier.clone());
            let mut next = rec.clone();
            next.insert("writer", &i).unwrap();
            next.version = 2;
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                (i, store.save(&key, &next, 1, Timestamp::now()).await)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (i, Ok(())) => winners.push(i),
                (_, Err(StoreError::VersionConflict)) => {}
                (_, Err(e)) => panic!("a losing save must be VersionConflict, got {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let back = store.load(&key, Timestamp::now()).await.unwrap().unwrap();
        assert_eq!(back.version, 2);
        assert_eq!(back.get::<i32>("writer").unwrap(), Some(winners[0]));
        store.delete(&key, Timestamp::now()).await.unwrap();
    }
}

/// A store on an unreachable server reports `Unavailable` (not a skip:
/// this needs no server).
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let r = MemcachedStore::connect("memcache://127.0.0.1:1?connect_timeout=0.5").await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
}

/// A store whose server is unreachable or whose URL is refused says its
/// errors come from memcached (matters inside a `TieredStore`).
#[tokio::test]
async fn errors_name_the_backend() {
    let r = MemcachedStore::connect("memcache://127.0.0.1:1?connect_timeout=0.5").await;
    let e = r.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert_eq!(e.backend(), Some("memcached"));
    assert!(e.to_string().contains("memcached"), "{e}");
    for bad in [
        "memcache+udp://127.0.0.1:11211",
        "memcache://h:1?pool_size=0",
    ] {
        let e = MemcachedStore::connect(bad).await.unwrap_err();
        assert!(matches!(e, StoreError::Other(_)), "{bad}: {e:?}");
        assert_eq!(e.backend(), Some("memcached"), "{bad}");
    }
}

/// The item's exptime is the record's deadline, rounded up; touch moves
/// it and rewrites only the deadline header.
#[tokio::test]
async fn exptime_follows_deadlines_and_touch_keeps_bytes() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let key = SessionId::generate().storage_key();
    let skey = session_key(&store, &key);
    let mut rec = live_record(None);
    rec.idle_deadline = Timestamp::now().saturating_add(Duration::from_secs(100));
    rec.insert("k", "v").unwrap();
    store.create(&key, &rec, Timestamp::now()).await.unwrap();
    let ttl = server_ttl(&skey).expect("created item exists");
    // memcached turns an absolute exptime into a TTL with its own coarse
    // clock, which may sit a few seconds off the wall clock.
    assert!((95..=105).contains(&ttl), "ttl {ttl}");

    let before = raw_get(vec![skey.clone()]).await.remove(&skey).unwrap();
    let later = Timestamp::now().saturating_add(Duration::from_secs(1000));
    store.touch(&key, later, Timestamp::now()).await.unwrap();
    let after = raw_get(vec![skey.clone()]).await.remove(&skey).unwrap();
    assert_eq!(&before[8..], &after[8..], "data bytes identical");
    assert_eq!(&after[..8], &later.as_millis().to_be_bytes());
    let ttl = server_ttl(&skey).unwrap();
    assert!((995..=1005).contains(&ttl), "ttl after touch {ttl}");

    // Touch past the absolute deadline: the exptime stops there.
    let beyond = rec
        .absolute_deadline
        .saturating_add(Duration::from_secs(3600));
    store.touch(&key, beyond, Timestamp::now()).await.unwrap();
    let ttl = server_ttl(&skey).unwrap();
    assert!((42_995..=43_205).contains(&ttl), "ttl capped {ttl}");
    store.delete(&key, Timestamp::now()).await.unwrap();
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
    store.create(&key, &rec, Timestamp::now()).await.unwrap();
    assert_eq!(server_ttl(&session_key(&store, &key)), None);
    assert_eq!(server_ttl(&index_key(&store, "late")), None);
}

/// Garbage under a session key is `Corrupt`, never a session, and never
/// overwritten by `create`.
#[tokio::test]
async fn garbage_is_corrupt() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let key = SessionId::generate().storage_key();
    raw_add(
        session_key(&store, &key),
        b"\x00\x00\x01garbage".to_vec(),
        60,
    )
    .await;
    let r = store.load(&key, Timestamp::now()).await;
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    assert_eq!(r.unwrap_err().backend(), Some("memcached"));
    let r = store
        .create(&key, &live_record(None), Timestamp::now())
        .await;
    assert!(matches!(r, Err(StoreError::Conflict)), "{r:?}");
    let mut next = live_record(None);
    next.version = 2;
    let r = store.save(&key, &next, 1, Timestamp::now()).await;
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    store.delete(&key, Timestamp::now()).await.unwrap();
    assert!(store.load(&key, Timestamp::now()).await.unwrap().is_none());
}

/// An unreadable user index is `Corrupt` to the readers, and the next
/// session of that user replaces it with a good one.
#[tokio::test]
async fn corrupt_index_is_replaced_by_the_next_create() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let user = user("bad-index");
    raw_add(index_key(&store, &user), b"\x09nonsense".to_vec(), 60).await;
    let r = store.list_by_user(&user, Timestamp::now()).await;
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    let key = SessionId::generate().storage_key();
    store
        .create(&key, &live_record(Some(&user)), Timestamp::now())
        .await
        .unwrap();
    let listed = store.list_by_user(&user, Timestamp::now()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, key);
    assert_eq!(
        store
            .delete_by_user(&user, None, Timestamp::now())
            .await
            .unwrap(),
        1
    );
}

/// A lost (evicted) index misses sessions until their next save puts the
/// entry back.
#[tokio::test]
async fn lost_index_heals_on_save() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let user = user("heal");
    let key = SessionId::generate().storage_key();
    let rec = live_record(Some(&user));
    store.create(&key, &rec, Timestamp::now()).await.unwrap();
    assert_eq!(
        store
            .list_by_user(&user, Timestamp::now())
            .await
            .unwrap()
            .len(),
        1
    );

    let ikey = index_key(&store, &user);
    assert!(raw(move |c| c.delete(&ikey).unwrap()).await);
    assert!(
        store
            .list_by_user(&user, Timestamp::now())
            .await
            .unwrap()
            .is_empty()
    );

    let mut next = rec.clone();
    next.version = 2;
    store.save(&key, &next, 1, Timestamp::now()).await.unwrap();
    let listed = store.list_by_user(&user, Timestamp::now()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, key);
    store.delete(&key, Timestamp::now()).await.unwrap();
}

/// Listing drops entries of deleted sessions once they are older than
/// the grace period (a minute), and keeps young ones (a create may be
/// under way); entries past their absolute deadline go at once.
#[tokio::test]
async fn listing_cleans_old_stale_entries() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let user = user("clean");
    let old = SessionId::generate().storage_key();
    let young = SessionId::generate().storage_key();
    let live = SessionId::generate().storage_key();
    let now = Timestamp::now();
    let far = now.saturating_add(Duration::from_secs(3600));
    let entries = [
        (old, far, now.saturating_sub(Duration::from_secs(61))),
        (young, far, now),
        (
            SessionId::generate().storage_key(),
            now.saturating_sub(Duration::from_secs(1)),
            now,
        ),
    ];
    let ikey = index_key(&store, &user);
    raw_add(ikey.clone(), index_item(&entries), 3600).await;
    store
        .create(&live, &live_record(Some(&user)), Timestamp::now())
        .await
        .unwrap();
    let listed = store.list_by_user(&user, Timestamp::now()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, live);

    let left = index_item_keys(&raw_get(vec![ikey.clone()]).await[&ikey]);
    let mut want = vec![young, live];
    want.sort();
    assert_eq!(left, want, "old and expired entries dropped, young kept");
    store.delete(&live, Timestamp::now()).await.unwrap();
}

/// `delete_by_user` does not delete a session that moved to another
/// user, even though the first user's index still lists it.
#[tokio::test]
async fn delete_by_user_spares_moved_sessions() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let (alice, bob) = (user("a"), user("b"));
    let key = SessionId::generate().storage_key();
    let rec = live_record(Some(&alice));
    store.create(&key, &rec, Timestamp::now()).await.unwrap();
    let mut moved = rec.clone();
    moved.user = Some(bob.clone());
    moved.version = 2;
    store.save(&key, &moved, 1, Timestamp::now()).await.unwrap();
    assert_eq!(
        store
            .delete_by_user(&alice, None, Timestamp::now())
            .await
            .unwrap(),
        0
    );
    assert!(store.load(&key, Timestamp::now()).await.unwrap().is_some());
    assert_eq!(
        store
            .list_by_user(&bob, Timestamp::now())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .delete_by_user(&bob, None, Timestamp::now())
            .await
            .unwrap(),
        1
    );
    assert!(store.load(&key, Timestamp::now()).await.unwrap().is_none());
}

/// Many concurrent creates for one user all land in the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_index_writers_lose_nothing() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let user = user("many");
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (store, user) = (store.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            let key = SessionId::generate().storage_key();
            store
                .create(&key, &live_record(Some(&user)), Timestamp::now())
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
        .list_by_user(&user, Timestamp::now())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    listed.sort();
    assert_eq!(listed, keys);
    assert_eq!(
        store
            .delete_by_user(&user, None, Timestamp::now())
            .await
            .unwrap(),
        12
    );
    assert!(
        store
            .list_by_user(&user, Timestamp::now())
            .await
            .unwrap()
            .is_empty()
    );
}
