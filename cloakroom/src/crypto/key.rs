//! Master keys: generation, parsing, refusal of weak keys, key ids.
//!
//! A [`MasterKey`] never leaves this crate except through
//! [`MasterKey::to_base64url`]: `Debug` prints only its [`KeyId`], equality
//! is constant-time, and the bytes are zeroized when the key is dropped.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Shortest master key accepted, in bytes (256 bits, S34).
pub const MIN_MASTER_KEY_BYTES: usize = 32;
/// Longest master key accepted, in bytes.
pub const MAX_MASTER_KEY_BYTES: usize = 64;
/// Length of a freshly generated key, in bytes.
const GENERATED_KEY_BYTES: usize = 32;
/// Longest text [`MasterKey::from_base64url`] looks at: 64 bytes, padded.
const MAX_KEY_TEXT: usize = MAX_MASTER_KEY_BYTES.div_ceil(3) * 4;
/// The HMAC message a key id is derived from.
const KEY_ID_LABEL: &[u8] = b"cloakroom key id";

/// Keys printed in cloakroom's own documentation. Anyone who copies one into
/// a deployment has a key the whole world knows (Rails CVE-2019-5420 was
/// exactly this), so they are refused like short keys. Add every key that
/// appears in a README, example or doc comment here.
const EXAMPLE_KEYS: &[&str] = &[
    // The `CLOAKROOM_KEYS` example in the `crypto` module docs.
    "GhHMfIaEIUQSYnpdiVEqbeEc8aftDJSDlOQymhIBwDs",
    "5IQD77zUX5rXARLBiwuH04Y7aoJxlV8w-gS7aXVnn1Y",
];

/// base64url, padding optional (keys made with `openssl rand -base64 32 |
/// tr '+/' '-_'` keep their `=`), canonical trailing bits required.
const KEY_TEXT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a key or a key list was refused.
///
/// Messages never contain key material, and each says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty.
    #[error("the key is empty; generate one with `cloakroom keygen`")]
    Empty,
    /// The key is shorter than 256 bits.
    #[error(
        "the key has {0} bytes but at least {MIN_MASTER_KEY_BYTES} (256 bits) are required; \
         generate one with `cloakroom keygen`"
    )]
    TooShort(usize),
    /// The key is longer than [`MAX_MASTER_KEY_BYTES`].
    #[error(
        "the key is longer than {MAX_MASTER_KEY_BYTES} bytes; \
         a 32-byte key from `cloakroom keygen` is all that is needed"
    )]
    TooLong,
    /// The text is not base64url.
    #[error(
        "the key is not base64url (A-Z a-z 0-9 - _; in standard base64 replace + with - \
         and / with _); generate one with `cloakroom keygen`"
    )]
    NotBase64Url,
    /// The key is a repeated byte, a short repeating pattern or a counting
    /// sequence: not random.
    #[error(
        "the key is a repeating or counting pattern, not random bytes; \
         generate one with `cloakroom keygen`"
    )]
    Pattern,
    /// The key is printable text (a password or phrase) or hex digits read
    /// as base64url: far less entropy than its length suggests.
    #[error(
        "the key looks like a password, a phrase or hex digits, not random bytes; \
         generate one with `cloakroom keygen`"
    )]
    NotRandom,
    /// The key is printed in cloakroom's documentation.
    #[error(
        "the key is the example from cloakroom's documentation and is public; \
         generate your own with `cloakroom keygen`"
    )]
    Example,
    /// A key list holds no key.
    #[error("no keys configured; generate one with `cloakroom keygen` and list it")]
    NoKeys,
    /// A key list holds more than [`MAX_KEYS`](super::MAX_KEYS) keys.
    #[error(
        "more than {} keys listed; keep the newest and those still in cookies",
        super::MAX_KEYS
    )]
    TooManyKeys,
    /// The same key is listed twice.
    #[error("keys #{first} and #{second} are the same key; remove one")]
    Duplicate {
        /// 1-based position of the first copy.
        first: usize,
        /// 1-based position of the second copy.
        second: usize,
    },
    /// Two different keys have the same [`KeyId`] (a 1 in 2³² accident).
    #[error(
        "keys #{first} and #{second} share a key id; replace the newer one with a key \
         from `cloakroom keygen`"
    )]
    KeyIdCollision {
        /// 1-based position of the first key.
        first: usize,
        /// 1-based position of the second key.
        second: usize,
    },
    /// One entry of a key list was refused.
    #[error("key #{position} in the list: {reason}")]
    InList {
        /// 1-based position of the entry, newest first.
        position: usize,
        /// Why it was refused.
        reason: Box<KeyError>,
    },
    /// The `CLOAKROOM_KEYS` environment variable is not set.
    #[error(
        "{} is not set; generate a key with `cloakroom keygen` and set {}=<key>",
        super::KEYS_ENV,
        super::KEYS_ENV
    )]
    EnvNotSet,
    /// The `CLOAKROOM_KEYS` environment variable is not valid Unicode.
    #[error(
        "{} is not valid Unicode; it must hold base64url keys",
        super::KEYS_ENV
    )]
    EnvNotUnicode,
    /// The operating system's random number generator failed, or kept
    /// returning patterned bytes.
    #[error("the operating system's random number generator failed")]
    Random,
}

