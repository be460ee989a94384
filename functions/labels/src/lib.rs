//! labels: an upload to `labels/incoming/<tenant>/…` labels the tenant's stored decisions.
//!
//! The file (see [`verdict::domain::labels`] for its formats) is streamed from S3 on a blocking thread
//! and handled in chunks of [`Settings::chunk_rows`] rows. Per chunk: one BatchGetItem for the
//! decisions, one more for the aggregates whose fraud counters may move, then one
//! TransactWriteItems per row that changes a label (the decision's label, conditional on the
//! label it had, plus `ADD f<day>` on the customer and terminal aggregates), then one checkpoint
//! UpdateItem (and a PutItem of the chunk's error lines, if any).
//!
//! Exactly once: the conditional label write makes every transaction's fraud count move once
//! per change of label, whatever repeats (the same row twice, the file delivered twice, a run
//! resumed from an older checkpoint). A relabel legit→fraud adds 1, fraud→legit takes it back.
//! A row older (by `labelled_at`) than the label a decision already has does not replace it.
//! A label whose day has left the aggregate's retention window is stored but counts nowhere.
//!
//! Resumable: progress (next line, byte offset, counts, error chunks) is checkpointed per object
//! (bucket, key, etag) under a lease. A redelivery or a retry resumes from the checkpoint; near
//! the Lambda deadline the function hands over by invoking itself with the same event.
//!
//! Output, outside the trigger prefix: `labels/results/<tenant>/<name>.errors.csv` (line,
//! transaction_id, field, reason) and `<name>.summary.json` ([`LabelSummary`]).

use aws_lambda_events::event::s3::S3EventRecord;
use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::io::SyncIoBridge;
use verdict::adapters::dynamodb::{LabelTarget, LabelWrite, LabelWriteOutcome, ObjectRef};
use verdict::adapters::lambda::uploaded_object;
use verdict::adapters::s3::{ByteStream, ObjectStore, Version};
use verdict::adapters::{DynamoStore, LambdaReinvoker};
use verdict::domain::features::RETENTION_DAYS;
use verdict::domain::io::{FileKind, Format, RowError};
use verdict::domain::labels::{
    report_line, transition, LabelCounts, LabelFile, LabelLine, LabelReader, LabelRow, LabelSummary, Provenance,
    Resume, StoredLabel, Transition, REPORT_HEADER,
};
use verdict::domain::{CustomerId, TenantId, TerminalId, Timestamp, TransactionId};
use verdict::ports::jobs::{Claim, Job, JobEnd, JobStore, JobType, LeaseOwner, NewJob};
use verdict::ports::reinvoke::Reinvoke;
use verdict::ports::StoreError;

pub use aws_lambda_events::event::s3::S3Event;
pub type Error = lambda_runtime::Error;

/// How far a label file's job got: the payload of its job item ([`verdict::ports::jobs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelProgress {
    /// The first input line not yet processed (1-based; the CSV header is line 1).
    pub next_line: u64,
    /// Byte offset of `next_line` in the object.
    pub next_offset: u64,
    /// The CSV header, so a ranged resume can parse rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    pub counts: BTreeMap<String, u64>,
    /// How many error-report chunks are stored.
    pub error_chunks: u32,
}

impl Default for LabelProgress {
    fn default() -> Self {
        LabelProgress {
            next_line: 1,
            next_offset: 0,
            header: None,
            counts: BTreeMap::new(),
            error_chunks: 0,
        }
    }
}

/// Tuning; the defaults suit a 512 MB function with a 15-minute timeout.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Rows per chunk: one BatchGetItem (at most 100 keys) and one checkpoint each.
    pub chunk_rows: usize,
    /// Label writes in flight at once (different transactions only).
    pub concurrency: usize,
    /// How long a claim lasts without a checkpoint renewing it.
    pub lease_secs: i64,
    /// Hand over when less than this is left before the deadline.
    pub handover_margin: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            chunk_rows: 100,
            concurrency: 16,
            lease_secs: 60,
            handover_margin: Duration::from_secs(60),
        }
    }
}

