//! SECURITY.md S30–S36 for `cloakroom::crypto`, through the public API:
//! known-answer vectors that lock the wire format, one tamper suite run
//! against both modes, rotation, key refusal, redaction and round trips.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloakroom::crypto::{
    KeyError, Keyring, MAX_TOKEN_LEN, MasterKey, OpenError, SealError, sealed_len, signed_len,
};
use proptest::prelude::*;

/// SHA-256 of "cloakroom known-answer key 1" and "... key 2".
const K1: &str = "qqhAmWNkrqXQ3IUfVwaZbgg3QfN3jfZvBB19JWRhelc";
const K2: &str = "E6CkRD0WWWFnIbjUPMUWQLYfaJ4SVM_xusbGk5JWciA";
/// 0x40, 0x41, ..., 0x57.
const NONCE: [u8; 24] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f,
    0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57,
];
const PURPOSE: &str = "session";
const NAME: &str = "__Host-id";

fn k1() -> MasterKey {
    MasterKey::from_base64url(K1).unwrap()
}

fn k2() -> MasterKey {
    MasterKey::from_base64url(K2).unwrap()
}

fn ring(keys: &[MasterKey]) -> Keyring {
    Keyring::new(keys.to_vec()).unwrap()
}

fn decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------
// Known answers. The expected strings were computed by an independent
// implementation (Python `cryptography`'s ChaCha20-Poly1305, HKDF and HMAC,
// plus HChaCha20 checked against the XChaCha draft's vector), not by this
// crate. A change here is a wire-format break: every live cookie stops
// opening.

#[test]
fn key_ids_are_known() {
    assert_eq!(k1().id().to_string(), "416f10fd");
    assert_eq!(k2().id().to_string(), "e6ee8c30");
}

#[test]
fn sealed_known_answers() {
    let cases: [(MasterKey, &str, &str, &[u8], &str); 3] = [
        (
            k1(),
            PURPOSE,
            NAME,
            b"hello, cloakroom",
            "AUFvEP1AQUJDREVGR0hJSktMTU5PUFFSU1RVVleZZNVp-LNX1UnS5xFneCqz22fIG4lrWFg6r6gGJOue-g",
        ),
        (
            k1(),
            PURPOSE,
            NAME,
            b"",
            "AUFvEP1AQUJDREVGR0hJSktMTU5PUFFSU1RVVlfYC-NrLBkaBe3kkgOWSliD",
        ),
        (
            k2(),
            "csrf",
            "id",
            b"\x00\xff",
            "AebujDBAQUJDREVGR0hJSktMTU5PUFFSU1RVVleqgY4ZpHxdFVpheQ9tZ3XXP8Q",
        ),
    ];
    for (key, purpose, name, plaintext, expected) in cases {
        let keyring = Keyring::from(key);
        let sealed = keyring
            .seal_with_nonce_insecure(purpose, name, plaintext, NONCE)
            .unwrap();
        assert_eq!(sealed, expected);
        let opened = keyring.open(purpose, name, expected).unwrap();
        assert_eq!(opened.plaintext, plaintext);
        assert!(!opened.needs_reseal);
    }
}

#[test]
fn signed_known_answers() {
    let cases: [(MasterKey, &str, &str, &[u8], &str); 3] = [
        (
            k1(),
            PURPOSE,
            NAME,
            b"hello, cloakroom",
            "AkFvEP1oZWxsbywgY2xvYWtyb29tcg1jbT5kd3sYGP-8yv9qXZcCtEoeOnIUSOWN6hzPdF4",
        ),
        (
            k1(),
            PURPOSE,
            NAME,
            b"",
            "AkFvEP3zmadaGKbmTnfxcLoNN9fA1ttvKzVRhyWAnrBZ2iZUFQ",
        ),
        (
            k2(),
            "csrf",
            "id",
            b"\x00\xff",
            "AubujDAA_z8UqStL4rqLyV8hLjukDRARrZ4Y4PQ4mDADr3HhznEt",
        ),
    ];
    for (key, purpose, name, payload, expected) in cases {
        let keyring = Keyring::from(key);
        assert_eq!(keyring.sign(purpose, name, payload).unwrap(), expected);
        let verified = keyring.verify(purpose, name, expected).unwrap();
        assert_eq!(verified.plaintext, payload);
        // The payload is readable: bytes 5..len-32 of the decoded token.
        let raw = decode(expected);
        assert_eq!(&raw[5..raw.len() - 32], payload);
    }
}

