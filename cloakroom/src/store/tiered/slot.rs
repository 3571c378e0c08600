//! What the tiered store keeps under a session's key in the cache: a copy
//! of the durable record stamped with how long it may serve reads, or a
//! tombstone saying "revoked moments ago: read the durable store and do not
//! fill". Both are ordinary [`Record`]s, so any [`SessionStore`] can be the
//! cache.
//!
//! [`SessionStore`]: crate::store::SessionStore

use std::time::Duration;

use crate::expiry::Timestamp;
use crate::record::{self, Record};

/// The reserved data key under which a copy carries the end of its
/// freshness. Keys starting with a control character are refused by
/// [`Session::insert`](crate::Session::insert), so neither marker can
/// collide with application data.
const CACHED_UNTIL: &str = "\u{1}cloakroom.cached_until";
/// The reserved data key that marks a tombstone.
const TOMBSTONE: &str = "\u{1}cloakroom.tombstone";

/// The version every tombstone carries. Real versions count up from 1 and
/// never get near it, so a fill's compare-and-swap, which always expects
/// the version of the copy it saw, can never replace a tombstone. Half of
/// `u64::MAX` so that stores keeping versions in a signed 64-bit column
/// (PostgreSQL, MySQL) hold it exactly.
pub(super) const TOMBSTONE_VERSION: u64 = u64::MAX >> 1;

/// A cache slot as read back.
#[derive(Debug)]
pub(super) enum Slot {
    /// Nothing live under the key.
    Empty,
    /// A revocation happened moments ago, at `written_at` (the revoker's
    /// clock).
    Tombstone { written_at: Timestamp },
    /// A copy of a durable record.
    Copy(Copy),
}

/// A copy of a durable record, marker removed.
#[derive(Debug)]
pub(super) struct Copy {
    pub(super) record: Record,
    /// Reads may be served from the copy until then. Copies without a
    /// readable marker (written by something else) are never fresh.
    fresh_until: Timestamp,
}

impl Slot {
    /// Classifies what the cache returned for a key.
    pub(super) fn of(held: Option<Record>) -> Self {
        let Some(mut record) = held else {
            return Self::Empty;
        };
        if record.get_raw(TOMBSTONE).is_some() {
            return Self::Tombstone {
                written_at: record.created_at,
            };
        }
        let fresh_until = record
            .remove(CACHED_UNTIL)
            .and_then(|b| record::decode_value::<u64>(&b).ok())
            .map_or(Timestamp::EPOCH, Timestamp::from_millis);
        Self::Copy(Copy {
            record,
            fresh_until,
        })
    }
}

impl Copy {
    /// Whether the copy may still serve reads at `now`.
    pub(super) fn is_fresh(&self, now: Timestamp) -> bool {
        now < self.fresh_until
    }

    /// The version-and-tombstone gate: whether a copy of `ours` may replace
    /// this one. Only a strictly newer version, or the same version when
    /// this copy is stale or has an earlier idle deadline (a touch it
    /// missed). Never an older version.
    pub(super) fn may_be_replaced_by(&self, ours: &Record, now: Timestamp) -> bool {
        let held = &self.record;
        ours.version > held.version
            || (ours.version == held.version
                && (!self.is_fresh(now) || ours.idle_deadline > held.idle_deadline))
    }
}

/// A copy of `record` for the cache, fresh until `fresh_until`.
pub(super) fn copy(record: &Record, fresh_until: Timestamp) -> Option<Record> {
    let mut copy = record.clone();
    let until = record::encode_value(&fresh_until.as_millis()).ok()?;
    copy.insert_raw(CACHED_UNTIL.to_owned(), until).ok()?;
    Some(copy)
}

/// A tombstone written at `now` that the cache keeps for `ttl`. It belongs
/// to no user, so it never shows up in the cache's user index.
pub(super) fn tombstone(now: Timestamp, ttl: Duration) -> Option<Record> {
    let mut stone = Record::new(now, ttl, ttl);
    stone.version = TOMBSTONE_VERSION;
    stone
        .insert_raw(TOMBSTONE.to_owned(), record::encode_value(&true).ok()?)
        .ok()?;
    Some(stone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(version: u64) -> Record {
        let mut r = Record::new(
            Timestamp::now(),
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        r.version = version;
        r
    }

    fn held(version: u64, fresh_for: Duration) -> Copy {
        let now = Timestamp::now();
        let Slot::Copy(c) = Slot::of(copy(&rec(version), now.saturating_add(fresh_for))) else {
            panic!("a copy reads back as a copy");
        };
        c
    }

    #[test]
    fn markers_round_trip_and_never_leak() {
        let c = held(3, Duration::from_secs(5));
        assert!(c.is_fresh(Timestamp::now()));
        assert_eq!(c.record.keys().count(), 0, "the marker is stripped");
        let stone = tombstone(Timestamp::now(), Duration::from_secs(5));
        assert!(stone.as_ref().is_some_and(|s| s.user.is_none()));
        assert!(matches!(Slot::of(stone), Slot::Tombstone { .. }));
        assert!(matches!(Slot::of(None), Slot::Empty));
    }

    #[test]
    fn a_copy_without_marker_is_never_fresh() {
        let Slot::Copy(c) = Slot::of(Some(rec(1))) else {
            panic!("a plain record is a copy");
        };
        assert!(!c.is_fresh(Timestamp::now()));
    }

    #[test]
    fn the_gate_never_lets_an_older_version_in() {
        let now = Timestamp::now();
        let fresh = held(5, Duration::from_secs(30));
        assert!(!fresh.may_be_replaced_by(&rec(4), now), "older");
        assert!(fresh.may_be_replaced_by(&rec(6), now), "newer");
        let stale = held(5, Duration::ZERO);
        assert!(
            !stale.may_be_replaced_by(&rec(4), now),
            "older, even over a stale copy"
        );
        assert!(
            stale.may_be_replaced_by(&rec(5), now),
            "same version refreshes a stale copy"
        );
        let mut touched = rec(5);
        touched.idle_deadline = touched.idle_deadline.saturating_add(Duration::from_secs(9));
        assert!(
            fresh.may_be_replaced_by(&touched, now),
            "a touch the copy missed"
        );
        assert!(
            !fresh.may_be_replaced_by(&rec(5), now),
            "same version, nothing new"
        );
    }
}
