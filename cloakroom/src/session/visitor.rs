//! What the request brought: its cookies (parsed on first use), user agent
//! and address.

use std::net::IpAddr;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue};

use crate::cookie::RawCookies;
use crate::id::SessionId;

/// What the request's session cookie(s) held.
pub(crate) enum Presented {
    /// No session cookie.
    Absent,
    /// A well-formed ID, not yet checked against the store.
    Id(SessionId),
    /// A sealed value, not yet opened.
    Sealed(String),
    /// A cookie was there but is unusable (malformed or duplicated).
    Rejected,
}

/// The request, as far as its session is concerned.
pub(crate) struct Visitor {
    /// The request's `Cookie` headers, parsed on first use: a request that
    /// never touches its session pays nothing for them.
    cookies: RawCookies,
    /// What the cookies held, and (sealed) how many chunk cookies the
    /// request carried, so that a smaller response can clear the rest.
    presented: OnceLock<(Presented, usize)>,
    /// The raw `User-Agent`, turned into text only at sign-in.
    pub(crate) user_agent: Option<HeaderValue>,
    pub(crate) ip: Option<IpAddr>,
}

impl Visitor {
    pub(crate) fn of(headers: &HeaderMap, ip: Option<IpAddr>) -> Self {
        Self {
            cookies: RawCookies::of(headers),
            presented: OnceLock::new(),
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
            ip,
        }
    }

    /// What the cookies hold, read by `parse` on the first call.
    pub(crate) fn presented(
        &self,
        parse: impl FnOnce(&[HeaderValue]) -> (Presented, usize),
    ) -> &(Presented, usize) {
        self.presented.get_or_init(|| parse(self.cookies.values()))
    }

    /// The user agent as text for the device listing, if it is text.
    pub(crate) fn user_agent_text(&self) -> Option<String> {
        self.user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(|s| crate::record::truncate_utf8(s, 512).to_owned())
    }
}

/// Counts and logs a rejected session cookie (never its value).
pub(crate) fn cookie_rejected(kind: &'static str, reason: &'static str) -> Presented {
    metrics::counter!("cloakroom_invalid_cookies_total", "reason" => kind).increment(1);
    tracing::warn!(event = "invalid", reason, "session cookie rejected");
    Presented::Rejected
}