/// A public, 4-byte name for a [`MasterKey`], carried in every sealed or
/// signed value so that opening finds the right key without trying each.
///
/// It is the first 4 bytes of HMAC-SHA256(key, `"cloakroom key id"`), so a
/// configuration lists keys only, and a key id reveals nothing about its
/// key. Shown as 8 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 4]);

impl KeyId {
    /// Wraps the 4 bytes of a key id (as found in an envelope).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 4]) -> Self {
        Self(bytes)
    }

    /// The 4 bytes, as written into envelopes.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 4] {
        self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A secret master key of 256 to 512 bits.
///
/// Master keys are never used directly: a [`Keyring`](super::Keyring)
/// derives one subkey per purpose and mode from each.
///
/// ```
/// use cloakroom::crypto::{KeyError, MasterKey};
///
/// let key = MasterKey::generate();
/// let text = key.to_base64url(); // what `CLOAKROOM_KEYS` holds
/// assert_eq!(MasterKey::from_base64url(&text)?, key);
///
/// assert_eq!(MasterKey::from_bytes(&[7; 32]), Err(KeyError::Pattern));
/// assert_eq!(MasterKey::from_bytes(b"short"), Err(KeyError::TooShort(5)));
/// # Ok::<(), KeyError>(())
/// ```
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<Vec<u8>>,
    id: KeyId,
}

impl MasterKey {
    /// Draws a new 32-byte key from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// Panics only if the operating system cannot supply random bytes; see
    /// [`MasterKey::try_generate`] for the non-panicking twin.
    #[must_use]
    pub fn generate() -> Self {
        #[allow(clippy::expect_used)]
        Self::try_generate().expect("the OS random number generator failed")
    }

    /// Draws a new 32-byte key from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`KeyError::Random`] if the operating system cannot supply random
    /// bytes, or supplies bytes that fail the weak-key checks three times
    /// running.
    pub fn try_generate() -> Result<Self, KeyError> {
        let mut bytes = Zeroizing::new([0u8; GENERATED_KEY_BYTES]);
        // The weak-key checks refuse a random key with probability below
        // 2^-40, so one more draw is plenty; a generator that keeps yielding
        // patterns (all zeros, say) is broken, not unlucky.
        for _ in 0..3 {
            getrandom::fill(bytes.as_mut_slice()).map_err(|_| KeyError::Random)?;
            if let Ok(key) = Self::from_bytes(bytes.as_slice()) {
                return Ok(key);
            }
        }
        Err(KeyError::Random)
    }

