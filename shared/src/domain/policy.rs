//! The policy: what turns a scored transaction into approve, review or block.
//!
//! It is the one seam between the model and the decision. It sees the whole request (optional
//! fields and metadata included), the features and the score, and answers an [`Outcome`]: the
//! decision, the reasons it adds, and the version of the policy that decided, which every decision
//! record keeps. Today a policy is a tenant's score thresholds; rules and lists plug in here, so the
//! API, batch scoring and `verdict score` apply them alike.

use crate::domain::decision::{Decision, ReasonRecord, RequestExtras};
use crate::domain::features::FeatureVector;
use crate::domain::{DomainError, Transaction};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Per-tenant score thresholds: below `review` approve, from `block` up block, review between.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub review: f64,
    pub block: f64,
}

impl Default for Thresholds {
    /// Scores are calibrated probabilities: review from 30%, block from 80%.
    fn default() -> Self {
        Thresholds {
            review: 0.3,
            block: 0.8,
        }
    }
}

impl Thresholds {
    pub fn new(review: f64, block: f64) -> Result<Self, DomainError> {
        if !(0.0..=1.0).contains(&review) || !(0.0..=1.0).contains(&block) || review > block {
            return Err(DomainError::new(
                "thresholds",
                format!("need 0 <= review ({review}) <= block ({block}) <= 1"),
            ));
        }
        Ok(Thresholds { review, block })
    }

    pub fn decide(&self, score: f64) -> Decision {
        if score >= self.block {
            Decision::Block
        } else if score >= self.review {
            Decision::Review
        } else {
            Decision::Approve
        }
    }
}

/// What the policy sees of one transaction.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub transaction: &'a Transaction,
    pub extras: &'a RequestExtras,
    pub features: &'a FeatureVector,
    /// The model's probability of fraud.
    pub score: f64,
    pub model_version: &'a str,
}

/// What the policy decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub decision: Decision,
    /// Reasons the policy itself adds (rule hits), before the model's.
    pub reasons: Vec<ReasonRecord>,
}

/// A tenant's policy, at one version. Built from the tenant's configuration for each decision
/// (the version is one short string), so nothing cached can outlive a configuration change.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    thresholds: Thresholds,
    version: Cow<'static, str>,
}

/// The default thresholds' version, spelled as [`Policy::thresholds`] spells any other.
const DEFAULT_VERSION: &str = "thresholds:review=0.3,block=0.8";

impl Default for Policy {
    fn default() -> Self {
        Policy::thresholds(Thresholds::default())
    }
}

impl Policy {
    /// The thresholds alone: the default policy.
    pub fn thresholds(thresholds: Thresholds) -> Policy {
        // Most tenants keep the defaults: their version is not formatted per decision.
        let version = if thresholds == Thresholds::default() {
            Cow::Borrowed(DEFAULT_VERSION)
        } else {
            Cow::Owned(Self::spell(thresholds))
        };
        Policy { version, thresholds }
    }

    fn spell(t: Thresholds) -> String {
        format!("thresholds:review={},block={}", t.review, t.block)
    }

    /// Names exactly what decided: two decisions with the same policy version and the same score
    /// got the same outcome.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn score_thresholds(&self) -> Thresholds {
        self.thresholds
    }

    pub fn evaluate(&self, input: &Input<'_>) -> Outcome {
        Outcome {
            decision: self.thresholds.decide(input.score),
            reasons: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_split_the_score_range() {
        let t = Thresholds::default();
        assert_eq!(t.decide(0.29), Decision::Approve);
        assert_eq!(t.decide(0.3), Decision::Review);
        assert_eq!(t.decide(0.8), Decision::Block);
        assert!(Thresholds::new(0.9, 0.5).is_err());
    }

    #[test]
    fn the_version_names_the_thresholds() {
        assert_eq!(Policy::default().version(), "thresholds:review=0.3,block=0.8");
        assert_eq!(Policy::spell(Thresholds::default()), DEFAULT_VERSION);
        let p = Policy::thresholds(Thresholds::new(0.25, 0.9).unwrap());
        assert_eq!(p.version(), "thresholds:review=0.25,block=0.9");
        assert_ne!(p.version(), Policy::default().version());
    }
}
