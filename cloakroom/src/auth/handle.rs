//! Device handles: the public name of a session in a "your devices" list.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::crypto::Keyring;
use crate::id::StorageKey;

/// The key-ring purpose device handles are keyed under.
const PURPOSE: &str = "auth/device-handle/v1";

/// The key of the keyed hash that names a session in device listings
/// (S25).
///
/// A handle is `HMAC-SHA256(key, storage key)`, truncated to 128 bits and
/// base64url-encoded (22 characters). It is never usable as a cookie: the
/// cookie holds the session ID, the store holds SHA-256 of the ID, and the
/// handle is a keyed hash of that; none of the three can be computed from
/// the next one along.
///
/// Every process that lists or revokes devices of one deployment (each app
/// instance, the admin CLI) must use the same key, or their handles differ.
/// Derive it from the deployment's key ring with
/// [`from_keyring`](Self::from_keyring). [`HandleKey::default`] is a fixed,
/// public key: handles are still stable and never usable as cookies, but
/// anyone holding a dump of the store can then tell which row a handle
/// names.
#[derive(Clone)]
pub struct HandleKey(Zeroizing<[u8; 32]>);

impl HandleKey {
    /// The handle key of `keyring`'s newest master key (HKDF, its own
    /// purpose). Rotating the newest key changes every handle, which only
    /// matters to a listing shown before the rotation.
    #[must_use]
    pub fn from_keyring(keyring: &Keyring) -> Self {
        Self(keyring.mac_key(PURPOSE))
    }

    /// The handle of the session stored under `key`.
    #[must_use]
    pub fn handle(&self, key: &StorageKey) -> String {
        let mut mac = crate::crypto::hmac_sha256(self.0.as_slice());
        mac.update(b"cloakroom/device/v1\0");
        mac.update(&key.0);
        let tag = mac.finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(&tag[..16])
    }
}

impl Default for HandleKey {
    /// A fixed key, the same in every deployment (see the type's docs).
    fn default() -> Self {
        use sha2::Digest;
        Self(Zeroizing::new(
            Sha256::digest(b"cloakroom public device-handle key v1").into(),
        ))
    }
}

impl fmt::Debug for HandleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandleKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn handles_are_keyed_stable_and_not_the_key() {
        let key = StorageKey([7; 32]);
        let ring = Keyring::from(MasterKey::generate());
        let a = HandleKey::from_keyring(&ring);
        assert_eq!(a.handle(&key), a.handle(&key));
        assert_eq!(a.handle(&key).len(), 22);
        assert_ne!(a.handle(&key), HandleKey::default().handle(&key));
        let other = HandleKey::from_keyring(&Keyring::from(MasterKey::generate()));
        assert_ne!(a.handle(&key), other.handle(&key));
        assert!(!key.to_hex().contains(&a.handle(&key)));
        assert_ne!(a.handle(&key), a.handle(&StorageKey([8; 32])));
    }
}
