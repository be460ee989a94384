//! The backtest job path over the real handlers against moto: the api's 202 for `mode: job`
//! (the request object), the backtest function on `events/s3/backtest-request.json`, then
//! `GET /v1/backtests/{id}` with the same report as the inline backtest of the window; a
//! redelivered event runs nothing; another tenant's GET is 404; a missing ruleset ends failed.

use serde_json::{json, Value};
use std::sync::Arc;
use verdict::adapters::ObjectStore;
use verdict::app::backtest::{request_key, start_job, BacktestRequest, MAX_JOB_DECISIONS};
use verdict::domain::auth::ApiKey;
use verdict::domain::{Currency, CustomerId, Money, TenantId, TerminalId, Timestamp, Transaction, TransactionId};
use verdict::ports::jobs::JobStore;
use verdict::ports::objects::Objects;
use verdict_integration::api::{ApiStack, Event, Reply};
use verdict_integration::repo_root;

async fn call(api: &ApiStack, event: &str, path: &str, key: &ApiKey, body: Option<Value>) -> Reply {
    let mut e = Event::load(event).path(path).bearer(key);
    if let Some(b) = body {
        e = e.json(&b);
    }
    api.send(&e).await
}

async fn stack() -> ApiStack {
    let mut api = ApiStack::new().await;
    api.app.backtests = Some(Arc::new(api::S3Backtests {
        objects: ObjectStore::new(api.stack.s3.clone()),
        jobs: api.stack.store.clone(),
        bucket: api.stack.bucket.clone(),
    }));
    api
}

fn deps(api: &ApiStack) -> backtest::Deps {
    backtest::Deps {
        store: api.stack.store.clone(),
        objects: ObjectStore::new(api.stack.s3.clone()),
        bucket: api.stack.bucket.clone(),
        limit: MAX_JOB_DECISIONS,
    }
}

/// `events/s3/backtest-request.json` naming the request object of `id`, as S3 would send it.
async fn event(api: &ApiStack, tenant: &TenantId, id: &str) -> backtest::S3Event {
    let key = format!("backtests/incoming/{}/{id}.json", tenant.as_str());
    let objects = ObjectStore::new(api.stack.s3.clone());
    let head = objects
        .head(&api.stack.bucket, &key)
        .await
        .unwrap()
        .expect("the request object");
    let raw = std::fs::read_to_string(repo_root().join("events/s3/backtest-request.json")).unwrap();
    let mut v: Value = serde_json::from_str(&raw).unwrap();
    let r = &mut v["Records"][0]["s3"];
    r["bucket"]["name"] = api.stack.bucket.clone().into();
    r["bucket"]["arn"] = format!("arn:aws:s3:::{}", api.stack.bucket).into();
    r["object"]["key"] = key.into();
    r["object"]["eTag"] = head.etag.into();
    r["object"]["size"] = head.size.into();
    serde_json::from_value(v).unwrap()
}

