//! Login throttling (S53) on the memory backend, a Redis server and a Redis
//! Cluster, the property that both backends admit the same sequences, and
//! client-IP resolution. The session-guessing hook (S51) is in
//! `tests/guessing.rs`.
//!
//! Servers as in `tests/redis.rs`: `CLOAKROOM_TEST_REDIS_URL` and
//! `CLOAKROOM_TEST_REDIS_CLUSTER_URLS`; an unreachable server skips its
//! tests (printing `CLOAKROOM-SERVICE-SKIPPED`), which fails them under
//! `CI=true`.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::IpAddr;
use std::time::Duration;

use axum::http::StatusCode;
use cloakroom::MockClock;
use cloakroom::crypto::{Keyring, MasterKey};
use cloakroom::rate_limit::{
    Attempt, ClientIpSource, LoginThrottle, MemoryCounters, Policy, Rule, THROTTLED_BODY,
    ThrottleReason, Throttled,
};
use http::HeaderMap;

fn keyring() -> Keyring {
    Keyring::from(MasterKey::generate())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn memory(policy: Policy) -> (LoginThrottle, MockClock, MemoryCounters) {
    let clock = MockClock::new();
    let counters = MemoryCounters::new().with_clock(clock.clone());
    let throttle = LoginThrottle::memory_with(&keyring(), policy, counters.clone());
    (throttle, clock, counters)
}

async fn fail_n(t: &LoginThrottle, a: &Attempt<'_>, n: usize) {
    for _ in 0..n {
        t.record_failure(a).await.unwrap();
    }
}

/// S53: after 5 free failures, waits double from 1 s, are capped at
/// 15 min, and moving the clock past the window admits again with fresh
/// counters: no permanent lockout.
#[tokio::test]
async fn s53_backoff_grows_is_capped_and_never_permanent() {
    let (t, clock, _) = memory(Policy::login());
    let a = Attempt::new("alice", ip("192.0.2.1"));
    for _ in 0..5 {
        t.check(&a).await.unwrap();
        t.record_failure(&a).await.unwrap();
    }
    let mut waits = Vec::new();
    for _ in 0..12 {
        let refused = t.check(&a).await.unwrap_err();
        assert_eq!(refused.reason, ThrottleReason::AccountClient);
        waits.push(refused.retry_after.as_secs());
        clock.advance(refused.retry_after);
        t.check(&a).await.unwrap();
        t.record_failure(&a).await.unwrap();
    }
    assert_eq!(
        waits,
        [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900],
        "doubling, capped at 15 min"
    );
    // Past the hour-long window: admitted, and 5 free failures again.
    clock.advance(Duration::from_secs(3600));
    for _ in 0..5 {
        t.check(&a).await.unwrap();
        t.record_failure(&a).await.unwrap();
    }
    assert!(t.check(&a).await.is_err());
}

/// S53: at most 100 failures per account per hour from all clients
/// together; the 101st waits for the hour's end, not longer.
#[tokio::test]
async fn s53_account_cap_is_100_per_hour() {
    let (t, clock, _) = memory(Policy::login());
    for i in 0..100u32 {
        let client = IpAddr::from([198, 51, (i / 256) as u8, (i % 256) as u8]);
        let a = Attempt::new("bob", client);
        t.check(&a).await.unwrap();
        t.record_failure(&a).await.unwrap();
    }
    let fresh = Attempt::new("bob", ip("203.0.113.200"));
    let refused = t.check(&fresh).await.unwrap_err();
    assert_eq!(refused.reason, ThrottleReason::Account);
    assert!(refused.retry_after <= Duration::from_secs(3600));
    assert!(refused.retry_after > Duration::from_secs(3500));
    // Other accounts from the same client are untouched.
    t.check(&Attempt::new("carol", ip("203.0.113.200")))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(3600));
    t.check(&fresh).await.unwrap();
}

/// S53: the throttle never asks whether an account exists: an unknown
/// username meets exactly the answers a known one does.
#[tokio::test]
async fn s53_unknown_and_known_usernames_are_throttled_alike() {
    let (t, _clock, _) = memory(Policy::login());
    let mut answers = Vec::new();
    for name in ["alice", "no-such-user-7f3a"] {
        let a = Attempt::new(name, ip("192.0.2.9"));
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(t.check(&a).await.map_err(|e| e.retry_after));
            t.record_failure(&a).await.unwrap();
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1]);
}

