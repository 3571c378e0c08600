//! The conformance suite every [`SessionStore`] must pass.
//!
//! One call runs it, emitting one `#[test]` per scenario so one failure does
//! not hide the rest:
//!
//! ```
//! mod memory_store {
//!     cloakroom::conformance_tests!(cloakroom::store::MemoryStore::new());
//! }
//! ```
//!
//! For a store that must connect first, pass a future with `async`; for a
//! store whose backend expires records by itself (so `delete_expired` may
//! report 0), add `native_expiry`:
//!
//! ```ignore
//! cloakroom::conformance_tests!(async MyStore::connect("...").await.unwrap(), native_expiry);
//! ```
//!
//! Each scenario is also a public `async fn` taking the store, for harnesses
//! of your own. Scenarios use fresh random keys and user names, so they may
//! share one backend and run in parallel. They panic with a message naming
//! the broken guarantee.
//!
//! Behind the `conformance` feature (it needs Tokio's multi-threaded
//! runtime, which nothing else in cloakroom does).

mod auth;
mod expiry;
mod fixtures;
mod index;
mod records;
mod rotation;
mod stats;

pub use auth::{revoke_device_by_handle, session_limit_under_parallel_logins};
pub use expiry::{concurrent_saves_one_winner, delete_expired_reaps, judged_by_the_callers_clock};
pub use index::{index_entries_die_with_sessions, user_index_delete_except, user_index_listing};
pub use records::{
    create_collision_is_conflict, create_then_load, delete_is_idempotent, load_missing_is_none,
    never_loads_expired, save_after_delete_is_not_found, save_compare_and_swap, touch_leaves_data,
};
pub use rotation::{
    delete_by_user_racing_rotate_leaves_no_live_session, rotate_keeps_exactly_one,
    rotate_of_deleted_key_is_not_found, rotate_of_expired_key_is_not_found,
    rotate_onto_taken_key_is_conflict, touch_after_expiry_is_not_found,
};
pub use stats::stats_counts_live_sessions;

use crate::store::SessionStore;

/// What a backend does by itself, which some scenarios take into account.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// The backend deletes expired records itself (Redis, Memcached TTLs),
    /// so `delete_expired` may find nothing to do.
    pub native_expiry: bool,
}

impl Capabilities {
    /// Capabilities of a backend that expires records itself.
    #[must_use]
    pub fn native_expiry() -> Self {
        Self {
            native_expiry: true,
        }
    }
}

/// The one list of scenarios. [`SCENARIOS`], [`run_all`] and
/// [`conformance_tests!`](crate::conformance_tests) are all generated from
/// it, so a scenario added here runs everywhere. Calls the macro named
/// `$then` (exported from this crate) with the given arguments, then
/// `[scenarios taking the store]`, then `[scenarios also taking the
/// capabilities]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_for_each {
    ($then:ident, $($args:tt)*) => {
        $crate::$then!($($args)* [create_then_load, create_collision_is_conflict, load_missing_is_none, never_loads_expired, save_compare_and_swap, save_after_delete_is_not_found, touch_leaves_data, delete_is_idempotent, rotate_keeps_exactly_one, rotate_onto_taken_key_is_conflict, rotate_of_deleted_key_is_not_found, rotate_of_expired_key_is_not_found, touch_after_expiry_is_not_found, delete_by_user_racing_rotate_leaves_no_live_session, user_index_listing, user_index_delete_except, index_entries_die_with_sessions, concurrent_saves_one_winner, judged_by_the_callers_clock, session_limit_under_parallel_logins, revoke_device_by_handle, stats_counts_live_sessions] [delete_expired_reaps]);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_items {
    ([$($plain:ident),*] [$($caps:ident),*]) => {
        /// The scenario names, in the order [`run_all`] runs them.
        pub const SCENARIOS: &[&str] = &[$(stringify!($plain),)* $(stringify!($caps),)*];

        /// Runs every scenario in turn against one store.
        pub async fn run_all<S: SessionStore + ?Sized>(store: &S, caps: Capabilities) {
            $($plain(store).await;)*
            $($caps(store, caps).await;)*
        }
    };
}

crate::__conformance_for_each!(__conformance_items,);

/// The marker line a service-backed test prints when it skips; CI fails a
/// run whose output holds it.
pub const SERVICE_SKIPPED_MARKER: &str = "CLOAKROOM-SERVICE-SKIPPED";

/// Called by a service-backed test whose server cannot be reached.
///
/// Outside CI it prints [`SERVICE_SKIPPED_MARKER`] with the reason and the
/// test passes as skipped; with `CI=true` in the environment it panics, so a
/// missing server can never pass CI unnoticed.
///
/// # Panics
///
/// Under `CI=true`, always.
pub fn skip_service(service: &str, reason: &dyn std::fmt::Display) {
    let line = format!("{SERVICE_SKIPPED_MARKER}: {service} unreachable ({reason})");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{line}; service-backed tests must not be skipped under CI");
    }
    // Straight to the process's stderr: libtest captures `println!` and
    // `eprintln!` of passing tests, which would hide the marker.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Runs `f` on a fresh multi-threaded Tokio runtime; used by
/// [`conformance_tests!`](crate::conformance_tests).
#[doc(hidden)]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime for the conformance suite")
        .block_on(f)
}

