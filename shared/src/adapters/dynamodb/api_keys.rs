//! API key items: the key under its hash, and the tenant's key-id entry for revocation. The key
//! item is also in `gsi1` under `T#<tenant>#KEYS` (created time, then id), for `keys list`.

use super::*;

/// A key's `gsi1` sort key: creation time in 20 digits (so the order is time order), then the id.
fn key_list_sort_key(rec: &KeyRecord) -> String {
    format!("{:020}#{}", rec.created_at.max(0), rec.key_id)
}

pub(super) fn key_record_item(key: &ItemKey, rec: &KeyRecord) -> Item {
    let mut item = key.to_item();
    item.insert(GSI1PK.into(), s(Keys::new(&rec.tenant).api_keys()));
    item.insert(GSI1SK.into(), s(key_list_sort_key(rec)));
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

/// The new key of a rotation; its tenant and scopes are the old key's.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub hash: &'a KeyHash,
    pub key_id: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// A key rotated by [`DynamoStore::rotate_key`]: the old record as it now stands, and the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub old: KeyRecord,
    pub new: KeyRecord,
}

impl DynamoStore {
    /// The two puts of a new key: its item under the hash, and the tenant's key-id entry.
    fn new_key_puts(&self, hash: &KeyHash, rec: &KeyRecord) -> Result<[TransactWriteItem; 2], StoreError> {
        let key = api_key(hash).ok_or_else(|| StoreError::NotFound("key hash is not a SHA-256 hex digest".into()))?;
        let mut index = Keys::new(&rec.tenant).key_id(&rec.key_id).to_item();
        index.insert("hash".into(), s(&hash.0));
        if let Some(t) = rec.expires_at {
            index.insert(TTL_ATTRIBUTE.into(), n(t));
        }
        Ok([
            TransactWriteItem::builder()
                .put(self.put_if_absent(key_record_item(&key, rec))?)
                .build(),
            TransactWriteItem::builder().put(self.put_if_absent(index)?).build(),
        ])
    }

    /// Stores a new API key under its hash, with the tenant's key-id entry for revocation.
    /// Refuses to overwrite an existing key or key id (generate another key then).
    pub async fn put_key(&self, hash: &KeyHash, rec: &KeyRecord) -> Result<(), StoreError> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(self.new_key_puts(hash, rec)?.to_vec()))
            .send()
            .await
            .map_err(|e| sdk_error("TransactWriteItems (put key)", e))?;
        Ok(())
    }

    /// A tenant's API keys, oldest first, as stored (revoked and expired ones too; DynamoDB's
    /// TTL removes expired ones in time). Keys created before the `gsi1` attributes were written
    /// are not listed: `verdict keys list` says so, and rotating or revoking them works by id.
    pub async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<KeyRecord>, StoreError> {
        let pk = Keys::new(tenant).api_keys();
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", GSI1PK)
                .expression_attribute_values(":pk", s(&pk))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query (API keys)", e))?;
            for item in page.items.unwrap_or_default() {
                let key = ItemKey::of(&item).ok_or_else(|| corrupt(&pk, "item without pk/sk"))?;
                let rec = parse_key_record(&item, &key)?;
                // The index is the tenant's only if the item says so too.
                if rec.tenant == *tenant {
                    out.push(rec);
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// The tenant's key with this id, read through its key-id entry.
    async fn key_item_by_id(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> Result<Option<(ItemKey, KeyRecord)>, StoreError> {
        if key_id.is_empty() || key_id.len() > 200 {
            return Ok(None);
        }
        let index_key = Keys::new(tenant).key_id(key_id);
        let Some(index) = self.get(&index_key).await? else {
            return Ok(None);
        };
        let hash = KeyHash(get_s(&index, "hash", &index_key)?.to_owned());
        let key = api_key(&hash).ok_or_else(|| corrupt(&index_key, "hash is not a SHA-256 hex digest"))?;
        let Some(item) = self.get(&key).await? else {
            return Ok(None);
        };
        let rec = parse_key_record(&item, &key)?;
        Ok((rec.tenant == *tenant).then_some((key, rec)))
    }

    /// Rotates a tenant's key: stores a new key with the old one's tenant and scopes, and sets
    /// the old key's expiry to `not_after`, or keeps it when it is sooner: a rotation never
    /// extends a key. One transaction; NotFound if the old key is missing, revoked, expired at
    /// the new key's `created_at` (rotating it would mint a live key from a dead one), another
    /// tenant's, or changed since it was read.
    pub async fn rotate_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        new: NewKey<'_>,
        not_after: i64,
    ) -> Result<Rotated, StoreError> {
        let not_found = || StoreError::NotFound(format!("API key {key_id}"));
        let Some((key, old)) = self.key_item_by_id(tenant, key_id).await? else {
            return Err(not_found());
        };
        let now = new.created_at;
        if old.revoked_at.is_some() || old.expires_at.is_some_and(|t| t <= now) {
            return Err(not_found());
        }
        let index_key = Keys::new(tenant).key_id(key_id);
        let new_rec = KeyRecord {
            key_id: new.key_id,
            tenant: old.tenant.clone(),
            scopes: old.scopes.clone(),
            created_at: new.created_at,
            expires_at: new.expires_at,
            revoked_at: None,
        };
        let new_hash = new.hash;
        let expires = old.expires_at.map_or(not_after, |t| t.min(not_after));
        let mut values = HashMap::from([(":t".to_owned(), s(tenant.as_str())), (":exp".to_owned(), n(expires))]);
        // Conditional on the expiry read, so a concurrent rotation cannot be undone.
        let unchanged = match old.expires_at {
            Some(t) => {
                values.insert(":old".into(), n(t));
                values.insert(":now".into(), n(now));
                "#exp = :old AND #exp > :now"
            }
            None => "attribute_not_exists(#exp)",
        };
        let names = HashMap::from([("#exp".to_owned(), TTL_ATTRIBUTE.to_owned())]);
        let old_update = build(
            "Update",
            Update::builder()
                .table_name(&self.table)
                .set_key(Some(key.to_item()))
                .update_expression("SET #exp = :exp")
                .condition_expression(format!(
                    "attribute_exists(pk) AND tenant = :t AND attribute_not_exists(revoked_at) AND {unchanged}"
                ))
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values))
                .build(),
        )?;
        let index_update = build(
            "Update",
            Update::builder()
                .table_name(&self.table)
                .set_key(Some(index_key.to_item()))
                .update_expression("SET #exp = :exp")
                .condition_expression("attribute_exists(pk)")
                .set_expression_attribute_names(Some(names))
                .expression_attribute_values(":exp", n(expires))
                .build(),
        )?;
        let mut items = self.new_key_puts(new_hash, &new_rec)?.to_vec();
        items.push(TransactWriteItem::builder().update(old_update).build());
        items.push(TransactWriteItem::builder().update(index_update).build());
        match self.transact(items, "TransactWriteItems (rotate key)").await? {
            Transacted::Written => Ok(Rotated {
                old: KeyRecord {
                    expires_at: Some(expires),
                    ..old
                },
                new: new_rec,
            }),
            Transacted::ConditionFailed(_) => Err(not_found()),
            Transacted::Refused(codes) => Err(StoreError::Rejected(format!("rotate key: {codes:?}"))),
        }
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