    /// Accepts raw key bytes after the checks described on [`KeyError`].
    ///
    /// # Errors
    ///
    /// [`KeyError::Empty`], [`KeyError::TooShort`], [`KeyError::TooLong`],
    /// [`KeyError::Example`], [`KeyError::Pattern`] or
    /// [`KeyError::NotRandom`] for keys that are not 32 to 64 random bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        check_strength(bytes)?;
        let mut owned = Zeroizing::new(Vec::with_capacity(bytes.len()));
        owned.extend_from_slice(bytes);
        let id = key_id(&owned);
        Ok(Self { bytes: owned, id })
    }

    /// Parses a key written by [`MasterKey::to_base64url`]: base64url, with
    /// or without `=` padding, surrounding whitespace ignored.
    ///
    /// # Errors
    ///
    /// [`KeyError::NotBase64Url`] for other text, plus every refusal of
    /// [`MasterKey::from_bytes`]. Hex strings are refused as
    /// [`KeyError::NotRandom`]: they decode, but to far weaker keys.
    pub fn from_base64url(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        // Bound the work before decoding anything.
        if text.len() > MAX_KEY_TEXT {
            return Err(KeyError::TooLong);
        }
        let mut buf = Zeroizing::new([0u8; MAX_KEY_TEXT]);
        let len = KEY_TEXT
            .decode_slice(text, buf.as_mut_slice())
            .map_err(|_| KeyError::NotBase64Url)?;
        let bytes = buf.get(..len).unwrap_or_default();
        check_strength(bytes)?;
        // 43+ characters drawn only from 0-9a-f: a hex string (2^-86 for a
        // random key), which holds 4 bits per character instead of 6.
        if text
            .trim_end_matches('=')
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            return Err(KeyError::NotRandom);
        }
        Self::from_bytes(bytes)
    }

    /// The key as unpadded base64url, the form `CLOAKROOM_KEYS` holds.
    ///
    /// This is the secret itself: print it once for the operator, never log
    /// it.
    #[must_use]
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.bytes.as_slice())
    }

    /// The key's public id, derived from the key.
    #[must_use]
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The secret bytes, for key derivation inside this module only.
    pub(super) fn expose_secret(&self) -> &[u8] {
        &self.bytes
    }
}

impl PartialEq for MasterKey {
    fn eq(&self, other: &Self) -> bool {
        // Constant time (S36); only the length, which is not secret, may
        // end the comparison early.
        self.bytes.as_slice().ct_eq(other.bytes.as_slice()).into()
    }
}

impl Eq for MasterKey {}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

fn key_id(key: &[u8]) -> KeyId {
    #[allow(clippy::expect_used)]
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(KEY_ID_LABEL);
    let full = mac.finalize().into_bytes();
    let mut id = [0u8; 4];
    id.copy_from_slice(full.get(..4).unwrap_or_default());
    KeyId(id)
}

/// The refusals of S34: length, the documentation's example keys, and
/// patterns a person types instead of generating.
///
/// Each pattern check has a false-positive rate below 2^-40 on 32 random
/// bytes, so no generated key is ever refused in practice.
fn check_strength(bytes: &[u8]) -> Result<(), KeyError> {
    if bytes.is_empty() {
        return Err(KeyError::Empty);
    }
    if bytes.len() < MIN_MASTER_KEY_BYTES {
        return Err(KeyError::TooShort(bytes.len()));
    }
    if bytes.len() > MAX_MASTER_KEY_BYTES {
        return Err(KeyError::TooLong);
    }
    if is_example(bytes) {
        return Err(KeyError::Example);
    }
    if is_pattern(bytes) {
        return Err(KeyError::Pattern);
    }
    // `echo -n "my long secret passphrase..." | base64`: all printable
    // ASCII, which 32 random bytes are with probability (95/256)^32 ≈ 2^-45.
    if bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(KeyError::NotRandom);
    }
    Ok(())
}

fn is_example(bytes: &[u8]) -> bool {
    EXAMPLE_KEYS.iter().any(|example| {
        let mut buf = [0u8; MAX_KEY_TEXT];
        match URL_SAFE_NO_PAD.decode_slice(example, &mut buf) {
            Ok(len) => bool::from(buf.get(..len).unwrap_or_default().ct_eq(bytes)),
            Err(_) => false,
        }
    })
}

