//! What the api needs from storage beyond [`DecisionStore`]: the model registry reads.

use std::future::Future;
use verdict::adapters::{DynamoStore, ModelPointer, ModelRegistration};
use verdict::domain::TenantId;
use verdict::ports::{DecisionStore, StoreError};

/// The registry reads of the model routes. A port of its own so the handler stays generic
/// (benchmarks drive it with an in-memory store).
pub trait ModelRegistry: Send + Sync {
    fn model_pointer(&self, tenant: &TenantId)
        -> impl Future<Output = Result<Option<ModelPointer>, StoreError>> + Send;

    fn registered_model(
        &self,
        tenant: &TenantId,
        version: &str,
    ) -> impl Future<Output = Result<Option<ModelRegistration>, StoreError>> + Send;
}

/// Everything the handler reads and writes.
pub trait ApiStore: DecisionStore + ModelRegistry {}

impl<T: DecisionStore + ModelRegistry> ApiStore for T {}

impl ModelRegistry for DynamoStore {
    async fn model_pointer(&self, tenant: &TenantId) -> Result<Option<ModelPointer>, StoreError> {
        DynamoStore::model_pointer(self, tenant).await
    }

    async fn registered_model(
        &self,
        tenant: &TenantId,
        version: &str,
    ) -> Result<Option<ModelRegistration>, StoreError> {
        DynamoStore::model(self, tenant, version).await
    }
}
