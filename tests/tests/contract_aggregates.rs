//! The AggregateReads contract (`verdict::ports::contract::aggregates`) against the in-memory
//! fake and the DynamoDB adapter on moto.

use verdict::ports::contract::aggregates::aggregate_reads;
use verdict::ports::in_memory::InMemoryDecisions;
use verdict_integration::Stack;

#[tokio::test]
async fn the_in_memory_fake_keeps_the_aggregate_reads_contract() {
    aggregate_reads(&InMemoryDecisions::default()).await;
}

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_aggregate_reads_contract() {
    let st = Stack::new().await;
    aggregate_reads(&st.store).await;
}
