//! Loading the session on first use, and the failure policy for what goes
//! wrong while doing so.

use std::sync::Arc;

use super::error::SessionError;
use super::handle::Session;
use super::mode::Mode;
use super::state::{Failure, State};
use crate::config::OnStoreFailure;
use crate::store::StoreError;

impl Session {
    /// Loads the record on first use.
    pub(super) async fn ensure_loaded(&self, state: &mut State) -> Result<(), SessionError> {
        if state.loaded {
            // A failed load stays failed for the whole request: a second
            // call must not find "no session" and let a write replace the
            // one the cookie names.
            return match &state.load_failed {
                Some(e) if !self.continues_anonymous() => Err(SessionError::Store(e.clone())),
                _ => Ok(()),
            };
        }
        state.loaded = true;
        let ctx = &self.inner.ctx;
        let (presented, _) = self.presented();
        match ctx.engine.load(&ctx.config, presented, state).await {
            Ok(()) => Ok(()),
            Err(e) => self.load_failed(state, e, "load"),
        }
    }

    pub(super) fn continues_anonymous(&self) -> bool {
        matches!(
            self.inner.ctx.config.on_failure,
            OnStoreFailure::ContinueAnonymous
        )
    }

    /// Records a failed load (kept whatever the policy) and applies the
    /// failure policy.
    fn load_failed(
        &self,
        state: &mut State,
        e: StoreError,
        op: &'static str,
    ) -> Result<(), SessionError> {
        let e = Arc::new(e);
        state.load_failed = Some(e.clone());
        if self.continues_anonymous() {
            tracing::warn!(error = %e, op, "session store failed; continuing as anonymous, and this request's writes are dropped");
            return Ok(());
        }
        tracing::error!(error = %e, op, "session store failed");
        state.failure = Some(Failure::Store {
            error: e.clone(),
            revocation: false,
        });
        Err(SessionError::Store(e))
    }

    /// The error for an operation that must know the stored session
    /// (sign-in, rotation, revocation) after its load failed, whatever the
    /// failure policy.
    pub(super) fn unreadable(state: &State) -> Result<(), SessionError> {
        match &state.load_failed {
            Some(e) => Err(SessionError::Store(e.clone())),
            None => Ok(()),
        }
    }

    /// A revocation (logout, log-out-everywhere) that could not be carried
    /// out: always an error to the caller, and always a failure response,
    /// even under [`OnStoreFailure::ContinueAnonymous`]: a sign-out must
    /// never look like it worked.
    pub(super) fn revocation_failed(
        state: &mut State,
        e: Arc<StoreError>,
        op: &'static str,
    ) -> SessionError {
        tracing::error!(error = %e, op, "session revocation failed; the session is NOT ended");
        state.failure = Some(Failure::Store {
            error: e.clone(),
            revocation: true,
        });
        SessionError::Store(e)
    }
}
