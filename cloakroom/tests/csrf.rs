//! CSRF protection and the CORS recipe (S47-S49), through the layers as a
//! browser meets them. One test per rule, named by its S-number.
//!
//! Longer than 600 lines on purpose: it is the one place that proves
//! S47-S49, rule by rule, over server-side, sealed-cookie and token-cookie
//! sessions, and splitting it would scatter one requirement's proofs.
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use cloakroom::client_side::ClientSessions;
use cloakroom::crypto::{Keyring, MasterKey};
use cloakroom::csrf::{
    CorsConfigError, CsrfConfigError, CsrfLayer, CsrfRejection, credentialed_cors,
};
use cloakroom::store::MemoryStore;
use cloakroom::{Session, SessionError, SessionLayer};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tower::ServiceExt;

const HOST: &str = "api.example.com";

fn routes() -> Router {
    Router::new()
        .route(
            "/token",
            get(|s: Session| async move { s.csrf_token().await }),
        )
        .route(
            "/write",
            post(|s: Session| async move {
                s.insert("n", &1u8).await?;
                Ok::<_, SessionError>("written")
            }),
        )
        .route(
            "/login",
            post(|s: Session| async move {
                s.login("alice").await?;
                Ok::<_, SessionError>("signed in")
            }),
        )
        .route("/echo", post(|body: String| async move { body }))
        .route("/hook", post(|| async { "hook" }))
        .route("/hook/", post(|| async { "hook/" }))
        .route("/hooks", post(|| async { "hooks" }))
        .route(
            "/keys",
            get(|s: Session| async move { Ok::<_, SessionError>(s.keys().await?.join(",")) }),
        )
}

fn app(csrf: CsrfLayer) -> Router {
    routes()
        .layer(csrf)
        .layer(SessionLayer::new(MemoryStore::new()))
}

fn sealed_app(csrf: CsrfLayer, key: &MasterKey) -> Router {
    let keyring = Keyring::parse(&key.to_base64url()).unwrap();
    let layer = SessionLayer::client_side(ClientSessions::new(keyring))
        .build()
        .unwrap();
    routes().layer(csrf).layer(layer)
}

/// A response, flattened for assertions.
struct Reply {
    status: StatusCode,
    rejection: Option<CsrfRejection>,
    headers: HeaderMap,
    cookie: Option<String>,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let rejection = res.extensions().get::<CsrfRejection>().copied();
    let headers = res.headers().clone();
    let cookie = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| !c.ends_with('='));
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        rejection,
        headers,
        cookie,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A request to `uri` on our host, with `headers`.
