//! batch-score: an upload to `batches/incoming/{tenant}/{name}.{csv|ndjson}[.gz]` (S3
//! ObjectCreated) becomes `batches/results/{tenant}/{name}.{csv|ndjson}`, `{name}.summary.json`
//! and `{name}.errors.csv`.
//!
//! The rows are scored by `verdict::domain::batch` (the same features and model code as the API) on a
//! blocking thread that streams the object; this side uploads each full part and checkpoints the
//! job item in DynamoDB (`verdict::adapters::dynamodb::batch_jobs`) before the next. Near the deadline it hands
//! the job to a fresh invocation of itself (`{"resume": {bucket, key, etag}}`); a redelivered S3
//! event resumes the same way. A resumed run replays the file from the start to rebuild the
//! feature state, writing only what no uploaded part covers, so its output is byte-identical.

mod worker;

pub use verdict::adapters::LambdaReinvoker;
pub use verdict::ports::reinvoke::{Reinvoke, ReinvokeError};

use aws_lambda_events::event::s3::S3Event;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use verdict::adapters::lambda::uploaded_object;
use verdict::adapters::{DynamoStore, ObjectStore, S3Blobs};
use verdict::app::scoring::{ScoreError, Scorer};
use verdict::domain::batch::{
    BatchFile, BatchJob, BatchProgress, Checkpoint, FeatureSource, Flush, ObjectRef, PinnedModel, Summary, Upload,
};
use verdict::domain::decision::Thresholds;
use verdict::domain::io::Format;
use verdict::domain::model::Model;
use verdict::domain::JobStatus;
use verdict::domain::Timestamp;
use verdict::ports::jobs::{Claim, Job, JobEnd, JobStore, JobType, LeaseOwner, NewJob};
use verdict::ports::{ActiveModel, DecisionStore, StoreError};

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

/// Clients and caches, built once per container.
pub struct Deps<R> {
    pub store: DynamoStore,
    pub objects: ObjectStore,
    /// Loads and caches the pinned model from the model bucket.
    pub scorer: Scorer<DynamoStore, S3Blobs>,
    pub reinvoker: R,
    pub settings: Settings,
}

impl<R: Reinvoke> Deps<R> {
    pub fn new(store: DynamoStore, s3: aws_sdk_s3::Client, model_bucket: &str, reinvoker: R) -> Self {
        let blobs = S3Blobs::new(s3.clone(), model_bucket);
        Deps {
            scorer: Scorer::new(store.clone(), blobs, None),
            store,
            objects: ObjectStore::new(s3),
            reinvoker,
            settings: Settings::default(),
        }
    }
}

/// The payload this function sends itself to continue a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRequest {
    pub resume: ObjectRef,
}

/// What the function is invoked with.
#[derive(Debug, Clone)]
pub enum Event {
    S3(S3Event),
    Resume(ResumeRequest),
}

impl Event {
    pub fn from_value(v: serde_json::Value) -> Result<Event, Error> {
        if v.get("resume").is_some() {
            serde_json::from_value(v)
                .map(Event::Resume)
                .map_err(|e| Error::BadEvent(format!("resume payload: {e}")))
        } else {
            serde_json::from_value(v)
                .map(Event::S3)
                .map_err(|e| Error::BadEvent(format!("S3 event: {e}")))
        }
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Event::from_value(v).map_err(serde::de::Error::custom)
    }
}

/// What happened to each object of an event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub objects: Vec<ObjectOutcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectOutcome {
    pub bucket: String,
    pub key: String,
    #[serde(flatten)]
    pub status: Status,
}

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

/// Failures that the invocation should be retried for (Lambda retries, then the DLQ). Bad
/// input is never one: it is a [`Status::Failed`] or a row in the error report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the event is neither an S3 event nor a resume payload: {0}")]
    BadEvent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Read(String),
    #[error("re-invoking the function to continue {key}: {reason}")]
    Reinvoke { key: String, reason: String },
    #[error("the scoring thread of {key} stopped: {reason}")]
    Worker { key: String, reason: String },
}

