//! scripts/stream_poller.py, `make dev`'s stand-in for Lambda's DynamoDB-stream event source
//! mapping: it reads the table's stream on moto and invokes a function with Lambda's event shape,
//! honouring `batchItemFailures`. The function here is a tiny HTTP stand-in inside this test (the
//! real `functions/events` runs under `cargo lambda watch` in `make dev`), which records every
//! invocation and answers with the failures a test asks for.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use verdict::domain::features::{DayCounter, EntityAggregate};
use verdict::domain::{CustomerId, TenantId};
use verdict::ports::AggregateSeeding;
use verdict_integration::{endpoint, repo_root, Stack};

type Policy = Box<dyn Fn(usize, &[Value]) -> Vec<String> + Send>;

/// Serves `POST …/invocations` on a free port: records each event's records and answers
/// `{"batchItemFailures": [...]}` with the sequence numbers `policy(call, records)` names.
fn stand_in(policy: Policy) -> (String, Arc<Mutex<Vec<Vec<Value>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/2015-03-31/functions/events/invocations",
        listener.local_addr().unwrap()
    );
    let calls: Arc<Mutex<Vec<Vec<Value>>>> = Arc::default();
    let seen = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let records = event["Records"].as_array().cloned().unwrap_or_default();
            let n = {
                let mut c = seen.lock().unwrap();
                c.push(records.clone());
                c.len()
            };
            let failures: Vec<Value> = policy(n, &records)
                .into_iter()
                .map(|s| json!({ "itemIdentifier": s }))
                .collect();
            let answer = json!({ "batchItemFailures": failures }).to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, calls)
}

