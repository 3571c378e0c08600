//! Fresh authentication for sensitive actions (S27): a guard that lets a
//! request through only if its user authenticated recently, GitHub's
//! "sudo mode".
//!
//! A browser is sent to a re-authentication page with a signed return
//! path; an API client gets `401` with RFC 9470's
//! `WWW-Authenticate: Bearer error="insufficient_user_authentication"`.
//! After the user proved who they are again, the application calls
//! [`Session::reauthenticate`](crate::Session::reauthenticate), which
//! records the time and rotates the session ID.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, StatusCode, header};
use tower_layer::Layer;
use tower_service::Service;

use crate::crypto::Keyring;
use crate::expiry::{Clock, SystemClock, Timestamp};
use crate::session::Session;

/// The key-ring purpose return paths are signed under.
const PURPOSE: &str = "auth/return-path/v1";
/// How long a signed return path stays valid.
const RETURN_PATH_TTL: Duration = Duration::from_secs(15 * 60);
/// Longest return path signed (longer ones return to `/`).
const MAX_RETURN_PATH: usize = 2048;

/// Requires that the signed-in user authenticated at most `max_age` ago
/// (S27). Apply it to the sensitive routes, inside the
/// [`SessionLayer`](crate::SessionLayer):
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::post};
/// use cloakroom::{SessionLayer, auth::RequireFreshAuth, crypto::{Keyring, MasterKey}, store::MemoryStore};
///
/// async fn change_password() -> &'static str { "changed" }
///
/// let keys = Keyring::from(MasterKey::generate());
/// let app: Router = Router::new()
///     .route("/settings/password", post(change_password))
///     .layer(RequireFreshAuth::new(Duration::from_secs(300)).with_reauth_page("/reauth", keys))
///     .layer(SessionLayer::new(MemoryStore::new()));
/// ```
///
/// A request that fails the check is answered, without calling the route:
///
/// * not signed in: `401`;
/// * signed in too long ago, from a browser (`Accept` names `text/html`)
///   with a re-authentication page configured: `303 See Other` to
///   `<page>?return_to=<signed path>` (open it with [`ReturnPath::open`]);
/// * otherwise `401` with `WWW-Authenticate: Bearer
///   error="insufficient_user_authentication", max_age=<seconds>` (RFC
///   9470).
#[derive(Clone, Debug)]
pub struct RequireFreshAuth {
    max_age: Duration,
    page: Option<(String, ReturnPath)>,
}

impl RequireFreshAuth {
    /// Requires an authentication at most `max_age` old.
    #[must_use]
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            page: None,
        }
    }

    /// Sends browsers to `page` (a path of this site) with the path they
    /// asked for signed by `keys`.
    #[must_use]
    pub fn with_reauth_page(mut self, page: impl Into<String>, keys: Keyring) -> Self {
        self.page = Some((page.into(), ReturnPath::new(keys)));
        self
    }
}

impl<S> Layer<S> for RequireFreshAuth {
    type Service = RequireFreshAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireFreshAuthService {
            inner,
            guard: self.clone(),
        }
    }
}

/// The service of [`RequireFreshAuth`].
#[derive(Clone, Debug)]
pub struct RequireFreshAuthService<S> {
    inner: S,
    guard: RequireFreshAuth,
}

impl<S, B> Service<Request<B>> for RequireFreshAuthService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            let Some(session) = req.extensions().get::<Session>().cloned() else {
                tracing::error!("RequireFreshAuth needs the SessionLayer outside it");
                return Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response());
            };
            match session.auth_age().await {
                Ok(Some(age)) if age <= guard.max_age => inner.call(req).await,
                Ok(Some(_)) => Ok(guard.stale(&req)),
                Ok(None) => Ok((StatusCode::UNAUTHORIZED, "sign in first").into_response()),
                Err(e) => Ok(e.into_response()),
            }
        })
    }
}

impl RequireFreshAuth {
    /// The answer to a signed-in user whose authentication is too old.
    fn stale<B>(&self, req: &Request<B>) -> Response {
        tracing::info!(
            event = "fresh_auth_required",
            "re-authentication required (S27)"
        );
        let wants_html = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        if let (true, Some((page, paths))) = (wants_html, &self.page) {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", http::uri::PathAndQuery::as_str);
            if let Some(signed) = paths.sign(path)
                && let Ok(location) = HeaderValue::from_str(&format!("{page}?return_to={signed}"))
            {
                return (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
            }
        }
        let challenge = format!(
            "Bearer error=\"insufficient_user_authentication\", error_description=\"A more recent authentication is required\", max_age={}",
            self.max_age.as_secs()
        );
        let mut res = (
            StatusCode::UNAUTHORIZED,
            "a more recent sign-in is required",
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}

/// Signed return paths for a re-authentication page: made by
/// [`RequireFreshAuth`], opened by the page's handler so that it sends the
/// user back only where the guard saw them go (never to another site: an
/// open redirect).
#[derive(Clone)]
pub struct ReturnPath {
    keys: Keyring,
    clock: std::sync::Arc<dyn Clock>,
}

impl std::fmt::Debug for ReturnPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReturnPath(..)")
    }
}

impl ReturnPath {
    /// Return paths signed with `keys` (use the same keys as the guard).
    #[must_use]
    pub fn new(keys: Keyring) -> Self {
        Self {
            keys,
            clock: std::sync::Arc::new(SystemClock),
        }
    }

    /// Reads time from `clock` (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = std::sync::Arc::new(clock);
        self
    }

    /// `path` signed with the time, or `None` for a path that is not a
    /// plain local one.
    #[must_use]
    pub fn sign(&self, path: &str) -> Option<String> {
        if !is_local_path(path) || path.len() > MAX_RETURN_PATH {
            return None;
        }
        let mut payload = self.clock.now().as_millis().to_be_bytes().to_vec();
        payload.extend_from_slice(path.as_bytes());
        let signed = self.keys.sign(PURPOSE, "", &payload).ok()?;
        // Base64url already: safe in a query string.
        Some(signed)
    }

    /// The local path `signed` names, if it is ours, unaltered and less
    /// than 15 minutes old; `None` otherwise (send the user to `/`).
    #[must_use]
    pub fn open(&self, signed: &str) -> Option<String> {
        if signed.len() > 2 * MAX_RETURN_PATH + 64 {
            return None;
        }
        let opened = self.keys.verify(PURPOSE, "", signed).ok()?;
        let (when, path) = opened.plaintext.split_first_chunk::<8>()?;
        let issued = Timestamp::from_millis(u64::from_be_bytes(*when));
        if self.clock.now().since(issued) > RETURN_PATH_TTL {
            return None;
        }
        let path = std::str::from_utf8(path).ok()?;
        is_local_path(path).then(|| path.to_owned())
    }
}

/// A path of this site: starts with one `/`, never `//` or `/\` (which
/// browsers read as another host), no control characters.
fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn return_paths_round_trip_and_refuse_other_sites() {
        let paths = ReturnPath::new(Keyring::from(MasterKey::generate()));
        let signed = paths.sign("/settings/password?tab=1").expect("local path");
        assert_eq!(
            paths.open(&signed).as_deref(),
            Some("/settings/password?tab=1")
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "x",
            "/a\nb",
        ] {
            assert!(paths.sign(bad).is_none(), "{bad:?} must not be signed");
        }
        let other = ReturnPath::new(Keyring::from(MasterKey::generate()));
        assert!(
            other.open(&signed).is_none(),
            "another key's path is refused"
        );
        let mut tampered = signed.clone();
        tampered.pop();
        assert!(paths.open(&tampered).is_none());
    }
}
