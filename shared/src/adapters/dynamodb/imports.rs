//! Model import: the registration of an uploaded model and the per-bytes outcome.

use super::*;
use crate::domain::registry::{ImportDetails, ModelRegistration, Registered};
use crate::ports::registry::ModelImports;

pub(super) const IMPORT_ATTRIBUTES: [&str; 8] = [
    "source_key",
    "source_version_id",
    "source_etag",
    "source_sha256",
    "source_format",
    "validation",
    "reject_code",
    "reject_reason",
];

/// The import attributes of a registry item, in [`IMPORT_ATTRIBUTES`] order.
pub(super) fn import_fields(d: &ImportDetails) -> [(&'static str, Option<&str>); 8] {
    [
        (IMPORT_ATTRIBUTES[0], Some(d.source_key.as_str())),
        (IMPORT_ATTRIBUTES[1], d.source_version_id.as_deref()),
        (IMPORT_ATTRIBUTES[2], Some(d.source_etag.as_str())),
        (IMPORT_ATTRIBUTES[3], Some(d.source_sha256.as_str())),
        (IMPORT_ATTRIBUTES[4], d.source_format.as_deref()),
        (IMPORT_ATTRIBUTES[5], d.validation.as_deref()),
        (IMPORT_ATTRIBUTES[6], d.reject_code.as_deref()),
        (IMPORT_ATTRIBUTES[7], d.reject_reason.as_deref()),
    ]
}

pub(super) fn parse_import_details(item: &Item, key: &ItemKey) -> Result<Option<ImportDetails>, StoreError> {
    let Some(source_key) = get_s_opt(item, "source_key", key)? else {
        return Ok(None);
    };
    let opt = |name| get_s_opt(item, name, key).map(|v| v.map(str::to_owned));
    Ok(Some(ImportDetails {
        source_key: source_key.to_owned(),
        source_version_id: opt("source_version_id")?,
        source_etag: opt("source_etag")?.unwrap_or_default(),
        source_sha256: opt("source_sha256")?.unwrap_or_default(),
        source_format: opt("source_format")?,
        validation: opt("validation")?,
        reject_code: opt("reject_code")?,
        reject_reason: opt("reject_reason")?,
    }))
}

impl DynamoStore {
    /// Registers an imported (or rejected) upload: the registration plus [`ImportDetails`], only
    /// if the version is new. A version already there with the same `sha256` is left untouched.
    pub async fn register_import(
        &self,
        tenant: &TenantId,
        m: &ModelRegistration,
        details: &ImportDetails,
    ) -> Result<Registered, StoreError> {
        let key = Keys::new(tenant).model_version(&m.version);
        let mut item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(m)
            .map_err(|e| StoreError::Rejected(format!("model {}: cannot be stored: {e}", m.version)))?;
        item.extend(key.to_item());
        item.insert("id".into(), s(&m.version));
        item.insert("kind".into(), s("model"));
        for (name, value) in import_fields(details) {
            if let Some(v) = value {
                item.insert(name.into(), s(v));
            }
        }
        if self.put_item_if_absent(item, "PutItem (register import)").await? {
            return Ok(Registered::New);
        }
        match self.model(tenant, &m.version).await? {
            Some(existing) if existing.sha256 == m.sha256 => Ok(Registered::Existing(Box::new(existing))),
            _ => Err(different_bytes(&m.version)),
        }
    }

    /// The import attributes of a registry item (None for versions registered otherwise).
    pub async fn import_details(&self, tenant: &TenantId, version: &str) -> Result<Option<ImportDetails>, StoreError> {
        let key = Keys::new(tenant).model_version(version);
        match self.get(&key).await? {
            Some(item) => parse_import_details(&item, &key),
            None => Ok(None),
        }
    }

    /// The recorded outcome (JSON) of an upload's bytes, by their SHA-256.
    pub async fn source_outcome(&self, tenant: &TenantId, sha256: &str) -> Result<Option<String>, StoreError> {
        let key = Keys::new(tenant).model_source(sha256);
        match self.get(&key).await? {
            Some(item) => Ok(Some(get_s(&item, "outcome", &key)?.to_owned())),
            None => Ok(None),
        }
    }

    /// Records the outcome of an upload's bytes unless they have one (the first outcome stands).
    /// The per-object record is the object's job, ended through the job store.
    pub async fn record_source_outcome(
        &self,
        tenant: &TenantId,
        sha256: &str,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let mut item = Keys::new(tenant).model_source(sha256).to_item();
        item.insert("kind".into(), s("model_source"));
        item.insert("outcome".into(), s(outcome));
        item.insert("created_at".into(), s(Timestamp::now().to_rfc3339()));
        self.put_item_if_absent(item, "PutItem (model source)").await?;
        Ok(())
    }
}

impl ModelImports for DynamoStore {
    async fn source_outcome(&self, tenant: &TenantId, sha256: &str) -> Result<Option<String>, StoreError> {
        DynamoStore::source_outcome(self, tenant, sha256).await
    }

    async fn register_import(
        &self,
        tenant: &TenantId,
        registration: &ModelRegistration,
        details: &ImportDetails,
    ) -> Result<Registered, StoreError> {
        DynamoStore::register_import(self, tenant, registration, details).await
    }

    async fn import_details(&self, tenant: &TenantId, version: &str) -> Result<Option<ImportDetails>, StoreError> {
        DynamoStore::import_details(self, tenant, version).await
    }

    async fn record_source_outcome(&self, tenant: &TenantId, sha256: &str, outcome: &str) -> Result<(), StoreError> {
        DynamoStore::record_source_outcome(self, tenant, sha256, outcome).await
    }
}