/// A table with its stream on (the table spec may not enable it), and `customers` aggregates
/// written to it, one INSERT record each. Returns the stream's ARN.
async fn table_with_records(st: &Stack, customers: &[&str]) -> String {
    let described = st.dynamodb.describe_table().table_name(&st.table).send().await.unwrap();
    if described.table().and_then(|t| t.latest_stream_arn()).is_none() {
        st.dynamodb
            .update_table()
            .table_name(&st.table)
            .stream_specification(
                aws_sdk_dynamodb::types::StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    let arn = st
        .dynamodb
        .describe_table()
        .table_name(&st.table)
        .send()
        .await
        .unwrap()
        .table()
        .and_then(|t| t.latest_stream_arn())
        .unwrap()
        .to_owned();
    let tenant = TenantId::parse("acme").unwrap();
    let aggs: Vec<(CustomerId, EntityAggregate)> = customers
        .iter()
        .map(|c| {
            let day = DayCounter {
                count: 2,
                amount_minor: 1_000,
                frauds: 0,
            };
            (
                CustomerId::parse(c).unwrap(),
                EntityAggregate::from_days([(17_681, day)]),
            )
        })
        .collect();
    // One at a time, so the stream holds them in this order.
    for one in aggs.chunks(1) {
        st.store.seed_aggregates(&tenant, one, &[]).await.unwrap();
    }
    arn
}

/// Runs the poller from the stream's start until it has been idle for 2 s (bounded: 60 s).
fn run_poller(st: &Stack, invoke_url: &str) -> (i32, String) {
    run_poller_with(st, invoke_url, &[])
}

fn run_poller_with(st: &Stack, invoke_url: &str, extra: &[&str]) -> (i32, String) {
    let python = repo_root().join(".venv/bin/python");
    let mut child = Command::new(python)
        .arg(repo_root().join("scripts/stream_poller.py"))
        .args([
            "--table",
            &st.table,
            "--invoke-url",
            invoke_url,
            "--endpoint",
            &endpoint(),
        ])
        .args(["--start", "trim_horizon", "--idle-exit", "2", "--poll-seconds", "0.2"])
        .args(["--max-retries", "2"])
        .args(extra)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/nonexistent/verdict-test-aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/verdict-test-aws-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the poller did not stop within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    (status.code().unwrap_or(-1), log)
}

fn seq(r: &Value) -> String {
    r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned()
}

fn pk(r: &Value) -> String {
    r["dynamodb"]["Keys"]["pk"]["S"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_poller_sends_lambda_stream_events_and_retries_from_the_first_failed_record() {
    let st = Stack::new().await;
    let arn = table_with_records(&st, &["c-1", "c-2", "c-3"]).await;
    // The first invocation fails its second record; every later one succeeds.
    let (url, calls) = stand_in(Box::new(|call, records: &[Value]| {
        if call == 1 && records.len() > 1 {
            vec![seq(&records[1])]
        } else {
            Vec::new()
        }
    }));
    // Blocking is fine here: the stand-in runs on its own thread, and nothing else awaits.
    let (code, log) = run_poller(&st, &url);
    assert_eq!(code, 0, "{log}");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "one batch, one retry: {log}");
    let first = &calls[0];
    let keys: Vec<String> = first.iter().map(pk).collect();
    assert_eq!(keys, ["T#acme#CUST#c-1", "T#acme#CUST#c-2", "T#acme#CUST#c-3"]);
    for r in first {
        assert_eq!(r["eventSource"], "aws:dynamodb");
        assert_eq!(r["eventName"], "INSERT");
        assert_eq!(r["eventSourceARN"], arn.as_str());
        assert_eq!(r["awsRegion"], "us-east-1");
        assert!(r["eventID"].as_str().is_some_and(|s| !s.is_empty()));
        assert_eq!(r["dynamodb"]["StreamViewType"], "NEW_AND_OLD_IMAGES");
        assert!(r["dynamodb"]["SizeBytes"].as_u64().is_some_and(|n| n > 0));
        assert!(r["dynamodb"]["ApproximateCreationDateTime"].as_f64().is_some());
        assert_eq!(
            r["dynamodb"]["NewImage"]["c17681"]["N"], "2",
            "the image as DynamoDB JSON"
        );
        assert_eq!(r["dynamodb"]["Keys"]["sk"]["S"], "AGG");
    }
    // The retry starts at the failed record: the one before it is not sent again.
    assert_eq!(
        calls[1].iter().map(seq).collect::<Vec<_>>(),
        first[1..].iter().map(seq).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_record_that_keeps_failing_is_dropped_after_the_retries_and_the_shard_moves_on() {
    let st = Stack::new().await;
    table_with_records(&st, &["c-1", "c-poison", "c-3"]).await;
    let (url, calls) = stand_in(Box::new(|_, records: &[Value]| {
        records
            .iter()
            .filter(|r| pk(r).ends_with("c-poison"))
            .map(seq)
            .collect()
    }));
    let (code, log) = run_poller(&st, &url);
    assert_eq!(code, 3, "the poller reports that records were dropped: {log}");
    assert!(log.contains("dropped"), "{log}");
    let calls = calls.lock().unwrap().clone();
    // The batch, then two retries from the poisoned record.
    assert_eq!(calls.len(), 3, "{log}");
    for retry in &calls[1..] {
        assert_eq!(
            retry.iter().map(pk).collect::<Vec<_>>(),
            ["T#acme#CUST#c-poison", "T#acme#CUST#c-3"]
        );
    }
}

#[tokio::test]
async fn records_the_filter_does_not_keep_never_reach_the_function() {
    let st = Stack::new().await;
    table_with_records(&st, &["c-1", "c-2"]).await;
    let (url, calls) = stand_in(Box::new(|_, _: &[Value]| Vec::new()));
    // The filter `make dev` gives the poller (template.yaml's FilterCriteria): aggregates (sk AGG)
    // are not events.
    let lib = std::fs::read_to_string(repo_root().join("scripts/lib.sh")).unwrap();
    let filter = lib
        .lines()
        .find_map(|l| l.strip_prefix("STREAM_FILTER='")?.strip_suffix('\''))
        .expect("scripts/lib.sh sets STREAM_FILTER");
    let (code, log) = run_poller_with(&st, &url, &["--filter", filter]);
    assert_eq!(code, 0, "{log}");
    assert!(calls.lock().unwrap().is_empty(), "{log}");
    // A filter that keeps them delivers the same records: the stream held them.
    let keep = r#"{"eventName": ["INSERT"], "dynamodb": {"Keys": {"sk": {"S": ["AGG"]}}}}"#;
    let (code, log) = run_poller_with(&st, &url, &["--filter", keep]);
    assert_eq!(code, 0, "{log}");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{log}");
    assert_eq!(calls[0].len(), 2, "{log}");
}
