//! Review items: opened inside the decision's TransactWriteItems ([`review_put`]), then claimed,
//! released and resolved by conditional UpdateItems; the queue is two sparse index partitions
//! per status (`gsi1` oldest first, `gsi2` highest risk first).

use super::*;
use crate::domain::review::{
    ListAdded, Outcome, Resolution, ResolutionLabel, Review, ReviewAction, ReviewClaim, ReviewEvent, ReviewSort,
    ReviewStatus,
};
use crate::ports::reviews::{ReviewChange, ReviewRefusal, ReviewStore};

fn risk_sort_key(r: &Review) -> String {
    format!(
        "{:03}#{}",
        100u8.saturating_sub(r.risk_score.min(100)),
        history_sort_key(&r.opened_at, &r.transaction_id)
    )
}

fn event_value(e: &ReviewEvent) -> AttributeValue {
    let mut m = HashMap::from([
        ("action".to_owned(), s(e.action.as_str())),
        ("at".to_owned(), s(e.at.to_rfc3339())),
    ]);
    if let Some(by) = &e.by {
        m.insert("by".into(), s(by));
    }
    AttributeValue::M(m)
}

fn resolution_value(r: &Resolution) -> AttributeValue {
    let mut m = HashMap::from([
        ("outcome".to_owned(), s(r.outcome.as_str())),
        ("label".to_owned(), s(r.label.as_str())),
        ("resolved_by".to_owned(), s(&r.resolved_by)),
        ("resolved_at".to_owned(), s(r.resolved_at.to_rfc3339())),
        (
            "lists_added".to_owned(),
            AttributeValue::L(
                r.lists_added
                    .iter()
                    .map(|l| {
                        AttributeValue::M(HashMap::from([
                            ("list".to_owned(), s(&l.list)),
                            ("value".to_owned(), s(&l.value)),
                        ]))
                    })
                    .collect(),
            ),
        ),
    ]);
    if let Some(note) = &r.note {
        m.insert("note".into(), s(note));
    }
    AttributeValue::M(m)
}

/// The Put that opens `review` (conditional: one item per transaction, ever).
pub(super) fn review_put(
    store: &DynamoStore,
    tenant: &TenantId,
    review: &Review,
) -> Result<TransactWriteItem, StoreError> {
    let keys = Keys::new(tenant);
    let mut item = keys.review(&review.transaction_id).to_item();
    item.insert("tenant".into(), s(tenant.as_str()));
    item.insert("transaction_id".into(), s(review.transaction_id.as_str()));
    item.insert("status".into(), s(review.status.as_str()));
    item.insert("opened_at".into(), s(review.opened_at.to_rfc3339()));
    item.insert("risk_score".into(), n(review.risk_score));
    item.insert(
        "history".into(),
        AttributeValue::L(review.history.iter().map(event_value).collect()),
    );
    item.insert(GSI1PK.into(), s(keys.review_queue(review.status.as_str())));
    item.insert(
        GSI1SK.into(),
        s(history_sort_key(&review.opened_at, &review.transaction_id)),
    );
    item.insert(GSI2PK.into(), s(keys.review_queue_by_risk(review.status.as_str())));
    item.insert(GSI2SK.into(), s(risk_sort_key(review)));
    Ok(TransactWriteItem::builder().put(store.put_if_absent(item)?).build())
}

fn parse_event(v: &AttributeValue, key: &ItemKey) -> Option<ReviewEvent> {
    let m = v.as_m().ok()?;
    let action = ReviewAction::parse(m.get("action")?.as_s().ok()?)?;
    let at = get_timestamp(m, "at", key).ok()?;
    let by = m.get("by").and_then(|b| b.as_s().ok()).cloned();
    Some(ReviewEvent { action, by, at })
}

fn parse_resolution(m: &Item, key: &ItemKey) -> Result<Resolution, StoreError> {
    let bad = |what: &str, r: String| corrupt(key, format!("resolution.{what}: {r}"));
    let mut lists_added = Vec::new();
    if let Some(AttributeValue::L(l)) = m.get("lists_added") {
        for v in l {
            let entry = v.as_m().ok().and_then(|e| {
                Some(ListAdded {
                    list: e.get("list")?.as_s().ok()?.clone(),
                    value: e.get("value")?.as_s().ok()?.clone(),
                })
            });
            // A malformed entry is left out of the view rather than failing every read.
            match entry {
                Some(e) => lists_added.push(e),
                None => tracing::warn!(key = %key, "review resolution: unreadable lists_added entry ignored"),
            }
        }
    }
    Ok(Resolution {
        outcome: Outcome::parse(get_s(m, "outcome", key)?).map_err(|r| bad("outcome", r))?,
        label: ResolutionLabel::parse(get_s(m, "label", key)?).map_err(|r| bad("label", r))?,
        note: get_s_opt(m, "note", key)?.map(str::to_owned),
        resolved_by: get_s(m, "resolved_by", key)?.to_owned(),
        resolved_at: get_timestamp(m, "resolved_at", key)?,
        lists_added,
    })
}

