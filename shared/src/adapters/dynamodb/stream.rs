//! The table's stream (NEW_AND_OLD_IMAGES), decoded into the committed changes that are
//! published ([`Change`]), with the item parsers the store reads with. Read tolerantly: an
//! image that does not parse is [`RecordContent::Unreadable`] (logged and skipped by the
//! service), never an error that would block the shard.

use super::*;
use crate::domain::events::{Change, RecordContent, StreamRecord};
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
    // The reviews adapter's own reading of the map: the event says what GET /v1/reviews/{id} says.
    Ok(Some(Change::ReviewResolution {
        tenant: tenant.clone(),
        transaction_id: id,
        resolution: super::reviews::parse_resolution(r, key)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    fn sv(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    fn config(extra: &[(&str, AttributeValue)]) -> Item {
        let mut i = item(&[("pk", sv("T#acme")), ("sk", sv("CONFIG"))]);
        i.extend(item(extra));
        i
    }

    fn pointer(version: &str) -> Vec<(&'static str, AttributeValue)> {
        vec![
            ("ruleset_active", AttributeValue::N(version.into())),
            ("ruleset_by", sv("vk_1")),
            ("ruleset_at", sv("2026-01-01T00:00:00Z")),
        ]
    }

    fn kind(c: &RecordContent) -> &'static str {
        match c {
            RecordContent::Publish(ch) => ch.kind().name(),
            RecordContent::Ignore => "ignore",
            RecordContent::Unreadable(_) => "unreadable",
        }
    }

    #[test]
    fn a_config_change_is_an_activation_only_when_the_ruleset_pointer_moved() {
        let before = config(&pointer("2"));
        let mut thresholds = before.clone();
        thresholds.insert("review_threshold".into(), AttributeValue::N("0.4".into()));
        assert_eq!(
            kind(&decode_images("MODIFY", None, Some(before.clone()), Some(thresholds))),
            "ignore"
        );
        let moved = config(&pointer("3"));
        assert_eq!(
            kind(&decode_images("MODIFY", None, Some(before), Some(moved.clone()))),
            "ruleset-activation"
        );
        // moto's first INSERT of an item an Update made in a transaction carries only its keys.
        let keys_only = config(&[]);
        assert_eq!(kind(&decode_images("INSERT", None, None, Some(keys_only))), "ignore");
        assert_eq!(
            kind(&decode_images("INSERT", None, None, Some(moved))),
            "ruleset-activation"
        );
    }

    #[test]
    fn a_review_is_published_when_it_becomes_resolved_only() {
        let key = [("pk", sv("T#acme#TX#tx1")), ("sk", sv("REVIEW"))];
        let open = item(&[&key[..], &[("status", sv("open"))]].concat());
        let resolution = AttributeValue::M(item(&[
            ("outcome", sv("approve")),
            ("label", sv("none")),
            ("resolved_by", sv("vk_1")),
            ("resolved_at", sv("2026-01-01T00:00:00Z")),
        ]));
        let resolved = item(&[&key[..], &[("status", sv("resolved")), ("resolution", resolution)]].concat());
        assert_eq!(kind(&decode_images("INSERT", None, None, Some(open.clone()))), "ignore");
        let change = decode_images("MODIFY", None, Some(open), Some(resolved.clone()));
        assert_eq!(kind(&change), "review-resolution");
        if let RecordContent::Publish(Change::ReviewResolution { resolution, .. }) = change {
            assert_eq!(resolution.label.as_str(), "none");
        }
        assert_eq!(
            kind(&decode_images("MODIFY", None, Some(resolved.clone()), Some(resolved))),
            "ignore"
        );
        let broken = item(&[&key[..], &[("status", sv("resolved"))]].concat());
        assert_eq!(kind(&decode_images("MODIFY", None, None, Some(broken))), "unreadable");
    }

    #[test]
    fn other_items_and_removals_publish_nothing() {
        let agg = item(&[("pk", sv("T#acme#CUST#c1")), ("sk", sv("AGG"))]);
        assert_eq!(kind(&decode_images("INSERT", None, None, Some(agg))), "ignore");
        let key = item(&[("pk", sv(&format!("KEY#{}", "0".repeat(64)))), ("sk", sv("KEY"))]);
        assert_eq!(kind(&decode_images("INSERT", None, None, Some(key))), "ignore");
        let decision = item(&[("pk", sv("T#acme#TX#tx1")), ("sk", sv("DECISION"))]);
        assert_eq!(
            kind(&decode_images("REMOVE", Some(decision.clone()), Some(decision), None)),
            "ignore"
        );
        assert_eq!(kind(&decode_images("INSERT", None, None, None)), "unreadable");
    }

    #[test]
    fn a_decision_modified_without_a_new_label_publishes_nothing() {
        let label = AttributeValue::M(item(&[
            ("value", sv("fraud")),
            ("source", sv("api")),
            ("labelled_at", sv("2026-01-01T00:00:00Z")),
        ]));
        let d = item(&[("pk", sv("T#acme#TX#tx1")), ("sk", sv("DECISION")), ("label", label)]);
        assert_eq!(kind(&decode_images("MODIFY", None, Some(d.clone()), Some(d))), "ignore");
    }
}
