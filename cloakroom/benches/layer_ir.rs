//! A fixed number of requests through the session layer, for counting
//! instructions with callgrind where timings are too noisy to compare
//! (a shared 2-core machine). `bench/layer-ir.sh` runs it for each route
//! and prints instructions per request.
//!
//! Run with:
//!
//! ```text
//! cargo bench -p cloakroom --bench layer_ir --no-run
//! valgrind --tool=callgrind target/release/deps/layer_ir-* read 20000
//! ```
//!
//! Arguments: the route (`read`, `write` or `plain`) and how many requests
//! to send after one warm-up request per route. The same code builds on
//! older commits of the layer (it uses `SessionLayer::new` and the
//! `Session` API only), so two commits can be compared in one run.

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderValue, Request, StatusCode};
use axum::routing::get;
use cloakroom::store::MemoryStore;
use cloakroom::{Session, SessionError, SessionLayer};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

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

async fn send(
    app: &Router,
    path: &str,
    cookie: Option<&HeaderValue>,
) -> (StatusCode, Option<String>) {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c.clone());
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("a valid request"))
        .await
        .expect("infallible");
    let status = res.status();
    let set = res
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    black_box(res.into_body().collect().await.expect("body").to_bytes());
    (status, set)
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let route = args.next().unwrap_or_else(|| "read".to_owned());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let path = match route.as_str() {
        "read" => "/read",
        "write" => "/increment",
        "plain" => "/plain",
        other => panic!("unknown route {other:?}: read, write or plain"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let app = Router::new()
        .route("/init", get(init))
        .route("/read", get(read))
        .route("/increment", get(increment))
        .route("/plain", get(plain))
        .layer(SessionLayer::new(MemoryStore::new()));
    rt.block_on(async {
        let (status, set) = send(&app, "/init", None).await;
        assert_eq!(status, StatusCode::OK);
        let set = set.expect("a new session sets its cookie");
        let pair = set.split(';').next().expect("name=value first");
        let cookie = HeaderValue::from_str(pair).expect("a valid header");
        for p in ["/read", "/increment", "/plain"] {
            assert_eq!(send(&app, p, Some(&cookie)).await.0, StatusCode::OK);
        }
        for _ in 0..n {
            let (status, _) = send(&app, path, Some(&cookie)).await;
            assert_eq!(status, StatusCode::OK);
        }
    });
    println!("{route}: {n} requests");
}
