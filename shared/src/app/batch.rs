//! The batch runner: one uploaded file under `batches/incoming/` becomes its results, error
//! report and summary, resumably, under a job lease.
//!
//! The lease state machine is here: find, create or take over the job; wait once for a live
//! holder; work; checkpoint each part after uploading it; hand over near the deadline; finish.
//! Scoring the rows ([`score_rows`]: [`crate::domain::batch::BatchScorer`], and for the `stored`
//! feature source the aggregates read in bulk through [`AggregateReads`] into a bounded cache)
//! runs on a thread the platform owns ([`ScoringPlatform`]: spawning it, the channel of flushes),
//! and waiting goes through [`Sleep`], so this stays runtime-agnostic.

use crate::app::policy_cache::{RulesUnavailable, TenantRules};
use crate::app::scoring::ScoreError;
use crate::app::try_join_bounded;
use crate::domain::batch::{
    decoder, AggregateCache, BatchError, BatchFile, BatchJob, BatchProgress, BatchScorer, Checkpoint, FeatureSource,
    Flush, LineTracker, ObjectRef, PinnedModel, SourceInfo, StoredAggregates, Summary, Upload,
};
use crate::domain::io::{FileKind, Format, RowError, TransactionReader};
use crate::domain::model::Model;
use crate::domain::policy::Policy;
use crate::domain::{JobStatus, LabelledTransaction, TenantId, Timestamp, Transaction};
use crate::ports::jobs::{Claim, Job, JobEnd, JobStore, JobType, LeaseOwner, NewJob};
use crate::ports::objects::{ObjectVersion, Objects, ReadFailure};
use crate::ports::reinvoke::Reinvoke;
use crate::ports::rules::TenantPolicy;
use crate::ports::{ActiveModel, AggregateReads, Sleep, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Tunables; [`Settings::default`] is what the deployed function uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bytes per multipart part (raised to 5 MiB if below).
    pub part_size: usize,
    /// How long a job's lease lasts after each checkpoint; a crashed invocation's job can be
    /// taken over after this.
    pub lease: Duration,
    /// Hand over when less than this is left before the deadline.
    pub handover_margin: Duration,
    /// Rows per BatchGetItem round of the `stored` feature source.
    pub stored_chunk_rows: usize,
    /// Entities whose stored aggregates are kept in memory (about 2 KB each).
    pub aggregate_cache: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            part_size: 8 << 20,
            lease: Duration::from_secs(120),
            handover_margin: Duration::from_secs(60),
            stored_chunk_rows: 2_000,
            aggregate_cache: 20_000,
        }
    }
}

/// The payload the runner sends itself to continue a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRequest {
    pub resume: ObjectRef,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Scored to the end; the summary as written to S3.
    Completed { summary: Box<Summary> },
    /// Checkpointed and re-invoked to continue.
    HandedOver { results_rows_done: u64, next_line: u64 },
    /// The job finished earlier: a duplicate delivery, nothing done.
    AlreadyDone,
    /// The job cannot run; recorded on the job item and in the summary.
    Failed { error: String },
    /// It failed earlier; nothing done.
    AlreadyFailed { error: String },
    /// Another invocation holds the job and is making progress.
    Busy,
    /// The object is gone or was overwritten since the event (the new upload has its own).
    Superseded,
    /// Not a batch upload (outside the prefix, or no valid tenant): nothing can be recorded.
    Skipped { reason: String },
}

/// Failures the invocation should be retried for (Lambda retries, then the DLQ). Bad input is
/// never one: it is a [`Status::Failed`] or a row in the error report.
#[derive(Debug, thiserror::Error)]
pub enum BatchRunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Read(String),
    #[error("re-invoking the function to continue {key}: {reason}")]
    Reinvoke { key: String, reason: String },
    #[error("the scoring thread of {key} stopped: {reason}")]
    Worker { key: String, reason: String },
}

