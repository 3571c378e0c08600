//! The session cookie: attributes, validation, `Set-Cookie`, `Cookie` parsing.
//!
//! Defaults (S2, S9, S13): name `__Host-id`, `Secure; HttpOnly;
//! SameSite=Lax; Path=/`, no `Domain`, no `Max-Age` (a browser-session
//! cookie). [`CookieConfig::validate`] refuses what browsers would silently
//! drop (S10), and every attribute is checked for characters that could
//! inject another attribute or header (S11).
//!
//! # Plain HTTP during development
//!
//! Browsers refuse `__Host-` cookies without `Secure`, and `Secure` cookies
//! are not sent over plain HTTP except to `localhost`. For a development
//! server on plain HTTP call
//! [`CookieConfig::with_insecure_http_for_development`]: it drops `Secure`,
//! renames the cookie to `id`, and logs a warning when the layer starts.
//! Never ship it.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use crate::expiry::{MAX_COOKIE_AGE, Timestamp};

/// Browsers drop cookies whose name plus value exceed this (RFC 6265bis §5.6).
pub const MAX_COOKIE_BYTES: usize = 4096;

/// 9999-12-31T23:59:59Z, the last instant an HTTP date can express.
const LAST_HTTP_DATE: Timestamp = Timestamp::from_millis(253_402_300_799_000);

/// The `SameSite` attribute. Always written explicitly (S49).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Sent only on same-site requests.
    Strict,
    /// Also sent on top-level cross-site navigations (the default).
    Lax,
    /// Sent on every request; requires `Secure`.
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

/// Attributes of the session cookie.
///
/// ```
/// use cloakroom::{CookieConfig, SameSite};
///
/// let strict = CookieConfig::default().with_same_site(SameSite::Strict);
/// assert!(strict.validate().is_ok());
///
/// // Browsers silently drop a __Host- cookie with a Domain: refused here.
/// let broken = CookieConfig::default().with_domain("example.com");
/// assert!(broken.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    name: String,
    path: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    insecure_dev: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "__Host-id".into(),
            path: "/".into(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            insecure_dev: false,
        }
    }
}

/// A cookie configuration that browsers would reject or mangle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieConfigError {
    /// The name is empty or holds characters not allowed in a cookie name.
    #[error("cookie name {0:?} is not a valid token (letters, digits and !#$%&'*+-.^_`|~ only)")]
    InvalidName(String),
    /// Path or Domain holds `;`, control characters or non-ASCII.
    #[error("cookie {0} holds characters that would break the Set-Cookie header")]
    InvalidAttribute(&'static str),
    /// `__Host-` cookies need `Secure`, `Path=/` and no `Domain`.
    #[error(
        "a __Host- cookie must be Secure with Path=/ and no Domain; drop the prefix or the attribute"
    )]
    HostPrefix,
    /// `__Secure-` cookies need `Secure`.
    #[error("a __Secure- cookie must be Secure")]
    SecurePrefix,
    /// `SameSite=None` needs `Secure`.
    #[error("SameSite=None requires Secure; browsers drop such cookies")]
    SameSiteNoneInsecure,
}

/// A cookie that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// Name plus value exceed 4096 bytes; browsers would drop it silently
    /// (S12).
    #[error("cookie of {0} bytes exceeds the 4096-byte browser limit")]
    TooLarge(usize),
    /// The value holds characters not allowed in a cookie value.
    #[error("cookie value holds characters not allowed in a cookie")]
    InvalidValue,
    /// The configuration itself is invalid (see [`CookieConfig::validate`]).
    #[error(transparent)]
    InvalidConfig(#[from] CookieConfigError),
}

impl CookieConfig {
    /// The secure defaults: `__Host-id`, Secure, HttpOnly, SameSite=Lax,
    /// Path=/.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the cookie name. Names are case-sensitive.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets `Path`.
    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets `Domain` (the cookie then also goes to subdomains). Not allowed
    /// with the `__Host-` name.
    #[must_use]
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Sets `SameSite`.
    #[must_use]
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Sets `HttpOnly` (default on). Turning it off lets page scripts, and so
    /// any XSS, read the session cookie.
    #[must_use]
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// For development over plain HTTP only: drops `Secure` and, if the
    /// name has a `__Host-`/`__Secure-` prefix, renames the cookie `id`. The
    /// session layer logs a warning at start-up while this is set (S9).
    #[must_use]
    pub fn with_insecure_http_for_development(mut self) -> Self {
        self.secure = false;
        self.insecure_dev = true;
        if has_prefix(&self.name, "__Host-") || has_prefix(&self.name, "__Secure-") {
            self.name = "id".into();
        }
        self
    }

    /// The cookie name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `Secure` is set.
    #[must_use]
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Whether the insecure development switch is on.
    #[must_use]
    pub fn is_insecure_dev(&self) -> bool {
        self.insecure_dev
    }

