//! Decisions: the scoring request as the API accepts it (and a batch row carries it), the reasons,
//! and the record kept for the audit trail. The policy that decides is in [`crate::domain::policy`].

use crate::domain::features::{FeatureVector, FEATURE_COUNT, FEATURE_NAMES};
use crate::domain::model::Reason;
use crate::domain::{Currency, CustomerId, DomainError, Money, TerminalId, Timestamp, Transaction, TransactionId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

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

/// A transaction body as `POST /v1/transactions` receives it, and as a batch row carries it.
/// Parsed in full before anything is read or written, so a bad body names every bad field at once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreRequest {
    #[serde(flatten)]
    pub inputs: TransactionInputs,
    #[serde(flatten)]
    pub extras: RequestExtras,
}

/// The optional fields of a request: not model features, but the policy (rules and lists) reads
/// them and the decision record keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestExtras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// The contract's limits on the optional fields (openapi.yaml `TransactionInput`), Stripe's for
/// metadata. Lengths count characters, as JSON Schema's `maxLength` does.
pub const MAX_METADATA_KEYS: usize = 50;
pub const MAX_METADATA_KEY_CHARS: usize = 40;
pub const MAX_METADATA_VALUE_CHARS: usize = 500;
pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_IP_CHARS: usize = 45;

/// A metadata key: 1 to 40 of `A-Z a-z 0-9 - _ . :` (it becomes a stored attribute name, and
/// `#` and the empty name are what storage refuses or mangles).
fn check_metadata_key(key: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if key.is_empty() || key.chars().count() > MAX_METADATA_KEY_CHARS || !key.chars().all(allowed) {
        return Err(format!(
            "keys are 1 to {MAX_METADATA_KEY_CHARS} characters from A-Z a-z 0-9 - _ . :"
        ));
    }
    Ok(())
}

/// Free text (a metadata value): at most `max` characters, none a control character.
fn check_text(value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// An IPv4 address in dotted-decimal or an IPv6 address (RFC 4291 text, no zone).
fn check_ip(value: &str) -> Result<(), String> {
    if value.len() <= MAX_IP_CHARS && value.parse::<std::net::IpAddr>().is_ok() {
        Ok(())
    } else {
        Err("is not an IPv4 or IPv6 address".into())
    }
}

/// An address `local@domain`, checked for syntax only (the contract's pattern): a dot-atom
/// local part (RFC 5322) and a domain of at least two LDH labels (RFC 1035), 254 characters at
/// most.
fn check_email(value: &str) -> Result<(), String> {
    const ATEXT: &str = "!#$%&'*+/=?^_`{|}~-";
    let atom = |a: &str| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || ATEXT.contains(c));
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = value.len() <= MAX_EMAIL_CHARS
        && value.split_once('@').is_some_and(|(local, domain)| {
            local.split('.').all(atom) && domain.split('.').count() >= 2 && domain.split('.').all(label)
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "is not an e-mail address (local@domain, at most {MAX_EMAIL_CHARS} characters)"
        ))
    }
}

impl RequestExtras {
    pub const NONE: RequestExtras = RequestExtras {
        ip: None,
        device_id: None,
        email: None,
        country: None,
        metadata: BTreeMap::new(),
    };

    /// Boxed, or `None` when no field is set.
    pub fn boxed(self) -> Option<Box<RequestExtras>> {
        (self != RequestExtras::NONE).then(|| Box::new(self))
    }

    /// The optional text fields by name, as the JSON body and the CSV columns name them.
    pub const TEXT_FIELDS: [&'static str; 4] = ["ip", "device_id", "email", "country"];

    fn text_mut(&mut self, name: &str) -> Option<&mut Option<String>> {
        match name {
            "ip" => Some(&mut self.ip),
            "device_id" => Some(&mut self.device_id),
            "email" => Some(&mut self.email),
            "country" => Some(&mut self.country),
            _ => None,
        }
    }

    /// Sets an optional text field after checking it against the contract; an error names the
    /// field.
    pub fn set_text(&mut self, name: &'static str, value: &str) -> Result<(), FieldError> {
        let err = |message: String| FieldError {
            field: name.into(),
            message,
        };
        match name {
            "ip" => check_ip(value),
            "email" => check_email(value),
            "device_id" => crate::domain::parse_id("device_id", value)
                .map(drop)
                .map_err(|e| e.reason),
            "country" if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_uppercase()) => Err(format!(
                "{:?} is not an ISO 3166 alpha-2 code",
                value.chars().take(8).collect::<String>()
            )),
            _ => Ok(()),
        }
        .map_err(err)?;
        let slot = self
            .text_mut(name)
            .ok_or_else(|| err("is not an optional field".into()))?;
        *slot = Some(value.to_owned());
        Ok(())
    }

