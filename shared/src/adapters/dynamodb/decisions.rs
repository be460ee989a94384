//! Decisions: the scoring read (one BatchGetItem), the commit (one TransactWriteItems), history.

use super::*;
use crate::domain::shards::ShardCount;
use crate::ports::{AggregateWritePlan, ShardWrite};

/// Where a decision stands in its customer's history; encoded as an opaque page cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Cursor {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) gsi1pk: String,
    pub(super) gsi1sk: String,
}

impl Cursor {
    pub(super) fn of(item: &Item, key: &ItemKey) -> Result<Cursor, StoreError> {
        Ok(Cursor {
            pk: key.pk.clone(),
            sk: key.sk.clone(),
            gsi1pk: get_s(item, GSI1PK, key)?.to_owned(),
            gsi1sk: get_s(item, GSI1SK, key)?.to_owned(),
        })
    }

    pub(super) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a cursor and checks that it points into `customer`'s history of this tenant.
    pub(super) fn decode(raw: &str, keys: &Keys<'_>, customer: &CustomerId) -> Result<Cursor, StoreError> {
        if raw.len() > 2048 {
            return Err(StoreError::BadCursor);
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| StoreError::BadCursor)?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
        let id = keys.decision_id(&c.pk).ok_or(StoreError::BadCursor)?;
        let expected = keys.decision(&id);
        let sort_id = c.gsi1sk.rsplit_once('#').map(|(_, id)| id);
        if c.gsi1pk != keys.customer_history(customer) || c.sk != expected.sk || sort_id != Some(id.as_str()) {
            return Err(StoreError::BadCursor);
        }
        Ok(c)
    }

    pub(super) fn to_item(&self) -> Item {
        HashMap::from([
            (PK.to_owned(), s(&self.pk)),
            (SK.to_owned(), s(&self.sk)),
            (GSI1PK.to_owned(), s(&self.gsi1pk)),
            (GSI1SK.to_owned(), s(&self.gsi1sk)),
        ])
    }
}

pub(super) fn parse_decision(mut item: Item, key: &ItemKey) -> Result<DecisionRecord, StoreError> {
    let label = parse_label(&item, key)?;
    neutralise_odd_fields(&mut item, key);
    let mut record: DecisionRecord =
        serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| corrupt(key, e.to_string()))?;
    record.label = label;
    Ok(record)
}

/// A decision item's `occurred_at` and `created_at`, read tolerantly: the one read of stored
/// decision times, for full reads and label targets alike. A time that does not parse (the
/// epoch-number fallback once written for a year outside 0000..=9999, or any other text) reads
/// as the number's instant where it is one, else as the item's other time, else the epoch (so
/// the record still reads and the odd value is visible). Each repair is logged.
pub(super) fn decision_times(item: &Item, key: &ItemKey) -> (Timestamp, Timestamp) {
    let time_of = |v: Option<&AttributeValue>| -> Option<Timestamp> {
        let raw = match v? {
            AttributeValue::S(s) => s.as_str(),
            AttributeValue::N(n) => n.as_str(),
            _ => return None,
        };
        Timestamp::parse("t", raw)
            .ok()
            .or_else(|| raw.parse::<i64>().ok().and_then(|n| Timestamp::from_unix(n).ok()))
    };
    let occurred = time_of(item.get("occurred_at"));
    let created = time_of(item.get("created_at"));
    let read = |name: &str, own: Option<Timestamp>, other: Option<Timestamp>| -> Timestamp {
        let own_rfc3339 = if is_rfc3339(item.get(name)) { own } else { None };
        own_rfc3339.unwrap_or_else(|| {
            let repaired = own
                .or(other)
                .unwrap_or_else(|| Timestamp::from_unix(0).expect("the epoch"));
            tracing::warn!(key = %key, attribute = name, value = ?item.get(name), read_as = %repaired, "decision time unreadable: read as another");
            repaired
        })
    };
    (
        read("occurred_at", occurred, created),
        read("created_at", created, occurred),
    )
}

