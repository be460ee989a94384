//! The AggregateReads contract (the batch runner's bulk reads of the `stored` source): a bulk
//! read finds what a decision's own read finds, an entity with no aggregate is absent, another
//! tenant's entities of the same ids are not found, and a read of more keys than one BatchGetItem
//! takes still answers them all.

use super::decisions::{record, tx};
use crate::domain::auth::KeyHash;
use crate::domain::features::{transaction_delta, EntityAggregate};
use crate::domain::{CustomerId, TenantId, TerminalId};
use crate::ports::{AggregateReads, DecisionCommit, DecisionStore};

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
        .load_for_scoring(&acme, &KeyHash("0".repeat(64)), &seen, None)
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
