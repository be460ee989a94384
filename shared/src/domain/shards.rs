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
//! the highest count used, until an operator forgets it ([`ShardSetting::forget_lowered`]): the
//! days written under it are keyed by transaction day, and a backdated transaction may read them
//! whenever it comes, so no timer can say they are no longer needed.

use crate::domain::{CustomerId, TerminalId, TransactionId};
use std::collections::BTreeMap;

/// The most shards one entity's aggregate may have: with a customer and a terminal at the
/// maximum, a decision's one BatchGetItem still fits its 100 keys.
pub const MAX_SHARDS: u8 = 32;
/// Customers: one card rarely pays more than once a second, so one item serves.
pub const DEFAULT_CUSTOMER_SHARDS: u8 = 1;
/// Terminals: one, the layout before sharding, so a rollback to a build without shards loses
/// nothing; raise a tenant or a known big merchant (docs/dynamodb.md, "Sharded aggregates").
pub const DEFAULT_TERMINAL_SHARDS: u8 = 1;
/// Most per-terminal overrides a tenant may set: they sit in the config item every decision
/// reads; 64 with ids of up to about 50 bytes keep it within one 4 KB read unit.
pub const MAX_OVERRIDES: usize = 64;

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
    /// The highest count used before a lowering, which reads still cover.
    pub previous: Option<ShardCount>,
}

impl ShardSetting {
    pub fn new(shards: ShardCount) -> Self {
        ShardSetting { shards, previous: None }
    }

    /// For a stored setting that cannot be read: reads cover every possible shard and writes go
    /// to shard 0, which every layout reads. Costly, but no count is missed.
    pub fn unreadable() -> Self {
        ShardSetting {
            shards: ShardCount::ONE,
            previous: Some(ShardCount(MAX_SHARDS)),
        }
    }

    /// Shards a read must cover.
    pub fn read_count(&self) -> ShardCount {
        self.previous.map_or(self.shards, |old| old.max(self.shards))
    }

    /// The setting after changing the count to `to`. Lowering keeps reads on the highest count
    /// read so far.
    pub fn change(&self, to: ShardCount) -> ShardSetting {
        let read = self.read_count();
        if to >= read {
            return ShardSetting::new(to);
        }
        ShardSetting {
            shards: to,
            previous: Some(read),
        }
    }

    /// Stops reading the shards above the current count: for when no transaction dated before
    /// the lowering plus retention (65 days) will be scored any more.
    pub fn forget_lowered(&self) -> ShardSetting {
        ShardSetting::new(self.shards)
    }
}

/// One of a tenant's shard settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardTarget {
    Customers,
    Terminals,
    Terminal(TerminalId),
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

    /// For a stored layout that cannot be read: every setting [`ShardSetting::unreadable`].
    pub fn unreadable() -> Self {
        let all = ShardSetting::unreadable();
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
    pub fn set_terminal(&mut self, id: &TerminalId, to: ShardCount) -> Result<(), ShardError> {
        let next = self.terminal(id).change(to);
        if !self.terminal_overrides.contains_key(id) && self.terminal_overrides.len() >= MAX_OVERRIDES {
            return Err(ShardError::TooManyOverrides);
        }
        self.terminal_overrides.insert(id.clone(), next);
        Ok(())
    }

    /// Sets the tenant's terminal count. Overrides stay; each keeps its own count.
    pub fn set_terminals(&mut self, to: ShardCount) {
        self.terminals = self.terminals.change(to);
    }

    pub fn set_customers(&mut self, to: ShardCount) {
        self.customers = self.customers.change(to);
    }

    /// Forgets what one setting's lowering still reads (see [`ShardSetting::forget_lowered`]):
    /// one at a time, since each lowering has its own date.
    pub fn forget_lowered(&mut self, which: &ShardTarget) {
        match which {
            ShardTarget::Customers => self.customers = self.customers.forget_lowered(),
            ShardTarget::Terminals => self.terminals = self.terminals.forget_lowered(),
            ShardTarget::Terminal(id) => {
                if let Some(s) = self.terminal_overrides.get_mut(id) {
                    *s = s.forget_lowered();
                }
            }
        }
    }

    /// Drops overrides that say what the tenant's count says, and that no read still needs.
    pub fn tidy(&mut self) {
        let base = self.terminals;
        self.terminal_overrides
            .retain(|_, s| !(s.shards == base.shards && s.read_count() <= base.read_count()));
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
    fn raising_is_immediate_and_lowering_keeps_reading_the_old_shards_until_forgotten() {
        let s = ShardSetting::new(n(4));
        let up = s.change(n(16));
        assert_eq!((up.shards, up.read_count()), (n(16), n(16)));

        let down = up.change(n(2));
        assert_eq!((down.shards, down.read_count()), (n(2), n(16)));
        // Lowering again keeps the highest count read.
        let again = down.change(n(1));
        assert_eq!((again.shards, again.read_count()), (n(1), n(16)));
        // Raising back above everything read drops the memory of the old count.
        assert_eq!(again.change(n(20)), ShardSetting::new(n(20)));
        // Raising to less than what is still read keeps reading the old count.
        let partial = again.change(n(8));
        assert_eq!((partial.shards, partial.read_count()), (n(8), n(16)));
        assert_eq!(partial.forget_lowered(), ShardSetting::new(n(8)));
    }

    #[test]
    fn overrides_replace_the_tenant_count_for_their_terminal() {
        let mut a = AggregateShards::default();
        let big = TerminalId::parse("big").unwrap();
        let other = TerminalId::parse("other").unwrap();
        a.set_terminal(&big, n(32)).unwrap();
        assert_eq!(a.terminal(&big).shards, n(32));
        assert_eq!(a.terminal(&other).shards, n(DEFAULT_TERMINAL_SHARDS as u64));
        // Lowered back to the tenant's count: kept while the 32 shards are still read.
        a.set_terminal(&big, n(DEFAULT_TERMINAL_SHARDS as u64)).unwrap();
        a.tidy();
        assert_eq!(a.terminal(&big).read_count(), n(32));
        a.forget_lowered(&ShardTarget::Terminals);
        a.tidy();
        assert_eq!(
            a.terminal(&big).read_count(),
            n(32),
            "forgetting the tenant's count leaves the override"
        );
        a.forget_lowered(&ShardTarget::Terminal(big.clone()));
        a.tidy();
        assert!(a.terminal_overrides().is_empty());
        for i in 0..MAX_OVERRIDES {
            a.set_terminal(&TerminalId::parse(&format!("t{i}")).unwrap(), n(2))
                .unwrap();
        }
        assert_eq!(a.set_terminal(&big, n(2)), Err(ShardError::TooManyOverrides));
    }
}
