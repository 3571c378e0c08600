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
use crate::config::{ConfigError, IdGenerator, OnStoreFailure, SessionConfig};
use crate::cookie::CookieConfig;
use crate::expiry::{Clock, Expiry};
use crate::id::SessionId;
use crate::rate_limit::GuessingLimit;
use crate::session::{Context, Engine, Failure, SealedMode, ServerMode, Session};
use crate::store::{SessionStore, StoreError};

/// The store failure behind a replaced response, placed in its extensions.
#[derive(Debug, Clone)]
pub struct StoreFailure(pub Arc<StoreError>);

/// Adds a [`Session`] to every request: the layer, configured with its
/// `with_*` setters. Cheap to clone; clones share the store and the
/// in-process save coordination.
///
/// ```
/// use cloakroom::{CookieConfig, Expiry, OnStoreFailure, SessionLayer};
/// use cloakroom::store::MemoryStore;
/// use std::time::Duration;
///
/// let layer = SessionLayer::new(MemoryStore::new())
///     .with_expiry(Expiry::default().with_idle_timeout(Duration::from_secs(900)))
///     .with_store_failure(OnStoreFailure::ContinueAnonymous)
///     .build()
///     .expect("a valid configuration");
/// ```
///
/// The defaults are valid, so `SessionLayer::new(store)` can be used as it
/// is. After a setter, [`build`](Self::build) checks the configuration and
/// reports a mistake as a [`ConfigError`]; a layer applied without it is
/// checked when applied.
#[derive(Clone)]
#[must_use]
pub struct SessionLayer {
    ctx: Arc<Context>,
    guessing: Option<Arc<GuessingLimit>>,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("config", &self.ctx.config)
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// Default of [`with_max_value_bytes`](Self::with_max_value_bytes):
    /// 64 KiB.
    pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;
    /// Default of [`with_max_record_bytes`](Self::with_max_record_bytes):
    /// 256 KiB.
    pub const DEFAULT_MAX_RECORD_BYTES: usize = 256 * 1024;

    /// Server-side sessions in `store`, with the secure defaults. An
    /// `Arc<dyn SessionStore>` shared with a reaper or an admin endpoint is
    /// a store too.
    pub fn new(store: impl SessionStore) -> Self {
        let engine = Engine::Server(ServerMode::new(Arc::new(store)));
        Self::over(SessionConfig::default(), engine)
    }

    /// Client-side sessions: the record is sealed in the cookie and no store
    /// is on the request path (see [`client_side`](crate::client_side)). The
    /// layer reads the time from the sessions' clock
    /// ([`ClientSessions::with_clock`]).
    pub fn client_side(sessions: ClientSessions) -> Self {
        let config = SessionConfig {
            clock: sessions.clock.clone(),
            ..SessionConfig::default()
        };
        Self::over(config, Engine::Sealed(SealedMode::new(sessions)))
    }

    fn over(config: SessionConfig, engine: Engine) -> Self {
        Self {
            ctx: Arc::new(Context::new(config, engine)),
            guessing: None,
        }
    }

    /// Applies `f` to the configuration, copying it (unchecked) first: a
    /// clone of this layer may share the current one.
    fn configure(mut self, f: impl FnOnce(&mut Context)) -> Self {
        let mut ctx = self.ctx.duplicate();
        f(&mut ctx);
        self.ctx = Arc::new(ctx);
        self
    }

    /// Sets the cookie attributes (default: `__Host-id`, `Secure`,
    /// `HttpOnly`, `SameSite=Lax`).
    pub fn with_cookie(self, cookie: CookieConfig) -> Self {
        self.configure(|c| c.config.cookie = cookie)
    }

    /// Sets the expiry policy (idle and absolute timeouts, remember-me).
    pub fn with_expiry(self, expiry: Expiry) -> Self {
        self.configure(|c| c.config.expiry = expiry)
    }

    /// Sets what a request gets when the store fails (default: 503 with
    /// `Retry-After`).
    pub fn with_store_failure(self, policy: OnStoreFailure) -> Self {
        self.configure(|c| c.config.on_failure = policy)
    }

    /// Reads time from `clock` instead of the system clock: every expiry
    /// decision of the layer and of its store follows it (tests, with
    /// `MockClock` from the `test-util` feature). On a
    /// [`client_side`](Self::client_side) layer it also becomes the
    /// sessions' clock.
    pub fn with_clock(self, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        self.configure(|c| c.set_clock(clock))
    }

