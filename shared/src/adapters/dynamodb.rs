//! DynamoDB adapter: one table for everything (single-table design).
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | API key | `KEY#<sha256 hex>` | `KEY` | tenant, scopes (SS), key_id, created_at, expires_at (TTL), revoked_at |
//! | key id → hash | `T#<tenant>#KEYID#<key_id>` | `KEYID` | hash, expires_at (TTL) |
//! | decision | `T#<tenant>#TX#<id>` | `DECISION` | the [`DecisionRecord`]; gsi1pk `T#<tenant>#CUST#<customer>`, gsi1sk `<occurred_at>#<id>` |
//! | idempotency | `T#<tenant>#IDEM#<key>` | `IDEM` | transaction_id, fingerprint, created_at, expires_at (TTL, +24 h) |
//! | customer aggregate | `T#<tenant>#CUST#<id>` | `AGG` | `c<day>`, `a<day>`, `f<day>`: count, amount (minor units), frauds per epoch day |
//! | terminal aggregate | `T#<tenant>#TERM#<id>` | `AGG` | as above |
//! | active model | `T#<tenant>#MODEL` | `ACTIVE` | version, object_key, previous_version, activated_at |
//! | model version | `T#<tenant>#MODEL` | `V#<version>` | [`ModelRegistration`], plus [`ImportDetails`] for uploads |
//! | upload bytes | `T#<tenant>#MODEL` | `SRC#<sha256>` | outcome (JSON): model-import's per-bytes idempotency |
//! | job | `T#<tenant>#JOB#<bucket>/<key>#<etag>` | `JOB` | [`JobState`]: status, lease, checkpoint, result |
//! | job error chunk | as the job | `ERR#<seq>` | text: lines of the job's error report, expires_at (TTL) |
//! | tenant config | `T#<tenant>` | `CONFIG` | review_threshold, block_threshold |
//!
//! Every tenant-scoped key is built by [`Keys`]; nothing else formats them. Tenant, customer,
//! terminal and transaction ids are newtypes that cannot contain `#`. The client-chosen parts that
//! may (idempotency key, key id, model version) only ever stand last in a key behind a fixed
//! prefix, so they cannot reach another tenant's or another kind's items.

use crate::auth::{KeyHash, KeyRecord, Scope};
use crate::decision::{DecisionRecord, Thresholds};
use crate::domain::{CustomerId, TenantId, TerminalId, Timestamp, TransactionId};
// The job identity and lifecycle are domain types; job functions take them from here with the store.
pub use crate::domain::{JobStatus, ObjectRef};
use crate::features::{AggregateDelta, DayCounter, EntityAggregate, RETENTION_DAYS};
use crate::labels::{LabelValue, StoredLabel};
use crate::ports::{
    ActiveModel, CommitOutcome, DecisionCommit, DecisionStore, IdempotencyKey, IdempotencyRecord, Page,
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

// ---------------------------------------------------------------------------------------------
// Keys: the one place that builds storage keys.
// ---------------------------------------------------------------------------------------------

/// A primary key: partition and sort key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    pub pk: String,
    pub sk: String,
}

impl ItemKey {
    fn new(pk: String, sk: impl Into<String>) -> Self {
        ItemKey { pk, sk: sk.into() }
    }

    fn to_item(&self) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(self.pk.clone())),
            (SK.to_owned(), AttributeValue::S(self.sk.clone())),
        ])
    }

    fn of(item: &Item) -> Option<ItemKey> {
        match (item.get(PK), item.get(SK)) {
            (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => Some(ItemKey::new(pk.clone(), sk.clone())),
            _ => None,
        }
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pk, self.sk)
    }
}

/// The storage keys of one tenant.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'t> {
    tenant: &'t TenantId,
}

impl<'t> Keys<'t> {
    pub fn new(tenant: &'t TenantId) -> Self {
        Keys { tenant }
    }

    fn scoped(&self, kind: &str, id: &str) -> String {
        format!("T#{}#{kind}#{id}", self.tenant)
    }

    pub fn decision(&self, id: &TransactionId) -> ItemKey {
        ItemKey::new(self.scoped("TX", id.as_str()), "DECISION")
    }

    /// The transaction id of `pk` if it is one of this tenant's decision keys.
    pub fn decision_id(&self, pk: &str) -> Option<TransactionId> {
        let prefix = self.scoped("TX", "");
        TransactionId::parse(pk.strip_prefix(&prefix)?).ok()
    }

    /// The partition of a customer's decision history in `gsi1`.
    pub fn customer_history(&self, customer: &CustomerId) -> String {
        self.scoped("CUST", customer.as_str())
    }

    pub fn customer_aggregate(&self, customer: &CustomerId) -> ItemKey {
        ItemKey::new(self.scoped("CUST", customer.as_str()), "AGG")
    }

    pub fn terminal_aggregate(&self, terminal: &TerminalId) -> ItemKey {
        ItemKey::new(self.scoped("TERM", terminal.as_str()), "AGG")
    }

    pub fn idempotency(&self, key: &IdempotencyKey) -> ItemKey {
        ItemKey::new(self.scoped("IDEM", key.as_str()), "IDEM")
    }

    pub fn key_id(&self, key_id: &str) -> ItemKey {
        ItemKey::new(self.scoped("KEYID", key_id), "KEYID")
    }

    pub fn config(&self) -> ItemKey {
        ItemKey::new(format!("T#{}", self.tenant), "CONFIG")
    }

    fn models(&self) -> String {
        format!("T#{}#MODEL", self.tenant)
    }

    pub fn active_model(&self) -> ItemKey {
        ItemKey::new(self.models(), "ACTIVE")
    }

    pub fn model_version(&self, version: &str) -> ItemKey {
        ItemKey::new(self.models(), format!("{MODEL_VERSION_PREFIX}{version}"))
    }

    /// The `gsi1` partition listing the tenant's models by upload time.
    pub fn model_list(&self) -> String {
        format!("T#{}#MODELS", self.tenant)
    }

    /// What became of an upload's bytes (model-import), by the upload's SHA-256. Beside the
    /// versions, outside their `V#` prefix.
    pub fn model_source(&self, sha256: &str) -> ItemKey {
        ItemKey::new(self.models(), format!("SRC#{sha256}"))
    }

    /// One S3 object's job (batch-score, labels, model-import): `T#<tenant>#JOB#<bucket>/<key>#<etag>`.
    /// The etag stands last, unquoted and without `#`, so the key parses from the right even
    /// though S3 keys may contain `#`.
    pub fn job(&self, job: &ObjectRef) -> ItemKey {
        ItemKey::new(self.job_pk(job), "JOB")
    }

    /// A chunk of a job's error report, in the job's partition.
    pub fn job_errors(&self, job: &ObjectRef, seq: u32) -> ItemKey {
        ItemKey::new(self.job_pk(job), format!("ERR#{seq:06}"))
    }

    fn job_pk(&self, job: &ObjectRef) -> String {
        self.scoped(
            "JOB",
            &format!(
                "{}/{}#{}",
                job.bucket,
                job.key,
                job.etag.trim_matches('"').replace('#', "")
            ),
        )
    }
}

const MODEL_VERSION_PREFIX: &str = "V#";

/// Registry statuses.
pub const STATUS_CANDIDATE: &str = "candidate";
pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_RETIRED: &str = "retired";
pub const STATUS_REJECTED: &str = "rejected";

/// An API key's item. The one key that is not tenant-scoped: a credential is looked up before
/// its tenant is known, and the item names the tenant.
pub fn api_key(hash: &KeyHash) -> Option<ItemKey> {
    let h = &hash.0;
    let ok = h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then(|| ItemKey::new(format!("KEY#{h}"), "KEY"))
}

/// The `gsi1` sort key of a decision: fixed-width RFC 3339 (nanoseconds, `Z`) so that byte order
/// is time order, then the id.
pub fn history_sort_key(occurred_at: &Timestamp, id: &TransactionId) -> String {
    let t = occurred_at.inner();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z#{}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond(),
        id
    )
}

fn day_attribute(kind: char, day: i32) -> String {
    format!("{kind}{day}")
}

/// `c17622` → (`c`, 17622).
fn parse_day_attribute(name: &str) -> Option<(u8, i32)> {
    let kind = *name.as_bytes().first()?;
    if !matches!(kind, b'c' | b'a' | b'f') {
        return None;
    }
    let day = &name[1..];
    let digits = day.strip_prefix('-').unwrap_or(day);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((kind, day.parse().ok()?))
}

// ---------------------------------------------------------------------------------------------
// Batch scoring: the job key and stored aggregates in bulk (the job item itself is in jobs.rs).
// ---------------------------------------------------------------------------------------------

/// The most keys one BatchGetItem takes.
pub const BATCH_GET_MAX_KEYS: usize = 100;

