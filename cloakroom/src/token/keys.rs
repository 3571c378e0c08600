//! Access-token signing keys: one algorithm per key (S40), `kid` an RFC
//! 7638 thumbprint, and the key set's states (next, current, retired).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, Verifier as _};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::expiry::Timestamp;

/// Shortest HMAC secret [`TokenKey::hs256`] accepts: 256 bits (S44).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// A JWS algorithm cloakroom signs access tokens with. A key has exactly
/// one; the token header must name it, and never chooses it (S40).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// Ed25519 signatures (`EdDSA`, RFC 8037). The default.
    EdDsa,
    /// ECDSA on P-256 with SHA-256 (`ES256`).
    Es256,
    /// HMAC-SHA256 (`HS256`): one shared secret, so only for a single
    /// service that both issues and verifies.
    Hs256,
}

impl Algorithm {
    /// The JWS `alg` name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Hs256 => "HS256",
        }
    }
}

/// Why a key could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenKeyError {
    /// An HMAC secret shorter than 256 bits (S44).
    #[error("an HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes (256 bits)")]
    WeakSecret,
    /// The bytes are not a key of that kind.
    #[error("invalid {0} key bytes")]
    Invalid(&'static str),
    /// The operating system's random generator failed.
    #[error("the system random generator failed: {0}")]
    Random(String),
}

#[derive(Clone)]
enum Material {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    Es256(Box<p256::ecdsa::SigningKey>),
    Hs256(Zeroizing<Vec<u8>>),
}

/// One access-token signing key with its algorithm and `kid`.
#[derive(Clone)]
pub struct TokenKey {
    kid: String,
    material: Material,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("TokenKey")
            .field("alg", &self.algorithm().name())
            .field("kid", &self.kid)
            .finish()
    }
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, TokenKeyError> {
    let mut b = Zeroizing::new([0u8; N]);
    getrandom::fill(&mut *b).map_err(|e| TokenKeyError::Random(e.to_string()))?;
    Ok(b)
}

impl TokenKey {
    /// A fresh Ed25519 key from the OS random generator.
    ///
    /// # Errors
    ///
    /// [`TokenKeyError::Random`] if the generator fails.
    pub fn generate_ed25519() -> Result<Self, TokenKeyError> {
        Ok(Self::ed25519_from_seed(&*random::<32>()?))
    }

    /// A fresh P-256 key from the OS random generator.
    ///
    /// # Errors
    ///
    /// [`TokenKeyError::Random`] if the generator fails.
    pub fn generate_es256() -> Result<Self, TokenKeyError> {
        // A uniformly random 256-bit string is a valid scalar except with
        // probability about 2^-32; draw again then.
        for _ in 0..8 {
            if let Ok(key) = Self::es256_from_bytes(&*random::<32>()?) {
                return Ok(key);
            }
        }
        Err(TokenKeyError::Random("no valid P-256 scalar drawn".into()))
    }

    /// The Ed25519 key with this 32-byte seed (the RFC 8032 private key).
    #[must_use]
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        let kid = thumbprint(&format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#));
        Self {
            kid,
            material: Material::Ed25519(Box::new(key)),
        }
    }

    /// The P-256 key with this 32-byte big-endian scalar.
    ///
    /// # Errors
    ///
    /// [`TokenKeyError::Invalid`] if the bytes are not a valid scalar.
    pub fn es256_from_bytes(scalar: &[u8]) -> Result<Self, TokenKeyError> {
        let key = p256::ecdsa::SigningKey::from_slice(scalar)
            .map_err(|_| TokenKeyError::Invalid("P-256"))?;
        let (x, y) = ec_coordinates(key.verifying_key());
        let kid = thumbprint(&format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#
        ));
        Ok(Self {
            kid,
            material: Material::Es256(Box::new(key)),
        })
    }

    /// An HS256 key over `secret`, at least 32 bytes (S44). Its `kid` is a
    /// domain-separated hash of the secret, which reveals nothing of it.
    ///
    /// # Errors
    ///
    /// [`TokenKeyError::WeakSecret`] for a shorter secret.
    pub fn hs256(secret: &[u8]) -> Result<Self, TokenKeyError> {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(TokenKeyError::WeakSecret);
        }
        let mut h = Sha256::new();
        h.update(b"cloakroom/hs256-kid/v1\0");
        h.update(secret);
        let kid = format!("hs-{}", URL_SAFE_NO_PAD.encode(&h.finalize()[..12]));
        Ok(Self {
            kid,
            material: Material::Hs256(Zeroizing::new(secret.to_vec())),
        })
    }

    /// The key's one algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        match self.material {
            Material::Ed25519(_) => Algorithm::EdDsa,
            Material::Es256(_) => Algorithm::Es256,
            Material::Hs256(_) => Algorithm::Hs256,
        }
    }

    /// The key's `kid`: the RFC 7638 JWK thumbprint of its public key
    /// (for HS256, a hash of the secret).
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (`kty`, `crv`, `x`, `y`, `kid`, `use`,
    /// `alg`); `None` for HS256, whose secret is never published.
    #[must_use]
    pub fn public_jwk(&self) -> Option<serde_json::Value> {
        let (kty, crv, x, y) = match &self.material {
            Material::Ed25519(k) => (
                "OKP",
                "Ed25519",
                URL_SAFE_NO_PAD.encode(k.verifying_key().as_bytes()),
                None,
            ),
            Material::Es256(k) => {
                let (x, y) = ec_coordinates(k.verifying_key());
                ("EC", "P-256", x, Some(y))
            }
            Material::Hs256(_) => return None,
        };
        let mut jwk = serde_json::json!({
            "kty": kty, "crv": crv, "x": x,
            "kid": self.kid, "use": "sig", "alg": self.algorithm().name(),
        });
        if let (Some(y), Some(map)) = (y, jwk.as_object_mut()) {
            map.insert("y".into(), serde_json::Value::String(y));
        }
        Some(jwk)
    }

    /// The signature of `input` (the JWS signing input).
    pub(crate) fn sign(&self, input: &[u8]) -> Vec<u8> {
        match &self.material {
            Material::Ed25519(k) => k.sign(input).to_bytes().to_vec(),
            Material::Es256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            Material::Hs256(secret) => hs256(secret, input).to_vec(),
        }
    }

    /// Whether `sig` is this key's signature of `input` (constant time for
    /// HS256).
    pub(crate) fn verify(&self, input: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            Material::Ed25519(k) => ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|s| k.verifying_key().verify_strict(input, &s).is_ok()),
            Material::Es256(k) => p256::ecdsa::Signature::from_slice(sig)
                .is_ok_and(|s| k.verifying_key().verify(input, &s).is_ok()),
            Material::Hs256(secret) => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                    return false;
                };
                mac.update(input);
                mac.verify_slice(sig).is_ok()
            }
        }
    }
}

