//! [`CsrfLayer`]: the configuration, and the `Layer` that applies it.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use tower_layer::Layer;

use super::origin::check_exact_origin;
use super::service::{CsrfService, Probe};

/// Default of [`CsrfLayer::with_header_name`].
pub const DEFAULT_HEADER_NAME: &str = "x-csrf-token";
/// Default of [`CsrfLayer::with_form_field`].
pub const DEFAULT_FORM_FIELD: &str = "csrf_token";
/// Default of [`CsrfLayer::with_max_form_bytes`]: 64 KiB.
pub const DEFAULT_MAX_FORM_BYTES: usize = 64 * 1024;

/// A mistake in a [`CsrfLayer`]'s configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrfConfigError {
    /// A trusted origin is not in the exact form a browser sends
    /// (`https://host[:port]`, lowercase, no path or trailing slash, no
    /// wildcard, no default port).
    #[error("trusted origin {origin:?} is not an exact origin: {reason}")]
    InvalidOrigin {
        /// The origin given.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// CSRF protection for every unsafe method (S47, S48): Fetch-Metadata and
/// `Origin` checks (tower-http's [`csrf`](tower_http::csrf)), plus a
/// session-bound token where a browser sends neither header. See the
/// [module docs](super) for the rules.
///
/// Apply it *inside* the [`SessionLayer`](crate::SessionLayer), so that it
/// finds the request's [`Session`](crate::Session):
///
/// ```
/// use axum::{Router, routing::post};
/// use cloakroom::{SessionLayer, csrf::CsrfLayer, store::MemoryStore};
///
/// let csrf = CsrfLayer::new()
///     .with_trusted_origin("https://app.example.com")?
///     .with_bypass_path("/webhooks/payments");
/// let app: Router = Router::new()
///     .route("/api/login", post(|| async { "signed in" }))
///     .layer(csrf)
///     .layer(SessionLayer::new(MemoryStore::new()));
/// # Ok::<(), cloakroom::csrf::CsrfConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct CsrfLayer {
    pub(super) cfg: Arc<Config>,
    origin_check: tower_http::csrf::CsrfLayer,
}

/// What the service needs per request.
pub(super) struct Config {
    pub(super) trusted: Vec<String>,
    pub(super) bypass: HashSet<String>,
    pub(super) allow_same_site: bool,
    pub(super) header_name: HeaderName,
    pub(super) form_field: String,
    pub(super) max_form_bytes: usize,
    #[cfg(feature = "jwt")]
    pub(super) tokens: Option<crate::token::TokenSessions>,
}

impl Default for CsrfLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CsrfLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cfg = &self.cfg;
        f.debug_struct("CsrfLayer")
            .field("trusted_origins", &cfg.trusted)
            .field("bypass_paths", &cfg.bypass)
            .field("allow_same_site", &cfg.allow_same_site)
            .field("header_name", &cfg.header_name)
            .field("form_field", &cfg.form_field)
            .field("max_form_bytes", &cfg.max_form_bytes)
            .finish_non_exhaustive()
    }
}

