//! Helpers shared by the integration tests: requests through
//! `tower::ServiceExt::oneshot`, no sockets.
#![allow(dead_code)]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// An answer, fully read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The one `Set-Cookie` header, if any (panics on more than one).
    pub fn set_cookie(&self) -> Option<String> {
        let all: Vec<_> = self.headers.get_all(header::SET_COOKIE).iter().collect();
        assert!(all.len() <= 1, "more than one Set-Cookie: {all:?}");
        all.first().and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// `name=value` of the `Set-Cookie` header, for a `Cookie` header.
    pub fn cookie_pair(&self) -> Option<String> {
        self.set_cookie()
            .and_then(|c| c.split(';').next().map(|p| p.trim().to_owned()))
    }
}

/// Sends one request with an optional `Cookie` header and JSON body.
pub async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    cookie: Option<&str>,
    body: Option<Value>,
) -> Answer {
    // What a browser sends with the demo's own requests; the CSRF layer
    // refuses cross-site ones (tests/api.rs `csrf_*`).
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("sec-fetch-site", "same-origin");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    raw(app, req.body(body).expect("a valid test request")).await
}

/// Sends a prepared request.
pub async fn raw(app: &Router, req: Request<Body>) -> Answer {
    let res = app
        .clone()
        .oneshot(req)
        .await
        .expect("the router is infallible");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("a readable body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(app: &Router, uri: &str, cookie: Option<&str>) -> Answer {
    send(app, Method::GET, uri, cookie, None).await
}

pub async fn post(app: &Router, uri: &str, cookie: Option<&str>, body: Value) -> Answer {
    send(app, Method::POST, uri, cookie, Some(body)).await
}

pub async fn register(app: &Router, username: &str, password: &str) -> Answer {
    post(
        app,
        "/api/register",
        None,
        serde_json::json!({"username": username, "password": password}),
    )
    .await
}

/// Signs in; returns the answer (its cookie is the session).
pub async fn login(app: &Router, username: &str, password: &str, remember_me: bool) -> Answer {
    post(
        app,
        "/api/login",
        None,
        serde_json::json!({"username": username, "password": password, "remember_me": remember_me}),
    )
    .await
}
