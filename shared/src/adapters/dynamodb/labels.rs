//! Labels: the decision's label and the fraud counters it moves, written exactly once.

use super::*;

// The types are the port's; re-exported so callers of the store find them with it.
use crate::ports::labels::LabelStore;
pub use crate::ports::labels::{LabelTarget, LabelWrite, LabelWriteOutcome, NewestDays};

pub(super) fn label_value(l: &StoredLabel) -> AttributeValue {
    let mut m = HashMap::from([
        ("value".to_owned(), s(l.value.as_str())),
        ("source".to_owned(), s(&l.source)),
        ("labelled_at".to_owned(), s(l.labelled_at.to_rfc3339())),
    ]);
    if let Some(f) = &l.file {
        m.insert("file".into(), s(f));
    }
    if let Some(e) = &l.etag {
        m.insert("etag".into(), s(e));
    }
    if let Some(line) = l.line {
        m.insert("line".into(), n(line));
    }
    if let Some(note) = &l.note {
        m.insert("note".into(), s(note));
    }
    AttributeValue::M(m)
}

pub(super) fn parse_label(item: &Item, key: &ItemKey) -> Result<Option<StoredLabel>, StoreError> {
    let m = match item.get("label") {
        None | Some(AttributeValue::Null(_)) => return Ok(None),
        Some(AttributeValue::M(m)) => m,
        Some(_) => return Err(corrupt(key, "label is not a map")),
    };
    let value = get_s(m, "value", key)?;
    let value = LabelValue::parse(value).map_err(|r| corrupt(key, format!("label.value: {r}")))?;
    Ok(Some(StoredLabel {
        value,
        source: get_s_opt(m, "source", key)?.unwrap_or_default().to_owned(),
        labelled_at: get_timestamp(m, "labelled_at", key)?,
        file: get_s_opt(m, "file", key)?.map(str::to_owned),
        etag: get_s_opt(m, "etag", key)?.map(str::to_owned),
        line: get_n_opt(m, "line", key)?,
        note: get_s_opt(m, "note", key)?.map(str::to_owned),
    }))
}

pub(super) fn parse_label_target(item: &Item, key: &ItemKey) -> Result<LabelTarget, StoreError> {
    let customer = get_s(item, "customer_id", key)?;
    let terminal = match get_s_opt(item, "terminal_id", key)? {
        Some(t) => Some(t),
        None => match item.get("inputs") {
            Some(AttributeValue::M(inputs)) => get_s_opt(inputs, "terminal_id", key)?,
            _ => None,
        },
    };
    Ok(LabelTarget {
        occurred_at: super::decisions::decision_times(item, key).0,
        customer_id: CustomerId::parse(customer).map_err(|e| corrupt(key, e.to_string()))?,
        terminal_id: terminal
            .map(TerminalId::parse)
            .transpose()
            .map_err(|e| corrupt(key, e.to_string()))?,
        label: parse_label(item, key)?,
    })
}

impl DynamoStore {
    /// The decisions of `ids` that exist, with their current labels (BatchGetItem, 100 a call).
    pub async fn label_targets(
        &self,
        tenant: &TenantId,
        ids: &[TransactionId],
    ) -> Result<HashMap<TransactionId, LabelTarget>, StoreError> {
        let keys = Keys::new(tenant);
        let mut wanted: Vec<ItemKey> = ids.iter().map(|id| keys.decision(id)).collect();
        wanted.sort();
        wanted.dedup();
        let mut out = HashMap::with_capacity(wanted.len());
        for chunk in wanted.chunks(100) {
            let refs: Vec<&ItemKey> = chunk.iter().collect();
            for (key, item) in self.batch_get(&refs).await? {
                let id = keys
                    .decision_id(&key.pk)
                    .ok_or_else(|| corrupt(&key, "not a decision of this tenant"))?;
                out.insert(id, parse_label_target(&item, &key)?);
            }
        }
        Ok(out)
    }

