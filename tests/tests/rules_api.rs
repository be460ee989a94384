//! Rules and lists over `functions/api`'s real handler against moto: a rule blocking a payment the
//! model approved, an allow-list entry overriding it, shadow and erroring rules recorded and not
//! applied, refusals that name the rule, field and position and change nothing, activation races,
//! the audit trail, tenant isolation, and the no-extra-round-trip promise.

use serde_json::{json, Value};
use verdict::domain::auth::ApiKey;
use verdict_integration::api::{ApiStack, Event, Reply};

fn post_tx(key: &ApiKey, changes: Value) -> Event {
    let base = Event::load("post-transaction");
    let mut body = base.body_json();
    for (k, v) in changes.as_object().unwrap() {
        body[k] = v.clone();
    }
    base.without_header("idempotency-key").bearer(key).json(&body)
}

async fn call(api: &ApiStack, event: &str, path: &str, key: &ApiKey, body: Option<Value>) -> Reply {
    let mut e = Event::load(event).path(path).bearer(key);
    if let Some(b) = body {
        e = e.json(&b);
    }
    api.send(&e).await
}

async fn save_rule(api: &ApiStack, key: &ApiKey, rule: Value) -> Reply {
    call(api, "save-rule", "/v1/rules", key, Some(rule)).await
}