    /// Adds a metadata entry after checking it; an error names `metadata.<key>` (the key cut to
    /// its limit), or `metadata` for one key too many.
    pub fn add_metadata(&mut self, key: &str, value: &str) -> Result<(), FieldError> {
        let named = |message: String| FieldError {
            field: format!(
                "metadata.{}",
                key.chars().take(MAX_METADATA_KEY_CHARS).collect::<String>()
            ),
            message,
        };
        check_metadata_key(key).map_err(named)?;
        check_text(value, MAX_METADATA_VALUE_CHARS).map_err(named)?;
        if self.metadata.len() >= MAX_METADATA_KEYS && !self.metadata.contains_key(key) {
            return Err(FieldError {
                field: "metadata".into(),
                message: format!("has more than {MAX_METADATA_KEYS} keys"),
            });
        }
        self.metadata.insert(key.to_owned(), value.to_owned());
        Ok(())
    }
}

/// A client-chosen idempotency key (the `Idempotency-Key` header): 1 to 255 of
/// `A-Z a-z 0-9 - _ . :`, as the contract says, so it can never hold a storage key separator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const FIELD: &'static str = "Idempotency-Key";

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':');
        if !raw.is_empty() && raw.len() <= 255 && raw.bytes().all(allowed) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DomainError::new(
                Self::FIELD,
                "must be 1 to 255 characters from A-Z a-z 0-9 - _ . :",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
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

/// The raw text of a transaction's required fields, as a CSV row or a JSON object holds them.
#[derive(Debug, Clone, Copy)]
pub struct TransactionFields<'a> {
    pub id: Option<&'a str>,
    pub occurred_at: Option<&'a str>,
    pub amount: Option<i64>,
    pub currency: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    pub terminal_id: Option<&'a str>,
}

impl TransactionFields<'_> {
    /// Each field through its newtype's parser, collecting every error in the order the API
    /// reports them. A `None` field was already reported by the caller (missing, wrong type).
    pub fn parse(&self, errors: &mut Vec<FieldError>) -> Option<Transaction> {
        fn take<T>(r: Result<T, DomainError>, errors: &mut Vec<FieldError>) -> Option<T> {
            r.map_err(|e| errors.push(e.into())).ok()
        }
        let id = self.id.and_then(|s| take(TransactionId::parse(s), errors));
        let occurred_at = self
            .occurred_at
            .and_then(|s| take(Timestamp::parse_occurred_at(s), errors));
        let currency = self.currency.and_then(|s| take(Currency::parse(s), errors));
        let customer_id = self.customer_id.and_then(|s| take(CustomerId::parse(s), errors));
        let terminal_id = self.terminal_id.and_then(|s| take(TerminalId::parse(s), errors));
        let amount = self.amount.and_then(|a| {
            Money::new(a, currency.unwrap_or(Currency::EUR))
                .map_err(|e| {
                    errors.push(FieldError {
                        field: "amount".into(),
                        message: format!("{a} {}", e.reason),
                    })
                })
                .ok()
        });
        Some(Transaction {
            id: id?,
            occurred_at: occurred_at?,
            amount: Money {
                currency: currency?,
                ..amount?
            },
            customer_id: customer_id?,
            terminal_id: terminal_id?,
        })
    }
}

