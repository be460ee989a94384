//! The runner's lease state machine over in-memory ports: hand-overs, a live holder, a dead
//! holder's expired lease, completion, redelivery.

use super::*;
use crate::domain::batch::Counts;
use crate::domain::model::stump_artifact;
use crate::ports::in_memory::{InMemoryJobs, InMemoryObjects};
use crate::ports::reinvoke::ReinvokeError;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// Every fake answers at once, so one poll runs the runner to its end.
fn now_or_never<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a fake waited"),
    }
}

struct OneModel;

impl BatchModels for OneModel {
    async fn active_model(&self, _tenant: &TenantId) -> Result<Option<ActiveModel>, StoreError> {
        Ok(Some(ActiveModel {
            version: "v1".into(),
            object_key: "models/active/acme/v1.vmodel".into(),
        }))
    }

    async fn tenant_policy(&self, _tenant: &TenantId) -> Result<TenantPolicy, StoreError> {
        Ok(TenantPolicy::default())
    }
    async fn rules(&self, _tenant: &TenantId, _version: u32) -> Result<Option<TenantRules>, RulesUnavailable> {
        Ok(None)
    }

    async fn load(&self, _model: &ActiveModel) -> Result<Arc<Model>, ScoreError> {
        Ok(Arc::new(Model::seal(stump_artifact(100.0, -2.0, -0.5, 4.0)).unwrap()))
    }
}

/// A file of `ROWS` rows, one flush per row from the checkpoint on; the runner does not look
/// inside the bytes.
struct Scripted;

const ROWS: u64 = 4;

struct ScriptedRun {
    next_row: u64,
}

impl ScoringPlatform for Scripted {
    type Run = ScriptedRun;

    fn start<Rd: Read + Send + 'static>(&self, plan: ScoringPlan, _reader: Rd, _failure: ReadFailure) -> ScriptedRun {
        ScriptedRun {
            next_row: plan.checkpoint.results_rows_done,
        }
    }
}

impl ScoringRun for ScriptedRun {
    async fn next(&mut self, _heartbeat: Duration) -> Scored {
        let row = self.next_row;
        self.next_row += 1;
        Scored::Flush(Flush {
            results: Some(format!("row {row}\n").into_bytes()),
            errors: None,
            results_rows_done: row + 1,
            errors_rows_done: row + 1,
            next_line: row + 3,
            counts: Counts {
                rows_read: row + 1,
                approve: row + 1,
                ..Counts::default()
            },
            last: row + 1 == ROWS,
        })
    }
}

/// Time passes at once.
struct NoWait;

impl Sleep for NoWait {
    async fn sleep(&self, _d: Duration) {}
}

#[derive(Default)]
struct Recorder(Mutex<Vec<serde_json::Value>>);

impl Reinvoke for Recorder {
    async fn reinvoke(&self, payload: &serde_json::Value) -> Result<(), ReinvokeError> {
        self.0.lock().unwrap().push(payload.clone());
        Ok(())
    }
}

const BUCKET: &str = "data";
const KEY: &str = "batches/incoming/acme/day.csv";

