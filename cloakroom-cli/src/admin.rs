//! Admin commands that work on a store by URL: `purge` (delete expired
//! sessions now), `stats` (count live sessions), `sessions list` /
//! `sessions revoke` (a user's devices),
//! `dynamodb-create-table` (make a DynamoDB table ready) and `store-bench`
//! (load/save latency against the real backend).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloakroom::auth::{DeviceError, Devices};
use cloakroom::store::{DynamoStore, SessionStore, StoreError, StoreStats, StoreUrl, connect};
use cloakroom::{Record, SessionId, StorageKey, Timestamp};

use crate::store_spec::redact;

/// Deletes the expired sessions of the store at `url`; returns how many.
///
/// # Errors
///
/// [`StoreError`] if the URL is refused or the store fails.
pub async fn purge(url: &str) -> Result<u64, StoreError> {
    connect(url).await?.delete_expired(Timestamp::now()).await
}

/// A user's live sessions in the store at `url`, as a table (or JSON):
/// the same handles the demo's `GET /api/sessions` shows (both use the
/// default [`HandleKey`](cloakroom::auth::HandleKey)).
///
/// # Errors
///
/// [`DeviceError`] if the URL is refused or the store fails.
pub async fn sessions_list(url: &str, user: &str, json: bool) -> Result<String, DeviceError> {
    let devices = Devices::new(connect(url).await?);
    let list = devices.list(user, None).await?;
    if json {
        let rows: Vec<serde_json::Value> = list
            .iter()
            .map(|d| {
                serde_json::json!({
                    "handle": d.handle,
                    "kind": d.kind.as_str(),
                    "created_at": d.created_at.to_rfc3339(),
                    "last_seen_at": d.last_seen.to_rfc3339(),
                    "ip": d.ip,
                    "user_agent": d.user_agent,
                    "remember_me": d.remember_me,
                })
            })
            .collect();
        return Ok(format!("{}\n", serde_json::Value::Array(rows)));
    }
    let mut out = String::new();
    if list.is_empty() {
        out.push_str("no live sessions\n");
    }
    for d in &list {
        // User agents and addresses are the client's text: printed with
        // control characters escaped, so a hostile one cannot forge lines.
        out.push_str(&format!(
            "{}  {:<12}  created {}  last seen {}  ip {}  {}\n",
            d.handle,
            d.kind.as_str(),
            d.created_at.to_rfc3339(),
            d.last_seen.to_rfc3339(),
            d.ip.as_deref().unwrap_or("-").escape_debug(),
            d.user_agent.as_deref().unwrap_or("-").escape_debug(),
        ));
    }
    Ok(out)
}

/// Ends `user`'s session with `handle`, or all their sessions when
/// `handle` is `None`; returns how many were ended.
///
/// # Errors
///
/// [`DeviceError::NotFound`] for a handle that is not one of the user's;
/// [`DeviceError::TokensNotConfigured`] if a token family is among them
/// (end those through the token API, which denies their access tokens
/// too); a refused URL or store failure.
pub async fn sessions_revoke(
    url: &str,
    user: &str,
    handle: Option<&str>,
) -> Result<u64, DeviceError> {
    let devices = Devices::new(connect(url).await?);
    match handle {
        Some(h) => devices.revoke(user, h).await.map(|_| 1),
        None => devices.revoke_all(user, None).await,
    }
}

/// Counts the live sessions of the store at `url`, by kind.
///
/// # Errors
///
/// [`StoreError`] if the URL is refused or the store fails.
pub async fn stats(url: &str) -> Result<StoreStats, StoreError> {
    connect(url).await?.stats(Timestamp::now()).await
}

/// What `cloakroom stats` prints: one line such as `live sessions: 12
/// (signed in: 5, anonymous: 7, token families: 2) — store: redis
/// (exact)`, or with `json` one JSON object of the same counts.
#[must_use]
pub fn stats_report(s: &StoreStats, json: bool) -> String {
    if json {
        return serde_json::json!({
            "live": s.live,
            "signed_in": s.signed_in,
            "anonymous": s.anonymous(),
            "token_families": s.token_families,
            "backend": s.backend,
            "exact": s.exact,
        })
        .to_string();
    }
    format!(
        "live sessions: {} (signed in: {}, anonymous: {}, token families: {}) — store: {} ({})",
        s.live,
        s.signed_in,
        s.anonymous(),
        s.token_families,
        s.backend,
        if s.exact { "exact" } else { "estimate" },
    )
}

/// Creates the table of the DynamoDB store at `url`
/// (`dynamodb+http://host:port/TABLE`) if it is missing and enables its
/// TTL; returns the table's name. Idempotent. (On AWS proper, create the
/// table with your usual tooling from the layout in `DynamoStore`'s docs,
/// or call [`DynamoStore::create_table`] with your client.)
///
/// # Errors
///
/// [`StoreError::Other`] for a URL that is not `dynamodb+http://…` or a
/// refused request; [`StoreError::Unavailable`] if the endpoint does not
/// answer.
pub async fn dynamodb_create_table(url: &str) -> Result<String, StoreError> {
    match StoreUrl::parse(url).map_err(StoreError::other)? {
        StoreUrl::DynamoDb { endpoint, table } => {
            DynamoStore::local_endpoint(&endpoint, &table)?
                .create_table()
                .await?;
            Ok(table)
        }
        other => Err(StoreError::other(format!(
            "dynamodb-create-table takes a dynamodb+http://host:port/TABLE URL, not a {} store",
            other.kind()
        ))),
    }
}

/// Latency summary of one operation.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Operations per second over the whole phase (all workers).
    pub per_second: f64,
}

