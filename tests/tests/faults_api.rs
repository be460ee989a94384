//! `functions/api`'s real handler under injected DynamoDB faults (tests/fault_proxy.py): payment
//! services retrying with the same Idempotency-Key get every transaction decided exactly once.
//!
//! The tenant, model and key are set up directly on moto; the app under test talks through the
//! proxy; the checks read directly from moto again.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use verdict::adapters::dynamodb::Keys;
use verdict::domain::auth::ApiKey;
use verdict::domain::decision::DecisionRecord;
use verdict::domain::features::EntityAggregate;
use verdict::domain::{CustomerId, TenantId, TerminalId};
use verdict_integration::api::{ApiStack, Event, TestApp};
use verdict_integration::faults::Proxy;

/// One answer a client got.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

/// A payment service's view of one transaction: every answer, in order.
#[derive(Debug, Default)]
struct Log(Mutex<BTreeMap<String, Vec<Answer>>>);

impl Log {
    fn push(&self, id: &str, a: Answer) {
        self.0.lock().unwrap().entry(id.to_owned()).or_default().push(a);
    }
}

struct Workload {
    /// (id, body) of each transaction.
    transactions: Vec<(String, Value)>,
    /// Indexes into `transactions`, in submission order; some appear twice (a double submit
    /// from a second client).
    submissions: Vec<usize>,
}

/// `n` transactions over `customers` customers and `terminals` terminals across 5 days; every
/// 10th is submitted a second time.
fn workload(n: usize, customers: usize, terminals: usize, seed: u64) -> Workload {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut transactions = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("tx-{i:05}");
        let at = format!(
            "2018-08-{:02}T{:02}:{:02}:{:02}Z",
            1 + rng.gen_range(0..5),
            rng.gen_range(0..24),
            rng.gen_range(0..60),
            rng.gen_range(0..60)
        );
        let body = json!({
            "id": id,
            "occurred_at": at,
            "amount": rng.gen_range(100..40_000),
            "currency": "EUR",
            "customer_id": format!("cust-{}", rng.gen_range(0..customers)),
            "terminal_id": format!("term-{}", rng.gen_range(0..terminals)),
        });
        transactions.push((id, body));
    }
    let mut submissions: Vec<usize> = (0..n).collect();
    for i in (0..n).step_by(10) {
        submissions.push(i);
    }
    // Spread the double submits so both copies can be in flight together.
    for i in (1..submissions.len()).rev() {
        let j = rng.gen_range(i.saturating_sub(32)..=i);
        submissions.swap(i, j);
    }
    Workload {
        transactions,
        submissions,
    }
}

fn request(bearer: &str, id: &str, body: &Value, attempt: u32) -> Event {
    Event::load("post-transaction")
        .authorization(bearer)
        .header("idempotency-key", &format!("idem-{id}"))
        .request_id(&format!("req-{id}-{attempt}"))
        .json(body)
}

async fn call(app: &TestApp, event: &Event) -> Answer {
    let response = ::api::handle(app, event.request()).await;
    let (parts, body) = response.into_parts();
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Answer {
        status: parts.status.as_u16(),
        content_type: header("content-type"),
        retry_after: header("retry-after"),
        body: serde_json::from_slice(body.as_ref()).unwrap_or(Value::Null),
    }
}

/// Sends the transaction as a payment service does: the same key and body again on a 5xx, after a
/// short growing backoff, at most `attempts` times.
async fn submit(app: &TestApp, bearer: &str, id: &str, body: &Value, attempts: u32, log: &Log) {
    for attempt in 0..attempts {
        let a = call(app, &request(bearer, id, body, attempt)).await;
        let retry = a.status >= 500;
        log.push(id, a);
        if !retry {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10 << attempt.min(5))).await;
    }
}

