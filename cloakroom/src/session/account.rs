//! The signed-in user's account, from a request: "your devices", ending one
//! or all of them, a password change, and re-authentication (S24-S27).
//! The listing and revocation themselves are [`Devices`]; this is the
//! request-side view of them, on the layer's store and handle key.

use std::sync::Arc;

use super::context::Engine;
use super::error::SessionError;
use super::handle::Session;
use super::mode::{Mode, RevokeError};
use super::state::{IfEnded, State};
use crate::auth::{DeviceError, DeviceSession, Devices};
use crate::expiry::Timestamp;
use crate::id::StorageKey;

impl Session {
    /// The layer's devices view, or why there is none.
    fn devices_view(&self) -> Result<Devices, SessionError> {
        let ctx = &self.inner.ctx;
        match &ctx.engine {
            Engine::Server(m) => Ok(Devices::over(
                m.store().clone(),
                ctx.config.handle_key.clone(),
                ctx.config.clock.clone(),
            )),
            Engine::Sealed(_) => Err(SessionError::DevicesUnavailable),
        }
    }

    /// The signed-in user and the session's storage key, loading first.
    async fn signed_in(
        &self,
        state: &mut State,
    ) -> Result<Option<(String, StorageKey)>, SessionError> {
        self.ensure_loaded(state).await?;
        Self::unreadable(state)?;
        Ok(state
            .current
            .as_ref()
            .and_then(|c| c.record.user.clone().map(|u| (u, c.key))))
    }

    fn device_failed(state: &mut State, e: DeviceError, op: &'static str) -> SessionError {
        match e {
            DeviceError::NotFound => SessionError::DeviceNotFound,
            DeviceError::TokensNotConfigured => SessionError::TokenRevocationNotConfigured,
            DeviceError::Store(e) => Self::revocation_failed(state, Arc::new(e), op),
            #[cfg(feature = "jwt")]
            DeviceError::Token(e) => {
                Self::revocation_failed(state, Arc::new(crate::store::StoreError::other(e)), op)
            }
        }
    }

    /// The signed-in user's sessions ("your devices", S25): this one
    /// first (marked `current`), then the most recently active. Empty for
    /// a visitor who is not signed in.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the store failed;
    /// [`SessionError::DevicesUnavailable`] for client-side sessions, which
    /// no server lists.
    pub async fn devices(&self) -> Result<Vec<DeviceSession>, SessionError> {
        let view = self.devices_view()?;
        let mut state = self.inner.state.lock().await;
        let Some((user, key)) = self.signed_in(&mut state).await? else {
            return Ok(Vec::new());
        };
        match view.list(&user, Some(&key)).await {
            Ok(list) => Ok(list),
            Err(e) => Err(Self::device_failed(&mut state, e, "list_devices")),
        }
    }

    /// Ends the signed-in user's session with `handle` (from
    /// [`Session::devices`]). Ending the current one signs this visitor
    /// out, as [`Session::logout`] does.
    ///
    /// # Errors
    ///
    /// [`SessionError::DeviceNotFound`] when no session of this user has
    /// the handle (another user's handle included, S25) or no one is
    /// signed in; [`SessionError::Store`] if the store failed (nothing was
    /// ended, and the layer answers with its failure response);
    /// [`SessionError::DevicesUnavailable`] for client-side sessions.
    pub async fn revoke_device(&self, handle: &str) -> Result<(), SessionError> {
        let view = self.devices_view()?;
        let mut state = self.inner.state.lock().await;
        let Some((user, current)) = self.signed_in(&mut state).await? else {
            return Err(SessionError::DeviceNotFound);
        };
        match view.revoke(&user, handle).await {
            Ok(ended) if ended == current => {
                drop(state);
                self.destroy().await
            }
            Ok(_) => Ok(()),
            Err(e) => Err(Self::device_failed(&mut state, e, "revoke_device")),
        }
    }

