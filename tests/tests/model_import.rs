//! model-import against moto: the real handler fed S3 events built from events/s3/model-upload.json.
//!
//! A LightGBM model trained in Python is imported with a manifest carrying Python's predictions
//! and activated; corrupted uploads are refused and moved aside while the serving model keeps
//! serving; duplicate deliveries change nothing.

use aws_sdk_s3::primitives::ByteStream;
use std::collections::BTreeMap;
use verdict::adapters::DynamoStore;
use verdict::adapters::ObjectStore;
use verdict::app::scoring::{Origin, Scorer};
use verdict::domain::auth::{ApiKey, KeyRecord, Principal, Scope};
use verdict::domain::decision::ScoreRequest;
use verdict::domain::features::{FeatureVector, FEATURE_COUNT, FEATURE_NAMES, HANDBOOK_FEATURE_COUNT};
use verdict::domain::model::Model;
use verdict::domain::model_upload::sha256_hex;
use verdict::domain::registry::ModelStatus;
use verdict::domain::{TenantId, Timestamp};
use verdict::ports::{DecisionStore, ModelBlobs, StoreError};
use verdict_integration::{repo_root, Stack};

use model_import::{Deps, ImportOutcome, RecordOutcome, S3Event};

const PRINCIPAL: &str = "AWS:AIDAEXAMPLEUPLOADER01";
const EVENT_TIME: &str = "2018-08-07T16:20:31.204Z";

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("fixtures").join(name)).unwrap()
}

