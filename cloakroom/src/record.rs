//! The session record and its versioned binary encoding.
//!
//! A [`Record`] is what a store keeps for one session: the data (string keys
//! to serde values) and the metadata the server needs to enforce expiry and
//! list a user's devices.
//!
//! # Wire format (version 1)
//!
//! ```text
//! u8  format version (= 1)
//! u64 version, created_at, idle_deadline, absolute_deadline, idle_timeout_ms
//! u8  flags: 1 remember_me, 2 user, 4 auth_time, 8 user_agent, 16 ip
//! [u32 len + UTF-8]  user        (if flag 2)
//! [u64]              auth_time   (if flag 4)
//! [u32 len + UTF-8]  user_agent  (if flag 8)
//! [u32 len + UTF-8]  ip          (if flag 16)
//! u32 entry count, then per entry: u16 key len, key, u32 value len, value
//! ```
//!
//! All integers are big-endian. Each value is MessagePack (self-describing,
//! so a value written as a struct can be read as `serde_json::Value`) and is
//! kept encoded until a handler reads it; saving copies the bytes of
//! untouched values instead of re-encoding them. Decoding is data-only and
//! bounded: total size, key length, entry count and value nesting depth are
//! all limited, and anything malformed is [`DecodeError`], never a panic.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::expiry::Timestamp;

/// Current record format version, the first byte of every encoded record.
pub const RECORD_FORMAT_VERSION: u8 = 1;
/// Largest encoded record accepted by [`Record::decode`]: 1 MiB.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Longest value name (the key of `insert`/`get`), in bytes.
pub const MAX_VALUE_NAME_BYTES: usize = 256;
/// Most entries in one record.
pub const MAX_RECORD_ENTRIES: usize = 4096;
/// Deepest nesting a stored value may have when decoded.
pub const MAX_VALUE_DEPTH: usize = 64;
const MAX_TEXT_BYTES: usize = 1024;

const FLAG_REMEMBER: u8 = 1;
const FLAG_USER: u8 = 2;
const FLAG_AUTH_TIME: u8 = 4;
const FLAG_UA: u8 = 8;
const FLAG_IP: u8 = 16;
const KNOWN_FLAGS: u8 = FLAG_REMEMBER | FLAG_USER | FLAG_AUTH_TIME | FLAG_UA | FLAG_IP;

/// Device metadata shown in a user's session listing.
///
/// Each field is stored truncated to 1 KiB (on a character boundary): it is
/// informational, and a hostile `User-Agent` must not bloat records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// The `User-Agent` header at sign-in, truncated to 1 KiB.
    pub user_agent: Option<String>,
    /// The client address at sign-in, as the application reported it.
    pub ip: Option<String>,
}

/// A value's key: UTF-8, checked when it entered the record, sharing the
/// decoded buffer. Ordered and looked up as bytes, which orders exactly as
/// `str` does.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key(Bytes);

impl Key {
    fn as_str(&self) -> &str {
        // Every constructor checks UTF-8, so the fallback never shows.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Everything a store keeps for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    data: BTreeMap<Key, Bytes>,
    /// Incremented by every save; the compare-and-swap token.
    pub version: u64,
    /// When the session was created. Fixes the absolute deadline.
    pub created_at: Timestamp,
    /// `last_seen + idle_timeout`; moved forward by activity.
    pub idle_deadline: Timestamp,
    /// `created_at + absolute_timeout`; never moved.
    pub absolute_deadline: Timestamp,
    /// The idle timeout this session lives under (longer for remember-me).
    /// Stored with millisecond precision.
    pub idle_timeout: Duration,
    /// Whether the session is remember-me (persistent cookie).
    pub remember_me: bool,
    /// The signed-in principal, if any. Stored exactly (never truncated:
    /// two principals must never load back as one), bounded only by the
    /// record size; [`Session::login`](crate::Session::login) accepts at
    /// most 1 KiB.
    pub user: Option<String>,
    /// When the user last proved who they are (password, passkey, ...).
    pub auth_time: Option<Timestamp>,
    /// Device metadata for session listings.
    pub device: Device,
}

/// Why an encoded record or value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The record was written by a format this build does not know.
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    /// The record is larger than [`MAX_RECORD_BYTES`].
    #[error("record of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The bytes are not a well-formed record.
    #[error("malformed record: {0}")]
    Malformed(&'static str),
    /// A value does not deserialize into the requested type.
    #[error("value does not match the requested type: {0}")]
    Value(String),
    /// A stored name is empty or longer than [`MAX_VALUE_NAME_BYTES`].
    #[error("record keys must be 1 to {MAX_VALUE_NAME_BYTES} bytes long")]
    InvalidKey,
}

/// Why a value could not be put into a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The name is empty or longer than [`MAX_VALUE_NAME_BYTES`].
    #[error("value names must be 1 to {MAX_VALUE_NAME_BYTES} bytes long")]
    InvalidName,
    /// The value cannot be serialized.
    #[error("value cannot be encoded: {0}")]
    Value(String),
}

