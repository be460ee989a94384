//! The review queue over `functions/api`'s real handler (events/api/*-review*.json) on moto: a
//! `review` decision opens one item, two analysts race for it, an expired claim is taken over,
//! resolving as fraud labels the transaction and blocks the card so the next payment is blocked,
//! and refusals name the field and change nothing.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use verdict::adapters::dynamodb::Keys;
use verdict::domain::auth::ApiKey;
use verdict::domain::policy::Thresholds;
use verdict::domain::{CustomerId, TenantId, Timestamp, TransactionId};
use verdict_integration::api::{ApiStack, Event, Reply};

/// Every score is a `review`: review from 0, block only at 1.
async fn reviewing_tenant(api: &ApiStack, name: &str) -> (TenantId, ApiKey) {
    let (tenant, key) = api.tenant(name).await;
    api.stack
        .store
        .set_thresholds(&tenant, Thresholds::new(0.0, 1.0).unwrap())
        .await
        .unwrap();
    (tenant, key)
}

fn post_tx(key: &ApiKey, changes: Value) -> Event {
    let base = Event::load("post-transaction");
    let mut body = base.body_json();
    for (k, v) in changes.as_object().unwrap() {
        body[k] = v.clone();
    }
    base.without_header("idempotency-key").bearer(key).json(&body)
}

