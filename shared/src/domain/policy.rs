//! The policy: what turns a scored transaction into approve, review or block.
//!
//! It is the one seam between the model and the decision. It sees the whole request (optional
//! fields and metadata included), the features and the score, and answers an [`Outcome`]: the
//! decision, the reasons it adds, and the version of the policy that decided, which every decision
//! record keeps. A policy is a tenant's score thresholds and, when the tenant has an active
//! ruleset, that ruleset compiled with the lists it reads: the API, batch scoring and
//! `verdict score` apply them alike. The order rules and thresholds decide in is
//! [`crate::domain::rules::engine`]'s.

use crate::domain::decision::{Decision, ReasonRecord, RequestExtras};
use crate::domain::features::FeatureVector;
use crate::domain::rules::engine::CompiledRuleset;
use crate::domain::rules::lists::ListLookup;
use crate::domain::rules::RulesApplied;
use crate::domain::{DomainError, Transaction};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

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
    /// The ruleset's version and hits, when a ruleset decided.
    pub rules: Option<RulesApplied>,
}

/// A tenant's policy, at one version. Built from the tenant's configuration for each decision
/// (the version is one short string; a compiled ruleset and the lists are shared `Arc`s), so
/// nothing cached can outlive a configuration change.
#[derive(Clone)]
pub struct Policy {
    thresholds: Thresholds,
    version: Cow<'static, str>,
    rules: Option<Rules>,
}

/// A ruleset and the lists it looks values up in.
#[derive(Clone)]
struct Rules {
    ruleset: Arc<CompiledRuleset>,
    lists: Arc<dyn ListLookup>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("version", &self.version).finish()
    }
}

