//! The store-failure policy: what a visitor gets while the session store is
//! down, and why routes that never use the session keep working.
//!
//! Run with: `cargo run -p cloakroom-examples --example failure_policy`
//! (or `... -- anonymous`, `... -- json` for the other policies), then:
//!
//! ```text
//! curl -c jar -b jar http://localhost:3005/
//! curl -X POST http://localhost:3005/store/down
//! curl -i -c jar -b jar http://localhost:3005/
//! curl -i http://localhost:3005/health
//! curl -X POST http://localhost:3005/store/up
//! curl -c jar -b jar http://localhost:3005/
//! ```
//!
//! The three policies, for a request whose handler uses the session:
//!
//! * `503`, [`OnStoreFailure::ServiceUnavailable`] (the default): the
//!   handler's response is replaced by `503 Service Unavailable` with
//!   `Retry-After`, in plain text.
//! * `anonymous`, [`OnStoreFailure::ContinueAnonymous`]: the request goes on
//!   as a visitor without a session; its writes are lost and no cookie is
//!   set, so the session is intact once the store is back. A sign-out that
//!   fails is still answered with `503`: it never looks like it worked.
//! * `json`, [`OnStoreFailure::respond_with`]: a response of your own, here
//!   the JSON an API client expects.
//!
//! The store is only called when a handler uses the session, so `/health`
//! answers `200` whatever the store does, under every policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderValue, Response, StatusCode, header};
use axum::{
    Router,
    routing::{get, post},
};
use cloakroom::store::{MemoryStore, SessionStore, StoreError, StoreStats, UserSession};
use cloakroom::{
    ConfigError, OnStoreFailure, Record, Session, SessionError, SessionLayer, StorageKey, Timestamp,
};

/// A [`MemoryStore`] with an off switch: while it is down, every operation
/// fails the way an unreachable backend does.
struct SwitchableStore {
    inner: MemoryStore,
    down: Arc<AtomicBool>,
}

impl SwitchableStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::Relaxed) {
            Err(StoreError::unavailable_in(
                "switchable",
                "switched off by POST /store/down",
            ))
        } else {
            Ok(())
        }
    }
}

// A wrapper passes every operation on, the optional ones included.
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl SessionStore for SwitchableStore {
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.create(key, record, now).await
    }
    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError> {
        self.check()?;
        self.inner.load(key, now).await
    }
    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.save(key, record, expected, now).await
    }
    async fn touch(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.touch(key, idle_deadline, now).await
    }
    async fn delete(&self, key: &StorageKey, now: Timestamp) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete(key, now).await
    }
    async fn rotate(
        &self,
        old: &StorageKey,
        new: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.rotate(old, new, record, now).await
    }
    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        self.check()?;
        self.inner.list_by_user(user, now).await
    }
    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.delete_by_user(user, except, now).await
    }
    fn is_durable(&self) -> bool {
        self.inner.is_durable()
    }
    async fn delete_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.delete_expired(now).await
    }
    async fn stats(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        self.check()?;
        self.inner.stats(now).await
    }
}

/// The JSON policy. The error is for the server's log (the layer logs it);
/// the client learns only that it should retry.
fn json_policy() -> OnStoreFailure {
    OnStoreFailure::respond_with(|_error| {
        let body = serde_json::json!({ "error": "session_store_unavailable", "retry_after": 5 });
        let mut res = Response::new(body.to_string());
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        res
    })
}

fn policy(name: &str) -> Option<OnStoreFailure> {
    match name {
        "503" => Some(OnStoreFailure::default()),
        "anonymous" => Some(OnStoreFailure::ContinueAnonymous),
        "json" => Some(json_policy()),
        _ => None,
    }
}

/// Uses the session: answered by the policy while the store is down.
async fn count(session: Session) -> Result<String, SessionError> {
    let visits: u64 = session.get("visits").await?.unwrap_or(0) + 1;
    session.insert("visits", &visits).await?;
    Ok(format!("visit {visits}\n"))
}

/// Never uses the session, so never calls the store.
async fn health() -> &'static str {
    "ok\n"
}

async fn store_down(State(down): State<Arc<AtomicBool>>) -> &'static str {
    down.store(true, Ordering::Relaxed);
    "the session store is down\n"
}

async fn store_up(State(down): State<Arc<AtomicBool>>) -> &'static str {
    down.store(false, Ordering::Relaxed);
    "the session store is up\n"
}

fn app(policy: OnStoreFailure) -> Result<Router, ConfigError> {
    let down = Arc::new(AtomicBool::new(false));
    let store = SwitchableStore {
        inner: MemoryStore::new(),
        down: down.clone(),
    };
    let layer = SessionLayer::new(store)
        .with_store_failure(policy)
        .build()?;
    Ok(Router::new()
        .route("/", get(count))
        .route("/health", get(health))
        .route("/store/down", post(store_down))
        .route("/store/up", post(store_up))
        .layer(layer)
        .with_state(down))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "503".to_owned());
    let policy = policy(&name)
        .ok_or_else(|| format!("unknown policy {name:?}; use 503, anonymous or json"))?;
    println!("store-failure policy: {name}");
    let app = app(policy)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3005").await?;
    println!("listening on http://localhost:3005/");
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloakroom_examples::{Browser, Reply};

    /// A visitor with one visit behind them, then the store goes down;
    /// returns what `/` and `/health` answer, then brings the store back.
    async fn while_down(policy: &str) -> (Reply, Reply, Browser) {
        let mut browser = Browser::new(app(super::policy(policy).unwrap()).unwrap());
        assert_eq!(browser.get("/").await.body, "visit 1\n");
        browser.post("/store/down", "").await;
        let session_route = browser.get("/").await;
        let plain_route = browser.get("/health").await;
        browser.post("/store/up", "").await;
        (session_route, plain_route, browser)
    }

    #[tokio::test]
    async fn service_unavailable_replaces_session_routes_only() {
        let (session_route, plain_route, mut browser) = while_down("503").await;
        assert_eq!(session_route.status, 503);
        assert_eq!(session_route.headers[header::RETRY_AFTER], "5");
        assert_eq!(
            (plain_route.status, plain_route.body.as_str()),
            (StatusCode::OK, "ok\n")
        );
        // Nothing was lost.
        assert_eq!(browser.get("/").await.body, "visit 2\n");
    }

    #[tokio::test]
    async fn continue_anonymous_serves_a_visitor_without_a_session() {
        let (session_route, plain_route, mut browser) = while_down("anonymous").await;
        assert_eq!(session_route.status, 200);
        assert_eq!(session_route.body, "visit 1\n");
        assert!(session_route.set_cookie_names().is_empty());
        assert_eq!(plain_route.status, 200);
        // The session was not replaced while the store was down.
        assert_eq!(browser.get("/").await.body, "visit 2\n");
    }

    #[tokio::test]
    async fn a_custom_responder_answers_json() {
        let (session_route, plain_route, _) = while_down("json").await;
        assert_eq!(session_route.status, 503);
        assert_eq!(
            session_route.headers[header::CONTENT_TYPE],
            "application/json"
        );
        let body: serde_json::Value = serde_json::from_str(&session_route.body).unwrap();
        assert_eq!(body["error"], "session_store_unavailable");
        assert_eq!(plain_route.status, 200);
    }
}
