//! Rules, rulesets, the ruleset pointer, lists and the audit in memory, inside
//! [`InMemoryDecisions`] (as the adapter's pointers ride in the CONFIG item the decision reads),
//! held to what the DynamoDB adapter does by [`crate::ports::contract::rules`].

use super::InMemoryDecisions;
use crate::domain::rules::{
    AuditEntry, ListEntry, ListMeta, Rule, Ruleset, RulesetPointer, RulesetStatus, MAX_LISTS, MAX_LIST_ENTRIES,
};
use crate::domain::{ListName, RuleId, TenantId, Timestamp};
use crate::ports::rules::{ListChange, ListContents, RulesAdmin, RulesPointers, RulesRead};
use crate::ports::{Page, StoreError};
use std::collections::{BTreeMap, HashMap};

/// Entries one atomic write of a list change holds, as the adapter's: a TransactWriteItems has
/// at most 100 actions, three of which are the list's meta, the CONFIG item and the audit entry.
/// A larger change is written in parts, each with its own version and audit entry.
const LIST_CHANGE_CHUNK: usize = 97;
/// Longest value, as the adapter's (a DynamoDB sort key holds 1,024 bytes).
const MAX_VALUE_BYTES: usize = 1_000;
/// Longest page, as the adapter's.
const MAX_PAGE: usize = 1000;

type Entries = BTreeMap<String, ListEntry>;

#[derive(Default)]
pub(crate) struct RulesState {
    rules: BTreeMap<(TenantId, RuleId, u32), Rule>,
    rulesets: BTreeMap<(TenantId, u32), Ruleset>,
    pointers: HashMap<TenantId, RulesetPointer>,
    lists: BTreeMap<(TenantId, ListName), (ListMeta, Entries)>,
    /// By time, then order of writing.
    audit: BTreeMap<(TenantId, Timestamp, u64), AuditEntry>,
    written: u64,
}

impl RulesState {
    /// What the CONFIG item would say: the snapshot's `rules`.
    pub(crate) fn pointers(&self, tenant: &TenantId) -> RulesPointers {
        RulesPointers {
            active_ruleset: self.pointers.get(tenant).map(|p| p.version),
            lists: self
                .lists
                .iter()
                .filter(|((t, _), _)| t == tenant)
                .map(|((_, name), (meta, _))| (name.clone(), meta.version))
                .collect(),
        }
    }

    fn audit(&mut self, tenant: &TenantId, entry: AuditEntry) {
        self.written += 1;
        self.audit.insert((tenant.clone(), entry.at, self.written), entry);
    }

    fn latest_rule(&self, tenant: &TenantId, id: &RuleId) -> Option<&Rule> {
        self.rules
            .range((tenant.clone(), id.clone(), 0)..=(tenant.clone(), id.clone(), u32::MAX))
            .next_back()
            .map(|(_, r)| r)
    }
}

/// The audit entry of part `i` of `parts` of one change: the caller's, with the part's counts.
fn part_audit(audit: &AuditEntry, i: usize, parts: usize, counts: String) -> AuditEntry {
    if parts <= 1 {
        return audit.clone();
    }
    let sep = if audit.detail.is_empty() { "" } else { " " };
    AuditEntry {
        detail: format!("{}{sep}(part {} of {parts}: {counts})", audit.detail, i + 1),
        ..audit.clone()
    }
}

fn page_limit(limit: usize) -> usize {
    limit.clamp(1, MAX_PAGE)
}

/// `mem:<prefix>:<position>` cursors: enough for a fake nothing writes to mid-page.
fn cursor(prefix: &str, raw: Option<&str>) -> Result<Option<String>, StoreError> {
    raw.map(|c| {
        c.strip_prefix("mem:")
            .and_then(|c| c.strip_prefix(prefix))
            .and_then(|c| c.strip_prefix(':'))
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .ok_or(StoreError::BadCursor)
    })
    .transpose()
}

fn next_cursor(prefix: &str, more: bool, last: Option<String>) -> Option<String> {
    last.filter(|_| more).map(|l| format!("mem:{prefix}:{l}"))
}

fn no_list(name: &ListName) -> StoreError {
    StoreError::NotFound(format!("list {name}"))
}

/// Entries distinct by value, the last of a repeated value winning (the adapter cannot write
/// one item twice in a transaction).
fn distinct_entries(entries: &[ListEntry]) -> Vec<ListEntry> {
    let mut by_value: BTreeMap<&str, &ListEntry> = BTreeMap::new();
    for e in entries {
        by_value.insert(&e.value, e);
    }
    by_value.into_values().cloned().collect()
}