impl DynamoStore {
    /// Stored aggregates of many customers and terminals, read only: BatchGetItem in chunks of
    /// [`BATCH_GET_MAX_KEYS`] distinct keys. An entity without an item is absent from the maps.
    pub async fn aggregates(
        &self,
        tenant: &TenantId,
        customers: &[CustomerId],
        terminals: &[TerminalId],
    ) -> Result<
        (
            HashMap<CustomerId, EntityAggregate>,
            HashMap<TerminalId, EntityAggregate>,
        ),
        StoreError,
    > {
        let keys = Keys::new(tenant);
        let mut wanted: HashMap<ItemKey, Result<&CustomerId, &TerminalId>> = HashMap::new();
        for c in customers {
            wanted.insert(keys.customer_aggregate(c), Ok(c));
        }
        for t in terminals {
            wanted.insert(keys.terminal_aggregate(t), Err(t));
        }
        let all: Vec<&ItemKey> = wanted.keys().collect();
        let (mut by_customer, mut by_terminal) = (HashMap::new(), HashMap::new());
        for chunk in all.chunks(BATCH_GET_MAX_KEYS) {
            for (key, item) in self.batch_get(chunk).await? {
                let agg = parse_aggregate(&item, &key)?;
                match wanted.get(&key) {
                    Some(Ok(c)) => by_customer.insert((*c).clone(), agg),
                    Some(Err(t)) => by_terminal.insert((*t).clone(), agg),
                    None => return Err(corrupt(&key, "BatchGetItem returned a key that was not asked for")),
                };
            }
        }
        Ok((by_customer, by_terminal))
    }
}

// ---------------------------------------------------------------------------------------------
// The table definition (template.yaml declares the same; a test compares them).
// ---------------------------------------------------------------------------------------------

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
}

pub const TABLE: TableSpec = TableSpec {
    hash_key: PK,
    range_key: SK,
    string_attributes: &[PK, SK, GSI1PK, GSI1SK],
    indexes: &[IndexSpec {
        name: GSI1,
        hash_key: GSI1PK,
        range_key: GSI1SK,
        projection: "ALL",
    }],
    ttl_attribute: TTL_ATTRIBUTE,
    billing_mode: "PAY_PER_REQUEST",
};

fn build<T>(op: &'static str, r: Result<T, BuildError>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Unavailable(format!("DynamoDB {op}: invalid request: {e}")))
}

fn key_element(name: &str, key_type: KeyType) -> Result<KeySchemaElement, StoreError> {
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
            .key_schema(key_element(self.range_key, KeyType::Range)?);
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

// ---------------------------------------------------------------------------------------------
// Errors and attribute access
// ---------------------------------------------------------------------------------------------

fn sdk_error<E, R>(op: &'static str, e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    StoreError::Unavailable(format!("DynamoDB {op}: {}", DisplayErrorContext(&e)))
}

fn corrupt(key: &impl fmt::Display, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, name: &str, key: &ItemKey) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        Some(_) => Err(corrupt(key, format!("{name} is not a string"))),
        None => Err(corrupt(key, format!("{name} is missing"))),
    }
}

fn get_s_opt<'a>(item: &'a Item, name: &str, key: &ItemKey) -> Result<Option<&'a str>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(_) => Err(corrupt(key, format!("{name} is not a string"))),
    }
}

fn get_n_opt<T: FromStr>(item: &Item, name: &str, key: &ItemKey) -> Result<Option<T>, StoreError>
where
    T::Err: fmt::Display,
{
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|e| corrupt(key, format!("{name} = {v:?}: {e}"))),
        Some(_) => Err(corrupt(key, format!("{name} is not a number"))),
    }
}

fn get_n<T: FromStr>(item: &Item, name: &str, key: &ItemKey) -> Result<T, StoreError>
where
    T::Err: fmt::Display,
{
    get_n_opt(item, name, key)?.ok_or_else(|| corrupt(key, format!("{name} is missing")))
}

fn get_timestamp(item: &Item, name: &str, key: &ItemKey) -> Result<Timestamp, StoreError> {
    let raw = get_s(item, name, key)?;
    Timestamp::parse("timestamp", raw).map_err(|e| corrupt(key, format!("{name}: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Item shapes
// ---------------------------------------------------------------------------------------------

fn key_record_item(key: &ItemKey, rec: &KeyRecord) -> Item {
    let mut item = key.to_item();
    item.insert("key_id".into(), s(&rec.key_id));
    item.insert("tenant".into(), s(rec.tenant.as_str()));
    if !rec.scopes.is_empty() {
        item.insert(
            "scopes".into(),
            AttributeValue::Ss(rec.scopes.iter().map(|s| s.as_str().to_owned()).collect()),
        );
    }
    item.insert("created_at".into(), n(rec.created_at));
    if let Some(t) = rec.expires_at {
        item.insert(TTL_ATTRIBUTE.into(), n(t));
    }
    if let Some(t) = rec.revoked_at {
        item.insert("revoked_at".into(), n(t));
    }
    item
}

fn parse_key_record(item: &Item, key: &ItemKey) -> Result<KeyRecord, StoreError> {
    let tenant = TenantId::parse(get_s(item, "tenant", key)?).map_err(|e| corrupt(key, e.to_string()))?;
    let scopes = match item.get("scopes") {
        None => BTreeSet::new(),
        Some(AttributeValue::Ss(v)) => v
            .iter()
            .map(|raw| Scope::parse(raw))
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt(key, e.to_string()))?,
        Some(_) => return Err(corrupt(key, "scopes is not a string set")),
    };
    Ok(KeyRecord {
        key_id: get_s(item, "key_id", key)?.to_owned(),
        tenant,
        scopes,
        created_at: get_n(item, "created_at", key)?,
        expires_at: get_n_opt(item, TTL_ATTRIBUTE, key)?,
        revoked_at: get_n_opt(item, "revoked_at", key)?,
    })
}

/// Day buckets from an aggregate item's `c<day>`, `a<day>` and `f<day>` attributes.
fn parse_aggregate(item: &Item, key: &ItemKey) -> Result<EntityAggregate, StoreError> {
    let mut days: BTreeMap<i32, DayCounter> = BTreeMap::new();
    for (name, value) in item {
        let Some((kind, day)) = parse_day_attribute(name) else {
            continue;
        };
        let AttributeValue::N(raw) = value else {
            return Err(corrupt(key, format!("{name} is not a number")));
        };
        let bad = |e: &dyn fmt::Display| corrupt(key, format!("{name} = {raw:?}: {e}"));
        let c = days.entry(day).or_default();
        match kind {
            b'c' => c.count = raw.parse().map_err(|e| bad(&e))?,
            b'a' => c.amount_minor = raw.parse().map_err(|e| bad(&e))?,
            _ => c.frauds = raw.parse().map_err(|e| bad(&e))?,
        }
    }
    Ok(EntityAggregate::from_days(days))
}

/// An UpdateExpression with its names and values.
#[derive(Debug, Clone, PartialEq)]
struct UpdateExpr {
    expression: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

/// `ADD` the delta to `day`'s counters and `REMOVE` the [`PRUNE_DAYS`] days just past retention.
/// The removed days all lie before `day - RETENTION_DAYS`, so no attribute is both added and
/// removed, and none a window can still read.
fn aggregate_update(delta: &AggregateDelta) -> UpdateExpr {
    let AggregateDelta { day, counter } = *delta;
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut adds = Vec::new();
    let parts = [
        ('c', counter.count as i128),
        ('a', counter.amount_minor as i128),
        ('f', counter.frauds as i128),
    ];
    for (i, (kind, amount)) in parts.iter().enumerate() {
        if *amount != 0 || (i == 0 && parts.iter().all(|(_, a)| *a == 0)) {
            names.insert(format!("#d{i}"), day_attribute(*kind, day));
            values.insert(format!(":d{i}"), n(amount));
            adds.push(format!("#d{i} :d{i}"));
        }
    }
    let mut removes = Vec::new();
    for k in 0..PRUNE_DAYS {
        let old = day.saturating_sub(RETENTION_DAYS + k);
        for kind in ['c', 'a', 'f'] {
            let i = removes.len();
            names.insert(format!("#p{i}"), day_attribute(kind, old));
            removes.push(format!("#p{i}"));
        }
    }
    UpdateExpr {
        expression: format!("ADD {} REMOVE {}", adds.join(", "), removes.join(", ")),
        names,
        values,
    }
}

/// Where a decision stands in its customer's history; encoded as an opaque page cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
}

impl Cursor {
    fn of(item: &Item, key: &ItemKey) -> Result<Cursor, StoreError> {
        Ok(Cursor {
            pk: key.pk.clone(),
            sk: key.sk.clone(),
            gsi1pk: get_s(item, GSI1PK, key)?.to_owned(),
            gsi1sk: get_s(item, GSI1SK, key)?.to_owned(),
        })
    }

    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a cursor and checks that it points into `customer`'s history of this tenant.
    fn decode(raw: &str, keys: &Keys<'_>, customer: &CustomerId) -> Result<Cursor, StoreError> {
        if raw.len() > 2048 {
            return Err(StoreError::BadCursor);
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| StoreError::BadCursor)?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
        let id = keys.decision_id(&c.pk).ok_or(StoreError::BadCursor)?;
        let expected = keys.decision(&id);
        let sort_id = c.gsi1sk.rsplit_once('#').map(|(_, id)| id);
        if c.gsi1pk != keys.customer_history(customer) || c.sk != expected.sk || sort_id != Some(id.as_str()) {
            return Err(StoreError::BadCursor);
        }
        Ok(c)
    }

    fn to_item(&self) -> Item {
        HashMap::from([
            (PK.to_owned(), s(&self.pk)),
            (SK.to_owned(), s(&self.sk)),
            (GSI1PK.to_owned(), s(&self.gsi1pk)),
            (GSI1SK.to_owned(), s(&self.gsi1sk)),
        ])
    }
}

fn parse_decision(item: Item, key: &ItemKey) -> Result<DecisionRecord, StoreError> {
    let label = parse_label(&item, key)?;
    let mut record: DecisionRecord =
        serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| corrupt(key, e.to_string()))?;
    record.label = label;
    Ok(record)
}

/// A registered model version, as the registry stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRegistration {
    pub version: String,
    pub name: String,
    /// SHA-256 of the artifact bytes, hex.
    pub sha256: String,
    /// The artifact's object key in the model bucket.
    pub object_key: String,
    /// Where it came from, e.g. `upload`, `retrain`, `import:lightgbm`.
    pub source: String,
    /// `candidate`, `active`, `retired` or `rejected` ([`STATUS_ACTIVE`] …).
    pub status: String,
    pub metrics: BTreeMap<String, f64>,
    pub uploaded_at: Timestamp,
    pub uploaded_by: String,
    pub trees: u32,
}

/// A registry item as the API shows it: the registration and, for a refused upload, why.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryEntry {
    pub model: ModelRegistration,
    pub reject_reason: Option<String>,
}

