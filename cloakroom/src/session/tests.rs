//! White-box tests of the save pipeline's bookkeeping.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue};

use super::{Context, Engine, ServerMode, Session};
use crate::config::SessionConfig;
use crate::expiry::Timestamp;
use crate::id::{SessionId, StorageKey};
use crate::record::Record;
use crate::store::{MemoryStore, SessionStore, StoreError, StoreStats, UserSession};

/// A memory store whose saves take a while, so that a request can be
/// cancelled in the middle of one.
struct SlowSaves(MemoryStore);

#[async_trait]
impl SessionStore for SlowSaves {
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.0.create(key, record, now).await
    }
    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError> {
        self.0.load(key, now).await
    }
    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        v: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.0.save(key, record, v, now).await
    }
    async fn touch(
        &self,
        key: &StorageKey,
        idle: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.0.touch(key, idle, now).await
    }
    async fn delete(&self, key: &StorageKey, now: Timestamp) -> Result<(), StoreError> {
        self.0.delete(key, now).await
    }
    async fn rotate(
        &self,
        o: &StorageKey,
        n: &StorageKey,
        r: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.0.rotate(o, n, r, now).await
    }
    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        self.0.list_by_user(user, now).await
    }
    async fn delete_by_user(
        &self,
        u: &str,
        e: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.0.delete_by_user(u, e, now).await
    }
    async fn delete_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.0.delete_expired(now).await
    }
    async fn stats(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        self.0.stats(now).await
    }
}

// Issue 7 defect 8: a save cancelled between taking its lane and giving it
// back (the client went away) left the lane, and the record it may hold,
// in the map for good.
#[tokio::test(start_paused = true)]
async fn d8_cancelled_saves_leave_no_lanes_behind() {
    let store = Arc::new(SlowSaves(MemoryStore::new()));
    let ctx = Arc::new(Context::new(
        SessionConfig::default(),
        Engine::Server(ServerMode::new(store.clone())),
    ));
    let cancelled = 10_000;
    let mut ids = Vec::with_capacity(64);
    for _ in 0..64 {
        let id = SessionId::generate();
        let mut r = Record::new(
            Timestamp::now(),
            Duration::from_secs(1800),
            Duration::from_secs(3600),
        );
        r.version = 1;
        store
            .create(&id.storage_key(), &r, Timestamp::now())
            .await
            .expect("create");
        ids.push(id);
    }
    for i in 0..cancelled {
        let id = &ids[i % ids.len()];
        let mut headers = HeaderMap::new();
        let cookie = format!("__Host-id={}", id.expose_secret());
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_str(&cookie).expect("ascii"),
        );
        let session = Session::from_headers(ctx.clone(), &headers, None);
        session.insert("n", &i).await.expect("insert");
        // The save sleeps 50 ms: the request is dropped half-way.
        let finished = tokio::time::timeout(
            Duration::from_millis(5),
            session.finish(http::StatusCode::OK),
        )
        .await;
        assert!(finished.is_err(), "the save was meant to be cut short");
    }
    let Engine::Server(server) = &ctx.engine else {
        unreachable!("built as a server-side engine")
    };
    assert_eq!(server.lanes().len(), 0, "lanes left behind");
}

// `SessionLayer::save_lanes_in_use` (feature `test-util`, for soak tests):
// a save in flight holds its session's lane, and none is left after it.
#[tokio::test(start_paused = true)]
async fn save_lanes_in_use_counts_saves_in_flight() {
    use tower::{Layer, ServiceExt};
    let store: Arc<dyn SessionStore> = Arc::new(SlowSaves(MemoryStore::new()));
    let id = SessionId::generate();
    let mut r = Record::new(
        Timestamp::now(),
        Duration::from_secs(1800),
        Duration::from_secs(3600),
    );
    r.version = 1;
    store
        .create(&id.storage_key(), &r, Timestamp::now())
        .await
        .expect("create");
    let layer = crate::SessionLayer::new(store).build().expect("valid");
    assert_eq!(layer.save_lanes_in_use(), 0);
    let svc = layer.layer(tower::service_fn(|req: http::Request<String>| async move {
        let session = req.extensions().get::<Session>().cloned().expect("session");
        session.insert("n", &1u32).await.expect("insert");
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    }));
    let req = http::Request::builder()
        .header("cookie", format!("__Host-id={}", id.expose_secret()))
        .body(String::new())
        .expect("request");
    let request = tokio::spawn(svc.oneshot(req));
    // The save sleeps 50 ms: half-way through, its lane is held.
    tokio::time::sleep(Duration::from_millis(25)).await;
    assert_eq!(
        layer.save_lanes_in_use(),
        1,
        "the save in flight holds a lane"
    );
    let res = request.await.expect("joined").expect("infallible");
    assert!(res.status().is_success());
    assert_eq!(layer.save_lanes_in_use(), 0, "lanes left behind");
}
