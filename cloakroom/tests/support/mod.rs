//! The integration tests' one support module: a test app, a request
//! helper, store wrappers that count calls or fail on demand, and (in
//! `services`) where the test servers are and how throwaway databases are
//! named.
#![allow(dead_code, missing_docs)]

pub mod pausing;
pub mod services;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub mod sql;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use cloakroom::store::{SessionStore, StoreError, StoreStats, UserSession};
use cloakroom::{LoginOptions, Record, Session, SessionError, SessionLayer, StorageKey, Timestamp};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Routes exercising every part of the session API.
pub fn routes() -> Router {
    Router::new()
        .route("/plain", get(|| async { "plain" }))
        .route(
            "/read",
            get(|session: Session| async move {
                let n: Option<u64> = session.get("n").await?;
                Ok::<_, SessionError>(n.map_or("none".to_owned(), |n| n.to_string()))
            }),
        )
        .route(
            "/write",
            post(|session: Session| async move {
                let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
                session.insert("n", &n).await?;
                Ok::<_, SessionError>(n.to_string())
            }),
        )
        .route(
            "/put/{key}/{value}",
            post(
                |session: Session, Path((k, v)): Path<(String, String)>| async move {
                    session.insert(&k, &v).await?;
                    Ok::<_, SessionError>(StatusCode::NO_CONTENT)
                },
            ),
        )
        .route(
            "/get/{key}",
            get(|session: Session, Path(k): Path<String>| async move {
                let v: Option<String> = session.get(&k).await?;
                Ok::<_, SessionError>(v.unwrap_or_else(|| "none".into()))
            }),
        )
        .route(
            "/keys",
            get(|session: Session| async move {
                Ok::<_, SessionError>(session.keys().await?.join(","))
            }),
        )
        .route(
            "/login",
            post(|session: Session| async move {
                session.login("alice").await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/login-remember",
            post(|session: Session| async move {
                session
                    .login_with("alice", LoginOptions::remember_me(true))
                    .await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/logout",
            post(|session: Session| async move {
                session.logout().await?;
                Ok::<_, SessionError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/user",
            get(|session: Session| async move {
                Ok::<_, SessionError>(session.user().await?.unwrap_or_else(|| "anonymous".into()))
            }),
        )
        .route(
            "/fail",
            post(|session: Session| async move {
                session.insert("n", &999u64).await?;
                Ok::<_, SessionError>(StatusCode::INTERNAL_SERVER_ERROR)
            }),
        )
}

pub fn app_with(layer: SessionLayer) -> Router {
    routes().layer(layer)
}

/// A response, flattened for assertions.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub set_cookies: Vec<String>,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The `name=value` part of the single Set-Cookie, if any.
    pub fn cookie(&self) -> Option<String> {
        assert!(
            self.set_cookies.len() <= 1,
            "more than one Set-Cookie: {:?}",
            self.set_cookies
        );
        self.set_cookies
            .first()
            .map(|c| c.split(';').next().unwrap_or_default().to_owned())
    }

    /// The value of the session cookie set by this reply.
    pub fn cookie_value(&self) -> Option<String> {
        self.cookie()
            .and_then(|c| c.split_once('=').map(|(_, v)| v.to_owned()))
    }
}

pub async fn send(app: &Router, method: &str, uri: &str, cookie: Option<&str>) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    send_req(app, req.body(Body::empty()).expect("request")).await
}

pub async fn send_req(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let set_cookies = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        set_cookies,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Counts every store call, optionally failing all of them.
pub struct TestStore<S> {
    pub inner: S,
    pub calls: AtomicUsize,
    pub writes: AtomicUsize,
    pub down: AtomicBool,
    /// Milliseconds every `save` waits before it runs.
    pub save_delay_ms: AtomicU64,
    /// Fail `load` only.
    pub loads_down: AtomicBool,
    /// Fail `delete` and `delete_by_user` only.
    pub deletes_down: AtomicBool,
}

impl<S> TestStore<S> {
    pub fn new(inner: S) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            save_delay_ms: AtomicU64::new(0),
            loads_down: AtomicBool::new(false),
            deletes_down: AtomicBool::new(false),
        })
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    fn enter(&self, write: bool) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if write {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("test store is down"));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for TestStore<S> {
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.enter(true)?;
        self.inner.create(key, record, now).await
    }
    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError> {
        self.enter(false)?;
        if self.loads_down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("test store: loads are down"));
        }
        self.inner.load(key, now).await
    }
    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.enter(true)?;
        let delay = self.save_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        self.inner.save(key, record, expected, now).await
    }
    async fn touch(
        &self,
        key: &StorageKey,
        idle: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.enter(true)?;
        self.inner.touch(key, idle, now).await
    }
    async fn delete(&self, key: &StorageKey, now: Timestamp) -> Result<(), StoreError> {
        self.enter(true)?;
        if self.deletes_down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("test store: deletes are down"));
        }
        self.inner.delete(key, now).await
    }
    async fn rotate(
        &self,
        old: &StorageKey,
        new: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.enter(true)?;
        self.inner.rotate(old, new, record, now).await
    }
    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        self.enter(false)?;
        self.inner.list_by_user(user, now).await
    }
    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.enter(true)?;
        if self.deletes_down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("test store: deletes are down"));
        }
        self.inner.delete_by_user(user, except, now).await
    }
    fn is_durable(&self) -> bool {
        self.inner.is_durable()
    }
    async fn delete_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.enter(true)?;
        self.inner.delete_expired(now).await
    }
    async fn stats(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        self.enter(false)?;
        self.inner.stats(now).await
    }
}

/// A live record (30-minute idle, 12-hour absolute deadline) at version 1,
/// optionally signed in as `user`.
pub fn live_record(user: Option<&str>) -> Record {
    let mut r = Record::new(
        Timestamp::now(),
        std::time::Duration::from_secs(1800),
        std::time::Duration::from_secs(43_200),
    );
    r.version = 1;
    r.user = user.map(str::to_owned);
    r
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