/// What `store-bench` measured.
#[derive(Debug, Clone)]
pub struct StoreBench {
    /// The store URL.
    pub url: String,
    /// `(operation, latency)`: create, load, save, touch.
    pub results: Vec<(&'static str, Latency)>,
}

impl std::fmt::Display for StoreBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "store: {}", redact(&self.url))?;
        writeln!(f, "| op | p50 | p99 | ops/s |")?;
        writeln!(f, "|---|---|---|---|")?;
        for (op, l) in &self.results {
            writeln!(
                f,
                "| {op} | {:.3} ms | {:.3} ms | {:.0} |",
                l.p50.as_secs_f64() * 1e3,
                l.p99.as_secs_f64() * 1e3,
                l.per_second
            )?;
        }
        Ok(())
    }
}

fn record(n: u64) -> Result<Record, StoreError> {
    let mut r = Record::new(
        Timestamp::now(),
        Duration::from_secs(1800),
        Duration::from_secs(3600),
    );
    r.version = 1;
    r.user = Some(format!("bench-user-{}", n % 50));
    r.insert("user_id", &n).map_err(StoreError::other)?;
    r.insert("note", &"x".repeat(200))
        .map_err(StoreError::other)?;
    Ok(r)
}

/// Measures create, load, save and touch latency against the store at
/// `url` with `sessions` sessions and `concurrency` concurrent workers; the
/// sessions are deleted afterwards.
///
/// # Errors
///
/// [`StoreError`] if the URL is refused or any operation fails.
pub async fn store_bench(
    url: &str,
    sessions: usize,
    concurrency: usize,
) -> Result<StoreBench, StoreError> {
    let store = connect(url).await?;
    let keys: Arc<Vec<StorageKey>> = Arc::new(
        (0..sessions)
            .map(|_| SessionId::generate().storage_key())
            .collect(),
    );
    let mut results = Vec::new();
    for op in ["create", "load", "save", "touch"] {
        results.push((op, phase(&store, &keys, op, concurrency.max(1)).await?));
    }
    for key in keys.iter() {
        store.delete(key, Timestamp::now()).await?;
    }
    Ok(StoreBench {
        url: url.to_owned(),
        results,
    })
}

async fn phase(
    store: &Arc<dyn SessionStore>,
    keys: &Arc<Vec<StorageKey>>,
    op: &'static str,
    concurrency: usize,
) -> Result<Latency, StoreError> {
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (store, keys) = (store.clone(), keys.clone());
        workers.spawn(async move {
            let mut times = Vec::new();
            for i in (w..keys.len()).step_by(concurrency) {
                let key = &keys[i];
                let n = i as u64;
                let t = Instant::now();
                match op {
                    "create" => store.create(key, &record(n)?, Timestamp::now()).await?,
                    "load" => {
                        store
                            .load(key, Timestamp::now())
                            .await?
                            .ok_or(StoreError::NotFound)?;
                    }
                    "save" => {
                        let mut r = record(n)?;
                        r.version = 2;
                        r.insert("counter", &n).map_err(StoreError::other)?;
                        store.save(key, &r, 1, Timestamp::now()).await?;
                    }
                    _ => {
                        let deadline = Timestamp::now().saturating_add(Duration::from_secs(1800));
                        store.touch(key, deadline, Timestamp::now()).await?;
                    }
                }
                times.push(t.elapsed());
            }
            Ok::<_, StoreError>(times)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = workers.join_next().await {
        all.extend(joined.map_err(StoreError::other)??);
    }
    let elapsed = started.elapsed();
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Latency {
        p50: pick(0.50),
        p99: pick(0.99),
        per_second: all.len() as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

/// `cloakroom keygen`: a new key-ring key (base64url); with `jwk`, a new
/// Ed25519 access-token key as `{"seed", "jwk"}` (the seed for
/// `--signing-key-file`, the public JWK for other verifiers).
///
/// # Errors
///
/// The OS random generator failing.
pub fn keygen(jwk: bool) -> Result<String, String> {
    if !jwk {
        return Ok(cloakroom::crypto::MasterKey::generate().to_base64url());
    }
    use base64::Engine as _;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *seed).map_err(|e| e.to_string())?;
    let key = cloakroom::token::TokenKey::ed25519_from_seed(&seed);
    let doc = serde_json::json!({
        "seed": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(*seed),
        "jwk": key.public_jwk(),
    });
    serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn benches_and_purges_the_memory_store() -> Result<(), StoreError> {
        let b = store_bench("memory:", 50, 4).await?;
        assert_eq!(b.results.len(), 4);
        assert!(b.to_string().contains("| load |"));
        assert_eq!(purge("memory:").await?, 0);
        Ok(())
    }

    #[tokio::test]
    async fn stats_of_an_empty_memory_store() -> Result<(), StoreError> {
        let s = stats("memory:").await?;
        assert_eq!(
            stats_report(&s, false),
            "live sessions: 0 (signed in: 0, anonymous: 0, token families: 0) — store: memory (exact)"
        );
        let json: serde_json::Value =
            serde_json::from_str(&stats_report(&s, true)).map_err(StoreError::other)?;
        assert_eq!(json["live"], 0);
        assert_eq!(json["backend"], "memory");
        assert_eq!(json["exact"], true);
        Ok(())
    }

    #[tokio::test]
    async fn create_table_needs_a_dynamodb_url() {
        let e = dynamodb_create_table("memory:").await.err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("dynamodb+http://"), "{msg}");
    }

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redact("postgres://user:secret@host/db"),
            "postgres://user:***@host/db"
        );
        assert_eq!(redact("redis://127.0.0.1/"), "redis://127.0.0.1/");
    }
}
