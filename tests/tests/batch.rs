//! batch-score against moto: the real handler on uploaded files, end to end (object in S3 →
//! results, summary and error report in S3, job item in DynamoDB), including kill-and-resume.

use aws_sdk_s3::primitives::ByteStream;
use batch_score::{Deps, Event, Outcome, Reinvoke, ReinvokeError, ResumeRequest, Settings, Status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use verdict::app::scoring::decide;
use verdict::domain::batch::{BatchFile, BatchProgress, Counts, ObjectRef, ReasonOut, ResultRow, Summary};
use verdict::domain::decision::{
    features_map, risk_score, Decision, DecisionRecord, ModelRef, ScoreRequest, TransactionInputs,
};
use verdict::domain::features::{transaction_delta, OfflineFeatures};
use verdict::domain::io::{Format, TransactionReader, TransactionWriter};
use verdict::domain::model::import::{import, ImportFormat};
use verdict::domain::model::Model;
use verdict::domain::pipeline::REASONS_PER_DECISION;
use verdict::domain::policy::{Policy, Thresholds};
use verdict::domain::registry::{ModelRegistration, ModelStatus};
use verdict::domain::JobStatus;
use verdict::domain::{LabelledTransaction, TenantId, Timestamp, Transaction};
use verdict::offline::sim::{SimConfig, Simulation};
use verdict::ports::jobs::{Job, JobStore};
use verdict::ports::{DecisionCommit, DecisionStore, ScoringSnapshot};
use verdict_integration::{label_fraud, repo_root, Stack};

const TENANT: &str = "acme";

fn tenant() -> TenantId {
    TenantId::parse(TENANT).unwrap()
}

/// The handbook-feature LightGBM model from fixtures/, as a Verdict artifact.
fn model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = repo_root().join("fixtures/lightgbm_model.txt");
            let bytes = std::fs::read(&path).unwrap();
            let artifact = import(ImportFormat::Lightgbm, "lightgbm_model.txt", &bytes).unwrap();
            // As the function will load it: from the bytes uploaded (loading normalises the
            // artifact, so the sealed one can digest differently).
            let sealed = Model::seal(artifact).unwrap();
            Arc::new(Model::from_bytes("lightgbm_model.vmodel", &sealed.artifact.to_bytes()).unwrap())
        })
        .clone()
}

/// Thresholds low enough that the simulated files get all three decisions.
fn thresholds() -> Thresholds {
    Thresholds::new(0.05, 0.5).unwrap()
}

/// Re-invocations are recorded; the test delivers them itself.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<ResumeRequest>>>);

