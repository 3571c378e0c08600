//! How tokens travel: `Authorization: Bearer` (RFC 6750) or cookies (the
//! access token in an HttpOnly `__Host-` cookie, the refresh token in a
//! `__Secure-` cookie scoped to the refresh path, `SameSite=Strict`).

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

use super::error::Rejection;
use super::sessions::{TokenPair, TokenSessions};
use crate::cookie::{CookieLookup, find_cookie};

/// The access-token cookie.
pub const ACCESS_COOKIE: &str = "__Host-at";
/// The refresh-token cookie.
pub const REFRESH_COOKIE: &str = "__Secure-rt";

/// The access token a request presents: the `Authorization: Bearer`
/// credentials, else the [`ACCESS_COOKIE`]. `Ok(None)` when there is
/// neither (or another authorization scheme).
///
/// # Errors
///
/// [`Rejection::Malformed`] for several `Authorization` headers, a Bearer
/// credential that is not a token68, or a duplicated or malformed access
/// cookie.
pub fn presented_access_token(headers: &HeaderMap) -> Result<Option<&str>, Rejection> {
    let mut auth = headers.get_all(AUTHORIZATION).iter();
    if let Some(value) = auth.next() {
        if auth.next().is_some() {
            return Err(Rejection::Malformed("several Authorization headers"));
        }
        let text = value
            .to_str()
            .map_err(|_| Rejection::Malformed("a non-ASCII Authorization header"))?;
        let Some((scheme, rest)) = text.split_once(' ') else {
            return Ok(None);
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let token = rest.trim_start_matches(' ');
        let body = token.trim_end_matches('=');
        let token68 = !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
        if !token68 {
            return Err(Rejection::Malformed(
                "a Bearer credential that is not a token68",
            ));
        }
        return Ok(Some(token));
    }
    match find_cookie(headers, ACCESS_COOKIE) {
        CookieLookup::Found(v) => Ok(Some(v)),
        CookieLookup::Absent => Ok(None),
        CookieLookup::Duplicate => Err(Rejection::Malformed("duplicate access-token cookies")),
        CookieLookup::Malformed => Err(Rejection::Malformed("a malformed access-token cookie")),
    }
}

/// The refresh token a request presents in the [`REFRESH_COOKIE`].
#[must_use]
pub fn presented_refresh_cookie(headers: &HeaderMap) -> Option<&str> {
    match find_cookie(headers, REFRESH_COOKIE) {
        CookieLookup::Found(v) => Some(v),
        _ => None,
    }
}

impl TokenSessions {
    /// The two `Set-Cookie` values that deliver `pair` by cookie: the
    /// access token to every path (`__Host-at`, `SameSite=Lax`), the
    /// refresh token only to `refresh_path` (`__Secure-rt`,
    /// `SameSite=Strict`); both `Secure` and `HttpOnly`.
    #[must_use]
    pub fn set_cookies(&self, pair: &TokenPair, refresh_path: &str) -> [HeaderValue; 2] {
        let (access_ttl, refresh_idle) = self.cookie_lifetimes();
        [
            cookie(ACCESS_COOKIE, &pair.access_token, "/", "Lax", access_ttl),
            cookie(
                REFRESH_COOKIE,
                &pair.refresh_token,
                refresh_path,
                "Strict",
                refresh_idle,
            ),
        ]
    }

    /// The two `Set-Cookie` values that remove the token cookies (logout).
    #[must_use]
    pub fn clear_cookies(&self, refresh_path: &str) -> [HeaderValue; 2] {
        [
            cookie(ACCESS_COOKIE, "", "/", "Lax", 0),
            cookie(REFRESH_COOKIE, "", refresh_path, "Strict", 0),
        ]
    }
}

fn cookie(name: &str, value: &str, path: &str, same_site: &str, max_age: u64) -> HeaderValue {
    // Tokens are base64url with a prefix; a path with characters a header
    // cannot hold falls back to "/".
    let path = if path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
        path
    } else {
        "/"
    };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; Secure; HttpOnly; SameSite={same_site}"
    );
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("__Host-at=; Max-Age=0"))
}
