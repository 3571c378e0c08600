//! Token sessions on every store: issue, verify, refresh with rotation and
//! reuse detection, and each kind of revocation (issue "Token sessions";
//! S45). The same scenarios run on memory, SQLite, PostgreSQL, Redis and
//! Redis Cluster.
#![cfg(feature = "jwt")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use cloakroom::MockClock;
use cloakroom::crypto::{Keyring, MasterKey};
use cloakroom::store::SessionStore;
use cloakroom::token::{
    REFRESH_TOKEN_PREFIX, Rejection, TokenError, TokenKey, TokenKeys, TokenSessions,
};

/// A fixed refresh-token key, so that two "processes" share it.
const REFRESH_KEY: [u8; 32] = [
    0x3c, 0x91, 0x5e, 0x07, 0xa2, 0x4b, 0xd8, 0x16, 0x6f, 0xe3, 0x28, 0x9a, 0x71, 0x0d, 0xc4, 0x55,
    0xb9, 0x32, 0x8e, 0x47, 0xfa, 0x13, 0x6c, 0xd1, 0x29, 0x84, 0x5b, 0xe6, 0x0a, 0x97, 0x3f, 0xc8,
];

/// Token sessions over `store` with a mock clock, as one process would
/// configure them (the keys are fixed so two "processes" share them).
fn sessions(store: Arc<dyn SessionStore>, clock: &MockClock) -> TokenSessions {
    TokenSessions::new(
        store,
        TokenKeys::new(TokenKey::ed25519_from_seed(&[42; 32])),
        Keyring::new(vec![MasterKey::from_bytes(&REFRESH_KEY).unwrap()]).unwrap(),
    )
    .with_issuer("https://auth.test")
    .with_audience("api.test")
    .with_refresh_lifetimes(Duration::from_secs(3600), Duration::from_secs(2 * 3600))
    .with_clock(clock.clone())
    .with_volatile_store_accepted()
    .build()
    .unwrap()
}

fn user() -> String {
    format!("token-user-{}", support::services::random_hex(12))
}

fn rejected(r: Result<impl std::fmt::Debug, TokenError>) -> Rejection {
    match r {
        Err(TokenError::Rejected(why)) => why,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Issue, verify, rotate; the previous token within the grace gets the
/// same successor; garbage is refused.
pub async fn issue_verify_and_refresh(store: Arc<dyn SessionStore>) {
    let clock = MockClock::new();
    let t = sessions(store, &clock);
    let alice = user();
    let pair = t.issue(&alice).await.unwrap();
    assert!(pair.refresh_token.starts_with(REFRESH_TOKEN_PREFIX));
    assert_eq!((pair.token_type, pair.expires_in), ("Bearer", 300));
    let claims = t.verify(&pair.access_token).await.unwrap();
    assert_eq!(claims.sub, alice);
    let next = t.refresh(&pair.refresh_token).await.unwrap();
    assert_ne!(next.refresh_token, pair.refresh_token, "every use rotates");
    let again = t.verify(&next.access_token).await.unwrap();
    assert_eq!(again.sid, claims.sid, "one device, one sid");
    // Within the grace the previous token gets the same successor.
    clock.advance(Duration::from_secs(10));
    let retry = t.refresh(&pair.refresh_token).await.unwrap();
    assert_eq!(retry.refresh_token, next.refresh_token);
    // The successor rotates on.
    let third = t.refresh(&next.refresh_token).await.unwrap();
    assert!(t.verify(&third.access_token).await.is_ok());
    // Garbage and foreign tokens are refused, not errors of the store.
    for bad in ["", "cloakroom_rt_", "cloakroom_rt_AAAA", &pair.access_token] {
        assert!(
            matches!(t.refresh(bad).await, Err(TokenError::InvalidRefresh)),
            "{bad}"
        );
    }
}

/// A rotated token presented after the grace revokes its family and the
/// family's access tokens (reuse detection).
pub async fn reuse_after_the_grace_revokes_the_family(store: Arc<dyn SessionStore>) {
    let clock = MockClock::new();
    let t = sessions(store, &clock);
    let alice = user();
    let first = t.issue(&alice).await.unwrap();
    let second = t.refresh(&first.refresh_token).await.unwrap();
    clock.advance(Duration::from_secs(31));
    // The stolen first token comes back after the grace: the family ends.
    assert!(matches!(
        t.refresh(&first.refresh_token).await,
        Err(TokenError::InvalidRefresh)
    ));
    assert!(matches!(
        t.refresh(&second.refresh_token).await,
        Err(TokenError::InvalidRefresh)
    ));
    assert_eq!(
        rejected(t.verify(&second.access_token).await),
        Rejection::Revoked
    );
    // Other devices are untouched; signing in again works.
    let fresh = t.issue(&alice).await.unwrap();
    assert!(t.verify(&fresh.access_token).await.is_ok());
}

/// 50 concurrent refreshes of one token: one successor, no logout.
pub async fn concurrent_refreshes_converge_on_one_successor(store: Arc<dyn SessionStore>) {
    let clock = MockClock::new();
    let t = sessions(store, &clock);
    let pair = t.issue(&user()).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (t, token) = (t.clone(), pair.refresh_token.clone());
            tokio::spawn(async move { t.refresh(&token).await })
        })
        .collect();
    let mut successors = std::collections::BTreeSet::new();
    for task in tasks {
        let next = task.await.unwrap().expect("no refresh of the pair fails");
        assert!(t.verify(&next.access_token).await.is_ok());
        successors.insert(next.refresh_token);
    }
    assert_eq!(
        successors.len(),
        1,
        "50 refreshes, one successor generation"
    );
    let successor = successors.into_iter().next().unwrap();
    assert!(
        t.refresh(&successor).await.is_ok(),
        "and it rotates on: no logout"
    );
}