/// A JSON transaction as read: every field kept loose, so a wrong type is reported against its
/// field's name. A body is read by [`crate::domain::json::parse_strict`] first, which refuses
/// duplicate keys anywhere.
#[derive(Deserialize)]
pub struct JsonTransaction {
    id: Option<Value>,
    occurred_at: Option<Value>,
    amount: Option<Value>,
    currency: Option<Value>,
    customer_id: Option<Value>,
    terminal_id: Option<Value>,
    ip: Option<Value>,
    device_id: Option<Value>,
    email: Option<Value>,
    country: Option<Value>,
    metadata: Option<Value>,
    /// Everything else: refused by the API, ignored (or read, like a file's `label`) in files.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

/// How an error names a JSON value's type.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON number as minor units: an integer, or a float with no fraction (`6916.0` is an
/// integer to JSON Schema), within what an f64 holds exactly (the range check is [`Money::new`]'s).
fn json_amount(n: &serde_json::Number) -> Result<i64, String> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if let Some(a) = n.as_i64() {
        return Ok(a);
    }
    let too_large = || format!("{n} is larger than {} minor units", crate::domain::MAX_AMOUNT_MINOR);
    match n.as_f64() {
        _ if n.is_u64() => Err(too_large()),
        Some(f) if f.fract() == 0.0 && f.abs() < EXACT => Ok(f as i64),
        Some(f) if f.fract() == 0.0 && f > 0.0 => Err(too_large()),
        _ => Err(format!("{n} is not an integer number of minor units")),
    }
}

impl JsonTransaction {
    /// The request, or every field error. Unknown fields are left in `rest` for the caller.
    pub fn parse(&self) -> Result<ScoreRequest, Vec<FieldError>> {
        let mut errors = Vec::new();
        let field_error = |field: &str, message: String| FieldError {
            field: field.into(),
            message,
        };
        let string = |name: &'static str, v: &Option<Value>, errors: &mut Vec<FieldError>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            None => {
                errors.push(field_error(name, "is missing".into()));
                None
            }
            Some(other) => {
                errors.push(field_error(
                    name,
                    format!("must be a string, found {}", json_kind(other)),
                ));
                None
            }
        };
        let id = string("id", &self.id, &mut errors);
        let occurred_at = string("occurred_at", &self.occurred_at, &mut errors);
        let currency = string("currency", &self.currency, &mut errors);
        let customer_id = string("customer_id", &self.customer_id, &mut errors);
        let terminal_id = string("terminal_id", &self.terminal_id, &mut errors);
        let amount = match &self.amount {
            Some(Value::Number(n)) => json_amount(n).map_err(|m| errors.push(field_error("amount", m))).ok(),
            None => {
                errors.push(field_error("amount", "is missing".into()));
                None
            }
            Some(other) => {
                errors.push(field_error(
                    "amount",
                    format!("must be an integer number of minor units, found {}", json_kind(other)),
                ));
                None
            }
        };
        let tx = TransactionFields {
            id: id.as_deref(),
            occurred_at: occurred_at.as_deref(),
            amount,
            currency: currency.as_deref(),
            customer_id: customer_id.as_deref(),
            terminal_id: terminal_id.as_deref(),
        }
        .parse(&mut errors);

        let mut extras = RequestExtras::default();
        for (name, v) in
            RequestExtras::TEXT_FIELDS
                .into_iter()
                .zip([&self.ip, &self.device_id, &self.email, &self.country])
        {
            match v {
                None => {}
                Some(Value::String(s)) => {
                    if let Err(e) = extras.set_text(name, s) {
                        errors.push(e);
                    }
                }
                Some(other) => errors.push(field_error(
                    name,
                    format!("must be a string, found {}", json_kind(other)),
                )),
            }
        }
        match &self.metadata {
            None => {}
            Some(Value::Object(m)) => {
                if m.len() > MAX_METADATA_KEYS {
                    errors.push(field_error(
                        "metadata",
                        format!("has {} keys; at most {MAX_METADATA_KEYS}", m.len()),
                    ));
                } else {
                    for (k, v) in m {
                        match v {
                            Value::String(s) => {
                                if let Err(e) = extras.add_metadata(k, s) {
                                    errors.push(e);
                                }
                            }
                            other => errors.push(field_error(
                                &format!(
                                    "metadata.{}",
                                    k.chars().take(MAX_METADATA_KEY_CHARS).collect::<String>()
                                ),
                                format!("must be a string, found {}", json_kind(other)),
                            )),
                        }
                    }
                }
            }
            Some(other) => errors.push(field_error(
                "metadata",
                format!("must be an object of strings, found {}", json_kind(other)),
            )),
        }
        in_field_order(&mut errors);
        match tx {
            Some(tx) if errors.is_empty() => Ok(ScoreRequest {
                inputs: TransactionInputs::from_transaction(&tx),
                extras,
            }),
            _ => Err(errors),
        }
    }
}

