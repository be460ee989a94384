//! The rules service: saving rules, building, publishing, activating and rolling back rulesets,
//! and editing lists, each change recorded in the audit trail with the key that made it.
//!
//! Every check happens before anything is written, so a refusal changes nothing, and nothing
//! already active changes on any refusal.

use crate::domain::rules::engine::{check_rule, CompiledRuleset};
use crate::domain::rules::lists::normalise;
use crate::domain::rules::{
    AuditEntry, ListEntry, ListKind, ListMeta, MatchMode, Rule, RuleProblem, RuleSpec, Ruleset, RulesetPointer,
    RulesetStatus, MAX_ENTRIES_PER_REQUEST, MAX_LISTS, MAX_RULES_PER_RULESET, MAX_TEXT_BYTES,
};
use crate::domain::{ListName, RuleId, TenantId, Timestamp};
use crate::ports::rules::{ListChange, RulesAdmin};
use crate::ports::{Page, StoreError};
use std::collections::{BTreeMap, BTreeSet};

/// A stored ruleset larger than this is refused (DynamoDB items hold 400 KB).
pub const MAX_RULESET_BYTES: usize = 300 * 1024;

/// Why a change was refused. [`RulesError::Store`] alone may pass on a retry.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The request itself is wrong: each problem names the rule, field and position.
    #[error("{} problem(s) in the request", .0.len())]
    Invalid(Vec<RuleProblem>),
    #[error("{0}")]
    NotFound(String),
    /// The tenant's state does not allow it (a draft activated, the pointer moved, a list
    /// missing at activation). The message is written for the API's `detail`.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for RulesError {
    fn from(e: StoreError) -> Self {
        RulesError::Store(e)
    }
}

fn invalid(field: &str, message: impl Into<String>) -> RulesError {
    RulesError::Invalid(vec![RuleProblem::field(None, field, message)])
}

/// Which rule version a new ruleset takes: the latest when `version` is absent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleRef {
    pub id: RuleId,
    #[serde(default)]
    pub version: Option<u32>,
}

/// A new ruleset as a client asks for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesetDraft {
    #[serde(default)]
    pub mode: MatchMode,
    #[serde(default)]
    pub description: String,
    pub rules: Vec<RuleRef>,
}

/// One list entry as a client sends it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryInput {
    pub value: String,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub note: Option<String>,
}

/// A rule version and whether this request stored it (`false`: the latest version already
/// said the same, so nothing was written: a retried save is not a new version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub rule: Rule,
    pub created: bool,
}

/// The pointer and the ruleset it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRuleset {
    pub pointer: RulesetPointer,
    pub ruleset: Ruleset,
}

/// The rules service over a [`RulesAdmin`] store. `actor` is the key id making the change.
pub struct RulesService<'a, S> {
    store: &'a S,
}

impl<'a, S: RulesAdmin> RulesService<'a, S> {
    pub fn new(store: &'a S) -> Self {
        RulesService { store }
    }

    fn audit(actor: &str, action: &str, target: String, detail: String) -> AuditEntry {
        AuditEntry {
            at: Timestamp::now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target,
            detail,
        }
    }

