//! Handler overhead without I/O: `cargo bench -p api --bench handler`.
//!
//! One POST /v1/transactions from events/api/post-transaction.json, end to end through the real
//! `api::handle` — event parsing, auth, body parsing, features, 300-tree score, reasons, decision,
//! response JSON — over a store that answers at once from memory, so what is timed is everything
//! except the DynamoDB round trips. Twice: with the thresholds alone, and with the 50-rule
//! benchmark ruleset (3 `in_list` lookups on 100,000-entry lists) active. Prints p50/p99 over
//! 50,000 requests each, then criterion's timings.

use criterion::{criterion_group, criterion_main, Criterion};
use lambda_http::request::LambdaRequest;
use lambda_http::Body;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use verdict::domain::auth::{ApiKey, KeyHash, KeyRecord, Scope};
use verdict::domain::decision::{DecisionRecord, IdempotencyKey};
use verdict::domain::features::{EntityAggregate, OfflineFeatures};
use verdict::domain::model::train::{train, TrainParams};
use verdict::domain::model::Model;
use verdict::domain::registry::{ModelPointer, RegistryEntry};
use verdict::domain::review::{Resolution, Review, ReviewSort, ReviewStatus};
use verdict::domain::rules::{AuditEntry, ListEntry, ListMeta, Rule, Ruleset, RulesetPointer};
use verdict::domain::{CustomerId, TenantId, Transaction, TransactionId};
use verdict::domain::{ListName, RuleId, Timestamp};
use verdict::offline::sim::{simulate, SimConfig};
use verdict::ports::in_memory::{InMemoryDecisions, InMemoryLabels};
use verdict::ports::registry::{ExpectedPointer, ModelRegistry};
use verdict::ports::reviews::{ReviewChange, ReviewStore};
use verdict::ports::rules::{
    ListChange, ListContents, RulesAdmin, RulesPointers, RulesRead, TenantPolicy, TenantPolicyRead,
};
use verdict::ports::*;

/// Answers every read from memory and accepts every write: no I/O. Rules and lists come from
/// the in-memory fake, whose pointers every snapshot carries.
struct MemoryStore {
    key: KeyRecord,
    customer: EntityAggregate,
    terminal: EntityAggregate,
    rules: InMemoryDecisions,
    labels: InMemoryLabels,
    pointers: RulesPointers,
}

impl verdict::ports::oidc::IssuerStore for MemoryStore {
    async fn issuer(&self, _: &str) -> Result<Option<verdict::domain::oidc::IssuerConfig>, StoreError> {
        Ok(None)
    }
}

impl DecisionStore for MemoryStore {
    async fn key(&self, _: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        Ok(Some(self.key.clone()))
    }
    async fn load_for_scoring(
        &self,
        _: &TenantId,
        _: Option<&KeyHash>,
        _: &Transaction,
        _: Option<&IdempotencyKey>,
    ) -> Result<ScoringSnapshot, StoreError> {
        Ok(ScoringSnapshot {
            key: Some(self.key.clone()),
            customer: self.customer.clone(),
            terminal: self.terminal.clone(),
            rules: self.pointers.clone(),
            ..ScoringSnapshot::default()
        })
    }
    async fn commit(&self, _: &TenantId, _: &DecisionCommit<'_>) -> Result<CommitOutcome, StoreError> {
        Ok(CommitOutcome::Committed)
    }
    async fn decision(&self, _: &TenantId, _: &TransactionId) -> Result<Option<DecisionRecord>, StoreError> {
        Ok(None)
    }
    async fn decisions_for_customer(
        &self,
        _: &TenantId,
        _: &CustomerId,
        _: usize,
        _: Option<&str>,
    ) -> Result<Page<DecisionRecord>, StoreError> {
        Ok(Page {
            items: vec![],
            next_cursor: None,
        })
    }
    async fn active_model(&self, _: &TenantId) -> Result<Option<ActiveModel>, StoreError> {
        Ok(None)
    }
}

impl ModelRegistry for MemoryStore {
    async fn model_pointer(&self, _: &TenantId) -> Result<Option<ModelPointer>, StoreError> {
        Ok(None)
    }
    async fn registry_entry(&self, _: &TenantId, _: &str) -> Result<Option<RegistryEntry>, StoreError> {
        Ok(None)
    }
    async fn registry_page(&self, _: &TenantId, _: usize, _: Option<&str>) -> Result<Page<RegistryEntry>, StoreError> {
        Ok(Page {
            items: vec![],
            next_cursor: None,
        })
    }
    async fn activate(
        &self,
        _: &TenantId,
        version: &str,
        _: &str,
        _: ExpectedPointer<'_>,
    ) -> Result<ModelPointer, StoreError> {
        Err(StoreError::NotFound(version.to_owned()))
    }
}

