//! Events out: what other services learn about committed changes. Each kind has its EventBridge
//! `source` and `detail-type` and a versioned JSON Schema in `schemas/events/<kind>.v1.json` (the
//! contract, written first). Every detail carries `event_id`, derived from the committed change
//! itself, so a redelivered stream record (or moto's duplicate INSERT) gives the same id and
//! consumers deduplicate on it; a relabel or a new activation is a new change, hence a new id.

use crate::domain::decision::DecisionRecord;
use crate::domain::labels::StoredLabel;
use crate::domain::registry::ModelPointer;
use crate::domain::review::Resolution;
use crate::domain::{TenantId, Timestamp, TransactionId};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The version of every schema in `schemas/events/` (`<kind>.v1.json`).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Decision,
    Label,
    ReviewResolution,
    ModelActivation,
    RulesetActivation,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Decision,
        EventKind::Label,
        EventKind::ReviewResolution,
        EventKind::ModelActivation,
        EventKind::RulesetActivation,
    ];

    /// The EventBridge `source`.
    pub fn source(self) -> &'static str {
        match self {
            EventKind::Decision => "verdict.decisions",
            EventKind::Label => "verdict.labels",
            EventKind::ReviewResolution => "verdict.reviews",
            EventKind::ModelActivation => "verdict.models",
            EventKind::RulesetActivation => "verdict.rulesets",
        }
    }

    /// The EventBridge `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            EventKind::Decision => "Decision Made",
            EventKind::Label => "Transaction Labelled",
            EventKind::ReviewResolution => "Review Resolved",
            EventKind::ModelActivation => "Model Activated",
            EventKind::RulesetActivation => "Ruleset Activated",
        }
    }

    /// The schema's file stem: `schemas/events/<name>.v1.json`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Decision => "decision",
            EventKind::Label => "label",
            EventKind::ReviewResolution => "review-resolution",
            EventKind::ModelActivation => "model-activation",
            EventKind::RulesetActivation => "ruleset-activation",
        }
    }
}

/// A committed change that is published. The stream adapter decodes these from item images.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A decision item was inserted (decisions are never overwritten).
    Decision {
        tenant: TenantId,
        record: Box<DecisionRecord>,
    },
    /// A decision's `label` was set or changed.
    Label {
        tenant: TenantId,
        transaction_id: TransactionId,
        label: StoredLabel,
        previous: Option<StoredLabel>,
    },
    /// A review item's `status` went to `resolved`.
    ReviewResolution {
        tenant: TenantId,
        transaction_id: TransactionId,
        resolution: Resolution,
    },
    /// The active-model pointer changed.
    ModelActivation { tenant: TenantId, pointer: ModelPointer },
    /// The tenant's active-ruleset pointer changed.
    RulesetActivation {
        tenant: TenantId,
        version: u32,
        previous: Option<u32>,
        by: String,
        at: Timestamp,
    },
}

/// An event ready for the bus: its kind, its stable id and its detail (which repeats the id).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub event_id: String,
    pub tenant: TenantId,
    pub detail: Value,
}

/// 32 hex digits of SHA-256 over the parts, each length-prefixed so no two part lists collide.
fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

fn label_json(l: &StoredLabel) -> Value {
    let mut m = Map::new();
    m.insert("value".into(), l.value.as_str().into());
    m.insert("source".into(), l.source.clone().into());
    m.insert("labelled_at".into(), l.labelled_at.to_rfc3339().into());
    if let Some(f) = &l.file {
        m.insert("file".into(), f.clone().into());
    }
    if let Some(line) = l.line {
        m.insert("line".into(), line.into());
    }
    Value::Object(m)
}

impl Change {
    pub fn kind(&self) -> EventKind {
        match self {
            Change::Decision { .. } => EventKind::Decision,
            Change::Label { .. } => EventKind::Label,
            Change::ReviewResolution { .. } => EventKind::ReviewResolution,
            Change::ModelActivation { .. } => EventKind::ModelActivation,
            Change::RulesetActivation { .. } => EventKind::RulesetActivation,
        }
    }

