//! Keys: the one place that builds storage keys. Every tenant-scoped key is built by [`Keys`].

use super::*;
use crate::domain::objects::normalize_etag;

/// A primary key: partition and sort key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    pub pk: String,
    pub sk: String,
}

impl ItemKey {
    pub(super) fn new(pk: String, sk: impl Into<String>) -> Self {
        ItemKey { pk, sk: sk.into() }
    }

    pub(super) fn to_item(&self) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(self.pk.clone())),
            (SK.to_owned(), AttributeValue::S(self.sk.clone())),
        ])
    }

    pub(super) fn of(item: &Item) -> Option<ItemKey> {
        match (item.get(PK), item.get(SK)) {
            (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => Some(ItemKey::new(pk.clone(), sk.clone())),
            _ => None,
        }
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pk, self.sk)
    }
}

/// The storage keys of one tenant.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'t> {
    tenant: &'t TenantId,
}

impl<'t> Keys<'t> {
    pub fn new(tenant: &'t TenantId) -> Self {
        Keys { tenant }
    }

    pub(super) fn scoped(&self, kind: &str, id: &str) -> String {
        format!("T#{}#{kind}#{id}", self.tenant)
    }

    pub fn decision(&self, id: &TransactionId) -> ItemKey {
        ItemKey::new(self.scoped("TX", id.as_str()), "DECISION")
    }

    /// The transaction id of `pk` if it is one of this tenant's decision keys.
    pub fn decision_id(&self, pk: &str) -> Option<TransactionId> {
        let prefix = self.scoped("TX", "");
        TransactionId::parse(pk.strip_prefix(&prefix)?).ok()
    }

    /// A `review` decision's review item: beside its decision, in the transaction's partition.
    pub fn review(&self, id: &TransactionId) -> ItemKey {
        ItemKey::new(self.scoped("TX", id.as_str()), "REVIEW")
    }

    /// The review queue of one status in `gsi1` (oldest first) and in `gsi2` (by risk). The
    /// `REVIEWS` and `REVIEWS-RISK` segments differ from `CUST` and `DAY`, so a queue never
    /// shares a partition with a customer's history or a day's decisions.
    pub fn review_queue(&self, status: &str) -> String {
        self.scoped("REVIEWS", status)
    }

    pub fn review_queue_by_risk(&self, status: &str) -> String {
        self.scoped("REVIEWS-RISK", status)
    }

    /// The partition of a customer's decision history in `gsi1`.
    pub fn customer_history(&self, customer: &CustomerId) -> String {
        self.scoped("CUST", customer.as_str())
    }

    /// The `gsi2` partition of one day's decisions, `shard` of [`DAY_SHARDS`].
    pub fn decisions_of_day(&self, day: time::Date, shard: u8) -> String {
        self.scoped(
            "DAY",
            &format!(
                "{:04}-{:02}-{:02}#{shard}",
                day.year(),
                u8::from(day.month()),
                day.day()
            ),
        )
    }

    pub fn customer_aggregate(&self, customer: &CustomerId) -> ItemKey {
        ItemKey::new(self.scoped("CUST", customer.as_str()), "AGG")
    }

    pub fn terminal_aggregate(&self, terminal: &TerminalId) -> ItemKey {
        ItemKey::new(self.scoped("TERM", terminal.as_str()), "AGG")
    }

    /// Shard `k` of a customer's aggregate. Shard 0 is the unsharded item; the others have
    /// their own partition (`…#CUST#<id>#<k>`), so a hot entity's shards spread over partitions.
    pub fn customer_aggregate_shard(&self, customer: &CustomerId, k: u8) -> ItemKey {
        match k {
            0 => self.customer_aggregate(customer),
            k => ItemKey::new(self.scoped("CUST", &format!("{customer}#{k}")), "AGG"),
        }
    }

    /// Shard `k` of a terminal's aggregate, as [`Self::customer_aggregate_shard`].
    pub fn terminal_aggregate_shard(&self, terminal: &TerminalId, k: u8) -> ItemKey {
        match k {
            0 => self.terminal_aggregate(terminal),
            k => ItemKey::new(self.scoped("TERM", &format!("{terminal}#{k}")), "AGG"),
        }
    }

    pub fn idempotency(&self, key: &IdempotencyKey) -> ItemKey {
        ItemKey::new(self.scoped("IDEM", key.as_str()), "IDEM")
    }

    pub fn key_id(&self, key_id: &str) -> ItemKey {
        ItemKey::new(self.scoped("KEYID", key_id), "KEYID")
    }

    /// The `gsi1` partition listing a tenant's API keys (`verdict keys list`), oldest first.
    pub fn api_keys(&self) -> String {
        format!("T#{}#KEYS", self.tenant)
    }

    /// The `gsi1` partition listing a tenant's OIDC issuers (`verdict oidc list`).
    pub fn issuers(&self) -> String {
        format!("T#{}#ISSUERS", self.tenant)
    }

    pub fn config(&self) -> ItemKey {
        ItemKey::new(format!("T#{}", self.tenant), "CONFIG")
    }

    pub(super) fn models(&self) -> String {
        format!("T#{}#MODEL", self.tenant)
    }

    pub fn active_model(&self) -> ItemKey {
        ItemKey::new(self.models(), "ACTIVE")
    }

    pub fn model_version(&self, version: &str) -> ItemKey {
        ItemKey::new(self.models(), format!("{MODEL_VERSION_PREFIX}{version}"))
    }

    /// What became of an upload's bytes (model-import), by the upload's SHA-256. Beside the
    /// versions, outside their `V#` prefix.
    pub fn model_source(&self, sha256: &str) -> ItemKey {
        ItemKey::new(self.models(), format!("SRC#{sha256}"))
    }

