//! The review queue, the pure part: a `review` decision opens an item; an analyst claims it
//! (a lease), then resolves it (an outcome, a label, list entries) or releases it. The item keeps
//! its history. Storage is `ports::reviews`; the service is `app::reviews`.

use crate::domain::decision::{Decision, DecisionRecord};
/// One note length for labels and resolutions (a resolution's note becomes the label's).
pub use crate::domain::labels::MAX_NOTE_LEN;
use crate::domain::rules::ListKind;
use crate::domain::{ListName, Timestamp, TransactionId};
use serde::Serialize;
use serde_json::Value;

/// A claim lasts this long unless the request asks otherwise.
pub const DEFAULT_LEASE_SECS: i64 = 15 * 60;
/// The longest claim one request may take (a re-claim by the holder renews it). Kept short: the
/// holder is an API key id, and a revoked key's claim lasts until it expires.
pub const MAX_LEASE_SECS: i64 = 4 * 3600;
/// History entries beyond which a claim or release is refused (the item must stay far below
/// DynamoDB's 400 KB); a resolution always appends its line.
pub const MAX_HISTORY: usize = 200;
/// Lists one resolution may add to.
pub const MAX_LISTS_PER_RESOLUTION: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    Open,
    Resolved,
}

impl ReviewStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReviewStatus::Open => "open",
            ReviewStatus::Resolved => "resolved",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "open" => Ok(ReviewStatus::Open),
            "resolved" => Ok(ReviewStatus::Resolved),
            _ => Err(format!("{raw:?} is not open or resolved")),
        }
    }
}

/// The queue's orders: oldest first, or highest risk first (then oldest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewSort {
    Oldest,
    Risk,
}

impl ReviewSort {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "oldest" => Ok(ReviewSort::Oldest),
            "risk" => Ok(ReviewSort::Risk),
            _ => Err(format!("{raw:?} is not oldest or risk")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Approve,
    Block,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Approve => "approve",
            Outcome::Block => "block",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "approve" => Ok(Outcome::Approve),
            "block" => Ok(Outcome::Block),
            _ => Err(format!("{raw:?} is not approve or block")),
        }
    }
}

/// What the resolution labels the transaction: `none` writes no label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionLabel {
    Fraud,
    Legit,
    None,
}

impl ResolutionLabel {
    pub fn as_str(&self) -> &'static str {
        match self {
            ResolutionLabel::Fraud => "fraud",
            ResolutionLabel::Legit => "legit",
            ResolutionLabel::None => "none",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "fraud" => Ok(ResolutionLabel::Fraud),
            "legit" => Ok(ResolutionLabel::Legit),
            "none" => Ok(ResolutionLabel::None),
            _ => Err(format!("{raw:?} is not fraud, legit or none")),
        }
    }
}

/// What the label step found when the resolution was carried out. The analyst's label stays in
/// `Resolution.label` either way; this says whether it is the one in force at close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelStatus {
    /// Written (or already there), or `label` is `none`.
    Applied,
    /// A newer label is in force (ours may have been written before it, on an earlier try).
    Superseded,
    /// The transaction could not be labelled (gone, or no longer labellable).
    NotApplicable,
}

impl LabelStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            LabelStatus::Applied => "applied",
            LabelStatus::Superseded => "superseded",
            LabelStatus::NotApplicable => "not_applicable",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "applied" => Ok(LabelStatus::Applied),
            "superseded" => Ok(LabelStatus::Superseded),
            "not_applicable" => Ok(LabelStatus::NotApplicable),
            _ => Err(format!("{raw:?} is not applied, superseded or not_applicable")),
        }
    }
}

/// One list entry a resolution added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListAdded {
    pub list: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub outcome: Outcome,
    pub label: ResolutionLabel,
    pub label_status: LabelStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The API key id that resolved.
    pub resolved_by: String,
    pub resolved_at: Timestamp,
    pub lists_added: Vec<ListAdded>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewAction {
    Opened,
    Claimed,
    Released,
    Resolved,
}

