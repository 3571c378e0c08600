//! The demo's account routes: "your devices", ending them, changing the
//! password and re-authenticating (issue 11: S24-S27).

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cloakroom::auth::DeviceSession;
use cloakroom::{Session, SessionError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, AppState, JsonBody, check_credentials, check_password};

/// How recent a sign-in `POST /api/password` needs (S27).
pub const FRESH_AUTH_MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// The signed-in user, or 401.
async fn user_of(session: &Session) -> ApiResult<String> {
    session
        .user()
        .await?
        .ok_or_else(|| ApiError::unauthorized("not signed in"))
}

fn device_json(d: &DeviceSession) -> Value {
    json!({
        "handle": d.handle,
        "current": d.current,
        "kind": d.kind.as_str(),
        "created_at": d.created_at.as_millis() / 1000,
        "last_seen_at": d.last_seen.as_millis() / 1000,
        "ip": d.ip,
        "user_agent": d.user_agent,
        "remember_me": d.remember_me,
    })
}

/// `GET /api/sessions`: the signed-in user's devices, this one first.
/// Cookie mode lists only this device: no server keeps the others.
pub(crate) async fn list(session: Session) -> ApiResult<Json<Vec<Value>>> {
    user_of(&session).await?;
    match session.devices().await {
        Ok(devices) => Ok(Json(devices.iter().map(device_json).collect())),
        Err(SessionError::DevicesUnavailable) => {
            let info = session.info().await?;
            Ok(Json(
                info.into_iter()
                    .map(|i| {
                        json!({
                            "handle": i.handle,
                            "current": true,
                            "kind": "sealed_cookie",
                            "created_at": i.created_at.as_millis() / 1000,
                            "last_seen_at": i.last_seen.as_millis() / 1000,
                            "ip": Value::Null,
                            "user_agent": Value::Null,
                            "remember_me": i.remember_me,
                        })
                    })
                    .collect(),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /api/sessions/{handle}`: ends one device (404 for a handle
/// that is not one of this user's).
pub(crate) async fn revoke(
    session: Session,
    handle: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let Path(handle) = handle?;
    user_of(&session).await?;
    if handle.len() > 64 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such device"));
    }
    session.revoke_device(&handle).await?;
    session
        .flash()
        .success("The device was signed out.")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/sessions/revoke-others`: ends every other device.
pub(crate) async fn revoke_others(session: Session) -> ApiResult<Json<Value>> {
    user_of(&session).await?;
    let ended = session.revoke_other_devices().await?;
    session
        .flash()
        .success("Your other devices were signed out.")
        .await?;
    Ok(Json(json!({ "ended": ended })))
}

#[derive(Deserialize)]
pub(crate) struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// `POST /api/password`: behind the fresh-auth guard; checks the current
/// password, stores the new one and ends every other session
/// (`on_credentials_changed`, which also gives this one a new ID).
pub(crate) async fn change_password(
    State(state): State<AppState>,
    crate::throttle::ClientAddr(client): crate::throttle::ClientAddr,
    session: Session,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<StatusCode> {
    let user = user_of(&session).await?;
    check_credentials(&state, client, &user, body.current_password).await?;
    check_password(&body.new_password)?;
    let hash = state.passwords.hash(body.new_password).await?;
    if !state.users.set_password(&user, &hash).await? {
        return Err(ApiError::unauthorized("not signed in"));
    }
    session.on_credentials_changed().await?;
    tracing::info!(
        username = user.as_str(),
        "password changed; other sessions ended"
    );
    session
        .flash()
        .success("Password changed; your other devices were signed out.")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct ReauthBody {
    password: String,
}

/// `POST /api/reauth`: proves the password again for the fresh-auth
/// guard (S27); rotates the session ID.
pub(crate) async fn reauth(
    State(state): State<AppState>,
    crate::throttle::ClientAddr(client): crate::throttle::ClientAddr,
    session: Session,
    JsonBody(body): JsonBody<ReauthBody>,
) -> ApiResult<StatusCode> {
    let user = user_of(&session).await?;
    check_credentials(&state, client, &user, body.password).await?;
    session.reauthenticate().await?;
    Ok(StatusCode::NO_CONTENT)
}
