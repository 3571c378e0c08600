//! Property tests for everything a client or a corrupt store can feed the
//! library: the `Set-Cookie` serializer (S11, F2), the `Cookie` parser (F1,
//! S16), session IDs (F3, S5) and the record encoding (F6).
//!
//! Each property runs proptest's default 256 cases.
//!
//! Over 600 lines on purpose: the properties share one set of strategies
//! (arbitrary cookies, headers, records), and each stands next to the
//! strategy it uses; split, the strategies would have to move to a support
//! module away from the properties that explain them.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use cloakroom::MAX_COOKIE_AGE;
use cloakroom::{CookieConfig, Record, SameSite, SessionId, Timestamp};
use cloakroom::{CookieLookup, MAX_COOKIE_BYTES, find_cookie};
use cloakroom::{Device, decode_value};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// Strings of every kind: arbitrary Unicode, ASCII with controls, and
/// printable ASCII rich in the characters that separate cookies and
/// attributes.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x7f]{0,48}",
        "[ -~]{0,48}",
        "[a-z;=, \"\\\\\r\n\t]{0,24}",
        // Mostly valid, with an attempted injection somewhere.
        (
            "[a-zA-Z0-9_-]{0,20}",
            "(; Domain=evil\\.example|\r\nSet-Cookie: x=y|; Path=/x|,a=b| x=y|\"|;)",
            "[a-zA-Z0-9_-]{0,20}"
        )
            .prop_map(|(a, b, c)| format!("{a}{b}{c}")),
    ]
}

/// Cookie values: hostile strings plus valid values around the size limit.
fn cookie_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => hostile_string(),
        1 => "[!#-+\\--:<-\\[\\]-~]{0,64}",
        1 => (4070usize..4100).prop_map(|n| "a".repeat(n)),
    ]
}

/// `now` from a realistic clock: the Unix epoch to the year 9000.
fn realistic_now() -> impl Strategy<Value = Timestamp> {
    (0u64..221_845_392_000_000).prop_map(Timestamp::from_millis)
}

fn max_age() -> impl Strategy<Value = Option<Duration>> {
    proptest::option::of(prop_oneof![
        (0u64..=MAX_COOKIE_AGE.as_secs() * 2).prop_map(Duration::from_secs),
        any::<u64>().prop_map(Duration::from_millis),
        Just(Duration::MAX),
    ])
}

fn same_site() -> impl Strategy<Value = SameSite> {
    prop_oneof![
        Just(SameSite::Strict),
        Just(SameSite::Lax),
        Just(SameSite::None)
    ]
}

/// What a generated configuration was built from.
#[derive(Debug, Clone)]
struct Spec {
    path: String,
    domain: Option<String>,
    same_site: SameSite,
    http_only: bool,
    secure: bool,
}

