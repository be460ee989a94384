//! `POST /v1/transactions/{id}/label` through the real api handler (events/api/label-transaction.json)
//! on moto, against the labels function fed the same labels as a file: the same counters either way.

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use verdict::adapters::dynamodb::Keys;
use verdict::adapters::ObjectStore;
use verdict::domain::{Currency, CustomerId, Money, TenantId, TerminalId, Timestamp, Transaction, TransactionId};
use verdict_integration::api::{ApiStack, Event};
use verdict_integration::Stack;

use labels::{Deps, Invocation, LabelsOutcome, Settings};

fn tx(id: &str, at: &str, customer: &str, terminal: &str) -> Transaction {
    Transaction {
        id: TransactionId::parse(id).unwrap(),
        occurred_at: Timestamp::parse("occurred_at", at).unwrap(),
        amount: Money::new(1_000, Currency::EUR).unwrap(),
        customer_id: CustomerId::parse(customer).unwrap(),
        terminal_id: TerminalId::parse(terminal).unwrap(),
    }
}

fn transactions() -> Vec<Transaction> {
    vec![
        tx("tx-1", "2018-08-01T10:00:00Z", "c-1", "t-1"),
        tx("tx-2", "2018-08-02T10:00:00Z", "c-1", "t-2"),
        tx("tx-3", "2018-08-03T10:00:00Z", "c-2", "t-1"),
    ]
}

/// (transaction, label, labelled_at) in order: a first label, the same again, a relabel back and
/// forth, and an older label that loses to the one stored.
const LABELS: [(&str, &str, &str); 7] = [
    ("tx-1", "fraud", "2018-08-10T00:00:00Z"),
    ("tx-1", "fraud", "2018-08-11T00:00:00Z"),
    ("tx-2", "fraud", "2018-08-10T00:00:00Z"),
    ("tx-2", "legit", "2018-08-12T00:00:00Z"),
    ("tx-3", "legit", "2018-08-10T00:00:00Z"),
    ("tx-3", "fraud", "2018-08-09T00:00:00Z"),
    ("tx-2", "fraud", "2018-08-13T00:00:00Z"),
];

fn label_event(id: &str, body: &Value) -> Event {
    Event::load("label-transaction")
        .path(&format!("/v1/transactions/{id}/label"))
        .json(body)
}

/// Every customer's and terminal's fraud counts, day by day.
async fn counters(st: &Stack, tenant: &TenantId) -> BTreeMap<String, BTreeMap<i32, u64>> {
    let mut out = BTreeMap::new();
    for c in ["c-1", "c-2"] {
        let agg = st
            .store
            .customer_aggregate(tenant, &CustomerId::parse(c).unwrap())
            .await
            .unwrap();
        out.insert(
            c.to_owned(),
            agg.days().into_iter().map(|(d, c)| (d, c.frauds)).collect(),
        );
    }
    for t in ["t-1", "t-2"] {
        let agg = st
            .store
            .terminal_aggregate(tenant, &TerminalId::parse(t).unwrap())
            .await
            .unwrap();
        out.insert(
            t.to_owned(),
            agg.days().into_iter().map(|(d, c)| (d, c.frauds)).collect(),
        );
    }
    out
}

