//! Login throttling (S53) and the session-guessing hook (S51).
//!
//! A [`LoginThrottle`] counts failed sign-ins under three keys at once,
//! each with its own [`Rule`]: the account together with the client (what
//! one guesser meets first: a few free failures, then exponential
//! backoff), the account alone (at most 100 failures an hour from all
//! clients together), and the client alone (password spraying across
//! accounts). The defaults are [`Policy::login`].
//!
//! ```
//! use cloakroom::crypto::{Keyring, MasterKey};
//! use cloakroom::rate_limit::{Attempt, LoginThrottle, Policy};
//! use std::net::{IpAddr, Ipv4Addr};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let throttle = LoginThrottle::memory(&Keyring::from(MasterKey::generate()), Policy::login());
//! let attempt = Attempt::new("alice", IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
//!
//! // Before verifying the password (answer `Err` with its 429 response):
//! throttle.check(&attempt).await?;
//! let password_ok = false; // ... verify it ...
//! if password_ok {
//!     throttle.record_success(&attempt).await?;
//! } else {
//!     throttle.record_failure(&attempt).await?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it guarantees
//!
//! * **No lockout for good.** Every counter lives for its rule's window
//!   from its first failure and is then forgotten; an attacker can make an
//!   account wait at most a window (an hour by default), and pays for it
//!   on their own account+client and client counters.
//! * **Same behaviour for unknown and known usernames.** The throttle never
//!   asks whether an account exists; it counts what it is told. Call
//!   [`record_failure`](LoginThrottle::record_failure) for an unknown
//!   username exactly as for a wrong password.
//! * **No usernames or addresses at rest.** Counters are filed under
//!   HMAC-SHA256 of the (trimmed, lower-cased) account name and of the
//!   client's address, keyed by a subkey of your [`Keyring`]
//!   (purpose `"login-throttle"`): a Redis dump shows neither. Rotating the
//!   newest key starts every counter afresh.
//! * **One answer for every reason.** [`Throttled`] becomes a 429 with
//!   `Retry-After` and the same body whichever counter said no.
//! * **IPv6 aggregated.** A client is an IPv4 address or an IPv6 /64 (a
//!   single host usually holds a whole /64; counting addresses would give it
//!   2^64 fresh counters).
//!
//! # Backends
//!
//! [`LoginThrottle::memory`] keeps counters in the process, bounded in
//! number ([`MemoryCounters::with_max_keys`]); `LoginThrottle::redis`
//! (feature `redis`) keeps them in Redis or Redis Cluster, over a
//! [`RedisStore`](crate::store::RedisStore)'s connection, one Lua script
//! per call, timed by the Redis server's clock. Both decide with the same
//! [`Rule`] arithmetic.
//!
//! # Why not `governor`
//!
//! `governor` implements GCRA: it limits how *often* something happens and
//! refills on its own. Login throttling counts *failures* only (a success
//! resets, a check costs nothing), grows its delay exponentially with the
//! count, and must keep its counters in Redis for a fleet of servers;
//! none of that fits a rate limiter's cells.
//!
//! # Deployment caveat
//!
//! The client is an IP address: behind a reverse proxy, configure
//! [`ClientIpSource::with_trusted_proxies`] or every visitor is the proxy.
//! [`check`](LoginThrottle::check) and
//! [`record_failure`](LoginThrottle::record_failure) are two calls: attempts
//! in flight at the same moment may each pass the check, so a burst can
//! overshoot a rule by the number of concurrent attempts (bound them with
//! a concurrency limit on the login route if that matters).

mod client_ip;
mod guessing;
mod memory;
mod policy;
#[cfg(feature = "redis")]
mod redis;
mod throttled;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

pub use client_ip::{ClientIpSource, client_prefix};
pub use guessing::GuessingLimit;
pub use memory::MemoryCounters;
pub use policy::{Policy, Rule};
pub use throttled::{THROTTLED_BODY, ThrottleReason, Throttled};

use crate::crypto::Keyring;
use crate::store::StoreError;

/// The keyring purpose of the account and client hashes.
const KEY_PURPOSE: &str = "login-throttle";
/// How long a client waits when the counters cannot be read.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

