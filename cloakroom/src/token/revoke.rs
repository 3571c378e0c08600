//! Ending token sessions: one device, one token, a whole user; and the
//! JWKS that lets others verify.

use super::claims::AccessClaims;
use super::error::TokenError;
use super::refresh::{self, Family};
use super::revocation::Denied;
use super::sessions::TokenSessions;
use crate::expiry::Timestamp;
use crate::store::StoreError;

impl TokenSessions {
    /// Ends the device a refresh token belongs to (its logout): the family
    /// goes and its access tokens are refused from now on. Returns whether
    /// there was a live family to end.
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] if the store fails (nothing was revoked).
    pub async fn revoke_refresh(&self, refresh_token: &str) -> Result<bool, TokenError> {
        let i = &self.inner;
        let Some((family, _)) = refresh::parse(&i.refresh_keys, refresh_token) else {
            return Ok(false);
        };
        let now = i.clock.now();
        let key = family.storage_key();
        let Some(record) = i.store.load(&key, now).await? else {
            return Ok(false);
        };
        let (Some(state), Some(user)) = (Family::read(&record), record.user.clone()) else {
            return Ok(false);
        };
        self.end_family(&key, &user, &state.sid, now).await?;
        Ok(true)
    }

    /// Ends `user`'s device with handle `sid` (from a device list or an
    /// access token's claims). Returns whether a live family was ended;
    /// the handle is denied either way.
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] if the store fails (nothing was revoked).
    pub async fn revoke_device(&self, user: &str, sid: &str) -> Result<bool, TokenError> {
        let i = &self.inner;
        let now = i.clock.now();
        let found = i
            .store
            .list_by_user(user, now)
            .await?
            .into_iter()
            .find(|s| Family::read(&s.record).is_some_and(|f| f.sid == sid));
        let ended = found.is_some();
        match found {
            Some(s) => self.end_family(&s.key, user, sid, now).await?,
            None => self.deny_device(user, sid, now).await?,
        }
        Ok(ended)
    }

    /// Ends every session of `user`: their refresh families (and, in a
    /// shared store, their server-side sessions) are deleted and their
    /// epoch bumped, so every access token issued before is refused.
    /// Returns how many records were deleted.
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] if the store fails. The deletes may have
    /// happened; call again.
    pub async fn revoke_user(&self, user: &str) -> Result<u64, TokenError> {
        let now = self.inner.clock.now();
        // Families first, then the epoch (see `refresh`).
        let n = self.inner.store.delete_by_user(user, None, now).await?;
        self.revocations()?.bump(user, now).await?;
        Ok(n)
    }

    /// Refuses one access token from now until it expires.
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] if the store fails (nothing was revoked).
    pub async fn revoke_token<C>(&self, claims: &AccessClaims<C>) -> Result<(), TokenError> {
        let now = self.inner.clock.now();
        let until = Timestamp::from_millis(claims.exp.saturating_mul(1000))
            .saturating_add(self.inner.leeway);
        self.revocations()?
            .deny(&claims.sub, Denied::Token(&claims.jti), until, now)
            .await?;
        Ok(())
    }

    /// The JWKS document of the keys that may verify now (RFC 7517), for
    /// `GET /.well-known/jwks.json`.
    #[must_use]
    pub fn jwks(&self) -> serde_json::Value {
        self.inner.keys.jwks(self.inner.clock.now())
    }

    /// [`jwks`](Self::jwks) as an HTTP response, cacheable for 5 minutes.
    #[must_use]
    pub fn jwks_response(&self) -> http::Response<String> {
        let mut res = http::Response::new(self.jwks().to_string());
        let h = res.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/jwk-set+json"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("public, max-age=300"),
        );
        res
    }

    pub(super) async fn end_family(
        &self,
        key: &crate::id::StorageKey,
        user: &str,
        sid: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.store.delete(key, now).await?;
        self.deny_device(user, sid, now).await
    }

    /// Denies `sid` until every access token it may have been given has
    /// expired.
    async fn deny_device(&self, user: &str, sid: &str, now: Timestamp) -> Result<(), StoreError> {
        let i = &self.inner;
        let until = now.saturating_add(i.access_ttl).saturating_add(i.leeway);
        self.revocations()?
            .deny(user, Denied::Device(sid), until, now)
            .await
    }
}
