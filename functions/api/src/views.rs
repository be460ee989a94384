//! Response bodies, shaped exactly as `openapi.yaml`'s schemas.

use serde::Serialize;
use std::collections::BTreeMap;
use verdict::domain::decision::{DecisionInputs, DecisionRecord, FeatureValues, ReasonRecord};
use verdict::domain::labels::StoredLabel;
use verdict::domain::model::{Model, ModelSource};
use verdict::domain::registry::{ModelStatus, RegistryEntry};
use verdict::domain::rules::RulesApplied;
use verdict::domain::Timestamp;

/// `ModelRef`: the contract's model id equals its version.
#[derive(Debug, Serialize)]
pub struct ModelRefView<'a> {
    pub id: &'a str,
    pub version: &'a str,
}

/// `Decision` (the POST answer). `request_id` and `processing_ms` are those of the request that
/// made the decision, also on a replay; `null` only for decisions stored before they were kept.
#[derive(Debug, Serialize)]
pub struct DecisionView<'a> {
    pub id: &'a str,
    pub decision: &'static str,
    pub score: f64,
    pub risk_score: u8,
    pub reasons: &'a [ReasonRecord],
    pub model: ModelRefView<'a>,
    pub policy_version: Option<&'a str>,
    pub rules: Option<&'a RulesApplied>,
    pub features: &'a FeatureValues,
    pub processing_ms: Option<f64>,
    pub request_id: Option<&'a str>,
    pub created_at: &'a Timestamp,
    pub idempotent_replay: bool,
}

impl<'a> DecisionView<'a> {
    pub fn new(r: &'a DecisionRecord, replay: bool) -> Self {
        DecisionView {
            id: r.id.as_str(),
            decision: r.decision.as_str(),
            score: r.score,
            risk_score: r.risk_score,
            reasons: &r.reasons,
            model: ModelRefView {
                id: &r.model.version,
                version: &r.model.version,
            },
            policy_version: r.policy_version.as_deref(),
            rules: r.rules.as_ref(),
            features: &r.features,
            processing_ms: r.processing_ms,
            request_id: r.request_id.as_deref(),
            created_at: &r.created_at,
            idempotent_replay: replay,
        }
    }
}

/// `Label`.
#[derive(Debug, Serialize)]
pub struct LabelView<'a> {
    pub value: &'static str,
    pub source: &'a str,
    pub labelled_at: String,
    /// The API's note, when one was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'a str>,
    /// `api:<key id>` for a label from the API, else the label file's `s3://…` address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'a str>,
}

impl<'a> LabelView<'a> {
    pub fn new(l: &'a StoredLabel) -> Self {
        LabelView {
            value: l.value.as_str(),
            source: &l.source,
            labelled_at: l.labelled_at.to_rfc3339(),
            note: l.note.as_deref(),
            origin: l.file.as_deref(),
        }
    }
}

/// `StoredDecision`: the audit trail, with the label once a labels upload set one.
#[derive(Debug, Serialize)]
pub struct StoredDecisionView<'a> {
    #[serde(flatten)]
    pub decision: DecisionView<'a>,
    pub inputs: &'a DecisionInputs,
    pub label: Option<LabelView<'a>>,
}

impl<'a> StoredDecisionView<'a> {
    pub fn new(r: &'a DecisionRecord) -> Self {
        StoredDecisionView {
            decision: DecisionView::new(r, false),
            inputs: &r.inputs,
            label: r.label.as_ref().map(LabelView::new),
        }
    }
}
#[derive(Debug, Serialize)]
pub struct PageView<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// `Model`: a registry entry.
#[derive(Debug, Serialize)]
pub struct ModelView {
    pub id: String,
    pub version: String,
    pub name: String,
    pub sha256: String,
    pub source: &'static str,
    pub status: ModelStatus,
    pub metrics: BTreeMap<String, f64>,
    pub uploaded_at: String,
    pub uploaded_by: String,
    pub trees: u64,
    pub reject_reason: Option<String>,
}

impl ModelView {
    /// A registered model, with the status it has under the pointer.
    pub fn registered(entry: &RegistryEntry, status: ModelStatus) -> Self {
        let m = &entry.model;
        let source = if m.source.contains("lightgbm") {
            "lightgbm"
        } else if m.source.contains("xgboost") {
            "xgboost"
        } else {
            "verdict"
        };
        ModelView {
            id: m.version.clone(),
            version: m.version.clone(),
            name: m.name.clone(),
            sha256: m.sha256.clone(),
            source,
            status,
            metrics: m.metrics.clone(),
            uploaded_at: m.uploaded_at.to_rfc3339(),
            uploaded_by: m.uploaded_by.clone(),
            trees: m.trees.into(),
            reject_reason: entry.reject_reason.clone(),
        }
    }

    /// A loaded model that is not in the registry (the function's fallback, or a pointer whose
    /// registry entry is missing): what the artifact itself says.
    pub fn loaded(m: &Model, uploaded_by: &str) -> Self {
        ModelView {
            id: m.version().to_owned(),
            version: m.version().to_owned(),
            name: m.artifact.name.clone(),
            sha256: m.sha256.clone(),
            source: match m.artifact.source {
                ModelSource::Verdict => "verdict",
                ModelSource::Lightgbm => "lightgbm",
                ModelSource::Xgboost => "xgboost",
            },
            status: ModelStatus::Active,
            metrics: m.artifact.metrics.clone(),
            uploaded_at: m.artifact.created_at.clone(),
            uploaded_by: uploaded_by.to_owned(),
            trees: m.tree_count() as u64,
            reject_reason: None,
        }
    }
}

/// `ActiveModel`.
#[derive(Debug, Serialize)]
pub struct ActiveModelView {
    pub model: ModelView,
    pub activated_at: String,
    pub previous_version: Option<String>,
}
