//! Attacks on access-token decoding (S40-S46), with tokens forged by hand.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::claims::{AccessClaims, Audience, Expect, NoClaims};
use super::error::Rejection;
use super::jws::{self, MAX_TOKEN_BYTES};
use super::keys::{TokenKey, TokenKeyError, TokenKeys};
use crate::expiry::Timestamp;

const NOW: u64 = 1_800_000_000;

fn now() -> Timestamp {
    Timestamp::from_millis(NOW * 1000)
}

fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": "https://issuer", "aud": "api", "sub": "alice",
        "iat": NOW, "exp": NOW + 300, "jti": "j1", "sid": "s1", "ep": 7,
    })
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A token with the given header and claims, signed by `key` whatever the
/// header says.
fn forge(key: &TokenKey, header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn header(key: &TokenKey) -> serde_json::Value {
    serde_json::json!({"alg": key.algorithm().name(), "typ": "at+jwt", "kid": key.kid()})
}

fn decode(keys: &TokenKeys, token: &str) -> Result<AccessClaims<NoClaims>, Rejection> {
    let payload = jws::verify(keys, token, now())?;
    let c: AccessClaims<NoClaims> =
        jws::from_json_once(&payload).map_err(|_| Rejection::BadClaims)?;
    c.check(&Expect {
        issuer: "https://issuer",
        audience: "api",
        leeway_secs: 30,
        now_secs: NOW,
    })?;
    Ok(c)
}

fn ed() -> TokenKey {
    TokenKey::ed25519_from_seed(&[7; 32])
}

#[test]
fn a_well_formed_token_of_each_algorithm_verifies() {
    for key in [
        ed(),
        TokenKey::es256_from_bytes(&[9; 32]).unwrap(),
        TokenKey::hs256(&[1; 32]).unwrap(),
    ] {
        let t = forge(&key, &header(&key), &claims());
        let keys = TokenKeys::new(key);
        assert_eq!(decode(&keys, &t).unwrap().sub, "alice");
    }
}

#[test]
fn s40_none_and_algorithm_confusion_are_refused() {
    let key = ed();
    let keys = TokenKeys::new(ed());
    for alg in ["none", "NONE", "None", "HS256", "ES256", "eddsa"] {
        let mut h = header(&key);
        h["alg"] = alg.into();
        let t = forge(&key, &h, &claims());
        assert_eq!(decode(&keys, &t), Err(Rejection::WrongAlgorithm), "{alg}");
    }
    // HS256 "signed" with the Ed25519 public key as the HMAC secret.
    let public = URL_SAFE_NO_PAD
        .decode(key.public_jwk().unwrap()["x"].as_str().unwrap())
        .unwrap();
    let mut h = header(&key);
    h["alg"] = "HS256".into();
    let input = format!("{}.{}", b64(&h), b64(&claims()));
    let mut mac = Hmac::<Sha256>::new_from_slice(&public).unwrap();
    mac.update(input.as_bytes());
    let t = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(decode(&keys, &t), Err(Rejection::WrongAlgorithm));
    // An unsigned token.
    let mut h = header(&key);
    h["alg"] = "none".into();
    let t = format!("{}.{}.", b64(&h), b64(&claims()));
    assert!(decode(&keys, &t).is_err());
}

#[test]
fn s41_unknown_or_injected_keys_and_key_headers_are_refused() {
    let key = ed();
    let keys = TokenKeys::new(ed());
    let attacker = TokenKey::ed25519_from_seed(&[8; 32]);
    // Signed by another key that names itself.
    let t = forge(&attacker, &header(&attacker), &claims());
    assert_eq!(decode(&keys, &t), Err(Rejection::UnknownKey));
    // Another key's signature under our kid.
    let t = forge(&attacker, &header(&key), &claims());
    assert_eq!(decode(&keys, &t), Err(Rejection::BadSignature));
    // Injected kids.
    for kid in ["../../etc/passwd", "' OR 1=1 --", "", "\u{0}"] {
        let mut h = header(&key);
        h["kid"] = kid.into();
        assert_eq!(
            decode(&keys, &forge(&key, &h, &claims())),
            Err(Rejection::UnknownKey)
        );
    }
    // Key-carrying and extension headers, even alongside a valid kid.
    for (name, value) in [
        ("jwk", attacker.public_jwk().unwrap()),
        ("jku", "https://evil.example/jwks.json".into()),
        ("x5u", "https://evil.example/cert".into()),
        ("x5c", serde_json::json!(["MIIB"])),
        ("crit", serde_json::json!(["exp"])),
        ("zip", "DEF".into()),
        ("cty", "JWT".into()),
    ] {
        let mut h = header(&key);
        h[name] = value;
        assert_eq!(
            decode(&keys, &forge(&key, &h, &claims())),
            Err(Rejection::BadHeader),
            "{name}"
        );
    }
    // A kid given as a number, or missing.
    let mut h = header(&key);
    h["kid"] = 5.into();
    assert_eq!(
        decode(&keys, &forge(&key, &h, &claims())),
        Err(Rejection::BadHeader)
    );
    let h = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt"});
    assert_eq!(
        decode(&keys, &forge(&key, &h, &claims())),
        Err(Rejection::BadHeader)
    );
}

#[test]
fn s42_claims_are_typed_required_unique_and_checked() {
    let key = ed();
    let keys = TokenKeys::new(ed());
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims();
        f(&mut c);
        decode(&keys, &forge(&key, &header(&key), &c))
    };
    // The jsonwebtoken CVE-2026-25537 class: a time claim of the wrong type.
    assert_eq!(
        with(&|c| c["exp"] = "9999999999".into()),
        Err(Rejection::BadClaims)
    );
    assert_eq!(
        with(&|c| c["exp"] = (NOW as f64 + 0.5).into()),
        Err(Rejection::BadClaims)
    );
    assert_eq!(with(&|c| c["nbf"] = "0".into()), Err(Rejection::BadClaims));
    assert_eq!(with(&|c| c["ep"] = "7".into()), Err(Rejection::BadClaims));
    for required in ["exp", "iat", "iss", "aud", "sub", "jti", "sid", "ep"] {
        assert_eq!(
            with(&|c| {
                c.as_object_mut().unwrap().remove(required);
            }),
            Err(Rejection::BadClaims),
            "{required}"
        );
    }
    assert_eq!(
        with(&|c| c["exp"] = (NOW - 31).into()),
        Err(Rejection::Expired)
    );
    let recent = |exp: u64| {
        move |c: &mut serde_json::Value| {
            c["iat"] = (NOW - 300).into();
            c["exp"] = exp.into();
        }
    };
    assert!(with(&recent(NOW - 29)).is_ok(), "within the leeway");
    assert_eq!(with(&recent(NOW - 31)), Err(Rejection::Expired));
    assert_eq!(
        with(&|c| c["iat"] = (NOW + 31).into()),
        Err(Rejection::NotYetValid)
    );
    assert_eq!(
        with(&|c| c["nbf"] = (NOW + 31).into()),
        Err(Rejection::NotYetValid)
    );
    assert_eq!(
        with(&|c| c["iss"] = "https://evil".into()),
        Err(Rejection::WrongAudience)
    );
    assert_eq!(
        with(&|c| c["aud"] = "other-api".into()),
        Err(Rejection::WrongAudience)
    );
    assert!(with(&|c| c["aud"] = serde_json::json!(["x", "api"])).is_ok());
    // Wrong typ.
    for typ in ["JWT", "jwt", "at+jwt2", ""] {
        let mut h = header(&key);
        h["typ"] = typ.into();
        assert_eq!(
            decode(&keys, &forge(&key, &h, &claims())),
            Err(Rejection::WrongType),
            "{typ}"
        );
    }
    // Duplicate claims: the payload is written by hand (JSON maps keep one).
    let payload = format!(
        r#"{{"iss":"https://issuer","aud":"api","sub":"alice","iat":{NOW},"exp":{},"exp":{},"jti":"j","sid":"s","ep":7}}"#,
        NOW + 300,
        NOW + 99_999
    );
    let input = format!("{}.{}", b64(&header(&key)), URL_SAFE_NO_PAD.encode(payload));
    let t = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()))
    );
    assert_eq!(decode(&keys, &t), Err(Rejection::BadClaims));
    // A duplicate header member.
    let h = format!(
        r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{}","kid":"x"}}"#,
        key.kid()
    );
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(h), b64(&claims()));
    let t = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()))
    );
    assert_eq!(decode(&keys, &t), Err(Rejection::BadHeader));
}

