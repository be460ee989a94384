//! OIDC issuer items (docs/dynamodb.md, "OIDC issuers"): one per `iss`, under the SHA-256 of
//! it, naming the one tenant the issuer authenticates; listed per tenant in `gsi1`.

use super::*;
use crate::domain::oidc::IssuerConfig;
use crate::ports::oidc::IssuerStore;

fn issuer_item(c: &IssuerConfig, created_at: i64) -> Item {
    let mut item = issuer(&c.issuer).to_item();
    item.insert(GSI1PK.into(), s(Keys::new(&c.tenant).issuers()));
    item.insert(GSI1SK.into(), s(&c.issuer));
    item.insert("issuer".into(), s(&c.issuer));
    item.insert("jwks_url".into(), s(&c.jwks_url));
    item.insert("audience".into(), s(&c.audience));
    item.insert("tenant".into(), s(c.tenant.as_str()));
    item.insert("tenant_claim".into(), s(&c.tenant_claim));
    item.insert("scopes_claim".into(), s(&c.scopes_claim));
    item.insert("max_lifetime_secs".into(), n(c.max_lifetime_secs));
    item.insert("leeway_secs".into(), n(c.leeway_secs));
    item.insert("created_at".into(), n(created_at));
    item
}

/// Re-checked on read: a hand-edited item that no longer passes is unreadable, never a looser issuer.
fn parse_issuer(item: &Item, key: &ItemKey) -> Result<IssuerConfig, StoreError> {
    let tenant = TenantId::parse(get_s(item, "tenant", key)?).map_err(|e| corrupt(key, e.to_string()))?;
    IssuerConfig::new(
        get_s(item, "issuer", key)?,
        get_s(item, "jwks_url", key)?,
        get_s(item, "audience", key)?,
        tenant,
        Some(get_s(item, "tenant_claim", key)?),
        Some(get_s(item, "scopes_claim", key)?),
        Some(get_n(item, "max_lifetime_secs", key)?),
        Some(get_n(item, "leeway_secs", key)?),
    )
    .map_err(|e| corrupt(key, e.to_string()))
}

impl DynamoStore {
    /// Adds an issuer. `false` when its `iss` is already configured (for any tenant: one issuer
    /// authenticates one tenant; remove it first).
    pub async fn put_issuer(&self, c: &IssuerConfig, now: i64) -> Result<bool, StoreError> {
        self.put_item_if_absent(issuer_item(c, now), "PutItem (issuer)").await
    }

    /// A tenant's issuers, by `iss`.
    pub async fn list_issuers(&self, tenant: &TenantId) -> Result<Vec<IssuerConfig>, StoreError> {
        let pk = Keys::new(tenant).issuers();
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", GSI1PK)
            .expression_attribute_values(":pk", s(&pk))
            .send()
            .await
            .map_err(|e| sdk_error("Query (issuers)", e))?;
        let mut list = Vec::new();
        for item in out.items.unwrap_or_default() {
            let key = ItemKey::of(&item).ok_or_else(|| corrupt(&pk, "item without pk/sk"))?;
            let c = parse_issuer(&item, &key)?;
            if c.tenant == *tenant {
                list.push(c);
            }
        }
        Ok(list)
    }

    /// Removes a tenant's issuer; `false` if the tenant has no such issuer.
    pub async fn remove_issuer(&self, tenant: &TenantId, iss: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(issuer(iss).to_item()))
            .condition_expression("attribute_exists(pk) AND tenant = :t")
            .expression_attribute_values(":t", s(tenant.as_str()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(sdk_error("DeleteItem (issuer)", e)),
        }
    }
}

impl IssuerStore for DynamoStore {
    async fn issuer(&self, iss: &str) -> Result<Option<IssuerConfig>, StoreError> {
        let key = issuer(iss);
        match self.get(&key).await? {
            None => Ok(None),
            // The hash matched; the stored `iss` must too. An item gone odd refuses its tokens
            // (logged), never a 5xx for every one of them.
            Some(item) => match parse_issuer(&item, &key) {
                Ok(c) => Ok((c.issuer == iss).then_some(c)),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable OIDC issuer item: its tokens are refused");
                    Ok(None)
                }
            },
        }
    }
}
