//! [`CsrfRejection`]: why the layer refused a request, and the response
//! that says so.

use std::fmt;

use http::{HeaderValue, Response, StatusCode};

/// Why [`CsrfLayer`](super::CsrfLayer) refused a request. The rejection
/// response carries it in its extensions, and a `tracing` warning
/// (`event = "csrf_rejected"`) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsrfRejection {
    /// `Sec-Fetch-Site: cross-site`: the browser says another site sent
    /// the request.
    CrossOrigin,
    /// `Sec-Fetch-Site: same-site`: a sibling subdomain (or the other
    /// scheme of this host) sent it. Refused unless
    /// [`CsrfLayer::with_allow_same_site`](super::CsrfLayer::with_allow_same_site):
    /// a subdomain that serves user content or can be taken over is an
    /// attacker's foothold.
    SameSiteSubdomain,
    /// No `Sec-Fetch-Site`, and an `Origin` that is neither this host nor a
    /// trusted origin (an older browser on another site, or `Origin: null`).
    OriginMismatch,
    /// Neither `Sec-Fetch-Site` nor `Origin`, a session cookie, and no
    /// token in the header or the form field.
    MissingToken,
    /// A token was given but is not one of this session's (another
    /// session's, one from before sign-in, altered, or given twice).
    BadToken,
    /// A token had to be looked for in a form body larger than the
    /// layer's limit (answered 413).
    BodyTooLarge,
    /// The form body could not be read (answered 400).
    BodyUnreadable,
    /// The session could not be loaded to check the token (answered 503;
    /// the session layer's failure policy may replace the response).
    SessionUnavailable,
    /// The layer found no [`Session`](crate::Session) in the request: it
    /// must be applied inside the [`SessionLayer`](crate::SessionLayer).
    /// Refused, since no token can be checked.
    NoSessionLayer,
}

impl CsrfRejection {
    /// The status of the rejection response: 403 for a refused request,
    /// 413, 400 or 503 when the check itself could not be made.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyUnreadable => StatusCode::BAD_REQUEST,
            Self::SessionUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// A short label for logs and metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrossOrigin => "cross_origin",
            Self::SameSiteSubdomain => "same_site_subdomain",
            Self::OriginMismatch => "origin_mismatch",
            Self::MissingToken => "missing_token",
            Self::BadToken => "bad_token",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyUnreadable => "body_unreadable",
            Self::SessionUnavailable => "session_unavailable",
            Self::NoSessionLayer => "no_session_layer",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::CrossOrigin => "Forbidden: cross-site request.\n",
            Self::SameSiteSubdomain => "Forbidden: request from another subdomain.\n",
            Self::OriginMismatch => "Forbidden: request from another origin.\n",
            Self::MissingToken => "Forbidden: CSRF token missing.\n",
            Self::BadToken => "Forbidden: CSRF token invalid.\n",
            Self::BodyTooLarge => "Request body too large.\n",
            Self::BodyUnreadable => "Request body could not be read.\n",
            Self::SessionUnavailable => "The session is unavailable. Please retry shortly.\n",
            Self::NoSessionLayer => "Forbidden: CSRF protection is misconfigured.\n",
        }
    }

    /// The plain-text rejection response, with `self` in its extensions.
    pub(crate) fn response<B: From<String>>(self) -> Response<B> {
        tracing::warn!(
            event = "csrf_rejected",
            reason = self.as_str(),
            "request refused"
        );
        metrics::counter!("cloakroom_csrf_rejections_total", "reason" => self.as_str())
            .increment(1);
        let mut res = Response::new(B::from(self.message().to_owned()));
        *res.status_mut() = self.status();
        let headers = res.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        res.extensions_mut().insert(self);
        res
    }
}

impl fmt::Display for CsrfRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message().trim_end())
    }
}

impl std::error::Error for CsrfRejection {}
