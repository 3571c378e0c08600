//! F7: `Expires`/`Max-Age`. The library only writes them, so its writer is
//! read back by independent parsers (the `cookie` crate and `httpdate`):
//! `Max-Age` is the requested age capped at 400 days (S13), `Expires` is an
//! IMF-fixdate equal to now + Max-Age to the second (capped at
//! 9999-12-31T23:59:59Z), no attribute appears twice, and arbitrary
//! `Expires`/`Max-Age` text never panics the reader.
#![no_main]

use std::collections::HashSet;
use std::time::{Duration, UNIX_EPOCH};

use cloakroom::MAX_COOKIE_AGE;
use cloakroom::{CookieConfig, Timestamp};
use cookie::Cookie;
use libfuzzer_sys::fuzz_target;

const LAST_HTTP_DATE_SECS: u64 = 253_402_300_799;

fuzz_target!(|input: (&str, &str, u64, u64, &str)| {
    let (name, value, max_age, now_ms, junk) = input;
    let _ = Cookie::parse(format!("a=b; Expires={junk}; Max-Age={junk}"));
    let _ = httpdate::parse_http_date(junk);

    let mut config = CookieConfig::new().with_name(name);
    if config.validate().is_err() {
        config = CookieConfig::default();
    }
    let Ok(header) = config.set_cookie(
        value,
        Some(Duration::from_secs(max_age)),
        Timestamp::from_millis(now_ms),
    ) else {
        return;
    };
    let text = header.to_str().expect("Set-Cookie is visible ASCII");
    let age = max_age.min(MAX_COOKIE_AGE.as_secs());
    let expires = (now_ms / 1000).saturating_add(age).min(LAST_HTTP_DATE_SECS);

    let mut seen = HashSet::new();
    for attribute in text.split(';').skip(1) {
        let key = attribute.trim().split('=').next().unwrap_or_default();
        assert!(
            seen.insert(key.to_ascii_lowercase()),
            "{key} twice in {text:?}"
        );
    }
    let expires_text = text
        .split("; Expires=")
        .nth(1)
        .and_then(|t| t.split(';').next());
    let date = httpdate::parse_http_date(expires_text.expect("an Expires attribute"))
        .expect("an HTTP date");
    assert_eq!(
        httpdate::fmt_http_date(date),
        expires_text.unwrap_or_default(),
        "not IMF-fixdate"
    );
    assert_eq!(date, UNIX_EPOCH + Duration::from_secs(expires), "{text:?}");

    let parsed = Cookie::parse(text).expect("the cookie crate reads it");
    assert_eq!(parsed.value(), value);
    assert_eq!(
        parsed.max_age().map(|d| d.whole_seconds()),
        i64::try_from(age).ok()
    );
    let read_expires = parsed.expires_datetime().map(|t| t.unix_timestamp());
    assert_eq!(read_expires, i64::try_from(expires).ok(), "{text:?}");
});
