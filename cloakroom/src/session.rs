//! [`Session`]: the handle a request handler uses.
//!
//! A `Session` is cheap to clone (clones share one state) and does nothing
//! until used: the record is loaded on the first read, and writes go into a
//! per-key change set that the layer saves after the handler returns.
//!
//! # Saving
//!
//! After the response is built the layer calls the session's `finish`:
//!
//! * nothing was changed: no write, no cookie; a session that was read gets
//!   its idle deadline pushed forward at most once per touch interval;
//! * values were changed: the change set is applied to the loaded record and
//!   saved with compare-and-swap on its version. If another request saved
//!   first, the record is reloaded and this request's changes re-applied key
//!   by key (last writer wins per key, not per record), a few times at most.
//!   Saves of one session that overlap within a process are committed
//!   together: their change sets are applied in arrival order and written
//!   with a single compare-and-swap, so a burst of writes to one session
//!   costs a few store round trips, not one each (a change set that would
//!   make the record too large fails on its own);
//! * a new visitor's first write creates a record under a fresh ID, never the
//!   ID the visitor presented (S4), retrying on the (astronomically rare)
//!   collision instead of overwriting (S7);
//! * a 5xx response saves no values (the handler failed half-way), though
//!   a login or logout that already happened is still reflected in the
//!   cookie.
//!
//! `destroy`, `logout`, `rotate` and `login` write at once, before the
//! handler goes on, so they win over saves in flight on other requests: a
//! save racing a destroy finds the record gone and is dropped, never
//! resurrecting the session (S28).

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, oneshot};

use crate::client_side::{self, ClientSessions};
use crate::config::{Backend, Context, OnStoreFailure};
use crate::cookie::{CookieLookup, RawCookies, find_cookie_in};
use crate::expiry::Timestamp;
use crate::id::{LogTag, SessionId, StorageKey};
use crate::record::{self, DecodeError, Device, MAX_KEY_BYTES, Record};
use crate::save_lanes::{self, ChangeSet, Lane, Saved, Waiter};
use crate::store::{SessionStore, StoreError};

/// How often a save is retried after a version conflict. Each retry is a
/// reload plus a per-key merge, so even 64 requests writing one session at
/// once all land.
const MAX_SAVE_ATTEMPTS: u32 = 64;
/// Longest principal `login` accepts.
pub const MAX_USER_BYTES: usize = 1024;
/// How often a new ID is drawn after a collision.
const MAX_ID_ATTEMPTS: usize = 4;

/// An error from a [`Session`] method.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed. The layer answers with its
    /// [`OnStoreFailure`] response, whatever the handler returns.
    #[error(transparent)]
    Store(Arc<StoreError>),
    /// A stored value does not deserialize into the requested type. The
    /// stored value is left as it was.
    #[error("session value {key:?} could not be read: {source}")]
    Decode {
        /// The key asked for.
        key: String,
        /// Why it failed.
        #[source]
        source: DecodeError,
    },
    /// The value could not be serialized.
    #[error("session value {key:?} could not be serialized: {source}")]
    Encode {
        /// The key written.
        key: String,
        /// Why it failed.
        #[source]
        source: DecodeError,
    },
    /// The encoded value is larger than the configured limit.
    #[error(
        "session value {key:?} is {size} bytes, over the {limit}-byte limit; keep large data in your database and its id in the session"
    )]
    ValueTooLarge {
        /// The key written.
        key: String,
        /// The encoded size.
        size: usize,
        /// The limit ([`SessionConfig::with_max_value_bytes`](crate::SessionConfig::with_max_value_bytes)).
        limit: usize,
    },
    /// The key is empty, longer than 256 bytes, or starts with a control
    /// character (reserved).
    #[error("session keys must be 1 to 256 bytes long and not start with a control character")]
    InvalidKey,
    /// Client-side sessions: the record would no longer fit its cookie(s).
    /// The value was not inserted.
    #[error(
        "the session would be {size} bytes sealed, more than its cookies hold; store less or enable chunking"
    )]
    CookieTooLarge {
        /// The estimated sealed size.
        size: usize,
    },
    /// The user passed to `login` is empty or longer than 1 KiB.
    #[error("the signed-in user must be 1 to {MAX_USER_BYTES} bytes long")]
    InvalidUser,
    /// The value nests deeper than records can be read back
    /// ([`MAX_VALUE_DEPTH`](crate::record::MAX_VALUE_DEPTH)). The value was
    /// not inserted.
    #[error("session value {key:?} nests deeper than {limit} levels; flatten it")]
    ValueTooDeep {
        /// The key written.
        key: String,
        /// The nesting limit.
        limit: usize,
    },
    /// The record would exceed the configured size limit
    /// ([`SessionConfig::with_max_record_bytes`](crate::SessionConfig::with_max_record_bytes));
    /// nothing was written.
    #[error(
        "the session record would be {size} bytes, over the {limit}-byte limit; keep large data in your database and its id in the session"
    )]
    RecordTooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// [`Session::logout_everywhere`] on client-side sessions without
    /// revocation configured: the other devices' cookies cannot be ended.
    /// Nothing was changed; configure
    /// [`ClientSessions::with_revocation`](crate::client_side::ClientSessions::with_revocation),
    /// or call [`Session::logout`] to sign out this device only.
    #[error(
        "cannot sign out other devices: client-side revocation is not configured (ClientSessions::with_revocation)"
    )]
    RevocationNotConfigured,
}

