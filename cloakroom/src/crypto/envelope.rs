//! The wire format shared by sealing and signing.
//!
//! ```text
//! sealed: [0x01][key id: 4][nonce: 24][ciphertext][Poly1305 tag: 16]
//! signed: [0x02][key id: 4][payload][HMAC-SHA256 tag: 32]
//! ```
//!
//! Both travel as unpadded base64url. Both authenticate the same associated
//! data, in which every variable-length field is length-prefixed so no two
//! (purpose, name) pairs encode alike:
//!
//! ```text
//! format byte, key id (the first 5 bytes of the envelope)
//! u64 big-endian byte length of purpose, purpose
//! u64 big-endian byte length of cookie name, cookie name
//! ```
//!
//! (for signing, the payload follows; it is the remainder, so it needs no
//! prefix).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::MAX_TOKEN_LEN;
use super::error::{OpenError, SealError};
use super::key::KeyId;

/// Format byte of a sealed value: XChaCha20-Poly1305, version 1.
pub(super) const SEALED_V1: u8 = 0x01;
/// Format byte of a signed value: HMAC-SHA256, version 1.
pub(super) const SIGNED_V1: u8 = 0x02;
/// Format byte and key id.
pub(super) const HEADER_LEN: usize = 5;
/// XChaCha20 nonce.
pub(super) const NONCE_LEN: usize = 24;
/// Poly1305 tag.
pub(super) const AEAD_TAG_LEN: usize = 16;
/// HMAC-SHA256 tag, kept whole.
pub(super) const MAC_TAG_LEN: usize = 32;

/// The envelope header: format byte and key id.
pub(super) fn header(format: u8, key: KeyId) -> [u8; HEADER_LEN] {
    let [a, b, c, d] = key.to_bytes();
    [format, a, b, c, d]
}

/// The associated data binding header, purpose and cookie name (S32).
pub(super) fn associated_data(header: &[u8; HEADER_LEN], purpose: &str, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + 16 + purpose.len() + name.len());
    aad.extend_from_slice(header);
    for field in [purpose, name] {
        // usize -> u64 is lossless on every platform Rust supports.
        aad.extend_from_slice(&(field.len() as u64).to_be_bytes());
        aad.extend_from_slice(field.as_bytes());
    }
    aad
}

/// Characters of the base64url text for `envelope_len` bytes.
const fn text_len(envelope_len: usize) -> usize {
    // Unpadded base64: 4 characters per 3 bytes, rounded up.
    (envelope_len / 3).saturating_mul(4) + (envelope_len % 3 * 4).div_ceil(3)
}

/// Length in characters of [`Keyring::seal`](super::Keyring::seal)'s output
/// for a plaintext of `plaintext_len` bytes (saturating).
#[must_use]
pub const fn sealed_len(plaintext_len: usize) -> usize {
    text_len(plaintext_len.saturating_add(HEADER_LEN + NONCE_LEN + AEAD_TAG_LEN))
}

/// Length in characters of [`Keyring::sign`](super::Keyring::sign)'s output
/// for a payload of `payload_len` bytes (saturating).
#[must_use]
pub const fn signed_len(payload_len: usize) -> usize {
    text_len(payload_len.saturating_add(HEADER_LEN + MAC_TAG_LEN))
}

/// Refuses to produce what opening would refuse.
pub(super) fn check_len(len: usize) -> Result<(), SealError> {
    if len > MAX_TOKEN_LEN {
        return Err(SealError::TooLarge {
            len,
            max: MAX_TOKEN_LEN,
        });
    }
    Ok(())
}

pub(super) fn encode(envelope: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(envelope)
}

/// Decodes presented text: the length bound first (so a hostile 1 MB cookie
/// costs one comparison), then strict base64url (no padding, canonical
/// trailing bits, so every envelope has exactly one spelling).
pub(super) fn decode(text: &str) -> Result<Vec<u8>, OpenError> {
    if text.len() > MAX_TOKEN_LEN {
        return Err(OpenError::TooLarge);
    }
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| OpenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_match_the_encoder() {
        for n in 0..200 {
            assert_eq!(text_len(n), encode(&vec![0; n]).len(), "{n} bytes");
        }
        assert_eq!(sealed_len(0), encode(&[0; 45]).len());
        assert_eq!(signed_len(10), encode(&[0; 47]).len());
        assert_eq!(sealed_len(usize::MAX), usize::MAX);
    }

    #[test]
    fn associated_data_is_unambiguous() {
        let h = [1, 2, 3, 4, 5];
        // Moving a byte between purpose and name changes the encoding.
        assert_ne!(
            associated_data(&h, "ab", "c"),
            associated_data(&h, "a", "bc")
        );
        assert_ne!(associated_data(&h, "", "x"), associated_data(&h, "x", ""));
        let aad = associated_data(&h, "p", "id");
        assert_eq!(
            aad,
            b"\x01\x02\x03\x04\x05\0\0\0\0\0\0\0\x01p\0\0\0\0\0\0\0\x02id"
        );
    }

    #[test]
    fn decode_is_strict_and_bounded() {
        assert_eq!(
            decode(&"A".repeat(MAX_TOKEN_LEN + 1)),
            Err(OpenError::TooLarge)
        );
        assert_eq!(decode("AAE="), Err(OpenError::Malformed), "padding");
        assert_eq!(
            decode("AAF"),
            Err(OpenError::Malformed),
            "non-canonical bits"
        );
        assert_eq!(
            decode("AA+/"),
            Err(OpenError::Malformed),
            "standard alphabet"
        );
        assert_eq!(decode("AAE"), Ok(vec![0, 1]));
    }
}
