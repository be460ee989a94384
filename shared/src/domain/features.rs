//! The handbook's 15 features plus three amount ratios, computed by one function for both paths.
//!
//! Online, `compute` reads the per-entity aggregates the data layer loaded for one transaction.
//! Offline, [`OfflineFeatures`] keeps the same aggregates in memory while it walks a file in time
//! order, and calls the same `compute`. Windows are whole UTC days so the stored state is a handful
//! of day-bucketed counters that DynamoDB can update with atomic ADDs.

use crate::domain::{Label, Transaction};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use time::Weekday;

pub const FEATURE_COUNT: usize = 18;
/// The first 15 features are the Fraud Detection Handbook's, in its order.
pub const HANDBOOK_FEATURE_COUNT: usize = 15;
/// Bumped whenever a feature's name, order or definition changes; models carry it.
pub const FEATURE_SCHEMA_VERSION: u32 = 2;
/// Window lengths in days, for both customer and terminal features.
pub const WINDOWS: [i32; 3] = [1, 7, 30];
/// Fraud labels arrive this many days after the transaction; terminal features only read older days.
pub const LABEL_DELAY_DAYS: i32 = 7;
/// Day buckets kept per entity: enough for the longest delayed window (7 + 30 days) plus today.
pub const RETENTION_DAYS: i32 = 64;

/// One feature, in model input order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    Amount,
    DuringWeekend,
    DuringNight,
    CustomerTxCount1d,
    CustomerMeanAmount1d,
    CustomerTxCount7d,
    CustomerMeanAmount7d,
    CustomerTxCount30d,
    CustomerMeanAmount30d,
    TerminalTxCount1d,
    TerminalRisk1d,
    TerminalTxCount7d,
    TerminalRisk7d,
    TerminalTxCount30d,
    TerminalRisk30d,
    AmountToCustomerMean1d,
    AmountToCustomerMean7d,
    AmountToCustomerMean30d,
}

impl Feature {
    pub const ALL: [Feature; FEATURE_COUNT] = [
        Feature::Amount,
        Feature::DuringWeekend,
        Feature::DuringNight,
        Feature::CustomerTxCount1d,
        Feature::CustomerMeanAmount1d,
        Feature::CustomerTxCount7d,
        Feature::CustomerMeanAmount7d,
        Feature::CustomerTxCount30d,
        Feature::CustomerMeanAmount30d,
        Feature::TerminalTxCount1d,
        Feature::TerminalRisk1d,
        Feature::TerminalTxCount7d,
        Feature::TerminalRisk7d,
        Feature::TerminalTxCount30d,
        Feature::TerminalRisk30d,
        Feature::AmountToCustomerMean1d,
        Feature::AmountToCustomerMean7d,
        Feature::AmountToCustomerMean30d,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        FEATURE_NAMES[self as usize]
    }

    /// The window in days, for the windowed features.
    pub fn window_days(self) -> Option<i32> {
        use Feature::*;
        match self {
            CustomerTxCount1d | CustomerMeanAmount1d | TerminalTxCount1d | TerminalRisk1d | AmountToCustomerMean1d => {
                Some(1)
            }
            CustomerTxCount7d | CustomerMeanAmount7d | TerminalTxCount7d | TerminalRisk7d | AmountToCustomerMean7d => {
                Some(7)
            }
            CustomerTxCount30d
            | CustomerMeanAmount30d
            | TerminalTxCount30d
            | TerminalRisk30d
            | AmountToCustomerMean30d => Some(30),
            Amount | DuringWeekend | DuringNight => None,
        }
    }
}

pub const FEATURE_NAMES: [&str; FEATURE_COUNT] = [
    "amount",
    "during_weekend",
    "during_night",
    "customer_tx_count_1d",
    "customer_mean_amount_1d",
    "customer_tx_count_7d",
    "customer_mean_amount_7d",
    "customer_tx_count_30d",
    "customer_mean_amount_30d",
    "terminal_tx_count_1d",
    "terminal_risk_1d",
    "terminal_tx_count_7d",
    "terminal_risk_7d",
    "terminal_tx_count_30d",
    "terminal_risk_30d",
    "amount_to_customer_mean_1d",
    "amount_to_customer_mean_7d",
    "amount_to_customer_mean_30d",
];

/// The model's input row, in [`FEATURE_NAMES`] order.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FeatureVector(pub [f64; FEATURE_COUNT]);

impl FeatureVector {
    pub fn get(&self, f: Feature) -> f64 {
        self.0[f as usize]
    }

    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }
}

