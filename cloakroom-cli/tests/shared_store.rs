//! Two app instances sharing one store (as two servers behind a load
//! balancer would): sign in on one, read and revoke on the other — for
//! every store, against the real servers. Plus a Redis that goes away
//! mid-run: the configured failure response, then recovery by itself.

mod common;

use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::http::Method;
use cloakroom::store::conformance::skip_service;
use cloakroom_cli::{DemoOptions, Stores, UserStore, build_app_with_stores};
use common::{get, login, post, register, send};
use serde_json::json;

async fn instance(url: &str, users: &UserStore) -> Result<Router, String> {
    let sessions = cloakroom::store::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    let stores = Stores {
        sessions,
        users: users.clone(),
    };
    let (router, handles) = build_app_with_stores(stores, &DemoOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    std::mem::forget(handles); // keeps the reaper; fine in a test
    Ok(router)
}

async fn two_instances(service: &str, url: &str) {
    let users = UserStore::memory();
    let (a, b) = match (instance(url, &users).await, instance(url, &users).await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return skip_service(service, &e),
    };
    // One name per scenario: scenarios share backends, and logging out
    // everywhere in one must not sign out the other's user.
    let tag: String = service
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let name = format!("u{tag}{}", std::process::id());
    assert_eq!(register(&a, &name, "correct horse").await.status, 201);

    // Sign in on A, read and write on B, read B's write on A.
    let laptop = login(&a, &name, "correct horse", false)
        .await
        .cookie_pair()
        .expect("cookie");
    assert_eq!(
        get(&b, "/api/me", Some(&laptop)).await.json()["username"],
        name.as_str()
    );
    let put = send(
        &b,
        Method::PUT,
        "/api/data/cart",
        Some(&laptop),
        Some(json!([1, 2, 3])),
    )
    .await;
    assert_eq!(put.status, 204);
    assert_eq!(
        get(&a, "/api/data", Some(&laptop)).await.json(),
        json!({"cart": [1, 2, 3]})
    );

    // Revoke on B: logout there ends the session on A too.
    assert_eq!(
        post(&b, "/api/logout", Some(&laptop), json!({}))
            .await
            .status,
        204
    );
    assert_eq!(
        get(&a, "/api/me", Some(&laptop)).await.status,
        401,
        "{service}: revoked session still works on A"
    );

    // Log out everywhere from B's device: A's device is signed out as well.
    let phone = login(&a, &name, "correct horse", false)
        .await
        .cookie_pair()
        .expect("cookie");
    let tablet = login(&b, &name, "correct horse", false)
        .await
        .cookie_pair()
        .expect("cookie");
    assert_eq!(get(&a, "/api/me", Some(&phone)).await.status, 200);
    assert_eq!(
        post(&b, "/api/logout-everywhere", Some(&tablet), json!({}))
            .await
            .status,
        204
    );
    assert_eq!(
        get(&a, "/api/me", Some(&phone)).await.status,
        401,
        "{service}: logout-everywhere missed a device"
    );
    assert_eq!(get(&b, "/api/me", Some(&tablet)).await.status, 401);
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    two_instances(
        "sqlite",
        &format!("sqlite:{}", dir.path().join("s.db").display()),
    )
    .await;
}

#[tokio::test]
async fn file() {
    let dir = tempfile::tempdir().expect("temp dir");
    two_instances("file", &format!("file:{}", dir.path().display())).await;
}

#[tokio::test]
async fn postgres() {
    two_instances(
        "postgres",
        &env_or(
            "CLOAKROOM_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        ),
    )
    .await;
}

#[tokio::test]
async fn mysql() {
    two_instances(
        "mysql",
        &env_or(
            "CLOAKROOM_TEST_MYSQL_URL",
            "mysql://root@127.0.0.1:3306/test",
        ),
    )
    .await;
}

#[tokio::test]
async fn redis() {
    two_instances(
        "redis",
        &env_or("CLOAKROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/"),
    )
    .await;
}

#[tokio::test]
async fn redis_cluster() {
    two_instances(
        "redis-cluster",
        "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003/",
    )
    .await;
}

#[tokio::test]
async fn memcached() {
    two_instances(
        "memcached",
        &env_or("CLOAKROOM_TEST_MEMCACHED_URL", "memcache://127.0.0.1:11211"),
    )
    .await;
}

#[tokio::test]
async fn mongodb() {
    two_instances(
        "mongodb",
        &env_or(
            "CLOAKROOM_TEST_MONGODB_URL",
            "mongodb://127.0.0.1:27017/cloakroom_test",
        ),
    )
    .await;
}

#[tokio::test]
async fn dynamodb() {
    let url = env_or(
        "CLOAKROOM_TEST_DYNAMODB_URL",
        "dynamodb+http://127.0.0.1:8000/cloakroom_test",
    );
    // The table both instances share (idempotent).
    if let Err(e) = cloakroom_cli::admin::dynamodb_create_table(&url).await {
        return skip_service("dynamodb", &e);
    }
    two_instances("dynamodb", &url).await;
}

#[tokio::test]
async fn tiered_redis_over_postgres() {
    let url = format!(
        "tiered:{}|{}",
        env_or("CLOAKROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/"),
        env_or(
            "CLOAKROOM_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test"
        )
    );
    two_instances("tiered", &url).await;
}

/// A free TCP port on loopback.
fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_redis(port: u16) -> std::io::Result<()> {
    let status = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
        ])
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other("redis-server did not start"));
    }
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(std::io::Error::other("redis-server did not answer"))
}

fn stop_redis(port: u16) {
    let _ = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "shutdown", "nosave"])
        .status();
}

#[tokio::test]
async fn store_going_away_gives_503_and_the_app_recovers_by_itself() {
    let port = spare_port();
    if let Err(e) = start_redis(port) {
        return skip_service("redis-server (spare port)", &e);
    }
    let users = UserStore::memory();
    let app = match instance(&format!("redis://127.0.0.1:{port}/"), &users).await {
        Ok(app) => app,
        Err(e) => {
            stop_redis(port);
            return skip_service("redis-server (spare port)", &e);
        }
    };
    register(&app, "carol", "correct horse").await;
    let cookie = login(&app, "carol", "correct horse", false)
        .await
        .cookie_pair()
        .expect("cookie");
    assert_eq!(get(&app, "/api/me", Some(&cookie)).await.status, 200);

    stop_redis(port);
    let down = get(&app, "/api/me", Some(&cookie)).await;
    assert_eq!(down.status, 503, "the configured failure response");
    assert!(down.headers.contains_key("retry-after"));
    assert_eq!(
        down.json()["error"],
        "the session store is unavailable; please retry shortly"
    );
    assert_eq!(
        get(&app, "/healthz", None).await.status,
        200,
        "routes without a session keep working"
    );

    // The server comes back (empty: nothing was persisted). The same app,
    // not restarted, works again.
    start_redis(port).expect("redis restarts");
    let mut back = None;
    for _ in 0..50 {
        let r = login(&app, "carol", "correct horse", false).await;
        if r.status == 200 {
            back = r.cookie_pair();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = back.expect("the app recovered without a restart");
    assert_eq!(get(&app, "/api/me", Some(&fresh)).await.status, 200);
    assert_eq!(
        get(&app, "/api/me", Some(&cookie)).await.status,
        401,
        "the lost session stays lost"
    );
    stop_redis(port);
}
