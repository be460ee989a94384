//! The table definition (template.yaml declares the same; a test compares them).

use super::*;
use aws_sdk_dynamodb::types::{StreamSpecification, StreamViewType};

/// A global secondary index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: &'static str,
    pub hash_key: &'static str,
    pub range_key: &'static str,
    /// DynamoDB projection type: `ALL`.
    pub projection: &'static str,
}

/// The table's shape. Billing is on demand (`PAY_PER_REQUEST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    pub hash_key: &'static str,
    pub range_key: &'static str,
    /// Every key attribute of the table and its indexes, all of type `S`.
    pub string_attributes: &'static [&'static str],
    pub indexes: &'static [IndexSpec],
    pub ttl_attribute: &'static str,
    pub billing_mode: &'static str,
    /// The stream's view type (`NEW_AND_OLD_IMAGES`): the events function compares the images
    /// to tell a relabel or an activation from any other change of the item.
    pub stream_view_type: &'static str,
}

pub const TABLE: TableSpec = TableSpec {
    hash_key: PK,
    range_key: SK,
    string_attributes: &[PK, SK, GSI1PK, GSI1SK, GSI2PK, GSI2SK],
    indexes: &[
        IndexSpec {
            name: GSI1,
            hash_key: GSI1PK,
            range_key: GSI1SK,
            projection: "ALL",
        },
        IndexSpec {
            name: GSI2,
            hash_key: GSI2PK,
            range_key: GSI2SK,
            projection: "ALL",
        },
    ],
    ttl_attribute: TTL_ATTRIBUTE,
    billing_mode: "PAY_PER_REQUEST",
    stream_view_type: "NEW_AND_OLD_IMAGES",
};

pub(super) fn build<T>(op: &'static str, r: Result<T, BuildError>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Rejected(format!("DynamoDB {op}: invalid request: {e}")))
}

pub(super) fn key_element(name: &str, key_type: KeyType) -> Result<KeySchemaElement, StoreError> {
    build(
        "CreateTable",
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build(),
    )
}

impl TableSpec {
    /// A CreateTable request for this definition.
    pub fn create_table(
        &self,
        client: &Client,
        name: &str,
    ) -> Result<aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder, StoreError> {
        let mut req = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::from(self.billing_mode))
            .key_schema(key_element(self.hash_key, KeyType::Hash)?)
            .key_schema(key_element(self.range_key, KeyType::Range)?)
            .stream_specification(build(
                "CreateTable",
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::from(self.stream_view_type))
                    .build(),
            )?);
        for a in self.string_attributes {
            req = req.attribute_definitions(build(
                "CreateTable",
                AttributeDefinition::builder()
                    .attribute_name(*a)
                    .attribute_type(ScalarAttributeType::S)
                    .build(),
            )?);
        }
        for ix in self.indexes {
            req = req.global_secondary_indexes(build(
                "CreateTable",
                GlobalSecondaryIndex::builder()
                    .index_name(ix.name)
                    .key_schema(key_element(ix.hash_key, KeyType::Hash)?)
                    .key_schema(key_element(ix.range_key, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(ix.projection))
                            .build(),
                    )
                    .build(),
            )?);
        }
        Ok(req)
    }
}

/// Creates the table (and turns on TTL) unless it exists. Returns whether it was created.
pub async fn create_table_if_missing(client: &Client, name: &str) -> Result<bool, StoreError> {
    let created = match client.describe_table().table_name(name).send().await {
        Ok(_) => false,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            match TABLE.create_table(client, name)?.send().await {
                Ok(_) => true,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => false,
                Err(e) => return Err(sdk_error("CreateTable", e)),
            }
        }
        Err(e) => return Err(sdk_error("DescribeTable", e)),
    };
    // Real DynamoDB takes a few seconds to make a table ACTIVE; moto is immediate.
    for attempt in 0.. {
        let out = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTable", e))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            break;
        }
        if attempt >= 120 {
            return Err(StoreError::Unavailable(format!("table {name} did not become ACTIVE")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A table made before the stream existed (a local stack) gets it now.
    let described = client
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTable", e))?;
    let streaming = described
        .table()
        .and_then(|t| t.stream_specification())
        .is_some_and(|s| s.stream_enabled());
    if !streaming {
        let spec = build(
            "UpdateTable",
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(TABLE.stream_view_type))
                .build(),
        )?;
        client
            .update_table()
            .table_name(name)
            .stream_specification(spec)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateTable", e))?;
    }
    let ttl = client
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTimeToLive", e))?;
    let status = ttl.time_to_live_description().and_then(|d| d.time_to_live_status());
    if !matches!(status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)) {
        let spec = build(
            "UpdateTimeToLive",
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TABLE.ttl_attribute)
                .build(),
        )?;
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateTimeToLive", e))?;
    }
    Ok(created)
}

/// The ARN of the table's stream (what a local poller reads; Lambda's event source mapping in
/// template.yaml names it itself).
pub async fn stream_arn(client: &Client, name: &str) -> Result<Option<String>, StoreError> {
    let out = client
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTable", e))?;
    Ok(out.table().and_then(|t| t.latest_stream_arn()).map(str::to_owned))
}
