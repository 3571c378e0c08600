//! `GET /api/csrf`: a CSRF token for clients that send neither
//! `Sec-Fetch-Site` nor `Origin` (see `cloakroom::csrf`). Browsers send
//! those headers, so the demo's own pages never need it.

use axum::Json;
use cloakroom::{Session, SessionError};
use serde_json::{Value, json};

/// `{"token": "..."}`: starts a session if there was none, so that the
/// token has a secret to be bound to.
pub(crate) async fn token(session: Session) -> Result<Json<Value>, SessionError> {
    Ok(Json(json!({ "token": session.csrf_token().await? })))
}