    /// Checks the configuration against what browsers accept (S10, S11).
    ///
    /// # Errors
    ///
    /// [`CookieConfigError`] naming the first problem found.
    pub fn validate(&self) -> Result<(), CookieConfigError> {
        if self.name.is_empty() || self.name.len() > 256 || !self.name.bytes().all(is_token_byte) {
            return Err(CookieConfigError::InvalidName(self.name.clone()));
        }
        if !self.path.starts_with('/') || !self.path.bytes().all(is_attr_byte) {
            return Err(CookieConfigError::InvalidAttribute("Path"));
        }
        if let Some(d) = &self.domain
            && (d.is_empty()
                || !d
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        {
            return Err(CookieConfigError::InvalidAttribute("Domain"));
        }
        // Browsers match the prefixes case-insensitively (RFC 6265bis
        // §4.1.3): `__HOST-id` without Secure would be dropped just the same.
        if has_prefix(&self.name, "__Host-")
            && (!self.secure || self.path != "/" || self.domain.is_some())
        {
            return Err(CookieConfigError::HostPrefix);
        }
        if has_prefix(&self.name, "__Secure-") && !self.secure {
            return Err(CookieConfigError::SecurePrefix);
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(CookieConfigError::SameSiteNoneInsecure);
        }
        Ok(())
    }

    /// A `Set-Cookie` value for `value`. `max_age` of `None` makes a
    /// browser-session cookie; `Some` adds `Max-Age` and `Expires` (capped at
    /// 400 days, S13).
    ///
    /// # Errors
    ///
    /// [`CookieError::TooLarge`] past 4096 bytes of name and value (S12),
    /// [`CookieError::InvalidValue`] for characters a cookie cannot hold,
    /// [`CookieError::InvalidConfig`] if the configuration does not
    /// validate (so a bad name can never inject an attribute, S11).
    pub fn set_cookie(
        &self,
        value: &str,
        max_age: Option<Duration>,
        now: Timestamp,
    ) -> Result<HeaderValue, CookieError> {
        self.validate()?;
        let size = self.name.len() + value.len();
        if size > MAX_COOKIE_BYTES {
            return Err(CookieError::TooLarge(size));
        }
        if !value.bytes().all(is_cookie_octet) {
            return Err(CookieError::InvalidValue);
        }
        let mut out = String::with_capacity(size + 96);
        out.push_str(&self.name);
        out.push('=');
        out.push_str(value);
        if let Some(age) = max_age {
            let age = age.min(MAX_COOKIE_AGE);
            // HTTP dates stop at year 9999; a clock beyond that (a test's
            // mock, say) gets the last representable date, not a panic.
            let expires = now.saturating_add(age).min(LAST_HTTP_DATE);
            out.push_str(&format!(
                "; Max-Age={}; Expires={}",
                age.as_secs(),
                httpdate::fmt_http_date(expires.to_system_time())
            ));
        }
        self.push_attributes(&mut out);
        HeaderValue::from_str(&out).map_err(|_| CookieError::InvalidValue)
    }

    /// The `Set-Cookie` value that deletes the cookie: same name, Path,
    /// Domain, Secure and SameSite, empty value, `Max-Age=0` (S14).
    #[must_use]
    pub fn removal_cookie(&self) -> HeaderValue {
        let mut out = format!(
            "{}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            self.name
        );
        self.push_attributes(&mut out);
        // Every part was validated when the layer was built.
        HeaderValue::from_str(&out)
            .unwrap_or_else(|_| HeaderValue::from_static("id=; Max-Age=0; Path=/"))
    }

    fn push_attributes(&self, out: &mut String) {
        out.push_str("; Path=");
        out.push_str(&self.path);
        if let Some(d) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(d);
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        out.push_str("; SameSite=");
        out.push_str(self.same_site.as_str());
    }
}

/// RFC 6265 `token` characters for names.
/// Whether `name` starts with the cookie prefix `prefix`, compared
/// ASCII-case-insensitively as browsers do (S10).
fn has_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 6265 `cookie-octet`: no controls, whitespace, DQUOTE, comma,
/// semicolon or backslash.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// Attribute values: printable ASCII except `;`.
fn is_attr_byte(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b';'
}

/// What the `Cookie` headers of a request say about one cookie name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CookieLookup<'a> {
    /// No cookie of that name.
    Absent,
    /// Exactly one cookie of that name, with this value.
    Found(&'a str),
    /// Exactly one cookie of that name, but its value is not visible ASCII
    /// (no cookie cloakroom issues looks like that): reject it.
    Malformed,
    /// More than one: a cookie-tossing attack or a stale cookie for another
    /// path or domain. Trust neither (S16).
    Duplicate,
}

impl fmt::Debug for CookieLookup<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the value: it is a credential.
        match self {
            Self::Absent => f.write_str("Absent"),
            Self::Found(v) => write!(f, "Found(<{} bytes>)", v.len()),
            Self::Malformed => f.write_str("Malformed"),
            Self::Duplicate => f.write_str("Duplicate"),
        }
    }
}

