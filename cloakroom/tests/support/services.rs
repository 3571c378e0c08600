//! Where the test services live, and how tests keep out of each other's
//! way on them. Shared (through `#[path]`) by the store modules' own tests
//! and by the integration tests, so it uses nothing but `std` and
//! `getrandom`.

#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

/// Default PostgreSQL URL (`CLOAKROOM_TEST_POSTGRES_URL` overrides it).
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Default MySQL / MariaDB URL (`CLOAKROOM_TEST_MYSQL_URL` overrides it).
pub const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
/// Default Redis URL (`CLOAKROOM_TEST_REDIS_URL` overrides it).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// Default memcached URL (`CLOAKROOM_TEST_MEMCACHED_URL` overrides it).
pub const MEMCACHED_URL: &str = "memcache://127.0.0.1:11211";
/// Default MongoDB URL (`CLOAKROOM_TEST_MONGODB_URL` overrides it;
/// `bash scripts/mongodb.sh` starts SecantusDB there).
pub const MONGODB_URL: &str = "mongodb://127.0.0.1:27017/cloakroom_test";
/// Default DynamoDB endpoint and table (`CLOAKROOM_TEST_DYNAMODB_URL`
/// overrides it; `bash scripts/dynamodb.sh` starts moto there).
pub const DYNAMODB_URL: &str = "dynamodb+http://127.0.0.1:8000/cloakroom_test";
/// Default Redis Cluster seed URLs, comma-separated
/// (`CLOAKROOM_TEST_REDIS_CLUSTER_URLS` overrides them).
pub const REDIS_CLUSTER_URLS: &str =
    "redis://127.0.0.1:7001/,redis://127.0.0.1:7002/,redis://127.0.0.1:7003/";

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// The PostgreSQL server the tests use.
pub fn postgres_url() -> String {
    env_or("CLOAKROOM_TEST_POSTGRES_URL", POSTGRES_URL)
}

/// The MySQL / MariaDB server the tests use.
pub fn mysql_url() -> String {
    env_or("CLOAKROOM_TEST_MYSQL_URL", MYSQL_URL)
}

/// The single Redis server the tests use.
pub fn redis_url() -> String {
    env_or("CLOAKROOM_TEST_REDIS_URL", REDIS_URL)
}

/// The memcached server the tests use.
pub fn memcached_url() -> String {
    env_or("CLOAKROOM_TEST_MEMCACHED_URL", MEMCACHED_URL)
}

/// The MongoDB server the tests use.
pub fn mongodb_url() -> String {
    env_or("CLOAKROOM_TEST_MONGODB_URL", MONGODB_URL)
}

/// The DynamoDB endpoint (and default table) the tests use.
pub fn dynamodb_url() -> String {
    env_or("CLOAKROOM_TEST_DYNAMODB_URL", DYNAMODB_URL)
}

/// The Redis Cluster seed nodes the tests use.
pub fn redis_cluster_urls() -> Vec<String> {
    env_or("CLOAKROOM_TEST_REDIS_CLUSTER_URLS", REDIS_CLUSTER_URLS)
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `len` random lowercase hex digits, to keep parallel tests apart.
pub fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len.div_ceil(2)];
    if getrandom::fill(&mut bytes).is_err() {
        panic!("the OS random source failed");
    }
    let mut hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(len);
    hex
}

/// A name for a throwaway database or schema: `<prefix><unix seconds>_<random>`.
pub fn throwaway_name(prefix: &str) -> String {
    format!("{prefix}{}_{}", unix_secs(), random_hex(12))
}

/// Whether `name` is a throwaway made with `prefix` more than an hour ago
/// (left behind by an earlier run, safe to drop).
pub fn is_stale_throwaway(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.split('_').next())
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|stamp| stamp < unix_secs().saturating_sub(3600))
}