#[test]
fn a_job_is_handed_over_part_by_part_leaves_a_live_holder_alone_and_takes_over_an_expired_lease() {
    let (jobs, objects, reinvoke) = (InMemoryJobs::default(), InMemoryObjects::default(), Recorder::default());
    let e1 = objects.upload(BUCKET, KEY, b"id,...\n", &[]);
    let settings = Settings {
        // Every invocation is near its deadline: it hands over after each part.
        handover_margin: Duration::from_secs(3600),
        ..Settings::default()
    };
    let runner = BatchRunner {
        jobs: &jobs,
        objects: &objects,
        models: &OneModel,
        platform: &Scripted,
        reinvoke: &reinvoke,
        sleep: &NoWait,
        settings: &settings,
    };
    let deadline = SystemTime::now() + Duration::from_secs(600);
    let tenant = TenantId::parse("acme").unwrap();
    let object = ObjectRef::new(BUCKET, KEY, &e1);
    let run = |etag: Option<&str>| now_or_never(runner.process(BUCKET, KEY, etag, deadline)).unwrap();
    let job = || {
        now_or_never(jobs.read_job::<BatchProgress>(&tenant, &object))
            .unwrap()
            .unwrap()
    };

    // The first invocation creates the job, records one part and hands over.
    assert_eq!(
        run(Some(&format!("\"{e1}\""))),
        Status::HandedOver {
            results_rows_done: 1,
            next_line: 3
        }
    );
    let resumes = std::mem::take(&mut *reinvoke.0.lock().unwrap());
    assert_eq!(
        resumes,
        [serde_json::json!({"resume": {"bucket": BUCKET, "key": KEY, "etag": e1}})]
    );
    let after_first = job();
    assert_eq!(
        (after_first.seq, after_first.lease_expires_at),
        (1, 0),
        "checkpointed, then released"
    );

    // A live holder (another invocation that claimed it meanwhile) is left alone: too little time
    // to wait its lease out. Nothing moves.
    let now = Timestamp::now().unix();
    jobs.set_lease(&tenant, &object, "live-holder", now + 120);
    assert_eq!(run(None), Status::Busy);
    assert_eq!(job().seq, 1);
    assert!(reinvoke.0.lock().unwrap().is_empty());

    // That holder died: once its lease has expired the next delivery takes over from the
    // checkpoint, not from the start.
    jobs.set_lease(&tenant, &object, "live-holder", now - 1);
    assert_eq!(
        run(None),
        Status::HandedOver {
            results_rows_done: 2,
            next_line: 4
        }
    );
    let taken = job();
    assert_eq!((taken.seq, taken.invocations), (2, 2));
    assert_ne!(taken.lease_owner.as_deref(), Some("live-holder"));

    // The resume payloads carry it to the end.
    let mut invocations = 2;
    let summary = loop {
        let queued = std::mem::take(&mut *reinvoke.0.lock().unwrap());
        assert_eq!(queued.len(), 1, "one re-invocation per hand-over");
        let resume: ResumeRequest = serde_json::from_value(queued[0].clone()).unwrap();
        invocations += 1;
        match run(Some(&resume.resume.etag)) {
            Status::HandedOver { .. } => {}
            Status::Completed { summary } => break summary,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(invocations, ROWS);
    assert_eq!(summary.counts.rows_read, ROWS);
    assert_eq!(summary.timings.as_ref().unwrap().invocations, ROWS);
    assert_eq!(
        objects.object(BUCKET, "batches/results/acme/day.csv").unwrap(),
        b"row 0\nrow 1\nrow 2\nrow 3\n",
        "every part once, in order"
    );
    assert!(objects
        .object(BUCKET, "batches/results/acme/day.summary.json")
        .is_some());
    let done = job();
    assert_eq!((done.status, done.lease_owner), (JobStatus::Completed, None));

    // Delivered again: nothing to do.
    assert_eq!(run(Some(&e1)), Status::AlreadyDone);
    // Overwritten since the event: the event is not for this version.
    assert_eq!(run(Some("e0")), Status::Superseded);
}

#[test]
fn a_file_that_cannot_be_a_job_is_recorded_failed_once() {
    let (jobs, objects, reinvoke) = (InMemoryJobs::default(), InMemoryObjects::default(), Recorder::default());
    let key = "batches/incoming/acme/notes.txt";
    objects.upload(BUCKET, key, b"hello", &[]);
    let settings = Settings::default();
    let runner = BatchRunner {
        jobs: &jobs,
        objects: &objects,
        models: &OneModel,
        platform: &Scripted,
        reinvoke: &reinvoke,
        sleep: &NoWait,
        settings: &settings,
    };
    let deadline = SystemTime::now() + Duration::from_secs(600);
    let Status::Failed { error } = now_or_never(runner.process(BUCKET, key, None, deadline)).unwrap() else {
        panic!("an unknown file type fails")
    };
    assert!(error.contains("unknown file type"), "{error}");
    let summary_key = BatchFile::parse(key).unwrap().summary_key();
    assert!(objects.object(BUCKET, &summary_key).is_some());
    assert_eq!(
        now_or_never(runner.process(BUCKET, key, None, deadline)).unwrap(),
        Status::AlreadyFailed { error }
    );
}

/// Scores like [`Scripted`], but runs a hook before the first flush (another invocation taking
/// the lease over while this one was scoring).
struct Interrupted(Arc<dyn Fn() + Send + Sync>);

struct InterruptedRun {
    hook: Option<Arc<dyn Fn() + Send + Sync>>,
    inner: ScriptedRun,
}

impl ScoringPlatform for Interrupted {
    type Run = InterruptedRun;

    fn start<Rd: Read + Send + 'static>(&self, plan: ScoringPlan, reader: Rd, failure: ReadFailure) -> InterruptedRun {
        InterruptedRun {
            hook: Some(self.0.clone()),
            inner: Scripted.start(plan, reader, failure),
        }
    }
}

impl ScoringRun for InterruptedRun {
    async fn next(&mut self, heartbeat: Duration) -> Scored {
        if let Some(hook) = self.hook.take() {
            hook();
        }
        self.inner.next(heartbeat).await
    }
}

#[test]
fn an_owner_that_lost_its_lease_uploads_no_part_and_records_nothing() {
    let jobs = Arc::new(InMemoryJobs::default());
    let (objects, reinvoke) = (InMemoryObjects::default(), Recorder::default());
    let e1 = objects.upload(BUCKET, KEY, b"id,...\n", &[]);
    let tenant = TenantId::parse("acme").unwrap();
    let object = ObjectRef::new(BUCKET, KEY, &e1);
    let thief = {
        let (jobs, tenant, object) = (jobs.clone(), tenant.clone(), object.clone());
        move || jobs.set_lease(&tenant, &object, "new-holder", Timestamp::now().unix() + 600)
    };
    let platform = Interrupted(Arc::new(thief));
    let settings = Settings {
        handover_margin: Duration::from_secs(3600),
        ..Settings::default()
    };
    let runner = BatchRunner {
        jobs: &*jobs,
        objects: &objects,
        models: &OneModel,
        platform: &platform,
        reinvoke: &reinvoke,
        sleep: &NoWait,
        settings: &settings,
    };
    let deadline = SystemTime::now() + Duration::from_secs(600);
    let status = now_or_never(runner.process(BUCKET, KEY, Some(&e1), deadline)).unwrap();
    assert_eq!(status, Status::Busy);
    assert_eq!(objects.pending_parts(), 0, "no part was uploaded");
    assert!(objects.object(BUCKET, "batches/results/acme/day.csv").is_none());
    let job = now_or_never(jobs.read_job::<BatchProgress>(&tenant, &object))
        .unwrap()
        .unwrap();
    assert_eq!(job.seq, 0, "no checkpoint recorded");
    assert_eq!(job.lease_owner.as_deref(), Some("new-holder"));
    assert!(reinvoke.0.lock().unwrap().is_empty());
}

/// A model whose artifact cannot be fetched, for the reason given.
struct Unfetchable(fn() -> StoreError);

impl BatchModels for Unfetchable {
    async fn active_model(&self, tenant: &TenantId) -> Result<Option<ActiveModel>, StoreError> {
        OneModel.active_model(tenant).await
    }

    async fn tenant_policy(&self, _tenant: &TenantId) -> Result<TenantPolicy, StoreError> {
        Ok(TenantPolicy::default())
    }
    async fn rules(&self, _tenant: &TenantId, _version: u32) -> Result<Option<TenantRules>, RulesUnavailable> {
        Ok(None)
    }

    async fn load(&self, _model: &ActiveModel) -> Result<Arc<Model>, ScoreError> {
        Err(ScoreError::Store((self.0)()))
    }
}

#[test]
fn a_model_fetch_that_may_pass_is_retried_and_one_that_cannot_fails_the_job() {
    let run = |models: &Unfetchable| {
        let (jobs, objects, reinvoke) = (InMemoryJobs::default(), InMemoryObjects::default(), Recorder::default());
        let e1 = objects.upload(BUCKET, KEY, b"id,...\n", &[]);
        let settings = Settings::default();
        let runner = BatchRunner {
            jobs: &jobs,
            objects: &objects,
            models,
            platform: &Scripted,
            reinvoke: &reinvoke,
            sleep: &NoWait,
            settings: &settings,
        };
        let deadline = SystemTime::now() + Duration::from_secs(600);
        now_or_never(runner.process(BUCKET, KEY, Some(&e1), deadline))
    };
    let throttled = run(&Unfetchable(|| StoreError::Unavailable("SlowDown".into())));
    assert!(
        matches!(throttled, Err(BatchRunError::Store(StoreError::Unavailable(_)))),
        "{throttled:?}"
    );
    let refused = run(&Unfetchable(|| StoreError::Rejected("AccessDenied".into())));
    let Ok(Status::Failed { error }) = refused else {
        panic!("a refused fetch fails the job: {refused:?}")
    };
    assert!(error.contains("AccessDenied"), "{error}");
}

/// A scoring thread that stops at once on a storage failure.
struct StopsOn(fn() -> StoreError);

struct StoppedRun(fn() -> StoreError);

impl ScoringPlatform for StopsOn {
    type Run = StoppedRun;

    fn start<Rd: Read + Send + 'static>(&self, _plan: ScoringPlan, _reader: Rd, _failure: ReadFailure) -> StoppedRun {
        StoppedRun(self.0)
    }
}

