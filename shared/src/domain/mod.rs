//! The domain: what Verdict knows about payments, pure (no AWS types, no async runtime).
//!
//! This module holds the newtypes that parse (ids, money, time, transactions), so a value that
//! exists is valid; the submodules hold features, models, the policy and decisions, API keys,
//! metrics, and the pure parts of the S3 pipelines (batch files, label files, model uploads).

pub mod auth;
pub mod backtest;
pub mod batch;
pub mod csv_line;
pub mod decision;
pub mod events;
pub mod features;
pub mod io;
pub mod json;
pub mod labels;
pub mod list_upload;
pub mod metrics;
pub mod model;
pub mod model_upload;
pub mod objects;
pub mod oidc;
pub mod pipeline;
pub mod policy;
pub mod registry;
pub mod review;
pub mod rules;
pub mod shards;

use serde::{Deserialize, Serialize};
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Why a domain value did not parse. `field` names the input field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct DomainError {
    pub field: &'static str,
    pub reason: String,
}

impl DomainError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

const MAX_ID_LEN: usize = 128;

pub(crate) fn parse_id(field: &'static str, raw: &str) -> Result<String, DomainError> {
    if raw.is_empty() {
        return Err(DomainError::new(field, "must not be empty"));
    }
    if raw.len() > MAX_ID_LEN {
        return Err(DomainError::new(field, format!("must be at most {MAX_ID_LEN} bytes")));
    }
    // Ids end up inside storage keys, where '#' is the separator.
    if let Some(c) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(DomainError::new(
            field,
            format!("contains {c:?}; allowed are A-Z a-z 0-9 - _ . :"),
        ));
    }
    Ok(raw.to_owned())
}