/// Handles one invocation. `deadline` is when Lambda stops it (tests pass their own).
pub async fn handle<R: Reinvoke>(deps: &Deps<R>, event: Event, deadline: SystemTime) -> Result<Outcome, Error> {
    let mut objects = Vec::new();
    match event {
        Event::Resume(r) => {
            let o = r.resume;
            let status = process(deps, &o.bucket, &o.key, Some(&o.etag), deadline).await?;
            objects.push(ObjectOutcome {
                bucket: o.bucket,
                key: o.key,
                status,
            });
        }
        Event::S3(e) => {
            for record in e.records {
                let created = record
                    .event_name
                    .as_deref()
                    .is_none_or(|n| n.starts_with("ObjectCreated"));
                let up = match uploaded_object(&record) {
                    Ok(up) => up,
                    Err((e, up)) => {
                        objects.push(skipped(up.bucket, up.key, e.to_string()));
                        continue;
                    }
                };
                if !created || up.bucket.is_empty() {
                    let reason = format!("not an ObjectCreated record: {:?}", record.event_name);
                    objects.push(skipped(up.bucket, up.key, reason));
                    continue;
                }
                let status = process(deps, &up.bucket, &up.key, up.etag(), deadline).await?;
                objects.push(ObjectOutcome {
                    bucket: up.bucket,
                    key: up.key,
                    status,
                });
            }
        }
    }
    Ok(Outcome { objects })
}

fn skipped(bucket: String, key: String, reason: String) -> ObjectOutcome {
    tracing::warn!(%bucket, %key, %reason, "not a batch job");
    ObjectOutcome {
        bucket,
        key,
        status: Status::Skipped { reason },
    }
}

fn remaining(deadline: SystemTime) -> Duration {
    deadline.duration_since(SystemTime::now()).unwrap_or_default()
}

fn now_epoch() -> i64 {
    Timestamp::now().unix()
}

