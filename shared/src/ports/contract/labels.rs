//! The label store's contract: the label-write rules as one test body, run against
//! [`InMemoryLabels`] and against the DynamoDB adapter on moto. It panics on the first broken
//! rule.

use crate::domain::decision::TransactionInputs;
use crate::domain::features::transaction_delta;
use crate::domain::labels::{LabelValue, StoredLabel};
use crate::domain::{CustomerId, TenantId, TerminalId, Timestamp, TransactionId};
use crate::ports::contract::decisions;
use crate::ports::in_memory::InMemoryLabels;
use crate::ports::labels::{LabelStore, LabelTarget, LabelWrite, LabelWriteOutcome};
use crate::ports::{DecisionCommit, DecisionStore};

/// A decision the caller stored (unlabelled) before calling [`label_rules`].
pub struct Seeded {
    pub id: TransactionId,
    pub occurred_at: Timestamp,
    pub customer: CustomerId,
    pub terminal: TerminalId,
}

/// The id [`label_rules`] is given as one no decision has.
pub fn unknown() -> TransactionId {
    TransactionId::parse("tx-none").unwrap()
}

fn seeded() -> Seeded {
    let t = decisions::tx("tx-label-1", "2018-08-01T10:00:00Z", 1_000, "c-label-1");
    Seeded {
        id: t.id,
        occurred_at: t.occurred_at,
        customer: t.customer_id,
        terminal: t.terminal_id,
    }
}

/// The fake, holding the decision [`label_rules`] labels.
pub fn seeded_fake(tenant: &TenantId) -> (InMemoryLabels, Seeded) {
    let (store, d) = (InMemoryLabels::default(), seeded());
    let target = LabelTarget {
        occurred_at: d.occurred_at,
        customer_id: d.customer.clone(),
        terminal_id: Some(d.terminal.clone()),
        label: None,
    };
    store.add_decision(tenant, &d.id, target);
    (store, d)
}

/// Stores the decision [`label_rules`] labels as the api does, through the decision store whose
/// items the label store reads (the DynamoDB adapter is both).
pub async fn seed_decision<D: DecisionStore>(store: &D, tenant: &TenantId) -> Seeded {
    let d = seeded();
    let t = decisions::tx(d.id.as_str(), "2018-08-01T10:00:00Z", 1_000, d.customer.as_str());
    let mut record = decisions::record(&t, "fp-label");
    record.inputs = serde_json::to_value(TransactionInputs::from_transaction(&t))
        .unwrap()
        .into();
    let commit = DecisionCommit {
        record: &record,
        transaction: &t,
        idempotency_key: None,
        delta: transaction_delta(&t),
        aggregates: crate::ports::AggregateWritePlan::NONE,
    };
    store.commit(tenant, &commit).await.unwrap();
    d
}

fn label(value: LabelValue, at: &str) -> StoredLabel {
    StoredLabel {
        value,
        source: "cb".into(),
        labelled_at: Timestamp::parse("t", at).unwrap(),
        file: Some("s3://b/k".into()),
        etag: Some("e".into()),
        line: Some(2),
        note: None,
    }
}

pub async fn label_rules<S: LabelStore>(store: &S, tenant: &TenantId, d: &Seeded, unknown: &TransactionId) {
    let ids = [d.id.clone(), unknown.clone()];
    let targets = store.label_targets(tenant, &ids).await.unwrap();
    assert_eq!(targets.len(), 1, "only stored decisions are targets");
    let t = &targets[&d.id];
    assert_eq!(
        (&t.occurred_at, &t.customer_id, t.terminal_id.as_ref(), &t.label),
        (&d.occurred_at, &d.customer, Some(&d.terminal), &None)
    );
    let day = d.occurred_at.epoch_day();
    let newest = store
        .newest_days(
            tenant,
            std::slice::from_ref(&d.customer),
            std::slice::from_ref(&d.terminal),
        )
        .await
        .unwrap();
    assert_eq!(newest.customers.get(&d.customer), Some(&day));
    assert_eq!(newest.terminals.get(&d.terminal), Some(&day));

    fn write<'a>(
        label: &'a StoredLabel,
        previous: Option<&'a StoredLabel>,
        fraud_delta: i64,
        day: i32,
    ) -> LabelWrite<'a> {
        LabelWrite {
            label,
            previous,
            fraud_delta,
            day,
            customer: None,
            terminal: None,
        }
    }
    let fraud = &label(LabelValue::Fraud, "2030-01-01T00:00:00Z");
    let legit = &label(LabelValue::Legit, "2030-01-02T00:00:00Z");
    let stale = &label(LabelValue::Fraud, "2029-01-01T00:00:00Z");
    let mut first = write(fraud, None, 1, day);
    first.customer = Some(&d.customer);
    first.terminal = Some(&d.terminal);
    assert_eq!(
        store.write_label(tenant, &d.id, &first).await.unwrap(),
        LabelWriteOutcome::Written
    );
    assert_eq!(
        store.write_label(tenant, &d.id, &first).await.unwrap(),
        LabelWriteOutcome::Changed,
        "no label any more: the first write wins once"
    );
    assert_eq!(
        store
            .write_label(tenant, &d.id, &write(legit, Some(stale), -1, day))
            .await
            .unwrap(),
        LabelWriteOutcome::Changed,
        "a previous label that is not the stored one"
    );
    assert_eq!(
        store
            .write_label(tenant, unknown, &write(fraud, None, 0, day))
            .await
            .unwrap(),
        LabelWriteOutcome::Changed,
        "no such decision"
    );
    let got = store.label_targets(tenant, &ids).await.unwrap();
    assert_eq!(got[&d.id].label.as_ref(), Some(fraud));
    assert_eq!(
        store
            .write_label(tenant, &d.id, &write(legit, Some(fraud), 0, day))
            .await
            .unwrap(),
        LabelWriteOutcome::Written
    );
    let got = store.label_targets(tenant, &ids).await.unwrap();
    assert_eq!(got[&d.id].label.as_ref(), Some(legit), "the label with its provenance");
    let newest = store
        .newest_days(
            tenant,
            std::slice::from_ref(&d.customer),
            std::slice::from_ref(&d.terminal),
        )
        .await
        .unwrap();
    assert_eq!(
        newest.customers.get(&d.customer),
        Some(&day),
        "a fraud count adds no newer day"
    );
    let other = TenantId::parse(&format!("{tenant}-other")).unwrap();
    assert!(
        store.label_targets(&other, &ids).await.unwrap().is_empty(),
        "tenant-scoped"
    );
}
