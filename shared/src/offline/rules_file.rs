//! Rules and lists from local files, for `verdict score` and `verdict backtest`: the same
//! compiled ruleset and list indexes the API and batch scoring build from DynamoDB.
//!
//! A rules file is JSON: `{"mode": "FIRST_MATCHED", "rules": [<RuleSpec>, …]}` (the API's rule
//! bodies). A list is `NAME=KIND:PATH`, the file in the format of a list upload (see
//! `domain::list_upload`): one value per line, optionally `,<expires_at RFC 3339>,<note>`, with an
//! optional `value,expires_at,note` header; blank lines are skipped.

use crate::app::rules::{check_entry, EntryInput};
use crate::domain::list_upload::parse_lines;
use crate::domain::rules::engine::CompiledRuleset;
use crate::domain::rules::lists::ListIndex;
use crate::domain::rules::{ListKind, MatchMode, Rule, RuleSpec, Ruleset, RulesetStatus, MAX_LIST_ENTRIES};
use crate::domain::{ListName, Timestamp};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Who a local file's rules and entries are attributed to.
const LOCAL: &str = "local file";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    mode: MatchMode,
    #[serde(default)]
    description: String,
    rules: Vec<RuleSpec>,
}

/// The rules of `path` as ruleset version 0 (a local draft), each rule at version 1, compiled.
pub fn load_ruleset(path: &Path) -> Result<(Ruleset, CompiledRuleset), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: RulesFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: not a rules file: {e}", path.display()))?;
    let now = Timestamp::now();
    let ruleset = Ruleset {
        version: 0,
        status: RulesetStatus::Draft,
        mode: file.mode,
        description: file.description,
        rules: file
            .rules
            .into_iter()
            .map(|spec| Rule {
                spec,
                version: 1,
                created_by: LOCAL.into(),
                created_at: now,
            })
            .collect(),
        created_by: LOCAL.into(),
        created_at: now,
        published_by: None,
        published_at: None,
    };
    let compiled = CompiledRuleset::compile(&ruleset).map_err(|problems| {
        let lines: Vec<String> = problems
            .iter()
            .map(|p| {
                let at = p.position.map_or(String::new(), |pos| {
                    format!(" at line {}, column {}", pos.line, pos.column)
                });
                format!(
                    "  rule {}: {}{at}: {}",
                    p.rule.as_deref().unwrap_or("-"),
                    p.field,
                    p.message
                )
            })
            .collect();
        format!("{}: the rules do not compile:\n{}", path.display(), lines.join("\n"))
    })?;
    Ok((ruleset, compiled))
}

/// A `--list NAME=KIND:PATH` argument.
#[derive(Debug, Clone)]
pub struct ListArg {
    pub name: ListName,
    pub kind: ListKind,
    pub path: PathBuf,
}

impl std::str::FromStr for ListArg {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let (name, rest) = raw
            .split_once('=')
            .ok_or_else(|| format!("{raw:?} is not NAME=KIND:PATH"))?;
        let (kind, path) = rest
            .split_once(':')
            .ok_or_else(|| format!("{raw:?} is not NAME=KIND:PATH"))?;
        let name = ListName::parse(name).map_err(|e| format!("list name {name:?}: {}", e.reason))?;
        let kind: ListKind = serde_json::from_value(serde_json::Value::String(kind.into())).map_err(|_| {
            format!("{kind:?} is not a list kind (customer_id, terminal_id, email, ip, country, bin, string)")
        })?;
        Ok(ListArg {
            name,
            kind,
            path: path.into(),
        })
    }
}

/// The lists, each indexed as scoring indexes it. The file is read as a list upload is
/// ([`parse_lines`]) and each entry checked as the API checks it ([`check_entry`]); the first bad
/// line names the file, line and field.
pub fn load_lists(args: &[ListArg]) -> Result<HashMap<ListName, Arc<ListIndex>>, String> {
    let mut out = HashMap::new();
    for a in args {
        let bytes = std::fs::read(&a.path).map_err(|e| format!("cannot read {}: {e}", a.path.display()))?;
        let lines = parse_lines(&bytes).map_err(|(line, why)| format!("{}:{line}: {why}", a.path.display()))?;
        let now = Timestamp::now();
        let mut entries = Vec::with_capacity(lines.len());
        for l in lines {
            let at = format!("{}:{}", a.path.display(), l.line);
            let row = l
                .row
                .map_err(|e| format!("{at}: {}: {}", e.field.unwrap_or("line"), e.reason))?;
            let input = EntryInput {
                value: row.value,
                expires_at: row.expires_at,
                note: row.note,
            };
            let entry = check_entry(a.kind, input, LOCAL, now).map_err(|problems| {
                let (field, why) = problems.into_iter().next().unwrap_or(("value", String::new()));
                format!("{at}: {field}: {why}")
            })?;
            entries.push(entry);
            if entries.len() > MAX_LIST_ENTRIES {
                return Err(format!("{}: more than {MAX_LIST_ENTRIES} entries", a.path.display()));
            }
        }
        out.insert(a.name.clone(), Arc::new(ListIndex::build(a.kind, &entries)));
    }
    Ok(out)
}
