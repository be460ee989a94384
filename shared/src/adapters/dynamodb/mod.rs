//! DynamoDB adapter: one table for everything (single-table design).
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | API key | `KEY#<sha256 hex>` | `KEY` | tenant, scopes (SS), key_id, created_at, expires_at (TTL), revoked_at |
//! | key id → hash | `T#<tenant>#KEYID#<key_id>` | `KEYID` | hash, expires_at (TTL) |
//! | decision | `T#<tenant>#TX#<id>` | `DECISION` | the [`DecisionRecord`]; gsi1pk `T#<tenant>#CUST#<customer>`, gsi1sk `<occurred_at>#<id>`; gsi2pk `T#<tenant>#DAY#<yyyy-mm-dd>#<0..16>`, gsi2sk as gsi1sk |
//! | idempotency | `T#<tenant>#IDEM#<key>` | `IDEM` | transaction_id, fingerprint, created_at, expires_at (TTL, +24 h) |
//! | customer aggregate shard | `T#<tenant>#CUST#<id>` (shard 0), `…#<id>#<k>` | `AGG` | `c<day>`, `a<day>`, `f<day>`: count, amount (minor units), frauds per epoch day |
//! | terminal aggregate shard | `T#<tenant>#TERM#<id>` (shard 0), `…#<id>#<k>` | `AGG` | as above |
//! | active model | `T#<tenant>#MODEL` | `ACTIVE` | version, object_key, previous_version, activated_at |
//! | model version | `T#<tenant>#MODEL` | `V#<version>` | [`ModelRegistration`](crate::domain::registry::ModelRegistration), plus [`ImportDetails`](crate::domain::registry::ImportDetails) for uploads |
//! | upload bytes | `T#<tenant>#MODEL` | `SRC#<sha256>` | outcome (JSON): model-import's per-bytes idempotency |
//! | job | `T#<tenant>#JOB#<bucket>/<key>#<etag>` | `JOB` | [`Job`](crate::ports::jobs::Job): status, lease, sequence, the kind's progress, result ([`jobs`]) |
//! | job error chunk | as the job | `ERR#<seq>` | text: lines of the job's error report, expires_at (TTL) |
//! | tenant config | `T#<tenant>` | `CONFIG` | review_threshold, block_threshold, agg_shards, agg_shards_version, ruleset_active, ruleset_prev, ruleset_by, ruleset_at, list_versions |
//! | rule version | `T#<tenant>#RULE#<id>` | `V#<10 digits>` | version, rule (JSON) ([`rules`]) |
//! | rule, latest | `T#<tenant>#RULES` | `<id>` | as the version |
//! | ruleset | `T#<tenant>#RULESET` | `V#<10 digits>` | version, status, ruleset (JSON) |
//! | list meta | `T#<tenant>#LISTS` | `<name>` | [`ListMeta`](crate::domain::rules::ListMeta) |
//! | list entry | `T#<tenant>#LIST#<name>` | `E#<value>` | value, expiry, note, added_by, added_at |
//! | review item | `T#<tenant>#TX#<id>` | `REVIEW` | tenant, transaction_id, status, opened_at, risk_score, claim_holder, claim_expires_at, history, resolution; gsi1pk `T#<tenant>#REVIEWS#<status>`, gsi1sk `ts9(opened_at)#<id>`; gsi2pk `T#<tenant>#REVIEWS-RISK#<status>`, gsi2sk `<100 − risk, 3 digits>#ts9(opened_at)#<id>` ([`reviews`]) |
//! | audit entry | `T#<tenant>#AUDIT` | `ts9(at)#<unique>#<part>` | [`AuditEntry`](crate::domain::rules::AuditEntry) |
//!
//! Every tenant-scoped key is built by [`Keys`]; nothing else formats them. Tenant, customer,
//! terminal and transaction ids are newtypes that cannot contain `#`. The client-chosen parts that
//! may (idempotency key, key id, model version, list value) only ever stand last in a key behind
//! a fixed prefix, so they cannot reach another tenant's or another kind's items.

mod aggregates;
mod api_keys;
mod codec;
mod decisions;
mod imports;
mod issuers;
mod jobs;
mod keys;
mod labels;
mod registry;
mod reviews;
mod rules;
mod stream;
mod table;
mod tenant_config;

pub use aggregates::*;
use api_keys::*;
pub use api_keys::{NewKey, Rotated};
use codec::*;
use decisions::*;
pub use jobs::*;
pub use keys::*;
pub use labels::*;
use registry::*;
pub use stream::*;
pub use table::*;
use tenant_config::*;

