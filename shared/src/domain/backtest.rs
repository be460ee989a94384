//! Backtests: what a draft ruleset would have decided on past decisions, with each decision's
//! inputs, features and score as they were when it was made, beside what the active ruleset
//! decides on the same inputs, joined with labels. Pure: the service feeds it stored decisions
//! (or the CLI a transaction file) and nothing is written anywhere.

use crate::domain::decision::{Decision, DecisionInputs, DecisionRecord, JsonTransaction, RequestExtras, ScoreRequest};
use crate::domain::features::{FeatureVector, FEATURE_NAMES};
use crate::domain::policy::{Input, Thresholds};
use crate::domain::rules::engine::CompiledRuleset;
use crate::domain::rules::lists::ListLookup;
use crate::domain::rules::{HitStatus, MatchMode, RuleAction, RuleMode, Ruleset};
use crate::domain::{RuleId, Transaction};
use serde::Serialize;
use std::collections::BTreeMap;

/// One past decision, as the backtest replays it.
#[derive(Debug, Clone, Copy)]
pub struct Case<'a> {
    pub transaction: &'a Transaction,
    pub extras: &'a RequestExtras,
    pub features: &'a FeatureVector,
    pub score: f64,
    pub model_version: &'a str,
    /// `Some(true)` fraud, `Some(false)` legit, `None` not labelled (yet).
    pub fraud: Option<bool>,
}

/// A stored decision's request and features as they were when it was decided, or why they cannot
/// be replayed (an item written by an older version, or odd).
pub fn replay_inputs(record: &DecisionRecord) -> Result<(ScoreRequest, FeatureVector), String> {
    let request = match &record.inputs {
        DecisionInputs::Request(r) => (**r).clone(),
        DecisionInputs::Stored(v) => {
            let row: JsonTransaction =
                serde_json::from_value(v.clone()).map_err(|e| format!("inputs do not read: {e}"))?;
            row.parse().map_err(|errors| {
                let first = errors
                    .first()
                    .map_or(String::new(), |e| format!("{} {}", e.field, e.message));
                format!("inputs do not parse: {first}")
            })?
        }
    };
    let mut x = FeatureVector::default();
    for (i, name) in FEATURE_NAMES.iter().enumerate() {
        x.0[i] = record
            .features
            .get(name)
            .ok_or_else(|| format!("feature {name} was not stored"))?;
    }
    Ok((request, x))
}

/// What each rule of the draft did, evaluated on every case whatever the mode (so a rule that
/// FIRST_MATCHED would never reach is still measured).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleStats {
    pub rule_id: RuleId,
    pub rule_version: u32,
    pub action: RuleAction,
    pub mode: RuleMode,
    pub hits: u64,
    /// Hits over all cases.
    pub hit_rate: f64,
    pub errors: u64,
    /// Hits labelled fraud.
    pub frauds_caught: u64,
    /// Hits labelled legit.
    pub false_positives: u64,
    /// `frauds_caught / (frauds_caught + false_positives)`; `None` without labelled hits.
    pub precision: Option<f64>,
    /// `frauds_caught / frauds`; `None` without frauds.
    pub recall: Option<f64>,
}

/// Decisions by kind, in `approve, review, block` order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Mix {
    pub approve: u64,
    pub review: u64,
    pub block: u64,
}

impl Mix {
    fn add(&mut self, d: Decision) {
        match d {
            Decision::Approve => self.approve += 1,
            Decision::Review => self.review += 1,
            Decision::Block => self.block += 1,
        }
    }
}

/// What a ruleset's decisions caught: frauds among its blocks and reviews.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    pub mix: Mix,
    /// Frauds it blocked or sent to review.
    pub frauds_stopped: u64,
    /// Legit payments it blocked or sent to review.
    pub legit_stopped: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestReport {
    pub ruleset_version: u32,
    /// The ruleset it is compared with; `None`: the score thresholds alone.
    pub baseline_version: Option<u32>,
    pub decisions: u64,
    /// Stored decisions that could not be replayed (see [`replay_inputs`]); not in `decisions`.
    pub skipped: u64,
    pub labelled: u64,
    pub frauds: u64,
    pub rules: Vec<RuleStats>,
    pub draft: Outcomes,
    pub baseline: Outcomes,
    /// `"approve->block"` → how many decisions would move so; only the changed ones.
    pub changes: BTreeMap<String, u64>,
}

/// Accumulates a backtest, one case at a time (memory stays constant whatever the window).
pub struct Backtest<'a> {
    draft: &'a CompiledRuleset,
    /// The draft again, compiled ALL_MATCHED with every rule active, for per-rule figures.
    every_rule: CompiledRuleset,
    baseline: Option<&'a CompiledRuleset>,
    thresholds: Thresholds,
    lists: &'a dyn ListLookup,
    report: BacktestReport,
    per_rule: BTreeMap<RuleId, usize>,
}