#[test]
fn envelope_layout() {
    let keyring = Keyring::from(k1());
    let sealed = decode(&keyring.seal(PURPOSE, NAME, b"abc").unwrap());
    assert_eq!(sealed.len(), 1 + 4 + 24 + 3 + 16);
    assert_eq!(sealed[0], 0x01);
    assert_eq!(sealed[1..5], k1().id().to_bytes());
    let signed = decode(&keyring.sign(PURPOSE, NAME, b"abc").unwrap());
    assert_eq!(signed.len(), 1 + 4 + 3 + 32);
    assert_eq!(signed[0], 0x02);
    assert_eq!(signed[1..5], k1().id().to_bytes());
}

// ---------------------------------------------------------------------------
// S31, S32: one tamper suite, run against both modes. Values are produced
// under the newest key of [K2, K1], so re-labelling to K1's id names a key
// the ring holds: that must fail authentication, not just the lookup.

type Produce = fn(&Keyring, &str, &str, &[u8]) -> Result<String, SealError>;
type Check = fn(&Keyring, &str, &str, &str) -> Result<cloakroom::crypto::Opened, OpenError>;

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn samples() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        b"x".to_vec(),
        b"user=alice;admin=false".to_vec(),
        (0..=255).collect(),
    ]
}

macro_rules! tamper_suite {
    ($mode:ident, produce: $produce:expr, check: $check:expr, other_mode: $other:expr) => {
        mod $mode {
            use super::*;

            const PRODUCE: Produce = $produce;
            const CHECK: Check = $check;
            const OTHER_MODE: Check = $other;

            fn keyring() -> Keyring {
                ring(&[k2(), k1()])
            }

            /// Every sample, produced for `PURPOSE` and `NAME`.
            fn tokens() -> Vec<(Vec<u8>, String)> {
                let keyring = keyring();
                samples()
                    .into_iter()
                    .map(|p| {
                        let token = PRODUCE(&keyring, PURPOSE, NAME, &p).unwrap();
                        (p, token)
                    })
                    .collect()
            }

            fn assert_refused(keyring: &Keyring, token: &str, what: &str) {
                let result = CHECK(keyring, PURPOSE, NAME, token);
                assert!(result.is_err(), "{what}: accepted {token:?}");
            }

            #[test]
            fn untouched_opens() {
                let keyring = keyring();
                for (plaintext, token) in tokens() {
                    let opened = CHECK(&keyring, PURPOSE, NAME, &token).unwrap();
                    assert_eq!(opened.plaintext, plaintext);
                    assert!(!opened.needs_reseal);
                }
            }

            #[test]
            fn every_flipped_bit_is_rejected() {
                let keyring = keyring();
                for (_, token) in tokens() {
                    let bytes = decode(&token);
                    for i in 0..bytes.len() * 8 {
                        let mut bad = bytes.clone();
                        bad[i / 8] ^= 1 << (i % 8);
                        let result = CHECK(&keyring, PURPOSE, NAME, &encode(&bad));
                        // In the header the format byte or key id changes;
                        // past it only authentication can notice.
                        match i / 8 {
                            0 => assert_eq!(result.unwrap_err(), OpenError::UnknownFormat),
                            1..=4 => assert_eq!(result.unwrap_err(), OpenError::UnknownKey),
                            _ => assert_eq!(result.unwrap_err(), OpenError::Rejected, "bit {i}"),
                        }
                    }
                }
            }

            #[test]
            fn every_changed_character_is_rejected() {
                let keyring = keyring();
                for (_, token) in tokens() {
                    let text = token.as_bytes();
                    for i in 0..text.len() {
                        for bit in 0..8 {
                            let mut bad = text.to_vec();
                            bad[i] ^= 1 << bit;
                            let bad = String::from_utf8_lossy(&bad);
                            assert_refused(&keyring, &bad, "flipped character bit");
                        }
                        for &c in BASE64URL.iter().filter(|&&c| c != text[i]) {
                            let mut bad = text.to_vec();
                            bad[i] = c;
                            let bad = String::from_utf8(bad).unwrap();
                            assert_refused(&keyring, &bad, "substituted character");
                        }
                    }
                }
            }

            #[test]
            fn every_truncation_is_rejected() {
                let keyring = keyring();
                for (_, token) in tokens() {
                    for len in 0..token.len() {
                        assert_refused(&keyring, &token[..len], "truncated text");
                        assert_refused(&keyring, &token[token.len() - len..], "cut from front");
                    }
                    let bytes = decode(&token);
                    for len in 0..bytes.len() {
                        assert_refused(&keyring, &encode(&bytes[..len]), "truncated bytes");
                    }
                }
            }

            #[test]
            fn anything_appended_is_rejected() {
                let keyring = keyring();
                for (_, token) in tokens() {
                    for &c in BASE64URL {
                        let bad = format!("{token}{}", char::from(c));
                        assert_refused(&keyring, &bad, "appended character");
                    }
                    for suffix in ["=", "==", " ", "\n", ".", ";", "\0", "é", ".AAAA"] {
                        assert_refused(&keyring, &format!("{token}{suffix}"), "appended suffix");
                        assert_refused(&keyring, &format!("{suffix}{token}"), "prefix");
                    }
                    let bytes = decode(&token);
                    for extra in [&[0u8][..], &[0, 0], &[0, 0, 0], &[0xff; 16], &[0; 64]] {
                        let mut bad = bytes.clone();
                        bad.extend_from_slice(extra);
                        assert_refused(&keyring, &encode(&bad), "appended bytes");
                    }
                    // Doubled: a valid token followed by itself.
                    assert_refused(&keyring, &format!("{token}{token}"), "doubled");
                }
            }

            #[test]
            fn another_cookie_name_is_rejected() {
                let keyring = keyring();
                for (_, token) in tokens() {
                    for name in [
                        "__Host-id2",
                        "__host-id",
                        "id",
                        "",
                        "__Host-id\0",
                        "__Host-i",
                    ] {
                        let result = CHECK(&keyring, PURPOSE, name, &token);
                        assert_eq!(result.unwrap_err(), OpenError::Rejected, "name {name:?}");
                    }
                }
            }

            #[test]
            fn another_purpose_is_rejected() {
                let keyring = keyring();
                for (_, token) in tokens() {
                    for purpose in ["csrf", "Session", "", "session ", "sessio"] {
                        let result = CHECK(&keyring, purpose, NAME, &token);
                        assert_eq!(result.unwrap_err(), OpenError::Rejected, "{purpose:?}");
                    }
                }
                // Purpose and name cannot trade bytes (length-prefixed).
                let token = PRODUCE(&keyring, "ab", "c", b"x").unwrap();
                assert!(CHECK(&keyring, "a", "bc", &token).is_err());
                assert!(CHECK(&keyring, "ab", "c", &token).is_ok());
            }

            #[test]
            fn relabelled_key_id_is_rejected() {
                let keyring = keyring();
                for (_, token) in tokens() {
                    let mut bytes = decode(&token);
                    assert_eq!(bytes[1..5], k2().id().to_bytes());
                    // To the other key in the ring: authentication fails.
                    bytes[1..5].copy_from_slice(&k1().id().to_bytes());
                    let result = CHECK(&keyring, PURPOSE, NAME, &encode(&bytes));
                    assert_eq!(result.unwrap_err(), OpenError::Rejected);
                    // To a key the ring does not hold.
                    bytes[1..5].copy_from_slice(&[0, 0, 0, 0]);
                    let result = CHECK(&keyring, PURPOSE, NAME, &encode(&bytes));
                    assert_eq!(result.unwrap_err(), OpenError::UnknownKey);
                }
            }

            #[test]
            fn every_other_format_byte_is_rejected() {
                let keyring = keyring();
                for (_, token) in tokens() {
                    let mut bytes = decode(&token);
                    let format = bytes[0];
                    for other in (0..=255u8).filter(|&b| b != format) {
                        bytes[0] = other;
                        let result = CHECK(&keyring, PURPOSE, NAME, &encode(&bytes));
                        assert_eq!(result.unwrap_err(), OpenError::UnknownFormat);
                    }
                }
            }

            #[test]
            fn the_other_mode_refuses_it() {
                let keyring = keyring();
                for (_, token) in tokens() {
                    assert!(OTHER_MODE(&keyring, PURPOSE, NAME, &token).is_err());
                }
            }

            #[test]
            fn other_keyrings_refuse_it() {
                for (_, token) in tokens() {
                    let stranger = Keyring::from(MasterKey::generate());
                    let result = CHECK(&stranger, PURPOSE, NAME, &token);
                    assert_eq!(result.unwrap_err(), OpenError::UnknownKey);
                }
            }

            #[test]
            fn garbage_is_rejected() {
                let keyring = keyring();
                let long = "A".repeat(MAX_TOKEN_LEN + 1);
                assert_eq!(
                    CHECK(&keyring, PURPOSE, NAME, &long).unwrap_err(),
                    OpenError::TooLarge
                );
                for junk in [
                    "",
                    "A",
                    "AA",
                    "====",
                    "../../etc/passwd",
                    "%00",
                    "a.b.c",
                    "€",
                ] {
                    assert!(CHECK(&keyring, PURPOSE, NAME, junk).is_err(), "{junk:?}");
                }
            }
        }
    };
}

