//! ID renewal with a grace period (S21): once a server-side session's ID
//! is [`Expiry::with_renewal`](crate::Expiry::with_renewal)'s interval
//! old, the next request that uses it files the record under a new ID and
//! leaves a *forward* under the old one: a record without user or data but
//! the new storage key, living only for the grace. A request that presents
//! the old ID within the grace is served the new record (without learning
//! the new ID: it is not in the forward, only its hash is); afterwards the
//! old ID is unknown.
//!
//! The forward replaces the old record by compare-and-swap, so a renewal
//! racing a save or a sign-out through the old ID loses cleanly: the new
//! record is deleted again and the session keeps its ID until the next
//! request. A save already in flight through the old ID meets the forward
//! and is dropped, as for any rotation (S28).

use super::commit::timed;
use super::server::ServerMode;
use super::state::{CookieAction, Current, State};
use crate::config::SessionConfig;
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::StoreError;

/// The reserved value holding the storage key a forward points to (hex).
const FORWARD: &str = "\u{1}cloakroom.renewed_to";
/// The reserved value holding when the current ID was issued, if it was
/// issued by a renewal (else the record's `created_at` counts).
pub(crate) const ISSUED_AT: &str = "\u{1}cloakroom.id_issued_at";

/// The storage key `record` forwards to, if it is a forward.
pub(crate) fn forward_of(record: &Record) -> Option<StorageKey> {
    let hex: String = record.get(FORWARD).ok().flatten()?;
    StorageKey::from_hex(&hex).ok()
}

impl ServerMode {
    /// Follows a forward found under a presented ID: the live record it
    /// points to, if any, which the request then uses (under its storage
    /// key; the cookie is left as it is).
    pub(super) async fn follow_forward(
        &self,
        target: StorageKey,
        now: Timestamp,
    ) -> Result<Option<Current>, StoreError> {
        match timed("load", self.store().load(&target, now)).await? {
            // One hop only: a forward to a forward is a stale chain.
            Some(record) if record.is_live(now) && forward_of(&record).is_none() => {
                Ok(Some(Current {
                    id: None,
                    key: target,
                    record,
                }))
            }
            _ => Ok(None),
        }
    }

    /// Renews the session's ID if renewal is on and it is due; never fails
    /// the request (a renewal that cannot happen now happens later).
    pub(super) async fn maybe_renew(&self, cfg: &SessionConfig, state: &mut State) {
        let Some((interval, grace)) = cfg.expiry.renewal() else {
            return;
        };
        // Only a session loaded by its own ID and not given a new one in
        // this request (sign-in, rotation, creation already did).
        let Some(current) = &state.current else {
            return;
        };
        if current.id.is_none() || state.cookie == CookieAction::Set || state.failure.is_some() {
            return;
        }
        let now = cfg.clock.now();
        let issued: Timestamp = current
            .record
            .get::<u64>(ISSUED_AT)
            .ok()
            .flatten()
            .map_or(current.record.created_at, Timestamp::from_millis);
        if now.since(issued) < interval {
            return;
        }
        let old_key = current.key;
        let old_version = current.record.version;
        let mut record = current.record.clone();
        if record.insert(ISSUED_AT, &now.as_millis()).is_err() {
            return;
        }
        record.version = old_version + 1;
        let (id, key) = match self.file_under_new_id(cfg, None, &record).await {
            Ok(filed) => filed,
            Err(e) => {
                tracing::warn!(error = %e, "session id renewal postponed: the new record could not be filed");
                return;
            }
        };
        let mut forward = Record::new(now, grace, grace);
        forward.version = old_version + 1;
        if forward.insert(FORWARD, &key.to_hex()).is_err() {
            return;
        }
        match timed(
            "save",
            self.store().save(&old_key, &forward, old_version, now),
        )
        .await
        {
            Ok(()) => {
                tracing::info!(event = "rotated", tag = %id.log_tag(), "session id renewed (S21)");
                metrics::counter!("cloakroom_sessions_renewed_total").increment(1);
                state.current = Some(Current {
                    id: Some(id),
                    key,
                    record,
                });
                state.cookie = CookieAction::Set;
            }
            Err(e) => {
                // Saved, ended or failing meanwhile: the old ID stays as
                // it is, and the new record must not outlive this.
                tracing::debug!(error = %e, "session id renewal lost a race; postponed");
                if let Err(e) = self.store().delete(&key, now).await {
                    tracing::warn!(error = %e, "an unused renewed session record could not be deleted; it expires with the session");
                }
            }
        }
    }
}
