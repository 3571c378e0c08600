//! The sign-in toolkit through the session layer: "your devices" (S25),
//! ending one or all of them (S24), the concurrent-session limit (S26) and
//! fresh authentication (S27). The store-level halves (parallel logins
//! under a limit, revoke by handle) are conformance scenarios that every
//! store runs against its real backend.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, StatusCode};
use axum::routing::{delete, get, post};
use cloakroom::auth::{RequireFreshAuth, ReturnPath, SessionLimit};
use cloakroom::client_side::ClientSessions;
use cloakroom::crypto::{Keyring, MasterKey};
use cloakroom::store::{MemoryStore, SessionStore};
use cloakroom::{CookieConfig, MockClock, Session, SessionError, SessionLayer};
use support::{send, send_req};

fn routes() -> Router {
    Router::new()
        .route(
            "/login/{user}",
            post(|s: Session, Path(u): Path<String>| async move {
                s.login(u).await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/user",
            get(|s: Session| async move {
                Ok::<_, SessionError>(s.user().await?.unwrap_or_else(|| "anonymous".into()))
            }),
        )
        .route(
            "/devices",
            get(|s: Session| async move {
                let list = s.devices().await?;
                Ok::<_, SessionError>(
                    list.iter()
                        .map(|d| format!("{}:{}:{}", d.handle, d.current, d.kind.as_str()))
                        .collect::<Vec<_>>()
                        .join(","),
                )
            }),
        )
        .route(
            "/devices/{handle}",
            delete(|s: Session, Path(h): Path<String>| async move {
                s.revoke_device(&h).await?;
                Ok::<_, SessionError>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/revoke-others",
            post(|s: Session| async move {
                Ok::<_, SessionError>(s.revoke_other_devices().await?.to_string())
            }),
        )
        .route(
            "/password-changed",
            post(|s: Session| async move {
                s.on_credentials_changed().await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/reauth",
            post(|s: Session| async move {
                s.reauthenticate().await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/put/{k}/{v}",
            post(
                |s: Session, Path((k, v)): Path<(String, String)>| async move {
                    s.insert(&k, &v).await?;
                    Ok::<_, SessionError>("ok")
                },
            ),
        )
        .route(
            "/get/{k}",
            get(|s: Session, Path(k): Path<String>| async move {
                Ok::<_, SessionError>(s.get::<String>(&k).await?.unwrap_or_default())
            }),
        )
}

fn app(layer: SessionLayer) -> Router {
    routes().layer(layer)
}

async fn login(app: &Router, user: &str) -> String {
    let r = send(app, "POST", &format!("/login/{user}"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.cookie().expect("a session cookie")
}

fn handles(body: &str) -> Vec<(String, bool)> {
    body.split(',')
        .filter(|s| !s.is_empty())
        .map(|d| {
            let mut parts = d.split(':');
            let h = parts.next().unwrap().to_owned();
            (h, parts.next() == Some("true"))
        })
        .collect()
}

/// S25: each device of a user is listed once, by a handle that is not its
/// cookie; the asking device is marked current; another user's handle is
/// "not found" and ends nothing.
#[tokio::test]
async fn s25_devices_are_listed_by_handle_and_revoked_by_their_owner_only() {
    let store = MemoryStore::new();
    let app = app(SessionLayer::new(store.clone()));
    let phone = login(&app, "alice").await;
    let laptop = login(&app, "alice").await;
    let bob = login(&app, "bob").await;

    let listed = handles(&send(&app, "GET", "/devices", Some(&laptop)).await.body);
    assert_eq!(listed.len(), 2, "alice has two devices: {listed:?}");
    assert!(
        listed[0].1 && !listed[1].1,
        "this device first, marked current"
    );
    for (h, _) in &listed {
        assert!(!phone.contains(h.as_str()) && !laptop.contains(h.as_str()));
        // A handle presented as a cookie is just an unknown session.
        let as_cookie = format!("__Host-id={h}");
        assert_eq!(
            send(&app, "GET", "/user", Some(&as_cookie)).await.body,
            "anonymous"
        );
    }
    let bobs = handles(&send(&app, "GET", "/devices", Some(&bob)).await.body);
    let r = send(
        &app,
        "DELETE",
        &format!("/devices/{}", bobs[0].0),
        Some(&laptop),
    )
    .await;
    assert_eq!(r.status, 404, "another user's handle is not found");
    assert_eq!(send(&app, "GET", "/user", Some(&bob)).await.body, "bob");

    // Alice ends her phone from her laptop.
    let r = send(
        &app,
        "DELETE",
        &format!("/devices/{}", listed[1].0),
        Some(&laptop),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        send(&app, "GET", "/user", Some(&phone)).await.body,
        "anonymous"
    );
    assert_eq!(
        send(&app, "GET", "/user", Some(&laptop)).await.body,
        "alice"
    );
    assert_eq!(
        handles(&send(&app, "GET", "/devices", Some(&laptop)).await.body).len(),
        1
    );
    // Ending the current device signs it out.
    let r = send(
        &app,
        "DELETE",
        &format!("/devices/{}", listed[0].0),
        Some(&laptop),
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(
        r.set_cookies.iter().any(|c| c.contains("Max-Age=0")),
        "cookie cleared"
    );
    assert_eq!(
        send(&app, "GET", "/user", Some(&laptop)).await.body,
        "anonymous"
    );
}

/// S24: "sign out my other devices" ends every other session of the user
/// and keeps this one and other users'.
#[tokio::test]
async fn s24_revoke_others_keeps_only_this_device() {
    let store = MemoryStore::new();
    let app = app(SessionLayer::new(store.clone()));
    let others: Vec<String> = futures_collect(&app, "alice", 3).await;
    let here = login(&app, "alice").await;
    let bob = login(&app, "bob").await;
    let r = send(&app, "POST", "/revoke-others", Some(&here)).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "3"));
    for c in &others {
        assert_eq!(send(&app, "GET", "/user", Some(c)).await.body, "anonymous");
    }
    assert_eq!(send(&app, "GET", "/user", Some(&here)).await.body, "alice");
    assert_eq!(send(&app, "GET", "/user", Some(&bob)).await.body, "bob");
}

async fn futures_collect(app: &Router, user: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(login(app, user).await);
    }
    out
}

/// S24, S18: after a password change every other session is gone, this
/// one moved to a new ID (the old cookie is dead) and kept its data.
#[tokio::test]
async fn s24_credentials_changed_ends_others_and_rotates_this_one() {
    let app = app(SessionLayer::new(MemoryStore::new()));
    let other = login(&app, "alice").await;
    let here = login(&app, "alice").await;
    assert_eq!(
        send(&app, "POST", "/put/theme/dark", Some(&here))
            .await
            .status,
        200
    );
    let r = send(&app, "POST", "/password-changed", Some(&here)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rotated = r.cookie().expect("a new ID");
    assert_ne!(rotated, here);
    assert_eq!(
        send(&app, "GET", "/user", Some(&other)).await.body,
        "anonymous"
    );
    assert_eq!(
        send(&app, "GET", "/user", Some(&here)).await.body,
        "anonymous"
    );
    assert_eq!(
        send(&app, "GET", "/user", Some(&rotated)).await.body,
        "alice"
    );
    assert_eq!(
        send(&app, "GET", "/get/theme", Some(&rotated)).await.body,
        "dark"
    );
}

/// S24, S39: sealed-cookie sessions cannot be listed, but a credential
/// change bumps the user's epoch (every other cookie dies) and re-seals
/// this one.
#[tokio::test]
async fn s24_credentials_changed_on_sealed_cookies_bumps_the_epoch() {
    let sessions = ClientSessions::new(Keyring::from(MasterKey::generate()))
        .with_revocation_on_volatile_store(std::sync::Arc::new(MemoryStore::new()), Duration::ZERO);
    let layer = SessionLayer::client_side(sessions)
        .with_cookie(CookieConfig::default().with_insecure_http_for_development());
    let app = app(layer);
    let r = send(&app, "POST", "/login/alice", None).await;
    let other = r.cookie().unwrap();
    let r = send(&app, "POST", "/login/alice", None).await;
    let here = r.cookie().unwrap();
    let devices = send(&app, "GET", "/devices", Some(&here)).await;
    assert_eq!(
        devices.status, 500,
        "client-side sessions are not listable: {}",
        devices.body
    );
    assert!(
        devices.body.contains("cannot be listed"),
        "{}",
        devices.body
    );
    let r = send(&app, "POST", "/password-changed", Some(&here)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let resealed = r.cookie().expect("re-sealed under the new epoch");
    assert_eq!(
        send(&app, "GET", "/user", Some(&other)).await.body,
        "anonymous"
    );
    assert_eq!(
        send(&app, "GET", "/user", Some(&resealed)).await.body,
        "alice"
    );
}

/// S26: with evict-oldest, a fourth sign-in under a limit of three ends
/// the oldest; with reject-new it is refused (409) and nothing changes.
#[tokio::test]
async fn s26_session_limit_evicts_oldest_or_rejects_new() {
    let clock = MockClock::new();
    let store = MemoryStore::new();
    let layer = SessionLayer::new(store.clone())
        .with_clock(clock.clone())
        .with_session_limit(SessionLimit::evict_oldest(3));
    let app = app(layer);
    let mut cookies = Vec::new();
    for _ in 0..4 {
        cookies.push(login(&app, "alice").await);
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(
        send(&app, "GET", "/user", Some(&cookies[0])).await.body,
        "anonymous"
    );
    for c in &cookies[1..] {
        assert_eq!(send(&app, "GET", "/user", Some(c)).await.body, "alice");
    }
    assert_eq!(
        store
            .list_by_user("alice", clock_now(&clock))
            .await
            .unwrap()
            .len(),
        3
    );

    let store = MemoryStore::new();
    let app = app_rejecting(store.clone());
    let first = login(&app, "alice").await;
    let r = send(&app, "POST", "/login/alice", None).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.set_cookies.is_empty(), "a refused sign-in sets no cookie");
    assert_eq!(send(&app, "GET", "/user", Some(&first)).await.body, "alice");
    // Signing in again on the same device replaces its own session.
    let r = send(&app, "POST", "/login/alice", Some(&first)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The lease is gone once the sign-in is filed: no leftover record.
    assert_eq!(
        store
            .list_by_user("alice", cloakroom::Timestamp::now())
            .await
            .unwrap()
            .len(),
        1
    );
}

fn app_rejecting(store: MemoryStore) -> Router {
    app(SessionLayer::new(store).with_session_limit(SessionLimit::reject_new(1)))
}

fn clock_now(clock: &MockClock) -> cloakroom::Timestamp {
    use cloakroom::Clock as _;
    clock.now()
}

/// S26 through the layer: twenty parallel sign-ins under a limit of one
/// leave one live session (the store-level scenario runs on every store).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s26_parallel_logins_through_the_layer_leave_one_session() {
    let store = MemoryStore::new();
    let app =
        app(SessionLayer::new(store.clone()).with_session_limit(SessionLimit::evict_oldest(1)));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            send(&app, "POST", "/login/alice", None).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        store
            .list_by_user("alice", cloakroom::Timestamp::now())
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A limit of zero, or one on client-side sessions, is refused at build.
#[test]
fn s26_impossible_limits_are_refused() {
    assert!(
        SessionLayer::new(MemoryStore::new())
            .with_session_limit(SessionLimit::reject_new(0))
            .build()
            .is_err()
    );
    let sealed = ClientSessions::new(Keyring::from(MasterKey::generate()));
    assert!(
        SessionLayer::client_side(sealed)
            .with_session_limit(SessionLimit::reject_new(2))
            .build()
            .is_err()
    );
}

fn guarded(clock: &MockClock, keys: Keyring) -> Router {
    let sensitive = Router::new()
        .route("/sensitive", post(|| async { "done" }))
        .layer(
            RequireFreshAuth::new(Duration::from_secs(300)).with_reauth_page("/reauth-page", keys),
        );
    routes()
        .merge(sensitive)
        .layer(SessionLayer::new(MemoryStore::new()).with_clock(clock.clone()))
}

async fn post_with(app: &Router, uri: &str, cookie: &str, accept: &str) -> support::Reply {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("cookie", cookie)
        .header("accept", accept)
        .body(Body::empty())
        .unwrap();
    send_req(app, req).await
}

/// S27: a sign-in older than the guard's max age gets 401 with RFC 9470's
/// challenge (API) or a redirect with a signed return path (browser);
/// re-authenticating rotates the ID and opens the route again.
#[tokio::test]
async fn s27_fresh_auth_is_required_and_reauth_rotates_the_id() {
    let clock = MockClock::new();
    let keys = Keyring::from(MasterKey::generate());
    let app = guarded(&clock, keys.clone());
    let anonymous = send(&app, "POST", "/sensitive", None).await;
    assert_eq!(anonymous.status, 401);
    let cookie = login(&app, "alice").await;
    assert_eq!(
        post_with(&app, "/sensitive", &cookie, "*/*").await.body,
        "done"
    );

    clock.advance(Duration::from_secs(301));
    let api = post_with(&app, "/sensitive", &cookie, "application/json").await;
    assert_eq!(api.status, 401);
    let challenge = api.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_user_authentication\"")
            && challenge.contains("max_age=300"),
        "{challenge}"
    );
    let html = post_with(&app, "/sensitive?x=1", &cookie, "text/html,*/*").await;
    assert_eq!(html.status, 303);
    let location = html.headers["location"].to_str().unwrap();
    let signed = location
        .strip_prefix("/reauth-page?return_to=")
        .expect(location);
    assert_eq!(
        ReturnPath::new(keys).open(signed).as_deref(),
        Some("/sensitive?x=1")
    );

    let r = send(&app, "POST", "/reauth", Some(&cookie)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let fresh = r.cookie().expect("re-authentication rotates the ID");
    assert_ne!(fresh, cookie);
    assert_eq!(
        send(&app, "GET", "/user", Some(&cookie)).await.body,
        "anonymous"
    );
    assert_eq!(
        post_with(&app, "/sensitive", &fresh, "*/*").await.body,
        "done"
    );
}

/// S27: re-authenticating needs a signed-in user.
#[tokio::test]
async fn s27_reauth_without_a_user_is_refused() {
    let app = app(SessionLayer::new(MemoryStore::new()));
    assert_eq!(send(&app, "POST", "/reauth", None).await.status, 401);
}
