//! Defect 14: text a client typed never reaches the demo's logs raw (no
//! forged lines, no passwords typed into the username field).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{Method, StatusCode};
use cloakroom_cli::{DemoOptions, Stores, build_app_with_stores};
use common::{TestResult, login, register, send};
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn failed_sign_in_never_logs_the_typed_username() -> TestResult {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // The handlers run on this (current-thread) runtime's thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let (app, _handles) = build_app_with_stores(Stores::memory(), &DemoOptions::default()).await?;
    assert_eq!(
        register(&app, "alice", "alice-password").await.status,
        StatusCode::CREATED
    );
    let forged = "alice\nINFO forged";
    // Passwords typed into the username field: one the username check
    // refuses, one that looks like a valid username but is not registered.
    let typed_passwords = ["correct horse battery staple!", "Tr0ub4dor.and.3"];
    for name in [forged].into_iter().chain(typed_passwords) {
        let answer = login(&app, name, "some-password", false).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name:?}");
    }
    // A registered name with a wrong password, then a good sign-in.
    assert_eq!(
        login(&app, "alice", "wrong-password", false).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "alice", "alice-password", false).await.status,
        StatusCode::OK
    );
    // The request log names routes, not the client's path text.
    let data_key = "secret-looking-data-key";
    let put = send(
        &app,
        Method::PUT,
        &format!("/api/data/{data_key}"),
        None,
        Some(json!(1)),
    )
    .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    send(&app, Method::GET, "/api%0aINFO%20forged", None, None).await;

    let logs = capture.text();
    assert!(!logs.contains("forged"), "forged line logged:\n{logs}");
    assert!(
        !logs.lines().any(|l| l.starts_with("INFO")),
        "a line starts with the typed text:\n{logs}"
    );
    for typed in typed_passwords {
        assert!(!logs.contains(typed), "{typed:?} logged:\n{logs}");
    }
    assert!(!logs.contains(data_key), "data key logged:\n{logs}");
    assert!(!logs.contains("some-password"), "password logged:\n{logs}");
    // The refusals are still there, as pseudonyms, and a registered
    // name is still logged as itself.
    assert_eq!(
        logs.matches("sign-in refused: no such user").count(),
        3,
        "{logs}"
    );
    assert_eq!(logs.matches("username_pseudonym=").count(), 3, "{logs}");
    assert!(
        logs.contains("sign-in refused: wrong password"),
        "refusal for a known user not logged:\n{logs}"
    );
    assert!(logs.contains("username=\"alice\""), "{logs}");
    assert!(logs.contains("route=\"/api/data/{key}\""), "{logs}");
    Ok(())
}