/// S53: account names are trimmed and lower-cased before hashing; a
/// success forgets the account+client counter only.
#[tokio::test]
async fn s53_names_normalized_and_success_resets_pair_only() {
    let policy = Policy::login().with_account(Some(Rule::cap(7, Duration::from_secs(3600))));
    let (t, _clock, _) = memory(policy);
    let c = ip("192.0.2.10");
    fail_n(&t, &Attempt::new("Dave ", c), 5).await;
    let refused = t.check(&Attempt::new("dave", c)).await.unwrap_err();
    assert_eq!(refused.reason, ThrottleReason::AccountClient);
    t.record_success(&Attempt::new("dave", c)).await.unwrap();
    t.check(&Attempt::new("dave", c)).await.unwrap();
    // The account counter kept its 5: two more reach its cap of 7.
    fail_n(&t, &Attempt::new("dave", ip("192.0.2.11")), 2).await;
    let refused = t.check(&Attempt::new("dave", c)).await.unwrap_err();
    assert_eq!(refused.reason, ThrottleReason::Account);
}

/// S53: a client is an IPv6 /64: 300 failures spread over one /64 and many
/// accounts exhaust it; the next /64 is untouched.
#[tokio::test]
async fn s53_client_cap_aggregates_ipv6_64() {
    let (t, _clock, _) = memory(Policy::login());
    for i in 0..300u32 {
        let client = IpAddr::from([0x2001, 0xdb8, 7, 7, i as u16, 1, 2, (i * 7) as u16]);
        let account = format!("user{i}");
        t.record_failure(&Attempt::new(&account, client))
            .await
            .unwrap();
    }
    let same_64 = Attempt::new("someone-new", ip("2001:db8:7:7:ffff::1"));
    let refused = t.check(&same_64).await.unwrap_err();
    assert_eq!(refused.reason, ThrottleReason::Client);
    t.check(&Attempt::new("someone-new", ip("2001:db8:7:8::1")))
        .await
        .unwrap();
}

/// S53: the memory backend keeps at most its bound of counters, however
/// many accounts and clients fail.
#[tokio::test]
async fn s53_memory_bound_holds() {
    let clock = MockClock::new();
    let counters = MemoryCounters::new()
        .with_max_keys(1000)
        .with_clock(clock.clone());
    let t = LoginThrottle::memory_with(&keyring(), Policy::login(), counters.clone());
    for i in 0..5000u32 {
        let account = format!("flood{i}");
        let client = IpAddr::from(i.wrapping_mul(2_654_435_761).to_be_bytes());
        t.record_failure(&Attempt::new(&account, client))
            .await
            .unwrap();
        assert!(counters.len() <= 1000);
    }
    assert_eq!(counters.len(), 1000);
}

/// S53: one response for every reason: 429, `Retry-After`, one body.
#[test]
fn s53_one_response_for_every_reason() {
    fn make(reason: ThrottleReason) -> Throttled {
        // Throttled is non-exhaustive: get real ones from a throttle.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (policy, n) = match reason {
                ThrottleReason::AccountClient => (Policy::login(), 6),
                ThrottleReason::Account => (Policy::login().with_account_client(None), 100),
                _ => (Policy::registration(), 20),
            };
            let (t, _, _) = memory(policy);
            let a = Attempt::new("x", ip("192.0.2.50"));
            fail_n(&t, &a, n).await;
            t.check(&a).await.unwrap_err()
        })
    }
    let mut bodies = Vec::new();
    for reason in [
        ThrottleReason::AccountClient,
        ThrottleReason::Account,
        ThrottleReason::Client,
    ] {
        let refused = make(reason);
        assert_eq!(refused.reason, reason);
        let res: http::Response<String> = refused.response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        let secs: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(secs >= 1);
        bodies.push(res.into_body());
    }
    assert!(bodies.iter().all(|b| b == THROTTLED_BODY));
}

#[cfg(feature = "redis")]
mod on_redis {
    use super::*;
    use cloakroom::SessionId;
    use cloakroom::store::RedisStore;
    use cloakroom::store::conformance::skip_service;
    use proptest::prelude::*;
    use support::services::{redis_cluster_urls, redis_url};

