//! Writes of one or several items: one conditional single-item call when
//! there is one, else one `TransactWriteItems`, with the outcome told the
//! same way for both.

use std::time::Duration;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::DynamoStore;
use super::error::{build_error, sdk_error};
use super::item::{Condition, Item, Params};
use crate::store::StoreError;

/// One item written: put, update or delete, with an optional condition.
#[derive(Debug, Clone)]
pub(super) enum Write {
    Put {
        item: Item,
        condition: Option<Condition>,
    },
    Update {
        key: Item,
        /// An update expression over `params`' names and values.
        update: &'static str,
        params: Params,
        /// A condition; its names and values are merged with `params`.
        condition: Option<Condition>,
    },
    Delete {
        key: Item,
        condition: Option<Condition>,
    },
}

/// How a write ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Every item was written.
    Done,
    /// The condition of the item at this position failed; nothing was
    /// written.
    ConditionFailed(usize),
}

/// How often a transaction is retried when DynamoDB cancels it for a
/// conflict with another transaction on the same items.
const CONFLICT_ATTEMPTS: u32 = 5;

fn merge(params: Params, condition: Option<&Condition>) -> Params {
    let mut params = params;
    if let Some(c) = condition {
        params.names.extend(c.params.names.clone());
        params.values.extend(c.params.values.clone());
    }
    params
}

fn non_empty<K, V>(m: std::collections::HashMap<K, V>) -> Option<std::collections::HashMap<K, V>> {
    (!m.is_empty()).then_some(m)
}

impl DynamoStore {
    /// Writes `writes` atomically.
    ///
    /// # Errors
    ///
    /// A backend failure; transaction conflicts that outlast the retries
    /// are [`StoreError::Unavailable`].
    pub(super) async fn write(&self, writes: Vec<Write>) -> Result<Outcome, StoreError> {
        if writes.len() == 1 {
            let Some(only) = writes.into_iter().next() else {
                return Ok(Outcome::Done);
            };
            return self.write_one(only).await;
        }
        let items = writes
            .into_iter()
            .map(|w| self.transact_item(w))
            .collect::<Result<Vec<_>, _>>()?;
        for attempt in 0..CONFLICT_ATTEMPTS {
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match sent {
                Ok(_) => return Ok(Outcome::Done),
                Err(e) => e,
            };
            let reasons: Option<Vec<Option<String>>> = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(t)) => Some(t),
                _ => None,
            }
            .map(|t| {
                t.cancellation_reasons()
                    .iter()
                    .map(|r| r.code().map(str::to_owned))
                    .collect()
            });
            let Some(reasons) = reasons else {
                return Err(sdk_error(err));
            };
            if let Some(i) = reasons
                .iter()
                .position(|c| c.as_deref() == Some("ConditionalCheckFailed"))
            {
                return Ok(Outcome::ConditionFailed(i));
            }
            if !reasons
                .iter()
                .any(|c| c.as_deref() == Some("TransactionConflict"))
            {
                return Err(sdk_error(err));
            }
            tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
        }
        Err(StoreError::unavailable_in(
            super::BACKEND,
            "transaction kept conflicting with others on the same session",
        ))
    }

    fn transact_item(&self, w: Write) -> Result<TransactWriteItem, StoreError> {
        let table = Some(self.table.to_string());
        Ok(match w {
            Write::Put { item, condition } => {
                let p = merge(Params::default(), condition.as_ref());
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .set_table_name(table)
                            .set_item(Some(item))
                            .set_condition_expression(condition.map(|c| c.text.to_owned()))
                            .set_expression_attribute_names(non_empty(p.names))
                            .set_expression_attribute_values(non_empty(p.values))
                            .build()
                            .map_err(build_error)?,
                    )
                    .build()
            }
            Write::Update {
                key,
                update,
                params,
                condition,
            } => {
                let p = merge(params, condition.as_ref());
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .set_table_name(table)
                            .set_key(Some(key))
                            .update_expression(update)
                            .set_condition_expression(condition.map(|c| c.text.to_owned()))
                            .set_expression_attribute_names(non_empty(p.names))
                            .set_expression_attribute_values(non_empty(p.values))
                            .build()
                            .map_err(build_error)?,
                    )
                    .build()
            }
            Write::Delete { key, condition } => {
                let p = merge(Params::default(), condition.as_ref());
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .set_table_name(table)
                            .set_key(Some(key))
                            .set_condition_expression(condition.map(|c| c.text.to_owned()))
                            .set_expression_attribute_names(non_empty(p.names))
                            .set_expression_attribute_values(non_empty(p.values))
                            .build()
                            .map_err(build_error)?,
                    )
                    .build()
            }
        })
    }

    async fn write_one(&self, w: Write) -> Result<Outcome, StoreError> {
        let table = self.table.to_string();
        let failed = |e: bool| {
            Ok(if e {
                Outcome::ConditionFailed(0)
            } else {
                Outcome::Done
            })
        };
        match w {
            Write::Put { item, condition } => {
                let p = merge(Params::default(), condition.as_ref());
                let r = self
                    .client
                    .put_item()
                    .table_name(table)
                    .set_item(Some(item))
                    .set_condition_expression(condition.map(|c| c.text.to_owned()))
                    .set_expression_attribute_names(non_empty(p.names))
                    .set_expression_attribute_values(non_empty(p.values))
                    .send()
                    .await;
                match r {
                    Ok(_) => failed(false),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                    {
                        failed(true)
                    }
                    Err(e) => Err(sdk_error(e)),
                }
            }
            Write::Update {
                key,
                update,
                params,
                condition,
            } => {
                let p = merge(params, condition.as_ref());
                let r = self
                    .client
                    .update_item()
                    .table_name(table)
                    .set_key(Some(key))
                    .update_expression(update)
                    .set_condition_expression(condition.map(|c| c.text.to_owned()))
                    .set_expression_attribute_names(non_empty(p.names))
                    .set_expression_attribute_values(non_empty(p.values))
                    .send()
                    .await;
                match r {
                    Ok(_) => failed(false),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                    {
                        failed(true)
                    }
                    Err(e) => Err(sdk_error(e)),
                }
            }
            Write::Delete { key, condition } => {
                let p = merge(Params::default(), condition.as_ref());
                let r = self
                    .client
                    .delete_item()
                    .table_name(table)
                    .set_key(Some(key))
                    .set_condition_expression(condition.map(|c| c.text.to_owned()))
                    .set_expression_attribute_names(non_empty(p.names))
                    .set_expression_attribute_values(non_empty(p.values))
                    .send()
                    .await;
                match r {
                    Ok(_) => failed(false),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                    {
                        failed(true)
                    }
                    Err(e) => Err(sdk_error(e)),
                }
            }
        }
    }
}