impl Record {
    /// A fresh, empty record created at `now`, living under the given
    /// timeouts.
    #[must_use]
    pub fn new(now: Timestamp, idle_timeout: Duration, absolute_timeout: Duration) -> Self {
        Self {
            data: BTreeMap::new(),
            version: 0,
            created_at: now,
            idle_deadline: now.saturating_add(idle_timeout),
            absolute_deadline: now.saturating_add(absolute_timeout),
            idle_timeout,
            remember_me: false,
            user: None,
            auth_time: None,
            device: Device::default(),
        }
    }

    /// When the session was last active: `idle_deadline - idle_timeout`.
    #[must_use]
    pub fn last_seen(&self) -> Timestamp {
        self.idle_deadline.saturating_sub(self.idle_timeout)
    }

    /// The earlier of the two deadlines: the store's TTL.
    #[must_use]
    pub fn expires_at(&self) -> Timestamp {
        self.idle_deadline.min(self.absolute_deadline)
    }

    /// Whether the session is still live at `now` (S19, S20).
    #[must_use]
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at()
    }

    /// The encoded bytes of one value.
    #[must_use]
    pub fn get_raw(&self, key: &str) -> Option<&Bytes> {
        self.data.get(key.as_bytes())
    }

    /// Decodes one value into `T`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Value`] when the stored value is not a `T` (the value
    /// itself is left as it was).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DecodeError> {
        self.data
            .get(key.as_bytes())
            .map(|raw| decode_value(raw))
            .transpose()
    }

    /// Stores already-encoded value bytes (from [`encode_value`]).
    ///
    /// # Errors
    ///
    /// [`DecodeError::InvalidKey`] for an empty key or one over
    /// [`MAX_VALUE_NAME_BYTES`]; the record is unchanged.
    pub fn insert_raw(&mut self, key: String, value: Bytes) -> Result<(), EncodeError> {
        check_name(&key)?;
        self.data.insert(Key(Bytes::from(key)), value);
        Ok(())
    }

    /// Encodes and stores one value.
    ///
    /// # Errors
    ///
    /// [`DecodeError::InvalidKey`] for a bad key, [`DecodeError::Value`]
    /// when `T`'s `Serialize` fails; the record is unchanged.
    pub fn insert<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), EncodeError> {
        check_name(key)?;
        let value = encode_value(value)?;
        self.data
            .insert(Key(Bytes::copy_from_slice(key.as_bytes())), value);
        Ok(())
    }

    /// Removes one value, returning its encoded bytes.
    pub fn remove(&mut self, key: &str) -> Option<Bytes> {
        self.data.remove(key.as_bytes())
    }

    /// Removes every value (metadata stays).
    pub fn clear(&mut self) {
        self.data.clear();
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.data.keys().map(Key::as_str)
    }

    /// Number of values.
    #[must_use]
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no values.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The record in the binary format described in the module docs.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let data_len: usize = self.data.iter().map(|(k, v)| 6 + k.0.len() + v.len()).sum();
        let mut out = BytesMut::with_capacity(64 + data_len);
        out.put_u8(RECORD_FORMAT_VERSION);
        out.put_u64(self.version);
        out.put_u64(self.created_at.as_millis());
        out.put_u64(self.idle_deadline.as_millis());
        out.put_u64(self.absolute_deadline.as_millis());
        out.put_u64(u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX));
        let mut flags = 0;
        if self.remember_me {
            flags |= FLAG_REMEMBER;
        }
        if self.user.is_some() {
            flags |= FLAG_USER;
        }
        if self.auth_time.is_some() {
            flags |= FLAG_AUTH_TIME;
        }
        if self.device.user_agent.is_some() {
            flags |= FLAG_UA;
        }
        if self.device.ip.is_some() {
            flags |= FLAG_IP;
        }
        out.put_u8(flags);
        if let Some(user) = &self.user {
            out.put_u32(len_u32(user.len()));
            out.put_slice(user.as_bytes());
        }
        if let Some(t) = self.auth_time {
            out.put_u64(t.as_millis());
        }
        if let Some(ua) = &self.device.user_agent {
            put_text(&mut out, ua);
        }
        if let Some(ip) = &self.device.ip {
            put_text(&mut out, ip);
        }
        out.put_u32(len_u32(self.data.len()));
        for (k, v) in &self.data {
            out.put_u16(u16::try_from(k.0.len()).unwrap_or(u16::MAX));
            out.put_slice(&k.0);
            out.put_u32(len_u32(v.len()));
            out.put_slice(v);
        }
        out.freeze()
    }

    /// Length of [`Record::encode`]'s output, without encoding.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        let text = |s: &Option<String>| {
            s.as_ref()
                .map_or(0, |s| 4 + truncate_utf8(s, MAX_TEXT_BYTES).len())
        };
        42 + self.user.as_ref().map_or(0, |u| 4 + u.len())
            + self.auth_time.map_or(0, |_| 8)
            + text(&self.device.user_agent)
            + text(&self.device.ip)
            + 4
            + self
                .data
                .iter()
                .map(|(k, v)| 6 + k.0.len() + v.len())
                .sum::<usize>()
    }

    /// Reads a record written by [`Record::encode`]. Values are not decoded
    /// (they share `bytes`' buffer) until a handler asks for them.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for an unknown format version, an oversized record, or
    /// any malformed field. Callers treat such a record as absent.
    pub fn decode(bytes: &Bytes) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let mut r = Reader { buf: bytes.clone() };
        let format = r.u8()?;
        if format != RECORD_FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(format));
        }
        let version = r.u64()?;
        let created_at = Timestamp::from_millis(r.u64()?);
        let idle_deadline = Timestamp::from_millis(r.u64()?);
        let absolute_deadline = Timestamp::from_millis(r.u64()?);
        let idle_timeout = Duration::from_millis(r.u64()?);
        let flags = r.u8()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::Malformed("unknown flags"));
        }
        let user = (flags & FLAG_USER != 0)
            .then(|| r.text_up_to(MAX_RECORD_BYTES))
            .transpose()?;
        let auth_time = (flags & FLAG_AUTH_TIME != 0)
            .then(|| r.u64().map(Timestamp::from_millis))
            .transpose()?;
        let user_agent = (flags & FLAG_UA != 0).then(|| r.text()).transpose()?;
        let ip = (flags & FLAG_IP != 0).then(|| r.text()).transpose()?;
        let count = r.u32()? as usize;
        if count > MAX_RECORD_ENTRIES {
            return Err(DecodeError::Malformed("too many entries"));
        }
        let mut data = BTreeMap::new();
        for _ in 0..count {
            let klen = usize::from(r.u16()?);
            if klen == 0 || klen > MAX_VALUE_NAME_BYTES {
                return Err(DecodeError::Malformed("key length out of range"));
            }
            // The key shares the record's buffer: no copy, no allocation.
            let key = r.take(klen)?;
            if std::str::from_utf8(&key).is_err() {
                return Err(DecodeError::Malformed("key is not UTF-8"));
            }
            let key = Key(key);
            let vlen = r.u32()? as usize;
            let value = r.take(vlen)?;
            if data.insert(key, value).is_some() {
                return Err(DecodeError::Malformed("duplicate key"));
            }
        }
        if r.buf.has_remaining() {
            return Err(DecodeError::Malformed("trailing bytes"));
        }
        Ok(Self {
            data,
            version,
            created_at,
            idle_deadline,
            absolute_deadline,
            idle_timeout,
            remember_me: flags & FLAG_REMEMBER != 0,
            user,
            auth_time,
            device: Device { user_agent, ip },
        })
    }
}

