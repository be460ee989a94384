//! Events out, end to end on moto: real items written through the api's handler and the labels
//! path, the table's stream read as Lambda's event source mapping reads it (DescribeStream,
//! GetShardIterator, GetRecords), `functions/events`' real handler publishing to a moto
//! EventBridge bus, and what arrived read from a rule → SQS tap.
//!
//! What "exactly once" means here: delivery is at least once (a redelivered stream batch is
//! published again), and every committed change has ONE `event_id`, the same on every delivery.
//! So the tap holds exactly one event per committed change per delivery of its record, and a
//! consumer that deduplicates on `event_id` processes each change exactly once; a redelivery adds
//! no new id, and a refused request or a conflict (nothing committed) has no event at all.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use verdict::adapters::dynamodb::{Keys, LabelWrite, LabelWriteOutcome};
use verdict::adapters::{EventBridgeBus, ObjectStore};
use verdict::domain::auth::ApiKey;
use verdict::domain::events::{Event, EventKind};
use verdict::domain::labels::{LabelValue, StoredLabel};
use verdict::domain::{Currency, CustomerId, Money, TenantId, TerminalId, Timestamp, Transaction, TransactionId};
use verdict::ports::events::{EntryOutcome, EventBus};
use verdict::ports::StoreError;
use verdict_integration::api::{ApiStack, Event as ApiEvent, Reply};
use verdict_integration::events::{schema, stream_event, validate, StreamReader, Tap};

fn post_tx(key: &ApiKey, id: &str) -> ApiEvent {
    let base = ApiEvent::load("post-transaction");
    let mut body = base.body_json();
    body["id"] = json!(id);
    base.without_header("idempotency-key").bearer(key).json(&body)
}

/// The sample transaction under another id, as the labels path needs it.
fn sample_tx(id: &str) -> Transaction {
    Transaction {
        id: TransactionId::parse(id).unwrap(),
        occurred_at: Timestamp::parse("occurred_at", "2018-08-08T10:14:58Z").unwrap(),
        amount: Money::new(5731, Currency::EUR).unwrap(),
        customer_id: CustomerId::parse("cust_4961").unwrap(),
        terminal_id: TerminalId::parse("term_3412").unwrap(),
    }
}

async fn call(api: &ApiStack, event: &str, path: &str, key: &ApiKey, body: Option<Value>) -> Reply {
    let mut e = ApiEvent::load(event).path(path).bearer(key);
    if let Some(b) = body {
        e = e.json(&b);
    }
    api.send(&e).await
}