/// The fields in the order errors name them: the required ones, then the optional ones.
pub const FIELD_NAMES: [&str; 11] = [
    "id",
    "occurred_at",
    "currency",
    "customer_id",
    "terminal_id",
    "amount",
    "ip",
    "device_id",
    "email",
    "country",
    "metadata",
];

/// Sorts errors by field (stable: one field's errors keep their order); unknown fields last.
fn in_field_order(errors: &mut [FieldError]) {
    let rank = |f: &str| {
        let base = f.split_once('.').map_or(f, |(b, _)| b);
        FIELD_NAMES.iter().position(|k| *k == base).unwrap_or(FIELD_NAMES.len())
    };
    errors.sort_by_key(|e| rank(&e.field));
}

impl ScoreRequest {
    /// Parses a `POST /v1/transactions` body, collecting every field error. Unlike a file row, a
    /// body may hold no unknown field and may not be dated more than a day ahead.
    pub fn parse_json(body: &[u8]) -> Result<ScoreRequest, Vec<FieldError>> {
        let body_error = |message: String| {
            vec![FieldError {
                field: "body".into(),
                message,
            }]
        };
        let value = crate::domain::json::parse_strict(body).map_err(|e| {
            vec![FieldError {
                field: e.path,
                message: e.message,
            }]
        })?;
        let Some(object) = value.as_object() else {
            return Err(body_error("must be a JSON object".into()));
        };
        // serde reads `null` as an absent optional field; the contract has no nullable field.
        let nulls: Vec<FieldError> = ["ip", "device_id", "email", "country", "metadata"]
            .into_iter()
            .filter(|f| object.get(*f).is_some_and(Value::is_null))
            .map(|f| FieldError {
                field: f.into(),
                message: "must not be null (leave the field out)".into(),
            })
            .collect();
        // Cannot fail on an object: every field is a loose `Value`.
        let row: JsonTransaction = serde_json::from_value(value).map_err(|e| body_error(e.to_string()))?;
        let parsed = row.parse();
        let mut errors = match &parsed {
            Ok(_) => Vec::new(),
            Err(e) => e.clone(),
        };
        errors.extend(nulls);
        // Aggregates keep a ring of days ending at the newest transaction: a far-future date would
        // push a customer's and a terminal's real days out of it. Checked whatever else is wrong, so
        // a bad body names every bad field at once.
        let occurred_at = match &row.occurred_at {
            Some(Value::String(s)) => Timestamp::parse_occurred_at(s).ok(),
            _ => None,
        };
        if let Some(at) = occurred_at {
            if at.unix() - Timestamp::now().unix() > MAX_FUTURE_SECS {
                errors.push(FieldError {
                    field: "occurred_at".into(),
                    message: format!(
                        "{} is more than 24 hours ahead of the function's clock",
                        at.to_rfc3339()
                    ),
                });
            }
        }
        for k in row.rest.keys() {
            // An error always names a field: the empty name is the body's problem.
            errors.push(match k.is_empty() {
                true => FieldError {
                    field: "body".into(),
                    message: "has a field with an empty name".into(),
                },
                false => FieldError {
                    field: k.chars().take(64).collect(),
                    message: "is not a known field (put free-form data in metadata)".into(),
                },
            });
        }
        in_field_order(&mut errors);
        match parsed {
            Ok(r) if errors.is_empty() => Ok(r),
            _ => Err(errors),
        }
    }

    pub fn transaction(&self) -> Transaction {
        self.inputs.transaction()
    }

    /// A digest of the parsed request: the same transaction sent with other spacing or key order
    /// hashes the same, any change of value does not.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&canonical))
    }
}
/// A reason as stored and returned: why the model scored what it did, or which rule decided.
/// Serialised as a union tagged by `kind` (`model` or `rule`), here and nowhere else; a stored
/// reason without `kind` (written before rules existed) reads as a model reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReasonRecord {
    Model(ModelReason),
    Rule(RuleReason),
}

