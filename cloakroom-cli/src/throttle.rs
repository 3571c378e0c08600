//! Sign-in and registration throttling for the demo (S53), with the
//! library's in-memory counters: one demo process, one set of counters.
//!
//! * `/api/login` (and token issue): the library's login policy, per
//!   account+client, account and client. Unknown usernames are counted
//!   exactly like wrong passwords.
//! * `/api/register`: every attempt counts per client (20 an hour): its
//!   409 "username taken" says which names exist, so it must not be a free
//!   oracle for the login throttle's accounts.
//!
//! The client is the TCP peer; the demo trusts no `X-Forwarded-For`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use cloakroom::crypto::{Keyring, MasterKey};
use cloakroom::rate_limit::{Attempt, LoginThrottle, Policy, Throttled};

use crate::DemoError;
use crate::api::ApiError;

/// The demo's two throttles.
#[derive(Debug, Clone)]
pub(crate) struct Throttles {
    login: LoginThrottle,
    register: LoginThrottle,
}

impl Throttles {
    /// In-memory throttles under a fresh random key (counters do not
    /// outlive the process anyway).
    pub(crate) fn in_memory() -> Result<Self, DemoError> {
        let key = MasterKey::try_generate().map_err(|e| DemoError::Random(e.to_string()))?;
        let keyring = Keyring::from(key);
        Ok(Self {
            login: LoginThrottle::memory(&keyring, Policy::login()),
            register: LoginThrottle::memory(&keyring, Policy::registration()),
        })
    }

    /// Refuses a sign-in attempt that must wait.
    pub(crate) async fn check_login(&self, attempt: &Attempt<'_>) -> Result<(), ApiError> {
        self.login.check(attempt).await.map_err(ApiError::from)
    }

    /// Counts a failed sign-in (wrong password or no such user alike).
    pub(crate) async fn login_failed(&self, attempt: &Attempt<'_>) {
        if let Err(e) = self.login.record_failure(attempt).await {
            tracing::error!(error = %e, "could not count a failed sign-in");
        }
    }

    /// Forgets this client's failures on this account.
    pub(crate) async fn login_succeeded(&self, attempt: &Attempt<'_>) {
        if let Err(e) = self.login.record_success(attempt).await {
            tracing::error!(error = %e, "could not reset the sign-in counter");
        }
    }

    /// Admits and counts one registration attempt from `client`.
    pub(crate) async fn register(&self, client: IpAddr) -> Result<(), ApiError> {
        let attempt = Attempt::new("", client);
        self.register.check(&attempt).await?;
        if let Err(e) = self.register.record_failure(&attempt).await {
            tracing::error!(error = %e, "could not count a registration");
        }
        Ok(())
    }
}

impl From<Throttled> for ApiError {
    fn from(t: Throttled) -> Self {
        ApiError::throttled(t.retry_after_secs())
    }
}

/// The request's client address: the TCP peer, or (a server that records
/// none, as in tests) the unspecified address, shared by all such requests.
pub(crate) struct ClientAddr(pub(crate) IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(Self(peer))
    }
}
