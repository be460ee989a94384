//! The one decision pipeline, used by the API, batch scoring and `verdict score`: the model's score
//! and reasons from the features, then the policy. Features come from the one
//! [`crate::domain::features::compute`], online from stored aggregates or offline from a file's
//! own history.

use crate::domain::decision::{Decision, ReasonRecord, RequestExtras};
use crate::domain::features::FeatureVector;
use crate::domain::model::Model;
use crate::domain::policy::{Input, Policy};
use crate::domain::Transaction;

/// Model reasons kept with every decision.
pub const REASONS_PER_DECISION: usize = 3;

/// What the pipeline decided about one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub decision: Decision,
    /// The model's probability of fraud.
    pub score: f64,
    /// The policy's reasons (rule hits) first, then the model's largest contributions.
    pub reasons: Vec<ReasonRecord>,
}

pub fn decide(
    model: &Model,
    policy: &Policy,
    transaction: &Transaction,
    extras: &RequestExtras,
    features: &FeatureVector,
) -> Decided {
    let s = model.score(features);
    let outcome = policy.evaluate(&Input {
        transaction,
        extras,
        features,
        score: s.probability,
        model_version: model.version(),
    });
    let model_reasons = model.reasons(features, &s, REASONS_PER_DECISION);
    let mut reasons = outcome.reasons;
    reasons.reserve(model_reasons.len());
    reasons.extend(model_reasons.iter().map(ReasonRecord::from));
    Decided {
        decision: outcome.decision,
        score: s.probability,
        reasons,
    }
}