/// The tenant's model and policy, as a new job pins them, and the pinned ones loaded.
pub trait BatchModels: Send + Sync {
    fn active_model(&self, tenant: &TenantId) -> impl Future<Output = Result<Option<ActiveModel>, StoreError>> + Send;
    fn tenant_policy(&self, tenant: &TenantId) -> impl Future<Output = Result<TenantPolicy, StoreError>> + Send;
    /// Loads (or returns the cached) model.
    fn load(&self, model: &ActiveModel) -> impl Future<Output = Result<Arc<Model>, ScoreError>> + Send;
    /// Ruleset `version` compiled, with its lists as they are now (cached like the api's).
    fn rules(
        &self,
        tenant: &TenantId,
        version: u32,
    ) -> impl Future<Output = Result<Option<TenantRules>, RulesUnavailable>> + Send;
}

/// Everything a scoring thread needs.
pub struct ScoringPlan {
    pub kind: FileKind,
    pub model: Arc<Model>,
    /// The job's pinned policy (`BatchProgress::policy`), the one every row is decided by.
    pub policy: Policy,
    pub source: FeatureSource,
    pub part_size: usize,
    pub checkpoint: Checkpoint,
    pub tenant: TenantId,
    /// `s3://bucket/key`, for row errors.
    pub file_name: String,
    /// `stored`: rows per round of aggregate reads (at least 1).
    pub stored_chunk_rows: usize,
    /// `stored`: entities whose aggregates the job keeps.
    pub aggregate_cache: usize,
}

/// What a scoring run yields next.
#[derive(Debug)]
pub enum Scored {
    Flush(Flush),
    /// The heartbeat passed without a flush (the file is replaying or parts are slow).
    Tick,
    /// The thread ended without the last flush.
    Stopped(ScoringStop),
}

#[derive(Debug)]
pub enum ScoringStop {
    /// The object could not be read (after retries): try the invocation again.
    Read(String),
    Store(StoreError),
    Other(String),
}

/// A scoring thread streaming one object. Dropping it stops the thread.
pub trait ScoringRun: Send {
    /// The next flush, or [`Scored::Tick`] after `heartbeat` without one (zero: no ticks).
    fn next(&mut self, heartbeat: Duration) -> impl Future<Output = Scored> + Send;
}

/// The runtime the runner needs: a blocking thread for the rows.
pub trait ScoringPlatform: Send + Sync {
    type Run: ScoringRun;
    fn start<R: Read + Send + 'static>(&self, plan: ScoringPlan, reader: R, failure: ReadFailure) -> Self::Run;
}

/// What [`score_rows`] needs from the thread it runs on (the platform's).
pub trait ScoringThread {
    /// Hands a flush to the runner; `false` when the run is gone.
    fn send(&mut self, flush: Flush) -> bool;
    /// The run was dropped: stop.
    fn cancelled(&self) -> bool;
    /// Runs `f` to its end on this thread (the `stored` source's reads).
    fn block_on<F: Future>(&self, f: F) -> F::Output;
}

/// Bulk aggregate reads in flight at once.
pub const READS_IN_FLIGHT: usize = 8;
/// Rows between looks at the cancel flag.
const CANCEL_CHECK_ROWS: u64 = 1024;

/// A row as the reader yields it, and the line it ends on.
type Row = (u64, Result<LabelledTransaction, RowError>);

