//! Model management over `functions/api`'s real handler against moto: the registry listed newest
//! first with pages, activation, refusal of a rejected model, rollback (twice), and tenant isolation.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use verdict::domain::features::OfflineFeatures;
use verdict::domain::model::train::{train, TrainParams};
use verdict::domain::model::Model;
use verdict::domain::registry::{ImportDetails, ModelRegistration, ModelStatus};
use verdict::domain::{TenantId, Timestamp};
use verdict::offline::sim::{simulate, SimConfig};
use verdict::ports::registry::{ExpectedPointer, ModelRegistry};
use verdict::ports::StoreError;
use verdict_integration::api::{trained_model, ApiStack, Event, ALL_SCOPES};

/// A second, different model (fewer trees, another name), so activation visibly changes what
/// scores.
fn challenger() -> Model {
    let cfg = SimConfig {
        customers: 300,
        terminals: 600,
        days: 40,
        seed: 11,
        ..SimConfig::default()
    };
    let rows = simulate(&cfg, &mut |_, _| {}).unwrap();
    let mut offline = OfflineFeatures::new();
    let x: Vec<_> = rows.iter().map(|r| offline.push(&r.tx, r.label)).collect();
    let y: Vec<bool> = rows.iter().map(|r| r.label.is_some_and(|l| l.fraud)).collect();
    let params = TrainParams {
        trees: 15,
        ..TrainParams::default()
    };
    Model::seal(train("challenger", &x, &y, &params, BTreeMap::new()).unwrap()).unwrap()
}

fn registration(model: &Model, object_key: &str, uploaded_at: &str, status: ModelStatus) -> ModelRegistration {
    ModelRegistration {
        version: model.version().to_owned(),
        name: model.artifact.name.clone(),
        sha256: model.sha256.clone(),
        object_key: object_key.to_owned(),
        source: "verdict".into(),
        status,
        metrics: BTreeMap::new(),
        uploaded_at: Timestamp::parse("t", uploaded_at).unwrap(),
        uploaded_by: "models-api-test".into(),
        trees: model.tree_count() as u32,
    }
}

fn list(query: &str) -> Event {
    Event::load("list-models").query(query)
}

fn activate(version: &str) -> Event {
    Event::load("activate-model").path(&format!("/v1/models/{version}/activate"))
}

