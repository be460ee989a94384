//! The rules engine: checks a rule when it is saved, compiles a ruleset once, and evaluates it in
//! a decision.
//!
//! # What a rule can read
//! - `tx`: `amount` (int, minor units), `amount_major` (double), `currency` (string), `occurred_at`
//!   (timestamp), `hour` (int 0-23, UTC), `weekday` (int, ISO: 1 = Monday … 7 = Sunday, UTC),
//!   `customer_id`, `terminal_id` (strings), the optional `ip`, `email`, `device_id`, `country`
//!   (present only when the request sent them: test with `has(tx.email)`; reading an absent one is
//!   a runtime error), and `metadata` (a map string → string; a missing key is a runtime error,
//!   test with `has(tx.metadata.k)` or `'k' in tx.metadata`).
//! - `features`: every model feature by its name in [`FEATURE_NAMES`] (double).
//! - `score` (double, the model's probability), `risk_score` (int 0-100, as
//!   [`crate::domain::decision::risk_score`]), `model_version` (string).
//! - `in_list(value, "list_name")`: whether the string `value` is in the named list (a hash or
//!   prefix lookup in [`ListIndex`], not CEL's linear `in`). The name must be a string literal
//!   naming a valid list. A list not loaded at run time, or a value that is not a string, makes the
//!   rule an `error`.
//! - CEL's standard functions and macros (`has`, `size`, `startsWith`, `matches`, `all`, `exists`,
//!   …). `matches` (a partial match, as CEL's) takes a literal pattern only, compiled once with the
//!   ruleset (cel 0.15's own `matches` would compile it on every call).
//!
//! Anything else (an unknown identifier, `tx.emial`, `features.nope`, an unknown function) is
//! refused when the rule is saved, naming it and its position.
//!
//! # Evaluation order
//! As Stripe Radar, with the model thresholds as Radar's built-in risk rules in their phase:
//! allow rules; block rules; the model block threshold (`score >= block`); review rules; the
//! model review threshold; approve. Within an action: higher priority first, ties by rule id.
//! `tag` rules never decide; they are evaluated last.
//! - `FIRST_MATCHED`: the first active allow/block/review hit, or threshold, decides, and the later
//!   active allow/block/review rules are not evaluated.
//! - `ALL_MATCHED`: every rule is evaluated; the decision is the first phase that hit; every hit
//!   is recorded and every active allow/block/review hit is among the reasons.
//! - Shadow rules (of any action) and tag rules are always evaluated and recorded, and never change
//!   the decision or the reasons.
//! - A rule that fails at run time (a missing key, a type error, a result that is not a bool) is a
//!   hit with status `error` and a message; it does not count as a match, and the decision goes on.
//!
//! # Bounded cost
//! CEL in Rust has no runtime limit, so every rule is bounded when it is saved: at most
//! [`super::MAX_EXPRESSION_BYTES`] bytes, [`MAX_BRACKET_NESTING`] open brackets (checked before parsing, so
//! the parser never recurses deeply), [`MAX_NODES`] syntax nodes, [`MAX_DEPTH`] levels, and a
//! static cost of at most [`MAX_COST`] node evaluations, a comprehension counting its body once per
//! possible element. Comprehensions (`all`, `exists`, `exists_one`, `map`, `filter`) run only over
//! `tx.metadata` (at most [`MAX_METADATA_KEYS`] keys) or a literal list, and never nest.
//!
//! # Compiled once
//! [`CompiledRuleset::compile`] parses each rule once and lowers the CEL syntax tree: `tx.amount`
//! becomes a direct variable, `features.x` one by index, `in_list(v, "n")` a membership test
//! against the ruleset's n-th list. A decision builds one CEL context with a lazy resolver (no
//! value is built unless a rule reads it) and evaluates every rule against it.

use super::lists::{ListIndex, ListLookup};
use super::{
    HitStatus, MatchMode, RuleAction, RuleHit, RuleMode, RuleProblem, RuleSpec, Ruleset, MAX_RULES_PER_RULESET,
};
use crate::domain::decision::{risk_score, Decision, RuleReason, MAX_METADATA_KEYS};
use crate::domain::features::FEATURE_NAMES;
use crate::domain::policy::{Input, Thresholds};
use crate::domain::{ListName, RuleId, Timestamp};
use cel::common::ast::{operators, CallExpr, EntryExpr, Expr, IdedExpr, LiteralValue, SourceInfo};
use cel::common::traits::{Container, Indexer};
use cel::common::types::{CelBool, CelDouble, CelInt, CelMap, CelMapKey, CelString, CelTimestamp, Type};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

/// Syntax nodes of one rule, after macro expansion (`x.all(k, p)` is about six plus `p`). A rule
/// of a few dozen clauses has well under 100; a literal list of 200 countries fits.
pub const MAX_NODES: usize = 256;
/// Levels of the syntax tree. `&&` and `||` chains are balanced by the parser, so 50 clauses are
/// about 8 levels; arithmetic chains are not, and this keeps evaluation recursion shallow.
pub const MAX_DEPTH: usize = 32;
/// Brackets open at once, counted before parsing: cel's parser recurses per bracket.
pub const MAX_BRACKET_NESTING: usize = 32;
/// Node evaluations one rule may cost at most, a comprehension's body counted once per element it
/// may see (metadata: [`MAX_METADATA_KEYS`]; a literal list: its length). One node evaluation is
/// tens of nanoseconds, so a rule costs at most tens of microseconds whatever it says.
pub const MAX_COST: u64 = 1_000;
/// Comprehensions inside comprehensions: none.
pub const MAX_COMPREHENSION_NESTING: usize = 1;
/// Bytes of a `matches` pattern (a literal).
pub const MAX_PATTERN_BYTES: usize = 256;
/// Problems reported for one rule (garbage could otherwise give hundreds).
const MAX_PROBLEMS_PER_RULE: usize = 10;
/// Bytes of a runtime error message kept in a hit.
const MAX_ERROR_BYTES: usize = 256;

/// The fields of `tx`.
pub const TX_FIELDS: [&str; 13] = [
    "amount",
    "amount_major",
    "currency",
    "occurred_at",
    "hour",
    "weekday",
    "customer_id",
    "terminal_id",
    "ip",
    "email",
    "device_id",
    "country",
    "metadata",
];

/// The variables a rule can name.
pub const VARIABLES: [&str; 5] = ["tx", "features", "score", "risk_score", "model_version"];

/// CEL's type names, for `type(x) == int`.
const TYPE_NAMES: [&str; 10] = [
    "bool",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
];

/// The list lookup function.
pub const IN_LIST: &str = "in_list";

/// What a lowered `matches` calls: a function over the ruleset's precompiled patterns (cel's own
/// `matches` runs `Regex::new` on every call: hundreds of µs for `.{1,60}`).
const MATCHES_COMPILED: &str = "@matches";
/// Bytes a compiled pattern may take: `\p{L}{10}` or `[^@]{1,60}@[^@]{1,60}` fit; a nested
/// repetition such as `(a{1000}){1000}` does not.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Bytes of a pattern's lazy DFA cache (past it the regex falls back to a slower engine).
const PATTERN_DFA_LIMIT: usize = 1 << 18;
/// Static cost of one `matches`: a linear scan of a bounded string, far more than a node.
const MATCHES_COST: u64 = 20;

/// A `matches` pattern, as checked at save time and compiled at ruleset compile.
fn build_pattern(p: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(p)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_DFA_LIMIT)
        .build()
}

/// What a checked rule refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleRefs {
    pub lists: BTreeSet<ListName>,
}

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    // No optional syntax (`a.?b`): `has()` covers presence, and it is less to bound.
    ENV.get_or_init(|| Arc::new(Env::stdlib().with_optional_support(false)))
}

/// Whether `name` is a function of CEL's standard library (cel 0.15 does not list them; its
/// context refuses to add a function under a name the environment declares).
fn is_stdlib_function(name: &str) -> bool {
    let mut probe = Context::with_env(Arc::clone(env()));
    probe.add_function(name, |a: i64| a).is_err()
}

/// Everything checkable when a rule is saved (see the module doc). Never panics.
pub fn check_rule(spec: &RuleSpec) -> Result<RuleRefs, Vec<RuleProblem>> {
    parse_checked(spec).map(|(refs, _)| refs)
}

/// Checks `spec` and returns its references and its parsed expression.
fn parse_checked(spec: &RuleSpec) -> Result<(RuleRefs, IdedExpr), Vec<RuleProblem>> {
    let mut problems = spec.check_text();
    let source = spec.expression.as_str();
    // Empty or too long: the text check said so; nothing to parse.
    if problems.iter().any(|p| p.field == "expression") {
        return Err(problems);
    }
    if let Some(offset) = too_nested(source) {
        problems.push(RuleProblem::at(
            Some(&spec.id),
            source,
            offset,
            format!("more than {MAX_BRACKET_NESTING} brackets open at once"),
        ));
        return Err(problems);
    }
    let program = match env().compile(source) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors.errors.iter().take(MAX_PROBLEMS_PER_RULE) {
                let message = if e.msg.contains("Recursion limit") {
                    "nested too deeply".to_owned()
                } else {
                    e.msg.clone()
                };
                problems.push(RuleProblem::at(
                    Some(&spec.id),
                    source,
                    line_column_offset(source, e.pos),
                    message,
                ));
            }
            if errors.errors.is_empty() {
                problems.push(RuleProblem::at(Some(&spec.id), source, 0, "does not parse"));
            }
            return Err(problems);
        }
    };
    let mut checker = Checker {
        spec,
        info: program.source_info(),
        problems: Vec::new(),
        lists: BTreeSet::new(),
        nodes: 0,
        scope: Vec::new(),
        comprehensions: 0,
        too_deep: false,
    };
    let root = program.expression();
    checker.condition(root);
    let cost = checker.walk(root, 1);
    if checker.nodes > MAX_NODES {
        checker.problem(root, format!("has {} syntax nodes; at most {MAX_NODES}", checker.nodes));
    } else if cost > MAX_COST {
        checker.problem(
            root,
            format!(
                "may cost {cost} node evaluations; at most {MAX_COST} (a comprehension counts its body per element)"
            ),
        );
    }
    problems.extend(checker.problems.into_iter().take(MAX_PROBLEMS_PER_RULE));
    if problems.is_empty() {
        Ok((RuleRefs { lists: checker.lists }, root.clone()))
    } else {
        Err(problems)
    }
}