fn is_rfc3339(v: Option<&AttributeValue>) -> bool {
    matches!(v, Some(AttributeValue::S(s)) if Timestamp::parse("t", s).is_ok())
}

/// Reads tolerantly what earlier versions let through, so one odd item is never a 5xx for
/// every later GET, history page or replay: a time that does not parse (the epoch-number
/// fallback once written for a year outside 0000..=9999, or any other text) is read as the
/// number's instant where it is one, else as the item's other time (in `inputs` too); `inputs`
/// that is not a map reads as empty (within a map it is kept loose, as stored). Each repair is
/// logged; the item itself is left as stored.
fn neutralise_odd_fields(item: &mut Item, key: &ItemKey) {
    let (occurred, created) = decision_times(item, key);
    for (name, at) in [("occurred_at", occurred), ("created_at", created)] {
        if !is_rfc3339(item.get(name)) {
            item.insert(name.to_owned(), AttributeValue::S(at.to_rfc3339()));
        }
    }
    let occurred_at = item_time(item, "occurred_at");
    match item.get_mut("inputs") {
        Some(AttributeValue::M(inputs)) => {
            let odd_time = match inputs.get("occurred_at") {
                Some(AttributeValue::S(at)) => Timestamp::parse("t", at).is_err(),
                Some(_) => true,
                None => false,
            };
            if odd_time {
                tracing::warn!(key = %key, value = ?inputs.get("occurred_at"), "decision inputs.occurred_at unreadable: read as occurred_at");
                inputs.insert("occurred_at".into(), AttributeValue::S(occurred_at));
            }
        }
        None => {}
        Some(other) => {
            tracing::warn!(key = %key, value = ?other, "decision inputs are not a map: read as empty");
            item.insert("inputs".into(), AttributeValue::M(HashMap::new()));
        }
    }
}

/// An item's time attribute, once [`neutralise_odd_fields`] made it RFC 3339.
fn item_time(item: &Item, name: &str) -> String {
    item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
}