/// Revoking one token, one device (by handle or refresh token) and a
/// whole user, each exactly.
pub async fn revocations_of_user_device_and_token(store: Arc<dyn SessionStore>) {
    let clock = MockClock::new();
    let t = sessions(store, &clock);
    let alice = user();
    let phone = t.issue(&alice).await.unwrap();
    let laptop = t.issue(&alice).await.unwrap();
    // One token.
    let claims = t.verify(&laptop.access_token).await.unwrap();
    t.revoke_token(&claims).await.unwrap();
    assert_eq!(
        rejected(t.verify(&laptop.access_token).await),
        Rejection::Revoked
    );
    let laptop = t.refresh(&laptop.refresh_token).await.unwrap();
    assert!(
        t.verify(&laptop.access_token).await.is_ok(),
        "the device lives on"
    );
    // One device, by its handle.
    let phone_sid = t.verify(&phone.access_token).await.unwrap().sid;
    assert!(t.revoke_device(&alice, &phone_sid).await.unwrap());
    assert_eq!(
        rejected(t.verify(&phone.access_token).await),
        Rejection::Revoked
    );
    assert!(matches!(
        t.refresh(&phone.refresh_token).await,
        Err(TokenError::InvalidRefresh)
    ));
    assert!(t.verify(&laptop.access_token).await.is_ok());
    assert!(
        !t.revoke_device(&user(), &phone_sid).await.unwrap(),
        "not another user's"
    );
    // The whole user.
    assert!(t.revoke_user(&alice).await.unwrap() >= 1);
    assert_eq!(
        rejected(t.verify(&laptop.access_token).await),
        Rejection::Revoked
    );
    assert!(matches!(
        t.refresh(&laptop.refresh_token).await,
        Err(TokenError::InvalidRefresh)
    ));
    let back = t.issue(&alice).await.unwrap();
    assert!(
        t.verify(&back.access_token).await.is_ok(),
        "a new sign-in works"
    );
    // Logging out one device by its refresh token.
    assert!(t.revoke_refresh(&back.refresh_token).await.unwrap());
    assert_eq!(
        rejected(t.verify(&back.access_token).await),
        Rejection::Revoked
    );
    assert!(
        !t.revoke_refresh(&back.refresh_token).await.unwrap(),
        "already ended"
    );
}

/// Access tokens expire; rotation never extends a family past its
/// absolute lifetime; an unused family ends after its idle lifetime.
pub async fn lifetimes_follow_the_clock(store: Arc<dyn SessionStore>) {
    let clock = MockClock::new();
    let t = sessions(store, &clock);
    let mut pair = t.issue(&user()).await.unwrap();
    clock.advance(Duration::from_secs(300 + 31));
    assert_eq!(
        rejected(t.verify(&pair.access_token).await),
        Rejection::Expired
    );
    // Refreshing every 50 minutes keeps the family alive, but never past
    // its 2-hour absolute lifetime.
    pair = t.refresh(&pair.refresh_token).await.unwrap();
    clock.advance(Duration::from_secs(50 * 60));
    pair = t.refresh(&pair.refresh_token).await.unwrap();
    clock.advance(Duration::from_secs(50 * 60));
    pair = t.refresh(&pair.refresh_token).await.unwrap();
    clock.advance(Duration::from_secs(30 * 60));
    assert!(matches!(
        t.refresh(&pair.refresh_token).await,
        Err(TokenError::InvalidRefresh)
    ));
    // And an unused family ends after its idle lifetime.
    let idle = t.issue(&user()).await.unwrap();
    clock.advance(Duration::from_secs(3601));
    assert!(matches!(
        t.refresh(&idle.refresh_token).await,
        Err(TokenError::InvalidRefresh)
    ));
}

