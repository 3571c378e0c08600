//! The synchronizer token (S47): a per-session secret kept in the session
//! record, handed out masked so that no two responses carry the same bytes.
//!
//! A token is `base64url(pad || pad XOR secret)`: 32 fresh random bytes and
//! the 32-byte secret XORed with them (the masking Django and Rails use).
//! The mask keeps the secret out of reach of compression side channels
//! (BREACH) on pages that reflect the token; it adds no other strength.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::session::{CSRF_SECRET_KEY, Session, SessionError};

/// Bytes of the secret, and of the pad.
const SECRET_BYTES: usize = 32;
/// Length of a masked token in base64url characters: 64 bytes.
pub(crate) const TOKEN_CHARS: usize = 86;

/// A session's CSRF secret.
pub(crate) struct Secret([u8; SECRET_BYTES]);

impl Secret {
    /// A fresh secret. Like session IDs, it panics if the OS random
    /// generator fails: no secret is better than a guessable one.
    fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        Self(bytes)
    }

    /// The secret as stored in the record.
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The stored form back; `None` for anything that is not one (a record
    /// written by something else is treated as having no secret).
    fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        bytes.try_into().ok().map(Self)
    }

    /// A freshly masked token for this secret.
    fn mask(&self) -> String {
        let mut out = [0u8; 2 * SECRET_BYTES];
        let (pad, masked) = out.split_at_mut(SECRET_BYTES);
        getrandom::fill(pad).expect("the OS random number generator failed");
        for ((m, p), s) in masked.iter_mut().zip(pad.iter()).zip(self.0.iter()) {
            *m = p ^ s;
        }
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Whether `token` is a masking of this secret. The length and
    /// alphabet are public; the comparison of the unmasked bytes runs in
    /// constant time, so a forger learns nothing from how long it took.
    fn accepts(&self, token: &str) -> bool {
        if token.len() != TOKEN_CHARS {
            return false;
        }
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        let Some((pad, masked)) = bytes.split_at_checked(SECRET_BYTES) else {
            return false;
        };
        if masked.len() != SECRET_BYTES {
            return false;
        }
        let mut unmasked = [0u8; SECRET_BYTES];
        for ((u, p), m) in unmasked.iter_mut().zip(pad).zip(masked) {
            *u = p ^ m;
        }
        bool::from(unmasked.ct_eq(&self.0))
    }
}

impl Session {
    /// A CSRF token for this session, masked afresh on every call: put it
    /// in a form field or send it in the `x-csrf-token` header (see
    /// [`csrf`](crate::csrf)). Every token of a session stays valid until
    /// the session ends or the user signs in ([`Session::login`] makes a
    /// new secret).
    ///
    /// The secret lives in the session record (sealed with it in
    /// client-side sessions), so a visitor without a session gets one: the
    /// first call is a write, and the response sets the session cookie, as
    /// Django's `get_token` sets its cookie.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the record could not be loaded;
    /// client-side, [`SessionError::CookieTooLarge`] if the secret no
    /// longer fits in the cookie.
    pub async fn csrf_token(&self) -> Result<String, SessionError> {
        let secret = match self.csrf_secret().await? {
            Some(secret) => secret,
            None => {
                let secret = Secret::generate();
                self.insert_unchecked(CSRF_SECRET_KEY, &secret.encode())
                    .await?;
                secret
            }
        };
        Ok(secret.mask())
    }

    /// Whether `token` is one of this session's CSRF tokens. Never creates
    /// a session: a visitor without a secret has no valid token.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the record could not be loaded.
    pub async fn verify_csrf_token(&self, token: &str) -> Result<bool, SessionError> {
        Ok(self
            .csrf_secret()
            .await?
            .is_some_and(|secret| secret.accepts(token)))
    }

    async fn csrf_secret(&self) -> Result<Option<Secret>, SessionError> {
        // A value that fails to decode is no secret: it is replaced.
        Ok(self
            .get::<String>(CSRF_SECRET_KEY)
            .await
            .or_else(|e| match e {
                SessionError::Decode { .. } => Ok(None),
                other => Err(other),
            })?
            .as_deref()
            .and_then(Secret::decode))
    }
}

/// Masks `secret` as [`Session::csrf_token`] does: for the property tests
/// and fuzz target, not an API.
#[doc(hidden)]
#[must_use]
pub fn fuzz_mask(secret: [u8; 32]) -> String {
    Secret(secret).mask()
}

/// Whether `token` unmasks to `secret`, as the layer checks it: for the
/// property tests and fuzz target, not an API.
#[doc(hidden)]
#[must_use]
pub fn fuzz_accepts(secret: [u8; 32], token: &str) -> bool {
    Secret(secret).accepts(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_tokens_differ_and_unmask() {
        let secret = Secret::generate();
        let (a, b) = (secret.mask(), secret.mask());
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_CHARS);
        assert!(secret.accepts(&a) && secret.accepts(&b));
        assert!(!Secret::generate().accepts(&a));
    }

    #[test]
    fn stored_form_round_trips() {
        let secret = Secret::generate();
        let back = Secret::decode(&secret.encode());
        assert!(back.is_some_and(|b| b.0 == secret.0));
        assert!(Secret::decode("short").is_none());
    }
}