impl Recorder {
    fn take(&self) -> Vec<ResumeRequest> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Reinvoke for Recorder {
    async fn reinvoke(&self, payload: &serde_json::Value) -> Result<(), ReinvokeError> {
        let request = serde_json::from_value(payload.clone()).expect("a resume payload");
        self.0.lock().unwrap().push(request);
        Ok(())
    }
}

/// A stack with the model active for the tenant, and the handler's dependencies over it.
async fn setup() -> (Stack, Deps<Recorder>) {
    let st = Stack::new().await;
    let m = model();
    let object_key = format!("models/active/{TENANT}/{}.vmodel", m.version());
    let bytes = m.artifact.to_bytes();
    assert_eq!(Model::from_bytes("again", &bytes).unwrap().version(), m.version());
    st.blobs.put(&object_key, bytes).await.unwrap();
    st.store
        .register_model(
            &tenant(),
            &ModelRegistration {
                version: m.version().into(),
                name: m.artifact.name.clone(),
                sha256: m.sha256.clone(),
                object_key: object_key.clone(),
                source: "import:lightgbm".into(),
                status: ModelStatus::Candidate,
                metrics: BTreeMap::new(),
                uploaded_at: Timestamp::now(),
                uploaded_by: "tests".into(),
                trees: m.tree_count() as u32,
            },
        )
        .await
        .unwrap();
    st.store
        .activate_model(&tenant(), m.version(), &object_key)
        .await
        .unwrap();
    st.store.set_thresholds(&tenant(), thresholds()).await.unwrap();
    let mut deps = Deps::new(st.store.clone(), st.s3.clone(), &st.bucket, Recorder::default());
    deps.settings = Settings {
        part_size: 0, // the 5 MiB minimum: as many parts as possible
        lease: Duration::ZERO,
        handover_margin: Duration::ZERO,
        ..Settings::default()
    };
    (st, deps)
}

fn simulate(customers: usize, days: u32, seed: u64) -> Vec<LabelledTransaction> {
    let cfg = SimConfig {
        customers,
        terminals: customers * 2,
        days,
        seed,
        ..SimConfig::default()
    };
    Simulation::run(&cfg, &mut |_, _| {}).unwrap().iter().collect()
}

fn write(format: Format, rows: &[LabelledTransaction]) -> Vec<u8> {
    let mut w = TransactionWriter::new("mem", format, Vec::new()).unwrap();
    for r in rows {
        w.write(r).unwrap();
    }
    w.into_inner().unwrap()
}

async fn upload(st: &Stack, key: &str, body: Vec<u8>, features: Option<&str>) -> ObjectRef {
    let mut req = st
        .s3
        .put_object()
        .bucket(&st.bucket)
        .key(key)
        .body(ByteStream::from(body));
    if let Some(f) = features {
        req = req.metadata("features", f);
    }
    let out = req.send().await.unwrap();
    ObjectRef {
        bucket: st.bucket.clone(),
        key: key.into(),
        etag: out.e_tag().unwrap().trim_matches('"').into(),
    }
}

/// events/s3/batch-upload.json, pointed at `object` (its key percent-encoded as S3 does).
fn s3_event(object: &ObjectRef) -> Event {
    let mut v: serde_json::Value = serde_json::from_str(include_str!("../../events/s3/batch-upload.json")).unwrap();
    let s3 = &mut v["Records"][0]["s3"];
    s3["bucket"]["name"] = object.bucket.clone().into();
    s3["bucket"]["arn"] = format!("arn:aws:s3:::{}", object.bucket).into();
    let encoded: String = object
        .key
        .bytes()
        .map(|b| match b {
            b' ' => "+".to_owned(),
            b if b.is_ascii_alphanumeric() || b"/-_.".contains(&b) => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect();
    s3["object"]["key"] = encoded.into();
    s3["object"]["eTag"] = object.etag.clone().into();
    Event::from_value(v).unwrap()
}

fn resume(object: &ObjectRef) -> Event {
    Event::Resume(ResumeRequest { resume: object.clone() })
}

fn far_deadline() -> SystemTime {
    SystemTime::now() + Duration::from_secs(600)
}

async fn run(deps: &Deps<Recorder>, event: Event) -> Status {
    let Outcome { mut objects } = batch_score::handle(deps, event, far_deadline()).await.unwrap();
    assert_eq!(objects.len(), 1);
    objects.remove(0).status
}

async fn get(st: &Stack, key: &str) -> Vec<u8> {
    let out = st
        .s3
        .get_object()
        .bucket(&st.bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key}: {e:?}"));
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// What the batch must produce for good rows, computed here from the primitives: the file's
/// own history through OfflineFeatures, the model and the thresholds.
fn expected_from_history(rows: &[LabelledTransaction]) -> Vec<ResultRow> {
    let m = model();
    let mut history = OfflineFeatures::new();
    rows.iter()
        .map(|r| {
            let x = history.push(&r.tx, None);
            let s = m.score(&x);
            ResultRow {
                id: r.tx.id.to_string(),
                decision: thresholds().decide(s.probability),
                score: s.probability,
                risk_score: risk_score(s.probability),
                reasons: m
                    .reasons(&x, &s, REASONS_PER_DECISION)
                    .iter()
                    .map(|r| ReasonOut {
                        code: r.code().to_owned(),
                        text: r.to_string(),
                    })
                    .collect(),
                model_version: m.version().to_owned(),
                rules: None,
            }
        })
        .collect()
}

fn counts_of(rows: &[ResultRow], rejected: u64) -> Counts {
    let n = |d| rows.iter().filter(|r| r.decision == d).count() as u64;
    Counts {
        rows_read: rows.len() as u64 + rejected,
        rows_rejected: rejected,
        approve: n(Decision::Approve),
        review: n(Decision::Review),
        block: n(Decision::Block),
    }
}

async fn job_state(st: &Stack, object: &ObjectRef) -> Option<Job<BatchProgress>> {
    st.store.read_job(&tenant(), object).await.unwrap()
}

async fn status_of(st: &Stack, object: &ObjectRef) -> Option<JobStatus> {
    job_state(st, object).await.map(|j| j.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_upload_is_scored_into_results_summary_and_error_report() {
    let (st, deps) = setup().await;
    let rows = simulate(60, 30, 7);
    let object = upload(&st, "batches/incoming/acme/day 1.csv", write(Format::Csv, &rows), None).await;

    let status = run(&deps, s3_event(&object)).await;
    let Status::Completed { summary } = status else {
        panic!("{status:?}")
    };
    let expected = expected_from_history(&rows);
    let got = ResultRow::read_all(Format::Csv, &get(&st, "batches/results/acme/day 1.csv").await).unwrap();
    assert_eq!(got.len(), rows.len());
    assert_eq!(got, expected, "every row scored as the shared code scores it");
    assert!(got.iter().all(|r| r.reasons.len() == REASONS_PER_DECISION));
    let counts = counts_of(&expected, 0);
    assert!(
        counts.approve > 0 && counts.review > 0 && counts.block > 0,
        "{counts:?}"
    );
    assert_eq!(summary.counts, counts);
    assert_eq!(summary.model_version.as_deref(), Some(model().version()));
    let stored: Summary = serde_json::from_slice(&get(&st, "batches/results/acme/day 1.summary.json").await).unwrap();
    assert_eq!(&stored, summary.as_ref());
    assert_eq!(stored.timings.as_ref().unwrap().invocations, 1);
    assert_eq!(
        get(&st, "batches/results/acme/day 1.errors.csv").await,
        b"line,field,reason\n"
    );
    assert_eq!(status_of(&st, &object).await, Some(JobStatus::Completed));
}

/// About 48k good rows (3+ results parts of 5 MiB) and 96k bad ones (an error report of more
/// than one part), interleaved, shared by the resumability tests.
fn big_file() -> &'static (Vec<u8>, Vec<LabelledTransaction>, Vec<String>) {
    static BIG: OnceLock<(Vec<u8>, Vec<LabelledTransaction>, Vec<String>)> = OnceLock::new();
    BIG.get_or_init(|| {
        let rows = simulate(600, 40, 11);
        let text = String::from_utf8(write(Format::Csv, &rows)).unwrap();
        let mut lines = text.lines();
        let mut out = Vec::new();
        writeln!(out, "{}", lines.next().unwrap()).unwrap();
        let mut errors = Vec::new();
        let mut line = 1;
        for (i, good) in lines.enumerate() {
            writeln!(out, "{good}").unwrap();
            line += 1;
            // Two bad rows per good one on average.
            for k in 0..1 + i % 3 {
                line += 1;
                writeln!(out, "bad-{i}-{k},2018-04-01T00:00:00Z,lots,EUR,c1,t1,,").unwrap();
                errors.push(format!(
                    "{line},amount,\"\"\"lots\"\" is not an integer number of minor units\""
                ));
            }
        }
        (out, rows, errors)
    })
}

/// Delivers `event` with a deadline that has passed: every invocation stops after its first
/// checkpoint. Follows the recorded re-invocations until the job completes.
async fn run_by_handovers(deps: &Deps<Recorder>, first: Event) -> (Summary, usize) {
    let mut event = first;
    for invocation in 1..200 {
        let outcome = batch_score::handle(deps, event, SystemTime::now()).await.unwrap();
        match &outcome.objects[0].status {
            Status::Completed { summary } => return ((**summary).clone(), invocation),
            Status::HandedOver { .. } => {
                let mut queued = deps.reinvoker.take();
                assert_eq!(queued.len(), 1, "one re-invocation per hand-over");
                event = Event::Resume(queued.remove(0));
            }
            other => panic!("invocation {invocation}: {other:?}"),
        }
    }
    panic!("no completion after 200 invocations")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_points_and_resumed_it_writes_what_a_clean_run_writes() {
    let (st, deps) = setup().await;
    let (body, rows, errors) = big_file();
    let clean = upload(&st, "batches/incoming/acme/clean.csv", body.clone(), None).await;

    let Status::Completed { summary: clean_summary } = run(&deps, s3_event(&clean)).await else {
        panic!("clean run")
    };
    let clean_results = get(&st, "batches/results/acme/clean.csv").await;
    let clean_errors = get(&st, "batches/results/acme/clean.errors.csv").await;
    // The clean run itself is right: every good row as the shared code scores it, every bad
    // row in the report with its line.
    let expected = expected_from_history(rows);
    assert_eq!(ResultRow::read_all(Format::Csv, &clean_results).unwrap(), expected);
    let report = String::from_utf8(clean_errors.clone()).unwrap();
    assert_eq!(
        report.lines().skip(1).collect::<Vec<_>>(),
        errors.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(clean_summary.counts, counts_of(&expected, errors.len() as u64));
    assert!(
        clean_results.len() > 3 * (5 << 20),
        "{} bytes: several parts",
        clean_results.len()
    );
    assert!(
        clean_errors.len() > 5 << 20,
        "{} bytes: more than one part",
        clean_errors.len()
    );

    // Kill it over and over: random timeouts drop the handler mid-flight (while claiming,
    // replaying, uploading, between an upload and its checkpoint...), random deadlines force
    // hand-overs; deliveries are the S3 event again or the recorded resume payload. Three
    // rounds, each on its own copy of the file.
    let seed = rand::random::<u64>();
    println!("kill-and-resume seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut kills, mut handovers) = (0, 0);
    for round in 0..3 {
        let key = format!("batches/incoming/acme/killed-{round}.csv");
        let killed = upload(&st, &key, body.clone(), None).await;
        let mut invocations = 0;
        let summary = loop {
            invocations += 1;
            assert!(invocations < 400, "no completion after 400 invocations (seed {seed})");
            let event = match deps.reinvoker.take().pop() {
                Some(r) if rng.gen_bool(0.8) => Event::Resume(r),
                _ => s3_event(&killed),
            };
            let deadline = SystemTime::now() + Duration::from_millis(rng.gen_range(0..800));
            // Short at first, longer as it goes, so that it always finishes.
            let limit = Duration::from_millis(rng.gen_range(1..250) + 20 * invocations);
            match tokio::time::timeout(limit, batch_score::handle(&deps, event, deadline)).await {
                Err(_) => kills += 1,
                Ok(outcome) => match outcome.unwrap().objects.remove(0).status {
                    Status::Completed { summary } => break *summary,
                    Status::HandedOver { .. } => handovers += 1,
                    Status::AlreadyDone => {
                        // Completed by a killed invocation after its last step: read it back.
                        let s = get(&st, &format!("batches/results/acme/killed-{round}.summary.json")).await;
                        break serde_json::from_slice(&s).unwrap();
                    }
                    Status::Busy => {}
                    other => panic!("{other:?} (seed {seed})"),
                },
            }
        };
        println!("round {round}: {invocations} invocations");
        let results = get(&st, &format!("batches/results/acme/killed-{round}.csv")).await;
        let got = ResultRow::read_all(Format::Csv, &results).unwrap();
        let want = ResultRow::read_all(Format::Csv, &clean_results).unwrap();
        assert_eq!(got.len(), want.len(), "no row lost or duplicated (seed {seed})");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "row {i} (seed {seed})");
        }
        assert!(results == clean_results, "byte-identical results (seed {seed})");
        let errors = get(&st, &format!("batches/results/acme/killed-{round}.errors.csv")).await;
        assert!(errors == clean_errors, "identical error report (seed {seed})");
        assert_eq!(summary.counts, clean_summary.counts, "seed {seed}");
    }
    println!("{kills} killed, {handovers} handed over");
    assert!(kills >= 3, "kills happened (seed {seed})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_the_deadline_it_hands_over_to_itself_part_by_part() {
    let (st, deps) = setup().await;
    let (body, _, _) = big_file();
    let object = upload(&st, "batches/incoming/acme/big.csv", body.clone(), None).await;
    let clean = upload(&st, "batches/incoming/acme/clean.csv", body.clone(), None).await;
    run(&deps, s3_event(&clean)).await;

    // After one hand-over the job is running, and already ages out if nobody finishes it.
    let first = batch_score::handle(&deps, s3_event(&object), SystemTime::now())
        .await
        .unwrap();
    assert!(
        matches!(first.objects[0].status, Status::HandedOver { .. }),
        "{first:?}"
    );
    let Some(JobStatus::Running) = status_of(&st, &object).await else {
        panic!("job not running after a hand-over")
    };
    let key = verdict::adapters::dynamodb::Keys::new(&tenant()).job(&object);
    let item = st.raw_item(&key).await;
    let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    let in_days = (expires - Timestamp::now().unix()) as f64 / 86_400.0;
    assert!((29.9..=30.0).contains(&in_days), "expires in {in_days} days");
    let resume = Event::Resume(deps.reinvoker.take().remove(0));

    let (summary, more) = run_by_handovers(&deps, resume).await;
    let invocations = more + 1;
    assert!(invocations >= 4, "one part per invocation: {invocations}");
    assert_eq!(summary.timings.as_ref().unwrap().invocations, invocations as u64);
    assert!(get(&st, "batches/results/acme/big.csv").await == get(&st, "batches/results/acme/clean.csv").await);
    assert!(
        get(&st, "batches/results/acme/big.errors.csv").await
            == get(&st, "batches/results/acme/clean.errors.csv").await
    );
    let Some(JobStatus::Completed) = status_of(&st, &object).await else {
        panic!("job not completed")
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_after_completion_is_a_no_op() {
    let (st, deps) = setup().await;
    let rows = simulate(20, 10, 3);
    let object = upload(
        &st,
        "batches/incoming/acme/twice.ndjson",
        write(Format::Ndjson, &rows),
        None,
    )
    .await;
    assert!(matches!(run(&deps, s3_event(&object)).await, Status::Completed { .. }));
    let head = |key: &'static str| {
        let s3 = st.s3.clone();
        let bucket = st.bucket.clone();
        async move {
            let h = s3.head_object().bucket(bucket).key(key).send().await.unwrap();
            (h.e_tag().unwrap().to_owned(), h.last_modified().cloned())
        }
    };
    let before = head("batches/results/acme/twice.ndjson").await;
    let summary_before = get(&st, "batches/results/acme/twice.summary.json").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    assert_eq!(run(&deps, s3_event(&object)).await, Status::AlreadyDone);
    assert_eq!(run(&deps, resume(&object)).await, Status::AlreadyDone);
    assert_eq!(
        head("batches/results/acme/twice.ndjson").await,
        before,
        "results untouched"
    );
    assert_eq!(
        get(&st, "batches/results/acme/twice.summary.json").await,
        summary_before
    );
    assert!(deps.reinvoker.take().is_empty());

    // A new upload to the same key is a new job.
    let mut changed = rows.clone();
    changed.truncate(rows.len() - 1);
    let again = upload(&st, &object.key, write(Format::Ndjson, &changed), None).await;
    assert_ne!(again.etag, object.etag);
    assert_eq!(
        run(&deps, s3_event(&object)).await,
        Status::Superseded,
        "the old event names the old etag"
    );
    let Status::Completed { summary } = run(&deps, s3_event(&again)).await else {
        panic!()
    };
    assert_eq!(summary.counts.rows_read, changed.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_reported_with_their_lines_and_the_good_rows_are_still_scored() {
    let (st, deps) = setup().await;
    let file = "\
id,occurred_at,amount,currency,customer_id,terminal_id
a,2018-04-01T10:00:00Z,5000,EUR,c1,t1
b,2018-04-01T10:30:00Z,12x,EUR,c1,t1

c,yesterday,100,EUR,c2,t1
d,2018-04-01T11:00:00Z,700,EUR,c2
e,2018-04-01T09:00:00Z,800,EUR,c3,t2
f#1,2018-04-01T12:00:00Z,900,EUR,c3,t2
g,2018-04-01T12:30:00Z,-5,EUR,c3,t2
h,2018-04-01T13:00:00Z,1000,eur,c3,t2
i,2018-04-02T08:00:00Z,25000,EUR,c1,t2
";
    let object = upload(&st, "batches/incoming/acme/bad.csv", file.as_bytes().to_vec(), None).await;
    let Status::Completed { summary } = run(&deps, s3_event(&object)).await else {
        panic!()
    };
    let report = String::from_utf8(get(&st, "batches/results/acme/bad.errors.csv").await).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "line,field,reason");
    let fields: Vec<(&str, &str)> = lines[1..]
        .iter()
        .map(|l| {
            let mut p = l.splitn(3, ',');
            (p.next().unwrap(), p.next().unwrap())
        })
        .collect();
    assert_eq!(
        fields,
        [
            ("3", "amount"),
            ("5", "occurred_at"),
            ("6", ""),
            ("7", "occurred_at"),
            ("8", "id"),
            ("9", "amount"),
            ("10", "currency"),
        ],
        "{report}"
    );
    assert!(
        lines[4].contains("is earlier than 2018-04-01T10:00:00Z on a row above"),
        "{}",
        lines[4]
    );
    assert!(
        lines[3].contains("expected 6 fields as in the header, found 5"),
        "{}",
        lines[3]
    );

    let got = ResultRow::read_all(Format::Csv, &get(&st, "batches/results/acme/bad.csv").await).unwrap();
    assert_eq!(got.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a", "i"]);
    let good: Vec<LabelledTransaction> = TransactionReader::new("x.csv", Format::Csv, std::io::Cursor::new(file))
        .filter_map(Result::ok)
        .filter(|t| ["a", "i"].contains(&t.tx.id.as_str()))
        .collect();
    assert_eq!(got, expected_from_history(&good));
    assert_eq!(summary.counts.rows_read, 9);
    assert_eq!(summary.counts.rows_rejected, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzipped_ndjson_upload_scores_like_the_same_rows_in_csv() {
    let (st, deps) = setup().await;
    let rows = simulate(40, 20, 5);
    let ndjson = upload(
        &st,
        "batches/incoming/acme/day.ndjson.gz",
        gzipped(Format::Ndjson, &rows),
        None,
    )
    .await;
    let csv = upload(&st, "batches/incoming/acme/same.csv", write(Format::Csv, &rows), None).await;
    assert!(matches!(run(&deps, s3_event(&ndjson)).await, Status::Completed { .. }));
    assert!(matches!(run(&deps, s3_event(&csv)).await, Status::Completed { .. }));

    let raw = get(&st, "batches/results/acme/day.ndjson").await;
    let first: serde_json::Value = serde_json::from_slice(raw.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["reasons"].as_array().unwrap().len(), 3);
    assert!(first["reasons"][0]["code"].is_string() && first["reasons"][0]["text"].is_string());
    let from_ndjson = ResultRow::read_all(Format::Ndjson, &raw).unwrap();
    let from_csv = ResultRow::read_all(Format::Csv, &get(&st, "batches/results/acme/same.csv").await).unwrap();
    assert_eq!(from_ndjson.len(), rows.len());
    assert_eq!(from_ndjson, from_csv);
    assert_eq!(from_ndjson, expected_from_history(&rows));
}

/// `rows` gzipped, by the shared crate's writer (the tests crate has no compressor of its own).
fn gzipped(format: Format, rows: &[LabelledTransaction]) -> Vec<u8> {
    let ext = if format == Format::Csv { "csv" } else { "ndjson" };
    let path = std::env::temp_dir().join(format!(
        "verdict-batch-{}.{ext}.gz",
        verdict_integration::unique_suffix()
    ));
    let mut w = TransactionWriter::create(&path).unwrap();
    for r in rows {
        w.write(r).unwrap();
    }
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    bytes
}

/// A decision as the API would have stored it, for seeding aggregates.
fn decision_record(t: &Transaction) -> DecisionRecord {
    DecisionRecord {
        id: t.id.clone(),
        decision: Decision::Approve,
        score: 0.01,
        risk_score: 1,
        reasons: vec![],
        model: ModelRef {
            id: "seed".into(),
            version: "seed".into(),
        },
        policy_version: None,
        rules: None,
        features: features_map(&Default::default()),
        inputs: serde_json::json!({}).into(),
        request_fingerprint: "seed".into(),
        created_at: Timestamp::now(),
        occurred_at: t.occurred_at,
        customer_id: t.customer_id.clone(),
        request_id: None,
        processing_ms: None,
        label: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_features_are_what_the_api_would_compute_and_stay_unchanged() {
    let (st, deps) = setup().await;
    let rows = simulate(15, 40, 9);
    // The first 30 days went through the API (aggregates and some fraud labels); the last ten
    // days arrive as a batch, shuffled: the stored source needs no order.
    let split = rows
        .iter()
        .position(|r| r.tx.occurred_at.epoch_day() >= rows[0].tx.occurred_at.epoch_day() + 30)
        .unwrap();
    let (history, batch) = rows.split_at(split);
    for r in history {
        let rec = decision_record(&r.tx);
        let commit = DecisionCommit {
            record: &rec,
            transaction: &r.tx,
            idempotency_key: None,
            delta: transaction_delta(&r.tx),
            aggregates: verdict::ports::AggregateWritePlan::NONE,
        };
        st.store.commit(&tenant(), &commit).await.unwrap();
        if r.label.is_some_and(|l| l.fraud) {
            label_fraud(&st.store, &tenant(), &r.tx).await;
        }
    }
    let mut shuffled = batch.to_vec();
    shuffled.reverse();
    let aggregates = |rows: Vec<LabelledTransaction>| {
        let store = st.store.clone();
        async move {
            let mut out = Vec::new();
            for r in &rows {
                let c = store.customer_aggregate(&tenant(), &r.tx.customer_id).await.unwrap();
                let t = store.terminal_aggregate(&tenant(), &r.tx.terminal_id).await.unwrap();
                out.push((c, t));
            }
            out
        }
    };
    let before = aggregates(shuffled.clone()).await;
    assert!(
        before.iter().any(|(_, t)| t.days().iter().any(|(_, c)| c.frauds > 0)),
        "some fraud history"
    );

    let object = upload(
        &st,
        "batches/incoming/acme/stored.csv",
        write(Format::Csv, &shuffled),
        Some("stored"),
    )
    .await;
    let Status::Completed { summary } = run(&deps, s3_event(&object)).await else {
        panic!()
    };
    assert_eq!(
        summary.feature_source,
        Some(verdict::domain::batch::FeatureSource::Stored)
    );
    let got = ResultRow::read_all(Format::Csv, &get(&st, "batches/results/acme/stored.csv").await).unwrap();

    // The API's own pure path on the same aggregates.
    let m = model();
    let want: Vec<ResultRow> = shuffled
        .iter()
        .zip(&before)
        .map(|(r, (c, t))| {
            let request = ScoreRequest {
                inputs: TransactionInputs::from_transaction(&r.tx),
                extras: Default::default(),
            };
            let snap = ScoringSnapshot {
                customer: c.clone(),
                terminal: t.clone(),
                thresholds: Some(thresholds()),
                ..ScoringSnapshot::default()
            };
            let policy = Policy::thresholds(thresholds());
            let d = decide(&m, &policy, &request, &snap, "fp".into());
            ResultRow {
                id: d.id.to_string(),
                decision: d.decision,
                score: d.score,
                risk_score: d.risk_score,
                reasons: d.reasons.iter().map(ReasonOut::from).collect(),
                model_version: d.model.version,
                rules: d.rules,
            }
        })
        .collect();
    assert_eq!(got, want);
    // The file's own history would have scored differently: the option matters.
    let mut sorted = shuffled.clone();
    verdict::domain::io::sort_by_time(&mut sorted);
    assert_ne!(
        expected_from_history(&sorted).iter().map(|r| r.score).sum::<f64>(),
        got.iter().map(|r| r.score).sum::<f64>()
    );
    assert_eq!(
        aggregates(shuffled).await,
        before,
        "batch scoring never writes aggregates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_uploads_are_recorded_failures_or_skipped_never_a_panic() {
    let (st, deps) = setup().await;
    let rows = simulate(5, 3, 1);
    let body = write(Format::Csv, &rows);

    // Unknown format: a failed job with a summary saying why; redelivery changes nothing.
    let txt = upload(&st, "batches/incoming/acme/notes.txt", body.clone(), None).await;
    let Status::Failed { error } = run(&deps, s3_event(&txt)).await else {
        panic!()
    };
    assert!(error.contains("unknown file type"), "{error}");
    let s: Summary = serde_json::from_slice(&get(&st, "batches/results/acme/notes.txt.summary.json").await).unwrap();
    assert_eq!(s.error.as_deref(), Some(error.as_str()));
    assert_eq!(status_of(&st, &txt).await, Some(JobStatus::Failed));
    assert!(matches!(run(&deps, s3_event(&txt)).await, Status::AlreadyFailed { .. }));

    // A feature source that does not exist.
    let live = upload(&st, "batches/incoming/acme/live.csv", body.clone(), Some("live")).await;
    let Status::Failed { error } = run(&deps, s3_event(&live)).await else {
        panic!()
    };
    assert!(error.contains("x-amz-meta-features"), "{error}");

    // A tenant without an active model.
    let other = upload(&st, "batches/incoming/globex/a.csv", body.clone(), None).await;
    let Status::Failed { error } = run(&deps, s3_event(&other)).await else {
        panic!()
    };
    assert!(error.contains("no model is active for tenant globex"), "{error}");
    // That is the tenant's state, not the file's: nothing is recorded, and the same delivery is
    // scored once the tenant has a model.
    assert!(job_state(&st, &other).await.is_none());
    let globex = TenantId::parse("globex").unwrap();
    let serving = st.store.model_pointer(&tenant()).await.unwrap().unwrap();
    let m = model();
    let registration = ModelRegistration {
        version: m.version().into(),
        name: m.artifact.name.clone(),
        sha256: m.sha256.clone(),
        object_key: serving.object_key.clone(),
        source: "verdict".into(),
        status: ModelStatus::Candidate,
        metrics: BTreeMap::new(),
        uploaded_at: Timestamp::now(),
        uploaded_by: "tests".into(),
        trees: m.tree_count() as u32,
    };
    st.store.register_model(&globex, &registration).await.unwrap();
    st.store
        .activate_model(&globex, m.version(), &serving.object_key)
        .await
        .unwrap();
    assert!(matches!(run(&deps, s3_event(&other)).await, Status::Completed { .. }));

    // No valid tenant, or not a batch key: nothing can be recorded, nothing is.
    for key in [
        "batches/incoming/ac#me/a.csv",
        "batches/incoming/a.csv",
        "models/incoming/acme/m.txt",
    ] {
        let o = upload(&st, key, body.clone(), None).await;
        assert!(
            matches!(run(&deps, s3_event(&o)).await, Status::Skipped { .. }),
            "{key}"
        );
    }
    // A deleted object, or an event for an older version of the key.
    let gone = ObjectRef {
        bucket: st.bucket.clone(),
        key: "batches/incoming/acme/gone.csv".into(),
        etag: "0123".into(),
    };
    assert_eq!(run(&deps, s3_event(&gone)).await, Status::Superseded);
    let stale = ObjectRef {
        etag: "not-the-etag".into(),
        ..upload(&st, "batches/incoming/acme/stale.csv", body.clone(), None).await
    };
    assert_eq!(run(&deps, s3_event(&stale)).await, Status::Superseded);
    // An empty file and a header-only file complete with what they have.
    let empty = upload(&st, "batches/incoming/acme/empty.csv", Vec::new(), None).await;
    let Status::Completed { summary } = run(&deps, s3_event(&empty)).await else {
        panic!()
    };
    assert_eq!(summary.counts.rows_rejected, 1);
    let report = String::from_utf8(get(&st, "batches/results/acme/empty.errors.csv").await).unwrap();
    assert!(
        report.contains("1,,\"the file is empty; expected a CSV header\""),
        "{report}"
    );
    // A corrupt gzip: the rows before the damage are scored, the damage is reported.
    let mut broken = gzipped(Format::Csv, &rows);
    let n = broken.len();
    broken.truncate(n / 2);
    let gz = upload(&st, "batches/incoming/acme/broken.csv.gz", broken, None).await;
    let Status::Completed { summary } = run(&deps, s3_event(&gz)).await else {
        panic!()
    };
    assert!(summary.counts.rows_rejected >= 1, "{:?}", summary.counts);
    // Events that are neither S3 events nor resume payloads.
    for bad in [
        serde_json::json!({}),
        serde_json::json!({"resume": {"bucket": 1}}),
        serde_json::json!([1]),
    ] {
        assert!(Event::from_value(bad).is_err());
    }
    assert_eq!(
        BatchFile::parse("batches/incoming/acme/x.csv").unwrap().tenant,
        tenant()
    );
}

/// Sets attributes of a job item directly, to stage what a crashed invocation leaves behind.
async fn poke_job(st: &Stack, object: &ObjectRef, sets: &[(&str, aws_sdk_dynamodb::types::AttributeValue)]) {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    let key = verdict::adapters::dynamodb::Keys::new(&tenant()).job(object);
    let mut req = st
        .dynamodb
        .update_item()
        .table_name(&st.table)
        .key("pk", V::S(key.pk))
        .key("sk", V::S(key.sk));
    let mut expr = Vec::new();
    for (i, (name, value)) in sets.iter().enumerate() {
        expr.push(format!("#a{i} = :v{i}"));
        req = req
            .expression_attribute_names(format!("#a{i}"), *name)
            .expression_attribute_values(format!(":v{i}"), value.clone());
    }
    req.update_expression(format!("SET {}", expr.join(", ")))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_died_while_finishing_finishes_on_redelivery() {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    let (st, deps) = setup().await;
    let (body, _, _) = big_file();
    let object = upload(&st, "batches/incoming/acme/finish.csv", body.clone(), None).await;
    assert!(matches!(run(&deps, s3_event(&object)).await, Status::Completed { .. }));
    let results = get(&st, "batches/results/acme/finish.csv").await;
    // As if it died after completing the multipart uploads but before recording completion:
    // the uploads are gone (completed), the item still says running.
    poke_job(
        &st,
        &object,
        &[
            ("status", V::S("running".into())),
            ("lease_expires_at", V::N("0".into())),
        ],
    )
    .await;
    let Status::Completed { summary } = run(&deps, s3_event(&object)).await else {
        panic!("finishing again")
    };
    assert_eq!(summary.timings.unwrap().invocations, 2);
    assert!(get(&st, "batches/results/acme/finish.csv").await == results);
    assert_eq!(status_of(&st, &object).await, Some(JobStatus::Completed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_leased_to_a_live_invocation_is_left_to_it() {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    let (st, mut deps) = setup().await;
    deps.settings.lease = Duration::from_secs(120);
    let object = upload(
        &st,
        "batches/incoming/acme/busy.csv",
        write(Format::Csv, &simulate(10, 5, 2)),
        None,
    )
    .await;
    // Stage a job that another invocation holds, with time left on its lease.
    assert!(matches!(run(&deps, s3_event(&object)).await, Status::Completed { .. }));
    poke_job(
        &st,
        &object,
        &[
            ("status", V::S("running".into())),
            ("lease_owner", V::S("someone-else".into())),
            ("lease_expires_at", V::N((Timestamp::now().unix() + 120).to_string())),
        ],
    )
    .await;
    // Not enough time left to wait the lease out: it says so and does nothing.
    let outcome = batch_score::handle(&deps, s3_event(&object), SystemTime::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(outcome.objects[0].status, Status::Busy);
    let Some(job) = job_state(&st, &object).await.filter(|j| j.status == JobStatus::Running) else {
        panic!()
    };
    assert_eq!(job.lease_owner.as_deref(), Some("someone-else"));
    // Once the lease has run out, the next delivery takes the job over.
    poke_job(
        &st,
        &object,
        &[("lease_expires_at", V::N((Timestamp::now().unix() - 1).to_string()))],
    )
    .await;
    assert!(matches!(run(&deps, s3_event(&object)).await, Status::Completed { .. }));
}

/// The hits of one decision, as comparable across paths: the local file's ruleset is version 0
/// with rules at version 1, the stored one has its own numbers.
fn hits_of(
    rules: &Option<verdict::domain::rules::RulesApplied>,
) -> Vec<(String, &'static str, &'static str, &'static str)> {
    rules
        .iter()
        .flat_map(|r| &r.hits)
        .map(|h| {
            (
                h.rule_id.to_string(),
                h.action.as_str(),
                h.mode.as_str(),
                if h.status == verdict::domain::rules::HitStatus::Matched {
                    "matched"
                } else {
                    "error"
                },
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_the_api_and_the_cli_apply_the_same_ruleset_alike() {
    use verdict::app::rules::{EntryInput, RuleRef, RulesService, RulesetDraft};
    use verdict::domain::decision::RequestExtras;
    use verdict::domain::rules::{ListKind, RuleSpec};
    use verdict::domain::{ListName, RuleId};
    use verdict::offline::rules_file::{load_lists, load_ruleset, ListArg};

    let (st, deps) = setup().await;
    // The ruleset as a file (the CLI's input) and, from the same specs, stored and active.
    let dir = std::env::temp_dir().join(format!("verdict-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules_json = serde_json::json!({"mode": "ALL_MATCHED", "rules": [
        {"id": "blocked_email", "name": "Blocked email", "expression": "has(tx.email) && in_list(tx.email, 'blocked')", "action": "block"},
        {"id": "big", "name": "Big", "expression": "tx.amount > 15000", "action": "review"},
        {"id": "risky_country", "name": "Country", "expression": "has(tx.country) && tx.country == 'NG'", "action": "tag"},
        {"id": "mid", "name": "Mid", "expression": "tx.amount > 5000", "action": "block", "mode": "shadow"},
        {"id": "channel", "name": "Channel", "expression": "tx.metadata['channel'] == 'app'", "action": "review", "mode": "shadow"}
    ]});
    let rules_path = dir.join("rules.json");
    std::fs::write(&rules_path, rules_json.to_string()).unwrap();
    let list_path = dir.join("blocked.txt");
    std::fs::write(
        &list_path,
        "value,expires_at,note\nbad@example.com,,chargeback\nWORSE@example.com\n",
    )
    .unwrap();

    let service = RulesService::new(&st.store);
    let t = tenant();
    service
        .create_list(
            &t,
            "tests",
            ListName::parse("blocked").unwrap(),
            ListKind::Email,
            String::new(),
        )
        .await
        .unwrap();
    let values = ["bad@example.com", "WORSE@example.com"]
        .map(|v| EntryInput {
            value: v.into(),
            expires_at: None,
            note: None,
        })
        .to_vec();
    service
        .add_entries(&t, "tests", &ListName::parse("blocked").unwrap(), values)
        .await
        .unwrap();
    let specs: Vec<RuleSpec> = serde_json::from_value(rules_json["rules"].clone()).unwrap();
    for spec in &specs {
        service.save_rule(&t, "tests", spec.clone()).await.unwrap();
    }
    let draft = RulesetDraft {
        mode: verdict::domain::rules::MatchMode::AllMatched,
        description: String::new(),
        rules: specs
            .iter()
            .map(|s| RuleRef {
                id: RuleId::parse(s.id.as_str()).unwrap(),
                version: None,
            })
            .collect(),
    };
    let rs = service.create_ruleset(&t, "tests", draft).await.unwrap();
    service.publish(&t, "tests", rs.version).await.unwrap();
    service.activate(&t, "tests", rs.version, None).await.unwrap();

    // Rows with the fields the rules read.
    let mut rows = simulate(30, 3, 5);
    rows.truncate(60);
    for (i, r) in rows.iter_mut().enumerate() {
        let mut extras = RequestExtras::default();
        match i % 4 {
            0 => extras.set_text("email", "Bad@Example.com").unwrap(),
            1 => extras.set_text("country", "NG").unwrap(),
            2 => extras.add_metadata("channel", "app").unwrap(),
            _ => {}
        }
        r.extras = extras.boxed();
    }

    // Batch scoring of the file.
    let object = upload(
        &st,
        &format!("batches/incoming/{TENANT}/rules.ndjson"),
        write(Format::Ndjson, &rows),
        None,
    )
    .await;
    let status = run(&deps, s3_event(&object)).await;
    let Status::Completed { summary } = status else {
        panic!("{status:?}")
    };
    assert_eq!(
        summary.policy_version.as_deref(),
        Some(Policy::version_of(thresholds(), Some(rs.version)).as_str()),
        "the summary names the pinned ruleset"
    );
    let results = ResultRow::read_all(
        Format::Ndjson,
        &get(&st, &format!("batches/results/{TENANT}/rules.ndjson")).await,
    )
    .unwrap();
    assert_eq!(results.len(), rows.len());
    assert!(results
        .iter()
        .all(|r| r.rules.as_ref().map(|a| a.ruleset_version) == Some(rs.version)));

    // The CLI's path: the file's ruleset and list, the one pipeline.
    let (_, compiled) = load_ruleset(&rules_path).unwrap();
    let lists = load_lists(&[format!("blocked=email:{}", list_path.display())
        .parse::<ListArg>()
        .unwrap()])
    .unwrap();
    let policy = Policy::with_rules(thresholds(), Arc::new(compiled), Arc::new(lists));
    let m = model();
    let mut history = OfflineFeatures::new();

    // The API's path: the same transactions posted to the real handler.
    let app = ::api::App::new(st.store.clone(), st.blobs.clone(), None);
    let key = verdict::domain::auth::ApiKey::generate();
    st.store
        .put_key(
            &key.hash(),
            &verdict::domain::auth::KeyRecord {
                key_id: key.key_id(),
                tenant: t.clone(),
                scopes: verdict::domain::auth::Scope::parse_list("transactions:write").unwrap(),
                created_at: 0,
                expires_at: None,
                revoked_at: None,
            },
        )
        .await
        .unwrap();
    let mut blocked = 0;
    for (row, result) in rows.iter().zip(&results) {
        let x = history.push(&row.tx, None);
        let cli = verdict::domain::pipeline::decide(&m, &policy, &row.tx, row.extras(), &x);
        let mut body =
            serde_json::to_value(verdict::domain::decision::TransactionInputs::from_transaction(&row.tx)).unwrap();
        for (k, v) in serde_json::to_value(row.extras()).unwrap().as_object().unwrap() {
            body[k] = v.clone();
        }
        let event = verdict_integration::api::Event::load("post-transaction")
            .without_header("idempotency-key")
            .bearer(&key)
            .json(&body);
        let reply = verdict_integration::api::send(&app, &event).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let api_rules: Option<verdict::domain::rules::RulesApplied> =
            serde_json::from_value(reply.body["rules"].clone()).unwrap();

        let want = hits_of(&result.rules);
        assert_eq!(hits_of(&cli.rules), want, "cli vs batch, {}", row.tx.id);
        assert_eq!(hits_of(&api_rules), want, "api vs batch, {}", row.tx.id);
        if want.iter().any(|h| h.0 == "blocked_email") {
            blocked += 1;
            for d in [
                result.decision.as_str(),
                cli.decision.as_str(),
                reply.body["decision"].as_str().unwrap(),
            ] {
                assert_eq!(d, "block", "{}", row.tx.id);
            }
        }
    }
    assert_eq!(
        blocked, 15,
        "every fourth row has the blocked email, matched whatever its case"
    );
}