fn parse_registry_entry(item: Item, key: &ItemKey) -> Result<RegistryEntry, StoreError> {
    let reject_reason = get_s_opt(&item, "reject_reason", key)?.map(str::to_owned);
    let model = serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| corrupt(key, e.to_string()))?;
    Ok(RegistryEntry { model, reject_reason })
}

const REGISTRY_CURSOR: &str = "registry/1";

fn encode_registry_cursor((uploaded_at, version): &(String, String)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{REGISTRY_CURSOR}|{uploaded_at}|{version}"))
}

fn decode_registry_cursor(raw: &str) -> Result<(String, String), StoreError> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| StoreError::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::BadCursor)?;
    match text.split('|').collect::<Vec<_>>()[..] {
        [REGISTRY_CURSOR, at, version] if at.len() == 24 && !version.is_empty() => {
            Ok((at.to_owned(), version.to_owned()))
        }
        _ => Err(StoreError::BadCursor),
    }
}

/// What the activation pointer must be for an activation to go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected<'a> {
    Anything,
    /// This version (`None`: no pointer yet).
    Current(Option<&'a str>),
}

/// The activation pointer in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPointer {
    pub version: String,
    pub object_key: String,
    pub previous_version: Option<String>,
    pub activated_at: Timestamp,
}

fn parse_pointer(item: &Item, key: &ItemKey) -> Result<ModelPointer, StoreError> {
    Ok(ModelPointer {
        version: get_s(item, "version", key)?.to_owned(),
        object_key: get_s(item, "object_key", key)?.to_owned(),
        previous_version: get_s_opt(item, "previous_version", key)?.map(str::to_owned),
        activated_at: get_timestamp(item, "activated_at", key)?,
    })
}

fn parse_thresholds(item: &Item, key: &ItemKey) -> Result<Thresholds, StoreError> {
    let review = get_n(item, "review_threshold", key)?;
    let block = get_n(item, "block_threshold", key)?;
    Thresholds::new(review, block).map_err(|e| corrupt(key, e.to_string()))
}

/// Why a TransactWriteItems was cancelled, per item.
fn cancellation_codes(e: &SdkError<TransactWriteItemsError, impl fmt::Debug>) -> Option<Vec<String>> {
    match e.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(t) => Some(
            t.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
        ),
        _ => None,
    }
}

fn is_conditional_check_failed<E: ProvideErrorMetadata + std::error::Error + 'static, R: fmt::Debug>(
    e: &SdkError<E, R>,
) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