    /// One S3 object's job (batch-score, labels, model-import): `T#<tenant>#JOB#<bucket>/<key>#<etag>`.
    /// The etag stands last, unquoted and without `#`, so the key parses from the right even
    /// though S3 keys may contain `#`.
    pub fn job(&self, job: &ObjectRef) -> ItemKey {
        ItemKey::new(self.job_pk(job), "JOB")
    }

    /// A chunk of a job's error report, in the job's partition.
    pub fn job_errors(&self, job: &ObjectRef, seq: u32) -> ItemKey {
        ItemKey::new(self.job_pk(job), format!("ERR#{seq:06}"))
    }

    pub(super) fn job_pk(&self, job: &ObjectRef) -> String {
        self.scoped(
            "JOB",
            &format!(
                "{}/{}#{}",
                job.bucket,
                job.key,
                normalize_etag(&job.etag).replace('#', "")
            ),
        )
    }
}

/// Rules, rulesets, lists and the audit (docs/dynamodb.md, "Rules and lists"). Rule ids and
/// list names cannot contain `#`; a list value may, and stands last, behind `E#`.
impl Keys<'_> {
    /// One version of a rule: its own partition, versions in order.
    pub fn rule_version(&self, id: &RuleId, version: u32) -> ItemKey {
        ItemKey::new(self.scoped("RULE", id.as_str()), versioned(version))
    }

    /// The partition of every rule's latest version, by id.
    pub(super) fn rules(&self) -> String {
        format!("T#{}#RULES", self.tenant)
    }

    pub fn rule_latest(&self, id: &RuleId) -> ItemKey {
        ItemKey::new(self.rules(), id.as_str())
    }

    pub(super) fn rulesets(&self) -> String {
        format!("T#{}#RULESET", self.tenant)
    }

    pub fn ruleset(&self, version: u32) -> ItemKey {
        ItemKey::new(self.rulesets(), versioned(version))
    }

    pub(super) fn lists(&self) -> String {
        format!("T#{}#LISTS", self.tenant)
    }

    pub fn list_meta(&self, name: &ListName) -> ItemKey {
        ItemKey::new(self.lists(), name.as_str())
    }

    pub(super) fn list_entries(&self, name: &ListName) -> String {
        self.scoped("LIST", name.as_str())
    }

    pub fn list_entry(&self, name: &ListName, value: &str) -> ItemKey {
        ItemKey::new(self.list_entries(name), format!("{LIST_ENTRY_PREFIX}{value}"))
    }

    pub(super) fn audit(&self) -> String {
        format!("T#{}#AUDIT", self.tenant)
    }

    /// An audit entry: `ts9(at)#<unique>#<part, 4 digits>`, so a Query newest first reads
    /// entries by time, and the parts of one change last part first.
    pub fn audit_entry(&self, at: &Timestamp, unique: &str, part: usize) -> ItemKey {
        ItemKey::new(self.audit(), audit_sort_key(at, unique, part))
    }
}

pub(super) const LIST_ENTRY_PREFIX: &str = "E#";
pub(super) const VERSION_PREFIX: &str = "V#";

/// `V#` and the version in 10 digits, so sort keys are in version order.
pub(super) fn versioned(version: u32) -> String {
    format!("{VERSION_PREFIX}{version:010}")
}

/// The version of a `V#<10 digits>` sort key.
pub(super) fn version_of(sk: &str) -> Option<u32> {
    let digits = sk.strip_prefix(VERSION_PREFIX)?;
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

pub(super) fn audit_sort_key(at: &Timestamp, unique: &str, part: usize) -> String {
    let t = at.inner();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z#{unique}#{part:04}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond(),
    )
}

pub(super) const MODEL_VERSION_PREFIX: &str = "V#";

/// An API key's item. The one key that is not tenant-scoped: a credential is looked up before
/// its tenant is known, and the item names the tenant.
pub fn api_key(hash: &KeyHash) -> Option<ItemKey> {
    let h = &hash.0;
    let ok = h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then(|| ItemKey::new(format!("KEY#{h}"), "KEY"))
}

/// An OIDC issuer's item, by the SHA-256 of its `iss` (any string, so never in a key as is).
/// Not tenant-scoped, like [`api_key`]: a token is looked up by its issuer before its tenant is
/// known, and the item names the one tenant the issuer may authenticate.
pub fn issuer(iss: &str) -> ItemKey {
    use sha2::Digest;
    ItemKey::new(
        format!("ISSUER#{}", hex::encode(sha2::Sha256::digest(iss.as_bytes()))),
        "ISSUER",
    )
}

/// The `gsi1` and `gsi2` sort key of a decision: [`history_time`], then the id.
pub fn history_sort_key(occurred_at: &Timestamp, id: &TransactionId) -> String {
    format!("{}#{id}", history_time(occurred_at))
}

/// Fixed-width RFC 3339 (nanoseconds, `Z`), so that byte order is time order; it sorts before
/// every sort key at the same instant.
pub fn history_time(at: &Timestamp) -> String {
    let t = at.inner();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond(),
    )
}

pub(super) fn day_attribute(kind: char, day: i32) -> String {
    format!("{kind}{day}")
}

/// `c17622` → (`c`, 17622).
pub(super) fn parse_day_attribute(name: &str) -> Option<(u8, i32)> {
    let kind = *name.as_bytes().first()?;
    if !matches!(kind, b'c' | b'a' | b'f') {
        return None;
    }
    let day = &name[1..];
    let digits = day.strip_prefix('-').unwrap_or(day);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((kind, day.parse().ok()?))
}
