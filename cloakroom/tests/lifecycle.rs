//! The request lifecycle: concurrency, store failures, 5xx, touching, bad
//! input, extractors and plain tower services.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use cloakroom::store::{MemoryStore, SessionStore};
use cloakroom::{
    Expiry, MockClock, OnStoreFailure, Session, SessionData, SessionError, SessionId, SessionLayer,
    SessionValue,
};
use serde::{Deserialize, Serialize};
use support::{TestStore, app_with, send};

fn jar(reply: &support::Reply) -> String {
    reply.cookie().expect("a Set-Cookie")
}

async fn sixty_four_writers_all_land(store: impl SessionStore + Clone) {
    let app = app_with(SessionLayer::new(store));
    let login = send(&app, "POST", "/login", None).await;
    let cookie = jar(&login);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let app = app.clone();
        let cookie = cookie.clone();
        tasks.push(tokio::spawn(async move {
            let r = send(&app, "POST", &format!("/put/k{i}/v{i}"), Some(&cookie)).await;
            assert_eq!(r.status, 204, "{}", r.body);
            assert!(
                r.set_cookies.is_empty(),
                "a plain write must not reissue the cookie"
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let keys = send(&app, "GET", "/keys", Some(&cookie)).await.body;
    let keys: Vec<&str> = keys.split(',').collect();
    assert_eq!(
        keys.len(),
        64,
        "lost updates: only {} keys survived",
        keys.len()
    );
    assert_eq!(
        send(&app, "GET", "/get/k42", Some(&cookie)).await.body,
        "v42"
    );
    assert_eq!(
        send(&app, "GET", "/user", Some(&cookie)).await.body,
        "alice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_to_one_session_all_survive_memory() {
    sixty_four_writers_all_land(MemoryStore::new()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_to_one_session_all_survive_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = cloakroom::store::SqliteStore::open(dir.path().join("c.db")).unwrap();
    sixty_four_writers_all_land(store).await;
}

/// Concurrent writes to one session are committed in batches: far fewer
/// store saves than requests, and no write lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_are_group_committed() {
    let store = TestStore::new(MemoryStore::new());
    let app = app_with(SessionLayer::new(store.clone()));
    let cookie = jar(&send(&app, "POST", "/login", None).await);
    // A slow store: every save takes a while, so writers pile up behind it.
    store
        .save_delay_ms
        .store(20, std::sync::atomic::Ordering::SeqCst);
    let before = store.writes();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (app, cookie) = (app.clone(), cookie.clone());
        tasks.push(tokio::spawn(async move {
            let r = send(&app, "POST", &format!("/put/k{i}/v{i}"), Some(&cookie)).await;
            assert_eq!(r.status, 204, "{}", r.body);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let saves = store.writes() - before;
    let keys = send(&app, "GET", "/keys", Some(&cookie)).await.body;
    assert_eq!(keys.split(',').count(), 64, "lost updates: {keys}");
    assert!(saves < 16, "64 writes took {saves} store saves");
}

/// In a batch, a change set that would make the record too large is
/// refused on its own: the others in the batch still land.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_change_in_a_batch_fails_alone() {
    let store = TestStore::new(MemoryStore::new());
    let layer = SessionLayer::new(store.clone())
        .with_max_value_bytes(2000)
        .with_max_record_bytes(4096)
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/start",
            post(|s: Session| async move {
                s.insert("n", &0).await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/put/{i}",
            post(
                |s: Session, axum::extract::Path(i): axum::extract::Path<u32>| async move {
                    s.insert(&format!("k{i}"), &"x".repeat(1500)).await?;
                    Ok::<_, SessionError>("stored")
                },
            ),
        )
        .route(
            "/keys",
            get(|s: Session| async move { Ok::<_, SessionError>(s.keys().await?.join(",")) }),
        )
        .layer(layer);
    let cookie = jar(&send(&app, "POST", "/start", None).await);
    store
        .save_delay_ms
        .store(20, std::sync::atomic::Ordering::SeqCst);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (app, cookie) = (app.clone(), cookie.clone());
        tasks.push(tokio::spawn(async move {
            let r = send(&app, "POST", &format!("/put/{i}"), Some(&cookie)).await;
            (i, r.status)
        }));
    }
    let mut stored = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (i, status) = t.await.unwrap();
        if status == 200 {
            stored.push(format!("k{i}"));
        } else {
            refused += 1;
        }
    }
    // Two 1.5 KB values fit in 4 KiB, a third does not.
    assert_eq!(stored.len(), 2, "stored {stored:?}");
    assert_eq!(refused, 4);
    let keys = send(&app, "GET", "/keys", Some(&cookie)).await.body;
    let mut keys: Vec<&str> = keys.split(',').filter(|k| k.starts_with('k')).collect();
    keys.sort_unstable();
    stored.sort();
    assert_eq!(keys, stored, "exactly the accepted writes landed");
}

async fn logout_beats_racing_writes(store: impl SessionStore + Clone) {
    let app = app_with(SessionLayer::new(store.clone()));
    let login = send(&app, "POST", "/login", None).await;
    let cookie = jar(&login);
    let id = SessionId::parse(&login.cookie_value().unwrap()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (a, c) = (app.clone(), cookie.clone());
        tasks.push(tokio::spawn(async move {
            send(&a, "POST", &format!("/put/k{i}/v"), Some(&c)).await;
        }));
        if i == 25 {
            let app = app.clone();
            let cookie = cookie.clone();
            tasks.push(tokio::spawn(async move {
                assert_eq!(
                    send(&app, "POST", "/logout", Some(&cookie)).await.status,
                    204
                );
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        store
            .load(&id.storage_key(), cloakroom::Timestamp::now())
            .await
            .unwrap()
            .is_none(),
        "a racing write resurrected the session"
    );
    assert_eq!(
        send(&app, "GET", "/user", Some(&cookie)).await.body,
        "anonymous"
    );
    assert!(
        store
            .list_by_user("alice", cloakroom::Timestamp::now())
            .await
            .unwrap()
            .is_empty(),
        "alice is still signed in somewhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_racing_fifty_writes_stays_dead_memory() {
    logout_beats_racing_writes(MemoryStore::new()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_racing_fifty_writes_stays_dead_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = cloakroom::store::SqliteStore::open(dir.path().join("r.db")).unwrap();
    logout_beats_racing_writes(store).await;
}

#[tokio::test]
async fn store_failure_gives_503_and_untouched_routes_work() {
    let store = TestStore::new(MemoryStore::new());
    let app = app_with(SessionLayer::new(store.clone()));
    let login = send(&app, "POST", "/login", None).await;
    let cookie = jar(&login);
    store.set_down(true);
    let r = send(&app, "GET", "/user", Some(&cookie)).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["retry-after"], "5");
    assert!(
        r.set_cookies.is_empty(),
        "a failed load must not clear the cookie"
    );
    let w = send(&app, "POST", "/write", None).await;
    assert_eq!(
        w.status, 503,
        "a write that cannot be saved must not look successful"
    );
    let plain = send(&app, "GET", "/plain", Some(&cookie)).await;
    assert_eq!(
        plain.status, 200,
        "routes that never touch the session keep working"
    );
    // The store comes back: so does the session, without a restart.
    store.set_down(false);
    assert_eq!(
        send(&app, "GET", "/user", Some(&cookie)).await.body,
        "alice"
    );
}

#[tokio::test]
async fn store_failure_policies() {
    let store = TestStore::new(MemoryStore::new());
    store.set_down(true);
    let anon = app_with(
        SessionLayer::new(store.clone())
            .with_store_failure(OnStoreFailure::ContinueAnonymous)
            .build()
            .unwrap(),
    );
    let cookie = format!("__Host-id={}", SessionId::generate().expose_secret());
    let r = send(&anon, "GET", "/user", Some(&cookie)).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "anonymous"));

    let custom = app_with(
        SessionLayer::new(store.clone())
            .with_store_failure(OnStoreFailure::respond_with(|e| {
                http::Response::builder()
                    .status(502)
                    .body(format!("custom: {}", e.is_backend_failure()))
                    .unwrap()
            }))
            .build()
            .unwrap(),
    );
    let r = send(&custom, "GET", "/user", Some(&cookie)).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (502, "custom: true"));
}

#[tokio::test]
async fn server_errors_are_not_persisted() {
    let store = TestStore::new(MemoryStore::new());
    let app = app_with(SessionLayer::new(store.clone()));
    let r = send(&app, "POST", "/fail", None).await;
    assert_eq!(r.status, 500);
    assert!(r.set_cookies.is_empty());
    assert_eq!(store.writes(), 0);
    let login = send(&app, "POST", "/login", None).await;
    let cookie = jar(&login);
    send(&app, "POST", "/fail", Some(&cookie)).await;
    assert_eq!(
        send(&app, "GET", "/read", Some(&cookie)).await.body,
        "none",
        "a 5xx write was saved"
    );
}

#[tokio::test]
async fn touches_are_throttled() {
    let clock = MockClock::new();
    let store = TestStore::new(MemoryStore::new());
    let app = app_with(
        SessionLayer::new(store.clone())
            .with_clock(clock.clone())
            .with_expiry(Expiry::default().with_touch_interval(Duration::from_secs(60)))
            .build()
            .unwrap(),
    );
    let login = send(&app, "POST", "/login", None).await;
    let cookie = jar(&login);
    let writes = store.writes();
    for _ in 0..10 {
        clock.advance(Duration::from_secs(5));
        send(&app, "GET", "/read", Some(&cookie)).await;
    }
    assert_eq!(
        store.writes(),
        writes,
        "reads within the touch interval must not write"
    );
    clock.advance(Duration::from_secs(30));
    send(&app, "GET", "/read", Some(&cookie)).await;
    assert_eq!(store.writes(), writes + 1, "one touch after the interval");
    send(&app, "GET", "/read", Some(&cookie)).await;
    assert_eq!(store.writes(), writes + 1);
    // A request that never touches its session costs no store I/O.
    let calls = store.calls();
    send(&app, "GET", "/plain", Some(&cookie)).await;
    assert_eq!(store.calls(), calls);
}

#[tokio::test]
async fn wrong_type_is_a_typed_error_and_keeps_the_data() {
    let app = app_with(SessionLayer::new(MemoryStore::new()));
    let r = send(&app, "POST", "/put/n/not-a-number", None).await;
    let cookie = jar(&r);
    let read = send(&app, "GET", "/read", Some(&cookie)).await;
    assert_eq!(read.status, 500);
    assert!(read.body.contains("\"n\""), "{}", read.body);
    assert_eq!(
        send(&app, "GET", "/get/n", Some(&cookie)).await.body,
        "not-a-number",
        "data lost"
    );
}

#[tokio::test]
async fn oversized_values_and_bad_keys_are_refused() {
    let layer = SessionLayer::new(MemoryStore::new())
        .with_max_value_bytes(1024)
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/big",
            post(|s: Session| async move {
                s.insert("blob", &"x".repeat(2000)).await?;
                Ok::<_, SessionError>("stored")
            }),
        )
        .route(
            "/badkey",
            post(|s: Session| async move {
                s.insert(&"k".repeat(300), &1).await?;
                Ok::<_, SessionError>("stored")
            }),
        )
        .layer(layer);
    let r = send(&app, "POST", "/big", None).await;
    assert_eq!(r.status, 413);
    assert!(r.set_cookies.is_empty());
    assert_eq!(send(&app, "POST", "/badkey", None).await.status, 400);
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn corrupt_and_unknown_version_records_are_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    let store = cloakroom::store::SqliteStore::open(&path).unwrap();
    let app = app_with(SessionLayer::new(store));
    for garbage in [&b"\x02\x00\x00"[..], &b"\x01\xff"[..], &[][..]] {
        let login = send(&app, "POST", "/login", None).await;
        let cookie = jar(&login);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE cloakroom_sessions SET record = ?1", [garbage])
            .unwrap();
        let r = send(&app, "GET", "/user", Some(&cookie)).await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "anonymous"));
        assert!(r.set_cookies[0].contains("Max-Age=0"));
    }
}

#[tokio::test]
async fn unknown_id_cookie_is_left_alone_on_reads() {
    let app = app_with(SessionLayer::new(MemoryStore::new()));
    let cookie = format!("__Host-id={}", SessionId::generate().expose_secret());
    let r = send(&app, "GET", "/user", Some(&cookie)).await;
    assert_eq!(r.body, "anonymous");
    // No removal: the ID may have just been rotated by a sign-in whose
    // cookie the browser already holds (issue 7, defect 9).
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    // A write replaces it with a fresh ID, never the presented one (S4).
    let w = send(&app, "POST", "/write", Some(&cookie)).await;
    assert!(w.cookie().is_some_and(|c| c != cookie));
    let plain = send(&app, "GET", "/plain", Some(&cookie)).await;
    assert!(
        plain.set_cookies.is_empty(),
        "an unused session must not even be looked at"
    );
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cart {
    items: Vec<u32>,
}

impl SessionValue for Cart {
    const KEY: &'static str = "cart";
}

#[tokio::test]
async fn typed_extractor_round_trip() {
    let app = Router::new()
        .route(
            "/cart",
            post(|mut cart: SessionData<Cart>| async move {
                let next = cart.items.len() as u32 + 1;
                cart.items.push(next);
                cart.write_back().await?;
                Ok::<_, SessionError>(format!("{:?}", cart.items))
            }),
        )
        .route(
            "/cart",
            get(|cart: SessionData<Cart>| async move { format!("{:?}", cart.items) }),
        )
        .layer(SessionLayer::new(MemoryStore::new()));
    let first = send(&app, "POST", "/cart", None).await;
    assert_eq!(first.body, "[1]");
    let cookie = jar(&first);
    assert_eq!(
        send(&app, "POST", "/cart", Some(&cookie)).await.body,
        "[1, 2]"
    );
    assert_eq!(
        send(&app, "GET", "/cart", Some(&cookie)).await.body,
        "[1, 2]"
    );
}

#[tokio::test]
async fn missing_layer_is_a_clear_500() {
    let app = Router::new().route("/", get(|_s: Session| async { "unreachable" }));
    let r = send(&app, "GET", "/", None).await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("SessionLayer"));
}

#[tokio::test]
async fn works_with_a_plain_tower_service() {
    use tower::{Layer, Service, ServiceExt};
    let layer = SessionLayer::new(MemoryStore::new());
    let svc = tower::service_fn(|req: http::Request<String>| async move {
        let session = req.extensions().get::<Session>().cloned().expect("session");
        let n: u32 = session.get("n").await.ok().flatten().unwrap_or(0) + 1;
        session.insert("n", &n).await.ok();
        Ok::<_, std::convert::Infallible>(http::Response::new(n.to_string()))
    });
    let mut svc = layer.layer(svc);
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(String::new()))
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(res.body(), "1");
    let req = http::Request::builder()
        .header("cookie", cookie)
        .body(String::new())
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.body(), "2");
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Session>();
    check::<SessionLayer>();
    let _ = Arc::new(MemoryStore::new());
}
