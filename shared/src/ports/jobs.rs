//! Job leases: one job per S3 object version (batch-score, labels, model-import, backtest), worked on by
//! one invocation at a time under a lease, checkpointed, handed over, finished.
//!
//! The job kind's progress is the type parameter `P` (the batch checkpoint, the label file's
//! position): the store keeps its serde form beside the common attributes and hands it back.
//!
//! The rules, the same in every implementation (the contract, [`crate::ports::contract::jobs`],
//! checks them):
//! - a job is created once (`attribute_not_exists`), leased to its creator;
//! - a running job's lease is taken by its holder again, or by anyone once
//!   `lease_expires_at <= now` (a released lease is 0);
//! - a checkpoint needs the lease AND the sequence the caller last saw, and bumps it, so two
//!   invocations can never both advance a job;
//! - renew, release and finish need the lease and a running job; an ended job never changes.

use crate::domain::{JobStatus, ObjectRef, TenantId, Timestamp};
use crate::ports::StoreError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;

/// How long a job's item (and its report chunks) is kept after it ends, and while it runs
/// after its start (so an abandoned one ages out).
pub const JOB_TTL_SECS: i64 = 30 * 24 * 3600;

/// Which function's job an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    Batch,
    Labels,
    Model,
    /// A file of list entries (`lists/incoming/`).
    ListImport,
    /// A backtest request (`backtests/incoming/`).
    Backtest,
}

impl JobType {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobType::Batch => "batch",
            JobType::Labels => "labels",
            JobType::Model => "model",
            JobType::ListImport => "list_import",
            JobType::Backtest => "backtest",
        }
    }
}

/// Who holds a lease: one id per invocation, never shared with a retry of the same event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseOwner(String);

impl LeaseOwner {
    /// A fresh random 16-hex-digit id.
    pub fn fresh() -> Self {
        LeaseOwner(format!("{:016x}", rand::random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Job<P> {
    pub object: ObjectRef,
    pub job_type: JobType,
    pub size: Option<u64>,
    pub status: JobStatus,
    /// Where a running job got; `None` once it ended (an ended job's progress is not read).
    pub progress: Option<P>,
    /// A failed job: why.
    pub error: Option<String>,
    /// An ended job: what it produced, as JSON (a summary, an outcome).
    pub result: Option<String>,
    /// The holder while running; `None` once ended.
    pub lease_owner: Option<String>,
    /// Epoch seconds; anyone may take the lease from then on.
    pub lease_expires_at: i64,
    /// The checkpoint sequence: +1 on each checkpoint.
    pub seq: u64,
    /// How many invocations have held the job.
    pub invocations: u64,
    pub started_at: Timestamp,
}

impl<P> Job<P> {
    /// Whether `owner` may take the lease at `now` (epoch seconds).
    pub fn lease_free_for(&self, owner: &LeaseOwner, now: i64) -> bool {
        self.status == JobStatus::Running
            && (self.lease_owner.as_deref() == Some(owner.as_str()) || self.lease_expires_at <= now)
    }
}

/// A job to start, leased to its creator.
#[derive(Debug, Clone)]
pub struct NewJob<'a, P> {
    pub object: &'a ObjectRef,
    pub job_type: JobType,
    pub size: Option<u64>,
    pub owner: &'a LeaseOwner,
    pub lease_expires_at: i64,
    pub started_at: Timestamp,
    pub progress: &'a P,
}

/// The answer to [`JobStore::claim_job`].
#[derive(Debug, Clone, PartialEq)]
pub enum Claim<P> {
    /// The caller holds the lease now; resume from the job.
    Claimed(Job<P>),
    /// It ended earlier (completed or failed): nothing to do.
    Ended(Job<P>),
    /// Another invocation holds an unexpired lease.
    Busy { lease_expires_at: i64 },
    /// There is no such job.
    Missing,
}

/// How a job ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    Completed { result: Option<String> },
    Failed { error: String, result: Option<String> },
}

impl JobEnd {
    pub fn status(&self) -> JobStatus {
        match self {
            JobEnd::Completed { .. } => JobStatus::Completed,
            JobEnd::Failed { .. } => JobStatus::Failed,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            JobEnd::Completed { .. } => None,
            JobEnd::Failed { error, .. } => Some(error),
        }
    }

    pub fn result(&self) -> Option<&str> {
        match self {
            JobEnd::Completed { result } | JobEnd::Failed { result, .. } => result.as_deref(),
        }
    }
}

/// Job items with their leases. Every method takes the tenant; keys are scoped in one place.
/// Lease times are epoch seconds given by the caller.
pub trait JobStore: Send + Sync {
    /// The job, if one was ever started (strongly consistent).
    fn read_job<P: DeserializeOwned + Send>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<Option<Job<P>>, StoreError>> + Send;

    /// Starts a job leased to `job.owner`. `false` when it exists already.
    fn create_job<P: Serialize + Sync>(
        &self,
        tenant: &TenantId,
        job: &NewJob<'_, P>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Takes the lease of a running job that is ours or free at `now`; counts the invocation.
    fn claim_job<P: DeserializeOwned + Send>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        lease_expires_at: i64,
        now: i64,
    ) -> impl Future<Output = Result<Claim<P>, StoreError>> + Send;

    /// Records progress and renews the lease, if the job runs, the lease is `owner`'s and its
    /// sequence is still `seq`; the sequence becomes `seq + 1`. `false` when it was not.
    #[allow(clippy::too_many_arguments)]
    fn checkpoint_job<P: Serialize + Sync>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        seq: u64,
        progress: &P,
        lease_expires_at: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Extends `owner`'s lease of a running job. `false` when it is not `owner`'s.
    fn renew_lease(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        lease_expires_at: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Lets the next invocation take the job at once (a hand-over, a transient error). Does
    /// nothing when the lease is not `owner`'s.
    fn release_job(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ends `owner`'s running job, with its last progress if given; the item then expires
    /// [`JOB_TTL_SECS`] after `at`. `false` when the lease is not `owner`'s (any more).
    fn finish_job<P: Serialize + Sync>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        end: &JobEnd,
        progress: Option<&P>,
        at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records a job that ended without ever running (a file that cannot be a job). `false`
    /// when a job exists already.
    fn record_job_end(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        job_type: JobType,
        size: Option<u64>,
        end: &JobEnd,
        at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores chunk `seq` of a job's error report (rewriting one is harmless).
    fn put_report_chunk(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        seq: u32,
        text: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn report_chunk(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        seq: u32,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}