pub(super) fn parse_review(item: &Item, key: &ItemKey) -> Result<Review, StoreError> {
    let id = get_s(item, "transaction_id", key)?;
    let status = ReviewStatus::parse(get_s(item, "status", key)?).map_err(|r| corrupt(key, format!("status: {r}")))?;
    let risk: i64 = get_n(item, "risk_score", key)?;
    let claim = match (
        get_s_opt(item, "claim_holder", key)?,
        get_n_opt::<i64>(item, "claim_expires_at", key)?,
    ) {
        (Some(holder), Some(expires_at)) => Some(ReviewClaim {
            holder: holder.to_owned(),
            expires_at,
        }),
        _ => None,
    };
    let resolution = match item.get("resolution") {
        Some(AttributeValue::M(m)) => Some(parse_resolution(m, key)?),
        None | Some(AttributeValue::Null(_)) => None,
        Some(_) => return Err(corrupt(key, "resolution is not a map")),
    };
    let history = match item.get("history") {
        Some(AttributeValue::L(l)) => l.iter().filter_map(|v| parse_event(v, key)).collect(),
        _ => Vec::new(),
    };
    Ok(Review {
        transaction_id: TransactionId::parse(id).map_err(|e| corrupt(key, e.to_string()))?,
        status,
        opened_at: get_timestamp(item, "opened_at", key)?,
        // Read tolerantly: an odd number is clamped, not a 5xx for every read of the queue.
        risk_score: risk.clamp(0, 100) as u8,
        claim,
        resolution,
        history,
    })
}

/// Where a queue page stopped; an opaque cursor, checked against the query it is sent back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ReviewCursor {
    pk: String,
    sk: String,
    ipk: String,
    isk: String,
}

enum Change<'a> {
    Claim { until: i64 },
    Release,
    Resolve(&'a Resolution),
}

impl DynamoStore {
    async fn change_review(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
        change: Change<'_>,
    ) -> Result<ReviewChange, StoreError> {
        let keys = Keys::new(tenant);
        let key = keys.review(id);
        let (action, at) = match &change {
            Change::Claim { .. } => (ReviewAction::Claimed, now),
            Change::Release => (ReviewAction::Released, now),
            Change::Resolve(r) => (ReviewAction::Resolved, r.resolved_at),
        };
        let event = ReviewEvent {
            action,
            by: Some(holder.to_owned()),
            at,
        };
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#holder", "claim_holder")
            .expression_attribute_names("#until", "claim_expires_at")
            .expression_attribute_names("#history", "history")
            .expression_attribute_values(":open", s(ReviewStatus::Open.as_str()))
            .expression_attribute_values(":me", s(holder))
            .expression_attribute_values(":now", n(now.unix()))
            .expression_attribute_values(":event", AttributeValue::L(vec![event_value(&event)]))
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .return_values(ReturnValue::AllNew);
        let append = "#history = list_append(if_not_exists(#history, :none), :event)";
        let held = "attribute_exists(pk) AND #status = :open AND #holder = :me AND #until > :now";
        req = match change {
            Change::Claim { until } => req
                .update_expression(format!("SET #holder = :me, #until = :until, {append}"))
                .expression_attribute_values(":until", n(until))
                .condition_expression(
                    "attribute_exists(pk) AND #status = :open AND \
                     (attribute_not_exists(#holder) OR #until <= :now OR #holder = :me)",
                ),
            Change::Release => req
                .update_expression(format!("SET {append} REMOVE #holder, #until"))
                .condition_expression(held),
            Change::Resolve(r) => req
                .update_expression(format!(
                    "SET #status = :resolved, #resolution = :resolution, #g1 = :g1, #g2 = :g2, {append} \
                     REMOVE #holder, #until"
                ))
                .expression_attribute_names("#resolution", "resolution")
                .expression_attribute_names("#g1", GSI1PK)
                .expression_attribute_names("#g2", GSI2PK)
                .expression_attribute_values(":resolved", s(ReviewStatus::Resolved.as_str()))
                .expression_attribute_values(":resolution", resolution_value(r))
                .expression_attribute_values(":g1", s(keys.review_queue(ReviewStatus::Resolved.as_str())))
                .expression_attribute_values(":g2", s(keys.review_queue_by_risk(ReviewStatus::Resolved.as_str())))
                .condition_expression(held),
        };
        match req.send().await {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                Ok(Ok(parse_review(&item, &key)?))
            }
            Err(e) if is_conditional_check_failed(&e) => {
                // Nothing was written: say why, from the item as it is now.
                let refusal = match self.get(&key).await?.map(|i| parse_review(&i, &key)).transpose()? {
                    None => ReviewRefusal::Missing,
                    Some(r) if r.status == ReviewStatus::Resolved => ReviewRefusal::AlreadyResolved,
                    Some(r) => match r.live_claim(now.unix()) {
                        Some(c) if c.holder != holder => ReviewRefusal::HeldByOther {
                            holder: c.holder.clone(),
                            expires_at: c.expires_at,
                        },
                        _ => ReviewRefusal::NotHeld,
                    },
                };
                Ok(Err(refusal))
            }
            Err(e) => Err(sdk_error("UpdateItem (review)", e)),
        }
    }
}