/// What the request presented.
enum Incoming {
    /// No session cookie.
    Absent,
    /// A well-formed ID, not yet checked against the store.
    Id(SessionId),
    /// A client-side sealed value, not yet opened.
    Sealed(String),
    /// A cookie was there but is unusable (malformed or duplicated).
    Rejected,
}

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

struct Current {
    id: SessionId,
    key: StorageKey,
    record: Record,
}

enum CookieAction {
    None,
    Set,
    Remove,
}

struct State {
    loaded: bool,
    /// Client-side: the revocation epoch the session was sealed under, and
    /// whether it must be re-sealed (older key, or a touch).
    epoch: u64,
    reseal: bool,
    current: Option<Current>,
    /// This request's changes to the values, not yet saved.
    pending: ChangeSet,
    cookie: CookieAction,
    /// The load (or the client-side epoch check) failed, whatever the
    /// failure policy: nothing this request writes may replace a session it
    /// could not read (its cookie may name a valid one).
    load_failed: Option<Arc<StoreError>>,
    /// What the layer must answer instead of the handler's response.
    failure: Option<Failure>,
    finished: bool,
}

/// What a rotation does when the store says the session has ended.
#[derive(Clone, Copy)]
enum IfEnded {
    /// Nothing more: the session is gone (`rotate`).
    Stop,
    /// Go on in a fresh session without the ended one's values (`login`).
    StartFresh,
}

/// Why the layer replaces the handler's response.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The store failed. `revocation`: it was a logout or revocation that
    /// could not be carried out, which is answered as a failure even under
    /// [`OnStoreFailure::ContinueAnonymous`].
    Store {
        error: Arc<StoreError>,
        revocation: bool,
    },
    /// The session's changes are too large to be kept: over the record
    /// limit or, client-side, more than its cookies hold (413).
    TooLarge(String),
    /// The client-side cookie could not be sealed (500).
    Unsealable,
}

/// The session of one request. Get it with the axum extractor or from the
/// request extensions; see the [module docs](self) for when it reads and
/// writes the store.
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
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<Context>,
    /// The request's `Cookie` headers, parsed on first use: a request that
    /// never touches its session pays nothing for them.
    cookies: RawCookies,
    /// What the cookies held, and (client-side) how many chunk cookies the
    /// request carried, so that a smaller response can clear the rest.
    incoming: OnceLock<(Incoming, usize)>,
    /// The raw `User-Agent`, turned into text only at sign-in.
    user_agent: Option<HeaderValue>,
    ip: Option<IpAddr>,
    state: Mutex<State>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// What [`Session::finish`] tells the layer to do with the response.
pub(crate) struct Outcome {
    pub(crate) set_cookies: Vec<HeaderValue>,
    pub(crate) failure: Option<Failure>,
}

impl Session {
    /// The session for a request with these headers. Never touches the
    /// store: a malformed cookie is rejected here (S5, S16), a well-formed
    /// one is looked up on first use.
    pub(crate) fn from_headers(ctx: Arc<Context>, headers: &HeaderMap, ip: Option<IpAddr>) -> Self {
        Self {
            inner: Arc::new(Inner {
                ctx,
                cookies: RawCookies::of(headers),
                incoming: OnceLock::new(),
                user_agent: headers.get(http::header::USER_AGENT).cloned(),
                ip,
                state: Mutex::new(State {
                    loaded: false,
                    epoch: 0,
                    reseal: false,
                    current: None,
                    pending: ChangeSet::default(),
                    cookie: CookieAction::None,
                    load_failed: None,
                    failure: None,
                    finished: false,
                }),
            }),
        }
    }

    /// What the request's cookies hold, parsed on first call.
    fn incoming(&self) -> &Incoming {
        &self.parsed_cookies().0
    }

    /// Client-side: how many chunk cookies the request carried.
    fn presented_chunks(&self) -> usize {
        self.parsed_cookies().1
    }

    fn parsed_cookies(&self) -> &(Incoming, usize) {
        self.inner.incoming.get_or_init(|| {
            let inner = &self.inner;
            let cookies = inner.cookies.values();
            let Backend::Client(client) = &inner.ctx.backend else {
                return (Self::server_incoming(cookies, inner.ctx.cookie.name()), 1);
            };
            match client_side::presented(cookies, inner.ctx.cookie.name(), client.max_chunks) {
                client_side::Presented::Absent => (Incoming::Absent, 1),
                client_side::Presented::Sealed { text, chunks } => (Incoming::Sealed(text), chunks),
                client_side::Presented::Rejected { chunks } => (
                    cookie_rejected("malformed", "malformed or duplicated session cookie"),
                    chunks,
                ),
            }
        })
    }

    fn server_incoming(cookies: &[HeaderValue], name: &str) -> Incoming {
        match find_cookie_in(cookies, name) {
            CookieLookup::Absent => Incoming::Absent,
            CookieLookup::Duplicate => cookie_rejected("duplicate", "duplicate session cookies"),
            CookieLookup::Malformed => cookie_rejected("malformed", "session cookie is not ASCII"),
            CookieLookup::Found(v) => match SessionId::parse(v) {
                Ok(id) => Incoming::Id(id),
                Err(e) => {
                    metrics::counter!("cloakroom_invalid_cookies_total", "reason" => "malformed")
                        .increment(1);
                    tracing::warn!(event = "invalid", reason = %e, tag = %LogTag::of(v.as_bytes()), "session cookie rejected");
                    Incoming::Rejected
                }
            },
        }
    }