fn req(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", HOST);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

/// A fresh session and one of its tokens: (cookie, token).
async fn session_with_token(app: &Router) -> (String, String) {
    let r = send(app, req("GET", "/token", &[], "")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    (r.cookie.expect("the token starts a session"), r.body)
}

async fn token_for(app: &Router, cookie: &str) -> String {
    let r = send(app, req("GET", "/token", &[("cookie", cookie)], "")).await;
    assert_eq!(r.status, StatusCode::OK);
    r.body
}

/// A POST with the cookie and neither Sec-Fetch-Site nor Origin (an old
/// browser, a stripping proxy), carrying `token` in the header if given.
async fn bare_post(app: &Router, uri: &str, cookie: &str, token: Option<&str>) -> Reply {
    let mut headers = vec![("cookie", cookie)];
    if let Some(t) = token {
        headers.push(("x-csrf-token", t));
    }
    send(app, req("POST", uri, &headers, "")).await
}

fn refused(r: &Reply, reason: CsrfRejection) {
    assert_eq!(r.status, reason.status(), "{}", r.body);
    assert_eq!(r.rejection, Some(reason));
}

// ---------------------------------------------------------------- S47

#[tokio::test]
async fn s47_token_in_header_accepted() {
    let app = app(CsrfLayer::new());
    let (cookie, token) = session_with_token(&app).await;
    let r = bare_post(&app, "/write", &cookie, Some(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn s47_token_in_form_field_accepted_and_body_kept() {
    let app = app(CsrfLayer::new());
    let (cookie, token) = session_with_token(&app).await;
    let body = format!("a=1&csrf_token={token}&b=2");
    let form = ("content-type", "application/x-www-form-urlencoded");
    let r = send(
        &app,
        req("POST", "/echo", &[("cookie", &cookie), form], &body),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, body, "the handler gets the body the layer read");
    // The same field in a body that is not a form is not looked for.
    let json = ("content-type", "application/json");
    let r = send(
        &app,
        req("POST", "/echo", &[("cookie", &cookie), json], &body),
    )
    .await;
    refused(&r, CsrfRejection::MissingToken);
}

#[tokio::test]
async fn s47_token_in_query_string_not_accepted() {
    let app = app(CsrfLayer::new());
    let (cookie, token) = session_with_token(&app).await;
    let uri = format!("/write?csrf_token={token}&x-csrf-token={token}");
    let r = bare_post(&app, &uri, &cookie, None).await;
    refused(&r, CsrfRejection::MissingToken);
}

#[tokio::test]
async fn s47_cookie_without_token_refused() {
    let app = app(CsrfLayer::new());
    let (cookie, _) = session_with_token(&app).await;
    refused(
        &bare_post(&app, "/write", &cookie, None).await,
        CsrfRejection::MissingToken,
    );
    refused(
        &bare_post(&app, "/write", &cookie, Some("forged")).await,
        CsrfRejection::BadToken,
    );
    // A cookie the server never issued needs a token too (and has none).
    let r = bare_post(&app, "/write", "__Host-id=bogus", Some("forged")).await;
    refused(&r, CsrfRejection::BadToken);
}

#[tokio::test]
async fn s47_no_cookie_no_headers_passes() {
    // Nothing to forge: a non-browser client without credentials.
    let app = app(CsrfLayer::new());
    let r = send(&app, req("POST", "/write", &[], "")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn s47_token_bound_to_its_session() {
    let app = app(CsrfLayer::new());
    let (cookie_a, token_a) = session_with_token(&app).await;
    let (cookie_b, token_b) = session_with_token(&app).await;
    refused(
        &bare_post(&app, "/write", &cookie_b, Some(&token_a)).await,
        CsrfRejection::BadToken,
    );
    refused(
        &bare_post(&app, "/write", &cookie_a, Some(&token_b)).await,
        CsrfRejection::BadToken,
    );
    assert_eq!(
        bare_post(&app, "/write", &cookie_a, Some(&token_a))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn s47_tokens_masked_per_response() {
    let app = app(CsrfLayer::new());
    let (cookie, first) = session_with_token(&app).await;
    let second = token_for(&app, &cookie).await;
    assert_ne!(first, second, "each response carries different bytes");
    for t in [&first, &second] {
        assert_eq!(
            bare_post(&app, "/write", &cookie, Some(t)).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn s47_token_rotated_on_login() {
    let app = app(CsrfLayer::new());
    let (cookie, before) = session_with_token(&app).await;
    let login = send(
        &app,
        req(
            "POST",
            "/login",
            &[("cookie", &cookie), ("x-csrf-token", &before)],
            "",
        ),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let cookie = login.cookie.expect("login rotates the id");
    refused(
        &bare_post(&app, "/write", &cookie, Some(&before)).await,
        CsrfRejection::BadToken,
    );
    let after = token_for(&app, &cookie).await;
    assert_eq!(
        bare_post(&app, "/write", &cookie, Some(&after))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn s47_secret_is_hidden_from_the_value_api() {
    let app = app(CsrfLayer::new());
    let (cookie, _) = session_with_token(&app).await;
    let r = send(&app, req("GET", "/keys", &[("cookie", &cookie)], "")).await;
    assert_eq!(r.body, "", "the reserved key is not the handler's data");
}

#[test]
fn s47_constant_time_compare() {
    // The unmasked token is compared with `subtle`'s constant-time
    // equality, never `==` (which stops at the first differing byte).
    let source = include_str!("../src/csrf/token.rs");
    assert!(source.contains("unmasked.ct_eq(&self.0)"));
    let secret = [7u8; 32];
    let token = cloakroom::csrf::fuzz_mask(secret);
    let mut other = secret;
    other[31] ^= 1;
    assert!(
        !cloakroom::csrf::fuzz_accepts(other, &token),
        "a last-byte difference is caught"
    );
    other = secret;
    other[0] ^= 1;
    assert!(
        !cloakroom::csrf::fuzz_accepts(other, &token),
        "a first-byte difference is caught"
    );
}

#[tokio::test]
async fn s47_form_body_over_the_limit_is_413() {
    let app = app(CsrfLayer::new().with_max_form_bytes(1024));
    let (cookie, token) = session_with_token(&app).await;
    let body = format!("pad={}&csrf_token={token}", "x".repeat(2000));
    let form = ("content-type", "application/x-www-form-urlencoded");
    let r = send(
        &app,
        req("POST", "/echo", &[("cookie", &cookie), form], &body),
    )
    .await;
    refused(&r, CsrfRejection::BodyTooLarge);
}

#[tokio::test]
async fn s47_custom_header_and_field_names() {
    let app = app(CsrfLayer::new()
        .with_header_name(http::HeaderName::from_static("x-xsrf"))
        .with_form_field("authenticity_token"));
    let (cookie, token) = session_with_token(&app).await;
    let r = send(
        &app,
        req(
            "POST",
            "/write",
            &[("cookie", &cookie), ("x-xsrf", &token)],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    refused(
        &bare_post(&app, "/write", &cookie, Some(&token)).await,
        CsrfRejection::MissingToken,
    );
    let form = ("content-type", "application/x-www-form-urlencoded");
    let body = format!("authenticity_token={token}");
    let r = send(
        &app,
        req("POST", "/echo", &[("cookie", &cookie), form], &body),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn s47_sealed_cookie_sessions() {
    let key = MasterKey::generate();
    let app = sealed_app(CsrfLayer::new(), &key);
    let (cookie_a, token_a) = session_with_token(&app).await;
    let (cookie_b, _) = session_with_token(&app).await;
    assert_eq!(
        bare_post(&app, "/write", &cookie_a, Some(&token_a))
            .await
            .status,
        StatusCode::OK
    );
    refused(
        &bare_post(&app, "/write", &cookie_b, Some(&token_a)).await,
        CsrfRejection::BadToken,
    );
    refused(
        &bare_post(&app, "/write", &cookie_a, None).await,
        CsrfRejection::MissingToken,
    );
    // Rotated on login.
    let login = send(
        &app,
        req(
            "POST",
            "/login",
            &[("cookie", &cookie_a), ("sec-fetch-site", "same-origin")],
            "",
        ),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK);
    let cookie = login.cookie.unwrap();
    refused(
        &bare_post(&app, "/write", &cookie, Some(&token_a)).await,
        CsrfRejection::BadToken,
    );
    // The new secret travels in the re-sealed cookie.
    let r = send(&app, req("GET", "/token", &[("cookie", &cookie)], "")).await;
    let cookie = r.cookie.expect("the new secret is sealed into the cookie");
    assert_eq!(
        bare_post(&app, "/write", &cookie, Some(&r.body))
            .await
            .status,
        StatusCode::OK
    );
}

proptest! {
    #[test]
    fn s47_mask_round_trip_and_any_alteration_refused(
        secret in any::<[u8; 32]>(),
        at in 0usize..86,
        with in proptest::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".to_vec()
        ),
        cut in 1usize..86,
    ) {
        let token = cloakroom::csrf::fuzz_mask(secret);
        prop_assert!(cloakroom::csrf::fuzz_accepts(secret, &token));
        let mut altered = token.clone().into_bytes();
        prop_assume!(altered[at] != with);
        altered[at] = with;
        let altered = String::from_utf8(altered).unwrap();
        prop_assert!(!cloakroom::csrf::fuzz_accepts(secret, &altered));
        prop_assert!(!cloakroom::csrf::fuzz_accepts(secret, &token[..cut]));
        let longer = format!("{token}A");
        prop_assert!(!cloakroom::csrf::fuzz_accepts(secret, &longer));
    }
}

// ---------------------------------------------------------------- S48

#[tokio::test]
async fn s48_cross_site_refused_login_included() {
    let app = app(CsrfLayer::new());
    let (cookie, token) = session_with_token(&app).await;
    for uri in ["/write", "/login"] {
        let headers = [
            ("cookie", cookie.as_str()),
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ];
        refused(
            &send(&app, req("POST", uri, &headers, "")).await,
            CsrfRejection::CrossOrigin,
        );
        // A valid token does not make a cross-site request acceptable.
        let headers = [
            ("sec-fetch-site", "cross-site"),
            ("x-csrf-token", token.as_str()),
        ];
        refused(
            &send(&app, req("POST", uri, &headers, "")).await,
            CsrfRejection::CrossOrigin,
        );
    }
}

#[tokio::test]
async fn s48_same_site_sibling_refused_by_default() {
    let sibling = [
        ("sec-fetch-site", "same-site"),
        ("origin", "https://blog.example.com"),
    ];
    let r = send(&app(CsrfLayer::new()), req("POST", "/write", &sibling, "")).await;
    refused(&r, CsrfRejection::SameSiteSubdomain);
    let allowing = app(CsrfLayer::new().with_allow_same_site(true));
    assert_eq!(
        send(&allowing, req("POST", "/write", &sibling, ""))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn s48_origin_mismatch_refused() {
    let app = app(CsrfLayer::new());
    for origin in [
        "https://evil.example",
        "null",
        "https://api.example.com.evil.example",
    ] {
        let r = send(&app, req("POST", "/write", &[("origin", origin)], "")).await;
        refused(&r, CsrfRejection::OriginMismatch);
    }
    // An old browser on our own host: Origin matches Host.
    let own = format!("https://{HOST}");
    assert_eq!(
        send(&app, req("POST", "/write", &[("origin", &own)], ""))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn s48_same_origin_and_none_pass() {
    let app = app(CsrfLayer::new());
    let (cookie, _) = session_with_token(&app).await;
    for site in ["same-origin", "none"] {
        let r = send(
            &app,
            req(
                "POST",
                "/write",
                &[("cookie", &cookie), ("sec-fetch-site", site)],
                "",
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{site}");
    }
}

#[tokio::test]
async fn s48_exact_trusted_origin_accepted() {
    let app = app(CsrfLayer::new()
        .with_trusted_origin("https://app.example.com")
        .unwrap());
    let ok = [
        ("sec-fetch-site", "same-site"),
        ("origin", "https://app.example.com"),
    ];
    assert_eq!(
        send(&app, req("POST", "/write", &ok, "")).await.status,
        StatusCode::OK
    );
    let cross = [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://app.example.com"),
    ];
    assert_eq!(
        send(&app, req("POST", "/write", &cross, "")).await.status,
        StatusCode::OK
    );
    for near in [
        "https://app.example.com.evil.example",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://APP.example.com",
    ] {
        let r = send(
            &app,
            req(
                "POST",
                "/write",
                &[("sec-fetch-site", "cross-site"), ("origin", near)],
                "",
            ),
        )
        .await;
        refused(&r, CsrfRejection::CrossOrigin);
    }
}

#[test]
fn s48_trusted_origins_are_exact_only() {
    for bad in [
        "*",
        "https://*.example.com",
        "https://example.com/",
        "https://example.com:443",
        "example.com",
        "null",
    ] {
        assert!(
            matches!(
                CsrfLayer::new().with_trusted_origin(bad),
                Err(CsrfConfigError::InvalidOrigin { .. })
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn s48_vary_on_unsafe_answers() {
    let app = app(CsrfLayer::new());
    let vary = |r: &Reply| {
        r.headers
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ok = send(
        &app,
        req("POST", "/write", &[("sec-fetch-site", "same-origin")], ""),
    )
    .await;
    let no = send(
        &app,
        req("POST", "/write", &[("sec-fetch-site", "cross-site")], ""),
    )
    .await;
    for r in [&ok, &no] {
        assert!(
            vary(r).contains("Origin") && vary(r).contains("Sec-Fetch-Site"),
            "{:?}",
            r.headers
        );
    }
}

#[tokio::test]
async fn s48_safe_methods_pass() {
    let app = app(CsrfLayer::new());
    let (cookie, _) = session_with_token(&app).await;
    for method in ["GET", "HEAD"] {
        let headers = [
            ("cookie", cookie.as_str()),
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ];
        let r = send(&app, req(method, "/token", &headers, "")).await;
        assert_eq!(r.status, StatusCode::OK, "{method}");
    }
    // TRACE is not exempt (tower-http's set: GET, HEAD, OPTIONS).
    let r = send(
        &app,
        req("PUT", "/write", &[("sec-fetch-site", "cross-site")], ""),
    )
    .await;
    refused(&r, CsrfRejection::CrossOrigin);
}

#[tokio::test]
async fn s48_bypass_exact_path_only() {
    let app = app(CsrfLayer::new().with_bypass_path("/hook"));
    let cross = [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://payments.example"),
    ];
    assert_eq!(
        send(&app, req("POST", "/hook", &cross, "")).await.status,
        StatusCode::OK
    );
    for near in ["/hook/", "/hooks", "/hook?x=1/"] {
        let r = send(&app, req("POST", near, &cross, "")).await;
        if near.starts_with("/hook?") {
            // The query is not part of the path: still the bypassed path.
            assert_eq!(r.status, StatusCode::OK);
        } else {
            refused(&r, CsrfRejection::CrossOrigin);
        }
    }
}

// ---------------------------------------------------------------- S49

/// S49 (SameSite always explicit) is `s9_default_attributes` and
/// `s10_builder_refuses_impossible_configs` in tests/security.rs; here:
/// the cookie a token request starts says SameSite too.
#[tokio::test]
async fn s49_same_site_explicit_on_the_session_cookie() {
    let app = app(CsrfLayer::new());
    let res = app.oneshot(req("GET", "/token", &[], "")).await.unwrap();
    let cookie = res.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.contains("; SameSite=Lax"), "{cookie}");
}

// ---------------------------------------------------------------- CORS

#[test]
fn cors_refuses_unsafe_combinations() {
    assert_eq!(
        credentialed_cors(&["*"]).err(),
        Some(CorsConfigError::Wildcard)
    );
    assert_eq!(
        credentialed_cors(&["https://*.example.com"]).err(),
        Some(CorsConfigError::Wildcard)
    );
    assert_eq!(
        credentialed_cors(&[]).err(),
        Some(CorsConfigError::NoOrigins)
    );
    for bad in [
        "https://app.example.com/",
        "null",
        "app.example.com",
        "https://app.example.com:443",
    ] {
        assert!(
            matches!(
                credentialed_cors(&[bad]),
                Err(CorsConfigError::InvalidOrigin { .. })
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn cors_credentialed_exact_origin() {
    let spa = "https://app.example.com";
    let app = app(CsrfLayer::new().with_trusted_origin(spa).unwrap())
        .layer(credentialed_cors(&[spa]).unwrap());
    let preflight = [
        ("origin", spa),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "content-type,x-csrf-token",
        ),
    ];
    let r = send(&app, req("OPTIONS", "/write", &preflight, "")).await;
    assert_eq!(r.headers["access-control-allow-origin"], spa);
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    let vary = r
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_lowercase())
        .collect::<Vec<_>>()
        .join(",");
    assert!(vary.contains("origin"), "{vary}");
    let post = [("origin", spa), ("sec-fetch-site", "same-site")];
    let r = send(&app, req("POST", "/write", &post, "")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["access-control-allow-origin"], spa);
    // Another origin is neither allowed to read nor to send.
    let evil = [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ];
    let r = send(&app, req("POST", "/write", &evil, "")).await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
    refused(&r, CsrfRejection::CrossOrigin);
}

// ------------------------------------------- S47, token sessions (jwt)

#[cfg(feature = "jwt")]
#[tokio::test]
async fn s47_token_cookie_sessions_signed_double_submit() {
    use cloakroom::token::{ACCESS_COOKIE, TokenKey, TokenKeys, TokenSessions};
    let tokens = TokenSessions::new(
        MemoryStore::new(),
        TokenKeys::new(TokenKey::generate_ed25519().unwrap()),
        Keyring::new(vec![MasterKey::generate()]).unwrap(),
    )
    .with_issuer("https://auth.test")
    .with_audience("api.test")
    .with_volatile_store_accepted()
    .build()
    .unwrap();
    let app = app(CsrfLayer::new().with_token_sessions(tokens.clone()));
    let alice = tokens.issue("alice").await.unwrap();
    let claims = tokens.verify(&alice.access_token).await.unwrap();
    let (t1, t2) = (
        tokens.csrf_token(&claims).unwrap(),
        tokens.csrf_token(&claims).unwrap(),
    );
    assert_ne!(t1, t2, "masked per call");
    let cookie = format!("{ACCESS_COOKIE}={}", alice.access_token);
    for t in [&t1, &t2] {
        assert_eq!(
            bare_post(&app, "/hooks", &cookie, Some(t)).await.status,
            StatusCode::OK
        );
    }
    refused(
        &bare_post(&app, "/hooks", &cookie, None).await,
        CsrfRejection::MissingToken,
    );
    // Bound to the token session: another sign-in's token is refused.
    let again = tokens.issue("alice").await.unwrap();
    let other = tokens
        .csrf_token(&tokens.verify(&again.access_token).await.unwrap())
        .unwrap();
    refused(
        &bare_post(&app, "/hooks", &cookie, Some(&other)).await,
        CsrfRejection::BadToken,
    );
    // A session synchronizer token is no double-submit token.
    let (_, session_token) = session_with_token(&app).await;
    refused(
        &bare_post(&app, "/hooks", &cookie, Some(&session_token)).await,
        CsrfRejection::BadToken,
    );
    // Survives a refresh (same family).
    let next = tokens.refresh(&alice.refresh_token).await.unwrap();
    let cookie = format!("{ACCESS_COOKIE}={}", next.access_token);
    assert_eq!(
        bare_post(&app, "/hooks", &cookie, Some(&t1)).await.status,
        StatusCode::OK
    );
}