    pub(super) fn prefix() -> String {
        format!(
            "cloakroom-throttle:{}:",
            &SessionId::generate().storage_key().to_hex()[..12]
        )
    }

    /// A store on a fresh prefix and plain connections to its nodes, or
    /// `None` (skipped).
    async fn setup(cluster: bool) -> Option<(RedisStore, Vec<redis::aio::MultiplexedConnection>)> {
        let (service, urls) = if cluster {
            ("redis-cluster", redis_cluster_urls())
        } else {
            ("redis", vec![redis_url()])
        };
        let store = if cluster {
            let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
            RedisStore::connect_cluster(&urls).await
        } else {
            RedisStore::connect(&urls[0]).await
        };
        let store = match store {
            Ok(s) => s.with_prefix(prefix()).unwrap(),
            Err(e) => {
                skip_service(service, &e);
                return None;
            }
        };
        let mut nodes = Vec::new();
        for url in urls {
            let client = redis::Client::open(url.as_str()).unwrap();
            nodes.push(client.get_multiplexed_async_connection().await.unwrap());
        }
        Some((store, nodes))
    }

    /// S53: nothing at rest names the account or the client: every key
    /// under the prefix, on every node, and every value, is free of both.
    async fn no_usernames_in_keys(cluster: bool) {
        let Some((store, nodes)) = setup(cluster).await else {
            return;
        };
        let t = LoginThrottle::redis(&store, &keyring(), Policy::login());
        let name = "sensitive-username-q9";
        let client = "192.0.2.213";
        fail_n(&t, &Attempt::new(name, ip(client)), 3).await;
        let mut seen = Vec::new();
        for node in &nodes {
            let mut c = node.clone();
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}*", store.prefix()))
                    .query_async(&mut c)
                    .await
                    .unwrap();
                for key in keys {
                    let fields: Vec<String> = redis::cmd("HGETALL")
                        .arg(&key)
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    seen.push((key, fields));
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        assert_eq!(seen.len(), 3, "account+client, account, client: {seen:?}");
        for (key, fields) in &seen {
            let all = format!("{key} {fields:?}");
            assert!(!all.contains(name) && !all.contains(client), "{all}");
            assert!(!all.to_lowercase().contains("sensitive"), "{all}");
        }
    }

    #[tokio::test]
    async fn s53_redis_no_usernames_in_keys() {
        no_usernames_in_keys(false).await;
    }

    #[tokio::test]
    async fn s53_redis_cluster_no_usernames_in_keys() {
        no_usernames_in_keys(true).await;
    }

    /// S53 on Redis (server time): backoff then the window's end admits
    /// again.
    async fn backoff_and_window(cluster: bool) {
        let Some((store, _)) = setup(cluster).await else {
            return;
        };
        let policy = Policy::login().with_account_client(Some(
            Rule::backoff(2, Duration::from_millis(300), Duration::from_millis(600))
                .with_window(Duration::from_millis(1500)),
        ));
        let t = LoginThrottle::redis(&store, &keyring(), policy);
        let a = Attempt::new("erin", ip("2001:db8::5"));
        fail_n(&t, &a, 2).await;
        let refused = t.check(&a).await.unwrap_err();
        assert_eq!(refused.reason, ThrottleReason::AccountClient);
        assert!(refused.retry_after <= Duration::from_millis(300));
        tokio::time::sleep(refused.retry_after + Duration::from_millis(20)).await;
        t.check(&a).await.unwrap();
        t.record_failure(&a).await.unwrap();
        let refused = t.check(&a).await.unwrap_err();
        assert!(refused.retry_after > Duration::from_millis(300));
        tokio::time::sleep(Duration::from_millis(1600)).await;
        t.check(&a).await.unwrap();
        // The success path runs too.
        t.record_success(&a).await.unwrap();
    }

    #[tokio::test]
    async fn s53_redis_backoff_and_window_expiry() {
        backoff_and_window(false).await;
    }

    #[tokio::test]
    async fn s53_redis_cluster_backoff_and_window_expiry() {
        backoff_and_window(true).await;
    }

    /// A policy whose waits outlast any test run, so that decisions depend
    /// on counts alone while the memory clock stands still and Redis's
    /// moves on.
    fn tight_policy() -> Policy {
        let long = Duration::from_secs(7200);
        Policy::login()
            .with_account_client(Some(
                Rule::backoff(2, Duration::from_secs(600), Duration::from_secs(3600))
                    .with_window(long),
            ))
            .with_account(Some(Rule::cap(4, long)))
            .with_client(Some(Rule::cap(6, long)))
    }

    #[derive(Debug, Clone, Copy)]
    enum Op {
        Check,
        Fail,
        Succeed,
    }

    fn ops() -> impl Strategy<Value = Vec<(usize, usize, Op)>> {
        let op = prop_oneof![Just(Op::Check), Just(Op::Fail), Just(Op::Succeed)];
        proptest::collection::vec((0..3usize, 0..3usize, op), 1..30)
    }

    const ACCOUNTS: [&str; 3] = ["amy", "Amy2", "ben"];
    const CLIENTS: [&str; 3] = ["192.0.2.1", "2001:db8:1:1::1", "2001:db8:1:1::2"];

    /// The admit/deny answers of one backend to `ops`.
    async fn answers(t: &LoginThrottle, ops: &[(usize, usize, Op)]) -> Vec<bool> {
        let mut out = Vec::new();
        for &(a, c, op) in ops {
            let attempt = Attempt::new(ACCOUNTS[a], ip(CLIENTS[c]));
            match op {
                Op::Check => out.push(t.check(&attempt).await.is_ok()),
                Op::Fail => t.record_failure(&attempt).await.unwrap(),
                Op::Succeed => t.record_success(&attempt).await.unwrap(),
            }
        }
        out
    }

    fn same_decisions(cluster: bool) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let Some((store, _)) = rt.block_on(setup(cluster)) else {
            return;
        };
        let config = ProptestConfig {
            cases: 24,
            ..ProptestConfig::default()
        };
        proptest!(config, |(ops in ops())| {
            let keys = keyring();
            let store = store.clone().with_prefix(prefix()).unwrap();
            let on_redis = LoginThrottle::redis(&store, &keys, tight_policy());
            let counters = MemoryCounters::new().with_clock(MockClock::new());
            let in_memory = LoginThrottle::memory_with(&keys, tight_policy(), counters);
            let (r, m) = rt.block_on(async {
                (answers(&on_redis, &ops).await, answers(&in_memory, &ops).await)
            });
            prop_assert_eq!(r, m);
        });
    }