#[test]
fn s43_the_signature_is_checked_before_the_claims() {
    let key = ed();
    let keys = TokenKeys::new(ed());
    let good = forge(&key, &header(&key), &claims());
    // Swap in other (even malformed) claims: a signature failure, not a
    // claims error, is what the verifier reports.
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode("not json"),
        parts[2]
    );
    assert_eq!(decode(&keys, &forged), Err(Rejection::BadSignature));
}

#[test]
fn s44_short_hmac_secrets_are_refused() {
    assert_eq!(
        TokenKey::hs256(&[1; 31]).unwrap_err(),
        TokenKeyError::WeakSecret
    );
    assert!(TokenKey::hs256(&[1; 32]).is_ok());
}

#[test]
fn s46_compact_parsing_is_strict_and_bounded() {
    let key = ed();
    let keys = TokenKeys::new(ed());
    let good = forge(&key, &header(&key), &claims());
    for bad in [
        format!("{good}."),
        format!("{good}.x"),
        format!("{good} "),
        format!(" {good}"),
        format!("{good}="),
        good.replacen('.', "..", 1),
        good.replace('-', "+"),
        "a.b".to_owned(),
        String::new(),
    ] {
        assert!(decode(&keys, &bad).is_err(), "{bad:?}");
    }
    let huge = format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES));
    assert_eq!(decode(&keys, &huge), Err(Rejection::TooLarge));
    // Non-canonical base64 (trailing bits set) in the signature.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let last = parts[2].pop().unwrap();
    let bumped = if last == 'A' { 'B' } else { 'A' };
    parts[2].push(bumped);
    assert!(decode(&keys, &parts.join(".")).is_err());
}

