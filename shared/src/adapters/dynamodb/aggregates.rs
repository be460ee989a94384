//! Per-customer and per-terminal aggregates: day counters read tolerantly, updated with atomic ADD.

use super::*;
use crate::ports::{AggregateReads, FoundAggregates};

/// The most keys one BatchGetItem takes.
pub const BATCH_GET_MAX_KEYS: usize = 100;

impl AggregateReads for DynamoStore {
    /// BatchGetItem in chunks of [`BATCH_GET_MAX_KEYS`] distinct keys.
    async fn aggregates(
        &self,
        tenant: &TenantId,
        customers: &[CustomerId],
        terminals: &[TerminalId],
    ) -> Result<FoundAggregates, StoreError> {
        let keys = Keys::new(tenant);
        let mut wanted: HashMap<ItemKey, Result<&CustomerId, &TerminalId>> = HashMap::new();
        for c in customers {
            wanted.insert(keys.customer_aggregate(c), Ok(c));
        }
        for t in terminals {
            wanted.insert(keys.terminal_aggregate(t), Err(t));
        }
        let all: Vec<&ItemKey> = wanted.keys().collect();
        let mut found = FoundAggregates::default();
        for chunk in all.chunks(BATCH_GET_MAX_KEYS) {
            for (key, item) in self.batch_get(chunk).await? {
                let agg = parse_aggregate(&item, &key)?;
                match wanted.get(&key) {
                    Some(Ok(c)) => found.customers.insert((*c).clone(), agg),
                    Some(Err(t)) => found.terminals.insert((*t).clone(), agg),
                    None => return Err(corrupt(&key, "BatchGetItem returned a key that was not asked for")),
                };
            }
        }
        Ok(found)
    }
}

/// Day buckets from an aggregate item's `c<day>`, `a<day>` and `f<day>` attributes.
pub(super) fn parse_aggregate(item: &Item, key: &ItemKey) -> Result<EntityAggregate, StoreError> {
    let mut days: BTreeMap<i32, DayCounter> = BTreeMap::new();
    for (name, value) in item {
        let Some((kind, day)) = parse_day_attribute(name) else {
            continue;
        };
        let AttributeValue::N(raw) = value else {
            return Err(corrupt(key, format!("{name} is not a number")));
        };
        let bad = |e: &dyn fmt::Display| corrupt(key, format!("{name} = {raw:?}: {e}"));
        let c = days.entry(day).or_default();
        match kind {
            b'c' => c.count = raw.parse().map_err(|e| bad(&e))?,
            b'a' => c.amount_minor = raw.parse().map_err(|e| bad(&e))?,
            _ => c.frauds = raw.parse().map_err(|e| bad(&e))?,
        }
    }
    Ok(EntityAggregate::from_days(days))
}

/// An UpdateExpression with its names and values.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct UpdateExpr {
    pub(super) expression: String,
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
}

/// `ADD` the delta to `day`'s counters and `REMOVE` the [`PRUNE_DAYS`] days just past retention.
/// The removed days all lie before `day - RETENTION_DAYS`, so no attribute is both added and
/// removed, and none a window can still read.
pub(super) fn aggregate_update(delta: &AggregateDelta) -> UpdateExpr {
    let AggregateDelta { day, counter } = *delta;
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut adds = Vec::new();
    let parts = [
        ('c', counter.count as i128),
        ('a', counter.amount_minor as i128),
        ('f', counter.frauds as i128),
    ];
    for (i, (kind, amount)) in parts.iter().enumerate() {
        if *amount != 0 || (i == 0 && parts.iter().all(|(_, a)| *a == 0)) {
            names.insert(format!("#d{i}"), day_attribute(*kind, day));
            values.insert(format!(":d{i}"), n(amount));
            adds.push(format!("#d{i} :d{i}"));
        }
    }
    let mut removes = Vec::new();
    for k in 0..PRUNE_DAYS {
        let old = day.saturating_sub(RETENTION_DAYS + k);
        for kind in ['c', 'a', 'f'] {
            let i = removes.len();
            names.insert(format!("#p{i}"), day_attribute(kind, old));
            removes.push(format!("#p{i}"));
        }
    }
    UpdateExpr {
        expression: format!("ADD {} REMOVE {}", adds.join(", "), removes.join(", ")),
        names,
        values,
    }
}

impl DynamoStore {
    /// The stored aggregate of a customer (for tools and tests; scoring reads it in its batch).
    pub async fn customer_aggregate(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
    ) -> Result<EntityAggregate, StoreError> {
        let key = Keys::new(tenant).customer_aggregate(customer);
        match self.get(&key).await? {
            Some(item) => parse_aggregate(&item, &key),
            None => Ok(EntityAggregate::default()),
        }
    }

    /// The stored aggregate of a terminal.
    pub async fn terminal_aggregate(
        &self,
        tenant: &TenantId,
        terminal: &TerminalId,
    ) -> Result<EntityAggregate, StoreError> {
        let key = Keys::new(tenant).terminal_aggregate(terminal);
        match self.get(&key).await? {
            Some(item) => parse_aggregate(&item, &key),
            None => Ok(EntityAggregate::default()),
        }
    }
}
