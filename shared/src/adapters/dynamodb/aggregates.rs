//! Per-customer and per-terminal aggregates: day counters split over shard items
//! ([`crate::domain::shards`]), read tolerantly and summed, updated with atomic ADD.
//!
//! Tolerant: an attribute that does not read as a whole number, or a day outside every window,
//! is ignored (and logged with its key); the next decision that writes that shard removes it. A
//! day's sum over the shards saturates, and a negative count reads as 0. So no stored value can
//! make every later decision of an entity fail.

use super::*;
use crate::domain::shards::{AggregateShards, ShardCount};
use crate::ports::{AggregateReads, AggregateWritePlan, FoundAggregates, ShardWrite};
use std::ops::RangeInclusive;

/// The most keys one BatchGetItem takes.
pub const BATCH_GET_MAX_KEYS: usize = 100;
/// Days after the later of today and the transaction's day that can hold data (transactions
/// may be dated up to a day ahead); later days are corrupt.
const FUTURE_DAYS: i32 = 2;
/// Most ignored attributes one write removes (an UpdateExpression is at most 4 KB).
const MAX_REMOVALS: usize = 100;

/// Which entity an aggregate item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Entity<'a> {
    Customer(&'a CustomerId),
    Terminal(&'a TerminalId),
}

impl Entity<'_> {
    pub(super) fn shard_key(&self, keys: &Keys<'_>, shard: u8) -> ItemKey {
        match self {
            Entity::Customer(c) => keys.customer_aggregate_shard(c, shard),
            Entity::Terminal(t) => keys.terminal_aggregate_shard(t, shard),
        }
    }

    pub(super) fn read_count(&self, layout: &AggregateShards, today: i32) -> ShardCount {
        match self {
            Entity::Customer(c) => layout.customer(c).read_count(today),
            Entity::Terminal(t) => layout.terminal(t).read_count(today),
        }
    }

    pub(super) fn write_count(&self, layout: &AggregateShards) -> ShardCount {
        match self {
            Entity::Customer(c) => layout.customer(c).shards,
            Entity::Terminal(t) => layout.terminal(t).shards,
        }
    }
}

/// What one aggregate item holds, read tolerantly.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ShardItem {
    /// Valid days: count, amount (minor units), frauds, as stored (signed, unbounded).
    pub(super) days: Vec<(i32, [i128; 3])>,
    /// Attributes the read could not use: unreadable, or a day outside `valid`.
    pub(super) ignored: Vec<String>,
}

/// The day counters of one aggregate item whose day lies in `valid`.
pub(super) fn read_shard(item: &Item, key: &ItemKey, valid: &RangeInclusive<i32>) -> ShardItem {
    let mut by_day: BTreeMap<i32, [i128; 3]> = BTreeMap::new();
    let mut ignored = Vec::new();
    for (name, value) in item {
        let Some((kind, day)) = parse_day_attribute(name) else {
            continue;
        };
        let amount = match value {
            AttributeValue::N(raw) => raw.parse::<i128>().ok(),
            _ => None,
        };
        let Some(amount) = amount else {
            tracing::warn!(key = %key, attribute = %name, value = ?value, "aggregate attribute is not a whole number: ignored, removed by the next write");
            ignored.push(name.clone());
            continue;
        };
        if !valid.contains(&day) {
            ignored.push(name.clone());
            continue;
        }
        let slot = match kind {
            b'c' => 0,
            b'a' => 1,
            _ => 2,
        };
        by_day.entry(day).or_default()[slot] = amount;
    }
    ignored.sort();
    ShardItem {
        days: by_day.into_iter().collect(),
        ignored,
    }
}

