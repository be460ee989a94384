//! labels against moto: decisions committed through the store, label files uploaded to S3, the
//! real handler fed events built from events/s3/labels-upload.json.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use verdict::adapters::dynamodb::Keys;
use verdict::adapters::ObjectStore;
use verdict::domain::features::{self, EntityAggregate, Feature};
use verdict::domain::labels::LabelSummary;
use verdict::domain::{Currency, CustomerId, Money, TenantId, TerminalId, Timestamp, Transaction, TransactionId};
use verdict::ports::{DecisionStore, ModelBlobs};
use verdict_integration::Stack;

use labels::{Deps, Invocation, LabelsOutcome, RecordOutcome, S3Event, Settings};

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn tx(id: &str, at: &str, minor: i64, customer: &str, terminal: &str) -> Transaction {
    Transaction {
        id: TransactionId::parse(id).unwrap(),
        occurred_at: Timestamp::parse("occurred_at", at).unwrap(),
        amount: Money::new(minor, Currency::EUR).unwrap(),
        customer_id: CustomerId::parse(customer).unwrap(),
        terminal_id: TerminalId::parse(terminal).unwrap(),
    }
}

/// Stores a decision the way the api does: record, aggregates, one transaction.
async fn decide(st: &Stack, t: &Transaction) {
    verdict_integration::seed_decision(&st.store, &acme(), t).await;
}

fn event(bucket: &str, key: &str, etag: &str, size: usize) -> S3Event {
    verdict_integration::labels_event(bucket, key, etag, size)
}