/// Finds the cookie `name` across every `Cookie` header of a request (split
/// headers are read as one). Names match case-sensitively; pairs without
/// `=` are skipped, and other cookies' values may hold any bytes; a session
/// cookie whose own value is not visible ASCII is [`CookieLookup::Malformed`].
///
/// ```
/// use cloakroom::{find_cookie, CookieLookup};
/// use http::{HeaderMap, HeaderValue, header::COOKIE};
///
/// let mut h = HeaderMap::new();
/// h.append(COOKIE, HeaderValue::from_static("theme=dark; id=abc"));
/// assert_eq!(find_cookie(&h, "id"), CookieLookup::Found("abc"));
/// assert_eq!(find_cookie(&h, "ID"), CookieLookup::Absent);
/// h.append(COOKIE, HeaderValue::from_static("id=evil"));
/// assert_eq!(find_cookie(&h, "id"), CookieLookup::Duplicate);
/// ```
#[must_use]
pub fn find_cookie<'a>(headers: &'a HeaderMap, name: &str) -> CookieLookup<'a> {
    find_cookie_in(headers.get_all(http::header::COOKIE), name)
}

/// [`find_cookie`] over `Cookie` header values already taken from a request.
///
/// Works on bytes: a sibling cookie with non-ASCII bytes (`city=Zürich`,
/// sent raw by some clients) must not hide the session cookie, or the
/// visitor would turn anonymous and their next write replace the session.
/// Only the session cookie's own value has to be visible ASCII.
pub(crate) fn find_cookie_in<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
    name: &str,
) -> CookieLookup<'a> {
    let mut found = CookieLookup::Absent;
    for header in values {
        for pair in header.as_bytes().split(|&b| b == b';') {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (n, v) = (&pair[..eq], &pair[eq + 1..]);
            if n.trim_ascii() != name.as_bytes() {
                continue;
            }
            let v = v.trim_ascii();
            let v = v
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v);
            let this = match std::str::from_utf8(v) {
                Ok(text) if v.iter().all(|&b| (0x21..0x7f).contains(&b)) => {
                    CookieLookup::Found(text)
                }
                _ => CookieLookup::Malformed,
            };
            found = match found {
                CookieLookup::Absent => this,
                _ => return CookieLookup::Duplicate,
            };
        }
    }
    found
}

/// The `Cookie` headers of a request, kept (cheaply: header values share
/// the request's buffer) so that they are only parsed when the session is
/// used. Nearly every request has at most one.
#[derive(Debug, Clone, Default)]
pub(crate) enum RawCookies {
    /// No `Cookie` header.
    #[default]
    None,
    /// One `Cookie` header.
    One(HeaderValue),
    /// Several (HTTP/2 clients may split them).
    Many(Vec<HeaderValue>),
}

impl RawCookies {
    /// Takes the `Cookie` headers of `headers`.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut all = headers.get_all(http::header::COOKIE).iter();
        match (all.next(), all.next()) {
            (None, _) => Self::None,
            (Some(one), None) => Self::One(one.clone()),
            (Some(a), Some(b)) => {
                let mut v = vec![a.clone(), b.clone()];
                v.extend(all.cloned());
                Self::Many(v)
            }
        }
    }

    /// The header values, in request order.
    pub(crate) fn values(&self) -> &[HeaderValue] {
        match self {
            Self::None => &[],
            Self::One(v) => std::slice::from_ref(v),
            Self::Many(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_cookie() {
        let c = CookieConfig::default();
        let v = c.set_cookie("abc", None, Timestamp::EPOCH).unwrap();
        assert_eq!(v, "__Host-id=abc; Path=/; Secure; HttpOnly; SameSite=Lax");
    }

    #[test]
    fn persistent_cookie_capped_at_400_days() {
        let c = CookieConfig::default();
        let v = c
            .set_cookie(
                "abc",
                Some(Duration::from_secs(10 * 365 * 86_400)),
                Timestamp::EPOCH,
            )
            .unwrap();
        let v = v.to_str().unwrap();
        assert!(v.contains("Max-Age=34560000;"), "{v}");
        assert!(v.contains("Expires=Fri, 05 Feb 1971 00:00:00 GMT"), "{v}");
    }

    #[test]
    fn removal_mirrors_attributes() {
        let c = CookieConfig::default()
            .with_name("__Secure-sid")
            .with_domain("example.com")
            .with_same_site(SameSite::Strict);
        c.validate().unwrap();
        let v = c.removal_cookie();
        assert_eq!(
            v,
            "__Secure-sid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; Domain=example.com; Secure; HttpOnly; SameSite=Strict"
        );
    }
}
