//! API key items: the key under its hash, and the tenant's key-id entry for revocation.

use super::*;

pub(super) fn key_record_item(key: &ItemKey, rec: &KeyRecord) -> Item {
    let mut item = key.to_item();
    item.insert("key_id".into(), s(&rec.key_id));
    item.insert("tenant".into(), s(rec.tenant.as_str()));
    if !rec.scopes.is_empty() {
        item.insert(
            "scopes".into(),
            AttributeValue::Ss(rec.scopes.iter().map(|s| s.as_str().to_owned()).collect()),
        );
    }
    item.insert("created_at".into(), n(rec.created_at));
    if let Some(t) = rec.expires_at {
        item.insert(TTL_ATTRIBUTE.into(), n(t));
    }
    if let Some(t) = rec.revoked_at {
        item.insert("revoked_at".into(), n(t));
    }
    item
}

pub(super) fn parse_key_record(item: &Item, key: &ItemKey) -> Result<KeyRecord, StoreError> {
    let tenant = TenantId::parse(get_s(item, "tenant", key)?).map_err(|e| corrupt(key, e.to_string()))?;
    let scopes = match item.get("scopes") {
        None => BTreeSet::new(),
        Some(AttributeValue::Ss(v)) => v
            .iter()
            .map(|raw| Scope::parse(raw))
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt(key, e.to_string()))?,
        Some(_) => return Err(corrupt(key, "scopes is not a string set")),
    };
    Ok(KeyRecord {
        key_id: get_s(item, "key_id", key)?.to_owned(),
        tenant,
        scopes,
        created_at: get_n(item, "created_at", key)?,
        expires_at: get_n_opt(item, TTL_ATTRIBUTE, key)?,
        revoked_at: get_n_opt(item, "revoked_at", key)?,
    })
}

impl DynamoStore {
    /// Stores a new API key under its hash, with the tenant's key-id entry for revocation.
    /// Refuses to overwrite an existing key or key id (generate another key then).
    pub async fn put_key(&self, hash: &KeyHash, rec: &KeyRecord) -> Result<(), StoreError> {
        let key = api_key(hash).ok_or_else(|| StoreError::NotFound("key hash is not a SHA-256 hex digest".into()))?;
        let mut index = Keys::new(&rec.tenant).key_id(&rec.key_id).to_item();
        index.insert("hash".into(), s(&hash.0));
        if let Some(t) = rec.expires_at {
            index.insert(TTL_ATTRIBUTE.into(), n(t));
        }
        let index = self.put_if_absent(index)?;
        self.client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(self.put_if_absent(key_record_item(&key, rec))?)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().put(index).build())
            .send()
            .await
            .map_err(|e| sdk_error("TransactWriteItems (put key)", e))?;
        Ok(())
    }

    /// Revokes a tenant's key by its id, effective from `now` (epoch seconds); a key revoked
    /// earlier keeps its first revocation time. Returns the updated record.
    pub async fn revoke_key(&self, tenant: &TenantId, key_id: &str, now: i64) -> Result<KeyRecord, StoreError> {
        let not_found = || StoreError::NotFound(format!("API key {key_id}"));
        if key_id.is_empty() || key_id.len() > 200 {
            return Err(not_found());
        }
        let index_key = Keys::new(tenant).key_id(key_id);
        let Some(index) = self.get(&index_key).await? else {
            return Err(not_found());
        };
        let hash = KeyHash(get_s(&index, "hash", &index_key)?.to_owned());
        let key = api_key(&hash).ok_or_else(|| corrupt(&index_key, "hash is not a SHA-256 hex digest"))?;
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :now)")
            .condition_expression("attribute_exists(pk) AND tenant = :tenant")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => parse_key_record(&out.attributes.unwrap_or_default(), &key),
            Err(e) if is_conditional_check_failed(&e) => Err(not_found()),
            Err(e) => Err(sdk_error("UpdateItem (revoke key)", e)),
        }
    }
}
