//! Token sessions (feature `jwt`): short-lived signed access tokens over
//! refresh-token families kept in any
//! [`SessionStore`](crate::store::SessionStore): stateless where it
//! can be, revocable where it must.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use cloakroom::crypto::{Keyring, MasterKey};
//! use cloakroom::store::SqliteStore;
//! use cloakroom::token::{TokenKey, TokenKeys, TokenSessions};
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("sessions.db"))?;
//! let tokens = TokenSessions::new(
//!     store,
//!     TokenKeys::new(TokenKey::generate_ed25519()?),
//!     Keyring::new(vec![MasterKey::generate()])?,
//! )
//! .with_issuer("https://auth.example.com")
//! .with_audience("https://api.example.com")
//! .build()?;
//!
//! let pair = tokens.issue("alice").await?;          // after checking the password
//! let claims = tokens.verify(&pair.access_token).await?;
//! assert_eq!(claims.sub, "alice");
//! let next = tokens.refresh(&pair.refresh_token).await?; // rotates
//! assert!(tokens.refresh(&pair.refresh_token).await.is_ok()); // same successor, within the grace
//! tokens.revoke_user("alice").await?;              // every device, every token
//! assert!(tokens.verify(&next.access_token).await.is_err());
//! # Ok(()) }
//! ```
//!
//! # What is guaranteed
//!
//! * **Access tokens** are JWS compact with `typ: at+jwt` and a `kid`;
//!   Ed25519 (`EdDSA`) by default, ES256 or HS256 (secrets of at least
//!   256 bits) as options. The key named by `kid` fixes the algorithm; the
//!   header never chooses it, so `none` and algorithm confusion are refused
//!   (S40). `jku`, `jwk`, `x5u`, `x5c`, `crit`, `zip` and any other header
//!   member are refused (S41, S46). Tokens over 8 KiB are refused before
//!   decoding; the signature is checked before the claims are read (S43);
//!   claims are typed (a missing or wrongly typed claim, or one given
//!   twice, is an error, S42); `iss`, `aud`, `exp`, `iat`, `nbf` are
//!   checked with a leeway of at most 60 s.
//! * **Refresh tokens are not JWTs**: opaque, prefixed
//!   ([`REFRESH_TOKEN_PREFIX`]), signed with the key ring, naming a family
//!   record stored under a hash. Each use rotates; an older generation
//!   revokes the family; within the reuse grace the previous token returns
//!   the same successor. Rotation never extends the family's absolute
//!   lifetime. All under the store's compare-and-swap.
//! * **Revocation**: a device (its `sid`, denied until its last access
//!   token has expired), a user (their epoch, the same one client-side
//!   sessions use, is bumped and every family deleted), one token (`jti`).
//!   A check costs one store read, none while the process's copy of the
//!   user's revocation record is fresh: the worst-case delay is
//!   [`TokenSessions::with_revocation_cache`] (default 5 s) in other
//!   processes, none in the revoking one.

mod claims;
mod csrf;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod jws;
mod keys;
mod refresh;
mod revocation;
mod revoke;
mod sessions;
#[cfg(test)]
mod tests;
mod transport;

pub use claims::{AccessClaims, Audience, NoClaims};
pub use error::{Rejection, TokenError};
#[cfg(feature = "axum")]
pub use extract::{AccessToken, AccessTokenRejection, TokenLayer, TokenService};
pub use jws::MAX_TOKEN_BYTES;
pub use keys::{Algorithm, KeyState, MIN_HS256_SECRET_BYTES, TokenKey, TokenKeyError, TokenKeys};
pub use refresh::REFRESH_TOKEN_PREFIX;
pub use sessions::{TokenConfigError, TokenPair, TokenSessions};
/// Header, signature and claim decoding of `token` under `keys` at `now`,
/// without the issuer, audience, time or revocation checks: the entry
/// point of fuzz target F5, not an API (verify requests with
/// [`TokenSessions::verify`]).
///
/// # Errors
///
/// The [`Rejection`].
#[doc(hidden)]
pub fn fuzz_decode(
    keys: &TokenKeys,
    token: &str,
    now: crate::Timestamp,
) -> Result<AccessClaims<serde_json::Map<String, serde_json::Value>>, Rejection> {
    let payload = jws::verify(keys, token, now)?;
    jws::from_json_once(&payload).map_err(|_| Rejection::BadClaims)
}

/// Signs `claims` under the current key of `keys`, as tokens are issued:
/// for fuzz target F5, not an API.
///
/// # Errors
///
/// A claims value that does not serialize.
#[doc(hidden)]
pub fn fuzz_sign<C: serde::Serialize>(
    keys: &TokenKeys,
    claims: &C,
) -> Result<String, serde_json::Error> {
    jws::sign(keys, claims)
}

pub use transport::{
    ACCESS_COOKIE, REFRESH_COOKIE, presented_access_token, presented_refresh_cookie,
};
