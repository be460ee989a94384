//! Ports: what the domain needs from storage, as traits. Adapters implement them.

pub mod contract;
pub mod events;
pub mod jobs;
pub mod labels;
pub mod objects;
pub mod oidc;
pub mod reinvoke;
pub mod reviews;
pub mod rules;

use crate::domain::auth::{KeyHash, KeyRecord};
use crate::domain::decision::{DecisionRecord, IdempotencyKey};
use crate::domain::features::{AggregateDelta, EntityAggregate};
use crate::domain::policy::Thresholds;
use crate::domain::{CustomerId, TenantId, TerminalId, Timestamp, Transaction, TransactionId};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

pub mod in_memory;
pub mod registry;

/// A storage failure. Only [`StoreError::Unavailable`] is worth repeating as is
/// ([`StoreError::is_retryable`]); every other kind gives the same answer however often it is tried.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Transient: throttled, timed out, a 5xx, a broken connection, or contention that outlasted
    /// the adapter's own retries. The same call may succeed later.
    #[error("storage call failed: {0}")]
    Unavailable(String),
    /// Permanent: the store refused the request (validation, access denied, no such table) or it
    /// could not be built or encoded. Repeating it cannot help; it needs a fix or other input.
    #[error("storage refused the call: {0}")]
    Rejected(String),
    #[error("stored item {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("cursor is not valid for this query")]
    BadCursor,
    #[error("not found: {0}")]
    NotFound(String),
    /// A conditional change lost to a concurrent one; read again and retry.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The change would pass a limit of what is stored (a list's entries, a tenant's lists);
    /// nothing was written. The message is written for the caller.
    #[error("{0}")]
    LimitReached(String),
}

impl StoreError {
    /// Whether repeating the same call may succeed: only [`StoreError::Unavailable`]. A
    /// [`StoreError::Conflict`] needs a fresh read first, so it is not retryable as is.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// What an Idempotency-Key was first used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub transaction_id: TransactionId,
    pub fingerprint: String,
}

/// Which model serves a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveModel {
    pub version: String,
    /// Object key of the artifact in the model bucket.
    pub object_key: String,
}

/// Everything one decision reads, fetched in one round trip.
#[derive(Debug, Clone, Default)]
pub struct ScoringSnapshot {
    /// The caller's key, re-read so a revocation takes effect on the next request.
    pub key: Option<KeyRecord>,
    pub customer: EntityAggregate,
    pub terminal: EntityAggregate,
    /// A decision already stored under this transaction id.
    pub existing: Option<DecisionRecord>,
    pub idempotency: Option<IdempotencyRecord>,
    pub thresholds: Option<Thresholds>,
    pub active_model: Option<ActiveModel>,
    /// The active ruleset's and the lists' versions, from the same CONFIG item as the thresholds.
    pub rules: rules::RulesPointers,
    /// Where the commit writes this transaction's aggregate deltas, as the read found the
    /// aggregate items; hand it back in [`DecisionCommit::aggregates`].
    pub aggregate_write: AggregateWritePlan,
}

/// Which shard of each aggregate a decision adds to, and what that write repairs. The store
/// fills it on read and uses it on commit; services pass it through untouched. The default
/// (shard 0, nothing to repair) is always a safe place to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregateWritePlan {
    pub(crate) customer: ShardWrite,
    pub(crate) terminal: ShardWrite,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShardWrite {
    pub(crate) shard: u8,
    /// Attributes of that shard's item the read ignored (unreadable, or outside retention).
    pub(crate) remove: Vec<String>,
}

impl AggregateWritePlan {
    /// The same shards, repairing nothing.
    pub(crate) fn without_repairs(&self) -> AggregateWritePlan {
        let bare = |w: &ShardWrite| ShardWrite {
            shard: w.shard,
            remove: Vec::new(),
        };
        AggregateWritePlan {
            customer: bare(&self.customer),
            terminal: bare(&self.terminal),
        }
    }

    /// No read behind it: shard 0, nothing repaired.
    pub const NONE: &'static AggregateWritePlan = &AggregateWritePlan {
        customer: ShardWrite {
            shard: 0,
            remove: Vec::new(),
        },
        terminal: ShardWrite {
            shard: 0,
            remove: Vec::new(),
        },
    };
}

