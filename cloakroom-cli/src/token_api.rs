//! The demo in token mode (`--mode token`): OAuth-shaped JSON endpoints
//! over [`TokenSessions`].
//!
//! * `POST /api/token` `{"username","password"}` -> a token pair
//! * `POST /api/token/refresh` `{"refresh_token"}` -> the next pair
//! * `POST /api/token/revoke` `{"refresh_token"}` -> 200 (this device ends)
//! * `POST /api/logout-everywhere` (Bearer) -> every device of the user ends
//! * `GET /api/me` (Bearer) -> `{"username","sid","expires_at"}`
//! * `GET /.well-known/jwks.json` -> the public keys

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::token::{AccessToken, TokenError, TokenLayer, TokenSessions};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{self, ApiError, ApiResult, AppState, JsonBody, LoginBody};

/// Routes of token mode (the caller adds the page, health check and body
/// limit around them).
pub(crate) fn router(tokens: TokenSessions) -> Router<AppState> {
    let jwks = tokens.clone();
    Router::new()
        .route("/api/register", post(api::register))
        .route("/api/token", post(issue))
        .route("/api/token/refresh", post(refresh))
        .route("/api/token/revoke", post(revoke))
        .route("/api/logout-everywhere", post(logout_everywhere))
        .route("/api/me", get(me))
        .route(
            "/.well-known/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move { jwks.jwks_response() }
            }),
        )
        .fallback(api::not_found)
        // Handlers take it as `Extension<TokenSessions>`, `AccessToken` too.
        .layer(TokenLayer::new(tokens))
}

/// `{"refresh_token": "..."}`.
#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::Store(e) => {
            tracing::error!(error = %e, "token store failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the session store is unavailable; please retry shortly",
            )
        }
        // OAuth's name for an unusable refresh token (RFC 6749 §5.2).
        TokenError::InvalidRefresh => ApiError::bad_request("invalid_grant"),
        other => ApiError::unauthorized(&other.to_string()),
    }
}

/// An OAuth token response: never cached (RFC 6749 §5.1).
fn pair_response(pair: &cloakroom::token::TokenPair) -> Response {
    let mut res = Json(pair).into_response();
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    res
}

async fn issue(
    State(state): State<AppState>,
    crate::throttle::ClientAddr(client): crate::throttle::ClientAddr,
    axum::Extension(tokens): axum::Extension<TokenSessions>,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Response> {
    api::check_credentials(&state, client, &body.username, body.password).await?;
    let now = cloakroom::Timestamp::now();
    let pair = tokens
        .issue_with(&body.username, Some(now), &cloakroom::token::NoClaims {})
        .await
        .map_err(token_error)?;
    tracing::info!(username = body.username.as_str(), "token pair issued");
    Ok(pair_response(&pair))
}

async fn refresh(
    axum::Extension(tokens): axum::Extension<TokenSessions>,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<Response> {
    let pair = tokens
        .refresh(&body.refresh_token)
        .await
        .map_err(token_error)?;
    Ok(pair_response(&pair))
}

async fn revoke(
    axum::Extension(tokens): axum::Extension<TokenSessions>,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<Json<Value>> {
    // RFC 7009 §2.2: an unknown token is not an error; a store failure is.
    let revoked = tokens
        .revoke_refresh(&body.refresh_token)
        .await
        .map_err(token_error)?;
    Ok(Json(json!({ "revoked": revoked })))
}

async fn logout_everywhere(
    axum::Extension(tokens): axum::Extension<TokenSessions>,
    token: AccessToken,
) -> ApiResult<Json<Value>> {
    let ended = tokens
        .revoke_user(&token.claims.sub)
        .await
        .map_err(token_error)?;
    tracing::info!(
        username = token.claims.sub.as_str(),
        ended,
        "logged out everywhere"
    );
    Ok(Json(json!({ "ended": ended })))
}

async fn me(token: AccessToken) -> Json<Value> {
    Json(json!({
        "username": token.claims.sub,
        "sid": token.claims.sid,
        "expires_at": token.claims.exp,
    }))
}
