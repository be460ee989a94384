//! The proof that the online path (one transaction plus the day buckets a DynamoDB read returns)
//! computes exactly the features the offline path (a whole file in time order) computes.

use std::collections::{HashMap, VecDeque};
use std::ops::RangeInclusive;
use verdict::domain::features::{
    compute, feature_days, transaction_delta, DayCounter, EntityAggregate, Feature, FeatureVector, OfflineFeatures,
    FEATURE_NAMES, LABEL_DELAY_DAYS,
};
use verdict::domain::{Currency, CustomerId, Money, TerminalId, Timestamp, Transaction, TransactionId};
use verdict::offline::sim::{simulate, SimConfig};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Entity {
    Customer(String),
    Terminal(String),
}

/// Stands in for the DynamoDB table: one item per (entity, day), updated with atomic ADDs only.
#[derive(Default)]
struct Store {
    buckets: HashMap<(Entity, i32), DayCounter>,
    items_read: usize,
}

impl Store {
    /// One query: the entity's buckets for `days`, and nothing else.
    fn load(&mut self, entity: &Entity, days: RangeInclusive<i32>) -> EntityAggregate {
        let items: Vec<(i32, DayCounter)> = days
            .filter_map(|d| self.buckets.get(&(entity.clone(), d)).map(|c| (d, *c)))
            .collect();
        self.items_read += items.len();
        EntityAggregate::from_days(items)
    }

    /// `ADD count :c, amount_minor :a, frauds :f`
    fn add(&mut self, entity: Entity, day: i32, delta: &DayCounter) {
        let c = self.buckets.entry((entity, day)).or_default();
        c.count += delta.count;
        c.amount_minor += delta.amount_minor;
        c.frauds += delta.frauds;
    }

    fn label_fraud(&mut self, entity: Entity, day: i32) {
        self.add(
            entity,
            day,
            &DayCounter {
                count: 0,
                amount_minor: 0,
                frauds: 1,
            },
        );
    }

    /// What the API does for one transaction: read its entities' buckets, compute, then add.
    fn score(&mut self, tx: &Transaction) -> FeatureVector {
        let features = self.features(tx);
        let d = transaction_delta(tx);
        self.add(customer(tx), d.day, &d.counter);
        self.add(terminal(tx), d.day, &d.counter);
        features
    }

    fn features(&mut self, tx: &Transaction) -> FeatureVector {
        let days = feature_days(tx.occurred_at.epoch_day());
        let c = self.load(&customer(tx), days.customer);
        let t = self.load(&terminal(tx), days.terminal);
        compute(tx, &c, &t)
    }
}

fn customer(tx: &Transaction) -> Entity {
    Entity::Customer(tx.customer_id.as_str().to_owned())
}

fn terminal(tx: &Transaction) -> Entity {
    Entity::Terminal(tx.terminal_id.as_str().to_owned())
}