fn cookie_config() -> impl Strategy<Value = (CookieConfig, Spec)> {
    // Weighted so that about half the configurations are valid and the
    // attribute checks below run often.
    let name = prop_oneof![
        1 => Just("__Host-id".to_owned()),
        2 => "__(Host|Secure)-[a-zA-Z0-9]{0,6}",
        4 => "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,20}",
        2 => hostile_string(),
    ];
    let path = prop_oneof![
        2 => Just("/".to_owned()),
        3 => "/[ -~]{0,24}",
        1 => hostile_string(),
    ];
    let domain = prop_oneof![
        3 => Just(None),
        2 => "[a-z0-9.-]{1,24}".prop_map(Some),
        1 => hostile_string().prop_map(Some),
    ];
    (
        name,
        path,
        domain,
        same_site(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(name, path, domain, same_site, http_only, insecure)| {
            let mut c = CookieConfig::new()
                .with_name(name)
                .with_path(path.clone())
                .with_same_site(same_site)
                .with_http_only(http_only);
            if let Some(d) = &domain {
                c = c.with_domain(d.clone());
            }
            if insecure {
                c = c.with_insecure_http_for_development();
            }
            let spec = Spec {
                path,
                domain,
                same_site,
                http_only,
                secure: !insecure,
            };
            (c, spec)
        })
}

/// RFC 6265 `cookie-octet`, written out independently of the library.
fn is_cookie_octet(c: char) -> bool {
    matches!(c, '\x21' | '\x23'..='\x2b' | '\x2d'..='\x3a' | '\x3c'..='\x5b' | '\x5d'..='\x7e')
}

// ---------------------------------------------------------------------------
// Set-Cookie (S11, F2)
// ---------------------------------------------------------------------------

/// The attributes a `Set-Cookie` value must carry after `name=value`, in
/// order. `Expires` is matched by prefix.
fn expected_attributes(spec: &Spec, max_age: Option<Duration>) -> Vec<String> {
    let mut attrs = Vec::new();
    if let Some(age) = max_age {
        attrs.push(format!("Max-Age={}", age.min(MAX_COOKIE_AGE).as_secs()));
        attrs.push("Expires=".to_owned());
    }
    attrs.push(format!("Path={}", spec.path));
    if let Some(d) = &spec.domain {
        attrs.push(format!("Domain={d}"));
    }
    if spec.secure {
        attrs.push("Secure".to_owned());
    }
    if spec.http_only {
        attrs.push("HttpOnly".to_owned());
    }
    attrs.push(format!("SameSite={:?}", spec.same_site));
    attrs
}

/// Checks one `Set-Cookie` value: visible ASCII only, exactly the expected
/// `;`-separated parts, and the `name=value` pair reads back through
/// `find_cookie` as exactly `value`.
fn check_set_cookie(
    header: &HeaderValue,
    name: &str,
    value: &str,
    expected: &[String],
) -> Result<(), TestCaseError> {
    let text = header
        .to_str()
        .map_err(|e| TestCaseError::fail(format!("not visible ASCII: {e}")))?;
    prop_assert!(
        text.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "control or non-ASCII byte in {text:?}"
    );
    let parts: Vec<&str> = text.split(';').collect();
    prop_assert_eq!(
        parts.len(),
        expected.len() + 1,
        "wrong number of `;` parts in {:?}",
        text
    );
    let pair = format!("{name}={value}");
    prop_assert_eq!(parts[0], pair.as_str());
    for (part, want) in parts[1..].iter().zip(expected) {
        let part = part.strip_prefix(' ').ok_or_else(|| {
            TestCaseError::fail(format!("attribute without leading space in {text:?}"))
        })?;
        if want == "Expires=" {
            prop_assert!(
                part.starts_with("Expires=") && part.ends_with(" GMT"),
                "{part:?}"
            );
        } else {
            prop_assert_eq!(part, want.as_str());
        }
    }
    // What the browser sends back must parse to the same single value.
    let mut headers = HeaderMap::new();
    headers.append(
        COOKIE,
        HeaderValue::from_str(&pair).map_err(|e| TestCaseError::fail(e.to_string()))?,
    );
    prop_assert_eq!(find_cookie(&headers, name), CookieLookup::Found(value));
    Ok(())
}

proptest! {
    /// S11: no value can add an attribute, a cookie or a header line.
    #[test]
    fn set_cookie_value_cannot_inject(value in cookie_value(), max_age in max_age(), now in realistic_now()) {
        let config = CookieConfig::default();
        let name = config.name().to_owned();
        match config.set_cookie(&value, max_age, now) {
            Ok(header) => {
                let spec = Spec {
                    path: "/".into(),
                    domain: None,
                    same_site: SameSite::Lax,
                    http_only: true,
                    secure: true,
                };
                let expected = expected_attributes(&spec, max_age);
                check_set_cookie(&header, &name, &value, &expected)?;
            }
            Err(_) => {
                // Refused only for a reason: a character a cookie cannot hold
                // or the 4096-byte limit (S12).
                prop_assert!(
                    !value.chars().all(is_cookie_octet) || name.len() + value.len() > MAX_COOKIE_BYTES,
                    "valid value refused: {value:?}"
                );
            }
        }
    }

    /// S10/S11: a configuration either fails `validate()` or yields clean
    /// `Set-Cookie` and removal values with only its own attributes.
    #[test]
    fn cookie_config_cannot_inject((config, spec) in cookie_config(), max_age in max_age(), now in realistic_now()) {
        if config.validate().is_err() {
            return Ok(());
        }
        // What validate() let through: the checks below rely on it.
        prop_assert!(!spec.path.contains(';'));
        prop_assert!(spec.domain.as_ref().is_none_or(|d| !d.contains(';')));
        let name = config.name().to_owned();
        prop_assert_eq!(config.is_secure(), spec.secure);
        let header = config
            .set_cookie("abc", max_age, now)
            .map_err(|e| TestCaseError::fail(format!("valid config refused a valid value: {e}")))?;
        check_set_cookie(&header, &name, "abc", &expected_attributes(&spec, max_age))?;
        // The removal cookie mirrors every attribute of the cookie it removes
        // (S14), with an empty value and Max-Age=0.
        let removal_expected: Vec<String> = ["Max-Age=0".to_owned(), "Expires=".to_owned()]
            .into_iter()
            .chain(expected_attributes(&spec, None))
            .collect();
        check_set_cookie(&config.removal_cookie(), &name, "", &removal_expected)?;
    }
}

/// Examples of what the generated configurations cover.
#[test]
fn cookie_config_known_parts() {
    let config = CookieConfig::new()
        .with_name("__Secure-sid")
        .with_path("/app, x=y")
        .with_domain("example.com")
        .with_same_site(SameSite::Strict)
        .with_http_only(false);
    assert!(config.validate().is_ok());
    let header = config
        .set_cookie("v", None, Timestamp::EPOCH)
        .expect("valid config and value");
    assert_eq!(
        header,
        "__Secure-sid=v; Path=/app, x=y; Domain=example.com; Secure; SameSite=Strict"
    );
    for bad in ["/a;b", "/a\r\nb", "/ü", "x"] {
        assert!(
            CookieConfig::new()
                .with_name("sid")
                .with_path(bad)
                .validate()
                .is_err(),
            "{bad:?}"
        );
    }
    for bad in ["a;b", "a b", "", "a=b", "ü"] {
        assert!(
            CookieConfig::new().with_name(bad).validate().is_err(),
            "{bad:?}"
        );
    }
}

proptest! {
    /// `set_cookie` with a `Max-Age` never panics, whatever the clock says
    /// (HTTP dates end at year 9999; found by the F2 fuzz target).
    #[test]
    fn set_cookie_never_panics_for_any_clock(now in any::<u64>(), secs in 0u64..=MAX_COOKIE_AGE.as_secs()) {
        let config = CookieConfig::default();
        let result = std::panic::catch_unwind(|| {
            config
                .set_cookie("abc", Some(Duration::from_secs(secs)), Timestamp::from_millis(now))
                .is_ok()
        });
        prop_assert!(result.is_ok(), "panicked for now = {now} ms, max_age = {secs} s");
    }
}

// ---------------------------------------------------------------------------
// Cookie header parsing (F1, S16)
// ---------------------------------------------------------------------------

proptest! {
    /// F1: any `Cookie` header bytes, split across any number of headers,
    /// are parsed without panicking, and a found value never spans a `;`.
    #[test]
    fn find_cookie_never_panics(
        raw in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..96), 0..4),
        name in prop_oneof![Just("__Host-id".to_owned()), "[a-z]{1,3}", hostile_string()],
    ) {
        let mut headers = HeaderMap::new();
        for bytes in &raw {
            if let Ok(v) = HeaderValue::from_bytes(bytes) {
                headers.append(COOKIE, v);
            }
        }
        if let CookieLookup::Found(v) = find_cookie(&headers, &name) {
            prop_assert!(!v.contains(';'));
            // A presented value then goes to the ID parser (S5).
            let _ = SessionId::parse(v);
        }
    }

    /// S16: with well-formed pairs the answer matches a count of the name:
    /// absent, found with exactly its value, or duplicate.
    #[test]
    fn find_cookie_matches_model(
        pairs in prop::collection::vec(("[a-c]{1,2}", "[!#-+\\--:<-\\[\\]-~]{0,12}"), 0..8),
        split_at in any::<prop::sample::Index>(),
        name in "[a-c]{1,2}",
    ) {
        let rendered: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let cut = if rendered.is_empty() { 0 } else { split_at.index(rendered.len() + 1) };
        let mut headers = HeaderMap::new();
        for chunk in [&rendered[..cut], &rendered[cut..]] {
            if !chunk.is_empty() {
                let v = HeaderValue::from_str(&chunk.join("; ")).map_err(|e| TestCaseError::fail(e.to_string()))?;
                headers.append(COOKIE, v);
            }
        }
        let matching: Vec<&String> = pairs.iter().filter(|(n, _)| *n == name).map(|(_, v)| v).collect();
        let want = match matching.as_slice() {
            [] => CookieLookup::Absent,
            [v] => CookieLookup::Found(v.as_str()),
            _ => CookieLookup::Duplicate,
        };
        prop_assert_eq!(find_cookie(&headers, &name), want);
    }
}

