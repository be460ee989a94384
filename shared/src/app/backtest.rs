//! The backtest service: replays a ruleset (typically a draft) over the stored decisions of a
//! time window, each with the inputs, features and score it was decided on and its label, beside
//! the active ruleset on the same inputs. Reads only: nothing is written to decisions, aggregates
//! or anything else.

use crate::domain::backtest::{replay_inputs, Backtest, BacktestReport, Case};
use crate::domain::labels::LabelValue;
use crate::domain::rules::engine::CompiledRuleset;
use crate::domain::rules::lists::ListIndex;
use crate::domain::{ListName, TenantId, Timestamp};
use crate::ports::rules::{RulesRead, TenantPolicyRead};
use crate::ports::{DecisionWindow, StoreError};
use std::collections::HashMap;
use std::sync::Arc;

/// Decisions one inline backtest may replay; a larger window is refused with this figure named.
pub const MAX_INLINE_DECISIONS: usize = 20_000;
/// Longest window, so a typo in a year cannot walk decades of empty day partitions.
pub const MAX_WINDOW_DAYS: i64 = 92;
/// Decisions read per page.
const PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    /// The window holds more decisions than an inline backtest replays.
    #[error(
        "the window holds more than {limit} decisions; narrow it (from/to) or run `verdict backtest` over an export"
    )]
    TooLarge { limit: usize },
    /// A stored ruleset that no longer compiles.
    #[error("{0}")]
    Unusable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The half-open window `[from, to)` of occurrence times.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Window {
    pub fn new(from: Timestamp, to: Timestamp) -> Result<Window, BacktestError> {
        if to <= from {
            return Err(BacktestError::Invalid {
                field: "to",
                message: format!("{to} is not after from ({from})"),
            });
        }
        if to.unix() - from.unix() > MAX_WINDOW_DAYS * 86_400 {
            return Err(BacktestError::Invalid {
                field: "to",
                message: format!("the window is longer than {MAX_WINDOW_DAYS} days"),
            });
        }
        Ok(Window { from, to })
    }
}

/// Replays ruleset `version` of `tenant` over `window`, with at most `limit` decisions.
pub async fn backtest<S: RulesRead + TenantPolicyRead + DecisionWindow>(
    store: &S,
    tenant: &TenantId,
    version: u32,
    window: Window,
    limit: usize,
) -> Result<BacktestReport, BacktestError> {
    let ruleset = match store.ruleset(tenant, version).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(BacktestError::NotFound(format!("No ruleset version {version}."))),
        Err(StoreError::Corrupt { key, reason }) => {
            return Err(BacktestError::Unusable(format!(
                "Ruleset {version} is unreadable ({key}: {reason})."
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let unusable = |v: u32, p: Vec<crate::domain::rules::RuleProblem>| {
        BacktestError::Unusable(format!(
            "Ruleset {v} does not compile: {}",
            p.first().map_or(String::new(), |p| p.message.clone())
        ))
    };
    let draft = CompiledRuleset::compile(&ruleset).map_err(|p| unusable(version, p))?;
    let policy = store.tenant_policy(tenant).await?;
    let baseline = match policy.rules.active_ruleset {
        Some(v) => match store.ruleset(tenant, v).await {
            Ok(Some(a)) => Some(CompiledRuleset::compile(&a).map_err(|p| unusable(v, p))?),
            Ok(None) => None,
            Err(StoreError::Corrupt { key, reason }) => {
                return Err(BacktestError::Unusable(format!(
                    "The active ruleset {v} is unreadable ({key}: {reason})."
                )))
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let mut lists: HashMap<ListName, Arc<ListIndex>> = HashMap::new();
    for name in draft
        .lists()
        .iter()
        .chain(baseline.iter().flat_map(|b| b.lists().iter()))
    {
        if lists.contains_key(name) {
            continue;
        }
        match store.list_contents(tenant, name).await {
            Ok(Some(contents)) => {
                lists.insert(
                    name.clone(),
                    Arc::new(ListIndex::build(contents.meta.kind, &contents.entries)),
                );
            }
            Ok(None) => {}
            // As in scoring: the rules using an unreadable list are errors.
            Err(StoreError::Corrupt { key, reason }) => {
                tracing::error!(tenant = %tenant, list = %name, key, reason, "a list is unreadable: rules using it are errors");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let thresholds = policy.thresholds.unwrap_or_default();
    let mut run =
        Backtest::new(&ruleset, &draft, baseline.as_ref(), thresholds, &lists).map_err(BacktestError::Unusable)?;
    let mut cursor: Option<String> = None;
    let mut replayed = 0usize;
    loop {
        let page = store
            .decisions_between(tenant, window.from, window.to, PAGE, cursor.as_deref())
            .await?;
        for record in &page.items {
            replayed += 1;
            if replayed > limit {
                return Err(BacktestError::TooLarge { limit });
            }
            match replay_inputs(record) {
                Ok((request, features)) => {
                    let tx = request.transaction();
                    run.push(&Case {
                        transaction: &tx,
                        extras: &request.extras,
                        features: &features,
                        score: record.score,
                        model_version: &record.model.version,
                        fraud: record.label.as_ref().map(|l| l.value == LabelValue::Fraud),
                    });
                }
                Err(why) => {
                    tracing::warn!(tenant = %tenant, id = %record.id, why, "a decision the backtest cannot replay");
                    run.skip();
                }
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(run.report())
}
