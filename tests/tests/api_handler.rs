//! `functions/api` through its real handler: `events/api/*.json` payloads in, the real DynamoDB
//! and S3 adapters on moto behind it. Every response is checked not to be a 5xx (see `send`).

use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use verdict::domain::auth::{now_epoch, ApiKey};
use verdict::domain::{CustomerId, TenantId, Timestamp};
use verdict_integration::api::{trained_model, ApiStack, Event, Reply, ALL_SCOPES, AUTHENTICATED, PLACEHOLDER_AUTH};

const SAMPLE_ID: &str = "tx_2018-08-08_000123";
const SAMPLE_CUSTOMER: &str = "cust_4961";
const SAMPLE_REQUEST_ID: &str = "Jt5mXhQ3oAMEVxQ=";

fn post() -> Event {
    let e = Event::load("post-transaction");
    assert_eq!(
        e.0["headers"]["authorization"], PLACEHOLDER_AUTH,
        "sample event changed"
    );
    e
}

/// The sample POST with the body's fields replaced (and no Idempotency-Key unless kept).
fn post_tx(key: &ApiKey, changes: Value) -> Event {
    let base = post();
    let mut body = base.body_json();
    for (k, v) in changes.as_object().unwrap() {
        body[k] = v.clone();
    }
    base.without_header("idempotency-key").bearer(key).json(&body)
}

async fn customer_count(api: &ApiStack, tenant: &TenantId, customer: &str, at: &str) -> u32 {
    let day = Timestamp::parse("t", at).unwrap().epoch_day();
    let customer = CustomerId::parse(customer).unwrap();
    let agg = api.stack.store.customer_aggregate(tenant, &customer).await.unwrap();
    agg.window(day, day).count as u32
}