// ---------------------------------------------------------------------------
// Session IDs (F3, S5)
// ---------------------------------------------------------------------------

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The canonical form, written out independently: 43 base64url characters
/// whose last one carries no bits past the 256th (its low two bits are 0).
fn is_canonical_id(text: &str) -> bool {
    let raw = text.as_bytes();
    raw.len() == 43
        && raw.iter().all(|c| B64URL.contains(c))
        && B64URL
            .iter()
            .position(|c| *c == raw[42])
            .is_some_and(|i| i & 0b11 == 0)
}

fn id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        hostile_string(),
        "[A-Za-z0-9_-]{43}",
        "[A-Za-z0-9_+/=-]{42,44}",
        "[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]",
        // A real ID with one byte replaced.
        (any::<[u8; 32]>(), 0usize..43, any::<u8>()).prop_map(|(bytes, at, b)| {
            let mut text = SessionId::from_bytes(bytes)
                .expose_secret()
                .as_bytes()
                .to_vec();
            text[at] = b;
            String::from_utf8_lossy(&text).into_owned()
        }),
    ]
}

proptest! {
    /// F3/S5: `parse` never panics and accepts exactly the canonical
    /// 43-character base64url spelling, which it keeps verbatim.
    #[test]
    fn session_id_parse_is_exact(text in id_like()) {
        match SessionId::parse(&text) {
            Ok(id) => {
                prop_assert!(is_canonical_id(&text), "accepted non-canonical {text:?}");
                prop_assert_eq!(id.expose_secret(), text.as_str());
                let rebuilt = SessionId::from_bytes(*id.as_bytes());
                prop_assert_eq!(rebuilt.expose_secret(), text.as_str());
            }
            Err(_) => prop_assert!(!is_canonical_id(&text), "refused canonical {text:?}"),
        }
    }

    /// Every generated or constructed ID parses back to itself.
    #[test]
    fn session_id_round_trip(bytes in any::<[u8; 32]>()) {
        let id = SessionId::from_bytes(bytes);
        let parsed = SessionId::parse(id.expose_secret()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.as_bytes(), &bytes);
        prop_assert_eq!(parsed.storage_key(), id.storage_key());
    }
}

