//! `MemcachedStore` against a real server: the conformance suite, the S6
//! key/value check and a compare-and-swap race, through the public API only
//! (plus a plain memcache client to read what the store wrote).
//!
//! The server comes from `CLOAKROOM_TEST_MEMCACHED_URL` (default
//! `memcache://127.0.0.1:11211`; `bash scripts/memcached.sh` starts one).
//! When it is unreachable the tests report themselves skipped, which fails
//! under `CI=true`.

#![cfg(feature = "memcached")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use cloakroom::store::conformance::skip_service;
use cloakroom::store::{MemcachedStore, SessionStore, StoreError};
use cloakroom::{Record, SessionId, StorageKey, Timestamp};
use sha2::{Digest, Sha256};

const DEFAULT_URL: &str = "memcache://127.0.0.1:11211";

fn url() -> String {
    std::env::var("CLOAKROOM_TEST_MEMCACHED_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

fn random_hex(n: usize) -> String {
    SessionId::generate().storage_key().to_hex()[..n].to_owned()
}

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

/// Reads raw items with a client of our own.
async fn raw_get(keys: Vec<String>) -> HashMap<String, Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let client = memcache::Client::connect(url()).unwrap();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        client.gets::<Vec<u8>>(&refs).unwrap()
    })
    .await
    .unwrap()
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
    store.create(&key, &rec).await.unwrap();
    let mut next = rec.clone();
    next.version = 2;
    next.insert("more", &[1, 2, 3]).unwrap();
    store.save(&key, &next, 1).await.unwrap();
    store
        .touch(
            &key,
            Timestamp::now().saturating_add(Duration::from_secs(900)),
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
    store.delete(&key).await.unwrap();
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
        store.create(&key, &rec).await.unwrap();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (store, barrier) = (store.clone(), barrier.clone());
            let mut next = rec.clone();
            next.insert("writer", &i).unwrap();
            next.version = 2;
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                (i, store.save(&key, &next, 1).await)
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
        let back = store.load(&key).await.unwrap().unwrap();
        assert_eq!(back.version, 2);
        assert_eq!(back.get::<i32>("writer").unwrap(), Some(winners[0]));
        store.delete(&key).await.unwrap();
    }
}

/// A store on an unreachable server reports `Unavailable` (not a skip:
/// this needs no server).
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let r = MemcachedStore::connect("memcache://127.0.0.1:1?connect_timeout=0.5").await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
}