    pub fn tenant(&self) -> &TenantId {
        match self {
            Change::Decision { tenant, .. }
            | Change::Label { tenant, .. }
            | Change::ReviewResolution { tenant, .. }
            | Change::ModelActivation { tenant, .. }
            | Change::RulesetActivation { tenant, .. } => tenant,
        }
    }

    /// The id of this change: the same committed change always gives the same id.
    pub fn event_id(&self) -> String {
        let kind = self.kind().name();
        let t = self.tenant().as_str();
        match self {
            // One decision per transaction id, never overwritten.
            Change::Decision { record, .. } => stable_id(&[kind, t, record.id.as_str()]),
            // With the label it replaced: fraud@T → legit@T → fraud@T are three changes.
            Change::Label {
                transaction_id,
                label,
                previous,
                ..
            } => {
                let line = label.line.map(|l| l.to_string()).unwrap_or_default();
                let (prev_value, prev_at) = previous
                    .as_ref()
                    .map(|p| (p.value.as_str(), p.labelled_at.to_rfc3339()))
                    .unwrap_or(("", String::new()));
                stable_id(&[
                    kind,
                    t,
                    transaction_id.as_str(),
                    label.value.as_str(),
                    &label.labelled_at.to_rfc3339(),
                    &label.source,
                    label.file.as_deref().unwrap_or(""),
                    label.etag.as_deref().unwrap_or(""),
                    &line,
                    prev_value,
                    &prev_at,
                ])
            }
            // A review is resolved once.
            Change::ReviewResolution {
                transaction_id,
                resolution,
                ..
            } => stable_id(&[kind, t, transaction_id.as_str(), &resolution.resolved_at.to_rfc3339()]),
            Change::ModelActivation { pointer, .. } => stable_id(&[
                kind,
                t,
                &pointer.version,
                &pointer.object_key,
                &pointer.activated_at.to_rfc3339(),
            ]),
            Change::RulesetActivation { version, at, .. } => {
                stable_id(&[kind, t, &version.to_string(), &at.to_rfc3339()])
            }
        }
    }