fn jitter(attempt: u32) -> Duration {
    let base = 10u64 << attempt.min(5);
    Duration::from_millis(base + rand::random::<u64>() % base)
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/// The [`DecisionStore`] on one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
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

    /// The items of one decision's write transaction.
    fn commit_items(&self, tenant: &TenantId, c: &DecisionCommit<'_>) -> Result<Vec<TransactWriteItem>, StoreError> {
        let keys = Keys::new(tenant);
        let tx = c.transaction;
        let key = keys.decision(&tx.id);
        let mut item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(c.record)
            .map_err(|e| StoreError::Unavailable(format!("decision {}: cannot be stored: {e}", tx.id)))?;
        item.extend(key.to_item());
        item.insert(GSI1PK.into(), s(keys.customer_history(&tx.customer_id)));
        item.insert(GSI1SK.into(), s(history_sort_key(&tx.occurred_at, &tx.id)));
        let mut items = vec![TransactWriteItem::builder().put(self.put_if_absent(item)?).build()];

        if let Some(k) = c.idempotency_key {
            let now = crate::auth::now_epoch();
            let mut item = keys.idempotency(k).to_item();
            item.insert("transaction_id".into(), s(tx.id.as_str()));
            item.insert("fingerprint".into(), s(&c.record.request_fingerprint));
            item.insert("created_at".into(), n(now));
            item.insert(TTL_ATTRIBUTE.into(), n(now + IDEMPOTENCY_TTL_SECS));
            // An expired record that TTL has not deleted yet may be replaced.
            let put = build(
                "Put",
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk) OR #exp < :now")
                    .expression_attribute_names("#exp", TTL_ATTRIBUTE)
                    .expression_attribute_values(":now", n(now))
                    .build(),
            )?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for key in [
            keys.customer_aggregate(&tx.customer_id),
            keys.terminal_aggregate(&tx.terminal_id),
        ] {
            let update = self.update(&key, aggregate_update(&c.delta))?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        Ok(items)
    }

    // -- admin: keys ----------------------------------------------------------------------------

    /// Stores a new API key under its hash, with the tenant's key-id entry for revocation.
    /// Refuses to overwrite an existing key or key id (generate another key then).
    pub async fn put_key(&self, hash: &KeyHash, rec: &KeyRecord) -> Result<(), StoreError> {
        let key = api_key(hash).ok_or_else(|| StoreError::NotFound("key hash is not a SHA-256 hex digest".into()))?;
        let mut index = Keys::new(&rec.tenant).key_id(&rec.key_id).to_item();
        index.insert("hash".into(), s(&hash.0));
        if let Some(t) = rec.expires_at {
            index.insert(TTL_ATTRIBUTE.into(), n(t));
        }
        let index = self.put_if_absent(index)?;
        self.client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(self.put_if_absent(key_record_item(&key, rec))?)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().put(index).build())
            .send()
            .await
            .map_err(|e| sdk_error("TransactWriteItems (put key)", e))?;
        Ok(())
    }

    /// Revokes a tenant's key by its id, effective from `now` (epoch seconds); a key revoked
    /// earlier keeps its first revocation time. Returns the updated record.
    pub async fn revoke_key(&self, tenant: &TenantId, key_id: &str, now: i64) -> Result<KeyRecord, StoreError> {
        let not_found = || StoreError::NotFound(format!("API key {key_id}"));
        if key_id.is_empty() || key_id.len() > 200 {
            return Err(not_found());
        }
        let index_key = Keys::new(tenant).key_id(key_id);
        let Some(index) = self.get(&index_key).await? else {
            return Err(not_found());
        };
        let hash = KeyHash(get_s(&index, "hash", &index_key)?.to_owned());
        let key = api_key(&hash).ok_or_else(|| corrupt(&index_key, "hash is not a SHA-256 hex digest"))?;
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :now)")
            .condition_expression("attribute_exists(pk) AND tenant = :tenant")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => parse_key_record(&out.attributes.unwrap_or_default(), &key),
            Err(e) if is_conditional_check_failed(&e) => Err(not_found()),
            Err(e) => Err(sdk_error("UpdateItem (revoke key)", e)),
        }
    }

    // -- admin: tenant config -------------------------------------------------------------------

    pub async fn set_thresholds(&self, tenant: &TenantId, t: Thresholds) -> Result<(), StoreError> {
        let t = Thresholds::new(t.review, t.block)
            .map_err(|e| StoreError::Unavailable(format!("thresholds not stored: {e}")))?;
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Keys::new(tenant).config().to_item()))
            .update_expression("SET review_threshold = :r, block_threshold = :b")
            .expression_attribute_values(":r", n(t.review))
            .expression_attribute_values(":b", n(t.block))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem (thresholds)", e))?;
        Ok(())
    }

    pub async fn thresholds(&self, tenant: &TenantId) -> Result<Option<Thresholds>, StoreError> {
        let key = Keys::new(tenant).config();
        match self.get(&key).await? {
            Some(item) if item.contains_key("review_threshold") => Ok(Some(parse_thresholds(&item, &key)?)),
            _ => Ok(None),
        }
    }

    // -- admin: models --------------------------------------------------------------------------

    /// Registers a model version. Registering the same version again with the same bytes
    /// (sha256) overwrites it; with other bytes it is refused.
    pub async fn register_model(&self, tenant: &TenantId, m: &ModelRegistration) -> Result<(), StoreError> {
        let key = Keys::new(tenant).model_version(&m.version);
        let mut item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(m)
            .map_err(|e| StoreError::Unavailable(format!("model {}: cannot be stored: {e}", m.version)))?;
        item.extend(key.to_item());
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR sha256 = :sha")
            .expression_attribute_values(":sha", s(&m.sha256))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_check_failed(&e) => Err(StoreError::Unavailable(format!(
                "model version {} is already registered with different bytes",
                m.version
            ))),
            Err(e) => Err(sdk_error("PutItem (register model)", e)),
        }
    }

    pub async fn model(&self, tenant: &TenantId, version: &str) -> Result<Option<ModelRegistration>, StoreError> {
        Ok(self.registry_entry(tenant, version).await?.map(|e| e.model))
    }

    /// Every registered version of the tenant, in version order.
    pub async fn models(&self, tenant: &TenantId) -> Result<Vec<ModelRegistration>, StoreError> {
        Ok(self
            .registry_entries(tenant)
            .await?
            .into_iter()
            .map(|e| e.model)
            .collect())
    }

    /// The tenant's whole registry partition (one item per uploaded model), in version order.
    async fn registry_entries(&self, tenant: &TenantId) -> Result<Vec<RegistryEntry>, StoreError> {
        let keys = Keys::new(tenant);
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :v)")
            .expression_attribute_values(":pk", s(keys.models()))
            .expression_attribute_values(":v", s(MODEL_VERSION_PREFIX))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| sdk_error("Query (models)", e))?;
            let key = ItemKey::of(&item).unwrap_or_else(|| keys.model_version("?"));
            out.push(parse_registry_entry(item, &key)?);
        }
        Ok(out)
    }

    /// One registry entry with its rejection reason, if any.
    pub async fn registry_entry(&self, tenant: &TenantId, version: &str) -> Result<Option<RegistryEntry>, StoreError> {
        let key = Keys::new(tenant).model_version(version);
        self.get(&key)
            .await?
            .map(|item| parse_registry_entry(item, &key))
            .transpose()
    }

    /// One page of the registry, newest upload first (ties: higher version first). A tenant has
    /// one item per uploaded model, so the partition is read whole and sorted here; the cursor is
    /// the last entry's position in that order, which holds nothing of another tenant.
    pub async fn registry_page(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<RegistryEntry>, StoreError> {
        let after = cursor.map(decode_registry_cursor).transpose()?;
        let mut entries = self.registry_entries(tenant).await?;
        let position = |e: &RegistryEntry| (fixed_width(&e.model.uploaded_at), e.model.version.clone());
        entries.sort_by_key(|e| std::cmp::Reverse(position(e)));
        let mut items: Vec<RegistryEntry> = entries
            .into_iter()
            .filter(|e| after.as_ref().is_none_or(|a| position(e) < *a))
            .take(limit + 1)
            .collect();
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|e| encode_registry_cursor(&position(e)))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// The activation pointer with its history.
    pub async fn model_pointer(&self, tenant: &TenantId) -> Result<Option<ModelPointer>, StoreError> {
        let key = Keys::new(tenant).active_model();
        self.get(&key).await?.map(|item| parse_pointer(&item, &key)).transpose()
    }

    /// Points the tenant at a registered version; the version it replaces becomes
    /// `previous_version`. Refused (NotFound) unless `version` is registered with `object_key` and
    /// was not rejected. Registry statuses follow: the new version `active`, the replaced one
    /// `retired`. Activating the version already active changes nothing.
    pub async fn activate_model(
        &self,
        tenant: &TenantId,
        version: &str,
        object_key: &str,
    ) -> Result<ModelPointer, StoreError> {
        self.activate_model_if(tenant, version, object_key, Expected::Anything)
            .await
    }

    /// [`Self::activate_model`], refused with [`StoreError::Conflict`] unless the pointer is
    /// `expected`: a decision taken on a pointer read earlier (a rollback) never overwrites a
    /// concurrent activation.
    pub async fn activate_model_if(
        &self,
        tenant: &TenantId,
        version: &str,
        object_key: &str,
        expected: Expected<'_>,
    ) -> Result<ModelPointer, StoreError> {
        let keys = Keys::new(tenant);
        let registry = keys.model_version(version);
        let pointer_key = keys.active_model();
        let mut retire_old = true;
        for _ in 0..COMMIT_ATTEMPTS + 1 {
            let current = self.model_pointer(tenant).await?;
            if let Some(c) = current
                .as_ref()
                .filter(|c| c.version == version && c.object_key == object_key)
            {
                return Ok(c.clone());
            }
            if let Expected::Current(want) = expected {
                let now = current.as_ref().map(|c| c.version.as_str());
                if now != want {
                    return Err(StoreError::Conflict(format!(
                        "the active model is {} now, not {}",
                        now.unwrap_or("none"),
                        want.unwrap_or("none")
                    )));
                }
            }
            let next = ModelPointer {
                version: version.to_owned(),
                object_key: object_key.to_owned(),
                previous_version: match &current {
                    Some(c) if c.version != version => Some(c.version.clone()),
                    Some(c) => c.previous_version.clone(),
                    None => None,
                },
                activated_at: Timestamp::now(),
            };
            let mut item = pointer_key.to_item();
            item.insert("version".into(), s(&next.version));
            item.insert("object_key".into(), s(&next.object_key));
            item.insert("activated_at".into(), s(next.activated_at.to_rfc3339()));
            if let Some(p) = &next.previous_version {
                item.insert("previous_version".into(), s(p));
            }
            // Optimistic: the pointer must still be what was read.
            let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
            put = match &current {
                None => put.condition_expression("attribute_not_exists(pk)"),
                Some(c) => put
                    .condition_expression("#v = :current")
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_values(":current", s(&c.version)),
            };
            // The new version becomes `active` unless it was rejected; the one it replaces
            // becomes `retired`. All in the pointer's transaction.
            let activate = build(
                "Update",
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(registry.to_item()))
                    .update_expression("SET #st = :active")
                    .condition_expression(
                        "attribute_exists(pk) AND object_key = :k AND (attribute_not_exists(#st) OR #st <> :rejected)",
                    )
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":k", s(object_key))
                    .expression_attribute_values(":active", s(STATUS_ACTIVE))
                    .expression_attribute_values(":rejected", s(STATUS_REJECTED))
                    .build(),
            )?;
            let mut req = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(activate).build())
                .transact_items(TransactWriteItem::builder().put(build("Put", put.build())?).build());
            let old = current.as_ref().map(|c| c.version.as_str()).filter(|v| *v != version);
            if let Some(old) = old.filter(|_| retire_old) {
                let retire = build(
                    "Update",
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(keys.model_version(old).to_item()))
                        .update_expression("SET #st = :retired")
                        .condition_expression("attribute_exists(pk)")
                        .expression_attribute_names("#st", "status")
                        .expression_attribute_values(":retired", s(STATUS_RETIRED))
                        .build(),
                )?;
                req = req.transact_items(TransactWriteItem::builder().update(retire).build());
            }
            match req.send().await {
                Ok(_) => return Ok(next),
                Err(e) => match cancellation_codes(&e) {
                    Some(codes) if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") => {
                        return Err(StoreError::NotFound(format!(
                            "model version {version} registered with object key {object_key} and not rejected"
                        )));
                    }
                    // The replaced version has no registry item (registered outside the registry).
                    Some(codes) if codes.get(2).map(String::as_str) == Some("ConditionalCheckFailed") => {
                        retire_old = false;
                        continue;
                    }
                    // Someone else moved the pointer (or a transaction conflict): read again.
                    Some(_) => continue,
                    None => return Err(sdk_error("TransactWriteItems (activate model)", e)),
                },
            }
        }
        Err(StoreError::Unavailable(
            "activate model: the pointer kept changing; try again".into(),
        ))
    }

    // -- labels ---------------------------------------------------------------------------------

    /// Counts a fraud label on `day` for both the customer and the terminal, atomically.
    /// Not idempotent by itself: the caller records each label once.
    pub async fn record_fraud_label(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
        terminal: &TerminalId,
        day: i32,
    ) -> Result<(), StoreError> {
        let keys = Keys::new(tenant);
        let delta = AggregateDelta {
            day,
            counter: DayCounter {
                count: 0,
                amount_minor: 0,
                frauds: 1,
            },
        };
        let mut req = self.client.transact_write_items();
        for key in [keys.customer_aggregate(customer), keys.terminal_aggregate(terminal)] {
            req = req.transact_items(
                TransactWriteItem::builder()
                    .update(self.update(&key, aggregate_update(&delta))?)
                    .build(),
            );
        }
        req.send()
            .await
            .map_err(|e| sdk_error("TransactWriteItems (fraud label)", e))?;
        Ok(())
    }

    /// The stored aggregate of a customer (for tools and tests; scoring reads it in its batch).
    pub async fn customer_aggregate(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
    ) -> Result<EntityAggregate, StoreError> {
        let key = Keys::new(tenant).customer_aggregate(customer);
        match self.get(&key).await? {
            Some(item) => parse_aggregate(&item, &key),
            None => Ok(EntityAggregate::default()),
        }
    }

    /// The stored aggregate of a terminal.
    pub async fn terminal_aggregate(
        &self,
        tenant: &TenantId,
        terminal: &TerminalId,
    ) -> Result<EntityAggregate, StoreError> {
        let key = Keys::new(tenant).terminal_aggregate(terminal);
        match self.get(&key).await? {
            Some(item) => parse_aggregate(&item, &key),
            None => Ok(EntityAggregate::default()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Model import, jobs and labels
// ---------------------------------------------------------------------------------------------

/// What model-import adds to a registry item beyond [`ModelRegistration`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportDetails {
    /// The uploaded object (`models/incoming/…`), its S3 version and etag.
    pub source_key: String,
    pub source_version_id: Option<String>,
    pub source_etag: String,
    /// SHA-256 of the uploaded bytes (for an accepted import, `sha256` is the artifact's).
    pub source_sha256: String,
    /// `verdict`, `lightgbm` or `xgboost`, as detected.
    pub source_format: Option<String>,
    /// How the scores were checked, e.g. "reference sample of 390 rows, …".
    pub validation: Option<String>,
    pub reject_code: Option<String>,
    pub reject_reason: Option<String>,
}

const IMPORT_ATTRIBUTES: [&str; 8] = [
    "source_key",
    "source_version_id",
    "source_etag",
    "source_sha256",
    "source_format",
    "validation",
    "reject_code",
    "reject_reason",
];

impl ImportDetails {
    fn fields(&self) -> [(&'static str, Option<&str>); 8] {
        [
            (IMPORT_ATTRIBUTES[0], Some(self.source_key.as_str())),
            (IMPORT_ATTRIBUTES[1], self.source_version_id.as_deref()),
            (IMPORT_ATTRIBUTES[2], Some(self.source_etag.as_str())),
            (IMPORT_ATTRIBUTES[3], Some(self.source_sha256.as_str())),
            (IMPORT_ATTRIBUTES[4], self.source_format.as_deref()),
            (IMPORT_ATTRIBUTES[5], self.validation.as_deref()),
            (IMPORT_ATTRIBUTES[6], self.reject_code.as_deref()),
            (IMPORT_ATTRIBUTES[7], self.reject_reason.as_deref()),
        ]
    }

    fn parse(item: &Item, key: &ItemKey) -> Result<Option<ImportDetails>, StoreError> {
        let Some(source_key) = get_s_opt(item, "source_key", key)? else {
            return Ok(None);
        };
        let opt = |name| get_s_opt(item, name, key).map(|v| v.map(str::to_owned));
        Ok(Some(ImportDetails {
            source_key: source_key.to_owned(),
            source_version_id: opt("source_version_id")?,
            source_etag: opt("source_etag")?.unwrap_or_default(),
            source_sha256: opt("source_sha256")?.unwrap_or_default(),
            source_format: opt("source_format")?,
            validation: opt("validation")?,
            reject_code: opt("reject_code")?,
            reject_reason: opt("reject_reason")?,
        }))
    }
}

/// Whether [`DynamoStore::register_import`] created the version or found it.
#[derive(Debug, Clone, PartialEq)]
pub enum Registered {
    New,
    /// The same bytes were registered before (e.g. one artifact uploaded under two names); the
    /// existing item, status included, is left as it is.
    Existing(Box<ModelRegistration>),
}

/// How far a job got: what a checkpoint records and a resumed run starts from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobProgress {
    /// The first input line not yet processed (1-based; the CSV header is line 1).
    pub next_line: u64,
    /// Byte offset of `next_line` in the object.
    pub next_offset: u64,
    /// The CSV header, so a ranged resume can parse rows.
    pub header: Option<String>,
    pub counts: BTreeMap<String, u64>,
    /// How many error-report chunks ([`Keys::job_errors`]) are stored.
    pub error_chunks: u32,
}

/// A job item as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    pub job_type: String,
    pub status: JobStatus,
    pub progress: JobProgress,
    pub invocations: u64,
    pub started_at: String,
    /// What the job produced, as JSON (set on completion).
    pub result: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: i64,
}

/// The answer to [`DynamoStore::claim_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobClaim {
    /// This invocation now holds the lease; resume from the state.
    Claimed(JobState),
    /// Finished earlier (completed or failed): nothing to do.
    Done(JobState),
    /// Another invocation holds an unexpired lease.
    Busy { lease_expires_at: i64 },
}

