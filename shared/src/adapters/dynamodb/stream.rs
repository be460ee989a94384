//! The table's stream (NEW_AND_OLD_IMAGES), decoded into the committed changes that are
//! published ([`Change`]), with the item parsers the store reads with. Read tolerantly: an
//! image that does not parse is [`RecordContent::Unreadable`] (logged and skipped by the
//! service), never an error that would block the shard.

use super::*;
use crate::domain::events::{Change, RecordContent, ReviewResolution, StreamRecord};
use aws_lambda_events::event::dynamodb::EventRecord;

/// The sort keys of the items whose changes can be published: the event source mapping's
/// `FilterCriteria` in template.yaml passes these only (tests/tests/template.rs checks it).
pub const PUBLISHED_SORT_KEYS: [&str; 4] = ["DECISION", "REVIEW", "ACTIVE", "CONFIG"];

/// The tenant of a tenant-scoped key (`T#<tenant>` or `T#<tenant>#…`).
fn tenant_of(pk: &str) -> Option<TenantId> {
    let rest = pk.strip_prefix("T#")?;
    let tenant = rest.split('#').next()?;
    TenantId::parse(tenant).ok()
}

fn image(item: &serde_dynamo::Item) -> Option<Item> {
    if item.is_empty() {
        None
    } else {
        Some(HashMap::from(item.clone()))
    }
}

/// One Lambda stream record, decoded.
pub fn decode_record(record: &EventRecord) -> StreamRecord {
    let change = &record.change;
    let sequence_number = change.sequence_number.clone().unwrap_or_default();
    let content = decode_images(
        &record.event_name,
        image(&change.keys),
        image(&change.old_image),
        image(&change.new_image),
    );
    StreamRecord {
        sequence_number,
        content,
    }
}

/// The change of one item, from its stream images (`event_name` INSERT, MODIFY or REMOVE).
pub fn decode_images(event_name: &str, keys: Option<Item>, old: Option<Item>, new: Option<Item>) -> RecordContent {
    let Some(key) = keys
        .as_ref()
        .and_then(ItemKey::of)
        .or_else(|| new.as_ref().and_then(ItemKey::of))
        .or_else(|| old.as_ref().and_then(ItemKey::of))
    else {
        return RecordContent::Unreadable("the record names no pk/sk".into());
    };
    if event_name == "REMOVE" {
        return RecordContent::Ignore;
    }
    let Some(new) = new else {
        return RecordContent::Unreadable(format!("{key}: {event_name} without a new image"));
    };
    let Some(tenant) = tenant_of(&key.pk) else {
        // API keys (KEY#…) and anything else outside a tenant publish nothing.
        return RecordContent::Ignore;
    };
    let keys = Keys::new(&tenant);
    let result = match key.sk.as_str() {
        "DECISION" => match keys.decision_id(&key.pk) {
            Some(id) => decision_change(&tenant, id, &key, old.as_ref(), new),
            None => Ok(None),
        },
        "REVIEW" => match keys.decision_id(&key.pk) {
            Some(id) => review_change(&tenant, id, &key, old.as_ref(), &new),
            None => Ok(None),
        },
        "ACTIVE" if key == keys.active_model() => model_change(&tenant, &key, old.as_ref(), &new),
        "CONFIG" if key == keys.config() => Ok(ruleset_change(&tenant, &key, old.as_ref(), &new)),
        _ => Ok(None),
    };
    match result {
        Ok(Some(change)) => RecordContent::Publish(change),
        Ok(None) => RecordContent::Ignore,
        Err(e) => RecordContent::Unreadable(e.to_string()),
    }
}

fn decision_change(
    tenant: &TenantId,
    id: TransactionId,
    key: &ItemKey,
    old: Option<&Item>,
    new: Item,
) -> Result<Option<Change>, StoreError> {
    match old {
        // A decision is put once; moto may repeat the INSERT, which gives the same event id.
        None => {
            let record = parse_decision(new, key)?;
            Ok(Some(Change::Decision {
                tenant: tenant.clone(),
                record: Box::new(record),
            }))
        }
        Some(old) => {
            let before = parse_label(old, key).unwrap_or_else(|e| {
                tracing::warn!(key = %key, error = %e, "the previous label is unreadable");
                None
            });
            match parse_label(&new, key)? {
                Some(label) if before.as_ref() != Some(&label) => Ok(Some(Change::Label {
                    tenant: tenant.clone(),
                    transaction_id: id,
                    label,
                    previous: before,
                })),
                _ => Ok(None),
            }
        }
    }
}

fn review_change(
    tenant: &TenantId,
    id: TransactionId,
    key: &ItemKey,
    old: Option<&Item>,
    new: &Item,
) -> Result<Option<Change>, StoreError> {
    let resolved = |item: &Item| matches!(item.get("status"), Some(AttributeValue::S(s)) if s == "resolved");
    if !resolved(new) || old.is_some_and(resolved) {
        return Ok(None);
    }
    let Some(AttributeValue::M(r)) = new.get("resolution") else {
        return Err(corrupt(key, "resolved without a resolution map"));
    };
    let mut lists_added = Vec::new();
    if let Some(AttributeValue::L(entries)) = r.get("lists_added") {
        for e in entries {
            if let AttributeValue::M(m) = e {
                lists_added.push((get_s(m, "list", key)?.to_owned(), get_s(m, "value", key)?.to_owned()));
            }
        }
    }
    Ok(Some(Change::ReviewResolution {
        tenant: tenant.clone(),
        transaction_id: id,
        resolution: ReviewResolution {
            outcome: get_s(r, "outcome", key)?.to_owned(),
            label: get_s_opt(r, "label", key)?.unwrap_or("none").to_owned(),
            note: get_s_opt(r, "note", key)?.map(str::to_owned),
            resolved_by: get_s(r, "resolved_by", key)?.to_owned(),
            resolved_at: get_s(r, "resolved_at", key)?.to_owned(),
            lists_added,
        },
    }))
}

fn model_change(
    tenant: &TenantId,
    key: &ItemKey,
    old: Option<&Item>,
    new: &Item,
) -> Result<Option<Change>, StoreError> {
    let pointer = parse_pointer(new, key)?;
    if old.and_then(|o| parse_pointer(o, key).ok()).as_ref() == Some(&pointer) {
        return Ok(None);
    }
    Ok(Some(Change::ModelActivation {
        tenant: tenant.clone(),
        pointer,
    }))
}

/// A change of the CONFIG item is an activation only when its ruleset pointer moved (the
/// thresholds, the shard layout and the list versions change it too).
fn ruleset_change(tenant: &TenantId, key: &ItemKey, old: Option<&Item>, new: &Item) -> Option<Change> {
    let after = parse_ruleset_pointer(new, key)?;
    let before = old.and_then(|o| parse_ruleset_pointer(o, key));
    if before.as_ref() == Some(&after) {
        return None;
    }
    Some(Change::RulesetActivation {
        tenant: tenant.clone(),
        version: after.version,
        previous: after.previous_version,
        by: after.activated_by,
        at: after.activated_at,
    })
}
