//! The job store's contract (`verdict::ports::contract::jobs`: the lease rules, and model import's
//! record of an end) against the DynamoDB adapter on moto (shared's unit
//! tests run it on the fake).

use verdict::domain::TenantId;
use verdict::ports::contract::jobs::lease_rules;
use verdict_integration::Stack;

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_job_contract() {
    let st = Stack::new().await;
    lease_rules(&st.store, &acme(), &st.bucket, "labels/incoming/acme").await;
}
