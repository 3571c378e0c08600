//! S21: ID renewal with a short grace for the old ID.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use cloakroom::store::MemoryStore;
use cloakroom::{Expiry, MockClock, SessionLayer};
use support::{app_with, send};

fn layer(clock: &MockClock, renewal: bool) -> SessionLayer {
    let expiry = Expiry::default().with_touch_interval(Duration::from_secs(1));
    let expiry = if renewal {
        expiry.with_renewal(Duration::from_secs(600), Duration::from_secs(30))
    } else {
        expiry
    };
    SessionLayer::new(MemoryStore::new())
        .with_clock(clock.clone())
        .with_expiry(expiry)
}

/// S21: once the ID is older than the interval, the next request gets a
/// new ID; the old one names the same session for the grace (writes
/// through it land), and is unknown afterwards.
#[tokio::test]
async fn s21_renewal_issues_a_new_id_and_the_old_one_lives_for_the_grace() {
    let clock = MockClock::new();
    let app = app_with(layer(&clock, true));
    let old = send(&app, "POST", "/login", None).await.cookie().unwrap();
    clock.advance(Duration::from_secs(300));
    let r = send(&app, "GET", "/user", Some(&old)).await;
    assert_eq!(r.body, "alice");
    assert!(r.set_cookies.is_empty(), "not due yet");

    clock.advance(Duration::from_secs(301));
    let r = send(&app, "GET", "/user", Some(&old)).await;
    assert_eq!(r.body, "alice");
    let new = r.cookie().expect("a renewed ID");
    assert_ne!(new, old);

    // Within the grace, the old ID is the same session, and never gets the
    // new ID handed out again.
    clock.advance(Duration::from_secs(10));
    let r = send(&app, "POST", "/put/tab/two", Some(&old)).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    assert_eq!(send(&app, "GET", "/get/tab", Some(&new)).await.body, "two");
    assert_eq!(send(&app, "GET", "/user", Some(&new)).await.body, "alice");

    clock.advance(Duration::from_secs(21));
    assert_eq!(
        send(&app, "GET", "/user", Some(&old)).await.body,
        "anonymous"
    );
    assert_eq!(send(&app, "GET", "/user", Some(&new)).await.body, "alice");
    // The renewed ID renews in its turn, from when it was issued.
    clock.advance(Duration::from_secs(560));
    let r = send(&app, "GET", "/user", Some(&new)).await;
    assert_eq!(r.body, "alice");
    assert!(r.set_cookies.is_empty(), "the new ID is not due yet");
    clock.advance(Duration::from_secs(20));
    let r = send(&app, "GET", "/user", Some(&new)).await;
    assert!(r.cookie().is_some_and(|c| c != new), "due again");
}

/// S21, S22: logging out through the old ID within the grace ends the
/// session itself, not only the forward.
#[tokio::test]
async fn s21_logout_through_the_old_id_ends_the_renewed_session() {
    let clock = MockClock::new();
    let app = app_with(layer(&clock, true));
    let old = send(&app, "POST", "/login", None).await.cookie().unwrap();
    clock.advance(Duration::from_secs(601));
    let new = send(&app, "GET", "/user", Some(&old))
        .await
        .cookie()
        .unwrap();
    assert_eq!(send(&app, "POST", "/logout", Some(&old)).await.status, 204);
    assert_eq!(
        send(&app, "GET", "/user", Some(&new)).await.body,
        "anonymous"
    );
}

/// Renewal is off by default.
#[tokio::test]
async fn s21_no_renewal_unless_configured() {
    let clock = MockClock::new();
    let app = app_with(layer(&clock, false));
    let old = send(&app, "POST", "/login", None).await.cookie().unwrap();
    clock.advance(Duration::from_secs(1200));
    let r = send(&app, "GET", "/user", Some(&old)).await;
    assert_eq!(r.body, "alice");
    assert!(r.set_cookies.is_empty());
}
