//! S50: lifecycle events are logged, and no log line carries a raw session
//! ID or cookie value.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use cloakroom::store::MemoryStore;
use cloakroom::{SessionId, SessionLayer};
use support::{app_with, send};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_never_contain_ids() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = app_with(SessionLayer::new(MemoryStore::new()));
    let login = send(&app, "POST", "/login", None).await;
    let cookie = login.cookie().unwrap();
    let id = login.cookie_value().unwrap();
    send(&app, "POST", "/write", Some(&cookie)).await;
    send(&app, "POST", "/logout", Some(&cookie)).await;
    send(&app, "GET", "/user", Some(&cookie)).await; // unknown (revoked) id
    let unissued = SessionId::generate();
    send(
        &app,
        "GET",
        "/user",
        Some(&format!("__Host-id={}", unissued.expose_secret())),
    )
    .await;
    let malformed = "not-a-valid-id-but-secret-looking-value";
    send(
        &app,
        "GET",
        "/user",
        Some(&format!("__Host-id={malformed}")),
    )
    .await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for event in ["rotated", "destroyed", "invalid"] {
        assert!(
            logs.contains(&format!("event=\"{event}\"")),
            "no {event} event in:\n{logs}"
        );
    }
    assert!(!logs.contains(&id), "raw session id logged");
    assert!(
        !logs.contains(unissued.expose_secret()),
        "presented id logged"
    );
    assert!(!logs.contains(malformed), "raw cookie value logged");
}
