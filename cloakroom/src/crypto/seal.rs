//! Sealing: XChaCha20-Poly1305 with a fresh random nonce (S30–S33, S35).

use chacha20poly1305::aead::{Aead, AeadInPlace, Payload};
use chacha20poly1305::{Tag, XNonce};

use super::Opened;
use super::envelope::{
    self, AEAD_TAG_LEN, HEADER_LEN, NONCE_LEN, SEALED_V1, associated_data, check_len, header,
};
use super::error::{OpenError, SealError};
use super::key::KeyId;
use super::keyring::Keyring;

impl Keyring {
    /// Encrypts and authenticates `plaintext` for the cookie `name` and the
    /// given `purpose`, under the newest key.
    ///
    /// The result is unpadded base64url of `[0x01][key id][nonce][ciphertext
    /// and tag]`; the nonce is 24 fresh random bytes, so sealing the same
    /// plaintext twice gives unrelated outputs. Nothing is compressed first
    /// (S30): compression would let the length reveal the contents. The
    /// length of the plaintext is visible (output length is
    /// [`sealed_len`](super::sealed_len)).
    ///
    /// ```
    /// use cloakroom::crypto::{Keyring, MasterKey};
    ///
    /// let keyring = Keyring::from(MasterKey::generate());
    /// let sealed = keyring.seal("session", "__Host-id", b"alice")?;
    /// let opened = keyring.open("session", "__Host-id", &sealed)?;
    /// assert_eq!(opened.plaintext, b"alice");
    /// // Moved to another cookie, it no longer opens (S32).
    /// assert!(keyring.open("session", "__Host-other", &sealed).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SealError::TooLarge`] when the output would exceed
    /// [`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN) (a plaintext above about
    /// 12 KB), and [`SealError::Random`] if the operating system cannot
    /// supply a nonce.
    pub fn seal(&self, purpose: &str, name: &str, plaintext: &[u8]) -> Result<String, SealError> {
        check_len(super::sealed_len(plaintext.len()))?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        self.seal_with_nonce(purpose, name, plaintext, nonce)
    }

    /// [`Keyring::seal`] with a caller-chosen nonce, for known-answer tests
    /// and fuzzing only.
    ///
    /// **Never use it to seal real data**: two values sealed under one key
    /// and one nonce reveal the XOR of their plaintexts and let anyone forge
    /// values under that key.
    ///
    /// # Errors
    ///
    /// [`SealError::TooLarge`], as [`Keyring::seal`].
    #[doc(hidden)]
    pub fn seal_with_nonce_insecure(
        &self,
        purpose: &str,
        name: &str,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<String, SealError> {
        check_len(super::sealed_len(plaintext.len()))?;
        self.seal_with_nonce(purpose, name, plaintext, nonce)
    }

    fn seal_with_nonce(
        &self,
        purpose: &str,
        name: &str,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<String, SealError> {
        self.seal_envelope(purpose, name, plaintext, nonce)
            .map(|e| envelope::encode(&e))
    }

    /// [`Keyring::seal`]'s envelope as bytes, without the text encoding and
    /// without its length limit (a cookie's): for values kept in a store,
    /// such as [`EncryptedStore`](crate::store::EncryptedStore)'s records.
    ///
    /// # Errors
    ///
    /// [`SealError::Random`] if the operating system cannot supply a nonce.
    pub(crate) fn seal_bytes(
        &self,
        purpose: &str,
        name: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        self.seal_envelope(purpose, name, plaintext, nonce)
    }

    fn seal_envelope(
        &self,
        purpose: &str,
        name: &str,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, SealError> {
        let keys = self.purpose_keys(purpose);
        let header = header(SEALED_V1, self.newest_key_id());
        let aad = associated_data(&header, purpose, name);

        let sealed = keys
            .newest()
            .aead
            .encrypt(
                <&XNonce>::from(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            // Fails only beyond 256 GiB, which `check_len` already refused.
            .map_err(|_| SealError::TooLarge {
                len: super::sealed_len(plaintext.len()),
                max: super::MAX_TOKEN_LEN,
            })?;
        let mut envelope = Vec::with_capacity(HEADER_LEN + NONCE_LEN + sealed.len());
        envelope.extend_from_slice(&header);
        envelope.extend_from_slice(&nonce);
        envelope.extend_from_slice(&sealed);
        Ok(envelope)
    }

    /// Authenticates and decrypts a value made by [`Keyring::seal`] for the
    /// same cookie `name` and `purpose`, with whichever listed key sealed
    /// it.
    ///
    /// [`Opened::needs_reseal`] is true when that key is not the newest:
    /// seal the plaintext again so the old key can be retired (S35).
    /// Opening never panics, whatever the input.
    ///
    /// # Errors
    ///
    /// [`OpenError::TooLarge`] above [`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN)
    /// characters (checked before decoding), [`OpenError::Malformed`] for
    /// anything but canonical unpadded base64url of at least 45 bytes,
    /// [`OpenError::UnknownFormat`] for a format byte other than sealed
    /// version 1 (a signed value included), [`OpenError::UnknownKey`] for a
    /// key id not in the ring, and [`OpenError::Rejected`] when
    /// authentication fails: any changed bit, another name or purpose, or a
    /// re-labelled key id (S31, S32).
    pub fn open(&self, purpose: &str, name: &str, sealed: &str) -> Result<Opened, OpenError> {
        self.open_bytes(purpose, name, envelope::decode(sealed)?)
    }

    /// Opens an envelope made by [`seal_bytes`](Self::seal_bytes).
    ///
    /// # Errors
    ///
    /// As [`Keyring::open`], less the text checks.
    pub(crate) fn open_bytes(
        &self,
        purpose: &str,
        name: &str,
        mut bytes: Vec<u8>,
    ) -> Result<Opened, OpenError> {
        let (header, rest) = bytes
            .split_first_chunk_mut::<HEADER_LEN>()
            .ok_or(OpenError::Malformed)?;
        let (nonce, rest) = rest
            .split_first_chunk_mut::<NONCE_LEN>()
            .ok_or(OpenError::Malformed)?;
        let (body, tag) = rest
            .split_last_chunk_mut::<AEAD_TAG_LEN>()
            .ok_or(OpenError::Malformed)?;
        let [format, id @ ..] = *header;
        if format != SEALED_V1 {
            return Err(OpenError::UnknownFormat);
        }
        let index = self
            .position(KeyId::from_bytes(id))
            .ok_or(OpenError::UnknownKey)?;
        let keys = self.purpose_keys(purpose);
        let subkeys = keys.get(index).ok_or(OpenError::UnknownKey)?;
        let aad = associated_data(header, purpose, name);
        // Poly1305 is checked (in constant time) before anything is
        // decrypted; on failure `body` is left as it was.
        subkeys
            .aead
            .decrypt_in_place_detached(<&XNonce>::from(&*nonce), &aad, body, <&Tag>::from(&*tag))
            .map_err(|_| OpenError::Rejected)?;
        Ok(Opened {
            plaintext: body.to_vec(),
            needs_reseal: index != 0,
        })
    }
}
