//! The tenant config item: the policy's thresholds, the aggregate shard layout, and the rules
//! pointers (the active ruleset, the lists' versions).

use super::*;
use crate::domain::rules::RulesetPointer;
use crate::domain::shards::{AggregateShards, ShardCount, ShardError, ShardSetting};
use crate::domain::ListName;
use crate::ports::rules::RulesPointers;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub(super) fn parse_thresholds(item: &Item, key: &ItemKey) -> Result<Thresholds, StoreError> {
    let review = get_n(item, "review_threshold", key)?;
    let block = get_n(item, "block_threshold", key)?;
    Thresholds::new(review, block).map_err(|e| corrupt(key, e.to_string()))
}

impl DynamoStore {
    pub async fn set_thresholds(&self, tenant: &TenantId, t: Thresholds) -> Result<(), StoreError> {
        let t = Thresholds::new(t.review, t.block)
            .map_err(|e| StoreError::Rejected(format!("thresholds not stored: {e}")))?;
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Keys::new(tenant).config().to_item()))
            .update_expression("SET review_threshold = :r, block_threshold = :b")
            .expression_attribute_values(":r", n(t.review))
            .expression_attribute_values(":b", n(t.block))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem (thresholds)", e))?;
        Ok(())
    }

    pub async fn thresholds(&self, tenant: &TenantId) -> Result<Option<Thresholds>, StoreError> {
        use crate::ports::rules::TenantPolicyRead;
        Ok(self.tenant_policy(tenant).await?.thresholds)
    }
}

/// The config item's aggregate shard counts ([`AggregateShards`]) and their version, which
/// every change bumps so a container parses them once per version.
const SHARDS: &str = "agg_shards";
const SHARDS_VERSION: &str = "agg_shards_version";
/// Tenants whose layout a container keeps.
const LAYOUT_TENANTS: usize = 1024;
/// How old a layout a write may use. A stale one is safe: a raise only adds shards that reads
/// already cover, a lowering keeps the old shards read until forgotten.
const WRITE_LAYOUT_TTL: Duration = Duration::from_secs(300);

fn setting_value(s: &ShardSetting) -> AttributeValue {
    let mut m = HashMap::from([("n".to_owned(), n(s.shards.get()))]);
    if let Some(old) = s.previous {
        m.insert("pn".into(), n(old.get()));
    }
    AttributeValue::M(m)
}

fn parse_setting(v: &AttributeValue) -> Result<ShardSetting, String> {
    let AttributeValue::M(m) = v else {
        return Err("not a map".into());
    };
    let num = |name: &str| -> Result<Option<i64>, String> {
        match m.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(raw)) => raw.parse().map(Some).map_err(|e| format!("{name} = {raw:?}: {e}")),
            Some(_) => Err(format!("{name} is not a number")),
        }
    };
    let count = |v: i64| ShardCount::new(v.max(0) as u64).map_err(|e| e.to_string());
    let shards = count(num("n")?.ok_or("n is missing")?)?;
    let previous = num("pn")?.map(count).transpose()?;
    Ok(ShardSetting { shards, previous })
}

fn shards_value(a: &AggregateShards) -> AttributeValue {
    let overrides = a
        .terminal_overrides()
        .iter()
        .map(|(t, s)| (t.to_string(), setting_value(s)))
        .collect();
    AttributeValue::M(HashMap::from([
        ("c".to_owned(), setting_value(&a.customers)),
        ("t".to_owned(), setting_value(&a.terminals)),
        ("o".to_owned(), AttributeValue::M(overrides)),
    ]))
}

/// The layout stored in a config item (none stored: the defaults), read entry by entry: an
/// entry that cannot be read is read conservatively ([`ShardSetting::unreadable`]) and named in the
/// problems, and the others stand.
pub(super) fn parse_shards(item: &Item) -> (AggregateShards, Vec<String>) {
    let mut problems = Vec::new();
    let Some(v) = item.get(SHARDS) else {
        return (AggregateShards::default(), problems);
    };
    let AttributeValue::M(m) = v else {
        problems.push(format!("{SHARDS} is not a map"));
        return (AggregateShards::unreadable(), problems);
    };
    let setting = |k: &str, problems: &mut Vec<String>| match m.get(k).map(parse_setting) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            problems.push(format!("{SHARDS}.{k}: {e}"));
            ShardSetting::unreadable()
        }
        None => {
            problems.push(format!("{SHARDS}.{k} is missing"));
            ShardSetting::unreadable()
        }
    };
    let customers = setting("c", &mut problems);
    let mut terminals = setting("t", &mut problems);
    let mut overrides = BTreeMap::new();
    match m.get("o") {
        None => {}
        Some(AttributeValue::M(o)) => {
            for (id, v) in o {
                // An id that does not parse names no terminal any decision can have.
                let Ok(t) = TerminalId::parse(id) else {
                    // Some terminal's override is lost: every terminal reads every shard.
                    problems.push(format!("{SHARDS}.o: {id:?} is not a terminal id"));
                    terminals = ShardSetting {
                        shards: terminals.shards,
                        previous: ShardSetting::unreadable().previous,
                    };
                    continue;
                };
                let s = parse_setting(v).unwrap_or_else(|e| {
                    problems.push(format!("{SHARDS}.o.{id}: {e}"));
                    ShardSetting::unreadable()
                });
                overrides.insert(t, s);
            }
        }
        Some(_) => {
            problems.push(format!("{SHARDS}.o is not a map"));
            return (AggregateShards::unreadable(), problems);
        }
    }
    match AggregateShards::new(customers, terminals, overrides) {
        Ok(l) => (l, problems),
        Err(e) => {
            problems.push(e.to_string());
            (AggregateShards::unreadable(), problems)
        }
    }
}