/// Scores one object's rows on the calling thread, which blocks on reading it, and hands each
/// full part to `thread`. Returns when the file ends (after the last flush), or early when the
/// run is gone or cancelled; fails when the object or the aggregates could not be read.
pub fn score_rows<R, A, T>(
    plan: ScoringPlan,
    reader: R,
    failure: ReadFailure,
    aggregates: &A,
    thread: &mut T,
) -> Result<(), ScoringStop>
where
    R: Read + Send + 'static,
    A: AggregateReads,
    T: ScoringThread,
{
    let line = Arc::new(AtomicU64::new(0));
    let input = LineTracker::new(decoder(plan.kind, reader), line.clone());
    let mut rows = TransactionReader::new(plan.file_name.clone(), plan.kind.format, input);
    let mut scorer = BatchScorer::new(
        plan.model.clone(),
        plan.policy.clone(),
        plan.kind.format,
        plan.source,
        plan.part_size,
        &plan.checkpoint,
    );
    match plan.source {
        FeatureSource::File => {
            for item in &mut rows {
                scorer.push(line.load(Ordering::Relaxed), item, None);
                if scorer.flush_due() && !thread.send(scorer.take_flush(false)) {
                    return Ok(());
                }
                if scorer.row().is_multiple_of(CANCEL_CHECK_ROWS) && thread.cancelled() {
                    return Ok(());
                }
            }
        }
        FeatureSource::Stored => {
            let from = plan.checkpoint.results_rows_done;
            let mut stored = StoredSource::new(aggregates, &plan.tenant, plan.aggregate_cache, from);
            let size = plan.stored_chunk_rows.max(1);
            let mut chunk: Vec<Row> = Vec::with_capacity(size);
            loop {
                chunk.clear();
                for item in rows.by_ref().take(size) {
                    chunk.push((line.load(Ordering::Relaxed), item));
                }
                if chunk.is_empty() || thread.cancelled() {
                    break;
                }
                thread
                    .block_on(stored.load(scorer.row(), &chunk))
                    .map_err(ScoringStop::Store)?;
                for (l, item) in chunk.drain(..) {
                    let aggs = item.as_ref().ok().map(|t| stored.get(&t.tx));
                    scorer.push(l, item, aggs);
                    if scorer.flush_due() && !thread.send(scorer.take_flush(false)) {
                        return Ok(());
                    }
                }
            }
        }
    }
    if thread.cancelled() {
        return Ok(());
    }
    if let Some(reason) = failure.get() {
        return Err(ScoringStop::Read(reason));
    }
    thread.send(scorer.take_flush(true));
    Ok(())
}

/// The `stored` feature source of one job: the aggregates each chunk of rows needs, read in bulk
/// ([`READS_IN_FLIGHT`] reads at a time) into the job's [`AggregateCache`].
pub struct StoredSource<'a, A> {
    reads: &'a A,
    tenant: &'a TenantId,
    cache: AggregateCache,
    /// The first row scored: the rows before it are only replayed, so their entities are not read.
    scored_from: u64,
}

impl<'a, A: AggregateReads> StoredSource<'a, A> {
    pub fn new(reads: &'a A, tenant: &'a TenantId, capacity: usize, scored_from: u64) -> Self {
        StoredSource {
            reads,
            tenant,
            cache: AggregateCache::new(capacity),
            scored_from,
        }
    }

    /// Reads what the good rows of `chunk` need; `first` is the file row it starts at.
    pub async fn load(&mut self, first: u64, chunk: &[Row]) -> Result<(), StoreError> {
        let from = self.scored_from;
        let scored = chunk
            .iter()
            .enumerate()
            .filter(move |(j, _)| first + *j as u64 >= from)
            .filter_map(|(_, (_, item))| item.as_ref().ok())
            .map(|t| &t.tx);
        let (source, tenant) = (self.reads, self.tenant);
        let pending: Vec<_> = self
            .cache
            .reads(scored)
            .into_iter()
            .map(|read| async move {
                let found = source.aggregates(tenant, &read.customers, &read.terminals).await?;
                Ok::<_, StoreError>((read, found))
            })
            .collect();
        for (read, found) in try_join_bounded(pending, READS_IN_FLIGHT).await? {
            self.cache.insert(read, found.customers, found.terminals);
        }
        Ok(())
    }

    /// The row's aggregates (empty for an entity with none stored).
    pub fn get(&self, tx: &Transaction) -> StoredAggregates<'_> {
        self.cache.get(tx)
    }

    /// Entities cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// The runner over its ports; cheap to build per invocation from borrowed parts.
pub struct BatchRunner<'a, J, O, M, P, R, S> {
    pub jobs: &'a J,
    pub objects: &'a O,
    pub models: &'a M,
    pub platform: &'a P,
    pub reinvoke: &'a R,
    /// Waits once for a live holder's lease to run out.
    pub sleep: &'a S,
    pub settings: &'a Settings,
}

const CSV_TYPE: &str = "text/csv";
/// The content type of NDJSON objects: batch results and the decision archive.
pub const NDJSON_TYPE: &str = "application/x-ndjson";
/// Output objects name the input version they came from; completion checks it on a retry.
const SOURCE_ETAG_METADATA: &str = "source-etag";

