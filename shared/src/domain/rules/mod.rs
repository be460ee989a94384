//! Rules and lists: what a fraud team writes to change decisions the same day, without a retrain.
//!
//! A [`Rule`] is a CEL expression with an action; a [`Ruleset`] is an immutable, numbered set of
//! rule versions that a tenant activates like a model. Lists are typed value sets that rules look
//! up by name. This module holds the definitions as stored and sent; [`engine`] compiles and
//! evaluates them, [`lists`] parses entries and answers membership.

#[doc(hidden)]
pub mod bench_fixture;
pub mod engine;
pub mod lists;

use crate::domain::{ListName, RuleId, Timestamp};
use serde::{Deserialize, Serialize};

/// Rules in one ruleset.
pub const MAX_RULES_PER_RULESET: usize = 200;
/// Bytes of one rule's expression.
pub const MAX_EXPRESSION_BYTES: usize = 2_048;
/// Bytes of a rule's name; descriptions and notes are at most [`MAX_TEXT_BYTES`].
pub const MAX_NAME_BYTES: usize = 128;
pub const MAX_TEXT_BYTES: usize = 1_024;
/// Entries in one list.
pub const MAX_LIST_ENTRIES: usize = 100_000;
/// Entries one request may add or remove.
pub const MAX_ENTRIES_PER_REQUEST: usize = 1_000;
/// Lists per tenant.
pub const MAX_LISTS: usize = 100;

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Approve, whatever the score and the block and review rules say.
    Allow,
    Block,
    Review,
    /// Only recorded: never changes the decision.
    Tag,
}

impl RuleAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Block => "block",
            RuleAction::Review => "review",
            RuleAction::Tag => "tag",
        }
    }
}

/// Whether a rule's hits decide (`active`) or are only recorded (`shadow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleMode {
    Active,
    Shadow,
}

impl RuleMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            RuleMode::Active => "active",
            RuleMode::Shadow => "shadow",
        }
    }
}

/// How a ruleset goes through its active rules, as in Amazon Fraud Detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MatchMode {
    /// Stop at the first active rule that matches (in evaluation order).
    #[default]
    FirstMatched,
    /// Evaluate every rule; the strongest action wins and every hit is recorded.
    AllMatched,
}

/// A rule as a client writes it. The fields are checked by [`RuleSpec::check_text`] and the
/// expression by [`engine::check_rule`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub id: RuleId,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub expression: String,
    pub action: RuleAction,
    /// Higher first within an action; ties by id.
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "active")]
    pub mode: RuleMode,
}

fn active() -> RuleMode {
    RuleMode::Active
}

impl RuleSpec {
    /// The text fields' bounds (the expression's are the engine's).
    pub fn check_text(&self) -> Vec<RuleProblem> {
        let mut problems = Vec::new();
        let mut bound = |field: &'static str, value: &str, max: usize, required: bool| {
            if required && value.trim().is_empty() {
                problems.push(RuleProblem::field(Some(&self.id), field, "must not be empty"));
            } else if value.len() > max {
                problems.push(RuleProblem::field(
                    Some(&self.id),
                    field,
                    format!("must be at most {max} bytes"),
                ));
            }
        };
        bound("name", &self.name, MAX_NAME_BYTES, true);
        bound("description", &self.description, MAX_TEXT_BYTES, false);
        bound("expression", &self.expression, MAX_EXPRESSION_BYTES, true);
        problems
    }

    /// What an analyst reads among a decision's reasons.
    pub fn reason_text(&self) -> String {
        if self.description.is_empty() {
            self.name.clone()
        } else {
            format!("{}: {}", self.name, self.description)
        }
    }
}

/// One stored version of a rule. Versions are immutable and numbered from 1 per rule id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(flatten)]
    pub spec: RuleSpec,
    pub version: u32,
    /// The key id that saved it.
    pub created_by: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RulesetStatus {
    /// Can be backtested; cannot be activated.
    Draft,
    /// Can be activated. Nothing else about it changes.
    Published,
}

/// An immutable, numbered set of rule versions (copied in, so a ruleset never changes under
/// its version). Versions are numbered from 1 per tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    pub version: u32,
    pub status: RulesetStatus,
    #[serde(default)]
    pub mode: MatchMode,
    #[serde(default)]
    pub description: String,
    pub rules: Vec<Rule>,
    pub created_by: String,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<Timestamp>,
}

/// Which ruleset serves a tenant: moved only from the version that was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesetPointer {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<u32>,
    pub activated_by: String,
    pub activated_at: Timestamp,
}

