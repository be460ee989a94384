//! The rulesets and lists a container keeps, so a decision compiles nothing and reads nothing
//! beyond its one `BatchGetItem`: compiled rulesets by tenant and version, list indexes by
//! tenant, name and version. The versions come from the tenant's CONFIG item, which every
//! decision reads anyway; only a version this container has not seen costs a read.

use crate::domain::rules::engine::CompiledRuleset;
use crate::domain::rules::lists::ListIndex;
use crate::domain::{ListName, TenantId};
use crate::ports::rules::{RulesPointers, RulesRead, TenantPolicyRead};
use crate::ports::StoreError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Compiled rulesets kept; a container serves a handful of tenants, each with one active.
const MAX_RULESETS: usize = 64;
/// List entries kept over all lists (roughly 80 bytes each indexed, so about 40 MB): five full
/// lists. A container serves few tenants; past this the least recently used lists are dropped and
/// read again when next needed.
const MAX_LIST_ENTRIES_CACHED: usize = 500_000;

/// What a decision's policy is built from.
#[derive(Clone)]
pub struct TenantRules {
    pub ruleset: Arc<CompiledRuleset>,
    /// The lists the ruleset names that exist, at the versions the CONFIG item gave.
    pub lists: HashMap<ListName, Arc<ListIndex>>,
}

/// Why a tenant's rules could not be used for this decision.
#[derive(Debug, thiserror::Error)]
pub enum RulesUnavailable {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The pointer names a ruleset that is not stored, or that no longer compiles: stored data
    /// gone odd. Scoring goes on with the thresholds and says so in the policy version.
    #[error("ruleset {version}: {why}")]
    Unusable { version: u32, why: String },
}

#[derive(Default)]
pub struct PolicyCache {
    rulesets: Mutex<HashMap<(TenantId, u32), Result<Arc<CompiledRuleset>, String>>>,
    lists: Mutex<ListEntries>,
}

#[derive(Default)]
struct ListEntries {
    by_key: HashMap<(TenantId, ListName), CachedList>,
    entries: usize,
    clock: u64,
}

