//! End-to-end batch benchmark against moto: a simulated file is uploaded to S3, the real handler
//! scores it (object in moto → results in moto), and the process reports rows/s, rows per
//! minute per vCPU (from the process's CPU time, not wall time) and peak RSS (VmHWM).
//!
//! ```text
//! cargo run --release -p batch-score --example bench -- 2000000 [csv|ndjson]
//! ```
//!
//! Moto comes from `<repo>/.venv` (`make venv`), or `VERDICT_TEST_ENDPOINT` names a running one.
//! The file and the model are made by a child process, so that the simulation's memory does not
//! count in this process's peak.

use aws_sdk_s3::primitives::ByteStream;
use batch_score::{Deps, Event, Reinvoke, ReinvokeError, ResumeRequest, Status};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use verdict::domain::features::OfflineFeatures;
use verdict::domain::io::TransactionWriter;
use verdict::domain::model::train::{train, TrainParams};
use verdict::domain::model::Model;
use verdict::domain::registry::{ModelRegistration, ModelStatus};
use verdict::domain::TenantId;
use verdict::offline::sim::{SimConfig, Simulation};
use verdict_integration::Stack;

/// Follows its own hand-overs, as Lambda would.
#[derive(Default)]
struct Queue(Mutex<Vec<ResumeRequest>>);

