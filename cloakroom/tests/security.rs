//! SECURITY.md requirements S1–S17, S19, S20, S22, S23, S28, each proved
//! through the public API (mostly end to end through the layer).
//!
//! Over 600 lines on purpose: read top to bottom it is the index of
//! SECURITY.md's proofs, one test per requirement in its order; newer
//! requirements get files of their own (fail_closed.rs, cookie_parsing.rs).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cloakroom::store::{MemoryStore, SessionStore};
use cloakroom::{
    CookieConfig, Expiry, MockClock, Record, SameSite, SessionId, SessionLayer, Timestamp,
};
use support::{TestStore, app_with, send};

fn layer_over(store: impl SessionStore) -> SessionLayer {
    SessionLayer::new(store)
}

/// A session cookie header value for `reply`.
fn jar(reply: &support::Reply) -> String {
    reply.cookie().expect("a Set-Cookie")
}

#[test]
fn s1_ids_are_unique_and_balanced() {
    const N: usize = 1_000_000;
    let mut seen = HashSet::with_capacity(N);
    let mut ones = [0u32; 256];
    for _ in 0..N {
        let id = SessionId::generate();
        for (i, byte) in id.as_bytes().iter().enumerate() {
            for bit in 0..8 {
                ones[i * 8 + bit] += u32::from((byte >> bit) & 1);
            }
        }
        assert!(seen.insert(*id.as_bytes()), "duplicate session id");
        assert_eq!(id.expose_secret().len(), 43);
    }
    // Each bit is set in ~50% of IDs: with N = 1e6, sigma = 500, so 0.5% is
    // ten sigma: a biased generator fails, a fair one never does.
    for (bit, &count) in ones.iter().enumerate() {
        let share = f64::from(count) / N as f64;
        assert!(
            (0.495..0.505).contains(&share),
            "bit {bit} set in {share:.4} of ids"
        );
    }
}

#[test]
fn s2_default_cookie_name_is_generic() {
    let c = CookieConfig::default();
    assert_eq!(c.name(), "__Host-id");
    assert_eq!(c.clone().with_insecure_http_for_development().name(), "id");
}

#[tokio::test]
async fn s3_ids_carry_no_data() {
    // Two sessions for the same user at the same moment share nothing: the
    // ID is not derived from user, time or a counter.
    let app = app_with(layer_over(MemoryStore::new()));
    let a = send(&app, "POST", "/login", None)
        .await
        .cookie_value()
        .unwrap();
    let b = send(&app, "POST", "/login", None)
        .await
        .cookie_value()
        .unwrap();
    let (a, b) = (SessionId::parse(&a).unwrap(), SessionId::parse(&b).unwrap());
    let differing: u32 = a
        .as_bytes()
        .iter()
        .zip(b.as_bytes())
        .map(|(x, y)| (x ^ y).count_ones())
        .sum();
    // Independent 256-bit strings differ in ~128 bits; a shared prefix,
    // timestamp or counter would pull this far down.
    assert!(
        (80..=176).contains(&differing),
        "ids differ in only {differing} bits"
    );
}

#[tokio::test]
async fn s4_strict_mode_never_adopts_an_unissued_id() {
    let memory = MemoryStore::new();
    let store = TestStore::new(memory.clone());
    let app = app_with(layer_over(store.clone()));
    let attacker = SessionId::generate();
    let cookie = format!("__Host-id={}", attacker.expose_secret());

    let r = send(&app, "POST", "/write", Some(&cookie)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "1", "the planted id must not carry any state");
    let issued = r.cookie_value().expect("a new id is issued on write");
    assert_ne!(
        issued,
        attacker.expose_secret(),
        "the planted id must not be adopted"
    );
    assert!(
        memory
            .load(&attacker.storage_key(), Timestamp::now())
            .await
            .unwrap()
            .is_none(),
        "no record may exist for the attacker's id"
    );
    assert_eq!(memory.len(), 1);
}

#[tokio::test]
async fn s5_malformed_ids_never_reach_the_store() {
    let store = TestStore::new(MemoryStore::new());
    let app = app_with(layer_over(store.clone()));
    let long = "A".repeat(10 * 1024);
    let hostile = [
        "../../x",
        "..%2F..%2Fetc%2Fpasswd",
        "%00",
        "abc\u{0}def",
        "' OR '1'='1",
        "1; DROP TABLE cloakroom_sessions; --",
        long.as_str(),
        // 43 characters, but not base64url.
        "*******************************************",
        // 43 base64url characters with non-canonical trailing bits.
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
    ];
    for value in hostile {
        let cookie = format!("__Host-id={value}");
        let Ok(header) = axum::http::HeaderValue::from_str(&cookie) else {
            continue; // http itself refuses it: it can never arrive.
        };
        let req = axum::http::Request::get("/read")
            .header("cookie", header)
            .body(axum::body::Body::empty())
            .unwrap();
        let r = support::send_req(&app, req).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "none");
    }
    assert_eq!(store.calls(), 0, "a malformed cookie reached the store");
}

