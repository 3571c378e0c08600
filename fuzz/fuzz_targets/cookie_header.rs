//! F1: the `Cookie` header parser over arbitrary bytes, split into several
//! headers at `\n` (a byte no header value can hold), then the ID parser on
//! whatever it finds (S5, S16).
#![no_main]

use cloakroom::SessionId;
use cloakroom::{CookieLookup, find_cookie};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for part in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.append(COOKIE, value);
        }
    }
    for name in ["__Host-id", "id"] {
        if let CookieLookup::Found(value) = find_cookie(&headers, name) {
            assert!(!value.contains(';'), "a found value spans a `;`");
            if let Ok(id) = SessionId::parse(value) {
                assert_eq!(id.expose_secret(), value);
            }
        }
    }
});