/// The parity rows (NaN as None) and each library's predictions.
fn parity() -> (Vec<Vec<Option<f64>>>, Vec<f64>, Vec<f64>) {
    let text = String::from_utf8(fixture("parity_features.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header, FEATURE_NAMES[..HANDBOOK_FEATURE_COUNT]);
    let rows: Vec<Vec<Option<f64>>> = lines
        .map(|l| {
            l.split(',')
                .map(|v| match v {
                    "nan" => None,
                    v => Some(v.parse().unwrap()),
                })
                .collect()
        })
        .collect();
    let text = String::from_utf8(fixture("parity_predictions.csv")).unwrap();
    let (mut lgb, mut xgb) = (Vec::new(), Vec::new());
    for l in text.lines().skip(1) {
        let (a, b) = l.split_once(',').unwrap();
        lgb.push(a.parse().unwrap());
        xgb.push(b.parse().unwrap());
    }
    assert_eq!(rows.len(), lgb.len());
    (rows, lgb, xgb)
}

fn vector(row: &[Option<f64>]) -> FeatureVector {
    let mut x = [f64::NAN; FEATURE_COUNT];
    for (j, v) in row.iter().enumerate() {
        x[j] = v.unwrap_or(f64::NAN);
    }
    FeatureVector(x)
}

fn manifest(name: &str, activate: bool, predictions: &[f64]) -> Vec<u8> {
    let (rows, _, _) = parity();
    serde_json::to_vec(&serde_json::json!({
        "name": name,
        "activate": activate,
        "metrics": {"auc": 0.875, "average_precision": 0.69},
        "reference": {
            "columns": FEATURE_NAMES[..HANDBOOK_FEATURE_COUNT],
            "features": rows,
            "predictions": predictions,
        }
    }))
    .unwrap()
}

fn tiny_artifact(threshold: f64) -> Vec<u8> {
    let mut a = verdict::domain::model::stump_artifact(threshold, -3.0, -0.5, 6.0);
    a.metrics = BTreeMap::from([("auc".to_owned(), 0.8)]);
    a.to_bytes()
}

/// The sample event with this object in it, as S3 would send it (key URL-encoded).
fn event(bucket: &str, key: &str, etag: &str, size: usize) -> S3Event {
    let raw = std::fs::read_to_string(repo_root().join("events/s3/model-upload.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let r = &mut v["Records"][0]["s3"];
    r["bucket"]["name"] = bucket.into();
    r["bucket"]["arn"] = format!("arn:aws:s3:::{bucket}").into();
    r["object"]["key"] = key.replace(' ', "+").into();
    r["object"]["eTag"] = etag.into();
    r["object"]["size"] = size.into();
    // The test bucket is not versioned.
    r["object"].as_object_mut().unwrap().remove("versionId");
    serde_json::from_value(v).unwrap()
}

struct Env {
    st: Stack,
    deps: Deps,
}

impl Env {
    async fn new() -> Env {
        let st = Stack::new().await;
        let deps = Deps {
            store: st.store.clone(),
            objects: ObjectStore::new(st.s3.clone()),
            bucket: st.bucket.clone(),
        };
        Env { st, deps }
    }

    async fn put(&self, key: &str, bytes: &[u8], metadata: &[(&str, &str)]) -> (String, usize) {
        let mut req = self
            .st
            .s3
            .put_object()
            .bucket(&self.st.bucket)
            .key(key)
            .body(ByteStream::from(bytes.to_vec()));
        for (k, v) in metadata {
            req = req.metadata(*k, *v);
        }
        let out = req.send().await.unwrap();
        (out.e_tag().unwrap().trim_matches('"').to_owned(), bytes.len())
    }

    /// Uploads and delivers the upload's event to the handler.
    async fn upload(&self, key: &str, bytes: &[u8], metadata: &[(&str, &str)]) -> RecordOutcome {
        let (etag, size) = self.put(key, bytes, metadata).await;
        self.deliver(key, &etag, size).await
    }

    async fn deliver(&self, key: &str, etag: &str, size: usize) -> RecordOutcome {
        let mut out = model_import::handle(&self.deps, event(&self.st.bucket, key, etag, size))
            .await
            .unwrap();
        assert_eq!(out.records.len(), 1);
        out.records.remove(0)
    }

    async fn object(&self, key: &str) -> Option<Vec<u8>> {
        match self.st.blobs.fetch(key).await {
            Ok(b) => Some(b),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => panic!("{e}"),
        }
    }

    async fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self
            .st
            .s3
            .list_objects_v2()
            .bucket(&self.st.bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }
}

fn accepted(r: &RecordOutcome) -> (&str, ModelStatus, &str, Option<&str>) {
    match &r.outcome {
        ImportOutcome::Accepted {
            version,
            status,
            object_key,
            previous_version,
            ..
        } => (version, *status, object_key, previous_version.as_deref()),
        other => panic!("expected an accepted import, got {other:?}"),
    }
}

fn rejected(r: &RecordOutcome) -> (&str, &str, &str, &str) {
    match &r.outcome {
        ImportOutcome::Rejected {
            version,
            code,
            reason,
            object_key,
            ..
        } => (version, code, reason, object_key),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A key for the scoring path, to show which model the api serves.
async fn api_key(store: &DynamoStore) -> (ApiKey, Principal) {
    let api = ApiKey::generate();
    let rec = KeyRecord {
        key_id: api.key_id(),
        tenant: acme(),
        scopes: Scope::parse_list("transactions:write").unwrap(),
        created_at: 1_700_000_000,
        expires_at: None,
        revoked_at: None,
    };
    store.put_key(&api.hash(), &rec).await.unwrap();
    let principal = rec.authenticate(&api.hash(), 1_700_000_001).unwrap();
    (api, principal)
}

/// A 500 EUR payment by a customer of its own (so earlier requests do not change its features).
fn request(id: &str) -> ScoreRequest {
    let body = format!(
        r#"{{"id":"{id}","occurred_at":"2018-08-08T10:00:00Z","amount":50000,"currency":"EUR","customer_id":"c-{id}","terminal_id":"t-1"}}"#
    );
    ScoreRequest::parse_json(body.as_bytes()).unwrap()
}

#[tokio::test]
async fn a_lightgbm_model_from_python_is_imported_activated_and_scores_like_python() {
    let env = Env::new().await;
    let (st, store) = (&env.st, &env.st.store);

    // A model is serving already, and the scoring path has it cached.
    let first = env
        .upload(
            "models/incoming/acme/tiny.vmodel",
            &tiny_artifact(220.0),
            &[("activate", "true")],
        )
        .await;
    let (old, status, _, _) = accepted(&first);
    let old = old.to_owned();
    assert_eq!(status, ModelStatus::Active);
    let (_key, principal) = api_key(store).await;
    let scorer = Scorer::new(store.clone(), st.blobs.clone(), None);
    let before = scorer
        .score(&principal, &request("tx-before"), None, &Origin::now("test"))
        .await
        .unwrap();
    assert_eq!(before.record.model.version, old);

    // The manifest goes first; its own event is not an import.
    let (rows, python, _) = parity();
    let key = "models/incoming/acme/handbook lgbm.txt";
    let m = env
        .upload(
            &format!("{key}.manifest.json"),
            &manifest("handbook-lgbm", true, &python),
            &[],
        )
        .await;
    assert!(matches!(&m.outcome, ImportOutcome::Skipped { reason } if reason.contains("manifest")));
    let upload = fixture("lightgbm_model.txt");
    let r = env.upload(key, &upload, &[]).await;
    assert!(!r.duplicate);
    assert_eq!(r.key, key, "the event's URL-encoded key is decoded");
    let (version, status, object_key, previous) = accepted(&r);
    assert_eq!(status, ModelStatus::Active);
    assert_eq!(previous, Some(old.as_str()));
    assert_eq!(object_key, format!("models/active/acme/{version}.vmodel"));
    match &r.outcome {
        ImportOutcome::Accepted {
            source,
            format,
            check,
            name,
            ..
        } => {
            assert_eq!(
                (source.as_str(), format.as_str(), name.as_str()),
                ("lightgbm", "lightgbm", "handbook-lgbm")
            );
            assert!(check.starts_with("reference sample of 390 rows"), "{check}");
        }
        _ => unreachable!(),
    }

    // The stored artifact is what the api loads: it scores like LightGBM in Python.
    let artifact = env.object(object_key).await.expect("artifact under models/active/");
    let model = Model::from_bytes(object_key, &artifact).unwrap();
    assert_eq!(model.version(), version);
    assert_eq!(model.tree_count(), 60);
    assert_eq!(model.artifact.name, "handbook-lgbm");
    let mut max = 0.0f64;
    for (row, want) in rows.iter().zip(&python) {
        let d = (model.probability(&vector(row)) - want).abs();
        assert!(d <= 1e-6, "|{} - {want}| = {d}", model.probability(&vector(row)));
        max = max.max(d);
    }
    assert!(rows.len() == 390 && max < 1e-6);

    // Registry item.
    let reg = store.model(&acme(), version).await.unwrap().expect("registered");
    assert_eq!(reg.name, "handbook-lgbm");
    assert_eq!(reg.status, ModelStatus::Active);
    assert_eq!(reg.source, "lightgbm");
    assert_eq!(reg.sha256, model.sha256);
    assert_eq!(
        reg.sha256,
        sha256_hex(&artifact[artifact.iter().position(|&b| b == b'\n').unwrap() + 1..])
    );
    assert_eq!(reg.object_key, object_key);
    assert_eq!(reg.trees, 60);
    assert_eq!(reg.uploaded_by, PRINCIPAL);
    assert_eq!(reg.uploaded_at, Timestamp::parse("t", EVENT_TIME).unwrap());
    assert_eq!(
        reg.metrics,
        BTreeMap::from([("auc".into(), 0.875), ("average_precision".into(), 0.69)])
    );
    let details = store.import_details(&acme(), version).await.unwrap().unwrap();
    assert_eq!(details.source_key, key);
    assert_eq!(details.source_sha256, sha256_hex(&upload));
    assert_eq!(details.source_format.as_deref(), Some("lightgbm"));
    assert_eq!(details.reject_reason, None);
    assert_eq!(
        store.model(&acme(), &old).await.unwrap().unwrap().status,
        ModelStatus::Retired
    );

    // The pointer moved and remembers what it replaced.
    let p = store.model_pointer(&acme()).await.unwrap().unwrap();
    assert_eq!((p.version.as_str(), p.object_key.as_str()), (version, object_key));
    assert_eq!(p.previous_version.as_deref(), Some(old.as_str()));

    // The same scorer (no restart) now decides with the imported model, as Python would score.
    let after = scorer
        .score(&principal, &request("tx-after"), None, &Origin::now("test"))
        .await
        .unwrap();
    assert_eq!(after.record.model.version, version);
    assert_eq!(after.record.model.id, "handbook-lgbm");
    let active = store.active_model(&acme()).await.unwrap();
    let served = scorer.model_for(active.as_ref()).await.unwrap();
    assert!((served.probability(&vector(&rows[0])) - python[0]).abs() <= 1e-6);
    assert!(env.keys("models/rejected/").await.is_empty());
}

#[tokio::test]
async fn corrupted_models_are_rejected_moved_aside_and_the_serving_model_keeps_serving() {
    let env = Env::new().await;
    let store = &env.st.store;
    let lgb = fixture("lightgbm_model.txt");
    let good = env
        .upload(
            "models/incoming/acme/good.txt",
            &lgb,
            &[("name", "champion"), ("activate", "true")],
        )
        .await;
    let (serving, _, serving_key, _) = accepted(&good);
    let (serving, serving_key) = (serving.to_owned(), serving_key.to_owned());
    match &good.outcome {
        ImportOutcome::Accepted { check, .. } => {
            assert_eq!(check, "built-in sample of 10 rows, probabilities in [0, 1]")
        }
        _ => unreachable!(),
    }
    let (_key, principal) = api_key(store).await;
    let scorer = Scorer::new(store.clone(), env.st.blobs.clone(), None);
    let baseline = scorer
        .score(&principal, &request("tx-0"), None, &Origin::now("test"))
        .await
        .unwrap();
    assert_eq!(baseline.record.model.version, serving);

    let text = String::from_utf8(lgb.clone()).unwrap();
    let truncated = text.as_bytes()[..text.find("Tree=30").unwrap() + 200].to_vec();
    let mut tampered = env.object(&serving_key).await.unwrap();
    let i = tampered.len() - 10;
    tampered[i] ^= 0x01;
    let mut xgb: serde_json::Value = serde_json::from_slice(&fixture("xgboost_model.json")).unwrap();
    xgb["learner"]["gradient_booster"]["model"]["trees"][3]["left_children"][0] = serde_json::json!(1000);
    let bad_child = serde_json::to_vec(&xgb).unwrap();
    // A sound LightGBM file whose manifest carries another model's predictions.
    let (_, _, xgb_predictions) = parity();
    env.put(
        "models/incoming/acme/mismatch.txt.manifest.json",
        &manifest("mismatch", true, &xgb_predictions),
        &[],
    )
    .await;
    let mut mismatched = lgb.clone();
    mismatched.extend_from_slice(b"\n");

    let cases: [(&str, &[u8], &str, &str); 4] = [
        (
            "truncated.txt",
            &truncated,
            "invalid_model_file",
            "after tree 30 without the \"end of trees\" line; it is truncated",
        ),
        (
            "tampered.vmodel",
            &tampered,
            "digest_mismatch",
            "digest mismatch: header says sha256",
        ),
        (
            "bad-child.json",
            &bad_child,
            "invalid_model_file",
            "trees[3].left_children[0]: child 1000 is out of range",
        ),
        (
            "mismatch.txt",
            &mismatched,
            "reference_mismatch",
            "rows differ from the source library's predictions by more than 1e-6",
        ),
    ];
    for (name, bytes, want_code, want_reason) in cases {
        let key = format!("models/incoming/acme/{name}");
        let r = env.upload(&key, bytes, &[("activate", "true")]).await;
        let (version, code, reason, moved_to) = rejected(&r);
        assert_eq!(code, want_code, "{name}: {reason}");
        assert!(reason.contains(want_reason), "{name}: {reason}");
        assert!(
            reason.contains(&format!("s3://{}/{key}", env.st.bucket)),
            "the reason names the upload: {reason}"
        );
        assert_eq!(version, &sha256_hex(bytes)[..16]);

        // Registry: rejected, with the reason.
        let reg = store
            .model(&acme(), version)
            .await
            .unwrap()
            .expect("a registry item for the rejection");
        assert_eq!(reg.status, ModelStatus::Rejected);
        assert_eq!(reg.object_key, format!("models/rejected/acme/{name}"));
        assert_eq!(reg.sha256, sha256_hex(bytes));
        assert_eq!(reg.uploaded_by, PRINCIPAL);
        let d = store.import_details(&acme(), version).await.unwrap().unwrap();
        assert_eq!(d.reject_reason.as_deref(), Some(reason));
        assert_eq!(d.reject_code.as_deref(), Some(want_code));

        // Moved: gone from incoming, byte for byte under rejected.
        assert_eq!(moved_to, reg.object_key);
        assert_eq!(env.object(&key).await, None, "{name} left models/incoming/");
        assert_eq!(env.object(moved_to).await.as_deref(), Some(bytes));

        // The serving model is untouched and still serves.
        let p = store.model_pointer(&acme()).await.unwrap().unwrap();
        assert_eq!(
            (p.version.as_str(), p.object_key.as_str()),
            (serving.as_str(), serving_key.as_str())
        );
        let d = scorer
            .score(&principal, &request(&format!("tx-{name}")), None, &Origin::now("test"))
            .await
            .unwrap();
        assert_eq!(d.record.model.version, serving);
        assert_eq!(d.record.score, baseline.record.score);
        // Nor can a rejected version be activated later.
        assert!(matches!(
            store.activate_model(&acme(), version, moved_to).await,
            Err(StoreError::NotFound(_))
        ));
    }
    assert_eq!(
        store.model(&acme(), &serving).await.unwrap().unwrap().status,
        ModelStatus::Active
    );
    assert_eq!(
        env.keys("models/rejected/").await.len(),
        5,
        "four uploads and the mismatching manifest"
    );
    assert_eq!(env.keys("models/incoming/").await, ["models/incoming/acme/good.txt"]);
    assert_eq!(env.keys("models/active/").await, std::slice::from_ref(&serving_key));
    assert_eq!(store.models(&acme()).await.unwrap().len(), 5);

    // Keys that are not uploads this function imports are skipped, never a panic.
    for key in [
        "models/incoming/ac#me/x.txt",
        "models/incoming/acme",
        "models/incoming/acme/",
        "models/active/acme/x.vmodel",
        "",
    ] {
        let r = env.deliver(key, "0123", 10).await;
        assert!(matches!(r.outcome, ImportOutcome::Skipped { .. }), "{key}: {r:?}");
    }
    // An object that is gone before its event is handled.
    let r = env.deliver("models/incoming/acme/vanished.txt", "0123", 10).await;
    assert!(matches!(&r.outcome, ImportOutcome::Skipped { reason } if reason.contains("no longer exists")));
}

#[tokio::test]
async fn the_same_object_or_bytes_delivered_twice_is_processed_once() {
    let env = Env::new().await;
    let (st, store) = (&env.st, &env.st.store);
    let lgb = fixture("lightgbm_model.txt");
    let key = "models/incoming/acme/a.txt";
    let (etag, size) = env.put(key, &lgb, &[("name", "cand")]).await;
    let first = env.deliver(key, &etag, size).await;
    let (version, status, _, _) = accepted(&first);
    assert_eq!(status, ModelStatus::Candidate);
    let registered = store.model(&acme(), version).await.unwrap().unwrap();
    assert_eq!(registered.status, ModelStatus::Candidate);
    assert_eq!(
        store.model_pointer(&acme()).await.unwrap(),
        None,
        "a candidate is not activated"
    );

    st.calls.take();
    let again = env.deliver(key, &etag, size).await;
    assert!(again.duplicate);
    assert_eq!(again.outcome, first.outcome);
    assert_eq!(
        st.calls.take(),
        ["GetItem"],
        "a redelivery reads its job and does nothing else"
    );
    assert_eq!(store.model(&acme(), version).await.unwrap().unwrap(), registered);
    assert_eq!(store.models(&acme()).await.unwrap().len(), 1);
    assert_eq!(env.keys("models/active/").await.len(), 1);

    // The same bytes under another name, even asking for activation: the first outcome stands.
    let other = env
        .upload("models/incoming/acme/b.txt", &lgb, &[("activate", "true")])
        .await;
    assert!(other.duplicate);
    assert_eq!(other.outcome, first.outcome);
    assert_eq!(store.model_pointer(&acme()).await.unwrap(), None);
    assert_eq!(store.models(&acme()).await.unwrap().len(), 1);

    // An activating upload redelivered after an operator switched models does not switch back.
    let tiny = env
        .upload(
            "models/incoming/acme/tiny.vmodel",
            &tiny_artifact(150.0),
            &[("activate", "true")],
        )
        .await;
    let (tiny_version, _, tiny_key, _) = accepted(&tiny);
    let reg = store.model(&acme(), version).await.unwrap().unwrap();
    store.activate_model(&acme(), version, &reg.object_key).await.unwrap();
    let (tiny_etag, tiny_size) = (
        st.s3
            .head_object()
            .bucket(&st.bucket)
            .key("models/incoming/acme/tiny.vmodel")
            .send()
            .await
            .unwrap()
            .e_tag()
            .unwrap()
            .trim_matches('"')
            .to_owned(),
        0,
    );
    let again = env
        .deliver("models/incoming/acme/tiny.vmodel", &tiny_etag, tiny_size)
        .await;
    assert!(again.duplicate);
    let p = store.model_pointer(&acme()).await.unwrap().unwrap();
    assert_eq!(p.version, version, "the operator's choice stands");
    assert_eq!(p.previous_version.as_deref(), Some(tiny_version));
    assert!(tiny_key.ends_with(".vmodel"));

    // A rejected upload delivered twice: the second finds it moved and answers the same.
    let junk_key = "models/incoming/acme/junk.bin";
    let (junk_etag, junk_size) = env.put(junk_key, b"not a model at all", &[]).await;
    let r1 = env.deliver(junk_key, &junk_etag, junk_size).await;
    let (_, code, _, _) = rejected(&r1);
    assert_eq!(code, "unknown_format");
    let r2 = env.deliver(junk_key, &junk_etag, junk_size).await;
    assert!(r2.duplicate);
    assert_eq!(r2.outcome, r1.outcome);
    assert_eq!(env.keys("models/rejected/").await, ["models/rejected/acme/junk.bin"]);
    assert_eq!(store.models(&acme()).await.unwrap().len(), 3);

    // The event files stay valid for `cargo lambda invoke --data-file`.
    for name in ["model-upload.json", "labels-upload.json", "batch-upload.json"] {
        let raw = std::fs::read(repo_root().join("events/s3").join(name)).unwrap();
        let e: S3Event = serde_json::from_slice(&raw).unwrap();
        assert_eq!(e.records.len(), 1, "{name}");
    }
}