/// Clients and configuration, built once per container.
pub struct Deps {
    pub store: DynamoStore,
    pub objects: ObjectStore,
    /// The data bucket (`DATA_BUCKET`); events from any other bucket are skipped.
    pub bucket: String,
    /// None: a run that must stop early returns `handed_over` and waits for a redelivery.
    pub reinvoke: Option<LambdaReinvoker>,
    pub settings: Settings,
}

/// One invocation's identity and limits.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The Lambda request id, for the logs (a lease is owned by a fresh id per invocation).
    pub request_id: String,
    pub deadline: Option<SystemTime>,
    /// Stop (and hand over) after this many rows: for tests and local runs.
    pub max_rows: Option<u64>,
}

impl Invocation {
    /// No deadline, a fresh owner id.
    pub fn unbounded() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Invocation {
            request_id: format!(
                "local-{}-{nanos}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            deadline: None,
            max_rows: None,
        }
    }

    fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum LabelsOutcome {
    /// The file is done (now, or earlier when `duplicate`).
    Completed {
        summary: LabelSummary,
    },
    /// The file stopped before its end (unreadable, gone, a bad header): the summary's
    /// `stopped_early` says why; rows before that point were applied.
    Failed {
        summary: LabelSummary,
    },
    /// Stopped at a checkpoint; `reinvoked` says whether a continuation was started.
    HandedOver {
        next_line: u64,
        reinvoked: bool,
    },
    /// Another invocation holds the job.
    Busy,
    Skipped {
        reason: String,
    },
}

impl LabelsOutcome {
    /// Completed, or failed when the file stopped early.
    fn finished(summary: LabelSummary) -> Self {
        if summary.stopped_early.is_some() {
            LabelsOutcome::Failed { summary }
        } else {
            LabelsOutcome::Completed { summary }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordOutcome {
    pub bucket: String,
    pub key: String,
    pub duplicate: bool,
    #[serde(flatten)]
    pub outcome: LabelsOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub records: Vec<RecordOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}; the job resumes from its last checkpoint on retry")]
    Read(String),
    #[error("cannot hand the job over: {0}")]
    Reinvoke(String),
    #[error("cannot encode: {0}")]
    Encode(serde_json::Error),
    #[error("a label write task failed: {0}")]
    Task(String),
}

pub async fn handle(deps: &Deps, event: S3Event) -> Result<Outcome, Error> {
    handle_with(deps, event, &Invocation::unbounded()).await
}

/// The function, with the invocation's id and deadline.
pub async fn handle_with(deps: &Deps, event: S3Event, inv: &Invocation) -> Result<Outcome, Error> {
    let mut records = Vec::with_capacity(event.records.len());
    for record in &event.records {
        let r = process_record(deps, inv, &event, record).await.map_err(|e| {
            tracing::error!(error = %e, "labels failed; the event will be retried");
            e
        })?;
        let handed_over = matches!(r.outcome, LabelsOutcome::HandedOver { .. });
        records.push(r);
        // The continuation carries the whole event; later records are its work.
        if handed_over {
            break;
        }
    }
    Ok(Outcome { records })
}

struct Upload {
    bucket: String,
    key: String,
    etag: String,
    version_id: Option<String>,
    size: Option<u64>,
}

impl Upload {
    fn of(record: &S3EventRecord) -> Upload {
        // A key that is not valid encoding is kept as written (it then names no label file).
        let object = uploaded_object(record).unwrap_or_else(|(_, as_written)| as_written);
        Upload {
            bucket: object.bucket,
            key: object.key,
            etag: object.etag,
            version_id: object.version_id,
            size: object.size,
        }
    }

    fn version(&self) -> Version<'_> {
        Version {
            version_id: self.version_id.as_deref(),
            etag: Some(&self.etag),
        }
    }

    fn result(&self, duplicate: bool, outcome: LabelsOutcome) -> RecordOutcome {
        RecordOutcome {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            duplicate,
            outcome,
        }
    }
}

async fn process_record(
    deps: &Deps,
    inv: &Invocation,
    event: &S3Event,
    record: &S3EventRecord,
) -> Result<RecordOutcome, LabelsError> {
    let up = Upload::of(record);
    let skip = |reason: String| {
        tracing::warn!(bucket = %up.bucket, key = %up.key, %reason, "label file skipped");
        Ok(up.result(false, LabelsOutcome::Skipped { reason }))
    };
    if up.bucket != deps.bucket {
        return skip(format!(
            "the event is for bucket {:?}, but this function reads labels from {:?}",
            up.bucket, deps.bucket
        ));
    }
    let file = match LabelFile::parse(&up.key) {
        Ok(f) => f,
        Err(e) => return skip(e.to_string()),
    };
    let job = ObjectRef::new(&up.bucket, &up.key, &up.etag);
    let lease = deps.settings.lease_secs;
    let owner = LeaseOwner::fresh();
    let started_at = Timestamp::now();
    let new = NewJob {
        object: &job,
        job_type: JobType::Labels,
        size: up.size,
        owner: &owner,
        lease_expires_at: started_at.unix() + lease,
        started_at,
        progress: &LabelProgress::default(),
    };
    let claim = || async {
        if deps.store.create_job(&file.tenant, &new).await? {
            return Ok::<_, StoreError>(Claim::Claimed(Job {
                object: job.clone(),
                job_type: JobType::Labels,
                size: up.size,
                status: verdict::domain::JobStatus::Running,
                progress: Some(LabelProgress::default()),
                error: None,
                result: None,
                lease_owner: Some(owner.to_string()),
                lease_expires_at: new.lease_expires_at,
                seq: 0,
                invocations: 1,
                started_at,
            }));
        }
        let now = Timestamp::now().unix();
        deps.store.claim_job(&file.tenant, &job, &owner, now + lease, now).await
    };
    let mut claimed = claim().await?;
    if let Claim::Busy { lease_expires_at } = claimed {
        // Its holder may have died: its lease runs out within `lease` seconds.
        let wait = (lease_expires_at - Timestamp::now().unix() + 1).clamp(0, lease + 1) as u64;
        let wait = Duration::from_secs(wait);
        if inv
            .time_left()
            .is_none_or(|left| left > wait + deps.settings.handover_margin)
        {
            tokio::time::sleep(wait).await;
            claimed = claim().await?;
        }
    }
    match claimed {
        Claim::Missing => Err(StoreError::Corrupt {
            key: job.uri(),
            reason: "the job item vanished while being claimed".into(),
        }
        .into()),
        Claim::Ended(state) => {
            let summary = state.result.as_deref().and_then(|r| serde_json::from_str(r).ok());
            tracing::info!(file = %job.uri(), "delivered again: already labelled");
            Ok(match summary {
                Some(summary) => up.result(true, LabelsOutcome::finished(summary)),
                None => up.result(
                    true,
                    LabelsOutcome::Skipped {
                        reason: format!("{} was processed before", job.uri()),
                    },
                ),
            })
        }
        Claim::Busy { .. } => {
            tracing::info!(file = %job.uri(), "another invocation is labelling this file");
            Ok(up.result(false, LabelsOutcome::Busy))
        }
        Claim::Claimed(state) => {
            let run = Run {
                deps,
                inv,
                owner: &owner,
                file: &file,
                up: &up,
                job: &job,
                uri: job.uri(),
            };
            let outcome = match run.go(state).await {
                Ok(o) => o,
                Err(e) => {
                    // Let a retry take over at once.
                    let _ = deps.store.release_job(&file.tenant, &job, &owner).await;
                    return Err(e);
                }
            };
            if let LabelsOutcome::HandedOver { next_line, .. } = outcome {
                deps.store.release_job(&file.tenant, &job, &owner).await?;
                let reinvoked = match &deps.reinvoke {
                    Some(r) => {
                        let payload = serde_json::to_value(event).map_err(LabelsError::Encode)?;
                        r.reinvoke(&payload)
                            .await
                            .map_err(|e| LabelsError::Reinvoke(e.to_string()))?;
                        true
                    }
                    None => false,
                };
                tracing::info!(file = %job.uri(), next_line, reinvoked, "handed over");
                return Ok(up.result(false, LabelsOutcome::HandedOver { next_line, reinvoked }));
            }
            Ok(up.result(false, outcome))
        }
    }
}

/// What the reading thread sends: a chunk of lines and the position after them.
struct Chunk {
    lines: Vec<LabelLine>,
    next_line: u64,
    next_offset: u64,
    header: Option<String>,
    end: bool,
}

/// What one row did.
#[derive(Debug, Clone, PartialEq)]
enum RowResult {
    Applied,
    Unchanged,
    Superseded,
    Unknown,
    Invalid {
        field: Option<&'static str>,
        reason: String,
    },
}

struct Run<'a> {
    deps: &'a Deps,
    inv: &'a Invocation,
    owner: &'a LeaseOwner,
    file: &'a LabelFile,
    up: &'a Upload,
    job: &'a ObjectRef,
    uri: String,
}

impl Run<'_> {
    async fn go(&self, state: Job<LabelProgress>) -> Result<LabelsOutcome, LabelsError> {
        let tenant = &self.file.tenant;
        let owner = self.owner;
        let settings = &self.deps.settings;
        let mut progress = state.progress.clone().unwrap_or_default();
        let mut seq = state.seq;
        let mut counts = LabelCounts::from_map(&progress.counts);
        let kind = match self.file.kind() {
            Ok(k) => k,
            Err(reason) => {
                let text = report_line(0, None, None, &reason);
                return self
                    .finish(&state, &mut progress, counts, Some(text), Some(reason))
                    .await;
            }
        };
        let ranged = !kind.gzip;
        let start = if ranged { progress.next_offset } else { 0 };
        let Some(body) = self
            .deps
            .objects
            .stream(&self.up.bucket, &self.up.key, self.up.version(), start)
            .await?
        else {
            let reason = format!(
                "{}: the object no longer exists or was replaced by a newer upload",
                self.uri
            );
            return self.finish(&state, &mut progress, counts, None, Some(reason)).await;
        };
        let resume = Resume {
            next_line: progress.next_line,
            ranged,
            header: progress.header.clone(),
        };
        let (tx, mut rx) = mpsc::channel::<Chunk>(2);
        let reader = spawn_reader(body, kind, self.uri.clone(), resume, start, settings.chunk_rows, tx);

        let mut rows_this_run = 0u64;
        let mut stopped_early = None;
        let mut finished = false;
        while let Some(chunk) = rx.recv().await {
            let mut report: Vec<(u64, String)> = Vec::new();
            let mut valid = Vec::new();
            let mut transient = None;
            for l in chunk.lines {
                match l.row {
                    Ok(row) => valid.push((l.line, row)),
                    Err(e) if l.fatal && l.transient => transient = Some(e.to_string()),
                    Err(e) if l.fatal => {
                        report.push((e.line, row_error_line(&e)));
                        stopped_early = Some(e.to_string());
                    }
                    Err(e) => {
                        counts.rows_read += 1;
                        counts.rejected += 1;
                        report.push((e.line, row_error_line(&e)));
                    }
                }
            }
            counts.rows_read += valid.len() as u64;
            rows_this_run += valid.len() as u64;
            for (line, id, r) in self.apply(valid).await? {
                match r {
                    RowResult::Applied => counts.applied += 1,
                    RowResult::Unchanged => counts.unchanged += 1,
                    RowResult::Superseded => {
                        counts.unchanged += 1;
                        counts.superseded += 1;
                    }
                    RowResult::Unknown => {
                        counts.rejected += 1;
                        counts.unknown += 1;
                        report.push((
                            line,
                            report_line(
                                line,
                                Some(&id),
                                Some("transaction_id"),
                                "no decision is stored for this transaction id",
                            ),
                        ));
                    }
                    RowResult::Invalid { field, reason } => {
                        counts.rejected += 1;
                        report.push((line, report_line(line, Some(&id), field, &reason)));
                    }
                }
            }
            if let Some(reason) = transient {
                // The rows before it are applied; a retry replays them from the checkpoint.
                return Err(LabelsError::Read(reason));
            }
            report.sort_by_key(|(line, _)| *line);
            progress.next_line = chunk.next_line;
            progress.next_offset = if ranged { chunk.next_offset } else { 0 };
            if chunk.header.is_some() {
                progress.header = chunk.header;
            }
            if !report.is_empty() {
                let text: String = report.into_iter().map(|(_, l)| l).collect();
                self.deps
                    .store
                    .put_report_chunk(tenant, self.job, progress.error_chunks, &text)
                    .await?;
                progress.error_chunks += 1;
            }
            progress.counts = counts.to_map();
            if chunk.end {
                finished = true;
                break;
            }
            let lease_until = Timestamp::now().unix() + settings.lease_secs;
            let saved = self
                .deps
                .store
                .checkpoint_job(tenant, self.job, owner, seq, &progress, lease_until)
                .await?;
            seq += 1;
            if !saved {
                tracing::warn!(file = %self.uri, "the job's lease was taken over; stopping");
                return Ok(LabelsOutcome::Busy);
            }
            let out_of_rows = self.inv.max_rows.is_some_and(|m| rows_this_run >= m);
            let out_of_time = self.inv.time_left().is_some_and(|l| l < settings.handover_margin);
            if out_of_rows || out_of_time {
                return Ok(LabelsOutcome::HandedOver {
                    next_line: progress.next_line,
                    reinvoked: false,
                });
            }
        }
        drop(rx);
        let _ = reader.await;
        if !finished {
            return Err(LabelsError::Read(format!(
                "{}: the reader stopped before the end",
                self.uri
            )));
        }
        self.finish(&state, &mut progress, counts, None, stopped_early).await
    }

