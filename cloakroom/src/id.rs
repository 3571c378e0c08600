//! Session IDs: generation, validation and hashing at rest.
//!
//! A [`SessionId`] is 256 bits from the operating system's CSPRNG, written as
//! 43 characters of unpadded base64url (S1, S3). It is the only secret the
//! browser holds for a server-side session, so:
//!
//! * it is validated (exact length, alphabet, canonical encoding) before any
//!   store sees it, so a hostile cookie never reaches a store (S5);
//! * stores only ever see its [`StorageKey`], the SHA-256 of the raw bytes, so
//!   a dump of a database holds nothing a visitor could present (S6);
//! * its `Debug` output is redacted and logs use [`SessionId::log_tag`], a
//!   keyed hash that cannot be turned back into the ID (S50).

use std::fmt;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A session ID as it travels in the cookie.
///
/// ```
/// use cloakroom::SessionId;
///
/// let id = SessionId::generate();
/// let text = id.expose_secret().to_owned();
/// assert_eq!(text.len(), 43);
/// assert_eq!(SessionId::parse(&text).unwrap(), id);
/// assert!(SessionId::parse("../../etc/passwd").is_err());
/// ```
#[derive(Clone)]
pub struct SessionId {
    bytes: [u8; 32],
    encoded: String,
}

/// Why a presented session ID was refused. It never contains the ID itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidId {
    /// The value is not exactly 43 characters long.
    #[error("session id must be exactly {} characters", SessionId::ENCODED_LEN)]
    Length,
    /// The value holds a character outside the base64url alphabet, or its
    /// final character carries bits a real encoding never sets.
    #[error("session id is not canonical base64url")]
    Encoding,
}

impl SessionId {
    /// Length in characters of an encoded session ID.
    pub const ENCODED_LEN: usize = 43;

    /// Draws a new ID from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// Panics only if the operating system cannot supply random bytes, a
    /// failure no session can be issued safely without.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        Self::from_bytes(bytes)
    }

    /// Builds an ID from raw bytes.
    ///
    /// Only for tests and custom ID sources (see
    /// [`SessionLayer::with_insecure_id_generator`](crate::SessionLayer::with_insecure_id_generator)):
    /// real IDs must come from [`SessionId::generate`].
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let encoded = URL_SAFE_NO_PAD.encode(bytes);
        Self { bytes, encoded }
    }

    /// Parses an ID presented by a client.
    ///
    /// # Errors
    ///
    /// [`InvalidId`] when the text is not exactly 43 canonical base64url
    /// characters. The check runs before any store call (S5).
    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        // Length first, so a 10 KB cookie costs one comparison.
        if text.len() != Self::ENCODED_LEN {
            return Err(InvalidId::Length);
        }
        let mut bytes = [0u8; 32];
        // The default engine rejects non-canonical trailing bits, so every
        // ID has exactly one accepted spelling.
        match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut bytes) {
            Ok(32) => Ok(Self {
                bytes,
                encoded: text.to_owned(),
            }),
            _ => Err(InvalidId::Encoding),
        }
    }

    /// The encoded ID, for the `Set-Cookie` header and nothing else.
    ///
    /// Named so that every use stands out in review: never log it.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.encoded
    }

    /// The raw 32 bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The key a store files this session under: SHA-256 of the ID (S6).
    #[must_use]
    pub fn storage_key(&self) -> StorageKey {
        StorageKey(Sha256::digest(self.bytes).into())
    }

    /// A short keyed hash of the ID for logs and metrics (S50).
    ///
    /// The key is random per process, so the tag links the events of one
    /// session within one process and reveals nothing else.
    #[must_use]
    pub fn log_tag(&self) -> LogTag {
        LogTag::of(&self.bytes)
    }
}

impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        // Constant time: IDs are secrets (S36).
        self.bytes.ct_eq(&other.bytes).into()
    }
}

impl Eq for SessionId {}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.log_tag())
    }
}

/// The key under which a store files a session: SHA-256 of the session ID.
///
/// Knowing a storage key (from a database dump, say) does not let anyone
/// present the session, because the cookie must hold the preimage.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey(pub [u8; 32]);

impl StorageKey {
    /// The key as 64 lowercase hex characters, for stores that key by text.
    #[must_use]
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }

    /// Parses the form written by [`StorageKey::to_hex`].
    ///
    /// # Errors
    ///
    /// [`InvalidId::Length`] or [`InvalidId::Encoding`] for anything else.
    pub fn from_hex(text: &str) -> Result<Self, InvalidId> {
        let raw = text.as_bytes();
        if raw.len() != 64 {
            return Err(InvalidId::Length);
        }
        let mut out = [0u8; 32];
        for (i, pair) in raw.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or(InvalidId::Encoding)?;
            let lo = hex_val(pair[1]).ok_or(InvalidId::Encoding)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }
}

impl fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageKey({}…)", &self.to_hex()[..12])
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// A keyed hash of a session ID or presented cookie, safe to log (S50).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LogTag([u8; 8]);

impl LogTag {
    /// Tags arbitrary bytes (used for cookies that failed to parse, so even
    /// garbage is never logged raw).
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        static KEY: OnceLock<[u8; 32]> = OnceLock::new();
        let key = KEY.get_or_init(|| {
            let mut k = [0u8; 32];
            // If the OS RNG fails here, a fixed key only weakens log
            // unlinkability, never session security.
            let _ = getrandom::fill(&mut k);
            k
        });
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .expect("HMAC-SHA256 accepts keys of any length");
        mac.update(bytes);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&full[..8]);
        Self(tag)
    }
}

impl fmt::Display for LogTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for LogTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_canonical() {
        let id = SessionId::generate();
        let parsed = SessionId::parse(id.expose_secret()).unwrap();
        assert_eq!(parsed, id);
        assert_eq!(parsed.storage_key(), id.storage_key());
        // Flip the low (padding) bits of the last character: same bytes on a
        // lenient decoder, refused here.
        let mut text = id.expose_secret().as_bytes().to_vec();
        let last = text[42];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet.iter().position(|c| *c == last).unwrap();
        text[42] = alphabet[pos ^ 1];
        assert_eq!(
            SessionId::parse(std::str::from_utf8(&text).unwrap()),
            Err(InvalidId::Encoding)
        );
    }

    #[test]
    fn debug_is_redacted() {
        let id = SessionId::generate();
        assert!(!format!("{id:?}").contains(id.expose_secret()));
    }

    #[test]
    fn hex_round_trip() {
        let key = SessionId::generate().storage_key();
        assert_eq!(StorageKey::from_hex(&key.to_hex()).unwrap(), key);
        assert!(StorageKey::from_hex("zz").is_err());
        assert!(StorageKey::from_hex(&"g".repeat(64)).is_err());
    }
}
