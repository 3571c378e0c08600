//! Paths that end or replace a session never fail open (issue "Ending
//! sessions exactly"): a failed logout is an error, a failed load never lets
//! a write replace the session, an unknown ID is not answered with a removal
//! cookie, a new principal starts clean, and oversized or over-deep data is a
//! 4xx, never a 503 that looks like an outage. Each test names its defect.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::post;
use cloakroom::store::{MemoryStore, SessionStore};
use cloakroom::{OnStoreFailure, Session, SessionError, SessionId, SessionLayer};

/// Sets a test's options on its layer.
type Configure = fn(SessionLayer) -> SessionLayer;
use support::{TestStore, routes, send};

/// The shared routes plus the ones these tests need.
fn app(store: Arc<dyn SessionStore>, configure: Configure) -> Router {
    routes()
        .route(
            "/write-blind",
            // A handler that ignores a failed read and writes anyway.
            post(|session: Session| async move {
                let _ = session.get::<u64>("n").await;
                session.insert("n", &5u64).await?;
                Ok::<_, SessionError>("written")
            }),
        )
        .route(
            "/read-then-logout",
            post(|session: Session| async move {
                let _ = session.get::<u64>("n").await;
                session.logout().await?;
                Ok::<_, SessionError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/logout-everywhere",
            post(|session: Session| async move {
                session.logout_everywhere().await?;
                Ok::<_, SessionError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/login-as/{user}",
            post(|session: Session, Path(user): Path<String>| async move {
                session.login(user).await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/fill/{n}",
            post(|session: Session, Path(n): Path<usize>| async move {
                session.insert("fill", &"x".repeat(n)).await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/nest/{depth}",
            post(|session: Session, Path(depth): Path<usize>| async move {
                let mut v = serde_json::json!(1);
                for _ in 0..depth {
                    v = serde_json::json!([v]);
                }
                session.insert("deep", &v).await?;
                let back: Option<serde_json::Value> = session.get("deep").await?;
                Ok::<_, SessionError>(if back == Some(v) { "same" } else { "differs" })
            }),
        )
        .layer(configure(SessionLayer::new(store)).build().unwrap())
}

fn defaults(layer: SessionLayer) -> SessionLayer {
    layer
}

fn anonymous_on_failure(layer: SessionLayer) -> SessionLayer {
    layer.with_store_failure(OnStoreFailure::ContinueAnonymous)
}

/// A session holding n = 1; returns its cookie.
async fn signed_in(app: &Router) -> String {
    let r = send(app, "POST", "/write", None).await;
    assert_eq!(r.body, "1");
    r.cookie().unwrap()
}

// Defect 4: a failed delete under ContinueAnonymous answered 204 and
// removed the cookie, though the session lived on.
#[tokio::test]
async fn d4_failed_logout_is_an_error_even_when_continuing_anonymous() {
    let store = TestStore::new(MemoryStore::new());
    let app = app(store.clone(), anonymous_on_failure);
    let cookie = signed_in(&app).await;
    store.deletes_down.store(true, Ordering::SeqCst);
    let r = send(&app, "POST", "/logout", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    let r = send(&app, "POST", "/logout-everywhere", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
}

// Defect 4: after a failed load, `destroy` deleted nothing and said Ok.
#[tokio::test]
async fn d4_logout_after_a_failed_load_still_deletes_the_session() {
    let store = TestStore::new(MemoryStore::new());
    let app = app(store.clone(), anonymous_on_failure);
    let cookie = signed_in(&app).await;
    store.loads_down.store(true, Ordering::SeqCst);
    let r = send(&app, "POST", "/read-then-logout", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    store.loads_down.store(false, Ordering::SeqCst);
    assert_eq!(send(&app, "GET", "/read", Some(&cookie)).await.body, "none");
}

// Defect 4: log-out-everywhere after a failed load revoked nothing.
#[tokio::test]
async fn d4_logout_everywhere_after_a_failed_load_is_an_error() {
    let store = TestStore::new(MemoryStore::new());
    let app = app(store.clone(), anonymous_on_failure);
    let laptop = send(&app, "POST", "/login", None).await.cookie().unwrap();
    let phone = send(&app, "POST", "/login", None).await.cookie().unwrap();
    store.loads_down.store(true, Ordering::SeqCst);
    let r = send(&app, "POST", "/logout-everywhere", Some(&laptop)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    store.loads_down.store(false, Ordering::SeqCst);
    // It said it failed, and indeed it did nothing.
    assert_eq!(send(&app, "GET", "/user", Some(&phone)).await.body, "alice");
    let r = send(&app, "POST", "/logout-everywhere", Some(&laptop)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        send(&app, "GET", "/user", Some(&phone)).await.body,
        "anonymous"
    );
}

// Defect 5: a write after a failed load created a new session and sent
// its cookie with the 503, replacing the visitor's valid session.
#[tokio::test]
async fn d5_write_after_failed_load_sends_no_cookie_and_keeps_the_session() {
    for configure in [defaults as Configure, anonymous_on_failure] {
        let store = TestStore::new(MemoryStore::new());
        let app = app(store.clone(), configure);
        let cookie = signed_in(&app).await;
        store.loads_down.store(true, Ordering::SeqCst);
        let writes = store.writes();
        let r = send(&app, "POST", "/write-blind", Some(&cookie)).await;
        assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
        assert_eq!(store.writes(), writes, "nothing written");
        let r = send(&app, "POST", "/login", Some(&cookie)).await;
        assert_ne!(
            r.status,
            StatusCode::OK,
            "no sign-in over an unread session"
        );
        assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
        store.loads_down.store(false, Ordering::SeqCst);
        assert_eq!(send(&app, "GET", "/read", Some(&cookie)).await.body, "1");
    }
}

// Defect 9: a read-only request carrying an ID that was just rotated away
// answered with a removal cookie, deleting the browser's new cookie.
#[tokio::test]
async fn d9_unknown_id_on_a_read_sends_no_removal_cookie() {
    let store = TestStore::new(MemoryStore::new());
    let app = app(store, defaults);
    let old = signed_in(&app).await;
    let login = send(&app, "POST", "/login", Some(&old)).await;
    let new = login.cookie().unwrap();
    assert_ne!(new, old);
    // The slow /read that started before the login answers after it.
    let r = send(&app, "GET", "/read", Some(&old)).await;
    assert_eq!(r.body, "none");
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    // A never-issued ID: no removal either; a malformed one still is cleared.
    let unknown = format!("__Host-id={}", SessionId::generate().expose_secret());
    assert!(
        send(&app, "GET", "/read", Some(&unknown))
            .await
            .set_cookies
            .is_empty()
    );
    let r = send(&app, "GET", "/read", Some("__Host-id=../../etc/passwd")).await;
    assert_eq!(r.set_cookies.len(), 1);
    assert!(r.set_cookies[0].contains("Max-Age=0"));
    assert_eq!(send(&app, "GET", "/read", Some(&new)).await.body, "1");
}

// Defect 10: signing in as another user kept the previous user's data.
#[tokio::test]
async fn d10_login_as_a_different_user_starts_with_no_data() {
    let store = TestStore::new(MemoryStore::new());
    let app = app(store, defaults);
    let anon = send(&app, "POST", "/put/cart/3-apples", None)
        .await
        .cookie()
        .unwrap();
    let alice = send(&app, "POST", "/login-as/alice", Some(&anon))
        .await
        .cookie()
        .unwrap();
    assert_eq!(
        send(&app, "GET", "/get/cart", Some(&alice)).await.body,
        "3-apples",
        "an anonymous cart carries over to the sign-in"
    );
    send(&app, "POST", "/put/secret/alices", Some(&alice)).await;
    let again = send(&app, "POST", "/login-as/alice", Some(&alice))
        .await
        .cookie()
        .unwrap();
    assert_eq!(
        send(&app, "GET", "/get/secret", Some(&again)).await.body,
        "alices"
    );
    let bob = send(&app, "POST", "/login-as/bob", Some(&again))
        .await
        .cookie()
        .unwrap();
    assert_eq!(send(&app, "GET", "/user", Some(&bob)).await.body, "bob");
    assert_eq!(
        send(&app, "GET", "/get/secret", Some(&bob)).await.body,
        "none"
    );
    assert_eq!(
        send(&app, "GET", "/get/cart", Some(&bob)).await.body,
        "none"
    );
}

// Defect 11: an oversized record was StoreError::Other: 503 + ERROR log,
// any client could make the service look down.
#[tokio::test]
async fn d11_oversized_record_is_413_not_an_outage() {
    let store = TestStore::new(MemoryStore::new());
    let app = app(store.clone(), |layer| {
        layer
            .with_max_value_bytes(8 * 1024)
            .with_max_record_bytes(4 * 1024)
    });
    let r = send(&app, "POST", "/fill/6000", None).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert!(r.body.contains("limit"), "{}", r.body);
    assert!(r.set_cookies.is_empty());
    assert_eq!(store.writes(), 0);
    // An existing session over the limit after a sign-in: typed, 413.
    let cookie = send(&app, "POST", "/fill/3900", None)
        .await
        .cookie()
        .unwrap();
    let r = send(&app, "POST", "/fill/5000", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(send(&app, "GET", "/keys", Some(&cookie)).await.body, "fill");
}

// Defect 13: JSON nested 65-128 deep was stored, then every read of the
// record failed (500 on GET afterwards).
#[tokio::test]
async fn d13_values_nested_too_deep_are_refused_at_insert() {
    let store = TestStore::new(MemoryStore::new());
    let app = app(store.clone(), defaults);
    let r = send(&app, "POST", "/nest/60", None).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "same"));
    let cookie = r.cookie().unwrap();
    let r = send(&app, "POST", "/nest/100", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("nests deeper"), "{}", r.body);
    // The session still reads.
    assert_eq!(send(&app, "GET", "/keys", Some(&cookie)).await.body, "deep");
}

// Defect 1, as the session layer sees it: a sign-in whose session was ended
// by another request after it was loaded must not revive it (the store's
// rotate is NotFound now), yet the sign-in itself goes on, in a fresh
// session without the ended one's values.
#[tokio::test]
async fn d1_login_racing_a_logout_elsewhere_revives_nothing() {
    let store = TestStore::new(MemoryStore::new());
    let shared: Arc<dyn SessionStore> = store.clone();
    let racing = routes()
        .route(
            "/login-after-logout-elsewhere",
            post(move |session: Session| {
                let store = shared.clone();
                async move {
                    let _ = session.get::<String>("secret").await?;
                    let key = session.storage_key().await?.unwrap();
                    // Another request logs this session out right now.
                    store
                        .delete(&key, cloakroom::Timestamp::now())
                        .await
                        .unwrap();
                    session.login("alice").await?;
                    Ok::<_, SessionError>("ok")
                }
            }),
        )
        .layer(SessionLayer::new(store.clone()).build().unwrap());
    let old = send(&racing, "POST", "/put/secret/old-sessions", None)
        .await
        .cookie()
        .unwrap();
    let r = send(&racing, "POST", "/login-after-logout-elsewhere", Some(&old)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let new = r.cookie().unwrap();
    assert_ne!(new, old);
    assert_eq!(
        send(&racing, "GET", "/user", Some(&new)).await.body,
        "alice"
    );
    assert_eq!(
        send(&racing, "GET", "/get/secret", Some(&new)).await.body,
        "none"
    );
    assert_eq!(
        send(&racing, "GET", "/user", Some(&old)).await.body,
        "anonymous"
    );
}

// Defect 4, continued: a handler that ignores a failed logout and writes on
// must not have its writes land in the session it failed to end.
#[tokio::test]
async fn d4_writes_after_a_failed_logout_are_not_saved() {
    let store = TestStore::new(MemoryStore::new());
    let shared: Arc<dyn SessionStore> = store.clone();
    let app = routes()
        .route(
            "/logout-then-write",
            post(|session: Session| async move {
                let _ = session.logout().await;
                session.insert("n", &7u64).await?;
                Ok::<_, SessionError>("written")
            }),
        )
        .layer(SessionLayer::new(shared).build().unwrap());
    let cookie = signed_in(&app).await;
    store.deletes_down.store(true, Ordering::SeqCst);
    let r = send(&app, "POST", "/logout-then-write", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    store.deletes_down.store(false, Ordering::SeqCst);
    assert_eq!(send(&app, "GET", "/read", Some(&cookie)).await.body, "1");
}

// Defect 11, continued: a record limit above what records can be read back
// at would save sessions that are then lost on their next load.
#[test]
fn d11_a_record_limit_above_the_readable_size_is_refused() {
    let too_big = cloakroom::MAX_RECORD_BYTES + 1;
    let built = SessionLayer::new(MemoryStore::new())
        .with_max_record_bytes(too_big)
        .build();
    assert!(
        matches!(built, Err(cloakroom::ConfigError::RecordLimit(n)) if n == too_big),
        "{built:?}"
    );
}

// The same mistake in a layer applied without `build()`: it never serves a
// request (one layer object, checked when applied).
#[test]
#[should_panic(expected = "invalid session layer configuration")]
fn an_unbuilt_invalid_layer_refuses_to_be_applied() {
    let layer = SessionLayer::new(MemoryStore::new())
        .with_max_record_bytes(cloakroom::MAX_RECORD_BYTES + 1);
    let _app: Router = Router::new()
        .route("/", axum::routing::get(|| async { "never served" }))
        .layer(layer);
}

// A valid layer applied without `build()` works, and a clone configured
// afterwards leaves the original as it was.
#[tokio::test]
async fn an_unbuilt_valid_layer_serves_and_clones_configure_apart() {
    let base = SessionLayer::new(MemoryStore::new());
    let strict = base.clone().with_max_value_bytes(4);
    let write = |layer: SessionLayer| {
        Router::new()
            .route(
                "/",
                axum::routing::post(|s: Session| async move {
                    s.insert("k", &"a value longer than four bytes").await?;
                    Ok::<_, SessionError>("stored")
                }),
            )
            .layer(layer)
    };
    assert_eq!(
        send(&write(base), "POST", "/", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&write(strict), "POST", "/", None).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}
