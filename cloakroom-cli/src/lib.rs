//! The `cloakroom` binary as a library: the demo web app, so that tests can
//! build its router without a socket, and the command line.
//!
//! ```no_run
//! use cloakroom_cli::{DemoOptions, StoreSpec, build_app};
//!
//! # async fn demo() -> Result<(), cloakroom_cli::DemoError> {
//! let opts = DemoOptions {
//!     store: StoreSpec::Memory,
//!     ..DemoOptions::default()
//! };
//! let (router, handles) = build_app(&opts).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, router).await?;
//! drop(handles);
//! # Ok(()) }
//! ```
//!
//! # Routes
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /` | the demo page |
//! | `GET /healthz` | `200 ok`, never touches the session |
//! | `POST /api/register` `{"username","password"}` | `201 {"username"}`, `409` if taken, `400` for bad input |
//! | `POST /api/login` `{"username","password","remember_me"?}` | `200 {"username"}` + cookie, `401` otherwise |
//! | `POST /api/logout` | `204`, cookie cleared |
//! | `POST /api/logout-everywhere` | `204`, every session of the user ended; `401` if not signed in |
//! | `GET /api/me` | `200 {"username","session":{..}}` or `401` |
//! | `GET /api/data` | `200`, the session's values as one object |
//! | `PUT /api/data/{key}` any JSON | `204` |
//! | `DELETE /api/data/{key}` | `204` |
//! | `GET /api/flash` | `200 [{"level","text"}]`: the session's flash messages, consumed |
//!
//! Errors are `{"error": "..."}`. JSON bodies need
//! `Content-Type: application/json` (else `415`) and are limited to 64 KiB
//! (else `413`). While the session store is down, routes that need it
//! answer `503` with `Retry-After` (as JSON too); `/` and `/healthz` keep
//! working.
//!
//! # Security notes for the demo
//!
//! * It serves plain HTTP, so by default the cookie is the development
//!   cookie `id` without `Secure` (the library logs a warning). Behind a
//!   TLS-terminating proxy pass `--secure-cookies` for `__Host-id; Secure`.
//! * Passwords are hashed with Argon2id (default parameters), a bounded
//!   number at a time; an unknown username costs the same verification as
//!   a known one.
//! * Logs never carry text a client typed: a refused sign-in logs the name
//!   only if it is a registered username, otherwise a keyed pseudonym
//!   (HMAC-SHA-256 under a per-process random key), and the request log
//!   names the route, not the path.
//! * There is no login throttling and no CSRF token: the JSON API relies on
//!   `SameSite=Lax` and on `Content-Type: application/json` forcing a CORS
//!   preflight for cross-site requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use cloakroom::auth::RequireFreshAuth;
use cloakroom::client_side::ClientSessions;
use cloakroom::store::{
    EncryptedStore, MemoryStore, Reaper, SessionStore, SqliteStore, StoreError, spawn_reaper,
};
use cloakroom::{ConfigError, CookieConfig, OnStoreFailure, SessionLayer};

pub mod admin;
mod api;
pub mod cli;
mod csrf_api;
mod devices_api;
mod flash_api;
mod key_files;
mod log_safe;
pub mod password;
mod store_spec;
mod throttle;
mod token_api;
pub mod users;

pub use api::{
    ApiError, MAX_DATA_KEY_BYTES, MAX_DATA_KEY_CHARS, MAX_PASSWORD_BYTES, MAX_USERNAME_CHARS,
    MIN_PASSWORD_BYTES,
};
pub use store_spec::{ACCEPTED_FORMS, DEFAULT_STORE, StoreSpec, StoreSpecError, redact};
pub use users::{UserStore, UserStoreError};

use crate::key_files::{load_keyring, load_signing_key};
use crate::log_safe::{LogPseudonyms, route_of};
use crate::password::{PasswordError, PasswordHasherPool};

/// Largest request body accepted: 64 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Server-side or client-side sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SessionMode {
    /// The cookie holds an ID; records live in the session store.
    #[default]
    Server,
    /// The record is sealed in the cookie (the session store keeps only
    /// per-user revocation epochs).
    Cookie {
        /// `CLOAKROOM_KEYS`: comma-separated base64url keys, newest first.
        keys: Option<String>,
        /// Used when `keys` is `None`: read, or created with mode 0600.
        key_file: PathBuf,
    },
    /// Token sessions: signed access tokens (Bearer) over refresh-token
    /// families kept in the session store.
    Token {
        /// Keys for refresh tokens, as for cookie mode.
        keys: Option<String>,
        /// Used when `keys` is `None`.
        key_file: PathBuf,
        /// The Ed25519 signing key's seed (base64url), read or created with
        /// mode 0600.
        signing_key_file: PathBuf,
    },
}

impl SessionMode {
    /// `"server"`, `"cookie"` or `"token"`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Cookie { .. } => "cookie",
            Self::Token { .. } => "token",
        }
    }
}

/// How the demo app is built.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where sessions and users live.
    pub store: StoreSpec,
    /// Keep the secure `__Host-id` cookie (for running behind a TLS proxy)
    /// instead of the plain-HTTP development cookie `id`.
    pub secure_cookies: bool,
    /// How often expired sessions are deleted (default 5 minutes).
    pub reap_interval: Duration,
    /// Server-side (default) or client-side sessions.
    pub mode: SessionMode,
    /// Server mode: seal every record before it reaches the session store
    /// ([`cloakroom::store::EncryptedStore`]) with these
    /// keys.
    pub encrypt_at_rest: Option<KeySource>,
}

/// Where keys come from: `CLOAKROOM_KEYS` if given, else a key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    /// Comma-separated base64url keys, newest first.
    pub keys: Option<String>,
    /// Used when `keys` is `None`: read, or created with mode 0600.
    pub key_file: PathBuf,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            store: StoreSpec::default(),
            secure_cookies: false,
            reap_interval: Duration::from_secs(300),
            mode: SessionMode::Server,
            encrypt_at_rest: None,
        }
    }
}

/// The session store and the user store the app runs on.
#[derive(Clone)]
pub struct Stores {
    /// Session records.
    pub sessions: Arc<dyn SessionStore>,
    /// Demo accounts.
    pub users: UserStore,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}

impl Stores {
    /// Fresh in-memory stores.
    #[must_use]
    pub fn memory() -> Self {
        Self {
            sessions: Arc::new(MemoryStore::new()),
            users: UserStore::memory(),
        }
    }

    /// Opens the stores `spec` names. For `sqlite:PATH` the session store
    /// and the `demo_users` table share the file.
    ///
    /// # Errors
    ///
    /// [`DemoError::SessionStore`] or [`DemoError::Users`] if the file
    /// cannot be opened.
    pub async fn open(spec: &StoreSpec) -> Result<Self, DemoError> {
        match spec {
            StoreSpec::Memory => Ok(Self::memory()),
            StoreSpec::Url(url) => {
                if url.starts_with("dynamodb+http:") {
                    // A local endpoint (an emulator): make the table ready,
                    // as `cloakroom dynamodb-create-table` would.
                    admin::dynamodb_create_table(url).await.map_err(|source| {
                        DemoError::SessionStore {
                            spec: spec.to_string(),
                            source,
                        }
                    })?;
                }
                let sessions = cloakroom::store::connect(url).await.map_err(|source| {
                    DemoError::SessionStore {
                        spec: spec.to_string(),
                        source,
                    }
                })?;
                tracing::info!("demo accounts are kept in memory with this store");
                Ok(Self {
                    sessions,
                    users: UserStore::memory(),
                })
            }
            StoreSpec::Sqlite(path) => {
                let p = path.clone();
                let sessions = tokio::task::spawn_blocking(move || SqliteStore::open(p))
                    .await
                    .map_err(|e| DemoError::SessionStore {
                        spec: spec.to_string(),
                        source: StoreError::other(e),
                    })?
                    .map_err(|source| DemoError::SessionStore {
                        spec: spec.to_string(),
                        source,
                    })?;
                let users = UserStore::open_sqlite(path).await?;
                Ok(Self {
                    sessions: Arc::new(sessions),
                    users,
                })
            }
        }
    }
}

/// What must stay alive while the app runs: the stores and the reaper
/// task that deletes expired sessions (it stops when this is dropped).
#[derive(Debug)]
pub struct DemoHandles {
    stores: Stores,
    _reaper: Reaper,
}

impl DemoHandles {
    /// The session store.
    #[must_use]
    pub fn sessions(&self) -> &Arc<dyn SessionStore> {
        &self.stores.sessions
    }

    /// The user store.
    #[must_use]
    pub fn users(&self) -> &UserStore {
        &self.stores.users
    }
}

/// Why the demo could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The session store could not be opened.
    #[error("could not open the session store {spec}: {source}")]
    SessionStore {
        /// The `--store` value.
        spec: String,
        /// The store's error.
        source: StoreError,
    },
    /// The user store could not be opened.
    #[error("could not open the user store: {0}")]
    Users(#[from] UserStoreError),
    /// The session layer refused its configuration.
    #[error("invalid session configuration: {0}")]
    Config(#[from] ConfigError),
    /// Password hashing could not be set up.
    #[error("could not set up password hashing: {0}")]
    Password(#[from] PasswordError),
    /// The listening socket could not be opened.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    /// The keys for sealed cookies are missing or unusable.
    #[error("cookie mode keys: {0}")]
    Keys(String),
    /// The operating system's random source failed.
    #[error("no randomness for the log pseudonym key: {0}")]
    Random(String),
}

/// Builds the demo router on the stores `opts.store` names, and starts the
/// reaper.
///
/// # Errors
///
/// [`DemoError`] if a store cannot be opened or the configuration is
/// refused.
///
/// # Panics
///
/// Outside a Tokio runtime.
pub async fn build_app(opts: &DemoOptions) -> Result<(Router, DemoHandles), DemoError> {
    let stores = Stores::open(&opts.store).await?;
    build_app_with_stores(stores, opts).await
}

/// Builds the demo router on the given `stores`; `opts.store` is ignored.
/// Tests use this to look into the stores.
///
/// # Errors
///
/// [`DemoError`] if the session configuration is refused or password
/// hashing cannot be set up.
///
/// # Panics
///
/// Outside a Tokio runtime.
pub async fn build_app_with_stores(
    stores: Stores,
    opts: &DemoOptions,
) -> Result<(Router, DemoHandles), DemoError> {
    if let SessionMode::Token {
        keys,
        key_file,
        signing_key_file,
    } = &opts.mode
    {
        return build_token_app(stores, opts, keys.as_deref(), key_file, signing_key_file).await;
    }
    let cookie = if opts.secure_cookies {
        CookieConfig::default()
    } else {
        CookieConfig::default().with_insecure_http_for_development()
    };
    let mut stores = stores;
    if let Some(source) = &opts.encrypt_at_rest {
        if opts.mode != SessionMode::Server {
            return Err(DemoError::Keys(
                "encryption at rest applies to server mode (cookie mode seals the whole record in the cookie already)".into(),
            ));
        }
        let keyring = load_keyring(source.keys.as_deref(), &source.key_file)?;
        tracing::info!(key_id = %keyring.newest_key_id(), "session records are sealed before they reach the store");
        stores.sessions = Arc::new(EncryptedStore::new(stores.sessions, keyring));
    }
    let layer = match &opts.mode {
        // Token mode was built above.
        SessionMode::Server | SessionMode::Token { .. } => {
            SessionLayer::new(stores.sessions.clone())
        }
        SessionMode::Cookie { keys, key_file } => {
            let keyring = load_keyring(keys.as_deref(), key_file)?;
            // Logout-everywhere and password changes bump a per-user epoch
            // in the session store; other instances see it within 30 s.
            let sessions = ClientSessions::new(keyring).with_chunking(2);
            let epochs = stores.sessions.clone();
            let sessions = if epochs.is_durable() {
                sessions.with_revocation(epochs, Duration::from_secs(30))
            } else {
                // A demo on `memory:` or memcached: accepted, and said. A
                // restart signs everyone out (revoked cookies stay dead).
                tracing::warn!(
                    "the session store is not durable: revocation epochs are lost on restart, and every cookie-mode user must sign in again then"
                );
                sessions.with_revocation_on_volatile_store(epochs, Duration::from_secs(30))
            };
            SessionLayer::client_side(sessions)
        }
    }
    .with_cookie(cookie)
    .with_store_failure(OnStoreFailure::respond_with(store_failure_response))
    .build()?;
    let concurrency = std::thread::available_parallelism().map_or(2, usize::from);
    let state = api::AppState {
        users: stores.users.clone(),
        passwords: PasswordHasherPool::new(concurrency).await?,
        pseudonyms: LogPseudonyms::random().map_err(|e| DemoError::Random(e.to_string()))?,
        throttles: throttle::Throttles::in_memory()?,
    };
    let router = Router::new()
        .route("/api/register", post(api::register))
        .route("/api/login", post(api::login))
        .route("/api/logout", post(api::logout))
        .route("/api/logout-everywhere", post(api::logout_everywhere))
        .route("/api/me", get(api::me))
        .route("/api/sessions", get(devices_api::list))
        .route(
            "/api/sessions/revoke-others",
            post(devices_api::revoke_others),
        )
        .route("/api/sessions/{handle}", delete(devices_api::revoke))
        .route(
            "/api/password",
            post(devices_api::change_password)
                .layer(RequireFreshAuth::new(devices_api::FRESH_AUTH_MAX_AGE)),
        )
        .route("/api/reauth", post(devices_api::reauth))
        .route("/api/data", get(api::get_data))
        .route(
            "/api/data/{key}",
            put(api::put_data).delete(api::delete_data),
        )
        .route("/api/csrf", get(csrf_api::token))
        .route("/api/flash", get(flash_api::take))
        .fallback(api::not_found)
        // Every unsafe request, sign-in and registration included (login
        // CSRF), passes the Fetch-Metadata / Origin checks, or carries the
        // session's token when a client sends neither header.
        .layer(cloakroom::csrf::CsrfLayer::new())
        .layer(layer)
        // Added after the session layer: these routes never see a session.
        .route("/", get(api::home))
        .route("/healthz", get(api::healthz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(log_request))
        .with_state(state);
    let reaper = spawn_reaper(stores.sessions.clone(), opts.reap_interval);
    Ok((
        router,
        DemoHandles {
            stores,
            _reaper: reaper,
        },
    ))
}

/// The demo in token mode: the token routes, the page and the health
/// check; no session layer.
async fn build_token_app(
    stores: Stores,
    opts: &DemoOptions,
    keys: Option<&str>,
    key_file: &Path,
    signing_key_file: &Path,
) -> Result<(Router, DemoHandles), DemoError> {
    use cloakroom::token::{TokenKeys, TokenSessions};
    let refresh_keys = load_keyring(keys, key_file)?;
    let signing = load_signing_key(signing_key_file)?;
    let store = stores.sessions.clone();
    let durable = store.is_durable();
    let tokens = TokenSessions::new(store, TokenKeys::new(signing), refresh_keys)
        .with_issuer("cloakroom-demo")
        .with_audience("cloakroom-demo");
    let tokens = if durable {
        tokens
    } else {
        tracing::warn!(
            "the session store is not durable: refresh families and revocations are lost on restart"
        );
        tokens.with_volatile_store_accepted()
    };
    let tokens = tokens
        .build()
        .map_err(|e| DemoError::Keys(format!("token sessions: {e}")))?;
    let concurrency = std::thread::available_parallelism().map_or(2, usize::from);
    let state = api::AppState {
        users: stores.users.clone(),
        passwords: PasswordHasherPool::new(concurrency).await?,
        pseudonyms: LogPseudonyms::random().map_err(|e| DemoError::Random(e.to_string()))?,
        throttles: throttle::Throttles::in_memory()?,
    };
    let router = token_api::router(tokens)
        .route("/", get(api::home))
        .route("/healthz", get(api::healthz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(log_request))
        .with_state(state);
    let reaper = spawn_reaper(stores.sessions.clone(), opts.reap_interval);
    Ok((
        router,
        DemoHandles {
            stores,
            _reaper: reaper,
        },
    ))
}

/// What a request that needed the session store gets while the store is
/// down: `503` with `Retry-After`, as JSON like every other API error.
fn store_failure_response(_err: &StoreError) -> axum::http::Response<String> {
    let mut res = axum::http::Response::new(
        r#"{"error":"the session store is unavailable; please retry shortly"}"#.to_owned(),
    );
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
    res
}

async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    // The route, not the path: a data key or a mistyped URL is the
    // client's text (defect 14).
    let route = route_of(req.uri().path());
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    tracing::info!(
        %method,
        route,
        status = res.status().as_u16(),
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "request"
    );
    res
}
