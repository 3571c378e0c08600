//! F5: access-token decoding (S40-S46) on arbitrary text and on byte edits
//! of valid tokens of each algorithm, with jsonwebtoken as a differential
//! oracle: never a panic; an edited token never verifies (unless the edit
//! left it byte-identical); and whatever we accept, jsonwebtoken accepts
//! under the same key and algorithm.
#![no_main]

use std::sync::OnceLock;

use cloakroom::Timestamp;
use cloakroom::token::{TokenKey, TokenKeys, fuzz_decode, fuzz_sign};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8; 32] = b"fuzzing secret of thirty-two byt";
const NOW: u64 = 1_800_000_000;

struct Case {
    keys: TokenKeys,
    valid: String,
    oracle: DecodingKey,
    alg: Algorithm,
}

fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let claims = serde_json::json!({
            "iss": "i", "aud": "a", "sub": "alice", "iat": NOW, "exp": NOW + 300,
            "jti": "j", "sid": "s", "ep": 1,
        });
        let make = |key: TokenKey, alg: Algorithm| {
            let oracle = match key.public_jwk() {
                Some(jwk) => DecodingKey::from_jwk(&serde_json::from_value(jwk).unwrap()).unwrap(),
                None => DecodingKey::from_secret(SECRET).unwrap(),
            };
            let keys = TokenKeys::new(key);
            let valid = fuzz_sign(&keys, &claims).unwrap();
            Case { keys, valid, oracle, alg }
        };
        vec![
            make(TokenKey::ed25519_from_seed(&[7; 32]), Algorithm::EdDSA),
            make(TokenKey::es256_from_bytes(&[9; 32]).unwrap(), Algorithm::ES256),
            make(TokenKey::hs256(SECRET).unwrap(), Algorithm::HS256),
        ]
    })
}

fn check(case: &Case, token: &str) {
    let now = Timestamp::from_millis(NOW * 1000);
    if fuzz_decode(&case.keys, token, now).is_ok() {
        let mut v = Validation::new(case.alg);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(token, &case.oracle, &v).is_ok(),
            "accepted here, refused by jsonwebtoken: {token:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let case = &cases()[usize::from(selector % 3)];
    if selector & 0x80 == 0 {
        // Arbitrary text as a token.
        if let Ok(text) = std::str::from_utf8(rest) {
            check(case, text);
        }
        return;
    }
    // Byte edits of a valid token: (position, xor) pairs.
    let mut bytes = case.valid.clone().into_bytes();
    for pair in rest.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % bytes.len();
        bytes[at] ^= pair[2];
    }
    let Ok(text) = std::str::from_utf8(&bytes) else { return };
    let now = Timestamp::from_millis(NOW * 1000);
    let accepted = fuzz_decode(&case.keys, text, now).is_ok();
    if text != case.valid {
        assert!(!accepted, "an edited token verified: {text:?}");
    } else {
        assert!(accepted, "the untouched token was refused");
    }
    check(case, text);
});
