//! Ports of the model registry and of model import: what model activation and model import need
//! from storage (the model bucket is [`crate::ports::objects`]).

use crate::domain::registry::{ImportDetails, ModelPointer, ModelRegistration, Registered, RegistryEntry};
use crate::domain::TenantId;
use crate::ports::{Page, StoreError};
use std::future::Future;

/// What the activation pointer must be for an activation to go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedPointer<'a> {
    /// Whatever it is (model import's "activate on upload").
    Anything,
    /// At this version (`None`: no pointer yet): a change decided on a pointer read earlier
    /// never overwrites a concurrent one.
    At(Option<&'a str>),
}

/// The registry: one registration per version, and the pointer. Every method takes the tenant.
pub trait ModelRegistry: Send + Sync {
    fn model_pointer(&self, tenant: &TenantId)
        -> impl Future<Output = Result<Option<ModelPointer>, StoreError>> + Send;

    /// One version with its rejection reason, if any.
    fn registry_entry(
        &self,
        tenant: &TenantId,
        version: &str,
    ) -> impl Future<Output = Result<Option<RegistryEntry>, StoreError>> + Send;

    /// Newest upload first (ties: higher version first); `cursor` is the `next_cursor` of the
    /// previous page ([`StoreError::BadCursor`] if it is not one).
    fn registry_page(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<RegistryEntry>, StoreError>> + Send;

    /// Points the tenant at `version`; the version it replaces becomes `previous_version`, and
    /// the statuses follow (the new one active, the replaced one retired), atomically with the
    /// pointer. [`StoreError::NotFound`] unless `version` is registered with `object_key` and not
    /// rejected; [`StoreError::Conflict`] if the pointer is not `expected`. Activating the version
    /// already active changes nothing and answers the pointer as it is.
    fn activate(
        &self,
        tenant: &TenantId,
        version: &str,
        object_key: &str,
        expected: ExpectedPointer<'_>,
    ) -> impl Future<Output = Result<ModelPointer, StoreError>> + Send;
}

/// What model import records besides the object's job ([`crate::ports::jobs`]): registrations
/// with their [`ImportDetails`], and the outcome per uploaded bytes, which is what makes the same
/// bytes under another name change nothing. Outcomes are opaque text (the service's JSON).
pub trait ModelImports: ModelRegistry {
    /// The first outcome recorded for these uploaded bytes (by their SHA-256).
    fn source_outcome(
        &self,
        tenant: &TenantId,
        sha256: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Registers the version only if it is new. One already there with the same `sha256` is left
    /// untouched ([`Registered::Existing`]); with other bytes it is [`StoreError::Conflict`].
    fn register_import(
        &self,
        tenant: &TenantId,
        registration: &ModelRegistration,
        details: &ImportDetails,
    ) -> impl Future<Output = Result<Registered, StoreError>> + Send;

    /// The import attributes of a version (None for versions registered otherwise).
    fn import_details(
        &self,
        tenant: &TenantId,
        version: &str,
    ) -> impl Future<Output = Result<Option<ImportDetails>, StoreError>> + Send;

    /// Records the outcome of these bytes (`sha256`) unless they have one: the first stands.
    fn record_source_outcome(
        &self,
        tenant: &TenantId,
        sha256: &str,
        outcome: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
