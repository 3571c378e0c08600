//! Web sessions and sign-in state for Rust: one [`Session`] API over
//! server-side stores, secure by default.
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use cloakroom::{Session, SessionError, SessionLayer, store::MemoryStore};
//!
//! async fn login(session: Session) -> Result<&'static str, SessionError> {
//!     // ... check the password first ...
//!     session.login("alice").await?; // new ID, user recorded
//!     Ok("signed in")
//! }
//!
//! async fn me(session: Session) -> Result<String, SessionError> {
//!     Ok(session.user().await?.unwrap_or_else(|| "anonymous".into()))
//! }
//!
//! let app: Router = Router::new()
//!     .route("/login", post(login))
//!     .route("/me", get(me))
//!     .layer(SessionLayer::new(MemoryStore::new()));
//! ```
//!
//! # Crate layout
//!
//! * [`Session`]: the per-request handle (`get`, `insert`, `login`, ...).
//! * [`SessionLayer`]: the tower layer that loads and saves it.
//! * [`flash`]: flash messages kept in the session ([`Session::flash`]).
//! * [`store`]: the [`SessionStore`](store::SessionStore) trait, its
//!   conformance suite (feature `conformance`), and the stores:
//!   [`MemoryStore`](store::MemoryStore), [`FileStore`](store::FileStore),
//!   [`TieredStore`](store::TieredStore), `SqliteStore` (feature `sqlite`,
//!   on by default), `PostgresStore` (`postgres`), `MySqlStore` (`mysql`),
//!   `RedisStore` for Redis and Redis Cluster (`redis`), `MemcachedStore`
//!   (`memcached`), `MongoStore` (`mongodb`) and `DynamoStore`
//!   (`dynamodb`); [`EncryptedStore`](store::EncryptedStore) seals records
//!   before they reach any of them. [`store::connect`] picks one by URL.
//! * [`rate_limit`]: login throttling per account and client (memory or
//!   Redis counters, S53) and the session-guessing hook (S51).
//! * `csrf` (feature `csrf`, on by default): [`CsrfLayer`](csrf::CsrfLayer),
//!   Fetch-Metadata / `Origin` checks plus a session-bound token for every
//!   unsafe method (S47, S48), and the CORS recipe for credentialed
//!   single-page apps.
//! * [`SessionId`], [`Record`], [`Expiry`], [`CookieConfig`]: the pieces
//!   the design contract fixes.
//!
//! # Security notes
//!
//! * IDs are 256 random bits; stores only see their SHA-256 (S1, S6).
//! * A cookie is validated before any store call, and a well-formed ID the
//!   server did not issue is never adopted (S4, S5).
//! * Idle and absolute expiry are enforced on the server (S19, S20).
//! * `login` rotates the ID and the CSRF secret; `logout` deletes the
//!   record before the response.
//! * Logs and metrics carry a keyed hash of the ID, never the ID (S50).
#![forbid(unsafe_code)]

/// The README's code samples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}

pub mod auth;
pub mod client_side;
mod config;
mod cookie;
pub mod crypto;
#[cfg(feature = "csrf")]
pub mod csrf;
mod expiry;
#[cfg(feature = "axum")]
mod extract;
pub mod flash;
mod id;
mod layer;
pub mod rate_limit;
mod record;
mod session;
pub mod store;
#[cfg(feature = "jwt")]
pub mod token;
mod value;

pub use config::{ConfigError, FailureResponder, OnStoreFailure};
pub use cookie::{
    CookieConfig, CookieConfigError, CookieError, CookieLookup, MAX_COOKIE_BYTES, SameSite,
    find_cookie,
};
#[cfg(any(test, feature = "test-util"))]
pub use expiry::MockClock;
pub use expiry::{Clock, Expiry, MAX_COOKIE_AGE, SystemClock, Timestamp};
#[cfg(feature = "axum")]
pub use extract::{MissingSessionLayer, SessionData};
pub use id::{InvalidId, LogTag, SessionId, StorageKey};
pub use layer::{ResponseFuture, SessionLayer, SessionService, StoreFailure};
pub use record::{
    DecodeError, Device, EncodeError, MAX_RECORD_BYTES, MAX_RECORD_ENTRIES, MAX_VALUE_DEPTH,
    MAX_VALUE_NAME_BYTES, RECORD_FORMAT_VERSION, Record, decode_value, encode_value,
};
pub use session::{LoginOptions, MAX_USER_BYTES, Session, SessionError, SessionInfo};
pub use value::SessionValue;