struct CachedList {
    version: u64,
    /// `None`: unreadable at this version.
    index: Option<Arc<ListIndex>>,
    /// Entries indexed, counted against the budget.
    size: usize,
    used: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PolicyCache {
    /// The tenant's active ruleset and its lists, reading only what this container lacks.
    /// `None` when no ruleset is active.
    pub async fn rules<S: RulesRead>(
        &self,
        store: &S,
        tenant: &TenantId,
        pointers: &RulesPointers,
    ) -> Result<Option<TenantRules>, RulesUnavailable> {
        let Some(version) = pointers.active_ruleset else {
            return Ok(None);
        };
        let ruleset = self.ruleset(store, tenant, version).await?;
        let mut lists = HashMap::with_capacity(ruleset.lists().len());
        for name in ruleset.lists() {
            // A list the CONFIG item does not name does not exist: its rules error, visibly.
            let Some(&list_version) = pointers.lists.get(name) else {
                continue;
            };
            if let Some(index) = self.list(store, tenant, name, list_version).await? {
                lists.insert(name.clone(), index);
            }
        }
        Ok(Some(TenantRules { ruleset, lists }))
    }

    /// Ruleset `version` (pinned by a batch job) with the tenant's lists at their versions now.
    pub async fn pinned<S: RulesRead + TenantPolicyRead>(
        &self,
        store: &S,
        tenant: &TenantId,
        version: u32,
    ) -> Result<Option<TenantRules>, RulesUnavailable> {
        let now = store.tenant_policy(tenant).await?;
        let pointers = RulesPointers {
            active_ruleset: Some(version),
            lists: now.rules.lists,
        };
        self.rules(store, tenant, &pointers).await
    }

    async fn ruleset<S: RulesRead>(
        &self,
        store: &S,
        tenant: &TenantId,
        version: u32,
    ) -> Result<Arc<CompiledRuleset>, RulesUnavailable> {
        let key = (tenant.clone(), version);
        if let Some(cached) = lock(&self.rulesets).get(&key) {
            return cached
                .clone()
                .map_err(|why| RulesUnavailable::Unusable { version, why });
        }
        // Rulesets never change under their version: one that does not compile is remembered
        // too, so odd stored data costs one read per container, not one per decision. One that is
        // missing (the pointer is only moved onto a stored ruleset) is not: it may be written yet.
        let compiled = match store.ruleset(tenant, version).await {
            Ok(None) => {
                return Err(RulesUnavailable::Unusable {
                    version,
                    why: "the active ruleset is not stored".into(),
                })
            }
            // An item that does not read is as unusable as one that does not compile.
            Err(StoreError::Corrupt { key, reason }) => Err(format!("item {key} is unreadable: {reason}")),
            Err(e) => return Err(e.into()),
            Ok(Some(stored)) => CompiledRuleset::compile(&stored).map(Arc::new).map_err(|problems| {
                format!(
                    "does not compile: {}",
                    problems.first().map_or(String::new(), |p| p.message.clone())
                )
            }),
        };
        let mut cache = lock(&self.rulesets);
        if cache.len() >= MAX_RULESETS {
            // Rare (many tenants or many activations): start over rather than track use.
            cache.clear();
        }
        cache.insert(key, compiled.clone());
        compiled.map_err(|why| RulesUnavailable::Unusable { version, why })
    }

    /// The list at `version`, or a newer one if that is what the store holds now (a change in
    /// between: the next decision's CONFIG names it anyway). `None` if the list is gone.
    async fn list<S: RulesRead>(
        &self,
        store: &S,
        tenant: &TenantId,
        name: &ListName,
        version: u64,
    ) -> Result<Option<Arc<ListIndex>>, StoreError> {
        let key = (tenant.clone(), name.clone());
        {
            let mut c = lock(&self.lists);
            c.clock += 1;
            let now = c.clock;
            if let Some(hit) = c.by_key.get_mut(&key).filter(|l| l.version >= version) {
                hit.used = now;
                return Ok(hit.index.clone());
            }
        }
        let (index, read_version) = match store.list_contents(tenant, name).await {
            Ok(None) => return Ok(None),
            Ok(Some(contents)) => (
                Some(Arc::new(ListIndex::build(contents.meta.kind, &contents.entries))),
                contents.meta.version,
            ),
            // Odd stored data: the rules using the list record errors (visibly), and this version
            // is not read again by every decision.
            Err(StoreError::Corrupt { key, reason }) => {
                tracing::error!(tenant = %tenant, list = %name, key, reason, "a list is unreadable: rules using it are errors");
                (None, version)
            }
            Err(e) => return Err(e),
        };
        let size = index.as_ref().map_or(0, |i| i.len());
        let mut c = lock(&self.lists);
        c.clock += 1;
        let used = c.clock;
        if let Some(old) = c.by_key.remove(&key) {
            c.entries -= old.size;
        }
        // Least recently used lists go first; one larger than the budget is still kept, alone.
        while c.entries + size > MAX_LIST_ENTRIES_CACHED {
            let Some(oldest) = c.by_key.iter().min_by_key(|(_, l)| l.used).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some(l) = c.by_key.remove(&oldest) {
                c.entries -= l.size;
            }
        }
        c.entries += size;
        c.by_key.insert(
            key,
            CachedList {
                // Never below what the CONFIG item asked for: a meta that lags it (odd data) must
                // not make every decision read the list again.
                version: read_version.max(version),
                index: index.clone(),
                size,
                used,
            },
        );
        Ok(index)
    }

    /// Rulesets and lists cached (for tests and logs).
    pub fn sizes(&self) -> (usize, usize) {
        (lock(&self.rulesets).len(), lock(&self.lists).by_key.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::rules::{EntryInput, RuleRef, RulesService, RulesetDraft};
    use crate::domain::rules::{AuditEntry, ListKind, MatchMode, RuleAction, RuleMode, RuleSpec, RulesetPointer};
    use crate::domain::{RuleId, Timestamp};
    use crate::ports::in_memory::{block_on as run, InMemoryDecisions};
    use crate::ports::rules::{RulesAdmin, TenantPolicyRead};

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn pointers(store: &InMemoryDecisions) -> RulesPointers {
        run(store.tenant_policy(&acme())).unwrap().rules
    }

    /// A tenant with list `blocked` (email) holding `values` and an active ruleset using it.
    fn tenant_with_rules(store: &InMemoryDecisions, values: &[&str]) -> u32 {
        let s = RulesService::new(store);
        let name = ListName::parse("blocked").unwrap();
        run(s.create_list(&acme(), "k", name.clone(), ListKind::Email, String::new())).unwrap();
        let entries = values
            .iter()
            .map(|v| EntryInput {
                value: (*v).into(),
                expires_at: None,
                note: None,
            })
            .collect();
        run(s.add_entries(&acme(), "k", &name, entries)).unwrap();
        let spec = RuleSpec {
            id: RuleId::parse("b").unwrap(),
            name: "B".into(),
            description: String::new(),
            expression: "has(tx.email) && in_list(tx.email, 'blocked')".into(),
            action: RuleAction::Block,
            priority: 0,
            mode: RuleMode::Active,
        };
        run(s.save_rule(&acme(), "k", spec)).unwrap();
        let draft = RulesetDraft {
            mode: MatchMode::FirstMatched,
            description: String::new(),
            rules: vec![RuleRef {
                id: RuleId::parse("b").unwrap(),
                version: None,
            }],
        };
        let v = run(s.create_ruleset(&acme(), "k", draft)).unwrap().version;
        run(s.publish(&acme(), "k", v)).unwrap();
        run(s.activate(&acme(), "k", v, None)).unwrap();
        v
    }

    #[test]
    fn a_ruleset_and_its_lists_are_built_once_and_a_list_change_is_picked_up_by_version() {
        let store = InMemoryDecisions::default();
        let v = tenant_with_rules(&store, &["a@x.com"]);
        let cache = PolicyCache::default();
        let first = run(cache.rules(&store, &acme(), &pointers(&store))).unwrap().unwrap();
        assert_eq!(first.ruleset.version(), v);
        let again = run(cache.rules(&store, &acme(), &pointers(&store))).unwrap().unwrap();
        assert!(Arc::ptr_eq(&first.ruleset, &again.ruleset), "compiled once");
        let name = ListName::parse("blocked").unwrap();
        assert!(Arc::ptr_eq(&first.lists[&name], &again.lists[&name]), "indexed once");
        let at = Timestamp::now();
        assert!(!first.lists[&name].contains("b@x.com", at));

        let s = RulesService::new(&store);
        let more = vec![EntryInput {
            value: "B@X.com".into(),
            expires_at: None,
            note: None,
        }];
        run(s.add_entries(&acme(), "k", &name, more)).unwrap();
        let after = run(cache.rules(&store, &acme(), &pointers(&store))).unwrap().unwrap();
        assert!(after.lists[&name].contains("b@x.com", at), "the new version is read");
        assert!(Arc::ptr_eq(&first.ruleset, &after.ruleset), "the ruleset stays cached");
        assert_eq!(cache.sizes(), (1, 1));
    }

    #[test]
    fn no_pointer_means_no_rules_and_an_unusable_ruleset_is_reported_not_panicked_on() {
        let store = InMemoryDecisions::default();
        let cache = PolicyCache::default();
        assert!(run(cache.rules(&store, &acme(), &RulesPointers::default()))
            .unwrap()
            .is_none());
        // A pointer at a version that is not stored.
        let missing = RulesPointers {
            active_ruleset: Some(9),
            lists: Default::default(),
        };
        assert!(matches!(
            run(cache.rules(&store, &acme(), &missing)),
            Err(RulesUnavailable::Unusable { version: 9, .. })
        ));
        // A stored ruleset that does not compile (odd data): unusable, and remembered.
        let v = tenant_with_rules(&store, &["a@x.com"]);
        let mut odd = run(store.ruleset(&acme(), v)).unwrap().unwrap();
        odd.version = v + 1;
        odd.rules[0].spec.expression = "tx.amount >".into();
        let audit = AuditEntry {
            at: Timestamp::now(),
            actor: "k".into(),
            action: "test".into(),
            target: String::new(),
            detail: String::new(),
        };
        run(store.put_ruleset(&acme(), &odd, &audit)).unwrap();
        let to = RulesetPointer {
            version: v + 1,
            previous_version: Some(v),
            activated_by: "k".into(),
            activated_at: Timestamp::now(),
        };
        run(store.move_ruleset_pointer(&acme(), Some(v), &to, &audit)).unwrap();
        for _ in 0..2 {
            assert!(matches!(
                run(cache.rules(&store, &acme(), &pointers(&store))),
                Err(RulesUnavailable::Unusable { why, .. }) if why.contains("does not compile")
            ));
        }
        assert_eq!(cache.sizes().0, 1, "the failure is cached, not recompiled per decision");
    }
}