/// How long a finished job's item (and its error chunks) is kept.
pub const JOB_TTL_SECS: i64 = 30 * 24 * 3600;

fn parse_job(item: &Item, key: &ItemKey) -> Result<JobState, StoreError> {
    let status = match get_s(item, "status", key)? {
        "running" => JobStatus::Running,
        "completed" => JobStatus::Completed,
        "failed" => JobStatus::Failed,
        other => {
            return Err(corrupt(
                key,
                format!("status {other:?} is not running, completed or failed"),
            ))
        }
    };
    let mut counts = BTreeMap::new();
    match item.get("counts") {
        None => {}
        Some(AttributeValue::M(m)) => {
            for (k, v) in m {
                let AttributeValue::N(raw) = v else {
                    return Err(corrupt(key, format!("counts.{k} is not a number")));
                };
                counts.insert(
                    k.clone(),
                    raw.parse()
                        .map_err(|e| corrupt(key, format!("counts.{k} = {raw:?}: {e}")))?,
                );
            }
        }
        Some(_) => return Err(corrupt(key, "counts is not a map")),
    }
    Ok(JobState {
        job_type: get_s(item, "job_type", key)?.to_owned(),
        status,
        progress: JobProgress {
            next_line: get_n_opt(item, "next_line", key)?.unwrap_or(1),
            next_offset: get_n_opt(item, "next_offset", key)?.unwrap_or(0),
            header: get_s_opt(item, "header", key)?.map(str::to_owned),
            counts,
            error_chunks: get_n_opt(item, "error_chunks", key)?.unwrap_or(0),
        },
        invocations: get_n_opt(item, "invocations", key)?.unwrap_or(0),
        started_at: get_s_opt(item, "started_at", key)?.unwrap_or_default().to_owned(),
        result: get_s_opt(item, "result", key)?.map(str::to_owned),
        lease_owner: get_s_opt(item, "lease_owner", key)?.map(str::to_owned),
        lease_expires_at: get_n_opt(item, "lease_expires_at", key)?.unwrap_or(0),
    })
}

fn counts_value(counts: &BTreeMap<String, u64>) -> AttributeValue {
    AttributeValue::M(counts.iter().map(|(k, v)| (k.clone(), n(v))).collect())
}

/// A decision as the labels function needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelTarget {
    pub occurred_at: Timestamp,
    pub customer_id: CustomerId,
    /// Absent only on decisions stored without their inputs' terminal.
    pub terminal_id: Option<TerminalId>,
    pub label: Option<StoredLabel>,
}

/// One label write: the new label, the one it replaces (the condition), and the fraud delta.
#[derive(Debug, Clone, Copy)]
pub struct LabelWrite<'a> {
    pub label: &'a StoredLabel,
    pub previous: Option<&'a StoredLabel>,
    /// `ADD f<day> :fraud_delta` on each listed aggregate (+1, -1; 0 writes none).
    pub fraud_delta: i64,
    pub day: i32,
    pub customer: Option<&'a CustomerId>,
    pub terminal: Option<&'a TerminalId>,
}

/// The answer to [`DynamoStore::write_label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelWriteOutcome {
    Written,
    /// The decision's label is no longer `previous` (or the decision is gone): read it again.
    Changed,
}

fn label_value(l: &StoredLabel) -> AttributeValue {
    let mut m = HashMap::from([
        ("value".to_owned(), s(l.value.as_str())),
        ("source".to_owned(), s(&l.source)),
        ("labelled_at".to_owned(), s(l.labelled_at.to_rfc3339())),
    ]);
    if let Some(f) = &l.file {
        m.insert("file".into(), s(f));
    }
    if let Some(e) = &l.etag {
        m.insert("etag".into(), s(e));
    }
    if let Some(line) = l.line {
        m.insert("line".into(), n(line));
    }
    AttributeValue::M(m)
}

fn parse_label(item: &Item, key: &ItemKey) -> Result<Option<StoredLabel>, StoreError> {
    let m = match item.get("label") {
        None | Some(AttributeValue::Null(_)) => return Ok(None),
        Some(AttributeValue::M(m)) => m,
        Some(_) => return Err(corrupt(key, "label is not a map")),
    };
    let value = get_s(m, "value", key)?;
    let value = LabelValue::parse(value).map_err(|r| corrupt(key, format!("label.value: {r}")))?;
    Ok(Some(StoredLabel {
        value,
        source: get_s_opt(m, "source", key)?.unwrap_or_default().to_owned(),
        labelled_at: get_timestamp(m, "labelled_at", key)?,
        file: get_s_opt(m, "file", key)?.map(str::to_owned),
        etag: get_s_opt(m, "etag", key)?.map(str::to_owned),
        line: get_n_opt(m, "line", key)?,
    }))
}

fn parse_label_target(item: &Item, key: &ItemKey) -> Result<LabelTarget, StoreError> {
    let customer = get_s(item, "customer_id", key)?;
    let terminal = match get_s_opt(item, "terminal_id", key)? {
        Some(t) => Some(t),
        None => match item.get("inputs") {
            Some(AttributeValue::M(inputs)) => get_s_opt(inputs, "terminal_id", key)?,
            _ => None,
        },
    };
    Ok(LabelTarget {
        occurred_at: get_timestamp(item, "occurred_at", key)?,
        customer_id: CustomerId::parse(customer).map_err(|e| corrupt(key, e.to_string()))?,
        terminal_id: terminal
            .map(TerminalId::parse)
            .transpose()
            .map_err(|e| corrupt(key, e.to_string()))?,
        label: parse_label(item, key)?,
    })
}

/// The newest day an aggregate item holds, if any.
fn newest_day(item: &Item) -> Option<i32> {
    item.keys().filter_map(|k| parse_day_attribute(k)).map(|(_, d)| d).max()
}

impl DynamoStore {
    // -- model import ---------------------------------------------------------------------------

    /// Registers an imported (or rejected) upload: the registration plus [`ImportDetails`], only
    /// if the version is new. A version already there with the same `sha256` is left untouched.
    pub async fn register_import(
        &self,
        tenant: &TenantId,
        m: &ModelRegistration,
        details: &ImportDetails,
    ) -> Result<Registered, StoreError> {
        let key = Keys::new(tenant).model_version(&m.version);
        let mut item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(m)
            .map_err(|e| StoreError::Unavailable(format!("model {}: cannot be stored: {e}", m.version)))?;
        item.extend(key.to_item());
        item.insert(GSI1PK.into(), s(Keys::new(tenant).model_list()));
        item.insert(
            GSI1SK.into(),
            s(format!("{}#{}", fixed_width(&m.uploaded_at), m.version)),
        );
        item.insert("id".into(), s(&m.version));
        item.insert("kind".into(), s("model"));
        for (name, value) in details.fields() {
            if let Some(v) = value {
                item.insert(name.into(), s(v));
            }
        }
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match out {
            Ok(_) => Ok(Registered::New),
            Err(e) if is_conditional_check_failed(&e) => match self.model(tenant, &m.version).await? {
                Some(existing) if existing.sha256 == m.sha256 => Ok(Registered::Existing(Box::new(existing))),
                _ => Err(StoreError::Unavailable(format!(
                    "model version {} is already registered with different bytes",
                    m.version
                ))),
            },
            Err(e) => Err(sdk_error("PutItem (register import)", e)),
        }
    }

