//! The session engine: [`Session`], the handle a request handler uses, and
//! what stands behind it.
//!
//! A `Session` is cheap to clone (clones share one state) and does nothing
//! until used: the record is loaded on the first read, and writes go into a
//! per-key change set that the layer saves after the handler returns.
//!
//! # Saving
//!
//! After the response is built the layer calls the session's `finish`:
//!
//! * nothing was changed: no write, no cookie; a session that was read gets
//!   its idle deadline pushed forward at most once per touch interval;
//! * values were changed: the change set is applied to the loaded record and
//!   saved with compare-and-swap on its version. If another request saved
//!   first, the record is reloaded and this request's changes re-applied key
//!   by key (last writer wins per key, not per record), a few times at most.
//!   Saves of one session that overlap within a process are committed
//!   together: their change sets are applied in arrival order and written
//!   with a single compare-and-swap, so a burst of writes to one session
//!   costs a few store round trips, not one each (a change set that would
//!   make the record too large fails on its own);
//! * a new visitor's first write creates a record under a fresh ID, never the
//!   ID the visitor presented (S4), retrying on the (astronomically rare)
//!   collision instead of overwriting (S7);
//! * a 5xx response saves no values (the handler failed half-way), though
//!   a login or logout that already happened is still reflected in the
//!   cookie.
//!
//! `destroy`, `logout`, `rotate` and `login` write at once, before the
//! handler goes on, so they win over saves in flight on other requests: a
//! save racing a destroy finds the record gone and is dropped, never
//! resurrecting the session (S28).
//!
//! # Layout
//!
//! `handle` and `sign_in` are the handler API, which never asks how
//! sessions are kept; `load` and `finish` run at the start and the end of a
//! request; each way of keeping sessions is one [`Mode`](mode::Mode)
//! implementation (`server`: an ID in the cookie, the record in a store;
//! `sealed`: the record sealed in the cookie), chosen once per layer in
//! `context`; `commit` saves (compare-and-swap, group commit).

mod account;
mod commit;
mod context;
mod error;
mod finish;
mod flash_slots;
mod handle;
mod load;
mod mode;
mod renewal;
mod sealed;
mod server;
mod sign_in;
mod state;
mod visitor;

pub use error::SessionError;
pub use handle::{MAX_USER_BYTES, Session, SessionInfo};
pub use sign_in::LoginOptions;

pub(crate) use context::{Context, Engine};
pub(crate) use flash_slots::Caps as FlashCaps;
pub(crate) use handle::CSRF_SECRET_KEY;
pub(crate) use sealed::SealedMode;
pub(crate) use server::ServerMode;
pub(crate) use state::Failure;

#[cfg(test)]
mod tests;