#[test]
fn online_features_equal_offline_features_on_a_simulated_month() {
    let cfg = SimConfig {
        customers: 300,
        terminals: 600,
        days: 30,
        seed: 5,
        ..SimConfig::default()
    };
    let txs = simulate(&cfg, &mut |_, _| {}).unwrap();
    assert!(txs.len() > 15_000, "{} transactions", txs.len());

    let mut offline = OfflineFeatures::new();
    let mut online = Store::default();
    // Frauds whose labels have not arrived yet: (day, customer, terminal).
    let mut pending: VecDeque<(i32, Entity, Entity)> = VecDeque::new();
    let mut non_zero = [0usize; verdict::FEATURE_COUNT];
    for t in &txs {
        let day = t.tx.occurred_at.epoch_day();
        // A label is applied as late as it can be: just before the first day whose terminal
        // windows cover its day. Were `compute` to read a more recent day's frauds, the online
        // store would not have them yet and the two paths would differ.
        while pending.front().is_some_and(|(d, _, _)| *d + LABEL_DELAY_DAYS <= day) {
            let (d, c, term) = pending.pop_front().unwrap(); // front() was just Some
            online.label_fraud(c, d);
            online.label_fraud(term, d);
        }

        let expected = offline.push(&t.tx, t.label);
        let got = online.score(&t.tx);
        for (i, name) in FEATURE_NAMES.iter().enumerate() {
            assert_eq!(got.0[i], expected.0[i], "{name} of {} ({})", t.tx.id, t.tx.occurred_at);
            non_zero[i] += usize::from(got.0[i] != 0.0);
        }
        if t.label.is_some_and(|l| l.fraud) {
            pending.push_back((day, customer(&t.tx), terminal(&t.tx)));
        }
    }

    println!(
        "non-zero counts per feature: {non_zero:?}; items read: {}",
        online.items_read
    );
    // Not vacuous: terminal windows (which only start after 7 days) saw transactions and frauds.
    for f in [
        Feature::TerminalTxCount1d,
        Feature::TerminalTxCount7d,
        Feature::TerminalTxCount30d,
    ] {
        assert!(
            non_zero[f.index()] > txs.len() / 3,
            "{} non-zero only {} times",
            f.name(),
            non_zero[f.index()]
        );
    }
    for f in [
        Feature::TerminalRisk1d,
        Feature::TerminalRisk7d,
        Feature::TerminalRisk30d,
    ] {
        assert!(
            non_zero[f.index()] > 100,
            "{} non-zero only {} times",
            f.name(),
            non_zero[f.index()]
        );
    }
    assert!(non_zero[Feature::DuringWeekend.index()] > 0 && non_zero[Feature::DuringNight.index()] > 0);
}

fn tx(id: &str, at: &str, terminal: &str) -> Transaction {
    Transaction {
        id: TransactionId::parse(id).unwrap(),
        occurred_at: Timestamp::parse("occurred_at", at).unwrap(),
        amount: Money::new(2_500, Currency::EUR).unwrap(),
        customer_id: CustomerId::parse("c-1").unwrap(),
        terminal_id: TerminalId::parse(terminal).unwrap(),
    }
}

#[test]
fn a_fraud_label_6_days_old_is_not_seen_but_one_7_days_old_is() {
    // Day d is 2018-05-20; days d-6 and d-7 are 05-14 and 05-13.
    let now = tx("now", "2018-05-20T09:00:00Z", "t-1");
    for (past_day, seen) in [("2018-05-14", false), ("2018-05-13", true)] {
        let mut store = Store::default();
        let past = tx("past", &format!("{past_day}T15:00:00Z"), "t-1");
        store.score(&past);
        let before = store.features(&now);
        store.label_fraud(terminal(&past), past.occurred_at.epoch_day());
        let after = store.features(&now);

        let risk = [
            Feature::TerminalRisk1d,
            Feature::TerminalRisk7d,
            Feature::TerminalRisk30d,
        ]
        .map(|f| after.get(f));
        let count = [
            Feature::TerminalTxCount1d,
            Feature::TerminalTxCount7d,
            Feature::TerminalTxCount30d,
        ]
        .map(|f| after.get(f));
        if seen {
            assert_eq!(
                risk,
                [1.0, 1.0, 1.0],
                "a fraud on {past_day} is 7 days old on 2018-05-20"
            );
            assert_eq!(count, [1.0, 1.0, 1.0]);
            assert_eq!(before.get(Feature::TerminalRisk1d), 0.0, "before its label arrived");
        } else {
            assert_eq!(
                risk,
                [0.0, 0.0, 0.0],
                "a fraud on {past_day} is only 6 days old on 2018-05-20"
            );
            assert_eq!(count, [0.0, 0.0, 0.0], "day d-6 is outside every terminal window");
            assert_eq!(after, before, "the label changed nothing");
        }
        // The customer side does see the past transaction either way (it is within 30 days).
        assert_eq!(after.get(Feature::CustomerTxCount30d), 2.0);
        assert_eq!(after.get(Feature::CustomerMeanAmount30d), 25.0);
    }
}