fn versions(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_listed_activated_refused_and_rolled_back_per_tenant() {
    let api = ApiStack::new().await;
    let (acme, key) = api.tenant("acme").await; // the trained model, uploaded 2018-08-07, active
    let first = trained_model().version().to_owned();

    // A candidate uploaded a day later, and a rejected upload a day after that.
    let second_model = challenger();
    let second = second_model.version().to_owned();
    let second_key = format!("models/active/acme/{second}.vmodel");
    api.stack
        .blobs
        .put(&second_key, second_model.artifact.to_bytes())
        .await
        .unwrap();
    api.stack
        .store
        .register_model(
            &acme,
            &registration(
                &second_model,
                &second_key,
                "2018-08-08T09:00:00Z",
                ModelStatus::Candidate,
            ),
        )
        .await
        .unwrap();
    let rejected = "00c0ffee00c0ffee".to_owned();
    let mut bad = registration(
        &second_model,
        "models/rejected/acme/bad.txt",
        "2018-08-09T09:00:00Z",
        ModelStatus::Rejected,
    );
    bad.version = rejected.clone();
    bad.sha256 = "00c0ffee".repeat(8);
    let details = ImportDetails {
        source_key: "models/incoming/acme/bad.txt".into(),
        source_version_id: None,
        source_etag: "e".into(),
        source_sha256: bad.sha256.clone(),
        source_format: None,
        validation: None,
        reject_code: Some("format".into()),
        reject_reason: Some("models/incoming/acme/bad.txt: not a Verdict, LightGBM or XGBoost model".into()),
    };
    api.stack.store.register_import(&acme, &bad, &details).await.unwrap();

    // Newest upload first, two per page, no gaps or repeats.
    let p1 = api.send(&list("limit=2").bearer(&key)).await;
    assert_eq!(p1.status, 200, "{}", p1.body);
    assert_eq!(versions(&p1.body), [rejected.clone(), second.clone()]);
    assert_eq!(p1.body["items"][0]["status"], "rejected");
    assert!(p1.body["items"][0]["reject_reason"]
        .as_str()
        .unwrap()
        .contains("bad.txt"));
    assert_eq!(p1.body["items"][1]["status"], "candidate");
    let cursor = p1.body["next_cursor"].as_str().unwrap().to_owned();
    let p2 = api.send(&list(&format!("limit=2&cursor={cursor}")).bearer(&key)).await;
    assert_eq!(versions(&p2.body), std::slice::from_ref(&first));
    assert_eq!(p2.body["items"][0]["status"], "active");
    assert_eq!(p2.body["next_cursor"], Value::Null);
    for bad_query in ["limit=0", "limit=101", "limit=x", "cursor=bm9wZQ"] {
        let r = api.send(&list(bad_query).bearer(&key)).await;
        r.assert_problem(400, "validation");
        assert_eq!(r.fields().len(), 1, "{bad_query}: {}", r.body);
    }

    // Activation: the next decision of the same container is made by the new model.
    let r = api.send(&activate(&second).bearer(&key)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            &r.body["model"]["version"],
            &r.body["model"]["status"],
            &r.body["previous_version"]
        ),
        (&json!(second), &json!("active"), &json!(first))
    );
    let tx = json!({"id": "m-1", "occurred_at": "2018-08-10T10:00:00Z", "amount": 5_000, "currency": "EUR",
                    "customer_id": "c-1", "terminal_id": "t-1"});
    let post = Event::load("post-transaction")
        .without_header("idempotency-key")
        .bearer(&key);
    let scored = api.send(&post.clone().json(&tx)).await;
    assert_eq!(scored.status, 200, "{}", scored.body);
    assert_eq!(scored.body["model"]["version"], json!(second));
    // Activating the active model again changes nothing.
    let again = api.send(&activate(&second).bearer(&key)).await;
    assert_eq!((again.status, &again.body["previous_version"]), (200, &json!(first)));

    // A rejected model is refused and the serving model stays.
    let r = api.send(&activate(&rejected).bearer(&key)).await;
    r.assert_problem(409, "conflict");
    assert!(r.body["detail"].as_str().unwrap().contains("rejected"), "{}", r.body);
    let active = api.send(&Event::load("get-active-model").bearer(&key)).await;
    assert_eq!(active.body["model"]["version"], json!(second));
    api.send(&activate("0123456789abcdef").bearer(&key))
        .await
        .assert_problem(404, "not-found");
    // A registration whose artifact is gone never serves.
    let mut orphan = registration(
        &second_model,
        "models/active/acme/missing.vmodel",
        "2018-08-01T00:00:00Z",
        ModelStatus::Candidate,
    );
    orphan.version = "0ddba11000000000".into();
    api.stack.store.register_model(&acme, &orphan).await.unwrap();
    let r = api.send(&activate("0ddba11000000000").bearer(&key)).await;
    r.assert_problem(409, "conflict");
    assert!(
        r.body["detail"].as_str().unwrap().contains("serving model stays"),
        "{}",
        r.body
    );
    // An entry whose artifact is another version (a cached model of that version proves nothing).
    let mut mismatch = registration(
        &second_model,
        &second_key,
        "2018-08-01T00:00:00Z",
        ModelStatus::Candidate,
    );
    mismatch.version = "0ddba11000000001".into();
    api.stack.store.register_model(&acme, &mismatch).await.unwrap();
    let r = api.send(&activate("0ddba11000000001").bearer(&key)).await;
    r.assert_problem(409, "conflict");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("is version {second}")),
        "{}",
        r.body
    );
    // A change decided on a pointer read earlier loses to a concurrent one instead of undoing it.
    let first_key = api.stack.store.model(&acme, &first).await.unwrap().unwrap().object_key;
    let stale = api
        .stack
        .store
        .activate(&acme, &first, &first_key, ExpectedPointer::At(Some(&rejected)))
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::Conflict(_)), "{stale}");
    let active = api.send(&Event::load("get-active-model").bearer(&key)).await;
    assert_eq!(active.body["model"]["version"], json!(second));
    let r = api.send(&activate("NOT-HEX").bearer(&key)).await;
    r.assert_problem(400, "validation");
    assert_eq!(r.fields(), ["id"]);

    // Rollback returns to the first model; a second rollback undoes the first.
    let rollback = Event::load("rollback-model").bearer(&key);
    let r = api.send(&rollback).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (&r.body["model"]["version"], &r.body["previous_version"]),
        (&json!(first), &json!(second))
    );
    let scored = api
        .send(
            &post
                .clone()
                .json(&json!({"id": "m-2", "occurred_at": "2018-08-10T10:05:00Z",
        "amount": 5_000, "currency": "EUR", "customer_id": "c-1", "terminal_id": "t-1"})),
        )
        .await;
    assert_eq!(scored.body["model"]["version"], json!(first));
    let listed = api.send(&list("").bearer(&key)).await;
    let status_of = |v: &str| {
        listed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["version"] == v)
            .map(|m| m["status"].clone())
    };
    assert_eq!(status_of(&first), Some(json!("active")));
    assert_eq!(status_of(&second), Some(json!("retired")));
    let r = api.send(&rollback).await;
    assert_eq!(
        (r.status, &r.body["model"]["version"], &r.body["previous_version"]),
        (200, &json!(second), &json!(first))
    );

    // Another tenant sees none of it and cannot move acme's pointer.
    let globex = TenantId::parse("globex").unwrap();
    let gkey = api.key(&globex, ALL_SCOPES, None).await;
    let r = api.send(&list("").bearer(&gkey)).await;
    assert_eq!((r.status, versions(&r.body).len()), (200, 0));
    api.send(&activate(&first).bearer(&gkey))
        .await
        .assert_problem(404, "not-found");
    let r = api.send(&Event::load("rollback-model").bearer(&gkey)).await;
    r.assert_problem(409, "conflict");
    let pointer = api.stack.store.model_pointer(&acme).await.unwrap().unwrap();
    assert_eq!(pointer.version, second);
}
