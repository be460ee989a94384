//! The backtest service: replays a ruleset (typically a draft) over the stored decisions of a
//! time window, each with the inputs, features and score it was decided on and its label, beside
//! the active ruleset on the same inputs. Reads only: nothing is written to decisions, aggregates
//! or anything else.

use crate::domain::backtest::{replay_inputs, Backtest, BacktestReport, Case};
use crate::domain::labels::LabelValue;
use crate::domain::rules::engine::CompiledRuleset;
use crate::domain::rules::lists::ListIndex;
use crate::domain::{ListName, TenantId, Timestamp};
use crate::ports::rules::{RulesRead, TenantPolicyRead};
use crate::ports::{DecisionWindow, StoreError};
use std::collections::HashMap;
use std::sync::Arc;

/// Decisions one inline backtest may replay; a larger window is refused with this figure named.
pub const MAX_INLINE_DECISIONS: usize = 20_000;
/// Longest window, so a typo in a year cannot walk decades of empty day partitions.
pub const MAX_WINDOW_DAYS: i64 = 92;
/// Decisions read per page.
const PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    /// The window holds more decisions than an inline backtest replays.
    #[error(
        "the window holds more than {limit} decisions; narrow it (from/to) or run `verdict backtest` over an export"
    )]
    TooLarge { limit: usize },
    /// A stored ruleset that no longer compiles.
    #[error("{0}")]
    Unusable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The half-open window `[from, to)` of occurrence times.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Window {
    pub fn new(from: Timestamp, to: Timestamp) -> Result<Window, BacktestError> {
        if to <= from {
            return Err(BacktestError::Invalid {
                field: "to",
                message: format!("{to} is not after from ({from})"),
            });
        }
        if to.unix() - from.unix() > MAX_WINDOW_DAYS * 86_400 {
            return Err(BacktestError::Invalid {
                field: "to",
                message: format!("the window is longer than {MAX_WINDOW_DAYS} days"),
            });
        }
        Ok(Window { from, to })
    }
}

