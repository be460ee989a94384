//! How many items an entity's aggregate is split over.
//!
//! Every decision adds to its customer's and its terminal's aggregate. On DynamoDB, concurrent
//! transactions on one item cancel each other, so a busy terminal's aggregate is split into
//! shards: each decision adds to one shard, chosen by a stable hash of the transaction id (so a
//! retry, a replay and a later label of the same transaction pick the same one), and a read sums
//! them all. Shard counts are tenant settings, with overrides for known big merchants.
//!
//! Changing a count: raising it takes effect at once (the new shards start empty and the old
//! ones are still read). Lowering it takes effect for writes at once, while reads keep covering
//! the old count until every day written under it has left retention ([`ShardSetting::lower`]).

use crate::domain::features::RETENTION_DAYS;
use crate::domain::{CustomerId, TerminalId, TransactionId};
use std::collections::BTreeMap;

/// The most shards one entity's aggregate may have: with a customer and a terminal at the
/// maximum, a decision's one BatchGetItem still fits its 100 keys.
pub const MAX_SHARDS: u8 = 32;
/// Customers: one card rarely pays more than once a second, so one item serves.
pub const DEFAULT_CUSTOMER_SHARDS: u8 = 1;
/// Terminals: four shards keep a terminal at about 200 decisions a second clear of most
/// conflicts (docs/dynamodb.md); raise a known big merchant with an override.
pub const DEFAULT_TERMINAL_SHARDS: u8 = 4;
/// Most per-terminal overrides a tenant may set (they are read with every decision).
pub const MAX_OVERRIDES: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("shard count must be 1 to {MAX_SHARDS}, got {0}")]
    OutOfRange(u64),
    #[error("at most {MAX_OVERRIDES} terminal overrides per tenant")]
    TooManyOverrides,
}

/// A number of shards, 1 to [`MAX_SHARDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardCount(u8);

impl ShardCount {
    pub const ONE: ShardCount = ShardCount(1);

    pub fn new(n: u64) -> Result<ShardCount, ShardError> {
        match u8::try_from(n) {
            Ok(n) if (1..=MAX_SHARDS).contains(&n) => Ok(ShardCount(n)),
            _ => Err(ShardError::OutOfRange(n)),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// The shard of a transaction: FNV-1a of its id, modulo the count.
    pub fn shard_of(self, id: &TransactionId) -> u8 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in id.as_str().bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % self.0 as u64) as u8
    }
}

/// One entity kind's (or one entity's) shard count, as it changes over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSetting {
    /// What writes use.
    pub shards: ShardCount,
    /// A higher count used before, which reads still cover through this epoch day.
    pub previous: Option<(ShardCount, i32)>,
}

impl ShardSetting {
    pub fn new(shards: ShardCount) -> Self {
        ShardSetting { shards, previous: None }
    }

    /// Shards a read on `today` must cover.
    pub fn read_count(&self, today: i32) -> ShardCount {
        match self.previous {
            Some((old, until)) if today <= until => old.max(self.shards),
            _ => self.shards,
        }
    }

    /// The setting after changing the count to `to` on `today`. Lowering keeps reads on
    /// everything read so far until the days written under it have aged out.
    pub fn change(&self, to: ShardCount, today: i32) -> ShardSetting {
        let read = self.read_count(today);
        if to >= read {
            return ShardSetting::new(to);
        }
        let until = match self.previous {
            Some((_, until)) if today <= until => until.max(today + RETENTION_DAYS + 1),
            _ => today + RETENTION_DAYS + 1,
        };
        ShardSetting {
            shards: to,
            previous: Some((read, until)),
        }
    }
}

/// A tenant's aggregate shard counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateShards {
    pub customers: ShardSetting,
    pub terminals: ShardSetting,
    /// Per-terminal counts, for known big merchants; they replace `terminals` for that one.
    terminal_overrides: BTreeMap<TerminalId, ShardSetting>,
}

impl Default for AggregateShards {
    fn default() -> Self {
        AggregateShards {
            customers: ShardSetting::new(ShardCount(DEFAULT_CUSTOMER_SHARDS)),
            terminals: ShardSetting::new(ShardCount(DEFAULT_TERMINAL_SHARDS)),
            terminal_overrides: BTreeMap::new(),
        }
    }
}

impl AggregateShards {
    pub fn new(
        customers: ShardSetting,
        terminals: ShardSetting,
        terminal_overrides: BTreeMap<TerminalId, ShardSetting>,
    ) -> Result<Self, ShardError> {
        if terminal_overrides.len() > MAX_OVERRIDES {
            return Err(ShardError::TooManyOverrides);
        }
        Ok(AggregateShards {
            customers,
            terminals,
            terminal_overrides,
        })
    }