/// What one entity did on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DayCounter {
    pub count: u64,
    /// Sum of amounts in minor units.
    pub amount_minor: i64,
    /// Transactions of that day later labelled fraud.
    pub frauds: u64,
}

impl DayCounter {
    /// Saturating: stored sums can be anything, and a wrap (or a debug panic) would be worse than
    /// a pinned maximum.
    fn add(&mut self, other: &DayCounter) {
        self.count = self.count.saturating_add(other.count);
        self.amount_minor = self.amount_minor.saturating_add(other.amount_minor);
        self.frauds = self.frauds.saturating_add(other.frauds);
    }
}

/// Day-bucketed counters for one customer or terminal: a fixed ring, so nothing allocates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityAggregate {
    slots: [(i32, DayCounter); RETENTION_DAYS as usize],
}

impl Default for EntityAggregate {
    fn default() -> Self {
        Self {
            slots: [(i32::MIN, DayCounter::default()); RETENTION_DAYS as usize],
        }
    }
}

impl EntityAggregate {
    /// Builds the aggregate from stored day buckets (as the data layer reads them).
    /// Older buckets than the retention window behind the newest one are ignored.
    pub fn from_days(days: impl IntoIterator<Item = (i32, DayCounter)>) -> Self {
        let mut agg = Self::default();
        for (day, c) in days {
            agg.add(day, &c);
        }
        agg
    }

    fn slot(day: i32) -> usize {
        day.rem_euclid(RETENTION_DAYS) as usize
    }

    /// Adds `delta` to `day`'s bucket. A day older than the bucket it would overwrite is dropped:
    /// it has aged out of every window.
    pub fn add(&mut self, day: i32, delta: &DayCounter) {
        let slot = &mut self.slots[Self::slot(day)];
        if slot.0 == day {
            slot.1.add(delta);
        } else if slot.0 < day {
            *slot = (day, *delta);
        }
    }

    pub fn record_transaction(&mut self, day: i32, amount_minor: i64) {
        self.add(
            day,
            &DayCounter {
                count: 1,
                amount_minor,
                frauds: 0,
            },
        );
    }

    pub fn record_fraud(&mut self, day: i32) {
        self.add(
            day,
            &DayCounter {
                count: 0,
                amount_minor: 0,
                frauds: 1,
            },
        );
    }

    /// Sum of the buckets for days `first..=last`.
    pub fn window(&self, first: i32, last: i32) -> DayCounter {
        let mut sum = DayCounter::default();
        for day in first..=last {
            let (d, c) = &self.slots[Self::slot(day)];
            if *d == day {
                sum.add(c);
            }
        }
        sum
    }

    /// The stored buckets, oldest first.
    pub fn days(&self) -> Vec<(i32, DayCounter)> {
        let mut v: Vec<_> = self.slots.iter().filter(|(d, _)| *d != i32::MIN).copied().collect();
        v.sort_by_key(|(d, _)| *d);
        v
    }
}

/// The days a transaction's features read, for the data layer to load.
pub struct FeatureDays {
    /// Customer buckets: the last 30 days including today.
    pub customer: std::ops::RangeInclusive<i32>,
    /// Terminal buckets: 30 days ending `LABEL_DELAY_DAYS` days ago.
    pub terminal: std::ops::RangeInclusive<i32>,
}

pub fn feature_days(day: i32) -> FeatureDays {
    let longest = WINDOWS[WINDOWS.len() - 1];
    FeatureDays {
        customer: day - longest + 1..=day,
        terminal: day - LABEL_DELAY_DAYS - longest + 1..=day - LABEL_DELAY_DAYS,
    }
}

