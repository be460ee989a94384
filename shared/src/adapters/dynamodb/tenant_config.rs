//! The tenant config item: the policy's thresholds.

use super::*;

pub(super) fn parse_thresholds(item: &Item, key: &ItemKey) -> Result<Thresholds, StoreError> {
    let review = get_n(item, "review_threshold", key)?;
    let block = get_n(item, "block_threshold", key)?;
    Thresholds::new(review, block).map_err(|e| corrupt(key, e.to_string()))
}

impl DynamoStore {
    pub async fn set_thresholds(&self, tenant: &TenantId, t: Thresholds) -> Result<(), StoreError> {
        let t = Thresholds::new(t.review, t.block)
            .map_err(|e| StoreError::Rejected(format!("thresholds not stored: {e}")))?;
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Keys::new(tenant).config().to_item()))
            .update_expression("SET review_threshold = :r, block_threshold = :b")
            .expression_attribute_values(":r", n(t.review))
            .expression_attribute_values(":b", n(t.block))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem (thresholds)", e))?;
        Ok(())
    }

    pub async fn thresholds(&self, tenant: &TenantId) -> Result<Option<Thresholds>, StoreError> {
        let key = Keys::new(tenant).config();
        match self.get(&key).await? {
            Some(item) if item.contains_key("review_threshold") => Ok(Some(parse_thresholds(&item, &key)?)),
            _ => Ok(None),
        }
    }
}