/// The byte offset where more than [`MAX_BRACKET_NESTING`] brackets are open, string literals
/// skipped (roughly: a quote opens a literal up to the same quote, backslash escapes).
fn too_nested(source: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for (i, b) in source.bytes().enumerate() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == q {
                quote = None;
            }
            continue;
        }
        match b {
            b'\'' | b'"' => quote = Some(b),
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_BRACKET_NESTING {
                    return Some(i);
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// A parse error's (1-based line, 1-based column in characters) as a byte offset.
fn line_column_offset(source: &str, (line, column): (isize, isize)) -> usize {
    let mut offset = 0;
    for (i, l) in source.split_inclusive('\n').enumerate() {
        if i as isize + 1 == line {
            let skip = column.max(1) as usize - 1;
            return offset + l.char_indices().nth(skip).map_or(l.len(), |(b, _)| b);
        }
        offset += l.len();
    }
    if line <= 1 {
        0
    } else {
        source.len()
    }
}

struct Checker<'s> {
    spec: &'s RuleSpec,
    info: &'s SourceInfo,
    problems: Vec<RuleProblem>,
    lists: BTreeSet<ListName>,
    nodes: usize,
    /// Comprehension variables in scope, innermost last.
    scope: Vec<String>,
    comprehensions: usize,
    too_deep: bool,
}

impl Checker<'_> {
    /// Where `e` starts: a select's or a method call's own position is its dot, so they start
    /// where their operand does.
    fn offset(&self, e: &IdedExpr) -> usize {
        let mut e = e;
        loop {
            match &e.expr {
                Expr::Select(s) => e = &s.operand,
                Expr::Call(c) if c.target.is_some() => e = c.target.as_deref().unwrap_or(e),
                _ => break,
            }
        }
        self.info.offset_for(e.id).map_or(0, |(start, _)| start as usize)
    }

    /// A node's own position (a select's is its dot).
    fn own_offset(&self, e: &IdedExpr) -> usize {
        self.info.offset_for(e.id).map_or(0, |(start, _)| start as usize)
    }

    fn problem(&mut self, at: &IdedExpr, message: impl Into<String>) {
        let offset = self.offset(at);
        self.problem_at(offset, message);
    }

    fn problem_at(&mut self, offset: usize, message: impl Into<String>) {
        if self.problems.len() < MAX_PROBLEMS_PER_RULE {
            self.problems.push(RuleProblem::at(
                Some(&self.spec.id),
                &self.spec.expression,
                offset,
                message,
            ));
        }
    }

    fn in_scope(&self, name: &str) -> bool {
        self.scope.iter().any(|s| s == name)
    }

    /// An obvious non-condition at the top (a number, a sum, a list) is refused now rather than
    /// erroring in every decision. Anything else is only known when it runs (no type checker).
    fn condition(&mut self, root: &IdedExpr) {
        let not_bool = match &root.expr {
            Expr::Literal(LiteralValue::Boolean(_)) => false,
            Expr::Literal(_) | Expr::List(_) | Expr::Map(_) => true,
            Expr::Call(c) => matches!(
                c.func_name.as_str(),
                operators::ADD
                    | operators::SUBSTRACT
                    | operators::MULTIPLY
                    | operators::DIVIDE
                    | operators::MODULO
                    | operators::NEGATE
            ),
            _ => false,
        };
        if not_bool {
            self.problem(root, "must be a condition (true or false)");
        }
    }

    /// Checks `e` and returns its static cost.
    fn walk(&mut self, e: &IdedExpr, depth: usize) -> u64 {
        self.nodes += 1;
        if depth > MAX_DEPTH {
            if !self.too_deep {
                self.too_deep = true;
                self.problem(e, format!("nested more than {MAX_DEPTH} levels deep"));
            }
            return 0;
        }
        let d = depth + 1;
        match &e.expr {
            Expr::Literal(_) => 1,
            Expr::Ident(name) => {
                if (name == "tx" || name == "features") && !self.in_scope(name) {
                    // Read only by field: a `tx` passed around as a value escapes the field check.
                    self.problem(e, format!("`{name}` is read by field only (as `{name}.field`)"));
                } else if !self.in_scope(name)
                    && !VARIABLES.contains(&name.as_str())
                    && !TYPE_NAMES.contains(&name.as_str())
                {
                    self.problem(
                        e,
                        format!("unknown variable `{name}`; known are tx, features, score, risk_score, model_version"),
                    );
                }
                1
            }
            Expr::Select(s) => {
                if let Expr::Ident(root) = &s.operand.expr {
                    if !self.in_scope(root) {
                        self.nodes += 1;
                        self.select_on_root(e, root, &s.field);
                        return 2;
                    }
                }
                1 + self.walk(&s.operand, d)
            }
            Expr::Call(c) => self.call(e, c, d),
            Expr::List(l) => 1 + l.elements.iter().map(|x| self.walk(x, d)).sum::<u64>(),
            Expr::Map(m) => {
                let mut cost = 1;
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => cost += self.walk(&me.key, d) + self.walk(&me.value, d),
                        EntryExpr::StructField(_) => self.problem(e, "struct fields are not supported"),
                    }
                }
                cost
            }
            Expr::Struct(s) => {
                self.problem(e, format!("message types are not supported (`{}`)", s.type_name));
                1
            }
            Expr::Comprehension(c) => {
                let n = match &c.iter_range.expr {
                    Expr::List(l) => Some(l.elements.len() as u64),
                    Expr::Select(s) if s.field == "metadata" && !s.test && is_root(&s.operand, "tx", &self.scope) => {
                        Some(MAX_METADATA_KEYS as u64)
                    }
                    _ => None,
                };
                if n.is_none() {
                    self.problem(e, "a comprehension runs only over tx.metadata or a literal list");
                }
                if self.comprehensions >= MAX_COMPREHENSION_NESTING {
                    self.problem(e, "comprehensions must not be nested");
                }
                for v in std::iter::once(&c.iter_var).chain(c.iter_var2.as_ref()) {
                    if VARIABLES.contains(&v.as_str()) {
                        self.problem(e, format!("`{v}` is a variable; name the element otherwise"));
                    }
                }
                let range = self.walk(&c.iter_range, d);
                let init = self.walk(&c.accu_init, d);
                self.comprehensions += 1;
                let pushed = 2 + usize::from(c.iter_var2.is_some());
                self.scope.push(c.accu_var.clone());
                self.scope.push(c.iter_var.clone());
                self.scope.extend(c.iter_var2.clone());
                let body = self.walk(&c.loop_cond, d) + self.walk(&c.loop_step, d);
                let result = self.walk(&c.result, d);
                self.scope.truncate(self.scope.len() - pushed);
                self.comprehensions -= 1;
                1 + range + init + n.unwrap_or(1).max(1) * body + result
            }
            Expr::Unspecified => {
                self.problem(e, "not an expression");
                1
            }
        }
    }

    /// `tx.f`, `features.f`, `score.f`…: the field must exist.
    fn select_on_root(&mut self, e: &IdedExpr, root: &str, field: &str) {
        // The select's position is its dot; point at the field.
        let at = self.own_offset(e);
        let at = if self.spec.expression.as_bytes().get(at) == Some(&b'.') {
            at + 1
        } else {
            at
        };
        self.field_at(at, root, field);
    }

    /// `root.field` or `root['field']`, the field at `at`: it must exist.
    fn field_at(&mut self, at: usize, root: &str, field: &str) {
        match root {
            "tx" if !TX_FIELDS.contains(&field) => self.problem_at(
                at,
                format!("tx has no field `{field}`; it has {}", TX_FIELDS.join(", ")),
            ),
            "features" if !FEATURE_NAMES.contains(&field) => self.problem_at(
                at,
                format!("unknown feature `{field}`; features are {}", FEATURE_NAMES.join(", ")),
            ),
            "tx" | "features" => {}
            "score" | "risk_score" | "model_version" => {
                self.problem_at(at, format!("`{root}` has no fields (`{field}`)"))
            }
            other => self.problem_at(
                at.saturating_sub(other.len() + 1),
                format!("unknown variable `{other}`; known are tx, features, score, risk_score, model_version"),
            ),
        }
    }

    fn call(&mut self, e: &IdedExpr, c: &CallExpr, d: usize) -> u64 {
        let name = c.func_name.as_str();
        if name == IN_LIST {
            return self.in_list(e, c, d);
        }
        if name == operators::INDEX && c.target.is_none() && c.args.len() == 2 {
            if let Expr::Ident(root) = &c.args[0].expr {
                if (root == "tx" || root == "features") && !self.in_scope(root) {
                    // `tx['email']` is `tx.email`, checked as one.
                    self.nodes += 2;
                    match &c.args[1].expr {
                        Expr::Literal(LiteralValue::String(f)) => {
                            let at = self.own_offset(&c.args[1]);
                            self.field_at(at, root, f.inner());
                        }
                        _ => self.problem(&c.args[1], format!("index {root} only with a field name in quotes")),
                    }
                    return 3;
                }
            }
        }
        // Only the operators the parser writes (a rule cannot call `_foo` or `@in` by name).
        let operator = matches!(
            name,
            operators::CONDITIONAL
                | operators::LOGICAL_AND
                | operators::LOGICAL_OR
                | operators::LOGICAL_NOT
                | operators::SUBSTRACT
                | operators::ADD
                | operators::MULTIPLY
                | operators::DIVIDE
                | operators::MODULO
                | operators::EQUALS
                | operators::NOT_EQUALS
                | operators::GREATER_EQUALS
                | operators::LESS_EQUALS
                | operators::GREATER
                | operators::LESS
                | operators::NEGATE
                | operators::INDEX
                | operators::NOT_STRICTLY_FALSE
                | operators::IN
        );
        if !operator && !is_stdlib_function(name) {
            self.problem(e, format!("unknown function `{name}`"));
        }
        if name == "matches" {
            // The pattern is the last argument (`s.matches(p)` or `matches(s, p)`).
            match c.args.last().map(|a| &a.expr) {
                Some(Expr::Literal(LiteralValue::String(p))) => {
                    let p = p.inner();
                    if p.len() > MAX_PATTERN_BYTES {
                        self.problem(e, format!("a matches() pattern is at most {MAX_PATTERN_BYTES} bytes"));
                    } else if let Err(err) = build_pattern(p) {
                        let err = err.to_string();
                        self.problem(
                            e,
                            format!("invalid matches() pattern: {}", err.lines().last().unwrap_or(&err)),
                        );
                    }
                }
                _ => self.problem(e, "matches() takes a literal pattern"),
            }
        }
        let mut cost = if name == "matches" { MATCHES_COST } else { 1 };
        if let Some(t) = &c.target {
            cost += self.walk(t, d);
        }
        for a in &c.args {
            cost += self.walk(a, d);
        }
        cost
    }

    fn in_list(&mut self, e: &IdedExpr, c: &CallExpr, d: usize) -> u64 {
        if c.target.is_some() || c.args.len() != 2 {
            self.problem(e, "call it as in_list(value, \"list_name\")");
            let mut cost = 1;
            for a in c.target.iter().map(|t| &**t).chain(&c.args) {
                cost += self.walk(a, d);
            }
            return cost;
        }
        let cost = 2 + self.walk(&c.args[0], d);
        self.nodes += 1;
        match &c.args[1].expr {
            Expr::Literal(LiteralValue::String(s)) => match ListName::parse(s.inner()) {
                Ok(name) => {
                    self.lists.insert(name);
                }
                Err(err) => self.problem(&c.args[1], format!("not a list name: {}", err.reason)),
            },
            _ => self.problem(&c.args[1], "in_list's second argument must be a list name in quotes"),
        }
        cost
    }
}

fn is_root(e: &IdedExpr, name: &str, scope: &[String]) -> bool {
    matches!(&e.expr, Expr::Ident(n) if n == name && !scope.iter().any(|s| s == name))
}

// ---------------------------------------------------------------------------------------------
// Compiling

struct CompiledRule {
    id: RuleId,
    version: u32,
    action: RuleAction,
    mode: RuleMode,
    reason: String,
    eval: Eval,
}

/// How a rule runs.
enum Eval {
    /// The common typed subset, natively (see [`fast`]).
    Fast(fast::Node),
    /// Anything else: the lowered CEL tree, by cel's interpreter.
    Cel(IdedExpr),
}

/// A ruleset compiled once (per version per container): `Send + Sync`, evaluated concurrently.
pub struct CompiledRuleset {
    version: u32,
    mode: MatchMode,
    /// Allow, block, review, tag rules, each by priority (higher first) then id.
    rules: Vec<CompiledRule>,
    /// Where each action's rules start in `rules`: allow, block, review, tag, end.
    phases: [usize; 5],
    lists: BTreeSet<ListName>,
    /// `lists` in order: a lowered `in_list` names its list by index here.
    list_table: Vec<ListName>,
    /// Every `matches` pattern, compiled once: a lowered `matches` names its pattern by index.
    patterns: Arc<Vec<regex::Regex>>,
}

impl std::fmt::Debug for CompiledRuleset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRuleset")
            .field("version", &self.version)
            .field("mode", &self.mode)
            .field("rules", &self.rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
            .field("lists", &self.lists)
            .finish()
    }
}

fn action_rank(a: RuleAction) -> usize {
    match a {
        RuleAction::Allow => 0,
        RuleAction::Block => 1,
        RuleAction::Review => 2,
        RuleAction::Tag => 3,
    }
}

impl CompiledRuleset {
    /// [`check_rule`] on each rule, at most [`MAX_RULES_PER_RULESET`] rules, no rule id twice.
    pub fn compile(ruleset: &Ruleset) -> Result<CompiledRuleset, Vec<RuleProblem>> {
        Self::compile_with(ruleset, true)
    }

