//! Why a token was refused, typed, and what to answer.

use crate::store::StoreError;

/// Why an access token was refused. Every variant is the client's problem
/// (401), except [`TokenError::Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Longer than [`MAX_TOKEN_BYTES`](super::MAX_TOKEN_BYTES) (S46).
    #[error("the token is too large")]
    TooLarge,
    /// Not JWS compact serialization.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header holds a member we do not accept, lacks one, or repeats
    /// one (`jku`, `jwk`, `x5u`, `x5c`, `crit`, `zip`, ...; S41, S42).
    #[error("unacceptable token header")]
    BadHeader,
    /// `typ` is not `at+jwt` (RFC 9068).
    #[error("the token is not an access token (typ)")]
    WrongType,
    /// No key with this `kid` may verify now (unknown, or retired past its
    /// grace).
    #[error("unknown or retired signing key")]
    UnknownKey,
    /// `alg` differs from the key's one algorithm (S40: `none`, algorithm
    /// confusion).
    #[error("the algorithm does not match the key")]
    WrongAlgorithm,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// A claim is missing, has the wrong type or is repeated (S42).
    #[error("invalid claims")]
    BadClaims,
    /// `exp` has passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` or `iat` lies in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` or `aud` is not ours.
    #[error("the token was issued by or for someone else")]
    WrongAudience,
    /// The token, its device or its user's sessions were revoked.
    #[error("the token has been revoked")]
    Revoked,
}

impl Rejection {
    /// The `WWW-Authenticate` challenge for a 401 (RFC 6750 §3).
    #[must_use]
    pub fn www_authenticate(self) -> String {
        let description = match self {
            Self::Expired => "the access token expired",
            Self::Revoked => "the access token was revoked",
            _ => "the access token is invalid",
        };
        format!(r#"Bearer error="invalid_token", error_description="{description}""#)
    }
}

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The presented token is refused (answer 401).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The refresh token is unknown, expired or revoked, or was reused
    /// after its rotation (which revoked its whole family): sign in again.
    #[error("the refresh token is invalid; sign in again")]
    InvalidRefresh,
    /// The application's claims are not a JSON object, or use a claim name
    /// cloakroom sets itself (`iss`, `aud`, `sub`, `iat`, `exp`, `nbf`,
    /// `jti`, `sid`, `ep`, `auth_time`).
    #[error("application claims must be a JSON object without registered claim names")]
    Claims,
    /// The store failed; nothing was issued or revoked (answer 503).
    #[error(transparent)]
    Store(#[from] StoreError),
}