async fn activate_ruleset(api: &ApiStack, key: &ApiKey) -> u64 {
    let rule = json!({"id": "huge", "name": "Huge", "description": "huge amount", "expression": "tx.amount_major > 100000.0", "action": "block"});
    let r = call(api, "save-rule", "/v1/rules", key, Some(rule)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(
        api,
        "create-ruleset",
        "/v1/rulesets",
        key,
        Some(json!({"mode": "FIRST_MATCHED", "rules": [{"id": "huge"}]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.body["version"].as_u64().unwrap();
    let r = call(api, "publish-ruleset", &format!("/v1/rulesets/{v}/publish"), key, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        api,
        "activate-ruleset",
        &format!("/v1/rulesets/{v}/activate"),
        key,
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    v
}

fn label(value: LabelValue, at: &str, source: &str) -> StoredLabel {
    StoredLabel {
        value,
        source: source.into(),
        labelled_at: Timestamp::parse("labelled_at", at).unwrap(),
        file: None,
        etag: None,
        line: None,
        note: None,
    }
}

async fn write_label(
    api: &ApiStack,
    tenant: &TenantId,
    t: &Transaction,
    l: &StoredLabel,
    previous: Option<&StoredLabel>,
    delta: i64,
) {
    let w = LabelWrite {
        label: l,
        previous,
        fraud_delta: delta,
        day: t.occurred_at.epoch_day(),
        customer: Some(&t.customer_id),
        terminal: Some(&t.terminal_id),
    };
    let outcome = api
        .stack
        .store
        .write_label(tenant, &t.id, &w)
        .await
        .expect("write_label");
    assert_eq!(outcome, LabelWriteOutcome::Written);
}

/// A review item opened, then resolved, in the layout of the review queue (docs/dynamodb.md):
/// the review service writes these; here they are written directly so the stream has them.
async fn open_and_resolve_review(api: &ApiStack, tenant: &TenantId, id: &str) {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let key = Keys::new(tenant).decision(&TransactionId::parse(id).unwrap());
    let s = |v: &str| A::S(v.to_owned());
    api.stack
        .dynamodb
        .put_item()
        .table_name(&api.stack.table)
        .item("pk", s(&key.pk))
        .item("sk", s("REVIEW"))
        .item("tenant", s(tenant.as_str()))
        .item("transaction_id", s(id))
        .item("status", s("open"))
        .item("opened_at", s("2026-12-01T10:00:00Z"))
        .item("risk_score", A::N("42".into()))
        .send()
        .await
        .expect("PutItem review");
    let resolution = A::M(
        [
            ("outcome", s("block")),
            ("label", s("fraud")),
            ("resolved_by", s("vk_3f9a1c2b7d4e")),
            ("resolved_at", s("2026-12-01T10:05:00Z")),
            (
                "lists_added",
                A::L(vec![A::M(
                    [("list", s("blocked_emails")), ("value", s("jane.doe@example.com"))]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )]),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    );
    api.stack
        .dynamodb
        .update_item()
        .table_name(&api.stack.table)
        .key("pk", s(&key.pk))
        .key("sk", s("REVIEW"))
        .update_expression("SET #s = :r, resolution = :res")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":r", s("resolved"))
        .expression_attribute_values(":res", resolution)
        .send()
        .await
        .expect("UpdateItem review");
}

fn deps(api: &ApiStack, tap: &Tap) -> events::Deps<EventBridgeBus, ObjectStore> {
    events::Deps {
        bus: tap.bus.clone(),
        objects: ObjectStore::new(api.stack.s3.clone()),
        sleep: events::TokioSleep,
        data_bucket: Some(api.stack.bucket.clone()),
    }
}

/// Every line of the archive by event id, with the number of times it is there.
async fn archived(api: &ApiStack) -> BTreeMap<String, usize> {
    let s3 = &api.stack.s3;
    let listed = s3
        .list_objects_v2()
        .bucket(&api.stack.bucket)
        .prefix("archive/")
        .send()
        .await
        .expect("ListObjectsV2");
    let mut ids = BTreeMap::new();
    for o in listed.contents() {
        let key = o.key().unwrap();
        let body = s3
            .get_object()
            .bucket(&api.stack.bucket)
            .key(key)
            .send()
            .await
            .expect("GetObject");
        let bytes = body.body.collect().await.expect("the body").into_bytes();
        for line in verdict::app::archive::read_lines(&bytes).expect("gzip NDJSON") {
            *ids.entry(line["event_id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
        }
    }
    ids
}

/// What arrived, by event id: (kind name from the detail-type, detail, how many times).
fn by_id(arrived: &[Value]) -> BTreeMap<String, (String, Value, usize)> {
    let mut out: BTreeMap<String, (String, Value, usize)> = BTreeMap::new();
    for e in arrived {
        let id = e["detail"]["event_id"]
            .as_str()
            .expect("every detail has an event_id")
            .to_owned();
        let entry = out
            .entry(id)
            .or_insert_with(|| (e["detail-type"].as_str().unwrap().to_owned(), e["detail"].clone(), 0));
        entry.2 += 1;
    }
    out
}

fn kind_of(detail_type: &str) -> EventKind {
    EventKind::ALL
        .into_iter()
        .find(|k| k.detail_type() == detail_type)
        .unwrap_or_else(|| panic!("unknown detail-type {detail_type}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_is_published_once_per_committed_change_and_a_redelivery_adds_no_new_id() {
    let api = ApiStack::new().await;
    let tap = Tap::new(&api.stack.config).await;
    let mut stream = StreamReader::new(&api.stack.config, &api.stack.dynamodb, &api.stack.table).await;

    // A model activation, two decisions, a refused request, a replay and a conflict (the same
    // transaction id with another body): the last three commit nothing.
    let (tenant, key) = api.tenant("acme").await;
    for id in ["tx-ev-1", "tx-ev-2"] {
        let r = api.send(&post_tx(&key, id)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let replay = api.send(&post_tx(&key, "tx-ev-1")).await;
    assert_eq!(replay.body["idempotent_replay"], true, "{}", replay.body);
    let refused = api.send(&post_tx(&key, "tx-ev-3").body("{\"id\": 7}")).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let mut other = post_tx(&key, "tx-ev-1").body_json();
    other["amount"] = json!(999_999);
    let conflict = api.send(&post_tx(&key, "tx-ev-1").json(&other)).await;
    assert_eq!(conflict.status, 409, "{}", conflict.body);

    // A label, then a relabel, through the labels path.
    let t1 = sample_tx("tx-ev-1");
    let fraud = label(LabelValue::Fraud, "2018-08-20T10:00:00Z", "chargeback");
    let legit = label(LabelValue::Legit, "2018-08-21T10:00:00Z", "review");
    write_label(&api, &tenant, &t1, &fraud, None, 1).await;
    write_label(&api, &tenant, &t1, &legit, Some(&fraud), -1).await;

    let ruleset = activate_ruleset(&api, &key).await;
    open_and_resolve_review(&api, &tenant, "tx-ev-2").await;

    let deps = deps(&api, &tap);
    let records = stream.next_records().await;
    assert!(!records.is_empty());
    let response = events::handle(&deps, stream_event(&records)).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let first = by_id(&tap.drain().await);
    let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, (detail_type, detail, times)) in &first {
        assert_eq!(*times, 1, "{id} ({detail_type}) arrived {times} times");
        let kind = kind_of(detail_type);
        let problems = validate(&schema(kind), detail, kind.name());
        assert!(problems.is_empty(), "{problems:?}\n{detail:#}");
        assert_eq!(detail["tenant"], "acme");
        *per_kind.entry(kind.name()).or_default() += 1;
    }
    assert_eq!(
        per_kind,
        BTreeMap::from([
            ("decision", 2),
            ("label", 2),
            ("model-activation", 1),
            ("review-resolution", 1),
            ("ruleset-activation", 1),
        ]),
        "one event per committed change"
    );
    let decided: BTreeSet<&str> = first
        .values()
        .filter(|(t, _, _)| t == EventKind::Decision.detail_type())
        .map(|(_, d, _)| d["transaction_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        decided,
        BTreeSet::from(["tx-ev-1", "tx-ev-2"]),
        "no event for the refused request"
    );
    let amounts: Vec<&Value> = first
        .values()
        .filter(|(t, d, _)| t == EventKind::Decision.detail_type() && d["transaction_id"] == "tx-ev-1")
        .map(|(_, d, _)| &d["inputs"]["amount"])
        .collect();
    assert_eq!(
        amounts,
        vec![&json!(5731)],
        "one decision for tx-ev-1, none for the conflicting body"
    );
    let labels: BTreeSet<&str> = first
        .values()
        .filter(|(t, _, _)| t == EventKind::Label.detail_type())
        .map(|(_, d, _)| d["label"]["value"].as_str().unwrap())
        .collect();
    assert_eq!(labels, BTreeSet::from(["fraud", "legit"]), "a relabel is its own event");
    let activated = first
        .values()
        .find(|(t, _, _)| t == EventKind::RulesetActivation.detail_type())
        .unwrap();
    assert_eq!(activated.1["version"], ruleset);

    // The archive: the two decisions and the two labels.
    let archive = archived(&api).await;
    assert_eq!(archive.len(), 4, "{archive:?}");
    assert!(archive.values().all(|n| *n == 1));

    // Lambda redelivers the same batch: the same events again, under the same ids only.
    let response = events::handle(&deps, stream_event(&records)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let again = by_id(&tap.drain().await);
    assert_eq!(
        again.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>(),
        "a redelivery publishes no new id"
    );
    assert!(again.values().all(|(_, _, n)| *n == 1));
    assert_eq!(
        archived(&api).await,
        archive,
        "the redelivery overwrote its own objects"
    );

    // Nothing committed since: the stream has nothing that publishes.
    let late = api.send(&post_tx(&key, "tx-ev-1")).await;
    assert_eq!(late.body["idempotent_replay"], true);
    let records = stream.next_records().await;
    let response = events::handle(&deps, stream_event(&records)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert!(tap.drain().await.is_empty(), "a replay publishes nothing");
}

/// The real EventBridge adapter, except that the entries of the ids in `refuse` are answered as
/// failed (not sent) as many times as their count says.
struct Refusing<'a> {
    bus: &'a EventBridgeBus,
    refuse: Mutex<BTreeMap<String, usize>>,
    calls: Mutex<Vec<Vec<String>>>,
}

impl EventBus for Refusing<'_> {
    async fn put_events(&self, events: &[Event]) -> Result<Vec<EntryOutcome>, StoreError> {
        self.calls
            .lock()
            .unwrap()
            .push(events.iter().map(|e| e.event_id.clone()).collect());
        let mut refused = Vec::new();
        let mut sent = Vec::new();
        {
            let mut refuse = self.refuse.lock().unwrap();
            for (i, e) in events.iter().enumerate() {
                match refuse.get_mut(&e.event_id) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        refused.push(i);
                    }
                    _ => sent.push(e.clone()),
                }
            }
        }
        let mut outcomes = self.bus.put_events(&sent).await?.into_iter();
        Ok((0..events.len())
            .map(|i| {
                if refused.contains(&i) {
                    EntryOutcome::Failed {
                        code: "InternalFailure".into(),
                        message: "refused by the test".into(),
                    }
                } else {
                    outcomes.next().expect("one outcome per entry sent")
                }
            })
            .collect())
    }
}

fn refusing<'a>(api: &ApiStack, tap: &'a Tap, id: &str, times: usize) -> events::Deps<Refusing<'a>, ObjectStore> {
    events::Deps {
        bus: Refusing {
            bus: &tap.bus,
            refuse: Mutex::new(BTreeMap::from([(id.to_owned(), times)])),
            calls: Mutex::new(Vec::new()),
        },
        objects: ObjectStore::new(api.stack.s3.clone()),
        sleep: events::TokioSleep,
        data_bucket: Some(api.stack.bucket.clone()),
    }
}

/// Twelve committed decisions on the stream, and their records.
async fn twelve_decisions() -> (ApiStack, Tap, Vec<Value>, Vec<String>) {
    let api = ApiStack::new().await;
    let tap = Tap::new(&api.stack.config).await;
    let (_, key) = api.tenant("acme").await;
    let mut stream = StreamReader::new(&api.stack.config, &api.stack.dynamodb, &api.stack.table).await;
    stream.next_records().await; // the model activation and the key
    for i in 0..12 {
        let r = api.send(&post_tx(&key, &format!("tx-f-{i:02}"))).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Only the decisions: a batch as the event source mapping's filter passes it.
    let records: Vec<Value> = stream
        .next_records()
        .await
        .into_iter()
        .filter(|r| r["dynamodb"]["Keys"]["sk"]["S"] == "DECISION")
        .collect();
    assert_eq!(records.len(), 12);
    let dry = events::Deps {
        bus: verdict::ports::in_memory::InMemoryBus::default(),
        objects: verdict::ports::in_memory::InMemoryObjects::default(),
        sleep: events::TokioSleep,
        data_bucket: None,
    };
    events::handle(&dry, stream_event(&records)).await.unwrap();
    let ids = dry.bus.published().into_iter().map(|e| e.event_id).collect();
    (api, tap, records, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_putevents_entry_is_sent_again_alone_and_arrives_once() {
    let (api, tap, records, ids) = twelve_decisions().await;
    let deps = refusing(&api, &tap, &ids[4], 1);
    let response = events::handle(&deps, stream_event(&records)).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let calls = deps.bus.calls.lock().unwrap().clone();
    assert_eq!(
        calls.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![10, 1, 2],
        "{calls:?}"
    );
    assert_eq!(
        calls[1],
        vec![ids[4].clone()],
        "the retry carries the refused entry alone"
    );
    let arrived = by_id(&tap.drain().await);
    assert_eq!(
        arrived.keys().cloned().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect()
    );
    assert!(arrived.values().all(|(_, _, n)| *n == 1), "each decision arrived once");
    let archive = archived(&api).await;
    assert_eq!(
        archive.keys().cloned().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect()
    );
    assert!(archive.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_keeps_failing_is_retried_by_lambda_from_its_record_and_nothing_is_lost() {
    let (api, tap, records, ids) = twelve_decisions().await;
    let deps = refusing(&api, &tap, &ids[4], usize::MAX);
    let response = events::handle(&deps, stream_event(&records)).await.unwrap();
    let seq = |r: &Value| r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned();
    let reported: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(reported, records[4..].iter().map(seq).collect::<Vec<_>>());
    let first = by_id(&tap.drain().await);
    assert!(!first.contains_key(&ids[4]));
    assert!(!first.contains_key(&ids[11]), "nothing after the failed call is sent");
    assert!(first.contains_key(&ids[0]) && first.contains_key(&ids[9]));
    let archive = archived(&api).await;
    assert_eq!(
        archive.keys().cloned().collect::<BTreeSet<_>>(),
        ids[..4].iter().cloned().collect(),
        "only the records before the failure are archived"
    );

    // Lambda retries from the lowest reported sequence number; the bus has recovered.
    let from = records.iter().position(|r| seq(r) == reported[0]).unwrap();
    let response = events::handle(&self::deps(&api, &tap), stream_event(&records[from..]))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let second = by_id(&tap.drain().await);
    let all: BTreeSet<String> = first.keys().chain(second.keys()).cloned().collect();
    assert_eq!(all, ids.iter().cloned().collect(), "every decision arrived");
    for (i, id) in ids.iter().enumerate().take(4) {
        assert!(
            !second.contains_key(id),
            "decision {i}, before the failure, was not sent again"
        );
    }
    let archive = archived(&api).await;
    assert_eq!(
        archive.keys().cloned().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect()
    );
    assert!(
        archive.values().all(|n| *n == 1),
        "every decision archived once: {archive:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_failure_reports_the_whole_batch_and_its_retry_archives_each_decision_once() {
    let (api, tap, records, ids) = twelve_decisions().await;
    let mut broken = deps(&api, &tap);
    broken.data_bucket = Some(format!("{}-missing", api.stack.bucket));
    let response = events::handle(&broken, stream_event(&records)).await.unwrap();
    let seq = |r: &Value| r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned();
    let reported: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(reported, records.iter().map(seq).collect::<Vec<_>>(), "the whole batch");
    assert!(archived(&api).await.is_empty());
    tap.drain().await;
    // Lambda retries from the same record.
    let response = events::handle(&deps(&api, &tap), stream_event(&records)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let archive = archived(&api).await;
    assert_eq!(
        archive.keys().cloned().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect()
    );
    assert!(archive.values().all(|n| *n == 1));
    assert_eq!(
        by_id(&tap.drain().await).len(),
        12,
        "its events went out again, same ids"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_table_made_before_the_stream_gets_it() {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    let config = verdict_integration::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let table = format!("verdict-old-{}", verdict_integration::unique_suffix());
    let mut create = dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, kind) in [("pk", KeyType::Hash), ("sk", KeyType::Range)] {
        create = create
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            );
    }
    create.send().await.expect("CreateTable without a stream");
    assert_eq!(
        verdict::adapters::dynamodb::stream_arn(&dynamodb, &table)
            .await
            .unwrap(),
        None
    );
    let created = verdict::adapters::dynamodb::create_table_if_missing(&dynamodb, &table)
        .await
        .unwrap();
    assert!(!created);
    assert!(verdict::adapters::dynamodb::stream_arn(&dynamodb, &table)
        .await
        .unwrap()
        .is_some());
}

/// PutEvents failing whole on moto (the fault proxy answers 500 InternalServerError): the SDK's
/// own attempts and the publisher's, then the batch is reported from its first record, nothing
/// archived; Lambda's retry publishes and archives each decision once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_outage_reports_the_batch_and_its_retry_loses_nothing() {
    let (api, tap, records, ids) = twelve_decisions().await;
    let proxy = verdict_integration::faults::Proxy::start();
    let config = proxy.sdk_config().await;
    let deps = events::Deps {
        bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&config), &tap.bus_name),
        objects: ObjectStore::new(api.stack.s3.clone()),
        sleep: events::TokioSleep,
        data_bucket: Some(api.stack.bucket.clone()),
    };
    // 3 SDK attempts for each of the publisher's 3 sends; then one that goes through.
    proxy.configure(json!({"next": {"PutEvents": vec!["internal"; 9]}}));
    let response = events::handle(&deps, stream_event(&records)).await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 12, "{response:?}");
    assert!(tap.drain().await.is_empty());
    assert!(archived(&api).await.is_empty());
    assert_eq!(proxy.faults_by_kind().get("internal"), Some(&9));

    let response = events::handle(&deps, stream_event(&records)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let arrived = by_id(&tap.drain().await);
    assert_eq!(
        arrived.keys().cloned().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect()
    );
    assert!(arrived.values().all(|(_, _, n)| *n == 1));
    let archive = archived(&api).await;
    assert_eq!(archive.len(), 12);
    assert!(archive.values().all(|n| *n == 1));
}
