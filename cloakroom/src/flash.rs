//! Flash messages: short notices ("Signed in.", "Wrong password") that a
//! request leaves for the next one, kept in the session.
//!
//! ```
//! use axum::response::Redirect;
//! use cloakroom::{Session, SessionError, flash::Flash};
//!
//! async fn save_settings(session: Session) -> Result<Redirect, SessionError> {
//!     // ... save ...
//!     session.flash().success("Settings saved.").await?;
//!     Ok(Redirect::to("/settings"))
//! }
//!
//! async fn settings(flash: Flash) -> Result<String, SessionError> {
//!     let notices = flash.messages().await?; // read and consumed
//!     Ok(notices.iter().map(|m| format!("{}: {}\n", m.level, m.text)).collect())
//! }
//! ```
//!
//! # Semantics
//!
//! * [`Flash::add`] (and [`Flash::success`] and friends) queues a message
//!   for a *later* request: it is not among this request's
//!   [`messages`](Flash::messages). [`Flash::now`] adds one for this
//!   request only; it is never stored.
//! * [`Flash::messages`] takes: it returns the pending messages, oldest
//!   first, and deletes them when the response is saved.
//!   [`Flash::peek`] reads without consuming. [`Flash::keep`] undoes this
//!   request's takes and queues the `now` messages read so far, so
//!   everything read is shown once more.
//! * When the response is a redirect (3xx) or an error (4xx, 5xx), the
//!   messages taken are not consumed: the page that would have shown them
//!   was not shown. (A 5xx saves nothing at all, like every session
//!   change.)
//! * Every message is a value of its own in the session record, so
//!   concurrent requests on one session merge key by key: two adds at once
//!   both survive, and a take deletes only what it read.
//! * Bounded: at most [`MAX_FLASH_MESSAGES`] pending messages of at most
//!   [`MAX_FLASH_BYTES`] together; adding beyond that drops the oldest.
//!   Texts are cut (at a character boundary) to [`MAX_FLASH_TEXT_BYTES`].
//!   With sealed-cookie sessions this keeps flash well inside the cookie
//!   (a few hundred bytes of framing over 1.5 KB of text at most). The
//!   bound is enforced by each request on what it sees: two processes
//!   adding at once can briefly exceed it by their own additions, until
//!   the next add.
//!
//! Flash messages are session values: [`Session::clear`] removes them too,
//! and they need a session, so the first `add` of an anonymous visitor
//! starts one (a cookie is set). They do not appear in [`Session::keys`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::record;
use crate::session::{FlashCaps, Session, SessionError};

/// Most pending messages a session holds; adding more drops the oldest.
pub const MAX_FLASH_MESSAGES: usize = 8;
/// Longest message text in bytes; longer texts are cut.
pub const MAX_FLASH_TEXT_BYTES: usize = 512;
/// Most bytes the pending messages take together (encoded); adding more
/// drops the oldest.
pub const MAX_FLASH_BYTES: usize = 1536;

const CAPS: FlashCaps = FlashCaps {
    messages: MAX_FLASH_MESSAGES,
    bytes: MAX_FLASH_BYTES,
};

/// How important a message is; ordered from `Debug` to `Error`, as
/// Django's message levels. Serialized in lowercase (`"success"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Development details.
    Debug,
    /// Information for the user.
    Info,
    /// An action succeeded.
    Success,
    /// Something may need attention.
    Warning,
    /// An action failed.
    Error,
}

impl Level {
    /// The lowercase name (`"warning"`), also the serialized form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Success => "success",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One flash message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FlashMessage {
    /// How important it is.
    pub level: Level,
    /// What it says (plain text: escape it when rendering HTML).
    pub text: String,
}

impl FlashMessage {
    /// A message, its text cut to [`MAX_FLASH_TEXT_BYTES`].
    #[must_use]
    pub fn new(level: Level, text: impl Into<String>) -> Self {
        let mut text = text.into();
        if text.len() > MAX_FLASH_TEXT_BYTES {
            let mut end = MAX_FLASH_TEXT_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        Self { level, text }
    }

    fn encode(&self) -> Result<bytes::Bytes, SessionError> {
        record::encode_value(self).map_err(|source| SessionError::Encode {
            key: "flash".to_owned(),
            source,
        })
    }
}

/// The flash messages of one request's session. Get it from
/// [`Session::flash`] or as an axum extractor; cheap to clone, and every
/// method takes `&self`, so it can be used from any extractor or handler.
///
/// As an extractor it rejects with `500` when the
/// [`SessionLayer`](crate::SessionLayer) is missing.
#[derive(Debug, Clone)]
pub struct Flash {
    session: Session,
}

impl Session {
    /// This session's flash messages.
    #[must_use]
    pub fn flash(&self) -> Flash {
        Flash {
            session: self.clone(),
        }
    }
}

impl Flash {
    /// Queues a message for a later request (usually the one a redirect
    /// leads to).
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the session could not be loaded;
    /// client-side, [`SessionError::CookieTooLarge`] if the cookie cannot
    /// hold it with the rest of the session.
    pub async fn add(&self, level: Level, text: impl Into<String>) -> Result<(), SessionError> {
        let message = FlashMessage::new(level, text).encode()?;
        self.session.flash_add(message, CAPS).await
    }

