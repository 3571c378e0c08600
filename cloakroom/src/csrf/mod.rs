//! Cross-site request forgery protection (feature `csrf`, on by default)
//! for every unsafe method, sign-in included (login CSRF), and the CORS
//! recipe for credentialed single-page apps.
//!
//! ```
//! use axum::{Router, routing::{get, post}, Json};
//! use cloakroom::{Session, SessionError, SessionLayer, csrf::CsrfLayer, store::MemoryStore};
//!
//! // For clients that send neither Sec-Fetch-Site nor Origin: put the
//! // token in a form field or the `x-csrf-token` header.
//! async fn token(session: Session) -> Result<Json<serde_json::Value>, SessionError> {
//!     Ok(Json(serde_json::json!({ "token": session.csrf_token().await? })))
//! }
//!
//! let app: Router = Router::new()
//!     .route("/api/csrf", get(token))
//!     .route("/api/login", post(|| async { "signed in" }))
//!     .layer(CsrfLayer::new())
//!     .layer(SessionLayer::new(MemoryStore::new()));
//! ```
//!
//! # The rules
//!
//! [`CsrfLayer`] lets `GET`, `HEAD` and `OPTIONS` through (they must not
//! change anything) and requests to a path given to
//! [`with_bypass_path`](CsrfLayer::with_bypass_path), matched exactly. Any
//! other request (S48):
//!
//! 1. is refused if the browser says it is cross-site (`Sec-Fetch-Site:
//!    cross-site`, [`CsrfRejection::CrossOrigin`]) or from a sibling
//!    subdomain (`same-site`, [`CsrfRejection::SameSiteSubdomain`], unless
//!    [`with_allow_same_site`](CsrfLayer::with_allow_same_site)), or, without
//!    `Sec-Fetch-Site`, if its `Origin` is neither this host nor a trusted
//!    origin ([`CsrfRejection::OriginMismatch`]); an `Origin` that is
//!    exactly a [trusted origin](CsrfLayer::with_trusted_origin) always
//!    passes. These are the rules of tower-http's [`csrf`](tower_http::csrf)
//!    middleware (Go's `CrossOriginProtection`), which the layer runs
//!    rather than copies;
//! 2. passes if the browser vouched for it (`Sec-Fetch-Site: same-origin`
//!    or `none`, or a matching `Origin`);
//! 3. otherwise, with neither header, passes if it carries no session
//!    cookie (nothing to forge), and else must carry this session's token
//!    (S47): in the `x-csrf-token` header, or in the `csrf_token` field of
//!    an `application/x-www-form-urlencoded` body (read up to 64 KiB, 413
//!    beyond), never in the query string. Missing:
//!    [`CsrfRejection::MissingToken`]; wrong: [`CsrfRejection::BadToken`].
//!
//! Refusals are `403 Forbidden` with a one-line plain-text body, the
//! [`CsrfRejection`] in the response extensions and a `tracing` warning.
//! Every answer to an unsafe request gets `Vary: Origin, Sec-Fetch-Site`.
//!
//! # Tokens
//!
//! [`Session::csrf_token`](crate::Session::csrf_token) hands out the
//! session's secret masked with a fresh random pad, so every call returns
//! different bytes; all of them are valid for the session (and no other)
//! until it ends or the user signs in: [`Session::login`](crate::Session::login)
//! drops the secret, so a token fixed by an attacker before sign-in is
//! worthless after. Tokens are compared in constant time. The secret is a
//! reserved value of the session record, so it works the same for
//! server-side and client-side (sealed-cookie) sessions; asking for a token
//! starts a session if there was none. Token sessions (`cloakroom::token`) in
//! cookies use a signed double-submit token instead:
//! `TokenSessions::csrf_token` and
//! `CsrfLayer::with_token_sessions` (feature `jwt`).
//!
//! A token is only checked when the headers cannot settle the question:
//! modern browsers always send `Sec-Fetch-Site`, so most applications
//! never need one, but forms and clients behind header-stripping proxies
//! do.
//!
//! # CORS for credentialed single-page apps
//!
//! A single-page app on `https://app.example.com` calling the API on
//! `https://api.example.com` with cookies needs both layers: CORS so that
//! the browser lets the app read the answers, and the app's origin trusted
//! by the CSRF layer (its requests are `same-site`, refused by default).
//! [`credentialed_cors`] builds the `CorsLayer`: an exact origin list,
//! credentials allowed, `Vary: Origin`, and it refuses the combination
//! browsers treat as unsafe (a wildcard origin with credentials).
//!
//! ```
//! use axum::{Router, routing::post};
//! use cloakroom::{SessionLayer, csrf::{CsrfLayer, credentialed_cors}, store::MemoryStore};
//!
//! let spa = "https://app.example.com";
//! let app: Router = Router::new()
//!     .route("/api/items", post(|| async { "created" }))
//!     .layer(CsrfLayer::new().with_trusted_origin(spa)?)
//!     .layer(SessionLayer::new(MemoryStore::new()))
//!     .layer(credentialed_cors(&[spa])?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The session cookie must reach the API from the app: with the two on
//! sibling subdomains, `SameSite=Lax` (the default) suffices; across
//! sites it would need `SameSite=None`, which browsers increasingly block
//! for third-party cookies. Serve both from one site. `examples/cors_spa.rs`
//! runs the whole recipe.
//!
//! # Deployment caveat
//!
//! The checks trust the `Origin`, `Sec-Fetch-Site` and `Host` that reach
//! them. A proxy that rewrites `Host` makes same-origin requests from old
//! browsers look foreign (they are refused, never let through); one that
//! strips the Fetch-Metadata headers moves every request with a session
//! cookie to the token check. Forward them unchanged.

mod cors;
mod layer;
mod origin;
mod reject;
mod service;
mod token;

pub use cors::{CorsConfigError, credentialed_cors};
pub use layer::{
    CsrfConfigError, CsrfLayer, DEFAULT_FORM_FIELD, DEFAULT_HEADER_NAME, DEFAULT_MAX_FORM_BYTES,
};
pub use reject::CsrfRejection;
pub use service::{CsrfBody, CsrfService, ResponseFuture};
#[doc(hidden)]
pub use token::{fuzz_accepts, fuzz_mask};
