//! The DecisionStore contract (`verdict::ports::contract::decisions`) against the DynamoDB
//! adapter on moto (shared's unit tests run it on the fake).

use verdict::adapters::DynamoStore;
use verdict::domain::auth::{KeyHash, KeyRecord};
use verdict::domain::policy::Thresholds;
use verdict::domain::TenantId;
use verdict::ports::contract::decisions::{self as contract, Seed};
use verdict_integration::Stack;

/// The admin writes the contract needs, on the adapter (the CLI's calls).
struct Admin<'a>(&'a DynamoStore);

impl Seed for Admin<'_> {
    async fn seed_key(&self, hash: &KeyHash, rec: &KeyRecord) {
        self.0.put_key(hash, rec).await.expect("put_key");
    }
    async fn seed_thresholds(&self, tenant: &TenantId, t: Thresholds) {
        self.0.set_thresholds(tenant, t).await.expect("set_thresholds");
    }
}

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_decision_store_contract() {
    let st = Stack::new().await;
    contract::decision_store(&st.store, &Admin(&st.store)).await;
}

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_decision_window_contract() {
    let st = Stack::new().await;
    contract::decision_window(&st.store).await;
}

/// A decision item as written before the reason union and policy versions (no `kind` on its model
/// reason, no `policy_version`) still reads, as a model reason and a `None` version.
#[tokio::test]
async fn decision_items_written_before_the_union_still_read() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use verdict::adapters::dynamodb::Keys;
    use verdict::domain::decision::ReasonRecord;
    use verdict::ports::{DecisionCommit, DecisionStore};

    let st = Stack::new().await;
    let acme = TenantId::parse("acme").unwrap();
    let t = contract::tx("tx-old", "2018-08-08T10:00:00Z", 5_000, "c-1");
    let mut r = contract::record(&t, "fp");
    r.reasons.remove(0); // the rule reason: none existed then
    let commit = DecisionCommit {
        record: &r,
        transaction: &t,
        idempotency_key: None,
        delta: verdict::domain::features::transaction_delta(&t),
        aggregates: verdict::ports::AggregateWritePlan::NONE,
    };
    st.store.commit(&acme, &commit).await.unwrap();
    let key = Keys::new(&acme).decision(&t.id);
    st.dynamodb
        .update_item()
        .table_name(&st.table)
        .key("pk", AttributeValue::S(key.pk.clone()))
        .key("sk", AttributeValue::S(key.sk.clone()))
        .update_expression("REMOVE policy_version, reasons[0].#k")
        .expression_attribute_names("#k", "kind")
        .send()
        .await
        .unwrap();
    let raw = st.raw_item(&key).await;
    assert!(!raw.contains_key("policy_version"), "the item is in the old shape");
    let read = st.store.decision(&acme, &t.id).await.unwrap().unwrap();
    assert_eq!(read.policy_version, None);
    assert!(matches!(&read.reasons[..], [ReasonRecord::Model(m)] if m.code == "AMOUNT_HIGH"));
    r.policy_version = None;
    assert_eq!(read, r);
}