/// Another process honours a revocation within its cache time.
pub async fn other_processes_see_revocations_within_the_cache_time(store: Arc<dyn SessionStore>) {
    let clock = MockClock::new();
    let a = sessions(store.clone(), &clock);
    let b = sessions(store, &clock);
    let alice = user();
    let pair = a.issue(&alice).await.unwrap();
    assert!(
        b.verify(&pair.access_token).await.is_ok(),
        "b caches alice's state"
    );
    a.revoke_user(&alice).await.unwrap();
    assert_eq!(
        rejected(a.verify(&pair.access_token).await),
        Rejection::Revoked
    );
    // b may accept for at most its cache time (5 s), then refuses.
    clock.advance(Duration::from_secs(6));
    assert_eq!(
        rejected(b.verify(&pair.access_token).await),
        Rejection::Revoked
    );
}

/// S24, S25: a token family shows in the user's device list as a token
/// family; ending it by handle needs the `TokenSessions` (which also deny
/// its access token) and nothing is ended without them.
pub async fn token_families_are_devices(store: Arc<dyn SessionStore>) {
    use cloakroom::auth::{DeviceError, DeviceKind, Devices};
    let clock = MockClock::new();
    let t = sessions(store.clone(), &clock);
    let alice = user();
    let pair = t.issue(&alice).await.unwrap();
    let plain = Devices::new(store.clone()).with_clock(clock.clone());
    let listed = plain.list(&alice, None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].kind, DeviceKind::TokenFamily);
    assert!(!pair.refresh_token.contains(&listed[0].handle));
    assert!(matches!(
        plain.revoke(&alice, &listed[0].handle).await,
        Err(DeviceError::TokensNotConfigured)
    ));
    assert!(matches!(
        plain.revoke_all(&alice, None).await,
        Err(DeviceError::TokensNotConfigured)
    ));
    assert!(
        t.verify(&pair.access_token).await.is_ok(),
        "nothing was ended"
    );
    let with_tokens = plain.with_tokens(t.clone());
    with_tokens.revoke(&alice, &listed[0].handle).await.unwrap();
    assert!(
        t.verify(&pair.access_token).await.is_err(),
        "its access token is denied"
    );
    assert!(
        t.refresh(&pair.refresh_token).await.is_err(),
        "its refresh token is dead"
    );
    assert!(with_tokens.list(&alice, None).await.unwrap().is_empty());
}

macro_rules! token_scenarios {
    ($make:expr) => {
        token_scenarios!(@each $make, issue_verify_and_refresh, reuse_after_the_grace_revokes_the_family,
            concurrent_refreshes_converge_on_one_successor, revocations_of_user_device_and_token,
            lifetimes_follow_the_clock, other_processes_see_revocations_within_the_cache_time,
            token_families_are_devices);
    };
    (@each $make:expr, $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(store) = $make.await {
                    super::$name(store).await;
                }
            }
        )*
    };
}

mod memory {
    token_scenarios!(async { Some(super::Arc::new(cloakroom::store::MemoryStore::new()) as _) });
}

mod sqlite {
    fn open() -> std::sync::Arc<dyn cloakroom::store::SessionStore> {
        let dir = tempfile::tempdir().unwrap();
        let store = cloakroom::store::SqliteStore::open(dir.path().join("t.db")).unwrap();
        // Keep the directory for the test's life.
        std::mem::forget(dir);
        std::sync::Arc::new(store)
    }
    token_scenarios!(async { Some(open()) });
}

mod postgres {
    async fn connect() -> Option<std::sync::Arc<dyn cloakroom::store::SessionStore>> {
        match cloakroom::store::PostgresStore::connect(&crate::support::services::postgres_url())
            .await
        {
            Ok(s) => Some(std::sync::Arc::new(s)),
            Err(e) => {
                cloakroom::store::conformance::skip_service("postgres", &e);
                None
            }
        }
    }
    token_scenarios!(connect());
}

