//! [`Session`]: the handle a request handler uses, and its value API.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use super::context::Context;
use super::error::SessionError;
use super::mode::Mode;
use super::state::State;
use super::visitor::{Presented, Visitor};
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::{self, MAX_VALUE_NAME_BYTES};

/// Longest principal `login` accepts.
pub const MAX_USER_BYTES: usize = 1024;

/// The reserved value key of the session's CSRF secret (S47). Like every
/// key starting with a control character, handlers cannot read or write
/// it through the value API; `login` drops it so that a new secret is made
/// after sign-in.
pub(crate) const CSRF_SECRET_KEY: &str = "\u{1}cloakroom.csrf";

/// Public facts about the current session, for "signed in since" displays.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// When the session began (sign-in resets it).
    pub created_at: Timestamp,
    /// When it was last active.
    pub last_seen: Timestamp,
    /// When it ends if unused.
    pub idle_expires_at: Timestamp,
    /// When it ends regardless.
    pub absolute_expires_at: Timestamp,
    /// The signed-in user.
    pub user: Option<String>,
    /// When the user last authenticated.
    pub auth_time: Option<Timestamp>,
    /// Whether this is a remember-me session.
    pub remember_me: bool,
    /// A non-secret handle for this session in device listings.
    pub handle: String,
}