    /// Ends every session of the signed-in user except this one ("sign out
    /// my other devices", S24); returns how many were ended. Nothing
    /// happens for a visitor who is not signed in.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the store failed (the layer answers with
    /// its failure response; call again);
    /// [`SessionError::DevicesUnavailable`] for client-side sessions (use
    /// [`Session::logout_everywhere`], which ends them by epoch).
    pub async fn revoke_other_devices(&self) -> Result<u64, SessionError> {
        let view = self.devices_view()?;
        let mut state = self.inner.state.lock().await;
        let Some((user, current)) = self.signed_in(&mut state).await? else {
            return Ok(0);
        };
        match view.revoke_all(&user, Some(&current)).await {
            Ok(n) => Ok(n),
            Err(e) => Err(Self::device_failed(&mut state, e, "revoke_other_devices")),
        }
    }

    /// Call after the user's password (or other credential) changed: ends
    /// every other session of the user and moves this one to a new ID, so
    /// that whoever held the old credential or an old cookie is out
    /// everywhere, while this device stays signed in. Client-side
    /// sessions bump the user's revocation epoch (every sealed cookie of
    /// the user dies) and re-seal this one under the new epoch. The
    /// remember-me setting of this device is kept.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the store failed (the layer answers with
    /// its failure response; call again);
    /// [`SessionError::RevocationNotConfigured`] for client-side sessions
    /// without revocation. Nothing is done for a visitor who is not
    /// signed in.
    pub async fn on_credentials_changed(&self) -> Result<(), SessionError> {
        let ctx = &self.inner.ctx;
        match &ctx.engine {
            Engine::Server(_) => {
                self.revoke_other_devices().await?;
                self.rotate().await
            }
            Engine::Sealed(m) => {
                let mut state = self.inner.state.lock().await;
                let Some((user, _)) = self.signed_in(&mut state).await? else {
                    return Ok(());
                };
                match m.revoke_user(&ctx.config, &user).await {
                    Ok(()) => {}
                    Err(RevokeError::NotConfigured) => {
                        return Err(SessionError::RevocationNotConfigured);
                    }
                    Err(RevokeError::Store(e)) => {
                        return Err(Self::revocation_failed(
                            &mut state,
                            Arc::new(e),
                            "on_credentials_changed",
                        ));
                    }
                }
                let record = state.pending_record(&ctx.config);
                ctx.engine
                    .reissue(
                        &ctx.config,
                        &self.inner.visitor,
                        &mut state,
                        record,
                        IfEnded::StartFresh,
                    )
                    .await
            }
        }
    }

    /// Records that the user just proved who they are again (password,
    /// passkey) for [`RequireFreshAuth`](crate::auth::RequireFreshAuth):
    /// sets `auth_time` to now and moves the session to a new ID (S27).
    ///
    /// # Errors
    ///
    /// [`SessionError::NotSignedIn`] for a visitor who is not signed in;
    /// [`SessionError::Store`] if the store failed.
    pub async fn reauthenticate(&self) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        if self.signed_in(&mut state).await?.is_none() {
            return Err(SessionError::NotSignedIn);
        }
        let ctx = &self.inner.ctx;
        let mut record = state.pending_record(&ctx.config);
        record.auth_time = Some(ctx.config.clock.now());
        ctx.engine
            .reissue(
                &ctx.config,
                &self.inner.visitor,
                &mut state,
                record,
                IfEnded::Stop,
            )
            .await
    }

    /// How long ago the user last authenticated on this session, or `None`
    /// for a visitor who is not signed in.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the record could not be loaded.
    pub async fn auth_age(&self) -> Result<Option<std::time::Duration>, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        let now: Timestamp = self.inner.ctx.config.clock.now();
        Ok(state
            .current
            .as_ref()
            .filter(|c| c.record.user.is_some())
            .map(|c| now.since(c.record.auth_time.unwrap_or(c.record.created_at))))
    }
}
