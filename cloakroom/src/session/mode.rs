//! The seam between the handler API and the ways of keeping a session:
//! one implementation per mode ([`ServerMode`](super::server::ServerMode):
//! an ID in the cookie, the record in a store;
//! [`SealedMode`](super::sealed::SealedMode): the record sealed in the
//! cookie). The handler API never asks which mode it runs in.

use http::HeaderValue;

use super::error::SessionError;
use super::state::{IfEnded, State};
use super::visitor::{Presented, Visitor};
use crate::config::SessionConfig;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::StoreError;

/// Why [`Mode::revoke_user`] did not revoke.
pub(crate) enum RevokeError {
    /// This mode cannot end other devices' sessions as configured.
    NotConfigured,
    /// The store failed.
    Store(StoreError),
}

/// One way of keeping sessions. Every method is called with the state
/// lock held; none of them applies the failure policy (the handler API
/// does).
pub(crate) trait Mode {
    /// What the session cookie(s) among `cookies` hold, and how many chunk
    /// cookies the request carried. Never touches a store.
    fn presented(&self, cookies: &[HeaderValue], name: &str) -> (Presented, usize);

    /// Loads what `presented` names into `state.current`, or leaves it
    /// empty (and decides about the cookie) when it is unknown, expired or
    /// revoked.
    ///
    /// # Errors
    ///
    /// The store's failure; the caller applies the policy.
    async fn load(
        &self,
        cfg: &SessionConfig,
        presented: &Presented,
        state: &mut State,
    ) -> Result<(), StoreError>;

    /// Ends the stored session under `key`, if this mode stores any.
    ///
    /// # Errors
    ///
    /// The store's failure.
    async fn delete(&self, cfg: &SessionConfig, key: &StorageKey) -> Result<(), StoreError>;

    /// Whether [`Mode::admit`] needs the loaded record (so that `insert`
    /// loads first).
    fn checks_inserts(&self) -> bool;

    /// Whether the loaded session with `key` and `bytes` added under
    /// `name` could still be delivered.
    ///
    /// # Errors
    ///
    /// [`SessionError::CookieTooLarge`] when a sealed record would outgrow
    /// its cookies.
    fn admit(
        &self,
        cfg: &SessionConfig,
        state: &State,
        name: &str,
        bytes: &bytes::Bytes,
    ) -> Result<(), SessionError>;

    /// Files `record` as the session under a fresh identity (new ID, or a
    /// fresh seal), ending the current one (sign-in, rotation).
    ///
    /// # Errors
    ///
    /// [`SessionError::RecordTooLarge`] / [`SessionError::CookieTooLarge`]
    /// when it would not fit, or the store's failure (already recorded for
    /// the policy).
    async fn reissue(
        &self,
        cfg: &SessionConfig,
        visitor: &Visitor,
        state: &mut State,
        record: Record,
        if_ended: IfEnded,
    ) -> Result<(), SessionError>;

    /// Ends every session of `user`, on every device.
    ///
    /// # Errors
    ///
    /// [`RevokeError`].
    async fn revoke_user(&self, cfg: &SessionConfig, user: &str) -> Result<(), RevokeError>;

    /// After the handler: saves, touches or re-seals as the state asks.
    async fn finish(
        &self,
        cfg: &SessionConfig,
        presented: &Presented,
        state: &mut State,
        dirty: bool,
    );

    /// The `Set-Cookie` values the response needs.
    fn set_cookies(
        &self,
        cfg: &SessionConfig,
        presented_chunks: usize,
        state: &mut State,
    ) -> Vec<HeaderValue>;
}