macro_rules! id_newtype {
    ($(#[$m:meta])* $name:ident, $field:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                parse_id($field, raw).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(raw: String) -> Result<Self, DomainError> {
                Self::parse(&raw)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_newtype!(
    /// The caller's transaction id, unique per tenant.
    TransactionId, "id");
id_newtype!(
    /// The card or customer the payment is charged to.
    CustomerId, "customer_id");
id_newtype!(
    /// The terminal or merchant the payment is made at.
    TerminalId, "terminal_id");
id_newtype!(
    /// A tenant: one team's isolated slice of Verdict. Only ever taken from a credential.
    TenantId, "tenant");
id_newtype!(
    /// A rule's stable id, kept across its versions.
    RuleId, "rule_id");
id_newtype!(
    /// A value list's name, as rules refer to it (`in_list(tx.email, "blocked_emails")`).
    ListName, "list");

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let b = raw.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_uppercase) {
            return Err(DomainError::new(
                "currency",
                format!("{raw:?} is not an ISO 4217 code (three upper-case letters)"),
            ));
        }
        Ok(Currency([b[0], b[1], b[2]]))
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point (ISO 4217 minor unit).
    pub fn exponent(&self) -> u32 {
        match &self.0 {
            b"BIF" | b"CLP" | b"DJF" | b"GNF" | b"ISK" | b"JPY" | b"KMF" | b"KRW" | b"PYG" | b"RWF" | b"UGX"
            | b"UYI" | b"VND" | b"VUV" | b"XAF" | b"XOF" | b"XPF" => 0,
            b"BHD" | b"IQD" | b"JOD" | b"KWD" | b"LYD" | b"OMR" | b"TND" => 3,
            _ => 2,
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = DomainError;
    fn try_from(raw: String) -> Result<Self, DomainError> {
        Self::parse(&raw)
    }
}
impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}
impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The largest amount, in minor units (10^15, the contract's `maximum`): it keeps every
/// aggregate sum far from i64 overflow.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000_000;

/// An amount in integer minor units of its currency. Never a float in storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Result<Self, DomainError> {
        if minor < 0 {
            return Err(DomainError::new("amount", "must not be negative"));
        }
        if minor > MAX_AMOUNT_MINOR {
            return Err(DomainError::new(
                "amount",
                format!("is larger than {MAX_AMOUNT_MINOR} minor units"),
            ));
        }
        Ok(Self { minor, currency })
    }

    /// The amount in major units, as the model sees it.
    pub fn major(&self) -> f64 {
        self.minor as f64 / 10f64.powi(self.currency.exponent() as i32)
    }
}

/// A UTC instant, written as RFC 3339: its UTC year is always 0000..=9999, so it always formats
/// (a value outside that range is refused when parsed or built, never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// The earliest `occurred_at` a transaction may carry: 2000-01-01T00:00:00Z. Older dates are no
/// card payment anyone scores today; they would only land in aggregate days far outside every
/// window and retention, and keep the epoch-day buckets and the storage keys' years positive.
pub const MIN_OCCURRED_AT_UNIX: i64 = 946_684_800;
pub const MIN_OCCURRED_AT: &str = "2000-01-01T00:00:00Z";
const MAX_TIMESTAMP_BYTES: usize = 64;

impl Timestamp {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, DomainError> {
        // The contract's maxLength: RFC 3339 needs 35 at most with nanoseconds.
        if raw.len() > MAX_TIMESTAMP_BYTES {
            return Err(DomainError::new(
                field,
                format!("{} is longer than {MAX_TIMESTAMP_BYTES} characters", shown(raw)),
            ));
        }
        let t = OffsetDateTime::parse(raw, &Rfc3339)
            .map_err(|e| DomainError::new(field, format!("{} is not an RFC 3339 timestamp ({e})", shown(raw))))?;
        // `to_offset` panics when the UTC instant leaves the time crate's range (year 10000).
        t.checked_to_offset(UtcOffset::UTC)
            .and_then(Self::checked)
            .ok_or_else(|| DomainError::new(field, format!("{} is outside years 0000 to 9999 in UTC", shown(raw))))
    }

    /// A transaction's `occurred_at`: [`Timestamp::parse`], and not before [`MIN_OCCURRED_AT`].
    pub fn parse_occurred_at(raw: &str) -> Result<Self, DomainError> {
        let t = Self::parse("occurred_at", raw)?;
        if t.unix() < MIN_OCCURRED_AT_UNIX {
            return Err(DomainError::new(
                "occurred_at",
                format!("{} is before {MIN_OCCURRED_AT}, the earliest accepted", shown(raw)),
            ));
        }
        Ok(t)
    }

    pub fn from_unix(seconds: i64) -> Result<Self, DomainError> {
        OffsetDateTime::from_unix_timestamp(seconds)
            .ok()
            .and_then(Self::checked)
            .ok_or_else(|| DomainError::new("occurred_at", format!("{seconds} is outside years 0000 to 9999")))
    }

    /// Only UTC instants whose year has four digits: the one place that guarantees formatting.
    fn checked(t: OffsetDateTime) -> Option<Self> {
        (0..=9999).contains(&t.year()).then_some(Timestamp(t))
    }

    pub fn now() -> Self {
        Timestamp(OffsetDateTime::now_utc())
    }

    pub fn unix(&self) -> i64 {
        self.0.unix_timestamp()
    }

    /// Days since 1970-01-01 (UTC): the aggregates' bucket.
    pub fn epoch_day(&self) -> i32 {
        self.unix().div_euclid(86_400) as i32
    }

    pub fn inner(&self) -> OffsetDateTime {
        self.0
    }

    pub fn to_rfc3339(&self) -> String {
        // Cannot fail: every Timestamp is UTC with a year in 0..=9999 (see `checked`).
        self.0.format(&Rfc3339).unwrap_or_else(|_| self.unix().to_string())
    }
}

/// A raw input as an error shows it: quoted, at most 64 characters.
fn shown(raw: &str) -> String {
    let cut: String = raw.chars().take(64).collect();
    if cut.len() < raw.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Timestamp::parse("occurred_at", &raw).map_err(serde::de::Error::custom)
    }
}

/// The inputs the model core needs from one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub id: TransactionId,
    pub occurred_at: Timestamp,
    pub amount: Money,
    pub customer_id: CustomerId,
    pub terminal_id: TerminalId,
}

/// The ground truth for a transaction, kept apart from its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Label {
    pub fraud: bool,
    /// The simulator's fraud scenario (1, 2 or 3); 0 for legitimate or unknown.
    #[serde(default)]
    pub scenario: u8,
}