// ---------------------------------------------------------------------------
// Records (F6)
// ---------------------------------------------------------------------------

/// Values as the session layer stores them: MessagePack of JSON-like data.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        ".{0,16}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Metadata text within the format's 1 KiB bound.
fn meta_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        ".{0,24}",
        (1000usize..=1024).prop_map(|n| "u".repeat(n))
    ])
}

fn record() -> impl Strategy<Value = Record> {
    let times = (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    );
    let meta = (
        any::<bool>(),
        meta_text(),
        proptest::option::of(any::<u64>()),
        meta_text(),
        meta_text(),
    );
    let data = prop::collection::btree_map(
        prop_oneof!["[a-z_]{1,12}", ".{1,64}"],
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..48).prop_map(Either::Raw),
            json_value().prop_map(Either::Json),
        ],
        0..12,
    );
    (times, meta, data).prop_map(
        |((version, created, idle_dl, abs_dl, idle_ms), (remember, user, auth, ua, ip), data)| {
            let mut r = Record::new(
                Timestamp::from_millis(created),
                Duration::from_millis(idle_ms),
                Duration::ZERO,
            );
            r.version = version;
            r.idle_deadline = Timestamp::from_millis(idle_dl);
            r.absolute_deadline = Timestamp::from_millis(abs_dl);
            r.remember_me = remember;
            r.user = user;
            r.auth_time = auth.map(Timestamp::from_millis);
            r.device = Device { user_agent: ua, ip };
            for (k, v) in data {
                match v {
                    Either::Raw(b) => {
                        let _ = r.insert_raw(k, Bytes::from(b));
                    }
                    Either::Json(j) => {
                        // Every JSON value serializes; a failure would be a bug.
                        if r.insert(&k, &j).is_err() {
                            let _ = r.insert_raw(k, Bytes::new());
                        }
                    }
                }
            }
            r
        },
    )
}

#[derive(Debug, Clone)]
enum Either {
    Raw(Vec<u8>),
    Json(serde_json::Value),
}

