//! `stats` of the SQLite store: the live rows, read in key order one batch
//! per reader call, so requests interleave with a long count.

use rusqlite::params;

use super::{BACKEND, SqliteStore, unavailable};
use crate::expiry::Timestamp;
use crate::store::StoreStats;
use crate::store::kit::sql_millis;
use crate::store::sql::{STATS_BATCH, decode_row};

impl SqliteStore {
    /// Counts the live rows, decoding each record (token families are
    /// known only from the record's data).
    pub(super) async fn count_live(
        &self,
        now: Timestamp,
    ) -> Result<StoreStats, crate::store::StoreError> {
        let mut stats = StoreStats::new(BACKEND);
        let mut after: Vec<u8> = Vec::new();
        loop {
            let from = after.clone();
            let (records, last) = self
                .read(move |conn| {
                    let mut stmt = conn
                        .prepare_cached(
                            "SELECT key, record, idle_deadline FROM cloakroom_sessions
                             WHERE key > ?1 AND expires_at > ?2 ORDER BY key LIMIT ?3",
                        )
                        .map_err(unavailable)?;
                    let rows = stmt
                        .query_map(params![from, sql_millis(now), STATS_BATCH], |r| {
                            Ok((
                                r.get::<_, Vec<u8>>(0)?,
                                r.get::<_, Vec<u8>>(1)?,
                                r.get::<_, i64>(2)?,
                            ))
                        })
                        .map_err(unavailable)?;
                    let mut records = Vec::new();
                    let mut last = None;
                    for row in rows {
                        let (key, bytes, idle) = row.map_err(unavailable)?;
                        records.push(decode_row(bytes, idle)?);
                        last = Some(key);
                    }
                    Ok((records, last))
                })
                .await?;
            for record in &records {
                stats.count(record, now);
            }
            match last {
                Some(key) if records.len() as i64 == STATS_BATCH => after = key,
                _ => return Ok(stats),
            }
        }
    }
}
