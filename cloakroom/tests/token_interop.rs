//! Token sessions against jsonwebtoken 12 (RustCrypto provider, installed
//! explicitly): tokens minted here verify there, and tokens minted there
//! with our keys and claims verify here (issue "Token sessions", item 8).
#![cfg(feature = "jwt")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use cloakroom::crypto::{Keyring, MasterKey};
use cloakroom::store::MemoryStore;
use cloakroom::token::{TokenKey, TokenKeys, TokenSessions};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

const SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];
const SECRET: &[u8; 32] = b"an HS256 secret of thirty-two by";

fn provider() {
    // Never rely on feature auto-detection: install the provider.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

fn sessions(key: TokenKey) -> TokenSessions {
    TokenSessions::new(
        MemoryStore::new(),
        TokenKeys::new(key),
        Keyring::new(vec![MasterKey::generate()]).unwrap(),
    )
    .with_issuer("https://auth.test")
    .with_audience("api.test")
    .with_volatile_store_accepted()
    .build()
    .unwrap()
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.set_issuer(&["https://auth.test"]);
    v.set_audience(&["api.test"]);
    v.required_spec_claims = HashSet::from([
        "exp".into(),
        "iat".into(),
        "iss".into(),
        "aud".into(),
        "sub".into(),
    ]);
    v
}

#[tokio::test]
async fn our_tokens_verify_under_jsonwebtoken() {
    provider();
    let cases = [
        (TokenKey::ed25519_from_seed(&SEED), Algorithm::EdDSA),
        (TokenKey::es256_from_bytes(&SEED).unwrap(), Algorithm::ES256),
        (TokenKey::hs256(SECRET).unwrap(), Algorithm::HS256),
    ];
    for (key, alg) in cases {
        let decoding = match key.public_jwk() {
            Some(jwk) => DecodingKey::from_jwk(&serde_json::from_value(jwk).unwrap()).unwrap(),
            None => DecodingKey::from_secret(SECRET).unwrap(),
        };
        let t = sessions(key);
        let pair = t.issue("alice").await.unwrap();
        let header = jsonwebtoken::decode_header(&pair.access_token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &pair.access_token,
            &decoding,
            &validation(alg),
        )
        .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(data.claims["sub"], "alice");
        assert!(data.claims["sid"].is_string() && data.claims["ep"].is_u64());
    }
}

#[tokio::test]
async fn jsonwebtoken_tokens_with_our_keys_and_claims_verify_here() {
    provider();
    // PKCS #8 v1 wrapping of an Ed25519 seed (RFC 8410): a fixed prefix.
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&SEED);
    let cases = [
        (
            TokenKey::ed25519_from_seed(&SEED),
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(&der),
        ),
        (
            TokenKey::hs256(SECRET).unwrap(),
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET).unwrap(),
        ),
    ];
    for (key, alg, encoding) in cases {
        let kid = key.kid().to_owned();
        let t = sessions(key);
        // Claims of a real sign-in (its epoch and device are on record).
        let pair = t.issue("alice").await.unwrap();
        let claims = t.verify(&pair.access_token).await.unwrap();
        let mut header = Header::new(alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(kid.clone());
        let theirs = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
        let back = t
            .verify(&theirs)
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(back, claims);
        // Their default typ ("JWT") is not an access token.
        let mut plain = Header::new(alg);
        plain.kid = Some(kid);
        let jwt = jsonwebtoken::encode(&plain, &claims, &encoding).unwrap();
        assert!(t.verify(&jwt).await.is_err(), "{alg:?}: typ JWT accepted");
    }
}