    /// `fast`: whether rules in the typed subset skip cel's interpreter (off only to test that
    /// both ways agree).
    fn compile_with(ruleset: &Ruleset, fast: bool) -> Result<CompiledRuleset, Vec<RuleProblem>> {
        let mut problems = Vec::new();
        if ruleset.rules.len() > MAX_RULES_PER_RULESET {
            problems.push(RuleProblem::field(
                None,
                "rules",
                format!(
                    "{} rules; a ruleset has at most {MAX_RULES_PER_RULESET}",
                    ruleset.rules.len()
                ),
            ));
            return Err(problems);
        }
        let mut seen = BTreeSet::new();
        let mut parsed = Vec::with_capacity(ruleset.rules.len());
        let mut lists = BTreeSet::new();
        for rule in &ruleset.rules {
            if !seen.insert(&rule.spec.id) {
                problems.push(RuleProblem::field(
                    Some(&rule.spec.id),
                    "id",
                    format!("rule {} is in the ruleset twice", rule.spec.id),
                ));
                continue;
            }
            match parse_checked(&rule.spec) {
                Ok((refs, expr)) => {
                    lists.extend(refs.lists);
                    parsed.push((rule, expr));
                }
                Err(p) => problems.extend(p),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let list_table: Vec<ListName> = lists.iter().cloned().collect();
        let list_no: HashMap<&str, usize> = list_table.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let mut patterns = Vec::new();
        let mut rules: Vec<CompiledRule> = parsed
            .into_iter()
            .map(|(rule, expr)| CompiledRule {
                id: rule.spec.id.clone(),
                version: rule.version,
                action: rule.spec.action,
                mode: rule.spec.mode,
                reason: rule.spec.reason_text(),
                eval: match fast.then(|| fast::compile(&expr, &list_no)).flatten() {
                    Some(node) => Eval::Fast(node),
                    None => Eval::Cel(lower(expr, &list_no, &mut Vec::new(), &mut patterns)),
                },
            })
            .collect();
        let priority: HashMap<&RuleId, i32> = ruleset.rules.iter().map(|r| (&r.spec.id, r.spec.priority)).collect();
        rules.sort_by(|a, b| {
            (action_rank(a.action), std::cmp::Reverse(priority[&a.id]), &a.id).cmp(&(
                action_rank(b.action),
                std::cmp::Reverse(priority[&b.id]),
                &b.id,
            ))
        });
        let mut phases = [rules.len(); 5];
        for rank in (0..4).rev() {
            phases[rank] = rules
                .iter()
                .position(|r| action_rank(r.action) >= rank)
                .unwrap_or(rules.len());
        }
        Ok(CompiledRuleset {
            version: ruleset.version,
            mode: ruleset.mode,
            rules,
            phases,
            lists,
            list_table,
            patterns: Arc::new(patterns),
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn mode(&self) -> MatchMode {
        self.mode
    }

    /// Every list any rule references.
    pub fn lists(&self) -> &BTreeSet<ListName> {
        &self.lists
    }

    /// Rules in the ruleset.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rules outside the typed subset, run by cel's interpreter (slower: about 0.6 µs each).
    pub fn interpreted(&self) -> usize {
        self.rules.iter().filter(|r| matches!(r.eval, Eval::Cel(_))).count()
    }

    /// Decides one transaction (see the module doc for the order and the modes).
    pub fn evaluate(&self, input: &Input<'_>, thresholds: Thresholds, lists: &dyn ListLookup) -> RulesVerdict {
        let vars = Vars {
            input,
            tx: TxVal { input },
            features: FeaturesVal { input },
            lists,
            list_table: &self.list_table,
            at: input.transaction.occurred_at,
        };
        let mut ctx = Context::with_env(Arc::clone(env()));
        ctx.set_variable_resolver(&vars);
        if !self.patterns.is_empty() {
            let patterns = Arc::clone(&self.patterns);
            // The name is not a stdlib one (it starts with `@`), so this cannot fail.
            let _ = ctx.add_function(MATCHES_COMPILED, move |s: Arc<String>, i: i64| -> bool {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| patterns.get(i))
                    .is_some_and(|p| p.is_match(&s))
            });
        }
        let mut verdict = RulesVerdict {
            decision: Decision::Approve,
            hits: Vec::new(),
            reasons: Vec::new(),
        };
        let mut decided: Option<Decision> = None;
        let first = self.mode == MatchMode::FirstMatched;
        for (rank, decision) in [
            (0, Decision::Approve),
            (1, Decision::Block),
            (2, Decision::Review),
            (3, Decision::Approve),
        ] {
            for rule in &self.rules[self.phases[rank]..self.phases[rank + 1]] {
                let counts = rule.mode == RuleMode::Active && rule.action != RuleAction::Tag;
                if counts && first && decided.is_some() {
                    continue;
                }
                let status = match &rule.eval {
                    Eval::Fast(node) => match fast::eval_bool(node, &vars) {
                        Ok(true) => Some((HitStatus::Matched, None)),
                        Ok(false) => None,
                        Err(e) => Some((HitStatus::Error, Some(truncate(e.0, MAX_ERROR_BYTES)))),
                    },
                    Eval::Cel(expr) => match Value::resolve_val(expr, &ctx) {
                        Ok(v) => match v.downcast_ref::<CelBool>() {
                            Some(b) if *b.inner() => Some((HitStatus::Matched, None)),
                            Some(_) => None,
                            None => Some((
                                HitStatus::Error,
                                Some(format!("evaluated to a {}, not a bool", v.get_type().name())),
                            )),
                        },
                        Err(e) => Some((HitStatus::Error, Some(self.describe(&e)))),
                    },
                };
                let Some((status, error)) = status else { continue };
                if status == HitStatus::Matched && counts {
                    if decided.is_none() || !first {
                        verdict.reasons.push(RuleReason {
                            rule_id: rule.id.to_string(),
                            rule_version: rule.version,
                            action: rule.action.as_str().to_owned(),
                            text: rule.reason.clone(),
                        });
                    }
                    decided.get_or_insert(decision);
                }
                verdict.hits.push(RuleHit {
                    rule_id: rule.id.clone(),
                    rule_version: rule.version,
                    action: rule.action,
                    mode: rule.mode,
                    status,
                    error,
                });
            }
            // The model thresholds, in their phase.
            if decided.is_none() {
                if rank == 1 && input.score >= thresholds.block {
                    decided = Some(Decision::Block);
                } else if rank == 2 && input.score >= thresholds.review {
                    decided = Some(Decision::Review);
                }
            }
        }
        verdict.decision = decided.unwrap_or(Decision::Approve);
        verdict
    }

    /// A runtime error as an analyst reads it (the lowered names spelled back).
    fn describe(&self, e: &ExecutionError) -> String {
        let text = match e {
            ExecutionError::UndeclaredReference(name) => {
                if let Some(field) = name.strip_prefix("@tx.") {
                    format!("tx.{field} is not set on this transaction (test it with has(tx.{field}))")
                } else if let Some(i) = name.strip_prefix("@list.") {
                    let list = i.parse::<usize>().ok().and_then(|i| self.list_table.get(i));
                    match list {
                        Some(l) => format!("list {l} is not loaded"),
                        None => "a list is not loaded".to_owned(),
                    }
                } else {
                    e.to_string()
                }
            }
            _ => e.to_string(),
        };
        truncate(text, MAX_ERROR_BYTES)
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Rewrites the checked tree for evaluation: `tx.f` → `@tx.f`, `features.f` → `@f.<index>`,
/// `tx.metadata` → `@tx.metadata`, `in_list(v, "n")` → `v in @list.<index of n>`. The new names
/// cannot be written by a rule (`@` is not an identifier character). `scope` holds the
/// comprehension variables, which may shadow `tx` and `features`.
fn lower(
    e: IdedExpr,
    list_no: &HashMap<&str, usize>,
    scope: &mut Vec<String>,
    patterns: &mut Vec<regex::Regex>,
) -> IdedExpr {
    let id = e.id;
    let ident = |name: String| IdedExpr {
        id,
        expr: Expr::Ident(name),
    };
    let expr = match e.expr {
        Expr::Select(s) if !s.test => match &s.operand.expr {
            Expr::Ident(root) if root == "tx" && !scope.contains(root) => return ident(format!("@tx.{}", s.field)),
            Expr::Ident(root) if root == "features" && !scope.contains(root) => {
                let i = FEATURE_NAMES.iter().position(|f| *f == s.field).unwrap_or(usize::MAX);
                return ident(format!("@f.{i}"));
            }
            _ => Expr::Select(cel::common::ast::SelectExpr {
                operand: Box::new(lower(*s.operand, list_no, scope, patterns)),
                ..s
            }),
        },
        Expr::Select(mut s) => {
            // `has(tx.f)` keeps its form: the presence test is on `tx` itself.
            if !matches!(&s.operand.expr, Expr::Ident(_)) {
                s.operand = Box::new(lower(*s.operand, list_no, scope, patterns));
            }
            Expr::Select(s)
        }
        Expr::Call(c) if c.func_name == IN_LIST && c.target.is_none() && c.args.len() == 2 => {
            let mut args = c.args.into_iter();
            let value = args
                .next()
                .map(|a| lower(a, list_no, scope, patterns))
                .unwrap_or_default();
            let name = match args.next().map(|a| a.expr) {
                Some(Expr::Literal(LiteralValue::String(s))) => s.inner().to_owned(),
                _ => String::new(),
            };
            let list = list_no.get(name.as_str()).copied().unwrap_or(usize::MAX);
            Expr::Call(CallExpr {
                func_name: operators::IN.to_owned(),
                target: None,
                args: vec![value, ident(format!("@list.{list}"))],
            })
        }
        Expr::Call(c) if c.func_name == "matches" && c.target.is_some() as usize + c.args.len() == 2 => {
            // The checked pattern is compiled once here; `@matches(s, i)` runs the i-th.
            let mut operands = c.target.map(|t| *t).into_iter().chain(c.args);
            let value = operands
                .next()
                .map(|a| lower(a, list_no, scope, patterns))
                .unwrap_or_default();
            let pattern = match operands.next().map(|a| a.expr) {
                Some(Expr::Literal(LiteralValue::String(p))) => build_pattern(p.inner()).ok(),
                _ => None,
            };
            let index = pattern.map_or(-1, |p| {
                patterns.push(p);
                patterns.len() as i64 - 1
            });
            Expr::Call(CallExpr {
                func_name: MATCHES_COMPILED.to_owned(),
                target: None,
                args: vec![
                    value,
                    IdedExpr {
                        id,
                        expr: Expr::Literal(LiteralValue::Int(index.into())),
                    },
                ],
            })
        }
        Expr::Call(c) => Expr::Call(CallExpr {
            func_name: c.func_name,
            target: c.target.map(|t| Box::new(lower(*t, list_no, scope, patterns))),
            args: c.args.into_iter().map(|a| lower(a, list_no, scope, patterns)).collect(),
        }),
        Expr::List(mut l) => {
            l.elements = l
                .elements
                .into_iter()
                .map(|a| lower(a, list_no, scope, patterns))
                .collect();
            Expr::List(l)
        }
        Expr::Map(mut m) => {
            for entry in &mut m.entries {
                if let EntryExpr::MapEntry(me) = &mut entry.expr {
                    me.key = lower(std::mem::take(&mut me.key), list_no, scope, patterns);
                    me.value = lower(std::mem::take(&mut me.value), list_no, scope, patterns);
                }
            }
            Expr::Map(m)
        }
        Expr::Comprehension(mut c) => {
            c.iter_range = lower(std::mem::take(&mut c.iter_range), list_no, scope, patterns);
            c.accu_init = lower(std::mem::take(&mut c.accu_init), list_no, scope, patterns);
            let depth = scope.len();
            scope.push(c.accu_var.clone());
            scope.push(c.iter_var.clone());
            scope.extend(c.iter_var2.clone());
            c.loop_cond = lower(std::mem::take(&mut c.loop_cond), list_no, scope, patterns);
            c.loop_step = lower(std::mem::take(&mut c.loop_step), list_no, scope, patterns);
            c.result = lower(std::mem::take(&mut c.result), list_no, scope, patterns);
            scope.truncate(depth);
            Expr::Comprehension(c)
        }
        other => other,
    };
    IdedExpr { id, expr }
}

// ---------------------------------------------------------------------------------------------
// Evaluating

/// The typed subset most rules are written in, evaluated without cel's interpreter (which
/// allocates per comparison: about 0.6 µs a rule). A rule compiles here only if every node is
/// of a statically known type: literals (bool, int, double, string), the `tx`/`features`/score
/// variables, `!`, `&&`, `||`, `? :`, comparisons (numbers with numbers, strings with strings,
/// `==`/`!=` on bools), `+ - * / %` and unary `-` on two ints or two doubles, `x in [literals]`,
/// `has(tx.f)`, `has(tx.metadata.k)`, `startsWith`/`endsWith`/`contains` on strings, and
/// `in_list`. The results and the error-or-not outcome are CEL's (a differential test checks
/// this against cel on random expressions); error texts may be worded differently.
mod fast {
    use super::{Vars, FEATURE_NAMES, IN_LIST};
    use cel::common::ast::{operators, Expr, IdedExpr, LiteralValue};
    use std::cmp::Ordering;
    use std::collections::HashMap;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Ty {
        Bool,
        Int,
        Double,
        Str,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Var {
        Amount,
        AmountMajor,
        Currency,
        Hour,
        Weekday,
        CustomerId,
        TerminalId,
        Ip,
        Email,
        DeviceId,
        Country,
        Feature(usize),
        Score,
        RiskScore,
        ModelVersion,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Cmp {
        Eq,
        Ne,
        Lt,
        Le,
        Gt,
        Ge,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Arith {
        Add,
        Sub,
        Mul,
        Div,
        Rem,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum StrOp {
        StartsWith,
        EndsWith,
        Contains,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Lit {
        Bool(bool),
        Int(i64),
        Double(f64),
        Str(String),
    }

    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Node {
        Lit(Lit),
        Var(Var),
        Meta(String),
        HasField(Var),
        HasMeta(String),
        Not(Box<Node>),
        And(Box<Node>, Box<Node>),
        Or(Box<Node>, Box<Node>),
        Cond(Box<Node>, Box<Node>, Box<Node>),
        Cmp(Cmp, Box<Node>, Box<Node>),
        Arith(Arith, Box<Node>, Box<Node>),
        Neg(Box<Node>),
        InLits(Box<Node>, Vec<Lit>),
        InList(Box<Node>, usize),
        Str(StrOp, Box<Node>, Box<Node>),
    }

    /// A runtime error: the hit's message.
    #[derive(Debug)]
    pub(super) struct Error(pub String);

    #[derive(Debug, Clone, Copy)]
    enum V<'a> {
        Bool(bool),
        Int(i64),
        Double(f64),
        Str(&'a str),
    }

    fn tx_var(field: &str) -> Option<(Var, Ty)> {
        Some(match field {
            "amount" => (Var::Amount, Ty::Int),
            "amount_major" => (Var::AmountMajor, Ty::Double),
            "currency" => (Var::Currency, Ty::Str),
            "hour" => (Var::Hour, Ty::Int),
            "weekday" => (Var::Weekday, Ty::Int),
            "customer_id" => (Var::CustomerId, Ty::Str),
            "terminal_id" => (Var::TerminalId, Ty::Str),
            "ip" => (Var::Ip, Ty::Str),
            "email" => (Var::Email, Ty::Str),
            "device_id" => (Var::DeviceId, Ty::Str),
            "country" => (Var::Country, Ty::Str),
            _ => return None,
        })
    }

    fn lit(l: &LiteralValue) -> Option<Lit> {
        Some(match l {
            LiteralValue::Boolean(b) => Lit::Bool(*b.inner()),
            LiteralValue::Int(i) => Lit::Int(*i.inner()),
            LiteralValue::Double(d) => Lit::Double(*d.inner()),
            LiteralValue::String(s) => Lit::Str(s.inner().to_owned()),
            _ => return None,
        })
    }

    fn lit_ty(l: &Lit) -> Ty {
        match l {
            Lit::Bool(_) => Ty::Bool,
            Lit::Int(_) => Ty::Int,
            Lit::Double(_) => Ty::Double,
            Lit::Str(_) => Ty::Str,
        }
    }

    fn is_ident(e: &IdedExpr, name: &str) -> bool {
        matches!(&e.expr, Expr::Ident(n) if n == name)
    }

    /// `e` in the fast subset, or `None` (the rule then runs on cel). `e` is checked, not lowered.
    pub(super) fn compile(e: &IdedExpr, list_no: &HashMap<&str, usize>) -> Option<Node> {
        match node(e, list_no)? {
            (n, Ty::Bool) => Some(n),
            _ => None,
        }
    }

    fn node(e: &IdedExpr, list_no: &HashMap<&str, usize>) -> Option<(Node, Ty)> {
        let b = |x: Node| Box::new(x);
        Some(match &e.expr {
            Expr::Literal(l) => {
                let l = lit(l)?;
                let t = lit_ty(&l);
                (Node::Lit(l), t)
            }
            Expr::Ident(name) => match name.as_str() {
                "score" => (Node::Var(Var::Score), Ty::Double),
                "risk_score" => (Node::Var(Var::RiskScore), Ty::Int),
                "model_version" => (Node::Var(Var::ModelVersion), Ty::Str),
                _ => return None,
            },
            Expr::Select(s) => {
                let on = &s.operand;
                if is_ident(on, "tx") {
                    let (var, ty) = tx_var(&s.field)?;
                    if s.test {
                        (Node::HasField(var), Ty::Bool)
                    } else {
                        (Node::Var(var), ty)
                    }
                } else if is_ident(on, "features") && !s.test {
                    let i = FEATURE_NAMES.iter().position(|f| *f == s.field)?;
                    (Node::Var(Var::Feature(i)), Ty::Double)
                } else if let Expr::Select(inner) = &on.expr {
                    if inner.test || inner.field != "metadata" || !is_ident(&inner.operand, "tx") {
                        return None;
                    }
                    if s.test {
                        (Node::HasMeta(s.field.clone()), Ty::Bool)
                    } else {
                        (Node::Meta(s.field.clone()), Ty::Str)
                    }
                } else {
                    return None;
                }
            }
            Expr::Call(c) => {
                let name = c.func_name.as_str();
                if let Some(target) = &c.target {
                    let op = match name {
                        "startsWith" => StrOp::StartsWith,
                        "endsWith" => StrOp::EndsWith,
                        "contains" => StrOp::Contains,
                        _ => return None,
                    };
                    let [arg] = c.args.as_slice() else { return None };
                    let (t, tt) = node(target, list_no)?;
                    let (a, at) = node(arg, list_no)?;
                    if tt != Ty::Str || at != Ty::Str {
                        return None;
                    }
                    return Some((Node::Str(op, b(t), b(a)), Ty::Bool));
                }
                match (name, c.args.as_slice()) {
                    (operators::LOGICAL_NOT, [x]) => {
                        let (x, t) = node(x, list_no)?;
                        (t == Ty::Bool).then_some(())?;
                        (Node::Not(b(x)), Ty::Bool)
                    }
                    (operators::NEGATE, [x]) => {
                        let (x, t) = node(x, list_no)?;
                        matches!(t, Ty::Int | Ty::Double).then_some(())?;
                        (Node::Neg(b(x)), t)
                    }
                    (operators::LOGICAL_AND | operators::LOGICAL_OR, [l, r]) => {
                        let (l, lt) = node(l, list_no)?;
                        let (r, rt) = node(r, list_no)?;
                        (lt == Ty::Bool && rt == Ty::Bool).then_some(())?;
                        if name == operators::LOGICAL_AND {
                            (Node::And(b(l), b(r)), Ty::Bool)
                        } else {
                            (Node::Or(b(l), b(r)), Ty::Bool)
                        }
                    }
                    (operators::CONDITIONAL, [c, x, y]) => {
                        let (c, ct) = node(c, list_no)?;
                        let (x, xt) = node(x, list_no)?;
                        let (y, yt) = node(y, list_no)?;
                        (ct == Ty::Bool && xt == yt).then_some(())?;
                        (Node::Cond(b(c), b(x), b(y)), xt)
                    }
                    (
                        operators::EQUALS
                        | operators::NOT_EQUALS
                        | operators::LESS
                        | operators::LESS_EQUALS
                        | operators::GREATER
                        | operators::GREATER_EQUALS,
                        [l, r],
                    ) => {
                        let op = match name {
                            operators::EQUALS => Cmp::Eq,
                            operators::NOT_EQUALS => Cmp::Ne,
                            operators::LESS => Cmp::Lt,
                            operators::LESS_EQUALS => Cmp::Le,
                            operators::GREATER => Cmp::Gt,
                            _ => Cmp::Ge,
                        };
                        let (l, lt) = node(l, list_no)?;
                        let (r, rt) = node(r, list_no)?;
                        let numeric = |t| matches!(t, Ty::Int | Ty::Double);
                        let ok = (numeric(lt) && numeric(rt))
                            || (lt == Ty::Str && rt == Ty::Str)
                            || (lt == Ty::Bool && rt == Ty::Bool && matches!(op, Cmp::Eq | Cmp::Ne));
                        ok.then_some(())?;
                        (Node::Cmp(op, b(l), b(r)), Ty::Bool)
                    }
                    (
                        operators::ADD
                        | operators::SUBSTRACT
                        | operators::MULTIPLY
                        | operators::DIVIDE
                        | operators::MODULO,
                        [l, r],
                    ) => {
                        let op = match name {
                            operators::ADD => Arith::Add,
                            operators::SUBSTRACT => Arith::Sub,
                            operators::MULTIPLY => Arith::Mul,
                            operators::DIVIDE => Arith::Div,
                            _ => Arith::Rem,
                        };
                        let (l, lt) = node(l, list_no)?;
                        let (r, rt) = node(r, list_no)?;
                        let ok = (lt == Ty::Int && rt == Ty::Int)
                            || (lt == Ty::Double && rt == Ty::Double && op != Arith::Rem);
                        ok.then_some(())?;
                        (Node::Arith(op, b(l), b(r)), lt)
                    }
                    (operators::IN, [x, list]) => {
                        let Expr::List(items) = &list.expr else { return None };
                        if !items.optional_indices.is_empty() {
                            return None;
                        }
                        let (x, xt) = node(x, list_no)?;
                        let lits: Vec<Lit> = items
                            .elements
                            .iter()
                            .map(|e| match &e.expr {
                                Expr::Literal(l) => lit(l),
                                _ => None,
                            })
                            .collect::<Option<_>>()?;
                        // Same type as `x` throughout (CEL's cross-type equality is left to cel).
                        lits.iter().all(|l| lit_ty(l) == xt && xt != Ty::Double).then_some(())?;
                        (Node::InLits(b(x), lits), Ty::Bool)
                    }
                    (IN_LIST, [x, name]) => {
                        let Expr::Literal(LiteralValue::String(n)) = &name.expr else {
                            return None;
                        };
                        let i = *list_no.get(n.inner())?;
                        let (x, xt) = node(x, list_no)?;
                        (xt == Ty::Str).then_some(())?;
                        (Node::InList(b(x), i), Ty::Bool)
                    }
                    _ => return None,
                }
            }
            _ => return None,
        })
    }

    pub(super) fn eval_bool(n: &Node, vars: &Vars<'_>) -> Result<bool, Error> {
        match eval(n, vars)? {
            V::Bool(b) => Ok(b),
            // Typed at compile time: unreachable, but an error rather than a panic.
            _ => Err(Error("not a bool".to_owned())),
        }
    }

    fn var<'a>(v: Var, vars: &Vars<'a>) -> Result<V<'a>, Error> {
        let input = vars.input;
        let tx = input.transaction;
        let x = input.extras;
        let opt = |v: &'a Option<String>, name: &str| {
            v.as_deref().map(V::Str).ok_or_else(|| {
                Error(format!(
                    "tx.{name} is not set on this transaction (test it with has(tx.{name}))"
                ))
            })
        };
        Ok(match v {
            Var::Amount => V::Int(tx.amount.minor),
            Var::AmountMajor => V::Double(tx.amount.major()),
            Var::Currency => V::Str(tx.amount.currency.as_str()),
            Var::Hour => V::Int(tx.occurred_at.inner().hour() as i64),
            Var::Weekday => V::Int(tx.occurred_at.inner().weekday().number_from_monday() as i64),
            Var::CustomerId => V::Str(tx.customer_id.as_str()),
            Var::TerminalId => V::Str(tx.terminal_id.as_str()),
            Var::Ip => opt(&x.ip, "ip")?,
            Var::Email => opt(&x.email, "email")?,
            Var::DeviceId => opt(&x.device_id, "device_id")?,
            Var::Country => opt(&x.country, "country")?,
            Var::Feature(i) => V::Double(input.features.0.get(i).copied().unwrap_or(f64::NAN)),
            Var::Score => V::Double(input.score),
            Var::RiskScore => V::Int(crate::domain::decision::risk_score(input.score) as i64),
            Var::ModelVersion => V::Str(input.model_version),
        })
    }

    fn has(v: Var, vars: &Vars<'_>) -> bool {
        let x = vars.input.extras;
        match v {
            Var::Ip => x.ip.is_some(),
            Var::Email => x.email.is_some(),
            Var::DeviceId => x.device_id.is_some(),
            Var::Country => x.country.is_some(),
            _ => true,
        }
    }

    fn lit_v(l: &Lit) -> V<'_> {
        match l {
            Lit::Bool(b) => V::Bool(*b),
            Lit::Int(i) => V::Int(*i),
            Lit::Double(d) => V::Double(*d),
            Lit::Str(s) => V::Str(s),
        }
    }

    fn bool_of(v: V<'_>) -> Result<bool, Error> {
        match v {
            V::Bool(b) => Ok(b),
            _ => Err(Error("not a bool".to_owned())),
        }
    }

    fn overflow(op: &str) -> Error {
        Error(format!("integer overflow in {op}"))
    }

    fn eval<'a>(n: &'a Node, vars: &Vars<'a>) -> Result<V<'a>, Error> {
        Ok(match n {
            Node::Lit(l) => lit_v(l),
            Node::Var(v) => var(*v, vars)?,
            Node::Meta(k) => match vars.input.extras.metadata.get(k) {
                Some(v) => V::Str(v),
                None => return Err(Error(format!("No such key: {k}"))),
            },
            Node::HasField(v) => V::Bool(has(*v, vars)),
            Node::HasMeta(k) => V::Bool(vars.input.extras.metadata.contains_key(k)),
            Node::Not(x) => V::Bool(!bool_of(eval(x, vars)?)?),
            // As cel: an error on one side is absorbed when the other side decides.
            Node::And(l, r) => {
                let l = eval(l, vars).and_then(bool_of);
                if matches!(l, Ok(false)) {
                    return Ok(V::Bool(false));
                }
                let r = bool_of(eval(r, vars)?)?;
                match l {
                    Ok(_) => V::Bool(r),
                    Err(_) if !r => V::Bool(false),
                    Err(e) => return Err(e),
                }
            }
            Node::Or(l, r) => {
                let l = eval(l, vars).and_then(bool_of);
                if matches!(l, Ok(true)) {
                    return Ok(V::Bool(true));
                }
                let r = bool_of(eval(r, vars)?)?;
                match l {
                    Ok(_) => V::Bool(r),
                    Err(_) if r => V::Bool(true),
                    Err(e) => return Err(e),
                }
            }
            Node::Cond(c, x, y) => {
                if bool_of(eval(c, vars)?)? {
                    eval(x, vars)?
                } else {
                    eval(y, vars)?
                }
            }
            Node::Cmp(op, l, r) => {
                let l = eval(l, vars)?;
                let r = eval(r, vars)?;
                V::Bool(compare(*op, l, r)?)
            }
            Node::Arith(op, l, r) => {
                let l = eval(l, vars)?;
                let r = eval(r, vars)?;
                arith(*op, l, r)?
            }
            Node::Neg(x) => match eval(x, vars)? {
                V::Int(i) => V::Int(i.checked_neg().ok_or_else(|| overflow("negate"))?),
                V::Double(d) => V::Double(-d),
                _ => return Err(Error("cannot negate".to_owned())),
            },
            Node::InLits(x, lits) => {
                let x = eval(x, vars)?;
                V::Bool(lits.iter().any(|l| matches!(compare(Cmp::Eq, x, lit_v(l)), Ok(true))))
            }
            Node::InList(x, i) => {
                let x = eval(x, vars)?;
                let name = &vars.list_table[*i];
                let Some(list) = vars.lists.list(name) else {
                    return Err(Error(format!("list {name} is not loaded")));
                };
                match x {
                    V::Str(s) => V::Bool(list.contains(s, vars.at)),
                    _ => return Err(Error(format!("{IN_LIST} looks up a string"))),
                }
            }
            Node::Str(op, t, a) => {
                let a = eval(a, vars)?;
                let t = eval(t, vars)?;
                match (t, a) {
                    (V::Str(t), V::Str(a)) => V::Bool(match op {
                        StrOp::StartsWith => t.starts_with(a),
                        StrOp::EndsWith => t.ends_with(a),
                        StrOp::Contains => t.contains(a),
                    }),
                    _ => return Err(Error("string function on a non-string".to_owned())),
                }
            }
        })
    }

    /// CEL's comparisons: ints exactly, an int with a double as doubles, NaN incomparable
    /// (an error for `<`…, unequal for `==`).
    fn compare(op: Cmp, l: V<'_>, r: V<'_>) -> Result<bool, Error> {
        let ord: Option<Ordering> = match (l, r) {
            (V::Int(a), V::Int(b)) => Some(a.cmp(&b)),
            (V::Int(a), V::Double(b)) => (a as f64).partial_cmp(&b),
            (V::Double(a), V::Int(b)) => a.partial_cmp(&(b as f64)),
            (V::Double(a), V::Double(b)) => a.partial_cmp(&b),
            (V::Str(a), V::Str(b)) => Some(a.cmp(b)),
            (V::Bool(a), V::Bool(b)) => Some(a.cmp(&b)),
            _ => None,
        };
        match (op, ord) {
            (Cmp::Eq, o) => Ok(o == Some(Ordering::Equal)),
            (Cmp::Ne, o) => Ok(o != Some(Ordering::Equal)),
            (_, None) => Err(Error(format!("{l:?} can not be compared to {r:?}"))),
            (Cmp::Lt, Some(o)) => Ok(o == Ordering::Less),
            (Cmp::Le, Some(o)) => Ok(o != Ordering::Greater),
            (Cmp::Gt, Some(o)) => Ok(o == Ordering::Greater),
            (Cmp::Ge, Some(o)) => Ok(o != Ordering::Less),
        }
    }

    fn arith<'a>(op: Arith, l: V<'a>, r: V<'a>) -> Result<V<'a>, Error> {
        Ok(match (l, r) {
            (V::Int(a), V::Int(b)) => V::Int(match op {
                Arith::Add => a.checked_add(b).ok_or_else(|| overflow("add"))?,
                Arith::Sub => a.checked_sub(b).ok_or_else(|| overflow("sub"))?,
                Arith::Mul => a.checked_mul(b).ok_or_else(|| overflow("mul"))?,
                Arith::Div if b == 0 => return Err(Error(format!("Division by zero of {a}"))),
                Arith::Div => a.checked_div(b).ok_or_else(|| overflow("div"))?,
                Arith::Rem if b == 0 => return Err(Error(format!("Remainder by zero of {a}"))),
                Arith::Rem => a.checked_rem(b).ok_or_else(|| overflow("rem"))?,
            }),
            (V::Double(a), V::Double(b)) => V::Double(match op {
                Arith::Add => a + b,
                Arith::Sub => a - b,
                Arith::Mul => a * b,
                Arith::Div => a / b,
                Arith::Rem => return Err(Error("no % on doubles".to_owned())),
            }),
            _ => return Err(Error("arithmetic on mismatched types".to_owned())),
        })
    }
}

/// What the rules decided about one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesVerdict {
    pub decision: Decision,
    /// Matched and errored rules (never the ones that evaluated false), in evaluation order.
    pub hits: Vec<RuleHit>,
    /// For the decision's reasons: each active allow/block/review rule that matched and counted
    /// (in FIRST_MATCHED the deciding one; in ALL_MATCHED all of them), text = the rule's
    /// [`RuleSpec::reason_text`].
    pub reasons: Vec<RuleReason>,
}

/// The per-decision variables, resolved when a rule reads them.
struct Vars<'a> {
    input: &'a Input<'a>,
    tx: TxVal<'a>,
    features: FeaturesVal<'a>,
    lists: &'a dyn ListLookup,
    list_table: &'a [ListName],
    at: Timestamp,
}

impl VariableResolver for Vars<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        if let Some(field) = name.strip_prefix("@tx.") {
            return tx_field(self.input, field);
        }
        if let Some(i) = name.strip_prefix("@f.") {
            let i: usize = i.parse().ok()?;
            return self.input.features.0.get(i).map(|v| CowVal::owned(CelDouble::from(*v)));
        }
        if let Some(i) = name.strip_prefix("@list.") {
            let name = self.list_table.get(i.parse::<usize>().ok()?)?;
            let index = self.lists.list(name)?;
            return Some(CowVal::owned(ListVal { index, at: self.at }));
        }
        match name {
            "score" => Some(CowVal::owned(CelDouble::from(self.input.score))),
            "risk_score" => Some(CowVal::owned(CelInt::from(risk_score(self.input.score) as i64))),
            "model_version" => Some(CowVal::owned(CelString::from(self.input.model_version))),
            "tx" => Some(CowVal::Borrowed(&self.tx)),
            "features" => Some(CowVal::Borrowed(&self.features)),
            _ => None,
        }
    }
}

/// `tx`'s field `name` (`metadata.k` for a metadata value); `None` when absent.
fn tx_field<'v>(input: &'v Input<'v>, name: &str) -> Option<CowVal<'v, 'v>> {
    let tx = input.transaction;
    let x = input.extras;
    let text = |v: &'v Option<String>| v.as_deref().map(|s| CowVal::owned(CelString::from(s)));
    let t = tx.occurred_at.inner();
    Some(match name {
        "amount" => CowVal::owned(CelInt::from(tx.amount.minor)),
        "amount_major" => CowVal::owned(CelDouble::from(tx.amount.major())),
        "currency" => CowVal::owned(CelString::from(tx.amount.currency.as_str())),
        "occurred_at" => {
            let at = chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond())?;
            CowVal::owned(CelTimestamp::from(at.fixed_offset()))
        }
        "hour" => CowVal::owned(CelInt::from(t.hour() as i64)),
        "weekday" => CowVal::owned(CelInt::from(t.weekday().number_from_monday() as i64)),
        "customer_id" => CowVal::owned(CelString::from(tx.customer_id.as_str())),
        "terminal_id" => CowVal::owned(CelString::from(tx.terminal_id.as_str())),
        "ip" => return text(&x.ip),
        "email" => return text(&x.email),
        "device_id" => return text(&x.device_id),
        "country" => return text(&x.country),
        "metadata" => {
            let map: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = x
                .metadata
                .iter()
                .map(|(k, v)| {
                    (
                        CelMapKey::from(k.as_str()),
                        Box::new(CelString::from(v.as_str())) as Box<dyn Val + 'v>,
                    )
                })
                .collect();
            CowVal::owned(CelMap::from(map))
        }
        other => {
            let key = other.strip_prefix("metadata.")?;
            return x.metadata.get(key).map(|v| CowVal::owned(CelString::from(v.as_str())));
        }
    })
}

static TX_TYPE: Type = Type::new_unspecified_type("verdict.tx");
static FEATURES_TYPE: Type = Type::new_unspecified_type("verdict.features");
static LIST_TYPE: Type = Type::new_unspecified_type("verdict.list");

fn key_name(idx: &dyn Val) -> Result<&str, ExecutionError> {
    idx.downcast_ref::<CelString>()
        .map(|s| s.inner())
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: idx.get_type().name().to_owned(),
            want: "string".to_owned(),
        })
}