/// Runs the workload from `clients` concurrent clients.
async fn run(app: Arc<TestApp>, key: &ApiKey, w: &Workload, clients: usize, attempts: u32) -> Arc<Log> {
    let log = Arc::new(Log::default());
    let bearer: Arc<str> = format!("Bearer {}", key.expose()).into();
    let next = Arc::new(Mutex::new(0usize));
    let work = Arc::new(
        w.submissions
            .iter()
            .map(|&i| w.transactions[i].clone())
            .collect::<Vec<_>>(),
    );
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (app, bearer, log, next, work) = (app.clone(), bearer.clone(), log.clone(), next.clone(), work.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some((id, body)) = work.get(i) else { return };
                submit(&app, &bearer, id, body, attempts, &log).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    log
}

/// Day counters (count, amount in minor units) per entity.
type Recount = BTreeMap<String, BTreeMap<i32, (u64, i64)>>;

/// Every decision item of the tenant in the table, by transaction id, from one paginated Scan
/// (cheaper on moto than 200 history queries): an id stored twice would show twice.
async fn stored_decisions(api: &ApiStack, tenant: &TenantId) -> BTreeMap<String, Vec<DecisionRecord>> {
    let keys = Keys::new(tenant);
    let mut out: BTreeMap<String, Vec<DecisionRecord>> = BTreeMap::new();
    let mut start = None;
    loop {
        let page = api
            .stack
            .dynamodb
            .scan()
            .table_name(&api.stack.table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("Scan");
        for item in page.items.unwrap_or_default() {
            let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let is_decision = item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|s| s == "DECISION");
            let Some(id) = keys.decision_id(&pk).filter(|_| is_decision) else {
                continue;
            };
            let record: DecisionRecord = serde_dynamo::aws_sdk_dynamodb_1::from_item(item)
                .unwrap_or_else(|e| panic!("{pk}: not a decision: {e}"));
            assert_eq!(record.id, id, "{pk}");
            out.entry(id.to_string()).or_default().push(record);
        }
        match page.last_evaluated_key {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    out
}

/// The checks that hold whatever failed: each transaction stored once, every 2xx the stored
/// decision, aggregates equal to a recount of the stored decisions.
async fn check_exactly_once(api: &ApiStack, tenant: &TenantId, w: &Workload, log: &Log) {
    let log = log.0.lock().unwrap().clone();
    let stored = stored_decisions(api, tenant).await;
    let doubled: Vec<_> = stored.iter().filter(|(_, d)| d.len() != 1).map(|(id, _)| id).collect();
    assert!(doubled.is_empty(), "decisions stored more than once: {doubled:?}");

    let mut customers: Recount = BTreeMap::new();
    let mut terminals: Recount = BTreeMap::new();
    for (id, body) in &w.transactions {
        let answers = log.get(id).map(Vec::as_slice).unwrap_or_default();
        let oks: Vec<&Answer> = answers.iter().filter(|a| (200..300).contains(&a.status)).collect();
        let Some(record) = stored.get(id).and_then(|d| d.first()) else {
            assert!(
                oks.is_empty(),
                "{id}: a client got a 2xx for a decision that is not stored: {oks:?}"
            );
            panic!(
                "{id} is not stored; its answers: {:?}",
                answers.iter().map(|a| a.status).collect::<Vec<_>>()
            );
        };
        assert!(
            !oks.is_empty(),
            "{id}: no client was ever answered 2xx ({:?})",
            answers.iter().map(|a| a.status).collect::<Vec<_>>()
        );
        // The same decision, not just an equal one: made by the same request at the same time.
        let want = json!({
            "decision": record.decision.as_str(),
            "score": record.score,
            "reasons": record.reasons,
            "created_at": record.created_at,
            "request_id": record.request_id,
        });
        for a in &oks {
            let got = json!({
                "decision": a.body["decision"],
                "score": a.body["score"],
                "reasons": a.body["reasons"],
                "created_at": a.body["created_at"],
                "request_id": a.body["request_id"],
            });
            assert_eq!(
                got, want,
                "{id}: a client was answered another decision than the stored one"
            );
        }
        let inputs = serde_json::to_value(&record.inputs).unwrap();
        for field in ["amount", "occurred_at", "customer_id", "terminal_id"] {
            assert_eq!(inputs[field], body[field], "{id}: stored {field}");
        }
        let day = record.occurred_at.epoch_day();
        let amount = inputs["amount"].as_i64().unwrap();
        for (map, entity) in [(&mut customers, "customer_id"), (&mut terminals, "terminal_id")] {
            let e = map
                .entry(inputs[entity].as_str().unwrap().to_owned())
                .or_default()
                .entry(day)
                .or_default();
            e.0 += 1;
            e.1 += amount;
        }
    }
    assert_eq!(
        stored.len(),
        w.transactions.len(),
        "only the workload's transactions are stored"
    );

    // Every aggregate equals the recount, read through the store's public API.
    let counters = |agg: EntityAggregate| -> BTreeMap<i32, (u64, i64)> {
        agg.days()
            .into_iter()
            .filter(|(_, c)| c.count > 0)
            .map(|(d, c)| (d, (c.count, c.amount_minor)))
            .collect()
    };
    for (id, want) in &customers {
        let c = CustomerId::parse(id).unwrap();
        let agg = api.stack.store.customer_aggregate(tenant, &c).await.unwrap();
        assert_eq!(&counters(agg), want, "customer {id}");
    }
    for (id, want) in &terminals {
        let t = TerminalId::parse(id).unwrap();
        let agg = api.stack.store.terminal_aggregate(tenant, &t).await.unwrap();
        assert_eq!(&counters(agg), want, "terminal {id}");
    }
}

/// What the clients saw, by status.
fn statuses(log: &Log) -> BTreeMap<u16, usize> {
    let mut out = BTreeMap::new();
    for answers in log.0.lock().unwrap().values() {
        for a in answers {
            *out.entry(a.status).or_default() += 1;
        }
    }
    out
}

/// About 10% of DynamoDB calls faulted, over every kind. The rates add up per operation; the
/// conflict kind applies to TransactWriteItems only. `delay` outlasts the 1 s attempt timeout.
fn ten_percent() -> Value {
    json!({
        "seed": 9,
        "delay_ms": 1200,
        "rates": {"dynamodb:*": {
            "conflict": 0.015,
            "throughput": 0.015,
            "throttling": 0.015,
            "internal": 0.015,
            "reset": 0.015,
            "drop": 0.02,
            "delay": 0.005,
        }}
    })
}

async fn setup() -> (ApiStack, TenantId, ApiKey, Proxy, Arc<TestApp>) {
    let api = ApiStack::new().await;
    let (tenant, key) = api.tenant("acme").await;
    let proxy = Proxy::start();
    let faulted = proxy.clients(&api.stack).await;
    let app = Arc::new(::api::App::new(faulted.store, faulted.blobs, None));
    (api, tenant, key, proxy, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_decisions_from_retrying_clients_under_faults_are_each_stored_once() {
    let started = Instant::now();
    let (api, tenant, key, proxy, app) = setup().await;
    let w = workload(2_000, 200, 5, 42);
    proxy.configure(ten_percent());
    let ready = started.elapsed();
    let log = run(app, &key, &w, 16, 10).await;
    let ran = started.elapsed() - ready;
    proxy.calm();
    let stats = proxy.stats();
    println!(
        "fault stats: {}",
        serde_json::to_string_pretty(&stats["stats"]).unwrap()
    );
    println!("faults by kind: {:?}", proxy.faults_by_kind());
    println!("answers by status: {:?}", statuses(&log));
    println!(
        "set up in {ready:.1?}; {} submissions in {ran:.1?}",
        w.submissions.len()
    );

    let faults = proxy.faults_by_kind();
    for kind in [
        "conflict",
        "throughput",
        "throttling",
        "internal",
        "reset",
        "drop",
        "delay",
    ] {
        assert!(
            faults.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} fault was injected: {faults:?}"
        );
    }
    check_exactly_once(&api, &tenant, &w, &log).await;
    println!("checked in {:.1?} overall", started.elapsed());
}

/// With many more faults, some requests exhaust the SDK's retries: the client must then get a
/// 503 problem with Retry-After (never a 500), and a later retry the same decision. The
/// exactly-once checks come first; then every non-2xx must be a 503 problem with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cannot_be_answered_gets_a_503_with_retry_after_and_the_same_decision_later() {
    let started = Instant::now();
    let (api, tenant, key, proxy, app) = setup().await;
    let w = workload(300, 40, 5, 7);
    proxy.configure(json!({
        "seed": 11,
        "rates": {"dynamodb:*": {"throttling": 0.1, "internal": 0.1, "reset": 0.1, "drop": 0.1}}
    }));
    let log = run(app, &key, &w, 8, 12).await;
    proxy.calm();
    println!(
        "fault stats: {}",
        serde_json::to_string_pretty(&proxy.stats()["stats"]).unwrap()
    );
    println!("answers by status: {:?}", statuses(&log));
    check_exactly_once(&api, &tenant, &w, &log).await;

    let mut failures = 0;
    for (id, answers) in log.0.lock().unwrap().iter() {
        for a in answers.iter().filter(|a| !(200..300).contains(&a.status)) {
            failures += 1;
            assert_eq!(a.status, 503, "{id}: {:?}", a.body);
            assert_eq!(a.content_type.as_deref(), Some("application/problem+json"), "{id}");
            assert!(
                a.retry_after.as_deref().is_some_and(|s| s.parse::<u32>().is_ok()),
                "{id}: {a:?}"
            );
            assert_eq!(a.body["status"], 503, "{id}");
        }
    }
    assert!(
        failures > 0,
        "the fault rate left no request unanswered; the check saw nothing"
    );
    println!("{failures} failed answers, all 503; {:.1?}", started.elapsed());
}

/// The proxy's TransactionCanceledException is parsed by the SDK as DynamoDB's is: one
/// cancellation reason per item, with its code, both for an injected conflict and for two
/// transactions in flight on the same item (the conflict simulation the contention run uses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_reads_the_cancellation_reasons_of_the_proxys_conflicts() {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
    let stack = verdict_integration::Stack::new().await;
    let proxy = Proxy::start();
    let faulted = proxy.clients(&stack).await;
    let put = |pk: &str| {
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&stack.table)
                    .item("pk", AttributeValue::S(pk.into()))
                    .item("sk", AttributeValue::S("X".into()))
                    .build()
                    .unwrap(),
            )
            .build()
    };
    let codes = |e: aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, _>| match e.into_service_error() {
        TransactWriteItemsError::TransactionCanceledException(t) => t
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or("?").to_owned())
            .collect::<Vec<_>>(),
        other => panic!("not a cancellation: {other:?}"),
    };

    proxy.configure(json!({"next": {"TransactWriteItems": ["conflict"]}}));
    let e = faulted
        .dynamodb
        .transact_write_items()
        .transact_items(put("a"))
        .transact_items(put("b"))
        .send()
        .await
        .expect_err("an injected conflict");
    assert_eq!(codes(e), ["TransactionConflict", "TransactionConflict"]);

    // The hold must stay well inside the 1 s attempt timeout: a held first transaction that
    // times out is retried with the same token and answered TransactionInProgress instead.
    proxy.configure(json!({"simulate_conflicts": true, "hold_ms": 500}));
    let send = |items: Vec<TransactWriteItem>| {
        faulted
            .dynamodb
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
    };
    let (first, second) = tokio::join!(send(vec![put("c"), put("shared")]), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(vec![put("shared"), put("d")]).await
    });
    assert!(first.is_ok(), "{first:?}");
    assert_eq!(
        codes(second.expect_err("the later one conflicts")),
        ["TransactionConflict", "None"]
    );
    let stats = proxy.calm();
    assert_eq!(stats["stats"]["ops"]["TransactWriteItems"]["conflicts"], 1, "{stats}");
}
