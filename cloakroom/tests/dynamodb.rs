//! `DynamoStore` against a real DynamoDB-compatible server (moto in CI,
//! see `scripts/dynamodb.sh`), through the public API plus the SDK client
//! to read what the store wrote: the conformance suite, S6, the index items
//! and their TTL, the item size limit, unswept expired items, the table
//! command.
//!
//! The endpoint comes from `CLOAKROOM_TEST_DYNAMODB_URL` (default
//! `dynamodb+http://127.0.0.1:8000/cloakroom_test`; its table name is not
//! used: every store gets a table of its own). When it is unreachable the
//! tests report themselves skipped, which fails under `CI=true`.

#![cfg(feature = "dynamodb")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

/// The time the tests judge liveness by: the wall clock.
fn now() -> cloakroom::Timestamp {
    cloakroom::Timestamp::now()
}

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use cloakroom::store::conformance::skip_service;
use cloakroom::store::{DynamoStore, SessionStore, StoreError, StoreUrl};
use cloakroom::{SessionId, StorageKey, Timestamp};
use sha2::{Digest, Sha256};
use support::services::{dynamodb_url, random_hex};
use support::{contains, live_record};

fn endpoint() -> String {
    match StoreUrl::parse(&dynamodb_url()) {
        Ok(StoreUrl::DynamoDb { endpoint, .. }) => endpoint,
        other => panic!("CLOAKROOM_TEST_DYNAMODB_URL is not a dynamodb+http:// URL: {other:?}"),
    }
}

/// A store on a table of its own, created for it.
async fn test_store() -> Result<DynamoStore, StoreError> {
    let store = DynamoStore::local_endpoint(&endpoint(), &format!("it_{}", random_hex(16)))?;
    store.create_table().await?;
    Ok(store)
}

async fn store_or_skip() -> Option<DynamoStore> {
    match test_store().await {
        Ok(s) => Some(s),
        Err(e) => {
            skip_service("dynamodb", &e);
            None
        }
    }
}

mod conformance {
    cloakroom::conformance_tests!(service "dynamodb", async super::test_store().await);
}

type Item = HashMap<String, AttributeValue>;

async fn scan(store: &DynamoStore) -> Vec<Item> {
    let out = store
        .client()
        .scan()
        .table_name(store.table())
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.items().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(item: &Item, name: &str) -> String {
    item.get(name).unwrap().as_s().unwrap().clone()
}

fn number(item: &Item, name: &str) -> u64 {
    item.get(name).unwrap().as_n().unwrap().parse().unwrap()
}

fn session_pk(key: &StorageKey) -> String {
    format!("s#{}", key.to_hex())
}

fn index_pk(user: &str) -> String {
    format!("u#{}", hex(&Sha256::digest(user.as_bytes())))
}

fn find<'a>(items: &'a [Item], pk: &str) -> Option<&'a Item> {
    items.iter().find(|i| text(i, "pk") == pk)
}

/// S6: neither the raw ID, nor its cookie form, nor its hex, nor the user
/// name appears in any key; no attribute holds the ID.
#[tokio::test]
async fn items_hold_no_session_id() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let id = SessionId::generate();
    let key = id.storage_key();
    let user = format!("s6-{}", random_hex(8));
    let mut rec = live_record(Some(&user));
    rec.insert("note", "hello").unwrap();
    store.create(&key, &rec, now()).await.unwrap();
    let mut next = rec.clone();
    next.version = 2;
    store.save(&key, &next, 1, now()).await.unwrap();
    let items = scan(&store).await;
    assert_eq!(items.len(), 2, "one session item and one index item");
    let hex_id = hex(id.as_bytes());
    for item in &items {
        let mut all = Vec::new();
        for (name, value) in item {
            all.extend_from_slice(name.as_bytes());
            match value {
                AttributeValue::S(s) | AttributeValue::N(s) => all.extend_from_slice(s.as_bytes()),
                AttributeValue::B(b) => all.extend_from_slice(b.as_ref()),
                other => panic!("unexpected attribute {other:?}"),
            }
        }
        for (what, needle) in [
            ("raw ID bytes", id.as_bytes().as_slice()),
            ("cookie ID", id.expose_secret().as_bytes()),
            ("hex ID", hex_id.as_bytes()),
        ] {
            assert!(!contains(&all, needle), "an item holds the {what}");
        }
        assert!(!text(item, "pk").contains(&user) && !text(item, "sk").contains(&user));
    }
    let session = find(&items, &session_pk(&key)).expect("the session item");
    assert_eq!(number(session, "v"), 2);
    assert!(contains(
        session.get("r").unwrap().as_b().unwrap().as_ref(),
        b"hello"
    ));
    store.delete(&key, now()).await.unwrap();
    assert!(scan(&store).await.is_empty(), "delete removes both items");
}

