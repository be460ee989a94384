//! Decisions: the policy that turns a score into approve / review / block, the scoring request
//! as the API accepts it, and the record kept for the audit trail.

use crate::domain::features::{FeatureVector, FEATURE_NAMES};
use crate::domain::model::Reason;
use crate::domain::{Currency, CustomerId, DomainError, Money, TerminalId, Timestamp, Transaction, TransactionId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// How far ahead of the function's clock a transaction may be dated (clock skew, time zones).
pub const MAX_FUTURE_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Review,
    Block,
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Review => "review",
            Decision::Block => "block",
        }
    }
}

/// Per-tenant score thresholds: below `review` approve, from `block` up block, review between.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub review: f64,
    pub block: f64,
}

impl Default for Thresholds {
    /// Scores are calibrated probabilities: review from 30%, block from 80%.
    fn default() -> Self {
        Thresholds {
            review: 0.3,
            block: 0.8,
        }
    }
}

impl Thresholds {
    pub fn new(review: f64, block: f64) -> Result<Self, DomainError> {
        if !(0.0..=1.0).contains(&review) || !(0.0..=1.0).contains(&block) || review > block {
            return Err(DomainError::new(
                "thresholds",
                format!("need 0 <= review ({review}) <= block ({block}) <= 1"),
            ));
        }
        Ok(Thresholds { review, block })
    }

    pub fn decide(&self, score: f64) -> Decision {
        if score >= self.block {
            Decision::Block
        } else if score >= self.review {
            Decision::Review
        } else {
            Decision::Approve
        }
    }
}

/// One field-level problem in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl From<DomainError> for FieldError {
    fn from(e: DomainError) -> Self {
        FieldError {
            field: e.field.to_owned(),
            message: e.reason,
        }
    }
}

/// A transaction body as `POST /v1/transactions` receives it. Parsed in full before anything
/// is read or written, so a bad body names every bad field at once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreRequest {
    #[serde(flatten)]
    pub inputs: TransactionInputs,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// The model-relevant inputs in the API's wire shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionInputs {
    pub id: TransactionId,
    pub occurred_at: Timestamp,
    pub amount: i64,
    pub currency: Currency,
    pub customer_id: CustomerId,
    pub terminal_id: TerminalId,
}

impl TransactionInputs {
    pub fn transaction(&self) -> Transaction {
        Transaction {
            id: self.id.clone(),
            occurred_at: self.occurred_at,
            // Checked at parse time.
            amount: Money {
                minor: self.amount,
                currency: self.currency,
            },
            customer_id: self.customer_id.clone(),
            terminal_id: self.terminal_id.clone(),
        }
    }

    pub fn from_transaction(tx: &Transaction) -> Self {
        TransactionInputs {
            id: tx.id.clone(),
            occurred_at: tx.occurred_at,
            amount: tx.amount.minor,
            currency: tx.amount.currency,
            customer_id: tx.customer_id.clone(),
            terminal_id: tx.terminal_id.clone(),
        }
    }
}

fn take<T>(r: Result<T, DomainError>, errors: &mut Vec<FieldError>) -> Option<T> {
    r.map_err(|e| errors.push(e.into())).ok()
}

pub const MAX_METADATA_KEYS: usize = 20;
const MAX_FREE_TEXT: usize = 256;