fn remaining(deadline: SystemTime) -> Duration {
    deadline.duration_since(SystemTime::now()).unwrap_or_default()
}

fn now_epoch() -> i64 {
    Timestamp::now().unix()
}

/// Why an object cannot be scored.
enum Refusal {
    /// The file itself (its type, its metadata): final for these bytes under this key.
    File(String),
    /// The tenant's state (no model, a model that does not load): the same upload works once
    /// that is fixed, so no job is recorded.
    Tenant(String),
}

impl<'a, J, O, M, P, R, S> BatchRunner<'a, J, O, M, P, R, S>
where
    J: JobStore,
    O: Objects,
    M: BatchModels,
    P: ScoringPlatform,
    R: Reinvoke,
    S: Sleep,
{
    /// One object: find or create its job, take the lease, and work on it. `event_etag` is the
    /// version the event named (a resume names its job's); `deadline` is when the invocation
    /// stops.
    pub async fn process(
        &self,
        bucket: &str,
        key: &str,
        event_etag: Option<&str>,
        deadline: SystemTime,
    ) -> Result<Status, BatchRunError> {
        let file = match BatchFile::parse(key) {
            Ok(f) => f,
            Err(e) => return Ok(Status::Skipped { reason: e.to_string() }),
        };
        let Some(head) = self.objects.head(bucket, key).await? else {
            return Ok(Status::Superseded);
        };
        if event_etag.is_some_and(|e| ObjectRef::new("", "", e).etag != head.etag) {
            return Ok(Status::Superseded);
        }
        let object = ObjectRef::new(bucket, key, &head.etag);
        let owner = LeaseOwner::fresh();
        let tenant = &file.tenant;
        let lease_secs = self.settings.lease.as_secs() as i64;
        let mut waited = false;
        loop {
            let Some(job) = self.jobs.read_job::<BatchProgress>(tenant, &object).await? else {
                let progress = match self.prepare(&file, &object, &head.metadata).await? {
                    Ok(p) => p,
                    Err(Refusal::File(reason)) => match self.fail_unstarted(&file, &object, head.size, reason).await? {
                        Some(status) => return Ok(status),
                        None => continue, // Another delivery created the job first.
                    },
                    Err(Refusal::Tenant(reason)) => {
                        tracing::warn!(key = %object.key, error = %reason, "batch not scored");
                        return self.failure_summary(&file, &object, head.size, reason).await;
                    }
                };
                let started_at = Timestamp::now();
                let new = NewJob {
                    object: &object,
                    job_type: JobType::Batch,
                    size: Some(head.size),
                    owner: &owner,
                    lease_expires_at: now_epoch() + lease_secs,
                    started_at,
                    progress: &progress,
                };
                if self.jobs.create_job(tenant, &new).await? {
                    let job = BatchJob {
                        object: object.clone(),
                        size: head.size,
                        progress,
                        invocations: 1,
                        started_at,
                    };
                    return self.leased(file, job, 0, owner, deadline).run_leased().await;
                }
                continue; // Another delivery created it first: read it again.
            };
            match job.status {
                JobStatus::Completed => return Ok(Status::AlreadyDone),
                JobStatus::Failed => {
                    return Ok(Status::AlreadyFailed {
                        error: job.error.unwrap_or_default(),
                    })
                }
                JobStatus::Running => {}
            }
            let now = now_epoch();
            if !job.lease_free_for(&owner, now) {
                // Held by another invocation: alive (it will checkpoint, which renews the
                // lease) or dead (the lease runs out). Wait once for it to run out.
                let wait = Duration::from_secs((job.lease_expires_at - now + 1) as u64);
                if waited || remaining(deadline) < wait + self.settings.handover_margin {
                    return Ok(Status::Busy);
                }
                self.sleep.sleep(wait).await;
                waited = true;
                if let Some(again) = self.jobs.read_job::<BatchProgress>(tenant, &object).await? {
                    if again.seq != job.seq || again.lease_expires_at != job.lease_expires_at {
                        return Ok(Status::Busy);
                    }
                }
                continue;
            }
            return match self
                .jobs
                .claim_job::<BatchProgress>(tenant, &object, &owner, now + lease_secs, now)
                .await?
            {
                Claim::Claimed(job) => match running(job, head.size) {
                    Some((job, seq)) => self.leased(file, job, seq, owner, deadline).run_leased().await,
                    None => Ok(Status::Busy),
                },
                Claim::Ended(job) if job.status == JobStatus::Completed => Ok(Status::AlreadyDone),
                Claim::Ended(job) => Ok(Status::AlreadyFailed {
                    error: job.error.unwrap_or_default(),
                }),
                Claim::Busy { .. } | Claim::Missing => Ok(Status::Busy),
            };
        }
    }

    fn leased(
        &'a self,
        file: BatchFile,
        job: BatchJob,
        seq: u64,
        owner: LeaseOwner,
        deadline: SystemTime,
    ) -> Leased<'a, J, O, M, P, R, S> {
        Leased {
            runner: self,
            file,
            job,
            seq,
            owner,
            deadline,
            started: Instant::now(),
        }
    }

    /// What a new job pins, or why the object cannot be scored.
    async fn prepare(
        &self,
        file: &BatchFile,
        object: &ObjectRef,
        metadata: &HashMap<String, String>,
    ) -> Result<Result<BatchProgress, Refusal>, BatchRunError> {
        if file.kind.is_none() {
            let e = BatchError::UnknownFormat {
                key: object.key.clone(),
            };
            return Ok(Err(Refusal::File(e.to_string())));
        }
        let feature_source = match FeatureSource::from_metadata(metadata) {
            Ok(s) => s,
            Err(e) => return Ok(Err(Refusal::File(e.to_string()))),
        };
        let Some(active) = self.models.active_model(&file.tenant).await? else {
            return Ok(Err(Refusal::Tenant(format!(
                "no model is active for tenant {}; upload one and activate it, then upload the file again",
                file.tenant
            ))));
        };
        // Loaded now so that a bad artifact fails the job before any work.
        if let Err(e) = self.load_model(&active).await? {
            return Ok(Err(Refusal::Tenant(e)));
        }
        let policy = self.models.tenant_policy(&file.tenant).await?;
        Ok(Ok(BatchProgress {
            feature_source,
            model: PinnedModel {
                version: active.version,
                object_key: active.object_key,
            },
            thresholds: policy.thresholds.unwrap_or_default(),
            ruleset: policy.rules.active_ruleset,
            checkpoint: Checkpoint::default(),
        }))
    }

    /// The model, or why it cannot be used (permanent); storage trouble is an `Err`.
    async fn load_model(&self, active: &ActiveModel) -> Result<Result<Arc<Model>, String>, BatchRunError> {
        match self.models.load(active).await {
            Ok(m) => Ok(Ok(m)),
            Err(ScoreError::Store(e)) if e.is_retryable() => Err(e.into()),
            Err(e) => Ok(Err(format!("model {}: {e}", active.version))),
        }
    }

    /// Records a job that cannot start, with a summary saying why. `None` when a job exists
    /// already (another delivery created it).
    async fn fail_unstarted(
        &self,
        file: &BatchFile,
        object: &ObjectRef,
        size: u64,
        error: String,
    ) -> Result<Option<Status>, BatchRunError> {
        tracing::warn!(key = %object.key, %error, "batch job failed");
        let end = JobEnd::Failed {
            error: error.clone(),
            result: None,
        };
        let recorded = self
            .jobs
            .record_job_end(&file.tenant, object, JobType::Batch, Some(size), &end, Timestamp::now())
            .await?;
        if !recorded {
            return Ok(None);
        }
        self.failure_summary(file, object, size, error).await.map(Some)
    }

    async fn failure_summary(
        &self,
        file: &BatchFile,
        object: &ObjectRef,
        size: u64,
        error: String,
    ) -> Result<Status, BatchRunError> {
        let source = SourceInfo {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            etag: object.etag.clone(),
            size,
        };
        let summary = Summary::failed(&file.tenant, source, error.clone());
        self.objects
            .put(
                &object.bucket,
                &file.summary_key(),
                summary.to_json(),
                "application/json",
                &[],
            )
            .await?;
        Ok(Status::Failed { error })
    }
}