/// The one feature computation. `customer` and `terminal` hold the state before `tx`.
///
/// - customer windows cover days `d-w+1 ..= d` and include `tx` itself;
/// - terminal windows cover days `d-7-w+1 ..= d-7`: a day's labels are taken as known seven days
///   later, the day-bucket form of the handbook's 7-day delay;
/// - the last three features are the amount over the customer's mean amount per window. Trees
///   only approximate a ratio with many splits, and 7 days of training data are too few for that.
pub fn compute(tx: &Transaction, customer: &EntityAggregate, terminal: &EntityAggregate) -> FeatureVector {
    let day = tx.occurred_at.epoch_day();
    let t = tx.occurred_at.inner();
    let scale = 10f64.powi(tx.amount.currency.exponent() as i32);
    let mut f = [0.0; FEATURE_COUNT];
    f[0] = tx.amount.major();
    f[1] = matches!(t.weekday(), Weekday::Saturday | Weekday::Sunday) as u8 as f64;
    f[2] = (t.hour() <= 6) as u8 as f64;
    for (i, w) in WINDOWS.iter().enumerate() {
        let c = customer.window(day - w + 1, day);
        let count = c.count.saturating_add(1);
        f[3 + 2 * i] = count as f64;
        f[4 + 2 * i] = c.amount_minor.saturating_add(tx.amount.minor) as f64 / scale / count as f64;

        let last = day - LABEL_DELAY_DAYS;
        let c = terminal.window(last - w + 1, last);
        f[9 + 2 * i] = c.count as f64;
        f[10 + 2 * i] = if c.count == 0 {
            0.0
        } else {
            c.frauds as f64 / c.count as f64
        };
    }
    for i in 0..WINDOWS.len() {
        let mean = f[4 + 2 * i];
        f[15 + i] = if mean > 0.0 { f[0] / mean } else { 1.0 };
    }
    FeatureVector(f)
}

/// What scoring one transaction adds to the stored aggregates of its customer and terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateDelta {
    pub day: i32,
    pub counter: DayCounter,
}

pub fn transaction_delta(tx: &Transaction) -> AggregateDelta {
    AggregateDelta {
        day: tx.occurred_at.epoch_day(),
        counter: DayCounter {
            count: 1,
            amount_minor: tx.amount.minor,
            frauds: 0,
        },
    }
}

/// The offline path: walks transactions in time order, keeping every entity's aggregate in memory.
#[derive(Default)]
pub struct OfflineFeatures {
    customers: HashMap<String, EntityAggregate>,
    terminals: HashMap<String, EntityAggregate>,
}

impl OfflineFeatures {
    pub fn new() -> Self {
        Self::default()
    }

