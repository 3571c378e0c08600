//! The concurrent-session limit (S26): at most `n` live sessions per user,
//! enforced inside `login` under a per-user lease so that parallel sign-ins
//! cannot all slip under the limit.
//!
//! The lease is a record created with the store's insert-if-absent
//! `create` under a key derived from the user: every store already has
//! that primitive (and passes the conformance suite for it), so the limit
//! holds on every store, ours or a third party's, without a new store
//! operation. The lease record carries no user (it never shows in device
//! lists), expires by itself after [`LEASE_TTL`] if its holder dies, and
//! is deleted as soon as the sign-in is filed.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{SessionStore, StoreError, UserSession};

/// How long a lease lives if its holder never releases it (a crashed
/// process): other sign-ins of that user wait at most this long.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// Transient backend failures a lease acquisition rides out.
const MAX_TRANSIENT_FAILURES: u32 = 5;

/// What a sign-in beyond the limit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitPolicy {
    /// Sign the new device in and end the oldest sessions (by creation
    /// time) until the user has `n`.
    EvictOldest,
    /// Refuse the sign-in with
    /// [`SessionError::SessionLimitReached`](crate::SessionError::SessionLimitReached);
    /// the existing sessions stay.
    RejectNew,
}

/// At most `max` live server-side sessions per user (S26), set with
/// [`SessionLayer::with_session_limit`](crate::SessionLayer::with_session_limit).
///
/// Counted are the user's sessions in the layer's store; refresh-token
/// families kept in the same store are not (they end through
/// [`TokenSessions`](crate::token) revocation, which also denies their
/// access tokens).
///
/// ```
/// use cloakroom::{SessionLayer, auth::SessionLimit, store::MemoryStore};
///
/// let layer = SessionLayer::new(MemoryStore::new())
///     .with_session_limit(SessionLimit::evict_oldest(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimit {
    max: usize,
    policy: LimitPolicy,
    wait: Duration,
}

impl SessionLimit {
    /// At most `max` sessions; a new sign-in ends the oldest.
    #[must_use]
    pub fn evict_oldest(max: usize) -> Self {
        Self::new(max, LimitPolicy::EvictOldest)
    }

    /// At most `max` sessions; a sign-in beyond them is refused.
    #[must_use]
    pub fn reject_new(max: usize) -> Self {
        Self::new(max, LimitPolicy::RejectNew)
    }

    fn new(max: usize, policy: LimitPolicy) -> Self {
        Self {
            max,
            policy,
            wait: Duration::from_secs(5),
        }
    }

    /// How long a sign-in waits for another sign-in of the same user to
    /// finish before failing as unavailable (default 5 s).
    #[must_use]
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The limit.
    #[must_use]
    pub fn max(&self) -> usize {
        self.max
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> LimitPolicy {
        self.policy
    }
}

/// What [`enforce`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Room for one more (after evicting, if the policy evicts).
    Admit,
    /// The policy refuses a new session.
    Reject,
}

/// The lease key of `user`: a hash, so no user name reaches the store.
fn lease_key(user: &str) -> StorageKey {
    let mut h = Sha256::new();
    h.update(b"cloakroom/login-lease/v1\0");
    h.update(user.as_bytes());
    StorageKey(h.finalize().into())
}

/// A held lease; [`Lease::release`] it when the sign-in is filed.
pub(crate) struct Lease {
    key: StorageKey,
}

impl Lease {
    /// Takes `user`'s lease, waiting (with jittered backoff) while another
    /// sign-in holds it.
    ///
    /// # Errors
    ///
    /// The store's failure, or [`StoreError::Unavailable`] when the lease
    /// stayed taken for the whole wait.
    pub(crate) async fn acquire<S: SessionStore + ?Sized>(
        store: &S,
        user: &str,
        limit: &SessionLimit,
        now: impl Fn() -> Timestamp,
    ) -> Result<Self, StoreError> {
        let key = lease_key(user);
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(2);
        let mut transient = 0;
        loop {
            let t = now();
            let lease = Record::new(t, LEASE_TTL, LEASE_TTL);
            match store.create(&key, &lease, t).await {
                Ok(()) => return Ok(Self { key }),
                Err(StoreError::Conflict) => {}
                // Contended inserts can make a backend give up on one
                // (a MySQL deadlock victim, say), which the store contract
                // calls transient: a few more tries within the wait.
                Err(StoreError::Unavailable(e)) if transient < MAX_TRANSIENT_FAILURES => {
                    transient += 1;
                    tracing::debug!(error = %e, "session-limit lease: transient failure, retrying");
                }
                Err(e) => return Err(e),
            }
            if started.elapsed() >= limit.wait {
                return Err(StoreError::unavailable(
                    "another sign-in of this user is still in progress (session limit lease); try again",
                ));
            }
            tokio::time::sleep(jitter(pause)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Gives the lease back. A failure is logged, not returned: the
    /// sign-in happened, and the lease expires by itself.
    pub(crate) async fn release<S: SessionStore + ?Sized>(self, store: &S, now: Timestamp) {
        if let Err(e) = store.delete(&self.key, now).await {
            tracing::warn!(error = %e, "session-limit lease not released; it expires by itself");
        }
    }
}

/// `pause` scaled by a random factor in [0.5, 1.5), so that waiters do
/// not retry in lock step.
fn jitter(pause: Duration) -> Duration {
    let mut b = [0u8; 1];
    let r = getrandom::fill(&mut b).map_or(128, |()| b[0]);
    pause.mul_f64(0.5 + f64::from(r) / 256.0)
}

/// Applies `limit` to `user`'s live sessions before one more is filed,
/// under the user's lease. `replacing` is the session the sign-in moves
/// away from (it is not counted). Evicted sessions are deleted now.
///
/// # Errors
///
/// The store's failure (nothing more is evicted).
pub(crate) async fn enforce<S: SessionStore + ?Sized>(
    store: &S,
    user: &str,
    limit: &SessionLimit,
    replacing: Option<&StorageKey>,
    now: Timestamp,
) -> Result<Verdict, StoreError> {
    let mut live: Vec<UserSession> = store
        .list_by_user(user, now)
        .await?
        .into_iter()
        .filter(|s| Some(&s.key) != replacing && !super::devices::is_token_family(&s.record))
        .collect();
    if live.len() < limit.max {
        return Ok(Verdict::Admit);
    }
    if limit.policy == LimitPolicy::RejectNew {
        return Ok(Verdict::Reject);
    }
    live.sort_by_key(|s| (s.record.created_at, s.key.0));
    let excess = live.len() + 1 - limit.max;
    for s in live.iter().take(excess) {
        store.delete(&s.key, now).await?;
        tracing::info!(
            event = "evicted",
            "session ended by the concurrent-session limit (S26)"
        );
        metrics::counter!("cloakroom_sessions_evicted_total").increment(1);
    }
    Ok(Verdict::Admit)
}
