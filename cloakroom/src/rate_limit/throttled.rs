//! The refusal: [`Throttled`] and its one 429 response.

use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

/// The body of every throttled response, whatever the reason: a different
/// text per counter would tell a guesser which one it hit (and, for the
/// account counter, that the account is being guessed).
pub const THROTTLED_BODY: &str = "Too many attempts. Please wait and try again.\n";

/// Which counter refused an attempt: for logs and metrics only, never for
/// the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThrottleReason {
    /// This account from this client.
    AccountClient,
    /// This account, from all clients together.
    Account,
    /// This client, over all accounts.
    Client,
    /// The counters could not be read (the throttle fails closed).
    Unavailable,
    /// Too many invalid or unknown session cookies from this client (S51).
    Guessing,
}

/// An attempt refused for now: answer it with
/// [`response`](Self::response) (or, with feature `axum`, return it from a
/// handler).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many attempts; retry after {retry_after:?}")]
#[non_exhaustive]
pub struct Throttled {
    /// How long until the attempt would be admitted.
    pub retry_after: Duration,
    /// Which counter refused it.
    pub reason: ThrottleReason,
}

impl Throttled {
    pub(crate) fn new(retry_after: Duration, reason: ThrottleReason) -> Self {
        Self {
            retry_after,
            reason,
        }
    }

    /// `Retry-After` in whole seconds, rounded up, at least 1.
    #[must_use]
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        secs.max(1)
    }

    /// 429 Too Many Requests with `Retry-After` and [`THROTTLED_BODY`].
    #[must_use]
    pub fn response<B: From<String>>(&self) -> Response<B> {
        let mut res = Response::new(B::from(THROTTLED_BODY.to_owned()));
        *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        let headers = res.headers_mut();
        headers.insert(RETRY_AFTER, HeaderValue::from(self.retry_after_secs()));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Throttled {
    fn into_response(self) -> axum::response::Response {
        self.response::<axum::body::Body>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        let t = |ms| Throttled::new(Duration::from_millis(ms), ThrottleReason::Account);
        assert_eq!(t(0).retry_after_secs(), 1);
        assert_eq!(t(1000).retry_after_secs(), 1);
        assert_eq!(t(1001).retry_after_secs(), 2);
        let res: Response<String> = t(2500).response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[RETRY_AFTER], "3");
        assert_eq!(res.body(), THROTTLED_BODY);
    }
}
