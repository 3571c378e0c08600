//! Cookie header parsing and cookie-name prefixes (issue "Ending sessions
//! exactly", defects 6 and 12; S10, S16).
#![allow(clippy::unwrap_used)]

mod support;

use axum::body::Body;
use axum::http::{HeaderValue, Request};
use cloakroom::store::MemoryStore;
use cloakroom::{CookieConfig, SessionLayer};
use cloakroom::{CookieConfigError, CookieLookup, find_cookie};
use http::HeaderMap;
use proptest::prelude::*;
use support::{app_with, send, send_req};

fn with_cookie_bytes(bytes: &[u8]) -> Request<Body> {
    let mut req = Request::get("/read").body(Body::empty()).unwrap();
    req.headers_mut()
        .insert("cookie", HeaderValue::from_bytes(bytes).unwrap());
    req
}

// Defect 6: `to_str()` on the whole header skipped it for one non-ASCII
// byte anywhere, so a sibling cookie like `city=Zürich` made the visitor
// anonymous (and their next write replaced the session).
#[tokio::test]
async fn d6_a_non_ascii_sibling_cookie_does_not_hide_the_session() {
    let app = app_with(SessionLayer::new(MemoryStore::new()));
    let cookie = send(&app, "POST", "/write", None).await.cookie().unwrap();
    for sibling in [
        "city=Zürich".as_bytes(),
        b"x=\xff\xfe",
        b"\xe2\x98\x83=snow",
    ] {
        let mut header = sibling.to_vec();
        header.extend_from_slice(b"; ");
        header.extend_from_slice(cookie.as_bytes());
        let r = send_req(&app, with_cookie_bytes(&header)).await;
        assert_eq!(
            r.body,
            "1",
            "hidden by {:?}",
            String::from_utf8_lossy(sibling)
        );
        assert!(r.set_cookies.is_empty());
    }
}

// Defect 6: only the session cookie's own value must be ASCII; a
// non-ASCII one is rejected (and cleared), never looked up.
#[tokio::test]
async fn d6_a_non_ascii_session_cookie_is_rejected() {
    let mut h = HeaderMap::new();
    h.insert(
        "cookie",
        HeaderValue::from_bytes("__Host-id=Zürich; a=b".as_bytes()).unwrap(),
    );
    assert_eq!(find_cookie(&h, "__Host-id"), CookieLookup::Malformed);
    assert_eq!(find_cookie(&h, "a"), CookieLookup::Found("b"));
    let app = app_with(SessionLayer::new(MemoryStore::new()));
    let r = send_req(&app, with_cookie_bytes("__Host-id=Zürich".as_bytes())).await;
    assert_eq!(r.body, "none");
    assert!(
        r.set_cookies[0].contains("Max-Age=0"),
        "{:?}",
        r.set_cookies
    );
}

proptest! {
    // Defect 6: whatever bytes the other cookies hold, the session cookie
    // is found, and found exactly once.
    #[test]
    fn d6_siblings_of_any_bytes_never_hide_the_session_cookie(
        before in proptest::collection::vec(any::<u8>().prop_filter("header byte", |b| *b >= 0x20 && *b != 0x7f && *b != b';'), 0..40),
        after in proptest::collection::vec(any::<u8>().prop_filter("header byte", |b| *b >= 0x20 && *b != 0x7f && *b != b';'), 0..40),
    ) {
        let mut header = b"pre=".to_vec();
        header.extend_from_slice(&before);
        header.extend_from_slice(b"; __Host-id=abc; post=");
        header.extend_from_slice(&after);
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_bytes(&header).unwrap());
        prop_assert_eq!(find_cookie(&h, "__Host-id"), CookieLookup::Found("abc"));
    }
}

// Defect 12: browsers match `__Host-`/`__Secure-` case-insensitively
// (RFC 6265bis), so `__HOST-id` with a Domain would be dropped just the same.
#[test]
fn d12_cookie_prefixes_are_checked_case_insensitively() {
    for name in ["__HOST-id", "__host-id", "__HoSt-id"] {
        assert_eq!(
            CookieConfig::default()
                .with_name(name)
                .with_domain("example.com")
                .validate(),
            Err(CookieConfigError::HostPrefix),
            "{name}"
        );
    }
    for name in ["__SECURE-id", "__secure-id"] {
        let mut c = CookieConfig::default().with_name(name);
        c = c.with_insecure_http_for_development();
        // The development switch renames prefixed cookies, whatever the case.
        assert_eq!(c.name(), "id", "{name}");
    }
    assert!(
        CookieConfig::default()
            .with_name("__Hostile")
            .validate()
            .is_ok()
    );
}
