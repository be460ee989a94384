//! labels' real handler (events/s3/labels-upload.json) under injected DynamoDB and S3 faults
//! (tests/fault_proxy.py), retried as Lambda retries a failed invocation: every label applied
//! once, fraud counters equal to a recount, a relabel moving them back exactly once.
//!
//! Decisions are committed directly on moto; the handler talks through the proxy; the checks
//! read directly from moto.

use aws_sdk_s3::primitives::ByteStream;
use labels::{Deps, Invocation, LabelsOutcome, RecordOutcome, S3Event, Settings};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use verdict::adapters::ObjectStore;
use verdict::domain::labels::{LabelCounts, LabelSummary};
use verdict::domain::{Currency, CustomerId, Money, TenantId, TerminalId, Timestamp, Transaction, TransactionId};
use verdict::ports::DecisionStore;
use verdict_integration::faults::Proxy;
use verdict_integration::Stack;

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

/// Stores a decision the way the api does: record, aggregates, one transaction.
async fn decide(st: &Stack, t: &Transaction) {
    verdict_integration::seed_decision(&st.store, &acme(), t).await;
}

fn event(bucket: &str, key: &str, etag: &str, size: usize) -> S3Event {
    verdict_integration::labels_event(bucket, key, etag, size)
}

async fn put(st: &Stack, key: &str, bytes: Vec<u8>) -> S3Event {
    let size = bytes.len();
    let out = st
        .s3
        .put_object()
        .bucket(&st.bucket)
        .key(key)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .unwrap();
    event(&st.bucket, key, out.e_tag().unwrap().trim_matches('"'), size)
}

/// What one file's runs took.
#[derive(Debug, Default)]
struct Runs {
    invocations: u32,
    /// The failed invocations' errors, cut short.
    errors: Vec<String>,
}

/// Delivers the event as Lambda does: a failed invocation is retried (after a short pause; Lambda
/// waits longer), a hand-over is continued, until the file completes. Each run stops after
/// `max_rows` rows, so checkpoints and resumes happen under faults too.
async fn until_done(deps: &Deps, e: &S3Event, max_rows: u64, runs: &mut Runs) -> LabelSummary {
    for _ in 0..200 {
        runs.invocations += 1;
        let inv = Invocation {
            max_rows: Some(max_rows),
            ..Invocation::unbounded()
        };
        match labels::handle_with(deps, e.clone(), &inv).await {
            Err(err) => {
                runs.errors.push(err.to_string().chars().take(120).collect());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(mut out) => {
                assert_eq!(out.records.len(), 1);
                let r: RecordOutcome = out.records.remove(0);
                match r.outcome {
                    LabelsOutcome::Completed { summary } => return summary,
                    LabelsOutcome::HandedOver { reinvoked, .. } => assert!(!reinvoked, "no reinvoker in tests"),
                    // Nothing else holds the job (a lease left by a failed run is waited out by
                    // the next), and Lambda does not retry a success: it would never finish.
                    LabelsOutcome::Busy => panic!("Busy with nothing else holding the job: {runs:?}"),
                    other => panic!("unexpected outcome {other:?}"),
                }
            }
        }
    }
    panic!("the file never completed: {runs:?}");
}

/// Fraud counts per (entity, day), as the store reads them (sharding-proof: through the public
/// read API), zero days left out.
async fn counters(st: &Stack, customers: &[String], terminals: &[String]) -> BTreeMap<(String, i32), u64> {
    let mut out = BTreeMap::new();
    for c in customers {
        let agg = st
            .store
            .customer_aggregate(&acme(), &CustomerId::parse(c).unwrap())
            .await
            .unwrap();
        for (d, n) in agg.days() {
            if n.frauds > 0 {
                out.insert((c.clone(), d), n.frauds);
            }
        }
    }
    for t in terminals {
        let agg = st
            .store
            .terminal_aggregate(&acme(), &TerminalId::parse(t).unwrap())
            .await
            .unwrap();
        for (d, n) in agg.days() {
            if n.frauds > 0 {
                out.insert((t.clone(), d), n.frauds);
            }
        }
    }
    out
}

/// The fraud counters the stored labels imply: every decision labelled fraud counts once on its
/// customer's and its terminal's day.
async fn recount(st: &Stack, txs: &[Transaction]) -> BTreeMap<(String, i32), u64> {
    let mut out = BTreeMap::new();
    for t in txs {
        let d = st.store.decision(&acme(), &t.id).await.unwrap().expect("stored");
        if d.label.as_ref().is_some_and(|l| l.value.as_str() == "fraud") {
            let day = t.occurred_at.epoch_day();
            *out.entry((t.customer_id.to_string(), day)).or_default() += 1;
            *out.entry((t.terminal_id.to_string(), day)).or_default() += 1;
        }
    }
    out
}

async fn labels_of(st: &Stack, txs: &[Transaction]) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for t in txs {
        let d = st.store.decision(&acme(), &t.id).await.unwrap().expect("stored");
        out.insert(t.id.to_string(), d.label.map(|l| l.value.as_str().to_owned()));
    }
    out
}