    /// Labels the valid rows of one chunk. Results come back in line order.
    async fn apply(&self, rows: Vec<(u64, LabelRow)>) -> Result<Vec<(u64, String, RowResult)>, LabelsError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let tenant = &self.file.tenant;
        let store = &self.deps.store;
        let ids: Vec<TransactionId> = rows.iter().map(|(_, r)| r.transaction_id.clone()).collect();
        let targets = store.label_targets(tenant, &ids).await?;

        // Which aggregates may move: play the rows on the labels just read.
        let mut labels: HashMap<&TransactionId, Option<StoredLabel>> =
            targets.iter().map(|(id, t)| (id, t.label.clone())).collect();
        let mut customers = BTreeSet::new();
        let mut terminals = BTreeSet::new();
        for (line, row) in &rows {
            let (Some(t), Some(label)) = (targets.get(&row.transaction_id), labels.get_mut(&row.transaction_id)) else {
                continue;
            };
            if let Transition::Apply { fraud_delta } = transition(label.as_ref(), row, self.provenance(*line)) {
                if fraud_delta != 0 {
                    customers.insert(t.customer_id.clone());
                    terminals.extend(t.terminal_id.clone());
                }
                *label = Some(self.stored(row, *line));
            }
        }
        let newest = if customers.is_empty() {
            Newest::default()
        } else {
            let c: Vec<CustomerId> = customers.into_iter().collect();
            let t: Vec<TerminalId> = terminals.into_iter().collect();
            let (customers, terminals) = store.newest_days(tenant, &c, &t).await?;
            Newest { customers, terminals }
        };