tamper_suite!(sealed, produce: Keyring::seal, check: Keyring::open, other_mode: Keyring::verify);
tamper_suite!(signed, produce: Keyring::sign, check: Keyring::verify, other_mode: Keyring::open);

// ---------------------------------------------------------------------------
// S35: rotation.

#[test]
fn rotation_sealed() {
    let sealed = Keyring::from(k1()).seal(PURPOSE, NAME, b"data").unwrap();
    // Old key still listed: opens, asks for a re-seal.
    let rotated = ring(&[k2(), k1()]);
    let opened = rotated.open(PURPOSE, NAME, &sealed).unwrap();
    assert_eq!(opened.plaintext, b"data");
    assert!(opened.needs_reseal);
    // Old key retired: refused.
    let retired = Keyring::from(k2());
    assert_eq!(
        retired.open(PURPOSE, NAME, &sealed).unwrap_err(),
        OpenError::UnknownKey
    );
    // Re-sealed under the rotated ring: the new key alone opens it.
    let resealed = rotated.seal(PURPOSE, NAME, &opened.plaintext).unwrap();
    let reopened = retired.open(PURPOSE, NAME, &resealed).unwrap();
    assert_eq!(reopened.plaintext, b"data");
    assert!(!reopened.needs_reseal);
    assert!(!rotated.open(PURPOSE, NAME, &resealed).unwrap().needs_reseal);
}

