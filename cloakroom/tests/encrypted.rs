//! `EncryptedStore` wrapped around the stores: the conformance suite around
//! memory, SQLite and every networked store this build has (against their
//! real servers), what the inner store holds (no session data), and key
//! rotation with re-seal on save.
//!
//! The networked stores' servers are those of their own test files; an
//! unreachable one reports itself skipped, which fails under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

/// The time the tests judge liveness by: the wall clock.
fn now() -> cloakroom::Timestamp {
    cloakroom::Timestamp::now()
}

use std::time::Duration;

use cloakroom::crypto::{Keyring, MasterKey};
use cloakroom::store::{EncryptedStore, MemoryStore, SessionStore, StoreError};
use cloakroom::{SessionId, Timestamp};
use support::{contains, live_record};

fn keys() -> Keyring {
    Keyring::from(MasterKey::generate())
}

mod memory {
    use super::*;
    cloakroom::conformance_tests!(EncryptedStore::new(MemoryStore::new(), keys()));
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    fn store() -> EncryptedStore<cloakroom::store::SqliteStore> {
        // Leaked on purpose so it outlives the store's writer thread.
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let inner = cloakroom::store::SqliteStore::open(dir.join("sessions.db")).expect("open");
        EncryptedStore::new(inner, keys())
    }
    cloakroom::conformance_tests!(store());
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    async fn store() -> Result<EncryptedStore<cloakroom::store::RedisStore>, StoreError> {
        let prefix = format!("cloakroom-it-enc:{}:", support::services::random_hex(16));
        let inner = cloakroom::store::RedisStore::connect(&support::services::redis_url())
            .await?
            .with_prefix(prefix)?;
        Ok(EncryptedStore::new(inner, keys()))
    }
    cloakroom::conformance_tests!(service "redis", async store().await, native_expiry);
}

#[cfg(feature = "mongodb")]
mod mongodb {
    use super::*;
    async fn store() -> Result<EncryptedStore<cloakroom::store::MongoStore>, StoreError> {
        let inner = cloakroom::store::MongoStore::builder(&support::services::mongodb_url())
            .with_collection(format!("it_enc_{}", support::services::random_hex(16)))
            .connect()
            .await?;
        Ok(EncryptedStore::new(inner, keys()))
    }
    cloakroom::conformance_tests!(service "mongodb", async store().await);
}

#[cfg(feature = "dynamodb")]
mod dynamodb {
    use super::*;
    async fn store() -> Result<EncryptedStore<cloakroom::store::DynamoStore>, StoreError> {
        let endpoint = match cloakroom::store::StoreUrl::parse(&support::services::dynamodb_url()) {
            Ok(cloakroom::store::StoreUrl::DynamoDb { endpoint, .. }) => endpoint,
            other => panic!("CLOAKROOM_TEST_DYNAMODB_URL: {other:?}"),
        };
        let inner = cloakroom::store::DynamoStore::local_endpoint(
            &endpoint,
            &format!("it_enc_{}", support::services::random_hex(16)),
        )?;
        inner.create_table().await?;
        Ok(EncryptedStore::new(inner, keys()))
    }
    cloakroom::conformance_tests!(service "dynamodb", async store().await);
}

/// What the inner store holds carries neither the data nor the device
/// metadata, and a dump from one key does not open under another.
#[tokio::test]
async fn the_inner_store_holds_no_session_data() {
    let store = EncryptedStore::new(MemoryStore::new(), keys());
    let key = SessionId::generate().storage_key();
    let mut rec = live_record(Some("alice"));
    rec.insert("card", "4111 1111 1111 1111").unwrap();
    rec.device.user_agent = Some("SecretBrowser/1".into());
    rec.device.ip = Some("203.0.113.9".into());
    store.create(&key, &rec, now()).await.unwrap();
    let dump = store.inner().dump();
    assert_eq!(dump.len(), 1);
    for needle in [&b"4111 1111"[..], b"card", b"SecretBrowser", b"203.0.113.9"] {
        assert!(
            !contains(&dump[0].1, needle),
            "{:?} at rest",
            String::from_utf8_lossy(needle)
        );
    }
    let back = store.load(&key, now()).await.unwrap().unwrap();
    assert_eq!(
        back.get::<String>("card").unwrap().as_deref(),
        Some("4111 1111 1111 1111")
    );
    assert_eq!(back.device, rec.device);
    let listed = store.list_by_user("alice", now()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].record.device, rec.device);

    // The same inner record under another key is not a session.
    let other = SessionId::generate().storage_key();
    let raw = store.inner().load(&key, now()).await.unwrap().unwrap();
    store.inner().create(&other, &raw, now()).await.unwrap();
    assert!(matches!(
        store.load(&other, now()).await,
        Err(StoreError::Corrupt(_))
    ));
}

/// S35 at rest: with a new key listed first, records sealed under the old
/// one still load, and their next save re-seals them under the new one;
/// a key no longer listed opens nothing.
#[tokio::test]
async fn key_rotation_reseals_on_save() {
    let inner = std::sync::Arc::new(MemoryStore::new());
    let old = MasterKey::generate();
    let new = MasterKey::generate();
    let old_only = Keyring::new(vec![old.clone()]).unwrap();
    let both = Keyring::new(vec![new.clone(), old.clone()]).unwrap();
    let new_only = Keyring::new(vec![new]).unwrap();

    let key = SessionId::generate().storage_key();
    let mut rec = live_record(None);
    rec.insert("n", &1).unwrap();
    EncryptedStore::new(inner.clone(), old_only)
        .create(&key, &rec, now())
        .await
        .unwrap();
    assert!(matches!(
        EncryptedStore::new(inner.clone(), new_only.clone())
            .load(&key, now())
            .await,
        Err(StoreError::Corrupt(_))
    ));
    let rotating = EncryptedStore::new(inner.clone(), both);
    let mut loaded = rotating.load(&key, now()).await.unwrap().unwrap();
    loaded.insert("n", &2).unwrap();
    loaded.version = 2;
    rotating.save(&key, &loaded, 1, now()).await.unwrap();
    let back = EncryptedStore::new(inner.clone(), new_only)
        .load(&key, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.get::<i32>("n").unwrap(), Some(2));

    // Touch moves the deadline without re-sealing, and the deadline shows.
    let later = Timestamp::now().saturating_add(Duration::from_secs(3000));
    rotating.touch(&key, later, now()).await.unwrap();
    assert_eq!(
        rotating
            .load(&key, now())
            .await
            .unwrap()
            .unwrap()
            .idle_deadline,
        later
    );
}