impl<'a> Backtest<'a> {
    /// `draft` compiled from `ruleset`; `baseline` the active ruleset, if any.
    pub fn new(
        ruleset: &Ruleset,
        draft: &'a CompiledRuleset,
        baseline: Option<&'a CompiledRuleset>,
        thresholds: Thresholds,
        lists: &'a dyn ListLookup,
    ) -> Result<Self, String> {
        let mut all = ruleset.clone();
        all.mode = MatchMode::AllMatched;
        for r in &mut all.rules {
            r.spec.mode = RuleMode::Shadow;
        }
        let every_rule = CompiledRuleset::compile(&all).map_err(|p| {
            format!(
                "ruleset {} does not compile: {}",
                ruleset.version,
                p.first().map_or(String::new(), |p| p.message.clone())
            )
        })?;
        let mut per_rule = BTreeMap::new();
        let rules = ruleset
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                per_rule.insert(r.spec.id.clone(), i);
                RuleStats {
                    rule_id: r.spec.id.clone(),
                    rule_version: r.version,
                    action: r.spec.action,
                    mode: r.spec.mode,
                    hits: 0,
                    hit_rate: 0.0,
                    errors: 0,
                    frauds_caught: 0,
                    false_positives: 0,
                    precision: None,
                    recall: None,
                }
            })
            .collect();
        Ok(Backtest {
            draft,
            every_rule,
            baseline,
            thresholds,
            lists,
            report: BacktestReport {
                ruleset_version: ruleset.version,
                baseline_version: baseline.map(CompiledRuleset::version),
                decisions: 0,
                skipped: 0,
                labelled: 0,
                frauds: 0,
                rules,
                draft: Outcomes::default(),
                baseline: Outcomes::default(),
                changes: BTreeMap::new(),
            },
            per_rule,
        })
    }

    pub fn push(&mut self, case: &Case<'_>) {
        let input = Input {
            transaction: case.transaction,
            extras: case.extras,
            features: case.features,
            score: case.score,
            model_version: case.model_version,
        };
        let r = &mut self.report;
        r.decisions += 1;
        if case.fraud.is_some() {
            r.labelled += 1;
        }
        if case.fraud == Some(true) {
            r.frauds += 1;
        }
        for hit in self.every_rule.evaluate(&input, self.thresholds, self.lists).hits {
            let Some(&i) = self.per_rule.get(&hit.rule_id) else {
                continue;
            };
            let s = &mut r.rules[i];
            match hit.status {
                HitStatus::Error => s.errors += 1,
                HitStatus::Matched => {
                    s.hits += 1;
                    match case.fraud {
                        Some(true) => s.frauds_caught += 1,
                        Some(false) => s.false_positives += 1,
                        None => {}
                    }
                }
            }
        }
        let draft = self.draft.evaluate(&input, self.thresholds, self.lists).decision;
        let baseline = match self.baseline {
            Some(b) => b.evaluate(&input, self.thresholds, self.lists).decision,
            None => self.thresholds.decide(case.score),
        };
        for (outcomes, d) in [(&mut r.draft, draft), (&mut r.baseline, baseline)] {
            outcomes.mix.add(d);
            if d != Decision::Approve {
                match case.fraud {
                    Some(true) => outcomes.frauds_stopped += 1,
                    Some(false) => outcomes.legit_stopped += 1,
                    None => {}
                }
            }
        }
        if draft != baseline {
            *r.changes
                .entry(format!("{}->{}", baseline.as_str(), draft.as_str()))
                .or_default() += 1;
        }
    }

    /// A stored decision that could not be replayed.
    pub fn skip(&mut self) {
        self.report.skipped += 1;
    }

    pub fn report(&self) -> BacktestReport {
        let mut r = self.report.clone();
        for s in &mut r.rules {
            s.hit_rate = if r.decisions == 0 {
                0.0
            } else {
                s.hits as f64 / r.decisions as f64
            };
            let labelled = s.frauds_caught + s.false_positives;
            s.precision = (labelled > 0).then(|| s.frauds_caught as f64 / labelled as f64);
            s.recall = (r.frauds > 0).then(|| s.frauds_caught as f64 / r.frauds as f64);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rules::lists::NoLists;
    use crate::domain::rules::{Rule, RuleSpec, RulesetStatus};
    use crate::domain::{Currency, CustomerId, Money, TerminalId, Timestamp, TransactionId};

    fn rule(id: &str, expression: &str, action: RuleAction, mode: RuleMode) -> Rule {
        Rule {
            spec: RuleSpec {
                id: RuleId::parse(id).unwrap(),
                name: id.into(),
                description: String::new(),
                expression: expression.into(),
                action,
                priority: 0,
                mode,
            },
            version: 1,
            created_by: "k".into(),
            created_at: Timestamp::parse("t", "2026-01-01T00:00:00Z").unwrap(),
        }
    }

    fn tx(i: usize, minor: i64) -> Transaction {
        Transaction {
            id: TransactionId::parse(&format!("tx-{i}")).unwrap(),
            occurred_at: Timestamp::parse("t", "2026-01-01T12:00:00Z").unwrap(),
            amount: Money::new(minor, Currency::EUR).unwrap(),
            customer_id: CustomerId::parse("c").unwrap(),
            terminal_id: TerminalId::parse("t").unwrap(),
        }
    }

    /// Six decisions worked out by hand (thresholds 0.3 / 0.8; FIRST_MATCHED):
    /// | # | amount | score | label | big (block) | risky (review) | mid (shadow block) | draft | baseline |
    /// | 1 | 200.00 | 0.10 | fraud | hit | -   | hit | block  | approve |
    /// | 2 | 200.00 | 0.90 | legit | hit | hit | hit | block  | block   |
    /// | 3 |   1.00 | 0.60 | fraud | -   | hit | -   | review | review  |
    /// | 4 |  60.00 | 0.10 | none  | -   | -   | hit | approve| approve |
    /// | 5 |   1.00 | 0.10 | legit | -   | -   | -   | approve| approve |
    /// | 6 |   1.00 | 0.35 | fraud | -   | -   | -   | review | review  |
    #[test]
    fn a_small_backtest_matches_the_hand_computed_figures() {
        let ruleset = Ruleset {
            version: 4,
            status: RulesetStatus::Draft,
            mode: MatchMode::FirstMatched,
            description: String::new(),
            rules: vec![
                rule("big", "tx.amount > 10000", RuleAction::Block, RuleMode::Active),
                rule("risky", "score > 0.5", RuleAction::Review, RuleMode::Active),
                rule("mid", "tx.amount > 5000", RuleAction::Block, RuleMode::Shadow),
            ],
            created_by: "k".into(),
            created_at: Timestamp::parse("t", "2026-01-01T00:00:00Z").unwrap(),
            published_by: None,
            published_at: None,
        };
        let draft = CompiledRuleset::compile(&ruleset).unwrap();
        let mut run = Backtest::new(&ruleset, &draft, None, Thresholds::default(), &NoLists).unwrap();
        let cases = [
            (20_000, 0.1, Some(true)),
            (20_000, 0.9, Some(false)),
            (100, 0.6, Some(true)),
            (6_000, 0.1, None),
            (100, 0.1, Some(false)),
            (100, 0.35, Some(true)),
        ];
        let x = FeatureVector::default();
        for (i, (minor, score, fraud)) in cases.into_iter().enumerate() {
            let t = tx(i, minor);
            run.push(&Case {
                transaction: &t,
                extras: &RequestExtras::NONE,
                features: &x,
                score,
                model_version: "m",
                fraud,
            });
        }
        let r = run.report();
        assert_eq!((r.ruleset_version, r.baseline_version), (4, None));
        assert_eq!((r.decisions, r.labelled, r.frauds, r.skipped), (6, 5, 3, 0));
        let by_id = |id: &str| r.rules.iter().find(|s| s.rule_id.as_str() == id).unwrap().clone();
        for (id, hits) in [("big", 2), ("risky", 2), ("mid", 3)] {
            let s = by_id(id);
            assert_eq!(
                (s.hits, s.frauds_caught, s.false_positives, s.errors),
                (hits, 1, 1, 0),
                "{id}"
            );
            assert_eq!(s.precision, Some(0.5), "{id}");
            assert!((s.recall.unwrap() - 1.0 / 3.0).abs() < 1e-12, "{id}");
            assert!((s.hit_rate - hits as f64 / 6.0).abs() < 1e-12, "{id}");
        }
        assert_eq!(
            r.draft,
            Outcomes {
                mix: Mix {
                    approve: 2,
                    review: 2,
                    block: 2
                },
                frauds_stopped: 3,
                legit_stopped: 1
            }
        );
        assert_eq!(
            r.baseline,
            Outcomes {
                mix: Mix {
                    approve: 3,
                    review: 2,
                    block: 1
                },
                frauds_stopped: 2,
                legit_stopped: 1
            }
        );
        assert_eq!(r.changes, BTreeMap::from([("approve->block".to_owned(), 1)]));
    }

    #[test]
    fn a_rule_that_errors_is_counted_as_an_error_not_a_hit() {
        let mut ruleset = Ruleset {
            version: 1,
            status: RulesetStatus::Draft,
            mode: MatchMode::AllMatched,
            description: String::new(),
            rules: vec![rule(
                "needs_key",
                "tx.metadata['channel'] == 'web'",
                RuleAction::Block,
                RuleMode::Active,
            )],
            created_by: "k".into(),
            created_at: Timestamp::parse("t", "2026-01-01T00:00:00Z").unwrap(),
            published_by: None,
            published_at: None,
        };
        ruleset.rules[0].version = 2;
        let draft = CompiledRuleset::compile(&ruleset).unwrap();
        let mut run = Backtest::new(&ruleset, &draft, None, Thresholds::default(), &NoLists).unwrap();
        let t = tx(1, 100);
        run.push(&Case {
            transaction: &t,
            extras: &RequestExtras::NONE,
            features: &FeatureVector::default(),
            score: 0.1,
            model_version: "m",
            fraud: Some(true),
        });
        let s = &run.report().rules[0];
        assert_eq!((s.rule_version, s.hits, s.errors, s.precision), (2, 0, 1, None));
        assert_eq!(run.report().draft.mix.approve, 1, "the error does not decide");
    }
}