impl InMemoryDecisions {
    /// Sets a list's stored entry count as if it held `entries` (the cap's tests: 100,000 real
    /// entries would be slow on the adapter). The entries themselves are unchanged.
    pub fn force_list_entry_count(&self, tenant: &TenantId, name: &ListName, entries: u64) {
        if let Some((meta, _)) = self.state().rules.lists.get_mut(&(tenant.clone(), name.clone())) {
            meta.entries = entries;
        }
    }
}

impl RulesRead for InMemoryDecisions {
    async fn ruleset(&self, tenant: &TenantId, version: u32) -> Result<Option<Ruleset>, StoreError> {
        Ok(self.state().rules.rulesets.get(&(tenant.clone(), version)).cloned())
    }

    async fn list_contents(&self, tenant: &TenantId, name: &ListName) -> Result<Option<ListContents>, StoreError> {
        Ok(self
            .state()
            .rules
            .lists
            .get(&(tenant.clone(), name.clone()))
            .map(|(meta, entries)| ListContents {
                meta: meta.clone(),
                entries: entries.values().cloned().collect(),
            }))
    }
}

impl RulesAdmin for InMemoryDecisions {
    async fn put_rule(&self, tenant: &TenantId, rule: &Rule, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut s = self.state();
        let st = &mut s.rules;
        let id = &rule.spec.id;
        let key = (tenant.clone(), id.clone(), rule.version);
        // As the adapter's conditions: the version is new, and the latest is the one before it.
        let latest = st.latest_rule(tenant, id).map(|r| r.version);
        if st.rules.contains_key(&key) || latest.is_some_and(|l| Some(l) != rule.version.checked_sub(1)) {
            return Err(StoreError::Conflict(format!(
                "rule {id} version {} exists or is not the next one",
                rule.version
            )));
        }
        st.rules.insert(key, rule.clone());
        st.audit(tenant, audit.clone());
        Ok(())
    }

    async fn rule(&self, tenant: &TenantId, id: &RuleId, version: Option<u32>) -> Result<Option<Rule>, StoreError> {
        let s = self.state();
        Ok(match version {
            Some(v) => s.rules.rules.get(&(tenant.clone(), id.clone(), v)).cloned(),
            None => s.rules.latest_rule(tenant, id).cloned(),
        })
    }

    async fn rules(&self, tenant: &TenantId, limit: usize, cursor_raw: Option<&str>) -> Result<Page<Rule>, StoreError> {
        let limit = page_limit(limit);
        let after = cursor("rules", cursor_raw)?;
        let s = self.state();
        let mut latest: BTreeMap<&RuleId, &Rule> = BTreeMap::new();
        for ((t, id, _), r) in &s.rules.rules {
            if t == tenant && after.as_deref().is_none_or(|a| id.as_str() > a) {
                latest.insert(id, r);
            }
        }
        let more = latest.len() > limit;
        let items: Vec<Rule> = latest.into_values().take(limit).cloned().collect();
        let last = items.last().map(|r| r.spec.id.to_string());
        Ok(Page {
            next_cursor: next_cursor("rules", more, last),
            items,
        })
    }

    async fn put_ruleset(&self, tenant: &TenantId, ruleset: &Ruleset, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut s = self.state();
        let key = (tenant.clone(), ruleset.version);
        if s.rules.rulesets.contains_key(&key) {
            return Err(StoreError::Conflict(format!(
                "ruleset version {} exists",
                ruleset.version
            )));
        }
        s.rules.rulesets.insert(key, ruleset.clone());
        s.rules.audit(tenant, audit.clone());
        Ok(())
    }

    async fn latest_ruleset_version(&self, tenant: &TenantId) -> Result<Option<u32>, StoreError> {
        Ok(self
            .state()
            .rules
            .rulesets
            .range((tenant.clone(), 0)..=(tenant.clone(), u32::MAX))
            .next_back()
            .map(|((_, v), _)| *v))
    }

    async fn rulesets(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor_raw: Option<&str>,
    ) -> Result<Page<Ruleset>, StoreError> {
        let limit = page_limit(limit);
        let before = match cursor("rulesets", cursor_raw)? {
            None => u32::MAX as u64 + 1,
            Some(c) => c.parse::<u32>().map_err(|_| StoreError::BadCursor)? as u64,
        };
        let s = self.state();
        let all: Vec<&Ruleset> = s
            .rules
            .rulesets
            .range((tenant.clone(), 0)..=(tenant.clone(), u32::MAX))
            .rev()
            .map(|(_, r)| r)
            .filter(|r| (r.version as u64) < before)
            .collect();
        let more = all.len() > limit;
        let items: Vec<Ruleset> = all.into_iter().take(limit).cloned().collect();
        let last = items.last().map(|r| r.version.to_string());
        Ok(Page {
            next_cursor: next_cursor("rulesets", more, last),
            items,
        })
    }