/// Ways to damage a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Set(prop::sample::Index, u8),
    Flip(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Insert(prop::sample::Index, Vec<u8>),
    Remove(prop::sample::Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..8)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<prop::sample::Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        Mutation::Set(i, b) => {
            let at = i.index(bytes.len());
            bytes[at] = *b;
        }
        Mutation::Flip(i, bit) => {
            let at = i.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        Mutation::Insert(i, b) => {
            let at = i.index(bytes.len() + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let at = i.index(bytes.len());
            let end = (at + n).min(bytes.len());
            bytes.drain(at..end);
        }
    }
}

/// Whatever `decode` accepts must survive another encode/decode unchanged.
fn check_decoded_is_stable(bytes: Bytes) -> Result<(), TestCaseError> {
    if let Ok(r) = Record::decode(&bytes) {
        let again = r.encode();
        prop_assert_eq!(again.len(), r.encoded_len());
        let back = Record::decode(&again)
            .map_err(|e| TestCaseError::fail(format!("re-encoding refused: {e}")))?;
        prop_assert_eq!(back, r);
    }
    Ok(())
}

proptest! {
    /// F6: records within the format's bounds survive encode/decode exactly.
    #[test]
    fn record_round_trip(r in record()) {
        let bytes = r.encode();
        prop_assert_eq!(bytes.len(), r.encoded_len());
        let back = Record::decode(&bytes).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(back, r);
    }

    /// F6: arbitrary bytes never panic the decoder; some start with the
    /// current format byte so the parse gets past the version check.
    #[test]
    fn record_decode_arbitrary_bytes(mut raw in prop::collection::vec(any::<u8>(), 0..256), versioned in any::<bool>()) {
        if versioned {
            raw.insert(0, cloakroom::RECORD_FORMAT_VERSION);
        }
        check_decoded_is_stable(Bytes::from(raw))?;
    }

    /// F6: damaged valid encodings (bit flips, truncation, insertions,
    /// deletions) never panic the decoder.
    #[test]
    fn record_decode_mutated(r in record(), mutations in prop::collection::vec(mutation(), 1..4)) {
        let mut bytes = r.encode().to_vec();
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        check_decoded_is_stable(Bytes::from(bytes))?;
    }

    /// Stored value bytes are read with a depth limit and never panic.
    #[test]
    fn decode_value_never_panics(raw in prop::collection::vec(any::<u8>(), 0..128)) {
        let _ = decode_value::<serde_json::Value>(&raw);
        let _ = decode_value::<u64>(&raw);
        let _ = decode_value::<String>(&raw);
    }
}

proptest! {
    /// Keys the decoder would refuse are refused on insert, so a record
    /// can never be saved in a form that cannot be loaded again.
    #[test]
    fn record_refuses_keys_its_decoder_refuses(len in 257usize..70_000) {
        let mut r = Record::new(Timestamp::EPOCH, Duration::from_secs(1), Duration::from_secs(2));
        prop_assert!(r.insert(&"k".repeat(len), &1u8).is_err());
        prop_assert!(r.insert_raw("k".repeat(len), Bytes::from_static(b"\x01")).is_err());
        prop_assert!(r.is_empty());
    }

    /// The principal is stored exactly, however long: two users sharing a
    /// prefix never load back as one. (Device metadata is documented to be
    /// truncated to 1 KiB.)
    #[test]
    fn record_with_long_user_round_trips(len in 1025usize..5000) {
        let mut r = Record::new(Timestamp::EPOCH, Duration::from_secs(1), Duration::from_secs(2));
        r.user = Some("u".repeat(len));
        r.device.user_agent = Some("a".repeat(len));
        let back = Record::decode(&r.encode()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back.user, &r.user);
        let truncated = "a".repeat(1024);
        prop_assert_eq!(back.device.user_agent.as_deref(), Some(truncated.as_str()));
        prop_assert_eq!(r.encode().len(), r.encoded_len());
    }

    /// `idle_timeout` is documented to be stored with millisecond
    /// precision: a sub-millisecond part is dropped, nothing else changes.
    #[test]
    fn record_timeout_keeps_milliseconds(nanos in 1u32..1_000_000) {
        let r = Record::new(Timestamp::EPOCH, Duration::new(1, nanos), Duration::from_secs(2));
        let back = Record::decode(&r.encode()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.idle_timeout, Duration::from_secs(1));
    }
}
