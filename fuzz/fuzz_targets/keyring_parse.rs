//! F8: key-ring configuration parsing. `Keyring::parse` on arbitrary text
//! never panics, and whatever it accepts seals and opens.
#![no_main]

use cloakroom::crypto::Keyring;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(ring) = Keyring::parse(text) {
        let sealed = ring.seal("fuzz", "id", b"x").expect("a tiny payload seals");
        assert_eq!(ring.open("fuzz", "id", &sealed).expect("opens").plaintext, b"x");
    }
});
