//! Per-customer and per-terminal aggregates: day counters split over shard items
//! ([`crate::domain::shards`]), read tolerantly and summed, updated with atomic ADD.
//!
//! Tolerant: an attribute that does not read as a whole number, or a day outside every window,
//! is ignored (and logged with its key); the next decision that writes that shard removes it. A
//! day's sum over the shards saturates, and a negative count reads as 0. So no stored value can
//! make every later decision of an entity fail.

use super::*;
use crate::domain::shards::{AggregateShards, ShardCount};
use crate::ports::{AggregateReads, AggregateSeeding, FoundAggregates, ShardWrite};
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use std::ops::RangeInclusive;

/// The most keys one BatchGetItem takes.
pub const BATCH_GET_MAX_KEYS: usize = 100;
/// The most items one BatchWriteItem takes.
const BATCH_WRITE_MAX_ITEMS: usize = 25;
/// Days after the later of today and the transaction's day that can hold data (transactions
/// may be dated up to a day ahead); later days are corrupt.
const FUTURE_DAYS: i32 = 2;
/// Most ignored attributes one write removes (an UpdateExpression is at most 4 KB).
const MAX_REMOVALS: usize = 100;
#[cfg(test)]
pub(super) const MAX_REMOVALS_FOR_TESTS: usize = MAX_REMOVALS;

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

    pub(super) fn read_count(&self, layout: &AggregateShards) -> ShardCount {
        match self {
            Entity::Customer(c) => layout.customer(c).read_count(),
            Entity::Terminal(t) => layout.terminal(t).read_count(),
        }
    }

    pub(super) fn write_count(&self, layout: &AggregateShards) -> ShardCount {
        match self {
            Entity::Customer(c) => layout.customer(c).shards,
            Entity::Terminal(t) => layout.terminal(t).shards,
        }
    }
}

/// One entity's aggregate as its shard items are read: each day summed over the shards in a
/// fixed ring (the newest day of a slot wins, as in [`EntityAggregate`]), signed and wide, so
/// odd stored values can be clamped once at the end.
#[derive(Debug, Clone)]
pub struct AggregateSum {
    slots: [(i32, [i128; 3]); RETENTION_DAYS as usize],
}

impl Default for AggregateSum {
    fn default() -> Self {
        AggregateSum {
            slots: [(i32::MIN, [0; 3]); RETENTION_DAYS as usize],
        }
    }
}

impl AggregateSum {
    /// Adds one shard item's day counters whose day lies in `days.sum`. Returns what a write may
    /// remove: attributes that are unreadable (logged), or of a day outside `days.keep`.
    pub fn add_item(&mut self, item: &Item, key: &ItemKey, days: &DayWindows) -> Vec<String> {
        let mut ignored = Vec::new();
        for (name, value) in item {
            let Some((kind, day)) = parse_day_attribute(name) else {
                continue;
            };
            let amount = match value {
                // Nearly every stored counter fits i64; i128 takes the odd huge one.
                AttributeValue::N(raw) => raw.parse::<i64>().map(i128::from).or_else(|_| raw.parse::<i128>()).ok(),
                _ => None,
            };
            let Some(amount) = amount else {
                tracing::warn!(key = %key, attribute = %name, value = ?value, "aggregate attribute is not a whole number: ignored, removed by the next write");
                ignored.push(name.clone());
                continue;
            };
            if !days.keep.contains(&day) {
                ignored.push(name.clone());
                continue;
            }
            if !days.sum.contains(&day) {
                continue;
            }
            let i = match kind {
                b'c' => 0,
                b'a' => 1,
                _ => 2,
            };
            let slot = &mut self.slots[day.rem_euclid(RETENTION_DAYS) as usize];
            if slot.0 < day {
                *slot = (day, [0; 3]);
            }
            if slot.0 == day {
                slot.1[i] = slot.1[i].saturating_add(amount);
            }
        }
        ignored
    }

    /// The entity's aggregate: sums clamped to the counters' ranges, a negative count (logged
    /// with `entity`) read as 0.
    pub fn finish(&self, entity: &ItemKey) -> EntityAggregate {
        EntityAggregate::from_days(self.slots.iter().filter(|(d, _)| *d != i32::MIN).map(
            |&(day, [count, amount, frauds])| {
                if count < 0 || frauds < 0 {
                    tracing::warn!(key = %entity, day, count = %count, frauds = %frauds, "negative aggregate counter read as 0");
                }
                let counter = DayCounter {
                    count: count.clamp(0, u64::MAX as i128) as u64,
                    amount_minor: amount.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
                    frauds: frauds.clamp(0, u64::MAX as i128) as u64,
                };
                (day, counter)
            },
        ))
    }
}

