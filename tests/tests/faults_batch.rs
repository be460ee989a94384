//! batch-score's real handler (events/s3/batch-upload.json) under injected DynamoDB and S3 faults
//! (tests/fault_proxy.py), retried as Lambda retries a failed invocation and continued through
//! its own hand-overs: the same results, error report and counts as a fault-free run of the same
//! file, every row exactly once.

use aws_sdk_s3::primitives::ByteStream;
use batch_score::{Deps, Event, Outcome, Reinvoke, ReinvokeError, ResumeRequest, Settings, Status};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use verdict::domain::batch::{ObjectRef, ResultRow, Summary};
use verdict::domain::io::{Format, TransactionWriter};
use verdict::domain::model::import::{import, ImportFormat};
use verdict::domain::model::Model;
use verdict::domain::policy::Thresholds;
use verdict::domain::registry::{ModelRegistration, ModelStatus};
use verdict::domain::{LabelledTransaction, TenantId, Timestamp};
use verdict::offline::sim::{SimConfig, Simulation};
use verdict_integration::faults::Proxy;
use verdict_integration::{repo_root, Stack};

const TENANT: &str = "acme";

fn tenant() -> TenantId {
    TenantId::parse(TENANT).unwrap()
}

fn model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let bytes = std::fs::read(repo_root().join("fixtures/lightgbm_model.txt")).unwrap();
            let artifact = import(ImportFormat::Lightgbm, "lightgbm_model.txt", &bytes).unwrap();
            let sealed = Model::seal(artifact).unwrap();
            Arc::new(Model::from_bytes("lightgbm_model.vmodel", &sealed.artifact.to_bytes()).unwrap())
        })
        .clone()
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

/// The model active for the tenant (set up directly on moto).
async fn activate(st: &Stack) {
    let m = model();
    let object_key = format!("models/active/{TENANT}/{}.vmodel", m.version());
    st.blobs.put(&object_key, m.artifact.to_bytes()).await.unwrap();
    let registration = ModelRegistration {
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
    };
    st.store.register_model(&tenant(), &registration).await.unwrap();
    st.store
        .activate_model(&tenant(), m.version(), &object_key)
        .await
        .unwrap();
    st.store
        .set_thresholds(&tenant(), Thresholds::new(0.05, 0.5).unwrap())
        .await
        .unwrap();
}

fn deps(store: verdict::adapters::DynamoStore, s3: aws_sdk_s3::Client, bucket: &str) -> Deps<Recorder> {
    let mut deps = Deps::new(store, s3, bucket, Recorder::default());
    deps.settings = Settings {
        part_size: 0, // the 5 MiB minimum: as many parts as possible
        lease: Duration::from_secs(2),
        handover_margin: Duration::ZERO,
        ..Settings::default()
    };
    deps
}

/// About 20k good rows (results of more than one 5 MiB part with the error report) and a bad
/// row after every 3rd good one.
fn file() -> &'static Vec<u8> {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let cfg = SimConfig {
            customers: 300,
            terminals: 600,
            days: 40,
            seed: 13,
            ..SimConfig::default()
        };
        let rows: Vec<LabelledTransaction> = Simulation::run(&cfg, &mut |_, _| {}).unwrap().iter().collect();
        let mut w = TransactionWriter::new("mem", Format::Csv, Vec::new()).unwrap();
        for r in &rows {
            w.write(r).unwrap();
        }
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let mut out = Vec::new();
        let mut lines = text.lines();
        writeln!(out, "{}", lines.next().unwrap()).unwrap();
        for (i, good) in lines.enumerate() {
            writeln!(out, "{good}").unwrap();
            if i % 3 == 0 {
                writeln!(out, "bad-{i},2018-04-01T00:00:00Z,lots,EUR,c1,t1,,").unwrap();
            }
        }
        out
    })
}