/// One sign-in (or registration) attempt: who it claims to be and where it
/// comes from.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The account name as typed; it is trimmed and lower-cased before it
    /// is hashed, so `Alice ` and `alice` share counters.
    pub account: &'a str,
    /// The client's address (see [`ClientIpSource`]).
    pub client: IpAddr,
}

impl<'a> Attempt<'a> {
    /// An attempt on `account` from `client`.
    #[must_use]
    pub fn new(account: &'a str, client: IpAddr) -> Self {
        Self { account, client }
    }
}

/// The scope a counter belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    AccountClient,
    Account,
    Client,
}

impl Scope {
    fn reason(self) -> ThrottleReason {
        match self {
            Self::AccountClient => ThrottleReason::AccountClient,
            Self::Account => ThrottleReason::Account,
            Self::Client => ThrottleReason::Client,
        }
    }

    /// The letter in Redis key names.
    pub(crate) fn letter(self) -> char {
        match self {
            Self::AccountClient => 'p',
            Self::Account => 'a',
            Self::Client => 'c',
        }
    }
}

/// A keyed hash naming one counter.
pub(crate) type Hash = [u8; 32];

/// One counter a decision reads or writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CounterRef {
    pub(crate) scope: Scope,
    pub(crate) hash: Hash,
    pub(crate) rule: Rule,
}

/// Counters that must be read or written together: on Redis Cluster they
/// share one hash slot, named by `tag`.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) tag: Hash,
    pub(crate) counters: Vec<CounterRef>,
}

/// Where counters are kept: one implementation per backend.
#[async_trait]
pub(crate) trait Counters: Send + Sync + 'static {
    /// The longest wait any counter of `slot` imposes now (0: admitted),
    /// with the scope that imposes it.
    async fn wait(&self, slot: &Slot) -> Result<(u64, Option<Scope>), StoreError>;
    /// Counts one failure on every counter of `slot`.
    async fn fail(&self, slot: &Slot) -> Result<(), StoreError>;
    /// Forgets every counter of `slot`.
    async fn reset(&self, slot: &Slot) -> Result<(), StoreError>;
}

/// Counts failed sign-ins and says when an attempt must wait (S53). Cheap
/// to clone (clones share the counters).
#[derive(Clone)]
pub struct LoginThrottle {
    inner: Arc<Inner>,
}

