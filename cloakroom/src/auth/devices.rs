//! "Your devices": a user's sessions as public handles, and ending them
//! (S24, S25).

use std::sync::Arc;

use super::handle::HandleKey;
use crate::expiry::{Clock, SystemClock, Timestamp};
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{SessionStore, StoreError, UserSession};

/// How a listed session is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceKind {
    /// A server-side session: an ID in the cookie, the record in a store.
    Server,
    /// A refresh-token family of [`TokenSessions`](crate::token) (feature
    /// `jwt`) kept in the same store.
    TokenFamily,
}

impl DeviceKind {
    /// The kind's name in JSON and in the admin CLI: `server`,
    /// `token_family`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::TokenFamily => "token_family",
        }
    }
}

/// One of a user's sessions, as a device list shows it. It holds nothing
/// that can be presented as a cookie or token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceSession {
    /// The session's public handle ([`HandleKey`]): what a "revoke" button
    /// sends back.
    pub handle: String,
    /// Whether this is the session of the request asking.
    pub current: bool,
    /// How the session is kept.
    pub kind: DeviceKind,
    /// When the user signed in on this device.
    pub created_at: Timestamp,
    /// When the device was last active (to the touch interval).
    pub last_seen: Timestamp,
    /// The client address recorded at sign-in.
    pub ip: Option<String>,
    /// The `User-Agent` recorded at sign-in.
    pub user_agent: Option<String>,
    /// Whether the device stays signed in across browser restarts.
    pub remember_me: bool,
    /// When the user last authenticated on this device.
    pub auth_time: Option<Timestamp>,
}

/// Why a device could not be listed or ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// No live session of this user has that handle (also when the handle
    /// is another user's: S25).
    #[error("no session of this user has that handle")]
    NotFound,
    /// The session is a token family, and ending it needs the
    /// [`TokenSessions`](crate::token) that issued it (to deny its access
    /// tokens too): nothing was ended.
    #[error(
        "that device is a token session; revoke it through TokenSessions (Devices::with_tokens) so its access tokens end too"
    )]
    TokensNotConfigured,
    /// The store failed; nothing more was ended.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Token revocation failed; nothing more was ended.
    #[cfg(feature = "jwt")]
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
}

/// Whether `record` is a refresh-token family (written by
/// [`TokenSessions`](crate::token)): its marker and bookkeeping values.
pub(crate) fn is_token_family(record: &Record) -> bool {
    record.get::<String>("kind").ok().flatten().as_deref() == Some("token")
        && record.get_raw("sid").is_some()
        && record.get_raw("gen").is_some()
}

/// A user's devices in one store, for request handlers (through
/// [`Session::devices`](crate::Session::devices) and friends, which use
/// the layer's store) and for tools such as the admin CLI.
///
/// ```
/// # async fn run() -> Result<(), cloakroom::auth::DeviceError> {
/// use cloakroom::{auth::Devices, store::MemoryStore};
///
/// let devices = Devices::new(MemoryStore::new());
/// for d in devices.list("alice", None).await? {
///     println!("{} {} last seen {}", d.handle, d.kind.as_str(), d.last_seen);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Devices {
    store: Arc<dyn SessionStore>,
    handles: HandleKey,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "jwt")]
    tokens: Option<crate::token::TokenSessions>,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devices").finish_non_exhaustive()
    }
}

impl Devices {
    /// The devices kept in `store`, with the default (public)
    /// [`HandleKey`] and the system clock.
    pub fn new(store: impl SessionStore) -> Self {
        Self::over(Arc::new(store), HandleKey::default(), Arc::new(SystemClock))
    }

