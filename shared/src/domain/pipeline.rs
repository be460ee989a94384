//! The one decision pipeline, used by the API, batch scoring and `verdict score`: the model's score
//! and reasons from the features, then the policy. Features come from the one
//! [`crate::domain::features::compute`], online from stored aggregates or offline from a file's
//! own history.

use crate::domain::decision::{Decision, ReasonRecord, RequestExtras};
use crate::domain::features::FeatureVector;
use crate::domain::model::Model;
use crate::domain::policy::{Input, Policy};
use crate::domain::rules::RulesApplied;
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
    /// The ruleset's version and hits, when the policy has a ruleset.
    pub rules: Option<RulesApplied>,
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
        rules: outcome.rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decision::ReasonRecord;
    use crate::domain::policy::Thresholds;
    use crate::domain::rules::engine::CompiledRuleset;
    use crate::domain::rules::lists::NoLists;
    use crate::domain::rules::{MatchMode, Rule, RuleAction, RuleMode, RuleSpec, Ruleset, RulesetStatus};
    use crate::domain::{Currency, CustomerId, Money, RuleId, TerminalId, Timestamp, TransactionId};
    use std::sync::Arc;

    #[test]
    fn the_policys_rule_reasons_and_hits_come_through_first() {
        let model = Model::seal(crate::domain::model::stump_artifact(100.0, -2.0, -0.5, 4.0)).unwrap();
        let at = Timestamp::parse("t", "2026-01-01T00:00:00Z").unwrap();
        let rs = Ruleset {
            version: 5,
            status: RulesetStatus::Published,
            mode: MatchMode::AllMatched,
            description: String::new(),
            rules: vec![Rule {
                spec: RuleSpec {
                    id: RuleId::parse("eur").unwrap(),
                    name: "Euro".into(),
                    description: String::new(),
                    expression: "tx.currency == 'EUR'".into(),
                    action: RuleAction::Review,
                    priority: 0,
                    mode: RuleMode::Active,
                },
                version: 1,
                created_by: "k".into(),
                created_at: at,
            }],
            created_by: "k".into(),
            created_at: at,
            published_by: None,
            published_at: None,
        };
        let policy = Policy::with_rules(
            Thresholds::new(0.99, 0.999).unwrap(),
            Arc::new(CompiledRuleset::compile(&rs).unwrap()),
            Arc::new(NoLists),
        );
        let tx = Transaction {
            id: TransactionId::parse("tx-1").unwrap(),
            occurred_at: at,
            amount: Money::new(500, Currency::EUR).unwrap(),
            customer_id: CustomerId::parse("c-1").unwrap(),
            terminal_id: TerminalId::parse("t-1").unwrap(),
        };
        let d = decide(&model, &policy, &tx, &RequestExtras::NONE, &FeatureVector::default());
        assert_eq!(d.decision, Decision::Review);
        assert!(matches!(&d.reasons[0], ReasonRecord::Rule(r) if r.rule_id == "eur"));
        assert!(d.reasons[1..].iter().all(|r| matches!(r, ReasonRecord::Model(_))));
        let rules = d.rules.unwrap();
        assert_eq!((rules.ruleset_version, rules.hits.len()), (5, 1));
        let plain = decide(
            &model,
            &Policy::default(),
            &tx,
            &RequestExtras::NONE,
            &FeatureVector::default(),
        );
        assert_eq!(plain.rules, None);
    }
}
