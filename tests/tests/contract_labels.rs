//! The label store's contract (`verdict::ports::contract::labels`) against the in-memory fake and
//! against the DynamoDB adapter on moto, whose decision is stored as the api stores one.

use verdict::domain::TenantId;
use verdict::ports::contract::labels::{label_rules, seed_decision, seeded_fake, unknown};
use verdict_integration::Stack;

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

#[tokio::test]
async fn the_in_memory_fake_keeps_the_label_contract() {
    let (fake, seeded) = seeded_fake(&acme());
    label_rules(&fake, &acme(), &seeded, &unknown()).await;
}

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_label_contract() {
    let st = Stack::new().await;
    let seeded = seed_decision(&st.store, &acme()).await;
    label_rules(&st.store, &acme(), &seeded, &unknown()).await;
}
