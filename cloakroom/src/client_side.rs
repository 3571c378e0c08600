//! Client-side sessions: the whole record sealed in the cookie.
//!
//! The cloakroom seals your coat in a tamper-proof bag that you carry
//! yourself: no store on the request path, any number of app instances, the
//! same [`Session`](crate::Session) API. Switch with one line:
//!
//! ```
//! use cloakroom::{SessionLayer, client_side::ClientSessions, crypto::{Keyring, MasterKey}};
//!
//! // In production: Keyring::from_env() reads CLOAKROOM_KEYS.
//! let keyring = Keyring::new(vec![MasterKey::generate()]).expect("a valid keyring");
//! let layer = SessionLayer::client_side(ClientSessions::new(keyring))
//!     .build()
//!     .expect("valid configuration");
//! ```
//!
//! # What is guaranteed
//!
//! * **Confidentiality and integrity** (default [`Protection::Sealed`]):
//!   XChaCha20-Poly1305 with a fresh random nonce per cookie, under a
//!   per-purpose subkey of the newest master key. Any changed, truncated,
//!   extended or re-labelled cookie is rejected (S30, S31).
//! * **Binding**: the cookie name and the purpose are authenticated, so a
//!   value cannot be moved to another cookie or another use (S32).
//! * **Server-side expiry**: issue time, idle and absolute deadlines and the
//!   user's revocation epoch travel *inside* the ciphertext; the cookie's
//!   `Expires` is never trusted (S33).
//! * **Key rotation**: the newest key seals, every listed key opens, and a
//!   cookie opened by an older key is re-sealed in the same response (S35).
//! * With [`Protection::Signed`] the contents are readable (base64url) but
//!   still authenticated (HMAC-SHA256, name and purpose bound).
//!
//! # What is not
//!
//! * **Revocation** of a cookie that was stolen or belongs to a signed-out
//!   device is impossible without server state. Two remedies: a short
//!   absolute lifetime, and the per-user epoch ([`ClientSessions::with_revocation`]):
//!   "log out everywhere" and password changes bump the user's epoch in a
//!   [`SessionStore`], and every cookie sealed under an older epoch stops
//!   working once the epoch cache (default 30 s) has expired — that is the
//!   worst-case delay (S39).
//!
//!   Revocation fails closed. Every sign-in reads the user's epoch from the
//!   store (never from the cache) and creates the epoch record if there is
//!   none, starting it at the current time in microseconds (and no bump
//!   sets it below the clock), so epochs only grow, even across a lost
//!   record. A cookie is accepted only when its
//!   epoch equals the stored one: an older one was revoked, and a missing
//!   record or a stored epoch *lower* than the cookie's means the store lost
//!   data, so the cookie is refused (the user signs in again) rather than
//!   letting every revoked cookie work again. For the same reason the epoch
//!   store must be durable ([`SessionStore::is_durable`]); a volatile one
//!   (memory, memcached, Redis) is refused at start-up unless accepted with
//!   [`ClientSessions::with_revocation_on_volatile_store`].
//! * **Replay** of an old cookie by its holder within its lifetime: logout
//!   clears the cookie in the browser, but a copy kept elsewhere stays valid
//!   until it expires or the epoch is bumped.
//! * **Size**: browsers drop cookies over 4096 bytes. A record that would
//!   not fit is a typed error ([`SessionError::CookieTooLarge`](crate::SessionError::CookieTooLarge))
//!   unless chunking is on ([`ClientSessions::with_chunking`]), which spreads
//!   the sealed value over up to `n` cookies (`name`, `name.1`, ...) opened
//!   and authenticated as one.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderValue;

use crate::cookie::{CookieLookup, MAX_COOKIE_BYTES, find_cookie_in};
use crate::crypto::Keyring;
use crate::expiry::{Clock, SystemClock, Timestamp};
use crate::record::Record;
use crate::store::{SessionStore, StoreError};