    /// Draws new IDs from `f` instead of [`SessionId::generate`]. Insecure,
    /// as its name says: anything but the OS CSPRNG makes sessions
    /// guessable.
    ///
    /// For tests only (for instance, forcing a collision to prove that a
    /// colliding ID is never reused, S7).
    pub fn with_insecure_id_generator(
        self,
        f: impl Fn() -> SessionId + Send + Sync + 'static,
    ) -> Self {
        let f: IdGenerator = Arc::new(f);
        self.configure(|c| c.config.new_id = f)
    }

    /// Largest encoded value one `insert` accepts (default 64 KiB).
    pub fn with_max_value_bytes(self, n: usize) -> Self {
        self.configure(|c| c.config.max_value_bytes = n)
    }

    /// Largest encoded record a save writes (default 256 KiB, at most
    /// [`MAX_RECORD_BYTES`](crate::record::MAX_RECORD_BYTES): `build`
    /// refuses more).
    pub fn with_max_record_bytes(self, n: usize) -> Self {
        self.configure(|c| c.config.max_record_bytes = n)
    }

    /// Names sessions in device listings with `key` (default: a public
    /// key; see [`HandleKey`](crate::auth::HandleKey)). Use the same key
    /// wherever the deployment lists devices (every instance, the admin
    /// CLI).
    pub fn with_handle_key(self, key: crate::auth::HandleKey) -> Self {
        self.configure(|c| c.config.handle_key = key)
    }

    /// Caps each user's live sessions (S26): [`Session::login`](crate::Session::login)
    /// evicts the oldest or refuses, as `limit` says, atomically with
    /// respect to the user's other sign-ins. Server-side sessions only:
    /// `build` refuses a limit on client-side sessions.
    pub fn with_session_limit(self, limit: crate::auth::SessionLimit) -> Self {
        self.configure(|c| c.config.session_limit = Some(limit))
    }

    /// Counts, per client, session cookies that name no session
    /// (malformed, forged, or unknown to the store) and reports a client
    /// that presents many: the session-guessing hook (S51). By default it
    /// only logs; see [`GuessingLimit`] for the optional 429. Off unless
    /// set.
    pub fn with_guessing_limit(mut self, limit: GuessingLimit) -> Self {
        self.guessing = Some(Arc::new(limit));
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a cookie browsers would drop (S10), impossible
    /// timeouts, a record limit above what can be read back, or
    /// client-side revocation on a volatile store.
    pub fn build(self) -> Result<Self, ConfigError> {
        self.ctx.validate()?;
        // Logs the insecure-cookie warning, once.
        let _ = self.ctx.check();
        Ok(self)
    }

    /// Sessions that hold a save lane in this layer now (the group commit
    /// of concurrent saves of one session): 0 whenever no save is in
    /// flight, for client-side sessions always 0. Feature `test-util`, for
    /// soak tests that check the lanes drain back to empty.
    #[cfg(any(test, feature = "test-util"))]
    #[must_use]
    pub fn save_lanes_in_use(&self) -> usize {
        match &self.ctx.engine {
            crate::session::Engine::Server(server) => server.lanes().len(),
            crate::session::Engine::Sealed(_) => 0,
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    /// # Panics
    ///
    /// If the configuration is invalid and [`SessionLayer::build`] was not
    /// called to report it: a misconfigured layer never serves a request.
    fn layer(&self, inner: S) -> Self::Service {
        if let Some(e) = self.ctx.check() {
            panic!(
                "invalid session layer configuration: {e} (SessionLayer::build reports this as an error)"
            );
        }
        SessionService {
            inner,
            ctx: self.ctx.clone(),
            guessing: self.guessing.clone(),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone)]
#[must_use]
pub struct SessionService<S> {
    inner: S,
    ctx: Arc<Context>,
    guessing: Option<Arc<GuessingLimit>>,
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
        // S51: a client reported for guessing may be refused before its
        // cookie reaches the store.
        let guessing = self
            .guessing
            .clone()
            .and_then(|g| g.client(&req).map(|ip| (g, ip)));
        if let Some((g, ip)) = &guessing
            && let Some(refusal) = g.refusal(*ip, req.headers())
        {
            return Box::pin(std::future::ready(Ok(refusal.response())));
        }
        let session = Session::from_headers(self.ctx.clone(), req.headers(), client_ip(&req));
        req.extensions_mut().insert(session.clone());
        // The clone that was driven to readiness is the one we call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let mut res = inner.call(req).await?;
            let outcome = session.finish(res.status()).await;
            if let (true, Some((g, ip))) = (outcome.invalid_cookie, &guessing) {
                g.record(*ip);
            }
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
