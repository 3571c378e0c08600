//! Signed double-submit tokens for [token sessions](crate::token) carried
//! in cookies (S47): there is no server-side record per request to keep a
//! secret in, so the token is a MAC over the token session's id.
//!
//! A token is the key ring's signed envelope (purpose `csrf`, bound to the
//! access-token cookie's name and the key id) over `sid || nonce`: 16
//! fresh random bytes make each one different, and only the server can
//! make one for a given `sid`. It is bound to the refresh family (the
//! device's sign-in), not to one access token, so it survives refreshes
//! and dies with the family: sign-in starts a new family, hence a new
//! token.

use subtle::ConstantTimeEq;

use super::claims::AccessClaims;
use super::sessions::TokenSessions;
use super::transport::ACCESS_COOKIE;

const PURPOSE: &str = "csrf";
const NONCE_BYTES: usize = 16;

impl TokenSessions {
    /// A CSRF token for the token session that `claims` belong to (from
    /// [`TokenSessions::verify`]), for a page or single-page app that
    /// authenticates with the access-token cookie. Send it back in the
    /// `x-csrf-token` header or the `csrf_token` form field; the
    /// [`CsrfLayer`](crate::csrf::CsrfLayer) checks it when configured
    /// [`with_token_sessions`](crate::csrf::CsrfLayer::with_token_sessions).
    /// Masked afresh on every call.
    ///
    /// # Errors
    ///
    /// [`crypto::SealError`](crate::crypto::SealError) if the random
    /// generator failed, or the session id is too long to sign.
    pub fn csrf_token<C>(
        &self,
        claims: &AccessClaims<C>,
    ) -> Result<String, crate::crypto::SealError> {
        let mut payload = Vec::with_capacity(claims.sid.len() + NONCE_BYTES);
        payload.extend_from_slice(claims.sid.as_bytes());
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|_| crate::crypto::SealError::Random)?;
        payload.extend_from_slice(&nonce);
        self.inner
            .refresh_keys
            .sign(PURPOSE, ACCESS_COOKIE, &payload)
    }

    /// Whether `token` was made by [`TokenSessions::csrf_token`] for the
    /// token session of `claims`. The MAC and the session id are compared
    /// in constant time.
    #[must_use]
    pub fn verify_csrf_token<C>(&self, claims: &AccessClaims<C>, token: &str) -> bool {
        let Ok(opened) = self
            .inner
            .refresh_keys
            .verify(PURPOSE, ACCESS_COOKIE, token)
        else {
            return false;
        };
        let Some(sid_len) = opened.plaintext.len().checked_sub(NONCE_BYTES) else {
            return false;
        };
        let (sid, _nonce) = opened.plaintext.split_at(sid_len);
        bool::from(sid.ct_eq(claims.sid.as_bytes()))
    }
}