const PURPOSE: &str = "session";
const PAYLOAD_VERSION: u8 = 1;
/// Characters of sealed text per chunk cookie, leaving room for the name,
/// the chunk prefix and attributes within 4096 bytes.
const CHUNK_CHARS: usize = 3800;

/// How the record is protected in the cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protection {
    /// Encrypted and authenticated (XChaCha20-Poly1305). The default.
    #[default]
    Sealed,
    /// Authenticated only (HMAC-SHA256): the browser can read the contents.
    Signed,
}

/// Configuration of client-side sessions.
#[derive(Clone)]
pub struct ClientSessions {
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) protection: Protection,
    pub(crate) max_chunks: usize,
    pub(crate) epochs: Option<Arc<EpochCache>>,
    /// The epoch store was accepted although it is volatile.
    pub(crate) volatile_epochs_accepted: bool,
    /// Where [`ClientSessions::revoke_user`] reads the time.
    pub(crate) clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ClientSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSessions")
            .field("protection", &self.protection)
            .field("max_chunks", &self.max_chunks)
            .field("revocation", &self.epochs.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientSessions {
    /// Sealed cookies under `keyring`, one cookie at most, no revocation.
    #[must_use]
    pub fn new(keyring: Keyring) -> Self {
        Self {
            keyring: Arc::new(keyring),
            protection: Protection::Sealed,
            max_chunks: 1,
            epochs: None,
            volatile_epochs_accepted: false,
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads time from `clock` instead of the system clock (tests). A
    /// [`SessionLayer`](crate::SessionLayer) built over these sessions
    /// reads the same clock unless given its own with
    /// [`SessionLayer::with_clock`](crate::SessionLayer::with_clock).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Chooses sealed (default) or signed-only cookies.
    #[must_use]
    pub fn with_protection(mut self, protection: Protection) -> Self {
        self.protection = protection;
        self
    }

    /// Lets a record spread over up to `max_cookies` cookies (1 to 4)
    /// instead of failing when it outgrows one. Four cookies hold about
    /// 11 KiB of record; mind that many servers and proxies cap request
    /// headers at 8 KiB.
    #[must_use]
    pub fn with_chunking(mut self, max_cookies: usize) -> Self {
        // A sealed value opens up to 16 KiB of text: four chunks of 3800.
        self.max_chunks = max_cookies.clamp(1, 4);
        self
    }

    /// Turns on per-user revocation: epochs are kept in `store` and cached
    /// for at most `cache_for` (the worst-case revocation delay).
    ///
    /// `store` must be durable ([`SessionStore::is_durable`]): building the
    /// layer fails with
    /// [`ConfigError::VolatileRevocationStore`](crate::ConfigError::VolatileRevocationStore)
    /// otherwise, since a store that forgets epochs would sign every user
    /// out (see the [module docs](self)).
    #[must_use]
    pub fn with_revocation(mut self, store: Arc<dyn SessionStore>, cache_for: Duration) -> Self {
        self.epochs = Some(Arc::new(EpochCache::new(store, cache_for)));
        self.volatile_epochs_accepted = false;
        self
    }

    /// [`ClientSessions::with_revocation`] on a store that may lose data
    /// (memory, memcached, Redis without persistence). When it does, the
    /// affected users' cookies are refused and they must sign in again:
    /// revoked cookies never come back, but every sign-out is lost with the
    /// data. For development, or where that is acceptable.
    #[must_use]
    pub fn with_revocation_on_volatile_store(
        mut self,
        store: Arc<dyn SessionStore>,
        cache_for: Duration,
    ) -> Self {
        self.epochs = Some(Arc::new(EpochCache::new(store, cache_for)));
        self.volatile_epochs_accepted = true;
        self
    }

    /// Whether revocation is configured on a volatile store without having
    /// been accepted as such.
    pub(crate) fn has_unaccepted_volatile_epochs(&self) -> bool {
        self.epochs
            .as_ref()
            .is_some_and(|e| !e.store.is_durable() && !self.volatile_epochs_accepted)
    }

    /// Makes every client-side session of `user` invalid from now on (after
    /// at most the epoch cache lifetime in other processes).
    ///
    /// # Errors
    ///
    /// [`RevokeError::NotConfigured`] without
    /// [`ClientSessions::with_revocation`]; [`RevokeError::Store`] if the
    /// epoch store fails. Either way nothing was revoked.
    pub async fn revoke_user(&self, user: &str) -> Result<u64, RevokeError> {
        self.revoke_user_at(user, self.clock.now()).await
    }

    /// [`ClientSessions::revoke_user`] at `now` (the layer's clock).
    pub(crate) async fn revoke_user_at(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<u64, RevokeError> {
        match &self.epochs {
            Some(e) => e.bump(user, now).await.map_err(RevokeError::Store),
            None => Err(RevokeError::NotConfigured),
        }
    }
}

/// Why [`ClientSessions::revoke_user`] revoked nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// Revocation is not configured: cookies cannot be ended before they
    /// expire ([`ClientSessions::with_revocation`] turns it on).
    #[error("client-side revocation is not configured (ClientSessions::with_revocation)")]
    NotConfigured,
    /// The epoch store failed.
    #[error(transparent)]
    Store(StoreError),
}

/// The session cookie(s) a request presented, not yet opened.
pub(crate) enum Presented {
    Absent,
    Sealed { text: String, chunks: usize },
    Rejected { chunks: usize },
}

/// Reads the (possibly chunked) session cookie. Nothing is decrypted here.
pub(crate) fn presented(headers: &[HeaderValue], name: &str, max_chunks: usize) -> Presented {
    let first = match find_cookie_in(headers, name) {
        CookieLookup::Absent => return Presented::Absent,
        CookieLookup::Duplicate | CookieLookup::Malformed => {
            return Presented::Rejected { chunks: 1 };
        }
        CookieLookup::Found(v) => v,
    };
    // Unchunked values never contain '.', chunked ones start "N.".
    let Some((count, head)) = first.split_once('.') else {
        return Presented::Sealed {
            text: first.to_owned(),
            chunks: 1,
        };
    };
    let Ok(count) = count.parse::<usize>() else {
        return Presented::Rejected { chunks: 1 };
    };
    if count < 2 || count > max_chunks {
        return Presented::Rejected {
            chunks: count.clamp(1, 4),
        };
    }
    let mut text = head.to_owned();
    for i in 1..count {
        match find_cookie_in(headers, &chunk_name(name, i)) {
            CookieLookup::Found(v) => text.push_str(v),
            _ => return Presented::Rejected { chunks: count },
        }
    }
    Presented::Sealed {
        text,
        chunks: count,
    }
}

pub(crate) fn chunk_name(name: &str, i: usize) -> String {
    if i == 0 {
        name.to_owned()
    } else {
        format!("{name}.{i}")
    }
}

/// What a cookie opened to.
pub(crate) struct Opened {
    pub(crate) record: Record,
    pub(crate) epoch: u64,
    pub(crate) needs_reseal: bool,
}

/// Why a record could not be sealed into cookies.
#[derive(Debug)]
pub(crate) enum SealFailure {
    /// Sealed, it would be this many bytes: more than the cookies hold.
    TooLarge(usize),
    /// The random number generator failed.
    Crypto,
}

/// Why a presented cookie was refused (logged, never shown).
#[derive(Debug)]
pub(crate) enum Refused {
    Crypto,
    Payload(&'static str),
}

impl Refused {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Crypto => "does not open (forged, altered, or sealed under an unlisted key)",
            Self::Payload(why) => why,
        }
    }
}

impl ClientSessions {
    pub(crate) fn open(&self, name: &str, text: &str) -> Result<Opened, Refused> {
        let opened = match self.protection {
            Protection::Sealed => self.keyring.open(PURPOSE, name, text),
            Protection::Signed => self.keyring.verify(PURPOSE, name, text),
        }
        .map_err(|_| Refused::Crypto)?;
        let mut buf = Bytes::from(opened.plaintext);
        if buf.remaining() < 17 || buf.get_u8() != PAYLOAD_VERSION {
            return Err(Refused::Payload("unknown payload version"));
        }
        let _issued_at = buf.get_u64();
        let epoch = buf.get_u64();
        let record =
            Record::decode(&buf).map_err(|_| Refused::Payload("record does not decode"))?;
        Ok(Opened {
            record,
            epoch,
            needs_reseal: opened.needs_reseal,
        })
    }

    /// The cookie values carrying `record`, one per chunk.
    ///
    /// # Errors
    ///
    /// [`SealFailure`] when it does not fit in the allowed cookies or the
    /// random number generator failed.
    pub(crate) fn seal(
        &self,
        name: &str,
        record: &Record,
        epoch: u64,
        now: Timestamp,
    ) -> Result<Vec<String>, SealFailure> {
        let encoded = record.encode();
        let mut payload = BytesMut::with_capacity(17 + encoded.len());
        payload.put_u8(PAYLOAD_VERSION);
        payload.put_u64(now.as_millis());
        payload.put_u64(epoch);
        payload.put_slice(&encoded);
        let text = match self.protection {
            Protection::Sealed => self.keyring.seal(PURPOSE, name, &payload),
            Protection::Signed => self.keyring.sign(PURPOSE, name, &payload),
        }
        .map_err(|e| match e {
            crate::crypto::SealError::TooLarge { len, .. } => SealFailure::TooLarge(len),
            _ => SealFailure::Crypto,
        })?;
        let chunks = self
            .chunks_for(name, text.len())
            .map_err(SealFailure::TooLarge)?;
        if chunks == 1 {
            return Ok(vec![text]);
        }
        let mut out: Vec<String> = text
            .as_bytes()
            .chunks(CHUNK_CHARS)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        out[0] = format!("{chunks}.{}", out[0]);
        Ok(out)
    }

    /// How many cookies a sealed text of `text_len` characters takes: the
    /// one rule shared by [`ClientSessions::seal`] and the checks that refuse
    /// a change early, so that whatever passes a check is sent (S12).
    ///
    /// # Errors
    ///
    /// The cookie bytes it would need, when that is more than allowed.
    fn chunks_for(&self, name: &str, text_len: usize) -> Result<usize, usize> {
        if name.len() + text_len <= MAX_COOKIE_BYTES {
            return Ok(1);
        }
        let chunks = text_len.div_ceil(CHUNK_CHARS);
        if chunks > self.max_chunks {
            return Err(text_len + chunks * (name.len() + 3));
        }
        Ok(chunks)
    }

    /// Whether `record` fits its cookie(s) once sealed: the sealed length is
    /// exact (fixed envelope, unpadded base64), so this agrees with
    /// [`ClientSessions::seal`].
    ///
    /// # Errors
    ///
    /// The cookie bytes it would need, when it does not fit.
    pub(crate) fn check_fits(&self, name: &str, record: &Record) -> Result<(), usize> {
        let payload = 17 + record.encoded_len();
        let text = match self.protection {
            Protection::Sealed => crate::crypto::sealed_len(payload),
            Protection::Signed => crate::crypto::signed_len(payload),
        };
        if text > crate::crypto::MAX_TOKEN_LEN {
            return Err(text + name.len());
        }
        self.chunks_for(name, text).map(drop)
    }

    pub(crate) fn epochs(&self) -> Option<&EpochCache> {
        self.epochs.as_deref()
    }
}

mod epochs;
#[cfg(test)]
mod tests;

#[cfg(feature = "jwt")]
pub(crate) use epochs::{EPOCH_LIFE, epoch_floor};
pub(crate) use epochs::{EpochCache, EpochCheck};
