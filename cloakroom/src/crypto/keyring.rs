//! The key ring: master keys newest first, and their per-purpose subkeys.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::key::{KeyError, KeyId, MasterKey};
use super::{KEYS_ENV, MAX_KEYS};

/// HKDF salt: fixed per wire-format generation, so that a future format
/// derives unrelated subkeys from the same master keys.
const HKDF_SALT: &[u8] = b"cloakroom/crypto/v1";
/// HKDF info labels, one per mode: a sealing key is never a MAC key.
const SEAL_LABEL: &[u8] = b"cloakroom seal xchacha20poly1305";
const SIGN_LABEL: &[u8] = b"cloakroom sign hmac-sha256";
/// Purposes whose subkeys are kept. Purposes are code constants, so a real
/// application has a handful; the cap only stops a caller that passes
/// request data as the purpose from growing the cache without bound.
/// Beyond it, subkeys are derived per call (correct, just slower).
const MAX_CACHED_PURPOSES: usize = 64;

/// An ordered list of master keys, newest first, with their per-purpose
/// subkeys.
///
/// The newest key seals and signs; every listed key opens and verifies, so
/// a key is rotated by listing a new one first and dropping the old one
/// once no live cookie uses it (S35). Cloning is cheap and shares the
/// subkey cache.
///
/// Subkeys are derived with HKDF-SHA256 (salt `"cloakroom/crypto/v1"`, info
/// = mode label, `0x00`, key id, purpose) the first time a purpose is used,
/// then cached (up to 64 purposes): requests never run HKDF.
///
/// ```
/// use cloakroom::crypto::{Keyring, MasterKey};
///
/// let old = MasterKey::generate();
/// let new = MasterKey::generate();
/// let config = format!("{}, {}", new.to_base64url(), old.to_base64url());
/// let keyring = Keyring::parse(&config)?;
/// assert_eq!(keyring.newest_key_id(), new.id());
/// # Ok::<(), cloakroom::crypto::KeyError>(())
/// ```
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

struct Inner {
    /// Split from the older keys so that "the newest key" needs no
    /// fallback: a key ring is never empty.
    newest: MasterKey,
    older: Vec<MasterKey>,
    subkeys: RwLock<HashMap<Box<str>, Arc<PurposeKeys>>>,
}

/// The subkeys of one purpose, one entry per master key, same order.
pub(super) struct PurposeKeys {
    newest: Subkeys,
    older: Vec<Subkeys>,
}

/// The subkeys one master key yields for one purpose.
pub(super) struct Subkeys {
    /// Zeroizes its key on drop.
    pub(super) aead: XChaCha20Poly1305,
    pub(super) mac: Zeroizing<[u8; 32]>,
}

impl PurposeKeys {
    fn derive(inner: &Inner, purpose: &str) -> Self {
        Self {
            newest: Subkeys::derive(&inner.newest, purpose),
            older: inner
                .older
                .iter()
                .map(|key| Subkeys::derive(key, purpose))
                .collect(),
        }
    }

    /// The subkeys of the newest master key, which seals and signs.
    pub(super) fn newest(&self) -> &Subkeys {
        &self.newest
    }

    /// The subkeys of the master key at `index` (0 is the newest).
    pub(super) fn get(&self, index: usize) -> Option<&Subkeys> {
        match index.checked_sub(1) {
            None => Some(&self.newest),
            Some(older) => self.older.get(older),
        }
    }
}

impl Subkeys {
    fn derive(key: &MasterKey, purpose: &str) -> Self {
        let seal = derive(key, SEAL_LABEL, purpose);
        Self {
            aead: XChaCha20Poly1305::new((&*seal).into()),
            mac: derive(key, SIGN_LABEL, purpose),
        }
    }
}

fn derive(key: &MasterKey, label: &[u8], purpose: &str) -> Zeroizing<[u8; 32]> {
    let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), key.expose_secret());
    // The label holds no 0x00 and the key id has a fixed length, so the
    // purpose (the remainder) is unambiguous.
    let id = key.id().to_bytes();
    let info = [label, &[0u8], &id, purpose.as_bytes()];
    let mut okm = Zeroizing::new([0u8; 32]);
    #[allow(clippy::expect_used)]
    hkdf.expand_multi_info(&info, okm.as_mut_slice())
        .expect("32 bytes is within HKDF-SHA256's 8160-byte limit");
    okm
}