/// A feature's push on the score, phrased for an analyst.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReason {
    /// Stable, e.g. `TERMINAL_RISK_7D_HIGH`. Borrowed from the model's tables when computed,
    /// owned when read back.
    pub code: Cow<'static, str>,
    pub feature: Cow<'static, str>,
    pub value: f64,
    /// Log-odds; positive raises the risk.
    pub contribution: f64,
    pub text: String,
}

/// A rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReason {
    /// The rule's stable id, kept across versions.
    pub rule_id: String,
    pub rule_version: u32,
    /// `allow`, `review`, `block` or `tag`.
    pub action: String,
    /// The rule's name and description, for an analyst.
    pub text: String,
}

impl ReasonRecord {
    /// The reason's stable code: the model reason's code, or the rule's id.
    pub fn code(&self) -> &str {
        match self {
            ReasonRecord::Model(m) => &m.code,
            ReasonRecord::Rule(r) => &r.rule_id,
        }
    }

    pub fn text(&self) -> &str {
        match self {
            ReasonRecord::Model(m) => &m.text,
            ReasonRecord::Rule(r) => &r.text,
        }
    }
}

impl From<&Reason> for ReasonRecord {
    fn from(r: &Reason) -> Self {
        ReasonRecord::Model(ModelReason {
            code: Cow::Borrowed(r.code()),
            feature: Cow::Borrowed(r.feature.name()),
            value: r.value,
            contribution: r.contribution,
            text: r.to_string(),
        })
    }
}

impl<'de> Deserialize<'de> for ReasonRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or("model");
        match kind {
            "model" => ModelReason::deserialize(v)
                .map(ReasonRecord::Model)
                .map_err(D::Error::custom),
            "rule" => RuleReason::deserialize(v)
                .map(ReasonRecord::Rule)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!("unknown reason kind {other:?}"))),
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
    /// The policy that decided ([`crate::domain::policy::Policy::version`]). Absent on items
    /// written before policies were versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// The active ruleset and every rule that matched or failed; `None` without a ruleset (and
    /// on items written before rules existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<crate::domain::rules::RulesApplied>,
    pub features: FeatureValues,
    pub inputs: DecisionInputs,
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

/// The features a decision was made on, by name: a JSON object with its keys in name order.
/// Computed ones borrow the static names (no allocation per feature); stored ones own theirs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureValues(Vec<(Cow<'static, str>, f64)>);

impl FeatureValues {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for FeatureValues {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(n, v)| (n.as_ref(), v)))
    }
}

impl<'de> Deserialize<'de> for FeatureValues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let by_name = BTreeMap::<String, f64>::deserialize(d)?;
        Ok(FeatureValues(
            by_name.into_iter().map(|(n, v)| (Cow::Owned(n), v)).collect(),
        ))
    }
}

pub fn features_map(x: &FeatureVector) -> FeatureValues {
    // Feature indices in name order, sorted once.
    static BY_NAME: LazyLock<[usize; FEATURE_COUNT]> = LazyLock::new(|| {
        let mut order: [usize; FEATURE_COUNT] = std::array::from_fn(|i| i);
        order.sort_by_key(|&i| FEATURE_NAMES[i]);
        order
    });
    FeatureValues(
        BY_NAME
            .iter()
            .map(|&i| (Cow::Borrowed(FEATURE_NAMES[i]), x.0[i]))
            .collect(),
    )
}

/// The request a decision was made for, as its record keeps it: the parsed request when the
/// decision is made, or the JSON as stored when read back (kept loose, so that an item written
/// by an older version, or odd, still reads).
#[derive(Debug, Clone)]
pub enum DecisionInputs {
    Request(Box<ScoreRequest>),
    Stored(Value),
}

impl DecisionInputs {
    /// As JSON (a copy for a computed request).
    pub fn to_json(&self) -> Value {
        match self {
            DecisionInputs::Request(r) => serde_json::to_value(r).unwrap_or_default(),
            DecisionInputs::Stored(v) => v.clone(),
        }
    }
}

impl From<Value> for DecisionInputs {
    fn from(v: Value) -> Self {
        DecisionInputs::Stored(v)
    }
}

