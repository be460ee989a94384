//! Driving `functions/api`'s real handler with the `events/api/*.json` payloads, against the
//! local stack: a trained model uploaded and activated per tenant, keys stored by hash.

use crate::{repo_root, Stack};
use lambda_http::http::HeaderMap;
use lambda_http::request::LambdaRequest;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use verdict::adapters::{DynamoStore, S3Blobs};
use verdict::domain::auth::{ApiKey, KeyRecord, Scope};
use verdict::domain::features::OfflineFeatures;
use verdict::domain::model::train::{train, TrainParams};
use verdict::domain::model::Model;
use verdict::domain::registry::{ModelRegistration, ModelStatus};
use verdict::domain::{TenantId, Timestamp};
use verdict::offline::sim::{simulate, SimConfig};

pub type TestApp = ::api::App<DynamoStore, S3Blobs>;

/// The bearer token the sample events carry in place of a real key.
pub const PLACEHOLDER_AUTH: &str = "Bearer vk_test_REPLACE_ME";
pub const ALL_SCOPES: &str =
    "transactions:write,transactions:read,models:read,models:write,rules:read,rules:write,lists:write,labels:write,reviews:read,reviews:write";

/// Every route that needs a credential (a sample event of events/api/), with the scope it needs.
pub const AUTHENTICATED: [(&str, &str); 34] = [
    ("post-transaction", "transactions:write"),
    ("get-transaction", "transactions:read"),
    ("label-transaction", "labels:write"),
    ("list-transactions", "transactions:read"),
    ("get-active-model", "models:read"),
    ("list-models", "models:read"),
    ("get-model", "models:read"),
    ("activate-model", "models:write"),
    ("rollback-model", "models:write"),
    ("validate-rule", "rules:read"),
    ("save-rule", "rules:write"),
    ("list-rules", "rules:read"),
    ("get-rule", "rules:read"),
    ("create-ruleset", "rules:write"),
    ("list-rulesets", "rules:read"),
    ("get-active-ruleset", "rules:read"),
    ("rollback-ruleset", "rules:write"),
    ("get-ruleset", "rules:read"),
    ("publish-ruleset", "rules:write"),
    ("activate-ruleset", "rules:write"),
    ("backtest-ruleset", "rules:read"),
    ("get-backtest", "rules:read"),
    ("create-list", "lists:write"),
    ("list-lists", "rules:read"),
    ("get-list", "rules:read"),
    ("list-entries", "rules:read"),
    ("add-entries", "lists:write"),
    ("remove-entries", "lists:write"),
    ("list-audit", "rules:read"),
    ("list-reviews", "reviews:read"),
    ("get-review", "reviews:read"),
    ("claim-review", "reviews:write"),
    ("release-review", "reviews:write"),
    ("resolve-review", "reviews:write"),
];

/// A small real model: a month of a small simulated population, 40 shallow trees. Trained once
/// per test binary (about a second).
pub fn trained_model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let cfg = SimConfig {
            customers: 400,
            terminals: 800,
            days: 45,
            seed: 7,
            ..SimConfig::default()
        };
        let rows = simulate(&cfg, &mut |_, _| {}).expect("simulate");
        let mut offline = OfflineFeatures::new();
        let (mut x, mut y) = (Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len()));
        for r in &rows {
            x.push(offline.push(&r.tx, r.label));
            y.push(r.label.is_some_and(|l| l.fraud));
        }
        let params = TrainParams {
            trees: 40,
            learning_rate: 0.2,
            ..TrainParams::default()
        };
        let artifact = train("api-test-gbdt", &x, &y, &params, BTreeMap::new()).expect("train");
        Model::seal(artifact).expect("the trained artifact loads")
    })
}