fn day(at: &str) -> i32 {
    Timestamp::parse("t", at).unwrap().epoch_day()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_a_label_file_move_the_same_fraud_counters() {
    let api = ApiStack::new().await;
    let st = &api.stack;
    let by_api = TenantId::parse("by-api").unwrap();
    let by_file = TenantId::parse("acme").unwrap();
    for t in transactions() {
        verdict_integration::seed_decision(&st.store, &by_api, &t).await;
        verdict_integration::seed_decision(&st.store, &by_file, &t).await;
    }
    let key = api.key(&by_api, "labels:write", None).await;

    // The API, one request per label.
    let mut outcomes = Vec::new();
    for (id, label, at) in LABELS {
        let body = json!({"label": label, "source": "chargeback", "labelled_at": at});
        let r = api.send(&label_event(id, &body).bearer(&key)).await;
        assert_eq!(r.status, 200, "{id} {label} {at}: {}", r.body);
        assert_eq!(r.body["transaction_id"], id);
        outcomes.push(r.body["outcome"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        outcomes,
        [
            "applied",
            "unchanged",
            "applied",
            "applied",
            "applied",
            "superseded",
            "applied"
        ]
    );

    // The same labels as one file, through the labels function.
    let mut csv = String::from("transaction_id,label,source,labelled_at\n");
    for (id, label, at) in LABELS {
        csv.push_str(&format!("{id},{label},chargeback,{at}\n"));
    }
    let key_name = "labels/incoming/acme/parity.csv";
    let put = st
        .s3
        .put_object()
        .bucket(&st.bucket)
        .key(key_name)
        .body(ByteStream::from(csv.clone().into_bytes()))
        .send()
        .await
        .unwrap();
    let event =
        verdict_integration::labels_event(&st.bucket, key_name, put.e_tag().unwrap().trim_matches('"'), csv.len());
    let deps = Deps {
        store: st.store.clone(),
        objects: ObjectStore::new(st.s3.clone()),
        bucket: st.bucket.clone(),
        reinvoke: None,
        settings: Settings::default(),
    };
    let out = labels::handle_with(&deps, event, &Invocation::unbounded())
        .await
        .unwrap();
    let LabelsOutcome::Completed { summary } = &out.records[0].outcome else {
        panic!("{:?}", out.records[0].outcome)
    };
    assert_eq!(
        (
            summary.counts.applied,
            summary.counts.unchanged,
            summary.counts.superseded
        ),
        (5, 2, 1)
    );

    let api_counts = counters(st, &by_api).await;
    assert_eq!(api_counts, counters(st, &by_file).await, "same labels, same counters");
    let (d1, d2) = (day("2018-08-01T00:00:00Z"), day("2018-08-02T00:00:00Z"));
    // tx-1 fraud once; tx-2 fraud, back to legit, fraud again: 1; tx-3 stayed legit.
    assert_eq!(api_counts["c-1"], BTreeMap::from([(d1, 1), (d2, 1)]));
    assert_eq!(api_counts["t-1"].get(&d1), Some(&1));
    assert!(api_counts["t-1"].values().sum::<u64>() == 1, "{api_counts:?}");
    assert_eq!(api_counts["t-2"], BTreeMap::from([(d2, 1)]));
    assert!(api_counts["c-2"].values().all(|n| *n == 0), "{api_counts:?}");

    // The label reads back with its API provenance: the key that labelled.
    let get_key = api.key(&by_api, "transactions:read", None).await;
    let r = api
        .send(
            &Event::load("get-transaction")
                .path("/v1/transactions/tx-2")
                .bearer(&get_key),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["label"]["value"], "fraud");
    assert_eq!(r.body["label"]["labelled_at"], "2018-08-13T00:00:00Z");
    assert_eq!(r.body["label"]["origin"], format!("api:{}", key.key_id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_is_stored_and_a_repeat_moves_nothing() {
    let api = ApiStack::new().await;
    let acme = TenantId::parse("acme").unwrap();
    let t = &transactions()[0];
    verdict_integration::seed_decision(&api.stack.store, &acme, t).await;
    let key = api.key(&acme, "labels:write", None).await;
    let sample = Event::load("label-transaction");
    let body = sample.body_json();
    assert_eq!(body["note"], "cardholder disputed the payment", "sample event changed");
    let r = api.send(&label_event("tx-1", &body).bearer(&key)).await;
    assert_eq!((r.status, &r.body["outcome"]), (200, &json!("applied")), "{}", r.body);
    assert_eq!(r.body["label"]["note"], "cardholder disputed the payment");
    assert_eq!(r.body["label"]["source"], "chargeback");
    let before = counters(&api.stack, &acme).await;
    let item_before = api.stack.raw_item(&Keys::new(&acme).decision(&t.id)).await;
    let again = api.send(&label_event("tx-1", &body).bearer(&key)).await;
    assert_eq!((again.status, &again.body["outcome"]), (200, &json!("unchanged")));
    assert_eq!(counters(&api.stack, &acme).await, before);
    assert_eq!(api.stack.raw_item(&Keys::new(&acme).decision(&t.id)).await, item_before);
    assert_eq!(before["c-1"].get(&day("2018-08-01T00:00:00Z")), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_labels_name_the_field_and_store_nothing() {
    let api = ApiStack::new().await;
    let acme = TenantId::parse("acme").unwrap();
    let beta = TenantId::parse("beta").unwrap();
    let t = &transactions()[0];
    verdict_integration::seed_decision(&api.stack.store, &acme, t).await;
    let key = api.key(&acme, "labels:write", None).await;
    let beta_key = api.key(&beta, "labels:write", None).await;
    let item_before = api.stack.raw_item(&Keys::new(&acme).decision(&t.id)).await;
    let counts_before = counters(&api.stack, &acme).await;
    let good = json!({"label": "fraud", "source": "chargeback", "labelled_at": "2018-08-10T00:00:00Z"});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };

    let cases: [(Value, &[&str]); 7] = [
        (with("labelled_at", json!("2018-07-31T23:59:59Z")), &["labelled_at"]),
        (with("labelled_at", json!("yesterday")), &["labelled_at"]),
        (with("label", json!("maybe")), &["label"]),
        (with("note", json!("x".repeat(1001))), &["note"]),
        (with("source", json!("")), &["source"]),
        (
            json!({"label": 1, "labelled_at": "2018-08-10T00:00:00Z"}),
            &["label", "source"],
        ),
        (with("extra", json!(1)), &["body"]),
    ];
    for (body, fields) in cases {
        let r = api.send(&label_event("tx-1", &body).bearer(&key)).await;
        r.assert_problem(400, "validation");
        assert_eq!(r.fields(), fields, "{body}");
    }
    let r = api
        .send(&label_event("tx-1", &good).bearer(&key).body("not json"))
        .await;
    r.assert_problem(400, "validation");
    let r = api.send(&label_event("a%23b", &good).bearer(&key)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    api.send(&label_event("tx-404", &good).bearer(&key))
        .await
        .assert_problem(404, "not-found");
    // Another tenant's transaction does not exist for beta.
    api.send(&label_event("tx-1", &good).bearer(&beta_key))
        .await
        .assert_problem(404, "not-found");
    let r = api
        .send(
            &label_event("tx-1", &good)
                .bearer(&key)
                .header("content-type", "text/plain"),
        )
        .await;
    assert_eq!(r.status, 415);

    assert_eq!(api.stack.raw_item(&Keys::new(&acme).decision(&t.id)).await, item_before);
    assert_eq!(counters(&api.stack, &acme).await, counts_before);
    assert!(!item_before.contains_key("label"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_decision_that_cannot_take_a_label_is_a_409_not_a_400() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let api = ApiStack::new().await;
    let acme = TenantId::parse("acme").unwrap();
    let t = &transactions()[0];
    verdict_integration::seed_decision(&api.stack.store, &acme, t).await;
    let key = api.key(&acme, "labels:write", None).await;
    // A decision stored without its terminal (an old or damaged item).
    let decision = Keys::new(&acme).decision(&t.id);
    api.stack
        .dynamodb
        .update_item()
        .table_name(&api.stack.table)
        .key("pk", AttributeValue::S(decision.pk.clone()))
        .key("sk", AttributeValue::S(decision.sk.clone()))
        .update_expression("REMOVE terminal_id, inputs.terminal_id")
        .send()
        .await
        .unwrap();
    let before = api.stack.raw_item(&decision).await;
    let good = json!({"label": "fraud", "source": "chargeback", "labelled_at": "2018-08-10T00:00:00Z"});
    let r = api.send(&label_event("tx-1", &good).bearer(&key)).await;
    r.assert_problem(409, "label-not-applicable");
    assert!(r.body.get("errors").is_none(), "no field is blamed: {}", r.body);
    assert_eq!(api.stack.raw_item(&decision).await, before);
}