#[test]
fn retired_keys_verify_until_their_grace_ends() {
    let old = ed();
    let new = TokenKey::ed25519_from_seed(&[3; 32]);
    let t = forge(&old, &header(&old), &claims());
    let keys =
        TokenKeys::new(new).with_retired(ed(), now().saturating_add(Duration::from_secs(60)));
    assert!(decode(&keys, &t).is_ok());
    let keys = TokenKeys::new(TokenKey::ed25519_from_seed(&[3; 32])).with_retired(ed(), now());
    assert_eq!(decode(&keys, &t), Err(Rejection::UnknownKey));
}

#[test]
fn jwks_lists_public_keys_by_rfc7638_thumbprint() {
    // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
    let seed: [u8; 32] = URL_SAFE_NO_PAD
        .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
        .unwrap()
        .try_into()
        .unwrap();
    let key = TokenKey::ed25519_from_seed(&seed);
    assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    let jwk = key.public_jwk().unwrap();
    assert_eq!(jwk["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    assert_eq!(
        (
            jwk["kty"].as_str(),
            jwk["alg"].as_str(),
            jwk["use"].as_str()
        ),
        (Some("OKP"), Some("EdDSA"), Some("sig"))
    );
    let hs = TokenKey::hs256(&[5; 32]).unwrap();
    assert!(
        hs.public_jwk().is_none(),
        "an HMAC secret is never published"
    );
    let keys = TokenKeys::new(key)
        .with_next(TokenKey::es256_from_bytes(&[9; 32]).unwrap())
        .with_retired(hs, now().saturating_add(Duration::from_secs(5)))
        .with_retired(TokenKey::ed25519_from_seed(&[4; 32]), now());
    let doc = keys.jwks(now());
    let kids: Vec<&str> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids.len(),
        2,
        "current and next; HS256 unpublished; expired retiree gone: {kids:?}"
    );
}

#[test]
fn audience_lists_and_claim_round_trip() {
    let c: AccessClaims = serde_json::from_value(claims()).unwrap();
    assert_eq!(c.aud, Audience::One("api".into()));
    assert_eq!(serde_json::to_value(&c).unwrap(), claims());
}