struct Inner {
    mac_key: Zeroizing<[u8; 32]>,
    policy: Policy,
    counters: Box<dyn Counters>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl LoginThrottle {
    /// Counters in this process ([`MemoryCounters::new`]: at most
    /// [`MemoryCounters::DEFAULT_MAX_KEYS`] of them), hashed with `keyring`'s
    /// newest key.
    #[must_use]
    pub fn memory(keyring: &Keyring, policy: Policy) -> Self {
        Self::memory_with(keyring, policy, MemoryCounters::new())
    }

    /// Counters in `counters` (to set their bound or clock).
    #[must_use]
    pub fn memory_with(keyring: &Keyring, policy: Policy, counters: MemoryCounters) -> Self {
        Self::over(keyring, policy, Box::new(counters))
    }

    /// Counters in the Redis server or cluster `store` talks to, under its
    /// prefix (`<prefix>t:{<hash>}:<scope>`), over its connection; timed by
    /// the Redis server's clock.
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn redis(store: &crate::store::RedisStore, keyring: &Keyring, policy: Policy) -> Self {
        Self::over(
            keyring,
            policy,
            Box::new(redis::RedisCounters::new(store.clone())),
        )
    }

    fn over(keyring: &Keyring, policy: Policy, counters: Box<dyn Counters>) -> Self {
        Self {
            inner: Arc::new(Inner {
                mac_key: keyring.mac_key(KEY_PURPOSE),
                policy,
                counters,
            }),
        }
    }

    /// The rules this throttle applies.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Whether `attempt` may go ahead now. Call it before verifying the
    /// password, and do not verify it on `Err`.
    ///
    /// # Errors
    ///
    /// [`Throttled`] when a counter makes the attempt wait. When the
    /// counters cannot be read (Redis down), the throttle fails closed: a
    /// [`Throttled`] with [`ThrottleReason::Unavailable`] and a short
    /// `retry_after`, logged as an error.
    pub async fn check(&self, attempt: &Attempt<'_>) -> Result<(), Throttled> {
        let mut worst: (u64, Option<Scope>) = (0, None);
        for slot in self.slots(attempt, true) {
            match self.inner.counters.wait(&slot).await {
                Ok(found) if found.0 > worst.0 => worst = found,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "login throttle counters unavailable; refusing the attempt");
                    return Err(Throttled::new(
                        UNAVAILABLE_RETRY,
                        ThrottleReason::Unavailable,
                    ));
                }
            }
        }
        match worst {
            (0, _) | (_, None) => Ok(()),
            (ms, Some(scope)) => {
                tracing::info!(event = "login_throttled", reason = ?scope.reason(), "sign-in attempt throttled");
                Err(Throttled::new(Duration::from_millis(ms), scope.reason()))
            }
        }
    }

    /// Counts a failed attempt: a wrong password, or an account that does
    /// not exist (count those too, the same way).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the counters could not be written.
    pub async fn record_failure(&self, attempt: &Attempt<'_>) -> Result<(), StoreError> {
        for slot in self.slots(attempt, true) {
            self.inner.counters.fail(&slot).await?;
        }
        Ok(())
    }

    /// Records a successful sign-in: forgets the account+client counter
    /// (the account and client counters keep counting).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the counter could not be deleted.
    pub async fn record_success(&self, attempt: &Attempt<'_>) -> Result<(), StoreError> {
        for slot in self.slots(attempt, false) {
            self.inner.counters.reset(&slot).await?;
        }
        Ok(())
    }

    /// The counters of `attempt`, grouped by hash slot: the account's
    /// (account+client and account), then the client's. `all: false`: the
    /// account+client counter only.
    fn slots(&self, attempt: &Attempt<'_>, all: bool) -> Vec<Slot> {
        let policy = &self.inner.policy;
        let account = normalize(attempt.account);
        let prefix = client_prefix(attempt.client);
        let prefix = prefix_bytes(prefix);
        let needs_account = policy.pair.is_some() || (all && policy.account.is_some());
        let mut slots = Vec::with_capacity(2);
        if needs_account {
            let tag = self.hash(&[b"a", account.as_bytes()]);
            let mut counters = Vec::with_capacity(2);
            if let Some(rule) = policy.pair {
                let hash = self.hash(&[b"p", &prefix, account.as_bytes()]);
                counters.push(CounterRef {
                    scope: Scope::AccountClient,
                    hash,
                    rule,
                });
            }
            if let (true, Some(rule)) = (all, policy.account) {
                counters.push(CounterRef {
                    scope: Scope::Account,
                    hash: tag,
                    rule,
                });
            }
            if !counters.is_empty() {
                slots.push(Slot { tag, counters });
            }
        }
        if let (true, Some(rule)) = (all, policy.client) {
            let tag = self.hash(&[b"c", &prefix]);
            slots.push(Slot {
                tag,
                counters: vec![CounterRef {
                    scope: Scope::Client,
                    hash: tag,
                    rule,
                }],
            });
        }
        slots
    }

    /// HMAC-SHA256 of `parts` under the throttle's subkey. The first part
    /// is a one-letter scope label and client prefixes have a fixed length,
    /// so different inputs never concatenate to the same bytes.
    fn hash(&self, parts: &[&[u8]]) -> Hash {
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<Sha256>::new_from_slice(self.inner.mac_key.as_slice())
            .expect("HMAC takes keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// The account name as counted: surrounding whitespace removed, lower case.
fn normalize(account: &str) -> String {
    account.trim().to_lowercase()
}

/// A client prefix as 16 bytes (IPv4 as its IPv4-mapped IPv6 form).
pub(crate) fn prefix_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Hex of the first 16 bytes of `hash` (128 bits name a counter).
pub(crate) fn short_hex(hash: &Hash) -> String {
    use std::fmt::Write as _;
    hash.iter()
        .take(16)
        .fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
