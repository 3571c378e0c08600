//! Sealed-cookie sessions: the whole record travels in the cookie,
//! encrypted and authenticated ([`ClientSessions`]); no store on the request
//! path, except the revocation epochs when configured.

use http::HeaderValue;

use super::error::SessionError;
use super::mode::{Mode, RevokeError};
use super::state::{CookieAction, Current, IfEnded, State, cookie_max_age};
use super::visitor::{Presented, Visitor, cookie_rejected};
use crate::client_side::{self, ClientSessions, EpochCheck};
use crate::config::SessionConfig;
use crate::id::{LogTag, StorageKey};
use crate::record::Record;
use crate::store::StoreError;

/// Sessions sealed in their cookies.
pub(crate) struct SealedMode {
    client: ClientSessions,
}

impl SealedMode {
    pub(crate) fn new(client: ClientSessions) -> Self {
        Self { client }
    }

    pub(crate) fn duplicate(&self) -> Self {
        Self::new(self.client.clone())
    }

    /// Makes `clock` the sessions' clock (for `revoke_user`).
    pub(crate) fn set_clock(&mut self, clock: std::sync::Arc<dyn crate::expiry::Clock>) {
        self.client.clock = clock;
    }

    /// Whether revocation is configured on a volatile store without having
    /// been accepted as such.
    pub(crate) fn has_unaccepted_volatile_epochs(&self) -> bool {
        self.client.has_unaccepted_volatile_epochs()
    }

    /// Makes `record` the session, to be sealed into a new cookie when the
    /// response is ready.
    fn adopt(
        &self,
        cfg: &SessionConfig,
        state: &mut State,
        mut record: Record,
    ) -> Result<(), SessionError> {
        // Refuse now what the response could not carry (S12).
        self.client
            .check_fits(cfg.cookie.name(), &record)
            .map_err(|size| SessionError::CookieTooLarge { size })?;
        record.version = state.current.as_ref().map_or(1, |c| c.record.version + 1);
        state.current = Some(Current {
            id: None,
            key: handle_key(&record),
            record,
        });
        state.pending = Default::default();
        state.cookie = CookieAction::Set;
        tracing::info!(event = "rotated", "client-side session re-issued");
        Ok(())
    }
}

impl Mode for SealedMode {
    fn presented(&self, cookies: &[HeaderValue], name: &str) -> (Presented, usize) {
        match client_side::presented(cookies, name, self.client.max_chunks) {
            client_side::Presented::Absent => (Presented::Absent, 1),
            client_side::Presented::Sealed { text, chunks } => (Presented::Sealed(text), chunks),
            client_side::Presented::Rejected { chunks } => (
                cookie_rejected("malformed", "malformed or duplicated session cookie"),
                chunks,
            ),
        }
    }

    /// Opens the sealed cookie (S31-S33) and checks its epoch (S39).
    async fn load(
        &self,
        cfg: &SessionConfig,
        presented: &Presented,
        state: &mut State,
    ) -> Result<(), StoreError> {
        let text = match presented {
            Presented::Sealed(text) => text,
            Presented::Rejected => {
                state.cookie = CookieAction::Remove;
                return Ok(());
            }
            Presented::Absent | Presented::Id(_) => return Ok(()),
        };
        let opened = match self.client.open(cfg.cookie.name(), text) {
            Ok(o) => o,
            Err(why) => {
                tracing::warn!(event = "invalid", reason = why.reason(), tag = %LogTag::of(text.as_bytes()), "session cookie rejected");
                metrics::counter!("cloakroom_invalid_cookies_total", "reason" => "unopenable")
                    .increment(1);
                state.cookie = CookieAction::Remove;
                state.invalid_cookie = true;
                return Ok(());
            }
        };
        if !opened.record.is_live(cfg.clock.now()) {
            tracing::info!(event = "expired", "client-side session expired");
            metrics::counter!("cloakroom_sessions_expired_total").increment(1);
            state.cookie = CookieAction::Remove;
            return Ok(());
        }
        if let (Some(user), Some(epochs)) = (&opened.record.user, self.client.epochs()) {
            match epochs.check(user, opened.epoch, cfg.clock.now()).await? {
                EpochCheck::Current => {}
                verdict => {
                    tracing::info!(
                        event = "revoked",
                        reason = verdict.reason(),
                        "client-side session refused by its revocation epoch"
                    );
                    state.cookie = CookieAction::Remove;
                    return Ok(());
                }
            }
        }
        state.epoch = opened.epoch;
        state.reseal = opened.needs_reseal;
        state.current = Some(Current {
            id: None,
            key: handle_key(&opened.record),
            record: opened.record,
        });
        Ok(())
    }

    async fn delete(&self, _cfg: &SessionConfig, _key: &StorageKey) -> Result<(), StoreError> {
        // Nothing is stored: clearing the cookie is all a logout can do
        // here (see the client_side module docs on replay).
        Ok(())
    }

    fn checks_inserts(&self) -> bool {
        // A sealed record must still fit its cookies.
        true
    }

    fn admit(
        &self,
        cfg: &SessionConfig,
        state: &State,
        name: &str,
        bytes: &bytes::Bytes,
    ) -> Result<(), SessionError> {
        // A sealed record must fit its cookie(s): refuse now, with a typed
        // error, rather than fail after the handler (S12).
        let mut candidate = state.pending_record(cfg);
        // Keys were checked by the caller.
        let _ = candidate.insert_raw(name.to_owned(), bytes.clone());
        self.client
            .check_fits(cfg.cookie.name(), &candidate)
            .map_err(|size| SessionError::CookieTooLarge { size })
    }