#[tokio::test]
async fn s6_stores_hold_no_raw_id() {
    let memory = MemoryStore::new();
    let app = app_with(layer_over(memory.clone()));
    let r = send(&app, "POST", "/login", None).await;
    let id = SessionId::parse(&r.cookie_value().unwrap()).unwrap();
    for (key, bytes) in memory.dump() {
        assert_ne!(&key.0, id.as_bytes(), "raw id used as key");
        assert_eq!(key, id.storage_key());
        assert!(!contains(&bytes, id.as_bytes()), "raw id bytes stored");
        assert!(
            !contains(&bytes, id.expose_secret().as_bytes()),
            "encoded id stored"
        );
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn s6_sqlite_file_holds_no_raw_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s6.db");
    let store = cloakroom::store::SqliteStore::open(&path).unwrap();
    let app = app_with(layer_over(store.clone()));
    let r = send(&app, "POST", "/login", None).await;
    let id = SessionId::parse(&r.cookie_value().unwrap()).unwrap();
    send(&app, "POST", "/write", Some(&jar(&r))).await;
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(bytes) = std::fs::read(format!("{}{suffix}", path.display())) {
            all.extend(bytes);
        }
    }
    assert!(
        contains(&all, &id.storage_key().0),
        "the hashed key should be there"
    );
    assert!(
        !contains(&all, id.as_bytes()),
        "raw id bytes in the database file"
    );
    assert!(
        !contains(&all, id.expose_secret().as_bytes()),
        "encoded id in the database file"
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn s7_colliding_id_is_never_reused() {
    let memory = MemoryStore::new();
    // The "RNG" returns the same ID twice, then a fresh one.
    let fixed = SessionId::generate();
    let fixed_clone = fixed.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let layer = SessionLayer::new(memory.clone())
        .with_insecure_id_generator(move || {
            if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                fixed_clone.clone()
            } else {
                SessionId::generate()
            }
        })
        .build()
        .unwrap();
    let app = app_with(layer);
    let first = send(&app, "POST", "/put/owner/victim", None).await;
    assert_eq!(first.cookie_value().unwrap(), fixed.expose_secret());
    // The second visitor's first ID collides: create() must refuse, and the
    // layer draws another instead of overwriting the victim's session.
    let second = send(&app, "POST", "/put/owner/attacker", None).await;
    assert_ne!(second.cookie_value().unwrap(), fixed.expose_secret());
    let victim = send(&app, "GET", "/get/owner", Some(&jar(&first))).await;
    assert_eq!(
        victim.body, "victim",
        "a colliding create overwrote a session"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn s8_untouched_sessions_write_nothing() {
    let memory = MemoryStore::new();
    let store = TestStore::new(memory.clone());
    let app = app_with(layer_over(store.clone()));
    for _ in 0..10_000 {
        let r = send(&app, "GET", "/read", None).await;
        assert!(
            r.set_cookies.is_empty(),
            "cookie set for an untouched session"
        );
    }
    let r = send(&app, "POST", "/logout", None).await;
    assert_eq!(r.status, 204);
    assert!(
        r.set_cookies.is_empty(),
        "logout without a session sets no cookie"
    );
    assert_eq!(memory.len(), 0, "records were created");
    assert_eq!(store.writes(), 0, "the store was written");
}

#[tokio::test]
async fn s9_default_attributes() {
    let app = app_with(layer_over(MemoryStore::new()));
    let r = send(&app, "POST", "/write", None).await;
    let c = &r.set_cookies[0];
    let attrs: Vec<&str> = c.split("; ").skip(1).collect();
    assert_eq!(
        attrs,
        ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"],
        "{c}"
    );
    assert!(!c.contains("Domain"));
    assert!(
        !c.contains("Max-Age") && !c.contains("Expires"),
        "default must be a session cookie (S13)"
    );
}

#[test]
fn s10_builder_refuses_impossible_configs() {
    let cases = [
        CookieConfig::default().with_domain("example.com"),
        CookieConfig::default().with_path("/app"),
        CookieConfig::default()
            .with_insecure_http_for_development()
            .with_name("__Secure-id"),
        CookieConfig::default()
            .with_name("sid")
            .with_insecure_http_for_development()
            .with_same_site(SameSite::None),
        CookieConfig::default().with_name("bad name"),
        CookieConfig::default().with_name(""),
        CookieConfig::default()
            .with_name("x")
            .with_path("/a;Domain=evil"),
        CookieConfig::default()
            .with_name("x")
            .with_domain("evil.com; Secure"),
    ];
    for c in cases {
        assert!(c.validate().is_err(), "accepted {c:?}");
        assert!(
            SessionLayer::new(MemoryStore::new())
                .with_cookie(c)
                .build()
                .is_err()
        );
    }
    // __Host- with its prefix applied by hand is not re-labelled silently.
    let mut insecure_host = CookieConfig::default().with_insecure_http_for_development();
    insecure_host = insecure_host.with_name("__Host-id");
    assert!(insecure_host.validate().is_err());
    assert!(
        CookieConfig::default()
            .with_name("__Secure-id")
            .with_domain("example.com")
            .validate()
            .is_ok()
    );
}

#[test]
fn s11_set_cookie_is_not_injectable() {
    let c = CookieConfig::default();
    for evil in [
        "a; Domain=evil.com",
        "a\r\nSet-Cookie: x=y",
        "a,b",
        "a\"b",
        "a b",
        "a\\b",
    ] {
        assert!(
            c.set_cookie(evil, None, Timestamp::now()).is_err(),
            "accepted {evil:?}"
        );
    }
}

#[test]
fn s12_oversized_cookie_is_a_typed_error() {
    let c = CookieConfig::default().with_name("n");
    let ok = "a".repeat(4095);
    assert!(c.set_cookie(&ok, None, Timestamp::now()).is_ok());
    let too_big = "a".repeat(4096);
    assert_eq!(
        c.set_cookie(&too_big, None, Timestamp::now()),
        Err(cloakroom::CookieError::TooLarge(4097))
    );
}

#[tokio::test]
async fn s13_remember_me_is_persistent_and_capped() {
    let layer = SessionLayer::new(MemoryStore::new())
        .with_expiry(Expiry::default().with_remember_me(
            Duration::from_secs(86_400),
            Duration::from_secs(1000 * 86_400),
        ))
        .build()
        .unwrap();
    let app = app_with(layer);
    let r = send(&app, "POST", "/login-remember", None).await;
    let c = &r.set_cookies[0];
    let max_age: u64 = c
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .unwrap();
    assert!(
        max_age <= 400 * 86_400 && max_age > 399 * 86_400,
        "Max-Age {max_age}"
    );
    assert!(c.contains("Expires="), "{c}");
    let plain = send(&app, "POST", "/login", None).await;
    assert!(
        !plain.set_cookies[0].contains("Max-Age"),
        "ordinary login must not persist"
    );
}

#[tokio::test]
async fn s14_removal_mirrors_attributes_once() {
    let cookie = CookieConfig::default()
        .with_name("__Secure-sid")
        .with_domain("example.com")
        .with_same_site(SameSite::Strict);
    let layer = SessionLayer::new(MemoryStore::new())
        .with_cookie(cookie)
        .build()
        .unwrap();
    let app = app_with(layer);
    let login = send(&app, "POST", "/login", None).await;
    let r = send(&app, "POST", "/logout", Some(&jar(&login))).await;
    assert_eq!(r.set_cookies.len(), 1, "exactly one Set-Cookie per name");
    let c = &r.set_cookies[0];
    for part in [
        "__Secure-sid=;",
        "Max-Age=0",
        "Path=/",
        "Domain=example.com",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
    ] {
        assert!(c.contains(part), "removal cookie {c} lacks {part}");
    }
    // Logout then write in one request: still one Set-Cookie.
    let login = send(&app, "POST", "/login", None).await;
    let twice = send(&app, "POST", "/login", Some(&jar(&login))).await;
    assert_eq!(twice.set_cookies.len(), 1);
}

#[tokio::test]
async fn s15_no_store_when_cookie_changes() {
    let app = app_with(layer_over(MemoryStore::new()));
    let login = send(&app, "POST", "/login", None).await;
    assert_eq!(login.headers["cache-control"], "no-store");
    let read = send(&app, "GET", "/read", Some(&jar(&login))).await;
    assert!(read.set_cookies.is_empty());
    assert!(
        read.headers.get("cache-control").is_none(),
        "no cookie change, no header"
    );
    let logout = send(&app, "POST", "/logout", Some(&jar(&login))).await;
    assert_eq!(logout.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn s16_duplicate_cookies_authenticate_neither() {
    let store = TestStore::new(MemoryStore::new());
    let app = app_with(layer_over(store.clone()));
    let alice = send(&app, "POST", "/login", None).await;
    let other = send(&app, "POST", "/login", None).await;
    let calls = store.calls();
    // Both in one header, and split over two headers.
    let both = format!("{}; {}", jar(&alice), jar(&other));
    let r = send(&app, "GET", "/user", Some(&both)).await;
    assert_eq!(r.body, "anonymous");
    let req = axum::http::Request::get("/user")
        .header("cookie", jar(&alice))
        .header("cookie", jar(&alice))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(support::send_req(&app, req).await.body, "anonymous");
    assert_eq!(store.calls(), calls, "duplicates must not be looked up");
    // Names are case-sensitive: __host-id is not our cookie.
    let lower = jar(&alice).replacen("__Host-id", "__host-id", 1);
    assert_eq!(
        send(&app, "GET", "/user", Some(&lower)).await.body,
        "anonymous"
    );
    // Split headers with one session cookie are merged and work.
    let req = axum::http::Request::get("/user")
        .header("cookie", "theme=dark")
        .header("cookie", jar(&alice))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(support::send_req(&app, req).await.body, "alice");
}

#[tokio::test]
async fn s17_ids_only_from_the_cookie() {
    let app = app_with(layer_over(MemoryStore::new()));
    let login = send(&app, "POST", "/login", None).await;
    let id = login.cookie_value().unwrap();
    let r = send(&app, "GET", &format!("/user?id={id}&__Host-id={id}"), None).await;
    assert_eq!(r.body, "anonymous", "id accepted from the query string");
    let req = axum::http::Request::get("/user")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-session-id", &id)
        .header("authorization", format!("Bearer {id}"))
        .body(axum::body::Body::from(format!("__Host-id={id}")))
        .unwrap();
    assert_eq!(
        support::send_req(&app, req).await.body,
        "anonymous",
        "id accepted from body or header"
    );
}

fn clocked(clock: &MockClock, store: impl SessionStore) -> axum::Router {
    let layer = SessionLayer::new(store)
        .with_clock(clock.clone())
        .build()
        .unwrap();
    app_with(layer)
}

#[tokio::test]
async fn s19_idle_timeout_is_enforced_server_side() {
    let clock = MockClock::new();
    let app = clocked(&clock, MemoryStore::new());
    let login = send(&app, "POST", "/login", None).await;
    let cookie = jar(&login);
    clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(
        send(&app, "GET", "/user", Some(&cookie)).await.body,
        "alice",
        "29 idle minutes"
    );
    clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(
        send(&app, "GET", "/user", Some(&cookie)).await.body,
        "alice",
        "activity extended the idle deadline"
    );
    clock.advance(Duration::from_secs(31 * 60));
    let r = send(&app, "GET", "/user", Some(&cookie)).await;
    assert_eq!(r.body, "anonymous", "31 idle minutes must end the session");
    // The store judges by the layer's clock, so the expired ID reads as
    // unknown: nothing re-issues it (and it is not removed either, as an
    // unknown ID may just have been rotated by a sign-in elsewhere).
    assert!(
        r.set_cookies.is_empty(),
        "an expired session gets no cookie: {:?}",
        r.set_cookies
    );
}

#[tokio::test]
async fn s20_absolute_timeout_cannot_be_extended() {
    let clock = MockClock::new();
    let app = clocked(&clock, MemoryStore::new());
    let login = send(&app, "POST", "/login", None).await;
    let cookie = jar(&login);
    // Active every 20 minutes for 11h40m: still live.
    for _ in 0..35 {
        clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(
            send(&app, "POST", "/write", Some(&cookie)).await.status,
            200
        );
        assert_eq!(
            send(&app, "GET", "/user", Some(&cookie)).await.body,
            "alice"
        );
    }
    clock.advance(Duration::from_secs(20 * 60 + 1));
    assert_eq!(
        send(&app, "GET", "/user", Some(&cookie)).await.body,
        "anonymous",
        "12 h is the limit"
    );
}

#[tokio::test]
async fn s22_destroy_deletes_before_responding() {
    let memory = MemoryStore::new();
    let app = app_with(layer_over(memory.clone()));
    let login = send(&app, "POST", "/login", None).await;
    let cookie = jar(&login);
    let id = SessionId::parse(&login.cookie_value().unwrap()).unwrap();
    let r = send(&app, "POST", "/logout", Some(&cookie)).await;
    assert_eq!(r.status, 204);
    assert!(
        memory
            .load(&id.storage_key(), Timestamp::now())
            .await
            .unwrap()
            .is_none(),
        "record outlived logout"
    );
    let replay = send(&app, "GET", "/user", Some(&cookie)).await;
    assert_eq!(
        replay.body, "anonymous",
        "replayed cookie accepted after logout"
    );
    let write = send(&app, "POST", "/write", Some(&cookie)).await;
    assert_ne!(
        write.cookie_value().unwrap(),
        id.expose_secret(),
        "replayed id revived"
    );
}

#[tokio::test]
async fn s18_login_rotates_and_old_id_dies() {
    let app = app_with(layer_over(MemoryStore::new()));
    let anon = send(&app, "POST", "/put/cart/3", None).await;
    let before = jar(&anon);
    let login = send(&app, "POST", "/login", Some(&before)).await;
    let after = jar(&login);
    assert_ne!(before, after, "login must rotate the id");
    assert_eq!(
        send(&app, "GET", "/get/cart", Some(&after)).await.body,
        "3",
        "data carried over"
    );
    assert_eq!(
        send(&app, "GET", "/user", Some(&before)).await.body,
        "anonymous",
        "old id still works"
    );
}

#[tokio::test]
async fn s23_expired_records_never_returned_before_reaping() {
    let store = MemoryStore::new();
    let key = SessionId::generate().storage_key();
    let mut r = Record::new(
        Timestamp::now().saturating_sub(Duration::from_secs(3600)),
        Duration::from_secs(60),
        Duration::from_secs(7200),
    );
    r.version = 1;
    store.create(&key, &r, Timestamp::now()).await.unwrap();
    assert!(store.load(&key, Timestamp::now()).await.unwrap().is_none());
    // The conformance suite proves the same for every store
    // (`never_loads_expired`).
}

#[tokio::test]
async fn s28_save_racing_destroy_does_not_resurrect() {
    let memory = MemoryStore::new();
    let app = app_with(layer_over(memory.clone()));
    let login = send(&app, "POST", "/login", None).await;
    let cookie = jar(&login);
    let id = SessionId::parse(&login.cookie_value().unwrap()).unwrap();

    // A request that loaded the session before the logout and saves after.
    let slow_session_write = {
        let store = memory.clone();
        let key = id.storage_key();
        async move {
            let mut rec = store.load(&key, Timestamp::now()).await.unwrap().unwrap();
            tokio::task::yield_now().await;
            let expected = rec.version;
            rec.version += 1;
            rec.insert("late", "write").unwrap();
            (expected, rec)
        }
    };
    let (expected, rec) = slow_session_write.await;
    send(&app, "POST", "/logout", Some(&cookie)).await;
    let late = memory
        .save(&id.storage_key(), &rec, expected, Timestamp::now())
        .await;
    assert!(matches!(late, Err(cloakroom::store::StoreError::NotFound)));
    assert!(
        memory
            .load(&id.storage_key(), Timestamp::now())
            .await
            .unwrap()
            .is_none(),
        "resurrected"
    );
    assert_eq!(memory.len(), 0);
}

#[tokio::test]
async fn s6_file_store_holds_no_raw_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = cloakroom::store::FileStore::open(dir.path()).unwrap();
    let app = app_with(layer_over(store));
    let r = send(&app, "POST", "/login", None).await;
    let id = SessionId::parse(&r.cookie_value().unwrap()).unwrap();
    send(&app, "POST", "/write", Some(&jar(&r))).await;
    let mut names = String::new();
    let mut bytes = Vec::new();
    let mut stack = vec![dir.path().to_owned()];
    while let Some(p) = stack.pop() {
        for entry in std::fs::read_dir(&p).unwrap() {
            let path = entry.unwrap().path();
            names.push_str(&path.display().to_string());
            if path.is_dir() {
                stack.push(path);
            } else {
                bytes.extend(std::fs::read(&path).unwrap());
            }
        }
    }
    assert!(
        names.contains(&id.storage_key().to_hex()),
        "files are named by the hashed key"
    );
    assert!(
        !names.contains(id.expose_secret()),
        "a file is named by the raw id"
    );
    assert!(
        !contains(&bytes, id.as_bytes()),
        "raw id bytes in a session file"
    );
    assert!(
        !contains(&bytes, id.expose_secret().as_bytes()),
        "encoded id in a session file"
    );
}
