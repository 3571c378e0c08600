//! F2: `Set-Cookie` round trip. For any name, path and value, either the
//! config or the value is refused, or the header holds exactly the expected
//! attributes and the `name=value` part reads back as the same value (S11).
#![no_main]

use std::time::Duration;

use cloakroom::{CookieLookup, find_cookie};
use cloakroom::{CookieConfig, Timestamp};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str, &str, Option<u64>, u64)| {
    let (name, path, value, max_age, now) = input;
    let mut config = CookieConfig::new().with_name(name).with_path(path);
    if config.validate().is_err() {
        config = CookieConfig::default();
    }
    let max_age = max_age.map(Duration::from_secs);
    let now = Timestamp::from_millis(now);
    let Ok(header) = config.set_cookie(value, max_age, now) else {
        return;
    };
    let text = header.to_str().expect("Set-Cookie is visible ASCII");
    assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text:?}");
    // Path, Secure, HttpOnly, SameSite; plus Max-Age and Expires.
    let attributes = if max_age.is_some() { 6 } else { 4 };
    assert_eq!(text.matches(';').count(), attributes, "{text:?}");
    let pair = text.split(';').next().unwrap_or_default();
    assert_eq!(pair, format!("{}={value}", config.name()));
    let mut headers = HeaderMap::new();
    headers.insert(COOKIE, HeaderValue::from_str(pair).expect("a valid header"));
    assert_eq!(
        find_cookie(&headers, config.name()),
        CookieLookup::Found(value)
    );
});
