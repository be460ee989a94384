//! What the label applier ([`crate::app::labels`]) needs besides job leases
//! ([`crate::ports::jobs`]) and re-invoking ([`crate::ports::reinvoke`]):
//! - [`LabelStore`]: the decisions a file labels and the fraud counters a label moves
//!   (DynamoDB: `adapters/dynamodb/labels.rs`);
//! - [`LabelReading`]: where the label file (opened through [`crate::ports::objects`]) is
//!   parsed into chunks, since reading it blocks.
//!
//! Waiting for a live lease to run out goes through [`crate::ports::Sleep`].

use crate::domain::io::FileKind;
use crate::domain::labels::{LabelChunk, Resume, StoredLabel};
use crate::domain::{CustomerId, TenantId, TerminalId, Timestamp, TransactionId};
use crate::ports::StoreError;
use std::collections::HashMap;
use std::future::Future;
use std::io::Read;

/// A stored decision as labelling sees it.
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
    /// Added to `f<day>` of each listed aggregate (+1, -1; 0 moves none).
    pub fraud_delta: i64,
    pub day: i32,
    pub customer: Option<&'a CustomerId>,
    pub terminal: Option<&'a TerminalId>,
}

/// The answer to [`LabelStore::write_label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelWriteOutcome {
    Written,
    /// The decision's label is no longer `previous` (or the decision is gone): read it again.
    Changed,
    /// The store refused to move the fraud counters (one is not a number); nothing was written.
    Refused,
}

/// Each aggregate's newest day bucket (absent: no aggregate), for the retention rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewestDays {
    pub customers: HashMap<CustomerId, i32>,
    pub terminals: HashMap<TerminalId, i32>,
}

/// Decisions' labels and the fraud counters. Every method takes the tenant.
pub trait LabelStore: Send + Sync {
    /// The decisions of `ids` that exist, with their current labels.
    fn label_targets(
        &self,
        tenant: &TenantId,
        ids: &[TransactionId],
    ) -> impl Future<Output = Result<HashMap<TransactionId, LabelTarget>, StoreError>> + Send;

    fn newest_days(
        &self,
        tenant: &TenantId,
        customers: &[CustomerId],
        terminals: &[TerminalId],
    ) -> impl Future<Output = Result<NewestDays, StoreError>> + Send;

    /// Sets the label and moves the counters atomically, on the condition that the decision
    /// still carries `previous` (same value and `labelled_at`; none: no label yet).
    fn write_label(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        write: &LabelWrite<'_>,
    ) -> impl Future<Output = Result<LabelWriteOutcome, StoreError>> + Send;
}

/// How to parse one label file, from where its job got.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    /// `s3://bucket/key`: the name row errors give.
    pub file: String,
    pub kind: FileKind,
    pub resume: Resume,
    /// The input's first byte in the file: `resume`'s offset when ranged, else 0.
    pub offset: u64,
    /// Lines per [`LabelChunk`].
    pub chunk_rows: usize,
}

/// The chunks of one open label file, read ahead while the caller applies the last one.
pub trait LabelChunks: Send {
    /// The next chunk; `None` after the one marked `end`, or when the reader died before it.
    fn next(&mut self) -> impl Future<Output = Option<LabelChunk>> + Send;
}

/// Where a label file is parsed ([`crate::domain::labels::open_reader`]): somewhere a read may
/// block, since the object reader ([`crate::ports::objects::Objects::open`]) and gzip are
/// synchronous.
pub trait LabelReading: Send + Sync {
    type Chunks: LabelChunks;

    fn start<R: Read + Send + 'static>(&self, plan: ReadPlan, input: R) -> Self::Chunks;
}