/// A problem with a rule or ruleset, naming the rule, the field and, for an expression, the
/// position (1-based line and column, and the byte offset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleProblem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub field: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    pub line: u32,
    pub column: u32,
    pub offset: u32,
}

impl RuleProblem {
    pub fn field(rule: Option<&RuleId>, field: &str, message: impl Into<String>) -> Self {
        RuleProblem {
            rule: rule.map(|r| r.to_string()),
            field: field.to_owned(),
            message: message.into(),
            position: None,
        }
    }

    /// A problem at byte `offset` of `expression`.
    pub fn at(rule: Option<&RuleId>, expression: &str, offset: usize, message: impl Into<String>) -> Self {
        RuleProblem {
            position: Some(Position::of(expression, offset)),
            ..RuleProblem::field(rule, "expression", message)
        }
    }
}

impl Position {
    /// Line and column (1-based, in characters) of byte `offset`, clamped to the text.
    pub fn of(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Position {
            line: line as u32,
            column: column as u32,
            offset: offset as u32,
        }
    }
}

/// The value type of a list: how entries are parsed and matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// A card or customer id (as `customer_id`).
    CustomerId,
    TerminalId,
    /// Compared case-insensitively.
    Email,
    /// IPv4 and IPv6 addresses and CIDR ranges; an address matches the ranges that hold it.
    Ip,
    /// ISO 3166 alpha-2, upper case.
    Country,
    /// A card's issuer identification number: 6 to 8 digits.
    Bin,
    /// Any text, compared exactly.
    String,
}

impl ListKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ListKind::CustomerId => "customer_id",
            ListKind::TerminalId => "terminal_id",
            ListKind::Email => "email",
            ListKind::Ip => "ip",
            ListKind::Country => "country",
            ListKind::Bin => "bin",
            ListKind::String => "string",
        }
    }
}

/// A list, without its entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListMeta {
    pub name: ListName,
    pub kind: ListKind,
    #[serde(default)]
    pub description: String,
    /// Bumped by every change of its entries; scoring caches a list by it.
    pub version: u64,
    pub entries: u64,
    pub created_by: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One entry of a list, its value normalised by [`lists::normalise`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    pub value: String,
    /// The entry stops matching transactions that occur at or after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub added_by: String,
    pub added_at: Timestamp,
}

/// What became of a rule when a decision evaluated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HitStatus {
    Matched,
    /// It could not be evaluated (a missing metadata key, a type error): recorded, and the
    /// decision went on without it.
    Error,
}

/// A rule that matched, or failed, in one decision. Rules that evaluated to false are not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleHit {
    pub rule_id: RuleId,
    pub rule_version: u32,
    pub action: RuleAction,
    pub mode: RuleMode,
    pub status: HitStatus,
    /// For an `error`: what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The rules part of a decision record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesApplied {
    pub ruleset_version: u32,
    pub hits: Vec<RuleHit>,
}

/// Who changed what, when: one entry per change of a rule, ruleset, pointer or list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: Timestamp,
    /// The key id that made the change.
    pub actor: String,
    /// E.g. `rule.create`, `ruleset.publish`, `ruleset.activate`, `list.entries.add`.
    pub action: String,
    /// What was changed: `rule:<id>@<version>`, `ruleset:<version>`, `list:<name>`.
    pub target: String,
    /// Short and human: counts, versions moved from and to.
    #[serde(default)]
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let e = "tx.amount > 10 &&\n  tx.émail == 'x'";
        let p = Position::of(e, e.find("'x'").unwrap());
        assert_eq!((p.line, p.column), (2, 15));
        assert_eq!(
            Position::of(e, 0),
            Position {
                line: 1,
                column: 1,
                offset: 0
            }
        );
        assert_eq!(Position::of(e, 10_000).offset as usize, e.len());
    }

    #[test]
    fn specs_read_with_defaults_and_refuse_unknown_actions() {
        let s: RuleSpec =
            serde_json::from_str(r#"{"id":"big","name":"Big","expression":"tx.amount > 1","action":"block"}"#).unwrap();
        assert_eq!((s.priority, s.mode), (0, RuleMode::Active));
        assert!(
            serde_json::from_str::<RuleSpec>(r#"{"id":"b","name":"B","expression":"true","action":"deny"}"#).is_err()
        );
        let m: MatchMode = serde_json::from_str(r#""ALL_MATCHED""#).unwrap();
        assert_eq!(m, MatchMode::AllMatched);
    }
}