fn shards_version(item: &Item) -> u64 {
    match item.get(SHARDS_VERSION) {
        Some(AttributeValue::N(raw)) => raw.parse().unwrap_or(u64::MAX),
        _ => 0,
    }
}

#[derive(Debug)]
struct CachedLayout {
    version: u64,
    layout: Arc<AggregateShards>,
    read_at: Instant,
}

/// Each tenant's aggregate layout as this container last read it, bounded by tenant count.
#[derive(Debug, Default)]
pub(super) struct LayoutCache {
    by_tenant: Mutex<HashMap<TenantId, CachedLayout>>,
}

impl LayoutCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, CachedLayout>> {
        self.by_tenant.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last layout read, however old: the shards a read asks for before the config in the
    /// same batch says whether more are needed.
    pub(super) fn hint(&self, tenant: &TenantId) -> Option<Arc<AggregateShards>> {
        self.lock().get(tenant).map(|c| c.layout.clone())
    }

    fn for_write(&self, tenant: &TenantId) -> Option<Arc<AggregateShards>> {
        let m = self.lock();
        let c = m.get(tenant)?;
        (c.read_at.elapsed() < WRITE_LAYOUT_TTL).then(|| c.layout.clone())
    }

    /// The layout a config item (`None`: no item) names, parsed only when its version changed.
    /// An unreadable one is logged and read conservatively: every possible shard, writes to
    /// shard 0.
    pub(super) fn from_config(&self, tenant: &TenantId, item: Option<&Item>, key: &ItemKey) -> Arc<AggregateShards> {
        let version = item.map_or(0, shards_version);
        let mut m = self.lock();
        if let Some(c) = m.get_mut(tenant) {
            if c.version == version {
                c.read_at = Instant::now();
                return c.layout.clone();
            }
        }
        let (layout, problems) = item.map(parse_shards).unwrap_or_default();
        if !problems.is_empty() {
            tracing::error!(key = %key, ?problems, "aggregate shard layout partly unreadable: those entries read every shard");
        }
        let layout = Arc::new(layout);
        if m.len() >= LAYOUT_TENANTS && !m.contains_key(tenant) {
            // Evict the entry read longest ago, not all: each costs its tenant a second read.
            if let Some(oldest) = m.iter().min_by_key(|(_, c)| c.read_at).map(|(t, _)| t.clone()) {
                m.remove(&oldest);
            }
        }
        m.insert(
            tenant.clone(),
            CachedLayout {
                version,
                layout: layout.clone(),
                read_at: Instant::now(),
            },
        );
        layout
    }
}

impl DynamoStore {
    /// The tenant's aggregate layout, read now (reads must not use a stale one).
    pub async fn aggregate_shards(&self, tenant: &TenantId) -> Result<Arc<AggregateShards>, StoreError> {
        let key = Keys::new(tenant).config();
        let item = self.get(&key).await?;
        Ok(self.layouts.from_config(tenant, item.as_ref(), &key))
    }

    /// A layout a write may use: recent enough, else read now.
    pub(super) async fn layout_for_write(&self, tenant: &TenantId) -> Result<Arc<AggregateShards>, StoreError> {
        match self.layouts.for_write(tenant) {
            Some(l) => Ok(l),
            None => self.aggregate_shards(tenant).await,
        }
    }

