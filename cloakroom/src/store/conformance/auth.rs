//! Scenarios of the sign-in toolkit on top of the store contract: the
//! concurrent-session limit (S26) and revoking a device by its handle
//! (S25). They drive the very code `login` and `Session::revoke_device`
//! run, so every store proves them against its real backend.

use std::time::Duration;

use super::fixtures::*;
use crate::auth::devices::{find_in, list_in};
use crate::auth::limit::{Lease, Verdict, enforce};
use crate::auth::{HandleKey, SessionLimit};
use crate::store::SessionStore;

/// Twenty parallel sign-ins of one user under a limit of one session
/// leave exactly one live session, with either policy: evict-oldest keeps
/// the last one filed, reject-new the first (S26).
pub async fn session_limit_under_parallel_logins<S: SessionStore + ?Sized>(store: &S) {
    for limit in [SessionLimit::evict_oldest(1), SessionLimit::reject_new(1)] {
        // Slow emulators serialize twenty leases slowly; never flaky.
        let limit = limit.with_lock_wait(Duration::from_secs(60));
        let user = fresh_user();
        let logins = (0..20).map(|_| {
            let user = user.clone();
            async move {
                let lease = ok(Lease::acquire(store, &user, &limit, now).await, "lease");
                let verdict = ok(enforce(store, &user, &limit, None, now()).await, "enforce");
                let filed = if verdict == Verdict::Admit {
                    Some(create_for(store, &user).await)
                } else {
                    None
                };
                lease.release(store, now()).await;
                filed
            }
        });
        let filed: Vec<_> = futures_join_all(logins)
            .await
            .into_iter()
            .flatten()
            .collect();
        let live = listed_keys(store, &user).await;
        assert_eq!(
            live.len(),
            1,
            "{:?}: 20 parallel logins with a limit of 1 must leave exactly one live session, found {}",
            limit.policy(),
            live.len()
        );
        match limit.policy() {
            crate::auth::LimitPolicy::RejectNew => {
                assert_eq!(filed.len(), 1, "reject-new admits exactly one of them");
            }
            _ => assert_eq!(filed.len(), 20, "evict-oldest admits every one of them"),
        }
        assert!(
            filed.contains(&live[0]),
            "the survivor is one of the logins"
        );
        for key in live {
            ok(store.delete(&key, now()).await, "delete");
        }
    }
}

/// A device handle ends exactly its session; another user's handle, a
/// made-up one and the raw storage key are "not found" (S25).
pub async fn revoke_device_by_handle<S: SessionStore + ?Sized>(store: &S) {
    let handles = HandleKey::default();
    let alice = fresh_user();
    let bob = fresh_user();
    let phone = create_for(store, &alice).await;
    let laptop = create_for(store, &alice).await;
    let bobs = create_for(store, &bob).await;

    let listed = ok(
        list_in(store, &handles, &alice, Some(&laptop), now()).await,
        "list",
    );
    assert_eq!(listed.len(), 2, "alice has two devices");
    assert!(listed[0].current, "the current session is listed first");
    assert_eq!(listed[0].handle, handles.handle(&laptop));
    for d in &listed {
        assert!(
            !d.handle.contains(&phone.to_hex()) && !d.handle.contains(&laptop.to_hex()),
            "a handle is not the storage key"
        );
    }
    let bobs_handle = handles.handle(&bobs);
    for wrong in [
        bobs_handle.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAA",
        &phone.to_hex(),
        "",
    ] {
        assert!(
            ok(find_in(store, &handles, &alice, wrong, now()).await, "find").is_none(),
            "handle {wrong:?} must not name one of alice's sessions"
        );
    }
    let found = ok(
        find_in(store, &handles, &alice, &handles.handle(&phone), now()).await,
        "find",
    )
    .expect("alice's own handle is found");
    assert_eq!(found.key, phone);
    ok(store.delete(&found.key, now()).await, "delete");
    must_be_absent(store, &phone, "the revoked device").await;
    must_load(store, &laptop, "the other device survives").await;
    must_load(store, &bobs, "another user's session survives").await;
    for key in [laptop, bobs] {
        ok(store.delete(&key, now()).await, "delete");
    }
}