/// Equal when they serialise alike, whichever side was read back.
impl PartialEq for DecisionInputs {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (DecisionInputs::Request(a), DecisionInputs::Request(b)) => a == b,
            (DecisionInputs::Stored(a), DecisionInputs::Stored(b)) => a == b,
            _ => self.to_json() == other.to_json(),
        }
    }
}

impl Serialize for DecisionInputs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DecisionInputs::Request(r) => r.serialize(s),
            DecisionInputs::Stored(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for DecisionInputs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(DecisionInputs::Stored)
    }
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

    fn with(field: &str, value: Value) -> Result<ScoreRequest, Vec<FieldError>> {
        let mut body: Value = serde_json::from_str(GOOD).unwrap();
        body[field] = value;
        ScoreRequest::parse_json(body.to_string().as_bytes())
    }

    fn fields_of(r: Result<ScoreRequest, Vec<FieldError>>) -> Vec<String> {
        r.map(|_| Vec::new())
            .unwrap_or_else(|e| e.into_iter().map(|e| e.field).collect())
    }

    #[test]
    fn optional_fields_are_checked_against_the_contract_and_named() {
        use serde_json::json;
        for ip in ["203.0.113.42", "::1", "2001:db8::8a2e:370:7334", "::ffff:192.0.2.1"] {
            assert!(with("ip", json!(ip)).is_ok(), "{ip}");
        }
        for ip in [
            "hello",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "fe80::1%eth0",
            "",
            &"1".repeat(200),
        ] {
            assert_eq!(fields_of(with("ip", json!(ip))), ["ip"], "{ip}");
        }
        for email in [
            "jane.doe@example.com",
            "a+b_c!#$%&'*/=?^`{|}~-@x-y.example.co",
            "Bad@Example.com",
        ] {
            assert!(with("email", json!(email)).is_ok(), "{email}");
        }
        let long_local = format!("{}@example.com", "a".repeat(250));
        for email in [
            "not-an-email",
            "a@b",
            "@example.com",
            "a@@b.com",
            "a b@c.com",
            "a..b@c.com",
            ".a@c.com",
            "a@-c.com",
            "a@c..com",
            "a@c.com\0",
            &long_local,
        ] {
            assert_eq!(fields_of(with("email", json!(email))), ["email"], "{email}");
        }
        assert!(with("device_id", json!("dev_9f8e7d:2")).is_ok());
        for d in ["a b#c", "", &"d".repeat(129), "dev\0"] {
            assert_eq!(fields_of(with("device_id", json!(d))), ["device_id"], "{d}");
        }
        assert_eq!(fields_of(with("country", json!("fr"))), ["country"]);
    }

    #[test]
    fn metadata_keys_values_and_count_are_bounded() {
        use serde_json::json;
        let ok: serde_json::Map<String, Value> = (0..MAX_METADATA_KEYS)
            .map(|i| (format!("k{i}"), json!("v".repeat(MAX_METADATA_VALUE_CHARS))))
            .collect();
        assert!(with("metadata", Value::Object(ok.clone())).is_ok());
        let mut too_many = ok;
        too_many.insert("one_more".into(), json!("v"));
        assert_eq!(fields_of(with("metadata", Value::Object(too_many))), ["metadata"]);
        assert!(
            with("metadata", json!({"k": "é".repeat(MAX_METADATA_VALUE_CHARS)})).is_ok(),
            "counts characters"
        );
        assert!(with("metadata", json!({"a.b-c_d:e": "x"})).is_ok());
        for (key, field) in [
            ("", "metadata."),
            ("a#b", "metadata.a#b"),
            ("a b", "metadata.a b"),
            ("k\\u0000", "metadata.k\0"),
        ] {
            let body = GOOD.replace(r#""order":"42""#, &format!(r#""{key}":"v""#));
            assert_eq!(fields_of(ScoreRequest::parse_json(body.as_bytes())), [field], "{key:?}");
        }
        let long_key = "k".repeat(MAX_METADATA_KEY_CHARS + 1);
        assert_eq!(
            fields_of(with("metadata", json!({ long_key.clone(): "v" }))),
            [format!("metadata.{}", &long_key[..MAX_METADATA_KEY_CHARS])]
        );
        for v in [json!("v".repeat(MAX_METADATA_VALUE_CHARS + 1)), json!("a\0b"), json!(5)] {
            assert_eq!(fields_of(with("metadata", json!({ "k": v }))), ["metadata.k"]);
        }
    }

    #[test]
    fn a_null_optional_field_is_refused_in_a_body() {
        for field in ["ip", "device_id", "email", "country", "metadata"] {
            assert_eq!(fields_of(with(field, Value::Null)), [field]);
        }
    }

    #[test]
    fn an_unknown_field_with_an_empty_name_is_named_as_the_body() {
        // Found by the property test: the 400 named the field "".
        let errors = ScoreRequest::parse_json(GOOD.replacen('{', r#"{"":null,"#, 1).as_bytes()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "body");
    }

    #[test]
    fn amounts_are_integers_up_to_the_contracts_maximum_written_either_way() {
        let amount =
            |raw: &str| ScoreRequest::parse_json(GOOD.replace("12345", raw).as_bytes()).map(|r| r.inputs.amount);
        assert_eq!(amount("6916.0").unwrap(), 6916);
        assert_eq!(amount("6.916e3").unwrap(), 6916);
        assert_eq!(amount("-0").unwrap(), 0);
        assert_eq!(amount("-0.0").unwrap(), 0);
        assert_eq!(amount("1000000000000000").unwrap(), crate::domain::MAX_AMOUNT_MINOR);
        assert_eq!(amount("1e15").unwrap(), crate::domain::MAX_AMOUNT_MINOR);
        for bad in [
            "6916.5",
            "1000000000000001",
            "1e18",
            "1e19",
            "18446744073709551616",
            "1e300",
            "-1",
            "-1.0",
        ] {
            let e = amount(bad).unwrap_err();
            assert_eq!((e.len(), e[0].field.as_str()), (1, "amount"), "{bad}: {e:?}");
        }
        assert!(amount("1e19").unwrap_err()[0].message.contains("larger than"));
        assert_eq!(
            amount("1e400").unwrap_err()[0].field,
            "body",
            "serde_json refuses it as JSON"
        );
    }

    #[test]
    fn occurred_at_outside_the_accepted_range_is_named() {
        use serde_json::json;
        for at in [
            "0000-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59-00:01",
            "1999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
        ] {
            let e = with("occurred_at", json!(at)).unwrap_err();
            assert_eq!(
                e.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
                ["occurred_at"],
                "{at}: {e:?}"
            );
        }
        assert!(with("occurred_at", json!("2000-01-01T00:00:00Z")).is_ok());
    }

    #[test]
    fn risk_score_is_the_score_in_percent() {
        assert_eq!(risk_score(0.876), 88);
        assert_eq!(risk_score(1.5), 100);
    }

    #[test]
    fn reasons_are_a_union_tagged_by_kind_and_old_items_read_as_model_reasons() {
        let model = ReasonRecord::Model(ModelReason {
            code: "AMOUNT_HIGH".into(),
            feature: "amount".into(),
            value: 500.0,
            contribution: 1.25,
            text: "amount is 500.00".into(),
        });
        let rule = ReasonRecord::Rule(RuleReason {
            rule_id: "high-amount".into(),
            rule_version: 3,
            action: "block".into(),
            text: "High amount: over 1,000 EUR".into(),
        });
        let json = serde_json::to_value([&model, &rule]).unwrap();
        assert_eq!(json[0]["kind"], "model");
        assert_eq!(json[0]["code"], "AMOUNT_HIGH");
        assert_eq!(json[1]["kind"], "rule");
        assert_eq!(json[1]["rule_version"], 3);
        let back: Vec<ReasonRecord> = serde_json::from_value(json).unwrap();
        assert_eq!(back, vec![model.clone(), rule.clone()]);
        // As items stored before the union hold them.
        let old = serde_json::json!({"code": "AMOUNT_HIGH", "feature": "amount", "value": 500.0,
            "contribution": 1.25, "text": "amount is 500.00"});
        assert_eq!(serde_json::from_value::<ReasonRecord>(old).unwrap(), model);
        assert!(serde_json::from_value::<ReasonRecord>(serde_json::json!({"kind": "magic"})).is_err());
        assert_eq!(
            (rule.code(), rule.text()),
            ("high-amount", "High amount: over 1,000 EUR")
        );
    }

    #[test]
    fn parses_a_good_body() {
        let r = ScoreRequest::parse_json(GOOD.as_bytes()).unwrap();
        assert_eq!(r.inputs.amount, 12345);
        assert_eq!(r.transaction().amount.major(), 123.45);
        assert_eq!(r.extras.metadata["order"], "42");
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
    fn the_fingerprint_of_a_body_is_pinned() {
        // Stored decisions keep this digest: a change to the canonical form would turn every retry of
        // an earlier decision into a 409. Change it only with a migration. It is the SHA-256 of
        // {"id":"tx-1","occurred_at":"2018-08-08T10:00:00Z","amount":12345,"currency":"EUR",
        //  "customer_id":"c-1","terminal_id":"t-9","country":"FR","metadata":{"order":"42"}}
        // (fields in struct order, absent optional fields omitted), as before the pipeline change.
        let r = ScoreRequest::parse_json(GOOD.as_bytes()).unwrap();
        assert_eq!(
            r.fingerprint(),
            "1ee8709770ac928aaba581a7225c989d62c7962b9829069b6e27ff12a72e6f50"
        );
    }

    #[test]
    fn duplicate_keys_are_refused_and_a_future_date_is_named_beside_other_errors() {
        let dup = GOOD.replace(r#""id":"tx-1","#, r#""id":"tx-1","id":"tx-2","#);
        let e = ScoreRequest::parse_json(dup.as_bytes()).unwrap_err();
        assert_eq!(e[0].field, "id");
        assert!(e[0].message.contains("more than once"), "{e:?}");
        // serde alone kept the last of a repeated metadata or unknown key.
        for (from, to, field) in [
            (r#"{"order":"42"}"#, r#"{"order":"42","order":"43"}"#, "metadata.order"),
            (r#""id":"tx-1","#, r#""id":"tx-1","x":1,"x":2,"#, "x"),
        ] {
            let e = ScoreRequest::parse_json(GOOD.replace(from, to).as_bytes()).unwrap_err();
            assert_eq!((e.len(), e[0].field.as_str()), (1, field), "{e:?}");
        }
        let ahead = Timestamp::from_unix(Timestamp::now().unix() + 3 * 86_400).unwrap();
        let body = GOOD
            .replace("2018-08-08T10:00:00Z", &ahead.to_rfc3339())
            .replace(r#""EUR""#, r#""eur""#);
        let fields: Vec<_> = ScoreRequest::parse_json(body.as_bytes())
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["occurred_at", "currency"]);
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

    #[test]
    fn feature_values_serialise_like_the_name_ordered_map_they_replace_and_read_back() {
        let x = FeatureVector(std::array::from_fn(|i| i as f64 * 1.5));
        let by_name: BTreeMap<String, f64> = FEATURE_NAMES.iter().zip(x.0).map(|(n, v)| (n.to_string(), v)).collect();
        let values = features_map(&x);
        let json = serde_json::to_string(&values).unwrap();
        assert_eq!(json, serde_json::to_string(&by_name).unwrap());
        let back: FeatureValues = serde_json::from_str(&json).unwrap();
        assert_eq!(back, values);
        assert_eq!(back.get("amount"), Some(0.0));
        assert_eq!(back.len(), FEATURE_COUNT);
    }

    #[test]
    fn inputs_serialise_as_the_request_and_equal_their_stored_copy() {
        let r = ScoreRequest::parse_json(GOOD.as_bytes()).unwrap();
        let computed = DecisionInputs::Request(Box::new(r.clone()));
        let json = serde_json::to_value(&computed).unwrap();
        assert_eq!(json, serde_json::to_value(&r).unwrap());
        let stored: DecisionInputs = serde_json::from_value(json.clone()).unwrap();
        assert!(matches!(stored, DecisionInputs::Stored(_)));
        assert_eq!(stored, computed);
        let other = DecisionInputs::Stored(serde_json::json!({"id": "tx-2"}));
        assert_ne!(other, computed);
    }
}