/// Everything one decision writes, in one atomic transaction.
pub struct DecisionCommit<'a> {
    pub record: &'a DecisionRecord,
    pub transaction: &'a Transaction,
    pub idempotency_key: Option<&'a IdempotencyKey>,
    pub delta: AggregateDelta,
    /// From the [`ScoringSnapshot`] this decision was made on ([`AggregateWritePlan::NONE`]
    /// without one).
    pub aggregates: &'a AggregateWritePlan,
}

impl DecisionCommit<'_> {
    /// The review item this decision opens in the same atomic write: one for every `review`
    /// decision, none otherwise. Derived from the record, so the scoring service, a replay and
    /// a retry all commit the same item, and its conditional Put makes it exist at most once.
    pub fn review(&self) -> Option<crate::domain::review::Review> {
        crate::domain::review::Review::opened_by(self.record)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// Another request stored this transaction (or idempotency key) first; nothing was written.
    AlreadyDecided,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Decisions, aggregates and keys. Every method takes the tenant; the adapter scopes every key
/// with it in one place.
pub trait DecisionStore: Send + Sync {
    fn key(&self, hash: &KeyHash) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// `key`: the API key to re-read in the same batch (`None` for a token principal).
    fn load_for_scoring(
        &self,
        tenant: &TenantId,
        key: Option<&KeyHash>,
        tx: &Transaction,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> impl Future<Output = Result<ScoringSnapshot, StoreError>> + Send;

    fn commit(
        &self,
        tenant: &TenantId,
        commit: &DecisionCommit<'_>,
    ) -> impl Future<Output = Result<CommitOutcome, StoreError>> + Send;

    fn decision(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
    ) -> impl Future<Output = Result<Option<DecisionRecord>, StoreError>> + Send;

    /// Newest first. `cursor` is the `next_cursor` of the previous page.
    fn decisions_for_customer(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<DecisionRecord>, StoreError>> + Send;

    fn active_model(&self, tenant: &TenantId) -> impl Future<Output = Result<Option<ActiveModel>, StoreError>> + Send;
}

/// Decisions by the time they occurred, for backtests.
pub trait DecisionWindow: Send + Sync {
    /// Decisions whose transaction occurred in `[from, to)`, each exactly once over the pages
    /// and in no particular order; `cursor` is the previous page's `next_cursor`
    /// ([`StoreError::BadCursor`] if it is not one for this window). A page may be empty and
    /// still have a next one.
    fn decisions_between(
        &self,
        tenant: &TenantId,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<DecisionRecord>, StoreError>> + Send;
}

/// Stored aggregates by entity, as one bulk read found them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FoundAggregates {
    pub customers: HashMap<CustomerId, EntityAggregate>,
    pub terminals: HashMap<TerminalId, EntityAggregate>,
}

/// The per-customer and per-terminal aggregates a decision reads, in bulk and read only (the
/// batch runner's `stored` feature source).
pub trait AggregateReads: Send + Sync {
    /// The aggregates of these entities, as [`DecisionStore::load_for_scoring`] would read them.
    /// An entity with no stored aggregate is absent from the maps.
    fn aggregates(
        &self,
        tenant: &TenantId,
        customers: &[CustomerId],
        terminals: &[TerminalId],
    ) -> impl Future<Output = Result<FoundAggregates, StoreError>> + Send;
}

/// Whole per-entity aggregates written in bulk, in the form decisions and labels keep them: a
/// history loaded before live traffic (`verdict history load`).
pub trait AggregateSeeding: Send + Sync {
    /// Stores each entity's aggregate as the counters of its shard 0, replacing what that shard
    /// held, so loading the same history again leaves the same state. Meant for entities without
    /// live traffic yet: counts a decision or a label put in that shard are replaced too. An
    /// empty aggregate writes nothing.
    fn seed_aggregates(
        &self,
        tenant: &TenantId,
        customers: &[(CustomerId, EntityAggregate)],
        terminals: &[(TerminalId, EntityAggregate)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Model artifacts by object key.
pub trait ModelBlobs: Send + Sync {
    fn fetch(&self, object_key: &str) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;
}

/// Waiting, on the runtime the caller runs on (tokio: `adapters::runtime::TokioSleep`), so the
/// services that wait for a live lease to run out need none.
pub trait Sleep: Send + Sync {
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}
