//! The session-guessing hook (S51): invalid or unknown session cookies
//! counted per client.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::memory::MemoryCounters;
use super::throttled::{ThrottleReason, Throttled};
use super::{ClientIpSource, CounterRef, Rule, Scope, client_prefix, prefix_bytes};

/// What a [`SessionLayer`](crate::SessionLayer) does about a client that
/// presents many session cookies naming no session (malformed, forged, or
/// well-formed IDs the store does not know): the signature of someone
/// guessing IDs (S51). Set with
/// [`SessionLayer::with_guessing_limit`](crate::SessionLayer::with_guessing_limit).
///
/// Each such cookie counts for its client (an IPv4 address or an IPv6 /64,
/// found by [`with_client_ip`](Self::with_client_ip)). When a client
/// reaches the threshold within the window, one `tracing` warning with
/// `event = "session_guessing"` and the client's address is logged (never
/// a cookie value). Only with
/// [`with_too_many_requests`](Self::with_too_many_requests) are that
/// client's requests that carry a `Cookie` header answered with 429 and
/// `Retry-After` until the window ends; by default the hook only reports.
///
/// A cookie counts when the request reads its session (sessions are lazy:
/// a route that never touches the session never looks at the cookie).
/// Requests without a known peer address are not counted.
///
/// ```
/// use cloakroom::SessionLayer;
/// use cloakroom::rate_limit::GuessingLimit;
/// use cloakroom::store::MemoryStore;
/// use std::time::Duration;
///
/// let layer = SessionLayer::new(MemoryStore::new()).with_guessing_limit(
///     GuessingLimit::new()
///         .with_threshold(50, Duration::from_secs(600))
///         .with_too_many_requests(true),
/// );
/// ```
#[derive(Debug, Clone)]
pub struct GuessingLimit {
    rule: Rule,
    respond: bool,
    source: ClientIpSource,
    counters: MemoryCounters,
}

impl Default for GuessingLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl GuessingLimit {
    /// Default threshold: 20 invalid cookies per client per window.
    pub const DEFAULT_THRESHOLD: u32 = 20;
    /// Default window: 10 minutes.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(600);

    /// Reports (no 429) at the default threshold and window, peer
    /// addresses only, at most [`MemoryCounters::DEFAULT_MAX_KEYS`] clients
    /// tracked.
    #[must_use]
    pub fn new() -> Self {
        Self {
            rule: Rule::cap(Self::DEFAULT_THRESHOLD, Self::DEFAULT_WINDOW),
            respond: false,
            source: ClientIpSource::peer(),
            counters: MemoryCounters::new(),
        }
    }

    /// Reports (and refuses, if enabled) a client once it has presented
    /// `threshold` invalid cookies within `window`.
    #[must_use]
    pub fn with_threshold(mut self, threshold: u32, window: Duration) -> Self {
        self.rule = Rule::cap(threshold.max(1), window);
        self
    }

    /// Also answers 429 to a reported client's requests that carry
    /// cookies, until its window ends. Off by default: clients behind one
    /// NAT share an address, and a 429 would shut out their valid sessions
    /// too.
    #[must_use]
    pub fn with_too_many_requests(mut self, enabled: bool) -> Self {
        self.respond = enabled;
        self
    }

    /// Finds the client's address with `source` (default: the peer).
    #[must_use]
    pub fn with_client_ip(mut self, source: ClientIpSource) -> Self {
        self.source = source;
        self
    }

    /// Keeps the per-client counts in `counters` (their bound and clock).
    #[must_use]
    pub fn with_counters(mut self, counters: MemoryCounters) -> Self {
        self.counters = counters;
        self
    }

    /// The client of a request.
    pub(crate) fn client<B>(&self, req: &http::Request<B>) -> Option<IpAddr> {
        self.source.of_request(req)
    }

    fn counter(&self, client: IpAddr) -> CounterRef {
        let mut h = Sha256::new();
        h.update(b"guess");
        h.update(prefix_bytes(client_prefix(client)));
        CounterRef {
            scope: Scope::Client,
            hash: h.finalize().into(),
            rule: self.rule,
        }
    }

    /// The refusal for a request from `client`, if it is to be refused
    /// before it reaches the session.
    pub(crate) fn refusal(&self, client: IpAddr, headers: &HeaderMap) -> Option<Throttled> {
        if !self.respond || !headers.contains_key(http::header::COOKIE) {
            return None;
        }
        match self.counters.wait_one(&self.counter(client)) {
            0 => None,
            ms => Some(Throttled::new(
                Duration::from_millis(ms),
                ThrottleReason::Guessing,
            )),
        }
    }

    /// Counts one invalid cookie from `client`; reports the client when it
    /// reaches the threshold.
    pub(crate) fn record(&self, client: IpAddr) {
        metrics::counter!("cloakroom_invalid_cookies_by_client_total").increment(1);
        let n = self.counters.fail_one(&self.counter(client));
        if n == self.rule.free() {
            tracing::warn!(
                event = "session_guessing",
                client = %client_prefix(client),
                invalid = n,
                window_secs = self.rule.window().as_secs(),
                "many invalid session cookies from one client"
            );
            metrics::counter!("cloakroom_session_guessing_total").increment(1);
        }
    }
}