fn hs256(secret: &[u8], input: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(input);
    mac.finalize().into_bytes().into()
}

fn ec_coordinates(key: &p256::ecdsa::VerifyingKey) -> (String, String) {
    let point = key.to_encoded_point(false);
    let coord =
        |c: Option<&p256::FieldBytes>| c.map(|b| URL_SAFE_NO_PAD.encode(b)).unwrap_or_default();
    (coord(point.x()), coord(point.y()))
}

/// RFC 7638: base64url of the SHA-256 of the required members, in
/// lexicographic order, without whitespace.
fn thumbprint(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Where a key is in its life: published before it signs, then the one
/// signer, then published until every token it signed has expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyState {
    /// Published and accepted, not yet signing (other instances may already
    /// sign with it during a rotation).
    Next,
    /// The one key that signs new tokens.
    Current,
    /// No longer signing; accepted until the given time, then refused.
    Retired {
        /// When every token it signed has expired (its retirement time
        /// plus the access-token lifetime and leeway).
        until: Timestamp,
    },
}

/// The access-token keys: exactly one current signer, any number of next
/// and retired keys.
#[derive(Debug, Clone)]
pub struct TokenKeys {
    keys: Vec<(TokenKey, KeyState)>,
}

impl TokenKeys {
    /// A key set whose one signer is `current`.
    #[must_use]
    pub fn new(current: TokenKey) -> Self {
        Self {
            keys: vec![(current, KeyState::Current)],
        }
    }

    /// Adds a published key that does not sign yet.
    #[must_use]
    pub fn with_next(mut self, key: TokenKey) -> Self {
        self.keys.push((key, KeyState::Next));
        self
    }

    /// Adds a key that no longer signs; its tokens verify until `until`.
    #[must_use]
    pub fn with_retired(mut self, key: TokenKey, until: Timestamp) -> Self {
        self.keys.push((key, KeyState::Retired { until }));
        self
    }

    /// The signing key.
    pub(crate) fn current(&self) -> &TokenKey {
        self.keys
            .iter()
            .find(|(_, s)| *s == KeyState::Current)
            .map(|(k, _)| k)
            .unwrap_or_else(|| unreachable!("a key set is built with one current key"))
    }

    /// The key a token's `kid` names, if it may verify at `now` (S41: a
    /// lookup, never a key taken from the token).
    pub(crate) fn verifier(&self, kid: &str, now: Timestamp) -> Option<&TokenKey> {
        self.keys
            .iter()
            .find(|(k, _)| k.kid == kid)
            .filter(|(_, s)| match s {
                KeyState::Retired { until } => now < *until,
                KeyState::Next | KeyState::Current => true,
            })
            .map(|(k, _)| k)
    }

    /// Whether two keys share a `kid` (refused when tokens are configured).
    pub(crate) fn has_duplicate_kids(&self) -> bool {
        let mut kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.kid()).collect();
        kids.sort_unstable();
        kids.windows(2).any(|w| w[0] == w[1])
    }

    /// The JWKS document (RFC 7517) of the asymmetric keys that may verify
    /// at `now`: next, current, and retired ones still in their grace.
    #[must_use]
    pub fn jwks(&self, now: Timestamp) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .filter(|(k, _)| self.verifier(k.kid(), now).is_some())
            .filter_map(|(k, _)| k.public_jwk())
            .collect();
        serde_json::json!({ "keys": keys })
    }
}
