//! F3: the session ID decoder. Whatever it accepts is kept verbatim and is
//! the one canonical spelling of its 32 bytes (S5).
#![no_main]

use cloakroom::SessionId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SessionId::parse(text) {
        assert_eq!(id.expose_secret(), text);
        assert_eq!(SessionId::from_bytes(*id.as_bytes()).expose_secret(), text);
    }
    if let Ok(bytes) = <[u8; 32]>::try_from(data) {
        let id = SessionId::from_bytes(bytes);
        let back = SessionId::parse(id.expose_secret()).expect("an encoded ID parses");
        assert_eq!(back.as_bytes(), &bytes);
    }
});