#[test]
fn rotation_signed() {
    let signed = Keyring::from(k1()).sign(PURPOSE, NAME, b"data").unwrap();
    let rotated = ring(&[k2(), k1()]);
    let verified = rotated.verify(PURPOSE, NAME, &signed).unwrap();
    assert!(verified.needs_reseal);
    let retired = Keyring::from(k2());
    assert_eq!(
        retired.verify(PURPOSE, NAME, &signed).unwrap_err(),
        OpenError::UnknownKey
    );
    let resigned = rotated.sign(PURPOSE, NAME, &verified.plaintext).unwrap();
    assert!(
        !retired
            .verify(PURPOSE, NAME, &resigned)
            .unwrap()
            .needs_reseal
    );
}

#[test]
fn rotation_through_three_keys() {
    let k3 = MasterKey::generate();
    let sealed = Keyring::from(k1()).seal(PURPOSE, NAME, b"x").unwrap();
    let ring3 = ring(&[k3.clone(), k2(), k1()]);
    assert!(ring3.open(PURPOSE, NAME, &sealed).unwrap().needs_reseal);
    let ids: Vec<_> = ring3.key_ids().collect();
    assert_eq!(ids, [k3.id(), k2().id(), k1().id()]);
    assert_eq!(ring3.newest_key_id(), k3.id());
}