/// A claimed job as the runner works on it, and its checkpoint sequence.
fn running(job: Job<BatchProgress>, head_size: u64) -> Option<(BatchJob, u64)> {
    let seq = job.seq;
    Some((
        BatchJob {
            size: job.size.unwrap_or(head_size),
            progress: job.progress?,
            invocations: job.invocations,
            started_at: job.started_at,
            object: job.object,
        },
        seq,
    ))
}

/// A job whose lease this invocation holds.
struct Leased<'a, J, O, M, P, R, S> {
    runner: &'a BatchRunner<'a, J, O, M, P, R, S>,
    file: BatchFile,
    job: BatchJob,
    /// The checkpoint sequence last recorded.
    seq: u64,
    owner: LeaseOwner,
    deadline: SystemTime,
    started: Instant,
}

impl<J, O, M, P, R, S> Leased<'_, J, O, M, P, R, S>
where
    J: JobStore,
    O: Objects,
    M: BatchModels,
    P: ScoringPlatform,
    R: Reinvoke,
    S: Sleep,
{
    fn bucket(&self) -> &str {
        &self.job.object.bucket
    }

    fn settings(&self) -> &Settings {
        self.runner.settings
    }

    /// Runs, and on a transient error lets the next invocation take over at once. A storage call
    /// the store refused ([`StoreError::Rejected`]) would be refused again on every redelivery:
    /// the job ends failed, with its summary, instead.
    async fn run_leased(mut self) -> Result<Status, BatchRunError> {
        let result = match self.run().await {
            Err(BatchRunError::Store(e @ StoreError::Rejected(_))) => {
                self.fail(format!("a storage call was refused: {e}")).await
            }
            r => r,
        };
        if result.is_err() {
            let _ = self
                .runner
                .jobs
                .release_job(&self.file.tenant, &self.job.object, &self.owner)
                .await;
        }
        result
    }

    /// The job's pinned policy: its thresholds and ruleset, so a resumed job decides every row as
    /// the first invocation did (lists excepted: they are read as they are now). A pinned ruleset
    /// that cannot be used fails the job (permanent); storage trouble is an `Err`.
    async fn policy(&self) -> Result<Result<Policy, String>, BatchRunError> {
        let p = &self.job.progress;
        let Some(version) = p.ruleset else {
            return Ok(Ok(Policy::thresholds(p.thresholds)));
        };
        match self.runner.models.rules(&self.file.tenant, version).await {
            Ok(Some(r)) => Ok(Ok(Policy::with_rules(p.thresholds, r.ruleset, Arc::new(r.lists)))),
            Ok(None) => Ok(Err(format!("ruleset {version} is not stored"))),
            Err(RulesUnavailable::Store(e)) => Err(e.into()),
            Err(e @ RulesUnavailable::Unusable { .. }) => Ok(Err(e.to_string())),
        }
    }

    fn lease_until(&self) -> i64 {
        now_epoch() + self.settings().lease.as_secs() as i64
    }

    async fn run(&mut self) -> Result<Status, BatchRunError> {
        let pinned = ActiveModel {
            version: self.job.progress.model.version.clone(),
            object_key: self.job.progress.model.object_key.clone(),
        };
        let model = match self.runner.load_model(&pinned).await? {
            Ok(m) => m,
            Err(reason) => return self.fail(reason).await,
        };
        let Some(kind) = self.file.kind else {
            return self.fail("unknown file type".into()).await;
        };
        let policy = match self.policy().await? {
            Ok(p) => p,
            Err(reason) => return self.fail(reason).await,
        };
        if !self.job.progress.checkpoint.reading_done {
            let object = &self.job.object;
            let Some((reader, failure)) = self
                .runner
                .objects
                .open(&object.bucket, &object.key, ObjectVersion::etag(&object.etag), 0)
                .await?
            else {
                self.fail("the object was deleted or overwritten while it was being scored".into())
                    .await?;
                return Ok(Status::Superseded);
            };
            let plan = ScoringPlan {
                kind,
                model,
                policy,
                source: self.job.progress.feature_source,
                part_size: self.settings().part_size,
                checkpoint: self.job.progress.checkpoint.clone(),
                tenant: self.file.tenant.clone(),
                file_name: object.uri(),
                stored_chunk_rows: self.settings().stored_chunk_rows.max(1),
                aggregate_cache: self.settings().aggregate_cache,
            };
            let mut scoring = self.runner.platform.start(plan, reader, failure);
            let heartbeat = self.settings().lease / 3;
            // Busy time counts from the start of the invocation (claim, model, open).
            let mut marked = self.started;
            loop {
                let flush = match scoring.next(heartbeat).await {
                    Scored::Flush(f) => f,
                    Scored::Tick => {
                        // The file is replaying or the parts are slow: keep the lease.
                        let t = &self.file.tenant;
                        let until = self.lease_until();
                        if !self
                            .runner
                            .jobs
                            .renew_lease(t, &self.job.object, &self.owner, until)
                            .await?
                        {
                            return Ok(Status::Busy);
                        }
                        continue;
                    }
                    Scored::Stopped(ScoringStop::Read(reason)) => return Err(BatchRunError::Read(reason)),
                    Scored::Stopped(ScoringStop::Store(e)) => return Err(e.into()),
                    Scored::Stopped(ScoringStop::Other(reason)) => {
                        return Err(BatchRunError::Worker {
                            key: self.job.object.key.clone(),
                            reason,
                        })
                    }
                };
                let last = flush.last;
                if !self.checkpoint(flush, &mut marked).await? {
                    return Ok(Status::Busy);
                }
                if last {
                    break;
                }
                if remaining(self.deadline) <= self.settings().handover_margin {
                    return self.hand_over().await;
                }
            }
        }
        self.finish().await
    }

    /// Uploads a flush's parts, then records them. `false` when the lease was lost.
    async fn checkpoint(&mut self, flush: Flush, marked: &mut Instant) -> Result<bool, BatchRunError> {
        let format = self.file.kind.map_or(Format::Csv, |k| k.format);
        let results_type = if format == Format::Csv { CSV_TYPE } else { NDJSON_TYPE };
        let results_key = self.file.results_key().unwrap_or_default();
        let errors_key = self.file.errors_key();
        // The upload id is shared through the checkpoint: a part uploaded by an owner that lost the
        // lease would replace the new holder's part of the same number. Confirm the lease first
        // (one UpdateItem per part of at least 5 MiB).
        let renewed = self
            .runner
            .jobs
            .renew_lease(&self.file.tenant, &self.job.object, &self.owner, self.lease_until())
            .await?;
        if !renewed {
            return Ok(false);
        }
        let mut progress = self.job.progress.clone();
        let cp = &mut progress.checkpoint;
        self.upload(&results_key, results_type, &mut cp.results, flush.results, flush.last)
            .await?;
        self.upload(&errors_key, CSV_TYPE, &mut cp.errors, flush.errors, flush.last)
            .await?;
        cp.results_rows_done = flush.results_rows_done;
        cp.errors_rows_done = flush.errors_rows_done;
        cp.next_line = flush.next_line;
        cp.counts = flush.counts;
        cp.reading_done = flush.last;
        cp.busy_ms += marked.elapsed().as_millis() as u64;
        *marked = Instant::now();
        let recorded = self
            .runner
            .jobs
            .checkpoint_job(
                &self.file.tenant,
                &self.job.object,
                &self.owner,
                self.seq,
                &progress,
                self.lease_until(),
            )
            .await?;
        if recorded {
            self.job.progress = progress;
            self.seq += 1;
        }
        Ok(recorded)
    }

    /// One stream's bytes: the next part, or the whole object when it never needed a part.
    async fn upload(
        &self,
        key: &str,
        content_type: &str,
        upload: &mut Upload,
        bytes: Option<Vec<u8>>,
        last: bool,
    ) -> Result<(), BatchRunError> {
        let Some(bytes) = bytes else {
            return Ok(());
        };
        let meta = [(SOURCE_ETAG_METADATA, self.job.object.etag.as_str())];
        let objects = self.runner.objects;
        if last && upload.upload_id.is_none() {
            return Ok(objects.put(self.bucket(), key, bytes, content_type, &meta).await?);
        }
        if bytes.is_empty() {
            // The previous part ended exactly at the end.
            return Ok(());
        }
        let id = match &upload.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = objects
                    .create_multipart(self.bucket(), key, content_type, &meta)
                    .await?;
                upload.upload_id = Some(id.clone());
                id
            }
        };
        let part = objects
            .upload_part(self.bucket(), key, &id, upload.next_part_number(), bytes)
            .await?;
        upload.parts.push(part);
        Ok(())
    }

    async fn hand_over(&self) -> Result<Status, BatchRunError> {
        let t = &self.file.tenant;
        self.runner.jobs.release_job(t, &self.job.object, &self.owner).await?;
        let failed = |reason: String| BatchRunError::Reinvoke {
            key: self.job.object.key.clone(),
            reason,
        };
        let request = ResumeRequest {
            resume: self.job.object.clone(),
        };
        let payload = serde_json::to_value(&request).map_err(|e| failed(e.to_string()))?;
        self.runner
            .reinvoke
            .reinvoke(&payload)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let cp = &self.job.progress.checkpoint;
        tracing::info!(key = %self.job.object.key, rows_done = cp.results_rows_done, "handed over");
        Ok(Status::HandedOver {
            results_rows_done: cp.results_rows_done,
            next_line: cp.next_line,
        })
    }

    /// Completes the uploads, writes the summary and marks the job done. Each step can be
    /// repeated by a later invocation if this one dies.
    async fn finish(&mut self) -> Result<Status, BatchRunError> {
        let results_key = self.file.results_key().unwrap_or_default();
        let errors_key = self.file.errors_key();
        let cp = self.job.progress.checkpoint.clone();
        self.complete(&results_key, &cp.results).await?;
        self.complete(&errors_key, &cp.errors).await?;
        let completed_at = Timestamp::now();
        let summary = Summary::completed(&self.file, &self.job, completed_at);
        let meta = [(SOURCE_ETAG_METADATA, self.job.object.etag.as_str())];
        self.runner
            .objects
            .put(
                self.bucket(),
                &self.file.summary_key(),
                summary.to_json(),
                "application/json",
                &meta,
            )
            .await?;
        let end = JobEnd::Completed { result: None };
        if !self
            .runner
            .jobs
            .finish_job::<BatchProgress>(
                &self.file.tenant,
                &self.job.object,
                &self.owner,
                &end,
                None,
                completed_at,
            )
            .await?
        {
            return Ok(Status::Busy);
        }
        tracing::info!(key = %self.job.object.key, counts = ?summary.counts, "completed");
        Ok(Status::Completed {
            summary: Box::new(summary),
        })
    }

    async fn complete(&self, key: &str, upload: &Upload) -> Result<(), BatchRunError> {
        let Some(id) = &upload.upload_id else {
            return Ok(()); // Put whole.
        };
        let objects = self.runner.objects;
        if objects
            .complete_multipart(self.bucket(), key, id, &upload.parts)
            .await?
        {
            return Ok(());
        }
        // Completed by an earlier invocation that died before recording it?
        let ours = objects.head(self.bucket(), key).await?.is_some_and(|h| {
            h.metadata.get(SOURCE_ETAG_METADATA).map(String::as_str) == Some(self.job.object.etag.as_str())
        });
        if ours {
            Ok(())
        } else {
            Err(StoreError::Rejected(format!(
                "multipart upload {id} of s3://{}/{key} is gone and the object there is not this job's",
                self.job.object.bucket
            ))
            .into())
        }
    }

    /// Ends the job as failed (the lease is ours), with a summary saying why.
    async fn fail(&self, reason: String) -> Result<Status, BatchRunError> {
        tracing::warn!(key = %self.job.object.key, error = %reason, "batch job failed");
        let end = JobEnd::Failed {
            error: reason.clone(),
            result: None,
        };
        let t = &self.file.tenant;
        if !self
            .runner
            .jobs
            .finish_job::<BatchProgress>(t, &self.job.object, &self.owner, &end, None, Timestamp::now())
            .await?
        {
            return Ok(Status::Busy);
        }
        self.runner
            .failure_summary(&self.file, &self.job.object, self.job.size, reason)
            .await
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "batch_rows_tests.rs"]
mod rows_tests;