impl ScoringRun for StoppedRun {
    async fn next(&mut self, _heartbeat: Duration) -> Scored {
        Scored::Stopped(ScoringStop::Store((self.0)()))
    }
}

#[test]
fn a_refused_storage_call_ends_the_job_failed_and_a_transient_one_leaves_it_to_a_retry() {
    let run = |platform: &StopsOn| {
        let (jobs, objects, reinvoke) = (InMemoryJobs::default(), InMemoryObjects::default(), Recorder::default());
        let e1 = objects.upload(BUCKET, KEY, b"id,...\n", &[]);
        let settings = Settings::default();
        let runner = BatchRunner {
            jobs: &jobs,
            objects: &objects,
            models: &OneModel,
            platform,
            reinvoke: &reinvoke,
            sleep: &NoWait,
            settings: &settings,
        };
        let deadline = SystemTime::now() + Duration::from_secs(600);
        let status = now_or_never(runner.process(BUCKET, KEY, Some(&e1), deadline));
        let tenant = TenantId::parse("acme").unwrap();
        let job = now_or_never(jobs.read_job::<BatchProgress>(&tenant, &ObjectRef::new(BUCKET, KEY, &e1)))
            .unwrap()
            .unwrap();
        let summary = objects.object(BUCKET, &BatchFile::parse(KEY).unwrap().summary_key());
        (status, job, summary.is_some())
    };

    let (status, job, summary) = run(&StopsOn(|| StoreError::Unavailable("ThrottlingException".into())));
    assert!(
        matches!(status, Err(BatchRunError::Store(StoreError::Unavailable(_)))),
        "{status:?}"
    );
    assert_eq!(job.status, JobStatus::Running, "left for the redelivery");
    assert_eq!(job.lease_expires_at, 0, "the lease is released for the next invocation");
    assert!(!summary);

    let (status, job, summary) = run(&StopsOn(|| StoreError::Rejected("AccessDenied".into())));
    let Ok(Status::Failed { error }) = status else {
        panic!("a refused call fails the job: {status:?}")
    };
    assert!(error.contains("AccessDenied"), "{error}");
    assert_eq!(job.status, JobStatus::Failed);
    assert!(summary, "the failure is summarised");
}
