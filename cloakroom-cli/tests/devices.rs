//! The demo's account routes (issue 11): `GET /api/sessions`,
//! `DELETE /api/sessions/{handle}`, `POST /api/sessions/revoke-others`,
//! `POST /api/password` (fresh auth, S27) and the admin CLI's
//! `cloakroom sessions list/revoke` on a store URL.

mod common;

use std::process::Command;
use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode};
use cloakroom::store::{MemoryStore, SessionStore, SqliteStore};
use cloakroom::{Record, SessionId, Timestamp};
use cloakroom_cli::{DemoOptions, Stores, UserStore, build_app_with_stores};
use common::{TestResult, get, login, post, register, send};
use serde_json::{Value, json};

async fn app() -> Result<Router, cloakroom_cli::DemoError> {
    let stores = Stores {
        sessions: Arc::new(MemoryStore::new()),
        users: UserStore::memory(),
    };
    Ok(build_app_with_stores(stores, &DemoOptions::default())
        .await?
        .0)
}

async fn device(app: &Router) -> String {
    login(app, "alice", "correct horse", false)
        .await
        .cookie_pair()
        .expect("signed in")
}

#[tokio::test]
async fn devices_are_listed_and_revoked() -> TestResult {
    let app = app().await?;
    assert_eq!(
        register(&app, "alice", "correct horse").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        register(&app, "bob", "battery staple").await.status,
        StatusCode::CREATED
    );
    let phone = device(&app).await;
    let laptop = device(&app).await;
    let bob = login(&app, "bob", "battery staple", false)
        .await
        .cookie_pair()
        .expect("bob");

    assert_eq!(
        get(&app, "/api/sessions", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let list = get(&app, "/api/sessions", Some(&laptop)).await;
    assert_eq!(list.status, StatusCode::OK);
    let list = list.json();
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 2);
    for d in list {
        for field in [
            "handle",
            "current",
            "kind",
            "created_at",
            "last_seen_at",
            "ip",
            "user_agent",
        ] {
            assert!(d.get(field).is_some(), "{field} missing in {d}");
        }
        assert_eq!(d["kind"], "server");
        assert!(d["created_at"].is_u64());
    }
    assert_eq!(list[0]["current"], true);
    let phone_handle = list[1]["handle"].as_str().expect("a handle").to_owned();

    let bobs = get(&app, "/api/sessions", Some(&bob)).await.json();
    let bobs_handle = bobs[0]["handle"].as_str().expect("bob's handle");
    let r = send(
        &app,
        Method::DELETE,
        &format!("/api/sessions/{bobs_handle}"),
        Some(&laptop),
        None,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "another user's handle (S25)"
    );
    assert_eq!(
        get(&app, "/api/me", Some(&bob)).await.status,
        StatusCode::OK
    );

    let r = send(
        &app,
        Method::DELETE,
        &format!("/api/sessions/{phone_handle}"),
        Some(&laptop),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&app, "/api/me", Some(&phone)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, "/api/me", Some(&laptop)).await.status,
        StatusCode::OK
    );

    let tablet = device(&app).await;
    let r = post(
        &app,
        "/api/sessions/revoke-others",
        Some(&laptop),
        json!({}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"ended": 1}));
    assert_eq!(
        get(&app, "/api/me", Some(&tablet)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, "/api/me", Some(&laptop)).await.status,
        StatusCode::OK
    );
    Ok(())
}

#[tokio::test]
async fn password_change_ends_the_other_sessions_and_rotates_this_one() -> TestResult {
    let app = app().await?;
    register(&app, "alice", "correct horse").await;
    let other = device(&app).await;
    let here = device(&app).await;
    let body =
        |current: &str| json!({"current_password": current, "new_password": "new horse battery"});

    let r = post(&app, "/api/password", Some(&here), body("wrong password")).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the current password is checked"
    );
    assert_eq!(
        get(&app, "/api/me", Some(&other)).await.status,
        StatusCode::OK
    );

    let r = post(&app, "/api/password", Some(&here), body("correct horse")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let rotated = r
        .cookie_pair()
        .expect("a new ID after the credential change");
    assert_ne!(rotated, here);
    assert_eq!(
        get(&app, "/api/me", Some(&other)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, "/api/me", Some(&here)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, "/api/me", Some(&rotated)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        login(&app, "alice", "correct horse", false).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "alice", "new horse battery", false)
            .await
            .status,
        StatusCode::OK
    );

    let r = post(&app, "/api/password", None, body("new horse battery")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "signed out: refused");
    Ok(())
}

#[tokio::test]
async fn reauth_checks_the_password_and_rotates() -> TestResult {
    let app = app().await?;
    register(&app, "alice", "correct horse").await;
    let here = device(&app).await;
    let r = post(
        &app,
        "/api/reauth",
        Some(&here),
        json!({"password": "nope nope"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post(
        &app,
        "/api/reauth",
        Some(&here),
        json!({"password": "correct horse"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let fresh = r.cookie_pair().expect("rotated");
    assert_ne!(fresh, here);
    assert_eq!(
        get(&app, "/api/me", Some(&fresh)).await.status,
        StatusCode::OK
    );
    Ok(())
}

fn signed_in(user: &str) -> Record {
    let now = Timestamp::now();
    let mut r = Record::new(
        now,
        std::time::Duration::from_secs(600),
        std::time::Duration::from_secs(3600),
    );
    r.version = 1;
    r.user = Some(user.to_owned());
    r
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn admin_cli_lists_and_revokes_a_users_sessions() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path)?;
    let now = Timestamp::now();
    for user in ["alice", "alice", "alice", "bob"] {
        store
            .create(&SessionId::generate().storage_key(), &signed_in(user), now)
            .await?;
    }
    let url = format!("sqlite:{}", path.display());

    let (ok, out, err) = cli(&[
        "sessions", "list", "--store", &url, "--user", "alice", "--json",
    ]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out)?;
    let listed = listed.as_array().expect("an array").clone();
    assert_eq!(listed.len(), 3);
    let handle = listed[0]["handle"].as_str().expect("a handle").to_owned();

    let (ok, out, _) = cli(&["sessions", "list", "--store", &url, "--user", "alice"]);
    assert!(
        ok && out.lines().count() == 3 && out.contains(&handle),
        "{out}"
    );

    let (ok, _, err) = cli(&[
        "sessions",
        "revoke",
        "--store",
        &url,
        "--user",
        "bob",
        &format!("--handle={handle}"),
    ]);
    assert!(
        !ok && err.contains("no session"),
        "another user's handle: {err}"
    );
    let (ok, out, err) = cli(&[
        "sessions",
        "revoke",
        "--store",
        &url,
        "--user",
        "alice",
        &format!("--handle={handle}"),
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "ended 1 session(s)");
    let (ok, out, err) = cli(&[
        "sessions", "revoke", "--store", &url, "--user", "alice", "--all",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "ended 2 session(s)");
    assert_eq!(
        store.list_by_user("alice", Timestamp::now()).await?.len(),
        0
    );
    assert_eq!(store.list_by_user("bob", Timestamp::now()).await?.len(), 1);
    let (ok, _, _) = cli(&["sessions", "revoke", "--store", &url, "--user", "alice"]);
    assert!(!ok, "--handle or --all is required");
    Ok(())
}
