//! The integration-test harness: the real adapters against a local moto server.
//!
//! - `VERDICT_TEST_ENDPOINT` (e.g. `http://127.0.0.1:5000`) points the tests at a running server.
//! - Otherwise the first test of a binary starts moto on a free port of 127.0.0.1 from
//!   `<repo>/.venv` (install it with `make venv`), through `tests/moto_server.py`, which is
//!   `moto_server` handling one request at a time (see there why). It runs under a small `sh` guard whose stdin is a
//!   pipe held by this process: when the test binary exits, however it exits, the pipe closes, the
//!   guard's `read` returns and it kills moto. Ctrl-C reaches both, as they share the terminal's
//!   process group.
//! - Every [`Stack`] gets its own table and bucket (random suffix), so tests run in parallel.
//! - [`faults::Proxy`] starts `tests/fault_proxy.py` in front of that moto, under the same guard,
//!   for the tests that inject faults; the others talk to moto directly.

pub mod api;
pub mod events;
pub mod faults;
pub mod oidc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Credentials, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use verdict::adapters::dynamodb::create_table_if_missing;
use verdict::adapters::{s3_client, DynamoStore, S3Blobs};

/// A running moto server and the pipe that keeps its guard alive.
struct Moto {
    endpoint: String,
    _guarded: Guarded,
}

static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();
static ENDPOINT: OnceLock<String> = OnceLock::new();

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// The endpoint every client of this test binary talks to; starts moto on first use.
pub fn endpoint() -> String {
    ENDPOINT
        .get_or_init(|| match std::env::var("VERDICT_TEST_ENDPOINT") {
            Ok(e) if !e.trim().is_empty() => e.trim().trim_end_matches('/').to_owned(),
            _ => match MOTO.get_or_init(start_moto) {
                Ok(m) => m.endpoint.clone(),
                Err(e) => panic!("{e}"),
            },
        })
        .clone()
}

/// Runs `$2…` with its output in `$1`, and kills it when this process's end of stdin closes.
const GUARD: &str = r#"
log="$1"
shift
"$@" >"$log" 2>&1 &
pid=$!
read -r _ignored
kill "$pid" 2>/dev/null
# moto's SIGTERM handler waits for its busy threads: give it 3 s, then kill it.
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.3; done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -f "$log"
"#;

/// A child process under the guard, and the pipe that keeps it alive.
pub(crate) struct Guarded {
    guard: Child,
    lifeline: Option<ChildStdin>,
}

impl Drop for Guarded {
    /// Closing the pipe makes the guard kill its child; waiting reaps the guard.
    fn drop(&mut self) {
        drop(self.lifeline.take());
        let _ = self.guard.wait();
    }
}

pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

/// Starts `args` under the guard and waits until it listens on `port`.
pub(crate) fn spawn_guarded(what: &str, args: &[&std::ffi::OsStr], port: u16, log: &Path) -> Result<Guarded, String> {
    let mut guard = Command::new("/bin/sh")
        .arg("-c")
        .arg(GUARD)
        .arg(format!("verdict-{what}-guard"))
        .arg(log)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let lifeline = guard.stdin.take().ok_or(format!("no stdin pipe to the {what} guard"))?;
    let child = Guarded {
        guard,
        lifeline: Some(lifeline),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    let _ = std::fs::File::open(log).and_then(|mut f| f.read_to_string(&mut out));
    Err(format!(
        "{what} did not answer on port {port} within 60 s; its log:\n{out}"
    ))
}

fn start_moto() -> Result<Moto, String> {
    let python = repo_root().join(".venv/bin/python");
    let script = repo_root().join("tests/moto_server.py");
    let bin = repo_root().join(".venv/bin/moto_server");
    if !bin.exists() {
        return Err(format!(
            "{} is missing: run `make venv` (python3 -m venv .venv && .venv/bin/pip install -r \
             requirements-dev.txt), or set VERDICT_TEST_ENDPOINT to a running moto server",
            bin.display()
        ));
    }
    let port = free_port()?;
    let log = std::env::temp_dir().join(format!("verdict-moto-{port}.log"));
    let port_arg = port.to_string();
    let guarded = spawn_guarded(
        "moto",
        &[
            python.as_os_str(),
            script.as_os_str(),
            "-H".as_ref(),
            "127.0.0.1".as_ref(),
            "-p".as_ref(),
            port_arg.as_ref(),
        ],
        port,
        &log,
    )?;
    Ok(Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        _guarded: guarded,
    })
}

/// The SDK configuration for the local stack: dummy credentials, us-east-1.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::from_static("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "verdict-tests"))
        .load()
        .await
}

/// Records every DynamoDB request sent (each attempt), by operation name.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<String>>>);

impl CallLog {
    /// The operations since the last call, e.g. `["BatchGetItem"]`.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "verdict-call-log"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // DynamoDB's JSON protocol names the operation in X-Amz-Target: DynamoDB_20120810.<Op>.
        let target = context.request().headers().get("x-amz-target").unwrap_or("?");
        let op = target.rsplit('.').next().unwrap_or(target).to_owned();
        self.0.lock().unwrap().push(op);
        Ok(())
    }
}