fn check_name(name: &str) -> Result<(), EncodeError> {
    if name.is_empty() || name.len() > MAX_VALUE_NAME_BYTES {
        return Err(EncodeError::InvalidName);
    }
    Ok(())
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_text(out: &mut BytesMut, s: &str) {
    // Metadata text is bounded so a hostile User-Agent cannot bloat records.
    let s = truncate_utf8(s, MAX_TEXT_BYTES);
    out.put_u32(len_u32(s.len()));
    out.put_slice(s.as_bytes());
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
#[must_use]
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.remaining() < n {
            Err(DecodeError::Malformed("truncated"))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }
    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }
    fn text(&mut self) -> Result<String, DecodeError> {
        self.text_up_to(MAX_TEXT_BYTES)
    }
    fn text_up_to(&mut self, max: usize) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(DecodeError::Malformed("text field too long"));
        }
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| DecodeError::Malformed("text is not UTF-8"))
    }
}

/// Encodes one value as MessagePack (structs as maps, so they read back as
/// `serde_json::Value` too).
///
/// # Errors
///
/// [`DecodeError::Value`] when `T`'s `Serialize` implementation fails.
pub fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, EncodeError> {
    rmp_serde::to_vec_named(value)
        .map(Bytes::from)
        .map_err(|e| EncodeError::Value(e.to_string()))
}

