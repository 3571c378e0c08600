//! Token sessions over HTTP: the Bearer and cookie transports, the
//! `AccessToken` extractor's answers (RFC 6750 challenges, 503 when the
//! revocation state cannot be read), and the token cookies' attributes.
#![cfg(all(feature = "jwt", feature = "axum"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use cloakroom::crypto::{Keyring, MasterKey};
use cloakroom::store::MemoryStore;
use cloakroom::token::{AccessToken, TokenKey, TokenKeys, TokenLayer, TokenSessions};
use http::{Request, StatusCode};

fn tokens(store: std::sync::Arc<support::TestStore<MemoryStore>>) -> TokenSessions {
    TokenSessions::new(
        store,
        TokenKeys::new(TokenKey::generate_ed25519().unwrap()),
        Keyring::new(vec![MasterKey::generate()]).unwrap(),
    )
    .with_issuer("https://auth.test")
    .with_audience("api.test")
    // No revocation cache: every request reads the state (so a store
    // outage shows at once).
    .with_revocation_cache(std::time::Duration::ZERO)
    .with_volatile_store_accepted()
    .build()
    .unwrap()
}

fn app(t: &TokenSessions) -> Router {
    Router::new()
        .route(
            "/me",
            get(|token: AccessToken| async move { token.claims.sub }),
        )
        .layer(TokenLayer::new(t.clone()))
}

async fn get_me(app: &Router, headers: &[(&str, &str)]) -> support::Reply {
    let mut req = Request::get("/me");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    support::send_req(app, req.body(Body::empty()).unwrap()).await
}

fn challenge(r: &support::Reply) -> String {
    r.headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn bearer_and_cookie_transports_and_rfc6750_answers() {
    let store = support::TestStore::new(MemoryStore::new());
    let t = tokens(store.clone());
    let app = app(&t);
    let pair = t.issue("alice").await.unwrap();
    let bearer = format!("Bearer {}", pair.access_token);

    let r = get_me(&app, &[("authorization", &bearer)]).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "alice"));
    let r = get_me(
        &app,
        &[("authorization", &format!("bearer  {}", pair.access_token))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "scheme is case-insensitive");
    let cookie = format!("__Host-at={}", pair.access_token);
    let r = get_me(&app, &[("cookie", &cookie)]).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "alice"));

    let r = get_me(&app, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&r), r#"Bearer realm="api""#);
    for bad in [
        "Bearer not.a.token".to_owned(),
        "Bearer ".to_owned(),
        "Bearer a b".to_owned(),
        format!("{bearer}x"),
    ] {
        let r = get_me(&app, &[("authorization", &bad)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(
            challenge(&r).contains(r#"error="invalid_token""#),
            "{bad}: {}",
            challenge(&r)
        );
    }
    let r = get_me(
        &app,
        &[("authorization", &bearer), ("authorization", &bearer)],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "two Authorization headers"
    );

    // Revoked: 401 saying so.
    t.revoke_user("alice").await.unwrap();
    let r = get_me(&app, &[("authorization", &bearer)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains("revoked"), "{}", challenge(&r));

    // The store down while the state must be read: 503, never accepted.
    let fresh = t.issue("bob").await.unwrap();
    store.set_down(true);
    let r = get_me(
        &app,
        &[("authorization", &format!("Bearer {}", fresh.access_token))],
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn token_cookies_are_host_bound_http_only_and_path_scoped() {
    let t = tokens(support::TestStore::new(MemoryStore::new()));
    let pair = t.issue("alice").await.unwrap();
    let [access, refresh] = t.set_cookies(&pair, "/api/token/refresh");
    let access = access.to_str().unwrap();
    let refresh = refresh.to_str().unwrap();
    assert!(access.starts_with(&format!("__Host-at={};", pair.access_token)));
    for attr in [
        "Path=/;",
        "Max-Age=300",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
    ] {
        assert!(access.contains(attr), "{access}: {attr}");
    }
    assert!(refresh.starts_with(&format!("__Secure-rt={};", pair.refresh_token)));
    for attr in [
        "Path=/api/token/refresh;",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
    ] {
        assert!(refresh.contains(attr), "{refresh}: {attr}");
    }
    let [a, r] = t.clear_cookies("/api/token/refresh");
    assert!(a.to_str().unwrap().contains("Max-Age=0") && r.to_str().unwrap().contains("Max-Age=0"));
}
