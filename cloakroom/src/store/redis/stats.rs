//! `stats` of the Redis store: `SCAN` over the session keys of the
//! store's prefix on every primary, reading each session's record.

use redis::Value;

use super::conn::{batches, join_all};
use super::reply::{array, decode, fields, opt_bytes, other, parse_ms};
use super::{BACKEND, RedisStore};
use crate::expiry::Timestamp;
use crate::store::{StoreError, StoreStats};

/// The `COUNT` hint of each `SCAN` call: keys looked at per round trip.
const SCAN_COUNT: usize = 500;

impl RedisStore {
    /// Counts the live sessions: `SCAN {prefix}s:*` on the server (on every
    /// primary of a cluster), then `HMGET r i` of each key found, at most
    /// [`batches`] in flight. A key that expires between the two is not
    /// counted; an undecodable record is skipped and makes the counts
    /// inexact. `SCAN` reports every key present for the whole scan, so
    /// sessions created or deleted during it may or may not be counted.
    pub(super) async fn count_live(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats::new(BACKEND);
        let pattern = format!("{}s:*", glob_escape(self.prefix()));
        for node in self.client.primaries().await? {
            let mut cursor = b"0".to_vec();
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(&cursor[..])
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let mut reply = array(self.client.cmd_on(&node, &scan).await?)?.into_iter();
                let (Some(next), Some(keys), None) = (reply.next(), reply.next(), reply.next())
                else {
                    return Err(other("SCAN answered with the wrong shape"));
                };
                cursor = opt_bytes(next)?.ok_or_else(|| other("SCAN answered with no cursor"))?;
                let keys = array(keys)?
                    .into_iter()
                    .map(opt_bytes)
                    .collect::<Result<Vec<_>, _>>()?;
                let keys: Vec<Vec<u8>> = keys.into_iter().flatten().collect();
                for chunk in batches(&keys) {
                    let reads = join_all(chunk.iter().map(|key| self.read_fields(key))).await;
                    for read in reads {
                        let [r, i] = fields::<2>(read?)?;
                        let (Some(r), Some(i)) = (r, i) else {
                            continue; // Gone since the scan saw it.
                        };
                        match parse_ms(&i).and_then(|i| decode(r, i)) {
                            Ok(record) => stats.count(&record, now),
                            Err(_) => stats.exact = false,
                        }
                    }
                }
                if cursor == b"0" {
                    break;
                }
            }
        }
        Ok(stats)
    }

    async fn read_fields(&self, key: &[u8]) -> Result<Value, StoreError> {
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(key).arg(&["r", "i"]);
        self.client.cmd(&hmget).await
    }
}

/// `prefix` as a literal in a `SCAN MATCH` glob.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefixes_match_literally() {
        assert_eq!(super::glob_escape("app:*[x]?\\:"), "app:\\*\\[x\\]\\?\\\\:");
    }
}