impl ScoreRequest {
    /// Parses a JSON body, collecting every field error.
    pub fn parse_json(body: &[u8]) -> Result<ScoreRequest, Vec<FieldError>> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            vec![FieldError {
                field: "body".into(),
                message: format!("is not valid JSON: {e}"),
            }]
        })?;
        let serde_json::Value::Object(obj) = value else {
            return Err(vec![FieldError {
                field: "body".into(),
                message: "must be a JSON object".into(),
            }]);
        };
        let mut errors = Vec::new();
        let str_field = |name: &'static str, errors: &mut Vec<FieldError>| -> Option<String> {
            match obj.get(name) {
                None | Some(serde_json::Value::Null) => {
                    errors.push(FieldError {
                        field: name.into(),
                        message: "is required".into(),
                    });
                    None
                }
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    errors.push(FieldError {
                        field: name.into(),
                        message: "must be a string".into(),
                    });
                    None
                }
            }
        };

        let id = str_field("id", &mut errors).and_then(|s| take(TransactionId::parse(&s), &mut errors));
        let occurred_at =
            str_field("occurred_at", &mut errors).and_then(|s| take(Timestamp::parse("occurred_at", &s), &mut errors));
        // Aggregates keep a ring of days ending at the newest transaction: a far-future date would
        // push a customer's and a terminal's real days out of it.
        let occurred_at = occurred_at.filter(|t| {
            let ahead = t.unix() - Timestamp::now().unix();
            if ahead > MAX_FUTURE_SECS {
                errors.push(FieldError {
                    field: "occurred_at".into(),
                    message: format!("{} is more than 24 hours ahead of the function's clock", t.to_rfc3339()),
                });
            }
            ahead <= MAX_FUTURE_SECS
        });
        let currency = str_field("currency", &mut errors).and_then(|s| take(Currency::parse(&s), &mut errors));
        let customer_id = str_field("customer_id", &mut errors).and_then(|s| take(CustomerId::parse(&s), &mut errors));
        let terminal_id = str_field("terminal_id", &mut errors).and_then(|s| take(TerminalId::parse(&s), &mut errors));
        let amount = match obj.get("amount") {
            None | Some(serde_json::Value::Null) => {
                errors.push(FieldError {
                    field: "amount".into(),
                    message: "is required".into(),
                });
                None
            }
            Some(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(a) => take(
                    Money::new(a, currency.unwrap_or(Currency::EUR)).map(|m| m.minor),
                    &mut errors,
                ),
                None => {
                    errors.push(FieldError {
                        field: "amount".into(),
                        message: format!("{n} is not an integer number of minor units"),
                    });
                    None
                }
            },
            Some(_) => {
                errors.push(FieldError {
                    field: "amount".into(),
                    message: "must be an integer number of minor units".into(),
                });
                None
            }
        };

        let opt_text = |name: &'static str, errors: &mut Vec<FieldError>| -> Option<String> {
            match obj.get(name) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) if s.len() <= MAX_FREE_TEXT => Some(s.clone()),
                Some(serde_json::Value::String(_)) => {
                    errors.push(FieldError {
                        field: name.into(),
                        message: format!("must be at most {MAX_FREE_TEXT} bytes"),
                    });
                    None
                }
                Some(_) => {
                    errors.push(FieldError {
                        field: name.into(),
                        message: "must be a string".into(),
                    });
                    None
                }
            }
        };
        let ip = opt_text("ip", &mut errors);
        let device_id = opt_text("device_id", &mut errors);
        let email = opt_text("email", &mut errors);
        let country = opt_text("country", &mut errors);
        if let Some(c) = &country {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                errors.push(FieldError {
                    field: "country".into(),
                    message: format!("{c:?} is not an ISO 3166 alpha-2 code"),
                });
            }
        }
        let mut metadata = BTreeMap::new();
        match obj.get("metadata") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(m)) => {
                if m.len() > MAX_METADATA_KEYS {
                    errors.push(FieldError {
                        field: "metadata".into(),
                        message: format!("has {} keys; at most {MAX_METADATA_KEYS}", m.len()),
                    });
                }
                for (k, v) in m {
                    match v {
                        serde_json::Value::String(s) if s.len() <= MAX_FREE_TEXT && k.len() <= 64 => {
                            metadata.insert(k.clone(), s.clone());
                        }
                        serde_json::Value::String(_) => errors.push(FieldError {
                            field: format!("metadata.{k}"),
                            message: format!("keys are at most 64 bytes and values at most {MAX_FREE_TEXT}"),
                        }),
                        _ => errors.push(FieldError {
                            field: format!("metadata.{k}"),
                            message: "must be a string".into(),
                        }),
                    }
                }
            }
            Some(_) => errors.push(FieldError {
                field: "metadata".into(),
                message: "must be an object of strings".into(),
            }),
        }
        const KNOWN: [&str; 11] = [
            "id",
            "occurred_at",
            "amount",
            "currency",
            "customer_id",
            "terminal_id",
            "ip",
            "device_id",
            "email",
            "country",
            "metadata",
        ];
        for k in obj.keys() {
            if !KNOWN.contains(&k.as_str()) {
                errors.push(FieldError {
                    field: k.clone(),
                    message: "is not a known field (put free-form data in metadata)".into(),
                });
            }
        }
        match (id, occurred_at, amount, currency, customer_id, terminal_id) {
            (Some(id), Some(occurred_at), Some(amount), Some(currency), Some(customer_id), Some(terminal_id))
                if errors.is_empty() =>
            {
                Ok(ScoreRequest {
                    inputs: TransactionInputs {
                        id,
                        occurred_at,
                        amount,
                        currency,
                        customer_id,
                        terminal_id,
                    },
                    ip,
                    device_id,
                    email,
                    country,
                    metadata,
                })
            }
            _ => Err(errors),
        }
    }

    /// A digest of the parsed request: the same transaction sent with other spacing or key order
    /// hashes the same, any change of value does not.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&canonical))
    }
}

/// A reason as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasonRecord {
    pub code: String,
    pub feature: String,
    pub value: f64,
    pub contribution: f64,
    pub text: String,
}

