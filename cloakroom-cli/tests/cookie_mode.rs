//! The demo in `--mode cookie`: the same JSON API on sealed client-side
//! sessions, key rotation K1 → [K2, K1] → [K2] end to end, and the key file.

mod common;

use std::sync::Arc;

use axum::Router;
use cloakroom::crypto::MasterKey;
use cloakroom::store::SessionStore;
use cloakroom_cli::{DemoOptions, SessionMode, Stores, UserStore, build_app_with_stores};
use common::{TestResult, get, login, post, register};
use serde_json::json;

/// One deploy of the demo. Deploys share the users and the session store
/// (where the revocation epochs live), as a real deployment does: with a
/// fresh `memory:` store per deploy every cookie-mode user would be signed
/// out, since lost epochs refuse cookies (fail closed).
async fn app(
    keys: Option<String>,
    key_file: std::path::PathBuf,
    users: &UserStore,
    sessions: &Arc<dyn SessionStore>,
) -> Router {
    let stores = Stores {
        users: users.clone(),
        sessions: sessions.clone(),
    };
    let opts = DemoOptions {
        mode: SessionMode::Cookie { keys, key_file },
        ..DemoOptions::default()
    };
    let (router, handles) = build_app_with_stores(stores, &opts)
        .await
        .expect("the demo builds");
    // The handles only keep the reaper alive; fine to leak in a test.
    std::mem::forget(handles);
    router
}

#[tokio::test]
async fn the_api_works_on_sealed_cookies_and_keys_rotate() -> TestResult {
    let dir = tempfile::tempdir()?;
    let unused = dir.path().join("unused.keys");
    let users = UserStore::memory();
    let sessions = Stores::memory().sessions;
    let (k1, k2) = (
        MasterKey::generate().to_base64url(),
        MasterKey::generate().to_base64url(),
    );
    let old = app(Some(k1.clone()), unused.clone(), &users, &sessions).await;

    assert_eq!(register(&old, "alice", "correct horse").await.status, 201);
    let signed_in = login(&old, "alice", "correct horse", false).await;
    assert_eq!(signed_in.status, 200);
    let c1 = signed_in.cookie_pair().expect("a session cookie");
    assert!(!c1.contains("alice"), "the record is sealed, not readable");
    assert_eq!(
        get(&old, "/api/me", Some(&c1)).await.json()["username"],
        "alice"
    );
    let put = common::send(
        &old,
        axum::http::Method::PUT,
        "/api/data/cart",
        Some(&c1),
        Some(json!([1, 2])),
    )
    .await;
    assert_eq!(put.status, 204);
    let c1 = put.cookie_pair().expect("a write re-seals the cookie");
    assert_eq!(
        get(&old, "/api/data", Some(&c1)).await.json(),
        json!({"cart": [1, 2]})
    );

    // Deploy [K2, K1]: the K1 cookie still works and comes back re-sealed.
    let both = app(
        Some(format!("{k2},{k1}")),
        unused.clone(),
        &users,
        &sessions,
    )
    .await;
    let me = get(&both, "/api/me", Some(&c1)).await;
    assert_eq!(me.status, 200);
    let c2 = me.cookie_pair().expect("re-sealed under the newest key");
    // Deploy [K2]: the re-sealed cookie works, the K1 one does not.
    let new = app(Some(k2.clone()), unused, &users, &sessions).await;
    assert_eq!(
        get(&new, "/api/me", Some(&c2)).await.json()["username"],
        "alice"
    );
    assert_eq!(
        get(&new, "/api/data", Some(&c2)).await.json(),
        json!({"cart": [1, 2]})
    );
    assert_eq!(get(&new, "/api/me", Some(&c1)).await.status, 401);

    let out = post(&new, "/api/logout", Some(&c2), json!({})).await;
    assert_eq!(out.status, 204);
    assert!(out.set_cookie().is_some_and(|c| c.contains("Max-Age=0")));
    Ok(())
}

#[tokio::test]
async fn without_keys_a_private_key_file_is_created_and_reused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("demo.keys");
    let users = UserStore::memory();
    let sessions = Stores::memory().sessions;
    let first = app(None, file.clone(), &users, &sessions).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file)?.permissions().mode() & 0o777,
            0o600
        );
    }
    register(&first, "bob", "correct horse").await;
    let cookie = login(&first, "bob", "correct horse", true)
        .await
        .cookie_pair()
        .expect("cookie");
    // A restart reads the same key file: the cookie survives.
    let second = app(None, file, &users, &sessions).await;
    assert_eq!(
        get(&second, "/api/me", Some(&cookie)).await.json()["username"],
        "bob"
    );
    Ok(())
}

#[tokio::test]
async fn bad_keys_are_refused_with_advice() {
    let stores = Stores::memory();
    let opts = DemoOptions {
        mode: SessionMode::Cookie {
            keys: Some("c2hvcnQ".into()),
            key_file: "unused".into(),
        },
        ..DemoOptions::default()
    };
    let Err(e) = build_app_with_stores(stores, &opts).await else {
        panic!("a short key must be refused");
    };
    assert!(e.to_string().contains("keygen"), "{e}");
}