mod redis {
    async fn connect() -> Option<std::sync::Arc<dyn cloakroom::store::SessionStore>> {
        let prefix = format!(
            "cloakroom-test:token:{}:",
            crate::support::services::random_hex(12)
        );
        match cloakroom::store::RedisStore::connect(&crate::support::services::redis_url()).await {
            Ok(s) => Some(std::sync::Arc::new(s.with_prefix(prefix).unwrap())),
            Err(e) => {
                cloakroom::store::conformance::skip_service("redis", &e);
                None
            }
        }
    }
    token_scenarios!(connect());
}

mod redis_cluster {
    async fn connect() -> Option<std::sync::Arc<dyn cloakroom::store::SessionStore>> {
        let urls = crate::support::services::redis_cluster_urls();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let prefix = format!(
            "cloakroom-test:token:{}:",
            crate::support::services::random_hex(12)
        );
        match cloakroom::store::RedisStore::connect_cluster(&urls).await {
            Ok(s) => Some(std::sync::Arc::new(s.with_prefix(prefix).unwrap())),
            Err(e) => {
                cloakroom::store::conformance::skip_service("redis-cluster", &e);
                None
            }
        }
    }
    token_scenarios!(connect());
}

/// A setter after `build` (or on a clone) needs `build` again, and never
/// changes a clone already in use.
#[tokio::test]
async fn setters_rebuild_and_leave_clones_alone() {
    let clock = MockClock::new();
    let built = sessions(Arc::new(cloakroom::store::MemoryStore::new()), &clock);
    let in_use = built.clone();
    let changed = built.with_access_ttl(Duration::from_secs(60));
    let err = changed.issue("alice").await.expect_err("unbuilt");
    assert!(err.to_string().contains("build"), "{err}");
    let changed = changed.build().unwrap();
    assert_eq!(changed.issue("alice").await.unwrap().expires_in, 60);
    assert_eq!(
        in_use.issue("alice").await.unwrap().expires_in,
        300,
        "the clone is untouched"
    );
    let too_lax = in_use.clone().with_leeway(Duration::from_secs(61)).build();
    assert!(matches!(
        too_lax,
        Err(cloakroom::token::TokenConfigError::Leeway)
    ));
}

/// A token verified before is re-checked on every use: after its key's
/// retirement grace it is refused even though its signature was checked
/// (and remembered) earlier; an edited copy is never taken for it.
#[tokio::test]
async fn remembered_tokens_still_follow_their_key_and_claims() {
    let clock = MockClock::new();
    let store: Arc<dyn SessionStore> = Arc::new(cloakroom::store::MemoryStore::new());
    let refresh_keys = || Keyring::new(vec![MasterKey::from_bytes(&REFRESH_KEY).unwrap()]).unwrap();
    let build = |keys: TokenKeys| {
        TokenSessions::new(store.clone(), keys, refresh_keys())
            .with_issuer("https://auth.test")
            .with_audience("api.test")
            .with_clock(clock.clone())
            .with_volatile_store_accepted()
            .build()
            .unwrap()
    };
    let old = || TokenKey::ed25519_from_seed(&[1; 32]);
    let issuer = build(TokenKeys::new(old()));
    let grace_end = cloakroom::Clock::now(&clock).saturating_add(Duration::from_secs(120));
    let verifier =
        build(TokenKeys::new(TokenKey::ed25519_from_seed(&[2; 32])).with_retired(old(), grace_end));
    let pair = issuer.issue(&user()).await.unwrap();
    assert!(verifier.verify(&pair.access_token).await.is_ok());
    assert!(
        verifier.verify(&pair.access_token).await.is_ok(),
        "again, remembered"
    );
    let mut edited = pair.access_token.clone();
    edited.push('A');
    assert!(verifier.verify(&edited).await.is_err());
    clock.advance(Duration::from_secs(121));
    assert_eq!(
        rejected(verifier.verify(&pair.access_token).await),
        Rejection::UnknownKey
    );
    // Claims are checked on every use too: an expired token stays refused.
    let fresh = issuer.issue(&user()).await.unwrap();
    assert!(issuer.verify(&fresh.access_token).await.is_ok());
    clock.advance(Duration::from_secs(331));
    assert_eq!(
        rejected(issuer.verify(&fresh.access_token).await),
        Rejection::Expired
    );
}
