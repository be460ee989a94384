//! The decision service: one transaction in, one stored decision out.
//!
//! Reads everything in one round trip, computes features, score, reasons and the decision, then
//! writes decision and aggregate deltas in one atomic transaction. Retries and races resolve to the
//! first stored decision.

use crate::app::policy_cache::{PolicyCache, RulesUnavailable, TenantRules};
use crate::domain::auth::{AuthError, Principal};
use crate::domain::decision::{
    features_map, risk_score, DecisionInputs, DecisionRecord, IdempotencyKey, ModelRef, ScoreRequest,
};
use crate::domain::features::{self, transaction_delta};
use crate::domain::model::{Model, ModelError};
use crate::domain::pipeline;
use crate::domain::policy::{Policy, Thresholds};
use crate::domain::{TenantId, Timestamp};
use crate::ports::rules::RulesRead;
use crate::ports::{
    ActiveModel, CommitOutcome, DecisionCommit, DecisionStore, ModelBlobs, ScoringSnapshot, StoreError,
};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("transaction {id} was already submitted with a different body")]
    Conflict { id: String },
    #[error("no model is active for this tenant; upload one and activate it")]
    NoModel,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("active model {version} cannot be loaded: {source}")]
    Model { version: String, source: ModelError },
}

/// A decision and whether it was replayed from an earlier request.
#[derive(Debug, Clone)]
pub struct Scored {
    pub record: DecisionRecord,
    pub replay: bool,
}

/// The model cache's budget when nothing else says: a quarter of a 256 MB function.
pub const DEFAULT_MODEL_CACHE_BYTES: usize = 64 << 20;

/// Loaded models by version, least recently used evicted first, bounded by the bytes of their
/// artifacts (an artifact's length is close to what the loaded model holds). A model larger than
/// the whole budget is still cached, alone: serving it must not mean fetching it per request.
/// Entries are few (a container serves a handful of tenants), so every call is a scan.
pub struct ModelCache {
    budget: usize,
    inner: Mutex<CacheEntries>,
}

#[derive(Default)]
struct CacheEntries {
    entries: Vec<CacheEntry>,
    /// Bumped on every use; an entry's `used` is its last bump.
    clock: u64,
}

struct CacheEntry {
    model: Arc<Model>,
    bytes: usize,
    used: u64,
}

impl Default for ModelCache {
    fn default() -> Self {
        ModelCache::with_budget(DEFAULT_MODEL_CACHE_BYTES)
    }
}

impl ModelCache {
    pub fn with_budget(budget_bytes: usize) -> Self {
        ModelCache {
            budget: budget_bytes,
            inner: Mutex::new(CacheEntries::default()),
        }
    }

    /// The budget for a function: `override_mb` (MiB) when given, else a quarter of its memory
    /// (`memory_mb`, as `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` gives it), else
    /// [`DEFAULT_MODEL_CACHE_BYTES`]. An override that is not a whole number is an error.
    pub fn budget_for(memory_mb: Option<&str>, override_mb: Option<&str>) -> Result<usize, String> {
        const MIB: usize = 1 << 20;
        if let Some(raw) = override_mb.map(str::trim).filter(|r| !r.is_empty()) {
            return raw
                .parse::<usize>()
                .ok()
                .and_then(|mb| mb.checked_mul(MIB))
                .ok_or_else(|| format!("{raw:?} is not a whole number of MiB"));
        }
        Ok(memory_mb
            .and_then(|m| m.trim().parse::<usize>().ok())
            .and_then(|mb| mb.checked_mul(MIB / 4))
            .unwrap_or(DEFAULT_MODEL_CACHE_BYTES))
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The model of `version`, now the most recently used.
    pub fn get(&self, version: &str) -> Option<Arc<Model>> {
        // A panic elsewhere while holding the lock leaves consistent entries: go on with them.
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.clock += 1;
        let now = c.clock;
        let e = c.entries.iter_mut().find(|e| e.model.version() == version)?;
        e.used = now;
        Some(e.model.clone())
    }

    /// Caches `model`, whose artifact is `bytes` long, evicting the least recently used others
    /// until the rest fits the budget.
    pub fn insert(&self, model: Arc<Model>, bytes: usize) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.clock += 1;
        let used = c.clock;
        c.entries.retain(|e| e.model.version() != model.version());
        let mut total = c.entries.iter().map(|e| e.bytes).fold(bytes, usize::saturating_add);
        while total > self.budget {
            let Some(oldest) = c.entries.iter().enumerate().min_by_key(|(_, e)| e.used).map(|(i, _)| i) else {
                break;
            };
            total -= c.entries.swap_remove(oldest).bytes;
        }
        c.entries.push(CacheEntry { model, bytes, used });
    }