/// Decodes one value, with nesting limited to [`MAX_VALUE_DEPTH`].
///
/// # Errors
///
/// [`DecodeError::Value`] when the bytes are not a `T`.
pub fn decode_value<T: DeserializeOwned>(raw: &[u8]) -> Result<T, DecodeError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(raw);
    de.set_max_depth(MAX_VALUE_DEPTH);
    T::deserialize(&mut de).map_err(|e| DecodeError::Value(e.to_string()))
}

/// Checks that an encoded value nests no deeper than [`MAX_VALUE_DEPTH`],
/// the limit [`decode_value`] reads back with: what passes here can always
/// be read again.
///
/// # Errors
///
/// [`DecodeError::Value`] when the value nests too deep (or is not
/// MessagePack).
pub(crate) fn check_value_depth(raw: &[u8]) -> Result<(), DecodeError> {
    decode_value::<serde::de::IgnoredAny>(raw).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        let mut r = Record::new(
            Timestamp::from_millis(1_000_000),
            Duration::from_secs(1800),
            Duration::from_secs(43_200),
        );
        r.version = 7;
        r.user = Some("alice".into());
        r.auth_time = Some(Timestamp::from_millis(1_000_500));
        r.device.user_agent = Some("curl/8".into());
        r.insert("cart", &vec![1u32, 2, 3]).unwrap();
        r.insert("name", "Ünïcode").unwrap();
        r
    }

    #[test]
    fn round_trip() {
        let r = sample();
        let bytes = r.encode();
        assert_eq!(bytes.len(), r.encoded_len());
        let back = Record::decode(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.get::<Vec<u32>>("cart").unwrap(), Some(vec![1, 2, 3]));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(
                Record::decode(&bytes.slice(..n)).is_err(),
                "prefix {n} accepted"
            );
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(Record::decode(&Bytes::from(longer)).is_err());
    }

    #[test]
    fn unknown_version() {
        let mut bytes = sample().encode().to_vec();
        bytes[0] = 2;
        assert_eq!(
            Record::decode(&Bytes::from(bytes)),
            Err(DecodeError::UnknownVersion(2))
        );
    }

    #[test]
    fn wrong_type_is_typed_error() {
        let r = sample();
        assert!(matches!(r.get::<u64>("name"), Err(DecodeError::Value(_))));
        // The value is still there.
        assert_eq!(r.get::<String>("name").unwrap().as_deref(), Some("Ünïcode"));
    }

    #[test]
    fn deep_nesting_is_refused() {
        // 10,000 nested one-element arrays: 0x91 is fixarray(1).
        let mut raw = vec![0x91u8; 10_000];
        raw.push(0xc0);
        assert!(decode_value::<serde_json::Value>(&raw).is_err());
    }
}