impl Reinvoke for Queue {
    async fn reinvoke(&self, payload: &serde_json::Value) -> Result<(), ReinvokeError> {
        let failed = |reason: String| ReinvokeError {
            function: "bench".into(),
            reason,
        };
        let request = serde_json::from_value(payload.clone()).map_err(|e| failed(e.to_string()))?;
        self.0.lock().map_err(|e| failed(e.to_string()))?.push(request);
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--generate") {
        return generate(Path::new(&args[2]), args[3].parse().expect("rows"), &args[4]);
    }
    let rows: usize = args
        .get(1)
        .map_or(2_000_000, |a| a.replace('_', "").parse().expect("rows: a number"));
    let format = match args.get(2).map(String::as_str) {
        None | Some("csv") => "csv",
        Some("ndjson") => "ndjson",
        Some(other) => panic!("format {other:?}: csv or ndjson"),
    };
    let dir = std::env::temp_dir().join(format!("verdict-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(format!("bench.{format}"));
    let t = Instant::now();
    let status = Command::new(std::env::current_exe().expect("own path"))
        .arg("--generate")
        .arg(&file)
        .arg(rows.to_string())
        .arg(dir.join("model.vmodel"))
        .status()
        .expect("run the generator");
    assert!(status.success(), "the generator failed");
    println!(
        "generated {rows} rows ({:.1} MB) and a model in {:.1} s",
        mb(std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0)),
        t.elapsed().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench(&file, &dir.join("model.vmodel"), rows as u64, format));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The child: simulate, write the file, train a model of the usual shape on the first rows.
fn generate(file: &Path, rows: usize, model_path: &str) {
    // The handbook's population; enough days for `rows`.
    let cfg = SimConfig {
        days: (rows / 8_000 + 45) as u32,
        ..SimConfig::default()
    };
    let sim = Simulation::run(&cfg, &mut |_, _| {}).expect("simulate");
    assert!(
        sim.len() >= rows,
        "the simulation made {} rows, fewer than {rows}",
        sim.len()
    );
    let mut w = TransactionWriter::create(file).expect("create the file");
    let mut history = OfflineFeatures::new();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (i, t) in sim.iter().take(rows).enumerate() {
        w.write(&t).expect("write");
        // Train on days 20..50: the features need history behind them.
        let day = i as f64 / rows as f64 * f64::from(cfg.days);
        let f = history.push(&t.tx, t.label);
        if (20.0..50.0).contains(&day) {
            x.push(f);
            y.push(t.label.is_some_and(|l| l.fraud));
        }
    }
    w.finish().expect("finish the file");
    let artifact = train("bench-gbdt", &x, &y, &TrainParams::default(), BTreeMap::new()).expect("train");
    std::fs::write(model_path, artifact.to_bytes()).expect("write the model");
}

async fn bench(file: &Path, model_path: &PathBuf, rows: u64, format: &str) {
    let st = Stack::new().await;
    let tenant = TenantId::parse("bench").expect("tenant");
    let bytes = std::fs::read(model_path).expect("model");
    let model = Model::from_bytes("bench.vmodel", &bytes).expect("model loads");
    let object_key = format!("models/active/bench/{}.vmodel", model.version());
    st.blobs.put(&object_key, bytes).await.expect("upload the model");
    st.store
        .register_model(
            &tenant,
            &ModelRegistration {
                version: model.version().into(),
                name: model.artifact.name.clone(),
                sha256: model.sha256.clone(),
                object_key: object_key.clone(),
                source: "bench".into(),
                status: ModelStatus::Candidate,
                metrics: BTreeMap::new(),
                uploaded_at: verdict::domain::Timestamp::now(),
                uploaded_by: "bench".into(),
                trees: model.tree_count() as u32,
            },
        )
        .await
        .expect("register");
    st.store
        .activate_model(&tenant, model.version(), &object_key)
        .await
        .expect("activate");
    drop(model);

    let key = format!("batches/incoming/bench/bench.{format}");
    let t = Instant::now();
    let body = ByteStream::from_path(file).await.expect("open the file");
    let put = st
        .s3
        .put_object()
        .bucket(&st.bucket)
        .key(&key)
        .body(body)
        .send()
        .await
        .expect("upload the file");
    let etag = put.e_tag().unwrap_or_default().trim_matches('"').to_owned();
    println!(
        "uploaded s3://{}/{key} in {:.1} s",
        st.bucket,
        t.elapsed().as_secs_f64()
    );

    let deps = Deps::new(st.store.clone(), st.s3.clone(), &st.bucket, Queue::default());
    let mut v: serde_json::Value =
        serde_json::from_str(include_str!("../../../events/s3/batch-upload.json")).expect("event");
    v["Records"][0]["s3"]["bucket"]["name"] = st.bucket.clone().into();
    v["Records"][0]["s3"]["object"]["key"] = key.clone().into();
    v["Records"][0]["s3"]["object"]["eTag"] = etag.into();
    let mut event = Event::from_value(v).expect("event parses");

    let rss_before = status_kb("VmRSS");
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let mut invocations = 0;
    let summary = loop {
        invocations += 1;
        // Lambda's longest run.
        let deadline = SystemTime::now() + Duration::from_secs(900);
        let outcome = batch_score::handle(&deps, event, deadline).await.expect("handler");
        match outcome.objects.into_iter().next().map(|o| o.status) {
            Some(Status::Completed { summary }) => break summary,
            Some(Status::HandedOver { .. }) => {
                let next = deps.reinvoker.0.lock().expect("queue").pop().expect("a resume payload");
                event = Event::Resume(next);
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(summary.counts.rows_read, rows, "every row read");
    assert_eq!(summary.counts.rows_rejected, 0);
    let results = st
        .s3
        .head_object()
        .bucket(&st.bucket)
        .key(summary.results_key.as_deref().unwrap_or_default())
        .send()
        .await
        .expect("results exist");
    let out_bytes = results.content_length().unwrap_or(0) as u64;
    let parts = results
        .e_tag()
        .and_then(|e| e.trim_matches('"').rsplit_once('-'))
        .map_or(1, |(_, n)| n.parse().unwrap_or(1));

    println!("--- batch-score end to end (moto), {format}, {rows} rows ---");
    println!("invocations          {invocations}");
    println!("results              {:.1} MB in {parts} parts", mb(out_bytes));
    println!("decisions            {:?}", summary.counts);
    println!("wall                 {wall:.2} s  ->  {:.0} rows/s", rows as f64 / wall);
    println!(
        "process CPU          {cpu:.2} s  ->  {:.2} M rows per minute per vCPU",
        rows as f64 / (cpu / 60.0) / 1e6
    );
    println!("RSS before handler   {:.1} MB", rss_before as f64 / 1024.0);
    println!("peak RSS (VmHWM)     {:.1} MB", status_kb("VmHWM") as f64 / 1024.0);
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// User plus system CPU time of this process, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `kB` line of /proc/self/status, e.g. VmHWM (peak resident set).
fn status_kb(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