async fn list_with(api: &ApiStack, key: &ApiKey, name: &str, kind: &str, values: &[&str]) {
    let r = call(
        api,
        "create-list",
        "/v1/lists",
        key,
        Some(json!({"name": name, "kind": kind})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let entries: Vec<Value> = values.iter().map(|v| json!({"value": v})).collect();
    let r = call(
        api,
        "add-entries",
        &format!("/v1/lists/{name}/entries"),
        key,
        Some(json!({"entries": entries})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Saves the rules, builds a ruleset of them, publishes and activates it; its version.
async fn activate(api: &ApiStack, key: &ApiKey, mode: &str, rules: &[Value]) -> u64 {
    let mut ids = Vec::new();
    for rule in rules {
        let r = save_rule(api, key, rule.clone()).await;
        assert!(r.status == 201 || r.status == 200, "{}", r.body);
        ids.push(json!({"id": rule["id"]}));
    }
    let r = call(
        api,
        "create-ruleset",
        "/v1/rulesets",
        key,
        Some(json!({"mode": mode, "rules": ids})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "draft");
    let v = r.body["version"].as_u64().unwrap();
    let r = call(api, "publish-ruleset", &format!("/v1/rulesets/{v}/publish"), key, None).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!("published")), "{}", r.body);
    // No expectation: the pointer moves from whatever this request reads.
    let path = format!("/v1/rulesets/{v}/activate");
    let r = call(api, "activate-ruleset", &path, key, Some(json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    v
}

fn rule(id: &str, expression: &str, action: &str) -> Value {
    json!({"id": id, "name": format!("Rule {id}"), "description": format!("{id} matched"), "expression": expression, "action": action})
}

fn hit_ids(body: &Value) -> Vec<(String, String, String)> {
    body["rules"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["rule_id"].as_str().unwrap().to_owned(),
                h["mode"].as_str().unwrap().to_owned(),
                h["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_blocks_what_the_model_approved_and_an_allow_list_entry_overrides_it() {
    let api = ApiStack::new().await;
    let (_, key) = api.tenant("acme").await;

    let before = api.send(&post_tx(&key, json!({"id": "tx-before"}))).await;
    assert_eq!(before.body["decision"], "approve", "the model approves the sample");
    assert_eq!(before.body["rules"], Value::Null, "no ruleset yet");

    list_with(&api, &key, "blocked_emails", "email", &["Jane.Doe@Example.com"]).await;
    list_with(&api, &key, "vip_customers", "customer_id", &["cust_vip"]).await;
    let v = activate(
        &api,
        &key,
        "FIRST_MATCHED",
        &[
            rule(
                "blocked_email",
                "has(tx.email) && in_list(tx.email, \"blocked_emails\")",
                "block",
            ),
            rule("vip", "in_list(tx.customer_id, \"vip_customers\")", "allow"),
        ],
    )
    .await;

    let blocked = api.send(&post_tx(&key, json!({"id": "tx-blocked"}))).await;
    assert_eq!(blocked.status, 200, "{}", blocked.body);
    assert_eq!(blocked.body["decision"], "block", "{}", blocked.body);
    assert_eq!(blocked.body["rules"]["ruleset_version"], v);
    assert_eq!(
        hit_ids(&blocked.body),
        [("blocked_email".into(), "active".into(), "matched".into())]
    );
    let reason = &blocked.body["reasons"][0];
    assert_eq!(
        (&reason["kind"], &reason["rule_id"]),
        (&json!("rule"), &json!("blocked_email"))
    );
    assert_eq!(reason["text"], "Rule blocked_email: blocked_email matched");
    assert!(blocked.body["policy_version"]
        .as_str()
        .unwrap()
        .contains(&format!("ruleset:{v}")));

    // The stored decision says the same.
    let stored = call(&api, "get-transaction", "/v1/transactions/tx-blocked", &key, None).await;
    assert_eq!(stored.body["decision"], "block");
    assert_eq!(stored.body["rules"], blocked.body["rules"]);

    // The allow rule beats the block rule, whichever is listed first.
    let vip = api
        .send(&post_tx(&key, json!({"id": "tx-vip", "customer_id": "cust_vip"})))
        .await;
    assert_eq!(vip.body["decision"], "approve", "{}", vip.body);
    assert_eq!(hit_ids(&vip.body)[0].0, "vip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_and_erroring_rules_are_recorded_and_never_decide() {
    let api = ApiStack::new().await;
    let (_, key) = api.tenant("acme").await;
    let mut shadow = rule("shadow_block", "tx.amount > 0", "block");
    shadow["mode"] = json!("shadow");
    activate(
        &api,
        &key,
        "ALL_MATCHED",
        &[
            shadow,
            rule("needs_key", "tx.metadata[\"missing\"] == \"x\"", "block"),
            rule("tagged", "tx.currency == \"EUR\"", "tag"),
        ],
    )
    .await;
    let r = api.send(&post_tx(&key, json!({"id": "tx-shadow"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["decision"], "approve", "{}", r.body);
    let hits = hit_ids(&r.body);
    assert!(
        hits.contains(&("shadow_block".into(), "shadow".into(), "matched".into())),
        "{hits:?}"
    );
    assert!(
        hits.contains(&("needs_key".into(), "active".into(), "error".into())),
        "{hits:?}"
    );
    assert!(
        hits.contains(&("tagged".into(), "active".into(), "matched".into())),
        "{hits:?}"
    );
    assert!(
        r.body["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["kind"] == "model"),
        "shadow, tag and errors are not reasons: {}",
        r.body["reasons"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_rule_field_and_position_and_change_nothing() {
    let api = ApiStack::new().await;
    let (_, key) = api.tenant("acme").await;
    let v1 = activate(
        &api,
        &key,
        "FIRST_MATCHED",
        &[rule("ok", "tx.amount > 100000000", "block")],
    )
    .await;

    let r = save_rule(&api, &key, rule("bad", "tx.amount > 10 && amout < 5", "block")).await;
    r.assert_problem(400, "validation");
    let e = &r.body["errors"][0];
    assert_eq!(
        (&e["rule"], &e["field"]),
        (&json!("bad"), &json!("expression")),
        "{}",
        r.body
    );
    assert_eq!(
        (&e["position"]["column"], &e["position"]["offset"]),
        (&json!(19), &json!(18)),
        "{}",
        r.body
    );
    assert!(e["message"].as_str().unwrap().contains("amout"), "{}", r.body);

    let r = save_rule(&api, &key, rule("nolist", "in_list(tx.email, \"nope\")", "block")).await;
    r.assert_problem(400, "validation");
    assert!(
        r.body["errors"][0]["message"].as_str().unwrap().contains("nope"),
        "{}",
        r.body
    );

    let r = save_rule(&api, &key, rule("syntax", "tx.amount >", "block")).await;
    r.assert_problem(400, "validation");
    assert!(r.body["errors"][0]["position"].is_object(), "{}", r.body);

    call(
        &api,
        "create-list",
        "/v1/lists",
        &key,
        Some(json!({"name": "ips", "kind": "ip"})),
    )
    .await;
    let r = call(
        &api,
        "add-entries",
        "/v1/lists/ips/entries",
        &key,
        Some(json!({"entries": [{"value": "10.0.0.0/8"}, {"value": "10.0.0.300"}]})),
    )
    .await;
    r.assert_problem(400, "validation");
    assert_eq!(r.body["errors"][0]["field"], "entries[1].value", "{}", r.body);
    let l = call(&api, "get-list", "/v1/lists/ips", &key, None).await;
    assert_eq!(l.body["entries"], 0, "nothing of a refused request is added");

    // A draft cannot be activated; the active ruleset stays.
    call(
        &api,
        "save-rule",
        "/v1/rules",
        &key,
        Some(rule("two", "tx.amount > 5", "review")),
    )
    .await;
    let d = call(
        &api,
        "create-ruleset",
        "/v1/rulesets",
        &key,
        Some(json!({"rules": [{"id": "two"}]})),
    )
    .await;
    let dv = d.body["version"].as_u64().unwrap();
    let r = call(
        &api,
        "activate-ruleset",
        &format!("/v1/rulesets/{dv}/activate"),
        &key,
        None,
    )
    .await;
    r.assert_problem(409, "conflict");
    let active = call(&api, "get-active-ruleset", "/v1/rulesets/active", &key, None).await;
    assert_eq!(active.body["ruleset"]["version"], v1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_activations_from_the_same_read_pointer_move_it_once() {
    let api = ApiStack::new().await;
    let (_, key) = api.tenant("acme").await;
    let mut versions = Vec::new();
    for id in ["a", "b"] {
        save_rule(&api, &key, rule(id, "tx.amount > 5", "review")).await;
        let d = call(
            &api,
            "create-ruleset",
            "/v1/rulesets",
            &key,
            Some(json!({"rules": [{"id": id}]})),
        )
        .await;
        let v = d.body["version"].as_u64().unwrap();
        call(
            &api,
            "publish-ruleset",
            &format!("/v1/rulesets/{v}/publish"),
            &key,
            None,
        )
        .await;
        versions.push(v);
    }
    let move_to = |v: u64| {
        Event::load("activate-ruleset")
            .path(&format!("/v1/rulesets/{v}/activate"))
            .bearer(&key)
            .json(&json!({"expected_active_version": null}))
    };
    let (ea, eb) = (move_to(versions[0]), move_to(versions[1]));
    let (a, b) = tokio::join!(api.send(&ea), api.send(&eb));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", a.body, b.body);
    // A stale expectation is refused too.
    let r = api.send(&move_to(versions[0])).await;
    r.assert_problem(409, "conflict");
    // Rollback goes back to none? No: the first activation had no previous version.
    let r = call(&api, "rollback-ruleset", "/v1/rulesets/rollback", &key, None).await;
    r.assert_problem(409, "conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_returns_to_the_previous_ruleset_and_the_audit_names_who_did_what() {
    let api = ApiStack::new().await;
    let (_, key) = api.tenant("acme").await;
    let v1 = activate(
        &api,
        &key,
        "FIRST_MATCHED",
        &[rule("big", "tx.amount > 5000", "review")],
    )
    .await;
    let v2 = activate(
        &api,
        &key,
        "FIRST_MATCHED",
        &[rule("huge", "tx.amount > 1000", "block")],
    )
    .await;
    assert_eq!(
        api.send(&post_tx(&key, json!({"id": "t2"}))).await.body["decision"],
        "block"
    );
    let r = call(&api, "rollback-ruleset", "/v1/rulesets/rollback", &key, None).await;
    assert_eq!(
        (r.status, &r.body["ruleset"]["version"]),
        (200, &json!(v1)),
        "{}",
        r.body
    );
    assert_eq!(r.body["previous_version"], v2);
    let d = api.send(&post_tx(&key, json!({"id": "t1"}))).await;
    assert_eq!(
        d.body["decision"], "review",
        "the next decision uses the rolled-back ruleset"
    );

    let audit = call(&api, "list-audit", "/v1/audit", &key, None).await;
    assert_eq!(audit.status, 200);
    let items = audit.body["items"].as_array().unwrap();
    assert_eq!(items[0]["action"], "ruleset.rollback", "{}", audit.body);
    assert!(
        items.iter().all(|i| i["actor"] == key.key_id().as_str()),
        "{}",
        audit.body
    );
    let actions: Vec<&str> = items.iter().map(|i| i["action"].as_str().unwrap()).collect();
    for a in ["rule.create", "ruleset.create", "ruleset.publish", "ruleset.activate"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_sees_none_of_the_rules_and_decides_without_them() {
    let api = ApiStack::new().await;
    let (_, acme) = api.tenant("acme").await;
    let (_, other) = api.tenant("globex").await;
    list_with(&api, &acme, "blocked_emails", "email", &["jane.doe@example.com"]).await;
    activate(
        &api,
        &acme,
        "FIRST_MATCHED",
        &[rule(
            "blocked_email",
            "has(tx.email) && in_list(tx.email, \"blocked_emails\")",
            "block",
        )],
    )
    .await;
    let r = api.send(&post_tx(&other, json!({"id": "tx-g"}))).await;
    assert_eq!(
        (r.body["decision"].clone(), r.body["rules"].clone()),
        (json!("approve"), Value::Null)
    );
    call(&api, "get-rule", "/v1/rules/blocked_email", &other, None)
        .await
        .assert_problem(404, "not-found");
    call(&api, "get-list", "/v1/lists/blocked_emails", &other, None)
        .await
        .assert_problem(404, "not-found");
    call(&api, "get-active-ruleset", "/v1/rulesets/active", &other, None)
        .await
        .assert_problem(404, "not-found");
    let lists = call(&api, "list-lists", "/v1/lists", &other, None).await;
    assert_eq!(lists.body["items"], json!([]));
    // Another tenant's rule cannot use acme's list either.
    let r = save_rule(
        &api,
        &other,
        rule("x", "in_list(tx.email, \"blocked_emails\")", "block"),
    )
    .await;
    r.assert_problem(400, "validation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_decision_with_rules_and_lists_is_still_one_batch_get_and_one_transact_write() {
    let api = ApiStack::new().await;
    let (_, key) = api.tenant("acme").await;
    list_with(&api, &key, "blocked_emails", "email", &["someone@else.com"]).await;
    activate(
        &api,
        &key,
        "ALL_MATCHED",
        &[
            rule(
                "blocked_email",
                "has(tx.email) && in_list(tx.email, \"blocked_emails\")",
                "block",
            ),
            rule("big", "tx.amount > 100000", "review"),
        ],
    )
    .await;
    // The first decision after the activation loads the ruleset and the list.
    api.send(&post_tx(&key, json!({"id": "tx-load"}))).await;
    api.stack.calls.take();
    let r = api.send(&post_tx(&key, json!({"id": "tx-warm"}))).await;
    assert_eq!(
        r.body["rules"]["ruleset_version"].as_u64().is_some(),
        true,
        "{}",
        r.body
    );
    assert_eq!(api.stack.calls.take(), ["BatchGetItem", "TransactWriteItems"]);

    // A list change is seen by the next decision: one extra read, of that list only.
    call(
        &api,
        "add-entries",
        "/v1/lists/blocked_emails/entries",
        &key,
        Some(json!({"entries": [{"value": "JANE.DOE@example.com"}]})),
    )
    .await;
    api.stack.calls.take();
    let r = api.send(&post_tx(&key, json!({"id": "tx-after"}))).await;
    assert_eq!(r.body["decision"], "block", "{}", r.body);
    // The list's meta and entries are read once (the ruleset stays cached: no ruleset read).
    assert_eq!(
        api.stack.calls.take(),
        ["BatchGetItem", "GetItem", "Query", "TransactWriteItems"]
    );
    api.stack.calls.take();
    api.send(&post_tx(&key, json!({"id": "tx-after-2"}))).await;
    assert_eq!(api.stack.calls.take(), ["BatchGetItem", "TransactWriteItems"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_replays_stored_decisions_with_their_labels_and_writes_nothing() {
    use verdict::domain::{Currency, CustomerId, Money, TerminalId, Timestamp, Transaction, TransactionId};
    let api = ApiStack::new().await;
    let (tenant, key) = api.tenant("acme").await;
    // Six decisions inside the window (three of them large), one the day after.
    let mut txs = Vec::new();
    let mut answers = Vec::new();
    for (i, (amount, at)) in [
        (250_000, "2018-08-08T01:00:00Z"),
        (250_000, "2018-08-08T02:00:00Z"),
        (300_000, "2018-08-08T23:59:59Z"),
        (1_000, "2018-08-08T03:00:00Z"),
        (2_000, "2018-08-08T04:00:00Z"),
        (3_000, "2018-08-08T05:00:00Z"),
        (250_000, "2018-08-09T00:00:00Z"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("bt-{i}");
        let r = api
            .send(&post_tx(
                &key,
                json!({"id": id, "amount": amount, "occurred_at": at, "customer_id": format!("c-{i}")}),
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        answers.push(r.body["decision"].as_str().unwrap().to_owned());
        txs.push(Transaction {
            id: TransactionId::parse(&id).unwrap(),
            occurred_at: Timestamp::parse("t", at).unwrap(),
            amount: Money::new(amount, Currency::EUR).unwrap(),
            customer_id: CustomerId::parse(&format!("c-{i}")).unwrap(),
            terminal_id: TerminalId::parse("term_3412").unwrap(),
        });
    }
    // Two frauds: one large (caught by the rule), one small (missed).
    verdict_integration::label_fraud(&api.stack.store, &tenant, &txs[0]).await;
    verdict_integration::label_fraud(&api.stack.store, &tenant, &txs[4]).await;

    save_rule(&api, &key, rule("large", "tx.amount > 100000", "block")).await;
    let d = call(
        &api,
        "create-ruleset",
        "/v1/rulesets",
        &key,
        Some(json!({"rules": [{"id": "large"}]})),
    )
    .await;
    let v = d.body["version"].as_u64().unwrap();
    api.stack.calls.take();
    let window = json!({"from": "2018-08-08T00:00:00Z", "to": "2018-08-09T00:00:00Z"});
    let r = call(
        &api,
        "backtest-ruleset",
        &format!("/v1/rulesets/{v}/backtest"),
        &key,
        Some(window),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = &r.body;
    assert_eq!(
        (&b["decisions"], &b["frauds"], &b["labelled"]),
        (&json!(6), &json!(2), &json!(2)),
        "{b}"
    );
    let large = &b["rules"][0];
    assert_eq!((&large["rule_id"], &large["hits"]), (&json!("large"), &json!(3)), "{b}");
    assert_eq!(
        (&large["frauds_caught"], &large["false_positives"]),
        (&json!(1), &json!(0)),
        "{b}"
    );
    assert_eq!(
        (&large["precision"], &large["recall"]),
        (&json!(1.0), &json!(0.5)),
        "{b}"
    );
    // No ruleset was active when they were scored: the baseline is what the API answered, and
    // the draft blocks the three large ones and leaves the rest as they were.
    let mix = |ds: &[&str]| {
        let n = |k: &str| ds.iter().filter(|d| **d == k).count() as u64;
        json!({"approve": n("approve"), "review": n("review"), "block": n("block")})
    };
    let answered: Vec<&str> = answers[..6].iter().map(String::as_str).collect();
    assert_eq!(b["baseline"]["mix"], mix(&answered), "{b}");
    let mut drafted = answered.clone();
    drafted[..3].fill("block");
    assert_eq!(b["draft"]["mix"], mix(&drafted), "{b}");
    let writes: Vec<String> = api
        .stack
        .calls
        .take()
        .into_iter()
        .filter(|c| !matches!(c.as_str(), "GetItem" | "BatchGetItem" | "Query"))
        .collect();
    assert!(writes.is_empty(), "a backtest only reads: {writes:?}");

    for (body, field) in [
        (
            json!({"from": "2018-08-09T00:00:00Z", "to": "2018-08-08T00:00:00Z"}),
            "to",
        ),
        (
            json!({"from": "2018-01-01T00:00:00Z", "to": "2018-08-08T00:00:00Z"}),
            "to",
        ),
        (json!({"from": "yesterday", "to": "2018-08-08T00:00:00Z"}), "from"),
    ] {
        let r = call(
            &api,
            "backtest-ruleset",
            &format!("/v1/rulesets/{v}/backtest"),
            &key,
            Some(body),
        )
        .await;
        r.assert_problem(400, "validation");
        assert_eq!(r.fields(), [field], "{}", r.body);
    }
    let r = call(
        &api,
        "backtest-ruleset",
        "/v1/rulesets/99/backtest",
        &key,
        Some(json!({"from": "2018-08-08T00:00:00Z", "to": "2018-08-09T00:00:00Z"})),
    )
    .await;
    r.assert_problem(404, "not-found");
}

/// Odd stored data (a negative list count, a ruleset item that does not parse) never turns into a
/// 5xx for the tenant's decisions, in a container that reads them afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_stored_rules_data_never_fails_the_tenants_decisions() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use verdict::adapters::dynamodb::Keys;
    use verdict::domain::ListName;
    let api = ApiStack::new().await;
    let (tenant, key) = api.tenant("acme").await;
    list_with(&api, &key, "blocked_emails", "email", &["jane.doe@example.com"]).await;
    let v = activate(
        &api,
        &key,
        "FIRST_MATCHED",
        &[rule(
            "blocked_email",
            "has(tx.email) && in_list(tx.email, \"blocked_emails\")",
            "block",
        )],
    )
    .await;
    let keys = Keys::new(&tenant);
    let list = ListName::parse("blocked_emails").unwrap();
    set_attribute(&api, keys.list_meta(&list), "entries", AttributeValue::N("-1".into())).await;
    // A new container reads the list afresh: the odd count reads as 0, the list still works.
    let fresh = ::api::App::new(api.stack.store.clone(), api.stack.blobs.clone(), None);
    let r = verdict_integration::api::send(&fresh, &post_tx(&key, json!({"id": "odd-1"}))).await;
    assert_eq!((r.status, &r.body["decision"]), (200, &json!("block")), "{}", r.body);
    let l = verdict_integration::api::send(
        &fresh,
        &Event::load("get-list").path("/v1/lists/blocked_emails").bearer(&key),
    )
    .await;
    assert_eq!((l.status, &l.body["entries"]), (200, &json!(0)), "{}", l.body);
    let added = verdict_integration::api::send(
        &fresh,
        &Event::load("add-entries")
            .path("/v1/lists/blocked_emails/entries")
            .bearer(&key)
            .json(&json!({"entries": [{"value": "x@y.io"}]})),
    )
    .await;
    assert_eq!(added.status, 200, "a change repairs it: {}", added.body);

    // The active ruleset's item stops parsing: decisions go on with the thresholds alone.
    set_attribute(
        &api,
        keys.ruleset(v as u32),
        "ruleset",
        AttributeValue::S("{not json".into()),
    )
    .await;
    let fresh = ::api::App::new(api.stack.store.clone(), api.stack.blobs.clone(), None);
    for id in ["odd-2", "odd-3"] {
        let r = verdict_integration::api::send(&fresh, &post_tx(&key, json!({"id": id}))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["rules"], Value::Null, "{}", r.body);
        assert!(
            r.body["policy_version"]
                .as_str()
                .unwrap()
                .ends_with(&format!(";ruleset:{v}(unusable)")),
            "the decision says the ruleset was not applied: {}",
            r.body
        );
    }
}

/// Writes one attribute of a stored item behind the adapter's back, as odd data would be.
async fn set_attribute(
    api: &ApiStack,
    k: verdict::adapters::dynamodb::ItemKey,
    attr: &str,
    value: aws_sdk_dynamodb::types::AttributeValue,
) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let st = &api.stack;
    st.dynamodb
        .update_item()
        .table_name(&st.table)
        .key("pk", AttributeValue::S(k.pk.clone()))
        .key("sk", AttributeValue::S(k.sk.clone()))
        .update_expression("SET #a = :v")
        .expression_attribute_names("#a", attr)
        .expression_attribute_values(":v", value)
        .send()
        .await
        .expect("UpdateItem");
}