    /// The event of this change, its detail as `schemas/events/<kind>.v1.json` describes it.
    pub fn to_event(&self) -> Event {
        let event_id = self.event_id();
        let mut detail = Map::new();
        detail.insert("schema_version".into(), SCHEMA_VERSION.into());
        detail.insert("event_id".into(), event_id.clone().into());
        detail.insert("tenant".into(), self.tenant().as_str().into());
        match self {
            Change::Decision { record, .. } => {
                let r = record.as_ref();
                detail.insert("transaction_id".into(), r.id.as_str().into());
                detail.insert("decision".into(), r.decision.as_str().into());
                detail.insert("score".into(), json!(r.score)); // NaN: null, which the schema allows
                detail.insert("risk_score".into(), r.risk_score.into());
                detail.insert(
                    "reasons".into(),
                    serde_json::to_value(&r.reasons).unwrap_or_else(|_| json!([])),
                );
                detail.insert("model".into(), json!({"id": r.model.id, "version": r.model.version}));
                if let Some(p) = &r.policy_version {
                    detail.insert("policy_version".into(), p.clone().into());
                }
                detail.insert("occurred_at".into(), r.occurred_at.to_rfc3339().into());
                detail.insert("decided_at".into(), r.created_at.to_rfc3339().into());
                detail.insert("customer_id".into(), r.customer_id.as_str().into());
                detail.insert(
                    "inputs".into(),
                    serde_json::to_value(&r.inputs).unwrap_or_else(|_| json!({})),
                );
            }
            Change::Label {
                transaction_id,
                label,
                previous,
                ..
            } => {
                detail.insert("transaction_id".into(), transaction_id.as_str().into());
                detail.insert("label".into(), label_json(label));
                detail.insert(
                    "previous".into(),
                    previous.as_ref().map(label_json).unwrap_or(Value::Null),
                );
            }
            Change::ReviewResolution {
                transaction_id,
                resolution,
                ..
            } => {
                detail.insert("transaction_id".into(), transaction_id.as_str().into());
                detail.insert("outcome".into(), resolution.outcome.as_str().into());
                detail.insert("label".into(), resolution.label.as_str().into());
                if let Some(n) = &resolution.note {
                    detail.insert("note".into(), n.clone().into());
                }
                detail.insert("resolved_by".into(), resolution.resolved_by.clone().into());
                detail.insert("resolved_at".into(), resolution.resolved_at.to_rfc3339().into());
                detail.insert(
                    "lists_added".into(),
                    resolution
                        .lists_added
                        .iter()
                        .map(|e| json!({"list": e.list, "value": e.value}))
                        .collect(),
                );
            }
            Change::ModelActivation { pointer, .. } => {
                detail.insert("version".into(), pointer.version.clone().into());
                detail.insert(
                    "previous_version".into(),
                    pointer.previous_version.clone().map(Value::from).unwrap_or(Value::Null),
                );
                detail.insert("activated_at".into(), pointer.activated_at.to_rfc3339().into());
            }
            Change::RulesetActivation {
                version,
                previous,
                by,
                at,
                ..
            } => {
                detail.insert("version".into(), (*version).into());
                detail.insert(
                    "previous_version".into(),
                    previous.map(Value::from).unwrap_or(Value::Null),
                );
                detail.insert("activated_by".into(), by.clone().into());
                detail.insert("activated_at".into(), at.to_rfc3339().into());
            }
        }
        Event {
            kind: self.kind(),
            event_id,
            tenant: self.tenant().clone(),
            detail: Value::Object(detail),
        }
    }
}

impl Event {
    /// The event without its bulky parts, for an entry too large for the bus: a decision
    /// without `reasons` and `inputs`, flagged `truncated: true` (its schema allows it). `None`:
    /// nothing to leave out (other kinds are small by construction).
    pub fn shortened(&self) -> Option<Event> {
        if self.kind != EventKind::Decision {
            return None;
        }
        let mut short = self.clone();
        if let Value::Object(m) = &mut short.detail {
            m.remove("reasons");
            m.remove("inputs");
            m.insert("truncated".into(), true.into());
        }
        Some(short)
    }
}

/// The two record sets of the decision archive (`archive/{tenant}/<kind>/date=YYYY-MM-DD/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArchiveKind {
    Decisions,
    Labels,
}

impl ArchiveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveKind::Decisions => "decisions",
            ArchiveKind::Labels => "labels",
        }
    }
}

/// One line of the archive: where it goes and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveLine {
    pub kind: ArchiveKind,
    pub tenant: TenantId,
    /// The partition: the transaction's day for a decision, the label's day for a label (UTC).
    pub date: time::Date,
    pub event_id: String,
    /// The event's detail; a decision's also carries the features it was made on (what
    /// retraining reads).
    pub line: Value,
}

impl Change {
    /// The archive line of a decision or a label; other kinds are not archived.
    pub fn archive_line(&self) -> Option<ArchiveLine> {
        let (kind, date) = match self {
            Change::Decision { record, .. } => (ArchiveKind::Decisions, record.occurred_at.inner().date()),
            Change::Label { label, .. } => (ArchiveKind::Labels, label.labelled_at.inner().date()),
            _ => return None,
        };
        let event = self.to_event();
        let mut line = event.detail;
        if let (Change::Decision { record, .. }, Value::Object(m)) = (self, &mut line) {
            m.insert(
                "features".into(),
                serde_json::to_value(&record.features).unwrap_or_else(|_| json!({})),
            );
        }
        Some(ArchiveLine {
            kind,
            tenant: event.tenant,
            date,
            event_id: event.event_id,
            line,
        })
    }
}