/// Which stored days a read sums, and which it leaves in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayWindows {
    /// Summed into the aggregate.
    pub sum: RangeInclusive<i32>,
    /// Left in the item; a day outside it is old or corrupt, and the next write removes it.
    pub keep: RangeInclusive<i32>,
}

/// The windows of a read for a transaction on `day` (`None`: a read for no one transaction).
/// - sum: the transaction's retention, `day − 63 ..= day`: its features read nothing later,
///   and a later day would take an earlier one's place in the 64-day ring;
/// - keep: everything a current or backdated transaction may still read, from 63 days before
///   the earlier of `day` and today, to [`FUTURE_DAYS`] after the later.
pub fn day_windows(day: Option<i32>, today: i32) -> DayWindows {
    let last = day.map_or(today, |d| d.max(today)).saturating_add(FUTURE_DAYS);
    match day {
        Some(d) => DayWindows {
            sum: d.saturating_sub(RETENTION_DAYS - 1)..=d,
            keep: d.min(today).saturating_sub(RETENTION_DAYS - 1)..=last,
        },
        None => DayWindows {
            sum: i32::MIN..=last,
            keep: i32::MIN..=last,
        },
    }
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
        days: &DayWindows,
    ) -> Result<HashMap<Entity<'e>, EntityAggregate>, StoreError> {
        let mut all: Vec<(ItemKey, Entity<'e>)> = Vec::new();
        for e in entities {
            for shard in 0..e.read_count(layout).get() {
                all.push((e.shard_key(keys, shard), *e));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.dedup_by(|a, b| a.0 == b.0);
        let mut sums: HashMap<Entity<'e>, AggregateSum> = HashMap::new();
        for chunk in all.chunks(BATCH_GET_MAX_KEYS) {
            let refs: Vec<&ItemKey> = chunk.iter().map(|(k, _)| k).collect();
            let mut found = self.batch_get(&refs).await?;
            for (key, entity) in chunk {
                if let Some(item) = found.remove(key) {
                    sums.entry(*entity).or_default().add_item(&item, key, days);
                }
            }
            if let Some(key) = found.keys().next() {
                return Err(corrupt(key, "BatchGetItem returned a key that was not asked for"));
            }
        }
        Ok(sums
            .into_iter()
            .map(|(e, sum)| (e, sum.finish(&e.shard_key(keys, 0))))
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
            .read_aggregates(&keys, &layout, &[entity], &day_windows(None, today()))
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
            .read_aggregates(&keys, &layout, &entities, &day_windows(None, today()))
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

/// An entity's aggregate as one stored item: the day counters decisions ADD and labels move
/// (`c`, `a`, `f` per epoch day), each only where it is not zero, as those writes leave them.
pub(super) fn aggregate_item(key: &ItemKey, agg: &EntityAggregate) -> Item {
    let mut item = key.to_item();
    for (day, c) in agg.days() {
        for (kind, value) in [
            ('c', c.count as i128),
            ('a', c.amount_minor as i128),
            ('f', c.frauds as i128),
        ] {
            if value != 0 {
                item.insert(day_attribute(kind, day), n(value));
            }
        }
    }
    item
}

impl DynamoStore {
    /// PutItems in BatchWriteItems of 25, retrying only what DynamoDB left unprocessed. The
    /// keys must be distinct (DynamoDB refuses a batch that repeats one).
    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        for chunk in items.chunks(BATCH_WRITE_MAX_ITEMS) {
            let mut pending = chunk
                .iter()
                .map(|item| {
                    let put = build("PutRequest", PutRequest::builder().set_item(Some(item.clone())).build())?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt > UNPROCESSED_RETRIES {
                    return Err(StoreError::Unavailable(format!(
                        "DynamoDB BatchWriteItem: {} items still unprocessed after {UNPROCESSED_RETRIES} retries",
                        pending.len()
                    )));
                }
                if attempt > 0 {
                    tokio::time::sleep(jitter(attempt - 1)).await;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
                attempt += 1;
            }
        }
        Ok(())
    }
}

impl AggregateSeeding for DynamoStore {
    async fn seed_aggregates(
        &self,
        tenant: &TenantId,
        customers: &[(CustomerId, EntityAggregate)],
        terminals: &[(TerminalId, EntityAggregate)],
    ) -> Result<(), StoreError> {
        let keys = Keys::new(tenant);
        // By key, the last of a repeated entity winning, as successive writes would.
        let mut items: BTreeMap<ItemKey, Item> = BTreeMap::new();
        let entities = customers
            .iter()
            .map(|(c, agg)| (Entity::Customer(c), agg))
            .chain(terminals.iter().map(|(t, agg)| (Entity::Terminal(t), agg)));
        for (entity, agg) in entities {
            let key = entity.shard_key(&keys, 0);
            if agg.days().is_empty() {
                items.remove(&key);
                continue;
            }
            let item = aggregate_item(&key, agg);
            items.insert(key, item);
        }
        self.batch_put(items.into_values().collect()).await
    }
}

/// An UpdateExpression with its names, values and condition.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct UpdateExpr {
    pub(super) expression: String,
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
    pub(super) condition: Option<String>,
}

/// `ADD` the delta to `day`'s counters and `REMOVE` the [`PRUNE_DAYS`] days just past retention
/// plus the attributes a read ignored (`repair`). The band lies before `day - RETENTION_DAYS`,
/// so no window can still read it. A repaired attribute of `day` itself did not read as a
/// number, so ADD would fail on it: it is SET to the delta instead, on the condition that it is
/// still not a number (a concurrent decision may have repaired it since; then the commit is
/// tried again without repairs).
pub(super) fn aggregate_update(delta: &AggregateDelta, repair: &[String], today: i32) -> UpdateExpr {
    let AggregateDelta { day, counter } = *delta;
    // A transaction dated ahead must not prune a day today's decisions still read.
    let prune_from = day.min(today);
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
        let old = prune_from.saturating_sub(RETENTION_DAYS + k);
        for kind in ['c', 'a', 'f'] {
            remove(day_attribute(kind, old), &mut names);
        }
    }
    for name in repair {
        remove(name.clone(), &mut names);
    }
    let mut clauses = Vec::new();
    let mut condition = None;
    if !sets.is_empty() {
        clauses.push(format!("SET {}", sets.join(", ")));
        let guards: Vec<String> = sets
            .iter()
            .map(|s| format!("NOT attribute_type({}, :number)", &s[..s.find(' ').unwrap_or(s.len())]))
            .collect();
        values.insert(":number".into(), AttributeValue::S("N".into()));
        condition = Some(guards.join(" AND "));
    }
    if !adds.is_empty() {
        clauses.push(format!("ADD {}", adds.join(", ")));
    }
    clauses.push(format!("REMOVE {}", removes.join(", ")));
    UpdateExpr {
        expression: clauses.join(" "),
        names,
        values,
        condition,
    }
}

/// Where a decision on `day` writes an entity's delta: the shard of its transaction id, and
/// what that write removes from the shard's item (what its read ignored, bounded per write; the
/// counters of `day` itself first, since the write cannot ADD to them unrepaired).
pub(super) fn shard_write(shard: u8, mut ignored: Vec<String>, day: i32) -> ShardWrite {
    ignored.sort_by_key(|name| (parse_day_attribute(name).map(|(_, d)| d) != Some(day), name.clone()));
    ignored.truncate(MAX_REMOVALS);
    ShardWrite { shard, remove: ignored }
}

#[cfg(test)]
mod seed_tests {
    use super::*;

    #[test]
    fn a_seeded_item_reads_back_as_the_aggregate_it_was_made_of() {
        let day = 17_681;
        let agg = EntityAggregate::from_days([
            (
                day - 40,
                DayCounter {
                    count: 3,
                    amount_minor: 12_345,
                    frauds: 1,
                },
            ),
            (
                day,
                DayCounter {
                    count: 2,
                    amount_minor: -500,
                    frauds: 0,
                },
            ),
        ]);
        let key = ItemKey::new("T#acme#CUST#c-1".to_owned(), "AGG");
        let item = aggregate_item(&key, &agg);
        // Zero counters are not written, as a decision's ADD leaves none.
        assert!(!item.contains_key(&day_attribute('f', day)));
        assert_eq!(item.get("c17641"), Some(&AttributeValue::N("3".into())));
        let mut sum = AggregateSum::default();
        let ignored = sum.add_item(&item, &key, &day_windows(Some(day), day));
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(sum.finish(&key), agg);
    }
}