// ---------------------------------------------------------------------------
// S34: weak keys are refused at start-up.

#[test]
fn short_empty_and_weak_keys_are_refused() {
    assert_eq!(MasterKey::from_bytes(&[]).unwrap_err(), KeyError::Empty);
    assert_eq!(MasterKey::from_base64url("").unwrap_err(), KeyError::Empty);
    let random = decode(&MasterKey::generate().to_base64url());
    for len in 1..32 {
        assert_eq!(
            MasterKey::from_bytes(&random[..len]).unwrap_err(),
            KeyError::TooShort(len)
        );
    }
    // A 128-bit key, as some frameworks generate.
    assert_eq!(
        MasterKey::from_base64url("c2VjcmV0LWtleS0xMjM0NQ").unwrap_err(),
        KeyError::TooShort(16)
    );
    for byte in [0u8, 1, 0x41, 0xff] {
        assert_eq!(
            MasterKey::from_bytes(&[byte; 32]).unwrap_err(),
            KeyError::Pattern
        );
    }
    assert_eq!(
        MasterKey::from_base64url(&"A".repeat(43)).unwrap_err(),
        KeyError::Pattern,
        "32 zero bytes"
    );
    assert_eq!(
        MasterKey::from_bytes(b"change-me-change-me-change-me-!!").unwrap_err(),
        KeyError::NotRandom
    );
}

#[test]
fn keyring_refuses_empty_and_duplicate_lists() {
    assert_eq!(Keyring::new(Vec::new()).unwrap_err(), KeyError::NoKeys);
    assert_eq!(Keyring::parse("").unwrap_err(), KeyError::NoKeys);
    assert_eq!(
        Keyring::new(vec![k1(), k2(), k1()]).unwrap_err(),
        KeyError::Duplicate {
            first: 1,
            second: 3
        }
    );
    assert_eq!(
        Keyring::parse(&format!("{K1}, {K1}")).unwrap_err(),
        KeyError::Duplicate {
            first: 1,
            second: 2
        }
    );
    assert_eq!(
        Keyring::parse(&format!("{K1},,{K2}")).unwrap_err(),
        KeyError::InList {
            position: 2,
            reason: Box::new(KeyError::Empty)
        }
    );
    let err = Keyring::parse(&format!("{K1},{}", "A".repeat(43))).unwrap_err();
    assert_eq!(
        err,
        KeyError::InList {
            position: 2,
            reason: Box::new(KeyError::Pattern)
        }
    );
    let ok = Keyring::parse(&format!(" {K2} ,\n {K1}\n")).unwrap();
    assert_eq!(ok.key_ids().collect::<Vec<_>>(), [k2().id(), k1().id()]);
}

#[test]
fn key_errors_say_what_to_do() {
    let errors = [
        KeyError::Empty,
        KeyError::TooShort(16),
        KeyError::TooLong,
        KeyError::NotBase64Url,
        KeyError::Pattern,
        KeyError::NotRandom,
        KeyError::Example,
        KeyError::NoKeys,
        KeyError::EnvNotSet,
    ];
    for error in errors {
        assert!(error.to_string().contains("cloakroom keygen"), "{error}");
    }
}