/// One object: find or create its job, take the lease, and work on it.
async fn process<R: Reinvoke>(
    deps: &Deps<R>,
    bucket: &str,
    key: &str,
    event_etag: Option<&str>,
    deadline: SystemTime,
) -> Result<Status, Error> {
    let file = match BatchFile::parse(key) {
        Ok(f) => f,
        Err(e) => return Ok(skipped(bucket.into(), key.into(), e.to_string()).status),
    };
    let Some(head) = deps.objects.head(bucket, key).await? else {
        return Ok(Status::Superseded);
    };
    if event_etag.is_some_and(|e| ObjectRef::new("", "", e).etag != head.etag) {
        return Ok(Status::Superseded);
    }
    let object = ObjectRef::new(bucket, key, &head.etag);
    let owner = LeaseOwner::fresh();
    let tenant = &file.tenant;
    let lease_secs = deps.settings.lease.as_secs() as i64;
    let mut waited = false;
    loop {
        let Some(job) = deps.store.read_job::<BatchProgress>(tenant, &object).await? else {
            let progress = match prepare(deps, &file, &object, &head.metadata).await? {
                Ok(p) => p,
                Err(Refusal::File(reason)) => match fail_unstarted(deps, &file, &object, head.size, reason).await? {
                    Some(status) => return Ok(status),
                    None => continue, // Another delivery created the job first: read it again.
                },
                Err(Refusal::Tenant(reason)) => return not_yet(deps, &file, &object, head.size, reason).await,
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
            if deps.store.create_job(tenant, &new).await? {
                let job = BatchJob {
                    object: object.clone(),
                    size: head.size,
                    progress,
                    invocations: 1,
                    started_at,
                };
                return Leased::new(deps, file, job, 0, owner, deadline).run_leased().await;
            }
            // Another delivery created it first: read it again.
            continue;
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
            // Held by another invocation: alive (it will checkpoint, which renews the lease)
            // or dead (the lease runs out). Wait once for it to run out.
            let wait = Duration::from_secs((job.lease_expires_at - now + 1) as u64);
            if waited || remaining(deadline) < wait + deps.settings.handover_margin {
                return Ok(Status::Busy);
            }
            tokio::time::sleep(wait).await;
            waited = true;
            if let Some(again) = deps.store.read_job::<BatchProgress>(tenant, &object).await? {
                if again.seq != job.seq || again.lease_expires_at != job.lease_expires_at {
                    return Ok(Status::Busy);
                }
            }
            continue;
        }
        return match deps
            .store
            .claim_job::<BatchProgress>(tenant, &object, &owner, now + lease_secs, now)
            .await?
        {
            Claim::Claimed(job) => match running(job, head.size) {
                Some((job, seq)) => Leased::new(deps, file, job, seq, owner, deadline).run_leased().await,
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

/// Why an object cannot be scored.
enum Refusal {
    /// The file itself (its type, its metadata): final for these bytes under this key.
    File(String),
    /// The tenant's state (no model, a model that does not load): the same upload works once
    /// that is fixed, so no job is recorded.
    Tenant(String),
}

/// What a new job pins, or why the object cannot be scored.
async fn prepare<R: Reinvoke>(
    deps: &Deps<R>,
    file: &BatchFile,
    object: &ObjectRef,
    metadata: &std::collections::HashMap<String, String>,
) -> Result<Result<BatchProgress, Refusal>, Error> {
    if file.kind.is_none() {
        return Ok(Err(Refusal::File(
            verdict::domain::batch::BatchError::UnknownFormat {
                key: object.key.clone(),
            }
            .to_string(),
        )));
    }
    let feature_source = match FeatureSource::from_metadata(metadata) {
        Ok(s) => s,
        Err(e) => return Ok(Err(Refusal::File(e.to_string()))),
    };
    let Some(active) = deps.store.active_model(&file.tenant).await? else {
        return Ok(Err(Refusal::Tenant(format!(
            "no model is active for tenant {}; upload one and activate it, then upload the file again",
            file.tenant
        ))));
    };
    // Loaded now so that a bad artifact fails the job before any work.
    if let Err(e) = load_model(deps, &active).await? {
        return Ok(Err(Refusal::Tenant(e)));
    }
    let thresholds = deps
        .store
        .thresholds(&file.tenant)
        .await?
        .unwrap_or_else(Thresholds::default);
    Ok(Ok(BatchProgress {
        feature_source,
        model: PinnedModel {
            version: active.version,
            object_key: active.object_key,
        },
        thresholds,
        checkpoint: Checkpoint::default(),
    }))
}

/// The model, or why it cannot be used (permanent); storage trouble is an `Err`.
async fn load_model<R: Reinvoke>(deps: &Deps<R>, active: &ActiveModel) -> Result<Result<Arc<Model>, String>, Error> {
    match deps.scorer.model_for(Some(active)).await {
        Ok(m) => Ok(Ok(m)),
        Err(ScoreError::Store(StoreError::Unavailable(e))) => Err(StoreError::Unavailable(e).into()),
        Err(e) => Ok(Err(format!("model {}: {e}", active.version))),
    }
}

/// Records a job that cannot start, with a summary saying why. `None` when a job exists
/// already (another delivery created it).
async fn fail_unstarted<R: Reinvoke>(
    deps: &Deps<R>,
    file: &BatchFile,
    object: &ObjectRef,
    size: u64,
    error: String,
) -> Result<Option<Status>, Error> {
    tracing::warn!(key = %object.key, %error, "batch job failed");
    let end = JobEnd::Failed {
        error: error.clone(),
        result: None,
    };
    let recorded = deps
        .store
        .record_job_end(&file.tenant, object, JobType::Batch, Some(size), &end, Timestamp::now())
        .await?;
    if !recorded {
        return Ok(None);
    }
    failure_summary(deps, file, object, size, error).await.map(Some)
}

/// A refusal caused by the tenant's state: the summary says why, but no job is recorded, so a
/// redelivery or the same upload again is scored once the tenant has a model.
async fn not_yet<R: Reinvoke>(
    deps: &Deps<R>,
    file: &BatchFile,
    object: &ObjectRef,
    size: u64,
    error: String,
) -> Result<Status, Error> {
    tracing::warn!(key = %object.key, %error, "batch not scored");
    failure_summary(deps, file, object, size, error).await
}

async fn failure_summary<R: Reinvoke>(
    deps: &Deps<R>,
    file: &BatchFile,
    object: &ObjectRef,
    size: u64,
    error: String,
) -> Result<Status, Error> {
    let summary = Summary::failed(
        &file.tenant,
        verdict::domain::batch::SourceInfo {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            etag: object.etag.clone(),
            size,
        },
        error.clone(),
    );
    deps.objects
        .put_with(
            &object.bucket,
            &file.summary_key(),
            summary.to_json(),
            "application/json",
            &[],
        )
        .await?;
    Ok(Status::Failed { error })
}

/// Sets the flag when dropped, so the scoring thread stops when this invocation's future is
/// dropped (a timeout) or returns early.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A job whose lease this invocation holds.
struct Leased<'d, R> {
    deps: &'d Deps<R>,
    file: BatchFile,
    job: BatchJob,
    /// The checkpoint sequence last recorded.
    seq: u64,
    owner: LeaseOwner,
    deadline: SystemTime,
    started: Instant,
}

const CSV_TYPE: &str = "text/csv";
const NDJSON_TYPE: &str = "application/x-ndjson";
/// Output objects name the input version they came from; completion checks it on a retry.
const SOURCE_ETAG_METADATA: &str = "source-etag";

impl<'d, R: Reinvoke> Leased<'d, R> {
    fn new(
        deps: &'d Deps<R>,
        file: BatchFile,
        job: BatchJob,
        seq: u64,
        owner: LeaseOwner,
        deadline: SystemTime,
    ) -> Self {
        Leased {
            deps,
            file,
            job,
            seq,
            owner,
            deadline,
            started: Instant::now(),
        }
    }

    fn bucket(&self) -> &str {
        &self.job.object.bucket
    }

    /// Runs, and on a transient error lets the next invocation take over at once.
    async fn run_leased(mut self) -> Result<Status, Error> {
        let result = self.run().await;
        if result.is_err() {
            let _ = self
                .deps
                .store
                .release_job(&self.file.tenant, &self.job.object, &self.owner)
                .await;
        }
        result
    }

    fn lease_until(&self) -> i64 {
        now_epoch() + self.deps.settings.lease.as_secs() as i64
    }

    async fn run(&mut self) -> Result<Status, Error> {
        let pinned = ActiveModel {
            version: self.job.progress.model.version.clone(),
            object_key: self.job.progress.model.object_key.clone(),
        };
        let model = match load_model(self.deps, &pinned).await? {
            Ok(m) => m,
            Err(reason) => return self.fail(reason).await,
        };
        let Some(kind) = self.file.kind else {
            return self.fail("unknown file type".into()).await;
        };
        if !self.job.progress.checkpoint.reading_done {
            let object = &self.job.object;
            let Some(reader) = self
                .deps
                .objects
                .open(&object.bucket, &object.key, &object.etag)
                .await?
            else {
                self.fail("the object was deleted or overwritten while it was being scored".into())
                    .await?;
                return Ok(Status::Superseded);
            };
            let (tx, mut rx) = mpsc::channel::<Flush>(1);
            let cancel = Arc::new(AtomicBool::new(false));
            let _stop = CancelOnDrop(cancel.clone());
            let plan = worker::Plan {
                kind,
                model,
                thresholds: self.job.progress.thresholds,
                source: self.job.progress.feature_source,
                part_size: self.deps.settings.part_size,
                checkpoint: self.job.progress.checkpoint.clone(),
                store: self.deps.store.clone(),
                tenant: self.file.tenant.clone(),
                handle: tokio::runtime::Handle::current(),
                stored_chunk_rows: self.deps.settings.stored_chunk_rows.max(1),
                aggregate_cache: self.deps.settings.aggregate_cache,
                file_name: format!("s3://{}/{}", self.job.object.bucket, self.job.object.key),
            };
            let worker = tokio::task::spawn_blocking(move || worker::run(plan, reader, tx, cancel));
            let heartbeat = self.deps.settings.lease / 3;
            // Busy time counts from the start of the invocation (claim, model, open).
            let mut marked = self.started;
            loop {
                let flush = if heartbeat.is_zero() {
                    rx.recv().await
                } else {
                    tokio::select! {
                        f = rx.recv() => f,
                        _ = tokio::time::sleep(heartbeat) => {
                            // The file is replaying or the parts are slow: keep the lease.
                            let t = &self.file.tenant;
                            if !self.deps.store.renew_lease(t, &self.job.object, &self.owner, self.lease_until()).await? {
                                return Ok(Status::Busy);
                            }
                            continue;
                        }
                    }
                };
                let Some(flush) = flush else {
                    drop(rx);
                    let reason = match worker.await {
                        Ok(Err(worker::WorkerError::Read(reason))) => return Err(Error::Read(reason)),
                        Ok(Err(worker::WorkerError::Store(e))) => return Err(e.into()),
                        Ok(Ok(())) => "it ended without the last part".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    return Err(Error::Worker {
                        key: self.job.object.key.clone(),
                        reason,
                    });
                };
                let last = flush.last;
                if !self.checkpoint(flush, &mut marked).await? {
                    return Ok(Status::Busy);
                }
                if last {
                    break;
                }
                if remaining(self.deadline) <= self.deps.settings.handover_margin {
                    return self.hand_over().await;
                }
            }
        }
        self.finish().await
    }

    /// Uploads a flush's parts, then records them. `false` when the lease was lost.
    async fn checkpoint(&mut self, flush: Flush, marked: &mut Instant) -> Result<bool, Error> {
        let format = self.file.kind.map_or(Format::Csv, |k| k.format);
        let results_type = if format == Format::Csv { CSV_TYPE } else { NDJSON_TYPE };
        let results_key = self.file.results_key().unwrap_or_default();
        let errors_key = self.file.errors_key();
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
            .deps
            .store
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
    ) -> Result<(), Error> {
        let Some(bytes) = bytes else {
            return Ok(());
        };
        let meta = [(SOURCE_ETAG_METADATA, self.job.object.etag.as_str())];
        let objects = &self.deps.objects;
        if last && upload.upload_id.is_none() {
            return Ok(objects.put_with(self.bucket(), key, bytes, content_type, &meta).await?);
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

    async fn hand_over(&self) -> Result<Status, Error> {
        let t = &self.file.tenant;
        self.deps.store.release_job(t, &self.job.object, &self.owner).await?;
        let request = ResumeRequest {
            resume: self.job.object.clone(),
        };
        let payload = serde_json::to_value(&request).map_err(|e| Error::Reinvoke {
            key: self.job.object.key.clone(),
            reason: e.to_string(),
        })?;
        self.deps
            .reinvoker
            .reinvoke(&payload)
            .await
            .map_err(|e| Error::Reinvoke {
                key: self.job.object.key.clone(),
                reason: e.to_string(),
            })?;
        let cp = &self.job.progress.checkpoint;
        tracing::info!(key = %self.job.object.key, rows_done = cp.results_rows_done, "handed over");
        Ok(Status::HandedOver {
            results_rows_done: cp.results_rows_done,
            next_line: cp.next_line,
        })
    }

    /// Completes the uploads, writes the summary and marks the job done. Each step can be
    /// repeated by a later invocation if this one dies.
    async fn finish(&mut self) -> Result<Status, Error> {
        let results_key = self.file.results_key().unwrap_or_default();
        let errors_key = self.file.errors_key();
        let cp = self.job.progress.checkpoint.clone();
        self.complete(&results_key, &cp.results).await?;
        self.complete(&errors_key, &cp.errors).await?;
        let completed_at = Timestamp::now();
        let summary = Summary::completed(&self.file, &self.job, completed_at);
        let meta = [(SOURCE_ETAG_METADATA, self.job.object.etag.as_str())];
        self.deps
            .objects
            .put_with(
                self.bucket(),
                &self.file.summary_key(),
                summary.to_json(),
                "application/json",
                &meta,
            )
            .await?;
        let t = &self.file.tenant;
        let end = JobEnd::Completed { result: None };
        if !self
            .deps
            .store
            .finish_job::<BatchProgress>(t, &self.job.object, &self.owner, &end, None, completed_at)
            .await?
        {
            return Ok(Status::Busy);
        }
        tracing::info!(key = %self.job.object.key, counts = ?summary.counts, "completed");
        Ok(Status::Completed {
            summary: Box::new(summary),
        })
    }

    async fn complete(&self, key: &str, upload: &Upload) -> Result<(), Error> {
        let Some(id) = &upload.upload_id else {
            return Ok(()); // Put whole.
        };
        let objects = &self.deps.objects;
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
            Err(StoreError::Unavailable(format!(
                "multipart upload {id} of s3://{}/{key} is gone and the object there is not this job's",
                self.job.object.bucket
            ))
            .into())
        }
    }

    /// Ends the job as failed (the lease is ours), with a summary saying why.
    async fn fail(&self, reason: String) -> Result<Status, Error> {
        tracing::warn!(key = %self.job.object.key, error = %reason, "batch job failed");
        let end = JobEnd::Failed {
            error: reason.clone(),
            result: None,
        };
        let t = &self.file.tenant;
        if !self
            .deps
            .store
            .finish_job::<BatchProgress>(t, &self.job.object, &self.owner, &end, None, Timestamp::now())
            .await?
        {
            return Ok(Status::Busy);
        }
        failure_summary(self.deps, &self.file, &self.job.object, self.job.size, reason).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_s3_notifications_or_resume_payloads() {
        let v: serde_json::Value = serde_json::from_str(include_str!("../../../events/s3/batch-upload.json")).unwrap();
        let Event::S3(e) = Event::from_value(v).unwrap() else {
            panic!("an S3 event")
        };
        assert_eq!(
            e.records[0].s3.object.key.as_deref(),
            Some("batches/incoming/demo/2018-08-08.csv")
        );

        let r = ResumeRequest {
            resume: ObjectRef {
                bucket: "b".into(),
                key: "batches/incoming/acme/x.csv".into(),
                etag: "e-2".into(),
            },
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"resume": {"bucket": "b", "key": "batches/incoming/acme/x.csv", "etag": "e-2"}})
        );
        let Event::Resume(back) = serde_json::from_value::<Event>(v).unwrap() else {
            panic!("a resume payload")
        };
        assert_eq!(back, r);
        for bad in [
            serde_json::json!({"resume": {}}),
            serde_json::json!({"Records": 5}),
            serde_json::json!("x"),
        ] {
            assert!(matches!(Event::from_value(bad), Err(Error::BadEvent(_))));
        }
    }

    #[test]
    fn outcomes_serialise_with_a_status_tag() {
        let o = ObjectOutcome {
            bucket: "b".into(),
            key: "k".into(),
            status: Status::HandedOver {
                results_rows_done: 10,
                next_line: 12,
            },
        };
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            serde_json::json!({"bucket": "b", "key": "k", "status": "handed_over", "results_rows_done": 10, "next_line": 12})
        );
    }
}
