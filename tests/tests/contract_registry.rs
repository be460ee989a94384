//! The registry and import contract (`verdict::ports::contract::registry`) against the in-memory
//! fake and against the DynamoDB adapter on moto.

use verdict::domain::TenantId;
use verdict::ports::contract::registry::registry_contract;
use verdict::ports::in_memory::InMemoryRegistry;
use verdict_integration::Stack;

fn tenants() -> (TenantId, TenantId) {
    (TenantId::parse("acme").unwrap(), TenantId::parse("globex").unwrap())
}

#[tokio::test]
async fn the_in_memory_fake_keeps_the_registry_contract() {
    let (acme, globex) = tenants();
    registry_contract(&InMemoryRegistry::default(), &acme, &globex).await;
}

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_registry_contract() {
    let st = Stack::new().await;
    let (acme, globex) = tenants();
    registry_contract(&st.store, &acme, &globex).await;
}
