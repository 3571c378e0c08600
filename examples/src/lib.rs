//! Test support for the examples: [`Browser`], a cookie jar that drives an
//! axum [`Router`] with [`tower::ServiceExt::oneshot`], no sockets.
//!
//! ```
//! use axum::{Router, routing::get};
//! use cloakroom_examples::Browser;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut browser = Browser::new(Router::new().route("/", get(|| async { "hi" })));
//! let reply = browser.get("/").await;
//! assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "hi"));
//! # }
//! ```

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A browser in a test: sends requests to one app and keeps the cookies it
/// sets. A clone is a second device holding a copy of the same cookies.
#[derive(Clone)]
pub struct Browser {
    app: Router,
    cookies: BTreeMap<String, String>,
}

/// What the app answered.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, as text.
    pub body: String,
}

impl Reply {
    /// The names of the cookies this reply sets (removals included).
    #[must_use]
    pub fn set_cookie_names(&self) -> Vec<&str> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split_once('=').map(|(name, _)| name))
            .collect()
    }
}

impl Browser {
    /// A browser with an empty cookie jar, talking to `app`.
    #[must_use]
    pub fn new(app: Router) -> Self {
        Self {
            app,
            cookies: BTreeMap::new(),
        }
    }

    /// Talks to `app` from now on, keeping the cookies: the same visitor
    /// after a redeployment.
    pub fn redeploy(&mut self, app: Router) {
        self.app = app;
    }

    /// The value of the cookie `name`, if the jar holds it.
    #[must_use]
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// `GET uri`.
    pub async fn get(&mut self, uri: &str) -> Reply {
        self.send(Method::GET, uri, String::new()).await
    }

    /// `POST uri` with `body`.
    pub async fn post(&mut self, uri: &str, body: impl Into<String>) -> Reply {
        self.send(Method::POST, uri, body.into()).await
    }

    /// Sends one request with the jar's cookies and files the cookies the
    /// reply sets (a `Max-Age=0` cookie is removed, as a browser does).
    ///
    /// # Panics
    ///
    /// If `uri` is not a valid URI or the body cannot be read: test code.
    pub async fn send(&mut self, method: Method, uri: &str, body: String) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            request = request.header(header::COOKIE, jar.join("; "));
        }
        let request = request
            .body(Body::from(body))
            .expect("a valid test request");
        let response = match self.app.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .expect("a readable response body")
            .to_bytes();
        for set_cookie in parts.headers.get_all(header::SET_COOKIE) {
            let Ok(set_cookie) = set_cookie.to_str() else {
                continue;
            };
            let (pair, attributes) = set_cookie.split_once(';').unwrap_or((set_cookie, ""));
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}
