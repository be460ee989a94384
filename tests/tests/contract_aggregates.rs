//! The AggregateReads contract (`verdict::ports::contract::aggregates`) against the DynamoDB adapter
//! on moto (shared's unit tests run it on the fake).

use verdict::ports::contract::aggregates::{aggregate_reads, aggregate_seeding};
use verdict_integration::Stack;

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_aggregate_reads_contract() {
    let st = Stack::new().await;
    aggregate_reads(&st.store).await;
}

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_aggregate_seeding_contract() {
    let st = Stack::new().await;
    aggregate_seeding(&st.store).await;
}