#[track_caller]
fn assert_decision_shape(b: &Value, model_version: &str) {
    assert!(
        ["approve", "review", "block"].contains(&b["decision"].as_str().unwrap()),
        "{b}"
    );
    let score = b["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "{score}");
    assert_eq!(b["risk_score"].as_u64().unwrap(), (score * 100.0).round() as u64);
    let reasons = b["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 3, "{b}");
    let mut last = f64::INFINITY;
    for r in reasons {
        let code = r["code"].as_str().unwrap();
        let feature = r["feature"].as_str().unwrap();
        let contribution = r["contribution"].as_f64().unwrap();
        let suffix = if contribution >= 0.0 { "_HIGH" } else { "_LOW" };
        assert_eq!(code, format!("{}{suffix}", feature.to_uppercase()));
        assert!(r["text"].as_str().unwrap().len() > 10, "{r}");
        assert!(r["value"].is_number());
        assert!(contribution.abs() <= last, "largest contribution first");
        last = contribution.abs();
    }
    let features = b["features"].as_object().unwrap();
    assert_eq!(features.len(), verdict::FEATURE_COUNT);
    for name in verdict::domain::features::FEATURE_NAMES {
        assert!(features[name].is_number(), "{name}");
    }
    assert_eq!(b["model"], json!({"id": model_version, "version": model_version}));
    Timestamp::parse("created_at", b["created_at"].as_str().unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_a_transaction_and_serves_it_back_as_the_audit_trail() {
    let api = ApiStack::new().await;
    let (_, key) = api.tenant("acme").await;
    let version = trained_model().version().to_owned();

    let r = api.send(&post().bearer(&key)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-request-id"), Some(SAMPLE_REQUEST_ID));
    let b = &r.body;
    assert_eq!(b["id"], SAMPLE_ID);
    assert_eq!(b["idempotent_replay"], false);
    assert_eq!(b["request_id"], SAMPLE_REQUEST_ID);
    assert!(b["processing_ms"].as_f64().unwrap() > 0.0);
    assert_decision_shape(b, &version);
    // The sample is 57.31 EUR; the model saw it in major units.
    assert_eq!(b["features"]["amount"], 57.31);
    assert_eq!(
        b["features"]["customer_tx_count_1d"], 1.0,
        "the window includes this transaction"
    );

    let g = api.send(&Event::load("get-transaction").bearer(&key)).await;
    assert_eq!(g.status, 200, "{}", g.body);
    let s = &g.body;
    for field in [
        "id",
        "decision",
        "score",
        "risk_score",
        "reasons",
        "model",
        "features",
        "created_at",
        "request_id",
        "processing_ms",
    ] {
        assert_eq!(s[field], b[field], "{field}");
    }
    assert_eq!(s["idempotent_replay"], false);
    assert_eq!(s["label"], Value::Null);
    let inputs = &s["inputs"];
    assert_eq!(inputs["amount"], 5731);
    assert_eq!(inputs["currency"], "EUR");
    assert_eq!(inputs["customer_id"], SAMPLE_CUSTOMER);
    assert_eq!(inputs["occurred_at"], "2018-08-08T10:14:58Z");
    assert_eq!(
        inputs["metadata"],
        json!({"channel": "ecommerce", "order_id": "ord-77812"})
    );
    assert_eq!(inputs["email"], "jane.doe@example.com");

    // The model, not a constant: 500 EUR is over the simulator's fraud amount (220).
    let big = api
        .send(&post_tx(&key, json!({"id": "tx-big", "amount": 50_000})))
        .await;
    assert_eq!(big.status, 200);
    assert_decision_shape(&big.body, &version);
    assert_eq!(big.body["decision"], "block", "{}", big.body);
    assert!(big.body["score"].as_f64().unwrap() > b["score"].as_f64().unwrap());
    assert_eq!(big.body["reasons"][0]["code"], "AMOUNT_HIGH", "{}", big.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_decision_is_one_batch_get_and_one_transact_write() {
    let api = ApiStack::new().await;
    let (_, key) = api.tenant("acme").await;
    api.stack.calls.take();

    let r = api.send(&post_tx(&key, json!({"id": "tx-cold"}))).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        api.stack.calls.take(),
        ["GetItem", "BatchGetItem", "TransactWriteItems"],
        "a cold key cache costs one GetItem"
    );
    let r = api.send(&post_tx(&key, json!({"id": "tx-warm"}))).await;
    assert_eq!((r.status, &r.body["idempotent_replay"]), (200, &json!(false)));
    assert_eq!(api.stack.calls.take(), ["BatchGetItem", "TransactWriteItems"]);
    let r = api.send(&post_tx(&key, json!({"id": "tx-warm"}))).await;
    assert_eq!((r.status, &r.body["idempotent_replay"]), (200, &json!(true)));
    assert_eq!(api.stack.calls.take(), ["BatchGetItem"], "a replay only reads");
    // Read routes look the key up afresh every time.
    let r = api
        .send(
            &Event::load("get-transaction")
                .path("/v1/transactions/tx-warm")
                .bearer(&key),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(api.stack.calls.take(), ["GetItem", "GetItem"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_replays_the_first_decision_and_counts_once() {
    let api = ApiStack::new().await;
    let (acme, key) = api.tenant("acme").await;
    let first = api.send(&post().bearer(&key)).await;
    assert_eq!((first.status, &first.body["idempotent_replay"]), (200, &json!(false)));

    // Same Idempotency-Key and body, another request id: the first decision, unchanged.
    let again = api.send(&post().bearer(&key).request_id("retry-1")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("x-request-id"), Some("retry-1"));
    assert_eq!(again.body["idempotent_replay"], true);
    for field in [
        "id",
        "decision",
        "score",
        "risk_score",
        "reasons",
        "model",
        "features",
        "created_at",
        "request_id",
        "processing_ms",
    ] {
        assert_eq!(again.body[field], first.body[field], "{field}");
    }
    assert_eq!(
        again.body["request_id"], SAMPLE_REQUEST_ID,
        "the first request's id, not the retry's"
    );
    // The same body laid out differently, with the time in another offset, is the same request.
    let mut body = post().body_json();
    body["occurred_at"] = json!("2018-08-08T12:14:58+02:00");
    let reordered: String = {
        let o = body.as_object().unwrap();
        let parts: Vec<String> = o.iter().rev().map(|(k, v)| format!("\n  {k:?} : {v}")).collect();
        format!("{{{}\n}}", parts.join(","))
    };
    let again = api.send(&post().bearer(&key).body(&reordered)).await;
    assert_eq!(
        (again.status, &again.body["idempotent_replay"]),
        (200, &json!(true)),
        "{}",
        again.body
    );
    assert_eq!(again.body["created_at"], first.body["created_at"]);
    // Without the header the transaction id is the key: still a replay.
    let again = api.send(&post().bearer(&key).without_header("idempotency-key")).await;
    assert_eq!(again.body["idempotent_replay"], true);
    assert_eq!(
        customer_count(&api, &acme, SAMPLE_CUSTOMER, "2018-08-08T10:14:58Z").await,
        1
    );

    // Same transaction id, another body: 409, by id and by header.
    let changed = post_tx(&key, json!({"amount": 5732}));
    api.send(&changed).await.assert_problem(409, "idempotency-conflict");
    let changed = changed.header("idempotency-key", "3f2c9d0e-7b1a-4c55-9e61-2a8f0b6d4e11");
    api.send(&changed).await.assert_problem(409, "idempotency-conflict");
    // Same Idempotency-Key on another transaction: 409, and it is not counted.
    let other =
        post_tx(&key, json!({"id": "tx-other"})).header("idempotency-key", "3f2c9d0e-7b1a-4c55-9e61-2a8f0b6d4e11");
    let r = api.send(&other).await;
    r.assert_problem(409, "idempotency-conflict");
    assert_eq!(
        customer_count(&api, &acme, SAMPLE_CUSTOMER, "2018-08-08T10:14:58Z").await,
        1
    );
    let g = api
        .send(
            &Event::load("get-transaction")
                .path("/v1/transactions/tx-other")
                .bearer(&key),
        )
        .await;
    g.assert_problem(404, "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_duplicates_make_one_decision_and_count_once() {
    let api = Arc::new(ApiStack::new().await);
    let (acme, key) = api.tenant("acme").await;
    let event = post().bearer(&key);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (api, event) = (api.clone(), event.clone().request_id(&format!("dup-{i}")));
        tasks.spawn(async move { api.send(&event).await });
    }
    let mut replies: Vec<Reply> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        replies.push(r.unwrap());
    }
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let new: Vec<_> = replies
        .iter()
        .filter(|r| r.body["idempotent_replay"] == false)
        .collect();
    assert_eq!(new.len(), 1, "exactly one request decides");
    assert_eq!(replies.len() - new.len(), 49);
    for r in &replies {
        assert_eq!(r.body["created_at"], new[0].body["created_at"]);
        assert_eq!(r.body["score"], new[0].body["score"]);
    }
    assert_eq!(
        customer_count(&api, &acme, SAMPLE_CUSTOMER, "2018-08-08T10:14:58Z").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authenticated_route_refuses_every_bad_credential() {
    let api = ApiStack::new().await;
    let (acme, _) = api.tenant("acme").await;
    let expired = api.key(&acme, ALL_SCOPES, Some(now_epoch() - 5)).await;
    let revoked = api.key(&acme, ALL_SCOPES, None).await;
    api.stack
        .store
        .revoke_key(&acme, &revoked.key_id(), now_epoch())
        .await
        .unwrap();
    let unknown = ApiKey::generate();

    for (name, scope) in AUTHENTICATED {
        let event = Event::load(name);
        let missing = api.send(&event.clone().without_header("authorization")).await;
        missing.assert_problem(401, "unauthenticated");
        assert_eq!(
            missing.header("www-authenticate"),
            Some(r#"Bearer realm="verdict""#),
            "{name}"
        );

        for malformed in [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer sk_live_123",
            "vk_abc",
            PLACEHOLDER_AUTH,
        ] {
            let r = api.send(&event.clone().authorization(malformed)).await;
            r.assert_problem(401, "unauthenticated");
            assert!(
                r.header("www-authenticate").unwrap().contains("invalid_token"),
                "{name}"
            );
        }

        let mut bodies = Vec::new();
        for (key, word) in [(&unknown, "not valid"), (&expired, "expired"), (&revoked, "revoked")] {
            let r = api.send(&event.clone().bearer(key)).await;
            r.assert_problem(401, "unauthenticated");
            assert!(r.body["detail"].as_str().unwrap().contains(word), "{name}: {}", r.body);
            let mut b = r.body.clone();
            b["detail"] = Value::Null;
            bodies.push(b);
        }
        assert!(
            bodies.windows(2).all(|w| w[0] == w[1]),
            "{name}: bodies differ beyond detail"
        );

        // Every scope but the one the route needs.
        let others: Vec<&str> = ALL_SCOPES.split(',').filter(|s| *s != scope).collect();
        let wrong = api.key(&acme, &others.join(","), None).await;
        let r = api.send(&event.clone().bearer(&wrong)).await;
        r.assert_problem(403, "forbidden");
        assert!(r.body["detail"].as_str().unwrap().contains(scope), "{name}: {}", r.body);
    }

    for name in ["health", "openapi"] {
        let event = Event::load(name);
        assert!(event.0["headers"].get("authorization").is_none());
        assert_eq!(api.send(&event).await.status, 200, "{name}");
        assert_eq!(
            api.send(&event.authorization("Bearer vk_nonsense")).await.status,
            200,
            "{name} ignores a key"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_at_once_despite_the_warm_cache() {
    let api = ApiStack::new().await;
    let (acme, key) = api.tenant("acme").await;
    assert_eq!(api.send(&post_tx(&key, json!({"id": "tx-1"}))).await.status, 200);
    api.stack
        .store
        .revoke_key(&acme, &key.key_id(), now_epoch())
        .await
        .unwrap();
    api.stack.calls.take();

    let r = api.send(&post_tx(&key, json!({"id": "tx-2"}))).await;
    r.assert_problem(401, "unauthenticated");
    assert!(r.body["detail"].as_str().unwrap().contains("revoked"), "{}", r.body);
    assert_eq!(
        api.stack.calls.take(),
        ["BatchGetItem"],
        "refused from the decision's own read, nothing written"
    );
    // The cache forgot the key: the next attempt reads it and is refused before scoring.
    api.send(&post_tx(&key, json!({"id": "tx-3"})))
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(api.stack.calls.take(), ["GetItem"]);
    api.send(
        &Event::load("get-transaction")
            .path("/v1/transactions/tx-1")
            .bearer(&key),
    )
    .await
    .assert_problem(401, "unauthenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_transactions() {
    let api = ApiStack::new().await;
    let (_, a) = api.tenant("tenant-a").await;
    let (_, b) = api.tenant("tenant-b").await;
    let shared = json!({"id": "tx-1", "customer_id": "cust-shared"});
    let mut body_a = shared.clone();
    body_a["amount"] = json!(1111);
    let mut body_b = shared.clone();
    body_b["amount"] = json!(2222);
    for (key, body) in [(&a, &body_a), (&b, &body_b)] {
        let r = api.send(&post_tx(key, body.clone())).await;
        assert_eq!(
            (r.status, &r.body["idempotent_replay"]),
            (200, &json!(false)),
            "{}",
            r.body
        );
    }
    assert_eq!(
        api.send(&post_tx(
            &b,
            json!({"id": "tx-b-only", "customer_id": "cust-shared", "amount": 3333})
        ))
        .await
        .status,
        200
    );

    let get = |id: &str, key: &ApiKey| {
        Event::load("get-transaction")
            .path(&format!("/v1/transactions/{id}"))
            .bearer(key)
    };
    assert_eq!(api.send(&get("tx-1", &a)).await.body["inputs"]["amount"], 1111);
    assert_eq!(api.send(&get("tx-1", &b)).await.body["inputs"]["amount"], 2222);
    let r = api.send(&get("tx-b-only", &a)).await;
    r.assert_problem(404, "not-found");
    assert!(!r.body.to_string().contains("3333"));

    let list = |key: &ApiKey| {
        Event::load("list-transactions")
            .query("customer=cust-shared")
            .bearer(key)
    };
    let ra = api.send(&list(&a)).await;
    let amounts: Vec<&Value> = ra.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["inputs"]["amount"])
        .collect();
    assert_eq!(amounts, [&json!(1111)], "A's history holds only A's transaction");
    let rb = api.send(&list(&b)).await;
    assert_eq!(rb.body["items"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_what_is_wrong_and_store_nothing() {
    let api = ApiStack::new().await;
    let (acme, key) = api.tenant("acme").await;
    let good = post().body_json();
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b.to_string()
    };
    let without = |k: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(k);
        b.to_string()
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("invalid JSON", r#"{"id": "tx-1","#.into(), vec!["body"]),
        ("empty body", String::new(), vec!["body"]),
        ("not an object", "[1, 2, 3]".into(), vec!["body"]),
        ("a string", "\"hello\"".into(), vec!["body"]),
        (
            "empty object",
            "{}".into(),
            vec!["id", "occurred_at", "currency", "customer_id", "terminal_id", "amount"],
        ),
        ("missing amount", without("amount"), vec!["amount"]),
        ("missing terminal", without("terminal_id"), vec!["terminal_id"]),
        ("amount as string", with("amount", json!("5731")), vec!["amount"]),
        ("id as number", with("id", json!(42)), vec!["id"]),
        ("negative amount", with("amount", json!(-1)), vec!["amount"]),
        ("float amount", with("amount", json!(57.31)), vec!["amount"]),
        ("lower-case currency", with("currency", json!("eur")), vec!["currency"]),
        (
            "bad timestamp",
            with("occurred_at", json!("yesterday")),
            vec!["occurred_at"],
        ),
        (
            "timestamp without offset",
            with("occurred_at", json!("2018-08-08T10:14:58")),
            vec!["occurred_at"],
        ),
        ("unknown field", with("colour", json!("red")), vec!["colour"]),
        ("separator in id", with("id", json!("a#b")), vec!["id"]),
        (
            "metadata not strings",
            with("metadata", json!({"n": 1})),
            vec!["metadata.n"],
        ),
        ("country", with("country", json!("France")), vec!["country"]),
    ];
    for (what, body, fields) in &cases {
        let r = api
            .send(&post().bearer(&key).without_header("idempotency-key").body(body))
            .await;
        r.assert_problem(400, "validation");
        assert_eq!(&r.fields(), fields, "{what}: {}", r.body);
        assert_eq!(r.body["instance"], "/v1/transactions");
    }
    // Every bad field at once, header included.
    let mut two = good.clone();
    two["amount"] = json!(-5);
    two["currency"] = json!("eur");
    let r = api
        .send(&post().bearer(&key).header("idempotency-key", "not allowed#").json(&two))
        .await;
    r.assert_problem(400, "validation");
    assert_eq!(r.fields(), ["Idempotency-Key", "currency", "amount"]);
    assert_eq!(r.body["detail"], "3 fields are invalid.");
    for bad_key in ["", "has space", &"k".repeat(256)] {
        let r = api.send(&post().bearer(&key).header("idempotency-key", bad_key)).await;
        r.assert_problem(400, "validation");
        assert_eq!(r.fields(), ["Idempotency-Key"]);
    }

    // 16 KiB is the limit: a valid body one byte over it is refused unread.
    let mut big = good.clone();
    big["metadata"] = json!({"pad": ""});
    let pad = ::api::MAX_BODY_BYTES + 1 - big.to_string().len();
    big["metadata"]["pad"] = json!("x".repeat(pad));
    let big = big.to_string();
    assert_eq!(big.len(), ::api::MAX_BODY_BYTES + 1);
    let r = api.send(&post().bearer(&key).body(&big)).await;
    r.assert_problem(413, "payload-too-large");
    assert!(r.body["detail"].as_str().unwrap().contains("16384"));

    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin1",
    ] {
        let r = api.send(&post().bearer(&key).header("content-type", ct)).await;
        r.assert_problem(415, "unsupported-media-type");
        assert!(r.body["detail"].as_str().unwrap().contains(ct), "{}", r.body);
    }
    api.send(&post().bearer(&key).without_header("content-type"))
        .await
        .assert_problem(415, "unsupported-media-type");

    assert_eq!(
        customer_count(&api, &acme, SAMPLE_CUSTOMER, "2018-08-08T10:14:58Z").await,
        0,
        "nothing was scored"
    );
    // And the good body with a charset still scores.
    let r = api
        .send(
            &post()
                .bearer(&key)
                .header("content-type", "application/json; charset=utf-8"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_newest_first_without_gaps_or_duplicates() {
    let api = ApiStack::new().await;
    let (_, key) = api.tenant("acme").await;
    let (_, other_tenant) = api.tenant("globex").await;
    for i in 0..25 {
        let body = json!({"id": format!("tx-{i:02}"), "occurred_at": format!("2018-08-08T10:{i:02}:00Z"),
                          "customer_id": "cust-pages"});
        assert_eq!(api.send(&post_tx(&key, body)).await.status, 200);
    }
    let _ = api
        .send(&post_tx(
            &key,
            json!({"id": "tx-elsewhere", "customer_id": "cust-other"}),
        ))
        .await;

    let list = |q: &str| Event::load("list-transactions").query(q).bearer(&key);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut sizes = Vec::new();
    let mut first_cursor = None;
    loop {
        let q = match &cursor {
            None => "customer=cust-pages&limit=10".to_owned(),
            Some(c) => format!("customer=cust-pages&limit=10&cursor={c}"),
        };
        let r = api.send(&list(&q)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let items = r.body["items"].as_array().unwrap();
        sizes.push(items.len());
        for i in items {
            assert_eq!(i["inputs"]["customer_id"], "cust-pages");
            assert_eq!(i["idempotent_replay"], false);
            seen.push(i["id"].as_str().unwrap().to_owned());
        }
        match &r.body["next_cursor"] {
            Value::Null => break,
            Value::String(c) => {
                first_cursor.get_or_insert(c.clone());
                cursor = Some(c.clone());
            }
            other => panic!("next_cursor {other}"),
        }
        assert!(sizes.len() < 5, "runaway pagination");
    }
    assert_eq!(sizes, [10, 10, 5]);
    let expected: Vec<String> = (0..25).rev().map(|i| format!("tx-{i:02}")).collect();
    assert_eq!(seen, expected, "newest first, each once");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);

    let r = api.send(&list("customer=cust-pages")).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 20, "default limit");
    let r = api.send(&list("customer=nobody")).await;
    assert_eq!(r.body, json!({"items": [], "next_cursor": null}));

    for bad in ["0", "101", "ten", "1.5", "", "-1"] {
        let r = api.send(&list(&format!("customer=cust-pages&limit={bad}"))).await;
        r.assert_problem(400, "validation");
        assert_eq!(r.fields(), ["limit"], "limit={bad}");
    }
    let c = first_cursor.unwrap();
    for q in [
        "customer=cust-pages&cursor=garbage".to_owned(),
        "customer=cust-pages&cursor=".to_owned(),
        format!("customer=cust-other&cursor={c}"),
    ] {
        let r = api.send(&list(&q)).await;
        r.assert_problem(400, "validation");
        assert_eq!(r.fields(), ["cursor"], "{q}");
    }
    // Another tenant's key cannot use the cursor either.
    let r = api
        .send(
            &Event::load("list-transactions")
                .query(&format!("customer=cust-pages&cursor={c}"))
                .bearer(&other_tenant),
        )
        .await;
    r.assert_problem(400, "validation");
    assert_eq!(r.fields(), ["cursor"]);
    let r = api.send(&list("limit=5")).await;
    r.assert_problem(400, "validation");
    assert_eq!(r.fields(), ["customer"]);
    let r = api.send(&list("customer=a%23b&limit=500")).await;
    assert_eq!(r.fields(), ["customer", "limit"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_is_served_and_every_route_in_it_is_routed() {
    let api = ApiStack::new().await;
    let r = api.send(&Event::load("openapi")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body["openapi"], "3.1.0");
    let paths = r.body["paths"].as_object().unwrap();
    let served = [
        "/v1/transactions",
        "/v1/transactions/{id}",
        "/v1/transactions/{id}/label",
        "/v1/models",
        "/v1/models/active",
        "/v1/models/{id}",
        "/v1/models/{id}/activate",
        "/v1/models/rollback",
        "/v1/rules",
        "/v1/rules/validate",
        "/v1/rules/{id}",
        "/v1/rulesets",
        "/v1/rulesets/active",
        "/v1/rulesets/rollback",
        "/v1/rulesets/{version}",
        "/v1/rulesets/{version}/publish",
        "/v1/rulesets/{version}/activate",
        "/v1/rulesets/{version}/backtest",
        "/v1/backtests/{id}",
        "/v1/lists",
        "/v1/lists/{name}",
        "/v1/lists/{name}/entries",
        "/v1/lists/{name}/entries/remove",
        "/v1/audit",
        "/v1/reviews",
        "/v1/reviews/{id}",
        "/v1/reviews/{id}/claim",
        "/v1/reviews/{id}/release",
        "/v1/reviews/{id}/resolve",
        "/v1/health",
        "/v1/openapi.json",
    ];
    let documented: HashSet<&str> = paths.keys().map(String::as_str).collect();
    assert_eq!(documented, HashSet::from(served));
    // Each documented operation reaches a handler: not 404 (unknown route), not 405.
    for (path, ops) in paths {
        for method in ops
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
        {
            let concrete = path
                .replace("{id}", "0123456789abcdef")
                .replace("{version}", "1")
                .replace("{name}", "blocked_emails");
            let e = Event::load("health").method(&method.to_uppercase()).path(&concrete);
            let r = api.send(&e).await;
            let public = ops[method]["security"] == json!([]);
            assert_eq!(r.status, if public { 200 } else { 401 }, "{method} {path}: {}", r.body);
        }
    }

    let h = api.send(&Event::load("health")).await;
    assert_eq!(h.body, json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}));
    let watch = api.send(&Event::load("health").path("/lambda-url/api/v1/health")).await;
    assert_eq!(watch.status, 200, "the cargo lambda watch prefix is stripped");

    for path in ["/v1/nope", "/v2/health", "/", "/v1/transactions/a/b"] {
        let r = api.send(&Event::load("health").path(path)).await;
        r.assert_problem(404, "not-found");
        assert_eq!(r.body["instance"], path);
    }
    let r = api
        .send(&Event::load("health").method("DELETE").path("/v1/transactions"))
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body["type"], ::api::TYPE_405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
    let r = api.send(&Event::load("health").method("POST")).await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_model_is_reported_and_scoring_needs_one() {
    let api = ApiStack::new().await;
    let (_, key) = api.tenant("acme").await;
    let version = trained_model().version().to_owned();
    let r = api.send(&Event::load("get-active-model").bearer(&key)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = &r.body["model"];
    assert_eq!((&m["id"], &m["version"]), (&json!(version), &json!(version)));
    assert_eq!(m["name"], "api-test-gbdt");
    assert_eq!(m["status"], "active");
    assert_eq!(m["trees"], trained_model().tree_count());
    assert_eq!(m["sha256"], trained_model().sha256);
    assert_eq!(r.body["previous_version"], Value::Null);
    Timestamp::parse("activated_at", r.body["activated_at"].as_str().unwrap()).unwrap();

    let r = api
        .send(
            &Event::load("get-model")
                .path(&format!("/v1/models/{version}"))
                .bearer(&key),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["status"], &r.body["uploaded_by"]),
        (200, &json!("active"), &json!("api-tests"))
    );
    api.send(&Event::load("get-model").bearer(&key))
        .await
        .assert_problem(404, "not-found");
    let r = api
        .send(&Event::load("get-model").path("/v1/models/NOT-HEX").bearer(&key))
        .await;
    r.assert_problem(400, "validation");
    assert_eq!(r.fields(), ["id"]);

    // A tenant that never activated a model: nothing serves it, and it cannot see acme's.
    let newcomer = TenantId::parse("newcomer").unwrap();
    let nkey = api.key(&newcomer, ALL_SCOPES, None).await;
    api.send(&Event::load("get-active-model").bearer(&nkey))
        .await
        .assert_problem(404, "not-found");
    api.send(
        &Event::load("get-model")
            .path(&format!("/v1/models/{version}"))
            .bearer(&nkey),
    )
    .await
    .assert_problem(404, "not-found");
    let r = api.send(&post().bearer(&nkey)).await;
    r.assert_problem(409, "conflict");
    assert!(r.body["detail"].as_str().unwrap().contains("No model is active"));

    // With a fallback model in the function, the same tenant is served by it.
    let fallback = verdict_integration::api::TestApp::new(
        api.stack.store.clone(),
        api.stack.blobs.clone(),
        Some(Arc::new(trained_model().clone())),
    );
    let r = verdict_integration::api::send(&fallback, &post().bearer(&nkey)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_decision_shape(&r.body, &version);
    let r = verdict_integration::api::send(&fallback, &Event::load("get-active-model").bearer(&nkey)).await;
    assert_eq!((r.status, &r.body["model"]["version"]), (200, &json!(version)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_never_panics_or_answers_5xx() {
    use base64::Engine as _;
    use rand::{Rng, SeedableRng};
    let api = ApiStack::new().await;
    let (_, key) = api.tenant("acme").await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for _ in 0..150 {
        let len = rng.gen_range(0..400);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let mut e = post().bearer(&key);
        e.0["body"] = json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
        e.0["isBase64Encoded"] = json!(true);
        let r = api.send(&e).await;
        assert!(r.status == 400 || r.status == 200, "{}", r.body);
    }
    let odd_paths = [
        "/v1/transactions/%ff%fe",
        "/v1/transactions/%23",
        "//v1//health",
        "/v1/models/../health",
        "/v1/\u{1F600}",
    ];
    for path in odd_paths {
        let r = api.send(&Event::load("get-transaction").path(path).bearer(&key)).await;
        assert!([400, 404].contains(&r.status), "{path}: {}", r.body);
    }
    for q in [
        "customer=%ff&limit=%00",
        "customer&limit&cursor",
        "customer=c&customer=d&limit=1&limit=x",
        "=&&==",
    ] {
        let r = api.send(&Event::load("list-transactions").query(q).bearer(&key)).await;
        assert!([200, 400].contains(&r.status), "{q}: {}", r.body);
    }
    for method in ["PATCH", "OPTIONS", "HEAD", "TRACE"] {
        let r = api.send(&post().bearer(&key).method(method)).await;
        assert_eq!(r.status, 405, "{method}");
    }
    let r = api
        .send(&post().authorization(&format!("Bearer vk_{}", "a".repeat(5000))))
        .await;
    r.assert_problem(401, "unauthenticated");
}