/// The entity's aggregate: each day summed over its shards, saturating, a negative sum read as 0.
pub(super) fn sum_shards<'a>(entity: &ItemKey, shards: impl IntoIterator<Item = &'a ShardItem>) -> EntityAggregate {
    let mut days: BTreeMap<i32, [i128; 3]> = BTreeMap::new();
    for shard in shards {
        for (day, v) in &shard.days {
            let sum = days.entry(*day).or_default();
            for i in 0..3 {
                sum[i] = sum[i].saturating_add(v[i]);
            }
        }
    }
    EntityAggregate::from_days(days.into_iter().map(|(day, [count, amount, frauds])| {
        if count < 0 || frauds < 0 {
            tracing::warn!(key = %entity, day, count = %count, frauds = %frauds, "negative aggregate counter read as 0");
        }
        let counter = DayCounter {
            count: count.clamp(0, u64::MAX as i128) as u64,
            amount_minor: amount.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            frauds: frauds.clamp(0, u64::MAX as i128) as u64,
        };
        (day, counter)
    }))
}

/// The days a read keeps: none after the later of today and `day` (plus [`FUTURE_DAYS`]) and,
/// when reading for a transaction on `day`, none before its retention.
pub(super) fn valid_days(day: Option<i32>, today: i32) -> RangeInclusive<i32> {
    let last = day.map_or(today, |d| d.max(today)).saturating_add(FUTURE_DAYS);
    let first = day.map_or(i32::MIN, |d| d.saturating_sub(RETENTION_DAYS - 1));
    first..=last
}

pub(super) fn today() -> i32 {
    Timestamp::now().epoch_day()
}

