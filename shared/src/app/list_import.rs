//! The list importer: an upload to `lists/incoming/<tenant>/<list>.{csv,txt}[.gz]` adds its values
//! to the tenant's existing list (see [`crate::domain::list_upload`] for the file format).
//!
//! Per line, not per request: every line is checked as `POST /v1/lists/{name}/entries` checks an
//! entry ([`check_entry`]); a bad line (a value of the wrong kind, a bad expiry, a note too long)
//! goes to the error report naming its line and field, and the other lines apply. (The API
//! refuses its whole request on one bad value: a request is small and its sender can fix it and
//! resend; a file of 100,000 lines is better applied with its few bad lines listed.)
//!
//! The good lines go in chunks of at most [`MAX_ENTRIES_PER_REQUEST`] through the same
//! [`RulesService::apply_entries`] the API uses, so the list's version, its CONFIG pointer and the
//! audit entries (actor `s3 upload s3://bucket/key`) come from the one path.
//!
//! The cap: a chunk that would take the list past 100,000 entries writes nothing (the store checks
//! it before writing); the chunks before it stay applied and the job ends `failed` with the reason
//! and the first line not applied. It is not refused up front: how many lines are new (rather than
//! updates of values already listed) is only known chunk by chunk.
//!
//! Idempotent and resumable as the label applier ([`crate::app::labels`]): one job per object
//! version ([`JobStore`], keyed by the object and its etag) under a lease; a redelivery of a
//! finished upload answers its stored summary and writes nothing; progress (the next line, the
//! counts, the error chunks) is checkpointed per chunk, and near the deadline the job is released
//! and handed to a continuation ([`Reinvoke`]). A chunk applied but not checkpointed (a crash in
//! between) is applied again on resume: the same entries, its values then counted as updated.
//!
//! Output, outside the trigger prefix: `lists/results/<tenant>/<list>.errors.csv` (line, field,
//! value, reason) and `<list>.summary.json` ([`ListImportSummary`]).

