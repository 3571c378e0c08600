//! Everything the session layer is configured with, shared by every request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::cookie::{CookieConfig, CookieConfigError};
use crate::expiry::{Clock, Expiry, SystemClock};
use crate::id::SessionId;
use crate::store::StoreError;

/// A function that builds the response for a store failure.
pub type FailureResponder = Arc<dyn Fn(&StoreError) -> http::Response<String> + Send + Sync>;

/// What a request gets when the store fails (§5 of the design).
///
/// Routes that never touch their session are never affected: the store is
/// only called when a handler uses the session.
#[derive(Clone)]
pub enum OnStoreFailure {
    /// Answer `503 Service Unavailable` with `Retry-After` (the default,
    /// 5 seconds). The handler's own response is replaced.
    ServiceUnavailable {
        /// Value of the `Retry-After` header.
        retry_after: Duration,
    },
    /// Carry on as an anonymous visitor, as if no cookie had been sent, and
    /// log a warning. Writes of this request are lost (and logged), and no
    /// cookie is set: the one presented may name a valid session. A logout
    /// or revocation that fails is still an error to the handler and is
    /// still answered with `503`: a sign-out never looks like it worked.
    ContinueAnonymous,
    /// Replace the response with the one this function builds.
    Respond(FailureResponder),
}

impl OnStoreFailure {
    /// A custom failure response (a JSON API will want one: the default
    /// body is plain text).
    ///
    /// ```
    /// use cloakroom::OnStoreFailure;
    ///
    /// let policy = OnStoreFailure::respond_with(|_err| {
    ///     http::Response::builder()
    ///         .status(503)
    ///         .header("content-type", "text/html")
    ///         .body("<h1>Back in a minute</h1>".to_owned())
    ///         .expect("a valid response")
    /// });
    /// ```
    pub fn respond_with<F>(f: F) -> Self
    where
        F: Fn(&StoreError) -> http::Response<String> + Send + Sync + 'static,
    {
        Self::Respond(Arc::new(f))
    }
}

impl Default for OnStoreFailure {
    fn default() -> Self {
        Self::ServiceUnavailable {
            retry_after: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for OnStoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServiceUnavailable { retry_after } => f
                .debug_struct("ServiceUnavailable")
                .field("retry_after", retry_after)
                .finish(),
            Self::ContinueAnonymous => f.write_str("ContinueAnonymous"),
            Self::Respond(_) => f.write_str("Respond(..)"),
        }
    }
}

/// A configuration the session layer refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cookie attributes are unusable; see the inner error.
    #[error(transparent)]
    Cookie(#[from] CookieConfigError),
    /// A timeout is zero, or the idle timeout exceeds the absolute one.
    #[error("invalid expiry: {0}")]
    Expiry(&'static str),
    /// The record size limit is above what records can be read back at
    /// ([`MAX_RECORD_BYTES`](crate::record::MAX_RECORD_BYTES), 1 MiB).
    #[error(
        "max_record_bytes of {0} is above the 1 MiB records can be read back at; keep large data in your database"
    )]
    RecordLimit(usize),
    /// Client-side revocation epochs would be kept in a store that may lose
    /// them ([`SessionStore::is_durable`](crate::store::SessionStore::is_durable) is `false`).
    #[error(
        "the revocation epoch store is not durable (it may lose or evict data); use a durable store such as SQLite or PostgreSQL, or accept the risk with ClientSessions::with_revocation_on_volatile_store"
    )]
    VolatileRevocationStore,
    /// A concurrent-session limit of zero, or one on client-side sessions
    /// (no store knows a user's sealed cookies).
    #[error(
        "invalid session limit: it must allow at least one session, and needs server-side sessions"
    )]
    SessionLimit,
}

pub(crate) type IdGenerator = Arc<dyn Fn() -> SessionId + Send + Sync>;

/// A layer's configuration: cookie, expiry, failure policy, limits. Set
/// through [`SessionLayer`](crate::SessionLayer)'s `with_*` setters.
#[derive(Clone)]
pub(crate) struct SessionConfig {
    pub(crate) cookie: CookieConfig,
    pub(crate) expiry: Expiry,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) new_id: IdGenerator,
    pub(crate) on_failure: OnStoreFailure,
    pub(crate) max_value_bytes: usize,
    pub(crate) max_record_bytes: usize,
    /// Names sessions in device listings.
    pub(crate) handle_key: crate::auth::HandleKey,
    /// The concurrent-session limit, if any (S26).
    pub(crate) session_limit: Option<crate::auth::SessionLimit>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie: CookieConfig::default(),
            expiry: Expiry::default(),
            clock: Arc::new(SystemClock),
            new_id: Arc::new(SessionId::generate),
            on_failure: OnStoreFailure::default(),
            max_value_bytes: crate::SessionLayer::DEFAULT_MAX_VALUE_BYTES,
            max_record_bytes: crate::SessionLayer::DEFAULT_MAX_RECORD_BYTES,
            handle_key: crate::auth::HandleKey::default(),
            session_limit: None,
        }
    }
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("cookie", &self.cookie)
            .field("expiry", &self.expiry)
            .field("on_failure", &self.on_failure)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("max_record_bytes", &self.max_record_bytes)
            .field("session_limit", &self.session_limit)
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    /// Checks the configuration (S10, the timeouts, the record limit).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.cookie.validate()?;
        if self.max_record_bytes > crate::record::MAX_RECORD_BYTES {
            // A larger record would be saved and then fail to decode on
            // every load: the session would silently be lost.
            return Err(ConfigError::RecordLimit(self.max_record_bytes));
        }
        if self.session_limit.is_some_and(|l| l.max() == 0) {
            return Err(ConfigError::SessionLimit);
        }
        let e = self.expiry;
        if e.idle_timeout().is_zero() || e.absolute_timeout().is_zero() {
            return Err(ConfigError::Expiry("timeouts must be longer than zero"));
        }
        if e.idle_timeout() > e.absolute_timeout() {
            return Err(ConfigError::Expiry(
                "the idle timeout exceeds the absolute timeout",
            ));
        }
        Ok(())
    }
}
