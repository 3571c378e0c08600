//! The sign-in toolkit around [`Session`](crate::Session): "your devices"
//! and ending one or all of them (S24, S25), the concurrent-session limit
//! (S26) and fresh authentication for sensitive actions (S27).
//!
//! # Devices
//!
//! [`Session::devices`](crate::Session::devices) lists the signed-in
//! user's sessions as [`DeviceSession`]s, each named by a public handle (a
//! keyed hash, [`HandleKey`], never usable as a cookie);
//! [`Session::revoke_device`](crate::Session::revoke_device) ends one by
//! handle (another user's handle is "not found");
//! [`Session::revoke_other_devices`](crate::Session::revoke_other_devices)
//! ends all but the current one, and
//! [`Session::on_credentials_changed`](crate::Session::on_credentials_changed)
//! does that and moves the current session to a new ID after a password
//! change. [`Devices`] does the same from outside a request (the admin
//! CLI). Remember-me is a property of each device's session: ending one
//! device never touches another's.
//!
//! Every store lists: the per-user index is part of the
//! [`SessionStore`](crate::store::SessionStore) contract. Refresh-token
//! families of [`TokenSessions`](crate::token) kept in the same store are
//! listed too, as [`DeviceKind::TokenFamily`].
//!
//! Client-side (sealed-cookie) sessions are kept by no server, so no
//! server can list them or end one of them; what is possible is ending all
//! of a user's sealed cookies at once by bumping the user's revocation
//! epoch ([`Session::logout_everywhere`](crate::Session::logout_everywhere),
//! `on_credentials_changed`), with
//! [`ClientSessions::with_revocation`](crate::client_side::ClientSessions::with_revocation).
//! Listing them needs a server row per device, which is a server-side
//! session in all but name: use one.
//!
//! # Concurrent-session limit
//!
//! [`SessionLayer::with_session_limit`](crate::SessionLayer::with_session_limit)
//! with a [`SessionLimit`]: at most `n` sessions per user, evicting the
//! oldest or refusing the new sign-in, enforced inside `login` under a
//! per-user lease kept in the store itself (see [`SessionLimit`]).
//!
//! # Fresh authentication
//!
//! [`RequireFreshAuth`] guards sensitive routes;
//! [`Session::reauthenticate`](crate::Session::reauthenticate) records a
//! new proof of identity and rotates the ID.

pub(crate) mod devices;
#[cfg(feature = "axum")]
mod fresh;
mod handle;
pub(crate) mod limit;

pub use devices::{DeviceError, DeviceKind, DeviceSession, Devices};
#[cfg(feature = "axum")]
pub use fresh::{RequireFreshAuth, RequireFreshAuthService, ReturnPath};
pub use handle::HandleKey;
pub use limit::{LEASE_TTL, LimitPolicy, SessionLimit};
