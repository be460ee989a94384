//! The registry and import contract (`verdict::ports::contract::registry`) against the DynamoDB
//! adapter on moto (shared's unit tests run it on the fake).

use verdict::domain::TenantId;
use verdict::ports::contract::registry::registry_contract;
use verdict_integration::Stack;

fn tenants() -> (TenantId, TenantId) {
    (TenantId::parse("acme").unwrap(), TenantId::parse("globex").unwrap())
}

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_registry_contract() {
    let st = Stack::new().await;
    let (acme, globex) = tenants();
    registry_contract(&st.store, &acme, &globex).await;
}
