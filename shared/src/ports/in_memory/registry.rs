//! In-memory fakes of the registry and import ports, held to what the DynamoDB adapter does by
//! [`crate::ports::contract::registry`].

use crate::domain::registry::{ImportDetails, ModelPointer, ModelRegistration, ModelStatus, Registered, RegistryEntry};
use crate::domain::{TenantId, Timestamp};
use crate::ports::registry::{ExpectedPointer, ModelImports, ModelRegistry};
use crate::ports::{Page, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

struct StoredVersion {
    registration: ModelRegistration,
    details: Option<ImportDetails>,
}

impl StoredVersion {
    fn entry(&self) -> RegistryEntry {
        RegistryEntry {
            model: self.registration.clone(),
            reject_reason: self.details.as_ref().and_then(|d| d.reject_reason.clone()),
        }
    }
}

#[derive(Default)]
struct RegistryState {
    versions: BTreeMap<(TenantId, String), StoredVersion>,
    pointers: HashMap<TenantId, ModelPointer>,
    sources: HashMap<(TenantId, String), String>,
}

/// The registry, the pointer and the per-bytes import outcomes of every tenant, in memory.
#[derive(Default)]
pub struct InMemoryRegistry {
    state: Mutex<RegistryState>,
}

const CURSOR: &str = "registry/1";

fn different_bytes(version: &str) -> StoreError {
    StoreError::Conflict(format!(
        "model version {version} is already registered with different bytes"
    ))
}

/// The page order of the adapter: upload time to the millisecond, then version; newest first.
fn position(m: &ModelRegistration) -> (i128, String) {
    (
        m.uploaded_at.inner().unix_timestamp_nanos() / 1_000_000,
        m.version.clone(),
    )
}

impl InMemoryRegistry {
    fn state(&self) -> MutexGuard<'_, RegistryState> {
        // A test that panicked while holding the lock has failed already.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// As the adapter's `register_model`: the same version again with the same bytes replaces
    /// it (import details dropped); with other bytes it is refused.
    pub fn register_model(&self, tenant: &TenantId, m: &ModelRegistration) -> Result<(), StoreError> {
        let mut st = self.state();
        let key = (tenant.clone(), m.version.clone());
        if st.versions.get(&key).is_some_and(|v| v.registration.sha256 != m.sha256) {
            return Err(different_bytes(&m.version));
        }
        st.versions.insert(
            key,
            StoredVersion {
                registration: m.clone(),
                details: None,
            },
        );
        Ok(())
    }

    /// [`ModelRegistry::activate`], at once: tests call it to move the pointer "concurrently".
    pub fn activate_now(
        &self,
        tenant: &TenantId,
        version: &str,
        object_key: &str,
        expected: ExpectedPointer<'_>,
    ) -> Result<ModelPointer, StoreError> {
        let mut st = self.state();
        let current = st.pointers.get(tenant).cloned();
        if let Some(c) = current
            .as_ref()
            .filter(|c| c.version == version && c.object_key == object_key)
        {
            return Ok(c.clone());
        }
        if let ExpectedPointer::At(want) = expected {
            let now = current.as_ref().map(|c| c.version.as_str());
            if now != want {
                return Err(StoreError::Conflict(format!(
                    "the active model is {} now, not {}",
                    now.unwrap_or("none"),
                    want.unwrap_or("none")
                )));
            }
        }
        let usable = st
            .versions
            .get(&(tenant.clone(), version.to_owned()))
            .is_some_and(|v| v.registration.object_key == object_key && v.registration.status != ModelStatus::Rejected);
        if !usable {
            return Err(StoreError::NotFound(format!(
                "model version {version} registered with object key {object_key} and not rejected"
            )));
        }
        let next = ModelPointer {
            version: version.to_owned(),
            object_key: object_key.to_owned(),
            previous_version: match &current {
                Some(c) if c.version != version => Some(c.version.clone()),
                Some(c) => c.previous_version.clone(),
                None => None,
            },
            activated_at: Timestamp::now(),
        };
        if let Some(v) = st.versions.get_mut(&(tenant.clone(), version.to_owned())) {
            v.registration.status = ModelStatus::Active;
        }
        if let Some(old) = current.filter(|c| c.version != version) {
            if let Some(v) = st.versions.get_mut(&(tenant.clone(), old.version)) {
                v.registration.status = ModelStatus::Retired;
            }
        }
        st.pointers.insert(tenant.clone(), next.clone());
        Ok(next)
    }

    /// How many versions the tenant has registered.
    pub fn version_count(&self, tenant: &TenantId) -> usize {
        self.state().versions.keys().filter(|(t, _)| t == tenant).count()
    }
}

impl ModelRegistry for InMemoryRegistry {
    async fn model_pointer(&self, tenant: &TenantId) -> Result<Option<ModelPointer>, StoreError> {
        Ok(self.state().pointers.get(tenant).cloned())
    }

    async fn registry_entry(&self, tenant: &TenantId, version: &str) -> Result<Option<RegistryEntry>, StoreError> {
        Ok(self
            .state()
            .versions
            .get(&(tenant.clone(), version.to_owned()))
            .map(StoredVersion::entry))
    }

    async fn registry_page(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<RegistryEntry>, StoreError> {
        let after = match cursor {
            None => None,
            Some(raw) => match raw.split('|').collect::<Vec<_>>()[..] {
                [CURSOR, at, version] if !version.is_empty() => Some((
                    at.parse::<i128>().map_err(|_| StoreError::BadCursor)?,
                    version.to_owned(),
                )),
                _ => return Err(StoreError::BadCursor),
            },
        };
        let mut entries: Vec<RegistryEntry> = self
            .state()
            .versions
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, v)| v.entry())
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(position(&e.model)));
        let mut items: Vec<RegistryEntry> = entries
            .into_iter()
            .filter(|e| after.as_ref().is_none_or(|a| position(&e.model) < *a))
            .take(limit + 1)
            .collect();
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|e| {
                let (at, version) = position(&e.model);
                format!("{CURSOR}|{at}|{version}")
            })
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn activate(
        &self,
        tenant: &TenantId,
        version: &str,
        object_key: &str,
        expected: ExpectedPointer<'_>,
    ) -> Result<ModelPointer, StoreError> {
        self.activate_now(tenant, version, object_key, expected)
    }
}