    /// Features for `tx` from everything pushed before it, then records it. A fraud label is
    /// recorded at once: `compute` only reads days whose labels are old enough to be known.
    pub fn push(&mut self, tx: &Transaction, label: Option<Label>) -> FeatureVector {
        let customer = self.customers.entry(tx.customer_id.as_str().to_owned()).or_default();
        let terminal = self.terminals.entry(tx.terminal_id.as_str().to_owned()).or_default();
        let features = compute(tx, customer, terminal);
        let d = transaction_delta(tx);
        customer.add(d.day, &d.counter);
        terminal.add(d.day, &d.counter);
        if label.is_some_and(|l| l.fraud) {
            customer.record_fraud(d.day);
            terminal.record_fraud(d.day);
        }
        features
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;

    fn tx(id: &str, at: &str, cents: i64, cust: &str, term: &str) -> Transaction {
        Transaction {
            id: TransactionId::parse(id).unwrap(),
            occurred_at: Timestamp::parse("occurred_at", at).unwrap(),
            amount: Money::new(cents, Currency::EUR).unwrap(),
            customer_id: CustomerId::parse(cust).unwrap(),
            terminal_id: TerminalId::parse(term).unwrap(),
        }
    }

    fn counter(count: u64, amount_minor: i64, frauds: u64) -> DayCounter {
        DayCounter {
            count,
            amount_minor,
            frauds,
        }
    }

    #[test]
    fn day_counters_saturate_instead_of_overflowing() {
        let mut agg = EntityAggregate::from_days([(100, counter(u64::MAX, i64::MAX, u64::MAX))]);
        agg.add(100, &counter(1, 1, 1));
        assert_eq!(agg.window(100, 100), counter(u64::MAX, i64::MAX, u64::MAX));
        // Two days of maximal sums in one window, and negative sums (refunds) the other way.
        agg.add(101, &counter(u64::MAX, i64::MAX, 0));
        assert_eq!(agg.window(100, 101), counter(u64::MAX, i64::MAX, u64::MAX));
        let mut neg = EntityAggregate::from_days([(100, counter(1, i64::MIN, 0))]);
        neg.add(100, &counter(1, -1, 0));
        neg.add(101, &counter(1, i64::MIN, 0));
        assert_eq!(neg.window(100, 101), counter(3, i64::MIN, 0));
    }

    #[test]
    fn features_over_a_saturated_history_are_finite() {
        let t = tx("t1", "2018-04-01T12:00:00Z", 12_345, "c1", "m1");
        let day = t.occurred_at.epoch_day();
        let full = counter(u64::MAX, i64::MAX, u64::MAX);
        let customer = EntityAggregate::from_days([(day, full), (day - 1, full)]);
        let terminal = EntityAggregate::from_days([(day - LABEL_DELAY_DAYS, full)]);
        let f = compute(&t, &customer, &terminal);
        assert!(f.as_slice().iter().all(|v| v.is_finite()), "{:?}", f.as_slice());
        assert_eq!(f.get(Feature::CustomerTxCount1d), u64::MAX as f64);
    }

    #[test]
    fn customer_windows_include_the_current_transaction() {
        let mut off = OfflineFeatures::new();
        off.push(&tx("a", "2018-04-01T10:00:00Z", 1000, "c1", "t1"), None);
        off.push(&tx("b", "2018-04-05T10:00:00Z", 3000, "c1", "t1"), None);
        let f = off.push(&tx("c", "2018-04-05T23:00:00Z", 5000, "c1", "t2"), None);
        assert_eq!(f.get(Feature::Amount), 50.0);
        assert_eq!(f.get(Feature::CustomerTxCount1d), 2.0);
        assert_eq!(f.get(Feature::CustomerMeanAmount1d), 40.0);
        assert_eq!(f.get(Feature::CustomerTxCount7d), 3.0);
        assert_eq!(f.get(Feature::CustomerMeanAmount7d), 30.0);
        assert_eq!(f.get(Feature::DuringNight), 0.0);
        // 2018-04-01 was a Sunday.
        let f = off.push(&tx("d", "2018-04-08T06:59:59Z", 100, "c2", "t2"), None);
        assert_eq!(f.get(Feature::DuringWeekend), 1.0);
        assert_eq!(f.get(Feature::DuringNight), 1.0);
        assert_eq!(f.get(Feature::CustomerTxCount30d), 1.0);
    }

    #[test]
    fn terminal_risk_respects_the_label_delay() {
        let mut off = OfflineFeatures::new();
        // Day 0: two transactions at t1, one fraud.
        off.push(
            &tx("a", "2018-04-01T10:00:00Z", 1000, "c1", "t1"),
            Some(Label {
                fraud: true,
                scenario: 2,
            }),
        );
        off.push(
            &tx("b", "2018-04-01T11:00:00Z", 1000, "c2", "t1"),
            Some(Label::default()),
        );
        // Six days later the labels are not yet known: nothing is counted.
        let f = off.push(&tx("c", "2018-04-07T23:59:59Z", 1000, "c3", "t1"), None);
        assert_eq!(f.get(Feature::TerminalTxCount1d), 0.0);
        assert_eq!(f.get(Feature::TerminalTxCount30d), 0.0);
        assert_eq!(f.get(Feature::TerminalRisk30d), 0.0);
        // Seven days later day 0 is the delayed 1-day window.
        let f = off.push(&tx("d", "2018-04-08T00:00:00Z", 1000, "c3", "t1"), None);
        assert_eq!(f.get(Feature::TerminalTxCount1d), 2.0);
        assert_eq!(f.get(Feature::TerminalRisk1d), 0.5);
        assert_eq!(f.get(Feature::TerminalRisk7d), 0.5);
        // Day 15: the 7-day window is days 2..=8 and holds c (day 6) and d (day 7), no fraud.
        let f = off.push(&tx("e", "2018-04-16T12:00:00Z", 1000, "c3", "t1"), None);
        assert_eq!(f.get(Feature::TerminalTxCount7d), 2.0);
        assert_eq!(f.get(Feature::TerminalRisk7d), 0.0);
        assert_eq!(f.get(Feature::TerminalTxCount30d), 4.0);
        assert_eq!(f.get(Feature::TerminalRisk30d), 0.25);
    }

    #[test]
    fn ring_drops_days_that_aged_out() {
        let mut agg = EntityAggregate::default();
        agg.record_transaction(100, 5);
        agg.record_transaction(100 + RETENTION_DAYS, 7);
        // An old day cannot overwrite a newer one in the same slot.
        agg.record_transaction(100, 9);
        assert_eq!(agg.window(0, 1000).amount_minor, 7);
        assert_eq!(
            agg.days(),
            vec![(
                100 + RETENTION_DAYS,
                DayCounter {
                    count: 1,
                    amount_minor: 7,
                    frauds: 0
                }
            )]
        );
    }

    #[test]
    fn feature_days_cover_every_window() {
        let d = feature_days(1000);
        assert_eq!(d.customer, 971..=1000);
        assert_eq!(d.terminal, 964..=993);
    }
}
