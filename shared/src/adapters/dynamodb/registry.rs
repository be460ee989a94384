//! The model registry: one item per model version, and the activation pointer.

use super::*;
use crate::domain::registry::{ModelPointer, ModelRegistration, ModelStatus, RegistryEntry};
use crate::ports::registry::{ExpectedPointer, ModelRegistry};

/// The same version with other bytes: a permanent refusal, not a storage failure.
pub(super) fn different_bytes(version: &str) -> StoreError {
    StoreError::Conflict(format!(
        "model version {version} is already registered with different bytes"
    ))
}

pub(super) fn parse_registry_entry(item: Item, key: &ItemKey) -> Result<RegistryEntry, StoreError> {
    let reject_reason = get_s_opt(&item, "reject_reason", key)?.map(str::to_owned);
    let model = serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| corrupt(key, e.to_string()))?;
    Ok(RegistryEntry { model, reject_reason })
}

pub(super) const REGISTRY_CURSOR: &str = "registry/1";

pub(super) fn encode_registry_cursor((uploaded_at, version): &(String, String)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{REGISTRY_CURSOR}|{uploaded_at}|{version}"))
}

pub(super) fn decode_registry_cursor(raw: &str) -> Result<(String, String), StoreError> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| StoreError::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::BadCursor)?;
    match text.split('|').collect::<Vec<_>>()[..] {
        [REGISTRY_CURSOR, at, version] if at.len() == 24 && !version.is_empty() => {
            Ok((at.to_owned(), version.to_owned()))
        }
        _ => Err(StoreError::BadCursor),
    }
}

pub(super) fn parse_pointer(item: &Item, key: &ItemKey) -> Result<ModelPointer, StoreError> {
    Ok(ModelPointer {
        version: get_s(item, "version", key)?.to_owned(),
        object_key: get_s(item, "object_key", key)?.to_owned(),
        previous_version: get_s_opt(item, "previous_version", key)?.map(str::to_owned),
        activated_at: get_timestamp(item, "activated_at", key)?,
    })
}