use crate::domain::auth::{KeyHash, KeyRecord, Scope};
use crate::domain::decision::{DecisionRecord, IdempotencyKey};
use crate::domain::policy::Thresholds;
use crate::domain::{CustomerId, ListName, RuleId, TenantId, TerminalId, Timestamp, TransactionId};
// The job identity and lifecycle are domain types; job functions take them from here with the store.
use crate::domain::features::{AggregateDelta, DayCounter, EntityAggregate, RETENTION_DAYS};
use crate::domain::labels::{LabelValue, StoredLabel};
pub use crate::domain::{JobStatus, ObjectRef};
use crate::ports::{
    ActiveModel, CommitOutcome, DecisionCommit, DecisionStore, DecisionWindow, IdempotencyRecord, Page,
    ScoringSnapshot, StoreError,
};
use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    KeysAndAttributes, Projection, ProjectionType, Put, ReturnValue, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1: &str = "gsi1";
pub const GSI1PK: &str = "gsi1pk";
pub const GSI1SK: &str = "gsi1sk";
/// Decisions by day, for backtests: `gsi2pk` is `T#<tenant>#DAY#<yyyy-mm-dd>#<shard>`.
pub const GSI2: &str = "gsi2";
pub const GSI2PK: &str = "gsi2pk";
pub const GSI2SK: &str = "gsi2sk";
/// Partitions of one tenant-day in `gsi2`: a day's decisions spread over them (by transaction id)
/// so a busy tenant's writes never queue on one index partition.
pub const DAY_SHARDS: u8 = 16;
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// How long an idempotency record is honoured.
pub const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;
/// Each aggregate update also removes this many days just past retention, so items stay bounded.
pub const PRUNE_DAYS: i32 = 7;
/// Retries of a BatchGetItem's unprocessed keys before giving up.
const UNPROCESSED_RETRIES: u32 = 3;
/// Attempts of a decision commit cancelled only by a concurrent transaction on the same items.
const COMMIT_ATTEMPTS: u32 = 5;
/// Longest accepted history page.
pub const MAX_PAGE: usize = 1000;

/// The [`DecisionStore`] on one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// Tenants' aggregate shard layouts, shared by clones.
    layouts: std::sync::Arc<LayoutCache>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            layouts: Default::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get(&self, key: &ItemKey) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item)
    }

    /// One BatchGetItem (strongly consistent) for up to 100 distinct keys, retrying only the
    /// keys DynamoDB left unprocessed.
    async fn batch_get(&self, keys: &[&ItemKey]) -> Result<HashMap<ItemKey, Item>, StoreError> {
        let mut pending: Vec<Item> = keys.iter().map(|k| k.to_item()).collect();
        let mut found = HashMap::with_capacity(keys.len());
        for attempt in 0..=UNPROCESSED_RETRIES {
            let request = build(
                "BatchGetItem",
                KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build(),
            )?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| sdk_error("BatchGetItem", e))?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                let key = ItemKey::of(&item)
                    .ok_or_else(|| corrupt(&self.table, "BatchGetItem returned an item without pk/sk"))?;
                found.insert(key, item);
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(found);
            }
            tokio::time::sleep(jitter(attempt)).await;
        }
        Err(StoreError::Unavailable(format!(
            "DynamoDB BatchGetItem: {} keys still unprocessed after {UNPROCESSED_RETRIES} retries",
            pending.len()
        )))
    }

    fn update(&self, key: &ItemKey, u: UpdateExpr) -> Result<Update, StoreError> {
        build(
            "Update",
            Update::builder()
                .table_name(&self.table)
                .set_key(Some(key.to_item()))
                .update_expression(u.expression)
                .set_expression_attribute_names(Some(u.names))
                .set_expression_attribute_values((!u.values.is_empty()).then_some(u.values))
                .set_condition_expression(u.condition)
                .build(),
        )
    }

    fn put_if_absent(&self, item: Item) -> Result<Put, StoreError> {
        build(
            "Put",
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build(),
        )
    }

    /// One TransactWriteItems, retried with jitter only while it collides with another
    /// transaction on the same items (a busy card or terminal). A failed condition is the
    /// caller's to read. The SDK sets a fresh ClientRequestToken per call and keeps it across its
    /// own retries, so a retried request that had succeeded is not applied twice.
    /// One PutItem conditional on `attribute_not_exists(pk)`: `false` when the item exists.
    pub(super) async fn put_item_if_absent(&self, item: Item, op: &'static str) -> Result<bool, StoreError> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(sdk_error(op, e)),
        }
    }

    async fn transact(&self, items: Vec<TransactWriteItem>, op: &'static str) -> Result<Transacted, StoreError> {
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let e = match result {
                Ok(_) => return Ok(Transacted::Written),
                Err(e) => e,
            };
            match cancellation_codes(&e) {
                Some(codes) if codes.iter().any(|c| c == "ConditionalCheckFailed") => {
                    return Ok(Transacted::ConditionFailed(codes))
                }
                Some(codes) if codes.iter().any(|c| c == "ValidationError") => return Ok(Transacted::Refused(codes)),
                // DynamoDB (and moto) may answer a type mismatch of an ADD with a plain
                // ValidationException instead of a per-item ValidationError.
                None if e.as_service_error().is_some_and(|s| {
                    s.code() == Some("ValidationException")
                        && s.message().is_some_and(|m| m.contains("incorrect data type"))
                }) =>
                {
                    return Ok(Transacted::Refused(Vec::new()))
                }
                Some(codes)
                    if attempt + 1 < COMMIT_ATTEMPTS
                        && codes.iter().all(|c| c == "None" || c == "TransactionConflict") =>
                {
                    tokio::time::sleep(jitter(attempt)).await;
                    attempt += 1;
                }
                _ => return Err(sdk_error(op, e)),
            }
        }
    }
}

/// How a TransactWriteItems ended, short of an error.
enum Transacted {
    Written,
    /// Cancelled: at least one condition failed. The codes, one per item, in order.
    ConditionFailed(Vec<String>),
    /// Cancelled: an item's update is invalid against what is stored (`ValidationError`, e.g.
    /// ADD on a string). Retrying cannot help. The codes, one per item, in order.
    Refused(Vec<String>),
}

#[cfg(test)]
mod tests;
