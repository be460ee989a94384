//! What the api needs from storage beyond [`DecisionStore`]: the model registry.

use std::future::Future;
use verdict::adapters::dynamodb::Expected;
use verdict::adapters::{DynamoStore, ModelPointer, RegistryEntry};
use verdict::domain::TenantId;
use verdict::ports::{DecisionStore, Page, StoreError};

/// The registry behind the model routes. A port of its own so the handler stays generic
/// (benchmarks drive it with an in-memory store).
pub trait ModelRegistry: Send + Sync {
    fn model_pointer(&self, tenant: &TenantId)
        -> impl Future<Output = Result<Option<ModelPointer>, StoreError>> + Send;

    fn registered_model(
        &self,
        tenant: &TenantId,
        version: &str,
    ) -> impl Future<Output = Result<Option<RegistryEntry>, StoreError>> + Send;

    /// Newest upload first; `cursor` is the `next_cursor` of the previous page.
    fn registered_models(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<RegistryEntry>, StoreError>> + Send;

    /// Points the tenant at a registered, not rejected version (NotFound otherwise), if the
    /// pointer is still at `current` (`None`: no pointer); Conflict if it moved meanwhile.
    fn activate(
        &self,
        tenant: &TenantId,
        version: &str,
        object_key: &str,
        current: Option<&str>,
    ) -> impl Future<Output = Result<ModelPointer, StoreError>> + Send;
}

/// Everything the handler reads and writes.
pub trait ApiStore: DecisionStore + ModelRegistry {}

impl<T: DecisionStore + ModelRegistry> ApiStore for T {}

impl ModelRegistry for DynamoStore {
    async fn model_pointer(&self, tenant: &TenantId) -> Result<Option<ModelPointer>, StoreError> {
        DynamoStore::model_pointer(self, tenant).await
    }

    async fn registered_model(&self, tenant: &TenantId, version: &str) -> Result<Option<RegistryEntry>, StoreError> {
        DynamoStore::registry_entry(self, tenant, version).await
    }

    async fn registered_models(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<RegistryEntry>, StoreError> {
        DynamoStore::registry_page(self, tenant, limit, cursor).await
    }

    async fn activate(
        &self,
        tenant: &TenantId,
        version: &str,
        object_key: &str,
        current: Option<&str>,
    ) -> Result<ModelPointer, StoreError> {
        DynamoStore::activate_model_if(self, tenant, version, object_key, Expected::Current(current)).await
    }
}
