//! Review items: opened inside the decision's TransactWriteItems ([`review_put`]), then claimed,
//! released and resolved by conditional UpdateItems; the queue is two sparse index partitions
//! per status (`gsi1` oldest first, `gsi2` highest risk first).

use super::*;
use crate::domain::review::{
    LabelStatus, ListAdded, Outcome, Resolution, ResolutionLabel, Review, ReviewAction, ReviewClaim, ReviewEvent,
    ReviewSort, ReviewStatus, MAX_HISTORY,
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
        ("label_status".to_owned(), s(r.label_status.as_str())),
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

/// The Put that opens `review` (conditional: one item per transaction, ever). `over_orphan`:
/// unconditional, to replace a REVIEW item left without its DECISION (the decision Put's own
/// condition in the same transaction still makes it one item per decision).
pub(super) fn review_put(
    store: &DynamoStore,
    tenant: &TenantId,
    review: &Review,
    over_orphan: bool,
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
    let put = if over_orphan {
        build(
            "Put",
            aws_sdk_dynamodb::types::Put::builder()
                .table_name(&store.table)
                .set_item(Some(item))
                .build(),
        )?
    } else {
        store.put_if_absent(item)?
    };
    Ok(TransactWriteItem::builder().put(put).build())
}

fn parse_event(v: &AttributeValue, key: &ItemKey) -> Option<ReviewEvent> {
    let m = v.as_m().ok()?;
    let action = ReviewAction::parse(m.get("action")?.as_s().ok()?)?;
    let at = get_timestamp(m, "at", key).ok()?;
    let by = m.get("by").and_then(|b| b.as_s().ok()).cloned();
    Some(ReviewEvent { action, by, at })
}

pub(super) fn parse_resolution(m: &Item, key: &ItemKey) -> Result<Resolution, StoreError> {
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
        // Absent on resolutions stored before it existed; unreadable is not worth failing reads.
        label_status: match m.get("label_status").and_then(|v| v.as_s().ok()) {
            None => LabelStatus::Applied,
            Some(raw) => LabelStatus::parse(raw).unwrap_or_else(|r| {
                tracing::warn!(key = %key, reason = %r, "review resolution: unreadable label_status read as applied");
                LabelStatus::Applied
            }),
        },
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
    let pending = match item.get("resolving") {
        Some(AttributeValue::M(m)) => Some(parse_resolution(m, key)?),
        None | Some(AttributeValue::Null(_)) => None,
        Some(_) => return Err(corrupt(key, "resolving is not a map")),
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
        pending,
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
    /// A free item (unclaimed, expired, or a claim without an expiry): appends `claimed`.
    Take {
        until: i64,
    },
    /// A free item whose history is at the cap: taken without a history line, so a full
    /// history never locks the item.
    TakeAtCap {
        until: i64,
    },
    /// The holder's live claim gets a new expiry; no history line.
    Renew {
        until: i64,
    },
    Release,
    /// Records the pending resolution (`resolving`).
    Begin(&'a Resolution),
    /// Closes the item whose pending resolution is this key's.
    Finish(&'a Resolution),
}

/// Why a change was refused, from the item as it is now.
fn refusal(item: Option<Review>, holder: &str, now: i64) -> ReviewRefusal {
    let Some(r) = item else {
        return ReviewRefusal::Missing;
    };
    if r.status == ReviewStatus::Resolved {
        return ReviewRefusal::AlreadyResolved;
    }
    if let Some(p) = &r.pending {
        return ReviewRefusal::Pending {
            by: p.resolved_by.clone(),
        };
    }
    match r.live_claim(now) {
        Some(c) if c.holder != holder => ReviewRefusal::HeldByOther {
            holder: c.holder.clone(),
            expires_at: c.expires_at,
        },
        Some(_) if r.history.len() >= MAX_HISTORY => ReviewRefusal::HistoryFull,
        None if r.history.len() >= MAX_HISTORY => ReviewRefusal::HistoryFull,
        _ => ReviewRefusal::NotHeld,
    }
}

impl DynamoStore {
    /// One conditional UpdateItem; `None` when its condition failed (nothing written).
    async fn change_review(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
        change: Change<'_>,
    ) -> Result<Option<Review>, StoreError> {
        let keys = Keys::new(tenant);
        let key = keys.review(id);
        let (action, at) = match &change {
            Change::Finish(r) => (ReviewAction::Resolved, r.resolved_at),
            Change::Release => (ReviewAction::Released, now),
            _ => (ReviewAction::Claimed, now),
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
            .expression_attribute_names("#resolving", "resolving")
            .expression_attribute_values(":open", s(ReviewStatus::Open.as_str()))
            .return_values(ReturnValue::AllNew);
        let append = "#history = list_append(if_not_exists(#history, :none), :event)";
        let with_history = |req: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder| {
            req.expression_attribute_names("#history", "history")
                .expression_attribute_values(":event", AttributeValue::L(vec![event_value(&event)]))
                .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
        };
        let with_claim = |req: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder| {
            req.expression_attribute_names("#holder", "claim_holder")
                .expression_attribute_names("#until", "claim_expires_at")
                .expression_attribute_values(":me", s(holder))
                .expression_attribute_values(":now", n(now.unix()))
        };
        // Below the cap, so the item stays far from 400 KB.
        let room = "(attribute_not_exists(#history) OR size(#history) < :max)";
        let free = "attribute_exists(pk) AND #status = :open AND attribute_not_exists(#resolving)";
        let held = "#holder = :me AND #until > :now";
        req = match change {
            Change::Take { until } => with_claim(with_history(req))
                .update_expression(format!("SET #holder = :me, #until = :until, {append}"))
                .expression_attribute_values(":until", n(until))
                .expression_attribute_values(":max", n(MAX_HISTORY))
                .condition_expression(format!(
                    "{free} AND {room} AND \
                     (attribute_not_exists(#holder) OR attribute_not_exists(#until) OR #until <= :now)"
                )),
            Change::TakeAtCap { until } => with_claim(req)
                .update_expression("SET #holder = :me, #until = :until")
                .expression_attribute_names("#history", "history")
                .expression_attribute_values(":until", n(until))
                .expression_attribute_values(":max", n(MAX_HISTORY))
                .condition_expression(format!(
                    "{free} AND size(#history) >= :max AND \
                     (attribute_not_exists(#holder) OR attribute_not_exists(#until) OR #until <= :now)"
                )),
            Change::Renew { until } => with_claim(req)
                .update_expression("SET #until = :until")
                .expression_attribute_values(":until", n(until))
                .condition_expression(format!("{free} AND {held}")),
            Change::Release => with_claim(with_history(req))
                .update_expression(format!("SET {append} REMOVE #holder, #until"))
                .expression_attribute_values(":max", n(MAX_HISTORY))
                .condition_expression(format!("{free} AND {held} AND {room}")),
            Change::Begin(r) => with_claim(req)
                .update_expression("SET #resolving = :pending")
                .expression_attribute_values(":pending", resolution_value(r))
                .condition_expression(format!("{free} AND {held}")),
            Change::Finish(r) => with_history(req)
                .update_expression(format!(
                    "SET #status = :resolved, #resolution = :resolution, #g1 = :g1, #g2 = :g2, {append} \
                     REMOVE #holder, #until, #resolving"
                ))
                .expression_attribute_names("#holder", "claim_holder")
                .expression_attribute_names("#until", "claim_expires_at")
                .expression_attribute_names("#resolution", "resolution")
                .expression_attribute_names("#by", "resolved_by")
                .expression_attribute_names("#g1", GSI1PK)
                .expression_attribute_names("#g2", GSI2PK)
                .expression_attribute_values(":by", s(&r.resolved_by))
                .expression_attribute_values(":resolved", s(ReviewStatus::Resolved.as_str()))
                .expression_attribute_values(":resolution", resolution_value(r))
                .expression_attribute_values(":g1", s(keys.review_queue(ReviewStatus::Resolved.as_str())))
                .expression_attribute_values(":g2", s(keys.review_queue_by_risk(ReviewStatus::Resolved.as_str())))
                .condition_expression("#status = :open AND #resolving.#by = :by"),
        };
        match req.send().await {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                Ok(Some(parse_review(&item, &key)?))
            }
            Err(e) if is_conditional_check_failed(&e) => Ok(None),
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
        if let Some(r) = self
            .change_review(tenant, id, holder, now, Change::Take { until })
            .await?
        {
            return Ok(Ok(r));
        }
        // Not free: the holder's own live claim is renewed, anything else says why.
        let current = self.review(tenant, id).await?;
        let mine = current.as_ref().is_some_and(|r| {
            r.status == ReviewStatus::Open
                && r.pending.is_none()
                && r.live_claim(now.unix()).is_some_and(|c| c.holder == holder)
        });
        if mine {
            if let Some(r) = self
                .change_review(tenant, id, holder, now, Change::Renew { until })
                .await?
            {
                return Ok(Ok(r));
            }
        }
        let current = if mine { self.review(tenant, id).await? } else { current };
        // Reads as free but the Take failed: most likely at the cap (the parsed length can be
        // short of the stored one when unreadable lines were dropped), so try without the
        // history line and let its condition decide (a change in between is refused as it is now).
        let free = current.as_ref().is_some_and(|r| {
            r.status == ReviewStatus::Open && r.pending.is_none() && r.live_claim(now.unix()).is_none()
        });
        if free {
            if let Some(r) = self
                .change_review(tenant, id, holder, now, Change::TakeAtCap { until })
                .await?
            {
                return Ok(Ok(r));
            }
            return Ok(Err(refusal(self.review(tenant, id).await?, holder, now.unix())));
        }
        Ok(Err(refusal(current, holder, now.unix())))
    }

    async fn release(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
    ) -> Result<ReviewChange, StoreError> {
        match self.change_review(tenant, id, holder, now, Change::Release).await? {
            Some(r) => Ok(Ok(r)),
            None => Ok(Err(refusal(self.review(tenant, id).await?, holder, now.unix()))),
        }
    }

    async fn begin_resolve(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
        intent: &Resolution,
    ) -> Result<ReviewChange, StoreError> {
        if let Some(r) = self
            .change_review(tenant, id, holder, now, Change::Begin(intent))
            .await?
        {
            return Ok(Ok(r));
        }
        let current = self.review(tenant, id).await?;
        match current {
            // The caller's own, recorded before a crash: completed as recorded.
            Some(r)
                if r.status == ReviewStatus::Open && r.pending.as_ref().is_some_and(|p| p.resolved_by == holder) =>
            {
                Ok(Ok(r))
            }
            other => Ok(Err(refusal(other, holder, now.unix()))),
        }
    }

    async fn finish_resolve(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        resolution: &Resolution,
    ) -> Result<ReviewChange, StoreError> {
        let by = resolution.resolved_by.as_str();
        let now = resolution.resolved_at;
        if let Some(r) = self
            .change_review(tenant, id, by, now, Change::Finish(resolution))
            .await?
        {
            return Ok(Ok(r));
        }
        match self.review(tenant, id).await? {
            // Closed already by the same key's completion: idempotent.
            Some(r)
                if r.status == ReviewStatus::Resolved && r.resolution.as_ref().is_some_and(|d| d.resolved_by == by) =>
            {
                Ok(Ok(r))
            }
            Some(r) if r.status == ReviewStatus::Open && r.pending.is_none() => Ok(Err(ReviewRefusal::NotHeld)),
            other => Ok(Err(refusal(other, by, now.unix()))),
        }
    }
}