fn deps(st: &Stack, chunk_rows: usize) -> Deps {
    Deps {
        store: st.store.clone(),
        objects: ObjectStore::new(st.s3.clone()),
        bucket: st.bucket.clone(),
        reinvoke: None,
        settings: Settings {
            chunk_rows,
            ..Settings::default()
        },
    }
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

async fn run(deps: &Deps, e: &S3Event, inv: &Invocation) -> RecordOutcome {
    let mut out = labels::handle_with(deps, e.clone(), inv).await.unwrap();
    assert_eq!(out.records.len(), 1);
    out.records.remove(0)
}

fn summary(r: &RecordOutcome) -> &LabelSummary {
    match &r.outcome {
        LabelsOutcome::Completed { summary } => summary,
        other => panic!("expected a completed file, got {other:?}"),
    }
}

fn failed(r: &RecordOutcome) -> &LabelSummary {
    match &r.outcome {
        LabelsOutcome::Failed { summary } => summary,
        other => panic!("expected a file that stopped early, got {other:?}"),
    }
}

async fn text(st: &Stack, key: &str) -> String {
    String::from_utf8(st.blobs.fetch(key).await.unwrap()).unwrap()
}

/// The decision's label map: (value, source, labelled_at, line).
async fn label(st: &Stack, id: &str) -> Option<(String, String, String, u64)> {
    let key = Keys::new(&acme()).decision(&TransactionId::parse(id).unwrap());
    let item = st.raw_item(&key).await;
    let m = item.get("label")?.as_m().unwrap();
    let s = |k: &str| m[k].as_s().unwrap().clone();
    Some((
        s("value"),
        s("source"),
        s("labelled_at"),
        m["line"].as_n().unwrap().parse().unwrap(),
    ))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn day(at: &str) -> i32 {
    Timestamp::parse("t", at).unwrap().epoch_day()
}

/// Fraud counts of an aggregate, day by day (only days that have a counter).
async fn frauds(st: &Stack, customer: Option<&str>, terminal: Option<&str>) -> BTreeMap<i32, u64> {
    let agg = match (customer, terminal) {
        (Some(c), _) => {
            st.store
                .customer_aggregate(&acme(), &CustomerId::parse(c).unwrap())
                .await
        }
        (_, Some(t)) => {
            st.store
                .terminal_aggregate(&acme(), &TerminalId::parse(t).unwrap())
                .await
        }
        _ => unreachable!(),
    }
    .unwrap();
    agg.days().into_iter().map(|(d, c)| (d, c.frauds)).collect()
}

#[tokio::test]
async fn labels_update_decisions_and_fraud_aggregates_exactly_once() {
    let st = Stack::new().await;
    for t in [
        tx("tx-1", "2018-08-01T10:00:00Z", 1_000, "c-1", "t-1"),
        tx("tx-2", "2018-08-01T12:00:00Z", 2_000, "c-1", "t-1"),
        tx("tx-3", "2018-08-02T09:00:00Z", 3_000, "c-2", "t-1"),
        tx("tx-4", "2018-08-03T09:00:00Z", 4_000, "c-2", "t-2"),
        tx("tx-5", "2018-08-03T10:00:00Z", 5_000, "c-3", "t-2"),
        tx("tx-6", "2018-07-30T10:00:00Z", 6_000, "c-3", "t-2"),
    ] {
        decide(&st, &t).await;
    }
    let csv = "transaction_id,label,source,labelled_at\n\
               tx-1,fraud,chargeback,2018-08-20T10:00:00Z\n\
               tx-2,legit,analyst,2018-08-20T10:00:00Z\n\
               tx-3,FRAUD,chargeback,2018-08-21T10:00:00Z\n\
               tx-4,maybe,analyst,2018-08-21T10:00:00Z\n\
               tx-999,fraud,chargeback,2018-08-21T10:00:00Z\n\
               tx-1,fraud,chargeback,2018-08-22T10:00:00Z\n\
               tx-2,fraud,chargeback,2018-08-25T10:00:00Z\n\
               tx-5,fraud,chargeback,2018-08-21T10:00:00Z\n\
               tx-5,legit,analyst,2018-08-26T10:00:00Z\n\
               tx-4,fraud,chargeback,2018-08-19T00:00:00Z\n\
               tx-3,legit,analyst,2018-08-10T00:00:00Z\n\
               tx-6,legit,chargeback,2018-07-29T00:00:00Z\n";
    let e = put(&st, "labels/incoming/acme/labels-2018-08.csv", csv.as_bytes().to_vec()).await;
    // Three rows a chunk, four rows a run: several checkpoints and resumes of a CSV file, and a
    // transaction twice in one chunk.
    let deps = deps(&st, 3);
    let (first, runs) = until_done(&deps, &e, 4, |_| {}).await;
    assert!(!first.duplicate);
    assert_eq!(runs, 3);
    let s = summary(&first);
    let c = s.counts;
    assert_eq!(
        (c.rows_read, c.applied, c.unchanged, c.rejected, c.unknown, c.superseded),
        (12, 7, 2, 3, 1, 1),
        "{s:?}"
    );
    assert_eq!(s.stopped_early, None);
    assert_eq!(s.errors_key, "labels/results/acme/labels-2018-08.errors.csv");

    // Decisions carry their final labels, with the line that set them.
    let l = |v: &str, src: &str, at: &str, line| Some((v.into(), src.into(), at.into(), line));
    assert_eq!(
        label(&st, "tx-1").await,
        l("fraud", "chargeback", "2018-08-20T10:00:00Z", 2)
    );
    assert_eq!(
        label(&st, "tx-2").await,
        l("fraud", "chargeback", "2018-08-25T10:00:00Z", 8)
    );
    assert_eq!(
        label(&st, "tx-3").await,
        l("fraud", "chargeback", "2018-08-21T10:00:00Z", 4)
    );
    assert_eq!(
        label(&st, "tx-4").await,
        l("fraud", "chargeback", "2018-08-19T00:00:00Z", 11)
    );
    assert_eq!(
        label(&st, "tx-5").await,
        l("legit", "analyst", "2018-08-26T10:00:00Z", 10)
    );
    assert_eq!(label(&st, "tx-6").await, None);
    // The decision itself is intact.
    let d = st
        .store
        .decision(&acme(), &TransactionId::parse("tx-2").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.request_fingerprint, "fp-tx-2");
    // The audit trail reads the label back with the decision.
    let stored = d.label.expect("tx-2 carries its label");
    assert_eq!(
        (stored.value.as_str(), stored.line.is_some()),
        (label(&st, "tx-2").await.unwrap().0.as_str(), true)
    );

    // Fraud counters: each transaction once, on its own day; a relabel moves the count.
    let (d1, d2, d3) = (
        day("2018-08-01T00:00:00Z"),
        day("2018-08-02T00:00:00Z"),
        day("2018-08-03T00:00:00Z"),
    );
    let d30 = day("2018-07-30T00:00:00Z");
    // (customer, terminal, fraud count per day)
    type Expected<'a> = (Option<&'a str>, Option<&'a str>, Vec<(i32, u64)>);
    let expected: [Expected; 5] = [
        (Some("c-1"), None, vec![(d1, 2)]),
        (None, Some("t-1"), vec![(d1, 2), (d2, 1)]),
        (Some("c-2"), None, vec![(d2, 1), (d3, 1)]),
        (None, Some("t-2"), vec![(d30, 0), (d3, 1)]),
        // tx-5 went fraud then legit: back to zero.
        (Some("c-3"), None, vec![(d30, 0), (d3, 0)]),
    ];
    let mut counters = Vec::new();
    for (c, t, want) in &expected {
        let got = frauds(&st, *c, *t).await;
        assert_eq!(got, want.iter().copied().collect::<BTreeMap<_, _>>(), "{c:?} {t:?}");
        counters.push(got);
    }

    // The error report: line numbers and reasons, in line order.
    let report = text(&st, &s.errors_key).await;
    assert_eq!(
        report,
        "line,transaction_id,field,reason\n\
         5,,label,\"\"\"maybe\"\" is not fraud or legit\"\n\
         6,tx-999,transaction_id,no decision is stored for this transaction id\n\
         13,tx-6,labelled_at,2018-07-29T00:00:00Z is before the transaction occurred (2018-07-30T10:00:00Z)\n"
    );
    let stored: LabelSummary =
        serde_json::from_str(&text(&st, "labels/results/acme/labels-2018-08.summary.json").await).unwrap();
    assert_eq!(&stored, s);

    // Delivered again: nothing changes, and only the job is read.
    st.calls.take();
    let again = run(&deps, &e, &Invocation::unbounded()).await;
    assert!(again.duplicate);
    assert_eq!(summary(&again), s);
    assert_eq!(
        st.calls.take(),
        ["PutItem", "UpdateItem", "GetItem"],
        "claim refused, job read"
    );
    // The same rows in a new file: every label is already there or newer.
    let e2 = put(&st, "labels/incoming/acme/again.csv", csv.as_bytes().to_vec()).await;
    let other = run(&deps, &e2, &Invocation::unbounded()).await;
    let c2 = summary(&other).counts;
    assert_eq!((c2.applied, c2.unchanged, c2.superseded, c2.rejected), (0, 9, 3, 3));
    for ((c, t, _), before) in expected.iter().zip(&counters) {
        assert_eq!(&frauds(&st, *c, *t).await, before, "{c:?} {t:?}");
    }
    assert_eq!(
        label(&st, "tx-1").await,
        l("fraud", "chargeback", "2018-08-20T10:00:00Z", 2)
    );

    // Features follow the label delay: t-1's fraud of 08-02 counts for a payment on 08-09
    // (seven days later), not for one on 08-05.
    let t1 = st
        .store
        .terminal_aggregate(&acme(), &TerminalId::parse("t-1").unwrap())
        .await
        .unwrap();
    let probe = |at: &str| tx("probe", at, 100, "c-new", "t-1");
    let late = features::compute(&probe("2018-08-09T12:00:00Z"), &EntityAggregate::default(), &t1);
    assert_eq!(late.get(Feature::TerminalTxCount1d), 1.0);
    assert_eq!(late.get(Feature::TerminalRisk1d), 1.0);
    assert_eq!(
        late.get(Feature::TerminalRisk7d),
        1.0,
        "08-01: two of two, 08-02: one of one"
    );
    let early = features::compute(&probe("2018-08-05T12:00:00Z"), &EntityAggregate::default(), &t1);
    assert_eq!(
        early.get(Feature::TerminalRisk30d),
        0.0,
        "labels of 08-01 are not known on 08-05"
    );
}

/// 30 decisions and a label file for them with three bad lines.
struct Fixture {
    ndjson: String,
    /// Fraud labels per (terminal, day).
    terminal_frauds: BTreeMap<(String, i32), u64>,
    valid: u64,
}

async fn thirty(st: &Stack) -> Fixture {
    let mut ndjson = String::new();
    let mut terminal_frauds = BTreeMap::new();
    let mut valid = 0;
    for i in 0..30 {
        let at = format!("2018-08-{:02}T10:00:00Z", 1 + i % 5);
        let (c, t) = (format!("c-{}", i % 3), format!("t-{}", i % 2));
        decide(st, &tx(&format!("tx-{i:02}"), &at, 1_000 + i, &c, &t)).await;
        let fraud = i % 4 != 0;
        if fraud {
            *terminal_frauds.entry((t, day(&at))).or_insert(0) += 1;
        }
        let label = if fraud { "fraud" } else { "legit" };
        ndjson.push_str(&format!(
            "{{\"transaction_id\":\"tx-{i:02}\",\"label\":\"{label}\",\"source\":\"cb\",\"labelled_at\":\"2018-09-01T00:00:00Z\"}}\n"
        ));
        valid += 1;
        match i {
            7 => ndjson.push_str("not json\n"),
            15 => ndjson.push('\n'),
            20 => ndjson.push_str(
                "{\"transaction_id\":\"tx-77\",\"label\":\"fraud\",\"source\":\"cb\",\"labelled_at\":\"2018-09-01T00:00:00Z\"}\n",
            ),
            25 => ndjson.push_str("{\"transaction_id\":\"tx-01\",\"label\":\"fraud\"}\n"),
            _ => {}
        }
    }
    Fixture {
        ndjson,
        terminal_frauds,
        valid,
    }
}

async fn terminal_frauds(st: &Stack) -> BTreeMap<(String, i32), u64> {
    let mut out = BTreeMap::new();
    for t in ["t-0", "t-1"] {
        for (d, f) in frauds(st, None, Some(t)).await {
            if f > 0 {
                out.insert((t.to_owned(), d), f);
            }
        }
    }
    out
}

const THIRTY_REPORT: &str = "line,transaction_id,field,reason\n\
    9,,,is not valid JSON (column 2: expected ident)\n\
    24,tx-77,transaction_id,no decision is stored for this transaction id\n\
    30,,source,is missing\n";

/// Runs with a row budget until the file completes; returns the outcome and the invocations.
async fn until_done(deps: &Deps, e: &S3Event, max_rows: u64, mut between: impl FnMut(usize)) -> (RecordOutcome, usize) {
    for n in 1..100 {
        let inv = Invocation {
            max_rows: Some(max_rows),
            ..Invocation::unbounded()
        };
        let r = run(deps, e, &inv).await;
        match r.outcome {
            LabelsOutcome::HandedOver { reinvoked, .. } => {
                assert!(!reinvoked, "no reinvoker in tests");
                between(n);
            }
            LabelsOutcome::Completed { .. } => return (r, n),
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("the file never completed");
}

#[tokio::test]
async fn a_label_file_resumes_from_its_checkpoint_and_never_double_counts() {
    let st = Stack::new().await;
    let fx = thirty(&st).await;
    assert_eq!(fx.valid, 30);
    let deps = deps(&st, 4);
    let e = put(
        &st,
        "labels/incoming/acme/resume.ndjson",
        fx.ndjson.clone().into_bytes(),
    )
    .await;
    let job_key = {
        let r = &e.records[0].s3;
        let job = verdict::adapters::dynamodb::ObjectRef::new(
            r.bucket.name.clone().unwrap(),
            r.object.key.clone().unwrap(),
            r.object.e_tag.as_deref().unwrap(),
        );
        Keys::new(&acme()).job(&job)
    };
    let get_job = || st.raw_item(&job_key);

    // Stop after every 5 rows; after the second stop, roll the checkpoint back to the first, as
    // if the second run had died after writing its labels but before recording them.
    let mut first_checkpoint: Option<HashMap<String, AttributeValue>> = None;
    let mut rolled_back = false;
    let mut snapshots = Vec::new();
    for n in 1..100 {
        let inv = Invocation {
            max_rows: Some(5),
            ..Invocation::unbounded()
        };
        let r = run(&deps, &e, &inv).await;
        match r.outcome {
            LabelsOutcome::HandedOver { next_line, .. } => {
                let item = get_job().await;
                snapshots.push(next_line);
                if n == 1 {
                    first_checkpoint = Some(item);
                } else if n == 2 && !rolled_back {
                    rolled_back = true;
                    st.dynamodb
                        .put_item()
                        .table_name(&st.table)
                        .set_item(first_checkpoint.clone())
                        .send()
                        .await
                        .unwrap();
                }
            }
            LabelsOutcome::Completed { summary } => {
                assert!(rolled_back && n > 4, "{n} invocations");
                let c = summary.counts;
                assert_eq!(
                    (c.rows_read, c.applied, c.unchanged, c.rejected, c.unknown),
                    (33, 30, 0, 3, 1),
                    "the same counts as one clean run"
                );
                // The rollback also took back the second run's count.
                assert_eq!(summary.invocations, n as u64 - 1);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        snapshots.windows(2).filter(|w| w[1] <= w[0]).count() == 1,
        "one rollback: {snapshots:?}"
    );
    assert_eq!(
        terminal_frauds(&st).await,
        fx.terminal_frauds,
        "each fraud counted once"
    );
    assert_eq!(text(&st, "labels/results/acme/resume.errors.csv").await, THIRTY_REPORT);
    assert_eq!(label(&st, "tx-29").await.unwrap().3, 34, "the line that set it");

    // The same file gzipped (read from the top and skipped on resume): nothing new to count.
    let e2 = put(
        &st,
        "labels/incoming/acme/resume-again.ndjson.gz",
        gzip(fx.ndjson.as_bytes()),
    )
    .await;
    let (r, n) = until_done(&deps, &e2, 7, |_| {}).await;
    let c = summary(&r).counts;
    assert_eq!((c.rows_read, c.applied, c.unchanged, c.rejected), (33, 0, 30, 3));
    assert!(n >= 3, "{n} runs of at least 7 rows");
    assert_eq!(terminal_frauds(&st).await, fx.terminal_frauds);
    assert_eq!(
        text(&st, "labels/results/acme/resume-again.errors.csv").await,
        THIRTY_REPORT
    );
}

#[tokio::test]
async fn a_label_file_that_cannot_be_read_gets_a_report_and_stops_cleanly() {
    let st = Stack::new().await;
    decide(&st, &tx("tx-1", "2018-08-01T10:00:00Z", 1_000, "c-1", "t-1")).await;
    let deps = deps(&st, 100);
    let e = put(
        &st,
        "labels/incoming/acme/bad-header.csv",
        b"id,label\ntx-1,fraud\n".to_vec(),
    )
    .await;
    let r = run(&deps, &e, &Invocation::unbounded()).await;
    let s = failed(&r);
    assert_eq!(s.counts.rows_read, 0);
    assert!(s
        .stopped_early
        .as_deref()
        .unwrap()
        .contains("field transaction_id: column is missing from the header"));
    assert_eq!(
        text(&st, &s.errors_key).await,
        "line,transaction_id,field,reason\n\
         1,,transaction_id,\"column is missing from the header (expected transaction_id,label,source,labelled_at)\"\n"
    );
    let e = put(&st, "labels/incoming/acme/labels.xlsx", b"PK\x03\x04".to_vec()).await;
    let s = failed(&run(&deps, &e, &Invocation::unbounded()).await).clone();
    assert!(s.stopped_early.unwrap().contains("unknown file type"));
    assert_eq!(label(&st, "tx-1").await, None);
    for key in [
        "labels/incoming/acme",
        "labels/results/acme/x.csv",
        "labels/incoming/a%23b/x.csv",
    ] {
        let r = run(&deps, &event(&st.bucket, key, "e", 1), &Invocation::unbounded()).await;
        assert!(matches!(r.outcome, LabelsOutcome::Skipped { .. }), "{key}: {r:?}");
    }
}

#[tokio::test]
async fn files_labelling_the_same_transactions_at_once_count_each_fraud_once() {
    let st = Stack::new().await;
    let mut rows = String::from("transaction_id,label,source,labelled_at\n");
    for i in 0..40 {
        let at = format!("2018-08-{:02}T10:00:00Z", 1 + i % 4);
        decide(
            &st,
            &tx(&format!("tx-{i:02}"), &at, 1_000, &format!("c-{}", i % 5), "t-1"),
        )
        .await;
        rows.push_str(&format!("tx-{i:02},fraud,chargeback,2018-08-20T00:00:00Z\n"));
    }
    let a = put(&st, "labels/incoming/acme/a.csv", rows.clone().into_bytes()).await;
    let b = put(&st, "labels/incoming/acme/b.csv", rows.into_bytes()).await;
    // Both read the decisions unlabelled; the conditional write lets one of each pair count.
    let deps = deps(&st, 40);
    let (ia, ib) = (Invocation::unbounded(), Invocation::unbounded());
    let (ra, rb) = tokio::join!(run(&deps, &a, &ia), run(&deps, &b, &ib));
    let (ca, cb) = (summary(&ra).counts, summary(&rb).counts);
    assert_eq!(ca.applied + cb.applied, 40, "{ca:?} {cb:?}");
    assert_eq!(ca.unchanged + cb.unchanged, 40);
    let per_day: Vec<u64> = frauds(&st, None, Some("t-1")).await.into_values().collect();
    assert_eq!(per_day, [10, 10, 10, 10]);
    let customers: u64 = {
        let mut sum = 0;
        for c in 0..5 {
            sum += frauds(&st, Some(&format!("c-{c}")), None).await.values().sum::<u64>();
        }
        sum
    };
    assert_eq!(customers, 40);
}
