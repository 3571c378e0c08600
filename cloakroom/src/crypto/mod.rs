//! Keys, sealing and signing for values the client carries.
//!
//! A [`Keyring`] holds master keys, newest first. From each it derives one
//! subkey per purpose (`"session"`, `"csrf"`, ...) and mode with
//! HKDF-SHA256, and with them it:
//!
//! * **seals** ([`Keyring::seal`] / [`Keyring::open`]): XChaCha20-Poly1305
//!   with a fresh 24-byte random nonce. Guarantees confidentiality,
//!   integrity and authenticity of the plaintext.
//! * **signs** ([`Keyring::sign`] / [`Keyring::verify`]): HMAC-SHA256.
//!   Guarantees integrity and authenticity; the payload is readable by
//!   anyone.
//!
//! In both modes the cookie name, the purpose, the format version and the
//! key id are authenticated, so a value cannot be moved to another cookie
//! or another use, re-labelled to another key, or cut, extended or altered
//! in any bit (S31, S32). (The `cookie` crate's signed jar authenticates the
//! value only.) See [Wire format](#wire-format) for the bytes.
//!
//! ```
//! use cloakroom::crypto::{Keyring, MasterKey};
//!
//! // In production: Keyring::from_env() reads CLOAKROOM_KEYS.
//! let keyring = Keyring::from(MasterKey::generate());
//! let sealed = keyring.seal("session", "__Host-id", b"record bytes")?;
//! let opened = keyring.open("session", "__Host-id", &sealed)?;
//! assert_eq!(opened.plaintext, b"record bytes");
//! assert!(!opened.needs_reseal);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Configuring keys
//!
//! `CLOAKROOM_KEYS` (or `--keys`) holds base64url keys separated by commas,
//! newest first. Generate each with `cloakroom keygen` (32 random bytes). To
//! rotate, put a new key first and keep the old one listed until every
//! cookie it sealed has expired: cookies opened by the old key are re-sealed
//! under the new one ([`Opened::needs_reseal`]). Then remove it.
//!
//! ```text
//! CLOAKROOM_KEYS=GhHMfIaEIUQSYnpdiVEqbeEc8aftDJSDlOQymhIBwDs,5IQD77zUX5rXARLBiwuH04Y7aoJxlV8w-gS7aXVnn1Y
//! ```
//!
//! Those two keys are public now, so they are refused, as are keys shorter
//! than 32 bytes, repeating or counting patterns, text and hex (S34):
//!
//! ```
//! use cloakroom::crypto::{KeyError, Keyring};
//!
//! let example = "GhHMfIaEIUQSYnpdiVEqbeEc8aftDJSDlOQymhIBwDs";
//! assert!(matches!(Keyring::parse(example), Err(KeyError::InList { .. })));
//! ```
//!
//! # What is not guaranteed
//!
//! * **Freshness.** A sealed value stays valid for as long as its keys are
//!   listed: a copy replays. Put the issue time and deadlines *inside* the
//!   plaintext and check them after opening (S33); revoke with a per-user
//!   epoch (S39).
//! * **Hiding the length.** The output length reveals the plaintext length
//!   ([`sealed_len`]). Nothing is compressed, on purpose (S30).
//! * **Hiding which key sealed a value.** The key id is public.
//!
//! # Wire format
//!
//! Unpadded base64url of
//!
//! ```text
//! sealed: [0x01][key id: 4][nonce: 24][ciphertext][Poly1305 tag: 16]
//! signed: [0x02][key id: 4][payload][HMAC-SHA256 tag: 32]
//! ```
//!
//! The associated data (sealed) and MAC input prefix (signed) are the first
//! 5 bytes of the envelope, then the purpose and the cookie name, each
//! preceded by its byte length as a big-endian `u64`; the signed MAC input
//! ends with the payload. The key id is the first 4 bytes of
//! HMAC-SHA256(master key, `"cloakroom key id"`). Subkeys are
//! HKDF-SHA256(salt `"cloakroom/crypto/v1"`, master key, info = label,
//! `0x00`, key id, purpose) with the labels `"cloakroom seal
//! xchacha20poly1305"` and `"cloakroom sign hmac-sha256"`. Known-answer
//! tests lock all of it.
//!
//! # Deployment caveat
//!
//! Every instance behind a load balancer needs the same `CLOAKROOM_KEYS`,
//! in the same order; roll out a new key *listed second* first, and promote
//! it to first only once every instance knows it, or instances that lack
//! it will reject the cookies the others seal.

mod envelope;
mod error;
mod key;
mod keyring;
mod seal;
mod sign;

use std::fmt;

pub use envelope::{sealed_len, signed_len};
pub use error::{OpenError, SealError};
pub use key::{KeyError, KeyId, MAX_MASTER_KEY_BYTES, MIN_MASTER_KEY_BYTES, MasterKey};
pub use keyring::Keyring;

/// The environment variable [`Keyring::from_env`] reads.
pub const KEYS_ENV: &str = "CLOAKROOM_KEYS";
/// Most keys a [`Keyring`] holds.
pub const MAX_KEYS: usize = 16;
/// Longest sealed or signed text accepted, in characters (16 KiB), checked
/// before decoding. Sealing refuses to produce anything longer, so the
/// largest plaintext is 12 243 bytes sealed and 12 251 bytes signed.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A successfully opened or verified value.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Opened {
    /// The plaintext (sealed) or payload (signed).
    pub plaintext: Vec<u8>,
    /// True when a key other than the newest opened the value: seal or sign
    /// it again so the old key can be retired (S35).
    pub needs_reseal: bool,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The plaintext is session data: its length only.
        f.debug_struct("Opened")
            .field("plaintext_len", &self.plaintext.len())
            .field("needs_reseal", &self.needs_reseal)
            .finish()
    }
}

/// An HMAC-SHA256 keyed with `key`.
pub(crate) fn hmac_sha256(key: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac as _;
    #[allow(clippy::expect_used)]
    <hmac::Hmac<sha2::Sha256>>::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length")
}