/// About 20% of DynamoDB calls and 30% of S3 calls faulted: enough that some calls exhaust the
/// SDK's three attempts and whole invocations fail and are retried.
fn faults(seed: u64) -> serde_json::Value {
    json!({
        "seed": seed,
        "delay_ms": 1200,
        "rates": {
            "dynamodb:*": {
                "conflict": 0.04, "throughput": 0.03, "throttling": 0.03, "internal": 0.03,
                "reset": 0.03, "drop": 0.04, "delay": 0.005
            },
            "s3:*": {"throttling": 0.08, "internal": 0.08, "reset": 0.08, "drop": 0.08}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_upload_under_faults_applies_each_label_once_and_a_relabel_moves_counters_back_once() {
    let started = Instant::now();
    let st = Stack::new().await;
    let mut rng = StdRng::seed_from_u64(3);
    let customers: Vec<String> = (0..20).map(|i| format!("c-{i}")).collect();
    let terminals: Vec<String> = (0..5).map(|i| format!("t-{i}")).collect();
    let mut txs = Vec::new();
    for i in 0..300 {
        let t = Transaction {
            id: TransactionId::parse(&format!("tx-{i:03}")).unwrap(),
            occurred_at: Timestamp::parse("t", &format!("2018-08-{:02}T{:02}:00:00Z", 1 + i % 5, i % 24)).unwrap(),
            amount: Money::new(rng.gen_range(100..10_000), Currency::EUR).unwrap(),
            customer_id: CustomerId::parse(&customers[rng.gen_range(0..customers.len())]).unwrap(),
            terminal_id: TerminalId::parse(&terminals[rng.gen_range(0..terminals.len())]).unwrap(),
        };
        decide(&st, &t).await;
        txs.push(t);
    }

    // Two thirds fraud, the rest legit, and three rows that must be rejected.
    let mut csv = String::from("transaction_id,label,source,labelled_at\n");
    let mut want_labels = BTreeMap::new();
    for (i, t) in txs.iter().enumerate() {
        let label = if i % 3 == 0 { "legit" } else { "fraud" };
        csv.push_str(&format!("{},{label},chargeback,2018-08-20T10:00:00Z\n", t.id));
        want_labels.insert(t.id.to_string(), Some(label.to_owned()));
        match i {
            50 => csv.push_str("tx-999,fraud,chargeback,2018-08-20T10:00:00Z\n"),
            120 => csv.push_str("tx-001,maybe,chargeback,2018-08-20T10:00:00Z\n"),
            200 => csv.push_str("tx-002,fraud,,2018-08-20T10:00:00Z\n"),
            _ => {}
        }
    }
    let proxy = Proxy::start();
    let faulted = proxy.clients(&st).await;
    let deps = Deps {
        store: faulted.store.clone(),
        objects: ObjectStore::new(faulted.s3.clone()),
        bucket: st.bucket.clone(),
        reinvoke: None,
        settings: Settings {
            chunk_rows: 25,
            lease_secs: 2,
            ..Settings::default()
        },
    };
    let e = put(&st, "labels/incoming/acme/chargebacks.csv", csv.into_bytes()).await;
    proxy.configure(faults(5));
    // The rates alone leave it to timing whether a call exhausts the SDK's three attempts. Three
    // faults in a row on the second object read (the reads are sequential) always fail an
    // invocation after the first has applied rows, so the retry path is always taken.
    proxy.configure(json!({"next": {"s3:GetObject": ["none", "internal", "internal", "internal"]}}));
    let mut runs = Runs::default();
    let s = until_done(&deps, &e, 60, &mut runs).await;
    proxy.calm();
    println!(
        "first file: {} invocations, {} failed: {:?}",
        runs.invocations,
        runs.errors.len(),
        runs.errors
    );
    println!(
        "fault stats: {}",
        serde_json::to_string_pretty(&proxy.stats()["stats"]).unwrap()
    );
    println!("faults by kind: {:?}", proxy.faults_by_kind());
    assert!(
        !runs.errors.is_empty(),
        "no invocation failed: the retry path went untested"
    );
    let want = LabelCounts {
        rows_read: 303,
        applied: 300,
        unchanged: 0,
        rejected: 3,
        unknown: 1,
        superseded: 0,
    };
    assert_eq!(s.counts, want, "{s:?}");
    assert_eq!(s.stopped_early, None);
    assert_eq!(labels_of(&st, &txs).await, want_labels, "every label applied");
    let first = counters(&st, &customers, &terminals).await;
    assert_eq!(
        first,
        recount(&st, &txs).await,
        "fraud counters equal a recount of the labels"
    );
    assert_eq!(
        first.values().sum::<u64>(),
        2 * 200,
        "200 frauds, each on a customer and a terminal"
    );

    // The relabel: every fraud of the first 150 becomes legit, every legit of them fraud.
    let mut csv = String::from("transaction_id,label,source,labelled_at\n");
    for (i, t) in txs.iter().enumerate().take(150) {
        let label = if i % 3 == 0 { "fraud" } else { "legit" };
        csv.push_str(&format!("{},{label},analyst,2018-08-25T10:00:00Z\n", t.id));
        want_labels.insert(t.id.to_string(), Some(label.to_owned()));
    }
    let e = put(&st, "labels/incoming/acme/review.csv", csv.into_bytes()).await;
    proxy.reset_stats();
    proxy.configure(faults(6));
    let mut runs = Runs::default();
    let s = until_done(&deps, &e, 40, &mut runs).await;
    proxy.calm();
    println!(
        "relabel: {} invocations, {} failed: {:?}",
        runs.invocations,
        runs.errors.len(),
        runs.errors
    );
    println!(
        "fault stats: {}",
        serde_json::to_string_pretty(&proxy.stats()["stats"]).unwrap()
    );
    println!("faults by kind: {:?}", proxy.faults_by_kind());
    assert_eq!(
        (
            s.counts.rows_read,
            s.counts.applied,
            s.counts.unchanged,
            s.counts.rejected
        ),
        (150, 150, 0, 0),
        "{s:?}"
    );
    assert_eq!(labels_of(&st, &txs).await, want_labels, "every relabel applied");
    let second = counters(&st, &customers, &terminals).await;
    assert_eq!(
        second,
        recount(&st, &txs).await,
        "fraud counters equal a recount after the relabel"
    );
    // 150 rows: 50 legit→fraud, 100 fraud→legit; 200 − 100 + 50 frauds remain.
    assert_eq!(second.values().sum::<u64>(), 2 * 150);
    println!("took {:.1?}", started.elapsed());
}

/// Every first attempt of an UpdateItem is applied and its answer lost, its retry answered: a
/// retried checkpoint or finish finds its own write. The run must complete with the right counts,
/// not stop as `Busy` (a success nobody retries) with the job left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_or_finish_whose_answer_was_lost_is_not_taken_for_a_lost_lease() {
    let st = Stack::new().await;
    let mut csv = String::from("transaction_id,label,source,labelled_at\n");
    for i in 0..40 {
        let t = Transaction {
            id: TransactionId::parse(&format!("tx-{i:03}")).unwrap(),
            occurred_at: Timestamp::parse("t", "2018-08-01T10:00:00Z").unwrap(),
            amount: Money::new(1_000, Currency::EUR).unwrap(),
            customer_id: CustomerId::parse(&format!("c-{}", i % 4)).unwrap(),
            terminal_id: TerminalId::parse("t-1").unwrap(),
        };
        decide(&st, &t).await;
        csv.push_str(&format!("{},fraud,chargeback,2018-08-20T10:00:00Z\n", t.id));
    }
    let proxy = Proxy::start();
    let faulted = proxy.clients(&st).await;
    let deps = Deps {
        store: faulted.store.clone(),
        objects: ObjectStore::new(faulted.s3.clone()),
        bucket: st.bucket.clone(),
        reinvoke: None,
        settings: Settings {
            chunk_rows: 10,
            ..Settings::default()
        },
    };
    let e = put(&st, "labels/incoming/acme/lost-answers.csv", csv.into_bytes()).await;
    let script: Vec<&str> = std::iter::repeat(["drop", "none"]).take(50).flatten().collect();
    proxy.configure(json!({"next": {"UpdateItem": script}}));
    let mut out = labels::handle_with(&deps, e, &Invocation::unbounded())
        .await
        .expect("the invocation succeeds");
    let stats = proxy.calm();
    let drops = stats["stats"]["ops"]["UpdateItem"]["faults"]["drop"]
        .as_u64()
        .unwrap_or(0);
    println!("UpdateItem answers dropped: {drops}");
    match out.records.remove(0).outcome {
        LabelsOutcome::Completed { summary } => {
            assert_eq!(
                (summary.counts.rows_read, summary.counts.applied),
                (40, 40),
                "{summary:?}"
            )
        }
        other => panic!("{other:?} after {drops} lost answers"),
    }
    assert!(drops >= 4, "checkpoints and the finish were hit: {drops}");
    let frauds = st
        .store
        .terminal_aggregate(&acme(), &TerminalId::parse("t-1").unwrap())
        .await
        .unwrap()
        .days()[0]
        .1
        .frauds;
    assert_eq!(frauds, 40);
}
