//! The table: checking it at start-up, and creating it with its TTL
//! (`cloakroom dynamodb-create-table`, or [`DynamoStore::create_table`]).

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};

use super::error::{build_error, sdk_error};
use super::item::{PK, SK, TTL};
use super::{BACKEND, DynamoStore};
use crate::store::StoreError;

/// How long `create_table` waits for a new table to become active.
const ACTIVE_WAIT: Duration = Duration::from_secs(120);

impl DynamoStore {
    /// Checks that the table exists and has the store's key schema
    /// (`pk` string hash key, `sk` string range key).
    ///
    /// # Errors
    ///
    /// [`StoreError::Other`] for a missing table (saying how to create it)
    /// or one with another key schema; [`StoreError::Unavailable`] if
    /// DynamoDB does not answer.
    pub async fn check_table(&self) -> Result<(), StoreError> {
        let described = self
            .client
            .describe_table()
            .table_name(self.table.as_ref())
            .send()
            .await;
        let table = match described {
            Ok(d) => d.table,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Err(StoreError::other_in(
                    BACKEND,
                    format!(
                        "table {:?} does not exist; create it with `cloakroom dynamodb-create-table --store URL` or DynamoStore::create_table",
                        self.table
                    ),
                ));
            }
            Err(e) => return Err(sdk_error(e)),
        };
        let schema: Vec<(String, KeyType)> = table
            .map(|t| t.key_schema.unwrap_or_default())
            .unwrap_or_default()
            .into_iter()
            .map(|k| (k.attribute_name, k.key_type))
            .collect();
        let expected = vec![
            (PK.to_owned(), KeyType::Hash),
            (SK.to_owned(), KeyType::Range),
        ];
        if schema != expected {
            return Err(StoreError::other_in(
                BACKEND,
                format!(
                    "table {:?} does not have the session store's key schema (pk: string hash key, sk: string range key)",
                    self.table
                ),
            ));
        }
        Ok(())
    }

    /// Creates the table (on-demand billing, `pk`/`sk` string keys) if it
    /// does not exist, waits until it is active, and enables DynamoDB's TTL
    /// on the `ttl` attribute if it is not enabled yet. Idempotent.
    ///
    /// # Errors
    ///
    /// [`StoreError::Other`] if DynamoDB refuses (permissions, limits), or
    /// the table stays inactive for two minutes; [`StoreError::Unavailable`]
    /// if it does not answer.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(build_error)
        };
        let created = self
            .client
            .create_table()
            .table_name(self.table.as_ref())
            .attribute_definitions(attribute(PK)?)
            .attribute_definitions(attribute(SK)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(sdk_error(e)),
        }
        self.wait_active().await?;
        self.check_table().await?;
        self.enable_ttl().await
    }

    async fn wait_active(&self) -> Result<(), StoreError> {
        let started = tokio::time::Instant::now();
        loop {
            let status = self
                .client
                .describe_table()
                .table_name(self.table.as_ref())
                .send()
                .await
                .map_err(sdk_error)?
                .table
                .and_then(|t| t.table_status);
            if status == Some(TableStatus::Active) {
                return Ok(());
            }
            if started.elapsed() > ACTIVE_WAIT {
                return Err(StoreError::other_in(
                    BACKEND,
                    format!("table {:?} did not become active in time", self.table),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn enable_ttl(&self) -> Result<(), StoreError> {
        let current = self
            .client
            .describe_time_to_live()
            .table_name(self.table.as_ref())
            .send()
            .await
            .map_err(sdk_error)?
            .time_to_live_description;
        let on = current.as_ref().is_some_and(|d| {
            matches!(
                d.time_to_live_status,
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            ) && d.attribute_name.as_deref() == Some(TTL)
        });
        if on {
            return Ok(());
        }
        self.client
            .update_time_to_live()
            .table_name(self.table.as_ref())
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL)
                    .build()
                    .map_err(build_error)?,
            )
            .send()
            .await
            .map(drop)
            .map_err(sdk_error)
    }
}