    /// The import attributes of a registry item (None for versions registered otherwise).
    pub async fn import_details(&self, tenant: &TenantId, version: &str) -> Result<Option<ImportDetails>, StoreError> {
        let key = Keys::new(tenant).model_version(version);
        match self.get(&key).await? {
            Some(item) => ImportDetails::parse(&item, &key),
            None => Ok(None),
        }
    }

    /// The recorded outcome (JSON) of an upload's bytes, by their SHA-256.
    pub async fn source_outcome(&self, tenant: &TenantId, sha256: &str) -> Result<Option<String>, StoreError> {
        let key = Keys::new(tenant).model_source(sha256);
        match self.get(&key).await? {
            Some(item) => Ok(Some(get_s(&item, "outcome", &key)?.to_owned())),
            None => Ok(None),
        }
    }

    /// Records an upload's outcome: per object (`job`), and per bytes (`sha256`) unless the
    /// bytes already have one (the first outcome stands).
    pub async fn complete_import(
        &self,
        tenant: &TenantId,
        job: &ObjectRef,
        sha256: Option<&str>,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let keys = Keys::new(tenant);
        let now = Timestamp::now();
        if let Some(sha) = sha256 {
            let mut item = keys.model_source(sha).to_item();
            item.insert("kind".into(), s("model_source"));
            item.insert("outcome".into(), s(outcome));
            item.insert("created_at".into(), s(now.to_rfc3339()));
            match self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_conditional_check_failed(&e) => {}
                Err(e) => return Err(sdk_error("PutItem (model source)", e)),
            }
        }
        let mut item = keys.job(job).to_item();
        for (k, v) in [
            ("kind", "job"),
            ("job_type", "model"),
            ("bucket", job.bucket.as_str()),
            ("key", job.key.as_str()),
            ("etag", job.etag.as_str()),
            ("status", JobStatus::Completed.as_str()),
            ("result", outcome),
        ] {
            item.insert(k.into(), s(v));
        }
        item.insert("started_at".into(), s(now.to_rfc3339()));
        item.insert("completed_at".into(), s(now.to_rfc3339()));
        item.insert(TTL_ATTRIBUTE.into(), n(now.unix() + JOB_TTL_SECS));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem (import job)", e))?;
        Ok(())
    }

    // -- jobs -----------------------------------------------------------------------------------

    /// The job item, if any.
    pub async fn job(&self, tenant: &TenantId, job: &ObjectRef) -> Result<Option<JobState>, StoreError> {
        let key = Keys::new(tenant).job(job);
        self.get(&key).await?.map(|item| parse_job(&item, &key)).transpose()
    }

    /// Starts a job or takes over its lease. `owner` is the invocation (its request id).
    pub async fn claim_job(
        &self,
        tenant: &TenantId,
        job: &ObjectRef,
        job_type: &str,
        size: Option<i64>,
        owner: &str,
        lease_secs: i64,
    ) -> Result<JobClaim, StoreError> {
        let key = Keys::new(tenant).job(job);
        let now = Timestamp::now();
        let lease_until = now.unix() + lease_secs;
        let mut item = key.to_item();
        for (k, v) in [
            ("kind", "job"),
            ("job_type", job_type),
            ("bucket", job.bucket.as_str()),
            ("key", job.key.as_str()),
            ("etag", job.etag.as_str()),
            ("status", JobStatus::Running.as_str()),
            ("lease_owner", owner),
        ] {
            item.insert(k.into(), s(v));
        }
        let started = now.to_rfc3339();
        item.insert("started_at".into(), s(&started));
        item.insert("updated_at".into(), s(&started));
        item.insert("next_line".into(), n(1));
        item.insert("next_offset".into(), n(0));
        item.insert("error_chunks".into(), n(0));
        item.insert("invocations".into(), n(1));
        item.insert("counts".into(), AttributeValue::M(HashMap::new()));
        item.insert("lease_expires_at".into(), n(lease_until));
        // Also a running job ages out: one abandoned mid-way is not kept forever.
        item.insert(TTL_ATTRIBUTE.into(), n(now.unix() + JOB_TTL_SECS));
        if let Some(size) = size {
            item.insert("size".into(), n(size));
        }
        let fresh = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match fresh {
            Ok(_) => return Ok(JobClaim::Claimed(parse_job(&item, &key)?)),
            Err(e) if is_conditional_check_failed(&e) => {}
            Err(e) => return Err(sdk_error("PutItem (claim job)", e)),
        }
        let took = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression(
                "SET lease_owner = :me, lease_expires_at = :until, updated_at = :now_s ADD invocations :one",
            )
            .condition_expression(
                "#st = :running AND (lease_owner = :me OR lease_expires_at < :now OR attribute_not_exists(lease_owner))",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":until", n(lease_until))
            .expression_attribute_values(":now", n(now.unix()))
            .expression_attribute_values(":now_s", s(now.to_rfc3339()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match took {
            Ok(out) => Ok(JobClaim::Claimed(parse_job(&out.attributes.unwrap_or_default(), &key)?)),
            Err(e) if is_conditional_check_failed(&e) => {
                let state = self
                    .job(tenant, job)
                    .await?
                    .ok_or_else(|| corrupt(&key, "the job item vanished while being claimed"))?;
                Ok(match state.status {
                    JobStatus::Running => JobClaim::Busy {
                        lease_expires_at: state.lease_expires_at,
                    },
                    _ => JobClaim::Done(state),
                })
            }
            Err(e) => Err(sdk_error("UpdateItem (take over job)", e)),
        }
    }

    /// Records progress and renews the lease, if this invocation still holds it and nobody moved
    /// the job since `expected_next_line`. Returns false when the lease was lost.
    pub async fn checkpoint_job(
        &self,
        tenant: &TenantId,
        job: &ObjectRef,
        owner: &str,
        expected_next_line: u64,
        progress: &JobProgress,
        lease_secs: i64,
    ) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Keys::new(tenant).job(job).to_item()))
            .condition_expression("lease_owner = :me AND next_line = :expected")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":expected", n(expected_next_line))
            .expression_attribute_values(":line", n(progress.next_line))
            .expression_attribute_values(":offset", n(progress.next_offset))
            .expression_attribute_values(":counts", counts_value(&progress.counts))
            .expression_attribute_values(":chunks", n(progress.error_chunks))
            .expression_attribute_values(":until", n(now.unix() + lease_secs))
            .expression_attribute_values(":now", s(now.to_rfc3339()));
        let mut set = "SET next_line = :line, next_offset = :offset, counts = :counts, error_chunks = :chunks, \
                       lease_expires_at = :until, updated_at = :now"
            .to_owned();
        if let Some(h) = &progress.header {
            set.push_str(", header = :header");
            req = req.expression_attribute_values(":header", s(h));
        }
        match req.update_expression(set).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(sdk_error("UpdateItem (checkpoint job)", e)),
        }
    }

    /// Ends a job (completed or failed) with its result JSON; the item then expires.
    pub async fn finish_job(
        &self,
        tenant: &TenantId,
        job: &ObjectRef,
        owner: &str,
        status: JobStatus,
        progress: &JobProgress,
        result: &str,
    ) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Keys::new(tenant).job(job).to_item()))
            .update_expression(
                "SET #st = :status, next_line = :line, next_offset = :offset, counts = :counts, \
                 error_chunks = :chunks, #result = :result, completed_at = :now, updated_at = :now, \
                 #exp = :exp REMOVE lease_owner, lease_expires_at",
            )
            .condition_expression("lease_owner = :me")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#result", "result")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":line", n(progress.next_line))
            .expression_attribute_values(":offset", n(progress.next_offset))
            .expression_attribute_values(":counts", counts_value(&progress.counts))
            .expression_attribute_values(":chunks", n(progress.error_chunks))
            .expression_attribute_values(":result", s(result))
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .expression_attribute_values(":exp", n(now.unix() + JOB_TTL_SECS))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(sdk_error("UpdateItem (finish job)", e)),
        }
    }

    /// Gives the lease up (before a hand-over or after an error), so the next invocation need
    /// not wait for it to expire.
    pub async fn release_job(&self, tenant: &TenantId, job: &ObjectRef, owner: &str) -> Result<(), StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Keys::new(tenant).job(job).to_item()))
            .update_expression("SET lease_expires_at = :zero")
            .condition_expression("lease_owner = :me")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_check_failed(&e) => Ok(()),
            Err(e) => Err(sdk_error("UpdateItem (release job)", e)),
        }
    }

    /// Stores chunk `seq` of a job's error report (rewriting it is harmless: same rows, same text).
    pub async fn put_job_errors(
        &self,
        tenant: &TenantId,
        job: &ObjectRef,
        seq: u32,
        text: &str,
    ) -> Result<(), StoreError> {
        let mut item = Keys::new(tenant).job_errors(job, seq).to_item();
        item.insert("kind".into(), s("job_errors"));
        item.insert("text".into(), s(text));
        item.insert(TTL_ATTRIBUTE.into(), n(Timestamp::now().unix() + JOB_TTL_SECS));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem (job errors)", e))?;
        Ok(())
    }

    pub async fn job_errors(&self, tenant: &TenantId, job: &ObjectRef, seq: u32) -> Result<Option<String>, StoreError> {
        let key = Keys::new(tenant).job_errors(job, seq);
        match self.get(&key).await? {
            Some(item) => Ok(Some(get_s(&item, "text", &key)?.to_owned())),
            None => Ok(None),
        }
    }

    // -- labels ---------------------------------------------------------------------------------

    /// The decisions of `ids` that exist, with their current labels (BatchGetItem, 100 a call).
    pub async fn label_targets(
        &self,
        tenant: &TenantId,
        ids: &[TransactionId],
    ) -> Result<HashMap<TransactionId, LabelTarget>, StoreError> {
        let keys = Keys::new(tenant);
        let mut wanted: Vec<ItemKey> = ids.iter().map(|id| keys.decision(id)).collect();
        wanted.sort();
        wanted.dedup();
        let mut out = HashMap::with_capacity(wanted.len());
        for chunk in wanted.chunks(100) {
            let refs: Vec<&ItemKey> = chunk.iter().collect();
            for (key, item) in self.batch_get(&refs).await? {
                let id = keys
                    .decision_id(&key.pk)
                    .ok_or_else(|| corrupt(&key, "not a decision of this tenant"))?;
                out.insert(id, parse_label_target(&item, &key)?);
            }
        }
        Ok(out)
    }

    /// The newest day bucket of each customer's and terminal's aggregate (absent: no item).
    pub async fn newest_days(
        &self,
        tenant: &TenantId,
        customers: &[CustomerId],
        terminals: &[TerminalId],
    ) -> Result<(HashMap<CustomerId, i32>, HashMap<TerminalId, i32>), StoreError> {
        let keys = Keys::new(tenant);
        let mut wanted: Vec<ItemKey> = customers
            .iter()
            .map(|c| keys.customer_aggregate(c))
            .chain(terminals.iter().map(|t| keys.terminal_aggregate(t)))
            .collect();
        wanted.sort();
        wanted.dedup();
        let mut found = HashMap::new();
        for chunk in wanted.chunks(100) {
            let refs: Vec<&ItemKey> = chunk.iter().collect();
            found.extend(self.batch_get(&refs).await?);
        }
        let mut c = HashMap::new();
        for id in customers {
            if let Some(d) = found.get(&keys.customer_aggregate(id)).and_then(newest_day) {
                c.insert(id.clone(), d);
            }
        }
        let mut t = HashMap::new();
        for id in terminals {
            if let Some(d) = found.get(&keys.terminal_aggregate(id)).and_then(newest_day) {
                t.insert(id.clone(), d);
            }
        }
        Ok((c, t))
    }

    /// Sets a decision's label and moves the fraud counters in one TransactWriteItems, on the
    /// condition that the decision still carries `previous`. So each transaction's fraud is
    /// counted once whatever repeats, races or resumes happen.
    pub async fn write_label(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        w: &LabelWrite<'_>,
    ) -> Result<LabelWriteOutcome, StoreError> {
        let keys = Keys::new(tenant);
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(keys.decision(id).to_item()))
            .update_expression("SET #label = :label")
            .expression_attribute_names("#label", "label")
            .expression_attribute_values(":label", label_value(w.label));
        update = match w.previous {
            None => update.condition_expression("attribute_exists(pk) AND attribute_not_exists(#label)"),
            Some(p) => update
                .condition_expression("#label.#value = :old_value AND #label.#at = :old_at")
                .expression_attribute_names("#value", "value")
                .expression_attribute_names("#at", "labelled_at")
                .expression_attribute_values(":old_value", s(p.value.as_str()))
                .expression_attribute_values(":old_at", s(p.labelled_at.to_rfc3339())),
        };
        let mut items = vec![TransactWriteItem::builder()
            .update(build("Update", update.build())?)
            .build()];
        if w.fraud_delta != 0 {
            let aggregates = w
                .customer
                .map(|c| keys.customer_aggregate(c))
                .into_iter()
                .chain(w.terminal.map(|t| keys.terminal_aggregate(t)));
            for key in aggregates {
                let u = UpdateExpr {
                    expression: "ADD #f :d".into(),
                    names: HashMap::from([("#f".to_owned(), day_attribute('f', w.day))]),
                    values: HashMap::from([(":d".to_owned(), n(w.fraud_delta))]),
                };
                items.push(TransactWriteItem::builder().update(self.update(&key, u)?).build());
            }
        }
        match self.transact(items, "TransactWriteItems (label)").await? {
            Transacted::Written => Ok(LabelWriteOutcome::Written),
            // The decision's label is no longer the one read.
            Transacted::ConditionFailed(codes)
                if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") =>
            {
                Ok(LabelWriteOutcome::Changed)
            }
            Transacted::ConditionFailed(codes) => Err(StoreError::Unavailable(format!(
                "TransactWriteItems (label): a condition failed on an aggregate: {codes:?}"
            ))),
        }
    }

    /// One TransactWriteItems, retried with jitter only while it collides with another
    /// transaction on the same items (a busy card or terminal). A failed condition is the
    /// caller's to read. The SDK sets a fresh ClientRequestToken per call and keeps it across its
    /// own retries, so a retried request that had succeeded is not applied twice.
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
}

