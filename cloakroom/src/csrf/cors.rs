//! The CORS recipe for a single-page app on another origin that sends the
//! session cookie: tower-http's [`CorsLayer`], configured so that browsers
//! accept it and nobody else is let in.

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::layer::DEFAULT_HEADER_NAME;
use super::origin::check_exact_origin;

/// Why [`credentialed_cors`] refused its origins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorsConfigError {
    /// No origin was given.
    #[error("a credentialed CORS policy needs at least one allowed origin")]
    NoOrigins,
    /// `*` with credentials: browsers refuse it, and reflecting any origin
    /// instead would let every site read your users' data.
    #[error("a wildcard origin cannot be combined with credentials; list each origin")]
    Wildcard,
    /// An origin is not in the exact form a browser sends.
    #[error("allowed origin {origin:?} is not an exact origin: {reason}")]
    InvalidOrigin {
        /// The origin given.
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A [`CorsLayer`] for credentialed requests (cookies) from exactly
/// `origins`: `Access-Control-Allow-Credentials: true`, the request's
/// origin echoed only when it is listed, `Vary: Origin` and the preflight
/// headers added by tower-http; methods `GET, POST, PUT, PATCH, DELETE`;
/// request headers `content-type` and `x-csrf-token`. Adjust methods and
/// headers on the result with tower-http's own setters, keeping them
/// explicit lists (tower-http panics on `Any` with credentials).
///
/// ```
/// let cors = cloakroom::csrf::credentialed_cors(&["https://app.example.com"])?;
/// assert!(cloakroom::csrf::credentialed_cors(&["*"]).is_err());
/// # Ok::<(), cloakroom::csrf::CorsConfigError>(())
/// ```
///
/// The same origins usually belong in
/// [`CsrfLayer::with_trusted_origin`](super::CsrfLayer::with_trusted_origin)
/// too: CORS decides who may *read* responses, the CSRF layer who may
/// *send* unsafe requests. Put the `CorsLayer` outside the `SessionLayer`,
/// so that preflights are answered without touching the session.
///
/// # Errors
///
/// [`CorsConfigError::NoOrigins`] for an empty list,
/// [`CorsConfigError::Wildcard`] for `*` (or any origin containing `*`),
/// [`CorsConfigError::InvalidOrigin`] for anything not written exactly as a
/// browser sends it (`https://app.example.com`, no trailing slash, no
/// default port, lowercase; `null` is refused too, since sandboxed frames
/// and `file:` pages all send it).
pub fn credentialed_cors(origins: &[&str]) -> Result<CorsLayer, CorsConfigError> {
    if origins.is_empty() {
        return Err(CorsConfigError::NoOrigins);
    }
    let mut allowed = Vec::with_capacity(origins.len());
    for &origin in origins {
        if origin.contains('*') {
            return Err(CorsConfigError::Wildcard);
        }
        check_exact_origin(origin).map_err(|reason| CorsConfigError::InvalidOrigin {
            origin: origin.to_owned(),
            reason,
        })?;
        let value = HeaderValue::from_str(origin).map_err(|_| CorsConfigError::InvalidOrigin {
            origin: origin.to_owned(),
            reason: "not a valid header value",
        })?;
        allowed.push(value);
    }
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            http::header::CONTENT_TYPE,
            HeaderName::from_static(DEFAULT_HEADER_NAME),
        ]))
}
