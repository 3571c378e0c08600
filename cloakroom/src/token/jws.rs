//! JWS compact serialization, strictly (RFC 7515, RFC 8725): at most
//! 8 KiB, three canonical base64url parts, a header of `alg`, `typ` and
//! `kid` only, the signature checked before the claims are read (S43, S46).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::error::Rejection;
use super::keys::{TokenKey, TokenKeys};
use crate::expiry::Timestamp;

/// Largest token accepted, checked before anything is decoded (S46).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The `typ` of an access token (RFC 9068).
pub(crate) const ACCESS_TYP: &str = "at+jwt";

/// The protected header: every member cloakroom understands. Anything else
/// (`jku`, `jwk`, `x5u`, `x5c`, `crit`, `zip`, ...) is refused (S41, S42,
/// S46): no legitimate token of ours carries it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

/// Signs `claims` under the key set's current key.
///
/// # Errors
///
/// A claims value that does not serialize.
pub(crate) fn sign<C: Serialize>(
    keys: &TokenKeys,
    claims: &C,
) -> Result<String, serde_json::Error> {
    let key = keys.current();
    let header = Header {
        alg: key.algorithm().name().to_owned(),
        typ: ACCESS_TYP.to_owned(),
        kid: key.kid().to_owned(),
    };
    let mut out = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?));
    let sig = key.sign(out.as_bytes());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(out)
}

/// The payload of `token` once its header is acceptable and its signature
/// verifies under the key its `kid` names (the claims are not read yet).
///
/// # Errors
///
/// The [`Rejection`] saying what is wrong.
pub(crate) fn verify(keys: &TokenKeys, token: &str, now: Timestamp) -> Result<Vec<u8>, Rejection> {
    verify_naming_key(keys, token, now).map(|(payload, _)| payload)
}

/// [`verify`], also giving the `kid` that verified it.
fn verify_naming_key(
    keys: &TokenKeys,
    token: &str,
    now: Timestamp,
) -> Result<(Vec<u8>, String), Rejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed("not three dot-separated parts"));
    };
    let header_json = decode_part(h)?;
    let header: Header = from_json_once(&header_json).map_err(|_| Rejection::BadHeader)?;
    if !header.typ.eq_ignore_ascii_case(ACCESS_TYP)
        && !header.typ.eq_ignore_ascii_case("application/at+jwt")
    {
        return Err(Rejection::WrongType);
    }
    let key: &TokenKey = keys
        .verifier(&header.kid, now)
        .ok_or(Rejection::UnknownKey)?;
    // The key fixes the algorithm; the header must agree (S40): `none`,
    // `NONE` or HS256 over a public key never reach a verifier.
    if header.alg != key.algorithm().name() {
        return Err(Rejection::WrongAlgorithm);
    }
    let sig = decode_part(s)?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    if !key.verify(signing_input.as_bytes(), &sig) {
        return Err(Rejection::BadSignature);
    }
    Ok((decode_part(p)?, header.kid))
}

/// Most tokens [`Verified`] remembers; when full it starts over.
const MAX_VERIFIED: usize = 8192;

/// Tokens whose signature verified recently, by their exact text. A token
/// presented again skips the signature check (its bytes are the very ones
/// that verified); its key is still looked up (a retired key's tokens stop
/// at the end of its grace), and its claims are read and checked as on the
/// first use. Bounded; nothing enters that did not verify.
#[derive(Default)]
pub(crate) struct Verified {
    map: std::sync::Mutex<std::collections::HashMap<Box<str>, Remembered>>,
}

/// What a verified token left: the `kid` that verified it and its payload.
type Remembered = (Box<str>, Vec<u8>);

impl Verified {
    /// The payload of `token`, verified now or recently.
    ///
    /// # Errors
    ///
    /// The [`Rejection`], as [`verify`].
    pub(crate) fn verify(
        &self,
        keys: &TokenKeys,
        token: &str,
        now: Timestamp,
    ) -> Result<Vec<u8>, Rejection> {
        let lock = || {
            self.map
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some((kid, payload)) = lock().get(token) {
            if keys.verifier(kid, now).is_none() {
                return Err(Rejection::UnknownKey);
            }
            return Ok(payload.clone());
        }
        let (payload, kid) = verify_naming_key(keys, token, now)?;
        let mut map = lock();
        if map.len() >= MAX_VERIFIED {
            map.clear();
        }
        map.insert(token.into(), (kid.into(), payload.clone()));
        Ok(payload)
    }
}

fn decode_part(part: &str) -> Result<Vec<u8>, Rejection> {
    if part.is_empty() {
        return Err(Rejection::Malformed("an empty part"));
    }
    // The engine refuses padding, characters outside the URL-safe
    // alphabet and non-canonical trailing bits.
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Malformed("a part that is not canonical base64url"))
}

/// Deserializes a JSON object after checking that no member name appears
/// twice at its top level (serde_json would keep the last one silently;
/// S42's duplicate claims).
pub(crate) fn from_json_once<T: serde::de::DeserializeOwned>(
    json: &[u8],
) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    de::Deserializer::deserialize_map(&mut de, UniqueMembers)?;
    de.end()?;
    serde_json::from_slice(json)
}

struct UniqueMembers;

impl<'de> Visitor<'de> for UniqueMembers {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object with unique member names")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name) {
                return Err(de::Error::custom("duplicate member"));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}
