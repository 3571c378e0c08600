//! What one request knows about its session: the loaded record, this
//! request's changes, what the cookie must do, and what went wrong.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;

use super::flash_slots::FlashState;
use crate::config::{OnStoreFailure, SessionConfig};
use crate::expiry::Timestamp;
use crate::id::{SessionId, StorageKey};
use crate::record::Record;
use crate::store::StoreError;

/// One request's changes to a session's values.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChangeSet {
    /// Every value was removed first.
    pub(crate) cleared: bool,
    /// Per key: the new encoded value, or `None` for a removal.
    pub(crate) changes: BTreeMap<String, Option<Bytes>>,
}

impl ChangeSet {
    /// Whether there is nothing to save.
    pub(crate) fn is_empty(&self) -> bool {
        !self.cleared && self.changes.is_empty()
    }

    /// Applies the changes to `record`.
    pub(crate) fn apply(&self, record: &mut Record) {
        if self.cleared {
            record.clear();
        }
        for (k, change) in &self.changes {
            match change {
                // Keys were checked by Session::insert: this cannot fail.
                Some(v) => {
                    let _ = record.insert_raw(k.clone(), v.clone());
                }
                None => {
                    record.remove(k);
                }
            }
        }
    }
}

/// The session the request has: its record and how it is known.
pub(crate) struct Current {
    /// The ID the cookie carries (server-side sessions only: a sealed
    /// cookie carries the record itself).
    pub(crate) id: Option<SessionId>,
    /// The storage key (server-side), or the sealed session's stable
    /// handle key (never a store key).
    pub(crate) key: StorageKey,
    pub(crate) record: Record,
}

/// What the response does with the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieAction {
    None,
    Set,
    Remove,
}

/// Why the layer replaces the handler's response.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The store failed. `revocation`: it was a logout or revocation that
    /// could not be carried out, which is answered as a failure even under
    /// [`OnStoreFailure::ContinueAnonymous`].
    Store {
        error: Arc<StoreError>,
        revocation: bool,
    },
    /// The session's changes are too large to be kept: over the record
    /// limit or, client-side, more than its cookies hold (413).
    TooLarge(String),
    /// The client-side cookie could not be sealed (500).
    Unsealable,
}

/// What [`Session::finish`](super::Session::finish) tells the layer to do
/// with the response.
pub(crate) struct Outcome {
    pub(crate) set_cookies: Vec<HeaderValue>,
    pub(crate) failure: Option<Failure>,
    /// The request's session cookie named no session: malformed, forged,
    /// or an ID the store does not know (the guessing hook counts these,
    /// S51).
    pub(crate) invalid_cookie: bool,
}

/// What a re-issue does when the store says the session has ended.
#[derive(Clone, Copy)]
pub(crate) enum IfEnded {
    /// Nothing more: the session is gone (`rotate`).
    Stop,
    /// Go on in a fresh session without the ended one's values (`login`).
    StartFresh,
}

/// The session state of one request.
pub(crate) struct State {
    pub(crate) loaded: bool,
    /// Sealed cookies: the revocation epoch the session was sealed under,
    /// and whether it must be re-sealed (older key).
    pub(crate) epoch: u64,
    pub(crate) reseal: bool,
    pub(crate) current: Option<Current>,
    /// This request's changes to the values, not yet saved.
    pub(crate) pending: ChangeSet,
    pub(crate) cookie: CookieAction,
    /// The load (or the sealed cookie's epoch check) failed, whatever the
    /// failure policy: nothing this request writes may replace a session it
    /// could not read (its cookie may name a valid one).
    pub(crate) load_failed: Option<Arc<StoreError>>,
    /// What the layer must answer instead of the handler's response.
    pub(crate) failure: Option<Failure>,
    /// The cookie named no session (see [`Outcome::invalid_cookie`]).
    pub(crate) invalid_cookie: bool,
    pub(crate) finished: bool,
    /// Flash messages read or added for this request only.
    pub(crate) flash: FlashState,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            loaded: false,
            epoch: 0,
            reseal: false,
            current: None,
            pending: ChangeSet::default(),
            cookie: CookieAction::None,
            load_failed: None,
            failure: None,
            invalid_cookie: false,
            finished: false,
            flash: FlashState::default(),
        }
    }

    /// The loaded record (or a fresh one) with this request's changes.
    pub(crate) fn pending_record(&self, cfg: &SessionConfig) -> Record {
        let mut record = match &self.current {
            Some(c) => c.record.clone(),
            None => {
                let (idle, absolute) = cfg.expiry.timeouts(false);
                Record::new(cfg.clock.now(), idle, absolute)
            }
        };
        self.pending.apply(&mut record);
        record
    }

    /// Records a store failure for the layer's policy; under
    /// [`OnStoreFailure::ContinueAnonymous`] only logs it.
    pub(crate) fn fail(&mut self, cfg: &SessionConfig, e: Arc<StoreError>, op: &'static str) {
        if matches!(cfg.on_failure, OnStoreFailure::ContinueAnonymous) {
            tracing::warn!(error = %e, op, "session store failed; continuing as anonymous");
        } else {
            tracing::error!(error = %e, op, "session store failed");
            self.failure = Some(Failure::Store {
                error: e,
                revocation: false,
            });
        }
    }

    /// Refuses the request's changes as too large (413).
    pub(crate) fn too_large(&mut self, message: String) {
        tracing::warn!("session changes refused: {message}");
        self.failure = Some(Failure::TooLarge(message));
    }
}

/// `Max-Age` for a session's cookie: remember-me sessions persist until
/// their absolute deadline (S13), others end with the browser session.
pub(crate) fn cookie_max_age(record: &Record, now: Timestamp) -> Option<Duration> {
    record
        .remember_me
        .then(|| record.absolute_deadline.since(now))
}