/// A fresh table and bucket on the local stack, with the adapters over them.
pub struct Stack {
    pub config: SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub table: String,
    pub bucket: String,
    pub store: DynamoStore,
    pub blobs: S3Blobs,
    /// The DynamoDB requests `store` made.
    pub calls: CallLog,
}

pub fn unique_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Stack {
    pub async fn new() -> Stack {
        let config = sdk_config().await;
        let calls = CallLog::default();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&config)
                .interceptor(calls.clone())
                .build(),
        );
        let s3 = s3_client(&config);
        let suffix = unique_suffix();
        let table = format!("verdict-test-{suffix}");
        let bucket = format!("verdict-test-{suffix}");
        assert!(
            create_table_if_missing(&dynamodb, &table).await.expect("create table"),
            "table {table} existed already"
        );
        let blobs = S3Blobs::new(s3.clone(), &bucket);
        assert!(blobs.create_bucket_if_missing().await.expect("create bucket"));
        calls.take();
        Stack {
            store: DynamoStore::new(dynamodb.clone(), &table),
            config,
            dynamodb,
            s3,
            table,
            bucket,
            blobs,
            calls,
        }
    }
}

impl Stack {
    /// An item as stored, attribute by attribute, for checks of the stored shape.
    pub async fn raw_item(
        &self,
        key: &verdict::adapters::dynamodb::ItemKey,
    ) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
        self.dynamodb
            .get_item()
            .table_name(&self.table)
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(key.pk.clone()))
            .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(key.sk.clone()))
            .send()
            .await
            .expect("GetItem")
            .item
            .expect("the item exists")
    }
}

/// Labels a committed transaction fraud through the labels path (`write_label`): the fraud
/// counter of its day goes up on its customer and its terminal.
pub async fn label_fraud(store: &DynamoStore, tenant: &verdict::domain::TenantId, tx: &verdict::Transaction) {
    use verdict::adapters::dynamodb::{LabelWrite, LabelWriteOutcome};
    use verdict::domain::labels::{LabelValue, StoredLabel};
    let label = StoredLabel {
        value: LabelValue::Fraud,
        source: "test".into(),
        labelled_at: tx.occurred_at,
        file: None,
        etag: None,
        line: None,
        note: None,
    };
    let write = LabelWrite {
        label: &label,
        previous: None,
        fraud_delta: 1,
        day: tx.occurred_at.epoch_day(),
        customer: Some(&tx.customer_id),
        terminal: Some(&tx.terminal_id),
    };
    let outcome = store.write_label(tenant, &tx.id, &write).await.expect("write_label");
    assert_eq!(outcome, LabelWriteOutcome::Written, "label of {}", tx.id);
}

/// Stores an approve decision for `t` with no history, as the api would commit it (shard 0):
/// the label tests' stand-in for a scored transaction.
pub async fn seed_decision(store: &DynamoStore, tenant: &verdict::domain::TenantId, t: &verdict::Transaction) {
    use verdict::domain::decision::{features_map, Decision, DecisionRecord, ModelRef, TransactionInputs};
    use verdict::domain::features::{self, transaction_delta, EntityAggregate};
    use verdict::ports::{AggregateWritePlan, DecisionCommit, DecisionStore};
    let x = features::compute(t, &EntityAggregate::default(), &EntityAggregate::default());
    let record = DecisionRecord {
        id: t.id.clone(),
        decision: Decision::Approve,
        score: 0.01,
        risk_score: 1,
        reasons: vec![],
        model: ModelRef {
            id: "m".into(),
            version: "0123456789abcdef".into(),
        },
        policy_version: None,
        rules: None,
        features: features_map(&x),
        inputs: serde_json::to_value(TransactionInputs::from_transaction(t))
            .unwrap()
            .into(),
        request_fingerprint: format!("fp-{}", t.id),
        created_at: verdict::domain::Timestamp::now(),
        occurred_at: t.occurred_at,
        customer_id: t.customer_id.clone(),
        request_id: None,
        processing_ms: None,
        label: None,
    };
    let commit = DecisionCommit {
        record: &record,
        transaction: t,
        idempotency_key: None,
        delta: transaction_delta(t),
        aggregates: AggregateWritePlan::NONE,
    };
    store.commit(tenant, &commit).await.unwrap();
}

/// `events/s3/labels-upload.json` naming this object.
pub fn labels_event(bucket: &str, key: &str, etag: &str, size: usize) -> labels::S3Event {
    let raw = std::fs::read_to_string(repo_root().join("events/s3/labels-upload.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let r = &mut v["Records"][0]["s3"];
    r["bucket"]["name"] = bucket.into();
    r["bucket"]["arn"] = format!("arn:aws:s3:::{bucket}").into();
    r["object"]["key"] = key.into();
    r["object"]["eTag"] = etag.into();
    r["object"]["size"] = size.into();
    serde_json::from_value(v).unwrap()
}