        // Rows of one transaction in order; different transactions in parallel.
        let mut groups: BTreeMap<TransactionId, Vec<(u64, LabelRow)>> = BTreeMap::new();
        let mut out = Vec::with_capacity(rows.len());
        for (line, row) in rows {
            if targets.contains_key(&row.transaction_id) {
                groups.entry(row.transaction_id.clone()).or_default().push((line, row));
            } else {
                out.push((line, row.transaction_id.to_string(), RowResult::Unknown));
            }
        }
        let shared = Arc::new(Shared {
            store: store.clone(),
            tenant: tenant.clone(),
            file: self.uri.clone(),
            etag: self.up.etag.clone(),
            newest,
            now: Timestamp::now(),
        });
        let mut tasks = JoinSet::new();
        let mut targets = targets;
        for (id, rows) in groups {
            if tasks.len() >= self.deps.settings.concurrency.max(1) {
                if let Some(done) = tasks.join_next().await {
                    out.extend(done.map_err(|e| LabelsError::Task(e.to_string()))??);
                }
            }
            let Some(target) = targets.remove(&id) else { continue };
            tasks.spawn(apply_group(shared.clone(), id, target, rows));
        }
        while let Some(done) = tasks.join_next().await {
            out.extend(done.map_err(|e| LabelsError::Task(e.to_string()))??);
        }
        out.sort_by_key(|(line, _, _)| *line);
        Ok(out)
    }

    fn provenance(&self, line: u64) -> Provenance<'_> {
        Provenance {
            file: &self.uri,
            etag: &self.up.etag,
            line,
        }
    }

    fn stored(&self, row: &LabelRow, line: u64) -> StoredLabel {
        stored_label(row, &self.uri, &self.up.etag, line)
    }

    /// Writes the error report and the summary, and closes the job.
    async fn finish(
        &self,
        state: &Job<LabelProgress>,
        progress: &mut LabelProgress,
        counts: LabelCounts,
        extra_errors: Option<String>,
        stopped_early: Option<String>,
    ) -> Result<LabelsOutcome, LabelsError> {
        let tenant = &self.file.tenant;
        if let Some(text) = extra_errors {
            self.deps
                .store
                .put_report_chunk(tenant, self.job, progress.error_chunks, &text)
                .await?;
            progress.error_chunks += 1;
        }
        progress.counts = counts.to_map();
        let errors_key = self.file.errors_key();
        let mut w = self.deps.objects.writer(&self.up.bucket, &errors_key, "text/csv");
        w.write(REPORT_HEADER.as_bytes()).await?;
        for seq in 0..progress.error_chunks {
            let text = self
                .deps
                .store
                .report_chunk(tenant, self.job, seq)
                .await?
                .ok_or_else(|| StoreError::Unavailable(format!("{}: error chunk {seq} is missing", self.uri)))?;
            w.write(text.as_bytes()).await?;
        }
        w.finish().await?;
        let summary = LabelSummary {
            file: self.uri.clone(),
            etag: self.up.etag.clone(),
            tenant: tenant.to_string(),
            counts,
            errors_key,
            stopped_early: stopped_early.clone(),
            invocations: state.invocations,
            started_at: state.started_at.to_rfc3339(),
            completed_at: Timestamp::now().to_rfc3339(),
        };
        let json = serde_json::to_string_pretty(&summary).map_err(LabelsError::Encode)?;
        self.deps
            .objects
            .put(
                &self.up.bucket,
                &self.file.summary_key(),
                json.clone().into_bytes(),
                "application/json",
            )
            .await?;
        let end = match &stopped_early {
            Some(reason) => JobEnd::Failed {
                error: reason.clone(),
                result: Some(json),
            },
            None => JobEnd::Completed { result: Some(json) },
        };
        let closed = self
            .deps
            .store
            .finish_job(tenant, self.job, self.owner, &end, Some(&*progress), Timestamp::now())
            .await?;
        if !closed {
            return Ok(LabelsOutcome::Busy);
        }
        tracing::info!(
            file = %self.uri,
            rows_read = counts.rows_read,
            applied = counts.applied,
            unchanged = counts.unchanged,
            rejected = counts.rejected,
            stopped_early = stopped_early.as_deref().unwrap_or(""),
            "labels applied"
        );
        Ok(LabelsOutcome::finished(summary))
    }
}