impl CsrfLayer {
    /// The protection with its defaults: no trusted origins, no bypass,
    /// same-site requests refused, the token in `x-csrf-token` or the form
    /// field `csrf_token`, form bodies up to 64 KiB.
    pub fn new() -> Self {
        Self {
            cfg: Arc::new(Config {
                trusted: Vec::new(),
                bypass: HashSet::new(),
                allow_same_site: false,
                header_name: HeaderName::from_static(DEFAULT_HEADER_NAME),
                form_field: DEFAULT_FORM_FIELD.to_owned(),
                max_form_bytes: DEFAULT_MAX_FORM_BYTES,
                #[cfg(feature = "jwt")]
                tokens: None,
            }),
            origin_check: tower_http::csrf::CsrfLayer::new(),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        // Layers are configured before they are shared; a clone being
        // configured gets its own copy.
        match Arc::get_mut(&mut self.cfg) {
            Some(cfg) => f(cfg),
            None => {
                let old = &self.cfg;
                let mut cfg = Config {
                    trusted: old.trusted.clone(),
                    bypass: old.bypass.clone(),
                    allow_same_site: old.allow_same_site,
                    header_name: old.header_name.clone(),
                    form_field: old.form_field.clone(),
                    max_form_bytes: old.max_form_bytes,
                    #[cfg(feature = "jwt")]
                    tokens: old.tokens.clone(),
                };
                f(&mut cfg);
                self.cfg = Arc::new(cfg);
            }
        }
        self
    }

    /// Accepts unsafe requests whose `Origin` is exactly `origin` (another
    /// origin of yours, such as a single-page app's, that sends
    /// credentialed requests), whatever `Sec-Fetch-Site` says. Compared
    /// byte for byte; no patterns.
    ///
    /// # Errors
    ///
    /// [`CsrfConfigError::InvalidOrigin`] unless `origin` is written
    /// exactly as a browser sends it: `https://app.example.com`,
    /// `http://localhost:3000`; not `*`, `https://*.example.com`,
    /// `https://example.com/` or `https://example.com:443`.
    pub fn with_trusted_origin(self, origin: &str) -> Result<Self, CsrfConfigError> {
        let invalid = |reason: String| CsrfConfigError::InvalidOrigin {
            origin: origin.to_owned(),
            reason,
        };
        check_exact_origin(origin).map_err(|r| invalid(r.to_owned()))?;
        let origin_check = self
            .origin_check
            .clone()
            .add_trusted_origin(origin)
            .map_err(|e| invalid(e.to_string()))?;
        let mut layer = self.edit(|cfg| cfg.trusted.push(origin.to_owned()));
        layer.origin_check = origin_check;
        Ok(layer)
    }

    /// Skips every check for requests to exactly `path` (a webhook
    /// receiver that authenticates its callers by signature, say).
    /// Compared with the request path byte for byte: no prefixes, no
    /// patterns, no normalisation, so `/webhooks/payments/` and
    /// `/webhooks/payments-old` are still protected. A bypassed endpoint
    /// must protect itself: it is open to cross-site requests that carry
    /// the visitor's cookies.
    pub fn with_bypass_path(self, path: &str) -> Self {
        self.edit(|cfg| {
            cfg.bypass.insert(path.to_owned());
        })
    }

    /// Whether to accept `Sec-Fetch-Site: same-site` (a sibling subdomain,
    /// or the other scheme of this host). Default `false`: any subdomain
    /// that serves user content, or can be taken over, could otherwise
    /// forge requests. Prefer [`CsrfLayer::with_trusted_origin`] for each
    /// sibling you trust.
    pub fn with_allow_same_site(self, allow: bool) -> Self {
        self.edit(|cfg| cfg.allow_same_site = allow)
    }

    /// The request header that carries the token. Default `x-csrf-token`.
    pub fn with_header_name(self, name: HeaderName) -> Self {
        self.edit(|cfg| cfg.header_name = name)
    }

    /// The `application/x-www-form-urlencoded` field that carries the
    /// token. Default `csrf_token`. Matched as sent, so use a name a
    /// browser does not percent-encode (letters, digits, `_`, `-`, `.`).
    pub fn with_form_field(self, name: &str) -> Self {
        self.edit(|cfg| cfg.form_field = name.to_owned())
    }

    /// The largest form body read in search of the token; a larger one is
    /// answered 413 ([`CsrfRejection::BodyTooLarge`](super::CsrfRejection::BodyTooLarge)).
    /// Default 64 KiB. Bodies are read only when the token is required and
    /// not in the header.
    pub fn with_max_form_bytes(self, limit: usize) -> Self {
        self.edit(|cfg| cfg.max_form_bytes = limit)
    }

    /// Also protects [token sessions](crate::token) delivered by cookie:
    /// a request with neither `Sec-Fetch-Site` nor `Origin` that carries
    /// the access-token cookie must present a token from
    /// [`TokenSessions::csrf_token`](crate::token::TokenSessions::csrf_token)
    /// (a signed double-submit token bound to the token session).
    #[cfg(feature = "jwt")]
    pub fn with_token_sessions(self, tokens: crate::token::TokenSessions) -> Self {
        self.edit(|cfg| cfg.tokens = Some(tokens))
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = CsrfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CsrfService::new(inner, self.cfg.clone(), self.origin_check.layer(Probe))
    }
}