impl DecisionWindow for MemoryStore {
    async fn decisions_between(
        &self,
        _: &TenantId,
        _: Timestamp,
        _: Timestamp,
        _: usize,
        _: Option<&str>,
    ) -> Result<Page<DecisionRecord>, StoreError> {
        Ok(Page {
            items: vec![],
            next_cursor: None,
        })
    }
}

/// Labels and reviews are not benchmarked: they delegate to the fakes.
impl verdict::ports::labels::LabelStore for MemoryStore {
    async fn label_targets(
        &self,
        t: &TenantId,
        ids: &[TransactionId],
    ) -> Result<std::collections::HashMap<TransactionId, verdict::ports::labels::LabelTarget>, StoreError> {
        self.labels.label_targets(t, ids).await
    }
    async fn newest_days(
        &self,
        t: &TenantId,
        c: &[CustomerId],
        m: &[verdict::domain::TerminalId],
    ) -> Result<verdict::ports::labels::NewestDays, StoreError> {
        self.labels.newest_days(t, c, m).await
    }
    async fn write_label(
        &self,
        t: &TenantId,
        id: &TransactionId,
        w: &verdict::ports::labels::LabelWrite<'_>,
    ) -> Result<verdict::ports::labels::LabelWriteOutcome, StoreError> {
        self.labels.write_label(t, id, w).await
    }
}

impl ReviewStore for MemoryStore {
    async fn review(&self, t: &TenantId, id: &TransactionId) -> Result<Option<Review>, StoreError> {
        self.rules.review(t, id).await
    }
    async fn reviews(
        &self,
        t: &TenantId,
        s: ReviewStatus,
        o: ReviewSort,
        l: usize,
        c: Option<&str>,
    ) -> Result<Page<Review>, StoreError> {
        self.rules.reviews(t, s, o, l, c).await
    }
    async fn claim(
        &self,
        t: &TenantId,
        id: &TransactionId,
        h: &str,
        now: Timestamp,
        until: i64,
    ) -> Result<ReviewChange, StoreError> {
        self.rules.claim(t, id, h, now, until).await
    }
    async fn release(
        &self,
        t: &TenantId,
        id: &TransactionId,
        h: &str,
        now: Timestamp,
    ) -> Result<ReviewChange, StoreError> {
        self.rules.release(t, id, h, now).await
    }
    async fn begin_resolve(
        &self,
        t: &TenantId,
        id: &TransactionId,
        h: &str,
        now: Timestamp,
        r: &Resolution,
    ) -> Result<ReviewChange, StoreError> {
        self.rules.begin_resolve(t, id, h, now, r).await
    }
    async fn finish_resolve(
        &self,
        t: &TenantId,
        id: &TransactionId,
        r: &Resolution,
    ) -> Result<ReviewChange, StoreError> {
        self.rules.finish_resolve(t, id, r).await
    }
}

impl TenantPolicyRead for MemoryStore {
    async fn tenant_policy(&self, t: &TenantId) -> Result<TenantPolicy, StoreError> {
        self.rules.tenant_policy(t).await
    }
}

impl RulesRead for MemoryStore {
    async fn ruleset(&self, t: &TenantId, v: u32) -> Result<Option<Ruleset>, StoreError> {
        self.rules.ruleset(t, v).await
    }
    async fn list_contents(&self, t: &TenantId, n: &ListName) -> Result<Option<ListContents>, StoreError> {
        self.rules.list_contents(t, n).await
    }
}