    /// The store, in server-side mode.
    fn store(&self) -> Option<&Arc<dyn SessionStore>> {
        match &self.inner.ctx.backend {
            Backend::Server(store) => Some(store),
            Backend::Client(_) => None,
        }
    }

    fn client(&self) -> Option<&ClientSessions> {
        match &self.inner.ctx.backend {
            Backend::Client(c) => Some(c),
            Backend::Server(_) => None,
        }
    }

    fn now(&self) -> Timestamp {
        self.inner.ctx.clock.now()
    }

    /// Loads the record on first use.
    async fn ensure_loaded(&self, state: &mut State) -> Result<(), SessionError> {
        if state.loaded {
            // A failed load stays failed for the whole request: a second
            // call must not find "no session" and let a write replace the
            // one the cookie names.
            return match &state.load_failed {
                Some(e) if !self.continues_anonymous() => Err(SessionError::Store(e.clone())),
                _ => Ok(()),
            };
        }
        if let (Incoming::Sealed(text), Some(client)) = (self.incoming(), self.client()) {
            return self.open_sealed(state, client, text).await;
        }
        let (Incoming::Id(id), Some(store)) = (self.incoming(), self.store()) else {
            state.loaded = true;
            if matches!(self.incoming(), Incoming::Rejected) {
                // Clear the bad cookie unless this request sets a new one.
                state.cookie = CookieAction::Remove;
            }
            return Ok(());
        };
        let key = id.storage_key();
        match timed("load", store.load(&key)).await {
            Ok(Some(record)) if record.is_live(self.now()) => {
                state.current = Some(Current {
                    id: id.clone(),
                    key,
                    record,
                });
            }
            Ok(Some(_)) => {
                // The store's clock and ours disagree, or a mock clock is in
                // use: the server's deadline wins (S19, S20).
                tracing::info!(event = "expired", tag = %id.log_tag(), "session expired");
                metrics::counter!("cloakroom_sessions_expired_total").increment(1);
                state.cookie = CookieAction::Remove;
                let _ = store.delete(&key).await;
            }
            Ok(None) => {
                // Never issued, expired, or revoked: never adopt it (S4).
                // The cookie is left alone: the ID may just have been
                // rotated by a sign-in whose response reached the browser
                // first, and a removal here would sign that user out. A
                // write replaces it with a new ID anyway.
                tracing::warn!(event = "invalid", reason = "unknown session id", tag = %id.log_tag(), "session cookie rejected");
                metrics::counter!("cloakroom_invalid_cookies_total", "reason" => "unknown")
                    .increment(1);
            }
            Err(StoreError::Corrupt(e)) => {
                tracing::warn!(event = "invalid", reason = "corrupt record", error = %e, tag = %id.log_tag(), "session record unreadable; treating as absent");
                state.cookie = CookieAction::Remove;
            }
            Err(e) => {
                state.loaded = true;
                return self.load_failed(state, e, "load");
            }
        }
        state.loaded = true;
        Ok(())
    }

