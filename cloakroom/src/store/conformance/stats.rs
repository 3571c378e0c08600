//! The scenario of `stats`.

use std::time::Duration;

use super::fixtures::*;
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{SessionStore, StoreStats};

const DAY: Duration = Duration::from_secs(86_400);
/// Anonymous and signed-in sessions the scenario files.
const ANONYMOUS: u64 = 3;
const SIGNED_IN: u64 = 2;

/// A record created now that lives `days` days.
fn lasting(days: u32) -> Record {
    let mut r = Record::new(Timestamp::now(), DAY * days, DAY * days);
    r.version = 1;
    r
}

/// `stats` counts the live records, the signed-in ones and the token
/// families, and leaves out expired records.
///
/// Other scenarios run in parallel on the same backend, so the counts at
/// the wall clock's "now" are only checked as lower bounds. The exact check
/// asks about a moment 100 days ahead, at which only this scenario's
/// records (lasting 200 days) are live, and compares the counts with the
/// scenario's records and without them, so records left behind by earlier
/// runs do not matter. Stores that can only estimate (`exact: false`) are
/// only required to answer.
pub async fn stats_counts_live_sessions<S: SessionStore + ?Sized>(store: &S) {
    let far = Timestamp::now().saturating_add(DAY * 100);
    let mut mine: Vec<StorageKey> = Vec::new();
    for _ in 0..ANONYMOUS {
        let key = fresh_key();
        ok(
            store.create(&key, &lasting(200), now()).await,
            "create anonymous",
        );
        mine.push(key);
    }
    let user = fresh_user();
    for _ in 0..SIGNED_IN {
        let key = fresh_key();
        let mut r = lasting(200);
        r.user = Some(user.clone());
        ok(store.create(&key, &r, now()).await, "create signed in");
        mine.push(key);
    }
    let family = fresh_key();
    let mut r = with_value(lasting(200), "kind", "token");
    r.insert("sid", &fresh_key().to_hex())
        .expect("a string encodes");
    r.insert("gen", &1u64).expect("a number encodes");
    ok(
        store.create(&family, &r, now()).await,
        "create token family",
    );
    mine.push(family);
    // Live now, expired by `far`.
    let ends_early = fresh_key();
    ok(
        store.create(&ends_early, &lasting(50), now()).await,
        "create 50-day session",
    );
    mine.push(ends_early);
    // Expired already: a store may keep or refuse it; it must never count.
    let expired = fresh_key();
    let _ = store.create(&expired, &expired_record(), now()).await;
    mine.push(expired);

    let current = ok(store.stats(now()).await, "stats now");
    let with_mine = ok(
        store.stats(far).await,
        "stats ahead with the scenario's records",
    );
    for key in &mine {
        ok(store.delete(key, now()).await, "delete");
    }
    let without = ok(store.stats(far).await, "stats ahead without them");
    assert!(!current.backend.is_empty(), "stats name their backend");
    if !(current.exact && with_mine.exact && without.exact) {
        return;
    }
    let live = ANONYMOUS + SIGNED_IN + 1;
    assert!(
        current.live > live,
        "stats must count every live record: {} live, the scenario alone has {}",
        current.live,
        live + 1
    );
    assert!(
        current.signed_in >= SIGNED_IN && current.token_families >= 1,
        "stats must count signed-in sessions and token families: {current:?}"
    );
    let delta = |f: fn(&StoreStats) -> u64| f(&with_mine).checked_sub(f(&without));
    assert_eq!(
        delta(|s| s.live),
        Some(live),
        "stats ahead must count exactly the records live then (not the expired ones): {with_mine:?} with the scenario's records, {without:?} without"
    );
    assert_eq!(
        delta(|s| s.signed_in),
        Some(SIGNED_IN),
        "stats must count signed-in sessions: {with_mine:?} / {without:?}"
    );
    assert_eq!(
        delta(|s| s.token_families),
        Some(1),
        "stats must count token families: {with_mine:?} / {without:?}"
    );
}