fn row_error_line(e: &RowError) -> String {
    report_line(e.line, None, e.field, &e.reason)
}

fn stored_label(row: &LabelRow, file: &str, etag: &str, line: u64) -> StoredLabel {
    StoredLabel {
        value: row.label,
        source: row.source.clone(),
        labelled_at: row.labelled_at,
        file: Some(file.to_owned()),
        etag: Some(etag.to_owned()),
        line: Some(line),
    }
}

/// Each aggregate's newest day, for the retention check.
#[derive(Default)]
struct Newest {
    customers: HashMap<CustomerId, i32>,
    terminals: HashMap<TerminalId, i32>,
}

struct Shared {
    store: DynamoStore,
    tenant: TenantId,
    file: String,
    etag: String,
    newest: Newest,
    now: Timestamp,
}

/// Conditional writes retried after the decision's label changed under us.
const LABEL_ATTEMPTS: u32 = 5;

/// The rows of one transaction, in file order.
async fn apply_group(
    sh: Arc<Shared>,
    id: TransactionId,
    mut target: LabelTarget,
    rows: Vec<(u64, LabelRow)>,
) -> Result<Vec<(u64, String, RowResult)>, LabelsError> {
    let mut out = Vec::with_capacity(rows.len());
    for (line, row) in rows {
        let r = apply_row(&sh, &id, &mut target, line, &row).await?;
        out.push((line, id.to_string(), r));
    }
    Ok(out)
}