/// A transaction with its label, as the simulator, the training files and batch files hold them.
/// `extras` are the request's optional fields (ip, email, metadata…) where a file has them: boxed
/// and absent when empty, so the millions of rows of a simulation or training file stay small.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledTransaction {
    pub tx: Transaction,
    pub label: Option<Label>,
    pub extras: Option<Box<decision::RequestExtras>>,
}

static NO_EXTRAS: decision::RequestExtras = decision::RequestExtras::NONE;

impl LabelledTransaction {
    pub fn extras(&self) -> &decision::RequestExtras {
        self.extras.as_deref().unwrap_or(&NO_EXTRAS)
    }
}

// ---------------------------------------------------------------------------------------------
// S3-triggered jobs

/// The S3 object a job (batch, labels, model import) works on: the same object version
/// delivered twice is the same job. The etag is stored without quotes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub etag: String,
}

impl ObjectRef {
    /// The etag loses the quotes S3 sometimes puts around it.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>, etag: &str) -> Self {
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            etag: objects::normalize_etag(etag),
        }
    }

    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// A job's status, as stored on its item and written in its summary (serde is its one parser).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Running,
    Completed,
    Failed,
}

impl JobStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_separator_and_empty() {
        assert!(CustomerId::parse("card-42").is_ok());
        assert_eq!(CustomerId::parse("a#b").unwrap_err().field, "customer_id");
        assert!(TerminalId::parse("").is_err());
        assert!(TransactionId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn money_uses_currency_exponent() {
        assert_eq!(Money::new(12345, Currency::EUR).unwrap().major(), 123.45);
        assert_eq!(Money::new(500, Currency::parse("JPY").unwrap()).unwrap().major(), 500.0);
        assert_eq!(Money::new(1500, Currency::parse("KWD").unwrap()).unwrap().major(), 1.5);
        assert!(Money::new(-1, Currency::EUR).is_err());
        assert!(Currency::parse("eur").is_err());
    }

    #[test]
    fn timestamps_normalise_to_utc() {
        let t = Timestamp::parse("occurred_at", "2018-04-01T02:00:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2018-04-01T00:00:00Z");
        assert_eq!(t.epoch_day(), 17622);
        assert!(Timestamp::parse("occurred_at", "yesterday").is_err());
    }

    #[test]
    fn timestamps_outside_four_digit_utc_years_are_field_errors_not_panics() {
        // UTC year 10000: `to_offset` panicked here.
        let e = Timestamp::parse("occurred_at", "9999-12-31T23:59:59-00:01").unwrap_err();
        assert_eq!(e.field, "occurred_at");
        assert!(e.reason.contains("outside years 0000 to 9999"), "{e}");
        // UTC year -1: it parsed, and formatted as an epoch number the reader refused.
        assert!(Timestamp::parse("occurred_at", "0000-01-01T00:00:00+00:01").is_err());
        assert!(Timestamp::from_unix(i64::MAX).is_err());
        assert!(Timestamp::from_unix(-62_167_219_260).is_err());
        let edge = Timestamp::parse("t", "9999-12-31T23:59:59Z").unwrap();
        assert_eq!(edge.to_rfc3339(), "9999-12-31T23:59:59Z");
        assert_eq!(
            Timestamp::parse("t", "0000-01-01T00:00:00Z").unwrap().to_rfc3339(),
            "0000-01-01T00:00:00Z"
        );
    }

    #[test]
    fn an_occurred_at_before_2000_is_refused_naming_the_bound() {
        let e = Timestamp::parse_occurred_at("1999-12-31T23:59:59Z").unwrap_err();
        assert_eq!(e.field, "occurred_at");
        assert!(e.reason.contains(MIN_OCCURRED_AT), "{e}");
        assert!(Timestamp::parse_occurred_at("0000-01-01T00:00:00+00:01").is_err());
        assert_eq!(
            Timestamp::parse_occurred_at(MIN_OCCURRED_AT).unwrap().unix(),
            MIN_OCCURRED_AT_UNIX
        );
        // The long raw value is cut in the message.
        let long = format!("2018{}", "9".repeat(10_000));
        assert!(Timestamp::parse("occurred_at", &long).unwrap_err().reason.len() < 300);
    }
}