/// Every key printed after `CLOAKROOM_KEYS=` or `--keys` in our docs,
/// examples and sources is refused: whoever copies it gets an error, not a
/// key the world knows (Rails CVE-2019-5420).
#[test]
fn keys_printed_in_our_docs_are_refused() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["cloakroom/src", "cloakroom-cli", "examples"] {
        collect_files(&root.join(dir), &mut files);
    }
    files.push(root.join("README.md"));
    let mut seen = 0;
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for marker in ["CLOAKROOM_KEYS=", "--keys "] {
            for (at, _) in text.match_indices(marker) {
                let value: String = text[at + marker.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ','))
                    .collect();
                for key in value.split(',').filter(|k| k.len() >= 43) {
                    seen += 1;
                    assert!(
                        MasterKey::from_base64url(key).is_err(),
                        "{} prints a usable key {key}",
                        file.display()
                    );
                }
            }
        }
    }
    assert!(seen >= 2, "the crypto module docs print two example keys");
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                collect_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs" || e == "md") {
            out.push(path);
        }
    }
}

// ---------------------------------------------------------------------------
// Redaction, nonces, sizes.

#[test]
fn debug_prints_no_key_bytes() {
    let key = k1();
    let raw = decode(K1);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let keyring = ring(&[k2(), k1()]);
    let opened = keyring
        .open(
            PURPOSE,
            NAME,
            &keyring.seal(PURPOSE, NAME, b"secret data").unwrap(),
        )
        .unwrap();
    for debug in [
        format!("{key:?}"),
        format!("{key:#?}"),
        format!("{keyring:?}"),
        format!("{keyring:#?}"),
        format!("{opened:?}"),
    ] {
        for secret in [K1, K2, &hex, &format!("{raw:?}")] {
            assert!(!debug.contains(secret), "{debug} contains {secret}");
        }
        assert!(!debug.contains("secret data"));
    }
    assert_eq!(format!("{key:?}"), "MasterKey(416f10fd)");
    assert!(format!("{keyring:?}").contains("e6ee8c30"));
}

#[test]
fn keys_compare_by_value() {
    assert_eq!(k1(), k1());
    assert_ne!(k1(), k2());
    assert_eq!(
        MasterKey::from_base64url(&k1().to_base64url()).unwrap(),
        k1()
    );
}

#[test]
fn nonces_differ_across_seals() {
    let keyring = Keyring::from(k1());
    let mut nonces = HashSet::new();
    let mut tokens = HashSet::new();
    for _ in 0..2000 {
        let token = keyring.seal(PURPOSE, NAME, b"same plaintext").unwrap();
        let bytes = decode(&token);
        assert!(nonces.insert(bytes[5..29].to_vec()), "nonce repeated");
        assert!(tokens.insert(token));
    }
    // Signing is deterministic by design: no nonce.
    assert_eq!(
        keyring.sign(PURPOSE, NAME, b"x").unwrap(),
        keyring.sign(PURPOSE, NAME, b"x").unwrap()
    );
}

#[test]
fn size_limits_are_symmetric() {
    let keyring = Keyring::from(k1());
    let max_sealed = (MAX_TOKEN_LEN * 3 / 4) - 45;
    let sealed = keyring.seal(PURPOSE, NAME, &vec![7; max_sealed]).unwrap();
    assert_eq!(sealed.len(), sealed_len(max_sealed));
    assert!(sealed.len() <= MAX_TOKEN_LEN);
    assert_eq!(
        keyring
            .open(PURPOSE, NAME, &sealed)
            .unwrap()
            .plaintext
            .len(),
        max_sealed
    );
    assert_eq!(
        keyring
            .seal(PURPOSE, NAME, &vec![7; max_sealed + 1])
            .unwrap_err(),
        SealError::TooLarge {
            len: sealed_len(max_sealed + 1),
            max: MAX_TOKEN_LEN
        }
    );

    let max_signed = (MAX_TOKEN_LEN * 3 / 4) - 37;
    let signed = keyring.sign(PURPOSE, NAME, &vec![7; max_signed]).unwrap();
    assert_eq!(signed.len(), signed_len(max_signed));
    assert!(keyring.verify(PURPOSE, NAME, &signed).is_ok());
    assert!(matches!(
        keyring.sign(PURPOSE, NAME, &vec![7; max_signed + 1]),
        Err(SealError::TooLarge { .. })
    ));
}

