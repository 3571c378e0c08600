//! axum extractors: [`Session`] and typed session data ([`SessionData`]).
//!
//! Both need [`SessionLayer`](crate::SessionLayer) on the router; without it
//! they reject with `500 Internal Server Error` and a message saying so.

use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::session::{Session, SessionError};
use crate::store::StoreError;
use crate::value::SessionValue;

/// Rejection when the [`SessionLayer`](crate::SessionLayer) is missing.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no session: add cloakroom::SessionLayer to the router")]
pub struct MissingSessionLayer;

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// Extracts the request's [`Session`].
///
/// Rejects with `500` if [`SessionLayer`](crate::SessionLayer) is missing.
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(MissingSessionLayer)
    }
}

/// Handlers can return `Result<_, SessionError>` and use `?`.
///
/// A store failure becomes `503` (the layer replaces it with its configured
/// failure response anyway); a value of the wrong type `500`; an oversized
/// value or record `413`; a bad key, user or too deeply nested value `400`. Messages never include session contents.
impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        let status = match &self {
            SessionError::Store(e) if matches!(**e, StoreError::Unavailable(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SessionError::ValueTooLarge { .. }
            | SessionError::CookieTooLarge { .. }
            | SessionError::RecordTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            SessionError::InvalidKey
            | SessionError::InvalidUser
            | SessionError::ValueTooDeep { .. } => StatusCode::BAD_REQUEST,
            SessionError::DeviceNotFound => StatusCode::NOT_FOUND,
            SessionError::NotSignedIn => StatusCode::UNAUTHORIZED,
            SessionError::SessionLimitReached { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, self.to_string()).into_response()
    }
}

/// Extracts a whole [`SessionValue`] struct (its `Default` if the session
/// has none) and puts it back into the session with
/// [`SessionData::write_back`].
///
/// Rejects with the [`SessionError`] response when the stored value cannot
/// be read as `T` (`500`) or the store fails (`503`), and with `500` if the
/// layer is missing.
///
/// ```
/// use axum::{Router, routing::post};
/// use cloakroom::{SessionData, SessionLayer, SessionValue, store::MemoryStore};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Cart { items: Vec<u32> }
/// impl SessionValue for Cart { const KEY: &'static str = "cart"; }
///
/// async fn add(mut cart: SessionData<Cart>) -> Result<String, cloakroom::SessionError> {
///     cart.items.push(42);
///     cart.write_back().await?;
///     Ok(format!("{} items", cart.items.len()))
/// }
///
/// let app: Router = Router::new()
///     .route("/cart", post(add))
///     .layer(SessionLayer::new(MemoryStore::new()));
/// ```
#[derive(Debug)]
pub struct SessionData<T: SessionValue> {
    session: Session,
    value: T,
}

impl<T: SessionValue> SessionData<T> {
    /// Puts the (possibly modified) value back into the session, as
    /// [`Session::insert`] does: it is saved with the session's other
    /// changes when the response is ready.
    ///
    /// # Errors
    ///
    /// As [`Session::insert`].
    pub async fn write_back(&self) -> Result<(), SessionError> {
        self.session.insert(T::KEY, &self.value).await
    }

    /// Removes the value from the session.
    ///
    /// # Errors
    ///
    /// As [`Session::remove`].
    pub async fn remove(self) -> Result<(), SessionError> {
        self.session.remove(T::KEY).await
    }

    /// The value.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The session it came from.
    pub fn session(&self) -> &Session {
        &self.session
    }
}

impl<T: SessionValue> Deref for SessionData<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: SessionValue> std::ops::DerefMut for SessionData<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<S: Send + Sync, T: SessionValue> FromRequestParts<S> for SessionData<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let value = session
            .get::<T>(T::KEY)
            .await
            .map_err(IntoResponse::into_response)?
            .unwrap_or_default();
        Ok(Self { session, value })
    }
}