    /// Versions cached, most recently used first.
    pub fn versions(&self) -> Vec<String> {
        let Ok(c) = self.inner.lock() else { return Vec::new() };
        let mut v: Vec<_> = c
            .entries
            .iter()
            .map(|e| (e.used, e.model.version().to_owned()))
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.0));
        v.into_iter().map(|(_, version)| version).collect()
    }

    /// Artifact bytes cached.
    pub fn bytes(&self) -> usize {
        self.inner
            .lock()
            .map(|c| c.entries.iter().map(|e| e.bytes).sum())
            .unwrap_or(0)
    }
}

/// Which request a decision is made for, and when the function started on it.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub request_id: &'a str,
    pub started: std::time::Instant,
}

impl<'a> Origin<'a> {
    /// Starting now.
    pub fn now(request_id: &'a str) -> Self {
        Origin {
            request_id,
            started: std::time::Instant::now(),
        }
    }
}

pub struct Scorer<S, B> {
    pub store: S,
    pub blobs: B,
    pub models: ModelCache,
    /// Compiled rulesets and list indexes, by version.
    pub policies: PolicyCache,
    /// Serves tenants with no activation pointer (e.g. a model bundled with the function).
    pub fallback: Option<Arc<Model>>,
}

impl<S: DecisionStore + RulesRead, B: ModelBlobs> Scorer<S, B> {
    pub fn new(store: S, blobs: B, fallback: Option<Arc<Model>>) -> Self {
        Scorer {
            store,
            blobs,
            models: ModelCache::default(),
            policies: PolicyCache::default(),
            fallback,
        }
    }

    /// The tenant's policy for a decision on `snap`: cached rulesets and lists, read only when
    /// the snapshot names versions this container has not seen.
    pub async fn policy(&self, tenant: &TenantId, snap: &ScoringSnapshot) -> Result<Policy, StoreError> {
        let rules = self.policies.rules(&self.store, tenant, &snap.rules).await;
        policy_of(snap.thresholds.unwrap_or_default(), rules, tenant)
    }

    /// The model the pointer names, loading and verifying it on first use.
    pub async fn model_for(&self, active: Option<&ActiveModel>) -> Result<Arc<Model>, ScoreError> {
        let Some(active) = active else {
            return self.fallback.clone().ok_or(ScoreError::NoModel);
        };
        if let Some(m) = self.models.get(&active.version) {
            return Ok(m);
        }
        let bytes = self.blobs.fetch(&active.object_key).await?;
        let model = Model::from_bytes(&active.object_key, &bytes).map_err(|source| ScoreError::Model {
            version: active.version.clone(),
            source,
        })?;
        let model = Arc::new(model);
        self.models.insert(model.clone(), bytes.len());
        Ok(model)
    }

