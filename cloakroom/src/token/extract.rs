//! The axum side (features `jwt` and `axum`): [`TokenLayer`] makes a
//! [`TokenSessions`] reachable from handlers, [`AccessToken`] verifies the
//! request's token.

use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, Request, StatusCode};
use serde::de::DeserializeOwned;
use tower_layer::Layer;
use tower_service::Service;

use super::claims::{AccessClaims, NoClaims};
use super::error::{Rejection, TokenError};
use super::sessions::TokenSessions;
use super::transport::presented_access_token;

/// Puts a [`TokenSessions`] into every request's extensions, for
/// [`AccessToken`].
///
/// ```
/// # fn demo(tokens: cloakroom::token::TokenSessions) {
/// use axum::{Router, routing::get};
/// use cloakroom::token::{AccessToken, TokenLayer};
///
/// async fn me(token: AccessToken) -> String {
///     token.claims.sub
/// }
///
/// let app: Router = Router::new()
///     .route("/api/me", get(me))
///     .layer(TokenLayer::new(tokens));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TokenLayer {
    tokens: TokenSessions,
}

impl TokenLayer {
    /// A layer handing `tokens` to every request.
    #[must_use]
    pub fn new(tokens: TokenSessions) -> Self {
        Self { tokens }
    }
}

impl<S> Layer<S> for TokenLayer {
    type Service = TokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenService {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// The service made by [`TokenLayer`].
#[derive(Debug, Clone)]
pub struct TokenService<S> {
    inner: S,
    tokens: TokenSessions,
}

impl<S, B> Service<Request<B>> for TokenService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.tokens.clone());
        self.inner.call(req)
    }
}

/// A verified access token: `Authorization: Bearer`, else the access
/// cookie. Rejects with 401 and `WWW-Authenticate: Bearer ...` (RFC 6750),
/// or 503 when the revocation state cannot be read.
#[derive(Debug, Clone)]
pub struct AccessToken<C = NoClaims> {
    /// Its verified claims.
    pub claims: AccessClaims<C>,
}

/// Why [`AccessToken`] refused a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum AccessTokenRejection {
    /// No token: 401 with a bare `Bearer` challenge.
    Missing,
    /// A refused token: 401 with `error="invalid_token"`.
    Invalid(Rejection),
    /// The store failed: 503.
    Unavailable,
    /// No [`TokenLayer`] on the route: 500 (a wiring mistake).
    MissingLayer,
}

impl IntoResponse for AccessTokenRejection {
    fn into_response(self) -> Response {
        let (status, challenge) = match self {
            Self::Missing => (
                StatusCode::UNAUTHORIZED,
                Some(r#"Bearer realm="api""#.to_owned()),
            ),
            Self::Invalid(why) => (StatusCode::UNAUTHORIZED, Some(why.www_authenticate())),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, None),
            Self::MissingLayer => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        let body = match status {
            StatusCode::UNAUTHORIZED => "a valid access token is required\n",
            StatusCode::SERVICE_UNAVAILABLE => "the session store is unavailable; retry shortly\n",
            _ => "token sessions are not configured on this route (TokenLayer)\n",
        };
        let mut res = (status, body).into_response();
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            res.headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, value);
        }
        res
    }
}

impl<S, C> FromRequestParts<S> for AccessToken<C>
where
    S: Send + Sync,
    C: DeserializeOwned + Send,
{
    type Rejection = AccessTokenRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(tokens) = parts.extensions.get::<TokenSessions>().cloned() else {
            return Err(AccessTokenRejection::MissingLayer);
        };
        let token = presented_access_token(&parts.headers)
            .map_err(AccessTokenRejection::Invalid)?
            .ok_or(AccessTokenRejection::Missing)?;
        match tokens.verify_as::<C>(token).await {
            Ok(claims) => Ok(Self { claims }),
            Err(TokenError::Rejected(why)) => Err(AccessTokenRejection::Invalid(why)),
            Err(TokenError::Store(e)) => {
                tracing::warn!(error = %e, "access token revocation state unreadable; refusing");
                Err(AccessTokenRejection::Unavailable)
            }
            Err(_) => Err(AccessTokenRejection::Invalid(Rejection::BadClaims)),
        }
    }
}
