//! The demo's HTTP handlers and their JSON error type.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use cloakroom::{LoginOptions, Session, SessionError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::log_safe::LogPseudonyms;
use crate::password::{PasswordError, PasswordHasherPool};
use crate::throttle::{ClientAddr, Throttles};
use crate::users::{UserStore, UserStoreError};

/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Shortest password, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 8;
/// Longest password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 256;
/// Longest session data key, in characters.
pub const MAX_DATA_KEY_CHARS: usize = 128;
/// Longest session data key, in bytes of UTF-8 (the library's limit).
pub const MAX_DATA_KEY_BYTES: usize = 256;

const INVALID_CREDENTIALS: &str = "invalid username or password";
/// The body of every throttled answer, whichever counter refused.
pub const TOO_MANY_ATTEMPTS: &str = "too many attempts; please wait and try again";

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) users: UserStore,
    pub(crate) passwords: PasswordHasherPool,
    /// Typed text that is not known to be a username is logged as this
    /// keyed pseudonym, never raw (defect 14).
    pub(crate) pseudonyms: LogPseudonyms,
    /// Sign-in and registration throttling (S53).
    pub(crate) throttles: Throttles,
}

/// An error answered as `{"error": "..."}` with a status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The response status.
    pub status: StatusCode,
    /// The message sent to the client.
    pub message: String,
    /// `Retry-After` in seconds (throttled answers only).
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 with `Retry-After`: one message for every throttling reason.
    pub(crate) fn throttled(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, TOO_MANY_ATTEMPTS)
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// A 500 whose details are logged, not sent.
    fn internal(what: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {what}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        res
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match &e {
            SessionError::Store(_) => {
                tracing::error!(error = %e, "session store failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the session store is unavailable; please retry shortly",
                )
            }
            SessionError::ValueTooLarge { size, limit, .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the value takes {size} bytes stored, over the {limit}-byte limit"),
            ),
            // The request asked for more than a session holds: the
            // client's doing, not an outage.
            SessionError::RecordTooLarge { .. } | SessionError::CookieTooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            }
            SessionError::InvalidKey | SessionError::ValueTooDeep { .. } => {
                Self::bad_request(e.to_string())
            }
            SessionError::DeviceNotFound => Self::new(StatusCode::NOT_FOUND, "no such device"),
            SessionError::NotSignedIn => Self::unauthorized("not signed in"),
            SessionError::SessionLimitReached { .. } => {
                Self::new(StatusCode::CONFLICT, e.to_string())
            }
            _ => Self::internal("session data could not be read or written", &e),
        }
    }
}

impl From<UserStoreError> for ApiError {
    fn from(e: UserStoreError) -> Self {
        match e {
            UserStoreError::Taken => Self::new(StatusCode::CONFLICT, "username already taken"),
            e => Self::internal("the user database failed", &e),
        }
    }
}

impl From<PasswordError> for ApiError {
    fn from(e: PasswordError) -> Self {
        Self::internal("password hashing failed", &e)
    }
}

/// `Json<T>` whose rejections (wrong content type: 415, malformed: 400,
/// wrong shape: 422, too large: 413) are answered as JSON [`ApiError`]s.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Self(v))
            .map_err(ApiError::from)
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// `GET /`: the demo page.
pub(crate) async fn home() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(include_str!("page.html")),
    )
}

/// `GET /healthz`: never touches the session.
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Any unknown route.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

#[derive(Deserialize)]
pub(crate) struct RegisterBody {
    username: String,
    password: String,
}

#[derive(Deserialize)]
pub(crate) struct LoginBody {
    pub(crate) username: String,
    pub(crate) password: String,
    #[serde(default)]
    remember_me: bool,
}

fn check_username(username: &str) -> Result<(), ApiError> {
    let ok_chars = username
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if username.is_empty() || username.len() > MAX_USERNAME_CHARS || !ok_chars {
        return Err(ApiError::bad_request(format!(
            "username must be 1 to {MAX_USERNAME_CHARS} characters of A-Z, a-z, 0-9, '_', '.' and '-'"
        )));
    }
    Ok(())
}

pub(crate) fn check_password(password: &str) -> Result<(), ApiError> {
    if !(MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&password.len()) {
        return Err(ApiError::bad_request(format!(
            "password must be {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes long"
        )));
    }
    Ok(())
}

/// `POST /api/register`.
pub(crate) async fn register(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    JsonBody(body): JsonBody<RegisterBody>,
) -> ApiResult<impl IntoResponse> {
    check_username(&body.username)?;
    check_password(&body.password)?;
    // Every attempt counts, taken or not: the 409 reveals which usernames
    // exist (S53).
    state.throttles.register(client).await?;
    let hash = state.passwords.hash(body.password).await?;
    state.users.create(&body.username, &hash).await?;
    // Checked above: 1 to 64 characters of [A-Za-z0-9_.-], and now a
    // registered name. Recorded as a string, so it is quoted and escaped.
    tracing::info!(username = body.username.as_str(), "user registered");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "username": body.username })),
    ))
}

