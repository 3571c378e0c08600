//! `stats` of the DynamoDB store: a paginated, filtered `Scan`.

use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoStore;
use super::error::sdk_error;
use super::item::{self as it, Item, head};
use crate::expiry::Timestamp;
use crate::store::{StoreError, StoreStats};

/// Items each `Scan` page evaluates at most.
const SCAN_PAGE: i32 = 500;

impl DynamoStore {
    /// Scans the table page by page (at most [`SCAN_PAGE`] items evaluated
    /// each, filtered server-side to unexpired items), decoding each live
    /// session item; index items are passed over. An undecodable item is
    /// skipped and makes the counts inexact. Reads are strongly consistent
    /// per page, not a snapshot of the whole table.
    pub(super) async fn stats_at(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats::new(super::BACKEND);
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(self.table.as_ref())
                .filter_expression("#exp > :now")
                .expression_attribute_names("#exp", it::EXPIRES)
                .expression_attribute_values(":now", AttributeValue::N(now.as_millis().to_string()))
                .consistent_read(true)
                .limit(SCAN_PAGE)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in page.items() {
                if it::session_key_of(item).is_none() {
                    continue;
                }
                let live = head(item).is_ok_and(|h| h.is_live(now));
                if !live {
                    continue;
                }
                match it::decode(item) {
                    Ok(record) => stats.count(&record, now),
                    Err(_) => stats.exact = false,
                }
            }
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(stats),
            }
        }
    }
}