    /// S53: memory and Redis admit the same sequences.
    #[test]
    fn s53_memory_and_redis_admit_the_same_sequences() {
        same_decisions(false);
    }

    /// S53: memory and Redis Cluster admit the same sequences.
    #[test]
    fn s53_memory_and_redis_cluster_admit_the_same_sequences() {
        same_decisions(true);
    }
}

fn xff(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append("x-forwarded-for", v.parse().unwrap());
    }
    h
}

/// S53: without trusted proxies `X-Forwarded-For` is ignored: a client
/// cannot pick its own counter.
#[test]
fn client_ip_spoofed_header_ignored_without_trusted_proxies() {
    let source = ClientIpSource::peer();
    let got = source.resolve(Some(ip("203.0.113.5")), &xff(&["1.2.3.4"]));
    assert_eq!(got, Some(ip("203.0.113.5")));
    assert_eq!(source.resolve(None, &xff(&["1.2.3.4"])), None);
}

/// S53: behind trusted proxies, the rightmost untrusted hop is the client;
/// what the client wrote to its left is not believed.
#[test]
fn client_ip_rightmost_untrusted_hop() {
    let source = ClientIpSource::peer().with_trusted_proxies([
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8:ff::/48".parse().unwrap(),
    ]);
    let headers = xff(&["6.6.6.6, 203.0.113.7", "10.1.2.3"]);
    assert_eq!(
        source.resolve(Some(ip("10.0.0.1")), &headers),
        Some(ip("203.0.113.7"))
    );
    // A peer that is not a trusted proxy: its header is ignored.
    assert_eq!(
        source.resolve(Some(ip("198.51.100.1")), &headers),
        Some(ip("198.51.100.1"))
    );
    // Every hop trusted: the leftmost one.
    let inside = xff(&["10.9.9.9, 2001:db8:ff::1"]);
    assert_eq!(
        source.resolve(Some(ip("10.0.0.1")), &inside),
        Some(ip("10.9.9.9"))
    );
}