/// `tx` as a whole (for `has(tx.email)` and `tx["amount"]`).
#[derive(Debug, Clone, Copy)]
struct TxVal<'a> {
    input: &'a Input<'a>,
}

impl Val for TxVal<'_> {
    fn get_type(&self) -> &Type {
        &TX_TYPE
    }
    fn cel_type() -> &'static Type {
        &TX_TYPE
    }
    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(*self)
    }
}

impl Indexer for TxVal<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let name = key_name(idx)?;
        if name.contains('.') {
            return Err(ExecutionError::no_such_key(name));
        }
        let v: Option<CowVal<'v, 'v>> = tx_field(self.input, name);
        v.map(|v| CowVal::Owned(v.into_owned()))
            .ok_or_else(|| ExecutionError::no_such_key(name))
    }
    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// `features` as a whole (for `has(features.x)`).
#[derive(Debug, Clone, Copy)]
struct FeaturesVal<'a> {
    input: &'a Input<'a>,
}

impl Val for FeaturesVal<'_> {
    fn get_type(&self) -> &Type {
        &FEATURES_TYPE
    }
    fn cel_type() -> &'static Type {
        &FEATURES_TYPE
    }
    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(*self)
    }
}

impl Indexer for FeaturesVal<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let name = key_name(idx)?;
        FEATURE_NAMES
            .iter()
            .position(|f| *f == name)
            .map(|i| CowVal::owned(CelDouble::from(self.input.features.0[i])))
            .ok_or_else(|| ExecutionError::no_such_key(name))
    }
    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// A loaded list, for `value in @list.n`.
