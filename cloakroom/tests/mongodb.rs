//! `MongoStore` against a real MongoDB wire-protocol server (SecantusDB in
//! CI, see `scripts/mongodb.sh`), through the public API plus a driver
//! client of our own to read what the store wrote: the conformance suite,
//! S6, the indexes, `touch` leaving the record alone, expired documents
//! that are still there (no TTL sweep) but never served, and corrupt ones.
//!
//! The server comes from `CLOAKROOM_TEST_MONGODB_URL` (default
//! `mongodb://127.0.0.1:27017/cloakroom_test`). When it is unreachable the
//! tests report themselves skipped, which fails under `CI=true`. Each store
//! gets a collection of its own, so tests never see each other's sessions.

#![cfg(feature = "mongodb")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

/// The time the tests judge liveness by: the wall clock.
fn now() -> cloakroom::Timestamp {
    cloakroom::Timestamp::now()
}

use std::time::Duration;

use cloakroom::store::conformance::skip_service;
use cloakroom::store::{MongoStore, SessionStore, StoreError};
use cloakroom::{SessionId, StorageKey, Timestamp};
use mongodb::bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use support::services::{mongodb_url, random_hex};
use support::{contains, live_record};

/// A store on a throwaway collection.
async fn test_store() -> Result<MongoStore, StoreError> {
    MongoStore::builder(&mongodb_url())
        .with_collection(format!("it_{}", random_hex(16)))
        .connect()
        .await
}

async fn store_or_skip() -> Option<MongoStore> {
    match test_store().await {
        Ok(s) => Some(s),
        Err(e) => {
            skip_service("mongodb", &e);
            None
        }
    }
}

mod conformance {
    cloakroom::conformance_tests!(service "mongodb", async super::test_store().await);
}

/// The store's collection, through a client of our own.
async fn raw_collection(store: &MongoStore) -> mongodb::Collection<Document> {
    let client = mongodb::Client::with_uri_str(mongodb_url()).await.unwrap();
    let ns = store.namespace();
    let (db, coll) = ns.split_once('.').unwrap();
    client.database(db).collection(coll)
}

fn id(key: &StorageKey) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: key.0.to_vec(),
    })
}

async fn all_docs(coll: &mongodb::Collection<Document>) -> Vec<Document> {
    let mut cursor = coll.find(doc! {}).await.unwrap();
    let mut out = Vec::new();
    while cursor.advance().await.unwrap() {
        out.push(cursor.deserialize_current().unwrap());
    }
    out
}

/// S6: neither the raw ID, nor its cookie form, nor its hex appears in any
/// document the store wrote; the `_id` is the storage key.
#[tokio::test]
async fn documents_hold_no_session_id() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let id_ = SessionId::generate();
    let key = id_.storage_key();
    let user = format!("s6-{}", random_hex(8));
    let mut rec = live_record(Some(&user));
    rec.insert("note", "hello").unwrap();
    rec.device.user_agent = Some("s6/1".into());
    store.create(&key, &rec, now()).await.unwrap();
    let mut next = rec.clone();
    next.version = 2;
    store.save(&key, &next, 1, now()).await.unwrap();
    let docs = all_docs(&raw_collection(&store).await).await;
    assert_eq!(docs.len(), 1, "one document per session");
    let bytes = mongodb::bson::serialize_to_vec(&docs[0]).unwrap();
    let hex_id: String = id_.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    for (what, needle) in [
        ("raw ID bytes", id_.as_bytes().as_slice()),
        ("cookie ID", id_.expose_secret().as_bytes()),
        ("hex ID", hex_id.as_bytes()),
    ] {
        assert!(!contains(&bytes, needle), "the document holds the {what}");
    }
    assert!(contains(&bytes, b"hello"), "the record is there");
    assert_eq!(docs[0].get("_id"), Some(&id(&key)));
    assert_eq!(docs[0].get_i64("v").unwrap(), 2);
    store.delete(&key, now()).await.unwrap();
}

/// `connect` creates the TTL index on `exp` and the sparse user index,
/// and connecting again (a second instance) is a no-op.
#[tokio::test]
async fn indexes_are_created_idempotently() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let ns = store.namespace();
    let (db, coll) = ns.split_once('.').unwrap();
    let again = MongoStore::builder(&mongodb_url())
        .with_database(db)
        .with_collection(coll)
        .connect()
        .await
        .unwrap();
    assert_eq!(again.namespace(), ns);
    let raw = raw_collection(&store).await;
    let mut cursor = raw.list_indexes().await.unwrap();
    let mut seen = Vec::new();
    while cursor.advance().await.unwrap() {
        let model = cursor.deserialize_current().unwrap();
        let name = model
            .options
            .as_ref()
            .and_then(|o| o.name.clone())
            .unwrap_or_default();
        if name == "cloakroom_expiry" {
            assert_eq!(model.keys, doc! { "exp": 1 });
            assert_eq!(
                model.options.as_ref().and_then(|o| o.expire_after),
                Some(Duration::ZERO)
            );
        }
        if name == "cloakroom_user" {
            assert_eq!(model.keys, doc! { "u": 1 });
        }
        seen.push(name);
    }
    assert!(seen.iter().any(|n| n == "cloakroom_expiry"), "{seen:?}");
    assert!(seen.iter().any(|n| n == "cloakroom_user"), "{seen:?}");
}