impl DynamoStore {
    /// The items of one decision's write transaction.
    pub(super) fn commit_items(
        &self,
        tenant: &TenantId,
        c: &DecisionCommit<'_>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let keys = Keys::new(tenant);
        let tx = c.transaction;
        let key = keys.decision(&tx.id);
        let mut item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(c.record)
            .map_err(|e| StoreError::Rejected(format!("decision {}: cannot be stored: {e}", tx.id)))?;
        item.extend(key.to_item());
        item.insert(GSI1PK.into(), s(keys.customer_history(&tx.customer_id)));
        item.insert(GSI1SK.into(), s(history_sort_key(&tx.occurred_at, &tx.id)));
        let day_shard = ShardCount::new(u64::from(DAY_SHARDS))
            .unwrap_or(ShardCount::ONE)
            .shard_of(&tx.id);
        item.insert(
            GSI2PK.into(),
            s(keys.decisions_of_day(tx.occurred_at.inner().date(), day_shard)),
        );
        item.insert(GSI2SK.into(), s(history_sort_key(&tx.occurred_at, &tx.id)));
        let mut items = vec![TransactWriteItem::builder().put(self.put_if_absent(item)?).build()];

        if let Some(k) = c.idempotency_key {
            let now = crate::domain::auth::now_epoch();
            let mut item = keys.idempotency(k).to_item();
            item.insert("transaction_id".into(), s(tx.id.as_str()));
            item.insert("fingerprint".into(), s(&c.record.request_fingerprint));
            item.insert("created_at".into(), n(now));
            item.insert(TTL_ATTRIBUTE.into(), n(now + IDEMPOTENCY_TTL_SECS));
            // An expired record that TTL has not deleted yet may be replaced.
            let put = build(
                "Put",
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk) OR #exp < :now")
                    .expression_attribute_names("#exp", TTL_ATTRIBUTE)
                    .expression_attribute_values(":now", n(now))
                    .build(),
            )?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let plan = c.aggregates;
        for (key, write) in [
            (
                keys.customer_aggregate_shard(&tx.customer_id, plan.customer.shard),
                &plan.customer,
            ),
            (
                keys.terminal_aggregate_shard(&tx.terminal_id, plan.terminal.shard),
                &plan.terminal,
            ),
        ] {
            let update = self.update(&key, aggregate_update(&c.delta, &write.remove, today()))?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        // Last, so the Puts' positions above stay as `commit` reads them.
        if let Some(review) = c.review() {
            items.push(super::reviews::review_put(self, tenant, &review, false)?);
        }
        Ok(items)
    }
}

fn refused(codes: &[String]) -> StoreError {
    StoreError::Rejected(format!(
        "TransactWriteItems (decision): an item's update was refused: {codes:?}"
    ))
}

/// `ts(…)` of docs/dynamodb.md: UTC with exactly three fractional digits, so keys sort by time.
pub(super) fn fixed_width(t: &Timestamp) -> String {
    let t = t.inner();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

impl DecisionStore for DynamoStore {
    async fn key(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        let Some(key) = api_key(hash) else {
            return Ok(None);
        };
        self.get(&key)
            .await?
            .map(|item| parse_key_record(&item, &key))
            .transpose()
    }

    async fn load_for_scoring(
        &self,
        tenant: &TenantId,
        key: Option<&KeyHash>,
        tx: &crate::domain::Transaction,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<ScoringSnapshot, StoreError> {
        let api = match key.map(api_key) {
            None => None,
            Some(Some(api)) => Some(api),
            // Not a hash any key could have: nothing to authenticate.
            Some(None) => return Ok(ScoringSnapshot::default()),
        };
        let keys = Keys::new(tenant);
        let customer = Entity::Customer(&tx.customer_id);
        let terminal = Entity::Terminal(&tx.terminal_id);
        // The shards the last layout this container saw names; the config read in the same
        // batch says whether more are needed.
        let hint = self.layouts.hint(tenant).unwrap_or_default();
        let shard_keys =
            |e: &Entity<'_>, from: u8, to: u8| -> Vec<ItemKey> { (from..to).map(|k| e.shard_key(&keys, k)).collect() };
        let (hint_c, hint_t) = (customer.read_count(&hint).get(), terminal.read_count(&hint).get());
        let mut aggregate_keys = shard_keys(&customer, 0, hint_c);
        aggregate_keys.extend(shard_keys(&terminal, 0, hint_t));
        let decision = keys.decision(&tx.id);
        let config = keys.config();
        let active = keys.active_model();
        let idem = idempotency_key.map(|k| keys.idempotency(k));
        let mut wanted = vec![&decision, &config, &active];
        wanted.extend(api.as_ref());
        wanted.extend(idem.as_ref());
        wanted.extend(aggregate_keys.iter());

        let mut found = self.batch_get(&wanted).await?;
        let layout = self.layouts.from_config(tenant, found.get(&config), &config);
        let (need_c, need_t) = (customer.read_count(&layout).get(), terminal.read_count(&layout).get());
        if need_c > hint_c || need_t > hint_t {
            // The layout changed since this container last saw it: read the shards it adds.
            let mut more = shard_keys(&customer, hint_c, need_c);
            more.extend(shard_keys(&terminal, hint_t, need_t));
            let refs: Vec<&ItemKey> = more.iter().collect();
            found.extend(self.batch_get(&refs).await?);
        }
        let day = tx.occurred_at.epoch_day();
        let windows = aggregates::day_windows(Some(day), aggregates::today());
        let mut snap = ScoringSnapshot::default();
        // Each entity: its shards summed, and the one this decision writes with what to repair.
        let mut read = |e: &Entity<'_>, count: u8| -> (EntityAggregate, ShardWrite) {
            let write = e.write_count(&layout).shard_of(&tx.id);
            let mut sum = AggregateSum::default();
            let mut repair = Vec::new();
            for k in 0..count {
                let key = e.shard_key(&keys, k);
                if let Some(item) = found.remove(&key) {
                    let ignored = sum.add_item(&item, &key, &windows);
                    if k == write {
                        repair = ignored;
                    }
                }
            }
            (sum.finish(&e.shard_key(&keys, 0)), shard_write(write, repair, day))
        };
        let (c, c_write) = read(&customer, need_c.max(hint_c));
        let (t, t_write) = read(&terminal, need_t.max(hint_t));
        snap.customer = c;
        snap.terminal = t;
        snap.aggregate_write = AggregateWritePlan {
            customer: c_write,
            terminal: t_write,
        };
        if let Some((api, item)) = api.as_ref().and_then(|k| Some((k, found.remove(k)?))) {
            snap.key = Some(parse_key_record(&item, api)?);
        }
        if let Some(item) = found.remove(&decision) {
            snap.existing = Some(parse_decision(item, &decision)?);
        }
        if let Some(item) = found.remove(&config) {
            snap.rules = parse_rules_pointers(&item, &config);
            if item.contains_key("review_threshold") {
                // Unreadable thresholds must not fail every decision of the tenant: the
                // default policy decides, and the error says why.
                match parse_thresholds(&item, &config) {
                    Ok(t) => snap.thresholds = Some(t),
                    Err(e) => {
                        tracing::error!(key = %config, error = %e, "tenant thresholds unreadable: the default policy decides")
                    }
                }
            }
        }
        if let Some(item) = found.remove(&active) {
            let p = parse_pointer(&item, &active)?;
            snap.active_model = Some(ActiveModel {
                version: p.version,
                object_key: p.object_key,
            });
        }
        if let Some(idem) = &idem {
            if let Some(item) = found.remove(idem) {
                let expired =
                    get_n_opt::<i64>(&item, TTL_ATTRIBUTE, idem)?.is_some_and(|t| t < crate::domain::auth::now_epoch());
                if !expired {
                    let id = get_s(&item, "transaction_id", idem)?;
                    snap.idempotency = Some(IdempotencyRecord {
                        transaction_id: TransactionId::parse(id).map_err(|e| corrupt(idem, e.to_string()))?,
                        fingerprint: get_s(&item, "fingerprint", idem)?.to_owned(),
                    });
                }
            }
        }
        Ok(snap)
    }

    async fn commit(&self, tenant: &TenantId, commit: &DecisionCommit<'_>) -> Result<CommitOutcome, StoreError> {
        let items = self.commit_items(tenant, commit)?;
        // The decision Put comes first, then the idempotency Put if any, then the aggregates.
        let puts = 1 + commit.idempotency_key.is_some() as usize;
        let failed = |c: &String| c == "ConditionalCheckFailed";
        match self.transact(items, "TransactWriteItems (decision)").await? {
            Transacted::Written => Ok(CommitOutcome::Committed),
            // The review Put (last) failed while the decision's did not: a REVIEW item without
            // its DECISION (an orphan). Never decided, so it is replaced, as the fake does.
            Transacted::ConditionFailed(codes)
                if commit.review().is_some()
                    && codes.last().is_some_and(failed)
                    && !codes.iter().take(puts).any(failed) =>
            {
                tracing::warn!(tenant = %tenant, id = %commit.record.id, "review item without its decision: replaced");
                let review = commit.review().expect("checked above");
                // A repair guard that failed in the same cancelled transaction (a concurrent
                // decision repaired the counter) would fail the retry again, and this never
                // committed decision would read as AlreadyDecided: retry with plain ADDs then.
                let repairs_failed = codes
                    .get(puts..codes.len().saturating_sub(1))
                    .is_some_and(|guards| guards.iter().any(failed));
                let plan = commit.aggregates.without_repairs();
                let retried = if repairs_failed {
                    DecisionCommit {
                        aggregates: &plan,
                        ..*commit
                    }
                } else {
                    DecisionCommit { ..*commit }
                };
                let mut items = self.commit_items(tenant, &retried)?;
                items.pop();
                items.push(super::reviews::review_put(self, tenant, &review, true)?);
                match self.transact(items, "TransactWriteItems (decision)").await? {
                    Transacted::Written => Ok(CommitOutcome::Committed),
                    Transacted::ConditionFailed(_) => Ok(CommitOutcome::AlreadyDecided),
                    Transacted::Refused(codes) => Err(refused(&codes)),
                }
            }
            Transacted::ConditionFailed(codes) if codes.iter().take(puts).all(|c| c != "ConditionalCheckFailed") => {
                // Only a repair's guard failed: a concurrent decision repaired the counter
                // first, so it reads as a number now and a plain ADD serves.
                let plan = commit.aggregates.without_repairs();
                let unrepaired = DecisionCommit {
                    aggregates: &plan,
                    ..*commit
                };
                let items = self.commit_items(tenant, &unrepaired)?;
                match self.transact(items, "TransactWriteItems (decision)").await? {
                    Transacted::Written => Ok(CommitOutcome::Committed),
                    Transacted::ConditionFailed(_) => Ok(CommitOutcome::AlreadyDecided),
                    Transacted::Refused(codes) => Err(refused(&codes)),
                }
            }
            Transacted::Refused(codes) => Err(refused(&codes)),
            // The decision or the idempotency record exists: another request decided first.
            Transacted::ConditionFailed(_) => Ok(CommitOutcome::AlreadyDecided),
        }
    }

    async fn decision(&self, tenant: &TenantId, id: &TransactionId) -> Result<Option<DecisionRecord>, StoreError> {
        let key = Keys::new(tenant).decision(id);
        self.get(&key).await?.map(|item| parse_decision(item, &key)).transpose()
    }

    async fn decisions_for_customer(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<DecisionRecord>, StoreError> {
        let keys = Keys::new(tenant);
        let limit = limit.clamp(1, MAX_PAGE);
        let start = cursor.map(|raw| Cursor::decode(raw, &keys, customer)).transpose()?;
        // One more than asked: if it comes back there is a next page, and no empty last page.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", GSI1PK)
            .expression_attribute_values(":pk", s(keys.customer_history(customer)))
            .scan_index_forward(false)
            .limit(limit as i32 + 1)
            .set_exclusive_start_key(start.map(|c| c.to_item()))
            .send()
            .await
            .map_err(|e| sdk_error("Query (customer history)", e))?;
        let truncated = out.last_evaluated_key.is_some();
        let mut raw = out.items.unwrap_or_default();
        let more = raw.len() > limit || truncated;
        raw.truncate(limit);
        let mut next_cursor = None;
        if more {
            if let Some(last) = raw.last() {
                let key =
                    ItemKey::of(last).ok_or_else(|| corrupt(&keys.customer_history(customer), "item without pk/sk"))?;
                next_cursor = Some(Cursor::of(last, &key)?.encode());
            }
        }
        let mut items = Vec::with_capacity(raw.len());
        for item in raw {
            let key =
                ItemKey::of(&item).ok_or_else(|| corrupt(&keys.customer_history(customer), "item without pk/sk"))?;
            if keys.decision_id(&key.pk).is_none() {
                return Err(corrupt(&key, "not a decision of this tenant"));
            }
            // One unreadable item is logged and skipped (as a backtest does), never a 500 for the
            // whole history.
            match parse_decision(item, &key) {
                Ok(d) => items.push(d),
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "an unreadable decision skipped in a customer history")
                }
            }
        }
        Ok(Page { items, next_cursor })
    }

    async fn active_model(&self, tenant: &TenantId) -> Result<Option<ActiveModel>, StoreError> {
        Ok(self.model_pointer(tenant).await?.map(|p| ActiveModel {
            version: p.version,
            object_key: p.object_key,
        }))
    }
}

/// Where a backtest's walk over `gsi2` stands: the day and shard being read, and the last key
/// read there. Encoded as an opaque page cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct WindowCursor {
    day: i32,
    shard: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<BTreeMap<String, String>>,
}