async fn upload(st: &Stack, key: &str, body: Vec<u8>) -> ObjectRef {
    let out = st
        .s3
        .put_object()
        .bucket(&st.bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
    ObjectRef {
        bucket: st.bucket.clone(),
        key: key.into(),
        etag: out.e_tag().unwrap().trim_matches('"').into(),
    }
}

fn s3_event(object: &ObjectRef) -> Event {
    let mut v: serde_json::Value = serde_json::from_str(include_str!("../../events/s3/batch-upload.json")).unwrap();
    let s3 = &mut v["Records"][0]["s3"];
    s3["bucket"]["name"] = object.bucket.clone().into();
    s3["bucket"]["arn"] = format!("arn:aws:s3:::{}", object.bucket).into();
    s3["object"]["key"] = object.key.clone().into();
    s3["object"]["eTag"] = object.etag.clone().into();
    Event::from_value(v).unwrap()
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

#[derive(Debug, Default)]
struct Runs {
    invocations: u32,
    errors: Vec<String>,
    handovers: u32,
    busy: u32,
}

/// Delivers the S3 event, then whatever the function asks: a resume payload after a hand-over,
/// the same event again after a failed invocation (Lambda's retry), until the job completes.
/// Every invocation's deadline is `budget` away: with none, it hands over after its first
/// checkpoint.
async fn until_done(deps: &Deps<Recorder>, object: &ObjectRef, budget: Duration, runs: &mut Runs) -> Summary {
    let mut event = s3_event(object);
    let mut failed = false;
    for _ in 0..300 {
        runs.invocations += 1;
        let deadline = SystemTime::now() + budget;
        let result = batch_score::handle(deps, event.clone(), deadline).await;
        let after_failure = std::mem::replace(&mut failed, result.is_err());
        match result {
            Err(e) => {
                runs.errors.push(e.to_string().chars().take(120).collect());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Outcome { mut objects }) => match objects.remove(0).status {
                Status::Completed { summary } => return *summary,
                Status::HandedOver { .. } => {
                    runs.handovers += 1;
                    let mut queued = deps.reinvoker.take();
                    assert_eq!(queued.len(), 1, "one re-invocation per hand-over");
                    event = Event::Resume(queued.remove(0));
                }
                // Only a failed invocation whose release was faulted too leaves a lease behind
                // (a real one waits it out; these have no time to). Otherwise nothing else holds
                // the job, and Lambda would not retry a success: the job would never finish.
                Status::Busy => {
                    assert!(after_failure, "Busy with nothing else holding the job: {runs:?}");
                    runs.busy += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => panic!("unexpected {other:?} after {runs:?}"),
            },
        }
    }
    panic!("no completion: {runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_under_faults_writes_what_a_fault_free_run_writes() {
    let started = Instant::now();
    let st = Stack::new().await;
    activate(&st).await;
    let body = file().clone();

    let clean_deps = deps(st.store.clone(), st.s3.clone(), &st.bucket);
    let clean = upload(&st, "batches/incoming/acme/clean.csv", body.clone()).await;
    let mut runs = Runs::default();
    let clean_summary = until_done(&clean_deps, &clean, Duration::from_secs(600), &mut runs).await;
    assert_eq!(runs.invocations, 1, "{runs:?}");
    let clean_results = get(&st, "batches/results/acme/clean.csv").await;
    let clean_errors = get(&st, "batches/results/acme/clean.errors.csv").await;
    let rows = ResultRow::read_all(Format::Csv, &clean_results).unwrap();
    assert_eq!(
        clean_summary.counts.rows_read - clean_summary.counts.rows_rejected,
        rows.len() as u64
    );
    assert!(clean_results.len() + clean_errors.len() > 5 << 20, "more than one part");
    println!(
        "clean run: {} rows, {} bytes of results, in {:.1?}",
        rows.len(),
        clean_results.len(),
        started.elapsed()
    );

    let proxy = Proxy::start();
    let faulted = proxy.clients(&st).await;
    let faulted_deps = deps(faulted.store.clone(), faulted.s3.clone(), &st.bucket);
    // Five rounds, each on its own copy of the file and with its own seed; about 25% of DynamoDB
    // calls and 30% of S3 calls faulted, so some calls exhaust the SDK's attempts and whole
    // invocations fail and are delivered again.
    let mut failed_invocations = 0;
    for round in 0..5u64 {
        let key = format!("batches/incoming/acme/faulted-{round}.csv");
        let object = upload(&st, &key, body.clone()).await;
        proxy.reset_stats();
        proxy.configure(json!({
            "seed": 21 + round,
            "delay_ms": 1200,
            "rates": {
                "dynamodb:*": {
                    "throughput": 0.04, "throttling": 0.04, "internal": 0.04, "reset": 0.04, "drop": 0.06, "delay": 0.02
                },
                "s3:*": {"throttling": 0.075, "internal": 0.075, "reset": 0.075, "drop": 0.075}
            }
        }));
        let mut runs = Runs::default();
        let summary = until_done(&faulted_deps, &object, Duration::ZERO, &mut runs).await;
        proxy.calm();
        failed_invocations += runs.errors.len();
        println!("round {round}: {runs:?}");
        println!("round {round} faults by kind: {:?}", proxy.faults_by_kind());
        if round == 0 {
            println!(
                "round 0 fault stats: {}",
                serde_json::to_string_pretty(&proxy.stats()["stats"]).unwrap()
            );
        }

        let results = get(&st, &format!("batches/results/acme/faulted-{round}.csv")).await;
        let got = ResultRow::read_all(Format::Csv, &results).unwrap();
        assert_eq!(got.len(), rows.len(), "round {round}: no row lost or doubled");
        for (i, (g, w)) in got.iter().zip(&rows).enumerate() {
            assert_eq!(g, w, "round {round}: row {i}");
        }
        assert!(results == clean_results, "round {round}: byte-identical results");
        assert!(
            get(&st, &format!("batches/results/acme/faulted-{round}.errors.csv")).await == clean_errors,
            "round {round}: identical error report"
        );
        assert_eq!(summary.counts, clean_summary.counts, "round {round}");
    }
    assert!(
        failed_invocations > 0,
        "no invocation failed: the retry path went untested"
    );
    println!("took {:.1?}", started.elapsed());
}

/// Every first attempt of an UpdateItem is applied and its answer lost, its retry answered: the
/// SDK retries, and the retried checkpoint or finish finds its own write in place of the state
/// its condition expects. That is not a lost lease: the invocation must carry on and complete,
/// where it used to stop as `Busy`, successfully, so that nobody would ever retry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_or_finish_whose_answer_was_lost_is_not_taken_for_a_lost_lease() {
    let st = Stack::new().await;
    activate(&st).await;
    let proxy = Proxy::start();
    let faulted = proxy.clients(&st).await;
    let deps = deps(faulted.store.clone(), faulted.s3.clone(), &st.bucket);
    let body = file().clone();
    let object = upload(&st, "batches/incoming/acme/lost-answers.csv", body).await;
    let script: Vec<&str> = std::iter::repeat(["drop", "none"]).take(50).flatten().collect();
    proxy.configure(json!({"next": {"UpdateItem": script}}));
    let outcome = batch_score::handle(&deps, s3_event(&object), SystemTime::now() + Duration::from_secs(600))
        .await
        .expect("the invocation succeeds");
    let stats = proxy.calm();
    let drops = stats["stats"]["ops"]["UpdateItem"]["faults"]["drop"]
        .as_u64()
        .unwrap_or(0);
    println!("UpdateItem answers dropped: {drops}");
    let status = &outcome.objects[0].status;
    assert!(
        matches!(status, Status::Completed { .. }),
        "{status:?} after {drops} lost answers"
    );
    assert!(drops >= 2, "checkpoints and the finish were hit: {drops}");
    let results = get(&st, "batches/results/acme/lost-answers.csv").await;
    assert!(!results.is_empty());
}