/// Only what scoring reads is served; the admin routes are not benchmarked.
impl RulesAdmin for MemoryStore {
    async fn put_rule(&self, t: &TenantId, r: &Rule, a: &AuditEntry) -> Result<(), StoreError> {
        self.rules.put_rule(t, r, a).await
    }
    async fn rule(&self, t: &TenantId, id: &RuleId, v: Option<u32>) -> Result<Option<Rule>, StoreError> {
        self.rules.rule(t, id, v).await
    }
    async fn rules(&self, t: &TenantId, l: usize, c: Option<&str>) -> Result<Page<Rule>, StoreError> {
        self.rules.rules(t, l, c).await
    }
    async fn put_ruleset(&self, t: &TenantId, r: &Ruleset, a: &AuditEntry) -> Result<(), StoreError> {
        self.rules.put_ruleset(t, r, a).await
    }
    async fn latest_ruleset_version(&self, t: &TenantId) -> Result<Option<u32>, StoreError> {
        self.rules.latest_ruleset_version(t).await
    }
    async fn rulesets(&self, t: &TenantId, l: usize, c: Option<&str>) -> Result<Page<Ruleset>, StoreError> {
        self.rules.rulesets(t, l, c).await
    }
    async fn publish_ruleset(&self, t: &TenantId, v: u32, a: &AuditEntry) -> Result<Ruleset, StoreError> {
        self.rules.publish_ruleset(t, v, a).await
    }
    async fn ruleset_pointer(&self, t: &TenantId) -> Result<Option<RulesetPointer>, StoreError> {
        self.rules.ruleset_pointer(t).await
    }
    async fn move_ruleset_pointer(
        &self,
        t: &TenantId,
        e: Option<u32>,
        to: &RulesetPointer,
        a: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.rules.move_ruleset_pointer(t, e, to, a).await
    }
    async fn create_list(&self, t: &TenantId, m: &ListMeta, a: &AuditEntry) -> Result<(), StoreError> {
        self.rules.create_list(t, m, a).await
    }
    async fn list_meta(&self, t: &TenantId, n: &ListName) -> Result<Option<ListMeta>, StoreError> {
        self.rules.list_meta(t, n).await
    }
    async fn lists(&self, t: &TenantId) -> Result<Vec<ListMeta>, StoreError> {
        self.rules.lists(t).await
    }
    async fn add_list_entries(
        &self,
        t: &TenantId,
        n: &ListName,
        e: &[ListEntry],
        a: &AuditEntry,
    ) -> Result<ListChange, StoreError> {
        self.rules.add_list_entries(t, n, e, a).await
    }
    async fn remove_list_entries(
        &self,
        t: &TenantId,
        n: &ListName,
        v: &[String],
        a: &AuditEntry,
    ) -> Result<ListChange, StoreError> {
        self.rules.remove_list_entries(t, n, v, a).await
    }
    async fn list_entry(&self, t: &TenantId, n: &ListName, v: &str) -> Result<Option<ListEntry>, StoreError> {
        self.rules.list_entry(t, n, v).await
    }
    async fn list_entries(
        &self,
        t: &TenantId,
        n: &ListName,
        l: usize,
        c: Option<&str>,
    ) -> Result<Page<ListEntry>, StoreError> {
        self.rules.list_entries(t, n, l, c).await
    }
    async fn audit(&self, t: &TenantId, l: usize, c: Option<&str>) -> Result<Page<AuditEntry>, StoreError> {
        self.rules.audit(t, l, c).await
    }
}

struct NoBlobs;
impl ModelBlobs for NoBlobs {
    async fn fetch(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        Err(StoreError::NotFound(key.to_owned()))
    }
}

fn model(trees: usize) -> Model {
    let cfg = SimConfig {
        customers: 1000,
        terminals: 2000,
        days: 60,
        ..SimConfig::default()
    };
    let rows = simulate(&cfg, &mut |_, _| {}).unwrap();
    let mut off = OfflineFeatures::new();
    let x: Vec<_> = rows.iter().map(|r| off.push(&r.tx, r.label)).collect();
    let y: Vec<_> = rows.iter().map(|r| r.label.is_some_and(|l| l.fraud)).collect();
    let params = TrainParams {
        trees,
        max_depth: 5,
        ..TrainParams::default()
    };
    Model::seal(train("bench", &x, &y, &params, BTreeMap::new()).unwrap()).unwrap()
}