    /// Adds a message for this request only (shown by this request's
    /// [`messages`](Self::messages) or [`peek`](Self::peek), never stored).
    ///
    /// # Errors
    ///
    /// [`SessionError::Encode`] in theory only (a message always encodes).
    pub async fn now(&self, level: Level, text: impl Into<String>) -> Result<(), SessionError> {
        let message = FlashMessage::new(level, text).encode()?;
        self.session.flash_now(message).await;
        Ok(())
    }

    /// [`add`](Self::add) at [`Level::Debug`].
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    pub async fn debug(&self, text: impl Into<String>) -> Result<(), SessionError> {
        self.add(Level::Debug, text).await
    }

    /// [`add`](Self::add) at [`Level::Info`].
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    pub async fn info(&self, text: impl Into<String>) -> Result<(), SessionError> {
        self.add(Level::Info, text).await
    }

    /// [`add`](Self::add) at [`Level::Success`].
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    pub async fn success(&self, text: impl Into<String>) -> Result<(), SessionError> {
        self.add(Level::Success, text).await
    }

    /// [`add`](Self::add) at [`Level::Warning`].
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    pub async fn warning(&self, text: impl Into<String>) -> Result<(), SessionError> {
        self.add(Level::Warning, text).await
    }

    /// [`add`](Self::add) at [`Level::Error`].
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    pub async fn error(&self, text: impl Into<String>) -> Result<(), SessionError> {
        self.add(Level::Error, text).await
    }

    /// Takes the messages for this request, oldest first (those left by
    /// earlier requests, then this request's [`now`](Self::now) ones): they
    /// are gone for later requests unless this response is a redirect or an
    /// error, or [`keep`](Self::keep) is called.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the session could not be loaded. A stored
    /// message that no longer decodes is skipped (and consumed), not an
    /// error.
    pub async fn messages(&self) -> Result<Vec<FlashMessage>, SessionError> {
        Ok(decode_all(self.session.flash_read(true).await?))
    }

    /// The messages [`messages`](Self::messages) would take, left in place.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if the session could not be loaded.
    pub async fn peek(&self) -> Result<Vec<FlashMessage>, SessionError> {
        Ok(decode_all(self.session.flash_read(false).await?))
    }

    /// Keeps everything read so far this request for one more request: the
    /// messages taken are not consumed, and the [`now`](Self::now) ones
    /// read are queued for the next request.
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add), for the `now` messages queued.
    pub async fn keep(&self) -> Result<(), SessionError> {
        self.session.flash_keep(CAPS).await
    }
}

fn decode_all(raw: Vec<bytes::Bytes>) -> Vec<FlashMessage> {
    raw.iter()
        .filter_map(|b| match record::decode_value::<FlashMessage>(b) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "flash: skipping a message that does not decode");
                None
            }
        })
        .collect()
}

/// Extracts the request's [`Flash`].
///
/// Rejects with `500` if [`SessionLayer`](crate::SessionLayer) is missing.
#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Flash {
    type Rejection = crate::MissingSessionLayer;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .map(Session::flash)
            .ok_or(crate::MissingSessionLayer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_char_boundary() {
        let m = FlashMessage::new(Level::Info, "é".repeat(400));
        assert!(m.text.len() <= MAX_FLASH_TEXT_BYTES);
        assert!(m.text.len() >= MAX_FLASH_TEXT_BYTES - 1);
    }

    #[test]
    fn levels_are_ordered_and_lowercase() {
        assert!(Level::Debug < Level::Info && Level::Info < Level::Success);
        assert!(Level::Success < Level::Warning && Level::Warning < Level::Error);
        let json = serde_json_like(Level::Warning);
        assert_eq!(json, "warning");
    }

    fn serde_json_like(level: Level) -> String {
        let bytes = record::encode_value(&level).unwrap_or_default();
        record::decode_value::<String>(&bytes).unwrap_or_default()
    }
}
