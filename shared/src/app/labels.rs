//! The label applier: an upload to `labels/incoming/<tenant>/…` labels the tenant's stored
//! decisions (see [`crate::domain::labels`] for the file formats).
//!
//! The file is read in chunks of [`Settings::chunk_rows`] rows ([`Objects::open`], parsed where
//! [`LabelReading`] puts it). Per chunk: the
//! decisions the rows name ([`LabelStore::label_targets`]), the newest day of the aggregates
//! whose fraud counters may move ([`LabelStore::newest_days`]; read again for a row whose
//! write lost a race), then one conditional write per row that changes a label
//! ([`LabelStore::write_label`]), then one checkpoint (and the chunk's error lines, if any).
//!
//! Exactly once: the conditional label write makes every transaction's fraud count move once
//! per change of label, whatever repeats (the same row twice, the file delivered twice, a run
//! resumed from an older checkpoint). A relabel legit→fraud adds 1, fraud→legit takes it back
//! ([`transition`]). A row older (by `labelled_at`) than the label a decision already has does
//! not replace it. A label dated before the payment, or more than a day ahead, is refused.
//! Retention: a label whose day has left the aggregate's window is stored but counts nowhere.
//!
//! Resumable: progress ([`LabelProgress`]) is checkpointed per object version under a lease
//! ([`JobStore`]). A redelivery or a retry resumes from the checkpoint; near the deadline the
//! job is released and handed to a continuation ([`Reinvoke`]) with the same event.
//! Every output (an error chunk, the report, the summary) is written only after renewing the
//! lease: an invocation whose job was taken over writes nothing more, its taker does.
//!
//! Output, outside the trigger prefix: `labels/results/<tenant>/<name>.errors.csv` (line,
//! transaction_id, field, reason) and `<name>.summary.json` ([`LabelSummary`]).
//!
//! Runtime-agnostic: parsing runs wherever [`LabelReading`] puts it, waiting goes through
//! [`Sleep`], and the writes of different transactions run concurrently inside this task
//! ([`try_join_bounded`]), with no spawning.

use crate::app::try_join_bounded;
use crate::domain::features::RETENTION_DAYS;
use crate::domain::io::RowError;
use crate::domain::labels::{
    report_line, transition, LabelCounts, LabelFile, LabelProgress, LabelRequest, LabelRow, LabelSummary, Provenance,
    Resume, StoredLabel, Transition, REPORT_HEADER,
};
use crate::domain::objects::UploadedObject;
use crate::domain::{CustomerId, JobStatus, ObjectRef, TenantId, TerminalId, Timestamp, TransactionId};
use crate::ports::jobs::{Claim, Job, JobEnd, JobStore, JobType, LeaseOwner, NewJob};
use crate::ports::labels::{
    LabelChunks, LabelReading, LabelStore, LabelTarget, LabelWrite, LabelWriteOutcome, NewestDays, ReadPlan,
};
use crate::ports::objects::{ObjectVersion, ObjectWriter, Objects};
use crate::ports::reinvoke::Reinvoke;
use crate::ports::{Sleep, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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
    /// No deadline, a fresh request id.
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

/// Failures the invocation is retried for; bad input is never one (it is a row in the error
/// report, or a failed summary).
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
}

/// The label applier over its ports. The store and the jobs are usually the same table.
pub struct LabelApplier<'a, S, J, O, F, R, P> {
    pub store: &'a S,
    pub jobs: &'a J,
    /// The label file, and the reports beside it.
    pub objects: &'a O,
    pub reading: &'a F,
    /// None: a run that must stop early returns `handed_over` and waits for a redelivery.
    pub reinvoke: Option<&'a R>,
    pub sleep: &'a P,
    /// The data bucket; uploads to any other are skipped.
    pub bucket: &'a str,
    pub settings: &'a Settings,
}

