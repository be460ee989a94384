//! The review store's contract (`verdict::ports::contract::reviews`) against the DynamoDB adapter
//! on moto (shared's unit tests run it on the fake).

use verdict::ports::contract::reviews::review_rules;
use verdict_integration::Stack;

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_review_contract() {
    let st = Stack::new().await;
    review_rules(&st.store).await;
}