async fn apply_row(
    sh: &Shared,
    id: &TransactionId,
    target: &mut LabelTarget,
    line: u64,
    row: &LabelRow,
) -> Result<RowResult, LabelsError> {
    if let Err((field, reason)) = row.check_times(&target.occurred_at, &sh.now) {
        return Ok(RowResult::Invalid {
            field: Some(field),
            reason,
        });
    }
    let Some(terminal) = target.terminal_id.clone() else {
        return Ok(RowResult::Invalid {
            field: Some("transaction_id"),
            reason: "the stored decision has no terminal_id, so its fraud counts cannot be kept".into(),
        });
    };
    let from = Provenance {
        file: &sh.file,
        etag: &sh.etag,
        line,
    };
    for _ in 0..LABEL_ATTEMPTS {
        let fraud_delta = match transition(target.label.as_ref(), row, from) {
            Transition::Apply { fraud_delta } => fraud_delta,
            Transition::AlreadyApplied => return Ok(RowResult::Applied),
            Transition::Unchanged => return Ok(RowResult::Unchanged),
            Transition::Superseded => return Ok(RowResult::Superseded),
        };
        let day = target.occurred_at.epoch_day();
        // A day that left an aggregate's window is never read again; counting it would only
        // leave an attribute behind that pruning no longer reaches.
        let live = |newest: Option<&i32>| newest.is_none_or(|n| day > n - RETENTION_DAYS);
        let new = stored_label(row, &sh.file, &sh.etag, line);
        let write = LabelWrite {
            label: &new,
            previous: target.label.as_ref(),
            fraud_delta,
            day,
            customer: live(sh.newest.customers.get(&target.customer_id)).then_some(&target.customer_id),
            terminal: live(sh.newest.terminals.get(&terminal)).then_some(&terminal),
        };
        match sh.store.write_label(&sh.tenant, id, &write).await? {
            LabelWriteOutcome::Written => {
                target.label = Some(new);
                return Ok(RowResult::Applied);
            }
            LabelWriteOutcome::Changed => match sh
                .store
                .label_targets(&sh.tenant, std::slice::from_ref(id))
                .await?
                .remove(id)
            {
                Some(fresh) => *target = fresh,
                None => return Ok(RowResult::Unknown),
            },
        }
    }
    Err(LabelsError::Store(StoreError::Unavailable(format!(
        "transaction {id}: its label kept changing while line {line} was applied"
    ))))
}