impl<S, J, O, F, R, P> LabelApplier<'_, S, J, O, F, R, P>
where
    S: LabelStore,
    J: JobStore,
    O: Objects,
    F: LabelReading,
    R: Reinvoke,
    P: Sleep,
{
    /// Applies the uploads of one event in order. `continuation` is the event as JSON: a job
    /// handed over re-invokes with it, and the uploads after that one are the continuation's.
    pub async fn apply_event(
        &self,
        uploads: &[UploadedObject],
        continuation: &serde_json::Value,
        inv: &Invocation,
    ) -> Result<Vec<RecordOutcome>, LabelsError> {
        let mut out = Vec::with_capacity(uploads.len());
        for up in uploads {
            // Boxed: the nested futures of one upload are deep (a compile-time layout limit).
            let r = Box::pin(self.apply_upload(up, continuation, inv)).await?;
            let handed_over = matches!(r.outcome, LabelsOutcome::HandedOver { .. });
            out.push(r);
            if handed_over {
                break;
            }
        }
        Ok(out)
    }

    /// One upload: claim its job, work it, hand it over or finish it.
    pub async fn apply_upload(
        &self,
        up: &UploadedObject,
        continuation: &serde_json::Value,
        inv: &Invocation,
    ) -> Result<RecordOutcome, LabelsError> {
        let result = |duplicate, outcome| RecordOutcome {
            bucket: up.bucket.clone(),
            key: up.key.clone(),
            duplicate,
            outcome,
        };
        let skip = |reason: String| {
            tracing::warn!(bucket = %up.bucket, key = %up.key, %reason, "label file skipped");
            Ok(result(false, LabelsOutcome::Skipped { reason }))
        };
        if up.bucket != self.bucket {
            return skip(format!(
                "the event is for bucket {:?}, but this function reads labels from {:?}",
                up.bucket, self.bucket
            ));
        }
        let file = match LabelFile::parse(&up.key) {
            Ok(f) => f,
            Err(e) => return skip(e.to_string()),
        };
        let tenant = &file.tenant;
        let job = up.object_ref();
        let lease = self.settings.lease_secs;
        let owner = LeaseOwner::fresh();
        let started_at = Timestamp::now();
        let first = LabelProgress::default();
        let new = NewJob {
            object: &job,
            job_type: JobType::Labels,
            size: up.size,
            owner: &owner,
            lease_expires_at: started_at.unix() + lease,
            started_at,
            progress: &first,
        };
        let claim = || async {
            if self.jobs.create_job(tenant, &new).await? {
                return Ok::<_, StoreError>(Claim::Claimed(Job {
                    object: job.clone(),
                    job_type: JobType::Labels,
                    size: up.size,
                    status: JobStatus::Running,
                    progress: Some(first.clone()),
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
            self.jobs.claim_job(tenant, &job, &owner, now + lease, now).await
        };
        let mut claimed = claim().await?;
        if let Claim::Busy { lease_expires_at } = claimed {
            // Its holder may have died: its lease runs out within `lease` seconds.
            let wait = (lease_expires_at - Timestamp::now().unix() + 1).clamp(0, lease + 1) as u64;
            let wait = Duration::from_secs(wait);
            if inv
                .time_left()
                .is_none_or(|left| left > wait + self.settings.handover_margin)
            {
                self.sleep.sleep(wait).await;
                claimed = claim().await?;
            }
        }
        let state = match claimed {
            Claim::Claimed(state) => state,
            Claim::Missing => {
                return Err(StoreError::Corrupt {
                    key: job.uri(),
                    reason: "the job item vanished while being claimed".into(),
                }
                .into());
            }
            Claim::Ended(state) => {
                let summary = state.result.as_deref().and_then(|r| serde_json::from_str(r).ok());
                tracing::info!(file = %job.uri(), "delivered again: already labelled");
                return Ok(match summary {
                    Some(summary) => result(true, LabelsOutcome::finished(summary)),
                    None => result(
                        true,
                        LabelsOutcome::Skipped {
                            reason: format!("{} was processed before", job.uri()),
                        },
                    ),
                });
            }
            Claim::Busy { .. } => {
                tracing::info!(file = %job.uri(), "another invocation is labelling this file");
                return Ok(result(false, LabelsOutcome::Busy));
            }
        };
        let run = Run {
            app: self,
            inv,
            owner: &owner,
            file: &file,
            up,
            job: &job,
            uri: job.uri(),
        };
        let outcome = match run.go(state).await {
            Ok(o) => o,
            Err(e) => {
                // Let a retry take over at once.
                let _ = self.jobs.release_job(tenant, &job, &owner).await;
                return Err(e);
            }
        };
        let LabelsOutcome::HandedOver { next_line, .. } = outcome else {
            return Ok(result(false, outcome));
        };
        self.jobs.release_job(tenant, &job, &owner).await?;
        let reinvoked = match self.reinvoke {
            Some(r) => {
                r.reinvoke(continuation)
                    .await
                    .map_err(|e| LabelsError::Reinvoke(e.to_string()))?;
                true
            }
            None => false,
        };
        tracing::info!(file = %job.uri(), next_line, reinvoked, "handed over");
        Ok(result(false, LabelsOutcome::HandedOver { next_line, reinvoked }))
    }
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
    /// The stored data does not take the label (no terminal_id, a counter that is not a
    /// number): a file reports it like a bad row; the API does not blame the request.
    NotApplicable {
        field: Option<&'static str>,
        reason: String,
    },
    /// The label kept changing under concurrent writers for [`LABEL_ATTEMPTS`] tries.
    Stuck,
}

/// One claimed job being worked.
struct Run<'r, 'a, S, J, O, F, R, P> {
    app: &'r LabelApplier<'a, S, J, O, F, R, P>,
    inv: &'r Invocation,
    owner: &'r LeaseOwner,
    file: &'r LabelFile,
    up: &'r UploadedObject,
    job: &'r ObjectRef,
    uri: String,
}

/// What every row of a chunk is checked and written with.
struct RowContext<'r> {
    tenant: &'r TenantId,
    file: &'r str,
    etag: &'r str,
    /// The newest days of the aggregates the first pass expected to move (`asked`).
    newest: NewestDays,
    asked: (BTreeSet<CustomerId>, BTreeSet<TerminalId>),
    now: Timestamp,
}

/// Conditional writes retried after the decision's label changed under us.
const LABEL_ATTEMPTS: u32 = 5;

impl<S, J, O, F, R, P> Run<'_, '_, S, J, O, F, R, P>
where
    S: LabelStore,
    J: JobStore,
    O: Objects,
    F: LabelReading,
    R: Reinvoke,
    P: Sleep,
{
    async fn go(&self, state: Job<LabelProgress>) -> Result<LabelsOutcome, LabelsError> {
        let tenant = &self.file.tenant;
        let settings = self.app.settings;
        let jobs = self.app.jobs;
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
        // A plain file resumes at the checkpoint's byte; a gzipped one is read from the top.
        let ranged = !kind.gzip;
        let offset = if ranged { progress.next_offset } else { 0 };
        let version = ObjectVersion {
            version_id: self.up.version_id.as_deref(),
            etag: Some(&self.up.etag),
        };
        // The parser turns a read that gave up into a transient fatal line: no need for the
        // reader's failure.
        let Some((input, _)) = self
            .app
            .objects
            .open(&self.up.bucket, &self.up.key, version, offset)
            .await?
        else {
            let reason = format!(
                "{}: the object no longer exists or was replaced by a newer upload",
                self.uri
            );
            return self.finish(&state, &mut progress, counts, None, Some(reason)).await;
        };
        let plan = ReadPlan {
            file: self.uri.clone(),
            kind,
            resume: Resume {
                next_line: progress.next_line,
                ranged,
                header: progress.header.clone(),
            },
            offset,
            chunk_rows: settings.chunk_rows,
        };
        let mut chunks = self.app.reading.start(plan, input);

        let mut rows_this_run = 0u64;
        let mut stopped_early = None;
        let mut finished = false;
        while let Some(chunk) = chunks.next().await {
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
                    RowResult::Invalid { field, reason } | RowResult::NotApplicable { field, reason } => {
                        counts.rejected += 1;
                        report.push((line, report_line(line, Some(&id), field, &reason)));
                    }
                    // `apply_row` turns this into an error: the invocation is retried.
                    RowResult::Stuck => {
                        return Err(LabelsError::Store(StoreError::Unavailable(format!(
                            "transaction {id}: its label kept changing while line {line} was applied"
                        ))))
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
                // A taker-over rewrites this chunk from our last checkpoint: never clobber it.
                if !self.still_ours().await? {
                    return Ok(LabelsOutcome::Busy);
                }
                let text: String = report.into_iter().map(|(_, l)| l).collect();
                jobs.put_report_chunk(tenant, self.job, progress.error_chunks, &text)
                    .await?;
                progress.error_chunks += 1;
            }
            progress.counts = counts.to_map();
            if chunk.end {
                finished = true;
                break;
            }
            let lease_until = Timestamp::now().unix() + settings.lease_secs;
            let saved = jobs
                .checkpoint_job(tenant, self.job, self.owner, seq, &progress, lease_until)
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
        drop(chunks);
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
        let store = self.app.store;
        let ids: Vec<TransactionId> = rows.iter().map(|(_, r)| r.transaction_id.clone()).collect();
        let mut targets = store.label_targets(tenant, &ids).await?;
        let now = Timestamp::now();

        // Which aggregates may move: play the rows on the labels just read, skipping the rows
        // `apply_row` refuses before writing.
        let mut labels: HashMap<&TransactionId, Option<StoredLabel>> =
            targets.iter().map(|(id, t)| (id, t.label.clone())).collect();
        let mut customers = BTreeSet::new();
        let mut terminals = BTreeSet::new();
        for (line, row) in &rows {
            let (Some(t), Some(label)) = (targets.get(&row.transaction_id), labels.get_mut(&row.transaction_id)) else {
                continue;
            };
            if t.terminal_id.is_none() || row.check_times(&t.occurred_at, &now).is_err() {
                continue;
            }
            if let Transition::Apply { fraud_delta } = transition(label.as_ref(), row, Some(self.provenance(*line))) {
                if fraud_delta != 0 {
                    customers.insert(t.customer_id.clone());
                    terminals.extend(t.terminal_id.clone());
                }
                *label = Some(stored_label(row, &self.uri, &self.up.etag, *line));
            }
        }
        drop(labels);
        let newest = if customers.is_empty() {
            NewestDays::default()
        } else {
            let c: Vec<CustomerId> = customers.iter().cloned().collect();
            let t: Vec<TerminalId> = terminals.iter().cloned().collect();
            store.newest_days(tenant, &c, &t).await?
        };

        // Rows of one transaction in order; different transactions concurrently.
        let mut groups: BTreeMap<TransactionId, Vec<(u64, LabelRow)>> = BTreeMap::new();
        let mut out = Vec::with_capacity(rows.len());
        for (line, row) in rows {
            if targets.contains_key(&row.transaction_id) {
                groups.entry(row.transaction_id.clone()).or_default().push((line, row));
            } else {
                out.push((line, row.transaction_id.to_string(), RowResult::Unknown));
            }
        }
        let chunk = RowContext {
            tenant,
            file: &self.uri,
            etag: &self.up.etag,
            newest,
            asked: (customers, terminals),
            now,
        };
        let writes: Vec<_> = groups
            .into_iter()
            .filter_map(|(id, rows)| {
                let target = targets.remove(&id)?;
                Some(apply_group(store, &chunk, id, target, rows))
            })
            .collect();
        for group in try_join_bounded(writes, self.app.settings.concurrency.max(1)).await? {
            out.extend(group);
        }
        out.sort_by_key(|(line, _, _)| *line);
        Ok(out)
    }

    /// Renews the lease before an output is written: `false` once another invocation took it
    /// over (it resumes from our last checkpoint and writes the outputs itself).
    async fn still_ours(&self) -> Result<bool, LabelsError> {
        let until = Timestamp::now().unix() + self.app.settings.lease_secs;
        let held = self
            .app
            .jobs
            .renew_lease(&self.file.tenant, self.job, self.owner, until)
            .await?;
        if !held {
            tracing::warn!(file = %self.uri, "the job's lease was taken over; writing nothing");
        }
        Ok(held)
    }

    fn provenance(&self, line: u64) -> Provenance<'_> {
        Provenance {
            file: &self.uri,
            etag: &self.up.etag,
            line,
        }
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
        let jobs = self.app.jobs;
        let objects = self.app.objects;
        if !self.still_ours().await? {
            return Ok(LabelsOutcome::Busy);
        }
        if let Some(text) = extra_errors {
            jobs.put_report_chunk(tenant, self.job, progress.error_chunks, &text)
                .await?;
            progress.error_chunks += 1;
        }
        progress.counts = counts.to_map();
        let errors_key = self.file.errors_key();
        let mut w = ObjectWriter::new(objects, &self.up.bucket, &errors_key, "text/csv");
        w.write(REPORT_HEADER.as_bytes()).await?;
        for seq in 0..progress.error_chunks {
            let text = jobs
                .report_chunk(tenant, self.job, seq)
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    key: format!("{} error chunk {seq}", self.uri),
                    reason: "missing".into(),
                })?;
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
        // Rebuilding a long report takes time: confirm again before the summary.
        if !self.still_ours().await? {
            return Ok(LabelsOutcome::Busy);
        }
        objects
            .put(
                &self.up.bucket,
                &self.file.summary_key(),
                json.clone().into_bytes(),
                "application/json",
                &[],
            )
            .await?;
        let end = match &stopped_early {
            Some(reason) => JobEnd::Failed {
                error: reason.clone(),
                result: Some(json),
            },
            None => JobEnd::Completed { result: Some(json) },
        };
        let closed = jobs
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
        note: None,
    }
}

/// The rows of one transaction, in file order.
async fn apply_group<S: LabelStore>(
    store: &S,
    chunk: &RowContext<'_>,
    id: TransactionId,
    mut target: LabelTarget,
    rows: Vec<(u64, LabelRow)>,
) -> Result<Vec<(u64, String, RowResult)>, LabelsError> {
    let mut out = Vec::with_capacity(rows.len());
    for (line, row) in rows {
        let r = apply_row(store, chunk, &id, &mut target, line, &row).await?;
        out.push((line, id.to_string(), r));
    }
    Ok(out)
}

async fn apply_row<S: LabelStore>(
    store: &S,
    chunk: &RowContext<'_>,
    id: &TransactionId,
    target: &mut LabelTarget,
    line: u64,
    row: &LabelRow,
) -> Result<RowResult, LabelsError> {
    let from = Provenance {
        file: chunk.file,
        etag: chunk.etag,
        line,
    };
    let known = KnownDays {
        newest: &chunk.newest,
        asked: &chunk.asked,
    };
    let new = stored_label(row, chunk.file, chunk.etag, line);
    match apply_label(store, chunk.tenant, &chunk.now, id, target, row, Some(from), new, known).await? {
        RowResult::Stuck => Err(LabelsError::Store(StoreError::Unavailable(format!(
            "transaction {id}: its label kept changing while line {line} was applied"
        )))),
        applied => Ok(applied),
    }
}

/// The aggregates' newest days a caller already read, and for which entities.
#[derive(Clone, Copy)]
struct KnownDays<'k> {
    newest: &'k NewestDays,
    asked: &'k (BTreeSet<CustomerId>, BTreeSet<TerminalId>),
}

/// Labels one transaction: the ONE place a label is checked, its transition decided, the
/// retention rule applied and the conditional write made (and replayed after a lost race).
/// Both a file row and `POST /v1/transactions/{id}/label` go through here. `new` is the label
/// to store; `from` the file row it comes from (`None` for the API).
#[allow(clippy::too_many_arguments)]
async fn apply_label<S: LabelStore>(
    store: &S,
    tenant: &TenantId,
    now: &Timestamp,
    id: &TransactionId,
    target: &mut LabelTarget,
    row: &LabelRow,
    from: Option<Provenance<'_>>,
    new: StoredLabel,
    known: KnownDays<'_>,
) -> Result<RowResult, StoreError> {
    if let Err((field, reason)) = row.check_times(&target.occurred_at, now) {
        return Ok(RowResult::Invalid {
            field: Some(field),
            reason,
        });
    }
    let Some(terminal) = target.terminal_id.clone() else {
        return Ok(RowResult::NotApplicable {
            field: Some("transaction_id"),
            reason: "the stored decision has no terminal_id, so its fraud counts cannot be kept".into(),
        });
    };
    // Read again after a lost race: the first pass may not have read these aggregates (it saw
    // no delta), and their windows may have moved since.
    let mut retried = false;
    let mut fresh = None;
    for _ in 0..LABEL_ATTEMPTS {
        let fraud_delta = match transition(target.label.as_ref(), row, from) {
            Transition::Apply { fraud_delta } => fraud_delta,
            Transition::AlreadyApplied => return Ok(RowResult::Applied),
            Transition::Unchanged => return Ok(RowResult::Unchanged),
            Transition::Superseded => return Ok(RowResult::Superseded),
        };
        let asked = known.asked.0.contains(&target.customer_id) && known.asked.1.contains(&terminal);
        if fraud_delta != 0 && (retried || !asked) {
            fresh = Some(
                store
                    .newest_days(
                        tenant,
                        std::slice::from_ref(&target.customer_id),
                        std::slice::from_ref(&terminal),
                    )
                    .await?,
            );
        }
        let newest = fresh.as_ref().unwrap_or(known.newest);
        let day = target.occurred_at.epoch_day();
        // A day that left an aggregate's window is never read again; counting it would only
        // leave an attribute behind that pruning no longer reaches. Absent from what was read:
        // the aggregate does not exist yet, so the day is the newest.
        let live = |newest: Option<&i32>| newest.is_none_or(|n| day > n - RETENTION_DAYS);
        let write = LabelWrite {
            label: &new,
            previous: target.label.as_ref(),
            fraud_delta,
            day,
            customer: live(newest.customers.get(&target.customer_id)).then_some(&target.customer_id),
            terminal: live(newest.terminals.get(&terminal)).then_some(&terminal),
        };
        match store.write_label(tenant, id, &write).await? {
            // Whatever the retry (a fraud counter that is not a number): report the row, and
            // let the rest of the file apply.
            LabelWriteOutcome::Refused => {
                return Ok(RowResult::NotApplicable {
                    field: None,
                    reason: "the store refused to move this transaction's fraud counters; the label was not applied"
                        .into(),
                })
            }
            LabelWriteOutcome::Written => {
                target.label = Some(new);
                return Ok(RowResult::Applied);
            }
            LabelWriteOutcome::Changed => match store.label_targets(tenant, std::slice::from_ref(id)).await?.remove(id)
            {
                Some(now) => {
                    *target = now;
                    retried = true;
                }
                None => return Ok(RowResult::Unknown),
            },
        }
    }
    Ok(RowResult::Stuck)
}

// ---------------------------------------------------------------------------------------------
// One label from the API

/// What `POST /v1/transactions/{id}/label` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelOutcome {
    /// The label was written (and the fraud counters moved if it changed fraud-ness).
    Applied,
    /// The transaction already had this label: nothing moved.
    Unchanged,
    /// The transaction has a different label given later; that one stands.
    Superseded,
}