impl DynamoStore {
    /// Registers a model version. Registering the same version again with the same bytes
    /// (sha256) overwrites it; with other bytes it is refused.
    pub async fn register_model(&self, tenant: &TenantId, m: &ModelRegistration) -> Result<(), StoreError> {
        let key = Keys::new(tenant).model_version(&m.version);
        let mut item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(m)
            .map_err(|e| StoreError::Rejected(format!("model {}: cannot be stored: {e}", m.version)))?;
        item.extend(key.to_item());
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR sha256 = :sha")
            .expression_attribute_values(":sha", s(&m.sha256))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_check_failed(&e) => Err(different_bytes(&m.version)),
            Err(e) => Err(sdk_error("PutItem (register model)", e)),
        }
    }

    pub async fn model(&self, tenant: &TenantId, version: &str) -> Result<Option<ModelRegistration>, StoreError> {
        Ok(self.registry_entry(tenant, version).await?.map(|e| e.model))
    }

    /// Every registered version of the tenant, in version order.
    pub async fn models(&self, tenant: &TenantId) -> Result<Vec<ModelRegistration>, StoreError> {
        Ok(self
            .registry_entries(tenant)
            .await?
            .into_iter()
            .map(|e| e.model)
            .collect())
    }

    /// The tenant's whole registry partition (one item per uploaded model), in version order.
    pub(super) async fn registry_entries(&self, tenant: &TenantId) -> Result<Vec<RegistryEntry>, StoreError> {
        let keys = Keys::new(tenant);
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :v)")
            .expression_attribute_values(":pk", s(keys.models()))
            .expression_attribute_values(":v", s(MODEL_VERSION_PREFIX))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| sdk_error("Query (models)", e))?;
            let key = ItemKey::of(&item).unwrap_or_else(|| keys.model_version("?"));
            out.push(parse_registry_entry(item, &key)?);
        }
        Ok(out)
    }

    /// One registry entry with its rejection reason, if any.
    pub async fn registry_entry(&self, tenant: &TenantId, version: &str) -> Result<Option<RegistryEntry>, StoreError> {
        let key = Keys::new(tenant).model_version(version);
        self.get(&key)
            .await?
            .map(|item| parse_registry_entry(item, &key))
            .transpose()
    }

    /// One page of the registry, newest upload first (ties: higher version first). A tenant has
    /// one item per uploaded model, so the partition is read whole and sorted here; the cursor is
    /// the last entry's position in that order, which holds nothing of another tenant.
    pub async fn registry_page(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<RegistryEntry>, StoreError> {
        let after = cursor.map(decode_registry_cursor).transpose()?;
        let mut entries = self.registry_entries(tenant).await?;
        let position = |e: &RegistryEntry| (fixed_width(&e.model.uploaded_at), e.model.version.clone());
        entries.sort_by_key(|e| std::cmp::Reverse(position(e)));
        let mut items: Vec<RegistryEntry> = entries
            .into_iter()
            .filter(|e| after.as_ref().is_none_or(|a| position(e) < *a))
            .take(limit + 1)
            .collect();
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|e| encode_registry_cursor(&position(e)))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// The activation pointer with its history.
    pub async fn model_pointer(&self, tenant: &TenantId) -> Result<Option<ModelPointer>, StoreError> {
        let key = Keys::new(tenant).active_model();
        self.get(&key).await?.map(|item| parse_pointer(&item, &key)).transpose()
    }

    /// [`ModelRegistry::activate`] whatever the pointer is now (bootstrap, tests).
    pub async fn activate_model(
        &self,
        tenant: &TenantId,
        version: &str,
        object_key: &str,
    ) -> Result<ModelPointer, StoreError> {
        self.activate_pointer(tenant, version, object_key, ExpectedPointer::Anything)
            .await
    }

    /// [`ModelRegistry::activate`]: one optimistic transaction (pointer, new status, old
    /// status), read again and retried while only the pointer moved underneath.
    async fn activate_pointer(
        &self,
        tenant: &TenantId,
        version: &str,
        object_key: &str,
        expected: ExpectedPointer<'_>,
    ) -> Result<ModelPointer, StoreError> {
        let keys = Keys::new(tenant);
        let registry = keys.model_version(version);
        let pointer_key = keys.active_model();
        let mut retire_old = true;
        for _ in 0..COMMIT_ATTEMPTS + 1 {
            let current = self.model_pointer(tenant).await?;
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
            let mut item = pointer_key.to_item();
            item.insert("version".into(), s(&next.version));
            item.insert("object_key".into(), s(&next.object_key));
            item.insert("activated_at".into(), s(next.activated_at.to_rfc3339()));
            if let Some(p) = &next.previous_version {
                item.insert("previous_version".into(), s(p));
            }
            // Optimistic: the pointer must still be what was read.
            let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
            put = match &current {
                None => put.condition_expression("attribute_not_exists(pk)"),
                Some(c) => put
                    .condition_expression("#v = :current")
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_values(":current", s(&c.version)),
            };
            // The new version becomes `active` unless it was rejected; the one it replaces
            // becomes `retired`. All in the pointer's transaction.
            let activate = build(
                "Update",
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(registry.to_item()))
                    .update_expression("SET #st = :active")
                    .condition_expression(
                        "attribute_exists(pk) AND object_key = :k AND (attribute_not_exists(#st) OR #st <> :rejected)",
                    )
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":k", s(object_key))
                    .expression_attribute_values(":active", s(ModelStatus::Active.as_str()))
                    .expression_attribute_values(":rejected", s(ModelStatus::Rejected.as_str()))
                    .build(),
            )?;
            let mut req = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(activate).build())
                .transact_items(TransactWriteItem::builder().put(build("Put", put.build())?).build());
            let old = current.as_ref().map(|c| c.version.as_str()).filter(|v| *v != version);
            if let Some(old) = old.filter(|_| retire_old) {
                let retire = build(
                    "Update",
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(keys.model_version(old).to_item()))
                        .update_expression("SET #st = :retired")
                        .condition_expression("attribute_exists(pk)")
                        .expression_attribute_names("#st", "status")
                        .expression_attribute_values(":retired", s(ModelStatus::Retired.as_str()))
                        .build(),
                )?;
                req = req.transact_items(TransactWriteItem::builder().update(retire).build());
            }
            match req.send().await {
                Ok(_) => return Ok(next),
                Err(e) => match cancellation_codes(&e) {
                    Some(codes) if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") => {
                        return Err(StoreError::NotFound(format!(
                            "model version {version} registered with object key {object_key} and not rejected"
                        )));
                    }
                    // The replaced version has no registry item (registered outside the registry).
                    Some(codes) if codes.get(2).map(String::as_str) == Some("ConditionalCheckFailed") => {
                        retire_old = false;
                        continue;
                    }
                    // Someone else moved the pointer (or a transaction conflict): read again.
                    Some(_) => continue,
                    None => return Err(sdk_error("TransactWriteItems (activate model)", e)),
                },
            }
        }
        Err(StoreError::Unavailable(
            "activate model: the pointer kept changing; try again".into(),
        ))
    }
}

impl ModelRegistry for DynamoStore {
    async fn model_pointer(&self, tenant: &TenantId) -> Result<Option<ModelPointer>, StoreError> {
        DynamoStore::model_pointer(self, tenant).await
    }

    async fn registry_entry(&self, tenant: &TenantId, version: &str) -> Result<Option<RegistryEntry>, StoreError> {
        DynamoStore::registry_entry(self, tenant, version).await
    }

    async fn registry_page(
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
        expected: ExpectedPointer<'_>,
    ) -> Result<ModelPointer, StoreError> {
        self.activate_pointer(tenant, version, object_key, expected).await
    }
}