/// `gsi2sk` bounds of `[from, to)`: a sort key is `<time>#<id>`, so `<from>` sorts before every
/// key at `from` and `<to>` before every key at `to`.
fn window_bounds(from: &Timestamp, to: &Timestamp) -> (String, String) {
    (history_time(from), history_time(to))
}

fn date_of(day: i32) -> Option<time::Date> {
    Timestamp::from_unix(i64::from(day) * 86_400)
        .ok()
        .map(|t| t.inner().date())
}

impl DecisionWindow for DynamoStore {
    async fn decisions_between(
        &self,
        tenant: &TenantId,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<DecisionRecord>, StoreError> {
        let keys = Keys::new(tenant);
        let limit = limit.clamp(1, MAX_PAGE);
        let (first_day, last_day) = (from.epoch_day(), to.epoch_day());
        let mut at = match cursor {
            None => WindowCursor {
                day: first_day,
                shard: 0,
                after: None,
            },
            Some(raw) => {
                let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| StoreError::BadCursor)?;
                let c: WindowCursor = serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
                if !(first_day..=last_day).contains(&c.day) || c.shard >= DAY_SHARDS {
                    return Err(StoreError::BadCursor);
                }
                let date = date_of(c.day).ok_or(StoreError::BadCursor)?;
                if let Some(after) = &c.after {
                    if after.get(GSI2PK) != Some(&keys.decisions_of_day(date, c.shard)) {
                        return Err(StoreError::BadCursor);
                    }
                }
                c
            }
        };
        if to <= from {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let (low, high) = window_bounds(&from, &to);
        let mut items = Vec::new();
        // One partition per call: a page never waits on more than one Query.
        let Some(date) = date_of(at.day) else {
            return Ok(Page {
                items,
                next_cursor: None,
            });
        };
        let partition = keys.decisions_of_day(date, at.shard);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI2)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
            .expression_attribute_names("#pk", GSI2PK)
            .expression_attribute_names("#sk", GSI2SK)
            .expression_attribute_values(":pk", s(&partition))
            .expression_attribute_values(":low", s(&low))
            .expression_attribute_values(":high", s(&high))
            .limit(limit as i32)
            .set_exclusive_start_key(
                at.after
                    .as_ref()
                    .map(|a| a.iter().map(|(k, v)| (k.clone(), s(v))).collect()),
            )
            .send()
            .await
            .map_err(|e| sdk_error("Query (decisions by day)", e))?;
        for item in out.items.unwrap_or_default() {
            let Some(key) = ItemKey::of(&item) else {
                tracing::warn!(partition, "a gsi2 item without pk/sk; skipped");
                continue;
            };
            if keys.decision_id(&key.pk).is_none() {
                tracing::warn!(key = %key, "a gsi2 item that is not a decision of this tenant; skipped");
                continue;
            }
            match parse_decision(item, &key) {
                Ok(d) => items.push(d),
                // A backtest measures what it can read; one odd item must not stop it.
                Err(e) => tracing::warn!(key = %key, error = %e, "an unreadable decision skipped by a backtest"),
            }
        }
        let next = match out.last_evaluated_key {
            Some(lek) => {
                let after: Option<BTreeMap<String, String>> = lek
                    .iter()
                    .map(|(k, v)| v.as_s().ok().map(|v| (k.clone(), v.clone())))
                    .collect();
                at.after =
                    Some(after.ok_or_else(|| corrupt(&ItemKey::new(partition.clone(), ""), "a non-string key"))?);
                Some(at)
            }
            None if at.shard + 1 < DAY_SHARDS => Some(WindowCursor {
                day: at.day,
                shard: at.shard + 1,
                after: None,
            }),
            None if at.day < last_day => Some(WindowCursor {
                day: at.day + 1,
                shard: 0,
                after: None,
            }),
            None => None,
        };
        Ok(Page {
            items,
            next_cursor: next.map(|c| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap_or_default())),
        })
    }
}