async fn get(api: &ApiStack, key: &ApiKey, id: &str) -> Reply {
    call(api, "get-backtest", &format!("/v1/backtests/{id}"), key, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_backtest_gives_the_inline_report_once_and_only_to_its_tenant() {
    let api = stack().await;
    let (tenant, key) = api.tenant("acme").await;
    let (_, other_key) = api.tenant("globex").await;
    let mut txs = Vec::new();
    for (i, (amount, at)) in [
        (250_000, "2018-08-08T01:00:00Z"),
        (1_000, "2018-08-08T03:00:00Z"),
        (2_000, "2018-08-08T04:00:00Z"),
        (250_000, "2018-08-09T00:00:00Z"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("bj-{i}");
        let base = Event::load("post-transaction");
        let mut body = base.body_json();
        body["id"] = json!(id);
        body["amount"] = json!(amount);
        body["occurred_at"] = json!(at);
        body["customer_id"] = json!(format!("c-{i}"));
        let r = api
            .send(&base.without_header("idempotency-key").bearer(&key).json(&body))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        txs.push(Transaction {
            id: TransactionId::parse(&id).unwrap(),
            occurred_at: Timestamp::parse("t", at).unwrap(),
            amount: Money::new(amount, Currency::EUR).unwrap(),
            customer_id: CustomerId::parse(&format!("c-{i}")).unwrap(),
            terminal_id: TerminalId::parse("term_3412").unwrap(),
        });
    }
    verdict_integration::label_fraud(&api.stack.store, &tenant, &txs[0]).await;
    let r = call(
        &api,
        "save-rule",
        "/v1/rules",
        &key,
        Some(json!({"id": "large", "name": "Large", "description": "large matched", "expression": "tx.amount > 100000", "action": "block"})),
    )
    .await;
    assert!(r.status < 300, "{}", r.body);
    let r = call(
        &api,
        "create-ruleset",
        "/v1/rulesets",
        &key,
        Some(json!({"rules": [{"id": "large"}]})),
    )
    .await;
    let v = r.body["version"].as_u64().unwrap();
    let path = format!("/v1/rulesets/{v}/backtest");
    let window = json!({"from": "2018-08-08T00:00:00Z", "to": "2018-08-09T00:00:00Z"});
    let inline = call(&api, "backtest-ruleset", &path, &key, Some(window.clone())).await;
    assert_eq!(inline.status, 200, "{}", inline.body);
    assert_eq!(inline.body["decisions"], 3, "{}", inline.body);

    let mut job_body = window.clone();
    job_body["mode"] = json!("job");
    let queued = call(&api, "backtest-ruleset", &path, &key, Some(job_body)).await;
    assert_eq!(queued.status, 202, "{}", queued.body);
    let id = queued.body["id"].as_str().unwrap().to_owned();
    let url = format!("/v1/backtests/{id}");
    assert_eq!(queued.body, json!({"id": id, "status": "queued", "result_url": url}));
    assert_eq!(queued.header("location"), Some(url.as_str()));
    let r = get(&api, &key, &id).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!("queued")), "{}", r.body);

    let deps = deps(&api);
    let e = event(&api, &tenant, &id).await;
    let out = backtest::handle(&deps, e.clone()).await.unwrap();
    assert_eq!(
        out.records,
        [backtest::BacktestJobOutcome::Completed {
            id: id.clone(),
            decisions: 3
        }]
    );
    let done = get(&api, &key, &id).await;
    assert_eq!(
        (done.status, &done.body["status"]),
        (200, &json!("completed")),
        "{}",
        done.body
    );
    assert_eq!(done.body["report"], inline.body, "the job's report is the inline one");
    assert_eq!(done.body["id"], json!(id));

    // Delivered again: the job ended, nothing runs, the job item shows one invocation.
    let out = backtest::handle(&deps, e).await.unwrap();
    assert_eq!(
        out.records,
        [backtest::BacktestJobOutcome::Duplicate { id: id.clone() }]
    );
    let etag = ObjectStore::new(api.stack.s3.clone())
        .head(
            &api.stack.bucket,
            &request_key(&tenant, &verdict::app::backtest::BacktestId::parse(&id).unwrap()),
        )
        .await
        .unwrap()
        .unwrap()
        .etag;
    let job_ref =
        verdict::domain::ObjectRef::new(&api.stack.bucket, format!("backtests/incoming/acme/{id}.json"), &etag);
    let job = api
        .stack
        .store
        .read_job::<verdict::app::backtest::NoProgress>(&tenant, &job_ref)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (job.status, job.invocations),
        (verdict::domain::JobStatus::Completed, 1)
    );

    // Another tenant, an id never issued, an id that is not one.
    get(&api, &other_key, &id).await.assert_problem(404, "not-found");
    get(&api, &key, "bt1533723306000a4e1c7b2d9f06e3a")
        .await
        .assert_problem(404, "not-found");
    // Percent-decoded once at the edge: `../x` breaks the id rules, a 400 naming the id.
    let reply = get(&api, &key, "..%2Fx").await;
    reply.assert_problem(400, "validation");
    assert_eq!(reply.fields(), vec!["id".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_naming_a_missing_ruleset_ends_failed_with_the_reason() {
    let api = stack().await;
    let (tenant, key) = api.tenant("acme").await;
    let window = json!({"from": "2018-08-08T00:00:00Z", "to": "2018-08-09T00:00:00Z", "mode": "job"});
    // The api refuses it up front...
    call(&api, "backtest-ruleset", "/v1/rulesets/99/backtest", &key, Some(window))
        .await
        .assert_problem(404, "not-found");
    // ...a request written anyway (the ruleset could not be read by then) ends failed.
    let request = BacktestRequest {
        version: 99,
        from: Timestamp::parse("t", "2018-08-08T00:00:00Z").unwrap(),
        to: Timestamp::parse("t", "2018-08-09T00:00:00Z").unwrap(),
        requested_by: "k".into(),
        requested_at: Timestamp::now(),
    };
    let objects = ObjectStore::new(api.stack.s3.clone());
    let id = start_job(&objects, &api.stack.bucket, &tenant, &request)
        .await
        .unwrap()
        .to_string();
    let out = backtest::handle(&deps(&api), event(&api, &tenant, &id).await)
        .await
        .unwrap();
    assert!(
        matches!(&out.records[..], [backtest::BacktestJobOutcome::Failed { .. }]),
        "{out:?}"
    );
    let r = get(&api, &key, &id).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!("failed")), "{}", r.body);
    assert!(
        r.body["error"].as_str().unwrap().contains("No ruleset version 99"),
        "{}",
        r.body
    );
}

/// Not a check: how fast one job replays on moto. Run with
/// `cargo test -p verdict-integration --test backtest_job -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_job_throughput_on_moto() {
    let n: usize = std::env::var("BACKTEST_DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let api = stack().await;
    let (tenant, key) = api.tenant("acme").await;
    let mut set = tokio::task::JoinSet::new();
    let started = std::time::Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(n.div_ceil(8)) {
        let (store, tenant, chunk) = (api.stack.store.clone(), tenant.clone(), chunk.to_vec());
        set.spawn(async move {
            for i in chunk {
                let t = Transaction {
                    id: TransactionId::parse(&format!("m-{i}")).unwrap(),
                    occurred_at: Timestamp::from_unix(1_533_686_400 + (i as i64 * 17) % 86_400).unwrap(),
                    amount: Money::new(1_000 + (i as i64 % 500) * 1_000, Currency::EUR).unwrap(),
                    customer_id: CustomerId::parse(&format!("c-{}", i % 200)).unwrap(),
                    terminal_id: TerminalId::parse("term_3412").unwrap(),
                };
                verdict_integration::seed_decision(&store, &tenant, &t).await;
            }
        });
    }
    while set.join_next().await.is_some() {}
    eprintln!("seeded {n} decisions in {:.1} s", started.elapsed().as_secs_f64());
    let r = call(
        &api,
        "save-rule",
        "/v1/rules",
        &key,
        Some(json!({"id": "large", "name": "Large", "description": "large matched", "expression": "tx.amount > 100000", "action": "block"})),
    )
    .await;
    assert!(r.status < 300, "{}", r.body);
    let r = call(
        &api,
        "create-ruleset",
        "/v1/rulesets",
        &key,
        Some(json!({"rules": [{"id": "large"}]})),
    )
    .await;
    let v = r.body["version"].as_u64().unwrap();
    let window = json!({"from": "2018-08-08T00:00:00Z", "to": "2018-08-09T00:00:00Z", "mode": "job"});
    let queued = call(
        &api,
        "backtest-ruleset",
        &format!("/v1/rulesets/{v}/backtest"),
        &key,
        Some(window),
    )
    .await;
    assert_eq!(queued.status, 202, "{}", queued.body);
    let id = queued.body["id"].as_str().unwrap().to_owned();
    let e = event(&api, &tenant, &id).await;
    let started = std::time::Instant::now();
    let out = backtest::handle(&deps(&api), e).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(
        out.records,
        [backtest::BacktestJobOutcome::Completed {
            id,
            decisions: n as u64
        }]
    );
    eprintln!(
        "replayed {n} decisions in {secs:.2} s: {:.0} decisions/s on moto",
        n as f64 / secs
    );
}