impl ReviewAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReviewAction::Opened => "opened",
            ReviewAction::Claimed => "claimed",
            ReviewAction::Released => "released",
            ReviewAction::Resolved => "resolved",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "opened" => ReviewAction::Opened,
            "claimed" => ReviewAction::Claimed,
            "released" => ReviewAction::Released,
            "resolved" => ReviewAction::Resolved,
            _ => return None,
        })
    }
}

/// One line of an item's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewEvent {
    pub action: ReviewAction,
    /// The key id; none for `opened` (the decision opened it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    pub at: Timestamp,
}

/// Who holds an item, until when (epoch seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewClaim {
    pub holder: String,
    pub expires_at: i64,
}

/// A review item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub transaction_id: TransactionId,
    pub status: ReviewStatus,
    pub opened_at: Timestamp,
    pub risk_score: u8,
    pub claim: Option<ReviewClaim>,
    pub resolution: Option<Resolution>,
    /// A resolution recorded but not yet carried out (its label and list entries may be
    /// written or not): the fence that makes resolving retry-safe. Stored as `resolving`.
    pub pending: Option<Resolution>,
    pub history: Vec<ReviewEvent>,
}

impl Review {
    /// The item a decision opens, if it is a `review`.
    pub fn opened_by(record: &DecisionRecord) -> Option<Review> {
        (record.decision == Decision::Review).then(|| Review {
            transaction_id: record.id.clone(),
            status: ReviewStatus::Open,
            opened_at: record.created_at,
            risk_score: record.risk_score,
            claim: None,
            resolution: None,
            pending: None,
            history: vec![ReviewEvent {
                action: ReviewAction::Opened,
                by: None,
                at: record.created_at,
            }],
        })
    }

    /// The claim, if still held at `now` (epoch seconds).
    pub fn live_claim(&self, now: i64) -> Option<&ReviewClaim> {
        self.claim.as_ref().filter(|c| c.expires_at > now)
    }

    /// Seconds from opening to resolution, or to `now` while open.
    pub fn seconds_in_queue(&self, now: Timestamp) -> i64 {
        let end = self.resolution.as_ref().map_or(now, |r| r.resolved_at);
        (end.unix() - self.opened_at.unix()).max(0)
    }
}

/// The transaction field a resolution fills a list of `kind` from: only the card (customer id),
/// email and IP lists; blocking a whole terminal or country from one review is not offered.
pub fn list_field(kind: ListKind) -> Option<&'static str> {
    Some(match kind {
        ListKind::CustomerId => "customer_id",
        ListKind::Email => "email",
        ListKind::Ip => "ip",
        ListKind::TerminalId | ListKind::Country | ListKind::Bin | ListKind::String => return None,
    })
}

/// `POST /v1/reviews/{id}/resolve`'s body, parsed in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRequest {
    pub outcome: Outcome,
    pub label: ResolutionLabel,
    pub note: Option<String>,
    pub add_to_list: Vec<ListName>,
}

type Problems = Vec<(String, String)>;

