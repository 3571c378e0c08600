//! The demo in `--mode token`: credentials for a token pair, Bearer
//! `/api/me`, refresh with rotation, revoke one device, log out
//! everywhere, the JWKS; and the signing key file.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cloakroom_cli::{DemoOptions, SessionMode, Stores, build_app_with_stores};
use common::{Answer, TestResult, post, raw, register};
use serde_json::{Value, json};

async fn app(dir: &std::path::Path) -> Router {
    let opts = DemoOptions {
        mode: SessionMode::Token {
            keys: None,
            key_file: dir.join("demo.keys"),
            signing_key_file: dir.join("demo.signing-key"),
        },
        ..DemoOptions::default()
    };
    let (router, handles) = build_app_with_stores(Stores::memory(), &opts)
        .await
        .expect("the demo builds");
    std::mem::forget(handles);
    router
}

async fn bearer(app: &Router, method: &str, uri: &str, token: &str) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("a request");
    raw(app, req).await
}

fn pair(a: &Answer) -> (String, String) {
    let v = a.json();
    assert_eq!(v["token_type"], "Bearer", "{v}");
    assert!(v["expires_in"].as_u64().is_some_and(|s| s > 0));
    (
        v["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned(),
        v["refresh_token"]
            .as_str()
            .expect("a refresh token")
            .to_owned(),
    )
}

#[tokio::test]
async fn token_mode_end_to_end() -> TestResult {
    let dir = tempfile::tempdir()?;
    let app = app(dir.path()).await;
    assert_eq!(
        register(&app, "alice", "correct horse").await.status,
        StatusCode::CREATED
    );

    let wrong = post(
        &app,
        "/api/token",
        None,
        json!({"username": "alice", "password": "nope"}),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let creds = json!({"username": "alice", "password": "correct horse"});
    let issued = post(&app, "/api/token", None, creds.clone()).await;
    assert_eq!(issued.status, StatusCode::OK, "{:?}", issued.body);
    assert_eq!(
        issued
            .headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let (access, refresh) = pair(&issued);

    let me = bearer(&app, "GET", "/api/me", &access).await;
    assert_eq!(
        (me.status, me.json()["username"].clone()),
        (StatusCode::OK, json!("alice"))
    );
    let anonymous = raw(&app, Request::get("/api/me").body(Body::empty())?).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers.contains_key(header::WWW_AUTHENTICATE));

    // Refresh rotates; the retired token within the grace gets the same successor.
    let next = post(
        &app,
        "/api/token/refresh",
        None,
        json!({"refresh_token": refresh}),
    )
    .await;
    let (access2, refresh2) = pair(&next);
    let retry = post(
        &app,
        "/api/token/refresh",
        None,
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(pair(&retry).1, refresh2);
    let junk = post(
        &app,
        "/api/token/refresh",
        None,
        json!({"refresh_token": "cloakroom_rt_x"}),
    )
    .await;
    assert_eq!(
        (junk.status, junk.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant"))
    );

    // A second device, then revoke the first by its refresh token.
    let (other_access, _) = pair(&post(&app, "/api/token", None, creds).await);
    let revoked = post(
        &app,
        "/api/token/revoke",
        None,
        json!({"refresh_token": refresh2}),
    )
    .await;
    assert_eq!(revoked.json(), json!({"revoked": true}));
    assert_eq!(
        bearer(&app, "GET", "/api/me", &access2).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        bearer(&app, "GET", "/api/me", &other_access).await.status,
        StatusCode::OK
    );

    // Log out everywhere with the other device's token.
    let out = bearer(&app, "POST", "/api/logout-everywhere", &other_access).await;
    assert_eq!(out.status, StatusCode::OK, "{:?}", out.body);
    assert_eq!(
        bearer(&app, "GET", "/api/me", &other_access).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The JWKS publishes the Ed25519 key that signed them.
    let jwks = raw(
        &app,
        Request::get("/.well-known/jwks.json").body(Body::empty())?,
    )
    .await;
    assert_eq!(jwks.status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&jwks.body)?;
    assert_eq!(doc["keys"][0]["kty"], "OKP");
    assert_eq!(doc["keys"][0]["alg"], "EdDSA");
    let key_text = std::fs::read_to_string(dir.path().join("demo.signing-key"))?;
    assert_eq!(key_text.trim().len(), 43, "a base64url Ed25519 seed");
    Ok(())
}

#[tokio::test]
async fn the_signing_key_survives_a_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let first = app(dir.path()).await;
    let jwks = |a: Answer| a.body;
    let before = jwks(
        raw(
            &first,
            Request::get("/.well-known/jwks.json").body(Body::empty())?,
        )
        .await,
    );
    let second = app(dir.path()).await;
    let after = jwks(
        raw(
            &second,
            Request::get("/.well-known/jwks.json").body(Body::empty())?,
        )
        .await,
    );
    assert_eq!(before, after, "the key file is read back, not replaced");
    Ok(())
}