/// The session of one request. Get it with the axum extractor or from the
/// request extensions.
///
/// A `Session` is cheap to clone (clones share one state) and does nothing
/// until used: the record is loaded on the first read, and writes go into a
/// per-key change set that the layer saves after the handler returns.
///
/// # Saving
///
/// After the response is built the layer calls the session's `finish`:
///
/// * nothing was changed: no write, no cookie; a session that was read gets
///   its idle deadline pushed forward at most once per touch interval;
/// * values were changed: the change set is applied to the loaded record and
///   saved with compare-and-swap on its version. If another request saved
///   first, the record is reloaded and this request's changes re-applied key
///   by key (last writer wins per key, not per record), a few times at most.
///   Saves of one session that overlap within a process are committed
///   together: their change sets are applied in arrival order and written
///   with a single compare-and-swap, so a burst of writes to one session
///   costs a few store round trips, not one each (a change set that would
///   make the record too large fails on its own);
/// * a new visitor's first write creates a record under a fresh ID, never the
///   ID the visitor presented (S4), retrying on the (astronomically rare)
///   collision instead of overwriting (S7);
/// * a 5xx response saves no values (the handler failed half-way), though
///   a login or logout that already happened is still reflected in the
///   cookie.
///
/// `destroy`, `logout`, `rotate` and `login` write at once, before the
/// handler goes on, so they win over saves in flight on other requests: a
/// save racing a destroy finds the record gone and is dropped, never
/// resurrecting the session (S28).
///
///
/// ```
/// # async fn handler(session: cloakroom::Session) -> Result<String, cloakroom::SessionError> {
/// let visits: u64 = session.get("visits").await?.unwrap_or(0);
/// session.insert("visits", &(visits + 1)).await?;
/// Ok(format!("visit number {}", visits + 1))
/// # }
/// ```
#[derive(Clone)]
pub struct Session {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) ctx: Arc<Context>,
    pub(super) visitor: Visitor,
    pub(super) state: Mutex<State>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    /// The session for a request with these headers. Never touches the
    /// store: a malformed cookie is rejected on first use (S5, S16), a
    /// well-formed one is looked up then.
    pub(crate) fn from_headers(ctx: Arc<Context>, headers: &HeaderMap, ip: Option<IpAddr>) -> Self {
        Self {
            inner: Arc::new(Inner {
                ctx,
                visitor: Visitor::of(headers, ip),
                state: Mutex::new(State::new()),
            }),
        }
    }

    /// What the request's cookies hold, parsed on first call, and how many
    /// chunk cookies it carried.
    pub(super) fn presented(&self) -> &(Presented, usize) {
        let ctx = &self.inner.ctx;
        self.inner
            .visitor
            .presented(|cookies| ctx.engine.presented(cookies, ctx.config.cookie.name()))
    }

    /// Whether the request presented a session cookie at all (usable or
    /// not), without touching the store: the CSRF layer's test for "this
    /// request carries credentials".
    pub(crate) fn presents_cookie(&self) -> bool {
        !matches!(self.presented().0, Presented::Absent)
    }

    /// Reads a value.
    ///
    /// # Errors
    ///
    /// [`SessionError::Decode`] if the stored value is not a `T`;
    /// [`SessionError::Store`] if the record could not be loaded.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        let raw = match state.pending.changes.get(key) {
            Some(change) => change.clone(),
            None if state.pending.cleared => None,
            None => state
                .current
                .as_ref()
                .and_then(|c| c.record.get_raw(key).cloned()),
        };
        raw.map(|b| record::decode_value(&b))
            .transpose()
            .map_err(|source| SessionError::Decode {
                key: key.to_owned(),
                source,
            })
    }

    /// Writes a value. Nothing reaches the store until the response is
    /// ready.
    ///
    /// # Errors
    ///
    /// [`SessionError::InvalidKey`], [`SessionError::Encode`],
    /// [`SessionError::ValueTooLarge`] or [`SessionError::ValueTooDeep`];
    /// client-side, [`SessionError::CookieTooLarge`] or
    /// [`SessionError::Store`] when the cookie's revocation epoch cannot be
    /// checked. The session is left unchanged.
    pub async fn insert<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), SessionError> {
        check_key(key)?;
        self.insert_unchecked(key, value).await
    }

    /// [`Session::insert`] without the key check: for cloakroom's own
    /// reserved keys (the CSRF secret).
    pub(crate) async fn insert_unchecked<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), SessionError> {
        let bytes = record::encode_value(value).map_err(|source| SessionError::Encode {
            key: key.to_owned(),
            source,
        })?;
        let limit = self.inner.ctx.config.max_value_bytes;
        if bytes.len() > limit {
            return Err(SessionError::ValueTooLarge {
                key: key.to_owned(),
                size: bytes.len(),
                limit,
            });
        }
        // What cannot be read back must not be written: a record holding
        // it would fail every later read (S37).
        if record::check_value_depth(&bytes).is_err() {
            return Err(SessionError::ValueTooDeep {
                key: key.to_owned(),
                limit: record::MAX_VALUE_DEPTH,
            });
        }
        let mut state = self.inner.state.lock().await;
        let ctx = &self.inner.ctx;
        if ctx.engine.checks_inserts() {
            // The mode must see the record to admit the value: load first,
            // so a failed load leaves the change set untouched.
            self.ensure_loaded(&mut state).await?;
            ctx.engine.admit(&ctx.config, &state, key, &bytes)?;
        }
        state.pending.changes.insert(key.to_owned(), Some(bytes));
        Ok(())
    }

    /// Removes a value.
    ///
    /// # Errors
    ///
    /// [`SessionError::InvalidKey`] for an empty or over-long key.
    pub async fn remove(&self, key: &str) -> Result<(), SessionError> {
        check_key(key)?;
        self.inner
            .state
            .lock()
            .await
            .pending
            .changes
            .insert(key.to_owned(), None);
        Ok(())
    }

    /// Removes every value; the session (and sign-in) stays.
    pub async fn clear(&self) {
        let mut state = self.inner.state.lock().await;
        state.pending.changes.clear();
        state.pending.cleared = true;
    }

    /// The keys present, after this request's changes.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the record could not be loaded.
    pub async fn keys(&self) -> Result<Vec<String>, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        let mut keys: Vec<String> = if state.pending.cleared {
            Vec::new()
        } else {
            state
                .current
                .as_ref()
                .map(|c| {
                    c.record
                        .keys()
                        // cloakroom's own bookkeeping (reserved keys) is
                        // not the application's data.
                        .filter(|k| !k.starts_with(char::is_control))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        // cloakroom's own bookkeeping (the CSRF secret) is not the
        // handler's data.
        keys.retain(|k| !is_reserved(k));
        for (k, change) in &state.pending.changes {
            match change {
                _ if is_reserved(k) => {}
                Some(_) if !keys.contains(k) => keys.push(k.clone()),
                None => keys.retain(|x| x != k),
                Some(_) => {}
            }
        }
        // Flash messages are read through `Session::flash`.
        keys.retain(|k| !super::flash_slots::is_reserved(k));
        keys.sort();
        Ok(keys)
    }

    /// The signed-in user, if any.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the record could not be loaded.
    pub async fn user(&self) -> Result<Option<String>, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        Ok(state.current.as_ref().and_then(|c| c.record.user.clone()))
    }

    /// Facts about the session, or `None` for a visitor without one.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the record could not be loaded.
    pub async fn info(&self) -> Result<Option<SessionInfo>, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        Ok(state.current.as_ref().map(|c| SessionInfo {
            created_at: c.record.created_at,
            last_seen: c.record.last_seen(),
            idle_expires_at: c.record.idle_deadline,
            absolute_expires_at: c.record.absolute_deadline,
            user: c.record.user.clone(),
            auth_time: c.record.auth_time,
            remember_me: c.record.remember_me,
            handle: self.inner.ctx.config.handle_key.handle(&c.key),
        }))
    }

    /// The session's storage key, if it has a record (for per-user
    /// operations such as "log out my other devices").
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the record could not be loaded.
    pub async fn storage_key(&self) -> Result<Option<StorageKey>, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        Ok(state.current.as_ref().map(|c| c.key))
    }
}

/// Keys starting with a control character are reserved for cloakroom's own
/// bookkeeping (the tiered store's cache marker, the CSRF secret).
fn is_reserved(key: &str) -> bool {
    key.starts_with(char::is_control)
}

fn check_key(key: &str) -> Result<(), SessionError> {
    if key.is_empty() || key.len() > MAX_VALUE_NAME_BYTES || is_reserved(key) {
        return Err(SessionError::InvalidKey);
    }
    Ok(())
}