    /// The newest day bucket of each customer's and terminal's aggregate (absent: no item).
    pub async fn newest_days(
        &self,
        tenant: &TenantId,
        customers: &[CustomerId],
        terminals: &[TerminalId],
    ) -> Result<NewestDays, StoreError> {
        // The same read as the batch's stored aggregates: every shard, summed.
        let found = crate::ports::AggregateReads::aggregates(self, tenant, customers, terminals).await?;
        let newest = |agg: &EntityAggregate| agg.days().last().map(|(d, _)| *d);
        Ok(NewestDays {
            customers: found
                .customers
                .iter()
                .filter_map(|(c, agg)| Some((c.clone(), newest(agg)?)))
                .collect(),
            terminals: found
                .terminals
                .iter()
                .filter_map(|(t, agg)| Some((t.clone(), newest(agg)?)))
                .collect(),
        })
    }

    /// Sets a decision's label and moves the fraud counters in one TransactWriteItems, on the
    /// condition that the decision still carries `previous`. So each transaction's fraud is
    /// counted once whatever repeats, races or resumes happen.
    pub async fn write_label(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        w: &LabelWrite<'_>,
    ) -> Result<LabelWriteOutcome, StoreError> {
        let keys = Keys::new(tenant);
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(keys.decision(id).to_item()))
            .update_expression("SET #label = :label")
            .expression_attribute_names("#label", "label")
            .expression_attribute_values(":label", label_value(w.label));
        update = match w.previous {
            None => update.condition_expression("attribute_exists(pk) AND attribute_not_exists(#label)"),
            Some(p) => update
                .condition_expression("#label.#value = :old_value AND #label.#at = :old_at")
                .expression_attribute_names("#value", "value")
                .expression_attribute_names("#at", "labelled_at")
                .expression_attribute_values(":old_value", s(p.value.as_str()))
                .expression_attribute_values(":old_at", s(p.labelled_at.to_rfc3339())),
        };
        let mut items = vec![TransactWriteItem::builder()
            .update(build("Update", update.build())?)
            .build()];
        if w.fraud_delta != 0 {
            // The shard the decision counted the transaction in (the same hash of its id).
            let layout = self.layout_for_write(tenant).await?;
            let aggregates = w
                .customer
                .map(|c| keys.customer_aggregate_shard(c, layout.customer(c).shards.shard_of(id)))
                .into_iter()
                .chain(
                    w.terminal
                        .map(|t| keys.terminal_aggregate_shard(t, layout.terminal(t).shards.shard_of(id))),
                );
            for key in aggregates {
                let u = UpdateExpr {
                    expression: "ADD #f :d".into(),
                    names: HashMap::from([("#f".to_owned(), day_attribute('f', w.day))]),
                    values: HashMap::from([(":d".to_owned(), n(w.fraud_delta))]),
                    condition: None,
                };
                items.push(TransactWriteItem::builder().update(self.update(&key, u)?).build());
            }
        }
        match self.transact(items, "TransactWriteItems (label)").await? {
            Transacted::Written => Ok(LabelWriteOutcome::Written),
            // The decision's label is no longer the one read.
            Transacted::ConditionFailed(codes)
                if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") =>
            {
                Ok(LabelWriteOutcome::Changed)
            }
            // An aggregate's fraud counter that is not a number refuses the ADD.
            Transacted::Refused(codes) if codes.first().map(String::as_str) != Some("ValidationError") => {
                Ok(LabelWriteOutcome::Refused)
            }
            Transacted::Refused(codes) => Err(StoreError::Rejected(format!(
                "TransactWriteItems (label): the label update was refused: {codes:?}"
            ))),
            Transacted::ConditionFailed(codes) => Err(StoreError::Rejected(format!(
                "TransactWriteItems (label): a condition failed on an aggregate: {codes:?}"
            ))),
        }
    }
}

impl LabelStore for DynamoStore {
    async fn label_targets(
        &self,
        tenant: &TenantId,
        ids: &[TransactionId],
    ) -> Result<HashMap<TransactionId, LabelTarget>, StoreError> {
        DynamoStore::label_targets(self, tenant, ids).await
    }

    async fn newest_days(
        &self,
        tenant: &TenantId,
        customers: &[CustomerId],
        terminals: &[TerminalId],
    ) -> Result<NewestDays, StoreError> {
        DynamoStore::newest_days(self, tenant, customers, terminals).await
    }

    async fn write_label(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        write: &LabelWrite<'_>,
    ) -> Result<LabelWriteOutcome, StoreError> {
        DynamoStore::write_label(self, tenant, id, write).await
    }
}
