//! The driver's errors as [`StoreError`]s.

use mongodb::error::{Error, ErrorKind, WriteFailure};

use super::BACKEND;
use crate::store::StoreError;

/// MongoDB's duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;

/// Whether `e` is a duplicate `_id` (a taken key on insert).
pub(super) fn is_duplicate_key(e: &Error) -> bool {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Unreachable servers, dropped connections, elections and unsatisfied
/// write concerns are [`StoreError::Unavailable`] (transient); the rest is
/// [`StoreError::Other`].
pub(super) fn mongo_error(e: Error) -> StoreError {
    let transient = matches!(
        &*e.kind,
        ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Shutdown
            | ErrorKind::Write(WriteFailure::WriteConcernError(_))
    ) || e.contains_label("RetryableWriteError")
        || e.contains_label("TransientTransactionError");
    if transient {
        StoreError::unavailable_in(BACKEND, e)
    } else {
        StoreError::other_in(BACKEND, e)
    }
}
