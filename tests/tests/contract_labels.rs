//! The label store's contract (`verdict::ports::contract::labels`) against
//! the DynamoDB adapter on moto, whose decision is stored as the api stores one (shared's unit
//! tests run it on the fake).

use verdict::domain::TenantId;
use verdict::ports::contract::labels::{label_rules, seed_decision, unknown};
use verdict_integration::Stack;

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_label_contract() {
    let st = Stack::new().await;
    let seeded = seed_decision(&st.store, &acme()).await;
    label_rules(&st.store, &acme(), &seeded, &unknown()).await;
}
