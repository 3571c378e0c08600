//! Refresh tokens: opaque, prefixed, signed handles of a family record kept
//! in the store under the SHA-256 of the family's random ID (like session
//! IDs, S6). Every use rotates the family to its next generation under
//! compare-and-swap; presenting an older generation revokes the family
//! (reuse detection), except that within the grace the immediately
//! previous token gets the very same successor (refresh tokens are a
//! deterministic function of family and generation), so retries and
//! concurrent tabs converge instead of logging the user out.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::crypto::Keyring;
use crate::id::StorageKey;
use crate::record::Record;

/// What every refresh token starts with, so secret scanners can spot one.
pub const REFRESH_TOKEN_PREFIX: &str = "cloakroom_rt_";

/// The key-ring purpose refresh tokens are signed under.
const PURPOSE: &str = "token/refresh/v1";

/// A family's random ID (256 bits).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct FamilyId(pub(crate) [u8; 32]);

impl FamilyId {
    pub(crate) fn generate() -> Result<Self, getrandom::Error> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b)?;
        Ok(Self(b))
    }

    /// Where the family record lives: a hash, so a store dump holds no
    /// usable token (S6).
    pub(crate) fn storage_key(&self) -> StorageKey {
        let mut h = Sha256::new();
        h.update(b"cloakroom/refresh-family/v1\0");
        h.update(self.0);
        StorageKey(h.finalize().into())
    }

    /// The device's public handle (`sid`): another hash, never usable as a
    /// refresh token and not the storage key.
    pub(crate) fn sid(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"cloakroom/sid/v1\0");
        h.update(self.0);
        URL_SAFE_NO_PAD.encode(&h.finalize()[..16])
    }
}

/// The refresh token of `family` at `generation`.
///
/// # Errors
///
/// The key ring's failure (never for this small payload).
pub(crate) fn token(
    keys: &Keyring,
    family: &FamilyId,
    generation: u64,
) -> Result<String, crate::crypto::SealError> {
    let mut payload = [0u8; 40];
    payload[..32].copy_from_slice(&family.0);
    payload[32..].copy_from_slice(&generation.to_be_bytes());
    let signed = keys.sign(PURPOSE, REFRESH_TOKEN_PREFIX, &payload)?;
    Ok(format!("{REFRESH_TOKEN_PREFIX}{signed}"))
}

/// The family and generation a refresh token names, if it is one of ours.
pub(crate) fn parse(keys: &Keyring, token: &str) -> Option<(FamilyId, u64)> {
    let signed = token.strip_prefix(REFRESH_TOKEN_PREFIX)?;
    if signed.len() > 256 {
        return None;
    }
    let opened = keys.verify(PURPOSE, REFRESH_TOKEN_PREFIX, signed).ok()?;
    let p = &opened.plaintext;
    if p.len() != 40 {
        return None;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&p[..32]);
    let mut g = [0u8; 8];
    g.copy_from_slice(&p[32..]);
    Some((FamilyId(id), u64::from_be_bytes(g)))
}

/// The family state kept in its record's data.
pub(crate) struct Family {
    /// The current generation: the one token that rotates.
    pub(crate) generation: u64,
    /// When the current generation was issued (ms): the grace runs from it.
    pub(crate) rotated_at: u64,
    /// The device's public handle.
    pub(crate) sid: String,
    /// The application's claims (JSON), carried to every access token.
    pub(crate) claims: Vec<u8>,
}

/// Marks a record as a token family (for device lists).
pub(crate) const KIND: &str = "token";

impl Family {
    pub(crate) fn read(r: &Record) -> Option<Self> {
        if r.get::<String>("kind").ok()?.as_deref() != Some(KIND) {
            return None;
        }
        Some(Self {
            generation: r.get("gen").ok()??,
            rotated_at: r.get("rotated_at").ok()??,
            sid: r.get("sid").ok()??,
            claims: r.get::<serde_bytes_vec::Bytes>("claims").ok()??.0,
        })
    }

    pub(crate) fn write(&self, r: &mut Record) -> Result<(), crate::record::EncodeError> {
        r.insert("kind", KIND)?;
        r.insert("gen", &self.generation)?;
        r.insert("rotated_at", &self.rotated_at)?;
        r.insert("sid", &self.sid)?;
        r.insert("claims", &serde_bytes_vec::Bytes(self.claims.clone()))
    }
}

/// Claims bytes stored compactly (MessagePack bin, not an array of ints).
mod serde_bytes_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) struct Bytes(pub(crate) Vec<u8>);

    impl Serialize for Bytes {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Bytes;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                    Ok(Bytes(v))
                }
            }
            d.deserialize_bytes(V)
        }
    }
}