#[derive(Debug, Clone, Copy)]
struct ListVal<'a> {
    index: &'a ListIndex,
    at: Timestamp,
}

impl Val for ListVal<'_> {
    fn get_type(&self) -> &Type {
        &LIST_TYPE
    }
    fn cel_type() -> &'static Type {
        &LIST_TYPE
    }
    fn as_container(&self) -> Option<&dyn Container> {
        Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(*self)
    }
}

impl Container for ListVal<'_> {
    fn contains(&self, value: &dyn Val) -> Result<bool, ExecutionError> {
        match value.downcast_ref::<CelString>() {
            Some(s) => Ok(self.index.contains(s.inner(), self.at)),
            None => Err(ExecutionError::function_error(
                IN_LIST,
                format!("looks up a string, not a {}", value.get_type().name()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decision::RequestExtras;
    use crate::domain::features::{FeatureVector, FEATURE_COUNT};
    use crate::domain::rules::lists::NoLists;
    use crate::domain::rules::{ListEntry, ListKind, Position, Rule, RulesetStatus};
    use crate::domain::{Currency, CustomerId, Money, TerminalId, Transaction, TransactionId};
    use rand::{Rng, SeedableRng};

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse("t", s).unwrap()
    }

    fn spec(id: &str, expression: &str, action: RuleAction) -> RuleSpec {
        RuleSpec {
            id: RuleId::parse(id).unwrap(),
            name: format!("Rule {id}"),
            description: String::new(),
            expression: expression.to_owned(),
            action,
            priority: 0,
            mode: RuleMode::Active,
        }
    }

    fn shadow(mut s: RuleSpec) -> RuleSpec {
        s.mode = RuleMode::Shadow;
        s
    }

    fn prio(mut s: RuleSpec, p: i32) -> RuleSpec {
        s.priority = p;
        s
    }

    fn ruleset(mode: MatchMode, specs: Vec<RuleSpec>) -> Ruleset {
        Ruleset {
            version: 7,
            status: RulesetStatus::Published,
            mode,
            description: String::new(),
            rules: specs
                .into_iter()
                .map(|spec| Rule {
                    spec,
                    version: 2,
                    created_by: "k".into(),
                    created_at: ts("2026-01-01T00:00:00Z"),
                })
                .collect(),
            created_by: "k".into(),
            created_at: ts("2026-01-01T00:00:00Z"),
            published_by: None,
            published_at: None,
        }
    }

    fn compiled(mode: MatchMode, specs: Vec<RuleSpec>) -> CompiledRuleset {
        CompiledRuleset::compile(&ruleset(mode, specs)).unwrap()
    }

    struct Tx {
        tx: Transaction,
        extras: RequestExtras,
        features: FeatureVector,
    }

    /// 123.45 EUR on Sunday 2018-04-01 at 22:30 UTC, with an email, an ip and metadata.
    fn tx() -> Tx {
        let mut f = [0.0; FEATURE_COUNT];
        f[12] = 0.25; // terminal_risk_7d
        Tx {
            tx: Transaction {
                id: TransactionId::parse("tx-1").unwrap(),
                occurred_at: ts("2018-04-01T22:30:00Z"),
                amount: Money::new(12_345, Currency::EUR).unwrap(),
                customer_id: CustomerId::parse("c-1").unwrap(),
                terminal_id: TerminalId::parse("t-9").unwrap(),
            },
            extras: RequestExtras {
                ip: Some("10.1.2.3".into()),
                email: Some("Bob@Example.com".into()),
                metadata: [
                    ("channel".to_owned(), "web".to_owned()),
                    ("order".to_owned(), "42".to_owned()),
                ]
                .into_iter()
                .collect(),
                ..RequestExtras::NONE
            },
            features: FeatureVector(f),
        }
    }

    fn input(t: &Tx, score: f64) -> Input<'_> {
        Input {
            transaction: &t.tx,
            extras: &t.extras,
            features: &t.features,
            score,
            model_version: "m-3",
        }
    }

    const T: Thresholds = Thresholds {
        review: 0.3,
        block: 0.8,
    };

    fn run(rs: &CompiledRuleset, score: f64) -> RulesVerdict {
        rs.evaluate(&input(&tx(), score), T, &NoLists)
    }

    fn ids(hits: &[RuleHit]) -> Vec<&str> {
        hits.iter().map(|h| h.rule_id.as_str()).collect()
    }

    fn reason_ids(v: &RulesVerdict) -> Vec<&str> {
        v.reasons.iter().map(|r| r.rule_id.as_str()).collect()
    }

    /// One rule alone: does it match this transaction?
    fn holds(expression: &str) -> bool {
        let rs = compiled(MatchMode::AllMatched, vec![spec("r", expression, RuleAction::Tag)]);
        let v = run(&rs, 0.5);
        match v.hits.first() {
            None => false,
            Some(h) if h.status == HitStatus::Matched => true,
            Some(h) => panic!("{expression}: {:?}", h.error),
        }
    }

    fn problems(expression: &str) -> Vec<RuleProblem> {
        check_rule(&spec("r", expression, RuleAction::Block)).expect_err(expression)
    }

    /// The single problem's message and (line, column).
    fn problem(expression: &str) -> (String, (u32, u32)) {
        let p = problems(expression);
        let first = &p[0];
        assert_eq!(first.rule.as_deref(), Some("r"));
        assert_eq!(first.field, "expression");
        let Position { line, column, .. } = first.position.expect("a position");
        (first.message.clone(), (line, column))
    }

    #[test]
    fn each_action_decides_on_its_own() {
        let on = |action| compiled(MatchMode::FirstMatched, vec![spec("r", "tx.amount > 100", action)]);
        assert_eq!(run(&on(RuleAction::Allow), 0.95).decision, Decision::Approve);
        assert_eq!(run(&on(RuleAction::Block), 0.01).decision, Decision::Block);
        assert_eq!(run(&on(RuleAction::Review), 0.01).decision, Decision::Review);
        let tag = run(&on(RuleAction::Tag), 0.01);
        assert_eq!(tag.decision, Decision::Approve);
        assert_eq!(ids(&tag.hits), ["r"]);
        assert!(tag.reasons.is_empty(), "a tag is not a reason");
        let block = run(&on(RuleAction::Block), 0.01);
        assert_eq!(
            block.reasons,
            [RuleReason {
                rule_id: "r".into(),
                rule_version: 2,
                action: "block".into(),
                text: "Rule r".into()
            }]
        );
        assert_eq!(
            block.hits,
            [RuleHit {
                rule_id: RuleId::parse("r").unwrap(),
                rule_version: 2,
                action: RuleAction::Block,
                mode: RuleMode::Active,
                status: HitStatus::Matched,
                error: None
            }]
        );
    }

    #[test]
    fn without_a_hit_the_thresholds_decide() {
        let rs = compiled(
            MatchMode::FirstMatched,
            vec![spec("r", "tx.amount > 1000000", RuleAction::Block)],
        );
        assert_eq!(run(&rs, 0.1).decision, Decision::Approve);
        assert_eq!(run(&rs, 0.3).decision, Decision::Review);
        assert_eq!(run(&rs, 0.8).decision, Decision::Block);
        assert!(run(&rs, 0.8).hits.is_empty());
        assert_eq!(
            run(&compiled(MatchMode::AllMatched, vec![]), 0.5).decision,
            Decision::Review
        );
    }

    #[test]
    fn an_allow_rule_beats_a_block_rule_and_the_block_threshold_in_both_modes() {
        for mode in [MatchMode::FirstMatched, MatchMode::AllMatched] {
            let rs = compiled(
                mode,
                vec![
                    spec("b", "true", RuleAction::Block),
                    spec("a", "tx.customer_id == 'c-1'", RuleAction::Allow),
                ],
            );
            let v = run(&rs, 0.99);
            assert_eq!(v.decision, Decision::Approve, "{mode:?}");
            assert_eq!(reason_ids(&v)[0], "a");
        }
    }

    #[test]
    fn a_block_rule_beats_a_review_rule() {
        for mode in [MatchMode::FirstMatched, MatchMode::AllMatched] {
            let rs = compiled(
                mode,
                vec![
                    prio(spec("r", "true", RuleAction::Review), 100),
                    spec("b", "true", RuleAction::Block),
                ],
            );
            assert_eq!(run(&rs, 0.0).decision, Decision::Block, "{mode:?}");
        }
    }

    #[test]
    fn a_review_rule_does_not_downgrade_a_score_above_the_block_threshold() {
        for mode in [MatchMode::FirstMatched, MatchMode::AllMatched] {
            let rs = compiled(mode, vec![spec("r", "true", RuleAction::Review)]);
            assert_eq!(run(&rs, 0.9).decision, Decision::Block, "{mode:?}");
        }
    }

    #[test]
    fn within_an_action_higher_priority_goes_first_and_ties_go_by_id() {
        let rs = compiled(
            MatchMode::FirstMatched,
            vec![
                spec("c", "true", RuleAction::Block),
                prio(spec("z", "true", RuleAction::Block), 5),
                spec("a", "true", RuleAction::Block),
            ],
        );
        assert_eq!(reason_ids(&run(&rs, 0.0)), ["z"]);
        assert!(compiled(MatchMode::AllMatched, vec![]).is_empty());
        let rs = compiled(
            MatchMode::AllMatched,
            vec![
                spec("c", "true", RuleAction::Block),
                prio(spec("z", "true", RuleAction::Block), 5),
                spec("a", "true", RuleAction::Block),
            ],
        );
        assert_eq!(ids(&run(&rs, 0.0).hits), ["z", "a", "c"]);
    }

    #[test]
    fn first_matched_does_not_evaluate_later_active_rules() {
        // "late" would be an error hit if it ran.
        let late = "tx.metadata.missing == 'x'";
        let rs = compiled(
            MatchMode::FirstMatched,
            vec![
                spec("first", "true", RuleAction::Block),
                spec("late", late, RuleAction::Review),
            ],
        );
        let v = run(&rs, 0.0);
        assert_eq!(ids(&v.hits), ["first"]);
        // The block threshold stops the review rules too.
        let rs = compiled(MatchMode::FirstMatched, vec![spec("late", late, RuleAction::Review)]);
        let v = run(&rs, 0.9);
        assert_eq!((v.decision, v.hits.len()), (Decision::Block, 0));
        // Below it, the same rule runs and errors.
        let v = run(&rs, 0.1);
        assert_eq!(v.hits[0].status, HitStatus::Error);
    }

    #[test]
    fn all_matched_evaluates_and_records_every_rule() {
        let rs = compiled(
            MatchMode::AllMatched,
            vec![
                spec("rv", "true", RuleAction::Review),
                spec("bl", "true", RuleAction::Block),
                spec("al", "true", RuleAction::Allow),
                spec("no", "false", RuleAction::Block),
                spec("tg", "true", RuleAction::Tag),
            ],
        );
        let v = run(&rs, 0.99);
        assert_eq!(v.decision, Decision::Approve);
        assert_eq!(
            ids(&v.hits),
            ["al", "bl", "rv", "tg"],
            "in evaluation order, the false one left out"
        );
        assert_eq!(reason_ids(&v), ["al", "bl", "rv"]);
    }

    #[test]
    fn shadow_hits_are_recorded_but_never_applied() {
        for mode in [MatchMode::FirstMatched, MatchMode::AllMatched] {
            let rs = compiled(
                mode,
                vec![
                    shadow(spec("sb", "true", RuleAction::Block)),
                    shadow(spec("sa", "true", RuleAction::Allow)),
                    spec("b", "tx.amount > 100000", RuleAction::Block),
                ],
            );
            let low = run(&rs, 0.01);
            assert_eq!(
                low.decision,
                Decision::Approve,
                "{mode:?}: a shadow block on a low score approves"
            );
            assert_eq!(ids(&low.hits), ["sa", "sb"]);
            assert!(low.hits.iter().all(|h| h.mode == RuleMode::Shadow));
            assert!(low.reasons.is_empty());
            let high = run(&rs, 0.95);
            assert_eq!(
                high.decision,
                Decision::Block,
                "{mode:?}: a shadow allow does not approve"
            );
        }
        // After the deciding hit, FIRST_MATCHED still evaluates shadow rules.
        let rs = compiled(
            MatchMode::FirstMatched,
            vec![
                spec("b", "true", RuleAction::Block),
                shadow(spec("later", "true", RuleAction::Review)),
            ],
        );
        assert_eq!(ids(&run(&rs, 0.0).hits), ["b", "later"]);
    }

    #[test]
    fn tag_rules_are_recorded_only_and_always_evaluated() {
        let rs = compiled(
            MatchMode::FirstMatched,
            vec![
                spec("t", "tx.currency == 'EUR'", RuleAction::Tag),
                spec("b", "true", RuleAction::Block),
            ],
        );
        let v = run(&rs, 0.0);
        assert_eq!(v.decision, Decision::Block);
        assert_eq!(ids(&v.hits), ["b", "t"]);
        assert_eq!(reason_ids(&v), ["b"]);
    }

    #[test]
    fn runtime_errors_are_error_hits_and_the_decision_goes_on() {
        let rs = compiled(
            MatchMode::AllMatched,
            vec![
                spec("missing-key", "tx.metadata.nope == 'x'", RuleAction::Block),
                spec("type-error", "tx.amount + 'x' > 1", RuleAction::Block),
                spec("not-bool", "tx.currency", RuleAction::Block),
                spec("absent", "tx.country == 'FR'", RuleAction::Block),
                spec("unloaded", "in_list(tx.email, 'gone')", RuleAction::Block),
                spec("not-a-string", "in_list(tx.amount, 'gone')", RuleAction::Block),
                spec("div", "tx.amount / 0 > 1", RuleAction::Block),
                spec("ok", "tx.amount > 1", RuleAction::Review),
                spec("absent-cel", "size(tx.country) > 1", RuleAction::Block),
                spec(
                    "unloaded-cel",
                    "in_list(tx.email, 'gone') || size(tx.email) > 100",
                    RuleAction::Block,
                ),
                spec("missing-key-cel", "size(tx.metadata.nope) > 1", RuleAction::Block),
            ],
        );
        let v = run(&rs, 0.0);
        assert_eq!(
            v.decision,
            Decision::Review,
            "errors do not count, the decision goes on"
        );
        let error = |id: &str| {
            let h = v.hits.iter().find(|h| h.rule_id.as_str() == id).unwrap();
            assert_eq!(h.status, HitStatus::Error, "{id}");
            h.error.clone().unwrap()
        };
        assert!(error("missing-key").contains("nope"), "{}", error("missing-key"));
        assert!(
            error("type-error").contains("+") || error("type-error").contains("add"),
            "{}",
            error("type-error")
        );
        assert_eq!(error("not-bool"), "evaluated to a string, not a bool");
        assert!(error("absent").contains("has(tx.country)"), "{}", error("absent"));
        assert_eq!(error("unloaded"), "list gone is not loaded");
        error("not-a-string");
        error("div");
        // The same messages from cel's interpreter (size() is outside the typed subset).
        assert!(
            error("absent-cel").contains("has(tx.country)"),
            "{}",
            error("absent-cel")
        );
        assert_eq!(error("unloaded-cel"), "list gone is not loaded");
        assert!(
            error("missing-key-cel").contains("nope"),
            "{}",
            error("missing-key-cel")
        );
        assert_eq!(v.hits.iter().filter(|h| h.status == HitStatus::Matched).count(), 1);
        assert_eq!(
            rs.interpreted(),
            6,
            "type-error, not-bool, not-a-string and the three -cel rules"
        );
    }

    #[test]
    fn rules_read_the_transaction_the_features_and_the_score() {
        assert!(holds(
            "tx.amount == 12345 && tx.amount_major == 123.45 && tx.currency == 'EUR'"
        ));
        assert!(holds("tx.hour == 22 && tx.weekday == 7"), "Sunday is 7, in UTC");
        assert!(holds("tx.occurred_at == timestamp('2018-04-01T22:30:00Z')"));
        assert!(holds(
            "tx.occurred_at > timestamp('2018-04-01T00:00:00Z') && tx.occurred_at.getHours() == 22"
        ));
        assert!(holds("tx.customer_id == 'c-1' && tx.terminal_id.startsWith('t-')"));
        assert!(holds("has(tx.email) && !has(tx.country) && tx.email.endsWith('.com')"));
        assert!(holds("tx.ip == '10.1.2.3'"));
        assert!(holds(
            "tx.metadata.channel == 'web' && tx.metadata['order'] == '42' && 'order' in tx.metadata"
        ));
        assert!(holds(
            "has(tx.metadata.channel) && !has(tx.metadata.nope) && size(tx.metadata) == 2"
        ));
        assert!(holds(
            "tx.metadata.exists(k, tx.metadata[k] == '42') && tx.metadata.all(k, k != '')"
        ));
        assert!(holds("['web', 'app'].exists(c, c == tx.metadata.channel)"));
        assert!(holds("features.terminal_risk_7d == 0.25 && features.amount == 0.0"));
        assert!(holds("has(features.terminal_risk_7d)"));
        assert!(holds("score == 0.5 && risk_score == 50 && model_version == 'm-3'"));
        assert!(holds("tx['amount'] == 12345"));
        assert!(holds("tx.email.matches('^[a-zA-Z]+@')"));
        assert!(holds("tx.currency in ['EUR', 'USD']"));
        assert!(holds(
            "type(tx.amount) == int && type(score) == double && type(tx.currency) != int"
        ));
        assert!(!holds("tx.amount > 12345"));
    }

    fn lists() -> HashMap<ListName, Arc<ListIndex>> {
        let entry = |v: &str, expires: Option<&str>| ListEntry {
            value: v.to_owned(),
            expires_at: expires.map(ts),
            note: None,
            added_by: "k".into(),
            added_at: ts("2018-01-01T00:00:00Z"),
        };
        let mut m = HashMap::new();
        let mut put = |name: &str, kind, entries: Vec<ListEntry>| {
            m.insert(
                ListName::parse(name).unwrap(),
                Arc::new(ListIndex::build(kind, &entries)),
            );
        };
        put(
            "bad_ips",
            ListKind::Ip,
            vec![entry("10.0.0.0/8", None), entry("2001:db8::/32", None)],
        );
        put("exact_ip", ListKind::Ip, vec![entry("10.1.2.3", None)]);
        put("emails", ListKind::Email, vec![entry("BOB@example.COM", None)]);
        put(
            "expired",
            ListKind::CustomerId,
            vec![entry("c-1", Some("2018-04-01T22:30:00Z"))],
        );
        put(
            "expiring",
            ListKind::CustomerId,
            vec![entry("c-1", Some("2018-04-01T22:30:01Z"))],
        );
        m
    }

    #[test]
    fn in_list_looks_up_the_named_list() {
        let l = lists();
        let t = tx();
        let matched = |expr: &str| {
            let rs = compiled(MatchMode::AllMatched, vec![spec("r", expr, RuleAction::Tag)]);
            let v = rs.evaluate(&input(&t, 0.5), T, &l);
            assert!(
                v.hits.iter().all(|h| h.status == HitStatus::Matched),
                "{expr}: {:?}",
                v.hits
            );
            !v.hits.is_empty()
        };
        assert!(matched("in_list(tx.ip, 'bad_ips')"), "CIDR v4");
        assert!(matched("in_list('2001:db8:1::9', 'bad_ips')"), "CIDR v6");
        assert!(!matched("in_list('2001:db9::1', 'bad_ips')"));
        assert!(matched("in_list(tx.ip, 'exact_ip')"));
        assert!(!matched("in_list('10.1.2.4', 'exact_ip')"));
        assert!(matched("in_list(tx.email, 'emails')"), "email case");
        assert!(
            !matched("in_list(tx.customer_id, 'expired')"),
            "expired at the transaction's instant"
        );
        assert!(matched("in_list(tx.customer_id, 'expiring')"), "expires a second later");
        assert!(matched(
            "has(tx.ip) && in_list(tx.ip, 'bad_ips') && !in_list(tx.customer_id, 'expired')"
        ));
        let rs = compiled(
            MatchMode::FirstMatched,
            vec![
                spec("a", "in_list(tx.email, 'emails')", RuleAction::Block),
                spec("b", "in_list(tx.ip, 'bad_ips')", RuleAction::Block),
            ],
        );
        let names: Vec<&str> = rs.lists().iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["bad_ips", "emails"]);
    }

    #[test]
    fn check_rule_returns_the_lists_a_rule_reads() {
        let refs = check_rule(&spec(
            "r",
            "in_list(tx.email, 'a') || in_list(tx.ip, \"b\")",
            RuleAction::Block,
        ))
        .unwrap();
        let names: Vec<&str> = refs.lists.iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn unknown_names_are_refused_with_their_position() {
        let (m, at) = problem("amonut > 100");
        assert!(m.contains("unknown variable `amonut`"), "{m}");
        assert_eq!(at, (1, 1));
        let (m, at) = problem("tx.amount > 1 &&\n  tx.emial == 'x'");
        assert!(m.contains("tx has no field `emial`"), "{m}");
        assert_eq!(at, (2, 6));
        let (m, at) = problem("features.nope > 1.0");
        assert!(m.contains("unknown feature `nope`"), "{m}");
        assert_eq!(at, (1, 10));
        let (m, _) = problem("score.x > 1.0");
        assert!(m.contains("`score` has no fields"), "{m}");
        let (m, at) = problem("tx.amount > 1 && frobnicate(tx.amount)");
        assert!(m.contains("unknown function `frobnicate`"), "{m}");
        assert_eq!(at.0, 1);
        let (m, _) = problem("foo.bar == 1");
        assert!(m.contains("unknown variable `foo`"), "{m}");
        // A comprehension's own variable is known inside it only.
        assert!(check_rule(&spec("r", "[1, 2].exists(x, x > 1)", RuleAction::Block)).is_ok());
        assert!(problem("[1, 2].exists(x, x > 1) && x > 1")
            .0
            .contains("unknown variable `x`"));
    }

    #[test]
    fn in_list_needs_a_literal_valid_list_name() {
        let (m, at) = problem("in_list(tx.email, tx.currency)");
        assert!(m.contains("list name in quotes"), "{m}");
        assert_eq!(at, (1, 19));
        assert!(problem("in_list(tx.email, 'bad#name')").0.contains("not a list name"));
        assert!(problem("in_list(tx.email)").0.contains("in_list(value"));
        assert!(problem("tx.email.in_list('x')").0.contains("in_list(value"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let (m, at) = problem("tx.amount >");
        assert!(m.to_lowercase().contains("syntax"), "{m}");
        assert_eq!(at.0, 1);
        let p = problems("'é' == tx.currency &&\n  )");
        assert_eq!(p[0].position.unwrap().line, 2);
    }

    #[test]
    fn cost_bounds_are_enforced_at_save_time() {
        // Too long: the text check.
        let long = format!("tx.amount > 1{}", " ".repeat(MAX_EXPRESSION_BYTES_FOR_TEST));
        let p = problems(&long);
        assert!(p[0].message.contains("at most"), "{:?}", p[0]);
        // Brackets, before parsing.
        let deep = format!("{}true{}", "(".repeat(40), ")".repeat(40));
        let (m, at) = problem(&deep);
        assert!(m.contains("brackets"), "{m}");
        assert_eq!(at, (1, MAX_BRACKET_NESTING as u32 + 1));
        // Brackets inside a string literal do not count.
        assert!(check_rule(&spec(
            "r",
            &format!("tx.currency != '{}'", "(".repeat(40)),
            RuleAction::Block
        ))
        .is_ok());
        // Depth without brackets: a left-deep sum.
        let sum = format!("{} > 0", vec!["tx.amount"; 40].join(" + "));
        assert!(problem(&sum).0.contains("levels deep"), "{:?}", problems(&sum));
        // Nodes: a long flat list.
        let many = format!("tx.currency in [{}]", vec!["'X'"; 300].join(","));
        assert!(problem(&many).0.contains("syntax nodes"), "{:?}", problems(&many));
        // Cost: a comprehension's body counts per element.
        let costly = format!("[{}].all(x, {})", ["1"; 60].join(","), ["x > 0"; 10].join(" && "));
        assert!(
            problem(&costly).0.contains("node evaluations"),
            "{:?}",
            problems(&costly)
        );
        // Comprehensions: not nested, only over metadata or literal lists.
        let (m, _) = problem("[1].all(x, [2].exists(y, y > x))");
        assert!(m.contains("nested"), "{m}");
        assert!(problem("tx.metadata.all(k, tx.metadata.exists(j, j == k))")
            .0
            .contains("nested"));
        assert!(problem("tx.currency.all(c, c == 'x')")
            .0
            .contains("tx.metadata or a literal list"));
        assert!(
            problem("tx.metadata.map(k, k).exists(k, k == 'a')")
                .0
                .contains("nested")
                || problem("tx.metadata.map(k, k).exists(k, k == 'a')")
                    .0
                    .contains("tx.metadata or a literal list")
        );
        assert!(problem("[1].all(tx, tx > 0)").0.contains("is a variable"));
        // matches(): literal, valid, bounded patterns only.
        assert!(problem("tx.email.matches(tx.currency)").0.contains("literal pattern"));
        assert!(problem("tx.email.matches('(')").0.contains("invalid matches() pattern"));
        assert!(problem("tx.email.matches('(a{1000}){1000}')")
            .0
            .contains("invalid matches() pattern"));
        // Not a condition.
        assert!(problem("tx.amount + 1").0.contains("condition"));
        assert!(problem("42").0.contains("condition"));
    }

    /// Whether the lowered tree still calls `name` (cel's `matches` compiles its pattern per call).
    fn calls(e: &IdedExpr, name: &str) -> bool {
        match &e.expr {
            Expr::Call(c) => {
                c.func_name == name
                    || c.target.as_deref().is_some_and(|t| calls(t, name))
                    || c.args.iter().any(|a| calls(a, name))
            }
            Expr::Select(s) => calls(&s.operand, name),
            Expr::List(l) => l.elements.iter().any(|x| calls(x, name)),
            Expr::Map(m) => m.entries.iter().any(|en| match &en.expr {
                EntryExpr::MapEntry(me) => calls(&me.key, name) || calls(&me.value, name),
                EntryExpr::StructField(f) => calls(&f.value, name),
            }),
            Expr::Comprehension(c) => [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result]
                .into_iter()
                .any(|x| calls(x, name)),
            _ => false,
        }
    }

    #[test]
    fn matches_patterns_are_compiled_once_per_ruleset_not_per_evaluation() {
        let exprs = [
            "tx.email.matches('(?s).{1,60}') && false",
            "[0, 1, 2].exists(x, tx.email.matches('^[a-z]+@') && x == 1)",
            "matches(tx.email, 'example')",
        ];
        for (i, e) in exprs.iter().enumerate() {
            let rs = compiled(
                MatchMode::AllMatched,
                vec![spec(&format!("r{i}"), e, RuleAction::Block)],
            );
            for r in &rs.rules {
                if let Eval::Cel(x) = &r.eval {
                    assert!(
                        !calls(x, "matches"),
                        "{e} still calls cel's matches (a Regex::new per evaluation)"
                    );
                }
            }
        }
        // Partial-match semantics are kept.
        assert!(holds("tx.email.matches('Example')"));
        assert!(holds("matches(tx.email, '^[A-Za-z]+@')"));
        assert!(!holds("tx.email.matches('^Example$')"));
        assert!(holds("[1, 2].exists(x, tx.email.matches('Example') && x == 2)"));
    }

    #[test]
    fn ordinary_matches_patterns_fit_the_size_limit_and_pathological_ones_do_not() {
        for p in [
            r"\w{3}",
            ".{1,200}",
            r"\p{L}{10}",
            "[^@]{1,60}@[^@]{1,60}",
            "(?s).{1,60}",
        ] {
            let e = format!("tx.email.matches(r'{p}')");
            assert!(
                check_rule(&spec("r", &e, RuleAction::Block)).is_ok(),
                "{e}: {:?}",
                check_rule(&spec("r", &e, RuleAction::Block))
            );
        }
        assert!(!problems("tx.email.matches('(a{1000}){1000}')").is_empty());
        assert!(!problems(r"tx.email.matches('\\w{100}{100}')").is_empty());
    }

    #[test]
    fn unknown_functions_and_fields_reached_otherwise_are_refused_with_their_position() {
        for e in [
            "_foo(1) == 1",
            "__x__(tx.amount)",
            "tx['emial'] == 'x'",
            "features['nope'] > 1.0",
            "dyn(tx).emial == 'x'",
            "[tx][0].emial == 'x'",
            "{'a': tx}.a.emial == 'x'",
            "tx[tx.currency] == 'x'",
        ] {
            let p = problems(e);
            assert!(p[0].position.is_some(), "{e}: {p:?}");
        }
        assert_eq!(problem("tx['emial'] == 'x'").1, (1, 4));
        assert_eq!(problem("[tx][0].emial == 'x'").1, (1, 2));
        // A literal index on a real field reads it.
        assert!(holds("tx['currency'] == 'EUR' && tx['amount'] == 12345"));
        assert!(check_rule(&spec(
            "r",
            "features['amount'] >= 0.0 && has(tx.email)",
            RuleAction::Block
        ))
        .is_ok());
    }

    const MAX_EXPRESSION_BYTES_FOR_TEST: usize = super::super::MAX_EXPRESSION_BYTES;

    #[test]
    fn text_fields_are_checked_with_the_expression() {
        let mut s = spec("r", "amonut > 1", RuleAction::Block);
        s.name = String::new();
        let p = check_rule(&s).unwrap_err();
        assert!(p.iter().any(|p| p.field == "name"));
        assert!(p
            .iter()
            .any(|p| p.field == "expression" && p.message.contains("amonut")));
    }

    #[test]
    fn a_ruleset_refuses_duplicate_ids_too_many_rules_and_names_each_bad_rule() {
        let dup = CompiledRuleset::compile(&ruleset(
            MatchMode::FirstMatched,
            vec![
                spec("same", "true", RuleAction::Block),
                spec("same", "false", RuleAction::Review),
            ],
        ))
        .unwrap_err();
        assert_eq!(dup.len(), 1);
        assert_eq!((dup[0].rule.as_deref(), dup[0].field.as_str()), (Some("same"), "id"));
        assert!(dup[0].message.contains("same"));
        let many: Vec<RuleSpec> = (0..=MAX_RULES_PER_RULESET)
            .map(|i| spec(&format!("r{i}"), "true", RuleAction::Tag))
            .collect();
        let p = CompiledRuleset::compile(&ruleset(MatchMode::AllMatched, many)).unwrap_err();
        assert_eq!(p[0].field, "rules");
        let bad = CompiledRuleset::compile(&ruleset(
            MatchMode::AllMatched,
            vec![
                spec("ok", "true", RuleAction::Tag),
                spec("bad1", "nope", RuleAction::Tag),
                spec("bad2", "tx.x", RuleAction::Tag),
            ],
        ))
        .unwrap_err();
        let named: Vec<_> = bad.iter().map(|p| p.rule.as_deref().unwrap()).collect();
        assert_eq!(named, ["bad1", "bad2"]);
        let rs = compiled(MatchMode::AllMatched, vec![spec("ok", "true", RuleAction::Tag)]);
        assert_eq!((rs.version(), rs.len(), rs.mode()), (7, 1, MatchMode::AllMatched));
    }

    #[test]
    fn a_compiled_ruleset_is_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<CompiledRuleset>();
        let rs = Arc::new(compiled(
            MatchMode::FirstMatched,
            vec![spec("b", "tx.amount > 100", RuleAction::Block)],
        ));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let rs = Arc::clone(&rs);
                std::thread::spawn(move || (0..100).all(|_| run(&rs, 0.0).decision == Decision::Block))
            })
            .collect();
        assert!(handles.into_iter().all(|h| h.join().unwrap()));
    }

    /// Checks (and, when it passes, compiles and evaluates) `expression`: nothing may panic.
    fn survive(expression: &str) {
        let s = spec("r", expression, RuleAction::Block);
        if check_rule(&s).is_ok() {
            let rs = compiled(MatchMode::AllMatched, vec![s]);
            let t = tx();
            rs.evaluate(&input(&t, 0.5), T, &lists());
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(10);
        const TOKENS: [&str; 48] = [
            "tx", "features", "score", ".", "amount", "email", "metadata", "k", "(", ")", "[", "]", "{", "}", ",", ":",
            "?", "&&", "||", "!", "-", "+", "*", "/", "%", "==", "<", ">=", " in ", "'a'", "\"b\"", "1", "2.5", "0u",
            "true", "null", "b'x'", "has", "all", "exists", "map", "filter", "size", "in_list", "matches", "x", "@",
            "`",
        ];
        for _ in 0..3_000 {
            let n = rng.gen_range(1..30);
            let s: String = (0..n).map(|_| TOKENS[rng.gen_range(0..TOKENS.len())]).collect();
            survive(&s);
        }
        for _ in 0..1_000 {
            let n = rng.gen_range(0..64);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            survive(&String::from_utf8_lossy(&bytes));
        }
        // Well-formed shapes around the edges.
        for s in [
            "tx.metadata.map(k, k) == ['a']",
            "tx.metadata.filter(k, k == 'channel').size() == 1",
            "[1, 2].exists_one(x, x == 1)",
            "{'a': 1}.a == 1",
            "{'a': 1, 'a': 2}.a == 1",
            "has(tx.metadata)",
            "has(score.x)",
            "tx == tx",
            "features == features",
            "type(tx) == type(tx)",
            "tx.occurred_at + duration('1h') > timestamp('2018-01-01T00:00:00Z')",
            "timestamp('garbage') > tx.occurred_at",
            "int('x') == 1",
            "tx.amount * 9223372036854775807 > 0",
            "-9223372036854775808 - 1 < 0",
            "[1][5] == 1",
            "Foo{a: 1} == 1",
            "size(in_list) == 1",
            "in_list(in_list(tx.email, 'a'), 'b')",
            "dyn(tx.amount) == 12345",
            "tx.metadata.all(k, has(tx.metadata.k))",
        ] {
            survive(s);
        }
        // Deep nesting of every bracket, far beyond any limit (refused before parsing, or by length).
        for (open, close) in [("(", ")"), ("[", "]"), ("{", "}"), ("f(", ")")] {
            survive(&format!("{}1{}", open.repeat(100_000), close.repeat(100_000)));
            survive(&format!("{}1{}", open.repeat(500), close.repeat(500)));
            survive(&open.repeat(1_000));
        }
        survive(&"!".repeat(2_000));
        survive(&"-".repeat(2_000));
        survive(&format!("{} c", "a ? b :".repeat(290)));
        survive(&vec!["1"; 1000].join("+"));
        survive(&format!("tx{}", ".amount".repeat(290)));
    }

    /// A random condition, mostly within the fast subset, with errors (absent fields, missing
    /// keys, overflow, division by zero, NaN) reachable.
    fn random_condition(rng: &mut impl Rng, depth: u32) -> String {
        fn num(rng: &mut impl Rng, depth: u32) -> String {
            const LEAVES: [&str; 14] = [
                "tx.amount",
                "tx.hour",
                "tx.weekday",
                "risk_score",
                "features.terminal_risk_7d",
                "features.amount",
                "score",
                "tx.amount_major",
                "1",
                "0",
                "-3",
                "9223372036854775807",
                "2.5",
                "(0.0 / 0.0)",
            ];
            if depth == 0 || rng.gen_bool(0.5) {
                return LEAVES[rng.gen_range(0..LEAVES.len())].to_owned();
            }
            let op = ["+", "-", "*", "/", "%"][rng.gen_range(0..5)];
            if rng.gen_bool(0.1) {
                return format!("-({})", num(rng, depth - 1));
            }
            format!("({} {op} {})", num(rng, depth - 1), num(rng, depth - 1))
        }
        fn text(rng: &mut impl Rng) -> String {
            const LEAVES: [&str; 9] = [
                "tx.email",
                "tx.country",
                "tx.metadata.channel",
                "tx.metadata.nope",
                "tx.currency",
                "model_version",
                "'EUR'",
                "''",
                "'bob@example.com'",
            ];
            LEAVES[rng.gen_range(0..LEAVES.len())].to_owned()
        }
        let d = depth.saturating_sub(1);
        match rng.gen_range(0..13) {
            0 if depth > 0 => format!("({} && {})", random_condition(rng, d), random_condition(rng, d)),
            1 if depth > 0 => format!("({} || {})", random_condition(rng, d), random_condition(rng, d)),
            2 if depth > 0 => format!("!{}", random_condition(rng, d)),
            3 if depth > 0 => format!(
                "({} ? {} : {})",
                random_condition(rng, d),
                random_condition(rng, d),
                random_condition(rng, d)
            ),
            4 => [
                "has(tx.email)",
                "has(tx.country)",
                "has(tx.metadata.channel)",
                "has(tx.metadata.nope)",
                "true",
                "false",
            ][rng.gen_range(0..6)]
            .to_owned(),
            5 => format!(
                "{}.{}({})",
                text(rng),
                ["startsWith", "endsWith", "contains"][rng.gen_range(0..3)],
                text(rng)
            ),
            6 => format!("in_list({}, '{}')", text(rng), ["emails", "gone"][rng.gen_range(0..2)]),
            7 => format!("{} in ['EUR', 'web', 'bob@example.com']", text(rng)),
            8 => format!("{} in [1, 22, 12345]", num(rng, 1)),
            9 => format!(
                "{} {} {}",
                text(rng),
                ["==", "!=", "<", ">="][rng.gen_range(0..4)],
                text(rng)
            ),
            10 => format!("has(tx.email) {} (tx.amount > 5)", ["==", "!="][rng.gen_range(0..2)]),
            _ => format!(
                "{} {} {}",
                num(rng, depth.min(2)),
                ["==", "!=", "<", "<=", ">", ">="][rng.gen_range(0..6)],
                num(rng, depth.min(2))
            ),
        }
    }

    #[test]
    fn the_fast_path_agrees_with_cel() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
        let l = lists();
        let mut bare = tx();
        bare.extras = RequestExtras::NONE;
        let mut odd = tx();
        odd.features.0[12] = f64::NAN;
        odd.extras.email = Some("bob@example.com".into());
        let inputs = [(tx(), 0.5), (bare, 0.0), (odd, f64::NAN)];
        let (mut fast_rules, mut compared) = (0, 0);
        for _ in 0..4_000 {
            let expr = random_condition(&mut rng, 3);
            let s = spec("r", &expr, RuleAction::Tag);
            if check_rule(&s).is_err() {
                continue;
            }
            let rs = ruleset(MatchMode::AllMatched, vec![s]);
            let fast = CompiledRuleset::compile_with(&rs, true).unwrap();
            let cel = CompiledRuleset::compile_with(&rs, false).unwrap();
            if !matches!(fast.rules[0].eval, Eval::Fast(_)) {
                continue;
            }
            fast_rules += 1;
            for (t, score) in &inputs {
                let outcome = |c: &CompiledRuleset| {
                    let v = c.evaluate(&input(t, *score), T, &l);
                    v.hits.first().map(|h| h.status)
                };
                assert_eq!(
                    outcome(&fast),
                    outcome(&cel),
                    "{expr} with score {score} on {:?}",
                    t.extras
                );
                compared += 1;
            }
        }
        assert!(fast_rules > 2_000, "only {fast_rules} random rules took the fast path");
        assert!(compared > 6_000);
    }

    #[test]
    fn rules_outside_the_typed_subset_run_on_cel() {
        let kind = |expr: &str| {
            let rs = compiled(MatchMode::AllMatched, vec![spec("r", expr, RuleAction::Tag)]);
            matches!(rs.rules[0].eval, Eval::Fast(_))
        };
        assert!(kind(
            "tx.amount > 100 && features.terminal_risk_7d > 0.5 && in_list(tx.email, 'x')"
        ));
        assert!(kind(
            "has(tx.email) && tx.email.endsWith('.ru') || tx.country in ['NG', 'GH']"
        ));
        assert!(!kind("tx.metadata.exists(k, k == 'a')"));
        assert!(!kind("tx.occurred_at > timestamp('2018-01-01T00:00:00Z')"));
        assert!(!kind("tx.amount + 1.5 > 2.0"), "int + double is cel's error to raise");
        assert!(!kind("size(tx.email) > 3"));
        let rs = compiled(
            MatchMode::AllMatched,
            vec![
                spec("a", "tx.amount > 1", RuleAction::Tag),
                spec("b", "size(tx.email) > 3", RuleAction::Tag),
            ],
        );
        assert_eq!(rs.interpreted(), 1);
    }
}
