//! The AggregateReads contract (the batch runner's bulk reads of the `stored` source): a bulk
//! read finds what a decision's own read finds, an entity with no aggregate is absent, another
//! tenant's entities of the same ids are not found, and a read of more keys than one BatchGetItem
//! takes still answers them all. And the AggregateSeeding contract (`verdict history load`),
//! below.

use super::decisions::{record, tx};
use crate::domain::auth::KeyHash;
use crate::domain::features::{transaction_delta, DayCounter, EntityAggregate};
use crate::domain::{CustomerId, TenantId, TerminalId};
use crate::ports::{AggregateReads, AggregateSeeding, DecisionCommit, DecisionStore};

pub async fn aggregate_reads<S: AggregateReads + DecisionStore>(store: &S) {
    let acme = TenantId::parse("acme").unwrap();
    let seen = tx("tx-a", "2018-08-08T10:00:00Z", 5_000, "c-1");
    for (i, at) in ["2018-08-07T10:00:00Z", "2018-08-08T10:00:00Z"].into_iter().enumerate() {
        let t = tx(&format!("tx-{i}"), at, 5_000 + i as i64, "c-1");
        let r = record(&t, "fp");
        let commit = DecisionCommit {
            record: &r,
            transaction: &t,
            idempotency_key: None,
            delta: transaction_delta(&t),
            aggregates: crate::ports::AggregateWritePlan::NONE,
        };
        store.commit(&acme, &commit).await.unwrap();
    }
    // Any well-formed hash: the adapter reads nothing for one no key could have.
    let snap = store
        .load_for_scoring(&acme, Some(&KeyHash("0".repeat(64))), &seen, None)
        .await
        .unwrap();
    assert_ne!(snap.customer, EntityAggregate::default(), "c-1 has history");

    // 120 customers and 5 terminals: more keys than one BatchGetItem takes.
    let mut customers: Vec<CustomerId> = (0..119)
        .map(|i| CustomerId::parse(&format!("nobody-{i}")).unwrap())
        .collect();
    customers.push(seen.customer_id.clone());
    let mut terminals: Vec<TerminalId> = (0..4)
        .map(|i| TerminalId::parse(&format!("nowhere-{i}")).unwrap())
        .collect();
    terminals.push(seen.terminal_id.clone());
    let found = store.aggregates(&acme, &customers, &terminals).await.unwrap();
    assert_eq!(found.customers.len(), 1, "only c-1 has an aggregate");
    assert_eq!(found.terminals.len(), 1, "only t-1 has an aggregate");
    assert_eq!(found.customers[&seen.customer_id], snap.customer);
    assert_eq!(found.terminals[&seen.terminal_id], snap.terminal);

    // Another tenant's entities of the same ids are not this tenant's.
    let other = TenantId::parse("globex").unwrap();
    let none = store.aggregates(&other, &customers, &terminals).await.unwrap();
    assert!(none.customers.is_empty() && none.terminals.is_empty());
    let empty = store.aggregates(&acme, &[], &[]).await.unwrap();
    assert!(empty.customers.is_empty() && empty.terminals.is_empty());
}

/// The AggregateSeeding contract: a seeded aggregate reads back whole, in bulk and for a
/// decision, in the form a decision's commit adds to; seeding again replaces rather than adds;
/// an empty aggregate writes nothing; other tenants see none of it; more entities than one
/// BatchWriteItem takes are all written.
pub async fn aggregate_seeding<S: AggregateSeeding + AggregateReads + DecisionStore>(store: &S) {
    let acme = TenantId::parse("acme").unwrap();
    let t = tx("tx-after-history", "2018-08-08T10:00:00Z", 7_000, "c-seeded");
    let day = t.occurred_at.epoch_day();
    let counter = |count, amount_minor, frauds| DayCounter {
        count,
        amount_minor,
        frauds,
    };
    let customer = EntityAggregate::from_days([(day - 30, counter(4, 20_000, 1)), (day, counter(1, 900, 0))]);
    let terminal = EntityAggregate::from_days([(day - 9, counter(10, 55_000, 3)), (day - 8, counter(2, 1_000, 0))]);
    // 40 customers: more than one BatchWriteItem's 25 items.
    let mut customers: Vec<(CustomerId, EntityAggregate)> = (0..39)
        .map(|i| {
            let agg = EntityAggregate::from_days([(day - 1, counter(i + 1, 100 * (i as i64 + 1), 0))]);
            (CustomerId::parse(&format!("c-bulk-{i}")).unwrap(), agg)
        })
        .collect();
    customers.push((t.customer_id.clone(), customer.clone()));
    let empty = CustomerId::parse("c-empty").unwrap();
    customers.push((empty.clone(), EntityAggregate::default()));
    let terminals = vec![(t.terminal_id.clone(), terminal.clone())];
    store.seed_aggregates(&acme, &customers, &terminals).await.unwrap();

    let ids: Vec<CustomerId> = customers.iter().map(|(c, _)| c.clone()).collect();
    let found = store.aggregates(&acme, &ids, &[t.terminal_id.clone()]).await.unwrap();
    assert_eq!(
        found.customers.len(),
        40,
        "every non-empty aggregate is stored, the empty one is not"
    );
    assert!(!found.customers.contains_key(&empty));
    for (c, agg) in &customers[..40] {
        assert_eq!(&found.customers[c], agg, "{c}");
    }
    assert_eq!(found.terminals[&t.terminal_id], terminal);

    // A decision reads the seeded history and adds to it.
    let snap = store
        .load_for_scoring(&acme, Some(&KeyHash("0".repeat(64))), &t, None)
        .await
        .unwrap();
    assert_eq!(snap.customer, customer);
    assert_eq!(snap.terminal, terminal);
    let r = record(&t, "fp");
    let commit = DecisionCommit {
        record: &r,
        transaction: &t,
        idempotency_key: None,
        delta: transaction_delta(&t),
        aggregates: &snap.aggregate_write,
    };
    store.commit(&acme, &commit).await.unwrap();
    let after = store.aggregates(&acme, &[t.customer_id.clone()], &[]).await.unwrap();
    let after = &after.customers[&t.customer_id];
    assert_eq!(
        after.window(day, day),
        counter(2, 7_900, 0),
        "the commit added to the seeded day"
    );
    assert_eq!(after.window(day - 30, day - 30), counter(4, 20_000, 1));

    // Seeding again replaces: the same history twice is the same state, not twice the counts.
    let again = &customers[..3];
    store.seed_aggregates(&acme, again, &[]).await.unwrap();
    store.seed_aggregates(&acme, again, &[]).await.unwrap();
    let ids: Vec<CustomerId> = again.iter().map(|(c, _)| c.clone()).collect();
    let found = store.aggregates(&acme, &ids, &[]).await.unwrap();
    for (c, agg) in again {
        assert_eq!(&found.customers[c], agg, "{c}");
    }

    // Another tenant's entities of the same ids are untouched.
    let other = TenantId::parse("globex").unwrap();
    let none = store.aggregates(&other, &ids, &[t.terminal_id.clone()]).await.unwrap();
    assert!(none.customers.is_empty() && none.terminals.is_empty());
}