    /// Changes the tenant's layout with `change` (applied to the stored one), conditional on
    /// its version so concurrent changes do not overwrite each other. Returns the new layout.
    pub async fn change_aggregate_shards(
        &self,
        tenant: &TenantId,
        change: impl Fn(&mut AggregateShards) -> Result<(), ShardError>,
    ) -> Result<AggregateShards, StoreError> {
        let key = Keys::new(tenant).config();
        for _ in 0..5 {
            let item = self.get(&key).await?;
            let version = item.as_ref().map_or(0, shards_version);
            if version == u64::MAX {
                return Err(corrupt(&key, format!("{SHARDS_VERSION} is not a version number")));
            }
            // Unreadable entries are stored back in their conservative form, which reads everything.
            let (mut layout, _) = item.as_ref().map(parse_shards).unwrap_or_default();
            change(&mut layout).map_err(|e| StoreError::Rejected(format!("aggregate shards not changed: {e}")))?;
            layout.tidy();
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key.to_item()))
                .update_expression("SET #s = :s, #v = :v")
                .expression_attribute_names("#s", SHARDS)
                .expression_attribute_names("#v", SHARDS_VERSION)
                .expression_attribute_values(":s", shards_value(&layout))
                .expression_attribute_values(":v", n(version + 1));
            update = if version == 0 {
                update.condition_expression("attribute_not_exists(#v)")
            } else {
                update
                    .condition_expression("#v = :old")
                    .expression_attribute_values(":old", n(version))
            };
            match update.send().await {
                Ok(_) => return Ok(layout),
                Err(e) if is_conditional_check_failed(&e) => continue,
                Err(e) => return Err(sdk_error("UpdateItem (aggregate shards)", e)),
            }
        }
        Err(StoreError::Conflict(format!(
            "{key}: the aggregate shard layout kept changing under this change; try again"
        )))
    }
}

// The rules pointers (docs/dynamodb.md, "Rules and lists"): the active ruleset and every list's
// version, in the item the decision's BatchGetItem already reads.
pub(super) const RULESET_ACTIVE: &str = "ruleset_active";
pub(super) const RULESET_PREVIOUS: &str = "ruleset_prev";
pub(super) const RULESET_BY: &str = "ruleset_by";
pub(super) const RULESET_AT: &str = "ruleset_at";
pub(super) const LIST_VERSIONS: &str = "list_versions";

/// The active ruleset version of a config item. An unreadable one is logged and reads as none:
/// the thresholds decide, rather than every decision of the tenant failing.
fn active_ruleset(item: &Item, key: &ItemKey) -> Option<u32> {
    match get_n_opt::<u32>(item, RULESET_ACTIVE, key) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(key = %key, error = %e, "active ruleset unreadable: no ruleset applies");
            None
        }
    }
}

/// The rules pointers of a config item, read tolerantly: an unreadable pointer is no ruleset, an
/// unreadable list version leaves that list out (a rule naming it finds no list), each logged.
pub(super) fn parse_rules_pointers(item: &Item, key: &ItemKey) -> RulesPointers {
    let mut lists = BTreeMap::new();
    match item.get(LIST_VERSIONS) {
        None => {}
        Some(AttributeValue::M(m)) => {
            for (name, v) in m {
                let version = match v {
                    AttributeValue::N(raw) => raw.parse::<u64>().ok(),
                    _ => None,
                };
                match (ListName::parse(name), version) {
                    (Ok(name), Some(version)) => {
                        lists.insert(name, version);
                    }
                    _ => {
                        tracing::warn!(key = %key, list = %name, value = ?v, "list version unreadable: the list is left out")
                    }
                }
            }
        }
        Some(other) => {
            tracing::warn!(key = %key, value = ?other, "{LIST_VERSIONS} is not a map: no list versions")
        }
    }
    RulesPointers {
        active_ruleset: active_ruleset(item, key),
        lists,
    }
}

/// The ruleset pointer of a config item (`None`: none, or unreadable, logged). Its other parts
/// unreadable leave the version standing, with an empty actor and the epoch as its time.
pub(super) fn parse_ruleset_pointer(item: &Item, key: &ItemKey) -> Option<RulesetPointer> {
    let version = active_ruleset(item, key)?;
    let previous_version = get_n_opt::<u32>(item, RULESET_PREVIOUS, key).unwrap_or_else(|e| {
        tracing::warn!(key = %key, error = %e, "previous ruleset unreadable");
        None
    });
    let activated_by = match get_s(item, RULESET_BY, key) {
        Ok(by) => by.to_owned(),
        Err(e) => {
            tracing::warn!(key = %key, error = %e, "ruleset activator unreadable");
            String::new()
        }
    };
    let activated_at = get_timestamp(item, RULESET_AT, key).unwrap_or_else(|e| {
        tracing::warn!(key = %key, error = %e, "ruleset activation time unreadable");
        Timestamp::from_unix(0).unwrap_or_else(|_| Timestamp::now())
    });
    Some(RulesetPointer {
        version,
        previous_version,
        activated_by,
        activated_at,
    })
}

/// The CONFIG item's thresholds and rules pointers, read as scoring reads them: what is
/// unreadable is logged and left out.
impl crate::ports::rules::TenantPolicyRead for DynamoStore {
    async fn tenant_policy(&self, tenant: &TenantId) -> Result<crate::ports::rules::TenantPolicy, StoreError> {
        let key = Keys::new(tenant).config();
        let Some(item) = self.get(&key).await? else {
            return Ok(Default::default());
        };
        let thresholds = if item.contains_key("review_threshold") {
            match parse_thresholds(&item, &key) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(key = %key, error = %e, "tenant thresholds unreadable: the default policy decides");
                    None
                }
            }
        } else {
            None
        };
        Ok(crate::ports::rules::TenantPolicy {
            thresholds,
            rules: parse_rules_pointers(&item, &key),
        })
    }
}