/// The archive object of a (tenant, kind, day) group of one stream batch, named by the
/// sequence number of the group's first record (40 digits, so names sort by it):
/// `archive/{tenant}/{kind}/date=YYYY-MM-DD/{sequence}.ndjson.gz`.
pub fn archive_key(tenant: &TenantId, kind: ArchiveKind, date: time::Date, first_sequence: &str) -> String {
    format!(
        "archive/{}/{}/date={:04}-{:02}-{:02}/{:0>40}.ndjson.gz",
        tenant.as_str(),
        kind.as_str(),
        date.year(),
        u8::from(date.month()),
        date.day(),
        first_sequence
    )
}

/// One stream record, as the stream adapter read it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    /// The record's sequence number: Lambda's `itemIdentifier` for a partial batch failure.
    pub sequence_number: String,
    pub content: RecordContent,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecordContent {
    /// A change that is published.
    Publish(Change),
    /// A change no event describes (an aggregate, a key, an unchanged label…).
    Ignore,
    /// The record cannot be read: logged and skipped, so it never blocks the shard.
    Unreadable(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::labels::LabelValue;

    fn label(value: LabelValue, at: &str) -> StoredLabel {
        StoredLabel {
            value,
            source: "chargeback".into(),
            labelled_at: Timestamp::parse("labelled_at", at).unwrap(),
            file: None,
            etag: None,
            line: None,
            note: None,
        }
    }

    fn labelled(l: StoredLabel) -> Change {
        Change::Label {
            tenant: TenantId::parse("acme").unwrap(),
            transaction_id: TransactionId::parse("tx1").unwrap(),
            label: l,
            previous: None,
        }
    }

    #[test]
    fn the_same_label_gives_the_same_id_and_a_relabel_a_new_one() {
        let a = labelled(label(LabelValue::Fraud, "2026-01-01T00:00:00Z"));
        let again = labelled(label(LabelValue::Fraud, "2026-01-01T00:00:00Z"));
        let relabel = labelled(label(LabelValue::Legit, "2026-01-02T00:00:00Z"));
        assert_eq!(a.event_id(), again.event_id());
        assert_ne!(a.event_id(), relabel.event_id());
        assert_eq!(a.to_event().detail["event_id"], a.event_id());
    }

    #[test]
    fn a_label_changed_back_and_forth_at_the_same_time_gives_three_ids() {
        let at = "2026-01-01T00:00:00Z";
        let change = |l: StoredLabel, previous: Option<StoredLabel>| Change::Label {
            tenant: TenantId::parse("acme").unwrap(),
            transaction_id: TransactionId::parse("tx1").unwrap(),
            label: l,
            previous,
        };
        let fraud = label(LabelValue::Fraud, at);
        let legit = label(LabelValue::Legit, at);
        let ids: std::collections::BTreeSet<String> = [
            change(fraud.clone(), None),
            change(legit.clone(), Some(fraud.clone())),
            change(fraud, Some(legit)),
        ]
        .iter()
        .map(Change::event_id)
        .collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn ids_differ_by_tenant() {
        let a = labelled(label(LabelValue::Fraud, "2026-01-01T00:00:00Z"));
        let mut b = a.clone();
        if let Change::Label { tenant, .. } = &mut b {
            *tenant = TenantId::parse("globex").unwrap();
        }
        assert_ne!(a.event_id(), b.event_id());
    }

    #[test]
    fn every_kind_has_its_own_source_and_detail_type() {
        let sources: std::collections::BTreeSet<_> = EventKind::ALL.iter().map(|k| k.source()).collect();
        let types: std::collections::BTreeSet<_> = EventKind::ALL.iter().map(|k| k.detail_type()).collect();
        assert_eq!(sources.len(), EventKind::ALL.len());
        assert_eq!(types.len(), EventKind::ALL.len());
    }
}
