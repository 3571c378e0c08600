//! `cloakroom stats`: the binary counts a store's live sessions, by kind,
//! on SQLite (exactly) and on a real Redis.

use std::process::Command;
use std::time::Duration;

use cloakroom::store::conformance::skip_service;
use cloakroom::store::{SessionStore, connect};
use cloakroom::{Record, SessionId, Timestamp};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Files `anonymous` anonymous and `signed_in` signed-in sessions, plus one
/// refresh-token family and one expired record, in the store at `url`.
async fn fill(url: &str, anonymous: usize, signed_in: usize) -> Result<(), String> {
    let store = connect(url).await.map_err(|e| e.to_string())?;
    let now = Timestamp::now();
    let live = || Record::new(now, Duration::from_secs(600), Duration::from_secs(3600));
    let mut records = Vec::new();
    records.extend((0..anonymous).map(|_| live()));
    for _ in 0..signed_in {
        let mut r = live();
        r.user = Some("stats-cli-user".into());
        records.push(r);
    }
    let mut family = live();
    family.insert("kind", "token").map_err(|e| e.to_string())?;
    family.insert("sid", "s").map_err(|e| e.to_string())?;
    family.insert("gen", &1u64).map_err(|e| e.to_string())?;
    records.push(family);
    for r in &records {
        let key = SessionId::generate().storage_key();
        store
            .create(&key, r, now)
            .await
            .map_err(|e| e.to_string())?;
    }
    let old = now.saturating_sub(Duration::from_secs(7200));
    let expired = Record::new(old, Duration::from_secs(60), Duration::from_secs(600));
    let key = SessionId::generate().storage_key();
    let _ = store.create(&key, &expired, now).await;
    Ok(())
}

fn run_stats(url: &str, json: bool) -> Result<String, Box<dyn std::error::Error>> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloakroom"));
    cmd.args(["stats", "--store", url])
        .env_remove("CLOAKROOM_STORE");
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output()?;
    let stdout = String::from_utf8(out.stdout)?;
    if !out.status.success() {
        return Err(format!("stats failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(stdout)
}

#[tokio::test]
async fn counts_memory_and_sqlite_sessions() -> TestResult {
    let memory = run_stats("memory:", false)?;
    assert_eq!(
        memory.trim(),
        "live sessions: 0 (signed in: 0, anonymous: 0, token families: 0) — store: memory (exact)"
    );

    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join("s.db").display());
    fill(&url, 3, 2).await?;
    let line = run_stats(&url, false)?;
    assert_eq!(
        line.trim(),
        "live sessions: 6 (signed in: 2, anonymous: 4, token families: 1) — store: sqlite (exact)"
    );
    let json: serde_json::Value = serde_json::from_str(&run_stats(&url, true)?)?;
    assert_eq!(
        json,
        serde_json::json!({
            "live": 6, "signed_in": 2, "anonymous": 4, "token_families": 1,
            "backend": "sqlite", "exact": true,
        })
    );
    Ok(())
}

#[tokio::test]
async fn counts_redis_sessions() -> TestResult {
    let url = std::env::var("CLOAKROOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    if let Err(e) = fill(&url, 2, 1).await {
        skip_service("redis", &e);
        return Ok(());
    }
    // Other tests share the server: at least what this test filed.
    let json: serde_json::Value = serde_json::from_str(&run_stats(&url, true)?)?;
    assert_eq!(json["backend"], "redis");
    assert_eq!(json["exact"], true);
    assert!(json["live"].as_u64().is_some_and(|n| n >= 4), "{json}");
    assert!(json["signed_in"].as_u64().is_some_and(|n| n >= 1), "{json}");
    assert!(
        json["token_families"].as_u64().is_some_and(|n| n >= 1),
        "{json}"
    );
    Ok(())
}
