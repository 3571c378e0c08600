//! The tower [`Layer`] that gives every request a [`Session`].
//!
//! Works with axum 0.8 and any tower/hyper stack: the session is placed in
//! the request extensions, and after the inner service answers, the layer
//! saves it and adds `Set-Cookie` (with `Cache-Control: no-store`, S15) when
//! the cookie changes.
//!
//! ```
//! use axum::{Router, routing::get};
//! use cloakroom::{Session, SessionLayer, store::MemoryStore};
//!
//! async fn count(session: Session) -> Result<String, cloakroom::SessionError> {
//!     let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
//!     session.insert("n", &n).await?;
//!     Ok(n.to_string())
//! }
//!
//! let app: Router = Router::new()
//!     .route("/", get(count))
//!     .layer(SessionLayer::new(MemoryStore::new()));
//! ```
//!
//! # Deployment caveat
//!
//! The default cookie is `__Host-id` with `Secure`: browsers only keep it
//! over HTTPS (or on `localhost`). Behind a TLS-terminating proxy that is
//! what you want; for a plain-HTTP development server see
//! [`CookieConfig::with_insecure_http_for_development`](crate::CookieConfig::with_insecure_http_for_development).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use http::header::{CACHE_CONTROL, RETRY_AFTER, SET_COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::client_side::ClientSessions;
use crate::config::{ConfigError, OnStoreFailure, SessionConfig};
use crate::session::{Context, Engine, Failure, SealedMode, ServerMode, Session};
use crate::store::{SessionStore, StoreError};

/// The store failure behind a replaced response, placed in its extensions.
#[derive(Debug, Clone)]
pub struct StoreFailure(pub Arc<StoreError>);

/// Adds a [`Session`] to every request. Cheap to clone.
#[derive(Clone)]
#[must_use]
pub struct SessionLayer {
    ctx: Arc<Context>,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("cookie", &self.ctx.config.cookie)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SessionLayer`] with a non-default configuration.
#[must_use]
pub struct SessionLayerBuilder {
    engine: Engine,
    config: SessionConfig,
}

impl SessionLayerBuilder {
    /// Uses `config` (cookie, expiry, failure policy, limits).
    pub fn config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// Validates the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a cookie browsers would drop (S10) or impossible
    /// timeouts.
    pub fn build(self) -> Result<SessionLayer, ConfigError> {
        Ok(SessionLayer {
            ctx: Arc::new(Context::new(self.config, self.engine)?),
        })
    }
}

impl SessionLayer {
    /// A layer with the secure defaults over `store`.
    pub fn new(store: impl SessionStore) -> Self {
        let engine = Engine::Server(ServerMode::new(Arc::new(store)));
        let ctx = Context::new(SessionConfig::default(), engine)
            .unwrap_or_else(|e| unreachable!("the default configuration is valid: {e}"));
        Self { ctx: Arc::new(ctx) }
    }

    /// Starts building a layer with a custom configuration.
    pub fn builder(store: impl SessionStore) -> SessionLayerBuilder {
        SessionLayerBuilder {
            engine: Engine::Server(ServerMode::new(Arc::new(store))),
            config: SessionConfig::default(),
        }
    }

    /// Like [`SessionLayer::builder`] for a store already shared elsewhere
    /// (by a reaper task or an admin endpoint, say).
    pub fn builder_shared(store: Arc<dyn SessionStore>) -> SessionLayerBuilder {
        SessionLayerBuilder {
            engine: Engine::Server(ServerMode::new(store)),
            config: SessionConfig::default(),
        }
    }

    /// Starts building a layer for client-side sessions: the record is
    /// sealed in the cookie and no store is on the request path. See
    /// [`client_side`](crate::client_side).
    pub fn builder_client_side(sessions: ClientSessions) -> SessionLayerBuilder {
        SessionLayerBuilder {
            engine: Engine::Sealed(SealedMode::new(sessions)),
            config: SessionConfig::default(),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            ctx: self.ctx.clone(),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone)]
#[must_use]
pub struct SessionService<S> {
    inner: S,
    ctx: Arc<Context>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The future of [`SessionService`].
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let session = Session::from_headers(self.ctx.clone(), req.headers(), client_ip(&req));
        req.extensions_mut().insert(session.clone());
        // The clone that was driven to readiness is the one we call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let mut res = inner.call(req).await?;
            let outcome = session.finish(res.status().is_server_error()).await;
            if let Some(failure) = outcome.failure
                && let Some(replaced) = failure_response::<ResBody>(&ctx.config.on_failure, failure)
            {
                res = replaced;
            }
            if !outcome.set_cookies.is_empty() {
                let headers = res.headers_mut();
                // One Set-Cookie per cookie name per response (S14).
                for cookie in outcome.set_cookies {
                    headers.append(SET_COOKIE, cookie);
                }
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            Ok(res)
        })
    }
}

/// The response that replaces the handler's, if any.
fn failure_response<B: From<String>>(
    policy: &OnStoreFailure,
    failure: Failure,
) -> Option<Response<B>> {
    let (error, revocation) = match failure {
        Failure::Store { error, revocation } => (error, revocation),
        Failure::TooLarge(message) => {
            return Some(plain(StatusCode::PAYLOAD_TOO_LARGE, format!("{message}\n")));
        }
        Failure::Unsealable => {
            return Some(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The session could not be saved.\n".to_owned(),
            ));
        }
    };
    let mut res = match policy {
        // A sign-out that did not happen must not look like one that did.
        OnStoreFailure::ContinueAnonymous if revocation => unavailable(Duration::from_secs(5)),
        OnStoreFailure::ContinueAnonymous => return None,
        OnStoreFailure::ServiceUnavailable { retry_after } => unavailable(*retry_after),
        OnStoreFailure::Respond(f) => f(&error).map(B::from),
    };
    res.extensions_mut().insert(StoreFailure(error));
    Some(res)
}

fn unavailable<B: From<String>>(retry_after: Duration) -> Response<B> {
    let mut res = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "The session store is unavailable. Please retry shortly.\n".to_owned(),
    );
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
    res
}

fn plain<B: From<String>>(status: StatusCode, body: String) -> Response<B> {
    let mut res = Response::new(B::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// The peer address, if the server put it in the request extensions (axum's
/// `ConnectInfo`). Forwarded headers are not trusted: behind a proxy, pass
/// the address to [`Session::login_with`](crate::Session::login_with).
fn client_ip<B>(req: &Request<B>) -> Option<std::net::IpAddr> {
    #[cfg(feature = "axum")]
    {
        if let Some(info) = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        {
            return Some(info.0.ip());
        }
    }
    req.extensions()
        .get::<std::net::SocketAddr>()
        .map(std::net::SocketAddr::ip)
}