/// Reads the object on a blocking thread (gzip and the line parser are synchronous) and sends
/// chunks of lines; it stops when the receiver goes away.
fn spawn_reader(
    body: ByteStream,
    kind: FileKind,
    file: String,
    resume: Resume,
    start: u64,
    chunk_rows: usize,
    tx: mpsc::Sender<Chunk>,
) -> tokio::task::JoinHandle<()> {
    let bridge = SyncIoBridge::new(Box::pin(body.into_async_read()));
    tokio::task::spawn_blocking(move || {
        let input: Box<dyn Read + Send> = if kind.gzip {
            Box::new(MultiGzDecoder::new(bridge))
        } else {
            Box::new(bridge)
        };
        let format: Format = kind.format;
        let mut reader = LabelReader::resume(file, format, BufReader::with_capacity(1 << 16, input), &resume, start);
        loop {
            let mut lines = Vec::with_capacity(chunk_rows);
            let mut end = false;
            while lines.len() < chunk_rows.max(1) {
                match reader.next() {
                    Some(l) => lines.push(l),
                    None => {
                        end = true;
                        break;
                    }
                }
            }
            let (next_line, next_offset) = reader.position();
            let chunk = Chunk {
                lines,
                next_line,
                next_offset,
                header: reader.header().map(str::to_owned),
                end,
            };
            if tx.blocking_send(chunk).is_err() || end {
                return;
            }
        }
    })
}