impl ResolveRequest {
    /// `{outcome, label, note, add_to_list: [list name, …]}`; every bad field named at once.
    pub fn parse_json(body: &[u8]) -> Result<ResolveRequest, Problems> {
        let v = crate::domain::json::parse_strict(body).map_err(|e| vec![(e.path, e.message)])?;
        let Value::Object(o) = v else {
            return Err(vec![("body".into(), "must be a JSON object".into())]);
        };
        let mut errors: Problems = Vec::new();
        for k in o.keys() {
            if !["outcome", "label", "note", "add_to_list"].contains(&k.as_str()) {
                let k: String = k.chars().take(64).collect();
                errors.push(("body".into(), format!("unknown field {k:?}")));
            }
        }
        let mut text = |name: &str| match o.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            None | Some(Value::Null) => {
                errors.push((name.into(), "is missing".into()));
                None
            }
            Some(_) => {
                errors.push((name.into(), "must be a string".into()));
                None
            }
        };
        let outcome = text("outcome");
        let label = text("label");
        let outcome = outcome.and_then(|s| Outcome::parse(&s).map_err(|r| errors.push(("outcome".into(), r))).ok());
        let label = label.and_then(|s| {
            ResolutionLabel::parse(&s)
                .map_err(|r| errors.push(("label".into(), r)))
                .ok()
        });
        let note = match o.get("note") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() > MAX_NOTE_LEN => {
                errors.push(("note".into(), format!("must be at most {MAX_NOTE_LEN} characters")));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(("note".into(), "must be a string".into()));
                None
            }
        };
        let mut lists = Vec::new();
        match o.get("add_to_list") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.len() > MAX_LISTS_PER_RESOLUTION => errors.push((
                "add_to_list".into(),
                format!("must name at most {MAX_LISTS_PER_RESOLUTION} lists"),
            )),
            Some(Value::Array(a)) => {
                for (i, v) in a.iter().enumerate() {
                    let field = format!("add_to_list[{i}]");
                    match v.as_str().map(ListName::parse) {
                        Some(Ok(n)) if lists.contains(&n) => errors.push((field, "names a list twice".into())),
                        Some(Ok(n)) => lists.push(n),
                        Some(Err(e)) => errors.push((field, e.reason)),
                        None => errors.push((field, "must be a list name (a string)".into())),
                    }
                }
            }
            Some(_) => errors.push(("add_to_list".into(), "must be an array of list names".into())),
        }
        match (outcome, label) {
            (Some(outcome), Some(label)) if errors.is_empty() => Ok(ResolveRequest {
                outcome,
                label,
                note,
                add_to_list: lists,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolve_body_names_every_bad_field() {
        let ok = ResolveRequest::parse_json(
            br#"{"outcome":"block","label":"fraud","note":"n","add_to_list":["blocked_cards"]}"#,
        )
        .unwrap();
        assert_eq!((ok.outcome, ok.label), (Outcome::Block, ResolutionLabel::Fraud));
        assert_eq!(ok.add_to_list[0].as_str(), "blocked_cards");
        let none = ResolveRequest::parse_json(br#"{"outcome":"approve","label":"none"}"#).unwrap();
        assert!(none.add_to_list.is_empty() && none.note.is_none());
        let fields = |body: &str| -> Vec<String> {
            ResolveRequest::parse_json(body.as_bytes())
                .unwrap_err()
                .into_iter()
                .map(|(f, _)| f)
                .collect()
        };
        assert_eq!(fields(r#"{"outcome":"refund","label":"maybe"}"#), ["outcome", "label"]);
        let long = format!(r#"{{"outcome":"block","label":"fraud","note":"{}"}}"#, "x".repeat(1001));
        assert_eq!(fields(&long), ["note"]);
        assert_eq!(
            fields(r#"{"outcome":"block","label":"fraud","add_to_list":["ok","a#b",3,"ok"]}"#),
            ["add_to_list[1]", "add_to_list[2]", "add_to_list[3]"]
        );
        assert_eq!(fields(r#"{"label":"fraud","x":1}"#), ["body", "outcome"]);
        assert_eq!(fields("[]"), ["body"]);
    }

    #[test]
    fn lists_are_filled_from_the_field_of_their_kind() {
        assert_eq!(list_field(ListKind::CustomerId), Some("customer_id"));
        assert_eq!(list_field(ListKind::Email), Some("email"));
        assert_eq!(list_field(ListKind::Ip), Some("ip"));
        assert_eq!(list_field(ListKind::Bin), None);
        assert_eq!(list_field(ListKind::TerminalId), None);
        assert_eq!(list_field(ListKind::Country), None);
    }
}