    async fn reissue(
        &self,
        cfg: &SessionConfig,
        _visitor: &Visitor,
        state: &mut State,
        record: Record,
        if_ended: IfEnded,
    ) -> Result<(), SessionError> {
        if let (IfEnded::StartFresh, Some(epochs), Some(user)) =
            (if_ended, self.client.epochs(), &record.user)
        {
            // A sign-in reads past the cache: a stale cached epoch must not
            // seal a fresh sign-in under an epoch that is already revoked.
            match epochs.for_login(user, cfg.clock.now()).await {
                Ok(epoch) => state.epoch = epoch,
                Err(e) => {
                    let e = std::sync::Arc::new(e);
                    state.fail(cfg, e.clone(), "epoch");
                    return Err(SessionError::Store(e));
                }
            }
        }
        // No ID to rotate: a fresh seal (new nonce) is the new token.
        self.adopt(cfg, state, record)
    }

    async fn revoke_user(&self, cfg: &SessionConfig, user: &str) -> Result<(), RevokeError> {
        self.client
            .revoke_user_at(user, cfg.clock.now())
            .await
            .map(drop)
            .map_err(|e| match e {
                client_side::RevokeError::NotConfigured => RevokeError::NotConfigured,
                client_side::RevokeError::Store(e) => RevokeError::Store(e),
            })
    }

    async fn finish(
        &self,
        cfg: &SessionConfig,
        presented: &Presented,
        state: &mut State,
        dirty: bool,
    ) {
        if !state.loaded {
            // Untouched: the cookie is not even opened (S8, and /plain
            // costs no crypto).
            return;
        }
        if state.load_failed.is_some() {
            // The cookie could not be checked: a new one must not replace
            // it (it may be valid). The changes are dropped.
            if dirty {
                tracing::warn!("session changes dropped: the session could not be loaded");
            }
            return;
        }
        let now = cfg.clock.now();
        let touch_due = state
            .current
            .as_ref()
            .is_some_and(|c| now.since(c.record.last_seen()) >= cfg.expiry.touch_interval());
        if !(dirty || state.reseal || touch_due || state.cookie == CookieAction::Set) {
            return;
        }
        let mut record = state.pending_record(cfg);
        if record.is_empty() && record.user.is_none() {
            // Nothing worth a cookie (S8).
            state.current = None;
            state.cookie = if matches!(presented, Presented::Absent) {
                CookieAction::None
            } else {
                CookieAction::Remove
            };
            return;
        }
        if dirty || touch_due {
            record.version += 1;
            record.idle_deadline = now.saturating_add(record.idle_timeout);
        }
        if let Err(size) = self.client.check_fits(cfg.cookie.name(), &record) {
            // `insert` refuses this already; a record that still does not
            // fit is refused as a whole rather than silently not sent.
            state.too_large(SessionError::CookieTooLarge { size }.to_string());
            return;
        }
        state.current = Some(Current {
            id: None,
            key: handle_key(&record),
            record,
        });
        state.pending = Default::default();
        state.cookie = CookieAction::Set;
    }

    /// One `Set-Cookie` per chunk, plus removals of chunks the request
    /// carried that the response no longer needs.
    fn set_cookies(
        &self,
        cfg: &SessionConfig,
        presented_chunks: usize,
        state: &mut State,
    ) -> Vec<HeaderValue> {
        let cookie = &cfg.cookie;
        let name = cookie.name();
        let mut out = Vec::new();
        let mut sent = 0;
        match (state.cookie, &state.current) {
            (CookieAction::Set, Some(c)) => {
                let now = cfg.clock.now();
                let max_age = cookie_max_age(&c.record, now);
                let values = match self.client.seal(name, &c.record, state.epoch, now) {
                    Ok(values) => values,
                    Err(client_side::SealFailure::TooLarge(size)) => {
                        // Checked before; kept so that no path sends a 2xx
                        // without the cookie it promised (S12).
                        state.too_large(SessionError::CookieTooLarge { size }.to_string());
                        return Vec::new();
                    }
                    Err(client_side::SealFailure::Crypto) => {
                        tracing::error!(
                            "sealing the session failed (random number generator); cookie not sent"
                        );
                        state.failure = Some(super::state::Failure::Unsealable);
                        return Vec::new();
                    }
                };
                for (i, value) in values.iter().enumerate() {
                    let chunk = cookie.clone().with_name(client_side::chunk_name(name, i));
                    match chunk.set_cookie(value, max_age, now) {
                        Ok(v) => out.push(v),
                        Err(e) => {
                            tracing::error!(error = %e, "session cookie could not be built");
                            state.failure = Some(super::state::Failure::Unsealable);
                            return Vec::new();
                        }
                    }
                }
                sent = values.len();
            }
            (CookieAction::Remove | CookieAction::Set, None) => out.push(cookie.removal_cookie()),
            _ => return out,
        }
        for i in sent.max(1)..presented_chunks {
            out.push(
                cookie
                    .clone()
                    .with_name(client_side::chunk_name(name, i))
                    .removal_cookie(),
            );
        }
        out
    }
}

/// A sealed session's stable handle for device listings, derived from its
/// creation time and user. Never sent, never a store key.
fn handle_key(record: &Record) -> StorageKey {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"cloakroom/client-handle/v1\0");
    h.update(record.created_at.as_millis().to_be_bytes());
    h.update(record.user.as_deref().unwrap_or_default().as_bytes());
    let handle: [u8; 32] = h.finalize().into();
    // The key the former stand-in ID hashed to: listings keep their handles.
    StorageKey(Sha256::digest(handle).into())
}
