//! What every request of one layer shares: the configuration and the mode
//! its sessions are kept in.

use http::HeaderValue;

use super::error::SessionError;
use super::mode::{Mode, RevokeError};
use super::sealed::SealedMode;
use super::server::ServerMode;
use super::state::{IfEnded, State};
use super::visitor::{Presented, Visitor};
use crate::config::{ConfigError, SessionConfig};
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::StoreError;

/// The mode of a layer's sessions: one of the [`Mode`] implementations,
/// chosen once when the layer is built (dispatched here, in one place).
pub(crate) enum Engine {
    Server(ServerMode),
    Sealed(SealedMode),
}

/// The shared configuration behind a [`SessionLayer`](crate::SessionLayer).
pub(crate) struct Context {
    pub(crate) config: SessionConfig,
    pub(crate) engine: Engine,
    /// The outcome of [`Context::validate`], kept for [`Context::check`]:
    /// axum applies a layer again for every request to a route whose state
    /// is filled in late, so the check must cost nothing the second time.
    checked: std::sync::OnceLock<Option<String>>,
}

impl Context {
    pub(crate) fn new(config: SessionConfig, engine: Engine) -> Self {
        Self {
            config,
            engine,
            checked: std::sync::OnceLock::new(),
        }
    }

    /// A copy with the same configuration and store (but its own save
    /// coordination), for a layer reconfigured while a clone shares this.
    pub(crate) fn duplicate(&self) -> Self {
        let engine = match &self.engine {
            Engine::Server(m) => Engine::Server(m.duplicate()),
            Engine::Sealed(m) => Engine::Sealed(m.duplicate()),
        };
        Self::new(self.config.clone(), engine)
    }

    /// Makes `clock` the layer's clock (and the sealed sessions').
    pub(crate) fn set_clock(&mut self, clock: std::sync::Arc<dyn crate::expiry::Clock>) {
        if let Engine::Sealed(m) = &mut self.engine {
            m.set_clock(clock.clone());
        }
        self.config.clock = clock;
    }

    /// Checks the configuration for its engine.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a cookie browsers would drop (S10), impossible
    /// timeouts, or client-side revocation on a volatile store.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Engine::Sealed(sealed) = &self.engine {
            if sealed.has_unaccepted_volatile_epochs() {
                return Err(ConfigError::VolatileRevocationStore);
            }
            if self.config.session_limit.is_some() {
                return Err(ConfigError::SessionLimit);
            }
        }
        self.config.validate()
    }

    /// Why the configuration is invalid, if it is; checked (and the
    /// insecure-cookie warning logged) once per context.
    pub(crate) fn check(&self) -> Option<&str> {
        self.checked
            .get_or_init(|| {
                let outcome = self.validate().err().map(|e| e.to_string());
                if outcome.is_none() && self.config.cookie.is_insecure_dev() {
                    tracing::warn!(
                        cookie = self.config.cookie.name(),
                        "session cookie is NOT Secure: development over plain HTTP only; never run this in production"
                    );
                }
                outcome
            })
            .as_deref()
    }
}

/// Runs `$call` on whichever mode the engine holds.
macro_rules! dispatch {
    ($engine:expr, $mode:ident => $call:expr) => {
        match $engine {
            Engine::Server($mode) => $call,
            Engine::Sealed($mode) => $call,
        }
    };
}

impl Mode for Engine {
    fn presented(&self, cookies: &[HeaderValue], name: &str) -> (Presented, usize) {
        dispatch!(self, m => m.presented(cookies, name))
    }

    async fn load(
        &self,
        cfg: &SessionConfig,
        presented: &Presented,
        state: &mut State,
    ) -> Result<(), StoreError> {
        dispatch!(self, m => m.load(cfg, presented, state).await)
    }

    async fn delete(&self, cfg: &SessionConfig, key: &StorageKey) -> Result<(), StoreError> {
        dispatch!(self, m => m.delete(cfg, key).await)
    }

    fn checks_inserts(&self) -> bool {
        dispatch!(self, m => m.checks_inserts())
    }

    fn admit(
        &self,
        cfg: &SessionConfig,
        state: &State,
        name: &str,
        bytes: &bytes::Bytes,
    ) -> Result<(), SessionError> {
        dispatch!(self, m => m.admit(cfg, state, name, bytes))
    }

    async fn reissue(
        &self,
        cfg: &SessionConfig,
        visitor: &Visitor,
        state: &mut State,
        record: Record,
        if_ended: IfEnded,
    ) -> Result<(), SessionError> {
        dispatch!(self, m => m.reissue(cfg, visitor, state, record, if_ended).await)
    }

    async fn revoke_user(&self, cfg: &SessionConfig, user: &str) -> Result<(), RevokeError> {
        dispatch!(self, m => m.revoke_user(cfg, user).await)
    }

    async fn finish(
        &self,
        cfg: &SessionConfig,
        presented: &Presented,
        state: &mut State,
        dirty: bool,
    ) {
        dispatch!(self, m => m.finish(cfg, presented, state, dirty).await);
    }

    fn set_cookies(
        &self,
        cfg: &SessionConfig,
        presented_chunks: usize,
        state: &mut State,
    ) -> Vec<HeaderValue> {
        dispatch!(self, m => m.set_cookies(cfg, presented_chunks, state))
    }
}
