//! The claims of an access token, typed: a missing or wrongly typed claim
//! is an error, never a default (S42; the jsonwebtoken CVE-2026-25537 class).

use serde::{Deserialize, Serialize};

use super::error::Rejection;

/// `aud`: one audience or several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` names `ours`.
    #[must_use]
    pub fn contains(&self, ours: &str) -> bool {
        match self {
            Self::One(a) => a == ours,
            Self::Many(all) => all.iter().any(|a| a == ours),
        }
    }
}

/// No application claims (the default of [`AccessClaims`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoClaims {}

/// The verified claims of an access token: the registered ones cloakroom
/// requires, plus the application's own (`C`, flattened into the same
/// object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims<C = NoClaims> {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: Audience,
    /// The signed-in user.
    pub sub: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// This token's unique ID (what [`TokenSessions::revoke_token`](super::TokenSessions::revoke_token) denies).
    pub jti: String,
    /// The device (refresh family) this token belongs to: a public handle,
    /// never usable as a refresh token.
    pub sid: String,
    /// The user's revocation epoch when the token was issued.
    pub ep: u64,
    /// When the user last proved who they are, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    /// The application's claims.
    #[serde(flatten)]
    pub extra: C,
}

/// What a token is checked against.
pub(crate) struct Expect<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) audience: &'a str,
    pub(crate) leeway_secs: u64,
    pub(crate) now_secs: u64,
}

impl<C> AccessClaims<C> {
    /// Checks the time window, issuer and audience.
    ///
    /// # Errors
    ///
    /// The [`Rejection`] saying which check failed.
    pub(crate) fn check(&self, want: &Expect<'_>) -> Result<(), Rejection> {
        if self.iss != want.issuer || !self.aud.contains(want.audience) {
            return Err(Rejection::WrongAudience);
        }
        if self.exp.saturating_add(want.leeway_secs) <= want.now_secs {
            return Err(Rejection::Expired);
        }
        let latest_start = want.now_secs.saturating_add(want.leeway_secs);
        if self.iat > latest_start || self.nbf.is_some_and(|nbf| nbf > latest_start) {
            return Err(Rejection::NotYetValid);
        }
        if self.exp < self.iat {
            return Err(Rejection::BadClaims);
        }
        Ok(())
    }
}