/// Policies are equal when their versions are: the version names what decides (the lists'
/// contents aside, which change in place and are audited).
impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
    }
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
        Policy {
            version,
            thresholds,
            rules: None,
        }
    }

    /// The thresholds and an active ruleset, whose `in_list` lookups go to `lists`. Its version
    /// names both: `thresholds:review=0.3,block=0.8;ruleset:3`.
    pub fn with_rules(thresholds: Thresholds, ruleset: Arc<CompiledRuleset>, lists: Arc<dyn ListLookup>) -> Policy {
        Policy {
            version: Cow::Owned(Self::version_of(thresholds, Some(ruleset.version()))),
            thresholds,
            rules: Some(Rules { ruleset, lists }),
        }
    }

    /// The thresholds alone, standing in for active ruleset `version`, which cannot be used
    /// (stored data gone odd). Its version says so: `thresholds:…;ruleset:3(unusable)`.
    pub fn without_unusable_ruleset(thresholds: Thresholds, version: u32) -> Policy {
        Policy {
            version: Cow::Owned(format!("{};ruleset:{version}(unusable)", Self::spell(thresholds))),
            thresholds,
            rules: None,
        }
    }

    /// The active ruleset, if any.
    pub fn ruleset(&self) -> Option<&Arc<CompiledRuleset>> {
        self.rules.as_ref().map(|r| &r.ruleset)
    }

    fn spell(t: Thresholds) -> String {
        format!("thresholds:review={},block={}", t.review, t.block)
    }

    /// The version a policy of these thresholds and this ruleset has, without building it.
    pub fn version_of(thresholds: Thresholds, ruleset: Option<u32>) -> String {
        match ruleset {
            Some(v) => format!("{};ruleset:{v}", Self::spell(thresholds)),
            None => Self::spell(thresholds),
        }
    }

    /// Names what decided: the thresholds and the ruleset version. Without a ruleset, the same
    /// version and score give the same outcome; with one, rules also read the transaction and the
    /// lists, whose entries change in place (audited) under the same version.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn score_thresholds(&self) -> Thresholds {
        self.thresholds
    }

    pub fn evaluate(&self, input: &Input<'_>) -> Outcome {
        let Some(rules) = &self.rules else {
            return Outcome {
                decision: self.thresholds.decide(input.score),
                reasons: Vec::new(),
                rules: None,
            };
        };
        let verdict = rules.ruleset.evaluate(input, self.thresholds, rules.lists.as_ref());
        Outcome {
            decision: verdict.decision,
            reasons: verdict.reasons.into_iter().map(ReasonRecord::Rule).collect(),
            rules: Some(RulesApplied {
                ruleset_version: rules.ruleset.version(),
                hits: verdict.hits,
            }),
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

    use crate::domain::decision::RuleReason;
    use crate::domain::rules::lists::{ListIndex, NoLists};
    use crate::domain::rules::{
        HitStatus, ListKind, MatchMode, Rule, RuleAction, RuleMode, RuleSpec, Ruleset, RulesetStatus,
    };
    use crate::domain::{Currency, CustomerId, ListName, Money, RuleId, TerminalId, Timestamp, TransactionId};
    use std::collections::HashMap;

    fn ruleset(expression: &str) -> Arc<CompiledRuleset> {
        let at = Timestamp::parse("t", "2026-01-01T00:00:00Z").unwrap();
        let rs = Ruleset {
            version: 3,
            status: RulesetStatus::Published,
            mode: MatchMode::FirstMatched,
            description: String::new(),
            rules: vec![Rule {
                spec: RuleSpec {
                    id: RuleId::parse("big").unwrap(),
                    name: "Big".into(),
                    description: "over 100 EUR".into(),
                    expression: expression.into(),
                    action: RuleAction::Block,
                    priority: 0,
                    mode: RuleMode::Active,
                },
                version: 4,
                created_by: "k".into(),
                created_at: at,
            }],
            created_by: "k".into(),
            created_at: at,
            published_by: None,
            published_at: None,
        };
        Arc::new(CompiledRuleset::compile(&rs).unwrap())
    }

    fn transaction() -> Transaction {
        Transaction {
            id: TransactionId::parse("tx-1").unwrap(),
            occurred_at: Timestamp::parse("t", "2026-02-01T10:00:00Z").unwrap(),
            amount: Money::new(12_345, Currency::EUR).unwrap(),
            customer_id: CustomerId::parse("c-1").unwrap(),
            terminal_id: TerminalId::parse("t-1").unwrap(),
        }
    }

    #[test]
    fn a_policy_with_rules_names_the_ruleset_and_lets_it_decide() {
        let p = Policy::with_rules(Thresholds::default(), ruleset("tx.amount > 10000"), Arc::new(NoLists));
        assert_eq!(p.version(), "thresholds:review=0.3,block=0.8;ruleset:3");
        assert_ne!(p, Policy::default());
        assert_eq!(p.ruleset().map(|r| r.version()), Some(3));
        let (tx, extras, features) = (transaction(), RequestExtras::NONE, FeatureVector::default());
        let input = Input {
            transaction: &tx,
            extras: &extras,
            features: &features,
            score: 0.01,
            model_version: "m",
        };
        let o = p.evaluate(&input);
        assert_eq!(o.decision, Decision::Block, "the rule blocks what the model approves");
        assert_eq!(
            o.reasons,
            [ReasonRecord::Rule(RuleReason {
                rule_id: "big".into(),
                rule_version: 4,
                action: "block".into(),
                text: "Big: over 100 EUR".into()
            })]
        );
        let rules = o.rules.unwrap();
        assert_eq!((rules.ruleset_version, rules.hits.len()), (3, 1));
        assert_eq!(rules.hits[0].status, HitStatus::Matched);
        // The thresholds alone: no rules part.
        assert_eq!(Policy::default().evaluate(&input).rules, None);
    }

    #[test]
    fn a_policy_looks_lists_up_in_the_lists_it_carries() {
        let name = ListName::parse("vips").unwrap();
        let entry = crate::domain::rules::ListEntry {
            value: "c-1".into(),
            expires_at: None,
            note: None,
            added_by: "k".into(),
            added_at: Timestamp::parse("t", "2026-01-01T00:00:00Z").unwrap(),
        };
        let mut lists: HashMap<ListName, Arc<ListIndex>> = HashMap::new();
        lists.insert(name, Arc::new(ListIndex::build(ListKind::CustomerId, &[entry])));
        let rules = ruleset("in_list(tx.customer_id, 'vips')");
        let (tx, extras, features) = (transaction(), RequestExtras::NONE, FeatureVector::default());
        let input = Input {
            transaction: &tx,
            extras: &extras,
            features: &features,
            score: 0.01,
            model_version: "m",
        };
        let with = Policy::with_rules(Thresholds::default(), Arc::clone(&rules), Arc::new(lists));
        assert_eq!(with.evaluate(&input).decision, Decision::Block);
        let without = Policy::with_rules(Thresholds::default(), rules, Arc::new(NoLists));
        let o = without.evaluate(&input);
        assert_eq!(
            o.decision,
            Decision::Approve,
            "an unloaded list is an error hit, not a match"
        );
        assert_eq!(o.rules.unwrap().hits[0].status, HitStatus::Error);
    }
}
