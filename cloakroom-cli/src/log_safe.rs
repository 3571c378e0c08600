//! What the demo may log about text a client typed (defect 14).
//!
//! A refused sign-in must not put the typed username in the logs: it can
//! hold a newline that forges a log line, and users who type their password
//! into the username field would leave it there. Such text is logged as a
//! pseudonym instead: the first 8 bytes of HMAC-SHA-256 under a key drawn
//! at start-up and kept only in memory, as 16 hex digits. The same text
//! gives the same pseudonym within one process, so repeated attempts on
//! one name can still be told apart from a spray over many, but without the
//! key a log reader cannot test guesses against it. Pseudonyms from
//! different processes (or after a restart) are unrelated.

use std::fmt::Write as _;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The per-process pseudonym key. Cheap to clone; never printed.
#[derive(Clone)]
pub(crate) struct LogPseudonyms {
    key: Arc<[u8; 32]>,
}

impl std::fmt::Debug for LogPseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogPseudonyms(..)")
    }
}

impl LogPseudonyms {
    /// A fresh random key.
    pub(crate) fn random() -> Result<Self, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(Self { key: Arc::new(key) })
    }

    /// The pseudonym of `text`: 16 lowercase hex digits.
    pub(crate) fn of(&self, text: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(text.as_bytes());
        let tag = mac.finalize().into_bytes();
        tag.iter()
            .take(8)
            .fold(String::with_capacity(16), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }
}

/// The route template of a request path, for the request log: the data key
/// in `/api/data/{key}` is the client's text and is not logged, nor is any
/// path that is not one of the demo's routes.
pub(crate) fn route_of(path: &str) -> &'static str {
    const FIXED: [&str; 8] = [
        "/",
        "/healthz",
        "/api/register",
        "/api/login",
        "/api/logout",
        "/api/logout-everywhere",
        "/api/me",
        "/api/data",
    ];
    if let Some(route) = FIXED.iter().find(|r| **r == path) {
        route
    } else if path.starts_with("/api/data/") {
        "/api/data/{key}"
    } else {
        "(no such route)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_per_key_and_hide_the_text() {
        let a = LogPseudonyms::random().expect("randomness");
        let b = LogPseudonyms::random().expect("randomness");
        let p = a.of("alice");
        assert_eq!(p.len(), 16);
        assert!(p.bytes().all(|c| c.is_ascii_hexdigit()), "{p}");
        assert_eq!(p, a.of("alice"));
        assert_ne!(p, a.of("alice2"));
        assert_ne!(p, b.of("alice"));
        assert_eq!(format!("{a:?}"), "LogPseudonyms(..)");
    }

    #[test]
    fn routes() {
        assert_eq!(route_of("/api/login"), "/api/login");
        assert_eq!(route_of("/api/data/secret-key"), "/api/data/{key}");
        assert_eq!(route_of("/api/data"), "/api/data");
        assert_eq!(route_of("/tokens/abc123"), "(no such route)");
        assert_eq!(route_of("/api/login/x"), "(no such route)");
    }
}
