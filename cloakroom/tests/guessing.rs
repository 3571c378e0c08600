//! The session-guessing hook (S51): invalid and unknown session cookies
//! counted per client, the `session_guessing` event and the optional 429.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use cloakroom::rate_limit::{GuessingLimit, MemoryCounters, THROTTLED_BODY};
use cloakroom::store::MemoryStore;
use cloakroom::{MockClock, SessionId, SessionLayer};
use support::{app_with, send_req};

/// The tests here share tracing's global callsite interest: the one that
/// captures events must not run beside one that emits them to no one.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

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

fn from(peer: &str, cookie: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().method("GET").uri("/read");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let mut req = req.body(Body::empty()).unwrap();
    let addr = SocketAddr::new(ip(peer), 4000);
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

fn unknown_id_cookie() -> String {
    format!("__Host-id={}", SessionId::generate().expose_secret())
}

/// S51: unknown and malformed session cookies from one client raise one
/// `session_guessing` event at the threshold (without the IDs), and by
/// default nothing is refused.
#[tokio::test]
async fn s51_guessing_event_and_default_is_event_only() {
    let _serial = SERIAL.lock().await;
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    let limit = GuessingLimit::new().with_threshold(5, Duration::from_secs(60));
    let app = app_with(SessionLayer::new(MemoryStore::new()).with_guessing_limit(limit));
    let mut ids = Vec::new();
    for i in 0..8 {
        let cookie = if i % 2 == 0 {
            unknown_id_cookie()
        } else {
            "__Host-id=../../etc/passwd".to_owned()
        };
        ids.push(cookie.clone());
        let reply = send_req(&app, from("192.0.2.66", Some(&cookie))).await;
        assert_eq!(reply.status, StatusCode::OK, "event only by default");
    }
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert_eq!(logs.matches("session_guessing").count(), 1, "{logs}");
    assert!(logs.contains("192.0.2.66"));
    for cookie in &ids {
        let value = cookie.trim_start_matches("__Host-id=");
        let line = logs
            .lines()
            .find(|l| l.contains("session_guessing"))
            .unwrap();
        assert!(!line.contains(value));
    }
}

/// S51: with the optional 429, a client past the threshold is refused
/// (with `Retry-After`) when it presents cookies, until the window ends;
/// other clients and its cookieless requests are served.
#[tokio::test]
async fn s51_guessing_optional_429() {
    let _serial = SERIAL.lock().await;
    let clock = MockClock::new();
    let limit = GuessingLimit::new()
        .with_threshold(3, Duration::from_secs(60))
        .with_too_many_requests(true)
        .with_counters(MemoryCounters::new().with_clock(clock.clone()));
    let app = app_with(SessionLayer::new(MemoryStore::new()).with_guessing_limit(limit));
    for _ in 0..3 {
        let reply = send_req(&app, from("2001:db8:5:5::1", Some(&unknown_id_cookie()))).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // Same /64, another address: refused.
    let refused = send_req(&app, from("2001:db8:5:5::99", Some(&unknown_id_cookie()))).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body, THROTTLED_BODY);
    let secs: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&secs));
    let cookieless = send_req(&app, from("2001:db8:5:5::1", None)).await;
    assert_eq!(cookieless.status, StatusCode::OK);
    let other = send_req(&app, from("192.0.2.1", Some(&unknown_id_cookie()))).await;
    assert_eq!(other.status, StatusCode::OK);
    clock.advance(Duration::from_secs(61));
    let later = send_req(&app, from("2001:db8:5:5::1", Some(&unknown_id_cookie()))).await;
    assert_eq!(later.status, StatusCode::OK);
}