/// The answer: what happened and the label the decision now carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    pub outcome: LabelOutcome,
    pub label: Option<StoredLabel>,
}

/// Why one API label was refused.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("no transaction {0:?}")]
    NotFound(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The stored transaction does not take the label (its stored data does not allow it).
    #[error("transaction {0}")]
    NotApplicable(String),
    /// The label kept changing under concurrent writers; retry.
    #[error("transaction {0}: its label kept changing")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The label an API request stores: `file` names the key that labelled (`api:<key id>`).
pub fn api_label(request: &LabelRequest, key_id: &str) -> StoredLabel {
    StoredLabel {
        value: request.row.label,
        source: request.row.source.clone(),
        labelled_at: request.row.labelled_at,
        file: Some(format!("api:{key_id}")),
        etag: None,
        line: None,
        note: request.note.clone(),
    }
}

/// Labels one of `tenant`'s transactions, as one row of a label file would, through the same
/// [`apply_label`]: exactly once, a relabel moves the counters back, an older label than the
/// stored one does not replace it. Another tenant's transaction is not found.
pub async fn label_transaction<S: LabelStore>(
    store: &S,
    tenant: &TenantId,
    key_id: &str,
    request: &LabelRequest,
) -> Result<Labelled, LabelError> {
    let id = &request.row.transaction_id;
    let Some(mut target) = store.label_targets(tenant, std::slice::from_ref(id)).await?.remove(id) else {
        return Err(LabelError::NotFound(id.to_string()));
    };
    let nothing_read = NewestDays::default();
    let nobody = (BTreeSet::new(), BTreeSet::new());
    let known = KnownDays {
        newest: &nothing_read,
        asked: &nobody,
    };
    let new = api_label(request, key_id);
    let now = Timestamp::now();
    let outcome = match apply_label(store, tenant, &now, id, &mut target, &request.row, None, new, known).await? {
        RowResult::Applied => LabelOutcome::Applied,
        RowResult::Unchanged => LabelOutcome::Unchanged,
        RowResult::Superseded => LabelOutcome::Superseded,
        RowResult::Unknown => return Err(LabelError::NotFound(id.to_string())),
        RowResult::Invalid { field, reason } => {
            return Err(LabelError::Invalid {
                field: field.unwrap_or("transaction_id"),
                reason,
            })
        }
        RowResult::NotApplicable { reason, .. } => return Err(LabelError::NotApplicable(format!("{id}: {reason}"))),
        RowResult::Stuck => return Err(LabelError::Busy(id.to_string())),
    };
    Ok(Labelled {
        outcome,
        label: target.label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::labels::LabelValue;
    use crate::ports::in_memory::{InMemoryJobs, InMemoryLabels, InMemoryObjects, InlineReading};
    use crate::ports::reinvoke::ReinvokeError;
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    /// The fakes never wait, so polling once finishes a run.
    fn now_or_never<Fut: Future>(f: Fut) -> Fut::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the fakes never wait"),
        }
    }

    const BUCKET: &str = "data";

    #[derive(Default)]
    struct Continuations(Mutex<Vec<serde_json::Value>>);

    impl Reinvoke for Continuations {
        async fn reinvoke(&self, payload: &serde_json::Value) -> Result<(), ReinvokeError> {
            self.0.lock().unwrap().push(payload.clone());
            Ok(())
        }
    }

    /// Records each wait, and runs `then` as the time passes (a crashed holder's lease ends).
    #[derive(Default)]
    struct Waits {
        waited: Mutex<Vec<Duration>>,
        then: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl Sleep for Waits {
        async fn sleep(&self, d: Duration) {
            self.waited.lock().unwrap().push(d);
            if let Some(f) = self.then.lock().unwrap().take() {
                f();
            }
        }
    }

    struct World {
        store: InMemoryLabels,
        jobs: Arc<InMemoryJobs>,
        objects: InMemoryObjects,
        reading: InlineReading,
        reinvoke: Continuations,
        waits: Waits,
        settings: Settings,
    }

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse("t", s).unwrap()
    }

    fn id(s: &str) -> TransactionId {
        TransactionId::parse(s).unwrap()
    }

    fn cust(s: &str) -> CustomerId {
        CustomerId::parse(s).unwrap()
    }

    fn term(s: &str) -> TerminalId {
        TerminalId::parse(s).unwrap()
    }

    impl World {
        fn new(chunk_rows: usize) -> Self {
            World {
                store: InMemoryLabels::default(),
                jobs: Arc::default(),
                objects: InMemoryObjects::default(),
                reading: InlineReading::default(),
                reinvoke: Continuations::default(),
                waits: Waits::default(),
                settings: Settings {
                    chunk_rows,
                    ..Settings::default()
                },
            }
        }

        fn decide(&self, tx: &str, at: &str, customer: &str, terminal: &str) {
            self.store.add_decision(
                &acme(),
                &id(tx),
                LabelTarget {
                    occurred_at: ts(at),
                    customer_id: cust(customer),
                    terminal_id: Some(term(terminal)),
                    label: None,
                },
            );
        }

        fn upload(&self, name: &str, text: &str) -> UploadedObject {
            let key = format!("labels/incoming/acme/{name}");
            let etag = self.objects.upload(BUCKET, &key, text.as_bytes(), &[]);
            UploadedObject {
                bucket: BUCKET.into(),
                key,
                etag,
                size: Some(text.len() as u64),
                version_id: None,
            }
        }

        fn applier(
            &self,
        ) -> LabelApplier<'_, InMemoryLabels, InMemoryJobs, InMemoryObjects, InlineReading, Continuations, Waits>
        {
            LabelApplier {
                store: &self.store,
                jobs: &self.jobs,
                objects: &self.objects,
                reading: &self.reading,
                reinvoke: Some(&self.reinvoke),
                sleep: &self.waits,
                bucket: BUCKET,
                settings: &self.settings,
            }
        }

        fn run(&self, up: &UploadedObject, inv: &Invocation) -> RecordOutcome {
            now_or_never(
                self.applier()
                    .apply_upload(up, &serde_json::json!({"event": up.key}), inv),
            )
            .unwrap()
        }

        fn complete(&self, up: &UploadedObject) -> LabelSummary {
            match self.run(up, &Invocation::unbounded()).outcome {
                LabelsOutcome::Completed { summary } => summary,
                other => panic!("expected a completed file, got {other:?}"),
            }
        }

        fn frauds(&self, customer: &str, terminal: &str) -> (BTreeMap<i32, i64>, BTreeMap<i32, i64>) {
            (
                self.store.customer_frauds(&acme(), &cust(customer)),
                self.store.terminal_frauds(&acme(), &term(terminal)),
            )
        }
    }

    const HEADER: &str = "transaction_id,label,source,labelled_at\n";

    fn day(at: &str) -> i32 {
        ts(at).epoch_day()
    }

    #[test]
    fn fraud_then_legit_then_fraud_moves_the_counters_back_and_forth() {
        let w = World::new(100);
        w.decide("tx-1", "2018-08-01T10:00:00Z", "c-1", "t-1");
        w.decide("tx-2", "2018-08-01T11:00:00Z", "c-1", "t-1");
        let d1 = day("2018-08-01T00:00:00Z");
        let before = w.frauds("c-1", "t-1");
        assert_eq!(before, (BTreeMap::new(), BTreeMap::new()));
        let steps = [
            ("fraud", "2018-08-20T00:00:00Z", 1),
            ("legit", "2018-08-21T00:00:00Z", 0),
            ("fraud", "2018-08-22T00:00:00Z", 1),
            ("legit", "2018-08-23T00:00:00Z", 0),
        ];
        for (n, (label, at, frauds)) in steps.into_iter().enumerate() {
            let up = w.upload(&format!("step-{n}.csv"), &format!("{HEADER}tx-1,{label},cb,{at}\n"));
            let s = w.complete(&up);
            assert_eq!((s.counts.applied, s.counts.rejected), (1, 0), "step {n}");
            let want: BTreeMap<i32, i64> = (frauds > 0).then_some((d1, frauds)).into_iter().collect();
            assert_eq!(w.frauds("c-1", "t-1"), (want.clone(), want), "step {n}: {label}");
            let stored = w.store.label(&acme(), &id("tx-1")).unwrap();
            assert_eq!((stored.value.as_str(), stored.labelled_at), (label, ts(at)));
        }
        assert_eq!(w.frauds("c-1", "t-1"), before, "back to where they were");

        // The same walk inside one file, one row a chunk: the counters end where they started.
        let up = w.upload(
            "walk.csv",
            &format!(
                "{HEADER}tx-2,fraud,cb,2018-08-20T00:00:00Z\ntx-2,legit,cb,2018-08-21T00:00:00Z\n\
                 tx-2,fraud,cb,2018-08-22T00:00:00Z\ntx-2,legit,cb,2018-08-23T00:00:00Z\n"
            ),
        );
        let s = w.complete(&up);
        assert_eq!(s.counts.applied, 4);
        assert_eq!(w.frauds("c-1", "t-1"), before);
        assert_eq!(w.store.label(&acme(), &id("tx-2")).unwrap().value, LabelValue::Legit);
    }

    #[test]
    fn a_file_delivered_again_or_repeated_changes_nothing() {
        let w = World::new(2);
        w.decide("tx-1", "2018-08-01T10:00:00Z", "c-1", "t-1");
        w.decide("tx-2", "2018-08-02T10:00:00Z", "c-2", "t-1");
        let text = format!(
            "{HEADER}tx-1,fraud,cb,2018-08-20T00:00:00Z\ntx-2,fraud,cb,2018-08-20T00:00:00Z\n\
             tx-1,fraud,cb,2018-08-21T00:00:00Z\ntx-9,fraud,cb,2018-08-21T00:00:00Z\n"
        );
        let up = w.upload("a.csv", &text);
        let first = w.complete(&up);
        let c = first.counts;
        assert_eq!((c.applied, c.unchanged, c.unknown), (2, 1, 1));
        let counters = (w.frauds("c-1", "t-1"), w.frauds("c-2", "t-1"));
        assert_eq!(counters.0 .1.values().sum::<i64>(), 2, "t-1: each fraud once");
        let report = w.objects.text(BUCKET, "labels/results/acme/a.errors.csv").unwrap();
        assert_eq!(
            report,
            "line,transaction_id,field,reason\n5,tx-9,transaction_id,no decision is stored for this transaction id\n"
        );

        // The same delivery again: the summary of the first run, nothing read or written.
        let again = w.run(&up, &Invocation::unbounded());
        assert!(again.duplicate);
        assert_eq!(again.outcome, LabelsOutcome::Completed { summary: first });
        assert_eq!(w.reading.starts().len(), 1, "the file is not read again");
        // The same rows in another file: every label is there already.
        let other = w.complete(&w.upload("b.csv", &text));
        assert_eq!((other.counts.applied, other.counts.unchanged), (0, 3));
        assert_eq!((w.frauds("c-1", "t-1"), w.frauds("c-2", "t-1")), counters);
    }

    #[test]
    fn a_label_dated_before_the_payment_or_in_the_future_is_refused() {
        let w = World::new(100);
        w.decide("tx-1", "2018-08-10T10:00:00Z", "c-1", "t-1");
        let up = w.upload(
            "early.csv",
            &format!("{HEADER}tx-1,fraud,cb,2018-08-09T00:00:00Z\ntx-1,fraud,cb,2999-01-01T00:00:00Z\n"),
        );
        let s = w.complete(&up);
        assert_eq!((s.counts.applied, s.counts.rejected), (0, 2));
        assert_eq!(w.store.label(&acme(), &id("tx-1")), None);
        assert_eq!(w.frauds("c-1", "t-1"), (BTreeMap::new(), BTreeMap::new()));
        let report = w.objects.text(BUCKET, &s.errors_key).unwrap();
        assert_eq!(
            report,
            "line,transaction_id,field,reason\n\
             2,tx-1,labelled_at,2018-08-09T00:00:00Z is before the transaction occurred (2018-08-10T10:00:00Z)\n\
             3,tx-1,labelled_at,2999-01-01T00:00:00Z is in the future\n"
        );
    }

    #[test]
    fn a_day_past_the_aggregates_retention_is_labelled_but_counts_nowhere() {
        let w = World::new(100);
        w.decide("tx-1", "2018-08-01T10:00:00Z", "c-1", "t-1");
        let d1 = day("2018-08-01T00:00:00Z");
        // The customer paid again long after: 08-01 has left its window; the terminal's has not.
        w.store.touch_customer_day(&acme(), &cust("c-1"), d1 + RETENTION_DAYS);
        let s = w.complete(&w.upload("old.csv", &format!("{HEADER}tx-1,fraud,cb,2018-09-20T00:00:00Z\n")));
        assert_eq!(s.counts.applied, 1);
        assert_eq!(w.store.label(&acme(), &id("tx-1")).unwrap().value, LabelValue::Fraud);
        assert_eq!(w.frauds("c-1", "t-1"), (BTreeMap::new(), BTreeMap::from([(d1, 1)])));
    }

    #[test]
    fn a_write_that_lost_the_race_reads_again_and_counts_nothing_twice() {
        let w = World::new(100);
        w.decide("tx-1", "2018-08-01T10:00:00Z", "c-1", "t-1");
        w.decide("tx-2", "2018-08-01T11:00:00Z", "c-1", "t-1");
        let d1 = day("2018-08-01T00:00:00Z");
        let theirs = |value, at: &str| StoredLabel {
            value,
            source: "analyst".into(),
            labelled_at: ts(at),
            file: Some("s3://data/other.csv".into()),
            etag: Some("e".into()),
            line: Some(2),
            note: None,
        };
        // tx-1: another file labels it fraud first; ours (fraud too) is then unchanged.
        w.store.race_next_write(
            &acme(),
            &id("tx-1"),
            theirs(LabelValue::Fraud, "2018-08-19T00:00:00Z"),
            1,
        );
        let s = w.complete(&w.upload("a.csv", &format!("{HEADER}tx-1,fraud,cb,2018-08-20T00:00:00Z\n")));
        assert_eq!((s.counts.applied, s.counts.unchanged), (0, 1));
        assert_eq!(
            w.frauds("c-1", "t-1").1,
            BTreeMap::from([(d1, 1)]),
            "counted once, by them"
        );
        // tx-2: a later legit gets in first; our older fraud is superseded and counts nothing.
        w.store.race_next_write(
            &acme(),
            &id("tx-2"),
            theirs(LabelValue::Legit, "2018-08-25T00:00:00Z"),
            0,
        );
        let s = w.complete(&w.upload("b.csv", &format!("{HEADER}tx-2,fraud,cb,2018-08-20T00:00:00Z\n")));
        assert_eq!((s.counts.applied, s.counts.superseded), (0, 1));
        assert_eq!(w.frauds("c-1", "t-1").1, BTreeMap::from([(d1, 1)]));
        assert_eq!(w.store.label(&acme(), &id("tx-2")).unwrap().value, LabelValue::Legit);
    }

    #[test]
    fn a_lost_race_that_leaves_a_delta_reads_the_retention_windows_again() {
        let w = World::new(100);
        w.decide("tx-1", "2018-08-01T10:00:00Z", "c-1", "t-1");
        let d1 = day("2018-08-01T00:00:00Z");
        // The customer and the terminal paid again later: 08-01 has left both windows.
        w.decide("tx-late", "2018-10-04T10:00:00Z", "c-1", "t-1");
        let late = day("2018-10-04T00:00:00Z");
        assert_eq!(late, d1 + RETENTION_DAYS);
        let theirs = |at: &str| StoredLabel {
            value: LabelValue::Fraud,
            source: "analyst".into(),
            labelled_at: ts(at),
            file: Some("s3://data/other.csv".into()),
            etag: Some("e".into()),
            line: Some(2),
            note: None,
        };
        // Our legit on an unlabelled decision moves nothing, so no window is read first; their
        // fraud gets in (counting nowhere, its day being out), and our retry takes one back.
        w.store
            .race_next_write(&acme(), &id("tx-1"), theirs("2018-08-19T00:00:00Z"), 0);
        let s = w.complete(&w.upload("a.csv", &format!("{HEADER}tx-1,legit,cb,2018-08-20T00:00:00Z\n")));
        assert_eq!(s.counts.applied, 1);
        assert_eq!(w.store.label(&acme(), &id("tx-1")).unwrap().value, LabelValue::Legit);
        assert_eq!(
            w.frauds("c-1", "t-1"),
            (BTreeMap::new(), BTreeMap::new()),
            "a day out of retention takes nothing back"
        );

        // The same race on a day still in the windows: the retry does take their fraud back.
        w.decide("tx-2", "2018-10-04T11:00:00Z", "c-1", "t-1");
        w.store
            .race_next_write(&acme(), &id("tx-2"), theirs("2018-10-05T00:00:00Z"), 1);
        let s = w.complete(&w.upload("b.csv", &format!("{HEADER}tx-2,legit,cb,2018-10-06T00:00:00Z\n")));
        assert_eq!(s.counts.applied, 1);
        assert_eq!(
            w.frauds("c-1", "t-1"),
            (BTreeMap::new(), BTreeMap::new()),
            "+1 theirs, -1 ours"
        );
    }

    #[test]
    fn a_refused_row_does_not_hide_the_next_rows_delta_from_the_retention_read() {
        let w = World::new(100);
        w.decide("tx-1", "2018-08-01T10:00:00Z", "c-1", "t-1");
        w.decide("tx-late", "2018-10-04T10:00:00Z", "c-1", "t-1");
        // Played as if applied, the future legit would make the fraud look superseded.
        let s = w.complete(&w.upload(
            "a.csv",
            &format!("{HEADER}tx-1,legit,cb,2999-01-01T00:00:00Z\ntx-1,fraud,cb,2018-08-20T00:00:00Z\n"),
        ));
        assert_eq!((s.counts.rejected, s.counts.applied), (1, 1));
        assert_eq!(w.store.label(&acme(), &id("tx-1")).unwrap().value, LabelValue::Fraud);
        assert_eq!(
            w.frauds("c-1", "t-1"),
            (BTreeMap::new(), BTreeMap::new()),
            "08-01 is out of both windows"
        );
    }

    /// The store, running `then` right after the next label write: another invocation acts
    /// while this one is between its rows and its outputs.
    struct AfterWrite<'a> {
        store: &'a InMemoryLabels,
        then: Mutex<Option<Box<dyn FnOnce() + Send + 'a>>>,
    }

    impl LabelStore for AfterWrite<'_> {
        async fn label_targets(
            &self,
            tenant: &TenantId,
            ids: &[TransactionId],
        ) -> Result<HashMap<TransactionId, LabelTarget>, StoreError> {
            self.store.label_targets(tenant, ids).await
        }

        async fn newest_days(
            &self,
            tenant: &TenantId,
            customers: &[CustomerId],
            terminals: &[TerminalId],
        ) -> Result<NewestDays, StoreError> {
            self.store.newest_days(tenant, customers, terminals).await
        }

        async fn write_label(
            &self,
            tenant: &TenantId,
            id: &TransactionId,
            write: &LabelWrite<'_>,
        ) -> Result<LabelWriteOutcome, StoreError> {
            let r = self.store.write_label(tenant, id, write).await;
            let then = self.then.lock().unwrap().take();
            if let Some(f) = then {
                f();
            }
            r
        }
    }

    impl World {
        /// Runs `up` with `then` run after its first label write.
        fn run_stalling<'a>(&'a self, up: &UploadedObject, then: impl FnOnce() + Send + 'a) -> LabelsOutcome {
            let store = AfterWrite {
                store: &self.store,
                then: Mutex::new(Some(Box::new(then))),
            };
            let app = LabelApplier {
                store: &store,
                jobs: &*self.jobs,
                objects: &self.objects,
                reading: &self.reading,
                reinvoke: Some(&self.reinvoke),
                sleep: &self.waits,
                bucket: BUCKET,
                settings: &self.settings,
            };
            now_or_never(app.apply_upload(up, &serde_json::json!({}), &Invocation::unbounded()))
                .unwrap()
                .outcome
        }
    }

    /// The store, refusing every label write of one transaction as a store would refuse an ADD
    /// on a counter that is not a number.
    struct RefusesWritesOf<'a> {
        store: &'a InMemoryLabels,
        refused: TransactionId,
    }

    impl LabelStore for RefusesWritesOf<'_> {
        async fn label_targets(
            &self,
            tenant: &TenantId,
            ids: &[TransactionId],
        ) -> Result<HashMap<TransactionId, LabelTarget>, StoreError> {
            self.store.label_targets(tenant, ids).await
        }

        async fn newest_days(
            &self,
            tenant: &TenantId,
            customers: &[CustomerId],
            terminals: &[TerminalId],
        ) -> Result<NewestDays, StoreError> {
            self.store.newest_days(tenant, customers, terminals).await
        }

        async fn write_label(
            &self,
            tenant: &TenantId,
            id: &TransactionId,
            write: &LabelWrite<'_>,
        ) -> Result<LabelWriteOutcome, StoreError> {
            if *id == self.refused {
                return Ok(LabelWriteOutcome::Refused);
            }
            self.store.write_label(tenant, id, write).await
        }
    }

    #[test]
    fn a_label_the_store_refuses_is_an_error_row_and_the_rest_of_the_file_applies() {
        let w = World::new(100);
        w.decide("tx-1", "2018-08-01T10:00:00Z", "c-1", "t-1");
        w.decide("tx-2", "2018-08-01T11:00:00Z", "c-2", "t-1");
        let up = w.upload(
            "refused.csv",
            &format!(
                "{HEADER}tx-1,fraud,cb,2018-08-20T00:00:00Z
tx-2,fraud,cb,2018-08-20T00:00:00Z
"
            ),
        );
        let store = RefusesWritesOf {
            store: &w.store,
            refused: id("tx-1"),
        };
        let app = LabelApplier {
            store: &store,
            jobs: &*w.jobs,
            objects: &w.objects,
            reading: &w.reading,
            reinvoke: Some(&w.reinvoke),
            sleep: &w.waits,
            bucket: BUCKET,
            settings: &w.settings,
        };
        let out = now_or_never(app.apply_upload(&up, &serde_json::json!({}), &Invocation::unbounded()))
            .unwrap()
            .outcome;
        let LabelsOutcome::Completed { summary } = out else {
            panic!("the file stopped on one refused row: {out:?}");
        };
        assert_eq!((summary.counts.applied, summary.counts.rejected), (1, 1));
        assert!(w.store.label(&acme(), &id("tx-1")).is_none());
        assert_eq!(w.store.label(&acme(), &id("tx-2")).unwrap().value, LabelValue::Fraud);
    }

    /// One applied row and one unknown (an error line), in one chunk: the file's last.
    const TWO_ROWS: &str = "tx-1,fraud,cb,2018-08-20T00:00:00Z\ntx-9,fraud,cb,2018-08-20T00:00:00Z\n";

    #[test]
    fn a_holder_whose_lease_was_taken_over_after_its_last_row_writes_no_report_and_no_summary() {
        let w = World::new(100);
        w.decide("tx-1", "2018-08-01T10:00:00Z", "c-1", "t-1");
        let up = w.upload("late.csv", &format!("{HEADER}{TWO_ROWS}"));
        let (job, file) = (up.object_ref(), LabelFile::parse(&up.key).unwrap());
        let (jobs, tenant, object) = (w.jobs.clone(), acme(), job.clone());
        let later = Timestamp::now().unix() + 60;
        let outcome = w.run_stalling(&up, move || jobs.set_lease(&tenant, &object, "taker", later));
        assert_eq!(outcome, LabelsOutcome::Busy);
        assert_eq!(w.store.label(&acme(), &id("tx-1")).unwrap().value, LabelValue::Fraud);
        assert_eq!(
            now_or_never(w.jobs.report_chunk(&acme(), &job, 0)).unwrap(),
            None,
            "no report chunk"
        );
        assert_eq!(w.objects.text(BUCKET, &file.errors_key()), None, "no errors.csv");
        assert_eq!(w.objects.text(BUCKET, &file.summary_key()), None, "no summary");

        // The taker's lease runs out unused: the next run resumes and writes them.
        w.jobs.set_lease(&acme(), &job, "taker", 0);
        let s = w.complete(&up);
        assert_eq!((s.counts.applied, s.counts.unknown), (1, 1));
        assert!(w.objects.text(BUCKET, &file.summary_key()).is_some());
        assert_eq!(
            w.objects.text(BUCKET, &file.errors_key()).unwrap(),
            "line,transaction_id,field,reason\n3,tx-9,transaction_id,no decision is stored for this transaction id\n"
        );
    }

    #[test]
    fn a_holder_that_wakes_after_its_taker_finished_leaves_the_takers_outputs() {
        let w = World::new(100);
        w.decide("tx-1", "2018-08-01T10:00:00Z", "c-1", "t-1");
        let up = w.upload("late.csv", &format!("{HEADER}{TWO_ROWS}"));
        let (job, file) = (up.object_ref(), LabelFile::parse(&up.key).unwrap());
        // The first holder stalls past its lease after its last row; the taker does the file.
        let taker = Mutex::new(None);
        let outcome = w.run_stalling(&up, || {
            w.jobs.set_lease(&acme(), &job, "stalled", 0);
            *taker.lock().unwrap() = Some(w.complete(&up));
        });
        assert_eq!(outcome, LabelsOutcome::Busy);
        let taker = taker.into_inner().unwrap().expect("the taker ran");
        assert_eq!(taker.invocations, 2);
        assert_eq!(
            w.objects.text(BUCKET, &file.summary_key()),
            Some(serde_json::to_string_pretty(&taker).unwrap()),
            "the taker's summary stays"
        );
        assert_eq!(
            w.objects.text(BUCKET, &file.errors_key()).unwrap(),
            "line,transaction_id,field,reason\n3,tx-9,transaction_id,no decision is stored for this transaction id\n"
        );
    }

    /// 12 rows over 6 transactions, fraud and legit mixed, one unknown.
    fn twelve(w: &World) -> String {
        let mut text = String::from(HEADER);
        for i in 0..6 {
            w.decide(
                &format!("tx-{i}"),
                "2018-08-01T10:00:00Z",
                &format!("c-{}", i % 2),
                "t-1",
            );
        }
        for i in 0..12 {
            let label = if i % 3 == 0 { "legit" } else { "fraud" };
            let tx = if i == 7 {
                "tx-77".to_owned()
            } else {
                format!("tx-{}", i % 6)
            };
            text.push_str(&format!("{tx},{label},cb,2018-08-{:02}T00:00:00Z\n", 10 + i));
        }
        text
    }

    #[test]
    fn a_job_is_handed_over_and_taken_from_a_crashed_holder_after_its_lease() {
        // The clean run, for comparison.
        let clean = World::new(2);
        let text = twelve(&clean);
        let want = clean.complete(&clean.upload("f.csv", &text));
        let want_frauds = clean.store.terminal_frauds(&acme(), &term("t-1"));

        let w = World::new(2);
        twelve(&w);
        let up = w.upload("f.csv", &text);
        let job = up.object_ref();
        // Four rows, then a hand-over: the lease is released and the continuation queued.
        let inv = Invocation {
            max_rows: Some(4),
            ..Invocation::unbounded()
        };
        let r = w.run(&up, &inv);
        assert_eq!(
            r.outcome,
            LabelsOutcome::HandedOver {
                next_line: 6,
                reinvoked: true
            }
        );
        assert_eq!(
            *w.reinvoke.0.lock().unwrap(),
            [serde_json::json!({"event": up.key})],
            "the continuation carries the event"
        );
        let held = now_or_never(w.jobs.read_job::<LabelProgress>(&acme(), &job))
            .unwrap()
            .unwrap();
        assert_eq!(
            (held.lease_expires_at, held.seq),
            (0, 2),
            "released after two checkpoints"
        );

        // The next invocation takes four more rows and dies holding the lease.
        let r = w.run(&up, &inv);
        assert!(matches!(r.outcome, LabelsOutcome::HandedOver { next_line: 10, .. }));
        let now = Timestamp::now().unix();
        w.jobs.set_lease(&acme(), &job, "crashed", now + 30);

        // With too little time left to outwait the lease, the job is left to its holder.
        let hurried = Invocation {
            deadline: Some(SystemTime::now() + Duration::from_secs(61)),
            ..Invocation::unbounded()
        };
        assert_eq!(w.run(&up, &hurried).outcome, LabelsOutcome::Busy);
        assert!(w.waits.waited.lock().unwrap().is_empty());

        // Otherwise it waits the lease out once, takes over, and resumes at the checkpoint.
        let (jobs, tenant, object) = (w.jobs.clone(), acme(), job.clone());
        *w.waits.then.lock().unwrap() = Some(Box::new(move || jobs.set_lease(&tenant, &object, "crashed", 0)));
        let r = w.run(&up, &Invocation::unbounded());
        let LabelsOutcome::Completed { summary } = r.outcome else {
            panic!("expected completion, got {:?}", r.outcome)
        };
        let waited = w.waits.waited.lock().unwrap().clone();
        assert_eq!(waited.len(), 1);
        assert!(
            waited[0] > Duration::from_secs(25) && waited[0] <= Duration::from_secs(31),
            "{waited:?}"
        );
        assert_eq!(
            w.reading.starts().last(),
            Some(&(text_offset(&text, 10), 10)),
            "ranged resume"
        );
        assert_eq!(summary.counts, want.counts, "the same counts as one clean run");
        assert_eq!(summary.invocations, 3);
        assert_eq!(w.store.terminal_frauds(&acme(), &term("t-1")), want_frauds);
        assert_eq!(
            w.objects.text(BUCKET, &summary.errors_key),
            clean.objects.text(BUCKET, &want.errors_key)
        );
    }

    /// The byte offset of 1-based `line`.
    fn text_offset(text: &str, line: usize) -> u64 {
        text.split_inclusive('\n').take(line - 1).map(str::len).sum::<usize>() as u64
    }

    #[test]
    fn the_uploads_after_a_hand_over_are_left_to_the_continuation_and_other_buckets_skipped() {
        let w = World::new(1);
        let text = twelve(&w);
        let (a, b) = (w.upload("a.csv", &text), w.upload("b.csv", &text));
        let inv = Invocation {
            max_rows: Some(1),
            ..Invocation::unbounded()
        };
        let out = now_or_never(w.applier().apply_event(&[a.clone(), b], &serde_json::json!({}), &inv)).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, a.key);
        let other = UploadedObject {
            bucket: "elsewhere".into(),
            ..a
        };
        assert!(matches!(
            w.run(&other, &Invocation::unbounded()).outcome,
            LabelsOutcome::Skipped { .. }
        ));
    }
}
