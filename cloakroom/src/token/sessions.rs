//! [`TokenSessions`]: issuing, refreshing, verifying and revoking.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::claims::{AccessClaims, Audience, Expect, NoClaims};
use super::error::{Rejection, TokenError};
use super::jws;
use super::keys::TokenKeys;
use super::refresh::{self, Family, FamilyId};
use super::revocation::{Revocations, TokenIds};
use crate::crypto::Keyring;
use crate::expiry::{Clock, SystemClock, Timestamp};
use crate::record::Record;
use crate::store::{SessionStore, StoreError};

/// Most compare-and-swap attempts of one refresh.
const ATTEMPTS: usize = 16;

/// Largest leeway [`TokenSessions::with_leeway`] accepts (S42).
const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// Claim names the application's own claims may not use.
const REGISTERED: &[&str] = &[
    "iss",
    "aud",
    "sub",
    "iat",
    "exp",
    "nbf",
    "jti",
    "sid",
    "ep",
    "auth_time",
];

/// What a new token pair is issued for.
#[derive(Clone, Copy)]
struct Grant<'a> {
    family: &'a FamilyId,
    generation: u64,
    user: &'a str,
    epoch: u64,
    record: &'a Record,
    state: &'a Family,
}

/// An access token and its refresh token, in OAuth's response shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenPair {
    /// The signed access token (a JWS).
    pub access_token: String,
    /// The opaque refresh token.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Why [`TokenSessions::build`] refused the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenConfigError {
    /// No issuer or audience (both are checked on every token).
    #[error("token sessions need an issuer and an audience (with_issuer, with_audience)")]
    MissingIssuerOrAudience,
    /// A leeway over 60 s.
    #[error("the leeway may be at most 60 seconds")]
    Leeway,
    /// A zero lifetime, or an idle lifetime above the absolute one.
    #[error("impossible lifetimes: {0}")]
    Lifetimes(&'static str),
    /// Two keys with one `kid`.
    #[error("two signing keys share a kid")]
    DuplicateKid,
    /// The store may lose revocation state (see
    /// [`SessionStore::is_durable`]).
    #[error(
        "the token store is not durable (it may lose or evict revocations); use a durable store, or accept the risk with with_volatile_store_accepted"
    )]
    VolatileStore,
}

/// Token sessions over a store. Cheap to clone.
#[derive(Clone)]
pub struct TokenSessions {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) store: Arc<dyn SessionStore>,
    pub(super) keys: TokenKeys,
    pub(super) refresh_keys: Keyring,
    pub(super) issuer: String,
    pub(super) audience: String,
    pub(super) access_ttl: Duration,
    pub(super) refresh_idle: Duration,
    pub(super) refresh_lifetime: Duration,
    pub(super) reuse_grace: Duration,
    pub(super) leeway: Duration,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) cache_for: Duration,
    pub(super) volatile_accepted: bool,
    pub(super) revocations: Option<Revocations>,
    /// Recently verified tokens (signature checks skipped on reuse).
    pub(super) verified: jws::Verified,
}

impl std::fmt::Debug for TokenSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.inner;
        f.debug_struct("TokenSessions")
            .field("issuer", &i.issuer)
            .field("audience", &i.audience)
            .field("access_ttl", &i.access_ttl)
            .field("keys", &i.keys)
            .finish_non_exhaustive()
    }
}

fn secs(t: Timestamp) -> u64 {
    t.as_millis() / 1000
}

