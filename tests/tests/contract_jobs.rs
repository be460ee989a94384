//! The job store's contract (`verdict::ports::contract::jobs`: the lease rules, and model import's
//! record of an end) against the in-memory fake and against the DynamoDB adapter on moto.

use verdict::domain::TenantId;
use verdict::ports::contract::jobs::lease_rules;
use verdict::ports::in_memory::InMemoryJobs;
use verdict_integration::Stack;

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

#[tokio::test]
async fn the_in_memory_fake_keeps_the_job_contract() {
    lease_rules(&InMemoryJobs::default(), &acme(), "data", "labels/incoming/acme").await;
}

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_job_contract() {
    let st = Stack::new().await;
    lease_rules(&st.store, &acme(), &st.bucket, "labels/incoming/acme").await;
}
