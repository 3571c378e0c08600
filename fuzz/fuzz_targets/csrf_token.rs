//! S47: the CSRF token check. Never panics; accepts a fresh masking of
//! the secret; accepts nothing else made from the input unless it unmasks
//! to the secret (an input that is not 86 base64url characters never does).
#![no_main]

use cloakroom::csrf::{fuzz_accepts, fuzz_mask};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((secret, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let token = fuzz_mask(*secret);
    assert!(fuzz_accepts(*secret, &token));
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if fuzz_accepts(*secret, text) {
        assert_eq!(text.len(), 86, "only full-length tokens unmask");
    }
    // One flipped character of a valid token is always refused.
    if let Some(&b) = rest.first() {
        let at = usize::from(b) % token.len();
        let mut altered = token.clone().into_bytes();
        altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).expect("base64url is ASCII");
        assert!(!fuzz_accepts(*secret, &altered));
    }
});