/// Emits one `#[test]` per conformance scenario for the store built by the
/// given expression. See [`store::conformance`](crate::store::conformance).
#[macro_export]
macro_rules! conformance_tests {
    (service $name:literal, async $make:expr, native_expiry) => {
        $crate::conformance_tests!(@service $name, (async { $make }), $crate::store::conformance::Capabilities::native_expiry());
    };
    (service $name:literal, async $make:expr) => {
        $crate::conformance_tests!(@service $name, (async { $make }), $crate::store::conformance::Capabilities::default());
    };
    (@service $name:literal, $make:tt, $caps:expr) => {
        $crate::conformance_tests!(@emit (async {
            match $make.await {
                ::core::result::Result::Ok(store) => ::core::option::Option::Some(store),
                ::core::result::Result::Err(e) => {
                    $crate::store::conformance::skip_service($name, &e);
                    ::core::option::Option::None
                }
            }
        }), $caps, optional);
    };
    (async $make:expr, native_expiry) => {
        $crate::conformance_tests!(@emit (async { $make }), $crate::store::conformance::Capabilities::native_expiry());
    };
    (async $make:expr) => {
        $crate::conformance_tests!(@emit (async { $make }), $crate::store::conformance::Capabilities::default());
    };
    ($make:expr, native_expiry) => {
        $crate::conformance_tests!(@emit (async { $make }), $crate::store::conformance::Capabilities::native_expiry());
    };
    ($make:expr) => {
        $crate::conformance_tests!(@emit (async { $make }), $crate::store::conformance::Capabilities::default());
    };
    (@emit $make:tt, $caps:expr) => {
        $crate::conformance_tests!(@emit (async { ::core::option::Option::Some($make.await) }), $caps, optional);
    };
    (@emit $make:tt, $caps:expr, optional) => {
        $crate::__conformance_for_each!(__conformance_tests, $make, $caps,);
    };
}

/// Emits the tests of [`conformance_tests!`](crate::conformance_tests) from
/// the scenario list.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($make:tt, $caps:expr, [$($plain:ident),*] [$($with_caps:ident),*]) => {
        $(
            #[test]
            fn $plain() {
                $crate::store::conformance::block_on(async {
                    if let ::core::option::Option::Some(store) = $make.await {
                        $crate::store::conformance::$plain(&store).await;
                    }
                });
            }
        )*
        $(
            #[test]
            fn $with_caps() {
                $crate::store::conformance::block_on(async {
                    if let ::core::option::Option::Some(store) = $make.await {
                        $crate::store::conformance::$with_caps(&store, $caps).await;
                    }
                });
            }
        )*
    };
}