impl From<&Reason> for ReasonRecord {
    fn from(r: &Reason) -> Self {
        ReasonRecord {
            code: r.code(),
            feature: r.feature.name().to_owned(),
            value: r.value,
            contribution: r.contribution,
            text: r.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub id: String,
    pub version: String,
}

/// Everything decided about one transaction: the API's response and the audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub id: TransactionId,
    pub decision: Decision,
    pub score: f64,
    pub risk_score: u8,
    pub reasons: Vec<ReasonRecord>,
    pub model: ModelRef,
    pub features: BTreeMap<String, f64>,
    pub inputs: serde_json::Value,
    pub request_fingerprint: String,
    pub created_at: Timestamp,
    pub occurred_at: Timestamp,
    pub customer_id: CustomerId,
    /// The request that made the decision and the time it took in the function, so a replay
    /// and the audit trail answer what the first response did. Absent on older items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_ms: Option<f64>,
    /// Set by a labels upload on the stored item, never with the decision.
    #[serde(skip)]
    pub label: Option<crate::domain::labels::StoredLabel>,
}

pub fn features_map(x: &FeatureVector) -> BTreeMap<String, f64> {
    FEATURE_NAMES
        .iter()
        .zip(x.0.iter())
        .map(|(n, v)| (n.to_string(), *v))
        .collect()
}

pub fn risk_score(score: f64) -> u8 {
    (score.clamp(0.0, 1.0) * 100.0).round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"tx-1","occurred_at":"2018-08-08T10:00:00Z","amount":12345,"currency":"EUR",
        "customer_id":"c-1","terminal_id":"t-9","country":"FR","metadata":{"order":"42"}}"#;

    #[test]
    fn a_transaction_dated_more_than_a_day_ahead_is_refused() {
        let body = |secs_ahead: i64| {
            let at = Timestamp::from_unix(Timestamp::now().unix() + secs_ahead).unwrap();
            GOOD.replace("2018-08-08T10:00:00Z", &at.to_rfc3339())
        };
        assert!(ScoreRequest::parse_json(body(3600).as_bytes()).is_ok());
        let errors = ScoreRequest::parse_json(body(3 * 86_400).as_bytes()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "occurred_at");
        assert!(
            errors[0].message.contains("more than 24 hours ahead"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn thresholds_split_the_score_range() {
        let t = Thresholds::default();
        assert_eq!(t.decide(0.29), Decision::Approve);
        assert_eq!(t.decide(0.3), Decision::Review);
        assert_eq!(t.decide(0.8), Decision::Block);
        assert!(Thresholds::new(0.9, 0.5).is_err());
        assert_eq!(risk_score(0.876), 88);
    }

    #[test]
    fn parses_a_good_body() {
        let r = ScoreRequest::parse_json(GOOD.as_bytes()).unwrap();
        assert_eq!(r.inputs.amount, 12345);
        assert_eq!(r.transaction_for_test().amount.major(), 123.45);
        assert_eq!(r.metadata["order"], "42");
    }

    #[test]
    fn names_every_bad_field() {
        let body = r#"{"id":"a#b","occurred_at":"soon","amount":1.5,"currency":"eur","terminal_id":7,"country":"France","extra":1}"#;
        let errs = ScoreRequest::parse_json(body.as_bytes()).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "id",
                "occurred_at",
                "currency",
                "customer_id",
                "terminal_id",
                "amount",
                "country",
                "extra"
            ]
        );
        assert!(errs[5].message.contains("1.5 is not an integer"), "{errs:?}");
        assert_eq!(ScoreRequest::parse_json(b"[1]").unwrap_err()[0].field, "body");
        assert_eq!(ScoreRequest::parse_json(b"{").unwrap_err()[0].field, "body");
        let neg = GOOD.replace("12345", "-5");
        assert_eq!(ScoreRequest::parse_json(neg.as_bytes()).unwrap_err()[0].field, "amount");
    }

    #[test]
    fn fingerprint_ignores_layout_but_not_values() {
        let a = ScoreRequest::parse_json(GOOD.as_bytes()).unwrap();
        let reordered = r#"{"terminal_id":"t-9","customer_id":"c-1","metadata":{"order":"42"},"country":"FR",
            "currency":"EUR","amount":12345,"occurred_at":"2018-08-08T12:00:00+02:00","id":"tx-1"}"#;
        let b = ScoreRequest::parse_json(reordered.as_bytes()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = ScoreRequest::parse_json(GOOD.replace("12345", "12346").as_bytes()).unwrap();
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    impl ScoreRequest {
        fn transaction_for_test(&self) -> Transaction {
            self.inputs.transaction()
        }
    }
}