/// This test process's cursor secret, as `VERDICT_CURSOR_KEY` would hold it: random per run,
/// shared by every [`ApiStack`] (and the watch-served api) of the run, as by the containers of
/// one deployment.
pub fn cursor_secret() -> &'static str {
    static SECRET: OnceLock<String> = OnceLock::new();
    SECRET.get_or_init(|| {
        let bytes: [u8; 32] = rand::random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// An app over `stack` as `main` builds it: the run's cursor key.
pub fn app_over(stack: &Stack) -> TestApp {
    ::api::App::new(stack.store.clone(), stack.blobs.clone(), None)
        .with_cursor_key(::api::CursorCodec::from_secret(cursor_secret()).expect("a 64-character secret"))
}

/// The stack plus the real app over its adapters.
pub struct ApiStack {
    pub stack: Stack,
    pub app: TestApp,
}

impl ApiStack {
    pub async fn new() -> ApiStack {
        let stack = Stack::new().await;
        let app = app_over(&stack);
        ApiStack { stack, app }
    }

    /// Uploads the trained model for `tenant`, registers and activates it (as model-import would).
    pub async fn activate_model(&self, tenant: &TenantId) -> String {
        let model = trained_model();
        let object_key = format!("models/active/{}/{}.vmodel", tenant.as_str(), model.version());
        self.stack
            .blobs
            .put(&object_key, model.artifact.to_bytes())
            .await
            .expect("upload model");
        let registration = ModelRegistration {
            version: model.version().to_owned(),
            name: model.artifact.name.clone(),
            sha256: model.sha256.clone(),
            object_key: object_key.clone(),
            source: "verdict".into(),
            status: ModelStatus::Candidate,
            metrics: BTreeMap::from([("auc".into(), 0.9)]),
            uploaded_at: Timestamp::parse("t", "2018-08-07T16:20:31Z").unwrap(),
            uploaded_by: "api-tests".into(),
            trees: model.tree_count() as u32,
        };
        self.stack
            .store
            .register_model(tenant, &registration)
            .await
            .expect("register");
        self.stack
            .store
            .activate_model(tenant, model.version(), &object_key)
            .await
            .expect("activate");
        model.version().to_owned()
    }

    /// Stores a key for `tenant` and returns it (shown once, as `verdict keys create` does).
    pub async fn key(&self, tenant: &TenantId, scopes: &str, expires_at: Option<i64>) -> ApiKey {
        let key = ApiKey::generate();
        let record = KeyRecord {
            key_id: key.key_id(),
            tenant: tenant.clone(),
            scopes: Scope::parse_list(scopes).expect("scopes"),
            created_at: verdict::domain::auth::now_epoch(),
            expires_at,
            revoked_at: None,
        };
        self.stack.store.put_key(&key.hash(), &record).await.expect("put key");
        key
    }

    /// A tenant with an active model and a key with every scope.
    pub async fn tenant(&self, name: &str) -> (TenantId, ApiKey) {
        let tenant = TenantId::parse(name).unwrap();
        self.activate_model(&tenant).await;
        let key = self
            .key(&tenant, ALL_SCOPES, Some(verdict::domain::auth::now_epoch() + 3600))
            .await;
        (tenant, key)
    }

    pub async fn send(&self, event: &Event) -> Reply {
        send(&self.app, event).await
    }
}

/// A sample API Gateway v2 event from `events/api/`, edited for one test.
#[derive(Debug, Clone)]
pub struct Event(pub Value);

impl Event {
    /// `events/api/<name>.json`.
    pub fn load(name: &str) -> Event {
        let path = repo_root().join("events/api").join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Event(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }

    fn headers(&mut self) -> &mut serde_json::Map<String, Value> {
        self.0["headers"].as_object_mut().expect("the event has headers")
    }

    /// Replaces the placeholder token with a real key.
    pub fn bearer(self, key: &ApiKey) -> Event {
        self.authorization(&format!("Bearer {}", key.expose()))
    }

    pub fn authorization(self, value: &str) -> Event {
        self.header("authorization", value)
    }

    pub fn header(mut self, name: &str, value: &str) -> Event {
        self.headers().insert(name.to_ascii_lowercase(), json!(value));
        self
    }

    pub fn without_header(mut self, name: &str) -> Event {
        self.headers().remove(&name.to_ascii_lowercase());
        self
    }

    /// A raw body (content-length follows it).
    pub fn body(mut self, body: &str) -> Event {
        let len = body.len().to_string();
        self.0["body"] = json!(body);
        self.0["isBase64Encoded"] = json!(false);
        self.header("content-length", &len)
    }

    pub fn json(self, body: &Value) -> Event {
        self.body(&body.to_string())
    }

    /// The sample body as JSON, to edit.
    pub fn body_json(&self) -> Value {
        serde_json::from_str(self.0["body"].as_str().expect("the event has a body")).expect("the body is JSON")
    }

    pub fn method(mut self, method: &str) -> Event {
        self.0["requestContext"]["http"]["method"] = json!(method);
        self
    }

    pub fn path(mut self, path: &str) -> Event {
        self.0["rawPath"] = json!(path);
        self.0["requestContext"]["http"]["path"] = json!(path);
        if let Some(o) = self.0.as_object_mut() {
            o.remove("pathParameters");
        }
        self
    }

    /// Sets `rawQueryString`; `queryStringParameters` is dropped, as the handler reads the raw one.
    pub fn query(mut self, query: &str) -> Event {
        self.0["rawQueryString"] = json!(query);
        if let Some(o) = self.0.as_object_mut() {
            o.remove("queryStringParameters");
        }
        self
    }

    pub fn request_id(mut self, id: &str) -> Event {
        self.0["requestContext"]["requestId"] = json!(id);
        self
    }

    /// The `lambda_http::Request` the runtime would hand the function for this payload.
    pub fn request(&self) -> lambda_http::Request {
        let event: LambdaRequest = serde_json::from_value(self.0.clone()).expect("an API Gateway v2 event");
        lambda_http::Request::from(event)
    }
}

/// A response, with its body parsed.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem of the contract's `type` (the part after `/problems/`).
    #[track_caller]
    pub fn assert_problem(&self, status: u16, kind: &str) -> &Reply {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"));
        assert_eq!(
            self.body["type"],
            format!("https://verdict.dev/problems/{kind}"),
            "{}",
            self.body
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(self.body["detail"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(self.body["instance"].as_str().is_some_and(|t| t.starts_with('/')));
        assert_eq!(self.body["request_id"].as_str(), self.header("x-request-id"));
        self
    }

    /// The `errors[].field` of a validation problem.
    pub fn fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Runs the real handler. Every response must name its request and none may be a 5xx.
pub async fn send(app: &TestApp, event: &Event) -> Reply {
    let response = ::api::handle(app, event.request()).await;
    let (parts, body) = response.into_parts();
    let body: Value = serde_json::from_slice(body.as_ref()).unwrap_or_else(|e| {
        panic!(
            "{} body is not JSON ({e}): {:?}",
            parts.status,
            String::from_utf8_lossy(body.as_ref())
        )
    });
    assert!(parts.status.as_u16() < 500, "{} is a 5xx: {body}", event.0["rawPath"]);
    assert!(parts.headers.contains_key("x-request-id"), "no X-Request-Id");
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}