    /// Every problem of a rule as it would be saved: text, expression, and the lists it names
    /// (which must exist and be of a kind the rule can use).
    pub async fn validate(&self, tenant: &TenantId, spec: &RuleSpec) -> Result<(), RulesError> {
        let refs = check_rule(spec).map_err(RulesError::Invalid)?;
        let existing = self.list_kinds(tenant).await?;
        let missing: Vec<RuleProblem> = refs
            .lists
            .iter()
            .filter(|l| !existing.contains_key(*l))
            .map(|l| {
                let at = spec
                    .expression
                    .find(&format!("\"{l}\""))
                    .or_else(|| spec.expression.find(&format!("'{l}'")));
                match at {
                    Some(offset) => RuleProblem::at(
                        Some(&spec.id),
                        &spec.expression,
                        offset,
                        format!("no list named \"{l}\""),
                    ),
                    None => RuleProblem::field(Some(&spec.id), "expression", format!("no list named \"{l}\"")),
                }
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(RulesError::Invalid(missing))
        }
    }

    async fn list_kinds(&self, tenant: &TenantId) -> Result<BTreeMap<ListName, ListKind>, RulesError> {
        Ok(self
            .store
            .lists(tenant)
            .await?
            .into_iter()
            .map(|m| (m.name, m.kind))
            .collect())
    }

    /// Saves `spec` as the rule's next version (1 for a new id). If the latest version already
    /// says exactly this, it is answered as is and nothing is written.
    pub async fn save_rule(&self, tenant: &TenantId, actor: &str, spec: RuleSpec) -> Result<Saved, RulesError> {
        // `/v1/rules/validate` is a route: a rule by that id could not be read back.
        if spec.id.as_str() == "validate" {
            return Err(RulesError::Invalid(vec![RuleProblem::field(
                Some(&spec.id),
                "id",
                "\"validate\" is reserved (POST /v1/rules/validate)",
            )]));
        }
        self.validate(tenant, &spec).await?;
        let latest = self.store.rule(tenant, &spec.id, None).await?;
        if let Some(rule) = latest.as_ref().filter(|r| r.spec == spec) {
            return Ok(Saved {
                rule: rule.clone(),
                created: false,
            });
        }
        let version = latest.map_or(1, |r| r.version.saturating_add(1));
        let rule = Rule {
            spec,
            version,
            created_by: actor.to_owned(),
            created_at: Timestamp::now(),
        };
        let audit = Self::audit(
            actor,
            if version == 1 { "rule.create" } else { "rule.update" },
            format!("rule:{}@{version}", rule.spec.id),
            rule.spec.name.clone(),
        );
        match self.store.put_rule(tenant, &rule, &audit).await {
            Ok(()) => Ok(Saved { rule, created: true }),
            Err(StoreError::Conflict(_)) => Err(RulesError::Conflict(format!(
                "Rule \"{}\" was saved by another request at the same time; read it again and retry.",
                rule.spec.id
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn rule(&self, tenant: &TenantId, id: &RuleId, version: Option<u32>) -> Result<Rule, RulesError> {
        self.store.rule(tenant, id, version).await?.ok_or_else(|| {
            RulesError::NotFound(match version {
                Some(v) => format!("No version {v} of rule \"{id}\"."),
                None => format!("No rule \"{id}\"."),
            })
        })
    }

    pub async fn rules(&self, tenant: &TenantId, limit: usize, cursor: Option<&str>) -> Result<Page<Rule>, StoreError> {
        self.store.rules(tenant, limit, cursor).await
    }

    /// A new draft ruleset of the given rule versions, compiled to prove it would run.
    pub async fn create_ruleset(
        &self,
        tenant: &TenantId,
        actor: &str,
        draft: RulesetDraft,
    ) -> Result<Ruleset, RulesError> {
        if draft.description.len() > MAX_TEXT_BYTES {
            return Err(invalid(
                "description",
                format!("must be at most {MAX_TEXT_BYTES} bytes"),
            ));
        }
        if draft.rules.len() > MAX_RULES_PER_RULESET {
            return Err(invalid(
                "rules",
                format!("has {} rules; at most {MAX_RULES_PER_RULESET}", draft.rules.len()),
            ));
        }
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        let mut rules = Vec::with_capacity(draft.rules.len());
        for (i, r) in draft.rules.iter().enumerate() {
            if !seen.insert(&r.id) {
                problems.push(RuleProblem::field(
                    Some(&r.id),
                    &format!("rules[{i}].id"),
                    "appears more than once",
                ));
                continue;
            }
            match self.store.rule(tenant, &r.id, r.version).await? {
                Some(rule) => rules.push(rule),
                None => problems.push(RuleProblem::field(
                    Some(&r.id),
                    &format!("rules[{i}]"),
                    match r.version {
                        Some(v) => format!("no version {v} of rule \"{}\"", r.id),
                        None => format!("no rule \"{}\"", r.id),
                    },
                )),
            }
        }
        if !problems.is_empty() {
            return Err(RulesError::Invalid(problems));
        }
        let mut ruleset = Ruleset {
            version: 0,
            status: RulesetStatus::Draft,
            mode: draft.mode,
            description: draft.description,
            rules,
            created_by: actor.to_owned(),
            created_at: Timestamp::now(),
            published_by: None,
            published_at: None,
        };
        let compiled = CompiledRuleset::compile(&ruleset).map_err(RulesError::Invalid)?;
        let size = serde_json::to_vec(&ruleset).map_or(usize::MAX, |b| b.len());
        if size > MAX_RULESET_BYTES {
            return Err(invalid(
                "rules",
                format!("the ruleset is {size} bytes stored; at most {MAX_RULESET_BYTES}"),
            ));
        }
        // A list deleted since its rule was saved is caught here, and again at activation.
        let kinds = self.list_kinds(tenant).await?;
        let missing: Vec<_> = compiled.lists().iter().filter(|l| !kinds.contains_key(*l)).collect();
        if !missing.is_empty() {
            return Err(invalid(
                "rules",
                format!("names lists that do not exist: {}", join(&missing)),
            ));
        }
        // Versions are numbered by the store's latest; a concurrent create takes the next one.
        for _ in 0..3 {
            ruleset.version = self
                .store
                .latest_ruleset_version(tenant)
                .await?
                .map_or(1, |v| v.saturating_add(1));
            let audit = Self::audit(
                actor,
                "ruleset.create",
                format!("ruleset:{}", ruleset.version),
                format!("{} rules, {:?}", ruleset.rules.len(), ruleset.mode),
            );
            match self.store.put_ruleset(tenant, &ruleset, &audit).await {
                Ok(()) => return Ok(ruleset),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RulesError::Store(StoreError::Unavailable(
            "ruleset versions kept being taken by concurrent requests".into(),
        )))
    }

    pub async fn ruleset(&self, tenant: &TenantId, version: u32) -> Result<Ruleset, RulesError> {
        self.store
            .ruleset(tenant, version)
            .await?
            .ok_or_else(|| RulesError::NotFound(format!("No ruleset version {version}.")))
    }

    pub async fn rulesets(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Ruleset>, StoreError> {
        self.store.rulesets(tenant, limit, cursor).await
    }

    /// Publishes a draft. Publishing a published ruleset again answers it unchanged.
    pub async fn publish(&self, tenant: &TenantId, actor: &str, version: u32) -> Result<Ruleset, RulesError> {
        let current = self.ruleset(tenant, version).await?;
        if current.status == RulesetStatus::Published {
            return Ok(current);
        }
        let audit = Self::audit(actor, "ruleset.publish", format!("ruleset:{version}"), String::new());
        match self.store.publish_ruleset(tenant, version, &audit).await {
            Ok(r) => Ok(r),
            // Published by a concurrent request in between: the same end state.
            Err(StoreError::Conflict(_)) => self.ruleset(tenant, version).await,
            Err(StoreError::NotFound(_)) => Err(RulesError::NotFound(format!("No ruleset version {version}."))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn active(&self, tenant: &TenantId) -> Result<Option<ActiveRuleset>, RulesError> {
        let Some(pointer) = self.store.ruleset_pointer(tenant).await? else {
            return Ok(None);
        };
        let ruleset = self.ruleset(tenant, pointer.version).await?;
        Ok(Some(ActiveRuleset { pointer, ruleset }))
    }

    /// Points the tenant at a published ruleset. `expected` is the active version the caller
    /// read (`Some(None)`: none was active); without it, the pointer as read here. Either way the
    /// pointer moves only from that version. Activating the active version changes nothing.
    pub async fn activate(
        &self,
        tenant: &TenantId,
        actor: &str,
        version: u32,
        expected: Option<Option<u32>>,
    ) -> Result<ActiveRuleset, RulesError> {
        let ruleset = self.ruleset(tenant, version).await?;
        if ruleset.status != RulesetStatus::Published {
            return Err(RulesError::Conflict(format!(
                "Ruleset {version} is a draft; publish it before activating it."
            )));
        }
        let current = self.store.ruleset_pointer(tenant).await?;
        let at = current.as_ref().map(|p| p.version);
        if let Some(expected) = expected {
            if expected != at {
                return Err(moved(expected, at));
            }
        }
        if let Some(p) = current.as_ref().filter(|p| p.version == version) {
            return Ok(ActiveRuleset {
                pointer: p.clone(),
                ruleset,
            });
        }
        self.move_pointer(tenant, actor, ruleset, at, "ruleset.activate").await
    }

    /// Back to the previously active ruleset; a second rollback undoes the first.
    pub async fn rollback(
        &self,
        tenant: &TenantId,
        actor: &str,
        expected: Option<Option<u32>>,
    ) -> Result<ActiveRuleset, RulesError> {
        let current = self.store.ruleset_pointer(tenant).await?;
        let at = current.as_ref().map(|p| p.version);
        if let Some(expected) = expected {
            if expected != at {
                return Err(moved(expected, at));
            }
        }
        let Some(current) = current else {
            return Err(RulesError::Conflict(
                "No ruleset is active for this tenant, so there is nothing to roll back.".into(),
            ));
        };
        let Some(previous) = current.previous_version else {
            return Err(RulesError::Conflict(format!(
                "Ruleset {} is active and no ruleset was active before it.",
                current.version
            )));
        };
        let ruleset = self.ruleset(tenant, previous).await?;
        self.move_pointer(tenant, actor, ruleset, at, "ruleset.rollback").await
    }

    async fn move_pointer(
        &self,
        tenant: &TenantId,
        actor: &str,
        ruleset: Ruleset,
        from: Option<u32>,
        action: &str,
    ) -> Result<ActiveRuleset, RulesError> {
        // The compiled form is what scoring will run: prove it compiles and its lists exist.
        let compiled = CompiledRuleset::compile(&ruleset).map_err(|p| {
            RulesError::Conflict(format!(
                "Ruleset {} no longer compiles ({} problem(s), first: {}).",
                ruleset.version,
                p.len(),
                p.first().map_or(String::new(), |p| p.message.clone())
            ))
        })?;
        let kinds = self.list_kinds(tenant).await?;
        let missing: Vec<_> = compiled.lists().iter().filter(|l| !kinds.contains_key(*l)).collect();
        if !missing.is_empty() {
            return Err(RulesError::Conflict(format!(
                "Ruleset {} uses lists that do not exist: {}. Create them first.",
                ruleset.version,
                join(&missing)
            )));
        }
        let pointer = RulesetPointer {
            version: ruleset.version,
            previous_version: from,
            activated_by: actor.to_owned(),
            activated_at: Timestamp::now(),
        };
        let detail = match from {
            Some(f) => format!("from {f} to {}", ruleset.version),
            None => format!("to {}", ruleset.version),
        };
        let audit = Self::audit(actor, action, format!("ruleset:{}", ruleset.version), detail);
        match self.store.move_ruleset_pointer(tenant, from, &pointer, &audit).await {
            Ok(()) => Ok(ActiveRuleset { pointer, ruleset }),
            Err(StoreError::Conflict(_)) => Err(RulesError::Conflict(
                "The active ruleset changed while this request ran; read it again and retry.".into(),
            )),
            Err(StoreError::NotFound(_)) => Err(RulesError::Conflict(format!(
                "Ruleset {} is not published.",
                ruleset.version
            ))),
            Err(e) => Err(e.into()),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Lists

    pub async fn create_list(
        &self,
        tenant: &TenantId,
        actor: &str,
        name: ListName,
        kind: ListKind,
        description: String,
    ) -> Result<ListMeta, RulesError> {
        if description.len() > MAX_TEXT_BYTES {
            return Err(invalid(
                "description",
                format!("must be at most {MAX_TEXT_BYTES} bytes"),
            ));
        }
        if let Some(existing) = self.store.list_meta(tenant, &name).await? {
            return if existing.kind == kind && existing.description == description {
                Ok(existing)
            } else {
                Err(RulesError::Conflict(format!(
                    "A list named \"{name}\" already exists (kind {}).",
                    existing.kind.as_str()
                )))
            };
        }
        if self.store.lists(tenant).await?.len() >= MAX_LISTS {
            return Err(RulesError::Conflict(format!(
                "This tenant already has {MAX_LISTS} lists, the most it can have."
            )));
        }
        let now = Timestamp::now();
        let meta = ListMeta {
            name: name.clone(),
            kind,
            description,
            version: 0,
            entries: 0,
            created_by: actor.to_owned(),
            created_at: now,
            updated_at: now,
        };
        let audit = Self::audit(actor, "list.create", format!("list:{name}"), kind.as_str().to_owned());
        match self.store.create_list(tenant, &meta, &audit).await {
            Ok(()) => Ok(meta),
            Err(StoreError::Conflict(_)) => Err(RulesError::Conflict(format!(
                "A list named \"{name}\" was created by another request at the same time."
            ))),
            Err(StoreError::LimitReached(why)) => Err(RulesError::Conflict(why)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list(&self, tenant: &TenantId, name: &ListName) -> Result<ListMeta, RulesError> {
        self.store
            .list_meta(tenant, name)
            .await?
            .ok_or_else(|| RulesError::NotFound(format!("No list \"{name}\".")))
    }

    pub async fn lists(&self, tenant: &TenantId) -> Result<Vec<ListMeta>, StoreError> {
        self.store.lists(tenant).await
    }

    /// Adds or updates up to [`MAX_ENTRIES_PER_REQUEST`] entries. Every value is checked against
    /// the list's kind first; one bad value refuses the whole request, naming `entries[i].value`.
    /// A value sent twice keeps its last expiry and note. Retrying the same request is harmless:
    /// the second time every value counts as updated. (A file upload, `app::list_import`, checks
    /// each line with the same [`check_entry`] but applies the good lines and reports the bad.)
    pub async fn add_entries(
        &self,
        tenant: &TenantId,
        actor: &str,
        name: &ListName,
        entries: Vec<EntryInput>,
    ) -> Result<ListChange, RulesError> {
        let meta = self.list(tenant, name).await?;
        check_count("entries", entries.len())?;
        let now = Timestamp::now();
        let mut problems = Vec::new();
        let mut checked = Vec::with_capacity(entries.len());
        for (i, e) in entries.into_iter().enumerate() {
            match check_entry(meta.kind, e, actor, now) {
                Ok(entry) => checked.push(entry),
                Err(bad) => problems.extend(
                    bad.into_iter()
                        .map(|(field, why)| RuleProblem::field(None, &format!("entries[{i}].{field}"), why)),
                ),
            }
        }
        if !problems.is_empty() {
            return Err(RulesError::Invalid(problems));
        }
        self.apply_entries(tenant, actor, name, checked).await
    }

    /// Writes up to [`MAX_ENTRIES_PER_REQUEST`] entries already checked by [`check_entry`], with
    /// their audit entry. A value given twice keeps its last expiry and note. Over the list's cap
    /// it is a [`RulesError::Conflict`] and nothing is written.
    pub async fn apply_entries(
        &self,
        tenant: &TenantId,
        actor: &str,
        name: &ListName,
        entries: Vec<ListEntry>,
    ) -> Result<ListChange, RulesError> {
        check_count("entries", entries.len())?;
        let mut by_value: BTreeMap<String, ListEntry> = BTreeMap::new();
        for e in entries {
            by_value.insert(e.value.clone(), e);
        }
        let entries: Vec<ListEntry> = by_value.into_values().collect();
        let audit = Self::audit(
            actor,
            "list.entries.add",
            format!("list:{name}"),
            format!("{} value(s)", entries.len()),
        );
        match self.store.add_list_entries(tenant, name, &entries, &audit).await {
            Ok(change) => Ok(change),
            Err(StoreError::NotFound(_)) => Err(RulesError::NotFound(format!("No list \"{name}\"."))),
            // Over the cap: an oversized list, refused like any other bad input; nothing added.
            Err(StoreError::LimitReached(why)) => Err(invalid("entries", why)),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds one entry checked by [`check_entry`] only if its value is absent: an entry already
    /// there keeps its expiry, note and author, nothing is written (no version bump, no audit
    /// entry), and it is returned. A concurrent add of the same value between the look-up and the
    /// write is updated by [`Self::apply_entries`] as usual.
    pub async fn add_entry_if_absent(
        &self,
        tenant: &TenantId,
        actor: &str,
        name: &ListName,
        entry: ListEntry,
    ) -> Result<Option<ListEntry>, RulesError> {
        if let Some(there) = self.store.list_entry(tenant, name, &entry.value).await? {
            return Ok(Some(there));
        }
        self.apply_entries(tenant, actor, name, vec![entry]).await?;
        Ok(None)
    }

    /// Removes values (parsed as the list's kind, so `A@B.COM` removes `a@b.com`).
    pub async fn remove_entries(
        &self,
        tenant: &TenantId,
        actor: &str,
        name: &ListName,
        values: Vec<String>,
    ) -> Result<ListChange, RulesError> {
        let meta = self.list(tenant, name).await?;
        check_count("values", values.len())?;
        let mut problems = Vec::new();
        let mut normalised = BTreeSet::new();
        for (i, v) in values.iter().enumerate() {
            match normalise(meta.kind, v) {
                Ok(v) => {
                    normalised.insert(v);
                }
                Err(why) => problems.push(RuleProblem::field(None, &format!("values[{i}]"), why)),
            }
        }
        if !problems.is_empty() {
            return Err(RulesError::Invalid(problems));
        }
        let values: Vec<String> = normalised.into_iter().collect();
        let audit = Self::audit(
            actor,
            "list.entries.remove",
            format!("list:{name}"),
            format!("{} value(s)", values.len()),
        );
        match self.store.remove_list_entries(tenant, name, &values, &audit).await {
            Ok(change) => Ok(change),
            Err(StoreError::NotFound(_)) => Err(RulesError::NotFound(format!("No list \"{name}\"."))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn entries(
        &self,
        tenant: &TenantId,
        name: &ListName,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ListEntry>, RulesError> {
        self.list(tenant, name).await?;
        Ok(self.store.list_entries(tenant, name, limit, cursor).await?)
    }

    pub async fn audit_trail(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuditEntry>, StoreError> {
        self.store.audit(tenant, limit, cursor).await
    }
}

/// One entry checked against a list of `kind`, as the API and a file upload both check it: the
/// note's length, then the value normalised ([`normalise`]). The problems name the entry's field
/// (`note`, `value`), in that order.
pub fn check_entry(
    kind: ListKind,
    input: EntryInput,
    actor: &str,
    at: Timestamp,
) -> Result<ListEntry, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    if input.note.as_ref().is_some_and(|n| n.len() > MAX_TEXT_BYTES) {
        problems.push(("note", format!("must be at most {MAX_TEXT_BYTES} bytes")));
    }
    match normalise(kind, &input.value) {
        Ok(value) if problems.is_empty() => Ok(ListEntry {
            value,
            expires_at: input.expires_at,
            note: input.note,
            added_by: actor.to_owned(),
            added_at: at,
        }),
        Ok(_) => Err(problems),
        Err(why) => {
            problems.push(("value", why));
            Err(problems)
        }
    }
}

fn check_count(field: &str, n: usize) -> Result<(), RulesError> {
    if n == 0 {
        return Err(invalid(field, "must hold at least one value"));
    }
    if n > MAX_ENTRIES_PER_REQUEST {
        return Err(invalid(
            field,
            format!("has {n} values; at most {MAX_ENTRIES_PER_REQUEST} per request (upload a file for more)"),
        ));
    }
    Ok(())
}

fn moved(expected: Option<u32>, at: Option<u32>) -> RulesError {
    let show = |v: Option<u32>| v.map_or("none".to_owned(), |v| v.to_string());
    RulesError::Conflict(format!(
        "The active ruleset is {}, not {} as expected; read it again and retry.",
        show(at),
        show(expected)
    ))
}

fn join(names: &[&ListName]) -> String {
    names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rules::{RuleAction, RuleMode, MAX_LIST_ENTRIES};
    use crate::ports::in_memory::{block_on as run, InMemoryDecisions};
    use crate::ports::rules::TenantPolicyRead;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn spec(id: &str, expression: &str, action: RuleAction) -> RuleSpec {
        RuleSpec {
            id: RuleId::parse(id).unwrap(),
            name: format!("Rule {id}"),
            description: String::new(),
            expression: expression.into(),
            action,
            priority: 0,
            mode: RuleMode::Active,
        }
    }

    fn draft(ids: &[&str]) -> RulesetDraft {
        RulesetDraft {
            mode: MatchMode::FirstMatched,
            description: String::new(),
            rules: ids
                .iter()
                .map(|id| RuleRef {
                    id: RuleId::parse(id).unwrap(),
                    version: None,
                })
                .collect(),
        }
    }

    fn entry(v: &str) -> EntryInput {
        EntryInput {
            value: v.into(),
            expires_at: None,
            note: None,
        }
    }

    fn audit_actions(store: &InMemoryDecisions) -> Vec<String> {
        run(store.audit(&acme(), 100, None))
            .unwrap()
            .items
            .into_iter()
            .map(|a| a.action)
            .collect()
    }

    #[test]
    fn an_entry_added_if_absent_leaves_an_existing_one_and_its_version_alone() {
        let store = InMemoryDecisions::default();
        let s = RulesService::new(&store);
        let name = ListName::parse("cards").unwrap();
        run(s.create_list(&acme(), "k", name.clone(), ListKind::CustomerId, String::new())).unwrap();
        let input = EntryInput {
            value: "c-1".into(),
            expires_at: Some(Timestamp::parse("t", "2030-01-01T00:00:00Z").unwrap()),
            note: Some("by hand".into()),
        };
        run(s.add_entries(&acme(), "k", &name, vec![input])).unwrap();
        let version = run(s.list(&acme(), &name)).unwrap().version;
        let audits = audit_actions(&store).len();
        let review = check_entry(ListKind::CustomerId, entry("c-1"), "vk_r", Timestamp::now()).unwrap();
        let there = run(s.add_entry_if_absent(&acme(), "vk_r", &name, review))
            .unwrap()
            .expect("present");
        assert_eq!((there.added_by.as_str(), there.note.as_deref()), ("k", Some("by hand")));
        let stored = run(store.list_entry(&acme(), &name, "c-1")).unwrap().unwrap();
        assert_eq!(stored, there, "kept its expiry, note and author");
        assert_eq!(run(s.list(&acme(), &name)).unwrap().version, version, "no version bump");
        assert_eq!(audit_actions(&store).len(), audits, "no audit entry");
        let new = check_entry(ListKind::CustomerId, entry("c-2"), "vk_r", Timestamp::now()).unwrap();
        assert_eq!(run(s.add_entry_if_absent(&acme(), "vk_r", &name, new)).unwrap(), None);
        assert_eq!(run(s.list(&acme(), &name)).unwrap().entries, 2);
    }

    #[test]
    fn saving_the_same_rule_twice_is_one_version_and_a_change_is_the_next() {
        let store = InMemoryDecisions::default();
        let s = RulesService::new(&store);
        let first = run(s.save_rule(&acme(), "k1", spec("big", "tx.amount > 100", RuleAction::Block))).unwrap();
        assert!(first.created);
        assert_eq!((first.rule.version, first.rule.created_by.as_str()), (1, "k1"));
        let again = run(s.save_rule(&acme(), "k2", spec("big", "tx.amount > 100", RuleAction::Block))).unwrap();
        assert!(!again.created, "a retry is not a new version");
        assert_eq!(again.rule, first.rule);
        let next = run(s.save_rule(&acme(), "k2", spec("big", "tx.amount > 200", RuleAction::Block))).unwrap();
        assert_eq!((next.created, next.rule.version), (true, 2));
        assert_eq!(run(s.rule(&acme(), &next.rule.spec.id, Some(1))).unwrap(), first.rule);
        assert_eq!(audit_actions(&store), ["rule.update", "rule.create"]);
    }

    #[test]
    fn a_rule_naming_a_list_that_does_not_exist_is_refused_at_its_position() {
        let store = InMemoryDecisions::default();
        let s = RulesService::new(&store);
        let e = "has(tx.email) && in_list(tx.email, \"nope\")";
        let Err(RulesError::Invalid(p)) = run(s.save_rule(&acme(), "k", spec("l", e, RuleAction::Block))) else {
            panic!("saved")
        };
        assert_eq!(p[0].rule.as_deref(), Some("l"));
        assert_eq!(p[0].position.unwrap().offset as usize, e.find("\"nope\"").unwrap());
        assert!(
            run(s.rule(&acme(), &RuleId::parse("l").unwrap(), None)).is_err(),
            "nothing stored"
        );
    }

    #[test]
    fn rulesets_are_drafts_until_published_and_only_published_ones_activate() {
        let store = InMemoryDecisions::default();
        let s = RulesService::new(&store);
        run(s.save_rule(&acme(), "k", spec("a", "tx.amount > 1", RuleAction::Review))).unwrap();
        run(s.save_rule(&acme(), "k", spec("b", "tx.amount > 2", RuleAction::Block))).unwrap();
        let Err(RulesError::Invalid(p)) = run(s.create_ruleset(&acme(), "k", draft(&["a", "missing", "a"]))) else {
            panic!("created")
        };
        let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["rules[1]", "rules[2].id"]);

        let v1 = run(s.create_ruleset(&acme(), "k", draft(&["a"]))).unwrap();
        let v2 = run(s.create_ruleset(&acme(), "k", draft(&["a", "b"]))).unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        assert!(matches!(
            run(s.activate(&acme(), "k", 1, None)),
            Err(RulesError::Conflict(m)) if m.contains("draft")
        ));
        assert_eq!(run(s.active(&acme())).unwrap(), None, "nothing changed");
        run(s.publish(&acme(), "k", 1)).unwrap();
        assert_eq!(
            run(s.publish(&acme(), "k", 1)).unwrap().status,
            RulesetStatus::Published,
            "idempotent"
        );
        run(s.publish(&acme(), "k", 2)).unwrap();
        let a = run(s.activate(&acme(), "k", 1, Some(None))).unwrap();
        assert_eq!((a.pointer.version, a.pointer.previous_version), (1, None));
        // Activated from a stale read: refused, the pointer stays.
        assert!(matches!(
            run(s.activate(&acme(), "k", 2, Some(None))),
            Err(RulesError::Conflict(_))
        ));
        let b = run(s.activate(&acme(), "k", 2, Some(Some(1)))).unwrap();
        assert_eq!((b.pointer.version, b.pointer.previous_version), (2, Some(1)));
        let back = run(s.rollback(&acme(), "k", None)).unwrap();
        assert_eq!((back.pointer.version, back.pointer.previous_version), (1, Some(2)));
        let forth = run(s.rollback(&acme(), "k", Some(Some(1)))).unwrap();
        assert_eq!(forth.pointer.version, 2, "a second rollback undoes the first");
        assert_eq!(run(store.tenant_policy(&acme())).unwrap().rules.active_ruleset, Some(2));
    }

    #[test]
    fn activating_a_ruleset_whose_list_is_gone_is_a_conflict_and_the_active_one_stays() {
        let store = InMemoryDecisions::default();
        let s = RulesService::new(&store);
        run(s.save_rule(&acme(), "k", spec("a", "tx.amount > 1", RuleAction::Review))).unwrap();
        let v1 = run(s.create_ruleset(&acme(), "k", draft(&["a"]))).unwrap();
        run(s.publish(&acme(), "k", v1.version)).unwrap();
        run(s.activate(&acme(), "k", v1.version, None)).unwrap();
        // Written behind the service's back (as odd stored data would be): names a list that
        // does not exist.
        let mut odd = v1.clone();
        odd.version = 2;
        odd.status = RulesetStatus::Published;
        odd.rules[0].spec.expression = "in_list(tx.email, \"gone\")".into();
        let audit = RulesService::<InMemoryDecisions>::audit("k", "test", String::new(), String::new());
        run(store.put_ruleset(&acme(), &odd, &audit)).unwrap();
        let Err(RulesError::Conflict(why)) = run(s.activate(&acme(), "k", 2, None)) else {
            panic!("activated")
        };
        assert!(why.contains("\"gone\""), "{why}");
        assert_eq!(run(s.active(&acme())).unwrap().unwrap().pointer.version, 1);
    }

    #[test]
    fn list_entries_are_checked_all_or_nothing_normalised_and_retry_safe() {
        let store = InMemoryDecisions::default();
        let s = RulesService::new(&store);
        let name = ListName::parse("ips").unwrap();
        run(s.create_list(&acme(), "k", name.clone(), ListKind::Ip, String::new())).unwrap();
        // The same list again is fine; another kind is a conflict.
        run(s.create_list(&acme(), "k", name.clone(), ListKind::Ip, String::new())).unwrap();
        assert!(matches!(
            run(s.create_list(&acme(), "k", name.clone(), ListKind::Email, String::new())),
            Err(RulesError::Conflict(_))
        ));
        let Err(RulesError::Invalid(p)) =
            run(s.add_entries(&acme(), "k", &name, vec![entry("10.0.0.0/8"), entry("10.0.0.300")]))
        else {
            panic!("added")
        };
        assert_eq!(p[0].field, "entries[1].value");
        assert!(p[0].message.contains("10.0.0.300"), "{}", p[0].message);
        assert_eq!(
            run(s.list(&acme(), &name)).unwrap().entries,
            0,
            "nothing of a refused request"
        );

        let values = vec![
            entry("10.0.0.0/8"),
            entry("2001:db8::/32"),
            entry("192.0.2.7"),
            entry("10.0.0.0/8"),
        ];
        let change = run(s.add_entries(&acme(), "k", &name, values.clone())).unwrap();
        assert_eq!(
            (change.added, change.updated, change.entries),
            (3, 0, 3),
            "a value sent twice is one entry"
        );
        let retry = run(s.add_entries(&acme(), "k", &name, values)).unwrap();
        assert_eq!((retry.added, retry.updated, retry.entries), (0, 3, 3));
        let removed =
            run(s.remove_entries(&acme(), "k", &name, vec!["192.0.2.7".into(), "198.51.100.1".into()])).unwrap();
        assert_eq!((removed.removed, removed.absent, removed.entries), (1, 1, 2));
        assert!(matches!(
            run(s.add_entries(&acme(), "k", &name, vec![])),
            Err(RulesError::Invalid(p)) if p[0].field == "entries"
        ));
        let too_many = (0..=MAX_ENTRIES_PER_REQUEST)
            .map(|i| entry(&format!("10.1.{}.{}", i / 256, i % 256)))
            .collect();
        assert!(matches!(
            run(s.add_entries(&acme(), "k", &name, too_many)),
            Err(RulesError::Invalid(_))
        ));
        // A full list refuses new values: a 400 naming `entries`, nothing added.
        store.force_list_entry_count(&acme(), &name, MAX_LIST_ENTRIES as u64);
        assert!(matches!(
            run(s.add_entries(&acme(), "k", &name, vec![entry("203.0.113.9")])),
            Err(RulesError::Invalid(p)) if p[0].field == "entries" && p[0].message.contains("100000")
        ));
    }

    #[test]
    fn another_tenant_cannot_read_or_use_a_tenants_rules_and_lists() {
        let store = InMemoryDecisions::default();
        let s = RulesService::new(&store);
        let globex = TenantId::parse("globex").unwrap();
        run(s.create_list(
            &acme(),
            "k",
            ListName::parse("l").unwrap(),
            ListKind::Email,
            String::new(),
        ))
        .unwrap();
        run(s.save_rule(&acme(), "k", spec("a", "in_list(tx.email, \"l\")", RuleAction::Block))).unwrap();
        assert!(matches!(
            run(s.rule(&globex, &RuleId::parse("a").unwrap(), None)),
            Err(RulesError::NotFound(_))
        ));
        assert!(matches!(
            run(s.save_rule(&globex, "k", spec("a", "in_list(tx.email, \"l\")", RuleAction::Block))),
            Err(RulesError::Invalid(_))
        ));
        assert!(run(s.lists(&globex)).unwrap().is_empty());
    }
}