impl ReviewStore for DynamoStore {
    async fn review(&self, tenant: &TenantId, id: &TransactionId) -> Result<Option<Review>, StoreError> {
        let key = Keys::new(tenant).review(id);
        self.get(&key).await?.map(|item| parse_review(&item, &key)).transpose()
    }

    async fn reviews(
        &self,
        tenant: &TenantId,
        status: ReviewStatus,
        sort: ReviewSort,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Review>, StoreError> {
        let keys = Keys::new(tenant);
        let limit = limit.clamp(1, MAX_PAGE);
        let (index, ipk_name, isk_name, partition) = match sort {
            ReviewSort::Oldest => (GSI1, GSI1PK, GSI1SK, keys.review_queue(status.as_str())),
            ReviewSort::Risk => (GSI2, GSI2PK, GSI2SK, keys.review_queue_by_risk(status.as_str())),
        };
        let start = match cursor {
            None => None,
            Some(raw) => {
                if raw.len() > 2048 {
                    return Err(StoreError::BadCursor);
                }
                let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| StoreError::BadCursor)?;
                let c: ReviewCursor = serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
                let id = keys.decision_id(&c.pk).ok_or(StoreError::BadCursor)?;
                let sort_id = c.isk.rsplit_once('#').map(|(_, id)| id);
                if c.sk != "REVIEW" || c.ipk != partition || sort_id != Some(id.as_str()) {
                    return Err(StoreError::BadCursor);
                }
                Some(HashMap::from([
                    (PK.to_owned(), s(&c.pk)),
                    (SK.to_owned(), s(&c.sk)),
                    (ipk_name.to_owned(), s(&c.ipk)),
                    (isk_name.to_owned(), s(&c.isk)),
                ]))
            }
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", ipk_name)
            .expression_attribute_values(":pk", s(&partition))
            .scan_index_forward(true)
            .limit(limit as i32 + 1)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| sdk_error("Query (review queue)", e))?;
        let truncated = out.last_evaluated_key.is_some();
        let mut raw = out.items.unwrap_or_default();
        let more = raw.len() > limit || truncated;
        raw.truncate(limit);
        let mut next_cursor = None;
        if more {
            if let Some(last) = raw.last() {
                let key = ItemKey::of(last).ok_or_else(|| corrupt(&partition, "item without pk/sk"))?;
                let c = ReviewCursor {
                    pk: key.pk.clone(),
                    sk: key.sk.clone(),
                    ipk: partition.clone(),
                    isk: get_s(last, isk_name, &key)?.to_owned(),
                };
                next_cursor = Some(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap_or_default()));
            }
        }
        let mut items = Vec::with_capacity(raw.len());
        for item in raw {
            let Some(key) = ItemKey::of(&item) else { continue };
            // An item that does not parse is logged and left out: one odd item must not break
            // the whole queue.
            match parse_review(&item, &key) {
                Ok(r) if keys.decision_id(&key.pk).is_some() => items.push(r),
                Ok(_) => tracing::warn!(key = %key, "review queue: not this tenant's item; left out"),
                Err(e) => tracing::warn!(key = %key, error = %e, "review queue: unreadable item left out"),
            }
        }
        Ok(Page { items, next_cursor })
    }

    async fn claim(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
        until: i64,
    ) -> Result<ReviewChange, StoreError> {
        self.change_review(tenant, id, holder, now, Change::Claim { until })
            .await
    }

    async fn release(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
    ) -> Result<ReviewChange, StoreError> {
        self.change_review(tenant, id, holder, now, Change::Release).await
    }

    async fn resolve(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
        resolution: &Resolution,
    ) -> Result<ReviewChange, StoreError> {
        self.change_review(tenant, id, holder, now, Change::Resolve(resolution))
            .await
    }
}