/// Checks a username and password, answering 401 (the same for an unknown
/// user and a wrong password) when they do not match, and 429 when the
/// throttle says this attempt must wait (S53).
pub(crate) async fn check_credentials(
    state: &AppState,
    client: std::net::IpAddr,
    username: &str,
    password: String,
) -> ApiResult<()> {
    // Counted alike whether or not the user exists: the throttle never
    // asks.
    let attempt = cloakroom::rate_limit::Attempt::new(username, client);
    state.throttles.check_login(&attempt).await?;
    let result = verify_credentials(state, username, password).await;
    match &result {
        Ok(()) => state.throttles.login_succeeded(&attempt).await,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            state.throttles.login_failed(&attempt).await;
        }
        Err(_) => {}
    }
    result
}

async fn verify_credentials(state: &AppState, username: &str, password: String) -> ApiResult<()> {
    // Over-long passwords are refused before hashing (no account can have
    // one); everything else costs one Argon2 verification, whether or not
    // the user exists, so timing does not reveal registered usernames.
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::unauthorized(INVALID_CREDENTIALS));
    }
    let stored = if check_username(username).is_ok() {
        state.users.password_hash(username).await?
    } else {
        None
    };
    let known_user = stored.is_some();
    if !state.passwords.verify(stored, password).await? {
        // The name as typed may hold a newline (a forged log line) or a
        // password typed into the wrong field: only a registered name is
        // logged as is, anything else as its keyed pseudonym.
        if known_user {
            tracing::info!(username, "sign-in refused: wrong password");
        } else {
            tracing::info!(
                username_pseudonym = state.pseudonyms.of(username),
                "sign-in refused: no such user"
            );
        }
        return Err(ApiError::unauthorized(INVALID_CREDENTIALS));
    }
    Ok(())
}

/// `POST /api/login`.
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: Session,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Json<Value>> {
    check_credentials(&state, client, &body.username, body.password).await?;
    session
        .login_with(
            body.username.clone(),
            LoginOptions::remember_me(body.remember_me),
        )
        .await?;
    tracing::info!(
        username = body.username.as_str(),
        remember_me = body.remember_me,
        "signed in"
    );
    session
        .flash()
        .success(format!("Signed in as {}.", body.username))
        .await?;
    Ok(Json(json!({ "username": body.username })))
}

/// `POST /api/logout`.
pub(crate) async fn logout(session: Session) -> ApiResult<StatusCode> {
    session.logout().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/logout-everywhere`: signs the user out on every device
/// (server mode: deletes all their sessions; cookie mode: bumps their
/// revocation epoch).
pub(crate) async fn logout_everywhere(session: Session) -> ApiResult<StatusCode> {
    if session.user().await?.is_none() {
        return Err(ApiError::unauthorized("not signed in"));
    }
    session.logout_everywhere().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/me`.
pub(crate) async fn me(session: Session) -> ApiResult<Json<Value>> {
    let info = session.info().await?;
    let Some((info, username)) = info.and_then(|i| i.user.clone().map(|u| (i, u))) else {
        return Err(ApiError::unauthorized("not signed in"));
    };
    Ok(Json(json!({
        "username": username,
        "session": {
            "created_at": info.created_at.to_rfc3339(),
            "idle_expires_at": info.idle_expires_at.to_rfc3339(),
            "absolute_expires_at": info.absolute_expires_at.to_rfc3339(),
        }
    })))
}

/// `GET /api/data`: every value of the session, anonymous or not.
pub(crate) async fn get_data(session: Session) -> ApiResult<Json<Map<String, Value>>> {
    let mut out = Map::new();
    for key in session.keys().await? {
        if let Some(value) = session.get::<Value>(&key).await? {
            out.insert(key, value);
        }
    }
    Ok(Json(out))
}

fn check_key(key: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = key?;
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_DATA_KEY_CHARS {
        return Err(ApiError::bad_request(format!(
            "key must be 1 to {MAX_DATA_KEY_CHARS} characters long"
        )));
    }
    if key.len() > MAX_DATA_KEY_BYTES {
        return Err(ApiError::bad_request(format!(
            "key must be at most {MAX_DATA_KEY_BYTES} bytes of UTF-8"
        )));
    }
    Ok(key)
}

/// `PUT /api/data/{key}` with any JSON value.
pub(crate) async fn put_data(
    session: Session,
    key: Result<Path<String>, PathRejection>,
    JsonBody(value): JsonBody<Value>,
) -> ApiResult<StatusCode> {
    let key = check_key(key)?;
    session.insert(&key, &value).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/data/{key}`.
pub(crate) async fn delete_data(
    session: Session,
    key: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let key = check_key(key)?;
    session.remove(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["a", "alice", "A.b-c_9", &"x".repeat(64)] {
            assert!(check_username(ok).is_ok(), "{ok}");
        }
        for bad in ["", "al ice", "al/ice", "älice", "a@b", &"x".repeat(65)] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"p".repeat(256)).is_ok());
        assert!(check_password("1234567").is_err());
        assert!(check_password(&"p".repeat(257)).is_err());
        // Bytes, not characters: 4 two-byte characters are 8 bytes.
        assert!(check_password("éééé").is_ok());
    }
}
