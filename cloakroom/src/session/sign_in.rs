//! Signing in and out: `login`, `rotate`, `logout`/`destroy` and
//! `logout_everywhere`. Each writes at once, before the handler goes on, so
//! it wins over saves in flight on other requests (S28).

use std::sync::Arc;

use super::error::SessionError;
use super::handle::{CSRF_SECRET_KEY, MAX_USER_BYTES, Session};
use super::mode::{Mode, RevokeError};
use super::state::{ChangeSet, CookieAction, IfEnded};
use super::visitor::Presented;
use crate::record::Device;

/// Options for [`Session::login_with`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoginOptions {
    /// Keep the user signed in across browser restarts: longer timeouts and
    /// a persistent cookie.
    pub remember_me: bool,
    /// The client address to record for the device listing, if the
    /// application knows it better than the connection does (behind a
    /// trusted proxy, say).
    pub ip: Option<String>,
}

impl LoginOptions {
    /// Options with remember-me set as given.
    #[must_use]
    pub fn remember_me(remember_me: bool) -> Self {
        Self {
            remember_me,
            ip: None,
        }
    }

    /// Records `ip` as the client address for the device listing.
    #[must_use]
    pub fn with_ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = Some(ip.into());
        self
    }
}

impl Session {
    /// Deletes the session now, before the response, and clears the cookie
    /// (S22). Replaying the old cookie afterwards finds nothing. Values
    /// inserted later in the same request start a new session.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the delete failed; the session is then
    /// unchanged, and the layer answers with its failure response whatever
    /// the handler returns, even under
    /// [`OnStoreFailure::ContinueAnonymous`](crate::OnStoreFailure::ContinueAnonymous): a sign-out never reports
    /// success without having happened.
    pub async fn destroy(&self) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        // The loaded record's key, or else the presented ID's: also when
        // its load failed or has not run, since the record may well exist
        // (deleting a missing record is cheap and succeeds).
        let (presented, _) = self.presented();
        let key = match (&state.current, presented) {
            (Some(c), _) => Some(c.key),
            (None, Presented::Id(id)) => Some(id.storage_key()),
            _ => None,
        };
        if let Some(key) = key {
            if let Err(e) = self
                .inner
                .ctx
                .engine
                .delete(&self.inner.ctx.config, &key)
                .await
            {
                return Err(Self::revocation_failed(&mut state, Arc::new(e), "delete"));
            }
            tracing::info!(event = "destroyed", "session destroyed");
            metrics::counter!("cloakroom_sessions_destroyed_total").increment(1);
        }
        let had_cookie =
            !matches!(presented, Presented::Absent) || state.cookie == CookieAction::Set;
        state.loaded = true;
        // The session is gone for sure now: writes later in this request
        // may start a new one.
        state.load_failed = None;
        state.current = None;
        state.pending = ChangeSet::default();
        state.cookie = if had_cookie {
            CookieAction::Remove
        } else {
            CookieAction::None
        };
        Ok(())
    }

    /// Signs out: the same as [`Session::destroy`].
    ///
    /// # Errors
    ///
    /// As [`Session::destroy`].
    pub async fn logout(&self) -> Result<(), SessionError> {
        self.destroy().await
    }

    /// Moves the session to a new ID, keeping its data, and deletes the old
    /// ID now. Call it whenever privilege changes (`login` does).
    ///
    /// If another request ended the session meanwhile (logout, revocation),
    /// it stays ended: nothing is filed under a new ID (S28), and later
    /// writes of this request start a new session.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the store failed; the session then keeps
    /// its old ID.
    pub async fn rotate(&self) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        Self::unreadable(&state)?;
        if state.current.is_none() {
            // Nothing stored yet: the first save will mint a fresh ID anyway.
            return Ok(());
        }
        let ctx = &self.inner.ctx;
        let record = state.pending_record(&ctx.config);
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

    /// Signs `user` in: rotates the ID (against fixation, S18), keeps the
    /// data, records the user, the time and the device.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the store failed; the visitor is then not
    /// signed in.
    pub async fn login(&self, user: impl Into<String>) -> Result<(), SessionError> {
        self.login_with(user, LoginOptions::default()).await
    }

    /// [`Session::login`] with options such as remember-me.
    ///
    /// A sign-in starts a new session lifetime: the absolute deadline runs
    /// from now, under the remember-me timeouts if asked for. Signing in as
    /// a *different* user than the one signed in clears the session's
    /// values first (what this request inserted before the call is kept):
    /// one user's data never carries over to the next. Signing in from an
    /// anonymous session keeps its values (a shopping cart, say). If another
    /// request ended the session while this one ran, the sign-in goes on in
    /// a fresh session that keeps none of the ended one's values (S28).
    ///
    /// # Errors
    ///
    /// As [`Session::login`] (also when the session could not be loaded,
    /// whatever the failure policy), [`SessionError::InvalidUser`] for an
    /// empty user or one over 1 KiB, [`SessionError::RecordTooLarge`] or
    /// (client-side) [`SessionError::CookieTooLarge`] when the signed-in
    /// record would not fit.
    pub async fn login_with(
        &self,
        user: impl Into<String>,
        options: LoginOptions,
    ) -> Result<(), SessionError> {
        let user = user.into();
        if user.is_empty() || user.len() > MAX_USER_BYTES {
            return Err(SessionError::InvalidUser);
        }
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        Self::unreadable(&state)?;
        let ctx = &self.inner.ctx;
        let now = ctx.config.clock.now();
        let (idle, absolute) = ctx.config.expiry.timeouts(options.remember_me);
        let new_principal = state
            .current
            .as_ref()
            .and_then(|c| c.record.user.as_deref())
            .is_some_and(|u| u != user);
        let mut record = state.pending_record(&ctx.config);
        if new_principal {
            // Nothing of the previous user's survives; this request's own
            // changes are re-applied.
            record.clear();
            state.pending.apply(&mut record);
        }
        record.created_at = now;
        // A new CSRF secret after sign-in: tokens read before it are void
        // (S47). Dropped from the record filed, not queued as a change, so
        // that a sign-in that fails leaves the session as it was.
        record.remove(CSRF_SECRET_KEY);
        // The new ID is as old as the sign-in (S21).
        record.remove(super::renewal::ISSUED_AT);
        record.idle_timeout = idle;
        record.idle_deadline = now.saturating_add(idle);
        record.absolute_deadline = now.saturating_add(absolute);
        record.remember_me = options.remember_me;
        record.user = Some(user);
        record.auth_time = Some(now);
        let visitor = &self.inner.visitor;
        record.device = Device {
            user_agent: visitor.user_agent_text(),
            ip: options.ip.or_else(|| visitor.ip.map(|ip| ip.to_string())),
        };
        if let (Some(limit), super::context::Engine::Server(m)) =
            (ctx.config.session_limit, &ctx.engine)
        {
            return self
                .login_within_limit(&mut state, m.store().as_ref(), &limit, record)
                .await;
        }
        ctx.engine
            .reissue(
                &ctx.config,
                visitor,
                &mut state,
                record,
                IfEnded::StartFresh,
            )
            .await
    }

    /// Files a sign-in under the user's lease, after applying the
    /// concurrent-session limit (S26).
    async fn login_within_limit(
        &self,
        state: &mut super::state::State,
        store: &dyn crate::store::SessionStore,
        limit: &crate::auth::SessionLimit,
        record: crate::record::Record,
    ) -> Result<(), SessionError> {
        use crate::auth::limit::{Lease, Verdict, enforce};
        let ctx = &self.inner.ctx;
        let clock = &ctx.config.clock;
        let user = record.user.clone().unwrap_or_default();
        let lease = match Lease::acquire(store, &user, limit, || clock.now()).await {
            Ok(lease) => lease,
            Err(e) => {
                let e = Arc::new(e);
                state.fail(&ctx.config, e.clone(), "session_limit");
                return Err(SessionError::Store(e));
            }
        };
        let replacing = state.current.as_ref().map(|c| c.key);
        let result = match enforce(store, &user, limit, replacing.as_ref(), clock.now()).await {
            Ok(Verdict::Admit) => {
                ctx.engine
                    .reissue(
                        &ctx.config,
                        &self.inner.visitor,
                        state,
                        record,
                        IfEnded::StartFresh,
                    )
                    .await
            }
            Ok(Verdict::Reject) => Err(SessionError::SessionLimitReached { max: limit.max() }),
            Err(e) => {
                let e = Arc::new(e);
                state.fail(&ctx.config, e.clone(), "session_limit");
                Err(SessionError::Store(e))
            }
        };
        lease.release(store, clock.now()).await;
        result
    }

    /// Signs the user out on every device: deletes all their server-side
    /// sessions (this one included), or, for client-side sessions, bumps
    /// their revocation epoch. The current session is destroyed too.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the session could not be loaded or the
    /// revocation failed, whatever the failure policy (the layer then
    /// answers with its failure response);
    /// [`SessionError::RevocationNotConfigured`] for client-side sessions
    /// without [`ClientSessions::with_revocation`](crate::client_side::ClientSessions::with_revocation).
    /// Nothing is signed out
    /// then, this device included.
    pub async fn logout_everywhere(&self) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        if let Some(e) = state.load_failed.clone() {
            return Err(Self::revocation_failed(&mut state, e, "logout_everywhere"));
        }
        let user = state.current.as_ref().and_then(|c| c.record.user.clone());
        if let Some(user) = user {
            match self
                .inner
                .ctx
                .engine
                .revoke_user(&self.inner.ctx.config, &user)
                .await
            {
                Ok(()) => {}
                Err(RevokeError::NotConfigured) => {
                    return Err(SessionError::RevocationNotConfigured);
                }
                Err(RevokeError::Store(e)) => {
                    return Err(Self::revocation_failed(
                        &mut state,
                        Arc::new(e),
                        "logout_everywhere",
                    ));
                }
            }
            tracing::info!(event = "revoked", "all sessions of a user revoked");
        }
        drop(state);
        self.destroy().await
    }
}