fn benches(c: &mut Criterion) {
    let key = ApiKey::generate();
    let tenant = TenantId::parse("acme").unwrap();
    let record = KeyRecord {
        key_id: key.key_id(),
        tenant,
        scopes: Scope::ALL.into_iter().collect(),
        created_at: 0,
        expires_at: None,
        revoked_at: None,
    };
    let event_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/api/post-transaction.json");
    let mut event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(event_path).unwrap()).unwrap();
    event["headers"]["authorization"] = format!("Bearer {}", key.expose()).into();
    let event = serde_json::to_vec(&event).unwrap();
    // A busy customer and terminal: every day of every window populated.
    let body: serde_json::Value = {
        let req: LambdaRequest = serde_json::from_slice(&event).unwrap();
        let req = lambda_http::Request::from(req);
        serde_json::from_slice(req.body().as_ref()).unwrap()
    };
    let day = verdict::domain::Timestamp::parse("occurred_at", body["occurred_at"].as_str().unwrap())
        .unwrap()
        .epoch_day();
    let (mut customer, mut terminal) = (EntityAggregate::default(), EntityAggregate::default());
    for d in day - 40..=day {
        customer.record_transaction(d, 5_000);
        for _ in 0..3 {
            terminal.record_transaction(d, 4_000);
        }
        if d % 5 == 0 {
            terminal.record_fraud(d);
        }
    }
    let model = Arc::new(model(300));
    let plain = MemoryStore {
        key: record.clone(),
        customer: customer.clone(),
        terminal: terminal.clone(),
        rules: InMemoryDecisions::default(),
        labels: InMemoryLabels::default(),
        pointers: RulesPointers::default(),
    };
    let ruled = with_ruleset(MemoryStore {
        key: record,
        customer,
        terminal,
        rules: InMemoryDecisions::default(),
        labels: InMemoryLabels::default(),
        pointers: RulesPointers::default(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, store) in [
        ("thresholds only", plain),
        ("50 rules, 3 list lookups on 100k-entry lists", ruled),
    ] {
        let app = api::App::new(store, NoBlobs, Some(model.clone()));
        let one = || {
            let req: LambdaRequest = serde_json::from_slice(&event).unwrap();
            let resp = rt.block_on(api::handle(&app, lambda_http::Request::from(req)));
            assert!(resp.status().is_success(), "{:?}", resp.body());
            match resp.body() {
                Body::Text(t) => t.len(),
                Body::Binary(b) => b.len(),
                Body::Empty => 0,
                _ => 0,
            }
        };
        const N: usize = 50_000;
        for _ in 0..2_000 {
            one();
        }
        let mut ns: Vec<u64> = (0..N)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(one());
                t.elapsed().as_nanos() as u64
            })
            .collect();
        ns.sort_unstable();
        let p = |q: f64| ns[((N - 1) as f64 * q) as usize] as f64 / 1000.0;
        println!(
            "handler POST /v1/transactions without I/O (300 trees, {name}): p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs over {N} requests",
            p(0.5),
            p(0.99),
            p(0.999)
        );
        let id = if name.starts_with("thresholds") {
            "thresholds"
        } else {
            "50_rules"
        };
        c.bench_function(&format!("handler/post_transaction/no_io/300_trees/{id}"), |b| {
            b.iter(one)
        });
    }
}

/// The benchmark ruleset and its three 100,000-entry lists stored and active, as the API would
/// leave them; the first request compiles and indexes them (warm-up), the rest hit the cache.
fn with_ruleset(mut store: MemoryStore) -> MemoryStore {
    use verdict::domain::rules::bench_fixture;
    use verdict::ports::in_memory::block_on;
    let tenant = store.key.tenant.clone();
    let at = Timestamp::now();
    let audit = AuditEntry {
        at,
        actor: "bench".into(),
        action: "bench".into(),
        target: String::new(),
        detail: String::new(),
    };
    let rules = &store.rules;
    for (name, kind, entries) in bench_fixture::list_entries() {
        let meta = ListMeta {
            name: name.clone(),
            kind,
            description: String::new(),
            version: 0,
            entries: 0,
            created_by: "bench".into(),
            created_at: at,
            updated_at: at,
        };
        block_on(rules.create_list(&tenant, &meta, &audit)).unwrap();
        for chunk in entries.chunks(1_000) {
            block_on(rules.add_list_entries(&tenant, &name, chunk, &audit)).unwrap();
        }
    }
    let ruleset = bench_fixture::ruleset();
    block_on(rules.put_ruleset(&tenant, &ruleset, &audit)).unwrap();
    let pointer = RulesetPointer {
        version: ruleset.version,
        previous_version: None,
        activated_by: "bench".into(),
        activated_at: at,
    };
    block_on(rules.move_ruleset_pointer(&tenant, None, &pointer, &audit)).unwrap();
    store.pointers = block_on(rules.tenant_policy(&tenant)).unwrap().rules;
    assert_eq!(store.pointers.active_ruleset, Some(ruleset.version));
    store
}

criterion_group!(handler, benches);
criterion_main!(handler);