/// Replays ruleset `version` of `tenant` over `window`, with at most `limit` decisions.
pub async fn backtest<S: RulesRead + TenantPolicyRead + DecisionWindow>(
    store: &S,
    tenant: &TenantId,
    version: u32,
    window: Window,
    limit: usize,
) -> Result<BacktestReport, BacktestError> {
    let ruleset = match store.ruleset(tenant, version).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(BacktestError::NotFound(format!("No ruleset version {version}."))),
        Err(StoreError::Corrupt { key, reason }) => {
            return Err(BacktestError::Unusable(format!(
                "Ruleset {version} is unreadable ({key}: {reason})."
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let unusable = |v: u32, p: Vec<crate::domain::rules::RuleProblem>| {
        BacktestError::Unusable(format!(
            "Ruleset {v} does not compile: {}",
            p.first().map_or(String::new(), |p| p.message.clone())
        ))
    };
    let draft = CompiledRuleset::compile(&ruleset).map_err(|p| unusable(version, p))?;
    let policy = store.tenant_policy(tenant).await?;
    let baseline = match policy.rules.active_ruleset {
        Some(v) => match store.ruleset(tenant, v).await {
            Ok(Some(a)) => Some(CompiledRuleset::compile(&a).map_err(|p| unusable(v, p))?),
            Ok(None) => None,
            Err(StoreError::Corrupt { key, reason }) => {
                return Err(BacktestError::Unusable(format!(
                    "The active ruleset {v} is unreadable ({key}: {reason})."
                )))
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let mut lists: HashMap<ListName, Arc<ListIndex>> = HashMap::new();
    for name in draft
        .lists()
        .iter()
        .chain(baseline.iter().flat_map(|b| b.lists().iter()))
    {
        if lists.contains_key(name) {
            continue;
        }
        match store.list_contents(tenant, name).await {
            Ok(Some(contents)) => {
                lists.insert(
                    name.clone(),
                    Arc::new(ListIndex::build(contents.meta.kind, &contents.entries)),
                );
            }
            Ok(None) => {}
            // As in scoring: the rules using an unreadable list are errors.
            Err(StoreError::Corrupt { key, reason }) => {
                tracing::error!(tenant = %tenant, list = %name, key, reason, "a list is unreadable: rules using it are errors");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let thresholds = policy.thresholds.unwrap_or_default();
    let mut run =
        Backtest::new(&ruleset, &draft, baseline.as_ref(), thresholds, &lists).map_err(BacktestError::Unusable)?;
    let mut cursor: Option<String> = None;
    let mut replayed = 0usize;
    loop {
        let page = store
            .decisions_between(tenant, window.from, window.to, PAGE, cursor.as_deref())
            .await?;
        for record in &page.items {
            replayed += 1;
            if replayed > limit {
                return Err(BacktestError::TooLarge { limit });
            }
            match replay_inputs(record) {
                Ok((request, features)) => {
                    let tx = request.transaction();
                    run.push(&Case {
                        transaction: &tx,
                        extras: &request.extras,
                        features: &features,
                        score: record.score,
                        model_version: &record.model.version,
                        fraud: record.label.as_ref().map(|l| l.value == LabelValue::Fraud),
                    });
                }
                Err(why) => {
                    tracing::warn!(tenant = %tenant, id = %record.id, why, "a decision the backtest cannot replay");
                    run.skip();
                }
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(run.report())
}

// ---------------------------------------------------------------------------------------------
// The job path: a window too large to answer inline is replayed by the backtest function.
//
// The api writes a request object `backtests/incoming/<tenant>/<id>.json`; its ObjectCreated
// event starts the function, which takes the job of that object version through [`JobStore`]
// (a redelivered event finds it ended and does nothing), replays with [`MAX_JOB_DECISIONS`] and
// writes `backtests/results/<tenant>/<id>.json` (a report or a failure) before ending the job.
// The tenant is in both keys, so a reader given its own tenant never reads another's.

use crate::domain::objects::UploadedObject;
use crate::domain::{JobStatus, ObjectRef};
use crate::ports::jobs::{Claim, JobEnd, JobStore, JobType, LeaseOwner, NewJob};
use crate::ports::objects::{FetchedObject, ObjectVersion, Objects};
use serde::{Deserialize, Serialize};

/// Decisions one job replays. The replay keeps counters, not decisions, so memory is flat; the
/// bound is time: at one DynamoDB Query page (≤ 1 MB, ~500 decisions) per ~20 ms, a 15-minute
/// run reads well over 2 million (see the README's backtest figures).
pub const MAX_JOB_DECISIONS: usize = 2_000_000;
/// Where the api puts job requests (the function's S3 trigger prefix).
pub const INCOMING_PREFIX: &str = "backtests/incoming/";
/// Where the function puts results.
pub const RESULTS_PREFIX: &str = "backtests/results/";
/// Longer than the function's 900 s timeout: one run holds the lease to its end, and a lease
/// left by a crashed run frees itself after that.
const JOB_LEASE_SECS: i64 = 960;
/// A request object is a few hundred bytes.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// A report is per rule (at most a few hundred rules).
const MAX_RESULT_BYTES: u64 = 16 << 20;

/// A backtest job's id: milliseconds since the epoch (13 digits, so ids sort by time) and 64
/// random bits, lower-case hex. URL- and key-safe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BacktestId(String);

impl BacktestId {
    pub fn generate() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        BacktestId(format!("bt{millis:013}{:016x}", rand::random::<u64>()))
    }

    /// `None` for anything [`BacktestId::generate`] cannot have made (so no id reaches a key
    /// with a `/` or `..` in it).
    pub fn parse(raw: &str) -> Option<Self> {
        let digits = raw.strip_prefix("bt")?;
        (digits.len() == 29 && digits.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| BacktestId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BacktestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn request_key(tenant: &TenantId, id: &BacktestId) -> String {
    format!("{INCOMING_PREFIX}{}/{id}.json", tenant.as_str())
}

pub fn result_key(tenant: &TenantId, id: &BacktestId) -> String {
    format!("{RESULTS_PREFIX}{}/{id}.json", tenant.as_str())
}

/// The tenant and id a request key names; `None` for any other key.
pub fn parse_request_key(key: &str) -> Option<(TenantId, BacktestId)> {
    let (tenant, file) = key.strip_prefix(INCOMING_PREFIX)?.split_once('/')?;
    let id = BacktestId::parse(file.strip_suffix(".json")?)?;
    Some((TenantId::parse(tenant).ok()?, id))
}

/// The request object: what to replay, and who asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    pub version: u32,
    pub from: Timestamp,
    pub to: Timestamp,
    /// The key id.
    pub requested_by: String,
    pub requested_at: Timestamp,
}

/// The result object, as written and as `GET /v1/backtests/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BacktestResult<'a> {
    Completed {
        version: u32,
        from: Timestamp,
        to: Timestamp,
        finished_at: Timestamp,
        report: &'a BacktestReport,
    },
    Failed {
        error: String,
        finished_at: Timestamp,
    },
}

/// Where a job is, as `GET /v1/backtests/{id}` answers.
#[derive(Debug, Clone, PartialEq)]
pub enum BacktestState {
    /// The result object (a completed report or a failure), as JSON.
    Finished(serde_json::Value),
    /// Requested; the function has not taken it yet.
    Queued,
    Running {
        started_at: Timestamp,
    },
    /// Ended failed without a result object (it could not be written).
    Failed {
        error: String,
    },
}

/// A job's progress: a run is one step, so there is none; an empty map in the job item.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct NoProgress {}

/// Failures the event is retried for; bad input is never one (it ends the job failed).
#[derive(Debug, thiserror::Error)]
pub enum BacktestJobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode the result: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What one request object came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum BacktestJobOutcome {
    Completed {
        id: String,
        decisions: u64,
    },
    Failed {
        id: String,
        error: String,
    },
    /// The job had ended before (a redelivered event): nothing ran.
    Duplicate {
        id: String,
    },
    /// Another invocation holds the job.
    Busy {
        id: String,
    },
    Skipped {
        reason: String,
    },
}

/// Writes the request object; the function's S3 trigger takes it from there.
pub async fn start_job<O: Objects>(
    objects: &O,
    bucket: &str,
    tenant: &TenantId,
    request: &BacktestRequest,
) -> Result<BacktestId, BacktestJobError> {
    let id = BacktestId::generate();
    let body = serde_json::to_vec(request)?;
    objects
        .put(bucket, &request_key(tenant, &id), body, "application/json", &[])
        .await?;
    Ok(id)
}

/// The job's result if written, else its state; `None` when `tenant` never requested `id`.
pub async fn job_state<O: Objects, J: JobStore>(
    objects: &O,
    jobs: &J,
    bucket: &str,
    tenant: &TenantId,
    id: &BacktestId,
) -> Result<Option<BacktestState>, BacktestJobError> {
    let key = result_key(tenant, id);
    match objects
        .get(bucket, &key, ObjectVersion::LATEST, MAX_RESULT_BYTES)
        .await?
    {
        FetchedObject::Found(o) => {
            let value = serde_json::from_slice(&o.bytes).map_err(|e| StoreError::Corrupt {
                key: format!("s3://{bucket}/{key}"),
                reason: e.to_string(),
            })?;
            return Ok(Some(BacktestState::Finished(value)));
        }
        FetchedObject::TooLarge { size } => {
            return Err(StoreError::Corrupt {
                key: format!("s3://{bucket}/{key}"),
                reason: format!("{size} bytes is larger than a result can be"),
            }
            .into())
        }
        FetchedObject::Missing => {}
    }
    let Some(head) = objects.head(bucket, &request_key(tenant, id)).await? else {
        return Ok(None);
    };
    let job = ObjectRef::new(bucket, request_key(tenant, id), &head.etag);
    Ok(Some(match jobs.read_job::<NoProgress>(tenant, &job).await? {
        None => BacktestState::Queued,
        Some(j) => match j.status {
            JobStatus::Failed => BacktestState::Failed {
                error: j.error.unwrap_or_default(),
            },
            // A run that died holds its lease until it runs out; nothing resumes it after that.
            JobStatus::Running if j.lease_expires_at < Timestamp::now().unix() => BacktestState::Failed {
                error: "the run stopped before it finished (its lease ran out); start the backtest again".into(),
            },
            // Completed without a result visible yet: still finishing, as far as a reader knows.
            JobStatus::Running | JobStatus::Completed => BacktestState::Running {
                started_at: j.started_at,
            },
        },
    }))
}

/// The backtest function over its ports: one request object per call.
pub struct BacktestJobs<'a, S, J, O> {
    pub store: &'a S,
    pub jobs: &'a J,
    pub objects: &'a O,
    /// The data bucket; events from any other are skipped.
    pub bucket: &'a str,
    /// Decisions one job replays at most ([`MAX_JOB_DECISIONS`]).
    pub limit: usize,
}

impl<S, J, O> BacktestJobs<'_, S, J, O>
where
    S: RulesRead + TenantPolicyRead + DecisionWindow,
    J: JobStore,
    O: Objects,
{
    /// Takes the job of `up`, replays it, writes the result, ends the job.
    pub async fn run(&self, up: &UploadedObject) -> Result<BacktestJobOutcome, BacktestJobError> {
        let skip = |reason: String| {
            tracing::warn!(bucket = %up.bucket, key = %up.key, %reason, "backtest request skipped");
            Ok(BacktestJobOutcome::Skipped { reason })
        };
        if up.bucket != self.bucket {
            return skip(format!(
                "the event is for bucket {:?}, but backtests are requested in {:?}",
                up.bucket, self.bucket
            ));
        }
        let Some((tenant, id)) = parse_request_key(&up.key) else {
            return skip(format!(
                "{:?} is not {INCOMING_PREFIX}<tenant>/<backtest id>.json",
                up.key
            ));
        };
        let job = up.object_ref();
        let owner = LeaseOwner::fresh();
        let started_at = Timestamp::now();
        let new = NewJob {
            object: &job,
            job_type: JobType::Backtest,
            size: up.size,
            owner: &owner,
            lease_expires_at: started_at.unix() + JOB_LEASE_SECS,
            started_at,
            progress: &NoProgress {},
        };
        if !self.jobs.create_job(&tenant, &new).await? {
            let now = Timestamp::now().unix();
            match self
                .jobs
                .claim_job::<NoProgress>(&tenant, &job, &owner, now + JOB_LEASE_SECS, now)
                .await?
            {
                Claim::Claimed(_) => {}
                Claim::Ended(_) => {
                    tracing::info!(job = %job.uri(), "delivered again: the backtest ran before");
                    return Ok(BacktestJobOutcome::Duplicate { id: id.to_string() });
                }
                Claim::Busy { .. } => {
                    tracing::info!(job = %job.uri(), "another invocation runs this backtest");
                    return Ok(BacktestJobOutcome::Busy { id: id.to_string() });
                }
                Claim::Missing => {
                    return Err(StoreError::Corrupt {
                        key: job.uri(),
                        reason: "the job item vanished while being claimed".into(),
                    }
                    .into())
                }
            }
        }
        match self.work(up, &tenant, &id, &job, &owner).await {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                // Let the retry take over at once.
                let _ = self.jobs.release_job(&tenant, &job, &owner).await;
                Err(e)
            }
        }
    }

    async fn work(
        &self,
        up: &UploadedObject,
        tenant: &TenantId,
        id: &BacktestId,
        job: &ObjectRef,
        owner: &LeaseOwner,
    ) -> Result<BacktestJobOutcome, BacktestJobError> {
        let version = ObjectVersion {
            version_id: up.version_id.as_deref(),
            etag: up.etag(),
        };
        let request = match self
            .objects
            .get(self.bucket, &up.key, version, MAX_REQUEST_BYTES)
            .await?
        {
            FetchedObject::Found(o) => serde_json::from_slice::<BacktestRequest>(&o.bytes)
                .map_err(|e| format!("the request object is not a backtest request: {e}")),
            FetchedObject::Missing => Err("the request object is gone (or was replaced)".to_owned()),
            FetchedObject::TooLarge { size } => Err(format!("the request object is {size} bytes")),
        };
        let replayed = match request {
            Ok(r) => {
                let run = match Window::new(r.from, r.to) {
                    Ok(w) => backtest(self.store, tenant, r.version, w, self.limit).await,
                    Err(e) => Err(e),
                };
                match run {
                    Ok(report) => Ok((r, report)),
                    Err(BacktestError::Store(e)) => return Err(e.into()),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(why) => Err(why),
        };
        let finished_at = Timestamp::now();
        let (body, end, outcome) = match &replayed {
            Ok((r, report)) => {
                let body = serde_json::to_vec(&BacktestResult::Completed {
                    version: r.version,
                    from: r.from,
                    to: r.to,
                    finished_at,
                    report,
                })?;
                let decisions = report.decisions;
                let summary = serde_json::json!({"decisions": decisions}).to_string();
                (
                    body,
                    JobEnd::Completed { result: Some(summary) },
                    BacktestJobOutcome::Completed {
                        id: id.to_string(),
                        decisions,
                    },
                )
            }
            Err(error) => {
                tracing::warn!(job = %job.uri(), %error, "backtest failed");
                let body = serde_json::to_vec(&BacktestResult::Failed {
                    error: error.clone(),
                    finished_at,
                })?;
                (
                    body,
                    JobEnd::Failed {
                        error: error.clone(),
                        result: None,
                    },
                    BacktestJobOutcome::Failed {
                        id: id.to_string(),
                        error: error.clone(),
                    },
                )
            }
        };
        // The result first: a run that dies between the two is redone, with the same result.
        self.objects
            .put(self.bucket, &result_key(tenant, id), body, "application/json", &[])
            .await?;
        if !self
            .jobs
            .finish_job(tenant, job, owner, &end, None::<&NoProgress>, finished_at)
            .await?
        {
            tracing::warn!(job = %job.uri(), "the lease was lost before the job ended");
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod job_tests {
    use super::*;
    use crate::domain::rules::{AuditEntry, MatchMode, Ruleset, RulesetStatus};
    use crate::ports::in_memory::{block_on as run, InMemoryDecisions, InMemoryJobs, InMemoryObjects};
    use crate::ports::rules::RulesAdmin;

    const BUCKET: &str = "data";

    struct Fakes {
        store: InMemoryDecisions,
        jobs: InMemoryJobs,
        objects: InMemoryObjects,
    }

    impl Fakes {
        fn new() -> Self {
            Fakes {
                store: InMemoryDecisions::default(),
                jobs: InMemoryJobs::default(),
                objects: InMemoryObjects::default(),
            }
        }

        fn service(&self) -> BacktestJobs<'_, InMemoryDecisions, InMemoryJobs, InMemoryObjects> {
            BacktestJobs {
                store: &self.store,
                jobs: &self.jobs,
                objects: &self.objects,
                bucket: BUCKET,
                limit: MAX_JOB_DECISIONS,
            }
        }

        fn empty_ruleset(&self, tenant: &TenantId, version: u32) {
            let at = Timestamp::parse("t", "2018-08-01T00:00:00Z").unwrap();
            let ruleset = Ruleset {
                version,
                status: RulesetStatus::Draft,
                mode: MatchMode::default(),
                description: String::new(),
                rules: vec![],
                created_by: "k".into(),
                created_at: at,
                published_by: None,
                published_at: None,
            };
            let audit = AuditEntry {
                at,
                actor: "k".into(),
                action: "ruleset.create".into(),
                target: format!("ruleset:{version}"),
                detail: String::new(),
            };
            run(self.store.put_ruleset(tenant, &ruleset, &audit)).unwrap();
        }

        /// Writes the request as the api does and returns the event's object.
        fn request(&self, tenant: &TenantId, version: u32) -> (BacktestId, UploadedObject) {
            let request = BacktestRequest {
                version,
                from: Timestamp::parse("t", "2018-08-08T00:00:00Z").unwrap(),
                to: Timestamp::parse("t", "2018-08-09T00:00:00Z").unwrap(),
                requested_by: "k".into(),
                requested_at: Timestamp::now(),
            };
            let id = run(start_job(&self.objects, BUCKET, tenant, &request)).unwrap();
            (id.clone(), self.uploaded(&request_key(tenant, &id)))
        }

        fn uploaded(&self, key: &str) -> UploadedObject {
            let head = run(self.objects.head(BUCKET, key)).unwrap().unwrap();
            UploadedObject {
                bucket: BUCKET.into(),
                key: key.into(),
                etag: head.etag,
                size: Some(head.size),
                version_id: None,
            }
        }

        fn state(&self, tenant: &TenantId, id: &BacktestId) -> Option<BacktestState> {
            run(job_state(&self.objects, &self.jobs, BUCKET, tenant, id)).unwrap()
        }
    }

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    #[test]
    fn ids_sort_by_time_and_only_generated_ones_parse() {
        let (a, b) = (BacktestId::generate(), BacktestId::generate());
        assert_eq!(BacktestId::parse(a.as_str()), Some(a.clone()));
        assert!(a.as_str()[..15] <= b.as_str()[..15]);
        for bad in [
            "",
            "bt",
            "bt../../x",
            "BT0000000000000000000000000000",
            &format!("{a}x"),
        ] {
            assert_eq!(BacktestId::parse(bad), None, "{bad:?}");
        }
        let acme = tenant("acme");
        assert_eq!(
            parse_request_key(&request_key(&acme, &a)),
            Some((acme.clone(), a.clone()))
        );
        assert_eq!(parse_request_key(&result_key(&acme, &a)), None);
        assert_eq!(parse_request_key(&format!("{INCOMING_PREFIX}acme/../x.json")), None);
    }

    #[test]
    fn a_job_is_queued_then_finished_and_a_redelivery_runs_nothing() {
        let f = Fakes::new();
        let acme = tenant("acme");
        f.empty_ruleset(&acme, 1);
        let (id, up) = f.request(&acme, 1);
        assert_eq!(f.state(&acme, &id), Some(BacktestState::Queued));

        let out = run(f.service().run(&up)).unwrap();
        assert_eq!(
            out,
            BacktestJobOutcome::Completed {
                id: id.to_string(),
                decisions: 0
            }
        );
        let Some(BacktestState::Finished(result)) = f.state(&acme, &id) else {
            panic!("no result")
        };
        assert_eq!(result["status"], "completed", "{result}");
        assert_eq!(result["report"]["decisions"], 0, "{result}");
        assert_eq!(result["version"], 1, "{result}");

        // The same event again: the ended job is a no-op, the result stays.
        let written = f.objects.object(BUCKET, &result_key(&acme, &id));
        run(f.objects.delete(BUCKET, &result_key(&acme, &id))).unwrap();
        assert_eq!(
            run(f.service().run(&up)).unwrap(),
            BacktestJobOutcome::Duplicate { id: id.to_string() }
        );
        assert_eq!(f.objects.object(BUCKET, &result_key(&acme, &id)), None, "ran again");
        assert!(written.is_some());
    }

    #[test]
    fn a_missing_ruleset_ends_the_job_failed_with_the_reason() {
        let f = Fakes::new();
        let acme = tenant("acme");
        let (id, up) = f.request(&acme, 7);
        let out = run(f.service().run(&up)).unwrap();
        assert!(
            matches!(&out, BacktestJobOutcome::Failed { error, .. } if error.contains("No ruleset version 7")),
            "{out:?}"
        );
        let Some(BacktestState::Finished(result)) = f.state(&acme, &id) else {
            panic!("no result")
        };
        assert_eq!(result["status"], "failed", "{result}");
        assert!(
            result["error"].as_str().unwrap().contains("No ruleset version 7"),
            "{result}"
        );
        let job = run(f.jobs.read_job::<NoProgress>(&acme, &up.object_ref()))
            .unwrap()
            .unwrap();
        assert_eq!(job.status, JobStatus::Failed);
    }

    #[test]
    fn a_request_that_is_not_one_ends_failed_and_other_keys_and_buckets_are_skipped() {
        let f = Fakes::new();
        let acme = tenant("acme");
        let id = BacktestId::generate();
        let key = request_key(&acme, &id);
        f.objects.upload(BUCKET, &key, b"{\"version\": \"one\"}", &[]);
        let out = run(f.service().run(&f.uploaded(&key))).unwrap();
        assert!(matches!(out, BacktestJobOutcome::Failed { .. }), "{out:?}");
        assert!(matches!(f.state(&acme, &id), Some(BacktestState::Finished(r)) if r["status"] == "failed"));

        f.objects.upload(BUCKET, "backtests/incoming/acme/notes.txt", b"x", &[]);
        let out = run(f.service().run(&f.uploaded("backtests/incoming/acme/notes.txt"))).unwrap();
        assert!(matches!(out, BacktestJobOutcome::Skipped { .. }), "{out:?}");
        let mut elsewhere = f.uploaded(&key);
        elsewhere.bucket = "other".into();
        let out = run(f.service().run(&elsewhere)).unwrap();
        assert!(matches!(out, BacktestJobOutcome::Skipped { .. }), "{out:?}");
    }

    #[test]
    fn another_tenant_never_sees_a_job() {
        let f = Fakes::new();
        let (acme, other) = (tenant("acme"), tenant("globex"));
        f.empty_ruleset(&acme, 1);
        let (id, up) = f.request(&acme, 1);
        assert_eq!(f.state(&other, &id), None);
        run(f.service().run(&up)).unwrap();
        assert_eq!(f.state(&other, &id), None);
        assert_eq!(f.state(&acme, &BacktestId::generate()), None);
    }

    #[test]
    fn a_running_job_shows_as_running_and_a_second_event_meanwhile_is_busy() {
        let f = Fakes::new();
        let acme = tenant("acme");
        f.empty_ruleset(&acme, 1);
        let (id, up) = f.request(&acme, 1);
        let owner = LeaseOwner::fresh();
        let started_at = Timestamp::now();
        let new = NewJob {
            object: &up.object_ref(),
            job_type: JobType::Backtest,
            size: None,
            owner: &owner,
            lease_expires_at: started_at.unix() + 600,
            started_at,
            progress: &NoProgress {},
        };
        assert!(run(f.jobs.create_job(&acme, &new)).unwrap());
        assert!(matches!(f.state(&acme, &id), Some(BacktestState::Running { .. })));
        assert_eq!(
            run(f.service().run(&up)).unwrap(),
            BacktestJobOutcome::Busy { id: id.to_string() }
        );
        assert_eq!(f.objects.object(BUCKET, &result_key(&acme, &id)), None);
    }
}