/// `ts(…)` of docs/dynamodb.md: UTC with exactly three fractional digits, so keys sort by time.
fn fixed_width(t: &Timestamp) -> String {
    let t = t.inner();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

impl DecisionStore for DynamoStore {
    async fn key(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        let Some(key) = api_key(hash) else {
            return Ok(None);
        };
        self.get(&key)
            .await?
            .map(|item| parse_key_record(&item, &key))
            .transpose()
    }

    async fn load_for_scoring(
        &self,
        tenant: &TenantId,
        key: &KeyHash,
        tx: &crate::domain::Transaction,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<ScoringSnapshot, StoreError> {
        let Some(api) = api_key(key) else {
            // Not a hash any key could have: nothing to authenticate.
            return Ok(ScoringSnapshot::default());
        };
        let keys = Keys::new(tenant);
        let customer = keys.customer_aggregate(&tx.customer_id);
        let terminal = keys.terminal_aggregate(&tx.terminal_id);
        let decision = keys.decision(&tx.id);
        let config = keys.config();
        let active = keys.active_model();
        let idem = idempotency_key.map(|k| keys.idempotency(k));
        let mut wanted = vec![&api, &customer, &terminal, &decision, &config, &active];
        wanted.extend(idem.as_ref());

        let mut found = self.batch_get(&wanted).await?;
        let mut snap = ScoringSnapshot::default();
        if let Some(item) = found.remove(&api) {
            snap.key = Some(parse_key_record(&item, &api)?);
        }
        if let Some(item) = found.remove(&customer) {
            snap.customer = parse_aggregate(&item, &customer)?;
        }
        if let Some(item) = found.remove(&terminal) {
            snap.terminal = parse_aggregate(&item, &terminal)?;
        }
        if let Some(item) = found.remove(&decision) {
            snap.existing = Some(parse_decision(item, &decision)?);
        }
        if let Some(item) = found.remove(&config) {
            if item.contains_key("review_threshold") {
                snap.thresholds = Some(parse_thresholds(&item, &config)?);
            }
        }
        if let Some(item) = found.remove(&active) {
            let p = parse_pointer(&item, &active)?;
            snap.active_model = Some(ActiveModel {
                version: p.version,
                object_key: p.object_key,
            });
        }
        if let Some(idem) = &idem {
            if let Some(item) = found.remove(idem) {
                let expired =
                    get_n_opt::<i64>(&item, TTL_ATTRIBUTE, idem)?.is_some_and(|t| t < crate::auth::now_epoch());
                if !expired {
                    let id = get_s(&item, "transaction_id", idem)?;
                    snap.idempotency = Some(IdempotencyRecord {
                        transaction_id: TransactionId::parse(id).map_err(|e| corrupt(idem, e.to_string()))?,
                        fingerprint: get_s(&item, "fingerprint", idem)?.to_owned(),
                    });
                }
            }
        }
        Ok(snap)
    }

    async fn commit(&self, tenant: &TenantId, commit: &DecisionCommit<'_>) -> Result<CommitOutcome, StoreError> {
        let items = self.commit_items(tenant, commit)?;
        match self.transact(items, "TransactWriteItems (decision)").await? {
            Transacted::Written => Ok(CommitOutcome::Committed),
            // The decision or the idempotency record exists: another request decided first.
            Transacted::ConditionFailed(_) => Ok(CommitOutcome::AlreadyDecided),
        }
    }

    async fn decision(&self, tenant: &TenantId, id: &TransactionId) -> Result<Option<DecisionRecord>, StoreError> {
        let key = Keys::new(tenant).decision(id);
        self.get(&key).await?.map(|item| parse_decision(item, &key)).transpose()
    }

    async fn decisions_for_customer(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<DecisionRecord>, StoreError> {
        let keys = Keys::new(tenant);
        let limit = limit.clamp(1, MAX_PAGE);
        let start = cursor.map(|raw| Cursor::decode(raw, &keys, customer)).transpose()?;
        // One more than asked: if it comes back there is a next page, and no empty last page.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", GSI1PK)
            .expression_attribute_values(":pk", s(keys.customer_history(customer)))
            .scan_index_forward(false)
            .limit(limit as i32 + 1)
            .set_exclusive_start_key(start.map(|c| c.to_item()))
            .send()
            .await
            .map_err(|e| sdk_error("Query (customer history)", e))?;
        let truncated = out.last_evaluated_key.is_some();
        let mut raw = out.items.unwrap_or_default();
        let more = raw.len() > limit || truncated;
        raw.truncate(limit);
        let mut next_cursor = None;
        if more {
            if let Some(last) = raw.last() {
                let key =
                    ItemKey::of(last).ok_or_else(|| corrupt(&keys.customer_history(customer), "item without pk/sk"))?;
                next_cursor = Some(Cursor::of(last, &key)?.encode());
            }
        }
        let mut items = Vec::with_capacity(raw.len());
        for item in raw {
            let key =
                ItemKey::of(&item).ok_or_else(|| corrupt(&keys.customer_history(customer), "item without pk/sk"))?;
            if keys.decision_id(&key.pk).is_none() {
                return Err(corrupt(&key, "not a decision of this tenant"));
            }
            items.push(parse_decision(item, &key)?);
        }
        Ok(Page { items, next_cursor })
    }

    async fn active_model(&self, tenant: &TenantId) -> Result<Option<ActiveModel>, StoreError> {
        Ok(self.model_pointer(tenant).await?.map(|p| ActiveModel {
            version: p.version,
            object_key: p.object_key,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(t: &str) -> TenantId {
        TenantId::parse(t).unwrap()
    }

    #[test]
    fn every_key_is_scoped_by_its_tenant() {
        let t = tenant("acme");
        let k = Keys::new(&t);
        let id = TransactionId::parse("tx-1").unwrap();
        let c = CustomerId::parse("c-1").unwrap();
        assert_eq!(k.decision(&id), ItemKey::new("T#acme#TX#tx-1".into(), "DECISION"));
        assert_eq!(k.customer_history(&c), "T#acme#CUST#c-1");
        assert_eq!(k.customer_aggregate(&c).sk, "AGG");
        assert_eq!(
            k.terminal_aggregate(&TerminalId::parse("t-1").unwrap()).pk,
            "T#acme#TERM#t-1"
        );
        assert_eq!(
            k.idempotency(&IdempotencyKey::parse("a#b").unwrap()).pk,
            "T#acme#IDEM#a#b"
        );
        assert_eq!(k.config(), ItemKey::new("T#acme".into(), "CONFIG"));
        assert_eq!(k.active_model(), ItemKey::new("T#acme#MODEL".into(), "ACTIVE"));
        assert_eq!(k.model_version("abc").sk, "V#abc");
        assert_eq!(k.key_id("vk_1").pk, "T#acme#KEYID#vk_1");
        assert_eq!(k.decision_id("T#acme#TX#tx-1"), Some(id));
        assert_eq!(Keys::new(&tenant("acm")).decision_id("T#acme#TX#tx-1"), None);
        assert_eq!(k.decision_id("T#acme#TX#"), None);
        assert!(api_key(&KeyHash("ab".into())).is_none());
        assert_eq!(
            api_key(&KeyHash("a".repeat(64))).unwrap().pk,
            format!("KEY#{}", "a".repeat(64))
        );
    }

    #[test]
    fn history_sort_keys_order_by_time() {
        let id = TransactionId::parse("x").unwrap();
        let at = |s| Timestamp::parse("t", s).unwrap();
        let a = history_sort_key(&at("2018-08-08T10:00:00Z"), &id);
        let b = history_sort_key(&at("2018-08-08T10:00:00.5Z"), &id);
        let c = history_sort_key(&at("2018-08-08T10:00:01+00:00"), &id);
        assert_eq!(a, "2018-08-08T10:00:00.000000000Z#x");
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[test]
    fn aggregate_update_never_adds_and_removes_the_same_attribute() {
        for day in [0, 63, 64, 17_622, -5] {
            let u = aggregate_update(&AggregateDelta {
                day,
                counter: DayCounter {
                    count: 1,
                    amount_minor: 250,
                    frauds: 1,
                },
            });
            let added: Vec<_> = u
                .names
                .iter()
                .filter(|(k, _)| k.starts_with("#d"))
                .map(|(_, v)| v.clone())
                .collect();
            let removed: Vec<_> = u
                .names
                .iter()
                .filter(|(k, _)| k.starts_with("#p"))
                .map(|(_, v)| v.clone())
                .collect();
            assert_eq!(added.len(), 3);
            assert_eq!(removed.len(), 3 * PRUNE_DAYS as usize);
            for a in &added {
                assert!(!removed.contains(a), "{a} is both added and removed");
            }
            for r in &removed {
                let (_, d) = parse_day_attribute(r).unwrap();
                assert!(d <= day - RETENTION_DAYS, "{r} is still within retention of {day}");
            }
            assert_eq!(u.values[":d1"], AttributeValue::N("250".into()));
            assert!(u.expression.starts_with("ADD #d0 :d0, #d1 :d1, #d2 :d2 REMOVE #p0, "));
        }
        let label = aggregate_update(&AggregateDelta {
            day: 10,
            counter: DayCounter {
                count: 0,
                amount_minor: 0,
                frauds: 1,
            },
        });
        assert!(label.expression.starts_with("ADD #d2 :d2 REMOVE"));
        assert_eq!(label.names["#d2"], "f10");
    }

    #[test]
    fn aggregates_parse_and_corrupt_numbers_are_named() {
        let key = ItemKey::new("T#a#CUST#c".into(), "AGG");
        let mut item = key.to_item();
        item.insert("c100".into(), n(2));
        item.insert("a100".into(), n(750));
        item.insert("f100".into(), n(1));
        item.insert("c99".into(), n(1));
        item.insert("expires_at".into(), n(5));
        let agg = parse_aggregate(&item, &key).unwrap();
        assert_eq!(
            agg.days(),
            vec![
                (
                    99,
                    DayCounter {
                        count: 1,
                        amount_minor: 0,
                        frauds: 0
                    }
                ),
                (
                    100,
                    DayCounter {
                        count: 2,
                        amount_minor: 750,
                        frauds: 1
                    }
                ),
            ]
        );
        item.insert("a99".into(), s("lots"));
        let err = parse_aggregate(&item, &key).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { key, .. } if key == "T#a#CUST#c/AGG"),
            "{err}"
        );
        assert_eq!(parse_day_attribute("c-3"), Some((b'c', -3)));
        assert_eq!(parse_day_attribute("created_at"), None);
        assert_eq!(parse_day_attribute("a"), None);
    }

    #[test]
    fn cursors_only_resume_their_own_customer_of_their_own_tenant() {
        let t = tenant("acme");
        let k = Keys::new(&t);
        let c1 = CustomerId::parse("c-1").unwrap();
        let id = TransactionId::parse("tx-9").unwrap();
        let at = Timestamp::parse("t", "2018-08-08T10:00:00Z").unwrap();
        let key = k.decision(&id);
        let cursor = Cursor {
            pk: key.pk.clone(),
            sk: key.sk.clone(),
            gsi1pk: k.customer_history(&c1),
            gsi1sk: history_sort_key(&at, &id),
        };
        let raw = cursor.encode();
        assert_eq!(Cursor::decode(&raw, &k, &c1).unwrap(), cursor);
        let other = CustomerId::parse("c-2").unwrap();
        assert!(matches!(Cursor::decode(&raw, &k, &other), Err(StoreError::BadCursor)));
        let t2 = tenant("globex");
        assert!(matches!(
            Cursor::decode(&raw, &Keys::new(&t2), &c1),
            Err(StoreError::BadCursor)
        ));
        for junk in ["", "!!!", "e30", &URL_SAFE_NO_PAD.encode("[1]")] {
            assert!(
                matches!(Cursor::decode(junk, &k, &c1), Err(StoreError::BadCursor)),
                "{junk}"
            );
        }
        let mixed = Cursor {
            gsi1sk: history_sort_key(&at, &TransactionId::parse("tx-8").unwrap()),
            ..cursor
        };
        assert!(matches!(
            Cursor::decode(&mixed.encode(), &k, &c1),
            Err(StoreError::BadCursor)
        ));
    }

    #[test]
    fn key_records_round_trip_and_scopes_are_a_string_set() {
        let rec = KeyRecord {
            key_id: "vk_0123".into(),
            tenant: tenant("acme"),
            scopes: Scope::parse_list("transactions:write,models:read").unwrap(),
            created_at: 10,
            expires_at: Some(20),
            revoked_at: None,
        };
        let key = api_key(&KeyHash("0".repeat(64))).unwrap();
        let item = key_record_item(&key, &rec);
        assert!(matches!(&item["scopes"], AttributeValue::Ss(v) if v.len() == 2));
        assert_eq!(item[TTL_ATTRIBUTE], AttributeValue::N("20".into()));
        assert_eq!(parse_key_record(&item, &key).unwrap(), rec);
        let mut bad = item.clone();
        bad.insert("scopes".into(), AttributeValue::Ss(vec!["admin".into()]));
        assert!(matches!(parse_key_record(&bad, &key), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn table_spec_builds_a_create_table_request() {
        assert_eq!(TABLE.hash_key, "pk");
        assert_eq!(TABLE.indexes[0].name, "gsi1");
        assert_eq!(TABLE.ttl_attribute, "expires_at");
        assert_eq!(BillingMode::from(TABLE.billing_mode), BillingMode::PayPerRequest);
        assert_eq!(ProjectionType::from(TABLE.indexes[0].projection), ProjectionType::All);
    }
}
