//! Server-side sessions: the cookie holds a random ID, the record lives in
//! a [`SessionStore`] under the ID's hash.

use std::sync::Arc;

use http::HeaderValue;

use super::commit::{self, Committed, SaveLanes, Target, timed};
use super::error::SessionError;
use super::mode::{Mode, RevokeError};
use super::state::{CookieAction, Current, Failure, IfEnded, State, cookie_max_age};
use super::visitor::{Presented, Visitor, cookie_rejected};
use crate::config::SessionConfig;
use crate::cookie::{CookieLookup, find_cookie_in};
use crate::id::{LogTag, SessionId, StorageKey};
use crate::record::Record;
use crate::store::{SessionStore, StoreError};

/// How often a new ID is drawn after a collision.
const MAX_ID_ATTEMPTS: usize = 4;

/// Sessions in a store.
pub(crate) struct ServerMode {
    store: Arc<dyn SessionStore>,
    /// Group commit of this process's concurrent saves of one session.
    lanes: SaveLanes,
}

impl ServerMode {
    pub(crate) fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            lanes: SaveLanes::new(),
        }
    }

    /// The same store with its own save lanes.
    pub(crate) fn duplicate(&self) -> Self {
        Self::new(self.store.clone())
    }

    /// The store.
    pub(crate) fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn lanes(&self) -> &SaveLanes {
        &self.lanes
    }

    fn target(&self, cfg: &SessionConfig) -> Target<'_> {
        Target {
            store: &*self.store,
            lanes: &self.lanes,
            max_record_bytes: cfg.max_record_bytes,
        }
    }

    /// Files `record` under a freshly drawn ID: `rotate`d away from `old`,
    /// or `create`d. A colliding ID is never reused (S7): another is drawn.
    pub(super) async fn file_under_new_id(
        &self,
        cfg: &SessionConfig,
        old: Option<&StorageKey>,
        record: &Record,
    ) -> Result<(SessionId, StorageKey), StoreError> {
        for _ in 0..MAX_ID_ATTEMPTS {
            let id = (cfg.new_id)();
            let key = id.storage_key();
            let result = match old {
                Some(old) => {
                    timed(
                        "rotate",
                        self.store.rotate(old, &key, record, cfg.clock.now()),
                    )
                    .await
                }
                None => timed("create", self.store.create(&key, record, cfg.clock.now())).await,
            };
            match result {
                Ok(()) => return Ok((id, key)),
                Err(StoreError::Conflict) => {
                    tracing::warn!(
                        "new session id collided with an existing one; drawing another (S7)"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::other("could not draw an unused session id"))
    }

    /// The first save of a new session: a record under a fresh ID, never
    /// the one the visitor presented (S4).
    async fn create(
        &self,
        cfg: &SessionConfig,
        state: &mut State,
        mut record: Record,
    ) -> Result<(), StoreError> {
        self.target(cfg).check_size(&record)?;
        record.version = 1;
        let (id, key) = self.file_under_new_id(cfg, None, &record).await?;
        tracing::info!(event = "created", tag = %id.log_tag(), "session created");
        metrics::counter!("cloakroom_sessions_created_total").increment(1);
        state.current = Some(Current {
            id: Some(id),
            key,
            record,
        });
        state.cookie = CookieAction::Set;
        Ok(())
    }

    async fn save(&self, cfg: &SessionConfig, state: &mut State) -> Result<(), StoreError> {
        if state.load_failed.is_some() {
            // The cookie may name a valid session we could not read: never
            // replace it with a new one (no write, no cookie).
            tracing::warn!("session changes dropped: the session could not be loaded");
            return Ok(());
        }
        let Some(current) = &state.current else {
            let record = state.pending_record(cfg);
            if record.is_empty() {
                return Ok(());
            }
            return self.create(cfg, state, record).await;
        };
        let now = cfg.clock.now();
        let (key, base) = (current.key, &current.record);
        match commit::save(&self.target(cfg), key, base, &state.pending, now).await? {
            Committed::Saved(record) => {
                if let Some(c) = &mut state.current {
                    c.record = record;
                }
            }
            Committed::Gone => {
                // Ended by another request while this one ran: the changes
                // are dropped (S28). The cookie is left alone: after a
                // rotation the browser may already hold the new ID, which a
                // removal would delete.
                tracing::info!(
                    event = "revoked",
                    "session ended by another request; changes dropped"
                );
                state.current = None;
            }
        }
        Ok(())
    }

    /// Pushes the idle deadline forward, at most once per touch interval.
    async fn maybe_touch(&self, cfg: &SessionConfig, state: &State) {
        let Some(c) = &state.current else { return };
        let now = cfg.clock.now();
        if now.since(c.record.last_seen()) < cfg.expiry.touch_interval() {
            return;
        }
        let deadline = now.saturating_add(c.record.idle_timeout);
        metrics::counter!("cloakroom_touches_total").increment(1);
        match timed("touch", self.store.touch(&c.key, deadline, now)).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            // A failed touch costs the visitor at most one touch interval of
            // idle time; not worth failing a request that succeeded.
            Err(e) => tracing::warn!(error = %e, "session touch failed"),
        }
    }
}

impl Mode for ServerMode {
    fn presented(&self, cookies: &[HeaderValue], name: &str) -> (Presented, usize) {
        let presented = match find_cookie_in(cookies, name) {
            CookieLookup::Absent => Presented::Absent,
            CookieLookup::Duplicate => cookie_rejected("duplicate", "duplicate session cookies"),
            CookieLookup::Malformed => cookie_rejected("malformed", "session cookie is not ASCII"),
            CookieLookup::Found(v) => match SessionId::parse(v) {
                Ok(id) => Presented::Id(id),
                Err(e) => {
                    metrics::counter!("cloakroom_invalid_cookies_total", "reason" => "malformed")
                        .increment(1);
                    tracing::warn!(event = "invalid", reason = %e, tag = %LogTag::of(v.as_bytes()), "session cookie rejected");
                    Presented::Rejected
                }
            },
        };
        (presented, 1)
    }

    async fn load(
        &self,
        cfg: &SessionConfig,
        presented: &Presented,
        state: &mut State,
    ) -> Result<(), StoreError> {
        let Presented::Id(id) = presented else {
            if matches!(presented, Presented::Rejected) {
                // Clear the bad cookie unless this request sets a new one.
                state.cookie = CookieAction::Remove;
            }
            return Ok(());
        };
        let key = id.storage_key();
        let now = cfg.clock.now();
        match timed("load", self.store.load(&key, now)).await {
            Ok(Some(record)) if super::renewal::forward_of(&record).is_some() => {
                // A renewed ID within its grace (S21): the session it
                // moved to, if that still lives.
                if let (true, Some(target)) =
                    (record.is_live(now), super::renewal::forward_of(&record))
                {
                    state.current = self.follow_forward(target, now).await?;
                }
            }
            Ok(Some(record)) if record.is_live(now) => {
                state.current = Some(Current {
                    id: Some(id.clone()),
                    key,
                    record,
                });
            }
            Ok(Some(_)) => {
                // A store that did not judge by the `now` it was given (a
                // custom store with its own clock): our deadline wins (S19,
                // S20).
                tracing::info!(event = "expired", tag = %id.log_tag(), "session expired");
                metrics::counter!("cloakroom_sessions_expired_total").increment(1);
                state.cookie = CookieAction::Remove;
                let _ = self.store.delete(&key, now).await;
            }
            Ok(None) => {
                // Never issued, expired, or revoked: never adopt it (S4).
                // The cookie is left alone: the ID may just have been
                // rotated by a sign-in whose response reached the browser
                // first, and a removal here would sign that user out. A
                // write replaces it with a new ID anyway.
                tracing::warn!(event = "invalid", reason = "unknown session id", tag = %id.log_tag(), "session cookie rejected");
                state.invalid_cookie = true;
                metrics::counter!("cloakroom_invalid_cookies_total", "reason" => "unknown")
                    .increment(1);
            }
            Err(StoreError::Corrupt(e)) => {
                tracing::warn!(event = "invalid", reason = "corrupt record", error = %e, tag = %id.log_tag(), "session record unreadable; treating as absent");
                state.cookie = CookieAction::Remove;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    async fn delete(&self, cfg: &SessionConfig, key: &StorageKey) -> Result<(), StoreError> {
        let now = cfg.clock.now();
        if cfg.expiry.renewal().is_some() {
            // An ID renewed within its grace names its successor: a logout
            // through it ends that session too (S21, S22).
            if let Some(target) = timed("load", self.store.load(key, now))
                .await?
                .as_ref()
                .and_then(super::renewal::forward_of)
            {
                timed("delete", self.store.delete(&target, now)).await?;
            }
        }
        timed("delete", self.store.delete(key, now)).await
    }

    fn checks_inserts(&self) -> bool {
        // The record's size is checked when it is saved.
        false
    }

    fn admit(
        &self,
        _cfg: &SessionConfig,
        _state: &State,
        _name: &str,
        _bytes: &bytes::Bytes,
    ) -> Result<(), SessionError> {
        // The record's size is checked when it is saved (413 then).
        Ok(())
    }

    async fn reissue(
        &self,
        cfg: &SessionConfig,
        _visitor: &Visitor,
        state: &mut State,
        mut record: Record,
        if_ended: IfEnded,
    ) -> Result<(), SessionError> {
        let size = record.encoded_len();
        let limit = cfg.max_record_bytes;
        if size > limit {
            return Err(SessionError::RecordTooLarge { size, limit });
        }
        record.version = state.current.as_ref().map_or(1, |c| c.record.version + 1);
        loop {
            let old = state.current.as_ref().map(|c| c.key);
            match self.file_under_new_id(cfg, old.as_ref(), &record).await {
                Ok((id, key)) => {
                    tracing::info!(event = "rotated", tag = %id.log_tag(), "session id issued");
                    metrics::counter!("cloakroom_sessions_rotated_total").increment(1);
                    state.current = Some(Current {
                        id: Some(id),
                        key,
                        record,
                    });
                    state.pending = Default::default();
                    state.cookie = CookieAction::Set;
                    return Ok(());
                }
                Err(StoreError::NotFound) if old.is_some() => {
                    // The session was ended elsewhere (logout, revocation,
                    // expiry) while this request ran: never revive it under
                    // a new ID (S28).
                    tracing::info!(
                        event = "revoked",
                        "session ended by another request before its rotation"
                    );
                    state.current = None;
                    match if_ended {
                        IfEnded::Stop => return Ok(()),
                        IfEnded::StartFresh => {
                            // A sign-in still happens, in a new session that
                            // keeps none of the ended one's values.
                            record.clear();
                            state.pending.apply(&mut record);
                            record.version = 1;
                        }
                    }
                }
                Err(e) => {
                    let e = Arc::new(e);
                    state.fail(cfg, e.clone(), "rotate");
                    return Err(SessionError::Store(e));
                }
            }
        }
    }

    async fn revoke_user(&self, cfg: &SessionConfig, user: &str) -> Result<(), RevokeError> {
        let now = cfg.clock.now();
        timed("delete_by_user", self.store.delete_by_user(user, None, now))
            .await
            .map(drop)
            .map_err(RevokeError::Store)
    }

    async fn finish(
        &self,
        cfg: &SessionConfig,
        _presented: &Presented,
        state: &mut State,
        dirty: bool,
    ) {
        if !dirty {
            if state.loaded {
                self.maybe_touch(cfg, state).await;
                self.maybe_renew(cfg, state).await;
            }
            return;
        }
        if matches!(
            state.failure,
            Some(Failure::Store {
                revocation: true,
                ..
            })
        ) {
            // A sign-out that failed leaves the session in place: this
            // request's writes must not land in it while the client is told
            // the request failed.
            tracing::warn!("session changes dropped: the session could not be ended");
            return;
        }
        match self.save(cfg, state).await {
            Ok(()) => {}
            Err(StoreError::TooLarge { size, limit }) => {
                // The request asked for too much: 413, not an outage.
                state.too_large(SessionError::RecordTooLarge { size, limit }.to_string());
            }
            Err(e) => state.fail(cfg, Arc::new(e), "save"),
        }
        self.maybe_renew(cfg, state).await;
    }

    fn set_cookies(
        &self,
        cfg: &SessionConfig,
        _presented_chunks: usize,
        state: &mut State,
    ) -> Vec<HeaderValue> {
        let cookie = &cfg.cookie;
        match (state.cookie, &state.current) {
            (
                CookieAction::Set,
                Some(Current {
                    id: Some(id),
                    record,
                    ..
                }),
            ) => {
                let now = cfg.clock.now();
                match cookie.set_cookie(id.expose_secret(), cookie_max_age(record, now), now) {
                    Ok(v) => vec![v],
                    Err(e) => {
                        tracing::error!(error = %e, "session cookie could not be built");
                        Vec::new()
                    }
                }
            }
            (CookieAction::Remove | CookieAction::Set, None) => vec![cookie.removal_cookie()],
            _ => Vec::new(),
        }
    }
}