#[test]
fn keyring_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Keyring>();
    let keyring = ring(&[k2(), k1()]);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let keyring = keyring.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let purpose = format!("p{}", i % 8);
                    let msg = format!("{t}/{i}");
                    let sealed = keyring.seal(&purpose, NAME, msg.as_bytes()).unwrap();
                    let opened = keyring.open(&purpose, NAME, &sealed).unwrap();
                    assert_eq!(opened.plaintext, msg.as_bytes());
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

// ---------------------------------------------------------------------------
// Round trips for arbitrary inputs.

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,24}", "[a-zA-Z0-9_-]{0,24}", Just(String::new())]
}

proptest! {
    #[test]
    fn open_inverts_seal(
        plaintext in prop::collection::vec(any::<u8>(), 0..1024),
        purpose in text(),
        name in text(),
        other in text(),
    ) {
        let keyring = ring(&[k2(), k1()]);
        let sealed = keyring.seal(&purpose, &name, &plaintext).unwrap();
        prop_assert_eq!(sealed.len(), sealed_len(plaintext.len()));
        let opened = keyring.open(&purpose, &name, &sealed).unwrap();
        prop_assert_eq!(&opened.plaintext, &plaintext);
        prop_assert!(!opened.needs_reseal);
        if other != name {
            prop_assert_eq!(keyring.open(&purpose, &other, &sealed), Err(OpenError::Rejected));
        }
        if other != purpose {
            prop_assert_eq!(keyring.open(&other, &name, &sealed), Err(OpenError::Rejected));
        }
    }

    #[test]
    fn verify_inverts_sign(
        payload in prop::collection::vec(any::<u8>(), 0..1024),
        purpose in text(),
        name in text(),
        other in text(),
    ) {
        let keyring = ring(&[k2(), k1()]);
        let signed = keyring.sign(&purpose, &name, &payload).unwrap();
        prop_assert_eq!(signed.len(), signed_len(payload.len()));
        let verified = keyring.verify(&purpose, &name, &signed).unwrap();
        prop_assert_eq!(&verified.plaintext, &payload);
        prop_assert!(!verified.needs_reseal);
        if other != name {
            prop_assert_eq!(keyring.verify(&purpose, &other, &signed), Err(OpenError::Rejected));
        }
        if other != purpose {
            prop_assert_eq!(keyring.verify(&other, &name, &signed), Err(OpenError::Rejected));
        }
    }

    #[test]
    fn older_keys_open_and_ask_for_reseal(plaintext in prop::collection::vec(any::<u8>(), 0..256)) {
        let old = Keyring::from(k1());
        let rotated = ring(&[k2(), k1()]);
        let opened = rotated.open(PURPOSE, NAME, &old.seal(PURPOSE, NAME, &plaintext).unwrap()).unwrap();
        prop_assert_eq!(&opened.plaintext, &plaintext);
        prop_assert!(opened.needs_reseal);
        let verified = rotated.verify(PURPOSE, NAME, &old.sign(PURPOSE, NAME, &plaintext).unwrap()).unwrap();
        prop_assert_eq!(&verified.plaintext, &plaintext);
        prop_assert!(verified.needs_reseal);
    }

    /// Arbitrary text never panics and never opens (a forgery would need the
    /// key).
    #[test]
    fn arbitrary_text_never_opens(text in ".{0,200}", raw in prop::collection::vec(any::<u8>(), 0..200)) {
        let keyring = ring(&[k2(), k1()]);
        prop_assert!(keyring.open(PURPOSE, NAME, &text).is_err());
        prop_assert!(keyring.verify(PURPOSE, NAME, &text).is_err());
        let encoded = encode(&raw);
        prop_assert!(keyring.open(PURPOSE, NAME, &encoded).is_err());
        prop_assert!(keyring.verify(PURPOSE, NAME, &encoded).is_err());
    }
}