use crate::app::rules::{check_entry, EntryInput, RulesError, RulesService};
use crate::domain::csv_line::CsvLine;
use crate::domain::list_upload::{
    decode, parse_lines, report_line, ImportCounts, ListImportProgress, ListImportSummary, ListTarget, ListUpload,
    MAX_FILE_BYTES, REPORT_HEADER,
};
use crate::domain::objects::UploadedObject;
use crate::domain::rules::MAX_ENTRIES_PER_REQUEST;
use crate::domain::{JobStatus, ObjectRef, Timestamp};
use crate::ports::jobs::{Claim, Job, JobEnd, JobStore, JobType, LeaseOwner, NewJob};
use crate::ports::objects::{FetchedObject, ObjectVersion, ObjectWriter, Objects};
use crate::ports::reinvoke::Reinvoke;
use crate::ports::rules::RulesAdmin;
use crate::ports::{Sleep, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;

pub use crate::app::labels::Invocation;

/// Tuning; the defaults suit a 512 MB function with a 15-minute timeout.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Good lines per chunk: one [`RulesService::apply_entries`] and one checkpoint each.
    pub chunk_rows: usize,
    /// How long a claim lasts without a checkpoint renewing it.
    pub lease_secs: i64,
    /// Hand over when less than this is left before the deadline.
    pub handover_margin: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            chunk_rows: MAX_ENTRIES_PER_REQUEST,
            lease_secs: 60,
            handover_margin: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ImportOutcome {
    Completed {
        summary: ListImportSummary,
    },
    /// Stopped before the file's end (no such list, a bad key or header, the cap): the summary
    /// says why and from which line nothing was applied.
    Failed {
        summary: ListImportSummary,
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

impl ImportOutcome {
    fn finished(summary: ListImportSummary) -> Self {
        if summary.stopped_early.is_some() {
            ImportOutcome::Failed { summary }
        } else {
            ImportOutcome::Completed { summary }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordOutcome {
    pub bucket: String,
    pub key: String,
    pub duplicate: bool,
    #[serde(flatten)]
    pub outcome: ImportOutcome,
}

/// Failures the invocation is retried for; bad input never is one (it is a line in the error
/// report, or a failed summary).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot hand the job over: {0}")]
    Reinvoke(String),
    #[error("cannot encode: {0}")]
    Encode(serde_json::Error),
}

/// The importer over its ports. The rules store and the jobs are usually the same table.
pub struct ListImporter<'a, S, J, O, R, P> {
    pub rules: &'a S,
    pub jobs: &'a J,
    /// The list file, and the reports beside it.
    pub objects: &'a O,
    /// None: a run that must stop early returns `handed_over` and waits for a redelivery.
    pub reinvoke: Option<&'a R>,
    pub sleep: &'a P,
    /// The data bucket; uploads to any other are skipped.
    pub bucket: &'a str,
    pub settings: &'a Settings,
}

impl<S, J, O, R, P> ListImporter<'_, S, J, O, R, P>
where
    S: RulesAdmin,
    J: JobStore,
    O: Objects,
    R: Reinvoke,
    P: Sleep,
{
    /// The uploads of one event in order; after a hand-over the rest are the continuation's
    /// (`continuation` is the event as JSON).
    pub async fn import_event(
        &self,
        uploads: &[UploadedObject],
        continuation: &serde_json::Value,
        inv: &Invocation,
    ) -> Result<Vec<RecordOutcome>, ImportError> {
        let mut out = Vec::with_capacity(uploads.len());
        for up in uploads {
            let r = Box::pin(self.import_upload(up, continuation, inv)).await?;
            let handed_over = matches!(r.outcome, ImportOutcome::HandedOver { .. });
            out.push(r);
            if handed_over {
                break;
            }
        }
        Ok(out)
    }

    /// One upload: claim its job, work it, hand it over or finish it.
    pub async fn import_upload(
        &self,
        up: &UploadedObject,
        continuation: &serde_json::Value,
        inv: &Invocation,
    ) -> Result<RecordOutcome, ImportError> {
        let result = |duplicate, outcome| RecordOutcome {
            bucket: up.bucket.clone(),
            key: up.key.clone(),
            duplicate,
            outcome,
        };
        let skip = |reason: String| {
            tracing::warn!(bucket = %up.bucket, key = %up.key, %reason, "list file skipped");
            Ok(result(false, ImportOutcome::Skipped { reason }))
        };
        if up.bucket != self.bucket {
            return skip(format!(
                "the event is for bucket {:?}, but this function reads lists from {:?}",
                up.bucket, self.bucket
            ));
        }
        // No tenant: nothing can be recorded under one, so it is logged and left.
        let file = match ListUpload::parse(&up.key) {
            Ok(f) => f,
            Err(e) => return skip(e.to_string()),
        };
        let tenant = &file.tenant;
        let job = up.object_ref();
        let lease = self.settings.lease_secs;
        let owner = LeaseOwner::fresh();
        let started_at = Timestamp::now();
        let first = ListImportProgress::default();
        let new = NewJob {
            object: &job,
            job_type: JobType::ListImport,
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
                    job_type: JobType::ListImport,
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
                .deadline
                .map(|d| d.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
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
                tracing::info!(file = %job.uri(), "delivered again: already imported");
                let summary = state.result.as_deref().and_then(|r| serde_json::from_str(r).ok());
                return Ok(match summary {
                    Some(summary) => result(true, ImportOutcome::finished(summary)),
                    None => result(
                        true,
                        ImportOutcome::Skipped {
                            reason: format!("{} was processed before", job.uri()),
                        },
                    ),
                });
            }
            Claim::Busy { .. } => {
                tracing::info!(file = %job.uri(), "another invocation is importing this file");
                return Ok(result(false, ImportOutcome::Busy));
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
        let ImportOutcome::HandedOver { next_line, .. } = outcome else {
            return Ok(result(false, outcome));
        };
        self.jobs.release_job(tenant, &job, &owner).await?;
        let reinvoked = match self.reinvoke {
            Some(r) => {
                r.reinvoke(continuation)
                    .await
                    .map_err(|e| ImportError::Reinvoke(e.to_string()))?;
                true
            }
            None => false,
        };
        tracing::info!(file = %job.uri(), next_line, reinvoked, "handed over");
        Ok(result(false, ImportOutcome::HandedOver { next_line, reinvoked }))
    }
}

/// A chunk's error lines stop being added past this; each line is short (values shortened), so a
/// stored chunk stays far below DynamoDB's 400 KB item limit.
const REPORT_CHUNK_BYTES: usize = 128 * 1024;
/// Bytes of a value shown in the error report (a bad value may be a whole line).
const SHOWN_VALUE_BYTES: usize = 100;

fn shorten(value: &str) -> &str {
    if value.len() <= SHOWN_VALUE_BYTES {
        return value;
    }
    let mut end = SHOWN_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// One claimed job being worked.
struct Run<'r, 'a, S, J, O, R, P> {
    app: &'r ListImporter<'a, S, J, O, R, P>,
    inv: &'r Invocation,
    owner: &'r LeaseOwner,
    file: &'r ListUpload,
    up: &'r UploadedObject,
    job: &'r ObjectRef,
    uri: String,
}

/// Why a job stops before its end, and the first line it did not apply.
struct Stop {
    reason: String,
    next_line: u64,
}

impl<S, J, O, R, P> Run<'_, '_, S, J, O, R, P>
where
    S: RulesAdmin,
    J: JobStore,
    O: Objects,
    R: Reinvoke,
    P: Sleep,
{
    fn actor(&self) -> String {
        format!("s3 upload {}", self.uri_without_etag())
    }

    fn uri_without_etag(&self) -> String {
        format!("s3://{}/{}", self.up.bucket, self.up.key)
    }

    async fn go(&self, state: Job<ListImportProgress>) -> Result<ImportOutcome, ImportError> {
        let mut progress = state.progress.clone().unwrap_or_default();
        let resume_at = progress.next_line;
        let stop = |reason: String, next_line: u64| Some(Stop { reason, next_line });
        let target = match &self.file.target {
            Ok(t) => t.clone(),
            Err(why) => return self.finish(&state, &mut progress, stop(why.clone(), 1)).await,
        };
        let ListTarget { list, gzip } = &target;
        let service = RulesService::new(self.app.rules);
        let meta = match service.list(&self.file.tenant, list).await {
            Ok(m) => m,
            Err(RulesError::NotFound(_)) => {
                let why = format!(
                    "no list \"{list}\" for tenant {}: create it first (POST /v1/lists with its kind), then upload again",
                    self.file.tenant
                );
                return self.finish(&state, &mut progress, stop(why, resume_at)).await;
            }
            Err(RulesError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(StoreError::Unavailable(e.to_string()).into()),
        };
        let version = ObjectVersion {
            version_id: self.up.version_id.as_deref(),
            etag: Some(&self.up.etag),
        };
        let bytes = match self
            .app
            .objects
            .get(&self.up.bucket, &self.up.key, version, MAX_FILE_BYTES)
            .await?
        {
            FetchedObject::Found(o) => o.bytes,
            FetchedObject::Missing => {
                let why = format!(
                    "{}: the object no longer exists or was replaced by a newer upload",
                    self.uri
                );
                return self.finish(&state, &mut progress, stop(why, resume_at)).await;
            }
            FetchedObject::TooLarge { size } => {
                let why = format!(
                    "{}: {size} bytes; a list file is at most {MAX_FILE_BYTES} bytes",
                    self.uri
                );
                return self.finish(&state, &mut progress, stop(why, resume_at)).await;
            }
        };
        let lines = match decode(bytes, *gzip)
            .and_then(|text| parse_lines(&text).map_err(|(line, why)| format!("line {line}: {why}")))
        {
            Ok(l) => l,
            Err(why) => {
                let why = format!("{}: {why}", self.uri);
                return self.finish(&state, &mut progress, stop(why, resume_at)).await;
            }
        };

        let settings = self.app.settings;
        let chunk_rows = settings.chunk_rows.clamp(1, MAX_ENTRIES_PER_REQUEST);
        let actor = self.actor();
        let mut seq = state.seq;
        let mut rows_this_run = 0u64;
        let mut pending = lines.into_iter().filter(|l| l.line >= resume_at).peekable();
        let mut csv = CsvLine::new();
        while pending.peek().is_some() {
            let chunk_start = pending.peek().map_or(resume_at, |l| l.line);
            let now = Timestamp::now();
            let mut report = Vec::new();
            let mut entries = Vec::with_capacity(chunk_rows);
            let mut counts = progress.counts;
            let mut next_line = chunk_start;
            // The report chunk is one table item (at most 400 KB): end the chunk early if it grows.
            while entries.len() < chunk_rows && report.len() < REPORT_CHUNK_BYTES {
                let Some(l) = pending.next() else { break };
                next_line = l.line + 1;
                counts.rows_read += 1;
                let checked = l.row.map_err(|e| vec![(e.field, e.value, e.reason)]).and_then(|row| {
                    let value = row.value.clone();
                    let input = EntryInput {
                        value: row.value,
                        expires_at: row.expires_at,
                        note: row.note,
                    };
                    check_entry(meta.kind, input, &actor, now)
                        .map_err(|bad| bad.into_iter().map(|(f, why)| (Some(f), value.clone(), why)).collect())
                });
                match checked {
                    Ok(entry) => entries.push(entry),
                    Err(bad) => {
                        counts.rejected += 1;
                        for (field, value, why) in bad {
                            report_line(&mut csv, &mut report, l.line, field, shorten(&value), &why);
                        }
                    }
                }
            }
            rows_this_run += entries.len() as u64;
            if !entries.is_empty() {
                // A value repeated within the chunk is written once; its repeats count as updates,
                // as they would in another chunk, so that rows = added + updated + rejected.
                let distinct = entries.iter().map(|e| e.value.as_str()).collect::<HashSet<_>>().len();
                let repeats = (entries.len() - distinct) as u64;
                match service.apply_entries(&self.file.tenant, &actor, list, entries).await {
                    Ok(change) => {
                        counts.added += change.added;
                        counts.updated += change.updated + repeats;
                        counts.list_version = Some(change.version);
                        counts.list_entries = Some(change.entries);
                    }
                    Err(RulesError::Store(e)) => return Err(e.into()),
                    // Over the cap (refused as invalid), or the list deleted meanwhile: this chunk
                    // wrote nothing.
                    Err(e) => {
                        let why = match e {
                            RulesError::Invalid(p) => p.first().map_or(String::new(), |p| p.message.clone()),
                            other => other.to_string(),
                        };
                        let why = format!("{why}; lines {chunk_start} onwards were not applied");
                        return self.finish(&state, &mut progress, stop(why, chunk_start)).await;
                    }
                }
            }
            if !report.is_empty() {
                // A taker-over rewrites this chunk from our last checkpoint: never clobber it.
                if !self.still_ours().await? {
                    return Ok(ImportOutcome::Busy);
                }
                let text = String::from_utf8_lossy(&report);
                self.app
                    .jobs
                    .put_report_chunk(&self.file.tenant, self.job, progress.error_chunks, &text)
                    .await?;
                progress.error_chunks += 1;
            }
            progress.counts = counts;
            progress.next_line = next_line;
            if pending.peek().is_none() {
                break;
            }
            let lease_until = Timestamp::now().unix() + settings.lease_secs;
            let saved = self
                .app
                .jobs
                .checkpoint_job(&self.file.tenant, self.job, self.owner, seq, &progress, lease_until)
                .await?;
            seq += 1;
            if !saved {
                tracing::warn!(file = %self.uri, "the job's lease was taken over; stopping");
                return Ok(ImportOutcome::Busy);
            }
            let out_of_rows = self.inv.max_rows.is_some_and(|m| rows_this_run >= m);
            let out_of_time = self.inv.deadline.is_some_and(|d| {
                d.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO) < settings.handover_margin
            });
            if out_of_rows || out_of_time {
                return Ok(ImportOutcome::HandedOver {
                    next_line: progress.next_line,
                    reinvoked: false,
                });
            }
        }
        self.finish(&state, &mut progress, None).await
    }

    /// Renews the lease before an output is written: `false` once another invocation took it
    /// over (it resumes from our last checkpoint and writes the outputs itself).
    async fn still_ours(&self) -> Result<bool, ImportError> {
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

    /// Writes the error report and the summary, and closes the job.
    async fn finish(
        &self,
        state: &Job<ListImportProgress>,
        progress: &mut ListImportProgress,
        stop: Option<Stop>,
    ) -> Result<ImportOutcome, ImportError> {
        let tenant = &self.file.tenant;
        let jobs = self.app.jobs;
        let objects = self.app.objects;
        if !self.still_ours().await? {
            return Ok(ImportOutcome::Busy);
        }
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
        let counts: ImportCounts = progress.counts;
        let summary = ListImportSummary {
            file: self.uri_without_etag(),
            etag: self.up.etag.clone(),
            tenant: tenant.to_string(),
            list: self.file.target.as_ref().ok().map(|t| t.list.to_string()),
            counts,
            errors_key,
            stopped_early: stop.as_ref().map(|s| s.reason.clone()),
            next_line: stop.as_ref().map(|s| s.next_line),
            invocations: state.invocations,
            started_at: state.started_at.to_rfc3339(),
            completed_at: Timestamp::now().to_rfc3339(),
        };
        let json = serde_json::to_string_pretty(&summary).map_err(ImportError::Encode)?;
        // Rebuilding a long report takes time: confirm again before the summary.
        if !self.still_ours().await? {
            return Ok(ImportOutcome::Busy);
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
        let end = match &stop {
            Some(s) => JobEnd::Failed {
                error: s.reason.clone(),
                result: Some(json),
            },
            None => JobEnd::Completed { result: Some(json) },
        };
        let closed = jobs
            .finish_job(tenant, self.job, self.owner, &end, Some(&*progress), Timestamp::now())
            .await?;
        if !closed {
            return Ok(ImportOutcome::Busy);
        }
        tracing::info!(
            file = %self.uri,
            rows_read = counts.rows_read,
            added = counts.added,
            updated = counts.updated,
            rejected = counts.rejected,
            stopped_early = summary.stopped_early.as_deref().unwrap_or(""),
            "list file imported"
        );
        Ok(ImportOutcome::finished(summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rules::ListKind;
    use crate::domain::{ListName, TenantId};
    use crate::ports::in_memory::{InMemoryDecisions, InMemoryJobs, InMemoryObjects};
    use crate::ports::reinvoke::ReinvokeError;
    use std::future::Future;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};
    use std::time::SystemTime;

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

    #[derive(Default)]
    struct Waits(Mutex<Vec<Duration>>);

    impl Sleep for Waits {
        async fn sleep(&self, d: Duration) {
            self.0.lock().unwrap().push(d);
        }
    }

    #[derive(Default)]
    struct World {
        rules: InMemoryDecisions,
        jobs: InMemoryJobs,
        objects: InMemoryObjects,
        reinvoke: Continuations,
        waits: Waits,
        settings: Settings,
    }

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn name(n: &str) -> ListName {
        ListName::parse(n).unwrap()
    }

    impl World {
        fn with_list(n: &str, kind: ListKind, chunk_rows: usize) -> Self {
            let w = World {
                settings: Settings {
                    chunk_rows,
                    ..Settings::default()
                },
                ..World::default()
            };
            now_or_never(RulesService::new(&w.rules).create_list(&acme(), "vk", name(n), kind, String::new())).unwrap();
            w
        }

        fn upload(&self, file: &str, text: &str) -> UploadedObject {
            let key = format!("lists/incoming/acme/{file}");
            let etag = self.objects.upload(BUCKET, &key, text.as_bytes(), &[]);
            UploadedObject {
                bucket: BUCKET.into(),
                key,
                etag,
                size: Some(text.len() as u64),
                version_id: None,
            }
        }

        fn run(&self, up: &UploadedObject, inv: &Invocation) -> RecordOutcome {
            let importer = ListImporter {
                rules: &self.rules,
                jobs: &self.jobs,
                objects: &self.objects,
                reinvoke: Some(&self.reinvoke),
                sleep: &self.waits,
                bucket: BUCKET,
                settings: &self.settings,
            };
            now_or_never(importer.import_upload(up, &serde_json::json!({"event": up.key}), inv)).unwrap()
        }
    }

    #[test]
    fn a_hand_over_queues_the_event_and_the_next_run_resumes_at_the_checkpoint() {
        let w = World::with_list("ips", ListKind::Ip, 2);
        let up = w.upload("ips.txt", "10.0.0.1\n10.0.0.2\n10.0.0.300\n10.0.0.3\n10.0.0.4\n");
        let inv = Invocation {
            max_rows: Some(1),
            ..Invocation::unbounded()
        };
        let r = w.run(&up, &inv);
        assert_eq!(
            r.outcome,
            ImportOutcome::HandedOver {
                next_line: 3,
                reinvoked: true
            }
        );
        assert_eq!(*w.reinvoke.0.lock().unwrap(), [serde_json::json!({"event": up.key})]);
        let ImportOutcome::Completed { summary } = w.run(&up, &Invocation::unbounded()).outcome else {
            panic!("not completed");
        };
        assert_eq!(
            (summary.counts.added, summary.counts.rejected, summary.invocations),
            (4, 1, 2)
        );
        assert_eq!(
            w.objects.text(BUCKET, "lists/results/acme/ips.errors.csv").unwrap(),
            "line,field,value,reason\n3,value,\"10.0.0.300\",\"\\\"10.0.0.300\\\" is not an IP address or CIDR range\"\n"
                .replace("\\\"", "\"\""),
        );
    }

    #[test]
    fn a_job_held_by_another_invocation_is_left_to_it_when_time_is_short() {
        let w = World::with_list("ips", ListKind::Ip, 1000);
        let up = w.upload("ips.csv", "10.0.0.1\n");
        // Another invocation created the job and holds it for 30 s more.
        let started = Timestamp::now();
        let owner = LeaseOwner::fresh();
        let progress = ListImportProgress::default();
        let job = up.object_ref();
        assert!(now_or_never(w.jobs.create_job(
            &acme(),
            &NewJob {
                object: &job,
                job_type: JobType::ListImport,
                size: up.size,
                owner: &owner,
                lease_expires_at: started.unix() + 30,
                started_at: started,
                progress: &progress,
            }
        ))
        .unwrap());
        let hurried = Invocation {
            deadline: Some(SystemTime::now() + Duration::from_secs(61)),
            ..Invocation::unbounded()
        };
        assert_eq!(w.run(&up, &hurried).outcome, ImportOutcome::Busy);
        assert!(w.waits.0.lock().unwrap().is_empty(), "no wait without the time for it");
        assert_eq!(
            now_or_never(w.rules.list_meta(&acme(), &name("ips")))
                .unwrap()
                .unwrap()
                .entries,
            0
        );
    }

    #[test]
    fn a_line_is_refused_for_what_the_api_refuses_an_entry_for() {
        let w = World::with_list("emails", ListKind::Email, 1000);
        let note = "n".repeat(1025);
        let text = format!("Ok@Example.com\nnot-an-email\nz@y.io,,{note}\n");
        let api = now_or_never(RulesService::new(&w.rules).add_entries(
            &acme(),
            "vk",
            &name("emails"),
            vec![
                EntryInput {
                    value: "not-an-email".into(),
                    expires_at: None,
                    note: None,
                },
                EntryInput {
                    value: "z@y.io".into(),
                    expires_at: None,
                    note: Some(note.clone()),
                },
            ],
        ));
        let Err(RulesError::Invalid(problems)) = api else {
            panic!("the API accepted it: {api:?}");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["entries[0].value", "entries[1].note"]);
        let up = w.upload("emails.csv", &text);
        let ImportOutcome::Completed { summary } = w.run(&up, &Invocation::unbounded()).outcome else {
            panic!("not completed");
        };
        assert_eq!((summary.counts.added, summary.counts.rejected), (1, 2));
        let report = w.objects.text(BUCKET, "lists/results/acme/emails.errors.csv").unwrap();
        let lines: Vec<&str> = report.lines().collect();
        assert!(
            lines[1].starts_with("2,value,") && lines[1].contains(&problems[0].message.replace('"', "\"\"")),
            "{report}"
        );
        assert!(
            lines[2].starts_with("3,note,") && lines[2].contains(&problems[1].message),
            "{report}"
        );
        let other = UploadedObject {
            bucket: "elsewhere".into(),
            ..up
        };
        assert!(matches!(
            w.run(&other, &Invocation::unbounded()).outcome,
            ImportOutcome::Skipped { .. }
        ));
    }

    #[test]
    fn a_file_of_bad_lines_keeps_each_stored_report_chunk_well_below_an_items_size() {
        let w = World::with_list("bins", ListKind::Bin, 1000);
        let long = "x".repeat(300);
        let text: String = (0..3000).map(|i| format!("{i}{long}\n")).collect();
        let up = w.upload("bins.csv", &text);
        let ImportOutcome::Completed { summary } = w.run(&up, &Invocation::unbounded()).outcome else {
            panic!("not completed");
        };
        assert_eq!((summary.counts.rejected, summary.counts.added), (3000, 0));
        // An ended job's progress is not read back: walk its stored chunks.
        let mut seq = 0;
        while let Some(text) = now_or_never(w.jobs.report_chunk(&acme(), &up.object_ref(), seq)).unwrap() {
            assert!(text.len() < 150 * 1024, "chunk {seq} is {} bytes", text.len());
            seq += 1;
        }
        assert!(seq > 1, "{seq} chunk(s)");
        let report = w.objects.text(BUCKET, "lists/results/acme/bins.errors.csv").unwrap();
        assert_eq!(report.lines().count(), 3001);
    }
}
