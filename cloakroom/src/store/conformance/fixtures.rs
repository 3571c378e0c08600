//! Records, keys and checks the scenarios share.
#![allow(clippy::expect_used)]

use std::time::Duration;

use crate::expiry::Timestamp;
use crate::id::{SessionId, StorageKey};
use crate::record::Record;
use crate::store::{SessionStore, StoreError};

/// The time every scenario hands the store: the wall clock, since the
/// backends' own expiry (Redis `PEXPIREAT`, memcached exptime) runs on it.
/// `judged_by_the_callers_clock` moves it.
pub(super) fn now() -> Timestamp {
    Timestamp::now()
}

pub(super) fn fresh_key() -> StorageKey {
    SessionId::generate().storage_key()
}

pub(super) fn fresh_user() -> String {
    format!("conformance-{}", &fresh_key().to_hex()[..12])
}

pub(super) fn live_record() -> Record {
    let mut r = Record::new(
        Timestamp::now(),
        Duration::from_secs(1800),
        Duration::from_secs(43_200),
    );
    r.version = 1;
    r
}

pub(super) fn with_value(mut r: Record, key: &str, value: &str) -> Record {
    r.insert(key, value).expect("a string always encodes");
    r
}

pub(super) fn expired_record() -> Record {
    let created = Timestamp::now().saturating_sub(Duration::from_secs(7200));
    let mut r = Record::new(
        created,
        Duration::from_secs(1800),
        Duration::from_secs(43_200),
    );
    r.version = 1;
    r
}

pub(super) fn value(r: &Record, key: &str) -> Option<String> {
    r.get::<String>(key)
        .expect("conformance values are strings")
}

pub(super) async fn must_load<S: SessionStore + ?Sized>(
    store: &S,
    key: &StorageKey,
    why: &str,
) -> Record {
    match store.load(key, now()).await {
        Ok(Some(r)) => r,
        Ok(None) => panic!("{why}: load returned None for a live record"),
        Err(e) => panic!("{why}: load failed: {e}"),
    }
}

pub(super) async fn must_be_absent<S: SessionStore + ?Sized>(
    store: &S,
    key: &StorageKey,
    why: &str,
) {
    match store.load(key, now()).await {
        Ok(None) => {}
        Ok(Some(_)) => panic!("{why}: load returned a record that must be gone"),
        Err(e) => panic!("{why}: load failed: {e}"),
    }
}

pub(super) fn ok<T>(r: Result<T, StoreError>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

pub(super) async fn create_for<S: SessionStore + ?Sized>(store: &S, user: &str) -> StorageKey {
    let key = fresh_key();
    let mut rec = live_record();
    rec.user = Some(user.to_owned());
    ok(store.create(&key, &rec, now()).await, "create");
    key
}

pub(super) fn sorted(mut keys: Vec<StorageKey>) -> Vec<StorageKey> {
    keys.sort();
    keys
}

pub(super) async fn listed_keys<S: SessionStore + ?Sized>(
    store: &S,
    user: &str,
) -> Vec<StorageKey> {
    sorted(
        ok(store.list_by_user(user, now()).await, "list_by_user")
            .into_iter()
            .map(|s| s.key)
            .collect(),
    )
}

/// A record of `user` that is live now and expires about three seconds from
/// now, and how long to wait until every store must treat it as expired.
pub(super) fn short_lived_for(user: &str) -> (Record, Duration) {
    let mut rec = live_record();
    rec.user = Some(user.to_owned());
    // As in `never_loads_expired`: three seconds leave room for a slow
    // commit, and second-granular stores may keep an item up to a second
    // past its deadline.
    rec.idle_deadline = Timestamp::now().saturating_add(Duration::from_secs(3));
    let wait = rec.idle_deadline.since(Timestamp::now()) + Duration::from_millis(1100);
    (rec, wait)
}

/// Runs a store call again while it fails with a backend failure (a
/// deadlock victim, say: the contract calls those transient).
pub(super) async fn retrying<T, F, Fut>(what: &str, mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if e.is_backend_failure() && attempt < 3 => {
                attempt += 1;
                tracing::debug!(what, error = %e, "retrying a transient failure");
            }
            other => return other,
        }
    }
}

/// Joins futures concurrently without pulling in `futures`.
pub(super) async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