    async fn publish_ruleset(
        &self,
        tenant: &TenantId,
        version: u32,
        audit: &AuditEntry,
    ) -> Result<Ruleset, StoreError> {
        let mut s = self.state();
        let Some(r) = s.rules.rulesets.get_mut(&(tenant.clone(), version)) else {
            return Err(StoreError::NotFound(format!("ruleset version {version}")));
        };
        if r.status != RulesetStatus::Draft {
            return Err(StoreError::Conflict(format!(
                "ruleset version {version} is not a draft"
            )));
        }
        r.status = RulesetStatus::Published;
        r.published_by = Some(audit.actor.clone());
        r.published_at = Some(audit.at);
        let published = r.clone();
        s.rules.audit(tenant, audit.clone());
        Ok(published)
    }

    async fn ruleset_pointer(&self, tenant: &TenantId) -> Result<Option<RulesetPointer>, StoreError> {
        Ok(self.state().rules.pointers.get(tenant).cloned())
    }

    async fn move_ruleset_pointer(
        &self,
        tenant: &TenantId,
        expected: Option<u32>,
        to: &RulesetPointer,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let st = &mut s.rules;
        // As the adapter: a version that cannot be activated is NotFound whatever the pointer.
        let published = st
            .rulesets
            .get(&(tenant.clone(), to.version))
            .is_some_and(|r| r.status == RulesetStatus::Published);
        if !published {
            return Err(StoreError::NotFound(format!(
                "published ruleset version {}",
                to.version
            )));
        }
        let now = st.pointers.get(tenant).map(|p| p.version);
        if now != expected {
            return Err(StoreError::Conflict(format!(
                "the active ruleset is {now:?} now, not {expected:?}"
            )));
        }
        st.pointers.insert(tenant.clone(), to.clone());
        st.audit(tenant, audit.clone());
        Ok(())
    }

    async fn create_list(&self, tenant: &TenantId, meta: &ListMeta, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut s = self.state();
        let st = &mut s.rules;
        let key = (tenant.clone(), meta.name.clone());
        if st.lists.contains_key(&key) {
            return Err(StoreError::Conflict(format!("list {} exists", meta.name)));
        }
        if st.lists.keys().filter(|(t, _)| t == tenant).count() >= MAX_LISTS {
            return Err(StoreError::LimitReached(format!(
                "a tenant has at most {MAX_LISTS} lists"
            )));
        }
        let meta = ListMeta {
            entries: 0,
            ..meta.clone()
        };
        st.lists.insert(key, (meta, Entries::new()));
        st.audit(tenant, audit.clone());
        Ok(())
    }

    async fn list_meta(&self, tenant: &TenantId, name: &ListName) -> Result<Option<ListMeta>, StoreError> {
        Ok(self
            .state()
            .rules
            .lists
            .get(&(tenant.clone(), name.clone()))
            .map(|(m, _)| m.clone()))
    }

