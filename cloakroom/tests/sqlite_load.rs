//! The SQLite store under concurrent load: no "database is locked", no lost
//! writes, even with two store instances (two app processes) on one file.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cloakroom::store::{SessionStore, SqliteStore, spawn_reaper};
use cloakroom::{Record, SessionId, Timestamp};

fn record(n: u64) -> Record {
    let mut r = Record::new(
        Timestamp::now(),
        Duration::from_secs(1800),
        Duration::from_secs(3600),
    );
    r.version = 1;
    r.insert("n", &n).unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_hammering_one_file_never_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("load.db");
    let a = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
    let b = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
    let _reaper = spawn_reaper(a.clone(), Duration::from_millis(20));
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let store = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for i in 0..25u64 {
                let key = SessionId::generate().storage_key();
                store
                    .create(&key, &record(i), Timestamp::now())
                    .await
                    .unwrap();
                let mut r = store
                    .load(&key, Timestamp::now())
                    .await
                    .unwrap()
                    .expect("just created");
                let expected = r.version;
                r.version += 1;
                r.insert("n", &(i + 1000)).unwrap();
                store
                    .save(&key, &r, expected, Timestamp::now())
                    .await
                    .unwrap();
                store
                    .touch(
                        &key,
                        Timestamp::now().saturating_add(Duration::from_secs(60)),
                        Timestamp::now(),
                    )
                    .await
                    .unwrap();
                let back = store.load(&key, Timestamp::now()).await.unwrap().unwrap();
                assert_eq!(back.get::<u64>("n").unwrap(), Some(i + 1000));
                if i % 5 == 0 {
                    store.delete(&key, Timestamp::now()).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // 32 tasks x 25 sessions, one in five deleted: 640 remain, seen by both.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM cloakroom_sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 640);
}
