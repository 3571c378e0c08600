//! Where flash messages live in a session: one reserved value per message.
//!
//! [`crate::flash`] is the public API; this file is its storage. Each
//! pending message is a value of its own under
//! `"\u{1}cloakroom.flash.<time><random>"`, so the engine's per-key merge on
//! a version conflict (`commit`) keeps two concurrent adds, and a take
//! deletes exactly the keys it read: a message added meanwhile by another
//! request survives. The key sorts by creation time, which is the order
//! messages are shown in. Keys starting with a control character cannot be
//! written through [`Session::insert`], so handlers cannot clobber them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::error::SessionError;
use super::handle::Session;
use super::mode::Mode;
use super::state::{ChangeSet, State};

/// Prefix of every flash message's value name.
const PREFIX: &str = "\u{1}cloakroom.flash.";

/// The bounds on pending (stored) messages; the oldest go first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

/// This request's flash bookkeeping (see [`State`]).
#[derive(Debug, Default)]
pub(crate) struct FlashState {
    /// Messages for this request only (`Flash::now`), encoded.
    now: Vec<Bytes>,
    /// How many of `now` a take has consumed, and how many any read saw.
    now_taken: usize,
    now_seen: usize,
    /// Stored messages a take deleted this request, to undo the deletion
    /// when the response was not shown (a redirect or an error).
    taken: BTreeMap<String, Bytes>,
}

impl FlashState {
    /// Undoes this request's takes of stored messages.
    pub(crate) fn restore_taken(&mut self, pending: &mut ChangeSet) {
        for (key, bytes) in std::mem::take(&mut self.taken) {
            if pending.cleared {
                pending.changes.insert(key, Some(bytes));
            } else if matches!(pending.changes.get(&key), Some(None)) {
                // No write at all: a concurrent request's take of the same
                // message stays a take.
                pending.changes.remove(&key);
            }
        }
    }
}

/// A fresh value name: creation time first (so names sort as messages were
/// added), strictly increasing within the process, random bits after it
/// against collisions between processes.
fn fresh_key() -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let prev = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(wall.max(last.saturating_add(1)))
        })
        .unwrap_or(wall);
    let stamp = wall.max(prev.saturating_add(1));
    let mut random = [0u8; 4];
    // Without randomness two processes could only collide within the same
    // nanosecond; the time alone still orders and almost always separates.
    let _ = getrandom::fill(&mut random);
    format!("{PREFIX}{stamp:016x}{:08x}", u32::from_be_bytes(random))
}

/// The stored messages still pending after this request's changes, oldest
/// first: (name, encoded message, added by this request).
fn pending_stored(state: &State) -> Vec<(String, Bytes, bool)> {
    let mut out: BTreeMap<String, (Bytes, bool)> = BTreeMap::new();
    if !state.pending.cleared
        && let Some(current) = &state.current
    {
        for key in current.record.keys().filter(|k| k.starts_with(PREFIX)) {
            if let Some(bytes) = current.record.get_raw(key) {
                out.insert(key.to_owned(), (bytes.clone(), false));
            }
        }
    }
    for (key, change) in state.pending.changes.range(PREFIX.to_owned()..) {
        if !key.starts_with(PREFIX) {
            break;
        }
        match change {
            Some(bytes) => {
                out.insert(key.clone(), (bytes.clone(), true));
            }
            None => {
                out.remove(key);
            }
        }
    }
    out.into_iter().map(|(k, (b, new))| (k, b, new)).collect()
}

impl Session {
    /// Queues an encoded message for a later request, dropping the oldest
    /// pending ones beyond `caps`.
    pub(crate) async fn flash_add(&self, message: Bytes, caps: Caps) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        // The cap counts what is stored, so the record must be read.
        self.ensure_loaded(&mut state).await?;
        let before = state.pending.clone();
        let pending = pending_stored(&state);
        let mut count = pending.len() + 1;
        let mut bytes: usize =
            pending.iter().map(|(_, b, _)| b.len()).sum::<usize>() + message.len();
        for (key, old, _) in &pending {
            if count <= caps.messages && bytes <= caps.bytes {
                break;
            }
            tracing::debug!("flash: dropping the oldest pending message over the cap");
            state.pending.changes.insert(key.clone(), None);
            count -= 1;
            bytes -= old.len();
        }
        let key = fresh_key();
        let ctx = &self.inner.ctx;
        if ctx.engine.checks_inserts()
            && let Err(e) = ctx.engine.admit(&ctx.config, &state, &key, &message)
        {
            state.pending = before;
            return Err(e);
        }
        state.pending.changes.insert(key, Some(message));
        Ok(())
    }

    /// Adds an encoded message for this request only.
    pub(crate) async fn flash_now(&self, message: Bytes) {
        self.inner.state.lock().await.flash.now.push(message);
    }

    /// The messages for this request, oldest first: those stored by earlier
    /// requests, then this request's `now` ones. With `take`, they are
    /// consumed (deleted from the session when the response is saved).
    pub(crate) async fn flash_read(&self, take: bool) -> Result<Vec<Bytes>, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        let state = &mut *state;
        let mut out = Vec::new();
        // Messages added by this request are for the next one.
        for (key, bytes, _) in pending_stored(state).into_iter().filter(|m| !m.2) {
            if take {
                state.pending.changes.insert(key.clone(), None);
                state.flash.taken.insert(key, bytes.clone());
            }
            out.push(bytes);
        }
        let flash = &mut state.flash;
        out.extend(flash.now[flash.now_taken..].iter().cloned());
        flash.now_seen = flash.now.len();
        if take {
            flash.now_taken = flash.now.len();
        }
        Ok(out)
    }

    /// Keeps what this request read for the next request: takes are undone
    /// and the `now` messages read are queued like added ones.
    pub(crate) async fn flash_keep(&self, caps: Caps) -> Result<(), SessionError> {
        let seen = {
            let mut state = self.inner.state.lock().await;
            let state = &mut *state;
            state.flash.restore_taken(&mut state.pending);
            let flash = &mut state.flash;
            let seen: Vec<Bytes> = flash.now.drain(..flash.now_seen).collect();
            flash.now_seen = 0;
            flash.now_taken = 0;
            seen
        };
        for message in seen {
            self.flash_add(message, caps).await?;
        }
        Ok(())
    }
}

/// Whether `key` names a flash message (hidden from [`Session::keys`]).
pub(crate) fn is_reserved(key: &str) -> bool {
    key.starts_with(char::is_control)
}