/// A byte repeated, a block of up to 8 bytes repeated, or an arithmetic
/// progression (`00 01 02 ...`, `ff fe fd ...`, with any step).
fn is_pattern(bytes: &[u8]) -> bool {
    let periodic = (1..=8).any(|period| {
        bytes
            .iter()
            .zip(bytes.iter().skip(period))
            .all(|(a, b)| a == b)
    });
    let step = match bytes {
        [a, b, ..] => b.wrapping_sub(*a),
        _ => 0,
    };
    let counting = bytes.windows(2).all(|w| match w {
        [a, b] => b.wrapping_sub(*a) == step,
        _ => true,
    });
    periodic || counting
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "m0dX8LrZ1qYy2c5pJr0wq3t9u8n2GkA-hY_VbN1sT4E";

    #[test]
    fn generated_keys_round_trip() {
        let key = MasterKey::generate();
        let text = key.to_base64url();
        assert_eq!(text.len(), 43);
        let back = MasterKey::from_base64url(&text).unwrap();
        assert_eq!(back, key);
        assert_eq!(back.id(), key.id());
        assert_ne!(MasterKey::generate(), key);
    }

    #[test]
    fn padding_and_whitespace_are_tolerated() {
        let key = MasterKey::from_base64url(GOOD).unwrap();
        assert_eq!(
            MasterKey::from_base64url(&format!(" {GOOD}=\n")).unwrap(),
            key
        );
    }

    #[test]
    fn lengths() {
        assert_eq!(MasterKey::from_bytes(&[]), Err(KeyError::Empty));
        assert_eq!(MasterKey::from_base64url("  "), Err(KeyError::Empty));
        let random = MasterKey::generate();
        let bytes = random.expose_secret();
        assert_eq!(
            MasterKey::from_bytes(&bytes[..31]),
            Err(KeyError::TooShort(31))
        );
        let mut long = bytes.to_vec();
        long.extend_from_slice(bytes);
        assert!(MasterKey::from_bytes(&long).is_ok(), "64 bytes are fine");
        long.push(1);
        assert_eq!(MasterKey::from_bytes(&long), Err(KeyError::TooLong));
        assert_eq!(
            MasterKey::from_base64url(&"A".repeat(10_000)),
            Err(KeyError::TooLong)
        );
    }

    #[test]
    fn patterns_are_refused() {
        assert_eq!(MasterKey::from_bytes(&[0; 32]), Err(KeyError::Pattern));
        assert_eq!(MasterKey::from_bytes(&[0xff; 48]), Err(KeyError::Pattern));
        let counting: Vec<u8> = (0..32).collect();
        assert_eq!(MasterKey::from_bytes(&counting), Err(KeyError::Pattern));
        let down: Vec<u8> = (0..40u8).map(|i| 200u8.wrapping_sub(i * 3)).collect();
        assert_eq!(MasterKey::from_bytes(&down), Err(KeyError::Pattern));
        let block: Vec<u8> = [0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03].repeat(5);
        assert_eq!(MasterKey::from_bytes(&block), Err(KeyError::Pattern));
    }

    #[test]
    fn text_and_hex_are_refused() {
        assert_eq!(
            MasterKey::from_bytes(b"my very long and secret passphrase!!"),
            Err(KeyError::NotRandom)
        );
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(MasterKey::from_base64url(hex), Err(KeyError::NotRandom));
    }

    #[test]
    fn encoding_errors() {
        let standard = GOOD.replace('-', "+").replace('_', "/");
        assert_eq!(
            MasterKey::from_base64url(&standard),
            Err(KeyError::NotBase64Url)
        );
        assert_eq!(
            MasterKey::from_base64url("not a key!"),
            Err(KeyError::NotBase64Url)
        );
        // Non-canonical trailing bits: one spelling per key.
        let mut odd = GOOD.to_owned();
        odd.pop();
        odd.push('F');
        assert_eq!(MasterKey::from_base64url(&odd), Err(KeyError::NotBase64Url));
    }

    #[test]
    fn documentation_keys_are_refused() {
        for example in EXAMPLE_KEYS {
            assert_eq!(MasterKey::from_base64url(example), Err(KeyError::Example));
        }
    }

    #[test]
    fn debug_and_messages_hide_the_key() {
        let key = MasterKey::from_base64url(GOOD).unwrap();
        let debug = format!("{key:?}");
        assert_eq!(debug, format!("MasterKey({})", key.id()));
        assert!(!debug.contains(GOOD));
        assert_eq!(key.id().to_string().len(), 8);
        let short = MasterKey::from_bytes(b"0123").unwrap_err();
        assert!(short.to_string().contains("cloakroom keygen"));
    }

    #[test]
    fn key_id_is_hmac_of_label() {
        // Locks the derivation: HMAC-SHA256(key, "cloakroom key id")[..4].
        let key = MasterKey::from_base64url(GOOD).unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret()).unwrap();
        mac.update(b"cloakroom key id");
        let full = mac.finalize().into_bytes();
        assert_eq!(key.id().to_bytes(), full[..4]);
    }
}
