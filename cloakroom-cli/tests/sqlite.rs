//! The demo on its default SQLite store: sessions and users survive a
//! restart, and cookieless traffic writes nothing.

mod common;

use std::path::Path;

use axum::http::{Method, StatusCode};
use cloakroom_cli::{DemoOptions, KeySource, StoreSpec, build_app};
use common::{TestResult, get, login, register, send};
use serde_json::json;

fn options(path: &Path) -> DemoOptions {
    DemoOptions {
        store: StoreSpec::Sqlite(path.to_owned()),
        ..DemoOptions::default()
    }
}

fn count(path: &Path, table: &str) -> Result<i64, rusqlite::Error> {
    let conn = rusqlite::Connection::open(path)?;
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
}

#[tokio::test]
async fn sessions_and_users_survive_a_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.db");

    let cookie = {
        let (app, handles) = build_app(&options(&path)).await?;
        assert_eq!(
            register(&app, "alice", "correct horse").await.status,
            StatusCode::CREATED
        );
        let r = login(&app, "alice", "correct horse", false).await;
        assert_eq!(r.status, StatusCode::OK);
        let cookie = r.cookie_pair().ok_or("login sets a cookie")?;
        let r = send(
            &app,
            Method::PUT,
            "/api/data/cart",
            Some(&cookie),
            Some(json!({"items": [7]})),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        drop(app);
        drop(handles);
        cookie
    };
    assert_eq!(count(&path, "demo_users")?, 1);
    assert_eq!(count(&path, "cloakroom_sessions")?, 1);

    let (app, _handles) = build_app(&options(&path)).await?;
    let r = get(&app, "/api/me", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["username"], "alice");
    let r = get(&app, "/api/data", Some(&cookie)).await;
    assert_eq!(r.json(), json!({"cart": {"items": [7]}}));
    // The account survived too: registering again conflicts, signing in works.
    assert_eq!(
        register(&app, "alice", "correct horse").await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        login(&app, "alice", "correct horse", false).await.status,
        StatusCode::OK
    );
    Ok(())
}

#[tokio::test]
async fn cookieless_traffic_creates_no_rows() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.db");
    let (app, _handles) = build_app(&options(&path)).await?;
    for _ in 0..10_000 {
        let r = get(&app, "/api/data", None).await;
        assert_eq!((r.status, r.set_cookie()), (StatusCode::OK, None));
    }
    let r = send(&app, Method::POST, "/api/logout", None, None).await;
    assert_eq!((r.status, r.set_cookie()), (StatusCode::NO_CONTENT, None));
    assert_eq!(count(&path, "cloakroom_sessions")?, 0);

    // Sanity check of the counting: one write makes one row.
    let r = send(&app, Method::PUT, "/api/data/k", None, Some(json!(1))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(count(&path, "cloakroom_sessions")?, 1);
    Ok(())
}

#[tokio::test]
async fn logout_deletes_the_row() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.db");
    let (app, _handles) = build_app(&options(&path)).await?;
    register(&app, "bob", "bob's password").await;
    let cookie = login(&app, "bob", "bob's password", true)
        .await
        .cookie_pair()
        .ok_or("cookie")?;
    assert_eq!(count(&path, "cloakroom_sessions")?, 1);
    let r = send(&app, Method::POST, "/api/logout", Some(&cookie), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(count(&path, "cloakroom_sessions")?, 0);
    assert_eq!(
        get(&app, "/api/me", Some(&cookie)).await.status,
        StatusCode::UNAUTHORIZED
    );
    Ok(())
}

#[tokio::test]
async fn store_failure_is_a_json_503_and_healthz_still_works() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.db");
    let (app, _handles) = build_app(&options(&path)).await?;
    let r = send(&app, Method::PUT, "/api/data/k", None, Some(json!(1))).await;
    let cookie = r.cookie_pair().ok_or("cookie")?;

    // Break the session table under the running app.
    rusqlite::Connection::open(&path)?.execute_batch("DROP TABLE cloakroom_sessions")?;

    let r = get(&app, "/api/data", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json(),
        json!({"error": "the session store is unavailable; please retry shortly"})
    );
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(
        r.set_cookie(),
        None,
        "a store failure does not clear the cookie"
    );
    assert_eq!(
        get(&app, "/healthz", Some(&cookie)).await.status,
        StatusCode::OK
    );
    assert_eq!(get(&app, "/", Some(&cookie)).await.status, StatusCode::OK);
    // Cookieless reads never need the store.
    assert_eq!(get(&app, "/api/data", None).await.status, StatusCode::OK);
    Ok(())
}

/// `--encrypt-store`: the rows hold no session data, a restart with the
/// same key file reads them, and one with another key signs everyone out.
#[tokio::test]
async fn encrypted_records_survive_a_restart_with_the_same_keys() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.db");
    let encrypted = |key_file: &str| DemoOptions {
        encrypt_at_rest: Some(KeySource {
            keys: None,
            key_file: dir.path().join(key_file),
        }),
        ..options(&path)
    };
    let cookie = {
        let (app, _handles) = build_app(&encrypted("a.keys")).await?;
        register(&app, "alice", "correct horse").await;
        let cookie = login(&app, "alice", "correct horse", false)
            .await
            .cookie_pair()
            .ok_or("login sets a cookie")?;
        let r = send(
            &app,
            Method::PUT,
            "/api/data/secret",
            Some(&cookie),
            Some(json!("plaintext-marker")),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        cookie
    };
    let conn = rusqlite::Connection::open(&path)?;
    let mut stmt = conn.prepare("SELECT record FROM cloakroom_sessions")?;
    let rows: Vec<Vec<u8>> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    assert_eq!(rows.len(), 1);
    assert!(
        !rows[0].windows(16).any(|w| w == b"plaintext-marker"),
        "session data at rest"
    );

    let (app, _handles) = build_app(&encrypted("a.keys")).await?;
    let r = get(&app, "/api/data", Some(&cookie)).await;
    assert_eq!(r.json(), json!({"secret": "plaintext-marker"}));
    let (app, _handles) = build_app(&encrypted("b.keys")).await?;
    assert_eq!(
        get(&app, "/api/me", Some(&cookie)).await.status,
        StatusCode::UNAUTHORIZED
    );
    Ok(())
}