    pub(crate) fn over(
        store: Arc<dyn SessionStore>,
        handles: HandleKey,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            handles,
            clock,
            #[cfg(feature = "jwt")]
            tokens: None,
        }
    }

    /// Names sessions with `key` (use the same key as the session layer:
    /// [`SessionLayer::with_handle_key`](crate::SessionLayer::with_handle_key)).
    #[must_use]
    pub fn with_handle_key(mut self, key: HandleKey) -> Self {
        self.handles = key;
        self
    }

    /// Judges liveness by `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Ends token families through `tokens`, so that their access tokens
    /// are denied too (without it, revoking a token family is refused
    /// with [`DeviceError::TokensNotConfigured`]).
    #[cfg(feature = "jwt")]
    #[must_use]
    pub fn with_tokens(mut self, tokens: crate::token::TokenSessions) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// The handle of the session stored under `key`.
    #[must_use]
    pub fn handle_of(&self, key: &StorageKey) -> String {
        self.handles.handle(key)
    }

    /// `user`'s live sessions, the one under `current` (the asking
    /// request's, if any) first and marked, then the most recently active.
    ///
    /// # Errors
    ///
    /// [`DeviceError::Store`] if the store fails.
    pub async fn list(
        &self,
        user: &str,
        current: Option<&StorageKey>,
    ) -> Result<Vec<DeviceSession>, DeviceError> {
        Ok(list_in(&*self.store, &self.handles, user, current, self.clock.now()).await?)
    }

    /// Ends `user`'s session with `handle`, and returns its storage key.
    ///
    /// # Errors
    ///
    /// [`DeviceError::NotFound`] when no live session of `user` has the
    /// handle (another user's handle included);
    /// [`DeviceError::TokensNotConfigured`] for a token family without
    /// [`with_tokens`](Self::with_tokens); a store or token failure.
    pub async fn revoke(&self, user: &str, handle: &str) -> Result<StorageKey, DeviceError> {
        let now = self.clock.now();
        let found = find_in(&*self.store, &self.handles, user, handle, now)
            .await?
            .ok_or(DeviceError::NotFound)?;
        self.end(user, &found, now).await?;
        tracing::info!(event = "revoked", "one device's session revoked (S25)");
        Ok(found.key)
    }

    /// Ends every session of `user` except the one under `except`; returns
    /// how many were ended.
    ///
    /// Token families are checked first: if one is among them and no
    /// [`with_tokens`](Self::with_tokens) is set, nothing is ended.
    ///
    /// # Errors
    ///
    /// [`DeviceError::TokensNotConfigured`] (nothing ended), or a store or
    /// token failure (some may have been ended; call again).
    pub async fn revoke_all(
        &self,
        user: &str,
        except: Option<&StorageKey>,
    ) -> Result<u64, DeviceError> {
        let now = self.clock.now();
        let sessions = self.store.list_by_user(user, now).await?;
        let families: Vec<&UserSession> = sessions
            .iter()
            .filter(|s| Some(&s.key) != except && is_token_family(&s.record))
            .collect();
        if !families.is_empty() {
            self.check_tokens()?;
        }
        let mut ended = 0;
        for f in families {
            self.end(user, f, now).await?;
            ended += 1;
        }
        ended += self.store.delete_by_user(user, except, now).await?;
        tracing::info!(
            event = "revoked",
            count = ended,
            "a user's other sessions revoked (S24)"
        );
        Ok(ended)
    }

    fn check_tokens(&self) -> Result<(), DeviceError> {
        #[cfg(feature = "jwt")]
        if self.tokens.is_some() {
            return Ok(());
        }
        Err(DeviceError::TokensNotConfigured)
    }

    async fn end(&self, user: &str, s: &UserSession, now: Timestamp) -> Result<(), DeviceError> {
        if !is_token_family(&s.record) {
            self.store.delete(&s.key, now).await?;
            return Ok(());
        }
        self.check_tokens()?;
        #[cfg(feature = "jwt")]
        if let Some(tokens) = &self.tokens {
            let sid: String = s
                .record
                .get("sid")
                .ok()
                .flatten()
                .ok_or_else(|| StoreError::corrupt("token family without its device handle"))?;
            tokens.revoke_device(user, &sid).await?;
        }
        #[cfg(not(feature = "jwt"))]
        let _ = user;
        Ok(())
    }
}

/// `user`'s live sessions in `store`, described: the one under `current`
/// first, then the most recently active.
pub(crate) async fn list_in<S: SessionStore + ?Sized>(
    store: &S,
    handles: &HandleKey,
    user: &str,
    current: Option<&StorageKey>,
    now: Timestamp,
) -> Result<Vec<DeviceSession>, StoreError> {
    let mut out: Vec<DeviceSession> = store
        .list_by_user(user, now)
        .await?
        .into_iter()
        .map(|s| describe(handles, &s, current))
        .collect();
    out.sort_by(|a, b| {
        b.current
            .cmp(&a.current)
            .then(b.last_seen.cmp(&a.last_seen))
            .then_with(|| a.handle.cmp(&b.handle))
    });
    Ok(out)
}

/// `user`'s live session with `handle` in `store`, if there is one. Only
/// that user's sessions are searched: another user's handle is not found
/// (S25).
pub(crate) async fn find_in<S: SessionStore + ?Sized>(
    store: &S,
    handles: &HandleKey,
    user: &str,
    handle: &str,
    now: Timestamp,
) -> Result<Option<UserSession>, StoreError> {
    Ok(store
        .list_by_user(user, now)
        .await?
        .into_iter()
        .find(|s| constant_time_eq(handles.handle(&s.key).as_bytes(), handle.as_bytes())))
}

fn describe(handles: &HandleKey, s: &UserSession, current: Option<&StorageKey>) -> DeviceSession {
    let r = &s.record;
    DeviceSession {
        handle: handles.handle(&s.key),
        current: Some(&s.key) == current,
        kind: if is_token_family(r) {
            DeviceKind::TokenFamily
        } else {
            DeviceKind::Server
        },
        created_at: r.created_at,
        last_seen: r.last_seen(),
        ip: r.device.ip.clone(),
        user_agent: r.device.user_agent.clone(),
        remember_me: r.remember_me,
        auth_time: r.auth_time,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
