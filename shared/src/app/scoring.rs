//! The decision service: one transaction in, one stored decision out.
//!
//! Reads everything in one round trip, computes features, score, reasons and the decision, then
//! writes decision and aggregate deltas in one atomic transaction. Retries and races resolve to the
//! first stored decision.

use crate::domain::auth::{AuthError, KeyHash, Principal};
use crate::domain::decision::{features_map, risk_score, DecisionRecord, ModelRef, ReasonRecord, ScoreRequest};
use crate::domain::features::{self, transaction_delta};
use crate::domain::model::{Model, ModelError};
use crate::domain::Timestamp;
use crate::ports::{
    ActiveModel, CommitOutcome, DecisionCommit, DecisionStore, IdempotencyKey, ModelBlobs, ScoringSnapshot, StoreError,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub const REASONS_PER_DECISION: usize = 3;

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

/// Loaded models by version. A container keeps the few it has served.
#[derive(Default)]
pub struct ModelCache {
    by_version: RwLock<HashMap<String, Arc<Model>>>,
}

impl ModelCache {
    pub fn get(&self, version: &str) -> Option<Arc<Model>> {
        self.by_version.read().ok()?.get(version).cloned()
    }

    pub fn insert(&self, model: Arc<Model>) {
        if let Ok(mut m) = self.by_version.write() {
            if m.len() >= 4 {
                m.clear();
            }
            m.insert(model.version().to_owned(), model);
        }
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
    /// Serves tenants with no activation pointer (e.g. a model bundled with the function).
    pub fallback: Option<Arc<Model>>,
}

impl<S: DecisionStore, B: ModelBlobs> Scorer<S, B> {
    pub fn new(store: S, blobs: B, fallback: Option<Arc<Model>>) -> Self {
        Scorer {
            store,
            blobs,
            models: ModelCache::default(),
            fallback,
        }
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
        self.models.insert(model.clone());
        Ok(model)
    }

    pub async fn score(
        &self,
        principal: &Principal,
        key: &KeyHash,
        request: &ScoreRequest,
        idempotency_key: Option<&IdempotencyKey>,
        origin: &Origin<'_>,
    ) -> Result<Scored, ScoreError> {
        let tenant = &principal.tenant;
        let tx = request.inputs.transaction();
        let fingerprint = request.fingerprint();
        let snap = self.store.load_for_scoring(tenant, key, &tx, idempotency_key).await?;
        match &snap.key {
            Some(k) if k.tenant == *tenant => {
                k.authenticate(crate::domain::auth::now_epoch())?;
            }
            _ => return Err(AuthError::Invalid.into()),
        }
        if let Some(replay) = replay_of(&snap, &fingerprint, request)? {
            return Ok(replay);
        }

        let model = self.model_for(snap.active_model.as_ref()).await?;
        let mut record = decide(&model, request, &snap, fingerprint.clone());
        record.request_id = Some(origin.request_id.to_owned());
        record.processing_ms = Some((origin.started.elapsed().as_secs_f64() * 1e6).round() / 1e3);
        let commit = DecisionCommit {
            record: &record,
            transaction: &tx,
            idempotency_key,
            delta: transaction_delta(&tx),
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

/// The pure part: features, score, reasons and decision from what was read.
pub fn decide(model: &Model, request: &ScoreRequest, snap: &ScoringSnapshot, fingerprint: String) -> DecisionRecord {
    let tx = request.inputs.transaction();
    let x = features::compute(&tx, &snap.customer, &snap.terminal);
    let s = model.score(&x);
    let thresholds = snap.thresholds.unwrap_or_default();
    let reasons = model.reasons(&x, &s, REASONS_PER_DECISION);
    DecisionRecord {
        id: tx.id.clone(),
        decision: thresholds.decide(s.probability),
        score: s.probability,
        risk_score: risk_score(s.probability),
        reasons: reasons.iter().map(ReasonRecord::from).collect(),
        model: ModelRef {
            id: model.artifact.name.clone(),
            version: model.version().to_owned(),
        },
        features: features_map(&x),
        inputs: serde_json::to_value(request).unwrap_or_default(),
        request_fingerprint: fingerprint,
        created_at: Timestamp::now(),
        occurred_at: tx.occurred_at,
        customer_id: tx.customer_id.clone(),
        request_id: None,
        processing_ms: None,
        label: None,
    }
}