impl DynamoStore {
    /// The shard items of `entities` under `layout`, read in BatchGetItems of at most 100 keys,
    /// by entity, in shard order (absent items are skipped).
    pub(super) async fn read_aggregates<'e>(
        &self,
        keys: &Keys<'_>,
        layout: &AggregateShards,
        entities: &[Entity<'e>],
        valid: &RangeInclusive<i32>,
    ) -> Result<HashMap<Entity<'e>, EntityAggregate>, StoreError> {
        let today = today();
        let mut all: Vec<(ItemKey, Entity<'e>)> = Vec::new();
        for e in entities {
            for shard in 0..e.read_count(layout, today).get() {
                all.push((e.shard_key(keys, shard), *e));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.dedup_by(|a, b| a.0 == b.0);
        let mut items: HashMap<Entity<'e>, Vec<ShardItem>> = HashMap::new();
        for chunk in all.chunks(BATCH_GET_MAX_KEYS) {
            let refs: Vec<&ItemKey> = chunk.iter().map(|(k, _)| k).collect();
            let mut found = self.batch_get(&refs).await?;
            for (key, entity) in chunk {
                if let Some(item) = found.remove(key) {
                    items.entry(*entity).or_default().push(read_shard(&item, key, valid));
                }
            }
            if let Some(key) = found.keys().next() {
                return Err(corrupt(key, "BatchGetItem returned a key that was not asked for"));
            }
        }
        Ok(items
            .into_iter()
            .map(|(e, shards)| (e, sum_shards(&e.shard_key(keys, 0), &shards)))
            .collect())
    }

    /// The stored aggregate of a customer (for tools and tests; scoring reads it in its batch).
    pub async fn customer_aggregate(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
    ) -> Result<EntityAggregate, StoreError> {
        self.one_aggregate(tenant, Entity::Customer(customer)).await
    }

    /// The stored aggregate of a terminal.
    pub async fn terminal_aggregate(
        &self,
        tenant: &TenantId,
        terminal: &TerminalId,
    ) -> Result<EntityAggregate, StoreError> {
        self.one_aggregate(tenant, Entity::Terminal(terminal)).await
    }

    async fn one_aggregate(&self, tenant: &TenantId, entity: Entity<'_>) -> Result<EntityAggregate, StoreError> {
        let layout = self.aggregate_shards(tenant).await?;
        let keys = Keys::new(tenant);
        let mut found = self
            .read_aggregates(&keys, &layout, &[entity], &valid_days(None, today()))
            .await?;
        Ok(found.remove(&entity).unwrap_or_default())
    }
}

impl AggregateReads for DynamoStore {
    async fn aggregates(
        &self,
        tenant: &TenantId,
        customers: &[CustomerId],
        terminals: &[TerminalId],
    ) -> Result<FoundAggregates, StoreError> {
        let layout = self.aggregate_shards(tenant).await?;
        let keys = Keys::new(tenant);
        let entities: Vec<Entity<'_>> = customers
            .iter()
            .map(Entity::Customer)
            .chain(terminals.iter().map(Entity::Terminal))
            .collect();
        let found = self
            .read_aggregates(&keys, &layout, &entities, &valid_days(None, today()))
            .await?;
        let mut out = FoundAggregates::default();
        for (e, agg) in found {
            match e {
                Entity::Customer(c) => out.customers.insert(c.clone(), agg),
                Entity::Terminal(t) => out.terminals.insert(t.clone(), agg),
            };
        }
        Ok(out)
    }
}

/// Where a decision writes its entity's delta, and what the write removes from that shard's
/// item: every attribute the read of that item ignored (bounded per write).
pub(super) fn shard_write(shard: u8, item: Option<&ShardItem>) -> ShardWrite {
    let remove = item
        .map(|i| i.ignored.iter().take(MAX_REMOVALS).cloned().collect())
        .unwrap_or_default();
    ShardWrite { shard, remove }
}

/// An UpdateExpression with its names and values.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct UpdateExpr {
    pub(super) expression: String,
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
}

/// `ADD` the delta to `day`'s counters and `REMOVE` the [`PRUNE_DAYS`] days just past retention
/// plus the attributes a read ignored (`repair`). The band lies before `day - RETENTION_DAYS`,
/// so no window can still read it. A repaired attribute of `day` itself did not read as a
/// number, so ADD would fail on it: it is SET to the delta instead.
pub(super) fn aggregate_update(delta: &AggregateDelta, repair: &[String]) -> UpdateExpr {
    let AggregateDelta { day, counter } = *delta;
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut adds = Vec::new();
    let mut sets = Vec::new();
    let parts = [
        ('c', counter.count as i128),
        ('a', counter.amount_minor as i128),
        ('f', counter.frauds as i128),
    ];
    for (i, (kind, amount)) in parts.iter().enumerate() {
        if *amount != 0 || (i == 0 && parts.iter().all(|(_, a)| *a == 0)) {
            let name = day_attribute(*kind, day);
            if repair.contains(&name) {
                sets.push(format!("#d{i} = :d{i}"));
            } else {
                adds.push(format!("#d{i} :d{i}"));
            }
            names.insert(format!("#d{i}"), name);
            values.insert(format!(":d{i}"), n(amount));
        }
    }
    let mut removes = Vec::new();
    let mut remove = |name: String, names: &mut HashMap<String, String>| {
        if names.values().any(|n| *n == name) {
            return;
        }
        let i = removes.len();
        names.insert(format!("#p{i}"), name);
        removes.push(format!("#p{i}"));
    };
    for k in 0..PRUNE_DAYS {
        let old = day.saturating_sub(RETENTION_DAYS + k);
        for kind in ['c', 'a', 'f'] {
            remove(day_attribute(kind, old), &mut names);
        }
    }
    for name in repair {
        remove(name.clone(), &mut names);
    }
    let mut clauses = Vec::new();
    if !sets.is_empty() {
        clauses.push(format!("SET {}", sets.join(", ")));
    }
    if !adds.is_empty() {
        clauses.push(format!("ADD {}", adds.join(", ")));
    }
    clauses.push(format!("REMOVE {}", removes.join(", ")));
    UpdateExpr {
        expression: clauses.join(" "),
        names,
        values,
    }
}

/// The write plan for a decision: each entity's shard (by the transaction id) and what its
/// write repairs.
pub(super) fn write_plan(
    layout: &AggregateShards,
    tx: &crate::domain::Transaction,
    customer: &[Option<ShardItem>],
    terminal: &[Option<ShardItem>],
) -> AggregateWritePlan {
    let pick = |count: ShardCount, items: &[Option<ShardItem>]| {
        let shard = count.shard_of(&tx.id);
        shard_write(shard, items.get(shard as usize).and_then(Option::as_ref))
    };
    AggregateWritePlan {
        customer: pick(Entity::Customer(&tx.customer_id).write_count(layout), customer),
        terminal: pick(Entity::Terminal(&tx.terminal_id).write_count(layout), terminal),
    }
}