    fn continues_anonymous(&self) -> bool {
        matches!(self.inner.ctx.on_failure, OnStoreFailure::ContinueAnonymous)
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
    fn unreadable(state: &State) -> Result<(), SessionError> {
        match &state.load_failed {
            Some(e) => Err(SessionError::Store(e.clone())),
            None => Ok(()),
        }
    }

    /// A revocation (logout, log-out-everywhere) that could not be carried
    /// out: always an error to the caller, and always a failure response,
    /// even under [`OnStoreFailure::ContinueAnonymous`]: a sign-out must
    /// never look like it worked.
    fn revocation_failed(state: &mut State, e: Arc<StoreError>, op: &'static str) -> SessionError {
        tracing::error!(error = %e, op, "session revocation failed; the session is NOT ended");
        state.failure = Some(Failure::Store {
            error: e.clone(),
            revocation: true,
        });
        SessionError::Store(e)
    }

    /// Client-side: opens the sealed cookie (S31–S33, S39).
    async fn open_sealed(
        &self,
        state: &mut State,
        client: &ClientSessions,
        text: &str,
    ) -> Result<(), SessionError> {
        state.loaded = true;
        let opened = match client.open(self.inner.ctx.cookie.name(), text) {
            Ok(o) => o,
            Err(why) => {
                tracing::warn!(event = "invalid", reason = why.reason(), tag = %LogTag::of(text.as_bytes()), "session cookie rejected");
                metrics::counter!("cloakroom_invalid_cookies_total", "reason" => "unopenable")
                    .increment(1);
                state.cookie = CookieAction::Remove;
                return Ok(());
            }
        };
        if !opened.record.is_live(self.now()) {
            tracing::info!(event = "expired", "client-side session expired");
            metrics::counter!("cloakroom_sessions_expired_total").increment(1);
            state.cookie = CookieAction::Remove;
            return Ok(());
        }
        if let (Some(user), Some(epochs)) = (&opened.record.user, client.epochs()) {
            match epochs.check(user, opened.epoch).await {
                Ok(client_side::EpochCheck::Current) => {}
                Ok(verdict) => {
                    tracing::info!(
                        event = "revoked",
                        reason = verdict.reason(),
                        "client-side session refused by its revocation epoch"
                    );
                    state.cookie = CookieAction::Remove;
                    return Ok(());
                }
                Err(e) => return self.load_failed(state, e, "epoch"),
            }
        }
        state.epoch = opened.epoch;
        state.reseal = opened.needs_reseal;
        let (id, key) = client_handle(&opened.record);
        state.current = Some(Current {
            id,
            key,
            record: opened.record,
        });
        Ok(())
    }

    /// Applies the failure policy to a failed write (save, create, rotate).
    fn store_failed(
        &self,
        state: &mut State,
        e: StoreError,
        op: &'static str,
    ) -> Result<(), SessionError> {
        let e = Arc::new(e);
        if self.continues_anonymous() {
            tracing::warn!(error = %e, op, "session store failed; continuing as anonymous");
        } else {
            tracing::error!(error = %e, op, "session store failed");
            state.failure = Some(Failure::Store {
                error: e.clone(),
                revocation: false,
            });
        }
        Err(SessionError::Store(e))
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
        let bytes = record::encode_value(value).map_err(|source| SessionError::Encode {
            key: key.to_owned(),
            source,
        })?;
        let limit = self.inner.ctx.max_value_bytes;
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
        if let Some(client) = self.client() {
            // A client-side record must fit its cookie(s): refuse now, with
            // a typed error, rather than fail after the handler (S12). Load
            // first, so a failed load leaves the change set untouched.
            self.ensure_loaded(&mut state).await?;
            let mut candidate = self.pending_record(&state);
            // Keys were checked above.
            let _ = candidate.insert_raw(key.to_owned(), bytes.clone());
            client
                .check_fits(self.inner.ctx.cookie.name(), &candidate)
                .map_err(|size| SessionError::CookieTooLarge { size })?;
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
                .map(|c| c.record.keys().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        for (k, change) in &state.pending.changes {
            match change {
                Some(_) if !keys.contains(k) => keys.push(k.clone()),
                None => keys.retain(|x| x != k),
                Some(_) => {}
            }
        }
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
            handle: c.key.public_handle(),
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

    /// Deletes the session now, before the response, and clears the cookie
    /// (S22). Replaying the old cookie afterwards finds nothing. Values
    /// inserted later in the same request start a new session.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the delete failed; the session is then
    /// unchanged, and the layer answers with its failure response whatever
    /// the handler returns, even under
    /// [`OnStoreFailure::ContinueAnonymous`]: a sign-out never reports
    /// success without having happened.
    pub async fn destroy(&self) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        // The loaded record's key, or else the presented ID's: also when
        // its load failed or has not run, since the record may well exist
        // (deleting a missing record is cheap and succeeds).
        let key = match (&state.current, self.incoming()) {
            (Some(c), _) => Some(c.key),
            (None, Incoming::Id(id)) => Some(id.storage_key()),
            _ => None,
        };
        if let (Some(key), Some(store)) = (key, self.store()) {
            if let Err(e) = timed("delete", store.delete(&key)).await {
                return Err(Self::revocation_failed(&mut state, Arc::new(e), "delete"));
            }
            tracing::info!(event = "destroyed", "session destroyed");
            metrics::counter!("cloakroom_sessions_destroyed_total").increment(1);
        }
        let had_cookie = !matches!(self.incoming(), Incoming::Absent)
            || matches!(state.cookie, CookieAction::Set);
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
        let record = self.pending_record(&state);
        if self.client().is_some() {
            // No ID to rotate: a fresh seal (new nonce) is the new token.
            return self.adopt_client_record(&mut state, record);
        }
        self.move_to_new_id(&mut state, record, IfEnded::Stop).await
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
        let now = self.now();
        let (idle, absolute) = self.inner.ctx.expiry.timeouts(options.remember_me);
        let new_principal = state
            .current
            .as_ref()
            .and_then(|c| c.record.user.as_deref())
            .is_some_and(|u| u != user);
        let mut record = self.pending_record(&state);
        if new_principal {
            // Nothing of the previous user's survives; this request's own
            // changes are re-applied.
            record.clear();
            state.pending.apply(&mut record);
        }
        record.created_at = now;
        record.idle_timeout = idle;
        record.idle_deadline = now.saturating_add(idle);
        record.absolute_deadline = now.saturating_add(absolute);
        record.remember_me = options.remember_me;
        record.user = Some(user);
        record.auth_time = Some(now);
        record.device = Device {
            user_agent: self
                .inner
                .user_agent
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(|s| record::truncate_utf8(s, 512).to_owned()),
            ip: options
                .ip
                .or_else(|| self.inner.ip.map(|ip| ip.to_string())),
        };
        if let Some(client) = self.client() {
            if let (Some(epochs), Some(user)) = (client.epochs(), &record.user) {
                // Read past the cache: a stale cached epoch must not seal a
                // fresh sign-in under an epoch that is already revoked.
                match epochs.for_login(user).await {
                    Ok(epoch) => state.epoch = epoch,
                    Err(e) => return self.store_failed(&mut state, e, "epoch"),
                }
            }
            return self.adopt_client_record(&mut state, record);
        }
        self.move_to_new_id(&mut state, record, IfEnded::StartFresh)
            .await
    }

    /// Client-side: makes `record` the session, to be sealed into a new
    /// cookie when the response is ready.
    fn adopt_client_record(
        &self,
        state: &mut State,
        mut record: Record,
    ) -> Result<(), SessionError> {
        if let Some(client) = self.client() {
            // Refuse now what the response could not carry (S12).
            client
                .check_fits(self.inner.ctx.cookie.name(), &record)
                .map_err(|size| SessionError::CookieTooLarge { size })?;
        }
        record.version = state.current.as_ref().map_or(1, |c| c.record.version + 1);
        let (id, key) = client_handle(&record);
        state.current = Some(Current { id, key, record });
        state.pending = ChangeSet::default();
        state.cookie = CookieAction::Set;
        tracing::info!(event = "rotated", "client-side session re-issued");
        Ok(())
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
    /// without [`ClientSessions::with_revocation`]. Nothing is signed out
    /// then, this device included.
    pub async fn logout_everywhere(&self) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        if let Some(e) = state.load_failed.clone() {
            return Err(Self::revocation_failed(&mut state, e, "logout_everywhere"));
        }
        let user = state.current.as_ref().and_then(|c| c.record.user.clone());
        if let Some(user) = user {
            let result = match &self.inner.ctx.backend {
                Backend::Server(store) => store.delete_by_user(&user, None).await.map(drop),
                Backend::Client(client) => match client.epochs() {
                    Some(_) => client.revoke_user(&user).await.map(drop),
                    None => return Err(SessionError::RevocationNotConfigured),
                },
            };
            if let Err(e) = result {
                return Err(Self::revocation_failed(
                    &mut state,
                    Arc::new(e),
                    "logout_everywhere",
                ));
            }
            tracing::info!(event = "revoked", "all sessions of a user revoked");
        }
        drop(state);
        self.destroy().await
    }

    /// The loaded record (or a fresh one) with this request's changes.
    fn pending_record(&self, state: &State) -> Record {
        let mut record = match &state.current {
            Some(c) => c.record.clone(),
            None => {
                let (idle, absolute) = self.inner.ctx.expiry.timeouts(false);
                Record::new(self.now(), idle, absolute)
            }
        };
        state.pending.apply(&mut record);
        record
    }

    /// Files `record` under a fresh ID (rotating away from the current one,
    /// if any) and marks the cookie for setting.
    async fn move_to_new_id(
        &self,
        state: &mut State,
        mut record: Record,
        if_ended: IfEnded,
    ) -> Result<(), SessionError> {
        let Some(store) = self.store() else {
            return self.adopt_client_record(state, record);
        };
        let size = record.encoded_len();
        let limit = self.inner.ctx.max_record_bytes;
        if size > limit {
            return Err(SessionError::RecordTooLarge { size, limit });
        }
        record.version = state.current.as_ref().map_or(1, |c| c.record.version + 1);
        let mut last_err = StoreError::Conflict;
        for _ in 0..MAX_ID_ATTEMPTS {
            let id = (self.inner.ctx.new_id)();
            let key = id.storage_key();
            let result = match &state.current {
                Some(c) => timed("rotate", store.rotate(&c.key, &key, &record)).await,
                None => timed("create", store.create(&key, &record)).await,
            };
            match result {
                Ok(()) => {
                    tracing::info!(event = "rotated", tag = %id.log_tag(), "session id issued");
                    metrics::counter!("cloakroom_sessions_rotated_total").increment(1);
                    state.current = Some(Current { id, key, record });
                    state.pending = ChangeSet::default();
                    state.cookie = CookieAction::Set;
                    return Ok(());
                }
                Err(StoreError::Conflict) => {
                    tracing::warn!(
                        "new session id collided with an existing one; drawing another (S7)"
                    );
                }
                Err(StoreError::NotFound) if state.current.is_some() => {
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
                    last_err = e;
                    break;
                }
            }
        }
        self.store_failed(state, last_err, "rotate")
    }

    /// Saves, touches or does nothing, after the handler's response is
    /// built; returns what to add to the response.
    pub(crate) async fn finish(&self, server_error: bool) -> Outcome {
        let mut state = self.inner.state.lock().await;
        if state.finished {
            return Outcome {
                set_cookies: Vec::new(),
                failure: None,
            };
        }
        state.finished = true;
        let dirty = !state.pending.is_empty();
        if server_error {
            if dirty {
                tracing::debug!("not saving session changes of a 5xx response");
            }
        } else if let Some(client) = self.client() {
            self.finish_client(&mut state, client, dirty).await;
        } else if dirty {
            match self.save(&mut state).await {
                Ok(()) => {}
                Err(StoreError::TooLarge { size, limit }) => {
                    // The request asked for too much: 413, not an outage.
                    let e = SessionError::RecordTooLarge { size, limit };
                    tracing::warn!(size, limit, "session changes refused: record too large");
                    state.failure = Some(Failure::TooLarge(e.to_string()));
                }
                Err(e) => {
                    let _ = self.store_failed(&mut state, e, "save");
                }
            }
        } else if state.loaded {
            self.maybe_touch(&state).await;
        }
        let set_cookies = match &self.inner.ctx.backend {
            Backend::Server(_) => self.server_cookie(&state).into_iter().collect(),
            Backend::Client(client) => self.client_cookies(&mut state, client),
        };
        Outcome {
            set_cookies,
            failure: state.failure.clone(),
        }
    }

    fn server_cookie(&self, state: &State) -> Option<HeaderValue> {
        let cookie = &self.inner.ctx.cookie;
        match (&state.cookie, &state.current) {
            (CookieAction::Set, Some(c)) => {
                let now = self.now();
                let max_age = c
                    .record
                    .remember_me
                    .then(|| c.record.absolute_deadline.since(now));
                match cookie.set_cookie(c.id.expose_secret(), max_age, now) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        tracing::error!(error = %e, "session cookie could not be built");
                        None
                    }
                }
            }
            (CookieAction::Remove | CookieAction::Set, None) => Some(cookie.removal_cookie()),
            (CookieAction::Remove, Some(_)) | (CookieAction::None, _) => None,
        }
    }

    /// Client-side: decides whether the record must be (re-)sealed.
    async fn finish_client(&self, state: &mut State, client: &ClientSessions, dirty: bool) {
        if !state.loaded {
            if !dirty {
                // Untouched: the cookie is not even opened (S8, and /plain
                // costs no crypto).
                return;
            }
            // Writes without reads: open the cookie so the changes merge.
            let _ = self.ensure_loaded(state).await;
        }
        if state.load_failed.is_some() {
            // The cookie could not be checked: a new one must not replace
            // it (it may be valid). The changes are dropped.
            if dirty {
                tracing::warn!("session changes dropped: the session could not be loaded");
            }
            return;
        }
        let now = self.now();
        let touch_due = state.current.as_ref().is_some_and(|c| {
            now.since(c.record.last_seen()) >= self.inner.ctx.expiry.touch_interval()
        }) && state.loaded;
        if !(dirty || state.reseal || touch_due || matches!(state.cookie, CookieAction::Set)) {
            return;
        }
        let mut record = self.pending_record(state);
        if record.is_empty() && record.user.is_none() {
            // Nothing worth a cookie (S8).
            state.current = None;
            if !matches!(self.incoming(), Incoming::Absent) {
                state.cookie = CookieAction::Remove;
            } else {
                state.cookie = CookieAction::None;
            }
            return;
        }
        if dirty || touch_due {
            record.version += 1;
            record.idle_deadline = now.saturating_add(record.idle_timeout);
        }
        if let Err(size) = client.check_fits(self.inner.ctx.cookie.name(), &record) {
            // `insert` refuses this already; a record that still does not
            // fit is refused as a whole rather than silently not sent.
            let e = SessionError::CookieTooLarge { size };
            tracing::warn!(
                size,
                "session changes refused: sealed record too large for its cookies"
            );
            state.failure = Some(Failure::TooLarge(e.to_string()));
            return;
        }
        let (id, key) = client_handle(&record);
        state.current = Some(Current { id, key, record });
        state.pending = ChangeSet::default();
        state.cookie = CookieAction::Set;
    }

    /// Client-side: the Set-Cookie headers, one per chunk, plus removals of
    /// chunks the request carried that the response no longer needs.
    fn client_cookies(&self, state: &mut State, client: &ClientSessions) -> Vec<HeaderValue> {
        let cookie = &self.inner.ctx.cookie;
        let name = cookie.name();
        let mut out = Vec::new();
        let mut sent = 0;
        match (&state.cookie, &state.current) {
            (CookieAction::Set, Some(c)) => {
                let now = self.now();
                let max_age = c
                    .record
                    .remember_me
                    .then(|| c.record.absolute_deadline.since(now));
                match client.seal(name, &c.record, state.epoch, now) {
                    Ok(values) => {
                        for (i, value) in values.iter().enumerate() {
                            let chunk = cookie.clone().with_name(client_side::chunk_name(name, i));
                            match chunk.set_cookie(value, max_age, now) {
                                Ok(v) => out.push(v),
                                Err(e) => {
                                    tracing::error!(error = %e, "session cookie could not be built");
                                    state.failure = Some(Failure::Unsealable);
                                    return Vec::new();
                                }
                            }
                        }
                        sent = values.len();
                    }
                    Err(client_side::SealFailure::TooLarge(size)) => {
                        // Checked before; kept so that no path sends a 2xx
                        // without the cookie it promised (S12).
                        tracing::warn!(size, "sealed session does not fit its cookies; not sent");
                        state.failure = Some(Failure::TooLarge(
                            SessionError::CookieTooLarge { size }.to_string(),
                        ));
                        return Vec::new();
                    }
                    Err(client_side::SealFailure::Crypto) => {
                        tracing::error!(
                            "sealing the session failed (random number generator); cookie not sent"
                        );
                        state.failure = Some(Failure::Unsealable);
                        return Vec::new();
                    }
                }
            }
            (CookieAction::Remove | CookieAction::Set, None) => out.push(cookie.removal_cookie()),
            _ => return out,
        }
        for i in sent.max(1)..self.presented_chunks() {
            out.push(
                cookie
                    .clone()
                    .with_name(client_side::chunk_name(name, i))
                    .removal_cookie(),
            );
        }
        out
    }

    async fn save(&self, state: &mut State) -> Result<(), StoreError> {
        let Some(store) = self.store() else {
            return Ok(());
        };
        let now = self.now();
        if !state.loaded {
            // Writes without reads: load now so the changes merge into the
            // stored record rather than replace it. A failure is recorded
            // for the layer's policy.
            let _ = self.ensure_loaded(state).await;
        }
        if state.load_failed.is_some() {
            // The cookie may name a valid session we could not read: never
            // replace it with a new one (no write, no cookie).
            tracing::warn!("session changes dropped: the session could not be loaded");
            return Ok(());
        }
        let Some(current) = &state.current else {
            let record = self.pending_record(state);
            if record.is_empty() {
                return Ok(());
            }
            self.check_size(&record)?;
            return self.create_new(state, record).await;
        };
        let base = current.record.clone();
        let key = current.key;
        // Holding the lane (even on the fast path) tells concurrent saves of
        // this session to batch up instead of racing this one.
        let lane = self.inner.ctx.save_lanes.lane(&key);
        if !lane.shared() {
            // Fast path: one compare-and-swap, no coordination.
            let fast = match self.next_record(&base, state, now) {
                Ok(next) => match timed("save", store.save(&key, &next, base.version)).await {
                    Ok(()) => {
                        if let Some(c) = &mut state.current {
                            c.record = next;
                        }
                        Some(Ok(()))
                    }
                    Err(StoreError::VersionConflict) => {
                        metrics::counter!("cloakroom_cas_conflicts_total").increment(1);
                        None
                    }
                    Err(StoreError::NotFound) => Some(self.lost_race(state)),
                    Err(e) => Some(Err(e)),
                },
                Err(e) => Some(Err(e)),
            };
            if let Some(result) = fast {
                return result;
            }
        }
        // Contended: commit together with this process's other saves of the
        // session (see `save_lanes`).
        let saved = self.save_in_lane(&lane, key, now, state).await;
        drop(lane);
        match saved {
            Saved::Record(record) => {
                if let Some(c) = &mut state.current {
                    c.record = record;
                }
                Ok(())
            }
            Saved::Gone => self.lost_race(state),
            Saved::Failed(e) => Err(e),
        }
    }

    /// Files this request's changes in the session's lane and waits until a
    /// batch holding them is committed, leading a batch when no one else is.
    async fn save_in_lane(
        &self,
        lane: &Lane,
        key: StorageKey,
        now: Timestamp,
        state: &State,
    ) -> Saved {
        enum Next<'a> {
            Done(Saved),
            Refile,
            Lead(tokio::sync::MutexGuard<'a, Option<Record>>),
        }
        loop {
            let (reply, mut rx) = oneshot::channel();
            lane.file(Waiter {
                changes: state.pending.clone(),
                reply,
            });
            let next = tokio::select! {
                biased;
                r = &mut rx => match r {
                    Ok(saved) => Next::Done(saved),
                    // The leader holding our changes was cancelled.
                    Err(_) => Next::Refile,
                },
                guard = lane.leader.lock() => Next::Lead(guard),
            };
            let mut last_saved = match next {
                Next::Done(saved) => return saved,
                Next::Refile => continue,
                Next::Lead(guard) => guard,
            };
            // The previous leader may have committed our changes already.
            match rx.try_recv() {
                Ok(saved) => return saved,
                Err(oneshot::error::TryRecvError::Closed) => continue,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch = lane.take();
            self.commit_batch(&mut last_saved, key, now, batch).await;
            drop(last_saved);
            match rx.try_recv() {
                Ok(saved) => return saved,
                Err(_) => continue,
            }
        }
    }

    /// Commits a batch of change sets with one compare-and-swap (more on
    /// conflicts with other processes) and answers every request in it.
    async fn commit_batch(
        &self,
        last_saved: &mut Option<Record>,
        key: StorageKey,
        now: Timestamp,
        batch: Vec<Waiter>,
    ) {
        fn answer_all(batch: Vec<Waiter>, outcome: &Result<Option<Record>, Arc<StoreError>>) {
            for w in batch {
                let saved = match outcome {
                    Ok(Some(r)) => Saved::Record(r.clone()),
                    Ok(None) => Saved::Gone,
                    Err(e) => Saved::Failed(save_lanes::share_error(e)),
                };
                let _ = w.reply.send(saved);
            }
        }
        let Some(store) = self.store() else {
            answer_all(batch, &Ok(None));
            return;
        };
        let mut base = match last_saved.take() {
            Some(r) => Ok(Some(r)),
            None => timed("load", store.load(&key)).await,
        };
        for attempt in 0..MAX_SAVE_ATTEMPTS {
            let record = match base {
                Ok(Some(r)) => r,
                Ok(None) => return answer_all(batch, &Ok(None)),
                Err(e) => return answer_all(batch, &Err(Arc::new(e))),
            };
            // Apply each change set in filing order; one that would make
            // the record too large is refused on its own.
            let mut next = record.clone();
            let verdicts: Vec<Result<(), StoreError>> = batch
                .iter()
                .map(|w| {
                    let mut trial = next.clone();
                    w.changes.apply(&mut trial);
                    self.check_size(&trial).map(|()| next = trial)
                })
                .collect();
            next.version = record.version + 1;
            next.idle_deadline = now.saturating_add(next.idle_timeout);
            match timed("save", store.save(&key, &next, record.version)).await {
                Ok(()) => {
                    for (w, verdict) in batch.into_iter().zip(verdicts) {
                        let saved = match verdict {
                            Ok(()) => Saved::Record(next.clone()),
                            Err(e) => Saved::Failed(e),
                        };
                        let _ = w.reply.send(saved);
                    }
                    *last_saved = Some(next);
                    return;
                }
                Err(StoreError::VersionConflict) => {
                    metrics::counter!("cloakroom_cas_conflicts_total").increment(1);
                    tracing::debug!(attempt, "session save conflicted; merging per key");
                    if attempt >= 2 {
                        // Jittered backoff so writers in other processes
                        // spread out.
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    base = timed("load", store.load(&key)).await;
                }
                Err(StoreError::NotFound) => return answer_all(batch, &Ok(None)),
                Err(e) => return answer_all(batch, &Err(Arc::new(e))),
            }
        }
        answer_all(
            batch,
            &Err(Arc::new(StoreError::other(format!(
                "session save still conflicted after {MAX_SAVE_ATTEMPTS} attempts"
            )))),
        );
    }

    /// `base` with this request's changes applied, as the next version.
    fn next_record(
        &self,
        base: &Record,
        state: &State,
        now: Timestamp,
    ) -> Result<Record, StoreError> {
        let mut next = base.clone();
        state.pending.apply(&mut next);
        next.version = base.version + 1;
        next.idle_deadline = now.saturating_add(next.idle_timeout);
        self.check_size(&next)?;
        Ok(next)
    }

    /// The record was destroyed or rotated away while this request ran: its
    /// changes are dropped, never resurrecting the session (S28). The
    /// cookie is left alone: after a rotation the browser may already hold
    /// the new ID, which a removal would delete.
    fn lost_race(&self, state: &mut State) -> Result<(), StoreError> {
        tracing::info!(
            event = "revoked",
            "session ended by another request; changes dropped"
        );
        state.current = None;
        Ok(())
    }

    async fn create_new(&self, state: &mut State, mut record: Record) -> Result<(), StoreError> {
        record.version = 1;
        for _ in 0..MAX_ID_ATTEMPTS {
            let id = (self.inner.ctx.new_id)();
            let key = id.storage_key();
            let Some(store) = self.store() else {
                return Ok(());
            };
            match timed("create", store.create(&key, &record)).await {
                Ok(()) => {
                    tracing::info!(event = "created", tag = %id.log_tag(), "session created");
                    metrics::counter!("cloakroom_sessions_created_total").increment(1);
                    state.current = Some(Current { id, key, record });
                    state.cookie = CookieAction::Set;
                    return Ok(());
                }
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

    fn check_size(&self, record: &Record) -> Result<(), StoreError> {
        let size = record.encoded_len();
        let limit = self.inner.ctx.max_record_bytes;
        if size > limit {
            return Err(StoreError::TooLarge { size, limit });
        }
        Ok(())
    }

    async fn maybe_touch(&self, state: &State) {
        let Some(c) = &state.current else { return };
        let now = self.now();
        if now.since(c.record.last_seen()) < self.inner.ctx.expiry.touch_interval() {
            return;
        }
        let deadline = now.saturating_add(c.record.idle_timeout);
        metrics::counter!("cloakroom_touches_total").increment(1);
        let Some(store) = self.store() else { return };
        match timed("touch", store.touch(&c.key, deadline)).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            // A failed touch costs the visitor at most one touch interval of
            // idle time; not worth failing a request that succeeded.
            Err(e) => tracing::warn!(error = %e, "session touch failed"),
        }
    }
}

fn backoff(attempt: u32) -> std::time::Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let cap_us = 100u64 << attempt.min(6);
    std::time::Duration::from_micros(u64::from(u16::from_le_bytes(b)) % cap_us)
}

fn check_key(key: &str) -> Result<(), SessionError> {
    // Keys starting with a control character are reserved for cloakroom's
    // own bookkeeping (the tiered store's cache marker).
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.starts_with(char::is_control) {
        return Err(SessionError::InvalidKey);
    }
    Ok(())
}

/// Counts and logs a rejected session cookie (never its value).
fn cookie_rejected(kind: &'static str, reason: &'static str) -> Incoming {
    metrics::counter!("cloakroom_invalid_cookies_total", "reason" => kind).increment(1);
    tracing::warn!(event = "invalid", reason, "session cookie rejected");
    Incoming::Rejected
}

/// Runs a store call, recording its latency (S50: no IDs in metrics).
async fn timed<T>(op: &'static str, fut: impl std::future::Future<Output = T>) -> T {
    let start = std::time::Instant::now();
    let out = fut.await;
    metrics::histogram!("cloakroom_store_seconds", "op" => op)
        .record(start.elapsed().as_secs_f64());
    out
}

/// Client-side sessions have no ID; a stable, never-sent stand-in derived
/// from the record's creation time and user gives them a handle for
/// listings. It is never used as a store key.
fn client_handle(record: &Record) -> (SessionId, StorageKey) {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"cloakroom/client-handle/v1\0");
    h.update(record.created_at.as_millis().to_be_bytes());
    h.update(record.user.as_deref().unwrap_or_default().as_bytes());
    let id = SessionId::from_bytes(h.finalize().into());
    let key = id.storage_key();
    (id, key)
}

#[cfg(test)]
mod tests;
