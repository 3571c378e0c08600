//! Micro-benchmarks of the hot paths: session IDs, record encoding, and a
//! whole request through the session layer.
//!
//! Run with:
//!
//! ```text
//! cargo bench -p cloakroom --bench core -- --warm-up-time 1 --measurement-time 3
//! ```

// `criterion_group!` defines a public function that cannot carry a doc.
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderValue, Request, StatusCode};
use axum::routing::get;
use cloakroom::store::MemoryStore;
use cloakroom::{Record, Session, SessionError, SessionId, SessionLayer, Timestamp};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::BodyExt as _;
use tokio::runtime::Runtime;
use tower::ServiceExt as _;

fn id(c: &mut Criterion) {
    let mut g = c.benchmark_group("id");
    g.bench_function("generate", |b| b.iter(SessionId::generate));
    let text = SessionId::generate().expose_secret().to_owned();
    g.bench_function("parse", |b| {
        b.iter(|| SessionId::parse(black_box(&text)).is_ok())
    });
    g.finish();
}

/// A record holding roughly `target` bytes of values, spread over keys of
/// ~128 bytes each (one key for the smallest size), with a signed-in user.
fn record_of(target: usize) -> Record {
    let mut r = Record::new(
        Timestamp::from_millis(1_795_000_000_000),
        Duration::from_secs(30 * 60),
        Duration::from_secs(12 * 3600),
    );
    r.user = Some("alice@example.com".into());
    r.auth_time = Some(Timestamp::from_millis(1_795_000_000_000));
    let per_value = target.min(128);
    let mut i = 0;
    while r.encoded_len() < target {
        let key = format!("key-{i:04}");
        // Alternate strings and small integer lists: the shapes sessions hold.
        if i % 2 == 0 {
            r.insert(&key, &"x".repeat(per_value - 16))
                .expect("strings encode");
        } else {
            let list: Vec<u32> = (0..u32::try_from(per_value / 5).unwrap_or(0)).collect();
            r.insert(&key, &list).expect("lists encode");
        }
        i += 1;
    }
    r
}

fn record(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    for (label, size) in [("100B", 100), ("1KB", 1024), ("16KB", 16 * 1024)] {
        let r = record_of(size);
        let bytes = r.encode();
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(format!("encode/{label}"), |b| {
            b.iter(|| black_box(&r).encode())
        });
        g.bench_function(format!("decode/{label}"), |b| {
            b.iter(|| Record::decode(black_box(&bytes)).is_ok())
        });
    }
    g.finish();
}

async fn init(session: Session) -> Result<&'static str, SessionError> {
    session.insert("n", &0u64).await?;
    Ok("ok")
}

async fn read(session: Session) -> Result<String, SessionError> {
    let n: u64 = session.get("n").await?.unwrap_or(0);
    Ok(n.to_string())
}

async fn increment(session: Session) -> Result<String, SessionError> {
    let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
    session.insert("n", &n).await?;
    Ok(n.to_string())
}

async fn plain() -> &'static str {
    "hello"
}

fn app() -> Router {
    Router::new()
        .route("/init", get(init))
        .route("/read", get(read))
        .route("/increment", get(increment))
        .route("/plain", get(plain))
        .layer(SessionLayer::new(MemoryStore::new()))
}

/// Sends one request and reads the whole body, as a server would.
async fn send(app: &Router, path: &str, cookie: &HeaderValue) -> (StatusCode, bool) {
    let req = Request::get(path)
        .header(COOKIE, cookie.clone())
        .body(Body::empty())
        .expect("a valid request");
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let set_cookie = res.headers().contains_key(SET_COOKIE);
    black_box(res.into_body().collect().await.expect("body").to_bytes());
    (status, set_cookie)
}

/// Creates a session and returns the `Cookie` header that presents it.
async fn session_cookie(app: &Router) -> HeaderValue {
    let req = Request::get("/init")
        .body(Body::empty())
        .expect("a valid request");
    let res = app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    let set = res
        .headers()
        .get(SET_COOKIE)
        .expect("a new session sets its cookie")
        .to_str()
        .expect("ASCII");
    let pair = set.split(';').next().expect("name=value first");
    assert!(pair.starts_with("__Host-id="), "{set}");
    HeaderValue::from_str(pair).expect("a valid header")
}

fn layer(c: &mut Criterion) {
    let rt = Runtime::new().expect("a tokio runtime");
    let app = app();
    let cookie = rt.block_on(session_cookie(&app));
    // Make sure each case measures what its name says: the cookie is
    // accepted, reads write nothing, and the counter really moves.
    rt.block_on(async {
        assert_eq!(send(&app, "/read", &cookie).await, (StatusCode::OK, false));
        assert_eq!(
            send(&app, "/increment", &cookie).await,
            (StatusCode::OK, false)
        );
        assert_eq!(send(&app, "/plain", &cookie).await, (StatusCode::OK, false));
    });

    let mut g = c.benchmark_group("layer");
    for (name, path) in [
        ("read_only", "/read"),
        ("write", "/increment"),
        ("plain", "/plain"),
    ] {
        g.bench_function(name, |b| b.iter(|| rt.block_on(send(&app, path, &cookie))));
    }
    g.finish();

    // The write route saved (at least the warm-up increment; more when the
    // write benchmark ran rather than being filtered out).
    let n = rt.block_on(async {
        let req = Request::get("/read")
            .header(COOKIE, cookie.clone())
            .body(Body::empty())
            .expect("a valid request");
        let res = app.clone().oneshot(req).await.expect("infallible");
        let body = res.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8_lossy(&body).parse::<u64>().unwrap_or(0)
    });
    assert!(n >= 1, "the counter did not move: {n}");
}

/// Client-side sessions: sealing and opening a record's bytes under the
/// newest key (XChaCha20-Poly1305 plus base64url), and signing/verifying.
fn sealing(c: &mut Criterion) {
    let keyring = cloakroom::crypto::Keyring::new(vec![cloakroom::crypto::MasterKey::generate()])
        .expect("a fresh key is valid");
    let mut g = c.benchmark_group("sealing");
    for (label, size) in [("100B", 100), ("1KB", 1024), ("3KB", 3 * 1024)] {
        let bytes = record_of(size).encode();
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let sealed = keyring.seal("session", "__Host-id", &bytes).expect("fits");
        let signed = keyring.sign("session", "__Host-id", &bytes).expect("fits");
        g.bench_function(format!("seal/{label}"), |b| {
            b.iter(|| keyring.seal("session", "__Host-id", black_box(&bytes)))
        });
        g.bench_function(format!("open/{label}"), |b| {
            b.iter(|| keyring.open("session", "__Host-id", black_box(&sealed)))
        });
        g.bench_function(format!("sign/{label}"), |b| {
            b.iter(|| keyring.sign("session", "__Host-id", black_box(&bytes)))
        });
        g.bench_function(format!("verify/{label}"), |b| {
            b.iter(|| keyring.verify("session", "__Host-id", black_box(&signed)))
        });
    }
    g.finish();
}

criterion_group!(benches, id, record, layer, sealing);
criterion_main!(benches);
