//! Ports of rules and lists: what scoring reads ([`RulesRead`]) and what the rules service
//! changes ([`RulesAdmin`]). Every method takes the tenant; the adapter scopes every key with it.
//!
//! The active ruleset's version and each list's version ride in the tenant's CONFIG item, which
//! the decision's one `BatchGetItem` already reads ([`crate::ports::ScoringSnapshot::rules`]), so
//! scoring only comes here when a cached version is stale.

use crate::domain::rules::{AuditEntry, ListEntry, ListMeta, Rule, Ruleset, RulesetPointer};
use crate::domain::{ListName, RuleId, TenantId};
use crate::ports::{Page, StoreError};
use std::collections::BTreeMap;
use std::future::Future;

/// The rules pointers as the CONFIG item holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesPointers {
    /// The active ruleset's version; `None`: no ruleset, thresholds only.
    pub active_ruleset: Option<u32>,
    /// Every list's version, by name.
    pub lists: BTreeMap<ListName, u64>,
}

/// A whole list, as scoring caches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListContents {
    pub meta: ListMeta,
    pub entries: Vec<ListEntry>,
}

/// What scoring reads when a cached ruleset or list is stale.
pub trait RulesRead: Send + Sync {
    fn ruleset(
        &self,
        tenant: &TenantId,
        version: u32,
    ) -> impl Future<Output = Result<Option<Ruleset>, StoreError>> + Send;

    /// Every entry of a list (at most [`crate::domain::rules::MAX_LIST_ENTRIES`]), with the
    /// meta they were read with. `None` if the list does not exist.
    fn list_contents(
        &self,
        tenant: &TenantId,
        name: &ListName,
    ) -> impl Future<Output = Result<Option<ListContents>, StoreError>> + Send;
}

/// The tenant's policy settings as its CONFIG item holds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantPolicy {
    pub thresholds: Option<crate::domain::policy::Thresholds>,
    pub rules: RulesPointers,
}

/// The CONFIG item's policy settings on their own, for what does not score one transaction
/// (a batch job pinning its policy, a backtest).
pub trait TenantPolicyRead: Send + Sync {
    fn tenant_policy(&self, tenant: &TenantId) -> impl Future<Output = Result<TenantPolicy, StoreError>> + Send;
}

/// How many entries a change touched, and the list's version after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListChange {
    /// New values.
    pub added: u64,
    /// Values that were there and now carry the new expiry and note.
    pub updated: u64,
    pub removed: u64,
    /// Values asked to be removed that were not there.
    pub absent: u64,
    pub version: u64,
    pub entries: u64,
}

/// Changes to rules, rulesets, the pointer and lists. Each change writes its audit entry in the
/// same atomic write, so the audit never misses a change nor names one that did not happen.
pub trait RulesAdmin: RulesRead {
    /// Stores a new rule version. [`StoreError::Conflict`] if that version of that id exists.
    fn put_rule(
        &self,
        tenant: &TenantId,
        rule: &Rule,
        audit: &AuditEntry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One version, or the latest with `version: None`.
    fn rule(
        &self,
        tenant: &TenantId,
        id: &RuleId,
        version: Option<u32>,
    ) -> impl Future<Output = Result<Option<Rule>, StoreError>> + Send;

    /// The latest version of every rule, by id; `cursor` is the previous page's `next_cursor`.
    fn rules(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<Rule>, StoreError>> + Send;

    /// Stores a new ruleset. [`StoreError::Conflict`] if its version exists.
    fn put_ruleset(
        &self,
        tenant: &TenantId,
        ruleset: &Ruleset,
        audit: &AuditEntry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The highest ruleset version stored, if any.
    fn latest_ruleset_version(&self, tenant: &TenantId)
        -> impl Future<Output = Result<Option<u32>, StoreError>> + Send;

    /// Newest version first.
    fn rulesets(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<Ruleset>, StoreError>> + Send;

    /// Marks a draft published (the rest of it unchanged). [`StoreError::NotFound`] if there is
    /// no such version, [`StoreError::Conflict`] if it is not a draft.
    fn publish_ruleset(
        &self,
        tenant: &TenantId,
        version: u32,
        audit: &AuditEntry,
    ) -> impl Future<Output = Result<Ruleset, StoreError>> + Send;

    fn ruleset_pointer(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<RulesetPointer>, StoreError>> + Send;

    /// Moves the pointer to `to` only if it is at `expected` (`None`: no pointer yet), else
    /// [`StoreError::Conflict`]; [`StoreError::NotFound`] unless `to.version` is published.
    fn move_ruleset_pointer(
        &self,
        tenant: &TenantId,
        expected: Option<u32>,
        to: &RulesetPointer,
        audit: &AuditEntry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Creates an empty list. [`StoreError::Conflict`] if the name is taken; [`StoreError::LimitReached`]
    /// beyond [`crate::domain::rules::MAX_LISTS`].
    fn create_list(
        &self,
        tenant: &TenantId,
        meta: &ListMeta,
        audit: &AuditEntry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn list_meta(
        &self,
        tenant: &TenantId,
        name: &ListName,
    ) -> impl Future<Output = Result<Option<ListMeta>, StoreError>> + Send;

    /// Every list of the tenant, by name.
    fn lists(&self, tenant: &TenantId) -> impl Future<Output = Result<Vec<ListMeta>, StoreError>> + Send;

    /// Adds entries (values already normalised and distinct), replacing the expiry and note of
    /// values already there; bumps the list's version in its meta and in the CONFIG item.
    /// [`StoreError::NotFound`] if the list does not exist; [`StoreError::LimitReached`] if the list
    /// would exceed [`crate::domain::rules::MAX_LIST_ENTRIES`], with nothing written.
    fn add_list_entries(
        &self,
        tenant: &TenantId,
        name: &ListName,
        entries: &[ListEntry],
        audit: &AuditEntry,
    ) -> impl Future<Output = Result<ListChange, StoreError>> + Send;

    /// Removes values (normalised); values not there are counted as `absent`.
    fn remove_list_entries(
        &self,
        tenant: &TenantId,
        name: &ListName,
        values: &[String],
        audit: &AuditEntry,
    ) -> impl Future<Output = Result<ListChange, StoreError>> + Send;

    /// One entry by its (normalised) value; `None` if absent or the list does not exist.
    fn list_entry(
        &self,
        tenant: &TenantId,
        name: &ListName,
        value: &str,
    ) -> impl Future<Output = Result<Option<ListEntry>, StoreError>> + Send;

    /// In value order.
    fn list_entries(
        &self,
        tenant: &TenantId,
        name: &ListName,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<ListEntry>, StoreError>> + Send;

    /// Newest first.
    fn audit(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<AuditEntry>, StoreError>> + Send;
}