impl TokenSessions {
    /// Token sessions whose refresh families and revocations live in
    /// `store`, access tokens signed by `keys`, refresh tokens by
    /// `refresh_keys`. Defaults: access tokens live 5 minutes, refresh
    /// families 14 days idle and 30 days at most, reuse grace 30 s, leeway
    /// 30 s, revocation cache 5 s. Set the issuer and audience, then
    /// [`build`](Self::build).
    #[must_use]
    pub fn new(store: impl SessionStore, keys: TokenKeys, refresh_keys: Keyring) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: Arc::new(store),
                keys,
                refresh_keys,
                issuer: String::new(),
                audience: String::new(),
                access_ttl: Duration::from_secs(300),
                refresh_idle: Duration::from_secs(14 * 24 * 3600),
                refresh_lifetime: Duration::from_secs(30 * 24 * 3600),
                reuse_grace: Duration::from_secs(30),
                leeway: Duration::from_secs(30),
                clock: Arc::new(SystemClock),
                cache_for: Duration::from_secs(5),
                volatile_accepted: false,
                revocations: None,
                verified: jws::Verified::default(),
            }),
        }
    }

    /// Applies `f` to the configuration, copying it first if a clone
    /// shares it (the copy is unbuilt: call [`build`](Self::build)).
    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        if Arc::get_mut(&mut self.inner).is_none() {
            let i = &self.inner;
            self.inner = Arc::new(Inner {
                store: i.store.clone(),
                keys: i.keys.clone(),
                refresh_keys: i.refresh_keys.clone(),
                issuer: i.issuer.clone(),
                audience: i.audience.clone(),
                revocations: None,
                clock: i.clock.clone(),
                verified: jws::Verified::default(),
                ..**i
            });
        }
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            f(inner);
            // Changed: checked again by `build`.
            inner.revocations = None;
        }
        self
    }

    /// The `iss` of every token (required).
    #[must_use]
    pub fn with_issuer(self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        self.edit(|i| i.issuer = issuer)
    }

    /// The `aud` of every token (required).
    #[must_use]
    pub fn with_audience(self, audience: impl Into<String>) -> Self {
        let audience = audience.into();
        self.edit(|i| i.audience = audience)
    }

    /// How long an access token lives (default 5 minutes).
    #[must_use]
    pub fn with_access_ttl(self, ttl: Duration) -> Self {
        self.edit(|i| i.access_ttl = ttl)
    }

    /// How long a refresh family lives unused (default 14 days) and at
    /// most (default 30 days; rotation never extends it).
    #[must_use]
    pub fn with_refresh_lifetimes(self, idle: Duration, absolute: Duration) -> Self {
        self.edit(|i| {
            i.refresh_idle = idle;
            i.refresh_lifetime = absolute;
        })
    }

    /// How long after a rotation the previous refresh token still returns
    /// the same successor (default 30 s): retries and concurrent tabs.
    #[must_use]
    pub fn with_reuse_grace(self, grace: Duration) -> Self {
        self.edit(|i| i.reuse_grace = grace)
    }

    /// Clock skew tolerated on `exp`, `iat` and `nbf` (default 30 s, at
    /// most 60 s).
    #[must_use]
    pub fn with_leeway(self, leeway: Duration) -> Self {
        self.edit(|i| i.leeway = leeway)
    }

    /// How long a process trusts its copy of a user's revocation record
    /// (default 5 s): the worst-case delay before a revocation made by
    /// another process takes effect here.
    #[must_use]
    pub fn with_revocation_cache(self, ttl: Duration) -> Self {
        self.edit(|i| i.cache_for = ttl)
    }

    /// Reads time from `clock` (tests).
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        self.edit(|i| i.clock = clock)
    }

    /// Accepts a store that may lose data (memory, memcached, Redis without
    /// persistence): a lost record ends the family or, for a user's
    /// revocation record, refuses their tokens until they sign in again.
    #[must_use]
    pub fn with_volatile_store_accepted(self) -> Self {
        self.edit(|i| i.volatile_accepted = true)
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`TokenConfigError`] saying what is wrong.
    pub fn build(mut self) -> Result<Self, TokenConfigError> {
        let i = &self.inner;
        if i.issuer.is_empty() || i.audience.is_empty() {
            return Err(TokenConfigError::MissingIssuerOrAudience);
        }
        if i.leeway > MAX_LEEWAY {
            return Err(TokenConfigError::Leeway);
        }
        if i.access_ttl.is_zero() || i.refresh_idle.is_zero() {
            return Err(TokenConfigError::Lifetimes(
                "lifetimes must be longer than zero",
            ));
        }
        if i.refresh_idle > i.refresh_lifetime {
            return Err(TokenConfigError::Lifetimes(
                "the refresh idle lifetime exceeds the absolute one",
            ));
        }
        if i.keys.has_duplicate_kids() {
            return Err(TokenConfigError::DuplicateKid);
        }
        if !i.store.is_durable() && !i.volatile_accepted {
            return Err(TokenConfigError::VolatileStore);
        }
        let revocations = Revocations::new(i.store.clone(), i.cache_for);
        if Arc::get_mut(&mut self.inner).is_none() {
            self = self.edit(|_| {});
        }
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.revocations = Some(revocations);
        }
        Ok(self)
    }

    /// The access-token and refresh-idle lifetimes, in seconds (cookie
    /// `Max-Age`s).
    pub(crate) fn cookie_lifetimes(&self) -> (u64, u64) {
        (
            self.inner.access_ttl.as_secs(),
            self.inner.refresh_idle.as_secs(),
        )
    }

    pub(super) fn revocations(&self) -> Result<&Revocations, StoreError> {
        self.inner
            .revocations
            .as_ref()
            .ok_or_else(|| {
                StoreError::other("token sessions used unbuilt: call TokenSessions::build after the last with_* setter")
            })
    }

    /// Signs a user in on a new device: a new refresh family and its first
    /// access token.
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] if the store fails (nothing was issued).
    pub async fn issue(&self, user: &str) -> Result<TokenPair, TokenError> {
        self.issue_with(user, None, &NoClaims {}).await
    }

    /// [`issue`](Self::issue) with the time the user authenticated
    /// (`auth_time`, for fresh-auth checks) and claims of the application's
    /// own (a struct serializing to a JSON object), carried by every access
    /// token of the family.
    ///
    /// # Errors
    ///
    /// [`TokenError::Claims`] if `extra` is not an object or uses a
    /// registered claim name; [`TokenError::Store`] if the store fails.
    pub async fn issue_with<C: Serialize>(
        &self,
        user: &str,
        auth_time: Option<Timestamp>,
        extra: &C,
    ) -> Result<TokenPair, TokenError> {
        let claims = serde_json::to_value(extra).map_err(|_| TokenError::Claims)?;
        let Some(object) = claims.as_object() else {
            return Err(TokenError::Claims);
        };
        if REGISTERED.iter().any(|r| object.contains_key(*r)) {
            return Err(TokenError::Claims);
        }
        let claims = serde_json::to_vec(object).map_err(|_| TokenError::Claims)?;
        let i = &self.inner;
        let now = i.clock.now();
        let epoch = self.revocations()?.epoch_for_issue(user, now).await?;
        for _ in 0..4 {
            let family = FamilyId::generate().map_err(|e| StoreError::other(e.to_string()))?;
            let family_state = Family {
                generation: 1,
                rotated_at: now.as_millis(),
                sid: family.sid(),
                claims: claims.clone(),
            };
            let mut record = Record::new(now, i.refresh_idle, i.refresh_lifetime);
            record.version = 1;
            record.user = Some(user.to_owned());
            record.auth_time = auth_time;
            family_state.write(&mut record).map_err(StoreError::other)?;
            match i.store.create(&family.storage_key(), &record, now).await {
                Ok(()) => {
                    let grant = Grant {
                        family: &family,
                        generation: 1,
                        user,
                        epoch,
                        record: &record,
                        state: &family_state,
                    };
                    return self.pair(&grant, now);
                }
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::other("could not file a new refresh family").into())
    }

    /// Trades a refresh token for a new pair, rotating the family.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidRefresh`] for an unknown, expired or revoked
    /// token, and for a reused one (which revokes its family);
    /// [`TokenError::Store`] if the store fails.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, TokenError> {
        let i = &self.inner;
        let Some((family, generation)) = refresh::parse(&i.refresh_keys, refresh_token) else {
            return Err(TokenError::InvalidRefresh);
        };
        let key = family.storage_key();
        for _ in 0..ATTEMPTS {
            let now = i.clock.now();
            let Some(record) = i.store.load(&key, now).await? else {
                return Err(TokenError::InvalidRefresh);
            };
            let (Some(state), Some(user)) = (Family::read(&record), record.user.clone()) else {
                return Err(TokenError::InvalidRefresh);
            };
            // The epoch is read before the family is written (or checked
            // again): a "revoke user" that deletes the families and then
            // bumps the epoch either stops this refresh or revokes what it
            // issues.
            let epoch = self.revocations()?.epoch_for_issue(&user, now).await?;
            let current = state.generation;
            if generation == current {
                let next = Family {
                    generation: current + 1,
                    rotated_at: now.as_millis(),
                    ..state
                };
                let mut updated = record.clone();
                updated.version = record.version + 1;
                updated.idle_deadline = now.saturating_add(i.refresh_idle);
                next.write(&mut updated).map_err(StoreError::other)?;
                match i.store.save(&key, &updated, record.version, now).await {
                    Ok(()) => {
                        let grant = Grant {
                            family: &family,
                            generation: next.generation,
                            user: &user,
                            epoch,
                            record: &updated,
                            state: &next,
                        };
                        return self.pair(&grant, now);
                    }
                    Err(StoreError::VersionConflict) => continue,
                    Err(StoreError::NotFound) => return Err(TokenError::InvalidRefresh),
                    Err(e) => return Err(e.into()),
                }
            }
            let grace_ms = u64::try_from(i.reuse_grace.as_millis()).unwrap_or(u64::MAX);
            if generation + 1 == current
                && now.as_millis().saturating_sub(state.rotated_at) <= grace_ms
            {
                // A retry or a concurrent tab: the same successor. The
                // family must still exist after the epoch was read.
                if i.store.load(&key, now).await?.is_none() {
                    return Err(TokenError::InvalidRefresh);
                }
                let grant = Grant {
                    family: &family,
                    generation: current,
                    user: &user,
                    epoch,
                    record: &record,
                    state: &state,
                };
                return self.pair(&grant, now);
            }
            // An older generation (or one the store never reached): the
            // token leaked or the store was rolled back. Revoke the family.
            tracing::warn!(
                event = "refresh_reuse",
                sid = %state.sid,
                "a rotated refresh token was presented again; its family is revoked"
            );
            self.end_family(&key, &user, &state.sid, now).await?;
            return Err(TokenError::InvalidRefresh);
        }
        Err(StoreError::other("refresh still conflicted; try again").into())
    }

    fn pair(&self, g: &Grant<'_>, now: Timestamp) -> Result<TokenPair, TokenError> {
        let Grant {
            family,
            generation,
            user,
            epoch,
            record,
            state,
        } = *g;
        let i = &self.inner;
        let extra: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&state.claims).map_err(StoreError::corrupt)?;
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|e| StoreError::other(e.to_string()))?;
        let claims = AccessClaims {
            iss: i.issuer.clone(),
            aud: Audience::One(i.audience.clone()),
            sub: user.to_owned(),
            iat: secs(now),
            exp: secs(now.saturating_add(i.access_ttl)),
            nbf: None,
            jti: base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, jti),
            sid: state.sid.clone(),
            ep: epoch,
            auth_time: record.auth_time.map(secs),
            extra,
        };
        let access_token = jws::sign(&i.keys, &claims).map_err(StoreError::other)?;
        let refresh_token =
            refresh::token(&i.refresh_keys, family, generation).map_err(StoreError::other)?;
        Ok(TokenPair {
            access_token,
            refresh_token,
            token_type: "Bearer",
            expires_in: i.access_ttl.as_secs(),
        })
    }

    /// Verifies an access token: header, signature, claims, then whether it
    /// was revoked.
    ///
    /// # Errors
    ///
    /// [`TokenError::Rejected`] with the reason (answer 401 with
    /// [`Rejection::www_authenticate`]); [`TokenError::Store`] if the
    /// revocation state cannot be read (answer 503: never accept a token
    /// whose revocation is unknown).
    pub async fn verify(&self, access_token: &str) -> Result<AccessClaims, TokenError> {
        self.verify_as::<NoClaims>(access_token).await
    }

    /// [`verify`](Self::verify) decoding the application's claims as `C`.
    ///
    /// # Errors
    ///
    /// As [`verify`](Self::verify); a `C` that does not decode is
    /// [`Rejection::BadClaims`].
    pub async fn verify_as<C: DeserializeOwned>(
        &self,
        access_token: &str,
    ) -> Result<AccessClaims<C>, TokenError> {
        let i = &self.inner;
        let now = i.clock.now();
        let payload = i.verified.verify(&i.keys, access_token, now)?;
        let claims: AccessClaims<C> =
            jws::from_json_once(&payload).map_err(|_| Rejection::BadClaims)?;
        claims.check(&Expect {
            issuer: &i.issuer,
            audience: &i.audience,
            leeway_secs: i.leeway.as_secs(),
            now_secs: secs(now),
        })?;
        let revoked = self
            .revocations()?
            .is_revoked(
                &claims.sub,
                &TokenIds {
                    ep: claims.ep,
                    sid: &claims.sid,
                    jti: &claims.jti,
                },
                now,
            )
            .await?;
        if revoked {
            return Err(Rejection::Revoked.into());
        }
        Ok(claims)
    }
}