async fn score(api: &ApiStack, key: &ApiKey, changes: Value) -> Reply {
    let r = api.send(&post_tx(key, changes)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

async fn call(api: &ApiStack, event: &str, path: &str, key: &ApiKey, body: Option<Value>) -> Reply {
    let mut e = Event::load(event).path(path).bearer(key);
    if let Some(b) = body {
        e = e.json(&b);
    }
    api.send(&e).await
}

async fn claim(api: &ApiStack, key: &ApiKey, id: &str) -> Reply {
    call(api, "claim-review", &format!("/v1/reviews/{id}/claim"), key, None).await
}

async fn resolve(api: &ApiStack, key: &ApiKey, id: &str, body: Value) -> Reply {
    call(
        api,
        "resolve-review",
        &format!("/v1/reviews/{id}/resolve"),
        key,
        Some(body),
    )
    .await
}

async fn review(api: &ApiStack, key: &ApiKey, id: &str) -> Reply {
    call(api, "get-review", &format!("/v1/reviews/{id}"), key, None).await
}

async fn queue(api: &ApiStack, key: &ApiKey, query: &str) -> Reply {
    api.send(&Event::load("list-reviews").query(query).bearer(key)).await
}

fn ids(r: &Reply) -> Vec<String> {
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["transaction_id"].as_str().unwrap().to_owned())
        .collect()
}

fn actions(r: &Reply) -> Vec<(String, Option<String>)> {
    r.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["by"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_decisions_open_one_item_each_and_the_queue_orders_them() {
    let api = ApiStack::new().await;
    let (acme, key) = reviewing_tenant(&api, "acme").await;
    // The sample with its Idempotency-Key, twice: one decision, one item.
    let sample = Event::load("post-transaction").bearer(&key);
    let first = api.send(&sample).await;
    assert_eq!(
        (first.status, &first.body["decision"]),
        (200, &json!("review")),
        "{}",
        first.body
    );
    let replay = api.send(&sample).await;
    assert_eq!(replay.body["idempotent_replay"], true);
    let low = score(&api, &key, json!({"id": "tx-small", "amount": 100})).await;
    let high = score(&api, &key, json!({"id": "tx-big", "amount": 900_000})).await;
    let risks: Vec<u64> = [&first, &low, &high]
        .iter()
        .map(|r| r.body["risk_score"].as_u64().unwrap())
        .collect();

    let r = review(&api, &key, "tx_2018-08-08_000123").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "open");
    assert_eq!(r.body["risk_score"], first.body["risk_score"]);
    assert_eq!(r.body["opened_at"], first.body["created_at"]);
    assert_eq!(actions(&r), [("opened".to_string(), None)], "the replay opened nothing");
    assert!(r.body["seconds_in_queue"].as_i64().unwrap() >= 0);
    assert_eq!((&r.body["claim"], &r.body["resolution"]), (&Value::Null, &Value::Null));

    let oldest = queue(&api, &key, "status=open&sort=oldest").await;
    assert_eq!(oldest.status, 200, "{}", oldest.body);
    assert_eq!(ids(&oldest), ["tx_2018-08-08_000123", "tx-small", "tx-big"]);
    // Highest risk first, ties oldest first, one item a page.
    let mut by_risk: Vec<(u64, usize, &str)> = risks
        .iter()
        .zip(["tx_2018-08-08_000123", "tx-small", "tx-big"])
        .enumerate()
        .map(|(i, (r, id))| (100 - r, i, id))
        .collect();
    by_risk.sort();
    let want: Vec<&str> = by_risk.iter().map(|(_, _, id)| *id).collect();
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let q = match &cursor {
            None => "sort=risk&limit=1".to_string(),
            Some(c) => format!("sort=risk&limit=1&cursor={c}"),
        };
        let page = queue(&api, &key, &q).await;
        assert_eq!(page.status, 200, "{}", page.body);
        got.extend(ids(&page));
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(got, want);
    // An approve decision opens nothing.
    api.stack
        .store
        .set_thresholds(&acme, Thresholds::new(1.0, 1.0).unwrap())
        .await
        .unwrap();
    let approved = score(&api, &key, json!({"id": "tx-ok"})).await;
    assert_eq!(approved.body["decision"], "approve");
    review(&api, &key, "tx-ok").await.assert_problem(404, "not-found");
    assert_eq!(ids(&queue(&api, &key, "").await).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_analysts_claiming_at_once_one_holds_it_and_the_other_gets_409() {
    let api = ApiStack::new().await;
    let (acme, key) = reviewing_tenant(&api, "acme").await;
    score(&api, &key, json!({"id": "tx-1"})).await;
    let ann = api.key(&acme, "reviews:read,reviews:write", None).await;
    let bob = api.key(&acme, "reviews:read,reviews:write", None).await;
    let (a, b) = tokio::join!(claim(&api, &ann, "tx-1"), claim(&api, &bob, "tx-1"));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", a.body, b.body);
    let (winner, loser, won) = if a.status == 200 {
        (&ann, &bob, &a)
    } else {
        (&bob, &ann, &b)
    };
    won.body["claim"]["holder"]
        .as_str()
        .filter(|h| *h == winner.key_id())
        .expect("the winner holds it");
    let lost = if a.status == 409 { &a } else { &b };
    lost.assert_problem(409, "conflict");

    // The loser can neither release nor resolve it; the holder re-claims (renews).
    call(&api, "release-review", "/v1/reviews/tx-1/release", loser, None)
        .await
        .assert_problem(409, "conflict");
    let body = json!({"outcome": "approve", "label": "none"});
    resolve(&api, loser, "tx-1", body.clone())
        .await
        .assert_problem(409, "conflict");
    assert_eq!(claim(&api, winner, "tx-1").await.status, 200);

    // Two resolutions at once by the holder: one records and closes it; the other is a 409, or,
    // if it found the first one's intent still pending, completes that same one (a retry).
    let (x, y) = tokio::join!(
        resolve(&api, winner, "tx-1", body.clone()),
        resolve(&api, winner, "tx-1", body.clone())
    );
    let mut statuses = [x.status, y.status];
    statuses.sort();
    assert!(
        statuses == [200, 409] || statuses == [200, 200],
        "{} / {}",
        x.body,
        y.body
    );
    if statuses == [200, 200] {
        assert_eq!(x.body["resolution"], y.body["resolution"], "one resolution");
    }
    let r = review(&api, winner, "tx-1").await;
    assert_eq!(r.body["status"], "resolved");
    assert_eq!(r.body["resolution"]["resolved_by"], winner.key_id());
    assert_eq!(r.body["resolution"]["label"], "none");
    assert_eq!(r.body["resolution"]["label_status"], "applied");
    let history: Vec<String> = actions(&r).into_iter().map(|(a, _)| a).collect();
    // The holder's renewal added no line.
    assert_eq!(history, ["opened", "claimed", "resolved"]);
    assert_eq!(
        claim(&api, loser, "tx-1").await.status,
        409,
        "a resolved item cannot be claimed"
    );
    // `none` wrote no label.
    let item = api
        .stack
        .raw_item(&Keys::new(&acme).decision(&TransactionId::parse("tx-1").unwrap()))
        .await;
    assert!(!item.contains_key("label"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_claim_is_taken_by_another_analyst_and_the_first_can_no_longer_resolve() {
    let api = ApiStack::new().await;
    let (acme, key) = reviewing_tenant(&api, "acme").await;
    score(&api, &key, json!({"id": "tx-1"})).await;
    let ann = api.key(&acme, "reviews:write,reviews:read", None).await;
    let bob = api.key(&acme, "reviews:write,reviews:read", None).await;
    let held = claim(&api, &ann, "tx-1").await;
    assert_eq!(held.status, 200, "{}", held.body);
    let until = Timestamp::parse("t", held.body["claim"]["expires_at"].as_str().unwrap()).unwrap();
    let lease = until.unix() - Timestamp::now().unix();
    assert!((890..=900).contains(&lease), "the default lease is 15 minutes: {lease}");
    assert_eq!(claim(&api, &bob, "tx-1").await.status, 409);
    // Time passes: the lease ran out (set on the item, as the clock would).
    let key = Keys::new(&acme).review(&TransactionId::parse("tx-1").unwrap());
    api.stack
        .dynamodb
        .update_item()
        .table_name(&api.stack.table)
        .key("pk", AttributeValue::S(key.pk.clone()))
        .key("sk", AttributeValue::S(key.sk.clone()))
        .update_expression("SET claim_expires_at = :past")
        .expression_attribute_values(":past", AttributeValue::N((Timestamp::now().unix() - 1).to_string()))
        .send()
        .await
        .unwrap();
    let r = review(&api, &bob, "tx-1").await;
    assert_eq!(r.body["claim"], Value::Null, "an expired claim is no claim");
    let taken = claim(&api, &bob, "tx-1").await;
    assert_eq!(taken.status, 200, "{}", taken.body);
    assert_eq!(taken.body["claim"]["holder"], bob.key_id());
    resolve(&api, &ann, "tx-1", json!({"outcome": "approve", "label": "legit"}))
        .await
        .assert_problem(409, "conflict");
    // A lease outside the bounds is refused.
    let r = call(
        &api,
        "claim-review",
        "/v1/reviews/tx-1/claim",
        &bob,
        Some(json!({"lease_seconds": 999_999})),
    )
    .await;
    r.assert_problem(400, "validation");
    assert_eq!(r.fields(), ["lease_seconds"]);
    let released = call(&api, "release-review", "/v1/reviews/tx-1/release", &bob, None).await;
    assert_eq!((released.status, &released.body["claim"]), (200, &Value::Null));
    let history: Vec<(String, Option<String>)> = actions(&released);
    assert_eq!(
        history,
        [
            ("opened".into(), None),
            ("claimed".into(), Some(ann.key_id())),
            ("claimed".into(), Some(bob.key_id())),
            ("released".into(), Some(bob.key_id())),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolving_as_fraud_labels_it_blocks_the_card_and_the_next_payment_is_blocked() {
    let api = ApiStack::new().await;
    let (acme, key) = reviewing_tenant(&api, "acme").await;
    // A list and an active ruleset that blocks on it, before any payment.
    let r = call(
        &api,
        "create-list",
        "/v1/lists",
        &key,
        Some(json!({"name": "blocked_cards", "kind": "customer_id"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rule = json!({"id": "blocked_card", "name": "Blocked card", "description": "card on the block list",
                      "expression": "in_list(tx.customer_id, \"blocked_cards\")", "action": "block"});
    assert_eq!(call(&api, "save-rule", "/v1/rules", &key, Some(rule)).await.status, 201);
    let r = call(
        &api,
        "create-ruleset",
        "/v1/rulesets",
        &key,
        Some(json!({"mode": "FIRST_MATCHED", "rules": [{"id": "blocked_card"}]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.body["version"].as_u64().unwrap();
    assert_eq!(
        call(
            &api,
            "publish-ruleset",
            &format!("/v1/rulesets/{v}/publish"),
            &key,
            None
        )
        .await
        .status,
        200
    );
    let path = format!("/v1/rulesets/{v}/activate");
    assert_eq!(
        call(&api, "activate-ruleset", &path, &key, Some(json!({})))
            .await
            .status,
        200
    );

    let first = score(&api, &key, json!({"id": "tx-1"})).await;
    assert_eq!(first.body["decision"], "review", "{}", first.body);
    assert_eq!(claim(&api, &key, "tx-1").await.status, 200);
    let sample = Event::load("resolve-review").body_json();
    assert_eq!(sample["add_to_list"], json!(["blocked_cards"]), "sample event changed");
    let done = resolve(&api, &key, "tx-1", sample.clone()).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let res = &done.body["resolution"];
    assert_eq!((&res["outcome"], &res["label"]), (&json!("block"), &json!("fraud")));
    assert_eq!(res["resolved_by"], key.key_id());
    assert_eq!(res["note"], sample["note"]);
    assert_eq!(
        res["lists_added"],
        json!([{"list": "blocked_cards", "value": "cust_4961"}])
    );
    Timestamp::parse("resolved_at", res["resolved_at"].as_str().unwrap()).unwrap();

    // The label went through the labels path: on the decision, and in the fraud counters.
    let t = call(&api, "get-transaction", "/v1/transactions/tx-1", &key, None).await;
    assert_eq!(t.body["label"]["value"], "fraud", "{}", t.body);
    assert_eq!(t.body["label"]["source"], format!("review:{}", key.key_id()));
    assert_eq!(t.body["label"]["origin"], format!("api:{}", key.key_id()));
    let day = Timestamp::parse("t", "2018-08-08T10:14:58Z").unwrap().epoch_day();
    let agg = api
        .stack
        .store
        .customer_aggregate(&acme, &CustomerId::parse("cust_4961").unwrap())
        .await
        .unwrap();
    assert_eq!(
        agg.days().into_iter().find(|(d, _)| *d == day).map(|(_, c)| c.frauds),
        Some(1)
    );
    // The card is on the list, and the next payment from it is blocked by the rule.
    let entries = call(&api, "list-entries", "/v1/lists/blocked_cards/entries", &key, None).await;
    let values: Vec<&str> = entries.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["cust_4961"]);
    let next = score(&api, &key, json!({"id": "tx-2", "occurred_at": "2018-08-08T11:00:00Z"})).await;
    assert_eq!(next.body["decision"], "block", "{}", next.body);
    assert_eq!(next.body["reasons"][0]["rule_id"], "blocked_card");
    // Blocked, not sent to review: no item.
    review(&api, &key, "tx-2").await.assert_problem(404, "not-found");
    // Resolving again is a 409, and changes nothing.
    resolve(&api, &key, "tx-1", sample)
        .await
        .assert_problem(409, "conflict");
    let resolved = queue(&api, &key, "status=resolved").await;
    assert_eq!(ids(&resolved), ["tx-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_resolutions_name_the_field_and_change_nothing() {
    let api = ApiStack::new().await;
    let (acme, key) = reviewing_tenant(&api, "acme").await;
    score(&api, &key, json!({"id": "tx-1"})).await;
    for (name, kind) in [("bins", "bin"), ("blocked_cards", "customer_id")] {
        let r = call(
            &api,
            "create-list",
            "/v1/lists",
            &key,
            Some(json!({"name": name, "kind": kind})),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(claim(&api, &key, "tx-1").await.status, 200);
    let decision_key = Keys::new(&acme).decision(&TransactionId::parse("tx-1").unwrap());
    let review_key = Keys::new(&acme).review(&TransactionId::parse("tx-1").unwrap());
    let decision_before = api.stack.raw_item(&decision_key).await;
    let review_before = api.stack.raw_item(&review_key).await;
    let good = json!({"outcome": "block", "label": "fraud"});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let cases: [(Value, &[&str]); 7] = [
        (with("outcome", json!("refund")), &["outcome"]),
        (with("label", json!("maybe")), &["label"]),
        (with("note", json!("n".repeat(1001))), &["note"]),
        (with("add_to_list", json!(["no_such_list"])), &["add_to_list[0]"]),
        // A bin list holds no transaction field.
        (
            with("add_to_list", json!(["blocked_cards", "bins"])),
            &["add_to_list[1]"],
        ),
        (with("add_to_list", json!(["a#b"])), &["add_to_list[0]"]),
        (json!({"label": "fraud", "extra": 1}), &["body", "outcome"]),
    ];
    for (body, fields) in cases {
        let r = resolve(&api, &key, "tx-1", body.clone()).await;
        r.assert_problem(400, "validation");
        assert_eq!(r.fields(), fields, "{body}");
    }
    let r = api
        .send(
            &Event::load("resolve-review")
                .path("/v1/reviews/tx-1/resolve")
                .bearer(&key)
                .header("content-type", "text/plain"),
        )
        .await;
    assert_eq!(r.status, 415);
    for (q, field) in [
        ("status=closed", "status"),
        ("sort=new", "sort"),
        ("cursor=abc", "cursor"),
    ] {
        let r = queue(&api, &key, q).await;
        r.assert_problem(400, "validation");
        assert_eq!(r.fields(), [field], "{q}");
    }
    review(&api, &key, "a%23b").await.assert_problem(400, "validation");
    review(&api, &key, "tx-none").await.assert_problem(404, "not-found");

    assert_eq!(
        api.stack.raw_item(&decision_key).await,
        decision_before,
        "no label written"
    );
    assert_eq!(
        api.stack.raw_item(&review_key).await,
        review_before,
        "the item is as it was"
    );
    let entries = call(&api, "list-entries", "/v1/lists/blocked_cards/entries", &key, None).await;
    assert_eq!(entries.body["items"], json!([]), "no entry added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_review_items_are_not_found_on_every_route() {
    let api = ApiStack::new().await;
    let (acme, key) = reviewing_tenant(&api, "acme").await;
    score(&api, &key, json!({"id": "tx-1"})).await;
    let beta = TenantId::parse("beta").unwrap();
    let other = api.key(&beta, "reviews:read,reviews:write", None).await;
    review(&api, &other, "tx-1").await.assert_problem(404, "not-found");
    claim(&api, &other, "tx-1").await.assert_problem(404, "not-found");
    call(&api, "release-review", "/v1/reviews/tx-1/release", &other, None)
        .await
        .assert_problem(404, "not-found");
    resolve(&api, &other, "tx-1", json!({"outcome": "approve", "label": "legit"}))
        .await
        .assert_problem(404, "not-found");
    let q = queue(&api, &other, "").await;
    assert_eq!((q.status, ids(&q).len()), (200, 0));
    // acme's item is untouched.
    let r = review(&api, &key, "tx-1").await;
    assert_eq!(r.body["history"].as_array().unwrap().len(), 1);
    let _ = acme;
}

async fn list_values(api: &ApiStack, key: &ApiKey, list: &str) -> Vec<String> {
    let path = format!("/v1/lists/{list}/entries");
    let entries = call(api, "list-entries", &path, key, None).await;
    assert_eq!(entries.status, 200, "{}", entries.body);
    entries.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resolve_writes_no_label_and_no_list_entry() {
    let api = ApiStack::new().await;
    let (acme, key) = reviewing_tenant(&api, "acme").await;
    for (name, kind) in [("blocked_cards", "customer_id"), ("terminals", "terminal_id")] {
        let body = json!({"name": name, "kind": kind});
        assert_eq!(
            call(&api, "create-list", "/v1/lists", &key, Some(body)).await.status,
            201
        );
    }
    score(&api, &key, json!({"id": "tx-1"})).await;
    assert_eq!(claim(&api, &key, "tx-1").await.status, 200);
    let block = json!({"outcome": "block", "label": "fraud", "add_to_list": ["blocked_cards"]});
    // Only card, email and ip lists take a resolution's entry.
    let r = resolve(
        &api,
        &key,
        "tx-1",
        json!({"outcome": "block", "label": "fraud", "add_to_list": ["terminals"]}),
    )
    .await;
    r.assert_problem(400, "validation");
    assert_eq!(r.fields(), ["add_to_list[0]"]);
    // Adding to a list needs lists:write too.
    let analyst = api.key(&acme, "reviews:read,reviews:write", None).await;
    let r = resolve(&api, &analyst, "tx-1", block.clone()).await;
    r.assert_problem(403, "forbidden");
    assert!(r.body["detail"].as_str().unwrap().contains("lists:write"), "{}", r.body);

    // The lease runs out before the resolve arrives: 409, and nothing of it is written.
    let id = TransactionId::parse("tx-1").unwrap();
    let review_key = Keys::new(&acme).review(&id);
    api.stack
        .dynamodb
        .update_item()
        .table_name(&api.stack.table)
        .key("pk", AttributeValue::S(review_key.pk.clone()))
        .key("sk", AttributeValue::S(review_key.sk.clone()))
        .update_expression("SET claim_expires_at = :past")
        .expression_attribute_values(":past", AttributeValue::N((Timestamp::now().unix() - 1).to_string()))
        .send()
        .await
        .unwrap();
    let decision_key = Keys::new(&acme).decision(&id);
    let decision_before = api.stack.raw_item(&decision_key).await;
    let review_before = api.stack.raw_item(&review_key).await;
    resolve(&api, &key, "tx-1", block).await.assert_problem(409, "conflict");
    assert_eq!(
        api.stack.raw_item(&decision_key).await,
        decision_before,
        "no label written"
    );
    assert_eq!(
        api.stack.raw_item(&review_key).await,
        review_before,
        "the item is as it was"
    );
    assert!(
        list_values(&api, &key, "blocked_cards").await.is_empty(),
        "no entry added"
    );

    // A transaction that occurs later than now cannot be labelled yet: a clear 409.
    let ahead = Timestamp::from_unix(Timestamp::now().unix() + 3600).unwrap();
    score(&api, &key, json!({"id": "tx-ahead", "occurred_at": ahead.to_rfc3339()})).await;
    assert_eq!(claim(&api, &key, "tx-ahead").await.status, 200);
    let ahead_key = Keys::new(&acme).review(&TransactionId::parse("tx-ahead").unwrap());
    let before = api.stack.raw_item(&ahead_key).await;
    resolve(&api, &key, "tx-ahead", json!({"outcome": "block", "label": "fraud"}))
        .await
        .assert_problem(409, "label-not-applicable");
    assert_eq!(api.stack.raw_item(&ahead_key).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_cut_short_is_completed_once_by_the_next_resolve() {
    use verdict::domain::review::{LabelStatus, ListAdded, Outcome, Resolution, ResolutionLabel};
    use verdict::ports::reviews::ReviewStore;
    let api = ApiStack::new().await;
    let (acme, key) = reviewing_tenant(&api, "acme").await;
    let body = json!({"name": "blocked_cards", "kind": "customer_id"});
    assert_eq!(
        call(&api, "create-list", "/v1/lists", &key, Some(body)).await.status,
        201
    );
    let bob = api.key(&acme, "reviews:read,reviews:write,lists:write", None).await;
    for id in ["tx-1", "tx-2"] {
        score(&api, &key, json!({"id": id})).await;
        assert_eq!(claim(&api, &key, id).await.status, 200);
        // The resolve recorded its intent and then the function died.
        let intent = Resolution {
            outcome: Outcome::Block,
            label: ResolutionLabel::Fraud,
            label_status: LabelStatus::Applied,
            note: Some("stolen".into()),
            resolved_by: key.key_id(),
            resolved_at: Timestamp::now(),
            lists_added: vec![ListAdded {
                list: "blocked_cards".into(),
                value: "cust_4961".into(),
            }],
        };
        let id = TransactionId::parse(id).unwrap();
        api.stack
            .store
            .begin_resolve(&acme, &id, &key.key_id(), Timestamp::now(), &intent)
            .await
            .unwrap()
            .unwrap();
    }
    let r = review(&api, &bob, "tx-1").await;
    assert_eq!(
        (&r.body["status"], &r.body["resolution_pending"]),
        (&json!("open"), &json!(true))
    );
    // Nobody else claims it meanwhile.
    claim(&api, &bob, "tx-1").await.assert_problem(409, "conflict");
    // The author's retry, whatever its body, completes the recorded resolution.
    let done = resolve(&api, &key, "tx-1", json!({"outcome": "approve", "label": "legit"})).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let res = &done.body["resolution"];
    assert_eq!((&res["outcome"], &res["label"]), (&json!("block"), &json!("fraud")));
    assert_eq!(
        res["lists_added"],
        json!([{"list": "blocked_cards", "value": "cust_4961"}])
    );
    let t = call(&api, "get-transaction", "/v1/transactions/tx-1", &key, None).await;
    assert_eq!(t.body["label"]["value"], "fraud", "{}", t.body);
    // Another analyst's resolve completes tx-2 as its author recorded it, then is told so.
    resolve(&api, &bob, "tx-2", json!({"outcome": "approve", "label": "legit"}))
        .await
        .assert_problem(409, "conflict");
    let r = review(&api, &bob, "tx-2").await;
    assert_eq!(r.body["status"], "resolved");
    assert_eq!(r.body["resolution"]["resolved_by"], key.key_id());
    assert_eq!(r.body.get("resolution_pending"), None);
    let resolved: Vec<String> = actions(&r).into_iter().map(|(a, _)| a).collect();
    assert_eq!(resolved, ["opened", "claimed", "resolved"]);
    assert_eq!(list_values(&api, &key, "blocked_cards").await, ["cust_4961"]);
    // Queue pages carry no history; the item's GET does.
    let page = queue(&api, &key, "status=resolved").await;
    assert_eq!(ids(&page).len(), 2);
    assert!(page.body["items"][0].get("history").is_none(), "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_stored_review_items_neither_block_a_decision_nor_a_claim() {
    let api = ApiStack::new().await;
    let (acme, key) = reviewing_tenant(&api, "acme").await;
    // A REVIEW item without its DECISION (written by hand, or left by a bug).
    let orphan = Keys::new(&acme).review(&TransactionId::parse("tx-orphan").unwrap());
    api.stack
        .dynamodb
        .put_item()
        .table_name(&api.stack.table)
        .item("pk", AttributeValue::S(orphan.pk.clone()))
        .item("sk", AttributeValue::S(orphan.sk.clone()))
        .item("status", AttributeValue::S("resolved".into()))
        .send()
        .await
        .unwrap();
    let r = api.send(&post_tx(&key, json!({"id": "tx-orphan"}))).await;
    assert_eq!((r.status, &r.body["decision"]), (200, &json!("review")), "{}", r.body);
    let item = review(&api, &key, "tx-orphan").await;
    assert_eq!(item.body["status"], "open", "the orphan was replaced: {}", item.body);
    assert_eq!(actions(&item), [("opened".to_string(), None)]);

    // A claim holder without an expiry is no claim: another key may take the item.
    assert_eq!(claim(&api, &key, "tx-orphan").await.status, 200);
    api.stack
        .dynamodb
        .update_item()
        .table_name(&api.stack.table)
        .key("pk", AttributeValue::S(orphan.pk.clone()))
        .key("sk", AttributeValue::S(orphan.sk.clone()))
        .update_expression("REMOVE claim_expires_at")
        .send()
        .await
        .unwrap();
    let bob = api.key(&acme, "reviews:read,reviews:write", None).await;
    let taken = claim(&api, &bob, "tx-orphan").await;
    assert_eq!(taken.status, 200, "{}", taken.body);
    assert_eq!(taken.body["claim"]["holder"], bob.key_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_already_on_the_list_keeps_its_entry_and_is_reported_as_present() {
    let api = ApiStack::new().await;
    let (_, key) = reviewing_tenant(&api, "acme").await;
    let body = json!({"name": "blocked_cards", "kind": "customer_id"});
    assert_eq!(
        call(&api, "create-list", "/v1/lists", &key, Some(body)).await.status,
        201
    );
    let by_hand = json!({"entries": [{"value": "cust_4961", "expires_at": "2030-01-01T00:00:00Z", "note": "by hand"}]});
    let r = call(
        &api,
        "add-entries",
        "/v1/lists/blocked_cards/entries",
        &key,
        Some(by_hand),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let meta = call(&api, "get-list", "/v1/lists/blocked_cards", &key, None).await;
    score(&api, &key, json!({"id": "tx-1"})).await;
    assert_eq!(claim(&api, &key, "tx-1").await.status, 200);
    let done = resolve(
        &api,
        &key,
        "tx-1",
        json!({"outcome": "block", "label": "fraud", "add_to_list": ["blocked_cards"]}),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["resolution"]["lists_added"], json!([]));
    assert_eq!(
        done.body["lists_already_present"],
        json!([{"list": "blocked_cards", "value": "cust_4961"}])
    );
    let entries = call(&api, "list-entries", "/v1/lists/blocked_cards/entries", &key, None).await;
    let e = &entries.body["items"][0];
    assert_eq!(
        (&e["note"], &e["expires_at"]),
        (&json!("by hand"), &json!("2030-01-01T00:00:00Z"))
    );
    let after = call(&api, "get-list", "/v1/lists/blocked_cards", &key, None).await;
    assert_eq!(after.body["version"], meta.body["version"], "no version bump");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_item_at_the_history_cap_with_an_unreadable_line_is_still_claimed() {
    let api = ApiStack::new().await;
    let (acme, key) = reviewing_tenant(&api, "acme").await;
    score(&api, &key, json!({"id": "tx-cap"})).await;
    // 200 stored lines, one unreadable: the parsed history is one short of the cap.
    let line = |action: &str| {
        AttributeValue::M(
            [
                ("action".to_owned(), AttributeValue::S(action.into())),
                ("by".to_owned(), AttributeValue::S("vk_old".into())),
                ("at".to_owned(), AttributeValue::S("2026-12-01T10:00:00Z".into())),
            ]
            .into_iter()
            .collect(),
        )
    };
    let mut history = vec![AttributeValue::S("junk".into())];
    history.extend((1..200).map(|i| line(if i % 2 == 1 { "claimed" } else { "released" })));
    let item = Keys::new(&acme).review(&TransactionId::parse("tx-cap").unwrap());
    api.stack
        .dynamodb
        .update_item()
        .table_name(&api.stack.table)
        .key("pk", AttributeValue::S(item.pk.clone()))
        .key("sk", AttributeValue::S(item.sk.clone()))
        .update_expression("SET history = :h")
        .expression_attribute_values(":h", AttributeValue::L(history))
        .send()
        .await
        .unwrap();
    let taken = claim(&api, &key, "tx-cap").await;
    assert_eq!(taken.status, 200, "{}", taken.body);
    assert_eq!(taken.body["claim"]["holder"], key.key_id());
    assert_eq!(actions(&taken).len(), 199, "taken without a line");
}