impl ModelImports for InMemoryRegistry {
    async fn source_outcome(&self, tenant: &TenantId, sha256: &str) -> Result<Option<String>, StoreError> {
        Ok(self.state().sources.get(&(tenant.clone(), sha256.to_owned())).cloned())
    }

    async fn register_import(
        &self,
        tenant: &TenantId,
        registration: &ModelRegistration,
        details: &ImportDetails,
    ) -> Result<Registered, StoreError> {
        let mut st = self.state();
        let key = (tenant.clone(), registration.version.clone());
        match st.versions.get(&key) {
            Some(v) if v.registration.sha256 == registration.sha256 => {
                Ok(Registered::Existing(Box::new(v.registration.clone())))
            }
            Some(_) => Err(different_bytes(&registration.version)),
            None => {
                st.versions.insert(
                    key,
                    StoredVersion {
                        registration: registration.clone(),
                        details: Some(details.clone()),
                    },
                );
                Ok(Registered::New)
            }
        }
    }

    async fn import_details(&self, tenant: &TenantId, version: &str) -> Result<Option<ImportDetails>, StoreError> {
        Ok(self
            .state()
            .versions
            .get(&(tenant.clone(), version.to_owned()))
            .and_then(|v| v.details.clone()))
    }

    async fn record_source_outcome(&self, tenant: &TenantId, sha256: &str, outcome: &str) -> Result<(), StoreError> {
        self.state()
            .sources
            .entry((tenant.clone(), sha256.to_owned()))
            .or_insert_with(|| outcome.to_owned());
        Ok(())
    }
}
