//! The DecisionStore contract (tests/src/contract.rs) against the in-memory fake and against the
//! DynamoDB adapter on moto.

use verdict::ports::in_memory::InMemoryDecisions;
use verdict_integration::{contract, Stack};

#[tokio::test]
async fn the_in_memory_fake_keeps_the_decision_store_contract() {
    contract::decision_store(&InMemoryDecisions::default()).await;
}

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_decision_store_contract() {
    let st = Stack::new().await;
    contract::decision_store(&st.store).await;
}
