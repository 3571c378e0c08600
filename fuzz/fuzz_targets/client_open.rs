//! F4: opening client-side values (S31, S32, S35). The input is tried raw
//! (as text and as base64url of its bytes), then, structure-aware, as a
//! plaintext plus a list of edits applied to a valid `seal` (or `sign`)
//! output and a possibly different cookie name and purpose. Nothing panics;
//! only an untouched value, under its own name and purpose, opens.
#![no_main]

use std::sync::LazyLock;

use cloakroom::crypto::{Keyring, MasterKey, OpenError, Opened};
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "__Host-id";
const PURPOSE: &str = "session";
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn key(text: &str) -> MasterKey {
    MasterKey::from_base64url(text).expect("a valid fixed key")
}

/// Opens with [new, old]; `OLD` seals like a server that has not rotated.
static RING: LazyLock<Keyring> = LazyLock::new(|| {
    Keyring::new(vec![
        key("E6CkRD0WWWFnIbjUPMUWQLYfaJ4SVM_xusbGk5JWciA"),
        key("qqhAmWNkrqXQ3IUfVwaZbgg3QfN3jfZvBB19JWRhelc"),
    ])
    .expect("a valid key ring")
});
static OLD: LazyLock<Keyring> =
    LazyLock::new(|| Keyring::from(key("qqhAmWNkrqXQ3IUfVwaZbgg3QfN3jfZvBB19JWRhelc")));

/// One change to the text. Changing a character's 6-bit value is a bit flip
/// in the decoded envelope; inserting or removing one shifts everything.
#[derive(Debug)]
enum Edit {
    Xor(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
    Append(Vec<u8>),
}

impl<'a> Arbitrary<'a> for Edit {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let at = usize::from(u.arbitrary::<u16>()?);
        Ok(match u.int_in_range(0..=5u8)? {
            0 => Edit::Xor(at, u.int_in_range(1..=63)?),
            1 => Edit::Set(at, u.arbitrary()?),
            2 => Edit::Insert(at, u.arbitrary()?),
            3 => Edit::Remove(at),
            4 => Edit::Truncate(at),
            _ => Edit::Append(u.arbitrary()?),
        })
    }
}

impl Edit {
    /// Applies the edit; raw bytes may leave the alphabet (even UTF-8).
    fn apply(&self, text: &mut Vec<u8>) {
        let len = text.len();
        match self {
            Edit::Xor(at, mask) if len > 0 => {
                let c = &mut text[at % len];
                if let Some(v) = ALPHABET.iter().position(|a| a == c) {
                    *c = ALPHABET[(v ^ usize::from(*mask)) & 63];
                }
            }
            Edit::Set(at, byte) if len > 0 => text[at % len] = *byte,
            Edit::Insert(at, byte) => text.insert(at % (len + 1), *byte),
            Edit::Remove(at) if len > 0 => {
                text.remove(at % len);
            }
            Edit::Truncate(at) => text.truncate(at % (len + 1)),
            Edit::Append(bytes) => text.extend_from_slice(bytes),
            _ => {}
        }
    }
}

fn open(signed: bool, purpose: &str, name: &str, text: &str) -> Result<Opened, OpenError> {
    if signed {
        RING.verify(purpose, name, text)
    } else {
        RING.open(purpose, name, text)
    }
}

/// Unpadded base64url, so raw bytes reach the envelope checks.
fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// The nonce of a sealed text (bytes 5..29 of the envelope).
fn nonce_of(text: &str) -> [u8; 24] {
    let mut bytes = Vec::with_capacity(30);
    for group in text.as_bytes()[..40].chunks(4) {
        let n = group.iter().fold(0u32, |n, c| {
            let v = ALPHABET.iter().position(|a| a == c).expect("base64url");
            (n << 6) | v as u32
        });
        bytes.extend_from_slice(&n.to_be_bytes()[1..]);
    }
    bytes[5..29].try_into().expect("24 bytes")
}

/// Whatever opens must be exactly what the key holder produced for that
/// plaintext: no second spelling, no malleability. (Asserting "raw input
/// never opens" instead would be wrong: libFuzzer learns the valid tokens
/// the edit check below compares against, and may replay one.)
fn assert_canonical(signed: bool, text: &str) {
    let Ok(opened) = open(signed, PURPOSE, NAME, text) else {
        return;
    };
    let sealer = if opened.needs_reseal { &*OLD } else { &*RING };
    let again = if signed {
        sealer.sign(PURPOSE, NAME, &opened.plaintext)
    } else {
        sealer.seal_with_nonce_insecure(PURPOSE, NAME, &opened.plaintext, nonce_of(text))
    };
    assert_eq!(again.as_deref(), Ok(text), "a forged value opened");
}

fn run(data: &[u8]) -> arbitrary::Result<()> {
    for text in [String::from_utf8_lossy(data).into_owned(), base64url(data)] {
        for signed in [false, true] {
            assert_canonical(signed, &text);
        }
    }

    let mut u = Unstructured::new(data);
    let signed: bool = u.arbitrary()?;
    let old_key: bool = u.arbitrary()?;
    let nonce: [u8; 24] = u.arbitrary()?;
    let name: Option<&str> = u.arbitrary()?;
    let purpose: Option<&str> = u.arbitrary()?;
    let edits: Vec<Edit> = u.arbitrary()?;
    let plaintext: &[u8] = u.arbitrary()?;

    let sealer = if old_key { &*OLD } else { &*RING };
    let token = if signed {
        sealer.sign(PURPOSE, NAME, plaintext)
    } else {
        sealer.seal_with_nonce_insecure(PURPOSE, NAME, plaintext, nonce)
    }
    .expect("fuzz plaintexts are within the size limit");
    let mut text = token.clone().into_bytes();
    for edit in &edits {
        edit.apply(&mut text);
    }
    let text = String::from_utf8_lossy(&text);
    let (name, purpose) = (name.unwrap_or(NAME), purpose.unwrap_or(PURPOSE));

    let result = open(signed, purpose, name, &text);
    // Every envelope has exactly one spelling, so any change to the text is
    // a change to the envelope.
    if text == token && name == NAME && purpose == PURPOSE {
        let opened = result.expect("an untouched value opens");
        assert_eq!(opened.plaintext, plaintext);
        assert_eq!(opened.needs_reseal, old_key);
    } else {
        assert!(result.is_err(), "a modified value opened: {edits:?}");
    }
    // Whatever it is, the other mode never accepts it.
    assert!(open(!signed, purpose, name, &text).is_err());
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