/// `touch` moves `idle` and `exp.0` and leaves the record's bytes and the
/// version alone.
#[tokio::test]
async fn touch_never_rewrites_the_record() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let raw = raw_collection(&store).await;
    let key = SessionId::generate().storage_key();
    let mut rec = live_record(None);
    rec.insert("k", "v").unwrap();
    store.create(&key, &rec, now()).await.unwrap();
    let before = raw
        .find_one(doc! { "_id": id(&key) })
        .await
        .unwrap()
        .unwrap();
    let later = Timestamp::now().saturating_add(Duration::from_secs(900));
    store.touch(&key, later, now()).await.unwrap();
    let after = raw
        .find_one(doc! { "_id": id(&key) })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.get("r"), after.get("r"), "record bytes unchanged");
    assert_eq!(before.get("v"), after.get("v"), "version unchanged");
    let millis = i64::try_from(later.as_millis()).unwrap();
    assert_eq!(
        after.get_datetime("idle").unwrap().timestamp_millis(),
        millis
    );
    let exp = after.get_array("exp").unwrap();
    assert_eq!(exp[0].as_datetime().unwrap().timestamp_millis(), millis);
    assert_eq!(exp[1], before.get_array("exp").unwrap()[1]);
    store.delete(&key, now()).await.unwrap();
}

/// An expired document the TTL monitor has not swept (SecantusDB has no
/// monitor) is still in the collection but never served; `delete_expired`
/// removes it.
#[tokio::test]
async fn unswept_expired_documents_are_filtered_then_reaped() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let raw = raw_collection(&store).await;
    let key = SessionId::generate().storage_key();
    let mut rec = live_record(Some("late"));
    rec.idle_deadline = Timestamp::now().saturating_sub(Duration::from_secs(5));
    store.create(&key, &rec, now()).await.unwrap();
    assert!(
        raw.find_one(doc! { "_id": id(&key) })
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.load(&key, now()).await.unwrap().is_none());
    assert!(store.list_by_user("late", now()).await.unwrap().is_empty());
    // A new session may take the key of an expired one.
    let fresh = live_record(None);
    store.create(&key, &fresh, now()).await.unwrap();
    assert!(store.load(&key, now()).await.unwrap().is_some());
    store.delete(&key, now()).await.unwrap();

    let gone = SessionId::generate().storage_key();
    store.create(&gone, &rec, now()).await.unwrap();
    assert!(store.delete_expired(now()).await.unwrap() >= 1);
    assert!(
        raw.find_one(doc! { "_id": id(&gone) })
            .await
            .unwrap()
            .is_none()
    );
}

/// A document that is not in the store's layout is `Corrupt`, never a
/// session, and never overwritten by `create`.
#[tokio::test]
async fn foreign_documents_are_corrupt() {
    let Some(store) = store_or_skip().await else {
        return;
    };
    let raw = raw_collection(&store).await;
    let key = SessionId::generate().storage_key();
    // 2100-01-01: live.
    let far = mongodb::bson::DateTime::from_millis(4_102_444_800_000);
    raw.insert_one(doc! { "_id": id(&key), "v": 1_i64, "idle": far, "abs": far, "exp": [far, far], "r": "garbage" })
        .await
        .unwrap();
    let r = store.load(&key, now()).await;
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    assert_eq!(r.unwrap_err().backend(), Some("mongodb"));
    let r = store.create(&key, &live_record(None), now()).await;
    assert!(matches!(r, Err(StoreError::Conflict)), "{r:?}");
    store.delete(&key, now()).await.unwrap();
    assert!(store.load(&key, now()).await.unwrap().is_none());
}

/// An unreachable server is `Unavailable`, named as MongoDB's (needs no
/// server).
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let e = MongoStore::connect("mongodb://127.0.0.1:1/x?serverSelectionTimeoutMS=300")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert_eq!(e.backend(), Some("mongodb"));
    let e = MongoStore::connect("mongodb://").await.unwrap_err();
    assert!(matches!(e, StoreError::Other(_)), "{e:?}");
}