impl Keyring {
    /// Builds a key ring from master keys, newest first.
    ///
    /// # Errors
    ///
    /// [`KeyError::NoKeys`] for an empty list, [`KeyError::TooManyKeys`]
    /// beyond [`MAX_KEYS`], [`KeyError::Duplicate`] when a key is listed
    /// twice and [`KeyError::KeyIdCollision`] when two keys share a
    /// [`KeyId`].
    pub fn new(keys: Vec<MasterKey>) -> Result<Self, KeyError> {
        if keys.len() > MAX_KEYS {
            return Err(KeyError::TooManyKeys);
        }
        for (i, a) in keys.iter().enumerate() {
            for (j, b) in keys.iter().enumerate().skip(i + 1) {
                let (first, second) = (i + 1, j + 1);
                if a == b {
                    return Err(KeyError::Duplicate { first, second });
                }
                // Opening looks a key up by id, so ids must be unique.
                if a.id() == b.id() {
                    return Err(KeyError::KeyIdCollision { first, second });
                }
            }
        }
        let mut keys = keys.into_iter();
        let newest = keys.next().ok_or(KeyError::NoKeys)?;
        Ok(Self::from_parts(newest, keys.collect()))
    }

    fn from_parts(newest: MasterKey, older: Vec<MasterKey>) -> Self {
        Self {
            inner: Arc::new(Inner {
                newest,
                older,
                subkeys: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Parses the configuration format: base64url keys separated by commas,
    /// newest first, whitespace around each key ignored. This is what
    /// `CLOAKROOM_KEYS` and `--keys` hold.
    ///
    /// # Errors
    ///
    /// [`KeyError::NoKeys`] for blank text, [`KeyError::TooManyKeys`], and
    /// [`KeyError::InList`] naming the 1-based position of the first entry
    /// refused by [`MasterKey::from_base64url`] (an empty entry, from a
    /// stray comma, is [`KeyError::Empty`]); then every refusal of
    /// [`Keyring::new`].
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.trim().is_empty() {
            return Err(KeyError::NoKeys);
        }
        // Count before decoding, so a huge list costs one scan.
        if text.split(',').nth(MAX_KEYS).is_some() {
            return Err(KeyError::TooManyKeys);
        }
        let keys = text
            .split(',')
            .enumerate()
            .map(|(i, entry)| {
                MasterKey::from_base64url(entry).map_err(|reason| KeyError::InList {
                    position: i + 1,
                    reason: Box::new(reason),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// Reads the key list from the `CLOAKROOM_KEYS` environment variable
    /// (format of [`Keyring::parse`]).
    ///
    /// # Errors
    ///
    /// [`KeyError::EnvNotSet`], [`KeyError::EnvNotUnicode`], and every
    /// refusal of [`Keyring::parse`].
    pub fn from_env() -> Result<Self, KeyError> {
        Self::from_env_value(std::env::var_os(KEYS_ENV))
    }

    fn from_env_value(value: Option<OsString>) -> Result<Self, KeyError> {
        let value = value.ok_or(KeyError::EnvNotSet)?;
        let text = Zeroizing::new(value.into_string().map_err(|_| KeyError::EnvNotUnicode)?);
        Self::parse(&text)
    }

    /// The id of the key that seals and signs.
    #[must_use]
    pub fn newest_key_id(&self) -> KeyId {
        self.inner.newest.id()
    }

    /// The ids of all keys, newest first.
    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        std::iter::once(&self.inner.newest)
            .chain(&self.inner.older)
            .map(MasterKey::id)
    }

    /// The position (0 = newest) of the key with this id. Key ids are
    /// public, so a variable-time search reveals nothing.
    pub(super) fn position(&self, id: KeyId) -> Option<usize> {
        self.key_ids().position(|candidate| candidate == id)
    }

    /// The newest master key's MAC subkey for `purpose`: for keyed hashes
    /// that must stay stable while a deployment runs (device handles).
    pub(crate) fn mac_key(&self, purpose: &str) -> zeroize::Zeroizing<[u8; 32]> {
        self.purpose_keys(purpose).newest().mac.clone()
    }

    /// The subkeys of `purpose`, derived on first use and then cached.
    pub(super) fn purpose_keys(&self, purpose: &str) -> Arc<PurposeKeys> {
        // The cache only ever gains complete entries, so a panic elsewhere
        // while a lock was held leaves it consistent: ignore poisoning.
        if let Some(found) = self
            .inner
            .subkeys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(purpose)
        {
            return Arc::clone(found);
        }
        let derived = Arc::new(PurposeKeys::derive(&self.inner, purpose));
        let mut cache = self
            .inner
            .subkeys
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = cache.get(purpose) {
            return Arc::clone(found);
        }
        if cache.len() < MAX_CACHED_PURPOSES {
            cache.insert(purpose.into(), Arc::clone(&derived));
        }
        derived
    }
}

impl From<MasterKey> for Keyring {
    /// A key ring of one key (nothing to rotate from yet).
    fn from(key: MasterKey) -> Self {
        Self::from_parts(key, Vec::new())
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<MasterKey> {
        (0..n).map(|_| MasterKey::generate()).collect()
    }

    #[test]
    fn new_refuses_empty_duplicate_and_too_many() {
        assert_eq!(Keyring::new(vec![]).unwrap_err(), KeyError::NoKeys);
        let k = keys(2);
        let dup = vec![k[0].clone(), k[1].clone(), k[0].clone()];
        assert_eq!(
            Keyring::new(dup).unwrap_err(),
            KeyError::Duplicate {
                first: 1,
                second: 3
            }
        );
        assert!(Keyring::new(keys(MAX_KEYS)).is_ok());
        assert_eq!(
            Keyring::new(keys(MAX_KEYS + 1)).unwrap_err(),
            KeyError::TooManyKeys
        );
    }

    #[test]
    fn parse_trims_and_keeps_order() {
        let k = keys(3);
        let text = format!(
            "  {} ,\n{},\t{}  ",
            k[0].to_base64url(),
            k[1].to_base64url(),
            k[2].to_base64url()
        );
        let ring = Keyring::parse(&text).unwrap();
        let ids: Vec<_> = ring.key_ids().collect();
        assert_eq!(ids, k.iter().map(MasterKey::id).collect::<Vec<_>>());
        assert_eq!(ring.newest_key_id(), k[0].id());
    }

    #[test]
    fn parse_names_the_bad_entry() {
        let good = MasterKey::generate().to_base64url();
        assert_eq!(Keyring::parse(" \n ").unwrap_err(), KeyError::NoKeys);
        assert_eq!(
            Keyring::parse(&format!("{good},")).unwrap_err(),
            KeyError::InList {
                position: 2,
                reason: Box::new(KeyError::Empty)
            }
        );
        let err = Keyring::parse(&format!("{good},c2hvcnQ")).unwrap_err();
        assert_eq!(
            err,
            KeyError::InList {
                position: 2,
                reason: Box::new(KeyError::TooShort(5))
            }
        );
        assert!(err.to_string().starts_with("key #2 in the list: "));
        assert!(!err.to_string().contains(&good));
        assert_eq!(
            Keyring::parse(&format!("{good},{good}")).unwrap_err(),
            KeyError::Duplicate {
                first: 1,
                second: 2
            }
        );
        assert_eq!(
            Keyring::parse(&",".repeat(100_000)).unwrap_err(),
            KeyError::TooManyKeys
        );
    }

    #[test]
    fn env_value() {
        assert_eq!(
            Keyring::from_env_value(None).unwrap_err(),
            KeyError::EnvNotSet
        );
        assert!(KeyError::EnvNotSet.to_string().contains("CLOAKROOM_KEYS"));
        let key = MasterKey::generate();
        let ring = Keyring::from_env_value(Some(key.to_base64url().into())).unwrap();
        assert_eq!(ring.newest_key_id(), key.id());
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let bad = OsString::from_vec(vec![0xff, 0xfe]);
            assert_eq!(
                Keyring::from_env_value(Some(bad)).unwrap_err(),
                KeyError::EnvNotUnicode
            );
        }
    }

    #[test]
    fn subkeys_are_cached_per_purpose_and_bounded() {
        let ring = Keyring::new(keys(2)).unwrap();
        let a = ring.purpose_keys("session");
        let b = ring.clone().purpose_keys("session");
        assert!(
            Arc::ptr_eq(&a, &b),
            "one derivation per purpose, shared by clones"
        );
        for i in 0..MAX_CACHED_PURPOSES * 2 {
            let _ = ring.purpose_keys(&format!("p{i}"));
        }
        let cached = ring.inner.subkeys.read().unwrap().len();
        assert_eq!(cached, MAX_CACHED_PURPOSES);
        let late = ring.purpose_keys("not cached");
        assert!(late.get(1).is_some() && late.get(2).is_none());
    }

    #[test]
    fn subkeys_differ_by_purpose_mode_and_key() {
        let k = keys(2);
        let a = derive(&k[0], SEAL_LABEL, "session");
        assert_ne!(*a, *derive(&k[0], SIGN_LABEL, "session"));
        assert_ne!(*a, *derive(&k[0], SEAL_LABEL, "csrf"));
        assert_ne!(*a, *derive(&k[1], SEAL_LABEL, "session"));
        assert_eq!(*a, *derive(&k[0], SEAL_LABEL, "session"));
    }

    #[test]
    fn debug_prints_ids_only() {
        let key = MasterKey::generate();
        let ring = Keyring::from(key.clone());
        let debug = format!("{ring:?}");
        assert!(debug.contains(&key.id().to_string()));
        assert!(!debug.contains(&key.to_base64url()));
    }
}
