//! Signed-only values: HMAC-SHA256, name and purpose bound (S32, S36).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Opened;
use super::envelope::{
    self, HEADER_LEN, MAC_TAG_LEN, SIGNED_V1, associated_data, check_len, header,
};
use super::error::{OpenError, SealError};
use super::key::KeyId;
use super::keyring::{Keyring, Subkeys};

impl Keyring {
    /// Authenticates `payload` for the cookie `name` and the given
    /// `purpose` under the newest key, without encrypting it.
    ///
    /// The result is unpadded base64url of `[0x02][key id][payload][tag]`,
    /// where the tag is the full 32-byte HMAC-SHA256, under the purpose's
    /// signing subkey, of the header, purpose, name and payload. Anyone can
    /// read the payload (base64url-decode and drop the first 5 and last 32
    /// bytes); only the key holder can produce or alter it. Signing is
    /// deterministic: the same input gives the same output.
    ///
    /// ```
    /// use cloakroom::crypto::{Keyring, MasterKey};
    ///
    /// let keyring = Keyring::from(MasterKey::generate());
    /// let signed = keyring.sign("prefs", "theme", b"dark")?;
    /// assert_eq!(keyring.verify("prefs", "theme", &signed)?.plaintext, b"dark");
    /// assert!(keyring.verify("csrf", "theme", &signed).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SealError::TooLarge`] when the output would exceed
    /// [`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN) characters.
    pub fn sign(&self, purpose: &str, name: &str, payload: &[u8]) -> Result<String, SealError> {
        check_len(super::signed_len(payload.len()))?;
        let keys = self.purpose_keys(purpose);
        let header = header(SIGNED_V1, self.newest_key_id());
        let tag = mac(keys.newest(), &header, purpose, name, payload).finalize();
        let mut envelope = Vec::with_capacity(HEADER_LEN + payload.len() + MAC_TAG_LEN);
        envelope.extend_from_slice(&header);
        envelope.extend_from_slice(payload);
        envelope.extend_from_slice(&tag.into_bytes());
        Ok(envelope::encode(&envelope))
    }

    /// Checks a value made by [`Keyring::sign`] for the same cookie `name`
    /// and `purpose`, with whichever listed key signed it, and returns its
    /// payload.
    ///
    /// The tag is compared in constant time (S36).
    /// [`Opened::needs_reseal`] is true when the signing key is not the
    /// newest: sign the payload again. Never panics, whatever the input.
    ///
    /// # Errors
    ///
    /// As [`Keyring::open`]: [`OpenError::TooLarge`],
    /// [`OpenError::Malformed`] (shorter than 37 bytes, or not canonical
    /// unpadded base64url), [`OpenError::UnknownFormat`] (a sealed value
    /// included), [`OpenError::UnknownKey`] and [`OpenError::Rejected`].
    pub fn verify(&self, purpose: &str, name: &str, signed: &str) -> Result<Opened, OpenError> {
        let bytes = envelope::decode(signed)?;
        let (header, rest) = bytes
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(OpenError::Malformed)?;
        let (payload, tag) = rest
            .split_last_chunk::<MAC_TAG_LEN>()
            .ok_or(OpenError::Malformed)?;
        let [format, id @ ..] = *header;
        if format != SIGNED_V1 {
            return Err(OpenError::UnknownFormat);
        }
        let index = self
            .position(KeyId::from_bytes(id))
            .ok_or(OpenError::UnknownKey)?;
        let keys = self.purpose_keys(purpose);
        let subkeys = keys.get(index).ok_or(OpenError::UnknownKey)?;
        // `verify_slice` compares in constant time.
        mac(subkeys, header, purpose, name, payload)
            .verify_slice(tag)
            .map_err(|_| OpenError::Rejected)?;
        Ok(Opened {
            plaintext: payload.to_vec(),
            needs_reseal: index != 0,
        })
    }
}

fn mac(
    subkeys: &Subkeys,
    header: &[u8; HEADER_LEN],
    purpose: &str,
    name: &str,
    payload: &[u8],
) -> Hmac<Sha256> {
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(subkeys.mac.as_slice())
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(&associated_data(header, purpose, name));
    mac.update(payload);
    mac
}