    /// For a stored layout that cannot be read: reads cover every possible shard and writes go
    /// to shard 0, which every layout reads. Costly, but no count is missed.
    pub fn unreadable() -> Self {
        let all = ShardSetting {
            shards: ShardCount::ONE,
            previous: Some((ShardCount(MAX_SHARDS), i32::MAX)),
        };
        AggregateShards {
            customers: all,
            terminals: all,
            terminal_overrides: BTreeMap::new(),
        }
    }

    pub fn customer(&self, _id: &CustomerId) -> &ShardSetting {
        &self.customers
    }

    pub fn terminal(&self, id: &TerminalId) -> &ShardSetting {
        self.terminal_overrides.get(id).unwrap_or(&self.terminals)
    }

    pub fn terminal_overrides(&self) -> &BTreeMap<TerminalId, ShardSetting> {
        &self.terminal_overrides
    }

    /// Sets one terminal's count (changing an override, or starting one from the tenant's).
    pub fn set_terminal(&mut self, id: &TerminalId, to: ShardCount, today: i32) -> Result<(), ShardError> {
        let next = self.terminal(id).change(to, today);
        if !self.terminal_overrides.contains_key(id) && self.terminal_overrides.len() >= MAX_OVERRIDES {
            return Err(ShardError::TooManyOverrides);
        }
        self.terminal_overrides.insert(id.clone(), next);
        Ok(())
    }

    /// Sets the tenant's terminal count. Overrides stay; each keeps its own count.
    pub fn set_terminals(&mut self, to: ShardCount, today: i32) {
        self.terminals = self.terminals.change(to, today);
    }

    pub fn set_customers(&mut self, to: ShardCount, today: i32) {
        self.customers = self.customers.change(to, today);
    }

    /// Drops overrides whose count equals the tenant's and that no read still needs.
    pub fn tidy(&mut self, today: i32) {
        let base = self.terminals;
        self.terminal_overrides
            .retain(|_, s| !(s.shards == base.shards && s.read_count(today) <= base.read_count(today)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u64) -> ShardCount {
        ShardCount::new(v).unwrap()
    }

    #[test]
    fn counts_are_bounded() {
        assert_eq!(ShardCount::new(0), Err(ShardError::OutOfRange(0)));
        assert_eq!(ShardCount::new(33), Err(ShardError::OutOfRange(33)));
        assert_eq!(ShardCount::new(256), Err(ShardError::OutOfRange(256)));
        assert_eq!(ShardCount::new(32).unwrap().get(), 32);
    }

    #[test]
    fn a_transaction_keeps_its_shard_and_shards_are_all_used() {
        let mut seen = [0u32; 8];
        for i in 0..8000 {
            let id = TransactionId::parse(&format!("tx-{i}")).unwrap();
            let s = n(8).shard_of(&id);
            assert_eq!(s, n(8).shard_of(&id));
            seen[s as usize] += 1;
        }
        // Roughly even: each of 8 shards within 20% of 1000.
        assert!(seen.iter().all(|c| (800..1200).contains(c)), "{seen:?}");
        assert_eq!(n(1).shard_of(&TransactionId::parse("x").unwrap()), 0);
    }

    #[test]
    fn raising_is_immediate_and_lowering_keeps_reading_the_old_shards_through_retention() {
        let s = ShardSetting::new(n(4));
        let up = s.change(n(16), 100);
        assert_eq!((up.shards, up.read_count(100)), (n(16), n(16)));

        let down = up.change(n(2), 200);
        assert_eq!(down.shards, n(2));
        assert_eq!(down.read_count(200), n(16));
        assert_eq!(down.read_count(200 + RETENTION_DAYS + 1), n(16));
        assert_eq!(down.read_count(200 + RETENTION_DAYS + 2), n(2));

        // Lowering again while the old count is still read keeps the highest one read.
        let again = down.change(n(1), 210);
        assert_eq!(again.read_count(210 + RETENTION_DAYS), n(16));
        // Raising back above everything read drops the memory of the old count.
        assert_eq!(again.change(n(20), 211), ShardSetting::new(n(20)));
        // Raising to less than what is still read keeps reading the old count.
        let partial = again.change(n(8), 211);
        assert_eq!((partial.shards, partial.read_count(211)), (n(8), n(16)));
    }

    #[test]
    fn overrides_replace_the_tenant_count_for_their_terminal() {
        let mut a = AggregateShards::default();
        let big = TerminalId::parse("big").unwrap();
        let other = TerminalId::parse("other").unwrap();
        a.set_terminal(&big, n(32), 10).unwrap();
        assert_eq!(a.terminal(&big).shards, n(32));
        assert_eq!(a.terminal(&other).shards, n(DEFAULT_TERMINAL_SHARDS as u64));
        // Lowered back to the tenant's count: kept while the 32 shards are still read.
        a.set_terminal(&big, n(DEFAULT_TERMINAL_SHARDS as u64), 20).unwrap();
        a.tidy(20);
        assert_eq!(a.terminal(&big).read_count(20), n(32));
        a.tidy(20 + RETENTION_DAYS + 2);
        assert!(a.terminal_overrides().is_empty());
    }
}