    pub async fn score(
        &self,
        principal: &Principal,
        request: &ScoreRequest,
        idempotency_key: Option<&IdempotencyKey>,
        origin: &Origin<'_>,
    ) -> Result<Scored, ScoreError> {
        let tenant = &principal.tenant;
        let tx = request.inputs.transaction();
        let fingerprint = request.fingerprint();
        let key = principal.api_key.as_ref();
        let snap = self.store.load_for_scoring(tenant, key, &tx, idempotency_key).await?;
        // An API key is re-read in the same batch, so a revocation stops it at once. A token
        // has no item: it was verified at the edge and lives minutes (domain::oidc).
        if let Some(hash) = key {
            match &snap.key {
                Some(k) if k.tenant == *tenant => {
                    k.authenticate(hash, crate::domain::auth::now_epoch())?;
                }
                _ => return Err(AuthError::Invalid.into()),
            }
        }
        if let Some(replay) = replay_of(&snap, &fingerprint, request)? {
            return Ok(replay);
        }

        let model = self.model_for(snap.active_model.as_ref()).await?;
        let policy = self.policy(tenant, &snap).await?;
        let mut record = decide(&model, &policy, request, &snap, fingerprint.clone());
        record.request_id = Some(origin.request_id.to_owned());
        record.processing_ms = Some((origin.started.elapsed().as_secs_f64() * 1e6).round() / 1e3);
        let commit = DecisionCommit {
            record: &record,
            transaction: &tx,
            idempotency_key,
            delta: transaction_delta(&tx),
            aggregates: &snap.aggregate_write,
        };
        match self.store.commit(tenant, &commit).await? {
            CommitOutcome::Committed => Ok(Scored { record, replay: false }),
            CommitOutcome::AlreadyDecided => {
                // Lost a race: the winner's decision stands, if it was for the same body.
                let existing = self.store.decision(tenant, &tx.id).await?;
                match existing {
                    Some(d) if d.request_fingerprint == fingerprint => Ok(Scored {
                        record: d,
                        replay: true,
                    }),
                    _ => Err(ScoreError::Conflict { id: tx.id.to_string() }),
                }
            }
        }
    }
}

fn replay_of(snap: &ScoringSnapshot, fingerprint: &str, request: &ScoreRequest) -> Result<Option<Scored>, ScoreError> {
    let conflict = || ScoreError::Conflict {
        id: request.inputs.id.to_string(),
    };
    if let Some(idem) = &snap.idempotency {
        if idem.fingerprint != fingerprint {
            return Err(conflict());
        }
    }
    match &snap.existing {
        Some(d) if d.request_fingerprint == fingerprint => Ok(Some(Scored {
            record: d.clone(),
            replay: true,
        })),
        Some(_) => Err(conflict()),
        None => Ok(None),
    }
}

/// The policy of a tenant: its thresholds (else the default ones) and, when it has an active
/// ruleset, that ruleset with its lists. A ruleset that cannot be used (stored data gone odd) is
/// logged and the thresholds decide alone, so it never fails every decision of the tenant; the
/// decision's policy version names it as unusable.
pub fn policy_of(
    thresholds: Thresholds,
    rules: Result<Option<TenantRules>, RulesUnavailable>,
    tenant: &TenantId,
) -> Result<Policy, StoreError> {
    match rules {
        Ok(None) => Ok(Policy::thresholds(thresholds)),
        Ok(Some(r)) => Ok(Policy::with_rules(thresholds, r.ruleset, Arc::new(r.lists))),
        Err(RulesUnavailable::Store(e)) => Err(e),
        Err(e @ RulesUnavailable::Unusable { version, .. }) => {
            tracing::error!(tenant = %tenant, error = %e, "the active ruleset cannot be used: the thresholds decide alone");
            Ok(Policy::without_unusable_ruleset(thresholds, version))
        }
    }
}

