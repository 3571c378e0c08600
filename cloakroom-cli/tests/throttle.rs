//! S53 in the demo: sign-in and registration throttling through the
//! router (no sockets).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use cloakroom::store::MemoryStore;
use cloakroom_cli::{DemoHandles, DemoOptions, Stores, UserStore, build_app_with_stores};
use common::{Answer, TestResult, login, raw, register};
use serde_json::json;

async fn app() -> Result<(Router, DemoHandles), cloakroom_cli::DemoError> {
    let stores = Stores {
        sessions: Arc::new(MemoryStore::new()),
        users: UserStore::memory(),
    };
    build_app_with_stores(stores, &DemoOptions::default()).await
}

/// A sign-in from `peer`.
async fn login_from(app: &Router, peer: &str, username: &str, password: &str) -> Answer {
    let body = json!({"username": username, "password": password}).to_string();
    let mut req = Request::builder()
        .method("POST")
        .uri("/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("a request");
    let addr: SocketAddr = peer.parse().expect("a socket address");
    req.extensions_mut().insert(ConnectInfo(addr));
    raw(app, req).await
}

fn retry_after(a: &Answer) -> Option<u64> {
    a.headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// S53: five wrong passwords are answered 401; the sixth attempt is 429
/// with `Retry-After`, even with the right password (it is not checked).
/// Another client is unaffected.
#[tokio::test]
async fn s53_sixth_wrong_password_is_429_with_retry_after() -> TestResult {
    let (app, _handles) = app().await?;
    assert_eq!(
        register(&app, "alice", "correct horse").await.status,
        StatusCode::CREATED
    );
    for _ in 0..5 {
        let a = login_from(&app, "192.0.2.1:5000", "alice", "wrong password").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = login_from(&app, "192.0.2.1:5000", "alice", "wrong password").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&a).is_some_and(|s| s >= 1));
    assert_eq!(a.json()["error"], cloakroom_cli_body());
    let a = login_from(&app, "192.0.2.1:5000", "alice", "correct horse").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let a = login_from(&app, "198.51.100.2:5000", "alice", "correct horse").await;
    assert_eq!(a.status, StatusCode::OK);
    Ok(())
}

fn cloakroom_cli_body() -> &'static str {
    "too many attempts; please wait and try again"
}

/// S53: an unknown username meets the same answers (statuses, bodies and
/// `Retry-After`) as a registered one.
#[tokio::test]
async fn s53_unknown_user_is_throttled_like_a_known_one() -> TestResult {
    let (app, _handles) = app().await?;
    register(&app, "bob", "correct horse").await;
    let mut seen = Vec::new();
    for name in ["bob", "nobody-here"] {
        let mut answers = Vec::new();
        for _ in 0..7 {
            let a = login_from(&app, "192.0.2.7:1", name, "wrong password").await;
            answers.push((a.status, a.body.clone(), retry_after(&a)));
        }
        seen.push(answers);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0][6].0, StatusCode::TOO_MANY_REQUESTS);
    Ok(())
}

/// S53: registration is throttled per client, 409s included, so "username
/// taken" is no free oracle.
#[tokio::test]
async fn s53_registration_is_throttled_per_client() -> TestResult {
    let (app, _handles) = app().await?;
    assert_eq!(
        register(&app, "carol", "correct horse").await.status,
        StatusCode::CREATED
    );
    for _ in 0..19 {
        assert_eq!(
            register(&app, "carol", "correct horse").await.status,
            StatusCode::CONFLICT
        );
    }
    let a = register(&app, "carol", "correct horse").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&a).is_some());
    assert_eq!(a.json()["error"], cloakroom_cli_body());
    // Signing in is a separate throttle.
    assert_eq!(
        login(&app, "carol", "correct horse", false).await.status,
        StatusCode::OK
    );
    Ok(())
}
