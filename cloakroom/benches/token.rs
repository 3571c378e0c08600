//! Access-token verification: cloakroom's verify (stateless part, and the
//! whole `TokenSessions::verify` with a fresh revocation cache) next to
//! jsonwebtoken 12's decode of the very same token, EdDSA and HS256, in
//! one run.
//!
//! Run with:
//!
//! ```text
//! cargo bench -p cloakroom --features jwt --bench token -- --warm-up-time 1 --measurement-time 3
//! ```

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;

use cloakroom::Timestamp;
use cloakroom::crypto::{Keyring, MasterKey};
use cloakroom::store::MemoryStore;
use cloakroom::token::{TokenKey, TokenKeys, TokenSessions, fuzz_decode};
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

const SECRET: &[u8; 32] = b"a benchmark secret of 32 bytes!!";

fn verify(c: &mut Criterion) {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut g = c.benchmark_group("token_verify");
    for (label, make, alg) in [
        (
            "EdDSA",
            (|| TokenKey::ed25519_from_seed(&[7; 32])) as fn() -> TokenKey,
            Algorithm::EdDSA,
        ),
        (
            "HS256",
            || TokenKey::hs256(SECRET).expect("32 bytes"),
            Algorithm::HS256,
        ),
    ] {
        let key = make();
        let oracle = match key.public_jwk() {
            Some(jwk) => {
                DecodingKey::from_jwk(&serde_json::from_value(jwk).expect("a JWK")).expect("a key")
            }
            None => DecodingKey::from_secret(SECRET).expect("a key"),
        };
        let tokens = TokenSessions::new(
            MemoryStore::new(),
            TokenKeys::new(key),
            Keyring::new(vec![MasterKey::generate()]).expect("a keyring"),
        )
        .with_issuer("https://auth.bench")
        .with_audience("api.bench")
        .with_volatile_store_accepted()
        .build()
        .expect("valid");
        let pair = rt.block_on(tokens.issue("alice")).expect("issued");
        let token = pair.access_token;
        let keys = TokenKeys::new(make());
        let now = Timestamp::now();
        let mut validation = Validation::new(alg);
        validation.set_issuer(&["https://auth.bench"]);
        validation.set_audience(&["api.bench"]);
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &oracle, &validation).is_ok());
        g.bench_function(format!("cloakroom_signature_and_claims/{label}"), |b| {
            b.iter(|| fuzz_decode(&keys, black_box(&token), now).is_ok())
        });
        g.bench_function(format!("cloakroom_verify/{label}"), |b| {
            b.iter(|| rt.block_on(tokens.verify(black_box(&token))).is_ok())
        });
        g.bench_function(format!("jsonwebtoken_decode/{label}"), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &oracle, &validation)
                    .is_ok()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