/// The pure part: features from what was read, then the one decision pipeline, as a record.
pub fn decide(
    model: &Model,
    policy: &Policy,
    request: &ScoreRequest,
    snap: &ScoringSnapshot,
    fingerprint: String,
) -> DecisionRecord {
    let tx = request.transaction();
    let x = features::compute(&tx, &snap.customer, &snap.terminal);
    let d = pipeline::decide(model, policy, &tx, &request.extras, &x);
    DecisionRecord {
        id: tx.id,
        decision: d.decision,
        score: d.score,
        risk_score: risk_score(d.score),
        reasons: d.reasons,
        model: ModelRef {
            id: model.artifact.name.clone(),
            version: model.version().to_owned(),
        },
        policy_version: Some(policy.version().to_owned()),
        rules: d.rules,
        features: features_map(&x),
        inputs: DecisionInputs::Request(Box::new(request.clone())),
        request_fingerprint: fingerprint,
        created_at: Timestamp::now(),
        occurred_at: tx.occurred_at,
        customer_id: tx.customer_id,
        request_id: None,
        processing_ms: None,
        label: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::auth::KeyHash;
    use crate::domain::auth::{ApiKey, KeyRecord, Scope};
    use crate::domain::decision::Decision;
    use crate::domain::model::stump_artifact;
    use crate::domain::policy::Thresholds;
    use crate::domain::{CustomerId, TenantId, TerminalId};
    use crate::ports::in_memory::{block_on as run, InMemoryBlobs, InMemoryDecisions};

    struct Fixture {
        scorer: Scorer<InMemoryDecisions, InMemoryBlobs>,
        principal: Principal,
        key: KeyHash,
        tenant: TenantId,
    }

    /// A stump: amounts above 100.00 score about 0.95, others about 0.05.
    fn stump() -> Model {
        Model::seal(stump_artifact(100.0, 0.0, -3.0, 3.0)).unwrap()
    }

    /// Distinct models (distinct versions) for the cache tests.
    fn models(n: usize) -> Vec<Arc<Model>> {
        (0..n)
            .map(|i| {
                let mut a = stump_artifact(100.0, 0.0, -3.0, 3.0);
                a.name = format!("m{i}");
                Arc::new(Model::seal(a).unwrap())
            })
            .collect()
    }

    fn version(m: &Arc<Model>) -> String {
        m.version().to_owned()
    }

    #[test]
    fn more_than_four_models_under_the_budget_all_stay_cached() {
        let cache = ModelCache::with_budget(10_000);
        let ms = models(8);
        for m in &ms {
            cache.insert(m.clone(), 1_000);
        }
        for m in &ms {
            assert!(cache.get(m.version()).is_some(), "{} evicted", m.version());
        }
        assert_eq!(cache.bytes(), 8_000);
    }

    #[test]
    fn over_the_budget_the_least_recently_used_goes_not_the_oldest_inserted() {
        let cache = ModelCache::with_budget(3_000);
        let ms = models(4);
        for m in &ms[..3] {
            cache.insert(m.clone(), 1_000);
        }
        // The first inserted is used again: the second is now the least recently used.
        assert!(cache.get(ms[0].version()).is_some());
        cache.insert(ms[3].clone(), 1_000);
        assert!(cache.get(ms[1].version()).is_none(), "least recently used is evicted");
        assert_eq!(cache.versions(), [version(&ms[3]), version(&ms[0]), version(&ms[2])]);
        // A bigger one evicts as many as it needs, oldest use first.
        cache.get(ms[2].version());
        let big = models(5).pop().unwrap();
        cache.insert(big.clone(), 2_000);
        assert_eq!(cache.versions(), [version(&big), version(&ms[2])]);
        assert!(cache.bytes() <= 3_000);
    }

    #[test]
    fn a_model_larger_than_the_budget_is_cached_alone() {
        let cache = ModelCache::with_budget(3_000);
        let ms = models(3);
        cache.insert(ms[0].clone(), 1_000);
        cache.insert(ms[1].clone(), 5_000);
        assert_eq!(cache.versions(), [version(&ms[1])]);
        assert!(cache.get(ms[1].version()).is_some(), "served from the cache");
        // The next one that fits pushes it out.
        cache.insert(ms[2].clone(), 1_000);
        assert_eq!(cache.versions(), [version(&ms[2])]);
        // Inserting a cached version again replaces it and counts it once.
        cache.insert(ms[2].clone(), 1_000);
        assert_eq!(cache.bytes(), 1_000);
    }

    #[test]
    fn the_budget_is_the_override_else_a_quarter_of_the_function_memory() {
        assert_eq!(ModelCache::budget_for(Some("256"), None), Ok(64 << 20));
        assert_eq!(ModelCache::budget_for(Some("1024"), Some(" 100 ")), Ok(100 << 20));
        assert_eq!(ModelCache::budget_for(None, None), Ok(DEFAULT_MODEL_CACHE_BYTES));
        assert_eq!(
            ModelCache::budget_for(Some("lots"), Some("")),
            Ok(DEFAULT_MODEL_CACHE_BYTES)
        );
        assert!(ModelCache::budget_for(None, Some("64MB"))
            .unwrap_err()
            .contains("\"64MB\""));
    }

    fn fixture() -> Fixture {
        let tenant = TenantId::parse("acme").unwrap();
        let api_key = ApiKey::generate();
        let rec = KeyRecord {
            key_id: api_key.key_id(),
            tenant: tenant.clone(),
            scopes: [Scope::TransactionsWrite].into(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
        };
        let store = InMemoryDecisions::default();
        store.put_key(&api_key.hash(), rec.clone());
        let principal = rec.authenticate(&api_key.hash(), 1).unwrap();
        Fixture {
            scorer: Scorer::new(store, InMemoryBlobs::default(), Some(Arc::new(stump()))),
            principal,
            key: api_key.hash(),
            tenant,
        }
    }

    fn body(id: &str, amount: i64) -> ScoreRequest {
        let json = format!(
            r#"{{"id":"{id}","occurred_at":"2018-08-08T10:00:00Z","amount":{amount},"currency":"EUR",
               "customer_id":"c-1","terminal_id":"t-1"}}"#
        );
        ScoreRequest::parse_json(json.as_bytes()).unwrap()
    }

    impl Fixture {
        fn score(&self, r: &ScoreRequest, idem: Option<&IdempotencyKey>) -> Result<Scored, ScoreError> {
            run(self.scorer.score(&self.principal, r, idem, &Origin::now("req-1")))
        }

        fn customer_count(&self) -> u64 {
            let agg = self
                .scorer
                .store
                .customer_aggregate(&self.tenant, &CustomerId::parse("c-1").unwrap());
            agg.days().iter().map(|(_, c)| c.count).sum()
        }
    }

    #[test]
    fn a_decision_is_committed_once_and_a_retry_replays_it() {
        let f = fixture();
        let first = f.score(&body("tx-1", 50_000), None).unwrap();
        assert!(!first.replay);
        assert_eq!(first.record.decision, Decision::Block);
        assert_eq!(
            first.record.policy_version.as_deref(),
            Some("thresholds:review=0.3,block=0.8")
        );
        assert_eq!(first.record.request_id.as_deref(), Some("req-1"));
        assert_eq!(f.customer_count(), 1);

        let again = f.score(&body("tx-1", 50_000), None).unwrap();
        assert!(again.replay);
        assert_eq!(again.record, first.record, "the stored decision, unchanged");
        assert_eq!(f.customer_count(), 1, "a replay never counts twice");
        assert_eq!(f.scorer.store.decision_count(), 1);
    }

    #[test]
    fn the_same_id_or_idempotency_key_with_another_body_is_a_conflict() {
        let f = fixture();
        f.score(&body("tx-1", 1_000), None).unwrap();
        assert!(matches!(
            f.score(&body("tx-1", 1_001), None),
            Err(ScoreError::Conflict { id }) if id == "tx-1"
        ));
        let k = IdempotencyKey::parse("order-7").unwrap();
        f.score(&body("tx-2", 1_000), Some(&k)).unwrap();
        assert!(matches!(
            f.score(&body("tx-3", 1_000), Some(&k)),
            Err(ScoreError::Conflict { .. })
        ));
        assert_eq!(f.scorer.store.decision_count(), 2, "a conflict writes nothing");
        assert_eq!(f.customer_count(), 2);
    }

    #[test]
    fn a_lost_race_answers_the_winners_decision_or_a_conflict() {
        let f = fixture();
        // Another request for the same body commits between this one's read and its write.
        let winner = decide(
            &stump(),
            &Policy::default(),
            &body("tx-1", 500),
            &ScoringSnapshot::default(),
            body("tx-1", 500).fingerprint(),
        );
        let tx = body("tx-1", 500).transaction();
        f.scorer
            .store
            .commit_first_on_next_commit(&f.tenant, winner.clone(), tx.clone());
        let got = f.score(&body("tx-1", 500), None).unwrap();
        assert!(got.replay);
        assert_eq!(got.record, winner);
        assert_eq!(f.customer_count(), 1, "only the winner counted");

        // The winner had another body: this request must not claim the stored decision.
        let other = decide(
            &stump(),
            &Policy::default(),
            &body("tx-2", 999),
            &ScoringSnapshot::default(),
            body("tx-2", 999).fingerprint(),
        );
        f.scorer
            .store
            .commit_first_on_next_commit(&f.tenant, other, body("tx-2", 999).transaction());
        assert!(matches!(
            f.score(&body("tx-2", 500), None),
            Err(ScoreError::Conflict { .. })
        ));
    }

    #[test]
    fn the_tenants_thresholds_are_its_policy() {
        let f = fixture();
        f.scorer
            .store
            .set_thresholds(&f.tenant, Thresholds::new(0.01, 0.99).unwrap());
        let r = f.score(&body("tx-1", 500), None).unwrap();
        assert_eq!(r.record.decision, Decision::Review, "0.05 is above review 0.01");
        assert_eq!(
            r.record.policy_version.as_deref(),
            Some("thresholds:review=0.01,block=0.99")
        );
    }

    #[test]
    fn a_token_principal_scores_without_any_key_item() {
        let f = fixture();
        let token = Principal {
            key_id: "oidc:alice".into(),
            api_key: None,
            ..f.principal.clone()
        };
        let r = run(f.scorer.score(&token, &body("tx-1", 500), None, &Origin::now("r"))).unwrap();
        assert!(!r.replay);
        assert_eq!(f.scorer.store.decision_count(), 1);
        // The same principal naming a key hash the store does not hold is refused.
        let forged = Principal {
            api_key: Some(KeyHash("f".repeat(64))),
            ..token
        };
        let r = run(f.scorer.score(&forged, &body("tx-2", 500), None, &Origin::now("r")));
        assert!(matches!(r, Err(ScoreError::Auth(_))));
    }

    #[test]
    fn a_key_of_another_tenant_or_revoked_is_refused_before_anything_is_written() {
        let f = fixture();
        let other = Principal {
            tenant: TenantId::parse("globex").unwrap(),
            ..f.principal.clone()
        };
        let r = run(f.scorer.score(&other, &body("tx-1", 500), None, &Origin::now("r")));
        assert!(matches!(r, Err(ScoreError::Auth(_))));
        let mut rec = run(f.scorer.store.key(&f.key)).unwrap().unwrap();
        rec.revoked_at = Some(1);
        f.scorer.store.put_key(&f.key, rec);
        assert!(matches!(f.score(&body("tx-1", 500), None), Err(ScoreError::Auth(_))));
        assert_eq!(f.scorer.store.decision_count(), 0);
        let t = TerminalId::parse("t-1").unwrap();
        assert!(f.scorer.store.terminal_aggregate(&f.tenant, &t).days().is_empty());
    }

    #[test]
    fn an_active_model_is_fetched_once_and_then_served_from_the_cache() {
        let f = fixture();
        let m = stump();
        f.scorer.blobs.put("models/acme/m.vmodel", m.artifact.to_bytes());
        let loaded = Model::from_bytes("m", &m.artifact.to_bytes()).unwrap();
        let active = ActiveModel {
            version: loaded.version().to_owned(),
            object_key: "models/acme/m.vmodel".into(),
        };
        for _ in 0..3 {
            assert_eq!(
                run(f.scorer.model_for(Some(&active))).unwrap().version(),
                loaded.version()
            );
        }
        assert_eq!(f.scorer.blobs.fetches(), 1);
        let missing = ActiveModel {
            version: "0000000000000000".into(),
            object_key: "models/acme/gone.vmodel".into(),
        };
        assert!(matches!(
            run(f.scorer.model_for(Some(&missing))),
            Err(ScoreError::Store(StoreError::NotFound(_)))
        ));
    }
}