    async fn lists(&self, tenant: &TenantId) -> Result<Vec<ListMeta>, StoreError> {
        Ok(self
            .state()
            .rules
            .lists
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, (m, _))| m.clone())
            .collect())
    }

    async fn add_list_entries(
        &self,
        tenant: &TenantId,
        name: &ListName,
        entries: &[ListEntry],
        audit: &AuditEntry,
    ) -> Result<ListChange, StoreError> {
        let mut s = self.state();
        let st = &mut s.rules;
        let key = (tenant.clone(), name.clone());
        let entries = distinct_entries(entries);
        if let Some(e) = entries
            .iter()
            .find(|e| e.value.is_empty() || e.value.len() > MAX_VALUE_BYTES)
        {
            return Err(StoreError::Rejected(format!(
                "list value of {} bytes: values are 1 to {MAX_VALUE_BYTES} bytes",
                e.value.len()
            )));
        }
        let (meta, stored) = st.lists.get(&key).ok_or_else(|| no_list(name))?;
        let new = entries.iter().filter(|e| !stored.contains_key(&e.value)).count() as u64;
        if meta.entries + new > MAX_LIST_ENTRIES as u64 {
            return Err(StoreError::LimitReached(format!(
                "list {name} would hold {} entries; at most {MAX_LIST_ENTRIES}",
                meta.entries + new
            )));
        }
        let mut change = ListChange {
            version: meta.version,
            entries: meta.entries,
            ..Default::default()
        };
        let parts = entries.len().div_ceil(LIST_CHANGE_CHUNK);
        let mut audits = Vec::new();
        for (i, chunk) in entries.chunks(LIST_CHANGE_CHUNK).enumerate() {
            let (meta, stored) = st.lists.get_mut(&key).ok_or_else(|| no_list(name))?;
            let (mut added, mut updated) = (0, 0);
            for e in chunk {
                match stored.insert(e.value.clone(), e.clone()) {
                    None => added += 1,
                    Some(_) => updated += 1,
                }
            }
            meta.version += 1;
            meta.entries += added;
            meta.updated_at = audit.at;
            change.added += added;
            change.updated += updated;
            change.version = meta.version;
            change.entries = meta.entries;
            audits.push(part_audit(audit, i, parts, format!("{added} added, {updated} updated")));
        }
        for a in audits {
            st.audit(tenant, a);
        }
        Ok(change)
    }

    async fn remove_list_entries(
        &self,
        tenant: &TenantId,
        name: &ListName,
        values: &[String],
        audit: &AuditEntry,
    ) -> Result<ListChange, StoreError> {
        let mut s = self.state();
        let st = &mut s.rules;
        let key = (tenant.clone(), name.clone());
        let (meta, stored) = st.lists.get_mut(&key).ok_or_else(|| no_list(name))?;
        let mut distinct: Vec<&String> = values.iter().collect();
        distinct.sort();
        distinct.dedup();
        let (present, absent): (Vec<&String>, Vec<&String>) =
            distinct.into_iter().partition(|v| stored.contains_key(*v));
        let mut change = ListChange {
            absent: absent.len() as u64,
            version: meta.version,
            entries: meta.entries,
            ..Default::default()
        };
        let parts = present.len().div_ceil(LIST_CHANGE_CHUNK);
        let mut audits = Vec::new();
        for (i, chunk) in present.chunks(LIST_CHANGE_CHUNK).enumerate() {
            for v in chunk {
                stored.remove(*v);
            }
            let removed = chunk.len() as u64;
            meta.version += 1;
            meta.entries = meta.entries.saturating_sub(removed);
            meta.updated_at = audit.at;
            change.removed += removed;
            change.version = meta.version;
            change.entries = meta.entries;
            audits.push(part_audit(audit, i, parts, format!("{removed} removed")));
        }
        for a in audits {
            st.audit(tenant, a);
        }
        Ok(change)
    }

    async fn list_entry(
        &self,
        tenant: &TenantId,
        name: &ListName,
        value: &str,
    ) -> Result<Option<ListEntry>, StoreError> {
        let s = self.state();
        Ok(s.rules
            .lists
            .get(&(tenant.clone(), name.clone()))
            .and_then(|(_, stored)| stored.get(value).cloned()))
    }

    async fn list_entries(
        &self,
        tenant: &TenantId,
        name: &ListName,
        limit: usize,
        cursor_raw: Option<&str>,
    ) -> Result<Page<ListEntry>, StoreError> {
        let limit = page_limit(limit);
        let after = cursor("entries", cursor_raw)?;
        let s = self.state();
        let Some((_, stored)) = s.rules.lists.get(&(tenant.clone(), name.clone())) else {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        };
        let all: Vec<&ListEntry> = match &after {
            None => stored.values().collect(),
            Some(a) => stored
                .range::<String, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                .map(|(_, e)| e)
                .collect(),
        };
        let more = all.len() > limit;
        let items: Vec<ListEntry> = all.into_iter().take(limit).cloned().collect();
        let last = items.last().map(|e| e.value.clone());
        Ok(Page {
            next_cursor: next_cursor("entries", more, last),
            items,
        })
    }

    async fn audit(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor_raw: Option<&str>,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let limit = page_limit(limit);
        // The position (time in nanoseconds, order of writing) of the last entry shown.
        let before = match cursor("audit", cursor_raw)? {
            None => None,
            Some(c) => {
                let (at, seq) = c.split_once('.').ok_or(StoreError::BadCursor)?;
                let at = at.parse::<i128>().map_err(|_| StoreError::BadCursor)?;
                Some((at, seq.parse::<u64>().map_err(|_| StoreError::BadCursor)?))
            }
        };
        let position = |at: &Timestamp, seq: u64| (at.inner().unix_timestamp_nanos(), seq);
        let s = self.state();
        let all: Vec<((i128, u64), &AuditEntry)> = s
            .rules
            .audit
            .iter()
            .rev()
            .filter(|((t, _, _), _)| t == tenant)
            .map(|((_, at, seq), a)| (position(at, *seq), a))
            .filter(|(p, _)| before.is_none_or(|b| *p < b))
            .collect();
        let more = all.len() > limit;
        let page: Vec<((i128, u64), &AuditEntry)> = all.into_iter().take(limit).collect();
        let last = page.last().map(|((at, seq), _)| format!("{at}.{seq}"));
        Ok(Page {
            next_cursor: next_cursor("audit", more, last),
            items: page.into_iter().map(|(_, a)| a.clone()).collect(),
        })
    }
}
