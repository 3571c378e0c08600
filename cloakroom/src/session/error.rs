//! [`SessionError`]: what a [`Session`](super::Session) method can fail with.

use std::sync::Arc;

use super::handle::MAX_USER_BYTES;
use crate::record::{DecodeError, EncodeError};
use crate::store::StoreError;

/// An error from a [`Session`](crate::Session) method.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed. The layer answers with its
    /// [`OnStoreFailure`](crate::OnStoreFailure) response, whatever the handler returns.
    #[error(transparent)]
    Store(Arc<StoreError>),
    /// A stored value does not deserialize into the requested type. The
    /// stored value is left as it was.
    #[error("session value {key:?} could not be read: {source}")]
    Decode {
        /// The key asked for.
        key: String,
        /// Why it failed.
        #[source]
        source: DecodeError,
    },
    /// The value could not be serialized.
    #[error("session value {key:?} could not be serialized: {source}")]
    Encode {
        /// The key written.
        key: String,
        /// Why it failed.
        #[source]
        source: EncodeError,
    },
    /// The encoded value is larger than the configured limit.
    #[error(
        "session value {key:?} is {size} bytes, over the {limit}-byte limit; keep large data in your database and its id in the session"
    )]
    ValueTooLarge {
        /// The key written.
        key: String,
        /// The encoded size.
        size: usize,
        /// The limit ([`SessionLayer::with_max_value_bytes`](crate::SessionLayer::with_max_value_bytes)).
        limit: usize,
    },
    /// The key is empty, longer than 256 bytes, or starts with a control
    /// character (reserved).
    #[error("session keys must be 1 to 256 bytes long and not start with a control character")]
    InvalidKey,
    /// Client-side sessions: the record would no longer fit its cookie(s).
    /// The value was not inserted.
    #[error(
        "the session would be {size} bytes sealed, more than its cookies hold; store less or enable chunking"
    )]
    CookieTooLarge {
        /// The estimated sealed size.
        size: usize,
    },
    /// The user passed to `login` is empty or longer than 1 KiB.
    #[error("the signed-in user must be 1 to {MAX_USER_BYTES} bytes long")]
    InvalidUser,
    /// The value nests deeper than records can be read back
    /// ([`MAX_VALUE_DEPTH`](crate::record::MAX_VALUE_DEPTH)). The value was
    /// not inserted.
    #[error("session value {key:?} nests deeper than {limit} levels; flatten it")]
    ValueTooDeep {
        /// The key written.
        key: String,
        /// The nesting limit.
        limit: usize,
    },
    /// The record would exceed the configured size limit
    /// ([`SessionLayer::with_max_record_bytes`](crate::SessionLayer::with_max_record_bytes));
    /// nothing was written.
    #[error(
        "the session record would be {size} bytes, over the {limit}-byte limit; keep large data in your database and its id in the session"
    )]
    RecordTooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// [`Session::logout_everywhere`](crate::Session::logout_everywhere) on client-side sessions without
    /// revocation configured: the other devices' cookies cannot be ended.
    /// Nothing was changed; configure
    /// [`ClientSessions::with_revocation`](crate::client_side::ClientSessions::with_revocation),
    /// or call [`Session::logout`](crate::Session::logout) to sign out this device only.
    #[error(
        "cannot sign out other devices: client-side revocation is not configured (ClientSessions::with_revocation)"
    )]
    RevocationNotConfigured,
    /// No session of the signed-in user has that device handle (also when
    /// it is another user's, S25, or no one is signed in).
    #[error("no session of this user has that device handle")]
    DeviceNotFound,
    /// Client-side sessions are not kept by any server, so there is no
    /// list of them to show or end one by one; end them all with
    /// [`Session::logout_everywhere`](crate::Session::logout_everywhere).
    #[error(
        "client-side sessions cannot be listed or ended one by one; use logout_everywhere (revocation epoch)"
    )]
    DevicesUnavailable,
    /// A device to end is a refresh-token family, which only its
    /// [`TokenSessions`](crate::token) can end completely (denying its
    /// access tokens too). Nothing was ended.
    #[error(
        "that device is a token session; end it through TokenSessions::revoke_device so its access tokens end too"
    )]
    TokenRevocationNotConfigured,
    /// The operation needs a signed-in user.
    #[error("no one is signed in")]
    NotSignedIn,
    /// The user already has as many sessions as
    /// [`SessionLayer::with_session_limit`](crate::SessionLayer::with_session_limit)
    /// allows and its policy refuses new ones (S26). Nothing changed; sign
    /// out another device first.
    #[error(
        "already signed in on {max} devices, the most allowed; sign out on another device first"
    )]
    SessionLimitReached {
        /// The limit.
        max: usize,
    },
}