/// The index item carries the session's TTL, and `touch` moves both (and
/// only the deadline attributes: the record's bytes stay as they were).
#[tokio::test]
async fn index_items_expire_with_their_session() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let user = format!("ttl-{}", random_hex(8));
    let key = SessionId::generate().storage_key();
    let rec = live_record(Some(&user));
    store.create(&key, &rec, now()).await.unwrap();
    let items = scan(&store).await;
    let session = find(&items, &session_pk(&key)).unwrap().clone();
    let index = find(&items, &index_pk(&user)).unwrap();
    assert_eq!(text(index, "sk"), key.to_hex());
    assert_eq!(
        number(&session, "ttl"),
        rec.expires_at().as_millis().div_ceil(1000)
    );
    assert_eq!(number(index, "ttl"), number(&session, "ttl"));

    let later = Timestamp::now().saturating_add(Duration::from_secs(3600));
    store.touch(&key, later, now()).await.unwrap();
    let items = scan(&store).await;
    let touched = find(&items, &session_pk(&key)).unwrap();
    let index = find(&items, &index_pk(&user)).unwrap();
    assert_eq!(number(touched, "ttl"), later.as_millis().div_ceil(1000));
    assert_eq!(number(index, "ttl"), number(touched, "ttl"));
    assert_eq!(touched.get("r"), session.get("r"), "record bytes unchanged");
    assert_eq!(number(touched, "v"), number(&session, "v"));
    // Signing out removes the index item in the same write.
    let mut out = store.load(&key, now()).await.unwrap().unwrap();
    out.user = None;
    out.version += 1;
    store.save(&key, &out, 1, now()).await.unwrap();
    assert!(find(&scan(&store).await, &index_pk(&user)).is_none());
}

/// A record over DynamoDB's item limit is `TooLarge` and nothing is
/// written.
#[tokio::test]
async fn oversized_records_are_refused() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let key = SessionId::generate().storage_key();
    let mut rec = live_record(Some("big"));
    rec.insert("blob", &"x".repeat(400 * 1024)).unwrap();
    let r = store.create(&key, &rec, now()).await;
    assert!(
        matches!(r, Err(StoreError::TooLarge { limit, .. }) if limit < 400 * 1024),
        "{r:?}"
    );
    assert!(scan(&store).await.is_empty());
    let small = live_record(None);
    store.create(&key, &small, now()).await.unwrap();
    let mut grown = rec.clone();
    grown.version = 2;
    assert!(matches!(
        store.save(&key, &grown, 1, now()).await,
        Err(StoreError::TooLarge { .. })
    ));
    assert_eq!(store.load(&key, now()).await.unwrap().unwrap().version, 1);
}

/// An expired item the TTL has not deleted is still in the table but never
/// served, and a new session may take its key; `delete_expired` removes it
/// with its index item.
#[tokio::test]
async fn unswept_expired_items_are_filtered_then_reaped() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let key = SessionId::generate().storage_key();
    let mut rec = live_record(Some("late"));
    rec.idle_deadline = Timestamp::now().saturating_sub(Duration::from_secs(5));
    store.create(&key, &rec, now()).await.unwrap();
    assert_eq!(scan(&store).await.len(), 2);
    assert!(store.load(&key, now()).await.unwrap().is_none());
    assert!(store.list_by_user("late", now()).await.unwrap().is_empty());
    assert_eq!(store.delete_expired(now()).await.unwrap(), 1);
    assert!(scan(&store).await.is_empty());
    store.create(&key, &rec, now()).await.unwrap();
    store.create(&key, &live_record(None), now()).await.unwrap();
    assert!(store.load(&key, now()).await.unwrap().is_some());
}

/// `create_table` is idempotent and enables TTL on `ttl`; connecting to a
/// missing table says how to create it.
#[tokio::test]
async fn the_table_command_is_idempotent() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    store.create_table().await.unwrap();
    let ttl = store
        .client()
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    let d = ttl.time_to_live_description().unwrap();
    assert_eq!(d.attribute_name(), Some("ttl"));
    DynamoStore::connect_endpoint(&endpoint(), store.table())
        .await
        .unwrap();
    let e = DynamoStore::connect_endpoint(&endpoint(), &format!("missing_{}", random_hex(8)))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Other(_)), "{e:?}");
    assert!(e.to_string().contains("dynamodb-create-table"), "{e}");
}

/// Garbage under a session key is `Corrupt`, never a session.
#[tokio::test]
async fn foreign_items_are_corrupt() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let key = SessionId::generate().storage_key();
    store
        .client()
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S(session_pk(&key)))
        .item("sk", AttributeValue::S("s".into()))
        .item("v", AttributeValue::N("1".into()))
        .item("exp", AttributeValue::N(u64::MAX.to_string()))
        .item("abs", AttributeValue::N(u64::MAX.to_string()))
        .item("idle", AttributeValue::N(u64::MAX.to_string()))
        .item("r", AttributeValue::S("garbage".into()))
        .send()
        .await
        .unwrap();
    let r = store.load(&key, now()).await;
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    assert_eq!(r.unwrap_err().backend(), Some("dynamodb"));
    assert!(matches!(
        store.create(&key, &live_record(None), now()).await,
        Err(StoreError::Conflict)
    ));
    store.delete(&key, now()).await.unwrap();
    assert!(store.load(&key, now()).await.unwrap().is_none());
}

/// An unreachable endpoint is `Unavailable` (needs no server).
#[tokio::test]
async fn unreachable_endpoint_is_unavailable() {
    let e = DynamoStore::connect_endpoint("http://127.0.0.1:1", "sessions")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert_eq!(e.backend(), Some("dynamodb"));
    assert!(DynamoStore::local_endpoint("https://dynamodb.example", "t").is_err());
}
